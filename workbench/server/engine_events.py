"""The engine's event hub: what happens in the engine, fanned out to the faces attached to its event stream.

An event has a topic and a JSON-able payload. A *state* topic (models, memory, downloads, jobs) is latest-wins:
a subscriber that has not taken the previous one yet gets it replaced, so a slow face coalesces instead of
falling behind. Other topics (a served request's line, an answer's tokens) are kept in order, at most
``max_pending`` per subscriber; past that the oldest go and the subscriber is told how many it missed.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

MAX_PENDING = 1024


@dataclass(frozen=True)
class Event:
    topic: str
    payload: Any

    def document(self) -> dict[str, Any]:
        return {"topic": self.topic, "payload": self.payload}


class Subscription:
    """One face's view of the hub: ``await next()`` gives the next event (``dropped`` events first say how many
    ordered events it missed). Close it with ``hub.unsubscribe`` (or use the hub's ``subscribed`` context)."""

    def __init__(self, topics: frozenset[str] | None, max_pending: int) -> None:
        self.topics = topics
        self.max_pending = max_pending
        self._states: OrderedDict[str, Event] = OrderedDict()
        self._ordered: deque[Event] = deque()
        self._missed = 0
        self._ready = asyncio.Event()
        self.closed = False

    def wants(self, topic: str) -> bool:
        return self.topics is None or topic in self.topics

    def offer(self, event: Event, state: bool) -> None:
        if state:
            self._states.pop(event.topic, None)
            self._states[event.topic] = event
        else:
            if len(self._ordered) >= self.max_pending:
                self._ordered.popleft()
                self._missed += 1
            self._ordered.append(event)
        self._ready.set()

    def pending(self) -> int:
        return len(self._states) + len(self._ordered) + (1 if self._missed else 0)

    def take(self) -> Event | None:
        """The next event without waiting, or None."""
        if self._missed:
            missed, self._missed = self._missed, 0
            return Event("dropped", {"events": missed})
        if self._ordered:
            return self._ordered.popleft()
        if self._states:
            return self._states.popitem(last=False)[1]
        return None

    async def next(self) -> Event | None:
        """The next event; None once the subscription is closed (the engine is stopping)."""
        while True:
            if (event := self.take()) is not None:
                return event
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()

    def close(self) -> None:
        self.closed = True
        self._ready.set()


class EventHub:
    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self.max_pending = max_pending
        self._subscribers: list[Subscription] = []
        self._latest: dict[str, Event] = {}  # each state topic's last event, for a face that attaches later

    def subscribe(self, topics: frozenset[str] | None = None) -> Subscription:
        """A new subscription; it starts with the latest event of every state topic it wants."""
        subscription = Subscription(topics, self.max_pending)
        for event in self._latest.values():
            if subscription.wants(event.topic):
                subscription.offer(event, state=True)
        self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.close()
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)

    def publish(self, topic: str, payload: Any, state: bool = False) -> None:
        """Hand ``payload`` to every subscriber that wants ``topic`` (called on the engine's event loop)."""
        event = Event(topic, payload)
        if state:
            self._latest[topic] = event
        for subscription in self._subscribers:
            if subscription.wants(topic):
                subscription.offer(event, state)

    def close(self) -> None:
        """The engine is stopping: every subscriber's ``next()`` ends after what it has pending."""
        for subscription in list(self._subscribers):
            subscription.close()
        self._subscribers.clear()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
