"""Output rules: their bounds, the stop scanner on streamed text, and ChatRun applying them (stop sequences, raw
prompts) on the scripted backend, a tiny MLX model and a remote endpoint (which is sent stop and response_format)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.answers import run_to_end
from tests.support.fake_chat import KIND, FakeChatBackend, Script, fake_spec
from tests.support.fake_openai import fake_openai
from workbench.core.chat.output import (
    MAX_SCHEMA_CHARS,
    OutputRules,
    OutputRulesError,
    StopScanner,
    check_rules,
)
from workbench.core.chat.run import ChatError, ChatMessage, ChatRun, Finished
from workbench.core.chat.sampling import SamplingSettings
from workbench.core.models.backends import remote
from workbench.core.models.backends.mlx_lm import MlxLmBackend
from workbench.core.models.endpoints import Endpoint
from workbench.core.models.inference import InferenceThread
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.memory import GB, Budget
from workbench.core.models.spec import ModelSpec

WAIT = 30
GREEDY = SamplingSettings(temperature=0.0, max_tokens=6)


# --- check_rules -----------------------------------------------------------------------------------


def test_valid_rules_come_back_normalised() -> None:
    assert check_rules(stop="\n\n") == OutputRules(stop=("\n\n",))
    assert check_rules(stop=["a", "b", "a"]).stop == ("a", "b")
    assert check_rules(json_object=True).schema == {"type": "object"}
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}}}
    rules = check_rules(json_schema=schema, json_object=True)
    assert rules.json_schema == schema and not rules.json_object and rules.constrained
    assert check_rules(rules) == rules
    assert not check_rules() and not OutputRules()


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"stop": ["a", "b", "c", "d", "e"]}, "at most 4 stop sequences"),
        ({"stop": [""]}, "1 to 200 characters"),
        ({"stop": ["x" * 201]}, "1 to 200 characters"),
        ({"stop": [3]}, "must be a string"),
        ({"stop": 3}, "a string or a list of strings"),
        ({"json_schema": {"type": "bogus"}}, "Invalid type: bogus"),
        ({"json_schema": {"$ref": "#/nowhere"}}, "does not exist"),
        ({"json_schema": {"type": "string", "pattern": "(("}}, "unclosed group"),
        ({"json_schema": {"enum": list(range(MAX_SCHEMA_CHARS))}}, "at most 32,000 are allowed"),
        ({"json_schema": ["not", "an", "object"]}, "must be an object"),
        ({"json_object": "yes"}, "true or false"),
    ],
)
def test_bad_rules_say_what_is_wrong(fields: dict[str, object], problem: str) -> None:
    with pytest.raises(OutputRulesError, match=problem.replace("(", r"\(")):
        check_rules(**fields)  # type: ignore[arg-type]


def test_json_rules_do_not_apply_stop_sequences() -> None:
    rules = check_rules(stop=["}"], json_object=True)
    assert rules.stop == ("}",) and rules.active_stops == ()


# --- the stop scanner ------------------------------------------------------------------------------


def scan(stops: list[str], pieces: list[str]) -> tuple[list[str], bool]:
    scanner = StopScanner(stops)
    out = [scanner.feed(piece) for piece in pieces]
    if not scanner.stopped:
        out.append(scanner.flush())
    return [text for text in out if text], scanner.stopped


def test_stop_ends_the_answer_before_it() -> None:
    assert scan(["END"], ["Hello ", "wor", "ld END and more", "never"]) == (["Hello ", "wor", "ld "], True)


def test_a_stop_split_across_pieces_is_held_back_then_dropped() -> None:
    assert scan(["</s>"], ["one <", "/", "s", "> two"]) == (["one "], True)


def test_text_that_only_looked_like_a_stop_is_let_go() -> None:
    assert scan(["STOP"], ["a ST", "ay", " here S"]) == (["a ", "STay", " here ", "S"], False)


def test_the_earliest_of_several_stops_wins() -> None:
    assert scan(["bb", "a"], ["xbbya"]) == (["x"], True)
    assert scan([], ["as ", "is"]) == (["as ", "is"], False)


# --- ChatRun with rules on the scripted backend ----------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[tuple[ModelManager, FakeChatBackend]]:
    backend = FakeChatBackend(Script(tokens=["The ", "answer", " is", ":", " 4", "2.", " Next", " question"]))
    manager = ModelManager({KIND: backend}, Budget(GB, "test"), InferenceThread(), idle_unload_s=None)
    manager.register(fake_spec())
    yield manager, backend
    await manager.aclose()


async def run_text(run: ChatRun) -> tuple[str, Finished]:
    return await run_to_end(run, WAIT)


async def test_a_stop_sequence_ends_the_answer_with_stop(fake: tuple[ModelManager, FakeChatBackend]) -> None:
    manager, backend = fake
    run = ChatRun(manager, "fake-chat", [ChatMessage("user", "hi")], SamplingSettings(), rules=check_rules(stop=". "))
    text, finished = await run_text(run)
    assert text == "The answer is: 42" and finished.finish_reason == "stop" and not finished.stopped
    assert backend.rules == [check_rules(stop=". ")]


async def test_without_rules_the_backend_is_called_as_before(fake: tuple[ModelManager, FakeChatBackend]) -> None:
    manager, backend = fake
    text, finished = await run_text(ChatRun(manager, "fake-chat", [ChatMessage("user", "hi")], SamplingSettings()))
    assert text == "The answer is: 42. Next question" and finished.finish_reason == "stop"
    assert backend.rules == [None]


async def test_a_raw_prompt_goes_to_complete_stream(fake: tuple[ModelManager, FakeChatBackend]) -> None:
    manager, backend = fake
    run = ChatRun(manager, "fake-chat", [], SamplingSettings(max_tokens=3), prompt="Once upon a time")
    text, finished = await run_text(run)
    assert text == "The answer is" and finished.finish_reason == "length"
    assert backend.prompts == ["Once upon a time"] and backend.calls == []
    assert finished.figures is not None and finished.figures.prompt_tokens == 4


async def test_an_empty_or_oversized_raw_prompt_is_refused(fake: tuple[ModelManager, FakeChatBackend]) -> None:
    manager, backend = fake
    with pytest.raises(ChatError, match="the prompt is empty"):
        await run_text(ChatRun(manager, "fake-chat", [], SamplingSettings(), prompt=""))
    with pytest.raises(ChatError, match="more than the model's context"):
        await run_text(ChatRun(manager, "fake-chat", [], SamplingSettings(), prompt="w " * 5000))
    assert backend.prompts == []


# --- a tiny MLX model reads a raw prompt -----------------------------------------------------------


async def test_a_tiny_model_continues_a_raw_prompt_and_stops_on_a_sequence(tiny_models: dict[str, Path]) -> None:
    manager = ModelManager({"mlx-lm": MlxLmBackend()}, Budget(GB, "test"), InferenceThread(), idle_unload_s=None)
    manager.register(ModelSpec(id="small", name="small", kind="mlx-lm", path=tiny_models["small"]))
    try:
        plain, finished = await run_text(ChatRun(manager, "small", [], GREEDY, prompt="w1 w2 w3"))
        assert finished.figures is not None and finished.figures.prompt_tokens == 3  # its tokenizer adds no BOS
        words = plain.split()
        assert len(words) >= 3, plain
        stop = words[1]
        cut, finished = await run_text(ChatRun(manager, "small", [], GREEDY, prompt="w1 w2 w3",
                                               rules=check_rules(stop=stop)))  # fmt: skip
        assert cut == plain[: plain.index(stop)] and finished.finish_reason == "stop"
    finally:
        await manager.aclose()


# --- a remote endpoint is sent the rules -----------------------------------------------------------


async def test_the_remote_backend_forwards_stop_and_response_format() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    with fake_openai(model="m", pieces=("Hel", "lo", "!")) as server:
        endpoint = Endpoint("box", server.base_url, models=("m",))
        manager = ModelManager({remote.KIND: remote.RemoteChatBackend([endpoint])}, Budget(GB, "test"),
                               InferenceThread(), idle_unload_s=None)  # fmt: skip
        manager.register(remote.remote_spec(endpoint, "m"))
        try:
            text, finished = await run_text(ChatRun(manager, "box:m", [ChatMessage("user", "hi")], GREEDY,
                                                    rules=check_rules(stop=["lo"])))  # fmt: skip
            assert text == "Hel" and finished.finish_reason == "stop"
            text, _ = await run_text(ChatRun(manager, "box:m", [ChatMessage("user", "hi")], GREEDY,
                                             rules=check_rules(json_schema=schema, stop="x")))  # fmt: skip
            assert text == "Hello!"
            text, finished = await run_text(ChatRun(manager, "box:m", [], GREEDY, prompt="Say",
                                                    rules=check_rules(json_object=True)))  # fmt: skip
            assert text == "Hello!" and finished.finish_reason == "stop"
        finally:
            await manager.aclose()
    chat, constrained, completion = server.requests
    assert server.paths == ["/v1/chat/completions", "/v1/chat/completions", "/v1/completions"]
    assert chat["stop"] == ["lo"] and "response_format" not in chat
    assert constrained["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }
    assert "stop" not in constrained  # a stop must not cut the JSON short
    assert completion["prompt"] == "Say" and completion["response_format"] == {"type": "json_object"}
