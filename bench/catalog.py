"""Catalog benchmark: hub search through the workbench vs plain huggingface_hub, and pane open to first page.

Both parts run against one loopback hub (``tests.support.hub_server``) on 127.0.0.1 holding the demo catalog
plus 60 small repos (so the MLX listing fills a page of 30), with a fixed per-request latency (``--latency``)
so that it looks a little like a network.

1. Search latency, alternating in one process (which goes first swaps every round):

   - raw: ``list(islice(HfApi(endpoint=url).list_models(search=..., filter="mlx", sort="downloads",
     expand=EXPAND, limit=30), 30))``;
   - wb:  ``HubCatalog(cache_dir, endpoint=url).search(SearchQuery(text=..., mlx_only=True, sort="downloads",
     page_size=30))``, a fresh catalog for every call (nothing served from memory; its write of the page to
     the disk cache is part of its cost).

   ``catalog_ratio`` = median(wb) / median(raw) over every query and round.

2. Pane open to first page: the real app, headless, in a fresh process and a fresh home each run (no page on
   disk, huggingface_hub not yet imported: what a person gets). From just before ``run_test`` enters to the
   moment the Catalog pane's table holds hub results (``first_page_s``, the median), and to the first frame
   painted with the curated rows (before the hub answers).

    .venv/bin/python bench/catalog.py [--rounds 20] [--latency 0.02] [--app-runs 5] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.support

QUERIES = ("", "qwen", "instruct")
PAGE_SIZE = 30
MANY_REPOS = 60
SIZE = (120, 40)
POLL_S = 0.01
FIRST_PAGE_TIMEOUT_S = 30.0
CHILD_TIMEOUT_S = 90.0
PROFILE_CALLS = 30
GOAL_RATIO = 1.2
MARK_ENV = "BENCH_MARK_FILE"


def hub_environment(hf_home: Path) -> dict[str, str]:
    """The environment for huggingface_hub: online, quiet, plain HTTP downloads, its own cache."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_ENDPOINT")}
    env |= {"HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(hf_home)}
    return env


def apply_environment(env: dict[str, str]) -> None:
    if "huggingface_hub" in sys.modules:
        raise RuntimeError("huggingface_hub was imported before its environment was set")
    for key in ("HF_HUB_OFFLINE", "HF_ENDPOINT"):
        os.environ.pop(key, None)
    os.environ.update(env)


# --- part 1: search latency --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timed:
    seconds: float
    ids: tuple[str, ...]


def raw_search(url: str, text: str) -> Timed:
    from huggingface_hub import HfApi

    from workbench.core.hub.client import EXPAND

    started = time.perf_counter()
    models = list(
        islice(
            HfApi(endpoint=url).list_models(
                search=text or None, filter="mlx", sort="downloads", expand=list(EXPAND), limit=PAGE_SIZE
            ),
            PAGE_SIZE,
        )
    )
    seconds = time.perf_counter() - started
    return Timed(seconds, tuple(m.id for m in models))


def workbench_search(url: str, cache_dir: Path, text: str) -> Timed:
    from workbench.core.hub.client import HubCatalog, SearchQuery

    query = SearchQuery(text=text, mlx_only=True, sort="downloads", page_size=PAGE_SIZE)
    started = time.perf_counter()
    page = HubCatalog(cache_dir, endpoint=url).search(query)  # fresh: nothing in memory
    seconds = time.perf_counter() - started
    if page.from_cache:
        raise RuntimeError("the workbench served a cached page: the hub search failed")
    return Timed(seconds, tuple(m.repo_id for m in page.models))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:6.1f} ms"


def search_latency(url: str, cache_dir: Path, rounds: int) -> tuple[list[float], list[float]]:
    """Alternating raw and workbench searches; returns every raw and every workbench time."""
    for text in QUERIES:  # warm-up of each (connections, imports, the hub's hash cache)
        raw, ours = raw_search(url, text), workbench_search(url, cache_dir, text)
        print(f"warm-up  {text or '(all)':<9} raw {ms(raw.seconds)}   wb {ms(ours.seconds)}   {len(raw.ids)} models")
        if raw.ids != ours.ids:
            print(f"WARNING: different results for {text!r}: raw {len(raw.ids)}, wb {len(ours.ids)} models")

    times: dict[str, dict[str, list[float]]] = {t: {"raw": [], "wb": []} for t in QUERIES}
    for n in range(1, rounds + 1):
        line = []
        for text in QUERIES:
            kinds = ("raw", "wb") if n % 2 else ("wb", "raw")
            for kind in kinds:
                timed = raw_search(url, text) if kind == "raw" else workbench_search(url, cache_dir, text)
                times[text][kind].append(timed.seconds)
            line.append(f"{text or '(all)'} raw {ms(times[text]['raw'][-1])} wb {ms(times[text]['wb'][-1])}")
        print(f"round {n:<2}  " + "   ".join(line))

    for text in QUERIES:
        raw_med, wb_med = statistics.median(times[text]["raw"]), statistics.median(times[text]["wb"])
        print(f"median   {text or '(all)':<9} raw {ms(raw_med)}   wb {ms(wb_med)}   ratio {wb_med / raw_med:.2f}")
    raw_all = [s for t in QUERIES for s in times[t]["raw"]]
    wb_all = [s for t in QUERIES for s in times[t]["wb"]]
    return raw_all, wb_all


def profile_search(url: str, cache_dir: Path) -> None:
    """Where HubCatalog.search spends its time (fresh catalogs, the query that fills a page)."""
    from workbench.core.hub.client import HubCatalog, SearchQuery

    query = SearchQuery(text="", mlx_only=True, sort="downloads", page_size=PAGE_SIZE)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(PROFILE_CALLS):
        HubCatalog(cache_dir, endpoint=url).search(query)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("cumulative")
    stats.print_stats(30)
    print(f"profile  HubCatalog.search, {PROFILE_CALLS} calls (cumulative, top 30):")
    print(out.getvalue().rstrip())


# --- part 2: pane open to first page, in a child process ---------------------------------------------------


@dataclass(frozen=True)
class AppRun:
    first_frame_s: float  # app start to the first frame painted with the curated rows
    first_page_s: float  # app start to the hub's results in the table
    curated: int
    rows: int
    hub_imported_before: bool


async def open_catalog(url: str, home: Path) -> AppRun:
    from textual.widgets import DataTable

    from workbench.bootstrap import build_services
    from workbench.core.settings.paths import AppPaths
    from workbench.ui.app import WorkbenchApp
    from workbench.ui.screens.catalog import CatalogPane

    app = WorkbenchApp(build_services(AppPaths.under(home), hub_endpoint=url), import_defaults=False,
                       scan_cache=False)  # fmt: skip
    hub_imported_before = "huggingface_hub" in sys.modules
    painted: list[float] = []
    asked_paint = False
    started = time.perf_counter()
    async with app.run_test(size=SIZE, headless=True) as pilot:
        deadline = started + FIRST_PAGE_TIMEOUT_S
        while True:
            screen = app.screen
            if isinstance(screen, CatalogPane) and screen.is_mounted:
                if screen.error is not None:
                    raise RuntimeError(f"the Catalog pane shows an error: {screen.error.kind}: {screen.error}")
                table = screen.query_one("#catalog-table", DataTable)
                curated = len(screen.curated_rows())
                if not asked_paint and table.row_count >= curated:
                    asked_paint = True  # the rows are in: note when the frame holding them is painted
                    app.call_after_refresh(lambda: painted.append(time.perf_counter()))
                result = screen.result
                if result is not None and not result.from_cache and table.row_count > curated:
                    first_page = time.perf_counter()
                    rows = table.row_count
                    break
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no hub results in the Catalog pane within {FIRST_PAGE_TIMEOUT_S:.0f} s")
            await pilot.pause(POLL_S)
        if not painted:
            await pilot.pause()
    first_frame = painted[0] if painted else first_page
    return AppRun(first_frame - started, first_page - started, curated, rows, hub_imported_before)


def child(url: str) -> None:
    with tempfile.TemporaryDirectory(prefix="catalog-bench-home-") as tmp:
        run = asyncio.run(open_catalog(url, Path(tmp)))
    Path(os.environ[MARK_ENV]).write_text(json.dumps(run.__dict__))


def measure_app(url: str, env: dict[str, str]) -> AppRun:
    with tempfile.TemporaryDirectory(prefix="catalog-bench-mark-") as tmp:
        mark = Path(tmp) / "mark.json"
        subprocess.run([sys.executable, __file__, "--child", url], env={**env, MARK_ENV: str(mark)}, check=True,
                       timeout=CHILD_TIMEOUT_S)  # fmt: skip
        return AppRun(**json.loads(mark.read_text()))


def show_app(label: str, run: AppRun) -> None:
    note = "" if not run.hub_imported_before else "  (huggingface_hub imported before start)"
    print(f"{label:<8} first frame {run.first_frame_s:.3f} s ({run.curated} curated rows)   "
          f"first page {run.first_page_s:.3f} s ({run.rows} rows){note}")  # fmt: skip


# --- the benchmark ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="timed searches of each kind per query (default 20)")
    parser.add_argument("--latency", type=float, default=0.02, help="hub latency per request, s (default 0.02)")
    parser.add_argument("--app-runs", type=int, default=5, help="timed app starts (default 5)")
    parser.add_argument("--profile", action="store_true", help="also profile HubCatalog.search (cProfile)")
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    if args.rounds < 1 or args.app_runs < 1 or args.latency < 0:
        parser.error("--rounds and --app-runs must be at least 1, --latency at least 0")

    with tempfile.TemporaryDirectory(prefix="catalog-bench-") as tmp:
        work = Path(tmp)
        env = hub_environment(work / "hf-home")
        apply_environment(env)

        import huggingface_hub

        from tests.support.hub_repos import make_demo_hub, make_many_repos
        from tests.support.hub_server import LoopbackHub

        repos = work / "repos"
        count = len(make_demo_hub(repos)) + len(make_many_repos(repos, MANY_REPOS))
        hub = LoopbackHub(repos)
        url = hub.start()
        try:
            hub.faults.latency_s = args.latency
            print(f"python {sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} cores, "
                  f"huggingface_hub {huggingface_hub.__version__}")  # fmt: skip
            print(f"hub      {url}: {count} repos, latency {args.latency * 1000:.0f} ms per request, "
                  f"queries {', '.join(repr(q) for q in QUERIES)}, {args.rounds} rounds")  # fmt: skip

            raw_all, wb_all = search_latency(url, work / "hub-cache", args.rounds)
            raw_med, wb_med = statistics.median(raw_all), statistics.median(wb_all)
            ratio = wb_med / raw_med
            print(f"median   all       raw {ms(raw_med)}   wb {ms(wb_med)}   ratio {ratio:.2f}")
            if args.profile:
                profile_search(url, work / "hub-cache")

            show_app("warm-up", measure_app(url, env))
            runs = []
            for n in range(1, args.app_runs + 1):
                runs.append(measure_app(url, env))
                show_app(f"run {n}", runs[-1])
        finally:
            hub.stop()

    first_frame = statistics.median(r.first_frame_s for r in runs)
    first_page = statistics.median(r.first_page_s for r in runs)
    print(f"median   first frame {first_frame:.3f} s   first page {first_page:.3f} s")
    print(f"goals: catalog_ratio <= {GOAL_RATIO} (first_page_s {first_page:.3f} s, for information)")
    print(f"RESULT catalog_ratio={ratio:.2f} first_page_s={first_page:.3f}")


if __name__ == "__main__":
    main()
