"""Votes into ratings: Elo, win rates and vote counts per contender; the fair coin of blind mode."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

OUTCOMES = ("a", "b", "tie", "both_bad")


@dataclass(frozen=True)
class Rating:
    model: str
    rating: float
    games: int
    wins: int
    losses: int
    ties: int
    both_bad: int

    @property
    def win_rate(self) -> float:
        """Wins plus half the draws over all games; a "both bad" vote counts as a draw here, as in the rating."""
        if not self.games:
            return 0.0
        return (self.wins + (self.ties + self.both_bad) / 2) / self.games


def elo_ratings(votes: Iterable[tuple[str, str, str]], k: float = 32, start: float = 1000) -> list[Rating]:
    """Elo ratings from ``(model_a, model_b, outcome)`` votes taken in order; highest rating first.

    "a" and "b" name the winner; "tie" and "both_bad" both score half a point each (neither answer was
    preferred, as Chatbot Arena counts a "both bad" vote). A vote of a model against itself says nothing
    and is skipped. Elo depends on the order of the votes; the same votes in the same order always give
    the same ratings (ties in rating are listed by name).
    """
    ratings: dict[str, float] = {}
    counts: dict[str, dict[str, int]] = {}
    for model_a, model_b, outcome in votes:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown vote {outcome!r}; expected one of {', '.join(OUTCOMES)}")
        if model_a == model_b:
            continue
        for model in (model_a, model_b):
            ratings.setdefault(model, start)
            counts.setdefault(model, {"games": 0, "wins": 0, "losses": 0, "ties": 0, "both_bad": 0})
        score_a = {"a": 1.0, "b": 0.0}.get(outcome, 0.5)
        expected_a = 1 / (1 + 10 ** ((ratings[model_b] - ratings[model_a]) / 400))
        ratings[model_a] += k * (score_a - expected_a)
        ratings[model_b] -= k * (score_a - expected_a)
        counts[model_a]["games"] += 1
        counts[model_b]["games"] += 1
        if outcome == "a":
            counts[model_a]["wins"] += 1
            counts[model_b]["losses"] += 1
        elif outcome == "b":
            counts[model_b]["wins"] += 1
            counts[model_a]["losses"] += 1
        else:
            key = "ties" if outcome == "tie" else "both_bad"
            counts[model_a][key] += 1
            counts[model_b][key] += 1
    table = [Rating(model=model, rating=ratings[model], **counts[model]) for model in ratings]
    return sorted(table, key=lambda r: (-r.rating, r.model))


def blind_order(seed: int | None = None) -> bool:
    """Whether blind mode shows the sides swapped (B first): a fair coin, reproducible with ``seed``."""
    return random.Random(seed).random() < 0.5
