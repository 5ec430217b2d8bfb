"""``POST /v1/completions``: OpenAI's text completion. The ``prompt`` (one string) is continued as raw text, without
the chat template, by a :class:`ChatRun` with ``prompt=`` on the manager, so loading, eviction, the memory budget
and the prompt caches behave as for chat. Whole or streamed (server-sent events of ``text_completion`` objects,
then ``[DONE]``); ``max_tokens``, ``temperature``, ``top_p``, ``seed``, ``stop`` and (an extension)
``response_format`` as in chat completions; ``usage`` (streamed: with ``stream_options.include_usage``).

Without a ``max_tokens`` the model's configured default applies (OpenAI's own default of 16 tokens is not copied:
local clients that omit it expect a whole answer). A prompt the context cannot hold is a 400; it is never trimmed.
"""

from __future__ import annotations

from aiohttp import web

from workbench.core.chat.model_sampling import chat_sampling
from workbench.core.chat.run import MAX_CHARS_PER_TOKEN, ChatRun
from workbench.core.models.names import resolve_model_name
from workbench.core.models.spec import ModelRole
from workbench.server.errors import ApiError
from workbench.server.openai_answers import TextShape, answer_run
from workbench.server.openai_models import resolve_model
from workbench.server.openai_requests import parse_text_request
from workbench.server.openai_shared import REQUEST_MODEL, REQUEST_STREAM, SERVICES, WAITING, body_model, read_json


async def completions(request: web.Request) -> web.StreamResponse:
    with request.app[WAITING].admit():  # before the body is read: a refused request costs no memory
        services = request.app[SERVICES]
        body = await read_json(request)
        name = body_model(body)
        guess = resolve_model_name(name, services.manager.ids(ModelRole.CHAT)) if name is not None else None
        parsed = parse_text_request(body, chat_sampling(services.settings, services.manager, guess).settings)
        request[REQUEST_MODEL], request[REQUEST_STREAM] = parsed.model, parsed.stream
        model_id = resolve_model(services.manager, parsed.model, ModelRole.CHAT)
        request[REQUEST_MODEL] = model_id
        limit = services.manager.context_length * MAX_CHARS_PER_TOKEN
        if len(parsed.prompt) > limit:  # surely too long for any context here: refused before a model loads
            raise ApiError(400, f"the prompt is {len(parsed.prompt):,} characters, more than a context of "
                           f"{services.manager.context_length} tokens can hold: shorten it", param="prompt",
                           code="context_length_exceeded")  # fmt: skip
        run = ChatRun(services.manager, model_id, [], parsed.sampling, holder="an API request", rules=parsed.rules,
                      prompt=parsed.prompt)  # fmt: skip
        return await answer_run(request, run, TextShape(model_id), parsed.stream, parsed.include_usage)


def add_completion_routes(app: web.Application) -> None:
    app.router.add_post("/v1/completions", completions)


__all__ = ["add_completion_routes", "completions"]
