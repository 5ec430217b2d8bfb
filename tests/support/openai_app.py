"""build_app on a loopback test server, with the real openai client and a raw poster for the wire."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import openai
from aiohttp.test_utils import TestServer

from tests.support.fake_chat import FakeChatBackend, services_with_fake
from workbench.bootstrap import Services
from workbench.core.settings.paths import AppPaths
from workbench.server.openai import build_app

WAIT = 20


@dataclass
class OpenAiApp:
    url: str  # the base URL, ending in /v1
    client: openai.AsyncOpenAI

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """POST ``body`` to ``path`` (under /v1): the status and the JSON answer."""
        async with aiohttp.ClientSession() as session, session.post(f"{self.url}{path}", json=body) as response:
            return response.status, await response.json()

    async def events(self, path: str, body: dict[str, Any]) -> tuple[int, list[Any]]:
        """POST ``body`` to a streaming ``path``: the status and each event's data (JSON, or the text "[DONE]")."""
        async with aiohttp.ClientSession() as session, session.post(f"{self.url}{path}", json=body) as response:
            raw = (await response.read()).decode()
        events = [line[len("data: "):] for line in raw.split("\n\n") if line.startswith("data: ")]
        return response.status, [event if event == "[DONE]" else json.loads(event) for event in events]


@contextlib.asynccontextmanager
async def serving_app(services: Services, timeout: float = WAIT) -> AsyncIterator[OpenAiApp]:
    """build_app(services) on a free loopback port; closes the server and the services on the way out."""
    server = TestServer(build_app(services))
    await server.start_server()
    client = openai.AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key="unused", max_retries=0,
                                timeout=timeout)  # fmt: skip
    try:
        yield OpenAiApp(str(server.make_url("/v1")), client)
    finally:
        await client.close()
        await server.close()
        await services.aclose()
        services.store.close()


@dataclass
class Served:
    """The API over the real services with the scripted "fake-chat" model."""

    app: OpenAiApp
    services: Services
    backend: FakeChatBackend

    @property
    def client(self) -> openai.AsyncOpenAI:
        return self.app.client


@contextlib.asynccontextmanager
async def serving_fake(paths: AppPaths) -> AsyncIterator[Served]:
    services, backend = services_with_fake(paths)
    async with serving_app(services) as app:
        yield Served(app, services, backend)
