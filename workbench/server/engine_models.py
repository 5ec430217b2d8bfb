"""The engine's model routes: what its one manager holds, and a face's load / unload / pin.

``GET /v1/models/state`` answers :func:`models_document` (also the event stream's ``models`` topic): every registered
model as core/wire.py writes a ModelInfo, the budget, what the models and kept prompt caches hold, the context
length estimates assume. ``POST /v1/models/load|unload|pin`` take ``{"model": id}`` (pin also ``"pinned": bool``) and
answer the model's new info; an unknown id is 404, a refusal (does not fit, in use, failed to load) 409 with the
manager's words.

``POST /v1/models/delete`` ``{"model": id, "path"?: ABSOLUTE}`` deletes a model's files (what `workbench rm` does: a
cache repo with all its revisions, an imported folder) through the engine's registry, whose manager unregisters the
model first (unloading it when idle): 409 with the manager's words while it is in use or loading, 404 for a model not
on disk, 400 for the built-in embedder; ``path``, where the face saw the model, must be where the engine finds it
(409 otherwise: the face's Hugging Face cache is not the engine's). Answers ``{"id", "kind", "source", "path",
"freed_bytes"}``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from workbench.core.models.spec import ModelManagerError, UnknownModelError
from workbench.core.wire import model_info_to_wire
from workbench.server.bodies import BadRequest, parse_json_object, read_bounded

if TYPE_CHECKING:
    from workbench.core.models.lifecycle import ModelManager
    from workbench.core.models.registry import InstalledModel, ModelRegistry

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4096
MAX_ID_CHARS = 512
MAX_PATH_CHARS = 4096


def models_document(manager: ModelManager) -> dict[str, Any]:
    return {
        "models": [model_info_to_wire(info) for info in manager.models()],
        "budget": {"bytes": manager.budget.bytes, "source": manager.budget.source},
        "held_bytes": manager.held_bytes(),
        "context_length": manager.context_length,
    }


def parse_model_action(body: bytes, with_pinned: bool = False) -> tuple[str, bool]:
    """``(model id, pinned)`` from an action's body, or BadRequest."""
    known = frozenset({"model", "pinned"} if with_pinned else {"model"})
    document = parse_json_object(body, known, MAX_BODY_BYTES, '{"model": id}')
    model_id = document.get("model")
    if not isinstance(model_id, str) or not model_id or len(model_id) > MAX_ID_CHARS:
        raise BadRequest(f"'model' must be a model id (a string of at most {MAX_ID_CHARS} characters)")
    pinned = document.get("pinned", True)
    if not isinstance(pinned, bool):
        raise BadRequest("'pinned' must be true or false")
    return model_id, pinned


class ModelRoutes:
    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/models/state", self.state), web.post("/v1/models/load", self.load),
                web.post("/v1/models/unload", self.unload), web.post("/v1/models/pin", self.pin)]  # fmt: skip

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response(models_document(self.manager))

    async def _action(self, request: web.Request, with_pinned: bool = False) -> tuple[str, bool] | web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return refused(f"the body is larger than {MAX_BODY_BYTES} bytes", 413)
        body = await read_bounded(request, MAX_BODY_BYTES)
        if len(body) > MAX_BODY_BYTES:
            return refused(f"the body is larger than {MAX_BODY_BYTES} bytes", 413)
        try:
            return parse_model_action(body, with_pinned)
        except BadRequest as exc:
            return refused(str(exc), exc.status)

    async def load(self, request: web.Request) -> web.Response:
        parsed = await self._action(request)
        if isinstance(parsed, web.Response):
            return parsed
        try:
            info = await self.manager.load(parsed[0])
        except ModelManagerError as exc:
            return manager_refusal(exc)
        return web.json_response({"model": model_info_to_wire(info)})

    async def unload(self, request: web.Request) -> web.Response:
        parsed = await self._action(request)
        if isinstance(parsed, web.Response):
            return parsed
        try:
            await self.manager.unload(parsed[0])
        except ModelManagerError as exc:
            return manager_refusal(exc)
        return web.json_response({"model": model_info_to_wire(self.manager.info(parsed[0]))})

    async def pin(self, request: web.Request) -> web.Response:
        parsed = await self._action(request, with_pinned=True)
        if isinstance(parsed, web.Response):
            return parsed
        model_id, pinned = parsed
        try:
            self.manager.pin(model_id, pinned)
        except ModelManagerError as exc:
            return manager_refusal(exc)
        return web.json_response({"model": model_info_to_wire(self.manager.info(model_id))})


def parse_delete(body: bytes) -> tuple[str, Path | None]:
    """``(model id, the path the face saw)`` from a delete's body, or BadRequest."""
    document = parse_json_object(body, frozenset({"model", "path"}), MAX_BODY_BYTES,
                                 '{"model": id, "path"?: ABSOLUTE}')  # fmt: skip
    model_id = document.get("model")
    if (not isinstance(model_id, str) or not model_id or len(model_id) > MAX_ID_CHARS
            or any(ord(c) < 0x20 for c in model_id)):  # fmt: skip
        raise BadRequest(f"'model' must be a model id (a line of at most {MAX_ID_CHARS} characters)")
    raw = document.get("path")
    if raw is None:
        return model_id, None
    if not isinstance(raw, str) or not raw or len(raw) > MAX_PATH_CHARS or "\0" in raw or not Path(raw).is_absolute():
        raise BadRequest("'path' must be an absolute path (where the face saw the model)")
    return model_id, Path(raw)


class ModelDeleteRoutes:
    """``POST /v1/models/delete``: a model's files deleted by the engine, its manager told first."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/models/delete", self.delete)]

    async def delete(self, request: web.Request) -> web.Response:
        from workbench.core.models.registry import BUILT_IN

        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return refused(f"the body is larger than {MAX_BODY_BYTES} bytes", 413)
        body = await read_bounded(request, MAX_BODY_BYTES)
        if len(body) > MAX_BODY_BYTES:
            return refused(f"the body is larger than {MAX_BODY_BYTES} bytes", 413)
        try:
            model_id, seen_at = parse_delete(body)
        except BadRequest as exc:
            return refused(str(exc), exc.status)
        try:
            model = await asyncio.to_thread(self._find, model_id)
        except (OSError, ValueError) as exc:
            log.exception("listing the models to delete %s failed", model_id)
            return refused(f"cannot read the models: {exc}", 500)
        if model is None:
            return refused(f"no model called {model_id!r} on disk", 404)
        if model.source == BUILT_IN:
            return refused(f"{model.id} is the built-in embedder: it ships in a Python package and is not deleted", 400)
        where = model.repo_path or model.path
        if seen_at is not None and not _same_place(seen_at, where):
            return refused(f"the engine finds {model.id} at {where}, not at {seen_at} (its Hugging Face cache is not "
                           "this shell's: delete it where the engine runs, or stop the engine first)", 409)  # fmt: skip
        try:
            freed = await self.registry.remove(model)
        except ModelManagerError as exc:  # in use or loading: the manager's words
            return refused(str(exc) or type(exc).__name__, 409)
        except OSError as exc:
            log.exception("deleting %s failed", model.id)
            return refused(f"cannot delete {model.id} ({where}): {exc.strerror or exc}", 500)
        return web.json_response({"id": model.id, "kind": model.kind, "source": model.source, "path": str(where),
                                  "freed_bytes": freed})  # fmt: skip

    def _find(self, model_id: str) -> InstalledModel | None:
        found = next((m for m in self.registry.installed() if m.id == model_id), None)
        return found or self.registry.cached_repo(model_id)


def _same_place(one: Path, other: Path) -> bool:
    return one == other or one.resolve() == other.resolve()


def refused(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)


def manager_refusal(exc: ModelManagerError) -> web.Response:
    if isinstance(exc, UnknownModelError):
        return refused(str(exc) or "no such model", 404)
    return refused(str(exc) or type(exc).__name__, 409)
