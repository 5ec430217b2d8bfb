"""Search, download, load and chat, end to end: the loopback hub's tiny real MLX model through every pane."""

from __future__ import annotations

from textual.widgets import DataTable, Select

from tests.support.hub_repos import TINY_REPO_ID
from tests.support.hub_server import LoopbackHub
from tests.support.waits import wait_for
from tests.test_chat_ui import answer_done, send
from workbench.bootstrap import build_services
from workbench.core.chat.sampling import SamplingChoice
from workbench.core.hub.client import HubModel
from workbench.core.hub.downloads.jobs import JobState
from workbench.core.settings.paths import AppPaths
from workbench.core.storage.chats import MessageStatus
from workbench.ui.app import WorkbenchApp
from workbench.ui.screens.catalog import CatalogPane
from workbench.ui.screens.chat import ChatPane
from workbench.ui.widgets.chat_input import ChatInput

WAIT = 60


async def test_search_download_load_and_chat(app_paths: AppPaths, online_hub: LoopbackHub) -> None:
    services = build_services(app_paths, hub_endpoint=online_hub.url, hf_cache=app_paths.data_dir / "hf-cache")
    app = WorkbenchApp(services, import_defaults=False, scan_cache=True)
    async with app.run_test(size=(100, 30)) as pilot:
        catalog = app.screen
        assert isinstance(catalog, CatalogPane)
        await pilot.press("slash", *"tiny", "enter")
        await wait_for(pilot, lambda: any(isinstance(r, HubModel) for r in catalog.rows), "search results")
        row = next(i for i, r in enumerate(catalog.rows) if isinstance(r, HubModel) and r.repo_id == TINY_REPO_ID)
        catalog.query_one(DataTable).move_cursor(row=row)
        await pilot.press("d")
        job = services.downloads.jobs()[0]
        await wait_for(pilot, lambda: services.downloads.job(job.id).state is JobState.DONE, "the download")
        await wait_for(pilot, lambda: TINY_REPO_ID in [i.spec.id for i in services.manager.models()],
                       "the downloaded model in the model list")  # fmt: skip

        await pilot.press("3")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatPane), "the Chat pane")
        chat = app.screen
        assert isinstance(chat, ChatPane)
        chat.query_one("#model-select", Select).value = TINY_REPO_ID
        await wait_for(pilot, lambda: chat.model_id == TINY_REPO_ID, "the model choice")
        chat.sampling = SamplingChoice(values={"temperature": 0.0, "max_tokens": 5})
        chat.query_one(ChatInput).focus()
        await send(pilot, "w1 w2 w3")
        await answer_done(app, pilot)
        answer = services.store.chats.messages(chat.conversation.id)[-1]
        assert answer.status is MessageStatus.COMPLETE and answer.figures
        assert answer.figures["generation_tokens"] >= 1
