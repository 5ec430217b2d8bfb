"""The models on this machine with their size on disk, and removing one (for `workbench ls` and `rm`).

Three places hold models: imported MLX folders in the data folder (the default SmolLM2 among them once
imported), model repos in the Hugging Face cache, and the built-in embedder inside a Python package.
Everything here touches the disk and imports huggingface_hub: call it from the command line or a worker.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.core.hub import cache as hf_cache
from workbench.core.models.backends import mlx_lm, sentence_transformers
from workbench.core.models.lifecycle import ModelSpec
from workbench.core.models.local import DEFAULT_EMBEDDER_ID, local_specs_with_cache
from workbench.core.settings.paths import AppPaths

IMPORTED, HF_CACHE, BUILT_IN = "imported", "hf-cache", "built-in"
# what `ls` says a local model is for: the role its backend declares
ROLES = {backend.kind: str(backend.role)
         for backend in (mlx_lm.MlxLmBackend, sentence_transformers.SentenceTransformerBackend)}  # fmt: skip


@dataclass(frozen=True)
class InstalledModel:
    id: str
    kind: str  # "chat" or "embed"
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


def installed_models(paths: AppPaths, cache_dir: Path | None = None) -> list[InstalledModel]:
    """Every model the workbench can load: imports, then the cache's chat models and embedders, then the built-in
    embedder. ``cache_dir`` None means the standard cache (HF_HOME / HF_HUB_CACHE)."""
    cache = _cache(cache_dir)
    repos = {repo.repo_id: repo for repo in hf_cache.scan(cache) if repo.repo_type == "model"}
    return [_describe(spec, paths, repos) for spec in local_specs_with_cache(paths, cache)]


def cached_repo(repo_id: str, cache_dir: Path | None = None) -> InstalledModel | None:
    """Any model repo in the cache, loadable or not (a GGUF-only or unsupported repo that `pull` fetched)."""
    for repo in hf_cache.scan(_cache(cache_dir)):
        if repo.repo_type == "model" and repo.repo_id == repo_id:
            path = repo.revisions[0].path if repo.revisions else repo.path
            return InstalledModel(id=repo.repo_id, kind="other", backend="", source=HF_CACHE, path=path,
                                  size_bytes=repo.size_bytes, repo_path=repo.path)  # fmt: skip
    return None


def _cache(cache_dir: Path | None) -> Path:
    """The cache folder, resolved now (huggingface_hub's own default is fixed when it is imported)."""
    return Path(cache_dir) if cache_dir is not None else hf_cache.hub_cache_dir()


def _describe(spec: ModelSpec, paths: AppPaths, repos: dict[str, hf_cache.CachedRepo]) -> InstalledModel:
    kind = ROLES.get(spec.kind, spec.kind)
    if spec.path.parent == paths.models_dir:
        return InstalledModel(spec.id, kind, spec.kind, IMPORTED, spec.path, folder_bytes(spec.path))
    repo = repos.get(spec.id)
    if repo is not None:
        return InstalledModel(spec.id, kind, spec.kind, HF_CACHE, spec.path, repo.size_bytes, repo_path=repo.path)
    source = BUILT_IN if spec.id == DEFAULT_EMBEDDER_ID else IMPORTED
    return InstalledModel(spec.id, kind, spec.kind, source, spec.path, folder_bytes(spec.path))


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


def remove_model(model: InstalledModel, cache_dir: Path | None = None) -> int:
    """Delete a model from disk; returns the bytes freed. A cache repo goes with all its revisions; an imported
    folder that is a symlink loses only the link (its target was never ours). Raises ValueError for the
    built-in embedder and OSError when the files cannot be deleted."""
    if model.source == BUILT_IN:
        raise ValueError(f"{model.id} is built in (it ships in a Python package) and cannot be removed")
    if model.source == HF_CACHE:
        return hf_cache.delete_repo(model.id, _cache(cache_dir))
    if model.path.is_symlink():
        model.path.unlink()
        return 0
    size = folder_bytes(model.path)
    shutil.rmtree(model.path)
    return size
