"""One-shot answers through the engine (issue 16, points 1 and 9): ``POST /v1/chat`` in-process against the real
services with a scripted model (its checks, the streamed answer, its job in ps, a face that leaves, the stop), and
`workbench chat` as a subprocess face that starts the engine and reuses it, with its exit statuses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.engines import serving, stop_engine_of
from tests.support.fake_chat import FakeChatBackend, Script, services_with_fake
from workbench.cli.ps import ps_text
from workbench.client.engine import EngineClient, EngineRequestError
from workbench.core.engine_home import EngineHome, engine_home
from workbench.core.models.local import DEFAULT_EMBEDDER_ID
from workbench.core.settings.paths import AppPaths
from workbench.server import engine_chat
from workbench.server.engine import Engine

ROOT = Path(__file__).resolve().parents[1]


async def until(condition: Callable[[], object], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def engine_with(tmp_path: Path, script: Script | None = None,
                      config: str = "") -> AsyncIterator[tuple[Engine, EngineClient, FakeChatBackend]]:  # fmt: skip
    paths = AppPaths.under(tmp_path / "home")
    if config:
        paths.config_dir.mkdir(parents=True, exist_ok=True)
        paths.config_file.write_text(config)
    services, backend = services_with_fake(paths, script)
    services.hf_cache = tmp_path / "hf"  # an empty cache: an unknown id is looked for there, not in the user's
    home: EngineHome = engine_home(paths)
    engine = Engine(services, home)
    task = await serving(engine, home)
    client = EngineClient(home.socket)
    try:
        yield engine, client, backend
    finally:
        await client.stop()
        assert await asyncio.wait_for(task, 20) == "asked to stop"


async def answer(client: EngineClient, **body: Any) -> list[dict[str, Any]]:
    return [line async for line in client.chat({"model": "fake-chat", "prompt": "hi there", **body})]


async def post_raw(socket: Path, data: bytes) -> tuple[int, dict[str, Any]]:
    connector = aiohttp.UnixConnector(path=str(socket))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post("http://engine/v1/chat", data=data,
                                headers={"Content-Type": "application/json"}) as response:  # fmt: skip
            return response.status, await response.json()


# --- the route's checks --------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "says"), [
    ({"model": "fake-chat", "prompt": "hi", "temprature": 0.2}, "unknown key(s): 'temprature'"),
    ({"prompt": "hi"}, "'model' must be a model id"),
    ({"model": "fake-chat", "prompt": "   "}, "'prompt' must be a non-empty string"),
    ({"model": "fake-chat", "prompt": ["hi"]}, "'prompt' must be a non-empty string"),
    ({"model": "fake\x00chat", "prompt": "hi"}, "control character"),
    ({"model": "x" * 600, "prompt": "hi"}, "'model' must be a model id"),
    ({"model": "fake-chat", "prompt": "hi", "system": 3}, "'system' must be a string"),
    ({"model": "fake-chat", "prompt": "hi", "top_p": 0}, "top_p: expected a number greater than 0"),
    ({"model": "fake-chat", "prompt": "hi", "max_tokens": True}, "max_tokens: expected a whole number"),
    ({"model": "fake-chat", "prompt": "hi", "seed": -1}, "seed: expected a whole number from 0 to 2**63 - 1"),
    (["fake-chat", "hi"], "must be a JSON object"),
])  # fmt: skip
async def test_the_route_refuses_a_bad_body_with_400(tmp_path: Path, body: Any, says: str) -> None:
    async with engine_with(tmp_path) as (engine, client, backend):
        status, document = await post_raw(client.socket, json.dumps(body).encode())
        assert status == 400 and says in document["error"], document
        assert backend.calls == [] and engine.board.rows() == []


async def test_the_route_refuses_what_is_not_json_and_a_body_too_large(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_chat, "MAX_BODY_BYTES", 4096)  # (8 MB bodies: the server lingers to drain them)
    async with engine_with(tmp_path) as (_engine, client, _backend):
        status, document = await post_raw(client.socket, b"{not json")
        assert status == 400 and "not JSON" in document["error"]
        huge = json.dumps({"model": "fake-chat", "prompt": "w " * 2100}).encode()
        status, document = await post_raw(client.socket, huge)
        assert status == 413 and "larger than" in document["error"]


async def test_an_unknown_model_is_a_404_with_the_known_chat_models_and_an_embedder_a_400(tmp_path: Path) -> None:
    async with engine_with(tmp_path, config="[chat]\ntemprature = 0.3\n") as (engine, client, _backend):
        with pytest.raises(EngineRequestError) as unknown:
            await answer(client, model="fake-chta")
        assert unknown.value.status == 404 and unknown.value.document["error"] == "no chat model called 'fake-chta'"
        assert "fake-chat" in unknown.value.document["known"]
        assert any("chat.temprature" in note for note in unknown.value.document["notes"])  # said by the face
        if DEFAULT_EMBEDDER_ID in {info.spec.id for info in engine.services.manager.models()}:
            with pytest.raises(EngineRequestError) as embedder:
                await answer(client, model=DEFAULT_EMBEDDER_ID)
            assert embedder.value.status == 400 and "not a chat model" in str(embedder.value)


# --- answers -------------------------------------------------------------------------------------


async def test_an_answer_streams_its_notes_tokens_and_figures(tmp_path: Path) -> None:
    config = '[chat]\nsystem_prompt = "Be brief."\npreset = "precise"\n'
    async with engine_with(tmp_path, Script(tokens=["Hel", "lo", "!"]), config) as (engine, client, backend):
        lines = await answer(client, max_tokens=8, seed=3)
        kinds = [line["type"] for line in lines]
        assert kinds[0] == "job" and kinds[-1] == "finished" and "error" not in kinds
        assert lines[0]["model"] == "fake-chat" and lines[0]["id"].startswith("gen-")
        notes = [line["message"] for line in lines if line["type"] == "note"]
        assert notes[0] == "loading fake-chat…" and notes[1].startswith("fake-chat loaded")
        assert "".join(line["text"] for line in lines if line["type"] == "token") == "Hello!"
        finished = lines[-1]
        assert finished["figures"]["generation_tokens"] == 3 and finished["finish_reason"] == "stop"
        assert finished["stopped"] is False and "tok/s" in finished["summary"]
        # the system prompt and preset config.toml names, under the values sent
        system, user = {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"}
        assert backend.calls[-1] == [system, user]
        sampling = backend.sampling[-1]
        assert (sampling.temperature, sampling.top_p, sampling.max_tokens, sampling.seed) == (0.2, 0.9, 8, 3)
        again = await answer(client, system="", temperature=0)
        assert not any(line["type"] == "note" for line in again)  # loaded already: no loading notes
        assert backend.calls[-1] == [{"role": "user", "content": "hi there"}] and backend.sampling[-1].temperature == 0
        assert engine.board.rows() == []


async def test_a_model_that_fails_mid_answer_is_an_error_line(tmp_path: Path) -> None:
    async with engine_with(tmp_path, Script(tokens=["a", "b", "c"], fail_after=1)) as (engine, client, _backend):
        lines = await answer(client)
        assert [line["text"] for line in lines if line["type"] == "token"] == ["a"]
        error = lines[-1]
        assert error["type"] == "error" and error["kind"] == "model"
        assert error["message"].startswith("fake-chat failed to answer: RuntimeError: the fake model fell over")
        assert engine.board.rows() == []


async def test_the_answer_is_a_job_in_ps_while_it_runs(tmp_path: Path) -> None:
    hold = threading.Event()
    async with engine_with(tmp_path, Script(hold=hold)) as (_engine, client, _backend):
        running = asyncio.create_task(answer(client))
        try:
            jobs: list[dict[str, Any]] = []
            deadline = time.monotonic() + 10
            while not jobs:
                assert time.monotonic() < deadline, "the answer never showed in ps"
                jobs = (await client.ps() or {})["jobs"]
            [job] = jobs
            assert (job["kind"], job["what"], job["face"], job["progress"]) == ("generation", "fake-chat", "cli", None)
            table = ps_text(await client.ps() or {})
            [row] = [line.split() for line in table.splitlines() if line.startswith(job["id"])]
            assert row[:5] == [job["id"], "generation", "fake-chat", "-", "cli"]
        finally:
            hold.set()
        lines = await asyncio.wait_for(running, 10)
        assert lines[-1]["type"] == "finished"
        assert (await client.ps() or {})["jobs"] == []


async def test_a_face_that_leaves_mid_answer_stops_it(tmp_path: Path) -> None:
    script = Script(tokens=[f" w{n}" for n in range(2000)], delay_s=0.005)
    async with engine_with(tmp_path, script) as (engine, client, backend):
        lines = client.chat({"model": "fake-chat", "prompt": "go on", "max_tokens": 2000})
        async for line in lines:
            if line["type"] == "token":
                break
        await lines.aclose()  # the face hangs up
        await until(lambda: backend.closed.is_set() and not engine.board.rows(), "the answer to stop")
        assert backend.emitted < 2000
        assert not any(info.leases for info in engine.services.manager.models())


async def test_a_face_that_leaves_while_the_answer_waits_stops_it_too(tmp_path: Path) -> None:
    """No line is being sent (the model is busy before its first token): the engine still sees the face go."""
    hold = threading.Event()
    script = Script(tokens=[f" w{n}" for n in range(200)], hold=hold, delay_s=0.005)
    async with engine_with(tmp_path, script) as (engine, client, backend):
        lines = client.chat({"model": "fake-chat", "prompt": "go on"})
        assert (await anext(lines))["type"] == "job"
        await until(backend.started.is_set, "the answer to start")
        await lines.aclose()
        await asyncio.sleep(0.6)  # a few of the engine's looks at the face
        hold.set()
        await until(lambda: backend.closed.is_set() and not engine.board.rows(), "the answer to stop")
        assert backend.emitted < 10


async def test_the_stop_route_ends_the_answer_with_its_figures(tmp_path: Path) -> None:
    script = Script(tokens=[f" w{n}" for n in range(2000)], delay_s=0.005)
    async with engine_with(tmp_path, script) as (engine, client, _backend):
        with pytest.raises(EngineRequestError) as missing:
            await client.stop_chat("gen-99")
        assert missing.value.status == 404
        seen: list[dict[str, Any]] = []
        async for line in client.chat({"model": "fake-chat", "prompt": "go on", "max_tokens": 2000}):
            seen.append(line)
            if line["type"] == "token" and not any(item["type"] == "stopping" for item in seen):
                job = next(item["id"] for item in seen if item["type"] == "job")
                assert await client.stop_chat(job) == {"stopping": True}
                seen.append({"type": "stopping"})
        finished = seen[-1]
        assert finished["type"] == "finished" and finished["stopped"] is True
        assert finished["figures"]["generation_tokens"] < 2000
        assert engine.board.rows() == []


# --- `workbench chat`, a face in its own process -------------------------------------------------


@pytest.fixture
def face_home(tmp_path: Path, tiny_models: dict[str, Path]) -> Iterator[Path]:
    home = tmp_path / "home"
    models = AppPaths.under(home).models_dir
    models.mkdir(parents=True)
    (models / "tiny-small").symlink_to(tiny_models["small"], target_is_directory=True)
    broken = models / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama"}')
    (broken / "model.safetensors").write_bytes(b"not safetensors at all")
    yield home
    stop_engine_of(AppPaths.under(home))


def face_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "WORKBENCH_HOME": str(home), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
           "HF_HUB_CACHE": str(home.parent / "hf"), "HF_HUB_DISABLE_PROGRESS_BARS": "1"}  # fmt: skip
    env.pop("HF_TOKEN", None)
    return env


IMPORTS_OF_A_FACE = """
import json, sys
from workbench.cli import main
code = main.main(sys.argv[1:])
heavy = ("mlx", "mlx_lm", "torch", "sentence_transformers", "transformers", "huggingface_hub", "numpy", "openai")
model_code = ("workbench.bootstrap", "workbench.core.models", "workbench.core.chat.run", "workbench.server")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy or m.startswith(model_code))),
      file=sys.stderr)
sys.exit(code)
"""


def workbench(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], env=face_env(home), capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_chat_starts_the_engine_and_the_next_call_reuses_it_and_its_loaded_model(face_home: Path) -> None:
    first = workbench(face_home, "chat", "tiny-small", "w1 w2", "--max-tokens", "4", "--temperature", "0", "--json")
    assert first.returncode == 0, first.stderr
    assert "loading tiny-small" in first.stderr and json.loads(first.stdout)["model"] == "tiny-small"
    ps = json.loads(workbench(face_home, "ps", "--json").stdout)
    pid = ps["engine"]["pid"]
    assert [model["id"] for model in ps["models"]] == ["tiny-small"] and ps["jobs"] == []

    # the second face runs instrumented: what it imported, on its last stderr line
    second = subprocess.run([sys.executable, "-c", IMPORTS_OF_A_FACE, "chat", "tiny-small", "w1 w2", "--max-tokens",
                             "4", "--temperature", "0", "--json"], env=face_env(face_home), capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stderr.splitlines()[-1]) == []  # no model code, no heavy library, no engine code
    assert "loading" not in second.stderr  # the engine's copy answered
    assert json.loads(second.stdout)["answer"] == json.loads(first.stdout)["answer"]
    again = json.loads(workbench(face_home, "ps", "--json").stdout)
    assert again["engine"]["pid"] == pid and [model["id"] for model in again["models"]] == ["tiny-small"]


def test_chat_exit_statuses_through_the_engine(face_home: Path) -> None:
    unknown = workbench(face_home, "chat", "tiny", "hi")
    assert unknown.returncode == 2 and "did you mean: tiny-small" in unknown.stderr, unknown.stderr
    broken = workbench(face_home, "chat", "broken", "hi")
    assert broken.returncode == 1 and "broken failed to load" in broken.stderr and broken.stdout == ""
    assert "Traceback" not in unknown.stderr + broken.stderr

    command = [sys.executable, "-m", "workbench.cli", "chat", "tiny-small", "w1", "--max-tokens", "4000",
               "--temperature", "1"]  # fmt: skip
    child = subprocess.Popen(command, env=face_env(face_home), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout is not None
        assert select.select([child.stdout], [], [], 60)[0], "no answer within 60 s"
        assert child.stdout.read1(64)  # type: ignore[attr-defined]  # the answer has begun
        child.send_signal(signal.SIGINT)
        _out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=10)
    assert child.returncode == 130, err.decode()
    assert err.decode().splitlines()[-1].endswith("(stopped)") and "Traceback" not in err.decode()
    ps = json.loads(workbench(face_home, "ps", "--json").stdout)
    assert ps["jobs"] == []  # the engine ended the answer


async def test_an_engine_that_stops_mid_answer_ends_it_with_an_error_line(tmp_path: Path) -> None:
    script = Script(tokens=[f" w{n}" for n in range(2000)], delay_s=0.005)
    async with engine_with(tmp_path, script) as (engine, client, backend):
        seen: list[dict[str, Any]] = []
        async for line in client.chat({"model": "fake-chat", "prompt": "go on", "max_tokens": 2000}):
            seen.append(line)
            if line["type"] == "token" and engine.stop_reason is None:
                engine.request_stop("asked to stop")
        assert seen[-1]["type"] == "error", seen[-3:]
        assert "the engine stopped in the middle of the answer" in seen[-1]["message"]
        assert backend.emitted < 2000


@pytest.mark.real_model
def test_the_engine_imports_the_default_chat_model_on_first_use(tmp_path: Path) -> None:
    from workbench.core.models.local import DEFAULT_CHAT_ID

    home = tmp_path / "home"
    try:
        result = workbench(home, "chat", DEFAULT_CHAT_ID, "What is the capital of France?", "--temperature", "0",
                           "--max-tokens", "8")  # fmt: skip
        again = workbench(home, "chat", DEFAULT_CHAT_ID, "Hi", "--max-tokens", "1")
    finally:
        stop_engine_of(AppPaths.under(home))
    assert result.returncode == 0, result.stderr
    assert f"importing {DEFAULT_CHAT_ID} from its package (first use, about 10 s)" in result.stderr
    assert "Paris" in result.stdout
    assert again.returncode == 0 and "importing" not in again.stderr and "loading" not in again.stderr


# --- comparisons: POST /v1/compare ---------------------------------------------------------------


async def test_a_comparison_streams_its_plan_and_both_sides(tmp_path: Path) -> None:
    async with engine_with(tmp_path, Script(tokens=["Hel", "lo", "!"])) as (engine, client, backend):
        lines = [line async for line in client.compare({"a": "fake-chat", "b": "fake-chat", "prompt": "hi",
                                                         "max_tokens": 8, "system": "Be brief."})]  # fmt: skip
        assert lines[0]["type"] == "job" and lines[0]["models"] == {"a": "fake-chat", "b": "fake-chat"}
        [plan] = [line for line in lines if line["type"] == "plan"]
        assert plan == {"type": "plan", "kind": "together", "reason": "one model, two settings: both at once"}
        for side in ("a", "b"):
            mine = [line for line in lines if line.get("side") == side]
            assert "".join(line["text"] for line in mine if line["type"] == "token") == "Hello!"
            assert mine[-1]["type"] == "finished" and mine[-1]["figures"]["generation_tokens"] == 3
        assert len(backend.calls) == 2 and backend.calls[0][0] == {"role": "system", "content": "Be brief."}
        assert engine.board.rows() == []


async def test_the_compare_route_checks_its_body_and_names_the_unknown_side(tmp_path: Path) -> None:
    async with engine_with(tmp_path) as (engine, client, backend):
        for body, says in (({"a": "fake-chat", "b": "fake-chat", "prompt": "hi", "model": "x"}, "unknown key(s)"),
                           ({"a": "fake-chat", "prompt": "hi"}, "'b' must be a model id"),
                           ({"a": "fake-chat", "b": "fake-chat", "prompt": ""}, "'prompt' must be")):  # fmt: skip
            with pytest.raises(EngineRequestError) as refused:
                [line async for line in client.compare(body)]
            assert refused.value.status == 400 and says in str(refused.value)
        with pytest.raises(EngineRequestError) as unknown:
            [line async for line in client.compare({"a": "fake-chat", "b": "fake-chta", "prompt": "hi"})]
        assert unknown.value.status == 404 and unknown.value.document["side"] == "b"
        assert "fake-chat" in unknown.value.document["known"]
        assert backend.calls == [] and engine.board.rows() == []


async def test_a_face_that_leaves_mid_comparison_stops_both_sides(tmp_path: Path) -> None:
    script = Script(tokens=[f" w{n}" for n in range(2000)], delay_s=0.005)
    async with engine_with(tmp_path, script) as (engine, client, backend):
        lines = client.compare({"a": "fake-chat", "b": "fake-chat", "prompt": "go on", "max_tokens": 2000})
        async for line in lines:
            if line["type"] == "token":
                break
        await lines.aclose()
        await until(lambda: not engine.board.rows(), "the comparison to stop")
        assert backend.emitted < 4000
        assert not any(info.leases for info in engine.services.manager.models())


def test_what_a_face_says_when_the_engine_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    from workbench.cli.chat import refusal

    document = {"known": ["tiny-small"], "notes": ["config: x"]}
    unknown = refusal(EngineRequestError(404, "no chat model called 'tiny'", document), "tiny")
    assert (unknown.code, str(unknown)) == (2, "no chat model called 'tiny'; did you mean: tiny-small")
    assert capsys.readouterr().err == "config: x\n"
    assert refusal(EngineRequestError(400, "'prompt' must be a non-empty string"), "m").code == 2
    older = refusal(EngineRequestError(404, "the engine answered 404"), "m")  # a route an older engine lacks
    assert older.code == 1 and "another version of workbench's code" in str(older)
    assert refusal(EngineRequestError(500, "the engine answered 500"), "m").code == 1
