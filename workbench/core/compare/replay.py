"""Replay records and exports: which model exactly answered (Hugging Face snapshot or a fingerprint), with what
settings on what machine, and the results of a prompt set as JSONL or a Markdown report."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import struct
import sys
from pathlib import Path
from typing import Any

from workbench.core.chat.figures import GenerationFigures, format_figures
from workbench.core.compare.results import CompareResults
from workbench.core.compare.run import SIDES, Contender
from workbench.core.models.lifecycle import ModelManager

log = logging.getLogger(__name__)

_SNAPSHOT = re.compile(r"[0-9a-f]{40}")


def replay_record(
    manager: ModelManager, contender: Contender, answer: str, figures: GenerationFigures | None
) -> dict[str, Any]:
    """Everything needed to run one side again: which model exactly (repo and revision from the Hugging Face
    cache, else a fingerprint of config.json and the safetensors headers), quantization, chat template,
    sampling, seed, machine and figures. Reads a few small files: call it off the event loop for many."""
    path = manager.info(contender.model_id).spec.path
    folder = path if path.is_dir() else path.parent
    config = _read_json(folder / "config.json")
    repo_id, revision = hf_snapshot(path)
    return {
        "model_id": contender.model_id,
        "label": contender.label,
        "path": str(path),
        "repo_id": repo_id,
        "revision": revision,
        "fingerprint": None if revision else model_fingerprint(folder),
        "quantization": config.get("quantization") if config else None,
        "chat_template_sha256": chat_template_hash(folder),
        "system_prompt": contender.system_prompt,
        "sampling": contender.sampling.to_dict(),
        "seed": contender.sampling.seed,
        "machine": machine(),
        "figures": None if figures is None else figures.to_dict(),
        "answer": answer,
    }


def prompt_record(
    manager: ModelManager, prompt: str, a: Contender, b: Contender, results: CompareResults
) -> dict[str, Any]:
    """One prompt of a prompt set as the exports keep it: the prompt, each side's replay record and answer, and
    the errors of the sides that failed (only when one did)."""
    record: dict[str, Any] = {"prompt": prompt}
    for side, contender in zip(SIDES, (a, b), strict=True):
        record[side] = replay_record(manager, contender, results[side].text, results[side].figures)
    for side in SIDES:
        record[f"answer_{side}"] = results[side].text
    if results.errors:
        record["errors"] = results.errors
    return record


def hf_snapshot(path: Path) -> tuple[str | None, str | None]:
    """``(repo id, commit)`` when ``path`` lies in a cache snapshot ``models--org--name/snapshots/<commit>/``."""
    for snapshot in (path, *path.parents):
        snapshots, repo = snapshot.parent, snapshot.parent.parent
        if snapshots.name == "snapshots" and _SNAPSHOT.fullmatch(snapshot.name) and repo.name.startswith("models--"):
            return repo.name.removeprefix("models--").replace("--", "/"), snapshot.name
    return None, None


def model_fingerprint(folder: Path) -> str | None:
    """sha256 of config.json and each safetensors file's name and header (never the weights); None if neither."""
    digest = hashlib.sha256()
    found = False
    config = folder / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
        found = True
    for weights in sorted(folder.glob("*.safetensors")):
        try:
            with open(weights, "rb") as f:
                prefix = f.read(8)
                (length,) = struct.unpack("<Q", prefix)
                header = f.read(min(length, 100 * 1024 * 1024))
        except (OSError, struct.error):
            continue
        digest.update(weights.name.encode())
        digest.update(prefix + header)
        found = True
    return digest.hexdigest() if found else None


def chat_template_hash(folder: Path) -> str | None:
    """sha256 of chat_template.jinja, else of tokenizer_config.json's "chat_template"; None without either."""
    template = folder / "chat_template.jinja"
    if template.is_file():
        return hashlib.sha256(template.read_bytes()).hexdigest()
    tokenizer_config = _read_json(folder / "tokenizer_config.json")
    value = tokenizer_config.get("chat_template") if tokenizer_config else None
    if not value:
        return None
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def machine() -> dict[str, Any]:
    """The platform, CPU and Python; the MLX device only when MLX is already imported (never imports it)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    mx = sys.modules.get("mlx.core")
    if mx is not None:
        try:
            info["mlx_device"] = str(mx.default_device())
        except Exception:  # an MLX too old or too broken to say
            log.debug("no MLX device", exc_info=True)
    return info


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def export_jsonl(results: list[dict[str, Any]]) -> str:
    """One JSON object per result: {"prompt", "a", "b", "answer_a", "answer_b", "vote"?}."""
    return "".join(json.dumps(result, ensure_ascii=False) + "\n" for result in results)


def export_markdown(results: list[dict[str, Any]]) -> str:
    """A readable report: the two contenders and the machine once, then each prompt with both answers."""
    if not results:
        return "# Compare results\n\nNo results.\n"
    first = results[0]
    blocks = ["# Compare results"]
    rows = ["| | A | B |", "|---|---|---|"]
    for title, key in (("Model", "model_id"), ("Label", "label"), ("Repo", "repo_id"), ("Revision", "revision"),
                       ("Fingerprint", "fingerprint"), ("Quantization", "quantization"),
                       ("Chat template sha256", "chat_template_sha256"), ("System prompt", "system_prompt"),
                       ("Sampling", "sampling")):  # fmt: skip
        rows.append(f"| {title} | {_cell(first['a'].get(key))} | {_cell(first['b'].get(key))} |")
    blocks.append("\n".join(rows))
    blocks.append(f"Machine: {_cell(first['a'].get('machine'))}")
    for number, result in enumerate(results, start=1):
        blocks.append(f"## {number}. {_first_line(result['prompt'])}")
        if "\n" in result["prompt"].strip():
            blocks.append("\n".join(f"> {line}".rstrip() for line in result["prompt"].splitlines()))
        if result.get("vote"):
            blocks.append(f"Vote: **{result['vote']}**")
        for side in SIDES:
            record = result[side]
            blocks.append(f"### {side.upper()}: {record.get('label') or record.get('model_id')}")
            blocks.append(result.get(f"answer_{side}") or "_(no answer)_")
            if record.get("figures"):
                blocks.append(f"_{_figures_text(record['figures'])}_")
    return "\n\n".join(blocks) + "\n"


def _figures_text(figures: dict[str, Any]) -> str:
    return format_figures(figures) or json.dumps(figures)


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "(empty prompt)"
    return line if len(line) <= 80 else line[:79] + "…"


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "–"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text.replace("|", "\\|").replace("\n", " ")
