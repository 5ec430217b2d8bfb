"""keep_alive in the ModelManager (per model: a time, 0 unloads once no other lease holds it, -1 keeps it, a pinned
model stays), Ollama's keep_alive durations, and the model details the lists show (config.json, safetensors
headers, GGUF metadata)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.support.fake_chat import FakeChatBackend, fake_spec
from workbench.core.models.details import format_parameter_count, model_details
from workbench.core.models.inference import InferenceThread
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.memory import GB, Budget
from workbench.core.models.spec import ModelState
from workbench.server.errors import ApiError
from workbench.server.ollama_names import hub_name, import_name, pulled_id
from workbench.server.ollama_requests import parse_keep_alive

WAIT = 10.0


@pytest.fixture
async def manager() -> AsyncIterator[ModelManager]:
    manager = ModelManager(backends={"fake-chat": FakeChatBackend()}, budget=Budget(GB, "test"),
                           inference=InferenceThread(), idle_unload_s=900.0)  # fmt: skip
    manager.register(fake_spec())
    yield manager
    await manager.aclose()


async def until(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_zero_unloads_an_idle_model_at_once(manager: ModelManager) -> None:
    await manager.load("fake-chat")
    assert 899 < (manager.unload_in("fake-chat") or 0) <= 900  # the configured idle unload
    assert await manager.keep_alive("fake-chat", 0) == ""
    assert manager.info("fake-chat").state is ModelState.UNLOADED
    assert manager.unload_in("fake-chat") is None


async def test_zero_waits_for_the_other_lease(manager: ModelManager) -> None:
    lease = await manager.acquire("fake-chat", holder="chat")
    await manager.keep_alive("fake-chat", 0)
    assert manager.info("fake-chat").state is ModelState.BUSY  # the chat still holds it
    assert manager.unload_in("fake-chat") == 0
    await lease.release()
    await until(lambda: manager.info("fake-chat").state is ModelState.UNLOADED, "the unload after the release")
    await manager.load("fake-chat")  # done: the next load keeps the usual idle time
    assert (manager.unload_in("fake-chat") or 0) > 899


async def test_zero_on_a_model_not_loaded_changes_nothing(manager: ModelManager) -> None:
    assert await manager.keep_alive("fake-chat", 0) == ""
    await manager.load("fake-chat")
    assert manager.info("fake-chat").resident and (manager.unload_in("fake-chat") or 0) > 899


async def test_a_time_unloads_after_it_and_minus_one_keeps(manager: ModelManager) -> None:
    await manager.load("fake-chat")
    await manager.keep_alive("fake-chat", 0.05)
    assert (manager.unload_in("fake-chat") or 1) <= 0.05
    await until(lambda: manager.info("fake-chat").state is ModelState.UNLOADED, "the idle unload")
    await manager.load("fake-chat")
    await manager.keep_alive("fake-chat", -1)
    assert manager.unload_in("fake-chat") is None
    await manager.keep_alive("fake-chat", None)  # back to the configured idle unload
    assert (manager.unload_in("fake-chat") or 0) > 899


async def test_a_pinned_model_stays_and_says_so(manager: ModelManager) -> None:
    await manager.load("fake-chat")
    manager.pin("fake-chat")
    note = await manager.keep_alive("fake-chat", 0)
    assert "pinned" in note and manager.info("fake-chat").resident
    assert manager.unload_in("fake-chat") is None
    manager.pin("fake-chat", False)  # unpinned: its keep_alive 0 applies
    await until(lambda: manager.info("fake-chat").state is ModelState.UNLOADED, "the unload once unpinned")


@pytest.mark.parametrize(("value", "seconds"), [
    (None, None), (0, 0.0), ("0", 0.0), (-1, -1.0), ("-1", -1.0), ("-1m", -1.0), (300, 300.0), (2.5, 2.5),
    ("5m", 300.0), ("1h30m", 5400.0), ("10s", 10.0), ("1.5h", 5400.0), ("500ms", 0.5), ("30", 30.0),
    (1e12, -1.0),
])  # fmt: skip
def test_keep_alive_durations(value: object, seconds: float | None) -> None:
    assert parse_keep_alive(value) == seconds


@pytest.mark.parametrize("value", ["soon", "5 m", "m", True, [], "1d", float("nan"), "x" * 100])
def test_bad_keep_alive_durations(value: object) -> None:
    with pytest.raises(ApiError) as raised:
        parse_keep_alive(value)
    assert raised.value.status == 400 and "keep_alive" in str(raised.value)


def test_hub_names() -> None:
    assert hub_name("org/repo") == ("org/repo", None)
    assert hub_name("hf.co/org/repo:latest") == ("org/repo", None)
    assert hub_name("huggingface.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M") == (
        "bartowski/Llama-3.2-1B-Instruct-GGUF", "Q4_K_M")  # fmt: skip
    assert hub_name("llama3.2") is None and hub_name("a/b/c") is None
    assert import_name("bartowski/Llama-3.2-1B-Instruct-GGUF", "Q4_K_M") == "Llama-3.2-1B-Instruct-GGUF-Q4_K_M"
    assert pulled_id("hf.co/org/repo:Q8_0") == "repo-Q8_0" and pulled_id("hf.co/org/repo") == "org/repo"
    with pytest.raises(ApiError):
        hub_name("hf.co/../x")


def test_details_of_a_quantized_mlx_folder(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    folder = tiny_models["small"]
    details = model_details(folder)
    config = json.loads((folder / "config.json").read_text())
    assert details.family == "llama" and details.format == "safetensors"
    assert details.context_length == config.get("max_position_embeddings")
    assert details.parameter_count and details.parameter_count > 0
    plain, quantized = model_details(tiny_models["medium"]), model_details(tiny_models["quantized"])  # same shape
    assert quantized.quantization_level == "4-bit" and plain.quantization_level in ("F32", "F16", "BF16")
    assert quantized.parameter_count == plain.parameter_count  # 4-bit words unpacked
    assert model_details(tmp_path / "missing") == model_details(tmp_path)  # nothing to read: empty details
    assert format_parameter_count(134_515_008) == "135M" and format_parameter_count(7_615_616_512) == "7.6B"


def test_details_of_an_imported_gguf_read_its_source(tmp_path: Path) -> None:
    from tests.test_ollama_pull import qwen_gguf

    source = qwen_gguf(tmp_path / "tiny-Q4_K_M.gguf")
    folder = tmp_path / "imported"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2", "max_position_embeddings": 2048,
                                                    "quantization": {"bits": 4, "group_size": 32}}))  # fmt: skip
    (folder / "workbench-import.json").write_text(json.dumps({"source": str(source)}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    (folder / "generation_config.json").write_text(json.dumps({"temperature": 0.2, "repetition_penalty": 1.1}))
    details = model_details(folder)
    assert (details.format, details.family, details.quantization_level) == ("gguf", "qwen2", "Q4_K_M")
    assert details.template == "{{ messages }}"
    assert details.parameters == {"temperature": 0.2, "repeat_penalty": 1.1}
    # an import records the GGUF's quantization: the lists read it there, not from the GGUF's header again
    (folder / "workbench-import.json").write_text(json.dumps({"source": str(source), "quantization": "Q5_0"}))
    assert (model_details(folder).format, model_details(folder).quantization_level) == ("gguf", "Q5_0")
    source.unlink()  # the source gone: what the folder says
    assert model_details(folder).quantization_level == "4-bit"
