from __future__ import annotations

import base64
from pathlib import Path

import pytest

from workbench.ui.clipboard import (
    PREVIEW_CHARS,
    TMUX_HINT,
    copied_note,
    osc52,
    preview,
    tmux_clipboard_hint,
    tmux_option,
    tmux_passthrough,
)


def test_osc52_carries_the_text_in_base64() -> None:
    sequence = osc52("héllo\nworld")
    assert sequence.startswith("\x1b]52;c;") and sequence.endswith("\a")
    assert base64.b64decode(sequence[7:-1]).decode() == "héllo\nworld"


def test_tmux_passthrough_wraps_and_doubles_escapes() -> None:
    wrapped = tmux_passthrough(osc52("x"))
    assert wrapped.startswith("\x1bPtmux;\x1b\x1b]52;c;") and wrapped.endswith("\a\x1b\\")


def test_preview_is_one_line_cut_on_a_word() -> None:
    assert preview("The capital of France is Paris.") == "The capital of France is…"
    assert preview("  short\n\nanswer ") == "short answer"
    assert len(preview("x" * 100)) == PREVIEW_CHARS
    assert copied_note("hi there") == "Copied: “hi there” (8 characters)."


def test_the_tmux_hint_shows_only_in_tmux_when_nothing_lets_the_copy_out() -> None:
    tmux = {"TMUX": "/tmp/tmux-1000/default,1,0"}

    def ask(**options: str | None):  # type: ignore[no-untyped-def]
        return lambda name: options.get(name.replace("-", "_"))

    assert tmux_clipboard_hint({}, ask(set_clipboard="off")) is None
    assert tmux_clipboard_hint(tmux, ask(set_clipboard="on")) is None
    assert tmux_clipboard_hint(tmux, ask(set_clipboard="external", allow_passthrough="on")) is None
    assert tmux_clipboard_hint(tmux, ask(set_clipboard=None)) is None  # tmux could not be asked
    assert tmux_clipboard_hint(tmux, ask(set_clipboard="external", allow_passthrough="off")) == TMUX_HINT
    assert tmux_clipboard_hint(tmux, ask(set_clipboard="off")) == TMUX_HINT
    assert "set -g set-clipboard on" in copied_note("x", TMUX_HINT)


def test_asking_tmux_without_tmux_says_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert tmux_option("set-clipboard") is None
