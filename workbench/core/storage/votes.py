"""Votes on compare runs in the database: cast as the user saw the sides, read back as the contenders.

A vote is "a" (the side shown first), "b" (the other), "tie" or "both_bad". A blind run may have shown
contender B first; :meth:`Votes.compare_votes` maps such a vote back, so "a" always means contender A.
"""

from __future__ import annotations

import json
from typing import Any

from workbench.core.storage.db import Database

VOTE_OUTCOMES = ("a", "b", "tie", "both_bad")


class Votes:
    """Votes on stored compare runs; each write is committed before the method returns."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add_compare_vote(self, run_id: int, outcome: str) -> int:
        """Record a vote as the user cast it: "a" is the side shown first, "b" the other, or "tie", "both_bad".
        :meth:`compare_votes` maps it back to the contenders when the run was shown swapped."""
        if outcome not in VOTE_OUTCOMES:
            raise ValueError(f"unknown vote {outcome!r}; expected one of {', '.join(VOTE_OUTCOMES)}")
        with self._db.write() as db:
            if db.execute("SELECT 1 FROM compare_runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise KeyError(f"no compare run with id {run_id}")
            cursor = db.execute(
                "INSERT INTO compare_votes (run_id, outcome, created) VALUES (?, ?, ?)",
                (run_id, outcome, self._db.now()),
            )
        return cursor.lastrowid or 0

    def compare_votes(self) -> list[tuple[str, str, str]]:
        """Every vote in the order cast, as ``(label of A, label of B, outcome)`` where "a" means contender A."""
        rows = self._db.execute(
            "SELECT r.contender_a, r.contender_b, r.swapped, v.outcome FROM compare_votes AS v"
            " JOIN compare_runs AS r ON r.id = v.run_id ORDER BY v.id"
        )
        votes = []
        for row in rows:
            outcome = row["outcome"]
            if row["swapped"]:
                outcome = {"a": "b", "b": "a"}.get(outcome, outcome)
            votes.append((_label(json.loads(row["contender_a"])), _label(json.loads(row["contender_b"])), outcome))
        return votes


def _label(contender: dict[str, Any]) -> str:
    return str(contender.get("label") or contender.get("model_id") or "?")
