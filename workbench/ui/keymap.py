"""The one table of binding ids: what ``[keys]`` in config.toml may remap.

Pane modules load on first show, so the ids cannot be collected from the classes at start-up; this table
names them all, and a test checks that it equals what the app, the screens and the widgets declare.
"""

from __future__ import annotations

from workbench.ui.panes import PANES

APP_IDS = (
    *(f"pane.{pane.mode}" for pane in PANES),
    *(f"pane.{pane.mode}.typing" for pane in PANES),  # alt+N, which works while typing
    "pane.next",
    "pane.previous",
    "app.quit",
    "app.quit-asking",  # q outside a text box; asks first while work runs
    "app.keys",  # f1
    "app.escape",  # esc: closes the Keys panel, leaves a text box
    "pane.type",  # i on a pane's main view: back to its text box
)
PANE_IDS = {
    "catalog": ("catalog.search", "catalog.mlx", "catalog.sort", "catalog.task", "catalog.author",
                "catalog.previous-page", "catalog.next-page", "catalog.download", "catalog.retry"),
    "downloads": ("downloads.pause", "downloads.cancel", "downloads.retry", "downloads.up", "downloads.down",
                  "downloads.pause-all", "downloads.clear", "downloads.details", "downloads.cache"),
    "chat": ("chat.send", "chat.newline", "chat.stop", "chat.regenerate", "chat.edit", "chat.copy", "chat.new",
             "chat.history", "chat.settings", "chat.model", "chat.previous-message", "chat.next-message"),
    "compare": ("compare.type", "compare.stop", "compare.diff", "compare.blind", "compare.settings-a",
                "compare.settings-b", "compare.model-a", "compare.model-b", "compare.new", "compare.leaderboard",
                "compare.prompt-set", "compare.vote-a", "compare.vote-b", "compare.vote-tie", "compare.vote-bad"),
    "embeddings": ("embeddings.open", "embeddings.cancel", "embeddings.search", "embeddings.map",
                   "embeddings.compare", "embeddings.heatmap", "embeddings.search_tab", "embeddings.mark",
                   "embeddings.clear_marks", "embeddings.fewer", "embeddings.more", "embeddings.projection",
                   "embeddings.model"),
    "models": ("models.load", "models.unload", "models.pin", "models.test"),
}  # fmt: skip
DIALOG_IDS = (
    "history.open", "history.to-list", "history.rename", "history.delete", "history.export-markdown",
    "history.export-json", "history.search", "history.close",
    "chat-settings.apply", "chat-settings.save-preset", "chat-settings.cancel",
    "confirm.yes", "confirm.no", "prompt.cancel", "path.complete",
    "download-files.close", "leaderboard.close",
    "cache.back", "cache.delete-revision", "cache.delete-repo", "cache.clean", "cache.rescan",
    "details.back", "details.download", "details.retry", "details.focus-next",
    "prompt-set.close", "prompt-set.export-markdown", "prompt-set.export-jsonl",
)  # fmt: skip

BINDING_IDS: frozenset[str] = frozenset((*APP_IDS, *(i for ids in PANE_IDS.values() for i in ids), *DIALOG_IDS))


def split_keymap(keys: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The ``[keys]`` entries that name a binding, and the ids that do not (sorted)."""
    known = {binding_id: key for binding_id, key in keys.items() if binding_id in BINDING_IDS}
    return known, sorted(set(keys) - BINDING_IDS)
