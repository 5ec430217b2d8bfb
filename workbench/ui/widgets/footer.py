"""The key footer of every pane: one line of text, redrawn (not recomposed) when the screen's keys change.

Textual's Footer is a widget per key (each styled through the CSS engine) and composes them again after every
focus change; with a pane's dozen keys that was a third of the time to the first frame. This one renders the
same line from ``screen.active_bindings`` in a single widget; a click on a key presses it, as in Footer.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget


@dataclass(frozen=True)
class FooterEntry:
    keys: tuple[tuple[str, str], ...]  # (key, how it is shown), one or more for a group
    description: str
    enabled: bool


def footer_entries(screen: Screen, key_display: object) -> list[FooterEntry]:
    """What the footer shows, in the screen's binding order: one entry per action, consecutive actions of a group
    with more than one member as one entry ("[ ] Page")."""
    by_action: dict[str, list[tuple[Binding, bool]]] = {}
    for _node, binding, enabled, _tooltip in screen.active_bindings.values():
        if binding.show:
            by_action.setdefault(binding.action, []).append((binding, enabled))
    display = key_display  # the app's get_key_display
    entries = []
    for group, members in groupby(by_action.values(), lambda found: found[0][0].group):
        actions = list(members)
        if group is not None and len(actions) > 1:
            keys = tuple((found[0][0].key, display(found[0][0])) for found in actions)  # type: ignore[operator]
            entries.append(FooterEntry(keys, group.description, any(found[0][1] for found in actions)))
        else:
            for found in actions:
                binding, enabled = found[0]
                entries.append(FooterEntry(((binding.key, display(binding)),), binding.description, enabled))  # type: ignore[operator]
    return entries


class KeyFooter(Widget):
    """The pane's keys in one line; the command palette's key on the right."""

    ALLOW_SELECT = False
    COMPONENT_CLASSES = {"footer--key", "footer--description", "footer--palette"}
    DEFAULT_CSS = """
    KeyFooter {
        dock: bottom;
        height: 1;
        color: $footer-foreground;
        background: $footer-background;
        & > .footer--key { color: $footer-key-foreground; background: $footer-key-background; text-style: bold; }
        & > .footer--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
        & > .footer--palette { color: $foreground 20%; }
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self._spans: list[tuple[int, int, str]] = []  # (start, end, key) of each key drawn, for clicks

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, lambda _screen: self.refresh())

    def entries(self) -> list[FooterEntry]:
        return footer_entries(self.screen, self.app.get_key_display)

    def render(self) -> Text:
        """Whole keys only: one that does not fit is left out with the rest after it (the Keys panel lists all)."""
        key_style = self.get_component_rich_style("footer--key")
        text_style = self.get_component_rich_style("footer--description")
        palette = self._palette()
        tail = Text()
        if palette is not None:
            _key, shown, description = palette
            tail = Text.assemble(("▏", self.get_component_rich_style("footer--palette")), (f"{shown} ", key_style),
                                 (f"{description} ", text_style))  # fmt: skip
        room = max(0, self.size.width - tail.cell_len) if self.size.width else None
        line, spans = Text(no_wrap=True, overflow="crop"), []
        for entry in self.entries():
            dim = Style() if entry.enabled else Style(dim=True)
            keys = "".join(display for _key, display in entry.keys)
            piece = Text.assemble((f" {keys} ", key_style + dim))
            key_end = piece.cell_len
            if entry.description:
                piece.append(f"{entry.description} ", text_style + dim)
            if room is not None and line.cell_len + piece.cell_len > room:
                break
            spans.append((line.cell_len, line.cell_len + key_end, entry.keys[0][0]))
            line.append_text(piece)
        if palette is not None:
            start = room if room is not None else line.cell_len
            line.pad_right(start - line.cell_len)
            spans.append((start, start + tail.cell_len, palette[0]))
            line.append_text(tail)
        self._spans = spans
        return line

    def _palette(self) -> tuple[str, str, str] | None:
        app = self.app
        if not app.ENABLE_COMMAND_PALETTE:
            return None
        found = self.screen.active_bindings.get(app.COMMAND_PALETTE_BINDING)
        if found is None:
            return None
        binding = found[1]
        return binding.key, app.get_key_display(binding), binding.description

    def on_click(self, event: events.Click) -> None:
        for start, end, key in self._spans:
            if start <= event.x < end:
                self.app.simulate_key(key)
                return
