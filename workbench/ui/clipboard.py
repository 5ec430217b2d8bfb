"""Copy text with OSC 52, the terminal escape that sets the clipboard of the terminal the person sits at,
so copying works over SSH. Inside tmux the sequence is also sent wrapped for tmux's passthrough, which
reaches the outer terminal when tmux has `allow-passthrough on` (or `set-clipboard on`)."""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Callable, Mapping

from textual.app import App

TMUX_HINT = "in tmux, add `set -g set-clipboard on` to ~/.tmux.conf"
PREVIEW_CHARS = 28

TmuxOption = Callable[[str], "str | None"]


def osc52(text: str) -> str:
    return f"\x1b]52;c;{base64.b64encode(text.encode('utf-8')).decode('ascii')}\a"


def tmux_passthrough(sequence: str) -> str:
    """tmux forwards ``ESC P tmux; ... ESC \\`` to the outer terminal, with inner ESCs doubled."""
    return "\x1bPtmux;" + sequence.replace("\x1b", "\x1b\x1b") + "\x1b\\"


def copy_text(app: App, text: str) -> None:
    app.copy_to_clipboard(text)  # OSC 52 straight to the terminal (tmux takes it with set-clipboard on)
    driver = app._driver  # Textual exposes no public way to write raw escapes
    if os.environ.get("TMUX") and driver is not None:
        driver.write(tmux_passthrough(osc52(text)))


def tmux_option(name: str) -> str | None:
    """A global tmux option's value ("on", "external", …), or None when tmux cannot say (missing, slow, failing)."""
    try:
        done = subprocess.run(["tmux", "show-options", "-gv", name], capture_output=True, text=True, timeout=1)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def tmux_clipboard_hint(env: Mapping[str, str] | None = None, ask: TmuxOption | None = None) -> str | None:
    """How to let a copy through tmux, when inside tmux neither set-clipboard nor passthrough lets OSC 52 out;
    None outside tmux, when tmux lets it out, and when tmux cannot be asked."""
    if not (os.environ if env is None else env).get("TMUX"):
        return None
    ask = ask or tmux_option
    set_clipboard = ask("set-clipboard")
    if set_clipboard is None or set_clipboard == "on" or ask("allow-passthrough") in ("on", "all"):
        return None
    return TMUX_HINT


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    """The start of ``text`` on one line, cut with "…": "The capital of France is…"."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    if flat[limit - 1] != " " and " " in cut[limit // 2 :]:
        cut = cut.rsplit(" ", 1)[0]  # end on a whole word when that keeps most of it
    return cut.rstrip() + "…"


def copied_note(text: str, hint: str | None = None) -> str:
    note = f"Copied: “{preview(text)}” ({len(text):,} characters)"
    return f"{note}, but it may not arrive: {hint}." if hint else note + "."


def copy_and_tell(app: App, text: str, env: Mapping[str, str] | None = None, ask: TmuxOption | None = None) -> None:
    """Copy ``text`` and say what was copied, and how to let it through tmux where it would not arrive."""
    copy_text(app, text)
    hint = tmux_clipboard_hint(env, ask)
    app.notify(copied_note(text, hint), severity="warning" if hint else "information", markup=False,
               timeout=12 if hint else None)  # fmt: skip
