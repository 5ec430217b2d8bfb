"""What the faces (the TUI's screens and widgets) use of the services, as one typed interface.

:class:`workbench.bootstrap.Services` implements :class:`WorkbenchApi` in-process today; the engine's async
client implements the same interface later, so the screens are written once against this module. It imports
only core types, and those only for type checking: no Textual, aiohttp, ui, cli or server here.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from workbench.core.chat.sampling import ResolvedSampling, SamplingChoice
    from workbench.core.chat.session import Answer, Sent, SessionEvent
    from workbench.core.compare.results import CompareResults
    from workbench.core.compare.run import Contender, MemoryPlan
    from workbench.core.compare.session import Reveal, SideUpdate
    from workbench.core.embeddings.embedder import Embedder
    from workbench.core.hub import cache as hf_cache
    from workbench.core.hub.client import HubCatalog
    from workbench.core.hub.curated import CatalogEntry
    from workbench.core.hub.downloads.jobs import JobSnapshot
    from workbench.core.models.lifecycle import ManagerEvent
    from workbench.core.models.memory import Budget, MemorySnapshot
    from workbench.core.models.registry import CacheContents, RepoStatus
    from workbench.core.models.spec import ModelInfo, ModelRole, ModelSpec
    from workbench.core.models.wait import ImportListener, ImportStatus
    from workbench.core.settings.config import Settings
    from workbench.core.settings.paths import AppPaths
    from workbench.core.settings.toml_text import ConfigIssue
    from workbench.core.storage.chats import Chats, Conversation, StoredMessage
    from workbench.core.storage.compare_runs import CompareRuns
    from workbench.core.storage.embedding_sets import EmbeddingSets
    from workbench.core.storage.votes import Votes


class ModelsApi(Protocol):
    """The model manager as the screens use it: ModelManager in-process, RemoteModels attached."""

    budget: Budget
    context_length: int

    def models(self) -> list[ModelInfo]: ...

    def info(self, model_id: str) -> ModelInfo: ...

    def ids(self, role: ModelRole) -> list[str]: ...

    def held_bytes(self) -> int: ...

    def subscribe(self, listener: Callable[[ManagerEvent], None]) -> Callable[[], None]: ...

    async def load(self, model_id: str) -> ModelInfo: ...

    async def unload(self, model_id: str) -> None: ...

    def pin(self, model_id: str, pinned: bool = True) -> None: ...


class MemoryApi(Protocol):
    """MemoryProbe in-process; the engine's latest ``memory`` sample attached."""

    def snapshot(self) -> MemorySnapshot: ...


class DownloadsApi(Protocol):
    """The download queue as the Downloads pane, the cache view and the Catalog use it: DownloadManager in-process,
    RemoteDownloads attached (its actions go to the engine; ``enqueue`` there answers an awaitable task)."""

    @property
    def cache_dir(self) -> Path: ...

    def jobs(self) -> list[JobSnapshot]: ...

    def job(self, job_id: int) -> JobSnapshot: ...

    def subscribe(self, listener: Callable[[JobSnapshot], None]) -> Callable[[], None]: ...

    def enqueue(self, repo_id: str, revision: str = "main",
                files: list[str] | None = None) -> JobSnapshot | Awaitable[JobSnapshot]: ...  # fmt: skip

    def pause(self, job_id: int) -> None: ...

    def resume(self, job_id: int) -> None: ...

    def retry(self, job_id: int) -> bool: ...

    def cancel(self, job_id: int) -> None: ...

    def move(self, job_id: int, delta: int) -> None: ...

    def pause_all(self) -> None: ...

    def resume_all(self) -> None: ...

    def forget_finished(self) -> int: ...

    def in_cache(self, job_id: int) -> bool: ...

    def clean_partial_files(self) -> list[hf_cache.PartialFile] | Awaitable[list[hf_cache.PartialFile]]: ...


class RegistryApi(Protocol):
    """What is on disk (read here, by the face) and deleting it (through the engine when attached: its manager
    unregisters the models first)."""

    def loadable_specs(self, include_cache: bool = True) -> list[ModelSpec]: ...

    def repo_statuses(self, repo_ids: list[str]) -> dict[str, RepoStatus]: ...

    def cache_contents(self) -> CacheContents: ...

    async def delete_repo(self, repo_id: str) -> int: ...

    async def delete_revision(self, repo_id: str, commit: str) -> int: ...


class StoreApi(Protocol):
    """The history's repositories (read-only when attached: writes go through the engine)."""

    @property
    def path(self) -> Path: ...

    @property
    def read_only(self) -> bool: ...

    chats: Chats
    compare_runs: CompareRuns
    votes: Votes
    embedding_sets: EmbeddingSets

    def remember_embedding_set(self, path: Path, column: str | None, model_id: str,
                               passages: int) -> Awaitable[None] | None:  # fmt: skip
        """Remember a corpus the Embeddings pane opened: written here in-process, by the engine when attached
        (await the answer)."""
        ...


class ImportApi(Protocol):
    """The default chat model's first-start import: DefaultModelImport in-process (``run`` runs it), RemoteImport
    attached (``plan`` asks the engine, which runs it)."""

    name: str

    @property
    def status(self) -> ImportStatus: ...

    def describe(self) -> str: ...

    def subscribe(self, listener: ImportListener) -> Callable[[], None]: ...

    def plan(self) -> None: ...


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
    def manager(self) -> ModelsApi: ...

    @property
    def probe(self) -> MemoryApi: ...

    @property
    def registry(self) -> RegistryApi:
        """What is on disk and loadable; deleting through it unregisters the models first."""
        ...

    @property
    def default_import(self) -> ImportApi:
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
    def store(self) -> StoreApi: ...

    @property
    def hub(self) -> HubCatalog: ...

    @property
    def downloads(self) -> DownloadsApi:
        """The download queue (built on first use, on the event loop's thread)."""
        ...

    @property
    def hf_cache_dir(self) -> Path:
        """The Hugging Face cache: where downloads go and cached models are found (safe from any thread)."""
        ...

    @property
    def attached(self) -> bool:
        """Whether the services are the engine's, seen through its socket (False: built in this process)."""
        ...

    async def aclose(self) -> None:
        """Close everything, once, whoever asks first (attached: detach; the engine's work goes on)."""
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
