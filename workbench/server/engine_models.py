"""The engine's model routes: what its one manager holds, and a face's load / unload / pin.

``GET /v1/models/state`` answers :func:`models_document` (also the event stream's ``models`` topic): every registered
model as core/wire.py writes a ModelInfo, the budget, what the models and kept prompt caches hold, the context
length estimates assume. ``POST /v1/models/load|unload|pin`` take ``{"model": id}`` (pin also ``"pinned": bool``) and
answer the model's new info; an unknown id is 404, a refusal (does not fit, in use, failed to load) 409 with the
manager's words.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from workbench.core.models.spec import ModelManagerError, UnknownModelError
from workbench.core.wire import model_info_to_wire
from workbench.server.bodies import read_bounded

if TYPE_CHECKING:
    from workbench.core.models.lifecycle import ModelManager

MAX_BODY_BYTES = 4096
MAX_ID_CHARS = 512


def models_document(manager: ModelManager) -> dict[str, Any]:
    return {
        "models": [model_info_to_wire(info) for info in manager.models()],
        "budget": {"bytes": manager.budget.bytes, "source": manager.budget.source},
        "held_bytes": manager.held_bytes(),
        "context_length": manager.context_length,
    }


class BadRequest(ValueError):
    pass


def parse_model_action(body: bytes, with_pinned: bool = False) -> tuple[str, bool]:
    """``(model id, pinned)`` from an action's body, or BadRequest."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not JSON") from None
    known = {"model", "pinned"} if with_pinned else {"model"}
    if not isinstance(document, dict):
        raise BadRequest('the body must be a JSON object: {"model": id}')
    if unknown := sorted(set(document) - known):
        raise BadRequest(f"unknown key(s): {', '.join(repr(k)[:60] for k in unknown[:5])}")
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
            return refused(str(exc))

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


def refused(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)


def manager_refusal(exc: ModelManagerError) -> web.Response:
    if isinstance(exc, UnknownModelError):
        return refused(str(exc) or "no such model", 404)
    return refused(str(exc) or type(exc).__name__, 409)
