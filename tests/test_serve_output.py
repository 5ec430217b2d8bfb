"""Chat completions' ``stop``, ``seed`` and ``response_format`` read into output rules, spoken to with the real
openai client and raw HTTP against build_app on the real services with the scripted chat backend (which records
the rules it is given; constrained decoding itself is core's, tested there), and end to end with a random-weight
byte-level MLX llama: an answer that stops validates."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
from pydantic import BaseModel

from tests.support.answers import BOUNDED_SCHEMA
from tests.support.fake_chat import Script
from tests.support.openai_app import Served, serving_app, serving_fake
from tests.support.tiny_models import make_tiny_byte_llama
from workbench.bootstrap import build_services
from workbench.core.chat.output import MAX_SCHEMA_CHARS, OutputRules
from workbench.core.settings.paths import AppPaths

HELLO = [{"role": "user", "content": "hi"}]
CITY_SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
               "required": ["city"], "additionalProperties": False}  # fmt: skip


@pytest.fixture
async def served(app_paths: AppPaths) -> AsyncIterator[Served]:
    async with serving_fake(app_paths) as running:
        yield running


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "fake-chat", "messages": HELLO, **fields}


async def test_a_stop_string_or_list_ends_the_answer_before_it(served: Served) -> None:
    served.backend.script = Script(tokens=["Paris", " is", " lovely", ".", " Rome"])
    answer = await served.client.chat.completions.create(model="fake-chat", messages=HELLO, stop=" lovely")
    assert (answer.choices[0].message.content, answer.choices[0].finish_reason) == ("Paris is", "stop")
    assert served.backend.rules[-1] == OutputRules(stop=(" lovely",))
    answer = await served.client.chat.completions.create(model="fake-chat", messages=HELLO, stop=["ly.", "is"])
    assert answer.choices[0].message.content == "Par"  # the first place any of them starts
    assert served.backend.rules[-1] == OutputRules(stop=("ly.", "is"))


async def test_a_stop_split_across_streamed_tokens_is_held_back_and_never_sent(served: Served) -> None:
    served.backend.script = Script(tokens=["Paris", " is", " love", "ly", ".", " Rome"])
    status, events = await served.app.events("/chat/completions", chat(stop=["lovely"], stream=True))
    assert status == 200 and events[-1] == "[DONE]"
    deltas = [e["choices"][0]["delta"].get("content", "") for e in events[:-1]]
    assert "".join(deltas) == "Paris is " and all("love" not in delta for delta in deltas)
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


async def test_no_stop_and_a_text_format_ask_for_no_rules_and_the_seed_reaches_the_sampler(served: Served) -> None:
    await served.client.chat.completions.create(model="fake-chat", messages=HELLO, seed=42,
                                                response_format={"type": "text"}, stop=None)  # fmt: skip
    assert served.backend.rules[-1] is None and served.backend.sampling[-1].seed == 42


async def test_json_object_asks_for_any_json_object(served: Served) -> None:
    served.backend.script = Script(tokens=['{"a"', ": 1}"])
    answer = await served.client.chat.completions.create(model="fake-chat", messages=HELLO,
                                                         response_format={"type": "json_object"})  # fmt: skip
    assert json.loads(answer.choices[0].message.content or "") == {"a": 1}
    assert served.backend.rules[-1] == OutputRules(json_object=True)


@pytest.mark.parametrize("strict", [True, False, None])
async def test_json_schema_constrains_to_that_schema_strict_or_not(served: Served, strict: bool | None) -> None:
    described: dict[str, Any] = {"name": "city_answer", "schema": CITY_SCHEMA}
    if strict is not None:
        described["strict"] = strict
    status, answer = await served.app.post("/chat/completions", chat(
        response_format={"type": "json_schema", "json_schema": described}))  # fmt: skip
    assert status == 200, answer
    assert served.backend.rules[-1] == OutputRules(json_schema=CITY_SCHEMA)


async def test_a_schema_less_json_schema_asks_for_any_json_object(served: Served) -> None:
    status, _ = await served.app.post("/chat/completions", chat(
        response_format={"type": "json_schema", "json_schema": {"name": "anything"}}))  # fmt: skip
    assert status == 200 and served.backend.rules[-1] == OutputRules(json_object=True)


async def test_the_clients_parse_helper_gets_its_pydantic_model_back(served: Served) -> None:
    class City(BaseModel):
        city: str
        population: int

    served.backend.script = Script(tokens=['{"city": "Paris", ', '"population": 2100000}'])
    parsed = await served.client.chat.completions.parse(model="fake-chat", messages=HELLO, response_format=City)
    assert parsed.choices[0].message.parsed == City(city="Paris", population=2100000)
    rules = served.backend.rules[-1]
    assert rules is not None and rules.json_schema is not None
    assert set(rules.json_schema["properties"]) == {"city", "population"}


async def test_stop_with_json_rules_goes_to_the_backend_and_text_completions_take_a_format_too(
    served: Served,
) -> None:
    status, _ = await served.app.post("/chat/completions", chat(stop="\n", response_format={"type": "json_object"}))
    assert status == 200 and served.backend.rules[-1] == OutputRules(stop=("\n",), json_object=True)
    status, _ = await served.app.post("/completions", {"model": "fake-chat", "prompt": "JSON:",
                                                       "response_format": {"type": "json_schema",
                                                                           "json_schema": {"name": "c",
                                                                                           "schema": CITY_SCHEMA}}})
    assert status == 200 and served.backend.rules[-1] == OutputRules(json_schema=CITY_SCHEMA)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": ""}, "stop"),
        ({"stop": {"a": 1}}, "stop"),
        ({"stop": [1]}, "stop"),
        ({"response_format": "json"}, "response_format"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "bad name!", "schema": {}}}},
         "response_format.json_schema.name"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": "yes"}}},
         "response_format.json_schema.strict"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": [1]}}},
         "response_format.json_schema.schema"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}},
         "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "description": "x" * MAX_SCHEMA_CHARS}}}}, "response_format"),
    ],
)  # fmt: skip
async def test_bad_rules_are_400_naming_the_field_before_any_model_work(served: Served, fields: dict[str, Any],
                                                                        param: str) -> None:  # fmt: skip
    status, answer = await served.app.post("/chat/completions", chat(**fields))
    assert status == 400, answer
    error = answer["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]
    assert served.backend.calls == [] and served.services.manager.info("fake-chat").leases == 0


async def test_a_schema_llguidance_cannot_compile_says_why(served: Served) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await served.client.chat.completions.create(model="fake-chat", messages=HELLO, response_format={
            "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}})  # fmt: skip
    assert caught.value.param == "response_format"  # type: ignore[attr-defined]
    assert "schema" in caught.value.message and "nonsense" in caught.value.message


# --- constrained decoding end to end: a random-weight byte-level llama (it would write noise) --------------------

BOUNDED = BOUNDED_SCHEMA


@pytest.fixture(scope="module")
def byte_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_byte_llama(tmp_path_factory.mktemp("byte-llama") / "bytes", seed=5)


async def test_a_json_schema_answer_that_stops_validates_chat_and_text(app_paths: AppPaths, byte_llama: Path) -> None:
    app_paths.models_dir.mkdir(parents=True)
    (app_paths.models_dir / "tiny-bytes").symlink_to(byte_llama, target_is_directory=True)
    response_format = {"type": "json_schema", "json_schema": {"name": "fruit", "schema": BOUNDED, "strict": True}}
    stopped = 0
    async with serving_app(build_services(app_paths), timeout=120) as app:
        for seed in range(3):
            answer = await app.client.chat.completions.create(
                model="tiny-bytes", messages=[{"role": "user", "content": "Describe a fruit."}], seed=seed,
                temperature=1.0, max_tokens=300, response_format=response_format)  # type: ignore[arg-type]
            choice = answer.choices[0]
            if choice.finish_reason == "stop":  # at "length" the JSON may be cut short, as with OpenAI
                jsonschema.validate(json.loads(choice.message.content or ""), BOUNDED)
                stopped += 1
        text = await app.client.completions.create(model="tiny-bytes", prompt="A fruit as JSON:", seed=1,
                                                   temperature=1.0, max_tokens=300,
                                                   extra_body={"response_format": {"type": "json_object"}})
        if text.choices[0].finish_reason == "stop":
            assert isinstance(json.loads(text.choices[0].text), dict)
            stopped += 1
    assert stopped >= 2, "a bounded schema should end well within 300 byte tokens"
