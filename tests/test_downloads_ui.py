"""Pilot tests of the Downloads pane and the cache view, against the loopback hub."""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets import DataTable, Static
from textual.widgets.data_table import CellDoesNotExist

from tests.support.hub_repos import TINY_REPO_ID
from tests.support.hub_server import LoopbackHub
from tests.support.waits import wait_for
from workbench.bootstrap import build_services
from workbench.core.hub.downloads.jobs import JobState
from workbench.core.settings.paths import AppPaths
from workbench.ui.app import WorkbenchApp
from workbench.ui.screens.cache import CacheScreen
from workbench.ui.screens.dialogs import ConfirmScreen
from workbench.ui.screens.downloads import DownloadsPane, JobFilesScreen, short_name, speed_text

SIZE = (100, 30)
WAIT = 30


def downloads_app(paths: AppPaths, hub: LoopbackHub) -> WorkbenchApp:
    services = build_services(paths, hub_endpoint=hub.url, hf_cache=paths.data_dir / "hf-cache")
    return WorkbenchApp(services, import_defaults=False, scan_cache=False)


async def open_downloads(app: WorkbenchApp, pilot: Pilot) -> DownloadsPane:
    await pilot.press("2")
    await wait_for(pilot, lambda: isinstance(app.screen, DownloadsPane), "the Downloads pane")
    assert isinstance(app.screen, DownloadsPane)
    return app.screen


def cell(pane: DownloadsPane, job_id: int, column: str) -> str:
    """The cell's text, "" while the row is not listed yet."""
    try:
        return str(pane.query_one(DataTable).get_cell(str(job_id), column))
    except CellDoesNotExist:
        return ""


async def test_a_queued_repo_downloads_with_progress(app_paths: AppPaths, online_hub: LoopbackHub) -> None:
    app = downloads_app(app_paths, online_hub)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_downloads(app, pilot)
        assert "No downloads yet" in str(pane.query_one("#downloads-note").render())
        job = app.services.downloads.enqueue(TINY_REPO_ID)
        await wait_for(pilot, lambda: app.services.downloads.job(job.id).state is JobState.DONE, "the download")
        await wait_for(pilot, lambda: cell(pane, job.id, "state") == "done", "the row to say done")
        files = cell(pane, job.id, "files")
        done, total = files.split("/")
        assert done == total and int(total) >= 3
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, JobFilesScreen), "the job's files")
        assert app.screen.query_one("#job-files", DataTable).row_count == int(total)
        await pilot.press("escape")


async def test_pause_resume_cancel_and_reorder_by_keys(app_paths: AppPaths, online_hub: LoopbackHub) -> None:
    # The tiny repo's weights stall mid-file until the hub stops: the job cannot finish before the test cancels it,
    # however slow the machine (at 50 kB/s it once finished before 'c' beside busy loops).
    faults = online_hub.faults
    faults.only_path, faults.only_method = f"/{TINY_REPO_ID}/resolve/", "GET"  # only its weights pass 16 KiB
    faults.stall_after_bytes, faults.stall_s, faults.stall_times = 16_384, 600, None  # ends when the hub stops
    app = downloads_app(app_paths, online_hub)
    downloads = app.services.downloads
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_downloads(app, pilot)
        first = downloads.enqueue(TINY_REPO_ID)
        second = downloads.enqueue("mlx-community/Llama-3.2-1B-Instruct-4bit")
        await wait_for(pilot, lambda: downloads.job(first.id).state is JobState.DOWNLOADING, "downloading")
        pane.query_one(DataTable).move_cursor(row=0)
        await pilot.press("p")
        await wait_for(pilot, lambda: downloads.job(first.id).state is JobState.PAUSED, "paused")
        await pilot.press("p")
        await wait_for(pilot, lambda: downloads.job(first.id).state is not JobState.PAUSED, "resumed")

        await pilot.press("minus")  # the first job moves down the queue
        await wait_for(pilot, lambda: [j.id for j in downloads.jobs()] == [second.id, first.id], "moved down")
        await pilot.press("plus")
        await wait_for(pilot, lambda: [j.id for j in downloads.jobs()] == [first.id, second.id], "moved up")

        pane.query_one(DataTable).move_cursor(row=0)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("y")
        await wait_for(pilot, lambda: downloads.job(first.id).state is JobState.CANCELLED, "cancelled")
        await pilot.press("P")  # pause everything left
        settled = (JobState.PAUSED, JobState.CANCELLED, JobState.DONE)  # the small second repo may be done
        await wait_for(pilot, lambda: all(j.state in settled for j in downloads.jobs()), "everything paused")


async def test_cache_view_lists_and_deletes(app_paths: AppPaths, online_hub: LoopbackHub) -> None:
    app = downloads_app(app_paths, online_hub)
    downloads = app.services.downloads
    async with app.run_test(size=SIZE) as pilot:
        await open_downloads(app, pilot)
        job = downloads.enqueue(TINY_REPO_ID)
        await wait_for(pilot, lambda: downloads.job(job.id).state is JobState.DONE, "the download")
        await pilot.press("v")
        await wait_for(pilot, lambda: isinstance(app.screen, CacheScreen), "the cache view")
        screen = app.screen
        assert isinstance(screen, CacheScreen)
        await wait_for(pilot, lambda: bool(screen.rows), "the cache scan")
        assert screen.rows[0][0].repo_id == TINY_REPO_ID
        await pilot.press("D")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("y")
        await wait_for(pilot, lambda: not screen.rows, "the repo to go", timeout=WAIT)


def test_speed_reads_in_bytes_below_one_kb() -> None:
    assert speed_text(3_000) == "3 KB/s"
    assert speed_text(600) == "600 B/s" and speed_text(0.4) == "0 B/s"
    assert speed_text(5 * 1024 * 1024) == "5 MB/s"


def test_names_keep_their_distinguishing_tail() -> None:
    name = "mlx-community/SmolLM2-135M-Instruct-4bit"
    assert short_name(name, 40) == name
    assert short_name(name, 29) == "…/SmolLM2-135M-Instruct-4bit"
    assert short_name(name, 12) == "…" + name[-11:]


SMOL = "mlx-community/SmolLM2-135M-Instruct-8bit"


async def test_at_80_columns_bytes_speed_and_eta_are_on_screen(app_paths: AppPaths, online_hub: LoopbackHub) -> None:
    online_hub.faults.only_path, online_hub.faults.only_method = "/resolve/", "GET"
    online_hub.faults.bandwidth_bps = 600  # slower than 1 KB/s: the speed reads in B/s
    app = downloads_app(app_paths, online_hub)
    downloads = app.services.downloads
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_downloads(app, pilot)
        job = downloads.enqueue(SMOL)
        await wait_for(pilot, lambda: cell(pane, job.id, "speed").endswith(" B/s"), "a speed in B/s", timeout=WAIT)
        table = pane.query_one(DataTable)
        keys = [str(key.value) for key in table.columns]
        assert {"repo", "state", "bytes", "speed", "eta"} <= set(keys)
        assert table.virtual_size.width <= table.size.width  # nothing off-screen to the right
        assert cell(pane, job.id, "repo") == "…/SmolLM2-135M-Instruct-8bit"
        assert not cell(pane, job.id, "speed").startswith("0 ")
        await wait_for(pilot, lambda: cell(pane, job.id, "eta") != "", "an ETA")
        downloads.pause(job.id)


async def test_clear_retry_deleted_and_the_cancel_question(app_paths: AppPaths, online_hub: LoopbackHub) -> None:
    faults = online_hub.faults
    faults.only_path, faults.only_method = f"/{SMOL}/resolve/", "GET"  # SMOL's files stall: it stays running
    faults.stall_after_bytes, faults.stall_s, faults.stall_times = 1024, 600, None
    app = downloads_app(app_paths, online_hub)
    downloads = app.services.downloads
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_downloads(app, pilot)
        done = downloads.enqueue(TINY_REPO_ID)
        await wait_for(pilot, lambda: downloads.job(done.id).state is JobState.DONE, "the tiny download")
        running = downloads.enqueue(SMOL)
        await wait_for(pilot, lambda: downloads.job(running.id).state is JobState.DOWNLOADING, "downloading")
        await wait_for(pilot, lambda: cell(pane, running.id, "state") == "downloading", "its row")
        table = pane.query_one(DataTable)
        table.move_cursor(row=table.get_row_index(str(running.id)))
        note = lambda: str(pane.query_one("#downloads-note").render())  # noqa: E731
        await wait_for(pilot, lambda: "queue position 1 of 1" in note(), "a position among running jobs only")

        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        keys = str(app.screen.query_one(".dialog-keys", Static).render())
        assert "cancel it (deletes the partial file)" in keys and "esc: keep it" in keys
        await pilot.press("y")
        await wait_for(pilot, lambda: downloads.job(running.id).state is JobState.CANCELLED, "cancelled")
        await pilot.press("r")  # a cancelled job is queued again
        await wait_for(pilot, lambda: downloads.job(running.id).state is JobState.DOWNLOADING, "retried")
        downloads.cancel(running.id)
        await wait_for(pilot, lambda: downloads.job(running.id).state is JobState.CANCELLED, "cancelled again")

        table.move_cursor(row=table.get_row_index(str(done.id)))
        await pilot.press("r")  # nothing to retry: it says so
        await wait_for(pilot, lambda: any("only a failed or cancelled" in str(n.message)
                                          for n in app._notifications), "why not")  # fmt: skip

        await pilot.press("v")  # delete the done repo from the cache; back in the list it reads "deleted"
        await wait_for(pilot, lambda: isinstance(app.screen, CacheScreen), "the cache view")
        cache_view = app.screen
        assert isinstance(cache_view, CacheScreen)
        await wait_for(pilot, lambda: any(r[0].repo_id == TINY_REPO_ID for r in cache_view.rows), "the scan")
        cache_view.query_one(DataTable).move_cursor(
            row=next(i for i, r in enumerate(cache_view.rows) if r[0].repo_id == TINY_REPO_ID)
        )
        await pilot.press("D")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("y")
        await wait_for(pilot, lambda: all(r[0].repo_id != TINY_REPO_ID for r in cache_view.rows), "the repo to go")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is pane, "back to Downloads")
        await wait_for(pilot, lambda: cell(pane, done.id, "state") == "deleted", "the row to say deleted")

        await pilot.press("x")  # finished and cancelled jobs leave the list
        await wait_for(pilot, lambda: table.row_count == 0 and not downloads.jobs(), "the list cleared")
