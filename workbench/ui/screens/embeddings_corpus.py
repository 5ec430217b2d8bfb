"""The corpus the Embeddings pane holds and its vectors by model A and B: choosing the models, opening the corpus,
embedding it with each model (progress, cancel) and remembering what was embedded.

CorpusPane is the Embeddings pane's base: it keeps this state and turns the corpus and embedding messages into
it; EmbeddingsPane (embeddings.py) adds the tabs that look at the vectors (search, map, compare, heatmap) through
the hooks ``forget``, ``corpus_opened`` and ``embedded``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from textual import on
from textual.screen import Screen
from textual.widgets import Select

from workbench.core.embeddings.corpus import Corpus
from workbench.core.embeddings.embedder import Embedder
from workbench.core.models.local import DEFAULT_EMBEDDER_ID
from workbench.ui.screens.dialogs import PromptScreen
from workbench.ui.screens.embeddings_views import KEYS_HINT, corpus_label, parse_corpus_spec, skipped_note
from workbench.ui.screens.embeddings_work import CorpusRead, EmbeddingJobs, EmbedDone, EmbedProgress
from workbench.ui.services import services_of, settle

if TYPE_CHECKING:
    from workbench.ui.screens.embeddings_views import EmbeddingsView

log = logging.getLogger(__name__)


class CorpusPane(Screen):
    """A base of EmbeddingsPane (not a pane of its own: EmbeddingsPane is also a PaneScreen)."""

    view: EmbeddingsView  # the subclass paints through it

    def __init__(self) -> None:
        super().__init__()
        self.corpus: Corpus | None = None
        self.corpus_label = ""
        self.corpus_spec = ""
        self.generation = 0  # bumped whenever the corpus or a model changes, so late results are dropped
        self.model_a: str | None = None
        self.model_b: str | None = None
        self.vectors_a: np.ndarray | None = None
        self.vectors_b: np.ndarray | None = None
        self.progress: dict[str, tuple[int, int]] = {}
        self.cancels: dict[str, threading.Event] = {}
        self.status = ""
        self.jobs = EmbeddingJobs(self)

    @property
    def embedder(self) -> Embedder:
        return services_of(self).embedder

    # --- what the views do with it (EmbeddingsPane) ----------------------------------------------

    def forget(self, side: str) -> None:
        """Side ``side``'s model changed: drop what the views derived from its vectors."""

    def corpus_opened(self) -> None:
        """Another corpus is open: drop everything the views derived from the last one."""

    def embedded(self, side: str) -> None:
        """Side ``side``'s vectors for the open corpus arrived."""

    def show_compare_hint(self) -> None:
        """The models or the vectors changed."""

    # --- models ----------------------------------------------------------------------------------

    def refresh_models(self) -> None:
        ids = self.embedder.model_ids()
        if self.model_a not in ids:
            self.model_a = DEFAULT_EMBEDDER_ID if DEFAULT_EMBEDDER_ID in ids else (ids[0] if ids else None)
        self.view.models(ids, {i: self.embedder.manager.info(i).spec.name for i in ids}, self.model_a)
        self.show_compare_hint()

    @on(Select.Changed, "#model-a")
    def model_a_chosen(self, event: Select.Changed) -> None:
        if event.value is Select.NULL or event.value == self.model_a:
            return
        self.model_a = str(event.value)
        self.restart("a")

    @on(Select.Changed, "#model-b")
    def model_b_chosen(self, event: Select.Changed) -> None:
        value = None if event.value is Select.NULL else str(event.value)
        if value == self.model_b:
            return
        self.model_b = value
        self.restart("b")

    def restart(self, side: str) -> None:
        """A model changed: drop what the old one produced and embed again (cached vectors come back at once)."""
        self.generation += 1
        self.cancel_side(side)
        if side == "a":
            self.vectors_a = None
        else:
            self.vectors_b = None
        self.forget(side)
        if self.corpus is not None and self.corpus.passages:
            self.embed(side)

    def action_choose_model(self) -> None:
        select = self.query_one("#model-a", Select)
        select.focus()
        select.expanded = True

    # --- opening a corpus ------------------------------------------------------------------------

    def action_open_corpus(self) -> None:
        def chosen(spec: str | None) -> None:
            if spec:
                self.open_corpus(*parse_corpus_spec(spec))

        title = "Open a corpus: a file or folder (PATH, or PATH::COLUMN for CSV/JSONL)"
        prompt = PromptScreen(title, self.corpus_spec, placeholder="~/notes  or  data.csv::text", path=True)
        self.app.push_screen(prompt, chosen)

    def open_corpus(self, path: Path, column: str | None = None) -> None:
        for side in ("a", "b"):
            self.cancel_side(side)
        path = path.resolve()
        self.corpus_spec = f"{path}::{column}" if column else str(path)
        self.show_status(f"reading {path.name}…")
        self.jobs.read_corpus(path, column)

    def on_corpus_read(self, message: CorpusRead) -> None:
        path, corpus = message.path, message.corpus
        self.generation += 1
        self.corpus = corpus
        self.corpus_label = corpus_label(path, message.column)
        self.vectors_a = self.vectors_b = None
        self.corpus_opened()
        problems = corpus.problems
        self.view.detail(skipped_note(problems) if problems else KEYS_HINT)
        for problem in problems:
            log.info("corpus %s: %s", path, problem)
        if not corpus.passages:
            self.show_status("nothing to embed")
            self.notify(f"No passages in {path.name}" + (f": {problems[0]}" if problems else ""), severity="warning")
            return
        self.show_status("")
        self.embed("a")
        if self.model_b is not None:
            self.embed("b")

    def show_status(self, status: str) -> None:
        self.status = status
        self.view.status()

    # --- embedding -------------------------------------------------------------------------------

    def embed(self, side: str) -> None:
        model_id = self.model_a if side == "a" else self.model_b
        if model_id is None or self.corpus is None:
            return
        cancel = self.cancels[side] = threading.Event()
        self.progress[side] = (0, len(self.corpus.texts))
        self.view.progress()
        self.jobs.embed(side, model_id, self.corpus.texts, self.generation, cancel)

    def on_embed_progress(self, message: EmbedProgress) -> None:
        if message.side in self.progress:
            self.progress[message.side] = (message.done, message.total)
            self.view.progress()

    def on_embed_done(self, message: EmbedDone) -> None:
        side = message.side
        if self.cancels.get(side) is message.cancel:  # else a newer job for this side runs
            del self.cancels[side]
            self.progress.pop(side, None)
        self.view.progress()
        if message.note and (message.vectors is None or message.generation == self.generation):
            self.show_status(message.note)
        if message.alert:
            self.notify(message.alert, severity="error", timeout=15)
        if message.vectors is None or message.generation != self.generation:
            return
        if side == "a":
            self.vectors_a = message.vectors
            if self.corpus_spec:
                path, column = parse_corpus_spec(self.corpus_spec)
                remembered = services_of(self).store.remember_embedding_set(path, column, message.model_id,
                                                                             message.count)  # fmt: skip
                settle(self, remembered, lambda _: None, "The corpus was not remembered")
        else:
            self.vectors_b = message.vectors
        self.embedded(side)

    def cancel_side(self, side: str) -> None:
        if side in self.cancels:
            self.cancels[side].set()
