"""A model's own sampling defaults (generation_config.json) and the precedence of the layers over them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.fake_chat import FakeChatBackend
from workbench.core.chat.model_sampling import (
    FROM_MODEL_FILE,
    FROM_MODEL_KNOWN,
    MAX_GENERATION_CONFIG_BYTES,
    chat_sampling,
    model_sampling,
    read_generation_config,
    sampling_from_generation_config,
)
from workbench.core.chat.sampling import FROM_BUILT_IN, FROM_REQUEST, FROM_USER, SamplingChoice, SamplingSettings
from workbench.core.models.gguf_import import generation_config_from_metadata
from workbench.core.models.inference import InferenceThread
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.local import DEFAULT_CHAT_ID, EMBEDDED_CHAT_GENERATION
from workbench.core.models.memory import Budget
from workbench.core.models.spec import ModelSpec
from workbench.core.settings.config import Settings

LLAMA_LIKE = {"do_sample": True, "temperature": 0.6, "top_p": 0.9, "bos_token_id": 1, "eos_token_id": [2, 3]}


def test_generation_config_fields_map_to_ours() -> None:
    config = {**LLAMA_LIKE, "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.05, "max_new_tokens": 256,
              "max_length": 20}  # fmt: skip
    assert sampling_from_generation_config(config) == {
        "temperature": 0.6, "top_p": 0.9, "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.05, "max_tokens": 256,
    }  # fmt: skip
    assert sampling_from_generation_config({"bos_token_id": 1, "eos_token_id": 2}) == {}  # SmolLM2's own file


def test_do_sample_false_is_greedy_as_in_transformers() -> None:
    config = {"do_sample": False, "temperature": 0.6, "top_p": 0.9, "top_k": 20, "max_new_tokens": 64}
    assert sampling_from_generation_config(config) == {"temperature": 0.0, "max_tokens": 64}
    assert sampling_from_generation_config({"do_sample": False}) == {"temperature": 0.0}


def test_values_we_cannot_use_are_left_out() -> None:
    config = {"temperature": "hot", "top_p": 0, "top_k": -1, "repetition_penalty": 0.9, "max_new_tokens": True,
              "min_p": None}  # fmt: skip
    assert sampling_from_generation_config(config) == {}


def test_reading_the_file_is_bounded_and_forgiving(tmp_path: Path) -> None:
    assert read_generation_config(tmp_path) is None
    path = tmp_path / "generation_config.json"
    path.write_text(json.dumps(LLAMA_LIKE))
    assert read_generation_config(tmp_path) == LLAMA_LIKE
    for bad in ("{", "[1, 2]", "\udcff", json.dumps({"pad": "x" * MAX_GENERATION_CONFIG_BYTES})):
        path.write_text(bad, errors="surrogateescape")
        assert read_generation_config(tmp_path) is None


def test_model_sampling_of_local_and_remote_models(tmp_path: Path) -> None:
    (tmp_path / "generation_config.json").write_text(json.dumps(LLAMA_LIKE))
    layer = model_sampling(ModelSpec("llama", "Llama", "mlx-lm", tmp_path))
    assert layer is not None and (layer.source, dict(layer.values)) == (FROM_MODEL_FILE, {"temperature": 0.6,
                                                                                          "top_p": 0.9})  # fmt: skip
    assert model_sampling(ModelSpec("cluster:llama", "llama", "openai-remote", tmp_path)) is None  # its server's
    assert model_sampling(ModelSpec("other", "Other", "mlx-lm", tmp_path / "none")) is None


def test_the_embedded_model_imported_before_has_its_defaults_by_id(tmp_path: Path) -> None:
    """A SmolLM2 folder imported before the import wrote generation_config.json gets the same values."""
    layer = model_sampling(ModelSpec(DEFAULT_CHAT_ID, "SmolLM2", "mlx-lm", tmp_path / DEFAULT_CHAT_ID))
    written = generation_config_from_metadata({}, EMBEDDED_CHAT_GENERATION)
    assert layer is not None and layer.source == FROM_MODEL_KNOWN
    assert dict(layer.values) == sampling_from_generation_config(written)
    assert layer.values["temperature"] < SamplingSettings().temperature


# --- the precedence over a registered model ----------------------------------------------------------


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[ModelManager]:
    manager = ModelManager(backends={"mlx-lm": FakeChatBackend(kind="mlx-lm")}, budget=Budget(1 << 32, "test"),
                           inference=InferenceThread(), idle_unload_s=None)  # fmt: skip
    folder = tmp_path / "llama"
    folder.mkdir()
    (folder / "generation_config.json").write_text(json.dumps({**LLAMA_LIKE, "max_new_tokens": 300}))
    manager.register(ModelSpec("llama", "Llama", "mlx-lm", folder))
    manager.register(ModelSpec("plain", "Plain", "mlx-lm", tmp_path / "plain"))
    yield manager
    await manager.aclose()


async def test_no_preset_chosen_the_model_outranks_the_built_in_defaults(manager: ModelManager) -> None:
    """The bug: the default "balanced" preset (T 0.7) overrode every model's own defaults."""
    resolved = chat_sampling(Settings(), manager, "llama")
    assert (resolved.settings.temperature, resolved.settings.top_p, resolved.settings.max_tokens) == (0.6, 0.9, 300)
    assert resolved.sources["temperature"] == FROM_MODEL_FILE
    assert resolved.sources["min_p"] == FROM_BUILT_IN
    plain = chat_sampling(Settings(), manager, "plain")
    assert plain.settings == SamplingSettings() and set(plain.sources.values()) == {FROM_BUILT_IN}
    assert chat_sampling(Settings(), manager, "nobody").settings == SamplingSettings()
    assert chat_sampling(Settings(), manager, None).settings == SamplingSettings()


async def test_a_chosen_preset_outranks_the_model(manager: ModelManager) -> None:
    settings = Settings(chat_preset="creative", chat_presets={"short": {"max_tokens": 20}})
    resolved = chat_sampling(settings, manager, "llama")
    assert (resolved.settings.temperature, resolved.settings.min_p) == (1.0, 0.05)
    assert resolved.sources["temperature"] == "preset creative"
    assert (resolved.settings.max_tokens, resolved.sources["max_tokens"]) == (300, FROM_MODEL_FILE)
    short = chat_sampling(settings, manager, "llama", SamplingChoice("short"))
    assert (short.settings.temperature, short.settings.max_tokens) == (0.6, 20)  # a preset sets only its fields


async def test_the_request_or_user_outranks_the_preset(manager: ModelManager) -> None:
    settings = Settings(chat_preset="greedy")
    choice = SamplingChoice(settings.chat_preset, {"temperature": 0.9, "seed": 0})
    resolved = chat_sampling(settings, manager, "llama", choice, FROM_REQUEST)
    assert (resolved.settings.temperature, resolved.sources["temperature"]) == (0.9, FROM_REQUEST)
    assert (resolved.settings.top_p, resolved.sources["top_p"]) == (1.0, "preset greedy")
    assert (resolved.settings.seed, resolved.sources["seed"]) == (0, FROM_REQUEST)
    mine = chat_sampling(settings, manager, "llama", SamplingChoice(None, {"top_k": 5}))
    assert (mine.sources["top_k"], mine.sources["temperature"]) == (FROM_USER, FROM_MODEL_FILE)
