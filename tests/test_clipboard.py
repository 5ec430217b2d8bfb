from __future__ import annotations

import base64

from workbench.ui.clipboard import osc52, tmux_passthrough


def test_osc52_carries_the_text_in_base64() -> None:
    sequence = osc52("héllo\nworld")
    assert sequence.startswith("\x1b]52;c;") and sequence.endswith("\a")
    assert base64.b64decode(sequence[7:-1]).decode() == "héllo\nworld"


def test_tmux_passthrough_wraps_and_doubles_escapes() -> None:
    wrapped = tmux_passthrough(osc52("x"))
    assert wrapped.startswith("\x1bPtmux;\x1b\x1b]52;c;") and wrapped.endswith("\a\x1b\\")
