"""Whether a hub repo is already on this machine, read from the standard Hugging Face cache layout."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path


class LocalStatus(StrEnum):
    NOT_DOWNLOADED = "–"
    PARTIAL = "partial"
    DOWNLOADED = "downloaded"


def hub_cache_dir() -> Path:
    from huggingface_hub import constants  # honours HF_HOME / HF_HUB_CACHE

    return Path(constants.HF_HUB_CACHE)


def repo_folder(repo_id: str, cache_dir: Path | None = None) -> Path:
    return (cache_dir or hub_cache_dir()) / f"models--{repo_id.replace('/', '--')}"


def local_status(repo_id: str, cache_dir: Path | None = None) -> LocalStatus:
    folder = repo_folder(repo_id, cache_dir)
    if not folder.is_dir():
        return LocalStatus.NOT_DOWNLOADED
    if any(folder.glob("blobs/*.incomplete")):
        return LocalStatus.PARTIAL
    snapshots = [s for s in (folder / "snapshots").glob("*") if s.is_dir()]
    for snapshot in snapshots:
        if (snapshot / "config.json").exists() and any(snapshot.glob("*.safetensors")):
            return LocalStatus.DOWNLOADED
    if any(any(s.iterdir()) for s in snapshots):
        return LocalStatus.PARTIAL
    return LocalStatus.NOT_DOWNLOADED
