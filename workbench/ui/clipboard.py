"""Copy text with OSC 52, the terminal escape that sets the clipboard of the terminal the person sits at,
so copying works over SSH. Inside tmux the sequence is also sent wrapped for tmux's passthrough, which
reaches the outer terminal when tmux has `allow-passthrough on` (or `set-clipboard on`)."""

from __future__ import annotations

import base64
import os

from textual.app import App


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
