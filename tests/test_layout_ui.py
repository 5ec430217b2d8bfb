"""Issue 15, points 3 and 6 in the Catalog: columns take the width there is, names keep their variant, narrow
screens drop the least useful columns first; the filters apply to the curated rows, the Local column follows
downloads, End and Home go to the last and first row."""

from __future__ import annotations

from textual.geometry import Region
from textual.pilot import Pilot
from textual.widget import Widget
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

NARROW, WIDE = (80, 24), (120, 40)
WAIT = 60  # a bound against hanging, not an expected duration


def screen_lines(widget: Widget) -> list[str]:
    """The widget's lines as drawn (the visible part of a table)."""
    return [strip.text for strip in widget.render_lines(Region(0, 0, *widget.outer_size))]


def catalog_app(paths: AppPaths, hub: LoopbackHub) -> WorkbenchApp:
    services = build_services(paths, hub_endpoint=hub.url, hf_cache=paths.data_dir / "hf-cache")  # not the shared one
    return WorkbenchApp(services, import_defaults=False, scan_cache=False)


async def searched(app: WorkbenchApp, pilot: Pilot, shown: int = 0) -> CatalogPane:
    await wait_for(pilot, lambda: isinstance(app.screen, CatalogPane) and app.screen.outcomes_shown > shown,
                   "a search", timeout=WAIT)  # fmt: skip
    return app.screen  # type: ignore[return-value]


def table_of(pane: CatalogPane) -> DataTable:
    return pane.query_one(DataTable)


async def test_at_80_columns_the_names_keep_their_variant_and_the_fit_and_local_columns_show(
    app_paths: AppPaths, online_hub: LoopbackHub
) -> None:
    app = catalog_app(app_paths, online_hub)
    async with app.run_test(size=NARROW) as pilot:
        pane = await searched(app, pilot)
        await pilot.pause()
        lines = screen_lines(table_of(pane))
        assert all(len(line.rstrip()) <= NARROW[0] for line in lines)
        header = lines[0].split()
        assert header[:2] == ["Model", "Fit"] and "Local" in header and "Updated" not in header
        deepseek = [line for line in lines if "DeepSeek" in line]
        assert len(deepseek) == 2 and deepseek[0] != deepseek[1]
        assert "1.5B-4bit" in deepseek[0] and "7B-4bit" in deepseek[1]
        assert any("SmolLM2-135M-Instruct-4bit" in line for line in lines)


async def test_at_120_columns_downloads_likes_and_updated_show_and_names_are_whole(
    app_paths: AppPaths, online_hub: LoopbackHub
) -> None:
    app = catalog_app(app_paths, online_hub)
    async with app.run_test(size=WIDE) as pilot:
        pane = await searched(app, pilot)
        await pilot.pause()
        lines = screen_lines(table_of(pane))
        assert lines[0].split() == ["Model", "Fit", "Size", "Params", "Quant", "Local", "Downloads", "Likes",
                                    "Updated"]  # fmt: skip
        assert any("mlx-community/SmolLM2-135M-Instruct-8bit" in line for line in lines)
        await pilot.resize_terminal(*NARROW)  # the columns follow the terminal's width
        await wait_for(pilot, lambda: "Updated" not in screen_lines(table_of(pane))[0], "the narrow columns")


async def test_filters_apply_to_the_curated_rows_and_the_hub_part_says_no_results(
    app_paths: AppPaths, online_hub: LoopbackHub
) -> None:
    app = catalog_app(app_paths, online_hub)
    async with app.run_test(size=NARROW) as pilot:
        pane = await searched(app, pilot)
        shown = pane.outcomes_shown
        await pilot.press("t", "t")  # task: feature-extraction
        pane = await searched(app, pilot, shown + 1)
        curated = [row for row in pane.rows if isinstance(row, CatalogEntry)]
        assert curated and all(entry.kind == "embedding" for entry in curated)
        shown = pane.outcomes_shown
        await pilot.press("a", *"Qwen", "enter")
        pane = await searched(app, pilot, shown)
        await wait_for(pilot, lambda: pane.query_state.author == "Qwen" and pane.outcomes_shown > shown,
                       "the search by author", timeout=WAIT)  # fmt: skip
        assert not [row for row in pane.rows if isinstance(row, CatalogEntry)]
        status = str(pane.query_one("#catalog-status").render())
        assert "author: Qwen" in status and "no results" in status


async def test_end_and_home_go_to_the_last_and_first_row(app_paths: AppPaths, online_hub: LoopbackHub) -> None:
    app = catalog_app(app_paths, online_hub)
    async with app.run_test(size=NARROW) as pilot:
        pane = await searched(app, pilot)
        table = table_of(pane)
        await pilot.press("end")
        await wait_for(pilot, lambda: table.cursor_row == table.row_count - 1, "the last row")
        assert table.scroll_x == 0
        await pilot.press("home")
        await wait_for(pilot, lambda: table.cursor_row == 0, "the first row")


async def test_the_local_column_updates_when_a_download_finishes(app_paths: AppPaths,
                                                                 online_hub: LoopbackHub) -> None:
    app = catalog_app(app_paths, online_hub)
    async with app.run_test(size=NARROW) as pilot:
        pane = await searched(app, pilot)
        row = next(i for i, item in enumerate(pane.rows) if isinstance(item, HubModel) and item.repo_id == TINY_REPO_ID)
        local = list(table_of(pane).columns).index("Local")  # type: ignore[arg-type]
        assert str(table_of(pane).get_cell_at((row, local))) == "–"
        table_of(pane).move_cursor(row=row)
        await pilot.press("d")
        await wait_for(pilot, lambda: str(table_of(pane).get_cell_at((row, local))) == "downloaded",
                       "Local: downloaded", timeout=WAIT)  # fmt: skip
