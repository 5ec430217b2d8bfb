"""Issue 15, point 3 outside the Catalog: at 80 columns the Models view shows name, state, pin and size; the
leaderboard's columns are readable; heatmap cells show numbers; the status strip keeps the import's progress; the
footer shows whole keys only."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from textual.geometry import Region
from textual.widget import Widget

from tests.support.waits import wait_for
from workbench.bootstrap import build_services
from workbench.core.models.memory import GB, Budget, MemorySnapshot
from workbench.core.settings.paths import AppPaths
from workbench.ui.app import WorkbenchApp
from workbench.ui.screens.leaderboard import LeaderboardScreen
from workbench.ui.screens.models import ModelsPane
from workbench.ui.widgets.footer import KeyFooter
from workbench.ui.widgets.heatmap import HeatmapView, similarity_text
from workbench.ui.widgets.memory_strip import MemoryStrip, render_strip

NARROW = (80, 24)
LONG_NAME = "a-local-copy-of-SmolLM2-135M-Instruct-4bit"


def screen_lines(widget: Widget) -> list[str]:
    return [strip.text for strip in widget.render_lines(Region(0, 0, *widget.outer_size))]


def make_app(paths: AppPaths) -> WorkbenchApp:
    return WorkbenchApp(build_services(paths), import_defaults=False, scan_cache=False)


async def test_the_models_view_shows_name_state_pin_and_size_at_80_columns(
    app_paths: AppPaths, tiny_models: dict[str, Path]
) -> None:
    shutil.copytree(tiny_models["small"], app_paths.models_dir / LONG_NAME)
    app = make_app(app_paths)
    async with app.run_test(size=NARROW) as pilot:
        await pilot.press("6")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelsPane) and app.screen.selected() is not None,
                       "the Models view with a model")  # fmt: skip
        table = app.screen.query_one("#models-table")
        await wait_for(pilot, lambda: "Pin" in screen_lines(table)[0], "the columns laid out")
        assert screen_lines(table)[0].split()[:4] == ["Model", "State", "Pin", "Estimate"]
        row = next(line for line in screen_lines(table) if "135M-Instruct-4bit" in line)
        assert "unloaded" in row and "pinned" not in row
        await pilot.press("p")
        await wait_for(pilot, lambda: any("pinned" in line for line in screen_lines(table)), "the pin shown")


async def test_the_leaderboard_columns_are_readable_at_80_columns(app_paths: AppPaths,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(app_paths)
    votes = [("mlx-community/Qwen2.5-7B-Instruct-4bit (temperature 0.7)", "mlx-community/SmolLM2-135M-Instruct-4bit "
              "(temperature 0.2)", "a")] * 3  # fmt: skip
    monkeypatch.setattr(app.services.store.votes, "compare_votes", lambda: votes)
    async with app.run_test(size=NARROW) as pilot:
        await pilot.pause()
        await app.push_screen(LeaderboardScreen())
        table = await wait_for_table(pilot, app)
        header = screen_lines(table)[0]
        assert "…" not in header and header.split()[-2:] == ["Win", "rate"] and "Both bad" in header
        assert any("100%" in line for line in screen_lines(table))
        rows = screen_lines(table)[1:3]
        assert "Qwen2.5" in rows[0] and "0.7)" in rows[0] and "SmolLM2" in rows[1] and "0.2)" in rows[1]


async def wait_for_table(pilot, app: WorkbenchApp) -> Widget:
    def shown() -> bool:
        if not isinstance(app.screen, LeaderboardScreen):
            return False
        table = app.screen.query_one("#leaderboard")
        lines = screen_lines(table)
        return table.row_count == 2 and bool(lines) and "Win rate" in lines[0]

    await wait_for(pilot, shown, "the leaderboard laid out")
    return app.screen.query_one("#leaderboard")


async def test_heatmap_cells_show_their_numbers_at_80_columns(app_paths: AppPaths) -> None:
    app = make_app(app_paths)
    labels = [f"a passage about topic number {i} with a long title" for i in range(10)]
    rng = np.random.default_rng(1)
    matrix = rng.uniform(0.1, 0.9, (10, 10))
    np.fill_diagonal(matrix, 1.0)
    async with app.run_test(size=NARROW) as pilot:
        view = HeatmapView()
        await app.screen.mount(view)
        view.show("similarities", labels, matrix)
        await pilot.pause()
        lines = screen_lines(view.query_one("#heatmap"))
        row = next(line for line in lines if line.lstrip().startswith("3 "))
        assert "…" in row.split()[1] or len(row) <= 80  # the label gives way, not the values
        assert row.split()[-10:] == [similarity_text(v) if i != 2 else "1" for i, v in enumerate(matrix[2])]


def test_similarities_fit_in_four_characters() -> None:
    assert [similarity_text(v) for v in (0.823, 0.05, -0.123, 1.0, 0.999)] == [".82", ".05", "-.12", "1", "1"]


def test_the_strip_keeps_the_import_progress_when_narrow() -> None:
    snapshot = MemorySnapshot(system_total=16 * GB, system_used=9 * GB, process_rss=GB // 2, mlx_active=0)
    activity = "importing mlx-community/SmolLM2-360M-Instruct-4bit · 40 %"
    for width in (78, 118, 60):
        text = render_strip(snapshot, Budget(8 * GB, "test"), 0, [], activity, width)
        assert text.cell_len <= width and text.plain.endswith("40 %"), text.plain
    assert "SmolLM2-360M-Instruct-4bit" in render_strip(snapshot, Budget(8 * GB, "test"), 0, [], activity, 118).plain


async def test_the_strip_and_footer_at_80_columns(app_paths: AppPaths) -> None:
    app = make_app(app_paths)
    async with app.run_test(size=NARROW) as pilot:
        await wait_for(pilot, lambda: "RAM" in str(app.screen.query_one(MemoryStrip).render()), "memory figures")
        app.activity = "importing mlx-community/SmolLM2-360M-Instruct-4bit · 40 %"
        strip = app.screen.query_one(MemoryStrip)
        await wait_for(pilot, lambda: screen_lines(strip)[0].rstrip().endswith("40 %"), "the progress on the strip")
        footer = app.screen.query_one(KeyFooter)
        line = screen_lines(footer)[0]
        shown = [entry for entry in footer.entries() if f" {entry.keys[0][1]} {entry.description} " in line]
        assert shown and len(shown) < len(footer.entries())  # at 80 columns some keys are left out, whole
        cut = line.split("▏")[0].rstrip()
        assert cut.endswith(shown[-1].description), f"a half key at the end: {cut!r}"


async def test_the_chat_status_stays_one_line_at_80_columns() -> None:
    """ "reading the prompt · 4 % · T 0 · max 512" once wrapped "· max 512" onto a second line under the model box."""
    from textual.app import App, ComposeResult

    from workbench.core.chat.sampling import SamplingSettings
    from workbench.ui.widgets.chat_model_bar import ChatModelBar

    class Bar(App[None]):
        def compose(self) -> ComposeResult:
            yield ChatModelBar()

    app = Bar()
    async with app.run_test(size=(80, 24)) as pilot:
        bar = app.query_one(ChatModelBar)
        bar.show_status(None, SamplingSettings(temperature=0.0, max_tokens=512))
        bar.show_activity("reading the prompt · 40 %")
        await pilot.pause()
        status = app.query_one("#chat-status")
        assert status.size.height == 1 and status.size.width <= 32
