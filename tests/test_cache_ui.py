"""The cache view deletes through the model registry: a repo whose model is in use stays, with the reason shown;
once free, the repo goes and the manager forgets its model."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable

from tests.support.fake_chat import FakeChatBackend
from tests.support.waits import wait_for
from tests.test_local_models import add_snapshot, folder_files
from workbench.bootstrap import build_services
from workbench.core.hub import cache as hf_cache
from workbench.core.models.backends import mlx_lm
from workbench.core.settings.paths import AppPaths
from workbench.ui.app import WorkbenchApp
from workbench.ui.screens.cache import CacheScreen
from workbench.ui.screens.dialogs import ConfirmScreen

SIZE = (100, 30)
LLAMA = "org/tiny-llama"


async def test_deleting_a_repo_in_use_is_refused_with_the_reason(
    app_paths: AppPaths, tmp_path: Path, tiny_models: dict[str, Path]
) -> None:
    cache = tmp_path / "hub"
    add_snapshot(cache, LLAMA, folder_files(tiny_models["small"]), "a" * 40)
    services = build_services(app_paths, hf_cache=cache)
    services.manager.add_backend(FakeChatBackend(kind=mlx_lm.KIND))  # scripted: no MLX load
    for spec in services.registry.loadable_specs():
        services.manager.register(spec)
    app = WorkbenchApp(services, import_defaults=False, scan_cache=False)
    async with app.run_test(size=SIZE) as pilot:
        lease = await services.manager.acquire(LLAMA, holder="chat")
        await app.push_screen(CacheScreen())
        screen = app.screen
        assert isinstance(screen, CacheScreen)
        await wait_for(pilot, lambda: bool(screen.rows), "the cache scan")
        screen.query_one(DataTable).move_cursor(row=[repo.repo_id for repo, _rev in screen.rows].index(LLAMA))

        async def delete_repo() -> None:
            await pilot.press("D")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
            await pilot.press("y")

        await delete_repo()
        await wait_for(pilot, lambda: any("in use by chat" in n.message for n in app._notifications), "the reason")
        assert hf_cache.repo_dir(cache, LLAMA).is_dir()
        assert services.manager.info(LLAMA).leases == 1

        await lease.release()
        await delete_repo()
        await wait_for(pilot, lambda: not screen.rows, "the repo to go")
        assert not hf_cache.repo_dir(cache, LLAMA).exists()
        assert LLAMA not in {info.spec.id for info in services.manager.models()}
