"""What the engine does for every face once it serves (the TUI did it for itself before there was an engine): find
every loadable model — the Hugging Face cache and the endpoints that list theirs on request, both blocking, so in
a thread — and register it with the one manager; find them again when a download finishes; on Apple Silicon, take
Metal's working set as the budget unless config.toml names one."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from workbench.core.hub.downloads.jobs import JobState
from workbench.core.models.memory import metal_budget

if TYPE_CHECKING:
    from workbench.bootstrap import Services
    from workbench.core.hub.downloads.jobs import JobSnapshot
    from workbench.core.models.spec import ModelSpec

log = logging.getLogger(__name__)


class EngineStartup:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.problems: list[str] = []  # endpoints that could not be asked, in words (the last scan's)
        self.scans = 0  # finished scans (tests wait on it)
        self._scan_wanted = asyncio.Event()
        self._scanned = asyncio.Event()

    async def run(self) -> None:
        """Until cancelled: the budget once, then a scan now and one after every finished download."""
        self.services.downloads.subscribe(self._on_download)
        if self.services.settings.budget_gb is None:
            await self._refine_budget()
        self._scan_wanted.set()
        while True:
            await self._scan_wanted.wait()
            self._scan_wanted.clear()
            await self._scan()

    async def scanned(self, after: int, timeout_s: float) -> None:
        """Wait (bounded) until more than ``after`` scans have finished."""
        async with asyncio.timeout(timeout_s):
            while self.scans <= after:
                self._scanned.clear()
                await self._scanned.wait()

    def rescan(self) -> None:
        self._scan_wanted.set()

    def _on_download(self, job: JobSnapshot) -> None:
        if job.state is JobState.DONE:  # a finished download may be a new model
            self.rescan()

    async def _refine_budget(self) -> None:
        manager = self.services.manager
        try:
            budget = await manager.inference.run(metal_budget)
        except Exception:
            log.exception("asking Metal for its working set failed")
            return
        if budget is not None:
            manager.set_budget(budget)

    async def _scan(self) -> None:
        try:
            specs, problems = await asyncio.to_thread(self._find)
        except Exception:
            log.exception("finding the loadable models failed")
        else:
            self.problems = problems
            self._register(specs)
        self.scans += 1
        self._scanned.set()

    def _find(self) -> tuple[list[ModelSpec], list[str]]:
        remote, problems = self.services.discover_remote_models()
        return self.services.registry.loadable_specs() + remote, problems

    def _register(self, specs: list[ModelSpec]) -> None:
        manager = self.services.manager
        known = {info.spec.id for info in manager.models()}
        for spec in specs:
            if spec.id not in known:
                try:
                    manager.register(spec)
                except Exception:
                    log.exception("registering %s failed", spec.id)
