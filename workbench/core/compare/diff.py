"""The word diff of two answers: runs of shared words and of words only one side has."""

from __future__ import annotations

import difflib
import re


def word_diff(a: str, b: str) -> list[tuple[str, str]]:
    """Runs of ``("same" | "a" | "b", text)``: the "same" and "a" texts joined give ``a``, "same" and "b" give ``b``.

    Words keep their whitespace as separate tokens, so the runs join back to the exact texts.
    """
    words_a, words_b = _words(a), _words(b)
    ops: list[tuple[str, str]] = []

    def add(kind: str, tokens: list[str]) -> None:
        if not tokens:
            return
        text = "".join(tokens)
        if ops and ops[-1][0] == kind:
            ops[-1] = (kind, ops[-1][1] + text)
        else:
            ops.append((kind, text))

    matcher = difflib.SequenceMatcher(None, words_a, words_b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            add("same", words_a[i1:i2])
        else:  # replace, delete, insert
            add("a", words_a[i1:i2])
            add("b", words_b[j1:j2])
    return ops


def _words(text: str) -> list[str]:
    return re.findall(r"\s+|\S+", text)
