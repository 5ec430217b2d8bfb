"""Compare runs in the database: one row per prompt put to two contenders, with both answers, figures and errors.

The store keeps plain data: a contender is a dict (``model_id``, ``label``, ``sampling``, ``system_prompt``)
and the memory plan is a code, ``together`` or ``sequential`` ("" when none was given); the words shown
for a plan come from that code in the compare package (``PlanKind.label``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workbench.core.storage.db import UNSET, Database, dumps_or_none

PLAN_CODES = ("together", "sequential")


@dataclass(frozen=True)
class CompareRunRecord:
    """One stored compare run. Contenders are dicts (model_id, label, sampling, system_prompt); ``plan`` is a
    code from :data:`PLAN_CODES` or ""; ``swapped`` means blind mode showed contender B first, so a stored
    vote's "a" meant B."""

    id: int
    created: float
    prompt: str
    contender_a: dict[str, Any]
    contender_b: dict[str, Any]
    answer_a: str
    answer_b: str
    figures_a: dict[str, Any] | None
    figures_b: dict[str, Any] | None
    plan: str
    blind: bool
    swapped: bool
    error_a: str | None
    error_b: str | None


_COLUMNS = ("answer_a", "answer_b", "figures_a", "figures_b", "error_a", "error_b")


class CompareRuns:
    """Compare runs; each write is committed before the method returns."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add_compare_run(
        self,
        prompt: str,
        a: Mapping[str, Any],
        b: Mapping[str, Any],
        *,
        plan: str = "",
        blind: bool = False,
        swapped: bool = False,
    ) -> int:
        """A new run (answers empty until :meth:`update_compare_run`); returns its id. ``a`` and ``b`` are the
        contenders as dicts (``Contender.to_dict()``), ``plan`` a code (``PlanKind`` is one); ``swapped``: blind
        mode shows contender B first (see ``Votes.add_compare_vote``)."""
        for contender in (a, b):
            if not isinstance(contender, Mapping):
                kind = type(contender).__name__
                raise TypeError(f"a contender is stored as a dict (Contender.to_dict()), not as {kind}")
        if plan and plan not in PLAN_CODES:
            raise ValueError(f"unknown plan {plan!r}; expected one of {', '.join(PLAN_CODES)}")
        with self._db.write() as db:
            cursor = db.execute(
                "INSERT INTO compare_runs (created, prompt, contender_a, contender_b, plan, blind, swapped)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self._db.now(), prompt, json.dumps(dict(a)), json.dumps(dict(b)), str(plan), int(blind),
                 int(swapped)),
            )  # fmt: skip
        return cursor.lastrowid or 0

    def update_compare_run(
        self,
        run_id: int,
        *,
        answer_a: str = UNSET,
        answer_b: str = UNSET,
        figures_a: dict[str, Any] | None = UNSET,
        figures_b: dict[str, Any] | None = UNSET,
        error_a: str | None = UNSET,
        error_b: str | None = UNSET,
    ) -> None:
        """Change the fields given (None is a value: it clears figures or an error)."""
        given = dict(zip(_COLUMNS, (answer_a, answer_b, figures_a, figures_b, error_a, error_b), strict=True))
        changes = {
            column: dumps_or_none(value) if column.startswith("figures") else value
            for column, value in given.items()
            if value is not UNSET
        }
        if not changes:
            return
        assignments = ", ".join(f"{column} = ?" for column in changes)
        with self._db.write() as db:
            cursor = db.execute(f"UPDATE compare_runs SET {assignments} WHERE id = ?", (*changes.values(), run_id))
            if cursor.rowcount == 0:
                raise KeyError(f"no compare run with id {run_id}")

    def compare_runs(self, limit: int = 100) -> list[CompareRunRecord]:
        """The most recent runs first."""
        rows = self._db.execute("SELECT * FROM compare_runs ORDER BY created DESC, id DESC LIMIT ?", (limit,))
        return [_compare_run(row) for row in rows]


def _compare_run(row: sqlite3.Row) -> CompareRunRecord:
    return CompareRunRecord(
        id=row["id"],
        created=row["created"],
        prompt=row["prompt"],
        contender_a=json.loads(row["contender_a"]),
        contender_b=json.loads(row["contender_b"]),
        answer_a=row["answer_a"],
        answer_b=row["answer_b"],
        figures_a=None if row["figures_a"] is None else json.loads(row["figures_a"]),
        figures_b=None if row["figures_b"] is None else json.loads(row["figures_b"]),
        plan=row["plan"],
        blind=bool(row["blind"]),
        swapped=bool(row["swapped"]),
        error_a=row["error_a"],
        error_b=row["error_b"],
    )
