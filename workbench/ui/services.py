"""The typed way from a screen or widget to the services: ``services_of(self).manager``."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from textual.dom import DOMNode

from workbench.api import WorkbenchApi


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
