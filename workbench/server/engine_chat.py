"""The engine's one-shot answers (what `workbench chat` shows): ``POST /v1/chat`` streams one answer as NDJSON,
``POST /v1/chat/{job}/stop`` stops it cleanly (the face's first ctrl+c).

The body: ``{"model", "prompt", "system"?, "temperature"?, "top_p"?, "max_tokens"?, "seed"?}``, checked strictly
(size-bounded, unknown keys refused, the sampling values by workbench.core.chat.sampling). The engine resolves the
rest as the in-process CLI did: the model (the default SmolLM2 imported on first use; an unknown id is a 404 that
lists the known chat models), the sampling (the values sent, over the preset config.toml names, over the model's own
defaults) and the system prompt (config.toml's, unless one is sent). config.toml is read again for each answer, so
an edit counts without restarting the engine; its mistakes travel with the answer as notes.

The stream's lines: ``job`` (its id, for the stop route), ``note`` (config mistakes, loading, importing),
``trimmed``, ``token`` (tokens that were waiting together go as one line), then ``finished`` (figures, summary,
finish_reason, stopped) or ``error`` (message, kind: "model" or "usage"). The answer is a job on the engine's board
while it runs. A face that goes away (its connection closed) stops the answer: a CLI answer has no one to read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from workbench.server.bodies import BadRequest, parse_json_object, read_bounded
from workbench.server.ndjson import NdjsonStream, PeerGone

if TYPE_CHECKING:
    from workbench.bootstrap import Services
    from workbench.core.chat.run import ChatEvent, ChatRun
    from workbench.core.models.lifecycle import ManagerEvent
    from workbench.server.engine_jobs import JobBoard

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024  # a prompt piped from a file; the run trims what cannot fit the model's context
MAX_MODEL_ID_CHARS = 512
SAMPLING_KEYS = ("temperature", "top_p", "max_tokens", "seed")
KEYS = frozenset({"model", "prompt", "system", *SAMPLING_KEYS})
WATCH_S = 0.2  # how often a running answer looks whether its face is still there
STOP_WAIT_S = 600.0  # the longest an answer whose face left may take to end (a load in progress finishes first)
CLOSE_WAIT_S = 5.0  # at engine shutdown, how long the answers get to end after being stopped
END = object()  # the last item of an answer's queue


def parse_chat(body: bytes) -> dict[str, Any]:
    """The checked body of ``POST /v1/chat``: model, prompt, system (None: the configured one), sampling (a dict of
    the values sent). Raises BadRequest."""
    document = parse_json_object(body, KEYS, MAX_BODY_BYTES, '{"model": ID, "prompt": TEXT, ...}')
    return {"model": model_id(document, "model"), **prompt_and_sampling(document)}


def model_id(document: dict[str, Any], key: str) -> str:
    model = document.get(key)
    if not isinstance(model, str) or not model.strip() or len(model) > MAX_MODEL_ID_CHARS:
        raise BadRequest(f"{key!r} must be a model id (a string of 1 to {MAX_MODEL_ID_CHARS} characters)")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in model):
        raise BadRequest(f"{key!r} holds a control character")
    return model


def prompt_and_sampling(document: dict[str, Any]) -> dict[str, Any]:
    """``prompt``, ``system`` (None: the configured one) and ``sampling`` (the values sent) of a checked body."""
    from workbench.core.chat.sampling import validate_sampling

    prompt = document.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadRequest("'prompt' must be a non-empty string")
    system = document.get("system")
    if system is not None and not isinstance(system, str):
        raise BadRequest("'system' must be a string (\"\": no system prompt) or null (the configured one)")
    sampling, problems = validate_sampling({key: document[key] for key in SAMPLING_KEYS if key in document})
    if problems:
        raise BadRequest("; ".join(f"{key}: {problem}" for key, problem in problems))
    return {"prompt": prompt, "system": system, "sampling": sampling}


class Stoppable(Protocol):
    def stop(self) -> None: ...


class UnknownChatModel(Exception):
    def __init__(self, message: str, status: int, known: list[str]) -> None:
        super().__init__(message)
        self.status = status
        self.known = known


class ChatRoutes:
    """``POST /v1/chat`` and its stop, over the engine's services and job board."""

    def __init__(self, services: Services, board: JobBoard) -> None:
        self.services = services
        self.board = board
        self.runs: dict[str, Stoppable] = {}  # job id -> its run (a ChatRun, a CompareRun), for the stop route
        self._answers: set[asyncio.Task[None]] = set()
        self._import_lock = asyncio.Lock()
        self.closing = False  # the engine is stopping: the answers it stops end in an error line, not "finished"

    def install(self, app: web.Application) -> None:
        app.add_routes([web.post("/v1/chat", self.chat), web.post("/v1/chat/{job}/stop", self.stop)])

    # --- routes ------------------------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _too_large()
        body = await read_bounded(request, MAX_BODY_BYTES)
        if len(body) > MAX_BODY_BYTES:
            return _too_large()
        try:
            asked = parse_chat(body)
        except BadRequest as exc:
            return _refused(str(exc))
        settings, notes = self._fresh_settings()
        try:
            model_id, needs_import = await self._resolve(asked["model"])
        except UnknownChatModel as exc:
            return web.json_response({"error": str(exc), "known": exc.known, "notes": notes}, status=exc.status)
        async with NdjsonStream(request) as stream:
            await self._answer(request, stream, asked, model_id, needs_import, settings, notes)
        return stream.response

    async def stop(self, request: web.Request) -> web.Response:
        run = self.runs.get(request.match_info["job"])
        if run is None:
            return _refused("no such answer running (it may have ended)", 404)
        run.stop()
        return web.json_response({"stopping": True})

    # --- resolving ---------------------------------------------------------------------------

    def _fresh_settings(self) -> tuple[Any, list[str]]:
        """config.toml as it is now (the chat's preset and system prompt), and its mistakes (and catalog.toml's)
        in words, as a face says them."""
        from workbench.core.hub.curated import load_effective_catalog
        from workbench.core.settings.config import load_settings
        from workbench.resources import shipped_path

        paths = self.services.paths
        settings, issues = load_settings(paths.config_file)
        issues += load_effective_catalog(shipped_path("catalog.toml"), paths.user_catalog)[1]
        return settings, [f"config: {issue}" for issue in issues]

    async def _resolve(self, wanted: str) -> tuple[str, bool]:
        """The chat model's id and whether the default must be imported first; UnknownChatModel (404: unknown,
        400: not a chat model). A model missing from the engine's registry is looked for on disk, in the Hugging Face
        cache and at the endpoints first (it may have come in since the engine started)."""
        from workbench.core.models.local import DEFAULT_CHAT_ID, default_chat_importable, default_chat_missing
        from workbench.core.models.spec import ModelRole

        manager = self.services.manager
        if wanted == DEFAULT_CHAT_ID and default_chat_missing(self.services.paths) and default_chat_importable():
            return wanted, True
        if wanted not in {info.spec.id for info in manager.models()}:
            await self._register_everything()
        roles = {info.spec.id: info.role for info in manager.models()}
        chat_ids = manager.ids(ModelRole.CHAT)
        if wanted in roles and roles[wanted] is not ModelRole.CHAT:
            what = "an embedding model" if roles[wanted] is ModelRole.EMBED else f"a {roles[wanted]} model"
            raise UnknownChatModel(f"{wanted} is {what}, not a chat model; the chat models here: "
                                   + (", ".join(sorted(chat_ids)) or "none"), 400, chat_ids)  # fmt: skip
        if wanted not in roles:
            importable = [DEFAULT_CHAT_ID] if DEFAULT_CHAT_ID not in roles and default_chat_importable() else []
            raise UnknownChatModel(f"no chat model called {wanted!r}", 404, chat_ids + importable)
        return wanted, False

    async def _register_everything(self) -> None:
        """What is loadable now (the models folder, the Hugging Face cache, the endpoints), registered on the loop;
        the scans run in a thread (they block: files, the network)."""
        services = self.services

        def scan() -> list[Any]:
            remote, _problems = services.discover_remote_models()
            return services.registry.loadable_specs() + remote

        try:
            specs = await asyncio.to_thread(scan)
        except Exception:  # an unreadable cache: the models known already are still there to answer with
            log.warning("cannot look for models on disk and at the endpoints", exc_info=True)
            return
        known = {info.spec.id for info in services.manager.models()}
        for spec in specs:
            if spec.id not in known:
                services.manager.register(spec)

    async def _import_default(self, stream: NdjsonStream, model_id: str) -> str | None:
        """Import the default chat model (first use); None when done, else what went wrong."""
        from workbench.core.models.gguf_import import GgufImportError
        from workbench.core.models.local import MissingPackageError, default_chat_missing

        async with self._import_lock:
            if not default_chat_missing(self.services.paths):  # another answer imported it meanwhile
                self.services.refresh_local_models()
                return None
            await stream.send({"type": "note", "message": f"importing {model_id} from its package (first use, "
                               "about 10 s)"})  # fmt: skip
            try:
                await self.services.bring_in_embedded_defaults()
            except (MissingPackageError, GgufImportError, OSError) as exc:
                return f"cannot import {model_id}: {exc}"
        return None

    # --- answering ---------------------------------------------------------------------------

    async def _answer(self, request: web.Request, stream: NdjsonStream, asked: dict[str, Any], model_id: str,
                      needs_import: bool, settings: Any, notes: list[str]) -> None:  # fmt: skip
        from workbench.core.chat.model_sampling import chat_sampling
        from workbench.core.chat.run import ChatMessage, ChatRun
        from workbench.core.chat.sampling import SamplingChoice

        try:
            for message in notes:
                await stream.send({"type": "note", "message": message})
            if needs_import and (problem := await self._import_default(stream, model_id)) is not None:
                await stream.send({"type": "error", "message": problem, "kind": "model"})
                return
        except PeerGone:
            return
        choice = SamplingChoice(settings.chat_preset, asked["sampling"])
        sampling = chat_sampling(settings, self.services.manager, model_id, choice).settings
        system = asked["system"] if asked["system"] is not None else settings.chat_system_prompt
        messages = [ChatMessage("system", system)] if system else []
        run = ChatRun(self.services.manager, model_id, [*messages, ChatMessage("user", asked["prompt"])], sampling,
                      holder="workbench chat")  # fmt: skip
        queue: asyncio.Queue[Any] = asyncio.Queue()
        job = self.board.start("generation", model_id, face="cli")
        self.runs[job.id] = run
        unsubscribe = self.services.manager.subscribe(lambda event: loading_note(event, model_id, queue))
        answer = asyncio.create_task(self._produce(run, model_id, queue), name=f"chat {job.id}")
        self._answers.add(answer)

        def ended(task: asyncio.Task[None]) -> None:
            unsubscribe()
            self.runs.pop(job.id, None)
            self._answers.discard(task)
            self.board.end(job)

        answer.add_done_callback(ended)
        watcher = asyncio.create_task(watch_face(request, stream, run))
        try:
            await stream.send({"type": "job", "id": job.id, "model": model_id})
            await relay(queue, stream)
        except PeerGone:
            log.info("%s: the face left; stopping the answer", job.id)
            run.stop()
        except asyncio.CancelledError:
            run.stop()  # the handler was cancelled (the engine is stopping): the answer ends by itself, soon
            raise
        finally:
            watcher.cancel()
        if not answer.done():  # the face left: wait (bounded) for the stopped answer to end, its job with it
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(answer), STOP_WAIT_S)

    async def _produce(self, run: ChatRun, model_id: str, queue: asyncio.Queue[Any]) -> None:
        from workbench.core.chat.run import ChatError
        from workbench.core.models.spec import ModelManagerError

        try:
            async with contextlib.aclosing(run.events()) as events:
                async for event in events:
                    if (line := line_of(event)) is None:
                        continue
                    if line["type"] == "finished" and line["stopped"] and self.closing:
                        line = {"type": "error", "message": f"{model_id}: the engine stopped in the middle of the "
                                "answer (`workbench stop`, or it was shut down)", "kind": "model"}  # fmt: skip
                    queue.put_nowait(line)
        except (ModelManagerError, ChatError) as exc:
            queue.put_nowait({"type": "error", "message": f"{model_id}: {exc}", "kind": "model"})
        except Exception as exc:
            log.error("%s failed to answer", model_id, exc_info=exc)
            queue.put_nowait({"type": "error", "message": f"{model_id} failed to answer: {type(exc).__name__}: "
                              f"{exc}", "kind": "model"})  # fmt: skip
        finally:
            queue.put_nowait(END)

    async def close(self) -> None:
        """The engine stops: every answer is stopped and gets a moment to end (its face told, its lease released)
        before the listener closes and the models are unloaded."""
        self.closing = True
        for run in list(self.runs.values()):
            run.stop()
        if self._answers:
            await asyncio.wait(list(self._answers), timeout=CLOSE_WAIT_S)


def line_of(event: ChatEvent) -> dict[str, Any] | None:
    from workbench.core.chat.run import ContextTrimmed, Finished, Token

    if isinstance(event, Token):
        return {"type": "token", "text": event.text}
    if isinstance(event, ContextTrimmed):
        return {"type": "trimmed", "dropped": event.dropped, "prompt_tokens": event.prompt_tokens,
                "window": event.window}  # fmt: skip
    if isinstance(event, Finished):
        figures = event.figures
        return {"type": "finished", "figures": None if figures is None else figures.to_dict(),
                "summary": None if figures is None else figures.summary(), "finish_reason": event.finish_reason,
                "stopped": event.stopped}  # fmt: skip
    return None  # Reading: the CLI shows no reading progress


def loading_note(event: ManagerEvent, model_id: str, queue: asyncio.Queue[Any]) -> None:
    """What a face says while its model loads: when the load starts and when it is ready."""
    from workbench.core.models.spec import ModelState

    model = event.model
    if model.spec.id != model_id:
        return
    if model.state is ModelState.LOADING:
        queue.put_nowait({"type": "note", "message": f"loading {model_id}…"})
    elif model.state is ModelState.READY and event.message.startswith(f"{model.spec.name} loaded"):
        queue.put_nowait({"type": "note", "message": event.message})


async def relay(queue: asyncio.Queue[Any], stream: NdjsonStream) -> None:
    """Send the answer's lines until it ends; tokens waiting together go as one line."""
    while True:
        batch = [await queue.get()]
        while not queue.empty():
            batch.append(queue.get_nowait())
        tokens: dict[str, Any] | None = None  # the token lines of one side, merged
        for line in batch:
            if line is not END and line["type"] == "token":
                if tokens is not None and tokens.get("side") == line.get("side"):
                    tokens["text"] += line["text"]
                    continue
                if tokens is not None:
                    await stream.send(tokens)
                tokens = dict(line)
                continue
            if tokens is not None:
                await stream.send(tokens)
                tokens = None
            if line is END:
                return
            await stream.send(line)
        if tokens is not None:
            await stream.send(tokens)


async def watch_face(request: web.Request, stream: NdjsonStream, run: Stoppable) -> None:
    """Stop the run once the face's connection is gone, also while nothing is being sent (a load in progress)."""
    while True:
        await asyncio.sleep(WATCH_S)
        transport = request.transport
        if stream.gone or transport is None or transport.is_closing():
            log.info("the face of an answer left; stopping it")
            run.stop()
            return


def _too_large() -> web.Response:
    response = _refused(f"the body is larger than {MAX_BODY_BYTES} bytes", 413)
    response.force_close()  # the rest of the body is not read: no lingering on the connection to drain it
    return response


def _refused(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)
