"""A first-start import the test drives: it reports the progress the test feeds and ends when the test says."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.fake_chat import FakeChatBackend, Script, fake_spec
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.local import DEFAULT_CHAT_ID
from workbench.core.models.spec import ModelSpec
from workbench.core.models.wait import DefaultModelImport, Progress

FINISH = object()


class ScriptedImport:
    def __init__(self, manager: ModelManager, spec: ModelSpec) -> None:
        self.manager = manager
        self.spec = spec
        self.steps: asyncio.Queue[Any] = asyncio.Queue(maxsize=16)
        self.started = asyncio.Event()

    async def __call__(self, progress: Progress) -> ModelSpec:
        self.started.set()
        while (step := await self.steps.get()) is not FINISH:
            if isinstance(step, Exception):
                raise step
            progress(*step)
        self.manager.register(self.spec)  # as the real importer does
        return self.spec

    async def progress(self, stage: str, fraction: float) -> None:
        await self.steps.put((stage, fraction))

    async def finish(self) -> None:
        await self.steps.put(FINISH)

    async def fail(self, error: Exception) -> None:
        await self.steps.put(error)


def services_with_scripted_import(
    paths: Any, script: Script | None = None, backend: FakeChatBackend | None = None
) -> tuple[Any, FakeChatBackend, ScriptedImport]:
    """Real services with no chat model yet; the default one (a scripted fake) arrives when the test finishes
    the import."""
    from workbench.bootstrap import build_services

    services = build_services(paths)
    backend = backend or FakeChatBackend(script)
    services.manager.add_backend(backend)
    spec = fake_spec(DEFAULT_CHAT_ID, kind=backend.kind)
    importer = ScriptedImport(services.manager, spec)
    services.default_import = DefaultModelImport(importer, "SmolLM2")
    return services, backend, importer
