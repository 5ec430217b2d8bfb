"""Whether a hub repo is already on this machine, read from the standard Hugging Face cache layout."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from workbench.core.hub import cache as hf_cache


class LocalStatus(StrEnum):
    NOT_DOWNLOADED = "–"
    PARTIAL = "partial"
    DOWNLOADED = "downloaded"


def local_status(repo_id: str, cache_dir: Path | None = None) -> LocalStatus:
    folder = hf_cache.repo_dir(cache_dir or hf_cache.hub_cache_dir(), repo_id)
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
