"""A compare session whose turns run in the engine: ``RemoteCompareSession`` has the CompareSession interface the
Compare pane uses (ask, stop, vote, set_blind, clear, plan; blind, running, awaiting_vote), and its turns the
CompareTurn one (run_id, blind, swapped, results, shown, stop, events of SideUpdate), backed by the engine's compare
routes (workbench.server.engine_compare) over its socket.

The engine keeps the conversation (both histories, the blind coin, the stored runs and votes, the prompt caches)
under an id this face chose; the face mirrors what it needs to draw (blind, the turn answering, a vote pending). The
intents are short blocking calls (workbench.client.blocking: the pane calls them synchronously); a turn's events
stream over EngineClient (aiohttp, loaded on the first turn). Closing that stream, or the face dying, leaves the
turn running: the engine finishes it and stores it complete.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from workbench.client import blocking
from workbench.client.errors import EngineGone, EngineNotRunning, EngineRequestError
from workbench.core.compare.results import CompareResults
from workbench.core.compare.run import SIDES, Contender, MemoryPlan, SideEvent
from workbench.core.compare.session import Reveal, SideUpdate
from workbench.core.compare.wire import WireError, plan_document, plan_from, reveal_from, side_event_from
from workbench.core.models.spec import ModelManagerError, UnknownModelError

log = logging.getLogger(__name__)

BUSY = "a comparison is still answering"
ENGINE_LOST = "the engine went away before the comparison ended (`workbench ps` says if it runs)"


class RemoteCompareTurn:
    """One prompt put to both sides, run by the engine. Iterate ``events()`` once (it follows the turn from where it
    is to its end); ``stop()`` asks the engine to stop both sides."""

    def __init__(self, session: RemoteCompareSession, run_id: int, contenders: dict[str, Contender],
                 plan: MemoryPlan, *, blind: bool, swapped: bool) -> None:  # fmt: skip
        self.session = session
        self.run_id = run_id  # the stored run's id, also the turn's id in the engine
        self.contenders = contenders
        self.plan = plan
        self.blind = blind
        self.swapped = swapped  # blind mode shows contender B first
        self.results = CompareResults()
        self.ended = False

    def shown(self, side: str) -> str:
        """The column a side shows in: in blind mode the sides may be swapped."""
        return {"a": "b", "b": "a"}[side] if self.swapped else side

    def stop(self) -> None:
        self.session.stop()

    async def events(self) -> AsyncGenerator[SideUpdate, None]:
        """The turn's side updates as the engine sends them; raises RuntimeError when the engine went away or the
        run failed as a whole (what came is in ``results``)."""
        from workbench.client.engine import EngineClient

        client = EngineClient(self.session.socket, self.session.timeout_s)
        end: dict[str, Any] | None = None
        try:
            route = f"{self.session.route}/turns/{self.run_id}/events"
            async with contextlib.aclosing(client.stream("GET", route)) as lines:
                async for line in lines:
                    if line.get("type") == "end":
                        end = line
                        break
                    if line.get("type") != "update" or line.get("side") not in SIDES:
                        raise WireError(f"an unknown line in a compare stream: {str(line)[:80]}")
                    item = SideEvent(line["side"], side_event_from(line.get("event")))
                    yield SideUpdate(item.side, item.event, self.results.apply(item))
            if end is None:
                raise EngineGone("the engine closed the comparison's stream before its end")
        except (EngineGone, EngineNotRunning, EngineRequestError, WireError) as exc:
            raise RuntimeError(f"{ENGINE_LOST}: {exc}") from exc
        finally:
            self.session._turn_ended(self, end)
        if end.get("error"):
            raise RuntimeError(str(end["error"]))


class RemoteCompareSession:
    """A compare conversation kept and answered by the engine on ``socket``, under ``session_id`` (a new random one
    by default). ``seed`` makes the blind coin reproducible, as for CompareSession."""

    def __init__(self, socket: Path, session_id: str | None = None, seed: int | None = None,
                 timeout_s: float = blocking.TIMEOUT_S, face: str = "tui") -> None:  # fmt: skip
        self.socket = Path(socket)
        self.session_id = session_id or secrets.token_hex(8)
        self.route = f"/v1/compare/sessions/{self.session_id}"
        self.seed = seed
        self.timeout_s = timeout_s
        self.face = face
        self.blind = False
        self.turn: RemoteCompareTurn | None = None  # the one answering now, as far as this face follows it
        self.votable: RemoteCompareTurn | None = None  # the last blind turn, answered and not yet voted on
        self._created = False

    @property
    def running(self) -> bool:
        return self.turn is not None

    @property
    def awaiting_vote(self) -> bool:
        return self.votable is not None

    # --- calls -----------------------------------------------------------------------------------

    def _create(self) -> dict[str, Any]:
        state = blocking.call(self.socket, "PUT", self.route, {"seed": self.seed}, self.timeout_s)
        self._created = True
        if self.blind and not state["blind"]:  # a new engine lost the session: blind mode comes back with it
            state = blocking.call(self.socket, "POST", f"{self.route}/blind", {"on": True}, self.timeout_s)
        return state

    def _call(self, method: str, suffix: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A call on this session's routes, creating the session first (again, when the engine lost it: a new
        engine starts with none; the histories are then gone). 409 is raised as RuntimeError, as CompareSession
        refuses; 404 of a model as UnknownModelError."""
        if not self._created:
            self._create()
        try:
            try:
                return blocking.call(self.socket, method, self.route + suffix, body, self.timeout_s)
            except EngineRequestError as exc:
                if exc.status != 404 or not str(exc).startswith("no compare session"):
                    raise
                self._create()
                return blocking.call(self.socket, method, self.route + suffix, body, self.timeout_s)
        except EngineRequestError as exc:
            if exc.status == 409:
                raise RuntimeError(str(exc)) from exc
            if exc.status == 404:
                raise UnknownModelError(str(exc)) from exc
            raise

    # --- the intents -----------------------------------------------------------------------------

    def plan(self, a: Contender, b: Contender) -> MemoryPlan:
        """The engine's memory plan for the two: together, or one after the other."""
        try:
            document = blocking.call(self.socket, "POST", "/v1/compare/plan", {"a": a.to_dict(), "b": b.to_dict()},
                                     self.timeout_s)  # fmt: skip
        except EngineRequestError as exc:
            if exc.status == 404:
                raise UnknownModelError(str(exc)) from exc
            raise ModelManagerError(str(exc)) from exc
        return plan_from(document)

    def ask(self, prompt: str, a: Contender, b: Contender, plan: MemoryPlan | None = None) -> RemoteCompareTurn:
        """Put ``prompt`` to both sides after their histories; the engine stores the run now, its results when it
        ends, and runs it whether or not this face follows it."""
        if self.turn is not None:
            raise RuntimeError(BUSY)
        body: dict[str, Any] = {"prompt": prompt, "a": a.to_dict(), "b": b.to_dict(), "face": self.face}
        if plan is not None:
            body["plan"] = plan_document(plan)
        reply = self._call("POST", "/ask", body)
        self.votable = None
        self.turn = RemoteCompareTurn(self, int(reply["turn"]), {"a": a, "b": b}, plan_from(reply["plan"]),
                                      blind=bool(reply["blind"]), swapped=bool(reply["swapped"]))  # fmt: skip
        return self.turn

    def stop(self) -> None:
        if self.turn is None:
            return
        try:
            self._call("POST", "/stop", {})
        except (EngineNotRunning, EngineRequestError, RuntimeError) as exc:
            log.warning("could not ask the engine to stop the comparison: %s", exc)

    def _turn_ended(self, turn: RemoteCompareTurn, end: dict[str, Any] | None) -> None:
        """Once per turn, however its events end (``end``: the engine's last line, None when it was not read)."""
        if turn.ended:
            return
        turn.ended = True
        if self.turn is turn:
            self.turn = None
        if end is not None and end.get("awaiting_vote"):
            self.votable = turn

    def vote(self, outcome: str) -> Reveal:
        """Record a blind vote on the last turn as the user cast it ("a": the answer shown first, "b", "tie",
        "both_bad"); who answered in which column."""
        if self.votable is None:
            raise RuntimeError("no blind answer awaits a vote")
        reveal = reveal_from(self._call("POST", "/vote", {"outcome": outcome}))
        self.votable = None
        return reveal

    def set_blind(self, on: bool) -> None:
        """Blind mode from the next prompt on; turning it off drops a pending vote."""
        if self.turn is not None:
            raise RuntimeError(BUSY)
        self.blind = bool(self._call("POST", "/blind", {"on": on})["blind"])
        if not on:
            self.votable = None

    def clear(self) -> None:
        """A new conversation: both histories empty (and their saved prompt caches gone), no vote pending."""
        if self.turn is not None:
            raise RuntimeError(BUSY)
        self._call("POST", "/clear", {})
        self.votable = None

    def close(self) -> None:
        """Let the engine forget this conversation (its saved prompt caches too); a turn still running is left to
        finish."""
        if not self._created:
            return
        with contextlib.suppress(EngineNotRunning, EngineRequestError):
            blocking.call(self.socket, "DELETE", self.route, None, self.timeout_s)
        self._created = False
