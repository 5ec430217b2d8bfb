"""The engine's one-shot comparisons (what `workbench compare` shows): ``POST /v1/compare`` streams two models'
answers to one prompt as NDJSON; ``POST /v1/chat/{job}/stop`` stops both (workbench.server.engine_chat).

The body: ``{"a", "b", "prompt", "system"?, "temperature"?, "top_p"?, "max_tokens"?, "seed"?}``, checked as
``POST /v1/chat``'s; each model is resolved as there (an unknown one is a 404 naming the side, with the known chat
models). The engine plans the memory as the Compare pane does (both at once, or one after the other).

The lines: ``job``, ``note``s, ``plan`` (kind, reason), then per side (``"side": "a"`` or ``"b"``) ``token``,
``trimmed``, and ``finished`` or ``error``; the stream ends when both sides have ended. While it runs it is a job on
the engine's board; a face that goes away stops both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from workbench.server.bodies import BadRequest, parse_json_object, read_bounded
from workbench.server.engine_chat import (
    END,
    KEYS,
    MAX_BODY_BYTES,
    STOP_WAIT_S,
    UnknownChatModel,
    line_of,
    loading_note,
    model_id,
    prompt_and_sampling,
    relay,
    watch_face,
)
from workbench.server.ndjson import NdjsonStream, PeerGone

if TYPE_CHECKING:
    from workbench.core.compare.run import CompareRun, SideEvent
    from workbench.server.engine_chat import ChatRoutes

log = logging.getLogger(__name__)

COMPARE_KEYS = frozenset((KEYS - {"model"}) | {"a", "b"})
SIDES = ("a", "b")


def parse_compare(body: bytes) -> dict[str, Any]:
    """The checked body of ``POST /v1/compare``: a, b, prompt, system, sampling. Raises BadRequest."""
    document = parse_json_object(body, COMPARE_KEYS, MAX_BODY_BYTES, '{"a": ID, "b": ID, "prompt": TEXT, ...}')
    return {"a": model_id(document, "a"), "b": model_id(document, "b"), **prompt_and_sampling(document)}


class CompareRoutes:
    """``POST /v1/compare``, sharing the chat routes' services, board, runs (for the stop route) and shutdown."""

    def __init__(self, chat: ChatRoutes) -> None:
        self.chat = chat

    def install(self, app: web.Application) -> None:
        app.add_routes([web.post("/v1/compare", self.compare)])

    async def compare(self, request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _error(f"the body is larger than {MAX_BODY_BYTES} bytes", 413)
        body = await read_bounded(request, MAX_BODY_BYTES)
        try:
            asked = parse_compare(body)
        except BadRequest as exc:
            return _error(str(exc), exc.status)
        settings, notes = self.chat._fresh_settings()
        resolved: dict[str, tuple[str, bool]] = {}
        for side in SIDES:
            try:
                resolved[side] = await self.chat._resolve(asked[side])
            except UnknownChatModel as exc:
                return web.json_response({"error": str(exc), "known": exc.known, "notes": notes, "side": side},
                                         status=exc.status)  # fmt: skip
        async with NdjsonStream(request) as stream:
            await self._answer(request, stream, asked, resolved, settings, notes)
        return stream.response

    async def _answer(self, request: web.Request, stream: NdjsonStream, asked: dict[str, Any],
                      resolved: dict[str, tuple[str, bool]], settings: Any, notes: list[str]) -> None:  # fmt: skip
        from workbench.core.chat.model_sampling import chat_sampling
        from workbench.core.chat.run import ChatMessage
        from workbench.core.chat.sampling import SamplingChoice
        from workbench.core.compare.run import CompareRun, Contender, plan_memory

        manager = self.chat.services.manager
        ids = {side: resolved[side][0] for side in SIDES}
        try:
            for message in notes:
                await stream.send({"type": "note", "message": message})
            for side in SIDES:
                if resolved[side][1] and (problem := await self.chat._import_default(stream, ids[side])) is not None:
                    await stream.send({"type": "error", "message": problem, "kind": "model"})
                    return
        except PeerGone:
            return
        choice = SamplingChoice(settings.chat_preset, asked["sampling"])
        a, b = (Contender(model_id=ids[side], label=ids[side],
                          sampling=chat_sampling(settings, manager, ids[side], choice).settings)
                for side in SIDES)  # fmt: skip
        plan = plan_memory(manager, a, b)
        system = asked["system"] if asked["system"] is not None else settings.chat_system_prompt
        messages = [*([ChatMessage("system", system)] if system else []), ChatMessage("user", asked["prompt"])]
        run = CompareRun(manager, a, b, messages, messages, plan)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        job = self.chat.board.start("generation", f"{ids['a']} vs {ids['b']}", face="cli")
        self.chat.runs[job.id] = run
        unsubscribes = [manager.subscribe(lambda event, m=m: loading_note(event, m, queue)) for m in set(ids.values())]
        answer = asyncio.create_task(self._produce(run, queue), name=f"compare {job.id}")
        self.chat._answers.add(answer)

        def ended(task: asyncio.Task[None]) -> None:
            for unsubscribe in unsubscribes:
                unsubscribe()
            self.chat.runs.pop(job.id, None)
            self.chat._answers.discard(task)
            self.chat.board.end(job)

        answer.add_done_callback(ended)
        watcher = asyncio.create_task(watch_face(request, stream, run))
        try:
            await stream.send({"type": "job", "id": job.id, "model": ids["a"], "models": ids})
            await stream.send({"type": "plan", "kind": plan.kind.value, "reason": plan.reason})
            await relay(queue, stream)
        except PeerGone:
            log.info("%s: the face left; stopping the comparison", job.id)
            run.stop()
        except asyncio.CancelledError:
            run.stop()
            raise
        finally:
            watcher.cancel()
        if not answer.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(answer), STOP_WAIT_S)

    async def _produce(self, run: CompareRun, queue: asyncio.Queue[Any]) -> None:
        try:
            async with contextlib.aclosing(run.events()) as events:
                async for item in events:
                    if (line := self._line_of(item)) is not None:
                        queue.put_nowait(line)
        except Exception as exc:  # CompareRun turns a side's failure into SideFailed: this is ours
            log.error("a comparison failed", exc_info=exc)
            queue.put_nowait({"type": "error", "message": f"the comparison failed: {type(exc).__name__}: {exc}",
                              "kind": "model"})  # fmt: skip
        finally:
            queue.put_nowait(END)

    def _line_of(self, item: SideEvent) -> dict[str, Any] | None:
        from workbench.core.compare.run import SideFailed

        if isinstance(item.event, SideFailed):
            return {"type": "error", "side": item.side, "message": item.event.error, "kind": "model"}
        line = line_of(item.event)
        if line is None:
            return None
        if line["type"] == "finished" and line["stopped"] and self.chat.closing:
            return {"type": "error", "side": item.side, "kind": "model",
                    "message": "the engine stopped in the middle of the answer"}  # fmt: skip
        return {**line, "side": item.side}


def _error(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)
