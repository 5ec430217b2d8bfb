from __future__ import annotations

import pytest

from workbench.core.sampling import BUILTIN_PRESETS, SamplingSettings, validate_sampling


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


def test_builtin_presets() -> None:
    assert set(BUILTIN_PRESETS) == {"balanced", "precise", "creative", "greedy"}
    assert BUILTIN_PRESETS["balanced"] == SamplingSettings()
    assert (BUILTIN_PRESETS["precise"].temperature, BUILTIN_PRESETS["precise"].top_p) == (0.2, 0.9)
    creative = BUILTIN_PRESETS["creative"]
    assert (creative.temperature, creative.top_p, creative.min_p) == (1.0, 1.0, 0.05)
    assert (BUILTIN_PRESETS["greedy"].temperature, BUILTIN_PRESETS["greedy"].top_p) == (0.0, 1.0)
    for preset in BUILTIN_PRESETS.values():
        assert SamplingSettings.from_dict(preset.to_dict()) == preset
