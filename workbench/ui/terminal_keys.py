"""Alt+digit from a terminal: the keys that switch panes while typing.

xterm, tmux, GNOME Terminal, Konsole and macOS terminals with Option as Meta send alt+1 as ESC followed by "1".
Textual reads ESC+digit as the character macOS types for Option+digit ("\\x1b1" is "¡", "\\x1b4" is "¢"), so
the pane keys would type those characters into the box instead. This parser reads ESC+digit as alt+digit, and
also xterm's modifyOtherKeys form ("\\x1b[27;3;49~"); the kitty form ("\\x1b[49;3u") Textual already reads as
alt+1. A character typed directly (a "£" from a UK keyboard, a "¡" from Option without Meta) stays a character.
"""

from __future__ import annotations

import os
import re
import selectors
from codecs import getincrementaldecoder
from collections.abc import Iterable

from textual import events
from textual._parser import ParseError
from textual._xterm_parser import XTermParser
from textual.drivers.linux_driver import LinuxDriver

ESC = "\x1b"
# xterm's modifyOtherKeys: CSI 27 ; modifiers ; code ~ (modifiers 3 is alt, 4 alt+shift)
_MODIFY_OTHER_KEYS = re.compile(r"\x1b\[27;(\d+);(\d+)~")
ALT = 2  # the alt bit of a modifiers parameter, after subtracting 1


def alt_digit(sequence: str) -> str | None:
    """The key alt+N for a terminal's byte sequence of alt+digit, or None when the sequence is something else."""
    if len(sequence) == 2 and sequence[0] == ESC and sequence[1].isdigit() and sequence[1].isascii():
        return f"alt+{sequence[1]}"
    match = _MODIFY_OTHER_KEYS.fullmatch(sequence)
    if match is not None:
        modifiers, code = int(match.group(1)) - 1, int(match.group(2))
        if modifiers == ALT and chr(code).isdigit() and chr(code).isascii():
            return f"alt+{chr(code)}"
    return None


class WorkbenchParser(XTermParser):
    """Textual's parser, except that alt+digit is alt+digit."""

    def _sequence_to_key_events(self, sequence: str, alt: bool = False) -> Iterable[events.Key]:
        key = alt_digit(sequence)
        if key is not None:
            return [events.Key(key, None)]
        return super()._sequence_to_key_events(sequence, alt)


class WorkbenchDriver(LinuxDriver):
    """Textual's Linux/macOS driver reading keys through WorkbenchParser.

    LinuxDriver builds its parser inside run_input_thread, so this is that method with the parser swapped.
    """

    def run_input_thread(self) -> None:
        selector = selectors.SelectSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        fileno = self.fileno
        parser = WorkbenchParser(self._debug)
        feed, tick = parser.feed, parser.tick
        decode = getincrementaldecoder("utf-8")().decode

        def process_selector_events(selector_events: list[tuple[selectors.SelectorKey, int]],
                                    final: bool = False) -> None:  # fmt: skip
            for index, (_key, mask) in enumerate(selector_events):
                last = index == len(selector_events) - 1
                if mask & selectors.EVENT_READ:
                    unicode_data = decode(os.read(fileno, 1024 * 4), final=final and last)
                    if not unicode_data:
                        break  # stdin is piped and ended
                    for event in feed(unicode_data):
                        self.process_message(event)
            for event in tick():
                self.process_message(event)

        try:
            while not self.exit_event.is_set():
                process_selector_events(selector.select(0.1))
            selector.unregister(self.fileno)
            process_selector_events(selector.select(0.1), final=True)
        finally:
            selector.close()
            try:
                for _event in feed(""):
                    pass
            except (EOFError, ParseError):
                pass
