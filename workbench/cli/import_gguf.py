"""`workbench import-gguf`: a GGUF file converted into an MLX model folder the workbench loads."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from workbench.cli.common import EXIT_ERROR, EXIT_OK, UsageError
from workbench.core.settings.paths import AppPaths


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    imp = commands.add_parser("import-gguf", help="convert a GGUF file into an MLX model the workbench can load")
    imp.set_defaults(handler=run_import_gguf)
    imp.add_argument("path", help="the .gguf file")
    imp.add_argument("--bits", type=int, choices=(4, 8, 16), default=4,
                     help="4 keeps Q4_0/Q4_1/Q8_0 blocks as they are (default); 8 and 16 widen them")  # fmt: skip
    imp.add_argument("--name", help="the model's name in the models folder: letters, digits and . _ + - "
                     "(default: file name and bits)")
    imp.add_argument("--force", action="store_true", help="replace an existing model of that name")


MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def import_destination(models_dir: Path, name: str) -> Path:
    """The folder of an imported model called ``name``: a plain name inside the models folder, never a path
    (``--force`` deletes what is there). Raises UsageError for anything else."""
    if not MODEL_NAME.fullmatch(name) or ".." in name:
        raise UsageError(f"--name {name!r}: a model name is letters, digits and . _ + - (up to 128, no '..', "
                         "no path), e.g. SmolLM2-135M-4bit")  # fmt: skip
    dest = models_dir / name
    if dest.is_symlink() or dest.resolve().parent != models_dir.resolve():
        raise UsageError(f"--name {name!r}: {dest} is a link to {dest.resolve()}; "
                         f"remove it first (workbench rm {name})")
    return dest


def default_import_name(source: Path, bits: int) -> str:
    """``<file stem>-4bit`` (or ``-f16``), with anything a model name may not hold replaced by '-'."""
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "-", source.stem).strip(".-+_") or "model"
    return re.sub(r"\.{2,}", ".", stem)[:100] + ("-f16" if bits == 16 else f"-{bits}bit")


def run_import_gguf(paths: AppPaths, args: argparse.Namespace) -> int:
    from workbench.core.models.gguf_import import GgufImportError, import_gguf

    source = Path(args.path)
    name = args.name if args.name is not None else default_import_name(source, args.bits)
    dest = import_destination(paths.models_dir, name)

    def progress(stage: str, fraction: float) -> None:
        print(f"\r{fraction:4.0%}  {stage:<24}", end="", file=sys.stderr, flush=True)

    try:
        import_gguf(source, dest, bits=args.bits, progress=progress, overwrite=args.force)
    except GgufImportError as exc:
        print(f"\nworkbench import-gguf: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"\nimported {source.name} as {name} ({dest})", file=sys.stderr)
    print(dest)
    return EXIT_OK
