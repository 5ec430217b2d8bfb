"""Chat answers run by the engine (issue 16, points 3 and 8): a face's RemoteChatSession sends, streams and stops;
the answer is the engine's, so a face that leaves (or is killed -9) does not stop it: it finishes and is stored
complete; a second face attaching mid-answer gets the text so far, then the rest. The routes refuse what they
should. The engine runs in-process (on its own thread where a face makes blocking calls), and once as
`workbench engine` in a subprocess with a face process killed mid-answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.engines import EngineThread, engine_thread, serving
from tests.support.fake_chat import Script, services_with_fake
from tests.support.fake_openai import fake_openai
from workbench.cli.ps import ps_text
from workbench.client import blocking
from workbench.client.chat_session import RemoteChatSession
from workbench.client.engine import EngineClient, EngineRequestError
from workbench.core.chat.figures import GenerationFigures
from workbench.core.chat.run import ContextTrimmed, Reading, Token
from workbench.core.chat.sampling import SamplingChoice
from workbench.core.chat.session import Answer, AnswerEnded, ChatBusyError, ModelChosen, SessionEvent
from workbench.core.chat.wire import WireError, event_document, event_from
from workbench.core.engine_home import engine_home
from workbench.core.models.wait import DefaultModelImport, Progress, Waiting
from workbench.core.settings.config import Settings
from workbench.core.settings.paths import AppPaths
from workbench.core.storage.chats import MessageStatus, StoredMessage
from workbench.core.storage.store import Store
from workbench.server.engine import Engine
from workbench.server.engine_answers import MAX_BODY_BYTES

ROOT = Path(__file__).resolve().parents[1]
WAIT = 20  # a bound against hanging, not an expected duration


async def nothing_to_import(_progress: Progress) -> Any:
    raise AssertionError("no import was planned")


def face(socket: Path) -> RemoteChatSession:
    session = RemoteChatSession(socket, Settings(), DefaultModelImport(nothing_to_import, "SmolLM2"))
    session.model_id = "fake-chat"
    return session


@contextlib.contextmanager
def engine_with(tmp_path: Path, script: Script | None = None) -> Iterator[tuple[EngineThread, RemoteChatSession]]:
    paths = AppPaths.under(tmp_path)
    home = engine_home(paths)
    with engine_thread(lambda: services_with_fake(paths, script), home) as running:
        yield running, face(home.socket)


def stored(running: EngineThread, conversation_id: int) -> list[StoredMessage]:
    return running.call(lambda: running.services.store.chats.messages(conversation_id))


async def eventually(condition: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def drain(session: RemoteChatSession, answer: Answer,
                each: Callable[[SessionEvent], None] = lambda _e: None) -> list[SessionEvent]:  # fmt: skip
    events: list[SessionEvent] = []

    async def run() -> None:
        async with contextlib.aclosing(session.answer_events(answer)) as stream:
            async for event in stream:
                events.append(event)
                each(event)

    await asyncio.wait_for(run(), WAIT)
    return events


def text_of(events: list[SessionEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, Token))


async def collect(stream: AsyncIterator[SessionEvent]) -> list[SessionEvent]:
    return [event async for event in stream]


async def first_tokens(stream: AsyncIterator[SessionEvent], count: int) -> list[Token]:
    tokens: list[Token] = []
    while len(tokens) < count:
        event = await asyncio.wait_for(anext(stream), WAIT)
        if isinstance(event, Token):
            tokens.append(event)
    return tokens


# --- the wire ---------------------------------------------------------------------------------------


def test_every_answer_event_goes_over_the_wire_and_comes_back_the_same() -> None:
    figures = GenerationFigures(0.5, 12, 100.0, 3, 20.0, 0.01, cached_tokens=4)
    events: list[SessionEvent] = [
        Waiting("loading m…"), Waiting(""), ModelChosen("m"), ContextTrimmed(2, 100, 128), Reading(10, 40, 5),
        Token("Hé"), AnswerEnded(MessageStatus.COMPLETE, "Hé", figures, None),
        AnswerEnded(MessageStatus.ERROR, "", None, "it broke"),
    ]  # fmt: skip
    for event in events:
        assert event_from(json.loads(json.dumps(event_document(event)))) == event
    for bad in ({"type": "shout"}, {"type": "token"}, {"type": "ended", "status": "lost", "text": ""}, {}):
        with pytest.raises(WireError):
            event_from(bad)


# --- through RemoteChatSession ----------------------------------------------------------------------


async def test_a_remote_session_streams_an_answer_the_engine_stores_complete_with_figures(tmp_path: Path) -> None:
    hold = threading.Event()
    with engine_with(tmp_path, Script(tokens=["Hello", " there", "!"], hold=hold)) as (running, session):
        sent = await asyncio.to_thread(session.send, "Hi")
        assert sent.created and sent.user.content == "Hi" and sent.answer.message.status is MessageStatus.STREAMING
        assert session.answering and session.conversation is not None
        conversation_id = session.conversation.id
        assert conversation_id == sent.answer.message.conversation_id
        jobs = running.call(lambda: running.engine.board.rows())
        assert [(j["kind"], j["what"], j["face"], j["answer"]) for j in jobs] == [
            ("generation", "fake-chat", "tui", sent.answer.message.id)]  # fmt: skip
        table = ps_text(running.call(lambda: running.engine.ps())).splitlines()
        [row] = [line.split() for line in table if "generation" in line.split()]
        assert row[1:5] == ["generation", "fake-chat", "-", "tui"]  # no progress known for an answer
        hold.set()
        events = await drain(session, sent.answer)
        assert text_of(events) == "Hello there!"
        ended = events[-1]
        assert isinstance(ended, AnswerEnded) and ended.status is MessageStatus.COMPLETE and ended.figures is not None
        assert ended.figures.generation_tokens == 3 and not session.answering
        assert sent.answer.ended() == ended
        user, answer = stored(running, conversation_id)
        assert (user.role, user.content) == ("user", "Hi")
        assert (answer.content, answer.status) == ("Hello there!", MessageStatus.COMPLETE) and answer.figures
        assert running.call(lambda: running.engine.board.rows()) == []
        assert running.backend.calls[-1][-1] == {"role": "user", "content": "Hi"}
        conversation = running.call(lambda: running.services.store.chats.get_conversation(conversation_id))
        assert conversation.model_id == "fake-chat" and conversation.title == "Hi"

        # a face that opens it later sees the finished answer; following it gives its end, from the store
        later = face(session.socket)
        messages = await asyncio.to_thread(later.open_latest)
        assert messages is not None and [m.content for m in messages] == ["Hi", "Hello there!"]
        assert later.running_answer is None and later.conversation.id == conversation_id
        again = await drain(later, later.attach(messages[-1]))
        assert again == [Token("Hello there!"),
                         AnswerEnded(MessageStatus.COMPLETE, "Hello there!", ended.figures, None)]  # fmt: skip


async def test_stop_mid_answer_keeps_what_came_as_stopped(tmp_path: Path) -> None:
    script = Script(tokens=[f"w{i} " for i in range(300)], delay_s=0.02)
    with engine_with(tmp_path, script) as (running, session):
        sent = await asyncio.to_thread(session.send, "talk")
        stopped: list[bool] = []

        def stop_at_first_token(event: SessionEvent) -> None:
            if isinstance(event, Token) and not stopped:
                stopped.append(session.stop())  # a blocking call: the engine runs on its own thread

        events = await drain(session, sent.answer, stop_at_first_token)
        assert stopped == [True]
        ended = events[-1]
        assert isinstance(ended, AnswerEnded) and ended.status is MessageStatus.STOPPED
        assert 0 < len(ended.text.split()) < 300
        answer = stored(running, sent.user.conversation_id)[-1]
        assert answer.status is MessageStatus.STOPPED and answer.content == ended.text
        assert running.backend.emitted < 300
        assert not session.stop()  # nothing streams any more


async def test_an_answer_waiting_for_the_default_model_is_stopped_and_kept_as_stopped(tmp_path: Path) -> None:
    paths = AppPaths.under(tmp_path)
    home = engine_home(paths)

    def planned_import() -> tuple[Any, Any]:
        services, backend = services_with_fake(paths)
        services.default_import.plan()  # the default model is coming (it never does here): a message waits for it
        return services, backend

    with engine_thread(planned_import, home) as running:
        session = face(home.socket)
        session.model_id = None
        sent = await asyncio.to_thread(session.send, "Hi")
        [job] = running.call(lambda: running.engine.board.rows())
        assert job["what"] == "the default model"
        stopped: list[bool] = []

        def stop_while_waiting(event: SessionEvent) -> None:
            if isinstance(event, Waiting) and not stopped:
                stopped.append(session.stop())

        events = await drain(session, sent.answer, stop_while_waiting)
        assert stopped == [True] and events[0] == Waiting("importing SmolLM2…")
        assert events[-1] == AnswerEnded(MessageStatus.STOPPED, "", None, None)
        answer = stored(running, sent.user.conversation_id)[-1]
        assert (answer.status, answer.content) == (MessageStatus.STOPPED, "")
        assert running.backend.calls == [] and running.call(lambda: running.engine.board.rows()) == []


async def test_a_face_that_leaves_mid_answer_does_not_stop_it_the_engine_stores_it_complete(tmp_path: Path) -> None:
    tokens = [f"w{i} " for i in range(40)]
    with engine_with(tmp_path, Script(tokens=tokens, delay_s=0.02)) as (running, session):
        sent = await asyncio.to_thread(session.send, "talk")
        stream = session.answer_events(sent.answer)
        await first_tokens(stream, 1)
        await stream.aclose()  # the face leaves: its stream closes
        assert sent.answer.status is MessageStatus.INCOMPLETE and not session.answering
        conversation_id = sent.user.conversation_id

        def complete() -> bool:
            answer = stored(running, conversation_id)[-1]
            return answer.status is MessageStatus.COMPLETE

        await eventually(complete, "the answer stored complete")
        answer = stored(running, conversation_id)[-1]
        assert answer.content == "".join(tokens) and answer.figures
        assert running.call(lambda: running.engine.board.rows()) == []


async def test_a_second_face_attaching_mid_answer_gets_the_text_so_far_then_the_rest(tmp_path: Path) -> None:
    tokens = [f"w{i} " for i in range(100)]
    with engine_with(tmp_path, Script(tokens=tokens, delay_s=0.03)) as (_running, first):
        sent = await asyncio.to_thread(first.send, "talk")
        stream = first.answer_events(sent.answer)
        seen = await first_tokens(stream, 3)

        second = face(first.socket)
        messages = await asyncio.to_thread(second.open, sent.user.conversation_id)
        assert messages is not None and second.running_answer == sent.answer.message.id
        assert messages[-1].status is MessageStatus.STREAMING
        with pytest.raises(ChatBusyError):  # the engine refuses a second answer in the conversation
            await asyncio.to_thread(second.send, "me too")
        assert await asyncio.to_thread(second.regenerate) is None
        assert await asyncio.to_thread(second.edit_last) is None
        followed = second.follow_running(messages)
        assert followed is not None and followed.message.id == sent.answer.message.id and followed.text == ""
        events = await drain(second, followed)
        assert followed.text == "".join(tokens) and followed.status is MessageStatus.COMPLETE
        catch_up = next(e for e in events if isinstance(e, Token))
        assert catch_up.text.startswith("".join(t.text for t in seen))  # the text so far, as one line
        assert text_of(events) == "".join(tokens)
        assert isinstance(events[-1], AnswerEnded) and events[-1].status is MessageStatus.COMPLETE

        rest = await asyncio.wait_for(collect(stream), WAIT)  # the first face still follows it to its end
        assert "".join(t.text for t in seen) + text_of(rest) == "".join(tokens)
        assert isinstance(rest[-1], AnswerEnded) and rest[-1].status is MessageStatus.COMPLETE


async def test_regenerate_and_edit_last_through_the_engine(tmp_path: Path) -> None:
    with engine_with(tmp_path, Script(tokens=["one"])) as (running, session):
        sent = await asyncio.to_thread(session.send, "Hello")
        await drain(session, sent.answer)
        await asyncio.to_thread(session.apply_settings, "Be brief.", SamplingChoice("precise", {"max_tokens": 5}))
        regenerated = await asyncio.to_thread(session.regenerate)
        assert regenerated is not None
        removed, answer = regenerated
        assert removed == sent.answer.message.id and answer.message.id != removed
        events = await drain(session, answer)
        assert isinstance(events[-1], AnswerEnded) and events[-1].text == "one"
        conversation_id = sent.user.conversation_id
        assert [(m.role, m.content) for m in stored(running, conversation_id)] == [("user", "Hello"),
                                                                                   ("assistant", "one")]  # fmt: skip
        assert running.backend.calls[-1][0] == {"role": "system", "content": "Be brief."}
        assert running.backend.sampling[-1].max_tokens == 5 and running.backend.sampling[-1].temperature == 0.2
        effective = await asyncio.to_thread(session.effective_sampling)
        assert effective.settings.max_tokens == 5 and effective.sources["temperature"] == "preset precise"

        edited = await asyncio.to_thread(session.edit_last)
        assert edited == ("Hello", [sent.user.id, answer.message.id])
        assert stored(running, conversation_id) == []
        assert await asyncio.to_thread(session.edit_last) is None
        assert await asyncio.to_thread(session.regenerate) is None  # nothing to regenerate

        await asyncio.to_thread(session.choose_model, "fake-chat")
        session.new()
        assert session.conversation is None and await asyncio.to_thread(session.still_there)
        opened = await asyncio.to_thread(session.open, conversation_id)
        assert opened == [] and session.system_prompt == "Be brief." and session.sampling.preset == "precise"
        running.call(lambda: running.services.store.chats.delete_conversation(conversation_id))
        assert not await asyncio.to_thread(session.still_there) and session.conversation is None
        assert await asyncio.to_thread(session.open, conversation_id) is None


async def test_the_engine_stopping_saves_a_running_answer_as_stopped(tmp_path: Path) -> None:
    paths = AppPaths.under(tmp_path)
    home = engine_home(paths)
    script = Script(tokens=[f"w{i} " for i in range(300)], delay_s=0.05)
    running = EngineThread(lambda: services_with_fake(paths, script), home).start()
    try:
        session = face(home.socket)
        sent = await asyncio.to_thread(session.send, "Hi")
        follow = asyncio.ensure_future(asyncio.wait_for(collect(session.answer_events(sent.answer)), WAIT))
        await eventually(lambda: running.backend.emitted > 0, "the first token")
        await asyncio.to_thread(running.stop)
    finally:
        running.stop()
    ended = (await follow)[-1]
    assert isinstance(ended, AnswerEnded) and ended.status is MessageStatus.STOPPED and ended.text.startswith("w0 ")
    assert running.stopped == "test over"
    store = Store(paths.database_file)
    try:
        answer = store.chats.messages(sent.user.conversation_id)[-1]
        assert answer.status is MessageStatus.STOPPED and answer.content == ended.text
    finally:
        store.close()


# --- the routes refuse what they should -------------------------------------------------------------


async def test_the_answer_routes_refuse_bad_requests(tmp_path: Path) -> None:
    paths = AppPaths.under(tmp_path)
    services, _backend = services_with_fake(paths)
    home = engine_home(paths)
    engine = Engine(services, home)
    task = await serving(engine, home)
    client = EngineClient(home.socket)

    async def refused(method: str, route: str, body: Any = None) -> tuple[int, str]:
        with pytest.raises(EngineRequestError) as caught:
            await client._call(method, route, body)
        return caught.value.status, str(caught.value)

    try:
        assert await refused("POST", "/v1/answers", {}) == (400, "'action' must be one of send, regenerate")
        status, message = await refused("POST", "/v1/answers", {"action": "send", "text": "hi", "colour": 1})
        assert status == 400 and "unknown key(s): 'colour'" in message
        assert (await refused("POST", "/v1/answers", {"action": "send", "text": "  "}))[0] == 400
        assert (await refused("POST", "/v1/answers", {"action": "send", "text": "hi", "conversation": "1"}))[0] == 400
        assert (await refused("POST", "/v1/answers", {"action": "send", "text": "hi", "conversation": True}))[0] == 400
        assert (await refused("POST", "/v1/answers", {"action": "regenerate"}))[0] == 400
        assert (await refused("POST", "/v1/answers", {"action": "send", "text": "hi", "model": 7}))[0] == 400
        status, message = await refused("POST", "/v1/answers", {"action": "send", "text": "hi",
                                                                "sampling": {"temperature": -1}})  # fmt: skip
        assert status == 400 and "temperature" in message
        assert await refused("POST", "/v1/answers", {"action": "send", "text": "hi", "conversation": 999}) == (
            404, "no conversation 999")  # fmt: skip
        assert (await refused("POST", "/v1/answers", {"action": "send", "text": "x" * (MAX_BODY_BYTES + 1)}))[0] == 413
        assert (await refused("POST", "/v1/answers", [1, 2]))[0] == 400
        with pytest.raises(EngineRequestError) as caught:
            async for _line in client.stream("GET", "/v1/answers/999/events"):
                pass
        assert caught.value.status == 404
        assert (await refused("GET", "/v1/answers/abc/events"))[0] == 404
        assert (await refused("POST", "/v1/answers/999/stop"))[0] == 404
        assert (await refused("GET", "/v1/conversations/999"))[0] == 404
        assert (await refused("GET", "/v1/conversations?limit=0"))[0] == 400
        assert (await refused("PATCH", "/v1/conversations/1", {"title": "x"}))[0] == 400
        assert (await refused("POST", "/v1/conversations/999/edit_last", {}))[0] == 404
        assert (await refused("POST", "/v1/chat/sampling", {"sampling": "hot"}))[0] == 400
        assert await client._call("GET", "/v1/conversations") == {"conversations": []}
    finally:
        assert await client.stop() is not None
        await asyncio.wait_for(task, WAIT)


# --- end to end: `workbench engine`, and a face killed -9 mid-answer ---------------------------------

FACE_SCRIPT = """
import asyncio, sys
from pathlib import Path
from workbench.client.chat_session import RemoteChatSession
from workbench.core.chat.figures import GenerationFigures
from workbench.core.chat.run import ContextTrimmed, Reading, Token
from workbench.core.models.wait import DefaultModelImport
from workbench.core.settings.config import Settings

async def nothing(_progress):
    raise RuntimeError("no import")

async def main():
    session = RemoteChatSession(Path(sys.argv[1]), Settings(), DefaultModelImport(nothing, "SmolLM2"))
    session.model_id = "lab:m"
    sent = session.send("count")
    print("answer", sent.answer.message.id, sent.user.conversation_id, flush=True)
    async for event in session.answer_events(sent.answer):
        if isinstance(event, Token):
            print("token", repr(event.text), flush=True)

asyncio.run(main())
"""


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "WORKBENCH_HOME": str(home), "PYTHONPATH": str(ROOT)}


def _line(process: subprocess.Popen[str], prefix: str, timeout_s: float = 60) -> str:
    """The first line of ``process``'s output that starts with ``prefix`` (read on a thread: bounded)."""
    found: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith(prefix):
                found.append(line)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout_s)
    assert found, f"no {prefix!r} line from the face within {timeout_s} s"
    return found[0]


def test_a_face_killed_mid_answer_leaves_the_answer_to_finish_complete_in_the_store(tmp_path: Path) -> None:
    pieces = tuple(f"p{i} " for i in range(50))
    with fake_openai(model="m", pieces=pieces, delay_s=0.1) as server:
        (tmp_path / "config").mkdir()
        (tmp_path / "config" / "config.toml").write_text(
            f'[[endpoints]]\nname = "lab"\nbase_url = "{server.base_url}"\nmodels = ["m"]\n', encoding="utf-8")
        paths = AppPaths.under(tmp_path)
        assert paths.config_file == tmp_path / "config" / "config.toml"
        home = engine_home(paths)
        engine = subprocess.Popen([sys.executable, "-m", "workbench.cli", "engine"], env=_env(tmp_path),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        face_process: subprocess.Popen[str] | None = None
        try:
            deadline = time.monotonic() + 60
            while asyncio.run(EngineClient(home.socket).engine_info()) is None:
                assert engine.poll() is None and time.monotonic() < deadline, "the engine did not start"
                time.sleep(0.1)
            face_process = subprocess.Popen([sys.executable, "-c", FACE_SCRIPT, str(home.socket)], env=_env(tmp_path),
                                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
            _kind, answer_id, conversation_id = _line(face_process, "answer ").split()
            _line(face_process, "token ")  # mid-answer: the first piece came, the rest take ~5 s
            face_process.send_signal(signal.SIGKILL)
            face_process.wait(10)

            def answer() -> dict[str, Any]:
                document = blocking.call(home.socket, "GET", f"/v1/conversations/{conversation_id}")
                [message] = [m for m in document["messages"] if m["id"] == int(answer_id)]
                return message

            assert answer()["status"] == "streaming"  # still being written, by the engine
            deadline = time.monotonic() + 60
            while answer()["status"] == "streaming":
                assert time.monotonic() < deadline, "the answer did not finish"
                time.sleep(0.1)
            message = answer()
            assert message["status"] == "complete" and message["content"] == "".join(pieces)
            assert json.loads(json.dumps(message["figures"]))["generation_tokens"] == len(pieces)
            assert len(server.requests) == 1
        finally:
            if face_process is not None and face_process.poll() is None:
                face_process.kill()
            asyncio.run(EngineClient(home.socket).stop())
            try:
                engine.wait(20)
            except subprocess.TimeoutExpired:
                engine.kill()
                raise
