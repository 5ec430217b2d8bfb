from __future__ import annotations

import pytest

from workbench.core.chat.sampling import (
    BUILTIN_PRESETS,
    FROM_BUILT_IN,
    FROM_USER,
    SamplingChoice,
    SamplingLayer,
    SamplingSettings,
    resolve_sampling,
    validate_sampling,
)


def test_defaults_and_to_dict_omits_unset_seed() -> None:
    settings = SamplingSettings()
    assert settings.to_dict() == {
        "temperature": 0.7,
        "top_p": 0.95,
        "min_p": 0.0,
        "top_k": 0,
        "max_tokens": 512,
        "repetition_penalty": 1.0,
    }
    assert SamplingSettings(seed=7).to_dict()["seed"] == 7


@pytest.mark.parametrize("settings", [SamplingSettings(), SamplingSettings(0.0, 1.0, 0.05, 40, 2048, 1.1, 3)])
def test_round_trip(settings: SamplingSettings) -> None:
    assert SamplingSettings.from_dict(settings.to_dict()) == settings


def test_subset_takes_defaults_and_ints_become_floats() -> None:
    settings = SamplingSettings.from_dict({"temperature": 1, "max_tokens": 64})
    assert settings == SamplingSettings(temperature=1.0, max_tokens=64)
    assert isinstance(settings.temperature, float)
    assert SamplingSettings.from_dict({"seed": None}).seed is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("temperature", -0.1),
        ("temperature", "hot"),
        ("temperature", float("nan")),
        ("top_p", 0),
        ("top_p", 1.5),
        ("min_p", 1.0),
        ("min_p", -0.1),
        ("top_k", -1),
        ("top_k", 4.0),
        ("max_tokens", 0),
        ("max_tokens", True),
        ("repetition_penalty", 0.9),
        ("seed", -1),
        ("seed", 1.5),
        ("seed", False),
    ],
)
def test_bad_values(key: str, value: object) -> None:
    clean, problems = validate_sampling({key: value})
    assert clean == {}
    assert [k for k, _ in problems] == [key]
    assert problems[0][1].startswith("expected ")
    with pytest.raises(ValueError, match=key):
        SamplingSettings.from_dict({key: value})


def test_unknown_key_is_a_problem_with_a_suggestion() -> None:
    clean, problems = validate_sampling({"temprature": 0.5, "top_p": 0.5})
    assert clean == {"top_p": 0.5}
    assert problems == [("temprature", "unknown sampling setting (did you mean temperature?)")]
    with pytest.raises(ValueError, match="temprature"):
        SamplingSettings.from_dict({"temprature": 0.5})


def test_problem_message_shows_the_value() -> None:
    _, [(_, message)] = validate_sampling({"temperature": "hot"})
    assert message == 'expected a number >= 0 (0 = greedy), got "hot"'
    _, [(_, message)] = validate_sampling({"max_tokens": True})
    assert message.endswith("got true")


def test_builtin_presets_set_only_what_they_are_about() -> None:
    assert BUILTIN_PRESETS == {
        "balanced": {"temperature": 0.7, "top_p": 0.95},
        "precise": {"temperature": 0.2, "top_p": 0.9},
        "creative": {"temperature": 1.0, "top_p": 1.0, "min_p": 0.05},
        "greedy": {"temperature": 0.0, "top_p": 1.0},
    }
    for preset in BUILTIN_PRESETS.values():
        assert validate_sampling(preset) == (dict(preset), [])


# --- layers ------------------------------------------------------------------------------------------

MODEL = SamplingLayer("model (generation_config.json)", {"temperature": 0.2, "top_p": 0.9, "max_tokens": 100})


def test_resolve_takes_each_field_from_the_first_layer_that_sets_it() -> None:
    you = SamplingLayer(FROM_USER, {"max_tokens": 20})
    preset = SamplingLayer("preset creative", BUILTIN_PRESETS["creative"])
    resolved = resolve_sampling(you, preset, MODEL)
    assert resolved.settings == SamplingSettings(temperature=1.0, top_p=1.0, min_p=0.05, max_tokens=20)
    assert resolved.sources == {
        "temperature": "preset creative",
        "top_p": "preset creative",
        "min_p": "preset creative",
        "top_k": FROM_BUILT_IN,
        "max_tokens": FROM_USER,
        "repetition_penalty": FROM_BUILT_IN,
        "seed": FROM_BUILT_IN,
    }


def test_each_layer_wins_over_the_ones_below() -> None:
    built_in = resolve_sampling()
    assert built_in.settings == SamplingSettings() and set(built_in.sources.values()) == {FROM_BUILT_IN}
    model = resolve_sampling(None, MODEL)
    assert (model.settings.temperature, model.sources["temperature"]) == (0.2, MODEL.source)
    preset = resolve_sampling(SamplingLayer("preset balanced", BUILTIN_PRESETS["balanced"]), MODEL)
    assert (preset.settings.temperature, preset.sources["temperature"]) == (0.7, "preset balanced")
    assert (preset.settings.max_tokens, preset.sources["max_tokens"]) == (100, MODEL.source)  # balanced leaves it
    you = resolve_sampling(SamplingLayer(FROM_USER, {"temperature": 0.0}),
                           SamplingLayer("preset balanced", BUILTIN_PRESETS["balanced"]), MODEL)  # fmt: skip
    assert (you.settings.temperature, you.sources["temperature"]) == (0.0, FROM_USER)


def test_a_choice_without_a_preset_leaves_the_model_its_defaults() -> None:
    resolved = SamplingChoice().resolve(BUILTIN_PRESETS, MODEL)
    assert (resolved.settings.temperature, resolved.settings.top_p, resolved.settings.max_tokens) == (0.2, 0.9, 100)
    chosen = SamplingChoice("balanced", {"seed": 0}).resolve(BUILTIN_PRESETS, MODEL)
    assert (chosen.settings.temperature, chosen.settings.seed) == (0.7, 0)
    unknown = SamplingChoice("gone", {}).resolve(BUILTIN_PRESETS, MODEL)  # a preset deleted from config.toml
    assert unknown.settings.temperature == 0.2


def test_choice_round_trips_and_reads_old_stored_settings() -> None:
    choice = SamplingChoice("precise", {"max_tokens": 64, "seed": 3})
    assert choice.to_dict() == {"preset": "precise", "max_tokens": 64, "seed": 3}
    assert SamplingChoice.from_dict(choice.to_dict()) == choice
    assert SamplingChoice().to_dict() == {} and SamplingChoice.from_dict({}) == SamplingChoice()
    old = SamplingSettings().to_dict()  # what chats stored before: every field, no preset
    assert SamplingChoice.from_dict(old) == SamplingChoice(None, old)
    bad = {"preset": 3, "temperature": "hot", "top_k": 5}
    assert SamplingChoice.from_dict(bad) == SamplingChoice(None, {"top_k": 5})
