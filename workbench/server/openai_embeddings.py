"""``POST /v1/embeddings`` as OpenAI spells it, through the engine's one Embedder (the one the Embeddings pane uses:
the model leased from the manager, batches on its inference thread), so a text's vector here is the pane's.

The body: ``model``, ``input`` (a string or a list of strings, bounded in count and length; token arrays are
refused), ``encoding_format`` ("float", the default, or "base64": the little-endian float32 bytes, as OpenAI
sends them), ``dimensions`` (the first N of each vector, L2-normalised again, as OpenAI's shortened embeddings;
more than the model has is a 400), ``user`` (ignored). The vectors are L2-normalised; ``usage.prompt_tokens`` is
what the model's tokenizer read (after its own truncation, special tokens included).
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import web

from workbench.core.embeddings.cache import normalise
from workbench.core.models.spec import ModelRole
from workbench.server.errors import ApiError, generation_error
from workbench.server.openai_models import resolve_model
from workbench.server.openai_requests import checked_model
from workbench.server.openai_shared import REQUEST_MODEL, SERVICES, WAITING, read_json

MAX_INPUTS = 2048  # OpenAI's own bound on one request's inputs
MAX_INPUT_CHARS = 32_768  # far past what any local embedder reads (MiniLM: 256 tokens); a bound on tokenizing
MAX_DIMENSIONS = 65_536
ENCODINGS = ("float", "base64")
HOLDER = "an API request"


@dataclass(frozen=True)
class EmbeddingRequest:
    model: str
    texts: list[str]
    encoding_format: str
    dimensions: int | None


def parse_embedding_request(body: object) -> EmbeddingRequest:
    """An embeddings request from its JSON body; unknown fields are ignored. Raises ApiError (400)."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    model = checked_model(body.get("model"))
    encoding = body.get("encoding_format")
    if encoding is None:
        encoding = "float"
    if encoding not in ENCODINGS:
        raise ApiError(400, "'encoding_format' must be \"float\" or \"base64\"", param="encoding_format")
    return EmbeddingRequest(model=model, texts=_texts(body.get("input")), encoding_format=encoding,
                            dimensions=_dimensions(body.get("dimensions")))  # fmt: skip


def _texts(value: object) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts:
        raise ApiError(400, "'input' must be a string or a non-empty list of strings", param="input")
    if len(texts) > MAX_INPUTS:
        raise ApiError(400, f"'input' holds {len(texts)} texts; at most {MAX_INPUTS} a request", param="input")
    for index, text in enumerate(texts):
        param = "input" if isinstance(value, str) else f"input[{index}]"
        if not isinstance(text, str):
            raise ApiError(400, f"{param}: only text is taken (a string), not token ids", param=param)
        if not text:
            raise ApiError(400, f"{param}: an empty string has no embedding", param=param)
        if len(text) > MAX_INPUT_CHARS:
            raise ApiError(400, f"{param} holds {len(text)} characters; at most {MAX_INPUT_CHARS} a text",
                           param=param, code="context_length_exceeded")  # fmt: skip
    return texts


def _dimensions(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DIMENSIONS:
        raise ApiError(400, "'dimensions' must be a positive whole number", param="dimensions")
    return value


def shortened(vectors: np.ndarray, dimensions: int | None, model_id: str) -> np.ndarray:
    """The first ``dimensions`` of each row, L2-normalised again; ApiError 400 past the model's dimensions."""
    if dimensions is None or dimensions == vectors.shape[1]:
        return vectors
    if dimensions > vectors.shape[1]:
        raise ApiError(400, f"'dimensions' is {dimensions}, but {model_id} has {vectors.shape[1]}: ask for that "
                       "many or fewer", param="dimensions")  # fmt: skip
    return normalise(vectors[:, :dimensions])


def encoded(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.astype(np.float32).tolist()  # each float32 exactly, as a JSON number


def answer_text(model_id: str, vectors: np.ndarray, tokens: int, encoding_format: str) -> str:
    data = [{"object": "embedding", "index": index, "embedding": encoded(vector, encoding_format)}
            for index, vector in enumerate(vectors)]  # fmt: skip
    document: dict[str, Any] = {"object": "list", "data": data, "model": model_id,
                                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip
    return json.dumps(document, separators=(",", ":"))


async def embeddings(request: web.Request) -> web.Response:
    with request.app[WAITING].admit():  # before the body is read: a refused request costs no memory
        parsed = parse_embedding_request(await read_json(request))
        request[REQUEST_MODEL] = parsed.model
        services = request.app[SERVICES]
        model_id = resolve_model(services.manager, parsed.model, ModelRole.EMBED)
        request[REQUEST_MODEL] = model_id
        try:
            vectors, tokens = await services.embedder.encode_texts(model_id, parsed.texts, holder=HOLDER)
        except Exception as exc:
            raise generation_error(model_id, exc, prompt_param="input", work="embedding") from exc
        vectors = shortened(vectors, parsed.dimensions, model_id)
        # thousands of vectors make megabytes of JSON: written off the loop, which serves every other request
        text = await asyncio.to_thread(answer_text, model_id, vectors, tokens, parsed.encoding_format)
        return web.Response(text=text, content_type="application/json")


def add_embedding_routes(app: web.Application) -> None:
    app.router.add_post("/v1/embeddings", embeddings)


__all__ = [
    "MAX_INPUTS",
    "MAX_INPUT_CHARS",
    "EmbeddingRequest",
    "add_embedding_routes",
    "answer_text",
    "parse_embedding_request",
    "shortened",
]
