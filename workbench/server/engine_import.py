"""The first-start import of the default chat model, run by the engine for every face.

``POST /v1/default-import`` starts it when the default chat model is missing (once; asking again while it runs or
after it ended changes nothing) and answers the status. Every change is published on the event stream's ``import``
topic as :func:`import_status_to_wire` writes it, so each attached face shows the same progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aiohttp import web

from workbench.core.models.local import default_chat_missing
from workbench.core.models.wait import ImportState, ImportStatus

if TYPE_CHECKING:
    from workbench.bootstrap import Services
    from workbench.server.engine_events import EventHub

log = logging.getLogger(__name__)


def import_status_to_wire(status: ImportStatus, name: str) -> dict[str, Any]:
    return {**asdict(status), "name": name}


class DefaultImportRoutes:
    def __init__(self, services: Services, events: EventHub) -> None:
        self.services = services
        self.events = events
        self._task: asyncio.Task[None] | None = None
        importer = services.default_import
        importer.subscribe(lambda status: events.publish("import", import_status_to_wire(status, importer.name),
                                                         state=True))  # fmt: skip
        events.publish("import", import_status_to_wire(importer.status, importer.name), state=True)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/default-import", self.start)]

    async def start(self, request: web.Request) -> web.Response:
        importer = self.services.default_import
        if importer.status.state is ImportState.IDLE and self._task is None and default_chat_missing(
            self.services.paths
        ):
            importer.plan()
            self._task = asyncio.create_task(self._run())
        return web.json_response(import_status_to_wire(importer.status, importer.name))

    async def _run(self) -> None:
        try:
            spec = await self.services.default_import.run()
        except Exception:
            log.exception("importing the default chat model failed")
        else:
            log.info("imported the default chat model %s", spec.id)

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
