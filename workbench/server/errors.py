"""Errors in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``: the exception the server's
handlers raise, the middleware that answers every failure (ours, aiohttp's, unexpected) in that shape, and what
a failed chat run means to the client."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from workbench.core.chat.run import ChatError
from workbench.core.models.lifecycle import (
    ModelDoesNotFitError,
    ModelLoadError,
    ModelManagerError,
    UnknownModelError,
)

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.body = {"message": message, "type": type_, "param": param, "code": code}
        self.headers = headers or {}

    def response(self) -> web.Response:
        return web.json_response({"error": self.body}, status=self.status, headers=self.headers)


@web.middleware
async def answer_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure of a handler as an OpenAI-shaped answer; tracebacks go to the log only."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:  # unknown route, wrong method, body too large
        kind = "invalid_request_error" if exc.status < 500 else "server_error"
        return ApiError(exc.status, exc.reason, kind).response()
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return ApiError(500, "internal server error (see the workbench log)", "server_error").response()


def generation_error(model_id: str, exc: Exception, prompt_param: str = "messages",
                     work: str = "generation") -> ApiError:  # fmt: skip
    """What a failure of a chat run (or of other ``work`` with a model: "embedding") means to the client;
    ``prompt_param`` names the request's field a prompt that cannot fit came from."""
    if isinstance(exc, UnknownModelError):  # no longer registered when the run asked for it (its files deleted)
        return ApiError(404, str(exc), param="model", code="model_not_found")
    if isinstance(exc, ModelDoesNotFitError):
        return ApiError(503, str(exc), "server_error", code="model_does_not_fit")
    if isinstance(exc, ModelLoadError):
        return ApiError(500, str(exc), "server_error", code="model_load_failed")
    if isinstance(exc, ChatError):
        return ApiError(400, str(exc), param=prompt_param, code="context_length_exceeded")
    if isinstance(exc, ModelManagerError):
        return ApiError(500, str(exc), "server_error")
    log.warning("%s with %s failed: %s: %s", work, model_id, type(exc).__name__, exc)
    return ApiError(500, f"{work} failed: {type(exc).__name__}: {exc}", "server_error")


__all__ = ["ApiError", "answer_errors", "generation_error"]
