"""The live memory strip at the bottom of every pane."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from workbench.core.models.memory import GB, MB, Budget, MemorySnapshot
from workbench.core.models.spec import ModelInfo, ModelState
from workbench.ui.services import services_of
from workbench.ui.widths import shorten_middle, shorten_repo_id

_STATE_STYLE = {
    ModelState.READY: "green",
    ModelState.BUSY: "bold yellow",
    ModelState.LOADING: "cyan",
    ModelState.UNLOADING: "dim",
    ModelState.FAILED: "red",
}


MODEL_NAME_WIDTH = 20
# What gives way when the strip is too narrow, in order: shorter model names, no RSS, no MLX, no models, a
# shorter activity (its end, the progress, kept). The activity says what is under way, so it goes last.
SQUEEZES = ({"name": 12}, {"rss": False}, {"mlx": False}, {"models_shown": False}, {"activity_width": 0})


def short_bytes(n: int | None) -> str:
    """Terse sizes for a one-line strip: 0, 37M, 1.2G."""
    if not n:
        return "0"
    if n < GB:
        return f"{max(1, round(n / MB))}M"
    return f"{n / GB:.1f}G"


def short_name(name: str, width: int = MODEL_NAME_WIDTH) -> str:
    return shorten_repo_id(name, width)


def render_strip(snapshot: MemorySnapshot | None, budget: Budget, held: int, models: list[ModelInfo], activity: str,
                 width: int | None = None, hide_models: bool = False) -> Text:  # fmt: skip
    """The strip's line; with a ``width``, the less important parts give way first (SQUEEZES) so that it fits;
    ``hide_models`` leaves the models' names out (Compare's blind mode)."""
    if activity and hide_models:
        for info in models:
            activity = activity.replace(info.spec.id, "a model").replace(info.spec.name, "a model")
    options: dict[str, object] = {"hide_models": hide_models}
    text = _strip(snapshot, budget, held, models, activity, **options)  # type: ignore[arg-type]
    for squeeze in SQUEEZES:
        if width is None or text.cell_len <= width:
            break
        options.update(squeeze)
        if options.get("activity_width") == 0:  # what is left of the width for the activity, its end kept
            without = _strip(snapshot, budget, held, models, "", **options).cell_len  # type: ignore[arg-type]
            options["activity_width"] = max(8, width - without - 4)
        text = _strip(snapshot, budget, held, models, activity, **options)  # type: ignore[arg-type]
    return text


def _strip(snapshot: MemorySnapshot | None, budget: Budget, held: int, models: list[ModelInfo], activity: str,
           name: int = MODEL_NAME_WIDTH, rss: bool = True, mlx: bool = True, models_shown: bool = True,
           activity_width: int | None = None, hide_models: bool = False) -> Text:  # fmt: skip
    text = Text(no_wrap=True, overflow="ellipsis")
    if snapshot is None:
        text.append("measuring memory…", style="dim")
    else:
        text.append("RAM ", style="bold")
        text.append(f"{short_bytes(snapshot.system_used)}/{short_bytes(snapshot.system_total)}")
        text.append("  budget ", style="bold")
        text.append(f"{short_bytes(held)}/{short_bytes(budget.bytes)}")
        if rss:
            text.append("  RSS ", style="bold")
            text.append(short_bytes(snapshot.process_rss))
        if mlx:
            text.append("  MLX ", style="bold")
            text.append(short_bytes(snapshot.mlx_active) if snapshot.mlx_active is not None else "idle")
    for info in models if models_shown and snapshot is not None else []:
        if info.resident:
            text.append(" │ ", style="dim")
            shown_name = "model ?" if hide_models else short_name(info.spec.id, name)
            text.append(shown_name, style=_STATE_STYLE.get(info.state, ""))
            text.append(" pinned" if info.pinned else "", style="dim")
            text.append(f" {short_bytes(info.measured)}" if info.measured else f" {info.state.value}", style="dim")
    if activity:
        text.append("  │ ", style="dim")
        shown = activity if activity_width is None else shorten_middle(activity, activity_width, head_share=1 / 3)
        text.append(shown, style="italic")
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
                                 self.content_size.width or None, self.hide_models))  # fmt: skip

    def on_resize(self) -> None:
        self.refresh_strip()
