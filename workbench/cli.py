"""The `workbench` command: the TUI by default, subcommands for scripts."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from workbench.core.paths import AppPaths

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def setup_logging(paths: AppPaths) -> None:
    """Everything goes to the log file; the screen is for people."""
    paths.log_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=paths.log_file,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def run_tui(paths: AppPaths) -> int:
    from workbench.core.services import build_services
    from workbench.ui.app import WorkbenchApp

    WorkbenchApp(build_services(paths)).run()
    return EXIT_OK


def run_import_gguf(paths: AppPaths, args: argparse.Namespace) -> int:
    from workbench.core.gguf_import import GgufImportError, import_gguf

    source = Path(args.path)
    name = args.name or f"{source.stem}-{args.bits}bit" if args.bits != 16 else (args.name or f"{source.stem}-f16")
    dest = paths.models_dir / name

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="A terminal workbench for local models. Without a command it opens the TUI.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    imp = commands.add_parser("import-gguf", help="convert a GGUF file into an MLX model the workbench can load")
    imp.add_argument("path", help="the .gguf file")
    imp.add_argument("--bits", type=int, choices=(4, 8, 16), default=4,
                     help="4 keeps Q4_0/Q4_1/Q8_0 blocks as they are (default); 8 and 16 widen them")  # fmt: skip
    imp.add_argument("--name", help="folder name for the model (default: file name and bits)")
    imp.add_argument("--force", action="store_true", help="replace an existing model of that name")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    paths = AppPaths.from_env()
    setup_logging(paths)
    if args.command == "import-gguf":
        return run_import_gguf(paths, args)
    return run_tui(paths)


if __name__ == "__main__":
    sys.exit(main())
