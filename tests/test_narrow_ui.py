"""At 80 columns text wraps to the width: nothing is cut off, no line breaks early where a wider screen needed it."""

from __future__ import annotations

from itertools import pairwise

from textual.geometry import Region
from textual.widget import Widget

from tests.support.hub_server import LoopbackHub
from tests.support.waits import wait_for
from workbench.bootstrap import build_services
from workbench.core.settings.paths import AppPaths
from workbench.ui.app import WorkbenchApp
from workbench.ui.screens.catalog import CatalogPane
from workbench.ui.screens.chat import ChatPane

SIZE = (80, 24)


def shown_lines(widget: Widget) -> list[str]:
    """The widget's lines as drawn on screen, with the left padding; blank lines above and below dropped."""
    lines = [strip.text.rstrip() for strip in widget.render_lines(Region(0, 0, *widget.outer_size))]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def assert_wrapped(widget: Widget) -> None:
    """Every word of the widget's text is on screen, in order, and a line ends early only where the text has a
    line break: otherwise the next word would not have fitted on it."""
    source = str(widget.render())
    lines = shown_lines(widget)
    assert " ".join(lines).split() == source.split(), f"text cut off: {lines}"
    breaks, count = set(), 0
    for source_line in source.splitlines():
        count += len(source_line.split())
        breaks.add(count)
    usable = widget.outer_size.width - widget.styles.padding.right
    count = 0
    for line, after in pairwise(lines):
        count += len(line.split())
        if count in breaks or not after.split():
            continue
        next_word = after.split()[0]
        assert len(line) + 1 + len(next_word) > usable, f"{line!r} broke before {next_word!r}, which fitted"


async def test_the_chat_hint_wraps_at_80_columns(app_paths: AppPaths) -> None:
    app = WorkbenchApp(build_services(app_paths), import_defaults=False, scan_cache=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatPane) and app.screen.query("#empty-hint"),
                       "the Chat pane's hint")  # fmt: skip
        hint = app.screen.query_one("#empty-hint")
        await wait_for(pilot, lambda: hint.outer_size.width > 0, "the hint laid out")
        assert hint.outer_size.width <= SIZE[0]
        for topic in str(hint.render()).splitlines():
            assert topic.endswith("."), f"a line break made for a wider screen: {topic!r}"
        assert_wrapped(hint)


async def test_the_catalog_status_wraps_at_80_columns(app_paths: AppPaths, online_hub: LoopbackHub) -> None:
    url = online_hub.url
    online_hub.stop()  # nothing answers there: the status line carries the long 'cannot reach the hub' message
    app = WorkbenchApp(build_services(app_paths, hub_endpoint=url), import_defaults=False, scan_cache=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, CatalogPane) and app.screen.outcomes_shown > 0,
                       "the first search")  # fmt: skip
        status = app.screen.query_one("#catalog-status")
        assert "showing what is cached" in str(status.render())
        await wait_for(pilot, lambda: len(shown_lines(status)) > 1, "the status on more than one line")
        assert_wrapped(status)
