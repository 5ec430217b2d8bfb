"""Pilot tests of the Catalog pane against the loopback hub."""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets import DataTable

from tests.support.hub_repos import TINY_REPO_ID
from tests.support.hub_server import LoopbackHub
from tests.support.waits import wait_for
from workbench.bootstrap import build_services
from workbench.core.hub.client import HubModel
from workbench.core.hub.curated import CatalogEntry
from workbench.core.settings.paths import AppPaths
from workbench.ui.app import WorkbenchApp
from workbench.ui.screens.catalog import CatalogPane
from workbench.ui.screens.catalog_details import DetailsScreen

SIZE = (100, 30)
WAIT = 60  # a bound against hanging, not an expected duration


def catalog_app(paths: AppPaths, hub: LoopbackHub | None, endpoint: str | None = None) -> WorkbenchApp:
    services = build_services(paths, hub_endpoint=endpoint or (hub.url if hub else None))
    return WorkbenchApp(services, import_defaults=False, scan_cache=False)


async def first_search(app: WorkbenchApp, pilot: Pilot) -> CatalogPane:
    """The pane once the search it starts by itself has shown its outcome (a page or an error)."""
    await wait_for(pilot, lambda: isinstance(app.screen, CatalogPane) and app.screen.outcomes_shown > 0,
                   "the first search", timeout=WAIT)  # fmt: skip
    return app.screen  # type: ignore[return-value]


async def search_by_keys(pilot: Pilot, pane: CatalogPane, *keys: str) -> None:
    """Press keys that start one search, then wait until its outcome is shown."""
    shown = pane.outcomes_shown
    await pilot.press(*keys)
    await wait_for(pilot, lambda: pane.outcomes_shown > shown, f"the search after {keys}", timeout=WAIT)


async def details_loaded(pilot: Pilot, app: WorkbenchApp) -> DetailsScreen:
    await wait_for(pilot, lambda: isinstance(app.screen, DetailsScreen)
                   and "loading…" not in str(app.screen.query_one("#details-head").render()),
                   "the details", timeout=WAIT)  # fmt: skip
    return app.screen  # type: ignore[return-value]


def hub_rows(pane: CatalogPane) -> list[HubModel]:
    return [row for row in pane.rows if isinstance(row, HubModel)]


def status(pane: CatalogPane) -> str:
    return str(pane.query_one("#catalog-status").render())


async def test_curated_first_then_hub_results_with_verdicts(app_paths: AppPaths, online_hub: LoopbackHub) -> None:
    app = catalog_app(app_paths, online_hub)
    async with app.run_test(size=SIZE) as pilot:
        pane = await first_search(app, pilot)
        curated = [row for row in pane.rows if isinstance(row, CatalogEntry)]
        assert curated and pane.rows[: len(curated)] == curated
        assert hub_rows(pane) and all(m.is_mlx for m in hub_rows(pane))
        table = pane.query_one(DataTable)
        fit_column = [str(table.get_cell_at((row, 1))) for row in range(table.row_count)]
        assert set(fit_column) <= {"fits", "tight", "won't fit", "fits≈", "tight≈", "won't fit≈", "?"}
        assert "MLX builds" in status(pane) and "sort: downloads" in status(pane)


async def test_search_filter_sort_and_paging_by_keys(app_paths: AppPaths, online_hub: LoopbackHub) -> None:
    app = catalog_app(app_paths, online_hub)
    async with app.run_test(size=SIZE) as pilot:
        pane = await first_search(app, pilot)
        await search_by_keys(pilot, pane, "slash", *"tiny", "enter")
        assert [m.repo_id for m in hub_rows(pane)] == [TINY_REPO_ID]
        await search_by_keys(pilot, pane, "slash", "end", *["backspace"] * 4, "enter")  # clear the search
        await search_by_keys(pilot, pane, "s")
        assert "sort: likes" in status(pane)
        likes = [m.likes for m in hub_rows(pane)]
        assert likes and likes == sorted(likes, reverse=True)
        await search_by_keys(pilot, pane, "f")
        assert "all models" in status(pane)
        listing = [r for r in online_hub.requests if r.path == "/api/models"][-1]
        assert "filter" not in listing.query and "sort=likes" in listing.query
        first_page = [m.repo_id for m in hub_rows(pane)]
        assert pane.result is not None and pane.result.has_next
        await search_by_keys(pilot, pane, "right_square_bracket")
        assert "page 2" in status(pane) and set(first_page).isdisjoint(m.repo_id for m in hub_rows(pane))
        await search_by_keys(pilot, pane, "left_square_bracket")
        assert [m.repo_id for m in hub_rows(pane)] == first_page


async def test_details_and_queueing_a_download(app_paths: AppPaths, online_hub: LoopbackHub) -> None:
    app = catalog_app(app_paths, online_hub)
    async with app.run_test(size=SIZE) as pilot:
        pane = await first_search(app, pilot)
        await search_by_keys(pilot, pane, "slash", *"tiny", "enter")
        pane.query_one(DataTable).move_cursor(row=pane.rows.index(hub_rows(pane)[0]))
        await pilot.press("enter")
        details = await details_loaded(pilot, app)
        assert details.details is not None
        head = str(details.query_one("#details-head").render())
        assert "apache-2.0" in head and "download" in head and "files" in head
        assert details.query_one("#details-files", DataTable).row_count >= 3
        await pilot.press("d")
        await wait_for(pilot, lambda: len(app.services.downloads.jobs()) == 1, "the job from the details")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is pane, "back to the list")
        earlier = {n.identity for n in app._notifications}
        await pilot.press("d")  # from the list too: queuing twice is a no-op
        await wait_for(pilot, lambda: any("Queued" in n.message and n.identity not in earlier
                                          for n in app._notifications), "the notice from the list")  # fmt: skip
        jobs = app.services.downloads.jobs()
        assert [j.repo_id for j in jobs] == [TINY_REPO_ID] and "model.safetensors" in jobs[0].files


async def test_errors_show_in_the_pane_with_a_retry(app_paths: AppPaths, online_hub: LoopbackHub) -> None:
    online_hub.faults.rate_limit, online_hub.faults.retry_after_s = 1, 30
    app = catalog_app(app_paths, online_hub)
    async with app.run_test(size=SIZE) as pilot:
        pane = await first_search(app, pilot)
        assert "rate limited" in status(pane) and "30 s" in status(pane) and "r retries" in status(pane)
        online_hub.faults.server_error = 1
        await search_by_keys(pilot, pane, "r")
        assert "server error" in status(pane) and "500" in status(pane)
        await search_by_keys(pilot, pane, "r")
        assert hub_rows(pane) and "error" not in status(pane)


async def test_offline_the_curated_catalog_and_the_last_results_stay(app_paths: AppPaths,
                                                                     online_hub: LoopbackHub) -> None:  # fmt: skip
    app = catalog_app(app_paths, online_hub)
    async with app.run_test(size=SIZE) as pilot:
        pane = await first_search(app, pilot)
        seen = [m.repo_id for m in hub_rows(pane)]
        assert seen
    url = online_hub.url
    online_hub.stop()
    again = catalog_app(app_paths, None, endpoint=url)
    async with again.run_test(size=SIZE) as pilot:
        pane = await first_search(again, pilot)
        assert [m.repo_id for m in hub_rows(pane)] == seen
        assert "cached, just now" in status(pane)
        assert any(isinstance(row, CatalogEntry) for row in pane.rows)
    fresh_home = AppPaths.under(app_paths.config_dir.parent.parent / "elsewhere")
    never = catalog_app(fresh_home, None, endpoint=url)
    async with never.run_test(size=SIZE) as pilot:
        pane = await first_search(never, pilot)
        assert "offline" in status(pane) and len(pane.rows) >= 15  # curated only


async def test_a_gated_repo_says_what_to_do_in_its_details(app_paths: AppPaths, online_hub: LoopbackHub) -> None:
    app = catalog_app(app_paths, online_hub)
    async with app.run_test(size=SIZE) as pilot:
        await first_search(app, pilot)
        await app.push_screen(DetailsScreen("meta-llama/Llama-3.2-3B-Instruct"))
        details = await details_loaded(pilot, app)
        head = str(details.query_one("#details-head").render())
        assert "gated" in head and "accept its licence" in head and "HF_TOKEN" in head and "r retries" in head
