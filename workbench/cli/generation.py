"""What `workbench chat` and `workbench compare` share: the generation flags and the sampling values they give, and
the figures line of one answer. The engine resolves the rest (workbench.server.engine_chat): the model (the default
imported on first use), the sampling layers, the system prompt and the loading notes."""

from __future__ import annotations

import argparse
from typing import Any

from workbench.cli.common import UsageError

SAMPLING_FLAGS = ("temperature", "top_p", "max_tokens", "seed")
GENERATION_EXIT_CODES = (
    "exit status: 0 answered; 1 a model failed to load or answer (compare: either side); "
    "2 bad arguments, an empty prompt or an unknown model; 130 stopped with ctrl+c (what came so far is printed; "
    "a second ctrl+c quits at once)"
)


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", metavar="PROMPT", help='the prompt; "-" reads it from stdin')
    parser.add_argument("--system", metavar="TEXT", help="system prompt (default: chat.system_prompt in config.toml)")
    parser.add_argument("--temperature", type=float, metavar="F", help="0 = greedy")
    parser.add_argument("--top-p", type=float, metavar="F", help="nucleus sampling, 0 < F <= 1")
    parser.add_argument("--max-tokens", type=int, metavar="N", help="the longest answer, in tokens")
    parser.add_argument("--seed", type=int, metavar="N", help="a fixed seed makes sampling repeatable")


def sampling_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The sampling flags given, checked (before an engine is started for them); a bad value is a usage error."""
    from workbench.core.chat.sampling import validate_sampling

    given = {key: getattr(args, key) for key in SAMPLING_FLAGS if getattr(args, key) is not None}
    clean, problems = validate_sampling(given)
    if problems:
        raise UsageError("; ".join(f"--{key.replace('_', '-')}: {problem}" for key, problem in problems))
    return clean


def figures_note(model_id: str, summary: str | None, stopped: bool, finish_reason: str | None) -> str:
    """``model: first token 0.12 s · prompt 12 tok @ … · 8 tok @ … · peak …  (hit --max-tokens)``, for stderr, from
    the summary the engine sends with an answer's figures (None: no token came)."""
    text = summary if summary is not None else "no tokens generated"
    if stopped:
        text += "  (stopped)"
    elif finish_reason == "length":
        text += "  (hit --max-tokens)"
    return f"{model_id}: {text}"
