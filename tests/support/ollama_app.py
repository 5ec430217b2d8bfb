"""Ollama's API of build_app on a free loopback port, for the real ``ollama`` client: over the real services with the
scripted "fake-chat" model and one real MLX model folder."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import ollama

from tests.support.fake_chat import services_with_fake
from workbench.core.models.spec import ModelSpec
from workbench.core.settings.paths import AppPaths
from workbench.server.openai import build_app, listen


@contextlib.asynccontextmanager
async def ollama_on_mlx_model(paths: AppPaths, model_id: str, folder: Path,
                              timeout: float = 120) -> AsyncIterator[ollama.AsyncClient]:  # fmt: skip
    """An ``ollama.AsyncClient`` on the API, ``folder`` registered as ``model_id``; closes everything on the way out."""
    services, _backend = services_with_fake(paths)
    services.manager.register(ModelSpec(id=model_id, name=model_id, kind="mlx-lm", path=folder))
    runner, base = await listen(build_app(services), "127.0.0.1", 0)
    try:
        yield ollama.AsyncClient(host=base.removesuffix("/v1"), timeout=timeout)
    finally:
        await runner.cleanup()
        await services.aclose()
