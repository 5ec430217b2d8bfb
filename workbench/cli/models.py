"""`workbench ls` and `workbench rm`: the models on this machine, and deleting one, both answered by the model
registry (core/models/registry.py), which the TUI's Catalog, Models and cache views also ask."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    CommandError,
    UsageError,
    add_command,
    note,
    print_json,
    unknown_model,
)

if TYPE_CHECKING:
    from workbench.core.models.registry import InstalledModel, ModelRegistry
    from workbench.core.settings.paths import AppPaths

log = logging.getLogger(__name__)

DELETE_TIMEOUT_S = 120.0  # the engine unloads the model (when idle) and deletes its files before it answers


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ls = add_command(
        commands, "ls", run_ls, "list the models the workbench can load, with their size on disk",
        "List every model the workbench can load: imported MLX models in the data folder (the default SmolLM2 "
        "once imported), MLX chat models and sentence-transformers embedders in the Hugging Face cache, and the "
        "built-in embedder. Sizes follow the cache's symlinks to the blobs and count each blob once; for a cache "
        "repo they cover every revision (what `workbench rm` frees).",
        "exit status: 0 listed (an empty list too); 1 the list could not be read",
    )  # fmt: skip
    ls.add_argument("--json", action="store_true",
                    help='one JSON array on stdout: [{"id", "kind", "backend", "source", "size_bytes", '
                    '"path"}]')  # fmt: skip

    rm = add_command(
        commands, "rm", run_rm, "delete a model: a Hugging Face cache repo or an imported model folder",
        "Delete MODEL (an id from `workbench ls`, or any model repo in the Hugging Face cache): a cache repo goes "
        "with all its revisions, an imported model with its folder. The built-in embedder ships in a Python "
        "package and is never deleted. On a terminal it asks first; elsewhere pass --yes. When the engine runs, it "
        "deletes (unloading the model first, refusing while it is in use); rm never starts one.",
        "exit status: 0 deleted; 1 not deleted (declined, the model is in use, or the files could not be removed); "
        "2 unknown model, the built-in embedder, or no --yes without a terminal",
    )  # fmt: skip
    rm.add_argument("model", metavar="MODEL", help="the model id, as `workbench ls` shows it")
    rm.add_argument("-y", "--yes", action="store_true", help="delete without asking")
    rm.add_argument("--json", action="store_true",
                    help='one JSON object on stdout: {"id", "kind", "source", "path", "freed_bytes"}')  # fmt: skip


def model_registry(paths: AppPaths) -> ModelRegistry:
    """The registry a command asks; this process holds no loaded models, so it tells no manager. Listing reads the
    model folders and the Hugging Face cache only: no Store, so the history is never opened here."""
    from workbench.core.models.registry import ModelRegistry

    return ModelRegistry(paths)


def _inventory(registry: ModelRegistry) -> list[InstalledModel]:
    try:
        return registry.installed()
    except (OSError, ValueError) as exc:
        log.exception("listing models failed")
        raise CommandError(f"cannot read the models: {exc}") from exc


def run_ls(paths: AppPaths, args: argparse.Namespace) -> int:
    from workbench.core.models.local import DEFAULT_CHAT_ID, default_chat_importable, default_chat_missing

    models = _inventory(model_registry(paths))
    if default_chat_missing(paths) and default_chat_importable():  # a listing does not import (~10 s, ~100 MB)
        note(f"{DEFAULT_CHAT_ID}, the default chat model, is imported from its package on first use: by the app, "
             f"`workbench chat {DEFAULT_CHAT_ID} PROMPT` or `workbench serve` (about 10 s)")  # fmt: skip
    if args.json:
        print_json([model.to_dict() for model in models])
        return EXIT_OK
    if not models:
        note("no models yet: `workbench pull ORG/NAME` downloads one, `workbench import-gguf FILE` imports one")
        return EXIT_OK
    sys.stdout.write(format_table(models))
    return EXIT_OK


def format_table(models: list[InstalledModel]) -> str:
    """An aligned table for people: ID, KIND, SIZE (right-aligned), SOURCE, PATH (last, never cut)."""
    from workbench.core.models.memory import format_bytes

    rows = [("ID", "KIND", "SIZE", "SOURCE", "PATH")]
    rows += [(m.id, m.kind, format_bytes(m.size_bytes), m.source, str(m.path)) for m in models]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].rjust(widths[2]), row[3].ljust(widths[3])]
        lines.append("  ".join([*cells, row[4]]))
    return "\n".join(lines) + "\n"


def run_rm(paths: AppPaths, args: argparse.Namespace) -> int:
    from workbench.core.models.local import DEFAULT_CHAT_ID
    from workbench.core.models.memory import format_bytes
    from workbench.core.models.registry import BUILT_IN

    registry = model_registry(paths)
    models = _inventory(registry)
    model = next((m for m in models if m.id == args.model), None) or registry.cached_repo(args.model)
    if model is None:
        raise unknown_model(args.model, [m.id for m in models if m.removable])
    if model.source == BUILT_IN:
        raise UsageError(f"{model.id} is the built-in embedder: it ships in a Python package ({model.path}) and is "
                         "not deleted here; uninstall that package to remove it")  # fmt: skip
    size = format_bytes(model.size_bytes)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(f"not deleting {model.id} ({size}) without a question: pass --yes to delete it")
        sys.stderr.write(f"Delete {model.id} ({size})? [y/N] ")
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            note(f"kept {model.id}")
            return EXIT_ERROR
    where = model.repo_path or model.path
    freed = delete_through_engine(paths, model.id, where)
    if freed is None:  # no engine runs: this process deletes (no model of this machine is loaded anywhere)
        freed = delete_here(registry, model, where)
    if args.json:
        print_json({"id": model.id, "kind": model.kind, "source": model.source, "path": str(where),
                    "freed_bytes": freed})  # fmt: skip
    else:
        print(f"deleted {model.id} ({format_bytes(freed)} freed)")
    if model.id == DEFAULT_CHAT_ID:
        note("the default chat model is imported again from its package on next use (the app, chat or serve)")
    return EXIT_OK


def delete_through_engine(paths: AppPaths, model_id: str, where: Path) -> int | None:
    """The bytes freed by the engine's delete (its manager unregisters the model first and refuses while it is in
    use); None when no engine runs. rm never starts an engine just to delete files: with none running, no process
    holds the model (the TUI and every verb load models in the engine), so this one deletes them itself."""
    from workbench.client.engine import EngineClient, EngineRequestError
    from workbench.core.engine_home import EngineHomeError, engine_home

    try:
        socket = engine_home(paths).socket
    except (EngineHomeError, OSError) as exc:
        log.warning("no engine folder (%s): deleting here", exc)
        return None
    body = {"model": model_id, "path": str(where)}
    try:
        answer = asyncio.run(EngineClient(socket).call_json("POST", "/v1/models/delete", body, DELETE_TIMEOUT_S))
    except EngineRequestError as exc:
        if exc.status == 404:  # gone meanwhile (another rm, the TUI's cache view)
            raise UsageError(f"not deleting {model_id}: {exc}") from None
        raise CommandError(f"not deleting {model_id}: {exc}") from None  # in use, loading, another cache: it says
    except TimeoutError:
        raise CommandError(f"the engine did not answer within {DELETE_TIMEOUT_S:.0f} s; `workbench ls` shows "
                           f"whether {model_id} is gone") from None  # fmt: skip
    if answer is None:
        return None
    return int(answer["freed_bytes"])


def delete_here(registry: ModelRegistry, model: InstalledModel, where: Path) -> int:
    from workbench.core.models.spec import ModelManagerError

    try:
        return asyncio.run(registry.remove(model))
    except ModelManagerError as exc:  # in use or loading: the message says which
        raise CommandError(f"not deleting {model.id}: {exc}") from exc
    except OSError as exc:
        log.exception("deleting %s failed", model.id)
        raise CommandError(f"cannot delete {model.id} ({where}): {exc.strerror or exc}") from exc


__all__ = ["format_table", "register", "run_ls", "run_rm"]
