"""Ollama's model lists over the manager: ``GET /api/tags`` (every registered model: local chat models, embedders,
remote endpoint models under their ``NAME:MODEL`` id), ``POST /api/show``, ``GET /api/ps`` (the resident ones, with
``expires_at`` from the manager's idle unload and keep_alive) and ``DELETE /api/delete`` (through the registry).

The details (family, parameter size, quantization, context length, template) come from the model's files
(:mod:`workbench.core.models.details`), read on a thread and kept per path and modification time.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from typing import Any

from aiohttp import web

from workbench.core.models.backends.remote import KIND as REMOTE_KIND
from workbench.core.models.details import ModelDetails, model_details
from workbench.core.models.registry import InstalledModel
from workbench.core.models.spec import ModelInfo, ModelInUseError, ModelRole, ModelSpec
from workbench.server.errors import ApiError
from workbench.server.ollama import ollama_time
from workbench.server.ollama_requests import model_name, read_body, resolve
from workbench.server.openai_shared import SERVICES

MAX_SMALL_BODY = 64 * 1024
KEPT_DETAILS = 256
KEPT_FOREVER_S = 292 * 365 * 24 * 3600  # what Ollama's expires_at says of a model kept loaded (keep_alive -1)


class DetailsCache:
    """The details of recently listed models, by path and modification time (bounded)."""

    def __init__(self, limit: int = KEPT_DETAILS) -> None:
        self.limit = limit
        self._kept: OrderedDict[tuple[str, float], ModelDetails] = OrderedDict()

    async def get(self, spec: ModelSpec) -> ModelDetails:
        if spec.kind == REMOTE_KIND:
            return ModelDetails(format="remote")
        key = (str(spec.path), _mtime(spec))
        if (found := self._kept.get(key)) is not None:
            self._kept.move_to_end(key)
            return found
        details = await asyncio.to_thread(model_details, spec.path)
        self._kept[key] = details
        while len(self._kept) > self.limit:
            self._kept.popitem(last=False)
        return details


DETAILS = web.AppKey("ollama_details", DetailsCache)


def _mtime(spec: ModelSpec) -> float:
    try:
        return spec.path.stat().st_mtime
    except OSError:
        return 0.0


def _digest(spec: ModelSpec) -> str:
    """A stable id for the model's files as they are now (Ollama's clients show and compare it)."""
    return hashlib.sha256(f"{spec.id}\0{spec.path}\0{_mtime(spec)}".encode()).hexdigest()


def details_object(details: ModelDetails) -> dict[str, Any]:
    return {"parent_model": "", "format": details.format, "family": details.family,
            "families": [details.family] if details.family else None,
            "parameter_size": details.parameter_size, "quantization_level": details.quantization_level}  # fmt: skip


def _services(request: web.Request) -> Any:
    return request.app[SERVICES]


async def _sizes(request: web.Request) -> dict[str, int]:
    """Each local model's size on disk, by id."""
    installed: list[InstalledModel] = await asyncio.to_thread(_services(request).registry.installed)
    return {model.id: model.size_bytes for model in installed}


async def tags(request: web.Request) -> web.Response:
    manager = _services(request).manager
    sizes = await _sizes(request)
    models = []
    for info in manager.models():
        spec = info.spec
        details = await request.app[DETAILS].get(spec)
        models.append({"name": spec.id, "model": spec.id, "modified_at": ollama_time(_mtime(spec) or None),
                       "size": sizes.get(spec.id, 0), "digest": _digest(spec),
                       "details": details_object(details)})  # fmt: skip
    return web.json_response({"models": models})


def _parameters_text(details: ModelDetails, context_length: int) -> str:
    """The parameters as Ollama's Modelfile writes them: ``name   value`` lines."""
    values = {**details.parameters, "num_ctx": min(context_length, details.context_length or context_length)}
    return "\n".join(f"{name:<30} {value}" for name, value in values.items())


async def show(request: web.Request) -> web.Response:
    services = _services(request)
    body = await read_body(request, MAX_SMALL_BODY)
    model_id = resolve(services.manager, model_name(body))
    info = services.manager.info(model_id)
    details = await request.app[DETAILS].get(info.spec)
    context_length = services.manager.context_length
    parameters = _parameters_text(details, context_length)
    model_info = dict(details.info)
    if details.family:
        model_info.setdefault("general.architecture", details.family)
        if details.context_length:
            model_info.setdefault(f"{details.family}.context_length", details.context_length)
    capabilities = ["embedding"] if info.role is ModelRole.EMBED else ["completion"]
    template_line = f'TEMPLATE """{details.template}"""\n' if details.template else ""
    modelfile = (f"# Modelfile of {model_id}, served by the workbench\nFROM {info.spec.path}\n{template_line}"
                 + "".join(f"PARAMETER {line}\n" for line in parameters.splitlines()))  # fmt: skip
    return web.json_response({
        "modelfile": modelfile, "parameters": parameters, "template": details.template, "license": "",
        "details": details_object(details), "model_info": model_info, "capabilities": capabilities,
        "modified_at": ollama_time(_mtime(info.spec) or None),
    })  # fmt: skip


def _expires_at(manager: Any, info: ModelInfo) -> str:
    seconds = manager.unload_in(info.spec.id)
    return ollama_time(time.time() + (KEPT_FOREVER_S if seconds is None else seconds))


def _context_length(manager: Any, info: ModelInfo, details: ModelDetails) -> int:
    """What the loaded model reads at most: the manager's context, or less where the model's own is smaller (an
    embedder reads 512 tokens, as /api/show says)."""
    own = details.context_length
    if info.role is ModelRole.EMBED and own:
        return own
    return min(manager.context_length, own) if own else manager.context_length


async def ps(request: web.Request) -> web.Response:
    manager = _services(request).manager
    models = []
    for info in manager.models():
        if not info.resident:
            continue
        details = await request.app[DETAILS].get(info.spec)
        size = manager.cost_of(info.spec.id) or 0
        models.append({"name": info.spec.id, "model": info.spec.id, "size": size, "size_vram": size,
                       "digest": _digest(info.spec), "details": details_object(details),
                       "expires_at": _expires_at(manager, info),
                       "context_length": _context_length(manager, info, details)})  # fmt: skip
    return web.json_response({"models": models})


async def delete(request: web.Request) -> web.Response:
    services = _services(request)
    body = await read_body(request, MAX_SMALL_BODY)
    model_id = resolve(services.manager, model_name(body))
    if services.manager.info(model_id).spec.kind == REMOTE_KIND:
        raise ApiError(400, f"{model_id} is served by a remote endpoint: remove it from config.toml instead")
    installed = await asyncio.to_thread(services.registry.installed)
    model = next((m for m in installed if m.id == model_id), None)
    if model is None:
        raise ApiError(404, f"model {model_id!r} not found")
    try:
        await services.registry.remove(model)
    except ModelInUseError as exc:
        raise ApiError(409, str(exc)) from None
    except ValueError as exc:  # the built-in embedder
        raise ApiError(400, str(exc)) from None
    except OSError as exc:
        raise ApiError(500, f"cannot delete {model_id}: {exc}") from None
    return web.Response(status=200)


def add_routes(app: web.Application) -> None:
    app[DETAILS] = DetailsCache()
    app.router.add_get("/api/tags", tags)
    app.router.add_post("/api/show", show)
    app.router.add_get("/api/ps", ps)
    app.router.add_delete("/api/delete", delete)


__all__ = ["DETAILS", "DetailsCache", "add_routes", "details_object"]
