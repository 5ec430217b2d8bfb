"""Remote OpenAI-compatible endpoints: config, a real mlx_lm.server for chat and compare, every connection failure."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.support.mlx_server import MlxServer, free_port
from workbench.core.chat.run import ChatMessage, ChatRun, Finished, Reading, Token
from workbench.core.chat.sampling import SamplingChoice, SamplingSettings
from workbench.core.compare.run import CompareRun, Contender, plan_memory
from workbench.core.compare.run import Finished as SideFinished
from workbench.core.models.backends.remote import KIND, RemoteChatBackend, remote_spec
from workbench.core.models.endpoints import Endpoint, EndpointError, check_connection, list_models, parse_endpoints
from workbench.core.models.inference import InferenceThread
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.memory import GB, Budget
from workbench.core.settings.config import load_settings

GREEDY = SamplingSettings(temperature=0.0, top_p=1.0, max_tokens=8)
QUESTION = [ChatMessage("user", "What is the capital of France?")]
SECRET = "sk-test-secret-0123456789"


def manager_for(*endpoints: Endpoint) -> ModelManager:
    return ModelManager({KIND: RemoteChatBackend(list(endpoints))}, Budget(8 * GB, "test"), InferenceThread(),
                        idle_unload_s=None)  # fmt: skip


async def answer(manager: ModelManager, model_id: str, sampling: SamplingSettings = GREEDY) -> tuple[str, Finished]:
    text, finished = "", None
    async for event in ChatRun(manager, model_id, QUESTION, sampling).events():
        if isinstance(event, Token):
            text += event.text
        elif isinstance(event, Finished):
            finished = event
    assert finished is not None
    return text, finished


# --- config --------------------------------------------------------------------------------------


def test_endpoints_in_config_are_validated_and_keys_stay_out(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[[endpoints]]\nname = "cluster"\nbase_url = "http://gpu-box:8000/v1/"\napi_key_env = "CLUSTER_KEY"\n'
        'models = ["llama-70b"]\ncontext_length = 32768\n\n'
        '[[endpoints]]\nname = "bad one"\nbase_url = "gpu-box"\napi_key = "sk-123"\n',
        encoding="utf-8",
    )
    settings, issues = load_settings(config)
    assert settings.endpoints == [Endpoint("cluster", "http://gpu-box:8000/v1", "CLUSTER_KEY", ("llama-70b",), 32768)]
    text = "\n".join(str(issue) for issue in issues)
    assert f"{config}:11: endpoints[1].api_key: keys do not belong in the config" in text
    assert "endpoints[1].name" in text and "endpoints[1].base_url" in text
    assert remote_spec(settings.endpoints[0], "llama-70b").id == "cluster:llama-70b"


def test_duplicate_names_are_reported() -> None:
    problems: list[str] = []
    endpoints = parse_endpoints([{"name": "a", "base_url": "http://x/v1"}, {"name": "a", "base_url": "http://y/v1"}],
                                lambda where, message: problems.append(f"{where}: {message}"))  # fmt: skip
    assert [e.base_url for e in endpoints] == ["http://x/v1"] and "already called 'a'" in problems[0]


# --- a real mlx_lm.server --------------------------------------------------------------------------



@pytest.fixture
def served(mlx_server: MlxServer) -> Endpoint:
    return Endpoint("mlx", mlx_server.base_url, models=(mlx_server.model,))


@pytest.mark.real_model
async def test_chat_streams_through_mlx_lm_server_with_figures(served: Endpoint, mlx_server: MlxServer) -> None:
    manager = manager_for(served)
    manager.register(remote_spec(served, mlx_server.model))
    text, finished = await answer(manager, served.model_id(mlx_server.model))
    await manager.aclose()
    assert "Paris" in text, text
    figures = finished.figures
    assert figures is not None and figures.ttft_s > 0
    assert figures.prompt_tokens > 10 and 0 < figures.generation_tokens <= 8
    assert figures.generation_tps > 0 and figures.prompt_tps > 0


@pytest.mark.real_model
async def test_compare_a_local_model_against_the_same_model_on_the_server(
    served: Endpoint, mlx_server: MlxServer, smollm2_dir: Path
) -> None:
    from workbench.core.models.backends.mlx_lm import MlxLmBackend
    from workbench.core.models.spec import ModelSpec

    manager = manager_for(served)
    manager.add_backend(MlxLmBackend())
    manager.register(ModelSpec(id="local", name="SmolLM2 (local)", kind="mlx-lm", path=smollm2_dir))
    manager.register(remote_spec(served, mlx_server.model))
    local = Contender("local", "local", GREEDY)
    remote = Contender(served.model_id(mlx_server.model), "server", GREEDY)
    plan = plan_memory(manager, local, remote)
    answers = {"a": "", "b": ""}
    finished = {}
    async for item in CompareRun(manager, local, remote, QUESTION, QUESTION, plan).events():
        if isinstance(item.event, Token):
            answers[item.side] += item.event.text
        elif isinstance(item.event, SideFinished):
            finished[item.side] = item.event
        elif not isinstance(item.event, Reading):
            pytest.fail(f"a side failed: {item.event}")
    await manager.aclose()
    assert "Paris" in answers["a"] and "Paris" in answers["b"], answers
    assert finished["b"].figures is not None and finished["b"].figures.generation_tokens > 0


@pytest.mark.real_model
async def test_the_chat_pane_picks_and_streams_a_remote_model(mlx_server: MlxServer, app_paths) -> None:
    from textual.widgets import Select

    from tests.support.waits import wait_for
    from tests.test_chat_ui import answer_done, open_chat, send
    from workbench.bootstrap import build_services
    from workbench.ui.app import WorkbenchApp

    app_paths.config_dir.mkdir(parents=True)
    app_paths.config_file.write_text(
        f'[[endpoints]]\nname = "mlx"\nbase_url = "{mlx_server.base_url}"\n', encoding="utf-8"
    )  # no models listed: the app asks the server
    app = WorkbenchApp(build_services(app_paths), import_defaults=False, scan_cache=True)
    model_id = f"mlx:{mlx_server.model}"
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: model_id in {i.spec.id for i in app.services.manager.models()},
                       "the server's models", timeout=30)  # fmt: skip
        chat = await open_chat(app, pilot)
        select = chat.query_one("#model-select", Select)
        assert model_id in [value for _, value in select._options]
        select.value = model_id
        chat.sampling = SamplingChoice(values=GREEDY.to_dict())
        await wait_for(pilot, lambda: chat.model_id == model_id, "the model choice")
        await send(pilot, "What is the capital of France?")
        await answer_done(app, pilot)
        messages = app.services.store.chats.messages(chat.conversation.id)
        assert "Paris" in messages[-1].content and messages[-1].figures["generation_tokens"] > 0


# --- connection failures, each in words ------------------------------------------------------------


@pytest.mark.real_model
def test_connection_test_passes_and_names_a_missing_model(served: Endpoint, mlx_server: MlxServer) -> None:
    report = check_connection(served, mlx_server.model)
    assert report.ok, report
    assert "answers" in str(report)
    report = check_connection(served, "no-such-model")
    assert not report.ok and "no model 'no-such-model' on mlx; it serves:" in str(report)
    assert mlx_server.model in str(report)


@pytest.mark.real_model
def test_connection_test_spots_a_wrong_path(mlx_server: MlxServer) -> None:
    wrong = Endpoint("mlx", mlx_server.base_url.removesuffix("/v1"))
    report = check_connection(wrong)
    assert not report.ok
    assert "answered 404: wrong path" in str(report) and f'try base_url = "{mlx_server.base_url}"' in str(report)


def test_connection_refused() -> None:
    closed = Endpoint("lab", f"http://127.0.0.1:{free_port()}/v1")
    report = check_connection(closed)
    assert not report.ok and "refused the connection: nothing listens there" in str(report)


@pytest.fixture
def locked_server() -> Iterator[str]:
    """An OpenAI-shaped server that wants a key nobody has: 401 for everything."""

    async def refuse(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                            "code": "invalid_api_key"}}, status=401)  # fmt: skip

    seen: list[str] = []
    loop = asyncio.new_event_loop()
    port = free_port()
    started = threading.Event()

    async def start() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", refuse)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    def run() -> None:
        loop.run_until_complete(start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    yield f"http://127.0.0.1:{port}/v1"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


def test_unauthorised_names_the_variable_never_the_key(
    locked_server: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = Endpoint("cloud", locked_server, api_key_env="CLOUD_KEY")
    report = check_connection(endpoint)
    assert not report.ok and "refused the API key (401): $CLOUD_KEY is not set" in str(report)

    monkeypatch.setenv("CLOUD_KEY", SECRET)
    with caplog.at_level(logging.DEBUG):
        report = check_connection(endpoint)
        with pytest.raises(EndpointError) as raised:
            list_models(endpoint)
    assert "refused the API key (401): check the key in $CLOUD_KEY" in str(report)
    assert SECRET not in str(report) + str(raised.value) + caplog.text


async def test_a_chat_against_a_dead_endpoint_fails_in_words() -> None:
    dead = Endpoint("lab", f"http://127.0.0.1:{free_port()}/v1", models=("m",))
    manager = manager_for(dead)
    manager.register(remote_spec(dead, "m"))
    with pytest.raises(EndpointError, match="refused the connection"):
        await answer(manager, "lab:m")
    await manager.aclose()


# --- remote streams never hold up the MLX thread ----------------------------------------------------


async def test_a_slow_remote_stream_does_not_hold_up_the_inference_thread() -> None:
    inference = InferenceThread()
    delivered: list[str] = []

    def slow() -> Iterator[str]:
        for i in range(3):
            time.sleep(0.3)  # a network wait
            yield f"slow{i}"

    def fast() -> Iterator[str]:
        yield from (f"fast{i}" for i in range(50))

    async def collect(stream: AsyncIterator[str]) -> None:
        async for item in stream:
            delivered.append(item)

    await asyncio.wait_for(asyncio.gather(collect(inference.thread_stream(slow)), collect(inference.stream(fast))),
                           timeout=10)  # fmt: skip
    inference.shutdown()
    assert delivered.index("fast49") < delivered.index("slow0")  # all 50 fast steps before the first slow one


async def test_models_view_tests_the_connection_of_the_selected_remote_model(app_paths) -> None:
    from textual.widgets import DataTable, Static

    from tests.support.waits import wait_for
    from workbench.bootstrap import build_services
    from workbench.ui.app import WorkbenchApp

    app_paths.config_dir.mkdir(parents=True)
    app_paths.config_file.write_text(
        f'[[endpoints]]\nname = "lab"\nbase_url = "http://127.0.0.1:{free_port()}/v1"\nmodels = ["big-model"]\n',
        encoding="utf-8",
    )
    app = WorkbenchApp(build_services(app_paths), import_defaults=False, scan_cache=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("6")
        await wait_for(pilot, lambda: getattr(app.screen, "MODE", None) == "models", "the Models view")
        table = app.screen.query_one(DataTable)
        row = [key.value for key in table.rows].index("lab:big-model")
        table.move_cursor(row=row)
        assert "remote" in [str(cell) for cell in table.get_row_at(row)]
        await pilot.press("t")
        detail = app.screen.query_one("#models-detail", Static)
        await wait_for(pilot, lambda: "refused the connection" in str(detail.render()), "the connection report")
        assert "start the server or fix base_url" in str(detail.render())
