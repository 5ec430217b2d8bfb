"""The models the OpenAI-compatible API offers and how a request's model name finds one.

``GET /v1/models`` lists every registered model, chat and embedding (remote ones included), each with OpenAI's
fields and ``workbench_role`` ("chat" or "embed"); ``GET /v1/models/{id}`` is one of them. Every /v1 route reads
the name a client sends by :func:`resolve_model_name` (an exact id, then without a trailing ":latest"), so the
names Ollama's routes list work here too.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.names import resolve_model_name
from workbench.core.models.spec import ModelRole, ModelSpec
from workbench.server.errors import ApiError
from workbench.server.openai_shared import SERVICES

ROLE_FIELD = "workbench_role"
ROUTE_OF_ROLE = {ModelRole.CHAT: "/v1/chat/completions or /v1/completions", ModelRole.EMBED: "/v1/embeddings"}


def model_ids(manager: ModelManager) -> list[str]:
    """Every registered model: the chat models first, then the embedders."""
    return [*manager.ids(ModelRole.CHAT), *manager.ids(ModelRole.EMBED)]


def resolve_model(manager: ModelManager, name: str, role: ModelRole) -> str:
    """The registered id of role ``role`` that ``name`` means. ApiError 404 when it means none (naming the models
    of that role) or a model of the other role (naming the route for it, as OpenAI answers a chat request to a
    model that is not a chat model)."""
    model_id = resolve_model_name(name, model_ids(manager))
    if model_id is None:
        available = ", ".join(manager.ids(role)) or "none"
        raise ApiError(404, f"The model {name!r} does not exist here; available: {available}",
                       param="model", code="model_not_found")  # fmt: skip
    actual = manager.role_of(model_id)
    if actual is not role:
        raise ApiError(404, f"{model_id!r} is a {actual.value} model: use it with {ROUTE_OF_ROLE[actual]}",
                       param="model", code="model_not_supported")  # fmt: skip
    return model_id


def model_object(spec: ModelSpec, role: ModelRole) -> dict[str, Any]:
    try:
        created = int(spec.path.stat().st_mtime)
    except OSError:
        created = 0
    return {"id": spec.id, "object": "model", "created": created, "owned_by": "workbench", ROLE_FIELD: role.value}


async def list_models(request: web.Request) -> web.Response:
    manager = request.app[SERVICES].manager
    data = [model_object(manager.info(model_id).spec, manager.role_of(model_id)) for model_id in model_ids(manager)]
    return web.json_response({"object": "list", "data": data})


async def get_model(request: web.Request) -> web.Response:
    manager = request.app[SERVICES].manager
    name = request.match_info["model"]
    model_id = resolve_model_name(name, model_ids(manager))
    if model_id is None:
        raise ApiError(404, f"The model {name!r} does not exist here; GET /v1/models lists them",
                       param="model", code="model_not_found")  # fmt: skip
    return web.json_response(model_object(manager.info(model_id).spec, manager.role_of(model_id)))


def add_model_routes(app: web.Application) -> None:
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model:.+}", get_model)  # ids may hold a slash (org/name)


__all__ = ["ROLE_FIELD", "add_model_routes", "model_ids", "model_object", "resolve_model"]
