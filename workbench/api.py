"""What the faces (the TUI's screens and widgets) use of the services, as one typed interface.

:class:`workbench.bootstrap.Services` implements :class:`WorkbenchApi` in-process today; the engine's async
client implements the same interface later, so the screens are written once against this module. It imports
only core types, and those only for type checking: no Textual, aiohttp, ui, cli or server here.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from workbench.core.chat.sampling import ResolvedSampling, SamplingChoice
    from workbench.core.chat.session import Answer, Sent, SessionEvent
    from workbench.core.compare.results import CompareResults
    from workbench.core.compare.run import Contender, MemoryPlan
    from workbench.core.compare.session import Reveal, SideUpdate
    from workbench.core.embeddings.embedder import Embedder
    from workbench.core.hub.client import HubCatalog
    from workbench.core.hub.curated import CatalogEntry
    from workbench.core.hub.downloads.queue import DownloadManager
    from workbench.core.models.lifecycle import ModelManager
    from workbench.core.models.memory import MemoryProbe
    from workbench.core.models.registry import ModelRegistry
    from workbench.core.models.spec import ModelSpec
    from workbench.core.models.wait import DefaultModelImport
    from workbench.core.settings.config import Settings
    from workbench.core.settings.paths import AppPaths
    from workbench.core.settings.toml_text import ConfigIssue
    from workbench.core.storage.chats import Conversation, StoredMessage
    from workbench.core.storage.store import Store


class ChatSessionApi(Protocol):
    """What the Chat pane uses of its chat session: workbench.core.chat.session.ChatSession in-process,
    workbench.client.chat_session.RemoteChatSession when the engine runs the answers."""

    conversation: Conversation | None
    model_id: str | None
    system_prompt: str
    sampling: SamplingChoice

    def open_latest(self) -> list[StoredMessage] | None: ...

    def open(self, conversation_id: int) -> list[StoredMessage] | None: ...

    def new(self) -> None: ...

    def still_there(self) -> bool: ...

    def settle_model(self, available: list[str]) -> str | None: ...

    def choose_model(self, model_id: str) -> None: ...

    def apply_settings(self, system_prompt: str, sampling: SamplingChoice) -> None: ...

    def effective_sampling(self) -> ResolvedSampling: ...

    def follow_running(self, messages: list[StoredMessage]) -> Answer | None: ...

    def can_send(self) -> bool: ...

    def send(self, text: str) -> Sent: ...

    def regenerate(self) -> tuple[int, Answer] | None: ...

    def edit_last(self) -> tuple[str, list[int]] | None: ...

    def stop(self) -> bool: ...

    def answer_events(self, answer: Answer) -> AsyncGenerator[SessionEvent, None]: ...


class WorkbenchApi(Protocol):
    """The services every face shares: configuration, models, storage, the hub and downloads, embeddings."""

    # --- configuration ------------------------------------------------------------------------
    @property
    def paths(self) -> AppPaths: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def issues(self) -> list[ConfigIssue]:
        """Mistakes found in config.toml or catalog.toml (the defaults are used instead)."""
        ...

    @property
    def catalog(self) -> list[CatalogEntry]:
        """The curated catalog (shipped catalog.toml plus the user's)."""
        ...

    # --- models and memory --------------------------------------------------------------------
    @property
    def manager(self) -> ModelManager: ...

    @property
    def probe(self) -> MemoryProbe: ...

    @property
    def registry(self) -> ModelRegistry:
        """What is on disk and loadable; deleting through it unregisters the models first."""
        ...

    @property
    def default_import(self) -> DefaultModelImport:
        """The first-start import of the default chat model."""
        ...

    @property
    def embedder(self) -> Embedder: ...

    @property
    def recovered_messages(self) -> int:
        """Answers a previous run left half-written, now marked incomplete."""
        ...

    def refresh_local_models(self) -> None:
        """Register the models in the data folder and the ones config.toml lists for remote endpoints."""
        ...

    def discover_remote_models(self) -> tuple[list[ModelSpec], list[str]]:
        """Ask the endpoints that list no models which they serve (blocking: call it from a thread).
        Returns the specs and what is wrong, in words, with the endpoints that could not be asked."""
        ...

    async def bring_in_embedded_defaults(self, progress: Callable[[str, float], None] | None = None) -> None:
        """Import and register the embedded default models on first use."""
        ...

    def chat_session(self) -> ChatSessionApi:
        """A new chat session for a chat screen (its answers run where the services run)."""
        ...

    # --- storage, the hub and downloads -------------------------------------------------------
    @property
    def store(self) -> Store: ...

    @property
    def hub(self) -> HubCatalog: ...

    @property
    def downloads(self) -> DownloadManager:
        """The download queue (built on first use, on the event loop's thread)."""
        ...

    @property
    def hf_cache_dir(self) -> Path:
        """The Hugging Face cache: where downloads go and cached models are found (safe from any thread)."""
        ...

    async def aclose(self) -> None:
        """Close everything, once, whoever asks first."""
        ...

    def compare_session(self) -> CompareSessionApi:
        """A new compare conversation for the Compare pane (its turns run where the services run)."""
        ...


class CompareTurnApi(Protocol):
    """One prompt put to both sides: workbench.core.compare.session.CompareTurn in-process,
    workbench.client.compare_session.RemoteCompareTurn when the engine runs it."""

    @property
    def run_id(self) -> int: ...

    @property
    def blind(self) -> bool: ...

    @property
    def swapped(self) -> bool: ...

    @property
    def results(self) -> CompareResults: ...

    def shown(self, side: str) -> str: ...

    def stop(self) -> None: ...

    def events(self) -> AsyncGenerator[SideUpdate, None]: ...


class CompareSessionApi(Protocol):
    """What the Compare pane uses of its compare session: CompareSession in-process, RemoteCompareSession when the
    engine runs the turns (workbench.client.compare_session)."""

    @property
    def blind(self) -> bool: ...

    @property
    def running(self) -> bool: ...

    @property
    def awaiting_vote(self) -> bool: ...

    def plan(self, a: Contender, b: Contender) -> MemoryPlan: ...

    def ask(self, prompt: str, a: Contender, b: Contender, plan: MemoryPlan | None = None) -> CompareTurnApi: ...

    def stop(self) -> None: ...

    def vote(self, outcome: str) -> Reveal: ...

    def set_blind(self, on: bool) -> None: ...

    def clear(self) -> None: ...
