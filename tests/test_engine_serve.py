"""`workbench serve` through the engine (issue 16, point 4): the engine's listeners in-process with a fake model (the
API on a TCP port of the engine's loop, a line per request on the listener's stream, 409 for a taken port, config.toml's
listener), and end to end with subprocesses: a serve face and a second client share one loaded model, ctrl+c closes
only the face's listener, a kill -9 of the face closes it too, and `workbench stop` ends the face with "engine
stopped"."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from tests.support.engines import serving
from tests.support.fake_chat import FakeChatBackend, services_with_fake
from workbench.bootstrap import Services
from workbench.client.engine import EngineClient, EngineRequestError
from workbench.core.engine_home import engine_home
from workbench.core.settings.paths import AppPaths
from workbench.server import engine_listeners
from workbench.server.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 30.0  # every wait in this file is bounded by it


@dataclass
class Running:
    engine: Engine
    services: Services
    backend: FakeChatBackend
    client: EngineClient
    task: asyncio.Task[str]
    loads: list[str]


async def _no_import(progress: object = None) -> None:
    """In place of the first-use import of SmolLM2: these tests serve the fake model only."""


@contextlib.asynccontextmanager
async def running_engine(tmp_path: Path, config: str | None = None, import_defaults: bool = False,
                         **engine_args: Any) -> AsyncIterator[Running]:  # fmt: skip
    paths = AppPaths.under(tmp_path)
    if config is not None:
        paths.config_dir.mkdir(parents=True, exist_ok=True)
        paths.config_file.write_text(config)
    services, backend = services_with_fake(paths)
    if not import_defaults:
        services.bring_in_embedded_defaults = _no_import  # type: ignore[method-assign]
    loads: list[str] = []
    real_load = backend.load

    def counting_load(spec: Any) -> Any:
        loads.append(spec.id)
        return real_load(spec)

    backend.load = counting_load  # type: ignore[method-assign]
    home = engine_home(paths)
    engine = Engine(services, home, **engine_args)
    task = await serving(engine, home)
    client = EngineClient(home.socket)
    try:
        yield Running(engine, services, backend, client, task, loads)
    finally:
        if not task.done():
            await client.stop()
            await asyncio.wait_for(task, WAIT_S)


async def wait_until(condition: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := await condition() if asyncio.iscoroutinefunction(condition) else condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return value


async def port_open(url: str) -> bool:
    """Whether the API at ``url`` (…/v1) answers GET /models."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.get(f"{url}/models") as response:
                return response.status in (200, 401)
    except aiohttp.ClientConnectionError:
        return False


async def ask(url: str, model: str = "fake-chat", key: str = "none", stream: bool = False) -> str:
    async with openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0, timeout=WAIT_S) as api:
        messages: Any = [{"role": "user", "content": "hi"}]
        if not stream:
            answer = await api.chat.completions.create(model=model, messages=messages)
            return answer.choices[0].message.content or ""
        chunks = await api.chat.completions.create(model=model, messages=messages, stream=True)
        return "".join([chunk.choices[0].delta.content or "" async for chunk in chunks if chunk.choices])


class Lines:
    """A listener's request stream read in the background, line by line."""

    def __init__(self, client: EngineClient, listener_id: str) -> None:
        self.lines: list[dict[str, Any]] = []
        self.ended = False
        self.task = asyncio.create_task(self._read(client, listener_id))

    async def _read(self, client: EngineClient, listener_id: str) -> None:
        try:
            async for line in client.listener_requests(listener_id):
                self.lines.append(line)
        finally:
            self.ended = True

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("type") == kind]

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


# --- in-process: the engine's listeners ------------------------------------------------------------


async def test_a_listener_serves_the_api_and_streams_a_line_per_request_and_delete_closes_it(tmp_path: Path) -> None:
    async with running_engine(tmp_path) as run:
        await run.services.manager.load("fake-chat")  # loaded by another face first
        row = await run.client.open_listener("127.0.0.1", 0)
        assert row is not None and set(row) == {"id", "url", "host", "port", "origin", "keep", "key", "watchers",
                                                "requests", "opened_at"}  # fmt: skip
        assert row["url"] == f"http://127.0.0.1:{row['port']}/v1" and row["port"] > 0
        assert (row["origin"], row["keep"], row["key"]) == ("face", False, False)
        lines = Lines(run.client, row["id"])
        await wait_until(lambda: lines.of("listener"), "the stream's first line")
        assert lines.lines[0]["id"] == row["id"] and lines.lines[0]["url"] == row["url"]

        assert await ask(row["url"]) == "Hello there!"
        assert await ask(row["url"], stream=True) == "Hello there!"
        requests = await wait_until(lambda: len(lines.of("request")) >= 2 and lines.of("request"), "two request lines")
        whole, streamed = requests
        assert whole["method"] == "POST" and whole["path"] == "/v1/chat/completions" and whole["status"] == 200
        assert whole["model"] == "fake-chat" and whole["stream"] is False and streamed["stream"] is True
        assert whole["completion_tokens"] == 3 and whole["prompt_tokens"] > 0 and "tok" in whole["figures"]
        assert whole["remote"] == "127.0.0.1" and whole["duration_s"] >= 0 and "listener" not in whole
        assert run.loads == ["fake-chat"]  # the API used the model the other face loaded: no second load

        async with aiohttp.ClientSession() as session:
            async with session.get(f"{row['url']}/models/nope") as response:
                assert response.status == 404
        missing = await wait_until(lambda: len(lines.of("request")) >= 3 and lines.of("request")[2], "a 404's line")
        assert (missing["path"], missing["status"], missing["model"]) == ("/v1/models/nope", 404, None)

        listed = await run.client.listeners()
        assert listed is not None and listed["config_error"] is None
        [listed_row] = listed["listeners"]
        assert listed_row["id"] == row["id"] and listed_row["watchers"] == 1 and listed_row["requests"] == 3
        assert (await run.client.ps() or {})["clients"] == 1  # the face reading the stream is attached

        assert await run.client.close_listener(row["id"]) == {"id": row["id"], "closed": True}
        assert not await port_open(row["url"])
        await asyncio.wait_for(lines.task, WAIT_S)
        assert lines.lines[-1] == {"type": "closed", "reason": "closed on request"}
        assert (await run.client.listeners() or {})["listeners"] == []
        await wait_until(lambda: run.engine.clients == 0, "the face to detach")
        with pytest.raises(EngineRequestError) as gone:
            await run.client.close_listener(row["id"])
        assert gone.value.status == 404
        assert not run.task.done()  # the engine goes on


async def test_two_listeners_share_one_loaded_model_and_each_stream_has_its_own_lines(tmp_path: Path) -> None:
    async with running_engine(tmp_path) as run:
        first = await run.client.open_listener("127.0.0.1", 0)
        second = await run.client.open_listener("localhost", 0, keep=True)
        assert first is not None and second is not None and first["port"] != second["port"]
        first_lines, second_lines = Lines(run.client, first["id"]), Lines(run.client, second["id"])
        await wait_until(lambda: first_lines.lines and second_lines.lines, "both streams")
        assert await ask(first["url"]) == "Hello there!"
        assert await ask(second["url"]) == "Hello there!"
        assert await ask(second["url"]) == "Hello there!"
        await wait_until(lambda: len(second_lines.of("request")) == 2, "the second listener's lines")
        assert len(first_lines.of("request")) == 1
        assert run.loads == ["fake-chat"]
        ps = await run.client.ps()
        assert ps is not None and [model["id"] for model in ps["models"]] == ["fake-chat"]
        await first_lines.stop()
        await second_lines.stop()


async def test_a_port_in_use_is_a_409_that_says_so_and_opens_nothing(tmp_path: Path) -> None:
    async with running_engine(tmp_path) as run:
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        try:
            with pytest.raises(EngineRequestError) as refused:
                await run.client.open_listener("127.0.0.1", taken.getsockname()[1])
        finally:
            taken.close()
        assert refused.value.status == 409 and "the port is in use" in str(refused.value)
        row = await run.client.open_listener("127.0.0.1", 0, keep=True)
        assert row is not None
        with pytest.raises(EngineRequestError) as twice:
            await run.client.open_listener("127.0.0.1", row["port"])
        assert twice.value.status == 409 and f"already serves the API on {row['url']}" in str(twice.value)
        assert [listed["id"] for listed in (await run.client.listeners() or {})["listeners"]] == [row["id"]]


async def _post(socket_path: Path, body: bytes) -> tuple[int, dict[str, Any]]:
    connector = aiohttp.UnixConnector(path=str(socket_path))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post("http://engine/v1/listeners", data=body,
                                headers={"Content-Type": "application/json"}) as response:  # fmt: skip
            return response.status, await response.json()


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"[1]", 400, "JSON object"),
        (b"{nope", 400, "not JSON"),
        (json.dumps({"port": 0, "api_key_env": "X"}).encode(), 400, "unknown key"),
        (json.dumps({"port": "80"}).encode(), 400, "'port' must be a port number"),
        (json.dumps({"port": 70000}).encode(), 400, "'port' must be a port number"),
        (json.dumps({"port": True}).encode(), 400, "'port' must be a port number"),
        (json.dumps({"host": "a b", "port": 0}).encode(), 400, "'host' must be"),
        (json.dumps({"host": "", "port": 0}).encode(), 400, "'host' must be"),
        (json.dumps({"port": 0, "api_key": "sk secret"}).encode(), 400, "'api_key' must be"),
        (json.dumps({"port": 0, "keep": "yes"}).encode(), 400, "'keep' must be"),
        (json.dumps({"host": "0.0.0.0", "port": 0}).encode(), 400, "needs an API key"),
        (json.dumps({"host": "x" * 20000}).encode(), 413, "larger than"),
    ],
)  # fmt: skip
async def test_bad_listener_bodies_are_refused_without_quoting_the_key(tmp_path: Path, body: bytes, status: int,
                                                                      says: str) -> None:  # fmt: skip
    async with running_engine(tmp_path) as run:
        answer_status, answer = await _post(run.engine.home.socket, body)
        assert answer_status == status and says in answer["error"] and "secret" not in answer["error"]
        assert (await run.client.listeners() or {})["listeners"] == []


async def test_with_a_key_every_request_asks_for_it_and_the_key_is_never_answered(tmp_path: Path) -> None:
    async with running_engine(tmp_path) as run:
        row = await run.client.open_listener("127.0.0.1", 0, api_key="sk-test-key", keep=True)
        assert row is not None and row["key"] is True and "sk-test-key" not in json.dumps(row)
        lines = Lines(run.client, row["id"])
        with pytest.raises(openai.AuthenticationError):
            await ask(row["url"], key="wrong")
        assert await ask(row["url"], key="sk-test-key") == "Hello there!"
        statuses = await wait_until(lambda: [line["status"] for line in lines.of("request")] or None, "lines")
        await wait_until(lambda: len(lines.of("request")) == 2, "both lines")
        assert [line["status"] for line in lines.of("request")] == [401, 200], statuses
        assert "sk-test-key" not in json.dumps(await run.client.listeners())
        await lines.stop()


async def test_a_faces_listener_closes_when_its_stream_ends_or_nobody_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_listeners, "ATTACH_GRACE_S", 0.3)
    async with running_engine(tmp_path) as run:
        watched = await run.client.open_listener("127.0.0.1", 0)
        kept = await run.client.open_listener("127.0.0.1", 0, keep=True)
        assert watched is not None and kept is not None
        lines, kept_lines = Lines(run.client, watched["id"]), Lines(run.client, kept["id"])
        await wait_until(lambda: lines.lines and kept_lines.lines, "both streams")
        await asyncio.sleep(0.5)  # past the grace: read, so kept open
        assert await port_open(watched["url"])
        await lines.stop()  # the face went away (its connection closed)
        await kept_lines.stop()

        async def only_kept() -> bool:
            return [row["id"] for row in (await run.client.listeners() or {})["listeners"]] == [kept["id"]]

        await wait_until(only_kept, "the watched listener to close when its face left")
        assert not await port_open(watched["url"]) and await port_open(kept["url"])

        unread = await run.client.open_listener("127.0.0.1", 0)
        assert unread is not None
        await wait_until(only_kept, "a listener nobody read to close after the grace")
        assert not await port_open(unread["url"])


@pytest.mark.parametrize("import_fails", [False, True])
async def test_a_listener_brings_in_the_default_model_and_registers_every_model_before_it_listens(
    tmp_path: Path, tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch, import_fails: bool
) -> None:
    """What `workbench serve` did before it listened, now the engine's: the first-use import of the default chat model
    (clients such as Open WebUI read GET /v1/models once), and the models only a scan or a remote server knows."""
    from tests.support.fake_openai import fake_openai
    from workbench.core.models import local as local_models
    from workbench.core.models.gguf_import import GgufImportError
    from workbench.core.models.local import DEFAULT_CHAT_ID, DEFAULT_EMBEDDER_ID

    imports: list[Path] = []

    def import_gguf(gguf: Path, dest: Path, bits: int = 4, progress: Any = None, overwrite: bool = False,
                    generation: Any = None) -> Path:  # fmt: skip
        imports.append(dest)
        if import_fails:
            raise GgufImportError("MLX cannot read this GGUF (test)")
        shutil.copytree(tiny_models["small"], dest)
        return dest

    monkeypatch.setattr(local_models, "import_gguf", import_gguf)
    with fake_openai(model="m") as remote:
        config = f'[[endpoints]]\nname = "lab"\nbase_url = "{remote.base_url}"\n'  # models: asked the server
        async with running_engine(tmp_path, config, import_defaults=True) as run:
            assert "lab:m" not in [info.spec.id for info in run.services.manager.models()]  # not asked at start
            row = await run.client.open_listener("127.0.0.1", 0)
            assert row is not None
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{row['url']}/models") as response:
                    listed = [model["id"] for model in (await response.json())["data"]]
            assert "fake-chat" in listed and "lab:m" in listed
            assert (DEFAULT_CHAT_ID in listed) is not import_fails
            assert imports == [tmp_path / "data" / "models" / DEFAULT_CHAT_ID]
            assert DEFAULT_EMBEDDER_ID in [info.spec.id for info in run.services.manager.models()]
            assert await run.client.open_listener("127.0.0.1", 0) is not None
            assert len(imports) == (2 if import_fails else 1)  # first use only (a failed one is tried again)


async def test_a_config_listener_opens_when_the_engine_starts_and_keeps_it_resident(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    now = [1000.0]
    config = f'[serve]\nhost = "127.0.0.1"\nport = {port}\n'
    async with running_engine(tmp_path, config, idle_exit_s=60, check_s=0.01, clock=lambda: now[0]) as run:

        with pytest.raises(EngineRequestError) as taken:  # asked as the engine starts: told whose the port is
            await run.client.open_listener("127.0.0.1", port)
        assert taken.value.status == 409 and "(config.toml's [serve] host/port)" in str(taken.value)

        async def configured() -> list[dict[str, Any]]:
            return (await run.client.listeners() or {}).get("listeners", [])

        [row] = await wait_until(configured, "config.toml's listener")
        assert (row["origin"], row["keep"], row["url"]) == ("config", True, f"http://127.0.0.1:{port}/v1")
        assert await ask(row["url"]) == "Hello there!"
        await run.services.manager.unload("fake-chat")
        now[0] += 3600
        await asyncio.sleep(0.2)
        assert not run.task.done()  # an open configured listener keeps the engine resident
        with pytest.raises(EngineRequestError) as taken:
            await run.client.open_listener("localhost", port)  # another name for it: found when the bind fails
        assert taken.value.status == 409 and "config.toml" in str(taken.value)
        lines = Lines(run.client, row["id"])
        await wait_until(lambda: lines.lines, "the stream")
        assert await run.client.stop() is not None
        assert await asyncio.wait_for(run.task, WAIT_S) == "asked to stop"
        await asyncio.wait_for(lines.task, WAIT_S)
        assert lines.lines[-1] == {"type": "closed", "reason": "the engine stopped"}
        assert not await port_open(row["url"])


async def test_a_config_listener_beyond_loopback_without_a_key_is_refused_and_said(tmp_path: Path) -> None:
    config = '[serve]\nhost = "0.0.0.0"\nport = 1\napi_key_env = "WB_ENGINE_SERVE_UNSET_KEY"\n'
    os.environ.pop("WB_ENGINE_SERVE_UNSET_KEY", None)
    async with running_engine(tmp_path, config) as run:

        async def said() -> str | None:
            return (await run.client.listeners() or {}).get("config_error")

        error = await wait_until(said, "the config listener's error")
        assert "$WB_ENGINE_SERVE_UNSET_KEY" in error and "0.0.0.0:1" in error
        assert (await run.client.listeners() or {})["listeners"] == []


def test_serve_host_and_port_settings_are_validated(tmp_path: Path) -> None:
    from workbench.core.settings.config import Settings, load_settings

    path = tmp_path / "config.toml"
    path.write_text('[serve]\nhost = "0.0.0.0"\nport = 8080\n')
    settings, issues = load_settings(path)
    assert issues == [] and (settings.serve_host, settings.serve_port) == ("0.0.0.0", 8080)
    assert (Settings().serve_host, Settings().serve_port) == (None, None)
    path.write_text('[serve]\nhost = "a b"\nport = 0\n')
    settings, issues = load_settings(path)
    assert (settings.serve_host, settings.serve_port) == (None, None)
    assert [issue.key for issue in issues] == ["serve.host", "serve.port"]
    assert "without spaces" in issues[0].message and "from 1 to 65535" in issues[1].message


def test_a_request_line_says_who_asked_what_and_how_it_went() -> None:
    from workbench.cli.serve import request_line

    line = request_line({"type": "request", "at": 0.0, "remote": "127.0.0.1", "method": "POST",
                         "path": "/v1/chat/completions", "status": 200, "duration_s": 1.234, "model": "m",
                         "stream": True, "figures": "5 tok @ 50.0 tok/s"})  # fmt: skip
    assert line.endswith(" 127.0.0.1 POST /v1/chat/completions 200 1.23 s m (streamed) · 5 tok @ 50.0 tok/s")
    bare = request_line({"type": "request", "method": "GET", "path": "/v1/nope", "status": 404, "model": None})
    assert bare.endswith(" - GET /v1/nope 404")


# --- end to end: `workbench serve` as a face of a `workbench engine` subprocess ------------------------


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "WORKBENCH_HOME": str(home), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], env=_env(home), capture_output=True,
                          text=True, timeout=120)  # fmt: skip


async def start_face(home: Path, *args: str) -> tuple[asyncio.subprocess.Process, str]:
    """`workbench serve --port 0 ARGS`, once it says where it serves: the process and the URL."""
    face = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workbench.cli", "serve", "--port", "0", *args, env=_env(home),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert face.stderr is not None
    said: list[str] = []
    while not any("serving the OpenAI API on" in line for line in said):
        line = (await asyncio.wait_for(face.stderr.readline(), 90)).decode()
        assert line, "serve ended: " + "".join(said)
        said.append(line)
    return face, next(line for line in said if "serving" in line).split(" on ")[1].split()[0]


async def test_workbench_serve_shares_the_engines_model_and_ctrl_c_or_kill_9_close_only_its_listener(
    tmp_path: Path, tiny_models: dict[str, Path]
) -> None:
    from workbench.core.models.local import DEFAULT_CHAT_ID

    home = tmp_path / "home"
    paths = AppPaths.under(home)
    paths.models_dir.mkdir(parents=True)
    (paths.models_dir / DEFAULT_CHAT_ID).symlink_to(tiny_models["small"])  # imported already: no import
    client = EngineClient(engine_home(paths).socket)
    faces: list[asyncio.subprocess.Process] = []
    try:
        face, url = await start_face(home)
        faces.append(face)
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        info = await client.engine_info()
        assert info is not None and info["pid"] != face.pid  # the engine runs on its own, in the background

        async with openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=60) as api:
            answer = await api.chat.completions.create(model=DEFAULT_CHAT_ID, max_tokens=3,
                                                       messages=[{"role": "user", "content": "hi"}])  # fmt: skip
        assert answer.choices[0].message.content is not None
        assert face.stdout is not None
        printed = (await asyncio.wait_for(face.stdout.readline(), WAIT_S)).decode()
        assert "POST /v1/chat/completions 200" in printed and DEFAULT_CHAT_ID in printed and "tok" in printed

        other = await client.open_listener("127.0.0.1", 0, keep=True)  # another face asks for the same model
        assert other is not None
        async with openai.AsyncOpenAI(base_url=other["url"], api_key="none", max_retries=0, timeout=60) as api:
            await api.chat.completions.create(model=DEFAULT_CHAT_ID, max_tokens=3,
                                              messages=[{"role": "user", "content": "hello"}])  # fmt: skip
        listed = _cli(home, "ps", "--json")
        models = json.loads(listed.stdout)["models"]
        assert [model["id"] for model in models] == [DEFAULT_CHAT_ID], listed  # one load, shared
        assert await client.close_listener(other["id"]) is not None

        face.send_signal(signal.SIGINT)  # ctrl+c: this listener closes, the engine stays
        assert await asyncio.wait_for(face.wait(), WAIT_S) == 0
        assert face.stderr is not None
        assert "stopped (the engine keeps running" in (await face.stderr.read()).decode()
        assert not await port_open(url)
        assert (await client.engine_info() or {}).get("pid") == info["pid"]
        assert (await client.listeners() or {})["listeners"] == []

        killed, killed_url = await start_face(home)
        faces.append(killed)
        killed.kill()  # kill -9: nobody deletes the listener, its stream's peer is gone
        await killed.wait()

        async def none_left() -> bool:
            return (await client.listeners() or {}).get("listeners") == []

        await wait_until(none_left, "the killed face's listener to close", timeout_s=10)
        assert not await port_open(killed_url)

        last, _url = await start_face(home)
        faces.append(last)
        assert _cli(home, "stop").returncode == 0
        assert await asyncio.wait_for(last.wait(), WAIT_S) == 1
        assert last.stderr is not None and "engine stopped" in (await last.stderr.read()).decode()
    finally:
        for face in faces:
            if face.returncode is None:
                face.kill()
                await face.wait()
        if await client.engine_info() is not None:
            _cli(home, "stop")


async def test_workbench_serve_says_the_port_is_taken_and_exits_1(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    from workbench.core.models.local import DEFAULT_CHAT_ID

    home = tmp_path / "home"
    paths = AppPaths.under(home)
    paths.models_dir.mkdir(parents=True)
    (paths.models_dir / DEFAULT_CHAT_ID).symlink_to(tiny_models["small"])  # imported already: no import
    client = EngineClient(engine_home(paths).socket)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        result = await asyncio.to_thread(_cli, home, "serve", "--port", str(taken.getsockname()[1]))
        assert result.returncode == 1, result.stderr
        assert "the port is in use" in result.stderr and "Traceback" not in result.stderr
    finally:
        taken.close()
        if await client.engine_info() is not None:
            _cli(home, "stop")
