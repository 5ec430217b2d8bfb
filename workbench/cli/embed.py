"""`workbench embed`: the passages of a file or folder as one .npy of L2-normalised vectors, embedded by the engine
(started when none runs): the engine reads the corpus, embeds it with its one manager and cache, and hands the
vectors back; this process only shows the progress and writes the .npy."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    CommandError,
    ProgressBar,
    UsageError,
    add_command,
    attach_engine,
    note,
    print_json,
    stop_on_interrupt,
    unknown_model,
)

if TYPE_CHECKING:
    import numpy as np

    from workbench.client.engine import EngineClient
    from workbench.core.settings.paths import AppPaths

log = logging.getLogger(__name__)

SCAN_WAIT_S = 15.0  # a model on disk that a just-started engine has not registered yet is waited for this long
SCAN_POLL_S = 0.2
START_TIMEOUT_S = 60.0  # the engine checks the corpus path before it answers; the vectors of a large corpus travel
CANCEL_POLL_S = 0.05
CANCEL_TIMEOUT_S = 5.0
MAX_VECTOR_BYTES = 2 * 1024 * 1024 * 1024


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    embed = add_command(
        commands, "embed", run_embed, "embed the passages of a file or folder into a .npy of vectors",
        "Read FILE as the Embeddings pane does (.txt/.md: one passage per non-empty line; a folder: the paragraphs "
        "of its .txt and .md files in name order; .csv: the text column, or --column; .jsonl: the \"text\" field, "
        "or --column), embed every passage with MODEL and write an (n, d) float32 array of L2-normalised rows: row "
        "i is the i-th passage in file order. Rows that cannot be read are reported on stderr and skipped. Vectors "
        "are cached, so running it again (or after ctrl+c) only embeds what is new. The engine does the work (started "
        "in the background when none runs; ctrl+c cancels its job). Prints the output path.",
        "exit status: 0 written (skipped rows too); 1 nothing to embed, the model failed, the engine could not start "
        "or went away, or OUT could not be written; 2 bad arguments or unknown model; 130 stopped with ctrl+c "
        "(finished batches stay cached)",
    )  # fmt: skip
    embed.add_argument("model", metavar="MODEL", help="an embedding model id, e.g. all-MiniLM-L6-v2")
    embed.add_argument("file", metavar="FILE", help="a .txt, .md, .csv or .jsonl file, or a folder of .txt/.md")
    embed.add_argument("-o", "--output", metavar="OUT", help="where to write (default: FILE's name with .npy, here)")
    embed.add_argument("--column", metavar="NAME", help="the CSV column or JSONL field holding the text")
    embed.add_argument("--json", action="store_true", help='one JSON object on stdout: {"path", "count", '
                       '"dimensions", "model", "problems"}')  # fmt: skip


def default_output(source: Path) -> Path:
    """FILE's name with .npy, in the current folder (a folder ``notes/`` gives ``notes.npy``)."""
    name = source.resolve().name if source.is_dir() else source.stem
    return Path.cwd() / f"{name or 'embeddings'}.npy"


def run_embed(paths: AppPaths, args: argparse.Namespace) -> int:
    source = Path(args.file)
    output = Path(args.output) if args.output else default_output(source)
    if not output.parent.is_dir():
        raise CommandError(f"cannot write {output}: no folder {output.parent}")
    socket = attach_engine(paths)
    return asyncio.run(embed(paths, socket, args, source, output))


async def resolve_embedder(paths: AppPaths, client: EngineClient, wanted: str) -> str:
    """``wanted`` when the engine has it as an embedding model; a UsageError (exit 2) naming the embedders it has
    otherwise. A model on this machine's disk that a just-started engine has not found yet (its first scan of the
    Hugging Face cache runs after it answers) is waited for, bounded."""
    deadline = time.monotonic() + SCAN_WAIT_S
    on_disk: bool | None = None
    while True:
        roles = await engine_models(client)
        embedders = sorted(model_id for model_id, role in roles.items() if role == "embed")
        if wanted in embedders:
            return wanted
        if wanted in roles:
            raise UsageError(f"{wanted} is a {roles[wanted]} model, not an embedding model; the embedders here: "
                             + (", ".join(embedders) or "none"))  # fmt: skip
        if on_disk is None:
            on_disk = await asyncio.to_thread(loadable_here, paths, wanted)
        if not on_disk or time.monotonic() >= deadline:
            raise unknown_model(wanted, embedders, "embedding model")
        await asyncio.sleep(SCAN_POLL_S)


async def engine_models(client: EngineClient) -> dict[str, str]:
    """The engine's registered models: id → role (chat, embed)."""
    from workbench.client.engine import EngineRequestError

    try:
        state = await client.call_json("GET", "/v1/models/state")
    except EngineRequestError as exc:
        raise CommandError(f"the engine refused to list its models: {exc}") from exc
    if state is None:
        raise CommandError("the engine stopped before it answered; run this again")
    try:
        return {str(row["spec"]["id"]): str(row["role"]) for row in state["models"]}
    except (KeyError, TypeError) as exc:
        raise CommandError(f"the engine's list of models is not what this command reads ({exc!r})") from exc


def loadable_here(paths: AppPaths, model_id: str) -> bool:
    """Whether this machine's disk (as this shell sees it) holds ``model_id`` in a loadable form."""
    from workbench.core.models.registry import ModelRegistry

    try:
        return any(spec.id == model_id for spec in ModelRegistry(paths).loadable_specs())
    except (OSError, ValueError):
        return False


async def embed(paths: AppPaths, socket: Path, args: argparse.Namespace, source: Path, output: Path) -> int:
    from workbench.client.engine import EngineClient

    client = EngineClient(socket)
    model_id = await resolve_embedder(paths, client, args.model)
    if not source.exists():  # as the corpus reader says it, before any job
        note(f"skipped: {source}: no such file or folder")
        raise CommandError(f"nothing to embed in {source}")
    job = CorpusJob(client, model_id, source, args.column)
    bar = ProgressBar(f"embedding with {model_id}", "passages")
    cancel = threading.Event()
    with stop_on_interrupt(cancel.set) as interrupt:
        try:
            end = await job.run(bar.update, cancel)
        finally:
            bar.finish()
    problems = [str(problem) for problem in end.get("problems") or []]
    for problem in problems:
        note(f"skipped: {problem}")
    if (unlisted := int(end.get("problem_count") or len(problems)) - len(problems)) > 0:
        note(f"skipped: {unlisted} more rows (the engine lists the first {len(problems)})")
    if end["state"] == "cancelled":
        note(f"stopped: {end.get('message') or 'cancelled'}; the finished batches are cached, so running it again "
             "continues")  # fmt: skip
        return EXIT_INTERRUPTED
    if end["state"] == "error":
        raise job_failure(model_id, end)
    if int(end.get("rows") or 0) == 0:
        raise CommandError(f"nothing to embed in {source}")
    if interrupt.hit:  # ctrl+c after the last batch: the vectors are complete, write them
        note("the last batch was already done: writing the vectors")
    vectors = await job.vectors()
    await asyncio.to_thread(write_vectors, output, vectors)
    where = output.resolve()
    count, dimensions = vectors.shape
    note(f"{count} vectors of {dimensions} dimensions; row i is the i-th passage of {source} in file order "
         f"(skipped rows have no row)")  # fmt: skip
    if args.json:
        print_json({"path": str(where), "count": int(count), "dimensions": int(dimensions), "model": model_id,
                    "problems": problems})  # fmt: skip
    else:
        print(where)
    return EXIT_OK


def job_failure(model_id: str, end: dict[str, Any]) -> CommandError:
    message = str(end.get("error") or "the engine's embedding failed")
    if end.get("kind") in ("model", "unknown_model"):  # not loadable, does not fit, removed meanwhile: said so
        return CommandError(f"{model_id}: {message}")
    return CommandError(f"{model_id} failed to embed: {message}")


class CorpusJob:
    """One embedding job of the engine's (workbench/server/engine_embeddings.py) over a corpus the engine reads:
    started, followed until it ends, cancelled when ``cancel`` is set or this face's task is cancelled (a CLI embed
    has no one to read its result later; the finished batches stay in the engine's cache), its vectors fetched.
    numpy is imported only for the vectors."""

    def __init__(self, client: EngineClient, model_id: str, source: Path, column: str | None) -> None:
        self.client = client
        corpus: dict[str, Any] = {"path": str(source.expanduser().absolute())}
        if column is not None:
            corpus["column"] = column
        self.body = {"model": model_id, "corpus": corpus, "face": "cli"}
        self.id = ""

    async def run(self, progress: Callable[[int, int], None], cancel: threading.Event) -> dict[str, Any]:
        """Start the job and follow it; its end event ({"state": done | cancelled | error, ...})."""
        from workbench.client.engine import EngineRequestError

        try:
            started = await self.client.call_json("POST", "/v1/embeddings/jobs", self.body, timeout_s=START_TIMEOUT_S)
        except EngineRequestError as exc:
            if exc.status == 404:
                raise UsageError(str(exc)) from None  # unregistered between the look and the job
            raise CommandError(f"the engine refused the job: {exc}") from None
        if started is None:
            raise CommandError("the engine stopped before it answered; run this again")
        self.id = str(started["id"])
        watcher = asyncio.create_task(self._watch(cancel))
        try:
            return await self._follow(progress)
        except asyncio.CancelledError:  # a second ctrl+c: the engine's job is cancelled all the same
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._cancel()), CANCEL_TIMEOUT_S)
            raise
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _follow(self, progress: Callable[[int, int], None]) -> dict[str, Any]:
        from workbench.client.engine import EngineGone, EngineNotRunning, EngineRequestError

        try:
            async for event in self.client.stream("GET", f"/v1/embeddings/jobs/{self.id}/events"):
                if event.get("type") == "end":
                    return event
                if event.get("type") == "progress" and int(event.get("total") or 0) > 0:
                    progress(int(event["done"]), int(event["total"]))
        except EngineRequestError as exc:
            raise CommandError(f"the engine's job {self.id}: {exc}") from None
        except (EngineNotRunning, EngineGone) as exc:
            raise CommandError(f"the engine went away during the embedding ({exc}); the finished batches are "
                               "cached, so running it again continues") from None  # fmt: skip
        raise CommandError("the engine's answer ended before the job did; running it again continues")

    async def _watch(self, cancel: threading.Event) -> None:
        while not cancel.is_set():
            await asyncio.sleep(CANCEL_POLL_S)
        await self._cancel()

    async def _cancel(self) -> None:
        from workbench.client.engine import EngineRequestError

        try:
            await self.client.call_json("POST", f"/v1/embeddings/jobs/{self.id}/cancel")
        except EngineRequestError as exc:  # ended and forgotten already
            log.info("cancelling embedding job %s: %s", self.id, exc)

    async def vectors(self) -> np.ndarray:
        """The finished job's vectors, (rows, dimensions) float32."""
        from workbench.client.engine import EngineRequestError

        try:
            answer = await self.client.call_bytes("GET", f"/v1/embeddings/jobs/{self.id}/vectors", MAX_VECTOR_BYTES,
                                                  timeout_s=START_TIMEOUT_S)  # fmt: skip
        except EngineRequestError as exc:
            raise CommandError(f"the engine did not give the vectors: {exc}; running it again takes them from the "
                               "cache") from None  # fmt: skip
        if answer is None:
            raise CommandError("the engine stopped before it gave the vectors; running it again takes them from the "
                               "cache")  # fmt: skip
        body, headers = answer
        rows, dimensions = int(headers.get("X-Rows", "0")), int(headers.get("X-Dimensions", "0"))
        if len(body) != rows * dimensions * 4:
            raise CommandError(f"the engine sent {len(body)} bytes for {rows}x{dimensions} float32 vectors")
        import numpy as np

        return np.frombuffer(body, dtype="<f4").astype(np.float32).reshape(rows, dimensions)


def write_vectors(output: Path, vectors: np.ndarray) -> None:
    """``np.save`` to exactly ``output`` (no .npy appended), through a temporary file so a reader never sees half."""
    import numpy as np

    partial = output.with_name(f".{output.name}.partial")
    try:
        with open(partial, "wb") as handle:
            np.save(handle, np.ascontiguousarray(vectors, dtype=np.float32))
        os.replace(partial, output)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from exc


__all__ = ["default_output", "register", "run_embed", "write_vectors"]
