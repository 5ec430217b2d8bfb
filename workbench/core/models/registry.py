"""What is on disk and loadable: one answer for the Catalog, the Models view, `workbench ls` and `rm`, and the
cache view.

Three places hold models: MLX folders in the data folder (imports; the default SmolLM2 once imported), model repos
in the Hugging Face cache (a repo loads when its newest revision does, by the one rule in loadable.py), and the
built-in embedder inside a Python package. The manager registers what :meth:`ModelRegistry.loadable_specs` finds
(what the Models view shows); the Catalog asks :meth:`~ModelRegistry.repo_statuses` (not here, partly, downloaded
and loadable or not, and why); `ls` lists :meth:`~ModelRegistry.installed`; the cache view lists
:meth:`~ModelRegistry.cache_contents`. Every deletion (`rm`, the cache view) goes through here: the models the files
hold are unregistered from the manager first (refused with ModelInUseError, which says why, while one is leased or
loading), and what is still loadable afterwards (an older revision of the repo) is registered again.

The listings touch the disk and, for the cache, import huggingface_hub: call them from a worker thread or the CLI.
The deletions are async: they wait for the manager and do the file work on a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.core.hub import cache as hf_cache
from workbench.core.models.backends import mlx_lm, sentence_transformers
from workbench.core.models.loadable import is_mlx_model_dir, loadability
from workbench.core.models.local import DEFAULT_CHAT_ID, DEFAULT_CHAT_NAME, MissingPackageError, default_embedder_spec
from workbench.core.models.spec import ModelSpec, ModelState
from workbench.core.settings.paths import AppPaths

if TYPE_CHECKING:
    from workbench.core.models.lifecycle import ModelManager

log = logging.getLogger(__name__)

IMPORTED, HF_CACHE, BUILT_IN = "imported", "hf-cache", "built-in"
# what `ls` says a local model is for: the role its backend declares
ROLES = {backend.kind: str(backend.role)
         for backend in (mlx_lm.MlxLmBackend, sentence_transformers.SentenceTransformerBackend)}  # fmt: skip


class Presence(StrEnum):
    ABSENT = "absent"
    PARTIAL = "partial"  # a download of it is unfinished (or was left unfinished)
    DOWNLOADED = "downloaded"


@dataclass(frozen=True)
class RepoStatus:
    """One hub repo on this machine, as the Catalog shows it."""

    repo_id: str
    presence: Presence
    kind: str | None = None  # the backend that loads its newest revision; None: nothing here loads it
    why: str = ""  # for a partial repo, or one nothing loads: why, in words

    @property
    def loadable(self) -> bool:
        return self.kind is not None

    @property
    def label(self) -> str:
        """A table cell: ``–``, ``partial``, ``downloaded`` (and loadable) or ``can't load``."""
        if self.presence is Presence.ABSENT:
            return "–"
        if self.presence is Presence.PARTIAL:
            return "partial"
        return "downloaded" if self.loadable else "can't load"


@dataclass(frozen=True)
class InstalledModel:
    """A model on disk, as `ls` lists it and `rm` deletes it."""

    id: str
    kind: str  # "chat" or "embed" (or "other": a cache repo nothing here loads)
    backend: str  # the ModelSpec kind: "mlx-lm", "sentence-transformers"
    source: str  # IMPORTED, HF_CACHE or BUILT_IN
    path: Path  # what loads: the imported folder, the newest cache snapshot, the package's model folder
    size_bytes: int  # on disk; for a cache repo every revision, each blob counted once (what removing frees)
    repo_path: Path | None = None  # the cache repo folder (models--org--name), for HF_CACHE

    @property
    def removable(self) -> bool:
        return self.source != BUILT_IN

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "backend": self.backend, "source": self.source,
                "size_bytes": self.size_bytes, "path": str(self.path)}  # fmt: skip


@dataclass(frozen=True)
class CacheContents:
    """The Hugging Face cache as the cache view shows it."""

    repos: list[hf_cache.CachedRepo]  # most recently used first, datasets too
    partials: list[hf_cache.PartialFile]
    statuses: dict[str, RepoStatus]  # by repo id, for the model repos


class ModelRegistry:
    """What is on disk and loadable, and deleting it with the manager told first.

    ``cache_dir``: the Hugging Face cache, or a function that gives it (resolved on first use: finding the standard
    one imports huggingface_hub); None means the standard cache (HF_HOME / HF_HUB_CACHE). ``manager``: the model
    manager whose models a deletion unregisters; None where no models are held (a CLI listing)."""

    def __init__(self, paths: AppPaths, cache_dir: Path | Callable[[], Path] | None = None,
                 manager: ModelManager | None = None) -> None:  # fmt: skip
        self.paths = paths
        self.manager = manager
        self._cache_dir = cache_dir

    @property
    def cache_dir(self) -> Path:
        if self._cache_dir is None:
            return hf_cache.hub_cache_dir()  # resolved now: huggingface_hub fixes its default when imported
        return Path(self._cache_dir() if callable(self._cache_dir) else self._cache_dir)

    # --- what loads ---------------------------------------------------------------------------------

    def imported_specs(self) -> list[ModelSpec]:
        """MLX model folders in the data folder (imports and the default), skipping unfinished ones."""
        if not self.paths.models_dir.is_dir():
            return []
        specs = []
        for folder in sorted(self.paths.models_dir.iterdir()):
            if folder.name.startswith(".") or not is_mlx_model_dir(folder):
                continue
            name = DEFAULT_CHAT_NAME if folder.name == DEFAULT_CHAT_ID else folder.name
            specs.append(ModelSpec(id=folder.name, name=name, kind=mlx_lm.KIND, path=folder))
        return specs

    def cached_specs(self) -> list[ModelSpec]:
        """The chat models mlx-lm can load and the sentence-transformers embedders in the cache, by repo id; each
        repo with its most recently modified revision. Broken entries are logged and skipped."""
        return [spec for spec, _repo in self._loadable_repos(self._scan())]

    def loadable_specs(self, include_cache: bool = True) -> list[ModelSpec]:
        """Everything loadable now: imports, then (``include_cache``) the cache's models that no import shadows,
        then the built-in embedder. The default chat model appears once it has been imported."""
        specs = self.imported_specs()
        if include_cache:
            known = {spec.id for spec in specs}
            specs += [spec for spec in self.cached_specs() if spec.id not in known]
        with contextlib.suppress(MissingPackageError):
            specs.append(default_embedder_spec())
        return specs

    # --- what is on disk ----------------------------------------------------------------------------

    def installed(self) -> list[InstalledModel]:
        """Every model the workbench can load with its size on disk, in :meth:`loadable_specs`' order."""
        imported = self.imported_specs()
        models = [_installed(spec, IMPORTED, folder_bytes(spec.path)) for spec in imported]
        known = {spec.id for spec in imported}
        models += [_installed(spec, HF_CACHE, repo.size_bytes, repo.path)
                   for spec, repo in self._loadable_repos(self._scan()) if spec.id not in known]  # fmt: skip
        with contextlib.suppress(MissingPackageError):
            spec = default_embedder_spec()
            models.append(_installed(spec, BUILT_IN, folder_bytes(spec.path)))
        return models

    def cached_repo(self, repo_id: str) -> InstalledModel | None:
        """Any model repo in the cache, loadable or not (a GGUF-only or unsupported repo that `pull` fetched)."""
        for repo in self._scan():
            if repo.repo_id == repo_id:
                path = repo.revisions[0].path if repo.revisions else repo.path
                return InstalledModel(id=repo.repo_id, kind="other", backend="", source=HF_CACHE, path=path,
                                      size_bytes=repo.size_bytes, repo_path=repo.path)  # fmt: skip
        return None

    def repo_statuses(self, repo_ids: Iterable[str]) -> dict[str, RepoStatus]:
        """Whether each hub repo is here: absent, partly (a download unfinished), or downloaded and loadable (by
        which backend) or not (and why)."""
        repos = {repo.repo_id: repo for repo in self._scan()}
        partial = {p.repo_id for p in hf_cache.partial_files(self.cache_dir) if p.folder_name.startswith("models--")}
        return {repo_id: _status(repo_id, repos.get(repo_id), repo_id in partial) for repo_id in repo_ids}

    def cache_contents(self) -> CacheContents:
        cache = self.cache_dir
        repos = hf_cache.scan(cache)
        partials = hf_cache.partial_files(cache)
        partial = {p.repo_id for p in partials if p.folder_name.startswith("models--")}
        statuses = {repo.repo_id: _status(repo.repo_id, repo, repo.repo_id in partial)
                    for repo in repos if repo.repo_type == "model"}  # fmt: skip
        return CacheContents(repos, partials, statuses)

    def _scan(self) -> list[hf_cache.CachedRepo]:
        """The model repos in the cache, by repo id; [] when there is no cache or it cannot be read."""
        try:
            repos = hf_cache.scan(self.cache_dir)
        except (OSError, ValueError) as exc:
            log.warning("cannot scan the Hugging Face cache %s: %s", self._cache_dir or "(default)", exc)
            return []
        return sorted((repo for repo in repos if repo.repo_type == "model"), key=lambda repo: repo.repo_id)

    @staticmethod
    def _loadable_repos(repos: list[hf_cache.CachedRepo]) -> Iterator[tuple[ModelSpec, hf_cache.CachedRepo]]:
        for repo in repos:
            if not repo.revisions:
                continue
            snapshot = repo.revisions[0].path  # the most recently modified
            found = loadability(snapshot)
            if found.kind is None:
                log.info("not loading %s from the Hugging Face cache: %s", repo.repo_id, found.why)
                continue
            yield ModelSpec(id=repo.repo_id, name=repo.repo_id, kind=found.kind, path=snapshot), repo

    # --- deleting -----------------------------------------------------------------------------------

    async def remove(self, model: InstalledModel) -> int:
        """Delete a model from disk (what `rm` does); returns the bytes freed. A cache repo goes with all its
        revisions; an imported folder that is a symlink loses only the link (its target was never ours). Raises
        ModelInUseError while the model is leased or loading, ValueError for the built-in embedder, OSError when
        the files cannot be deleted."""
        if model.source == BUILT_IN:
            raise ValueError(f"{model.id} is built in (it ships in a Python package) and cannot be removed")
        if model.source == HF_CACHE:
            return await self.delete_repo(model.id)
        return await self._delete(model.path, lambda: remove_folder(model.path))

    async def delete_repo(self, repo_id: str) -> int:
        """Delete every revision of a cache repo (partial files included); returns the bytes freed."""
        cache = self.cache_dir
        return await self._delete(hf_cache.repo_dir(cache, repo_id), lambda: hf_cache.delete_repo(repo_id, cache))

    async def delete_revision(self, repo_id: str, commit: str) -> int:
        """Delete one revision of a cache repo; returns the bytes freed. If an older revision loads, the repo's
        model comes back with it."""
        cache = self.cache_dir
        snapshot = hf_cache.repo_dir(cache, repo_id) / "snapshots" / commit
        return await self._delete(snapshot, lambda: hf_cache.delete_revision(repo_id, commit, cache))

    async def _delete(self, folder: Path, delete: Callable[[], int]) -> int:
        removed = await self._unregister_under(folder)
        try:
            return await asyncio.to_thread(delete)
        finally:
            if removed:  # what still loads (an older revision; everything, when the delete failed) comes back
                await self._register_again(removed)

    async def _unregister_under(self, folder: Path) -> list[str]:
        """Unregister the manager's models whose files lie in ``folder``; ModelInUseError when one is in use."""
        if self.manager is None:
            return []
        infos = [info for info in self.manager.models() if _inside(info.spec.path, folder)]
        # the ones in use first: their refusal comes before any other model is unregistered
        infos.sort(key=lambda info: not (info.leases or info.state is ModelState.LOADING))
        removed = []
        for info in infos:
            await self.manager.unregister(info.spec.id)
            removed.append(info.spec.id)
        return removed

    async def _register_again(self, model_ids: list[str]) -> None:
        assert self.manager is not None
        specs = await asyncio.to_thread(self.loadable_specs)
        known = {info.spec.id for info in self.manager.models()}
        for spec in specs:
            if spec.id in model_ids and spec.id not in known:
                self.manager.register(spec)


def _installed(spec: ModelSpec, source: str, size_bytes: int, repo_path: Path | None = None) -> InstalledModel:
    return InstalledModel(spec.id, ROLES.get(spec.kind, spec.kind), spec.kind, source, spec.path, size_bytes, repo_path)


def _status(repo_id: str, repo: hf_cache.CachedRepo | None, partial: bool) -> RepoStatus:
    found = loadability(repo.revisions[0].path) if repo is not None and repo.revisions else None
    kind, why = (found.kind, found.why) if found is not None else (None, "")
    if partial:
        return RepoStatus(repo_id, Presence.PARTIAL, kind, "a download is unfinished")
    if found is None:
        return RepoStatus(repo_id, Presence.ABSENT)
    return RepoStatus(repo_id, Presence.DOWNLOADED, kind, why)


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies in it, as written or with links resolved (relative paths, such as a
    remote model's URL, never do)."""
    if not path.is_absolute():
        return False
    paths = {Path(os.path.abspath(path)), path.resolve()}
    folders = {Path(os.path.abspath(folder)), folder.resolve()}
    return any(p.is_relative_to(f) for p in paths for f in folders)


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder``, following symlinks (cache snapshots point into blobs/) and counting
    each file once however many links lead to it."""
    seen_files: set[tuple[int, int]] = set()
    seen_dirs: set[str] = set()
    total = 0
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen_dirs:  # a link back into the tree
            dirs.clear()
            continue
        seen_dirs.add(real)
        for name in files:
            try:
                stat = os.stat(os.path.join(root, name))
            except OSError:  # a dangling link
                continue
            if (stat.st_dev, stat.st_ino) not in seen_files:
                seen_files.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
    return total


def remove_folder(folder: Path) -> int:
    """Delete an imported model's folder; a symlink loses only the link. Returns the bytes freed."""
    if folder.is_symlink():
        folder.unlink()
        return 0
    size = folder_bytes(folder)
    shutil.rmtree(folder)
    return size


__all__ = [
    "BUILT_IN",
    "HF_CACHE",
    "IMPORTED",
    "CacheContents",
    "InstalledModel",
    "ModelRegistry",
    "Presence",
    "RepoStatus",
    "folder_bytes",
    "remove_folder",
]
