"""A ChatRun read to its end (bounded), and the bounded JSON schema a random-weight model must still keep to."""

from __future__ import annotations

import asyncio

from workbench.core.chat.run import ChatRun, Finished, Token

# enum, maxLength and maxItems bound every answer: even a random model reaches the end of the JSON
BOUNDED_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "color": {"enum": ["red", "green", "blue"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3},
    },
    "required": ["name", "color", "tags"],
    "additionalProperties": False,
}


async def run_events(run: ChatRun, timeout_s: float) -> list[object]:
    async def collect() -> list[object]:
        return [event async for event in run.events()]

    return await asyncio.wait_for(collect(), timeout_s)


async def run_to_end(run: ChatRun, timeout_s: float) -> tuple[str, Finished]:
    """The answer's text and its Finished event."""
    events = await run_events(run, timeout_s)
    finished = events[-1]
    assert isinstance(finished, Finished)
    return "".join(event.text for event in events if isinstance(event, Token)), finished
