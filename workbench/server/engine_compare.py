"""The engine's compare routes: a compare conversation's turns run in the engine, so they outlive the face that asked
and count in the engine's one memory budget.

The engine keeps a :class:`~workbench.core.compare.session.CompareSession` per id a face chose (``[A-Za-z0-9_-]``,
at most ``MAX_SESSIONS``; creating one more forgets the least recently used one that is not answering), with the
same rules as in-process: both plans, blind mode and its coin, the stored runs and votes, a prompt cache per side.

- ``POST /v1/compare/plan`` ``{"a", "b"}`` → the memory plan ``{"kind", "reason"}``.
- ``PUT /v1/compare/sessions/{sid}`` ``{"seed"?}`` creates it (or answers the one there) → its state
  ``{"id", "blind", "running", "turn", "awaiting_vote"}``; ``GET`` answers the state, ``DELETE`` forgets it.
- ``POST .../ask`` ``{"prompt", "a", "b", "plan"?, "face"?}`` starts a turn in a task the engine owns (a
  "generation" job on the board while it runs) → ``{"turn", "blind", "swapped", "plan"}``; the turn's id is its
  stored run's id. A session runs one turn at a time (409 for a second).
- ``GET .../turns/{turn}/events`` streams the session's latest turn (NDJSON): ``{"type": "update", "side",
  "event"}`` lines (workbench.core.compare.wire), from where it is (per side: the notes, the text so far as one
  token, its end) then live, and last ``{"type": "end", "awaiting_vote", "error"}`` once both sides ended and the
  run is stored. Closing that stream does not stop the turn: it finishes and is stored complete.
- ``POST .../stop``, ``POST .../vote`` ``{"outcome"}`` → the reveal, ``POST .../blind`` ``{"on"}``,
  ``POST .../clear`` (409 while answering, as CompareSession refuses).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from workbench.core.chat.run import Finished, Token
from workbench.core.compare.run import SIDES, Contender, SideFailed, plan_memory
from workbench.core.compare.session import CompareSession, CompareTurn, SideUpdate
from workbench.core.compare.wire import WireError, contender_from, plan_document, plan_from, reveal_document
from workbench.core.compare.wire import side_event_document as event_document
from workbench.core.models.spec import ModelManagerError, UnknownModelError
from workbench.core.storage.votes import VOTE_OUTCOMES
from workbench.server.bodies import BadRequest, read_json_object
from workbench.server.ndjson import HEARTBEAT_S, NdjsonStream, PeerGone

if TYPE_CHECKING:
    from workbench.bootstrap import Services
    from workbench.server.engine_jobs import Job, JobBoard

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024  # a pasted document fits; a runaway face does not
MAX_SESSIONS = 16
CLOSE_TIMEOUT_S = 10.0  # how long the engine's stop waits for the turns it stopped to be stored
SID = r"{sid:[A-Za-z0-9_-]{1,64}}"
TURN = r"{turn:\d{1,18}}"
FACE = re.compile(r"[a-z][a-z0-9-]{0,15}")
ASK_KEYS = frozenset({"prompt", "a", "b", "plan", "face"})


def refused(message: str, status: int) -> web.Response:
    return web.json_response({"error": message}, status=status)


class RunningTurn:
    """A turn the engine runs and what a late face needs to catch up: per side the notes (trimmed, reading: the
    latest reading only), the text (the turn's results hold it) and its end; ``over`` once the run is stored."""

    def __init__(self, turn: CompareTurn) -> None:
        self.turn = turn
        self.notes: dict[str, list[tuple[int, dict[str, Any]]]] = {side: [] for side in SIDES}
        self.ends: dict[str, dict[str, Any] | None] = {side: None for side in SIDES}
        self.seq = 0
        self.over = False
        self.error: str | None = None
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def record(self, update: SideUpdate) -> None:
        event = update.event
        if isinstance(event, Finished | SideFailed):
            self.ends[update.side] = event_document(event)
        elif not isinstance(event, Token):  # the text is in the turn's results already
            self.seq += 1
            notes, document = self.notes[update.side], event_document(event)
            if notes and document["type"] == "reading" and notes[-1][1]["type"] == "reading":
                notes[-1] = (self.seq, document)
            else:
                notes.append((self.seq, document))
        self._wake()

    def finish(self, error: str | None = None) -> None:
        self.over, self.error = True, error
        self._wake()

    def _wake(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


class HeldSession:
    def __init__(self, sid: str, session: CompareSession) -> None:
        self.sid = sid
        self.session = session
        self.last: RunningTurn | None = None  # the latest turn, running or over
        self.used = time.monotonic()

    def state(self) -> dict[str, Any]:
        running = self.session.turn
        return {"id": self.sid, "blind": self.session.blind, "running": running.run_id if running else None,
                "turn": self.last.turn.run_id if self.last else None,
                "awaiting_vote": self.session.awaiting_vote}  # fmt: skip


class CompareRoutes:
    """The compare routes over the engine's services; the turns they start run until they end or the engine stops
    (``close``: on the app's shutdown, before the services close)."""

    def __init__(self, services: Services, board: JobBoard, heartbeat_s: float = HEARTBEAT_S,
                 max_sessions: int = MAX_SESSIONS) -> None:  # fmt: skip
        self.services = services
        self.board = board
        self.heartbeat_s = heartbeat_s
        self.max_sessions = max_sessions
        self.max_body_bytes = MAX_BODY_BYTES
        self.sessions: dict[str, HeldSession] = {}

    def install(self, app: web.Application) -> None:
        base = f"/v1/compare/sessions/{SID}"
        app.add_routes([
            web.post("/v1/compare/plan", self.plan),
            web.put(base, self.create), web.get(base, self.state), web.delete(base, self.delete),
            web.post(f"{base}/ask", self.ask),
            web.get(f"{base}/turns/{TURN}/events", self.events),
            web.post(f"{base}/stop", self.stop),
            web.post(f"{base}/vote", self.vote),
            web.post(f"{base}/blind", self.blind),
            web.post(f"{base}/clear", self.clear),
        ])  # fmt: skip
        app.on_shutdown.append(self.close)

    async def _body(self, request: web.Request, keys: frozenset[str]) -> dict[str, Any]:
        return await read_json_object(request, keys, self.max_body_bytes)

    # --- sessions --------------------------------------------------------------------------------

    def _held(self, request: web.Request) -> HeldSession:
        sid = request.match_info["sid"]
        held = self.sessions.get(sid)
        if held is None:
            raise BadRequest(f"no compare session {sid!r} (PUT it first)", 404)
        held.used = time.monotonic()
        return held

    def _contenders(self, document: dict[str, Any]) -> tuple[Contender, Contender]:
        try:
            a, b = contender_from(document.get("a"), "a"), contender_from(document.get("b"), "b")
        except WireError as exc:
            raise BadRequest(str(exc)) from None
        for contender in (a, b):
            try:
                self.services.manager.info(contender.model_id)
            except UnknownModelError:
                raise BadRequest(f"no model called {contender.model_id!r}", 404) from None
        return a, b

    async def plan(self, request: web.Request) -> web.Response:
        try:
            a, b = self._contenders(await self._body(request, frozenset({"a", "b"})))
            return web.json_response(plan_document(plan_memory(self.services.manager, a, b)))
        except BadRequest as exc:
            return refused(str(exc), exc.status)
        except ModelManagerError as exc:
            return refused(str(exc) or type(exc).__name__, 409)

    async def create(self, request: web.Request) -> web.Response:
        try:
            document = await self._body(request, frozenset({"seed"}))
            seed = document.get("seed")
            if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or abs(seed) > 2**62):
                raise BadRequest("'seed' must be a whole number or null")
            sid = request.match_info["sid"]
            held = self.sessions.get(sid)
            created = held is None
            if held is None:
                self._make_room()
                held = self.sessions[sid] = HeldSession(
                    sid, CompareSession(self.services.manager, self.services.store, seed=seed)
                )
            held.used = time.monotonic()
        except BadRequest as exc:
            return refused(str(exc), exc.status)
        return web.json_response({**held.state(), "created": created})

    def _make_room(self) -> None:
        """Forget the least recently used idle session when the engine holds as many as it keeps."""
        if len(self.sessions) < self.max_sessions:
            return
        idle = [held for held in self.sessions.values() if held.session.turn is None]
        if not idle:
            raise BadRequest(f"{len(self.sessions)} compare sessions are answering: no room for another", 409)
        oldest = min(idle, key=lambda held: held.used)
        self._forget(oldest)

    def _forget(self, held: HeldSession) -> None:
        self.sessions.pop(held.sid, None)
        held.session.forget_saved_caches()

    async def state(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(self._held(request).state())
        except BadRequest as exc:
            return refused(str(exc), exc.status)

    async def delete(self, request: web.Request) -> web.Response:
        try:
            held = self._held(request)
            if held.session.turn is not None:
                raise BadRequest("a comparison is still answering", 409)
        except BadRequest as exc:
            return refused(str(exc), exc.status)
        self._forget(held)
        return web.json_response({"deleted": held.sid})

    # --- turns -----------------------------------------------------------------------------------

    async def ask(self, request: web.Request) -> web.Response:
        try:
            held = self._held(request)
            document = await self._body(request, ASK_KEYS)
            prompt = document.get("prompt")
            if not isinstance(prompt, str) or not prompt.strip():
                raise BadRequest("'prompt' must be a string that is not blank")
            face = document.get("face", "tui")
            if not isinstance(face, str) or not FACE.fullmatch(face):
                raise BadRequest("'face' must be a short lowercase name (tui, cli, …)")
            a, b = self._contenders(document)
            try:
                plan = plan_from(document["plan"]) if document.get("plan") is not None else None
            except WireError as exc:
                raise BadRequest(str(exc)) from None
            if held.session.turn is not None:
                raise BadRequest("a comparison is still answering", 409)
            turn = held.session.ask(prompt, a, b, plan)
        except BadRequest as exc:
            return refused(str(exc), exc.status)
        except ModelManagerError as exc:  # the plan could not be made
            return refused(str(exc) or type(exc).__name__, 409)
        running = held.last = RunningTurn(turn)
        what = "compare (blind)" if turn.blind else f"compare {a.label} vs {b.label}"
        job = self.board.start("generation", what, face=face, session=held.sid, turn=turn.run_id)
        running.task = asyncio.create_task(self._run(running, job), name=f"compare-{held.sid}-{turn.run_id}")
        return web.json_response({"turn": turn.run_id, "blind": turn.blind, "swapped": turn.swapped,
                                  "plan": plan_document(turn.run.plan)})  # fmt: skip

    async def _run(self, running: RunningTurn, job: Job) -> None:
        """Run the turn to its end (the session stores its results however it ends), telling the faces as it goes."""
        error: str | None = None
        try:
            async with contextlib.aclosing(running.turn.events()) as updates:
                async for update in updates:
                    running.record(update)
        except asyncio.CancelledError:  # the engine stops: what came is stored
            error = "the engine stopped before the comparison ended"
        except Exception as exc:  # each side's failure is a SideFailed; this is one the run does not know
            log.exception("compare turn %s failed", running.turn.run_id)
            error = f"{type(exc).__name__}: {exc}"
        finally:
            running.finish(error)
            self.board.end(job)

    async def events(self, request: web.Request) -> web.StreamResponse:
        try:
            held = self._held(request)
        except BadRequest as exc:
            return refused(str(exc), exc.status)
        turn_id = int(request.match_info["turn"])
        running = held.last
        if running is None or running.turn.run_id != turn_id:
            return refused(f"no turn {turn_id} in compare session {held.sid!r} (only its latest is kept)", 404)
        async with NdjsonStream(request, self.heartbeat_s) as stream:
            with contextlib.suppress(PeerGone):
                await self._follow(held, running, stream)
        return stream.response

    async def _follow(self, held: HeldSession, running: RunningTurn, stream: NdjsonStream) -> None:
        """Send the turn from where it is, then as it goes, until it is over or the face leaves (PeerGone)."""
        sent_seq = dict.fromkeys(SIDES, 0)
        sent_chars = dict.fromkeys(SIDES, 0)
        ended: set[str] = set()
        while True:
            changed = running.changed
            for side in SIDES:
                for seq, note in running.notes[side]:
                    if seq > sent_seq[side]:
                        await stream.send({"type": "update", "side": side, "event": note})
                        sent_seq[side] = seq
                text = running.turn.results[side].text
                if len(text) > sent_chars[side]:
                    token = {"type": "token", "text": text[sent_chars[side] :]}
                    await stream.send({"type": "update", "side": side, "event": token})
                    sent_chars[side] = len(text)
                end = running.ends[side]
                if end is not None and side not in ended:
                    await stream.send({"type": "update", "side": side, "event": end})
                    ended.add(side)
            if running.over:
                await stream.send({"type": "end", "awaiting_vote": held.session.votable is running.turn,
                                   "error": running.error})  # fmt: skip
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), self.heartbeat_s)
            if stream.gone:
                return

    async def stop(self, request: web.Request) -> web.Response:
        try:
            held = self._held(request)
            await self._body(request, frozenset())
        except BadRequest as exc:
            return refused(str(exc), exc.status)
        stopping = held.session.turn is not None
        held.session.stop()
        return web.json_response({"stopping": stopping})

    async def vote(self, request: web.Request) -> web.Response:
        try:
            held = self._held(request)
            outcome = (await self._body(request, frozenset({"outcome"}))).get("outcome")
            if outcome not in VOTE_OUTCOMES:
                raise BadRequest(f"'outcome' must be one of {', '.join(VOTE_OUTCOMES)}")
            reveal = held.session.vote(outcome)
        except BadRequest as exc:
            return refused(str(exc), exc.status)
        except RuntimeError as exc:  # no blind answer awaits a vote
            return refused(str(exc), 409)
        return web.json_response(reveal_document(reveal))

    async def blind(self, request: web.Request) -> web.Response:
        try:
            held = self._held(request)
            on = (await self._body(request, frozenset({"on"}))).get("on")
            if not isinstance(on, bool):
                raise BadRequest("'on' must be true or false")
            held.session.set_blind(on)
        except BadRequest as exc:
            return refused(str(exc), exc.status)
        except RuntimeError as exc:  # still answering
            return refused(str(exc), 409)
        return web.json_response(held.state())

    async def clear(self, request: web.Request) -> web.Response:
        try:
            held = self._held(request)
            await self._body(request, frozenset())
            held.session.clear()
        except BadRequest as exc:
            return refused(str(exc), exc.status)
        except RuntimeError as exc:  # still answering
            return refused(str(exc), 409)
        return web.json_response(held.state())

    async def close(self, _app: web.Application | None = None) -> None:
        """Stop every turn (each is stored with what came) before the services close."""
        tasks = [held.last.task for held in self.sessions.values()
                 if held.last is not None and held.last.task is not None and not held.last.task.done()]  # fmt: skip
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
