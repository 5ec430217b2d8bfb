"""`workbench embed`: the passages of a file or folder as one .npy of L2-normalised vectors."""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    CommandError,
    ProgressBar,
    UsageError,
    add_command,
    note,
    open_services,
    print_json,
    stop_on_interrupt,
    unknown_model,
)

if TYPE_CHECKING:
    import numpy as np

    from workbench.bootstrap import Services
    from workbench.core.settings.paths import AppPaths


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    embed = add_command(
        commands, "embed", run_embed, "embed the passages of a file or folder into a .npy of vectors",
        "Read FILE as the Embeddings pane does (.txt/.md: one passage per non-empty line; a folder: the paragraphs "
        "of its .txt and .md files in name order; .csv: the text column, or --column; .jsonl: the \"text\" field, "
        "or --column), embed every passage with MODEL and write an (n, d) float32 array of L2-normalised rows: row "
        "i is the i-th passage in file order. Rows that cannot be read are reported on stderr and skipped. Vectors "
        "are cached, so running it again (or after ctrl+c) only embeds what is new. Prints the output path.",
        "exit status: 0 written (skipped rows too); 1 nothing to embed, the model failed, or OUT could not be "
        "written; 2 bad arguments or unknown model; 130 stopped with ctrl+c (finished batches stay cached)",
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
    return asyncio.run(embed(paths, args))


def resolve_embedder(services: Services, wanted: str) -> str:
    ids = services.embedder.model_ids()
    if wanted in ids:
        return wanted
    if wanted in {info.spec.id for info in services.manager.models()}:
        raise UsageError(f"{wanted} is a chat model, not an embedding model; the embedders here: "
                         + (", ".join(sorted(ids)) or "none"))  # fmt: skip
    raise unknown_model(wanted, ids, "embedding model")


async def embed(paths: AppPaths, args: argparse.Namespace) -> int:
    from workbench.core.embeddings.cache import Cancelled
    from workbench.core.embeddings.corpus import load_corpus
    from workbench.core.models.spec import ModelManagerError

    source = Path(args.file)
    output = Path(args.output) if args.output else default_output(source)
    if not output.parent.is_dir():
        raise CommandError(f"cannot write {output}: no folder {output.parent}")
    async with open_services(paths) as services:
        model_id = resolve_embedder(services, args.model)
        corpus = await asyncio.to_thread(load_corpus, source, args.column)
        for problem in corpus.problems:
            note(f"skipped: {problem}")
        if not corpus.passages:
            raise CommandError(f"nothing to embed in {source}")
        bar = ProgressBar(f"embedding with {model_id}", "passages")
        cancel = threading.Event()
        with stop_on_interrupt(cancel.set) as interrupt:
            try:
                vectors = await services.embedder.embed(model_id, corpus.texts, bar.update, cancel)
            except Cancelled as exc:
                bar.finish()
                note(f"stopped: {exc}; the finished batches are cached, so running it again continues")
                return EXIT_INTERRUPTED
            except ModelManagerError as exc:
                bar.finish()
                raise CommandError(str(exc)) from exc
            except Exception as exc:
                bar.finish()
                raise CommandError(f"{model_id} failed to embed: {type(exc).__name__}: {exc}") from exc
        bar.finish()
        if interrupt.hit:  # ctrl+c after the last batch: the vectors are complete, write them
            note("the last batch was already done: writing the vectors")
    await asyncio.to_thread(write_vectors, output, vectors)
    where = output.resolve()
    count, dimensions = vectors.shape
    note(f"{count} vectors of {dimensions} dimensions; row i is the i-th passage of {source} in file order "
         f"(skipped rows have no row)")  # fmt: skip
    if args.json:
        print_json({"path": str(where), "count": int(count), "dimensions": int(dimensions), "model": model_id,
                    "problems": corpus.problems})  # fmt: skip
    else:
        print(where)
    return EXIT_OK


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
