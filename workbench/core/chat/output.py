"""What an answer's text must look like, as an API client asks for it: stop sequences and JSON (any object, or one
that validates against a JSON schema).

``check_rules`` validates what a client sent (bounded, and the schema must compile in llguidance, the constrained
decoder) and says what is wrong in words fit for an HTTP 400. ``StopScanner`` applies stop sequences to streamed
text: it holds back text that may be the start of a stop sequence until it knows, and ends the answer before the
first stop sequence (which is not part of the answer).

With JSON rules the grammar decides where the answer ends, so stop sequences are not applied to it: a stop sequence
cutting the JSON short would break the promise that an answer which ended with "stop" parses.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_STOPS = 4
MAX_STOP_CHARS = 200
MAX_SCHEMA_CHARS = 32_000
ANY_OBJECT_SCHEMA: dict[str, Any] = {"type": "object"}


class OutputRulesError(ValueError):
    """Output rules that cannot be applied; the message says what is wrong and is fit for an HTTP 400."""


@dataclass(frozen=True)
class OutputRules:
    stop: tuple[str, ...] = ()  # the answer ends before the first of these (not included)
    json_schema: dict[str, Any] | None = None  # constrain decoding to this JSON schema
    json_object: bool = False  # constrain decoding to any JSON object

    @property
    def constrained(self) -> bool:
        """Whether decoding is constrained to JSON."""
        return self.json_schema is not None or self.json_object

    @property
    def schema(self) -> dict[str, Any] | None:
        """The JSON schema decoding is constrained to (any object for ``json_object``), or None."""
        if self.json_schema is not None:
            return self.json_schema
        return ANY_OBJECT_SCHEMA if self.json_object else None

    @property
    def active_stops(self) -> tuple[str, ...]:
        """The stop sequences applied to the text: none under JSON rules (see the module's note)."""
        return () if self.constrained else self.stop

    def __bool__(self) -> bool:
        return bool(self.stop) or self.constrained


def check_rules(
    rules: OutputRules | None = None,
    *,
    stop: str | Iterable[str] | None = None,
    json_schema: Mapping[str, Any] | None = None,
    json_object: bool = False,
) -> OutputRules:
    """Validated output rules, from ``rules`` or from the separate fields (a single stop string is allowed, as
    OpenAI's and Ollama's clients send it). Raises OutputRulesError naming the problem."""
    if rules is not None:
        stop, json_schema, json_object = rules.stop, rules.json_schema, rules.json_object
    stops = _check_stops(stop)
    if not isinstance(json_object, bool):
        raise OutputRulesError("json_object must be true or false")
    schema = None if json_schema is None else _check_schema(json_schema)
    return OutputRules(stop=stops, json_schema=schema, json_object=json_object and schema is None)


def _check_stops(stop: str | Iterable[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        stops: list[Any] = [stop]
    elif isinstance(stop, (bytes, Mapping)) or not isinstance(stop, Iterable):
        raise OutputRulesError("stop must be a string or a list of strings")
    else:
        stops = []
        for item in stop:
            stops.append(item)
            if len(stops) > MAX_STOPS:
                raise OutputRulesError(f"at most {MAX_STOPS} stop sequences are allowed")
    for item in stops:
        if not isinstance(item, str):
            raise OutputRulesError(f"each stop sequence must be a string, got {type(item).__name__}")
        if not 1 <= len(item) <= MAX_STOP_CHARS:
            raise OutputRulesError(f"each stop sequence must be 1 to {MAX_STOP_CHARS} characters, got {len(item)}")
    return tuple(dict.fromkeys(stops))


def _check_schema(json_schema: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(json_schema, Mapping):
        raise OutputRulesError(f"the JSON schema must be an object, got {type(json_schema).__name__}")
    try:
        text = json.dumps(json_schema)
    except (TypeError, ValueError) as exc:
        raise OutputRulesError(f"the JSON schema is not JSON: {exc}") from exc
    if len(text) > MAX_SCHEMA_CHARS:
        raise OutputRulesError(f"the JSON schema is {len(text):,} characters; at most {MAX_SCHEMA_CHARS:,} are allowed")
    problem = schema_problem(text)
    if problem:
        raise OutputRulesError(f"the JSON schema cannot be used: {problem}")
    return json.loads(text)  # a plain copy: the caller's dict may change later


def schema_problem(schema_text: str) -> str:
    """Why llguidance cannot compile the JSON schema ``schema_text`` (its own words), or "" when it can."""
    from llguidance import LLMatcher

    try:
        grammar = LLMatcher.grammar_from_json_schema(schema_text)
    except ValueError as exc:
        return str(exc)
    is_error, messages = LLMatcher.validate_grammar_with_warnings(grammar)
    return "; ".join(messages) if is_error else ""


class StopScanner:
    """Applies stop sequences to text arriving in pieces. ``feed`` returns the text that is surely part of the answer
    and whether a stop sequence was found (then the answer ends: the stop and anything after it are dropped);
    ``flush`` returns what was held back once the text has ended without a stop."""

    def __init__(self, stops: Iterable[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        if not self.stops:
            return text
        buffer = self._held + text
        found = [i for i in (buffer.find(stop) for stop in self.stops) if i >= 0]
        if found:
            self.stopped, self._held = True, ""
            return buffer[: min(found)]
        keep = self._possible_start(buffer)
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held

    def _possible_start(self, buffer: str) -> int:
        """The length of the longest end of ``buffer`` that a stop sequence starts with (but is not all of)."""
        longest = 0
        for stop in self.stops:
            for length in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:length]):
                    longest = length
                    break
        return longest
