"""Start-up benchmark: process start to first painted frame, workbench vs a bare Textual app.

The parent notes the wall time (``time.time()``, comparable across processes) just before spawning
``python bench/startup.py --child workbench|bare``; the child builds its app and, at its first complete frame
(the first update the compositor hands to the display with the key footer filled in), writes its own
``time.time()`` and the heavy modules already imported to the file named by ``$BENCH_MARK_FILE``, then exits.
Start-up = child time - parent time.

    .venv/bin/python bench/startup.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textual.app import App

# Heavy libraries must never be imported at start-up (lazy imports, see DESIGN.md): the first frame
# has to appear in well under a second. The child reports any of these found in sys.modules.
HEAVY = ("mlx", "mlx_lm", "torch", "sentence_transformers", "transformers", "huggingface_hub", "numpy", "openai")
MARK_ENV = "BENCH_MARK_FILE"
GOAL_RATIO = 1.5
GOAL_SECONDS = 1.0
TERMINAL = (80, 24)


def _footer_shown(screen: Any) -> bool:
    """Whether the screen's key footer has its keys: Textual's Footer composes empty first and its keys later
    (a frame without them is not the finished first frame); the workbench's KeyFooter draws them at once."""
    from textual.widgets._footer import FooterKey

    return bool(screen.query(FooterKey)) or bool(screen.query("KeyFooter"))


def _mark_first_frame(app: App[Any]) -> None:
    """At the first frame the compositor hands to the display with the key footer filled in: write the time and
    the heavy modules already imported, then exit. Hooked on ``App._display`` so the mark is the frame itself, not
    a callback after it that background work started after the frame could race."""
    display = app._display
    marked = False

    def display_and_mark(screen: Any, renderable: Any) -> None:
        nonlocal marked
        display(screen, renderable)
        if renderable is not None and not marked and _footer_shown(screen):
            marked = True
            heavy = sorted(name for name in HEAVY if name in sys.modules)
            mark = {"t": time.time(), "heavy": heavy, "screen": type(screen).__name__}
            Path(os.environ[MARK_ENV]).write_text(json.dumps(mark))
            app.call_later(app.exit)

    app._display = display_and_mark  # type: ignore[method-assign]


def child(kind: str) -> None:
    """Build one app the way a user's start-up does and exit right after its first frame."""
    if kind == "bare":
        from textual.app import App, ComposeResult
        from textual.widgets import Footer, Static

        class BareApp(App[None]):
            def compose(self) -> ComposeResult:
                yield Static("hello")
                yield Footer()

        bare = BareApp()
        _mark_first_frame(bare)
        bare.run(headless=True)
        return

    from workbench.client.remote_services import RemoteServices
    from workbench.core.settings.paths import AppPaths
    from workbench.ui.app import WorkbenchApp

    def no_engine() -> dict[str, Any]:
        raise RuntimeError("the benchmark starts no engine")  # the link starts after the first frame anyway

    with tempfile.TemporaryDirectory(prefix="workbench-bench-") as home:
        # as `workbench` builds it: a face of the engine (the engine itself is started after the first frame)
        app = WorkbenchApp(RemoteServices(AppPaths.under(Path(home)), start=no_engine), import_defaults=False)
        _mark_first_frame(app)
        app.run(headless=True)


def measure(kind: str) -> tuple[float, list[str]]:
    """Seconds from just before the spawn to the child's first frame, and the heavy modules it had loaded."""
    with tempfile.TemporaryDirectory(prefix="startup-bench-") as tmp:
        mark = Path(tmp) / "mark.json"
        # Bytecode caching as on any normal machine: this sandbox sets PYTHONDONTWRITEBYTECODE, which would make
        # every run recompile the workbench's sources while Textual's come precompiled from pip.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {MARK_ENV: str(mark)}
        # One terminal size for everybody, as a real terminal gives: without a TTY, Rich's console (which sizes
        # the first layout) says 80x25 while the headless driver's first Resize says 80x24 (shutil's default),
        # so an app whose first screen is composed before that Resize (any app with MODES) lays out twice.
        env |= {"COLUMNS": str(TERMINAL[0]), "LINES": str(TERMINAL[1])}
        start = time.time()
        subprocess.run([sys.executable, __file__, "--child", kind], env=env, check=True, timeout=60)
        result = json.loads(mark.read_text())
    return result["t"] - start, result["heavy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="timed runs of each app (default 7)")
    parser.add_argument("--child", choices=("workbench", "bare"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    print(f"python {sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} cores")
    for kind in ("bare", "workbench"):
        seconds, _ = measure(kind)
        print(f"warm-up  {kind:<9} {seconds:.3f} s")

    times: dict[str, list[float]] = {"bare": [], "workbench": []}
    heavy_seen: set[str] = set()
    for n in range(1, args.rounds + 1):
        for kind in ("bare", "workbench"):
            seconds, heavy = measure(kind)
            times[kind].append(seconds)
            heavy_seen.update(heavy)
        print(f"round {n:<2} bare {times['bare'][-1]:.3f} s   workbench {times['workbench'][-1]:.3f} s")

    bare = statistics.median(times["bare"])
    workbench = statistics.median(times["workbench"])
    ratio = workbench / bare
    print(f"median   bare {bare:.3f} s   workbench {workbench:.3f} s   ratio {ratio:.2f}")
    if heavy_seen:
        print(f"WARNING: heavy modules imported before the first frame: {', '.join(sorted(heavy_seen))}")
    else:
        print("no heavy modules imported before the first frame")
    print(f"goals: startup_ratio <= {GOAL_RATIO} and startup_s < {GOAL_SECONDS}")
    print(f"RESULT startup_s={workbench:.3f} startup_ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
