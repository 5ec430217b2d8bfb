"""Ollama's API on the engine's listener (what `workbench serve` opens): the same port as the OpenAI API, the same
loaded model, and a request line per Ollama request on the listener's stream."""

from __future__ import annotations

from pathlib import Path

import ollama

from tests.test_engine_serve import Lines, running_engine, wait_until

WAIT_S = 30.0


async def test_the_engines_listener_speaks_ollama_on_the_same_port(tmp_path: Path) -> None:
    async with running_engine(tmp_path) as run:
        await run.services.manager.load("fake-chat")  # loaded by another face first
        row = await run.client.open_listener("127.0.0.1", 0)
        assert row is not None
        lines = Lines(run.client, row["id"])
        await wait_until(lambda: lines.of("listener"), "the stream's first line")
        client = ollama.AsyncClient(host=row["url"].removesuffix("/v1"), timeout=WAIT_S)
        assert "fake-chat" in [model.model for model in (await client.list()).models]
        pieces = [part async for part in await client.chat(
            "fake-chat", messages=[{"role": "user", "content": "hi"}], stream=True)]  # fmt: skip
        assert "".join(part.message.content or "" for part in pieces) == "Hello there!"
        assert [model.model for model in (await client.ps()).models] == ["fake-chat"]
        requests = await wait_until(lambda: len(lines.of("request")) >= 3 and lines.of("request"), "3 request lines")
        chat = next(line for line in requests if line["path"] == "/api/chat")
        assert (chat["status"], chat["model"], chat["stream"], chat["completion_tokens"]) == (200, "fake-chat", True, 3)
        assert run.loads == ["fake-chat"]  # the model the other face loaded: no second load
        await run.client.close_listener(row["id"])
