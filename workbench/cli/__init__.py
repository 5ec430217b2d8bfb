"""The `workbench` subcommands for scripts, one module per job; workbench/cli.py builds the parser and dispatches.

Each module's ``register(commands)`` adds its subparsers with ``handler=run_...``; a handler takes the app's
paths and the parsed arguments and returns the exit status. Heavy libraries are imported inside the handlers.
"""
