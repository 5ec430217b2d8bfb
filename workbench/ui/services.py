"""The typed way from a screen or widget to the services: ``services_of(self).manager``."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar, runtime_checkable

from textual.dom import DOMNode

from workbench.api import WorkbenchApi

T = TypeVar("T")
log = logging.getLogger(__name__)


@runtime_checkable
class ServicesHost(Protocol):
    """An app that carries the services (WorkbenchApp)."""

    services: WorkbenchApi


def services_of(node: DOMNode) -> WorkbenchApi:
    """The services of the app ``node`` runs in."""
    app = node.app
    if not isinstance(app, ServicesHost):
        raise TypeError(f"{type(app).__name__} carries no services")
    return app.services


def settle(node: DOMNode, result: T | Awaitable[T], then: Callable[[T], None], what: str) -> None:
    """Call ``then`` with ``result``: at once when the services answered it (in-process), or once the engine
    answered (attached: an awaitable); a refusal becomes a notification saying ``what`` failed."""
    if not inspect.isawaitable(result):
        then(result)  # type: ignore[arg-type]
        return

    async def answered() -> None:
        try:
            value = await result
        except Exception as exc:
            log.warning("%s: %s", what, exc)
            node.app.notify(f"{what}: {exc}", severity="error", timeout=10)
            return
        then(value)

    node.app.run_worker(answered(), group="engine-answer", exit_on_error=False)
