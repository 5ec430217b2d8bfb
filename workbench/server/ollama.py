"""Ollama's API on serve's port, beside the OpenAI one (:func:`add_ollama_routes`, called by openai.build_app), so
the clients that speak Ollama (Open WebUI, oterm, the ``ollama`` package, Zed, Continue) reach the same models on
the same manager and budget.

Routes: ``GET /api/version``, ``GET|HEAD /``; ``GET /api/tags``, ``POST /api/show``, ``GET /api/ps``,
``DELETE /api/delete`` (:mod:`.ollama_models`); ``POST /api/chat`` and ``/api/generate`` (:mod:`.ollama_answers`);
``POST /api/embed`` and ``/api/embeddings`` (:mod:`.ollama_embed`); ``POST /api/pull`` (:mod:`.ollama_pull`).
Every route takes the ids /api/tags lists (an exact id, then without a trailing ":latest").
Errors have Ollama's shape, ``{"error": "..."}``, with its status codes (404 an unknown model, 400 a bad request).
"""

from __future__ import annotations

import importlib.metadata
import logging
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.typedefs import Handler

from workbench.server.errors import ApiError, answer_errors

log = logging.getLogger(__name__)

PREFIX = "/api/"
# what /api/version answers: clients compare it with the Ollama versions that have the features they use
# (Open WebUI and oterm check for at least 0.1.x); ours is in "workbench"
OLLAMA_VERSION = "0.6.4"


def ollama_time(timestamp: float | None = None) -> str:
    """A time as Ollama writes it (RFC 3339, UTC)."""
    moment = datetime.now(UTC) if timestamp is None else datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat().replace("+00:00", "Z")


@web.middleware
async def ollama_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Failures of the /api/ routes as ``{"error": "..."}``; the rest pass untouched (OpenAI's shape)."""
    if not request.path.startswith(PREFIX):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response({"error": exc.body["message"]}, status=exc.status, headers=exc.headers)
    except web.HTTPException as exc:  # an unknown route, a wrong method
        return web.json_response({"error": exc.reason.lower()}, status=exc.status)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return web.json_response({"error": "internal server error (see the workbench log)"}, status=500)


async def version(request: web.Request) -> web.Response:
    try:
        ours = importlib.metadata.version("workbench")
    except importlib.metadata.PackageNotFoundError:
        ours = "unknown"
    return web.json_response({"version": OLLAMA_VERSION, "workbench": ours})


async def root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running")  # what clients probe for (the workbench speaks its API)


def add_ollama_routes(app: web.Application) -> None:
    """Register Ollama's routes and its error shape on the API ``app`` (whose keys they read)."""
    from workbench.server import ollama_answers, ollama_embed, ollama_models, ollama_pull

    # right inside OpenAI's error answers, outside the key check: a refused key is an Ollama-shaped 401 here too
    at = next((i + 1 for i, middleware in enumerate(app.middlewares) if middleware is answer_errors), 0)
    app.middlewares.insert(at, ollama_errors)
    app.router.add_get("/", root)
    app.router.add_get("/api/version", version)
    ollama_models.add_routes(app)
    ollama_answers.add_routes(app)
    ollama_embed.add_routes(app)
    ollama_pull.add_routes(app)


__all__ = ["OLLAMA_VERSION", "add_ollama_routes", "ollama_errors", "ollama_time"]
