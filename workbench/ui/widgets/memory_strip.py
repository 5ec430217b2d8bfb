"""The live memory strip at the bottom of every pane."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from workbench.core.models.memory import GB, MB, Budget, MemorySnapshot
from workbench.core.models.spec import ModelInfo, ModelState
from workbench.ui.services import services_of

_STATE_STYLE = {
    ModelState.READY: "green",
    ModelState.BUSY: "bold yellow",
    ModelState.LOADING: "cyan",
    ModelState.UNLOADING: "dim",
    ModelState.FAILED: "red",
}


MODEL_NAME_WIDTH = 20


def short_bytes(n: int | None) -> str:
    """Terse sizes for a one-line strip: 0, 37M, 1.2G."""
    if not n:
        return "0"
    if n < GB:
        return f"{max(1, round(n / MB))}M"
    return f"{n / GB:.1f}G"


def short_name(name: str) -> str:
    return name if len(name) <= MODEL_NAME_WIDTH else name[: MODEL_NAME_WIDTH - 1] + "…"


def render_strip(
    snapshot: MemorySnapshot | None, budget: Budget, held: int, models: list[ModelInfo], activity: str,
    hide_models: bool = False,
) -> Text:
    """The strip's line; ``hide_models`` leaves the models' names out (Compare's blind mode)."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if snapshot is None:
        text.append("measuring memory…", style="dim")
        return text
    text.append("RAM ", style="bold")
    text.append(f"{short_bytes(snapshot.system_used)}/{short_bytes(snapshot.system_total)}")
    text.append("  budget ", style="bold")
    text.append(f"{short_bytes(held)}/{short_bytes(budget.bytes)}")
    text.append("  RSS ", style="bold")
    text.append(short_bytes(snapshot.process_rss))
    text.append("  MLX ", style="bold")
    text.append(short_bytes(snapshot.mlx_active) if snapshot.mlx_active is not None else "idle")
    for info in models:
        if info.resident:
            text.append(" │ ", style="dim")
            text.append("model ?" if hide_models else short_name(info.spec.id), style=_STATE_STYLE.get(info.state, ""))
            text.append(" pinned" if info.pinned else "", style="dim")
            text.append(f" {short_bytes(info.measured)}" if info.measured else f" {info.state.value}", style="dim")
    if activity and hide_models:
        for info in models:
            activity = activity.replace(info.spec.id, "a model").replace(info.spec.name, "a model")
    if activity:
        text.append("  │ ", style="dim")
        text.append(activity, style="italic")
    return text


class MemoryStrip(Static):
    """Reads the app's latest memory snapshot and model list; repaints when either changes."""

    DEFAULT_CSS = """
    MemoryStrip {
        height: 1;
        padding: 0 1;
        background: $panel;
        color: $foreground;
    }
    """

    snapshot: reactive[MemorySnapshot | None] = reactive(None)
    activity: reactive[str] = reactive("")
    hide_models: reactive[bool] = reactive(False)  # set by Compare's blind mode: no model names

    def on_mount(self) -> None:
        self.watch(self.app, "memory_snapshot", self._on_snapshot)
        self.watch(self.app, "models_version", lambda _v: self.refresh_strip())
        self.watch(self.app, "activity", self._on_activity)

    def _on_snapshot(self, snapshot: MemorySnapshot | None) -> None:
        self.snapshot = snapshot

    def _on_activity(self, activity: str) -> None:
        self.activity = activity

    def watch_snapshot(self) -> None:
        self.refresh_strip()

    def watch_activity(self) -> None:
        self.refresh_strip()

    def watch_hide_models(self) -> None:
        self.refresh_strip()

    def refresh_strip(self) -> None:
        manager = services_of(self).manager
        self.update(render_strip(self.snapshot, manager.budget, manager.held_bytes(), manager.models(), self.activity,
                                 self.hide_models))  # fmt: skip
