"""The key footer of every pane: Textual's Footer, rebuilt only when the keys it shows change."""

from __future__ import annotations

from collections.abc import Hashable

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer


class KeyFooter(Footer):
    """Textual's Footer composes nothing at first and then every key (one widget each, each restyled) whenever
    the screen's bindings are updated, which happens on every focus change: three times before a pane's first
    frames settle, mostly showing the same keys. This one composes its keys with the screen, and again only
    when what it would show differs."""

    def __init__(self, *, compact: bool = False) -> None:
        super().__init__(compact=compact)
        self._shown: tuple[Hashable, ...] | None = None

    def shown_keys(self) -> tuple[Hashable, ...]:
        """Everything Footer.compose reads from the bindings: the same value means the same footer."""
        palette = self.app.COMMAND_PALETTE_BINDING
        return tuple(
            (binding.key, binding.action, binding.description, binding.group, enabled, tooltip)
            for key, (_node, binding, enabled, tooltip) in self.screen.active_bindings.items()
            if binding.show or key == palette
        )

    def compose(self) -> ComposeResult:
        # Footer shows nothing until the screen first announces its bindings, then composes again after
        # the first frame; the screen's and the app's bindings are known already, so compose them now.
        self.set_reactive(Footer._bindings_ready, True)
        self._shown = self.shown_keys()
        yield from super().compose()

    def bindings_changed(self, screen: Screen) -> None:
        if self._shown is not None and screen is self.screen and self.shown_keys() == self._shown:
            return
        super().bindings_changed(screen)
