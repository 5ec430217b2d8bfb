"""The app's side of its link to the engine, when it is a face of one (workbench.client.remote_services).

The link starts after the first frame. Its states reach the person: a quiet note in the memory strip while
connecting or lost, a notification when the engine was lost (and a new one attached), when it stopped (nothing
starts it again until the person asks: the command palette's "Start the engine") or runs other code than this
face (one of them changed since the engine started: "Restart the engine" stops it and starts a new one). Events
become what the app shows in-process: the models' listener (ModelsChanged), the downloads' (DownloadChanged), the
import's (ImportProgress), and each memory sample as the app's ``memory_snapshot``.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from textual.app import SystemCommand

from workbench.ui.messages import EngineLinkChanged

if TYPE_CHECKING:
    from workbench.client.link import LinkStatus
    from workbench.client.remote_services import RemoteServices
    from workbench.ui.app import WorkbenchApp

log = logging.getLogger(__name__)

CONNECTING = "connecting to the engine…"
START_HINT = "ctrl+p, then “Start the engine”, starts it again."
OTHER_CODE = ("The engine runs other code than this workbench (one of them changed since the engine started): restart "
              "it when idle? ctrl+p, then “Restart the engine”.")  # fmt: skip


class EngineFace:
    def __init__(self, app: WorkbenchApp, services: RemoteServices) -> None:
        self.app = app
        self.services = services
        self.status: LinkStatus | None = None
        self.note = ""  # the quiet word in the memory strip (empty while attached)
        self.told_other_code: set[Any] = set()  # engines (pids) already named as running other code
        self.was_down = False  # lost, stopped or failed since last attached: say so when attached again
        self.restarting = False  # the person asked for a restart: its stop is not news
        self.frozen = False  # gc.freeze() once attached

    def start(self) -> None:
        """After the first frame: attach (starting the engine when none answers)."""
        app = self.app
        self.services.probe.subscribe(lambda snapshot: setattr(app, "memory_snapshot", snapshot))
        self.services.downloads.on_refused(lambda text: app.notify(text, title="Downloads", severity="warning"))
        self._set_note(CONNECTING)
        self.services.start_link(lambda status: app.post_message(EngineLinkChanged(status)))

    @property
    def state(self) -> str:
        return str(self.status.state) if self.status is not None else "connecting"

    def _set_note(self, note: str) -> None:
        self.note = note
        self.app.show_activity()

    def changed(self, status: LinkStatus) -> None:
        from workbench.client.link import LinkState
        from workbench.core.models.local import default_chat_missing

        self.status = status
        app = self.app
        if status.state is LinkState.ATTACHED:
            if not self.frozen:
                # What the face built to get here (Textual, the app, the client) lives as long as it does: out of
                # the collector's full passes, which hold the loop for hundreds of ms over that many objects
                # while an answer streams (bench/chat_tps.py). Refcounting still frees frozen objects.
                gc.freeze()
                self.frozen = True
            self._set_note("")
            self.restarting = False
            if self.was_down:
                self.was_down = False
                app.notify("Attached to a new engine.", title="Engine", timeout=6)
            pid = (status.engine or {}).get("pid")
            if status.other_code and pid not in self.told_other_code:
                self.told_other_code.add(pid)
                app.notify(OTHER_CODE, title="Engine", severity="warning", timeout=30)
            if app.import_defaults and default_chat_missing(self.services.paths):
                self.services.default_import.plan()  # the engine imports it, once; harmless when it is there
            return
        self.was_down = status.state is not LinkState.CONNECTING or self.was_down
        if status.state is LinkState.LOST:
            self._set_note(status.detail)
            app.notify(f"{_sentence(status.detail)}.", title="Engine", severity="warning", timeout=6)
        elif status.state is LinkState.STOPPED and self.restarting:
            self._set_note("restarting the engine…")
        elif status.state is LinkState.STOPPED:
            self._set_note("engine stopped")
            app.notify(f"{_sentence(status.detail)}. {START_HINT}", title="Engine", severity="warning", timeout=30)
        elif status.state is LinkState.FAILED:
            self._set_note("no engine")
            app.notify(f"{_sentence(status.detail)}. {START_HINT}", title="Engine", severity="error", timeout=30)
        else:  # CONNECTING
            self._set_note(CONNECTING)

    # --- what the person can do ------------------------------------------------------------------

    def commands(self) -> Iterator[SystemCommand]:
        from workbench.client.link import LinkState

        state = self.status.state if self.status is not None else LinkState.CONNECTING
        if state in (LinkState.STOPPED, LinkState.FAILED):
            yield SystemCommand("Start the engine", "Start the engine again and attach to it", self.start_again)
        if state is LinkState.ATTACHED:
            yield SystemCommand("Restart the engine", "Stop the engine (downloads pause) and start a new one",
                                self.restart)  # fmt: skip

    def start_again(self) -> None:
        if self.services.link is not None:
            self._set_note(CONNECTING)
            self.services.link.reconnect()

    def restart(self) -> None:
        running = self.engine_work()
        if not running:
            self._restart()
            return
        from workbench.ui.screens.dialogs import ConfirmScreen

        question = f"Restart the engine while {' and '.join(running)}? Downloads pause and go on in the new one."
        self.app.push_screen(ConfirmScreen(question, "Restart"), lambda yes: self._restart() if yes else None)

    def _restart(self) -> None:
        self.restarting = True
        self.app.notify("Restarting the engine…", title="Engine", timeout=4)
        self.app.run_worker(self.services.restart_engine(), group="engine-restart", exclusive=True,
                            exit_on_error=False)  # fmt: skip

    def engine_work(self) -> list[str]:
        """What the engine is doing for this face that goes on after it quits."""
        from workbench.core.hub.downloads.jobs import JobState

        running = []
        downloading = [job for job in self.services.downloads.jobs() if job.active or job.state is JobState.QUEUED]
        if downloading:
            running.append(f"{len(downloading)} download{'s' if len(downloading) != 1 else ''} in progress")
        if self.services.default_import.status.coming:
            running.append(f"the first-start import of {self.services.default_import.name}")
        return running

    def exit_note(self) -> str:
        """A line for the terminal after the app quit: the work that goes on in the engine."""
        running = self.engine_work()
        if not running:
            return ""
        return (f"workbench: {' and '.join(running)} go on in the engine (`workbench ps` shows them, "
                "`workbench stop` stops it).")  # fmt: skip


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]
