"""Fitting text and table columns into the width there is: pure functions, tested without a terminal.

A repo id keeps its end when shortened (the variant, "…-4bit" vs "…-8bit", tells rows apart; the org rarely does),
and a table too narrow for all its columns drops the least useful ones first.
"""

from __future__ import annotations

from dataclasses import dataclass

ELLIPSIS = "…"
CELL_PADDING = 2  # a DataTable cell's padding, one each side


def shorten_middle(text: str, width: int, head_share: float = 1 / 3) -> str:
    """``text`` in at most ``width`` characters, cut in the middle: a third of the room for the start, the rest
    for the end."""
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    room = width - 1
    head = int(room * head_share)
    tail = room - head
    return text[:head] + ELLIPSIS + text[len(text) - tail :]


def shorten_repo_id(repo_id: str, width: int) -> str:
    """A repo id in at most ``width`` characters, its distinguishing end kept: the org shrinks first
    ("mlx-co…/SmolLM2-135M-Instruct-4bit", "…/SmolLM2-135M-Instruct-4bit"), then the name is cut in the middle
    ("…/SmolL…Instruct-4bit")."""
    if len(repo_id) <= width:
        return repo_id
    org, slash, name = repo_id.rpartition("/")
    if not slash:
        return shorten_middle(repo_id, width)
    room_for_org = width - len(name) - 2  # "…/" is two characters
    if room_for_org >= 3:
        return org[:room_for_org] + ELLIPSIS + "/" + name
    if room_for_org >= 0:
        return ELLIPSIS + "/" + name
    if width < 16:  # too narrow for the "…/" as well: the name's end gets most of the room
        return shorten_middle(name, width, head_share=1 / 4)
    return ELLIPSIS + "/" + shorten_middle(name, width - 2)


@dataclass(frozen=True)
class Column:
    key: str
    width: int  # the widest cell or label of the column, without padding
    drop: int = 0  # 0: always shown; otherwise a narrow table drops the highest number first


def fit_columns(columns: list[Column], total: int, flexible: str, flexible_min: int) -> tuple[list[str], int]:
    """Which columns fit in ``total`` cells (padding included), in their order, and the width of the ``flexible``
    one (the name): it gets what the others leave, up to its own width, and at least ``flexible_min``; columns are
    dropped, highest ``drop`` first, until that minimum fits."""
    shown = list(columns)
    by_drop = sorted((c for c in columns if c.drop), key=lambda c: c.drop, reverse=True)
    flex = next(c for c in columns if c.key == flexible)
    want = min(flex.width, flexible_min)

    def left() -> int:
        return total - sum(c.width + CELL_PADDING for c in shown if c.key != flexible) - CELL_PADDING

    while left() < want and by_drop:
        shown.remove(by_drop.pop(0))
    return [c.key for c in shown], max(1, min(flex.width, left()))
