"""Ollama's embeddings: ``POST /api/embed`` (``input``: a string or a list; ``truncate``; ``dimensions``: the first
ones, normalised again; L2-normalised vectors, as Ollama gives them) and the older ``POST /api/embeddings``
(``prompt``: one string; ``embedding``: one vector). Both go through the embedder the Embeddings pane uses
(``services.embedder``: the same model, the same normalisation), without its corpus cache; ``keep_alive`` applies as
for answers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from workbench.core.embeddings.cache import normalise
from workbench.core.embeddings.embedder import InputTooLongError
from workbench.core.models.spec import ModelRole
from workbench.server.errors import ApiError, generation_error
from workbench.server.ollama_requests import model_name, parse_keep_alive, read_body, resolve
from workbench.server.openai_shared import LIMITS, SERVICES, WAITING

MAX_INPUTS = 2048
NS = 1_000_000_000


@dataclass(frozen=True)
class Embedded:
    model: str
    vectors: list[list[float]]
    tokens: int
    note: str  # what keep_alive could not do (a pinned model stays)
    load_s: float


async def _embed(request: web.Request, field: str) -> Embedded:
    """The vectors of the texts in the body's ``field`` ("input": a string or a list; "prompt": one string)."""
    services = request.app[SERVICES]
    with request.app[WAITING].admit():
        body = await read_body(request, request.app[LIMITS].max_body_bytes)
        model_id = resolve(services.manager, model_name(body), ModelRole.EMBED)
        keep_alive = parse_keep_alive(body.get("keep_alive"))
        texts = _texts(body.get(field), field)
        truncate = body.get("truncate", True)
        if not isinstance(truncate, bool):
            raise ApiError(400, "'truncate' must be true or false")
        dimensions = body.get("dimensions")
        if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool)
                                       or dimensions < 1):  # fmt: skip
            raise ApiError(400, "'dimensions' must be a whole number >= 1")
        started = time.monotonic()
        loaded = services.manager.info(model_id).resident
        try:
            vectors, tokens = await services.embedder.encode_texts(model_id, texts, truncate)
        except InputTooLongError as exc:
            raise ApiError(400, str(exc)) from None
        except Exception as exc:
            raise generation_error(model_id, exc) from exc
        note = await services.manager.keep_alive(model_id, keep_alive)
    load_s = 0.0 if loaded else time.monotonic() - started
    if dimensions is not None and vectors.size:
        if dimensions > vectors.shape[1]:
            raise ApiError(400, f"'dimensions' {dimensions} is more than the {vectors.shape[1]} that {model_id} gives")
        vectors = normalise(vectors[:, :dimensions])  # the first ones, normalised again (Matryoshka-style)
    return Embedded(model_id, vectors.tolist(), tokens, note, load_s)


def _texts(value: object, field: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if field != "input" or not isinstance(value, list) or not all(isinstance(text, str) for text in value):
        raise ApiError(400, "'input' must be a string or a list of strings" if field == "input"
                       else "'prompt' must be a string")  # fmt: skip
    if len(value) > MAX_INPUTS:
        raise ApiError(400, f"'input' holds {len(value)} texts; at most {MAX_INPUTS} at once")
    return value


async def embed(request: web.Request) -> web.Response:
    started = time.monotonic()
    done = await _embed(request, "input")
    answer: dict[str, Any] = {"model": done.model, "embeddings": done.vectors,
                              "total_duration": int((time.monotonic() - started) * NS),
                              "load_duration": int(done.load_s * NS), "prompt_eval_count": done.tokens}  # fmt: skip
    if done.note:
        answer["note"] = done.note
    return web.json_response(answer)


async def embeddings(request: web.Request) -> web.Response:
    done = await _embed(request, "prompt")
    return web.json_response({"embedding": done.vectors[0]})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/embed", embed)
    app.router.add_post("/api/embeddings", embeddings)


__all__ = ["add_routes", "embed", "embeddings"]
