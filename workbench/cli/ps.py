"""`workbench ps`: what the engine holds and runs; never starts one."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import TYPE_CHECKING, Any

from workbench.cli.common import EXIT_OK, CommandError, add_command, print_json

if TYPE_CHECKING:
    from pathlib import Path

    from workbench.core.settings.paths import AppPaths

NO_ENGINE = "no engine running"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ps = add_command(
        commands, "ps", run_ps, "list the engine's loaded models and running jobs",
        "List what the engine for this data folder holds: loaded models (state, memory, pinned, leases, when idle "
        "unload happens), running jobs, attached faces and the engine itself. Never starts an engine: with none it "
        f"prints '{NO_ENGINE}' (with --json: null).",
        f"exit status: 0 listed, also when no engine runs ('{NO_ENGINE}'); 1 the engine's folder is unusable",
    )  # fmt: skip
    ps.add_argument("--json", action="store_true",
                    help="print one JSON document: {engine, models, jobs, clients, faces}")  # fmt: skip


def run_ps(paths: AppPaths, args: argparse.Namespace) -> int:
    from workbench.client.engine import EngineClient

    document = asyncio.run(EngineClient(engine_socket(paths)).ps())
    if args.json:
        print_json(document)
    elif document is None:
        print(NO_ENGINE)
    else:
        print(ps_text(document))
    return EXIT_OK


def engine_socket(paths: AppPaths) -> Path:
    """The engine's socket for this data folder; CommandError when its folder is not private."""
    from workbench.core.engine_home import EngineHomeError, engine_home

    try:
        return engine_home(paths).socket
    except (EngineHomeError, OSError) as exc:
        raise CommandError(f"cannot use the engine's folder: {exc}") from exc


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f} MB"


def _percent(progress: float | None) -> str:
    return "-" if progress is None else f"{100 * progress:.0f} %"  # an answer's progress is not known


def _when(epoch: float | None) -> str:
    return "-" if epoch is None else f"in {max(0, round((epoch - time.time()) / 60))} min"


def ps_text(document: dict[str, Any]) -> str:
    engine = document["engine"]
    lines = [f"engine  pid {engine['pid']}  {engine['version']}  {_mb(engine['rss_bytes'])}  up "
             f"{engine['uptime_s'] / 60:.0f} min  {document['clients']} client(s)  {engine['socket']}", ""]  # fmt: skip
    if document["models"]:
        rows = [("MODEL", "STATE", "MEMORY", "PINNED", "LEASES", "IDLE UNLOAD")]
        rows += [(m["id"], m["state"], _mb(m["memory_bytes"]), "yes" if m["pinned"] else "no", str(m["leases"]),
                  _when(m["idle_unload_at"])) for m in document["models"]]  # fmt: skip
        lines += _table(rows)
    else:
        lines.append("no model loaded")
    if document["jobs"]:
        rows = [("JOB", "KIND", "WHAT", "PROGRESS", "FACE", "STARTED")]
        rows += [(str(j["id"]), j["kind"], j["what"], _percent(j.get("progress")), j.get("face") or "-",
                  _since(j.get("started_at"))) for j in document["jobs"]]  # fmt: skip
        lines += ["", *_table(rows)]
    else:
        lines.append("no job running")
    if faces := document.get("faces"):
        rows = [("FACE", "PID", "ATTACHED")]
        rows += [(f["name"], "-" if f["pid"] is None else str(f["pid"]), _since(f["attached_at"])) for f in faces]
        lines += ["", *_table(rows)]
    else:
        lines.append("no face attached")
    return "\n".join(lines)


def _percent(progress: float | None) -> str:
    return "-" if progress is None else f"{100 * progress:.0f} %"


def _since(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    minutes = max(0, round((time.time() - epoch) / 60))
    return f"{minutes} min ago" if minutes < 120 else f"{minutes // 60} h ago"


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
