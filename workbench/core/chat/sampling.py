"""How a chat samples its next token: the settings, their validation, the built-in presets and the layers
the effective settings are resolved from.

Precedence, highest first: what a request or the user sets, the user's preset (only when one was chosen),
the model's own defaults (its generation_config.json), the built-in defaults of :class:`SamplingSettings`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 0.7  # >= 0; 0 = greedy
    top_p: float = 0.95  # 0 < x <= 1
    min_p: float = 0.0  # 0 <= x < 1
    top_k: int = 0  # >= 0; 0 = off
    max_tokens: int = 512  # >= 1
    repetition_penalty: float = 1.0  # >= 1.0; 1.0 = off
    seed: int | None = None  # None = random

    def to_dict(self) -> dict[str, Any]:
        """Every field by name; ``seed`` only when set."""
        data = dataclasses.asdict(self)
        if self.seed is None:
            del data["seed"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SamplingSettings:
        """Settings from any subset of the fields; raises ValueError naming each unknown or bad key."""
        clean, problems = validate_sampling(data)
        if problems:
            raise ValueError("; ".join(f"{key}: {message}" for key, message in problems))
        return cls(**clean)


@dataclass(frozen=True)
class _Rule:
    kind: type
    expect: str
    ok: Callable[[Any], bool]


_RULES: dict[str, _Rule] = {
    "temperature": _Rule(float, "a number >= 0 (0 = greedy)", lambda v: v >= 0),
    "top_p": _Rule(float, "a number greater than 0 and at most 1", lambda v: 0 < v <= 1),
    "min_p": _Rule(float, "a number from 0 up to but not including 1", lambda v: 0 <= v < 1),
    "top_k": _Rule(int, "a whole number >= 0 (0 = off)", lambda v: v >= 0),
    "max_tokens": _Rule(int, "a whole number of tokens >= 1", lambda v: v >= 1),
    "repetition_penalty": _Rule(float, "a number >= 1 (1 = off)", lambda v: v >= 1),
    # int64's range: what MLX's seed and remote servers take
    "seed": _Rule(int, "a whole number from 0 to 2**63 - 1", lambda v: 0 <= v < 2**63),
}


def validate_sampling(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The valid values of ``data`` and a ``(key, problem)`` for each unknown key or bad value.

    Ints are accepted where a float is expected (and become floats); booleans are never numbers;
    ``seed = None`` means random.
    """
    clean: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for key, value in data.items():
        rule = _RULES.get(key)
        if rule is None:
            close = difflib.get_close_matches(str(key), list(_RULES), n=1)
            problems.append((key, "unknown sampling setting" + (f" (did you mean {close[0]}?)" if close else "")))
        elif key == "seed" and value is None:
            clean[key] = None
        elif (checked := _check(rule, value)) is None:
            problems.append((key, f"expected {rule.expect}, got {_show(value)}"))
        else:
            clean[key] = checked
    return clean, problems


def _check(rule: _Rule, value: object) -> object | None:
    if isinstance(value, bool):
        return None
    if rule.kind is float and isinstance(value, int | float):
        value = float(value)
        if not math.isfinite(value):
            return None
    elif not isinstance(value, rule.kind):
        return None
    return value if rule.ok(value) else None


def _show(value: object) -> str:
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


# A preset sets some fields; the ones it leaves out come from the model's defaults, then the built-in ones.
Preset = Mapping[str, Any]

BUILTIN_PRESETS: dict[str, Preset] = {
    "balanced": {"temperature": 0.7, "top_p": 0.95},
    "precise": {"temperature": 0.2, "top_p": 0.9},
    "creative": {"temperature": 1.0, "top_p": 1.0, "min_p": 0.05},
    "greedy": {"temperature": 0.0, "top_p": 1.0},
}

# Where a value came from, as the settings show it.
FROM_USER = "you"
FROM_REQUEST = "request"
FROM_BUILT_IN = "built-in"
FIELDS = tuple(field.name for field in dataclasses.fields(SamplingSettings))


def preset_source(name: str) -> str:
    return f"preset {name}"


@dataclass(frozen=True)
class SamplingLayer:
    """Some sampling values (validated) and where they came from."""

    source: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class ResolvedSampling:
    """The settings a generation uses and, for each field, the source of its value."""

    settings: SamplingSettings
    sources: Mapping[str, str]


def resolve_sampling(*layers: SamplingLayer | None) -> ResolvedSampling:
    """Each field from the first layer that sets it (None layers are skipped); the built-in default otherwise."""
    values: dict[str, Any] = {}
    sources = dict.fromkeys(FIELDS, FROM_BUILT_IN)
    for layer in layers:
        if layer is None:
            continue
        for key, value in layer.values.items():
            if key in sources and key not in values:
                values[key] = value
                sources[key] = layer.source
    return ResolvedSampling(SamplingSettings(**values), sources)


@dataclass(frozen=True)
class SamplingChoice:
    """What a user chose for a chat: a preset (None: none chosen) and the values they set themselves.

    Stored with a conversation as ``{"preset": NAME, FIELD: VALUE, ...}``; a stored dict from before presets
    were layered (every field, no preset) reads as the user's own values, so old chats keep their settings.
    """

    preset: str | None = None
    values: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**({"preset": self.preset} if self.preset else {}), **self.values}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SamplingChoice:
        """The choice stored in ``data``; unknown keys and bad values are dropped (the lower layers fill in)."""
        preset = data.get("preset")
        clean, _problems = validate_sampling({key: value for key, value in data.items() if key != "preset"})
        return cls(preset if isinstance(preset, str) and preset else None, clean)

    def layers(self, presets: Mapping[str, Preset], source: str = FROM_USER) -> list[SamplingLayer]:
        """The user's values, then the chosen preset's (an unknown preset name adds nothing)."""
        layers = [SamplingLayer(source, dict(self.values))]
        if self.preset is not None and self.preset in presets:
            layers.append(SamplingLayer(preset_source(self.preset), dict(presets[self.preset])))
        return layers

    def resolve(self, presets: Mapping[str, Preset], model: SamplingLayer | None) -> ResolvedSampling:
        return resolve_sampling(*self.layers(presets), model)
