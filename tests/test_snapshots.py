"""Snapshot tests: what a person sees at 80x24 (numbers pinned so the pictures are stable)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.bootstrap import Services
from workbench.core.hub.client import HubCatalog
from workbench.core.hub.downloads.queue import DownloadManager
from workbench.core.models.inference import InferenceThread
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.memory import GB, MB, Budget, MemoryEstimate, MemorySnapshot
from workbench.core.models.spec import ModelRole, ModelSpec
from workbench.core.settings.config import Settings
from workbench.core.settings.paths import AppPaths
from workbench.core.storage.store import Store
from workbench.ui.app import WorkbenchApp


class FixedProbe:
    def snapshot(self) -> MemorySnapshot:
        return MemorySnapshot(system_total=16 * GB, system_used=9 * GB, process_rss=180 * MB, mlx_active=None)


class FixedBackend:
    kind = "mlx-lm"
    role = ModelRole.CHAT

    def estimate(self, spec: ModelSpec, context_length: int) -> MemoryEstimate:
        return MemoryEstimate(weights=int(2.1 * GB), kv_cache=512 * MB)

    def prepare(self) -> None: ...

    def load(self, spec: ModelSpec) -> Any:
        return object()

    def unload(self, handle: Any) -> None: ...

    def memory_in_use(self) -> int:
        return 0

    def loaded_bytes(self, handle: Any, delta: int) -> int:
        return int(2.0 * GB)


def pinned_app(home: Path) -> WorkbenchApp:
    manager = ModelManager({"mlx-lm": FixedBackend()}, Budget(10 * GB, "test"), InferenceThread())
    for name in ("Llama-3.2-3B-Instruct-4bit", "Qwen2.5-7B-Instruct-4bit"):
        manager.register(ModelSpec(id=name, name=name, kind="mlx-lm", path=Path("/models") / name))
    paths = AppPaths.under(home)
    store = Store(paths.database_file)
    services = Services(paths=paths, settings=Settings(), manager=manager, probe=FixedProbe(),  # type: ignore[arg-type]
                        catalog=[], store=store, hub=HubCatalog(paths.data_dir / "hub"),
                        downloads_factory=lambda: DownloadManager(store))  # fmt: skip
    return WorkbenchApp(services, import_defaults=False, scan_cache=False)


def test_embeddings_pane_empty_at_80x24(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(pinned_app(tmp_path), press=["5"], terminal_size=(80, 24))


def test_models_view_at_80x24(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(pinned_app(tmp_path), press=["6", "down"], terminal_size=(80, 24))
