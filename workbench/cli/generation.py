"""What `workbench chat` and `workbench compare` share: the generation flags and the sampling they give, the chat
model resolved (the default imported on first use), the loading notes, the figures line and one answer's JSON."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from workbench.cli.common import CommandError, UsageError, note, unknown_model

if TYPE_CHECKING:
    from workbench.bootstrap import Services
    from workbench.core.chat.run import ChatMessage, Finished
    from workbench.core.chat.sampling import SamplingSettings
    from workbench.core.models.lifecycle import ManagerEvent

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
    """The sampling flags given, checked; a bad value is a usage error."""
    from workbench.core.chat.sampling import validate_sampling

    given = {key: getattr(args, key) for key in SAMPLING_FLAGS if getattr(args, key) is not None}
    clean, problems = validate_sampling(given)
    if problems:
        raise UsageError("; ".join(f"--{key.replace('_', '-')}: {problem}" for key, problem in problems))
    return clean


def sampling_from(args: argparse.Namespace, services: Services, model_id: str) -> SamplingSettings:
    """The flags given, over the preset config.toml names (if any), over the model's own defaults
    (generation_config.json), over the built-in ones."""
    from workbench.core.chat.model_sampling import chat_sampling
    from workbench.core.chat.sampling import SamplingChoice

    choice = SamplingChoice(services.settings.chat_preset, sampling_flags(args))
    return chat_sampling(services.settings, services.manager, model_id, choice).settings


def messages_from(args: argparse.Namespace, services: Services, prompt: str) -> list[ChatMessage]:
    from workbench.core.chat.run import ChatMessage

    system = args.system if args.system is not None else services.settings.chat_system_prompt
    messages = [ChatMessage("system", system)] if system else []
    return [*messages, ChatMessage("user", prompt)]


async def resolve_chat_model(services: Services, wanted: str) -> str:
    """The id of a registered chat model; the default SmolLM2 is imported from its package on first use."""
    from workbench.core.models.gguf_import import GgufImportError
    from workbench.core.models.local import (
        DEFAULT_CHAT_ID,
        MissingPackageError,
        default_chat_importable,
        default_chat_missing,
    )
    from workbench.core.models.spec import ModelRole

    roles = {info.spec.id: info.role for info in services.manager.models()}
    chat_ids = services.manager.ids(ModelRole.CHAT)
    if wanted in roles and roles[wanted] is not ModelRole.CHAT:
        what = "an embedding model" if roles[wanted] is ModelRole.EMBED else f"a {roles[wanted]} model"
        raise UsageError(f"{wanted} is {what}, not a chat model; the chat models here: "
                         + (", ".join(sorted(chat_ids)) or "none"))  # fmt: skip
    if wanted == DEFAULT_CHAT_ID and default_chat_missing(services.paths) and default_chat_importable():
        note(f"importing {wanted} from its package (first use, about 10 s)")
        try:
            await services.bring_in_embedded_defaults()
        except (MissingPackageError, GgufImportError, OSError) as exc:
            raise CommandError(f"cannot import {wanted}: {exc}") from exc
        return wanted
    if wanted not in roles:
        importable = [DEFAULT_CHAT_ID] if DEFAULT_CHAT_ID not in roles and default_chat_importable() else []
        raise unknown_model(wanted, chat_ids + importable, "chat model")
    return wanted


def report_loading(services: Services) -> None:
    """Say on stderr when a model starts loading and when it is ready (loads take seconds)."""
    from workbench.core.models.spec import ModelState

    def on_event(event: ManagerEvent) -> None:
        if event.model.state is ModelState.LOADING:
            note(f"loading {event.model.spec.id}…")
        elif event.model.state is ModelState.READY and event.message.startswith(f"{event.model.spec.name} loaded"):
            note(event.message)

    services.manager.subscribe(on_event)


def finish_note(model_id: str, finished: Finished | None) -> str:
    """``model: first token 0.12 s · prompt 12 tok @ … · 8 tok @ … · peak …  (length)``, for stderr."""
    figures = finished.figures if finished is not None else None
    return figures_note(
        model_id,
        figures.summary() if figures is not None else None,
        finished is not None and finished.stopped,
        finished.finish_reason if finished else None,
    )


def figures_note(model_id: str, summary: str | None, stopped: bool, finish_reason: str | None) -> str:
    """:func:`finish_note` from an answer's parts (a face of the engine gets the summary in words)."""
    text = summary if summary is not None else "no tokens generated"
    if stopped:
        text += "  (stopped)"
    elif finish_reason == "length":
        text += "  (hit --max-tokens)"
    return f"{model_id}: {text}"


def side_document(model_id: str, answer: str, finished: Finished | None) -> dict[str, Any]:
    return {
        "model": model_id,
        "answer": answer,
        "figures": finished.figures.to_dict() if finished is not None and finished.figures is not None else None,
        "finish_reason": finished.finish_reason if finished is not None else None,
        "stopped": bool(finished is not None and finished.stopped),
    }
