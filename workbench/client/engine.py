"""A small async client of the engine's native API (workbench.server.engine) over its Unix socket.

Each call answers None when no engine runs: the socket is missing, or nothing listens on it (a stale socket file
from a dead engine refuses the connection).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

TIMEOUT_S = 5.0


class EngineClient:
    def __init__(self, socket: Path, timeout_s: float = TIMEOUT_S) -> None:
        self.socket = Path(socket)
        self.timeout_s = timeout_s

    async def _call(self, method: str, route: str) -> dict[str, Any] | None:
        if not self.socket.exists():
            return None
        connector = aiohttp.UnixConnector(path=str(self.socket))
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                async with session.request(method, f"http://engine{route}") as response:
                    response.raise_for_status()
                    document: dict[str, Any] = await response.json()
                    return document
        except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionRefusedError):
            return None

    async def engine_info(self) -> dict[str, Any] | None:
        """The handshake: pid, version, fingerprint, socket, rss_bytes, uptime_s, clients."""
        return await self._call("GET", "/v1/engine")

    async def ps(self) -> dict[str, Any] | None:
        return await self._call("GET", "/v1/ps")

    async def stop(self) -> dict[str, Any] | None:
        """Ask the engine to stop (it answers first, then closes); None when none runs."""
        return await self._call("POST", "/v1/stop")

    async def wait_gone(self, timeout_s: float, poll_s: float = 0.05) -> bool:
        """True once the socket file is gone (the engine removes it last, before releasing its lock)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.socket.exists():
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(poll_s)
        return True


def same_code(info: dict[str, Any]) -> bool:
    """Whether the engine that answered runs this face's code (editable installs keep the version across changes,
    so the handshake compares a fingerprint of the code): a face meeting another engine's code says so."""
    from workbench.core.engine_home import code_fingerprint

    return info.get("fingerprint") == code_fingerprint()


def engine_info_sync(socket: Path, timeout_s: float = TIMEOUT_S) -> dict[str, Any] | None:
    """:meth:`EngineClient.engine_info` from code without an event loop (a starter, a thread)."""
    return asyncio.run(EngineClient(socket, timeout_s).engine_info())
