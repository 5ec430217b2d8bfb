"""The Textual app: six panes as modes, global bindings, the command palette, themes, live memory."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.driver import Driver
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import AwaitMount

from workbench.api import WorkbenchApi
from workbench.core.models.local import default_chat_missing
from workbench.core.models.memory import MemorySnapshot, metal_budget
from workbench.core.models.spec import ModelSpec
from workbench.core.models.wait import ImportState, ImportStatus
from workbench.core.settings.write import save_setting
from workbench.resources import shipped_path
from workbench.ui.keymap import BINDING_IDS, split_keymap
from workbench.ui.messages import DownloadChanged, EngineLinkChanged, ImportProgress, ModelsChanged, ModelsFound, Notice
from workbench.ui.panes import MODES, PANES
from workbench.ui.screens.base import PaneScreen
from workbench.ui.screens.dialogs import ConfirmScreen
from workbench.ui.themes import FALLBACK_THEME, load_theme_dirs

if TYPE_CHECKING:
    from workbench.ui.engine_face import EngineFace

log = logging.getLogger(__name__)

MEMORY_REFRESH_S = 1.0
# The footer shows the six pane keys together ("1 2 3 4 5 6 Panes") so everything fits in 80 columns.
PANES_GROUP = Binding.Group("Panes", compact=True)


class WorkbenchApp(App[None]):
    TITLE = "workbench"
    MODES = {p.mode: partial(lambda p: p.screen_class()(), p) for p in PANES}  # type: ignore[assignment]
    DEFAULT_MODE = "catalog"
    BINDINGS = [
        *(Binding(p.key, f"switch_mode('{p.mode}')", p.title, id=f"pane.{p.mode}", group=PANES_GROUP) for p in PANES),
        # alt+N works while typing in a text box, where a plain digit is text (not in the footer: the pane bar
        # names the panes, and "alt+1alt+2…" would crowd out the pane's own keys). Priority: a box sees the key
        # first otherwise. The terminal's ESC+digit reaches here as alt+N through terminal_keys.WorkbenchParser.
        *(
            Binding(f"alt+{p.key}", f"switch_mode('{p.mode}')", p.title, id=f"pane.{p.mode}.typing", show=False,
                    priority=True)
            for p in PANES
        ),
        Binding("ctrl+pagedown", "next_pane(1)", "Next pane", id="pane.next", show=False, priority=True),
        Binding("ctrl+pageup", "next_pane(-1)", "Previous pane", id="pane.previous", show=False, priority=True),
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True),
        Binding("q", "quit_asking", "Quit", id="app.quit-asking", show=False),  # a box takes q as text first
        Binding("f1", "toggle_keys", "Keys", id="app.keys", show=False),
        # Closes the Keys panel, or leaves a pane's text box; otherwise (check_action) Esc keeps its meaning where it
        # is pressed (stop, back, close) and in the footer; in a box the footer says "esc Leave box". Priority, so a
        # digit typed right after it finds the focus moved.
        Binding("escape", "escape", "Leave box", id="app.escape", priority=True),
    ]

    memory_snapshot: reactive[MemorySnapshot | None] = reactive(None)
    models_version: reactive[int] = reactive(0)
    downloads_ended: reactive[int] = reactive(0)  # bumped when a download finishes, fails or is cancelled
    activity: reactive[str] = reactive("")
    import_status: reactive[ImportStatus] = reactive(ImportStatus)  # the default chat model's first-start import

    def __init__(self, services: WorkbenchApi, import_defaults: bool = True, scan_cache: bool = True) -> None:
        super().__init__()
        self.services: WorkbenchApi = services
        self.import_defaults = import_defaults
        # a face of the engine (workbench.client.remote_services): the engine scans, registers, imports, owns memory
        self.engine_face: EngineFace | None = None
        if services.attached:
            from workbench.ui.engine_face import EngineFace

            self.engine_face = EngineFace(self, services)  # type: ignore[arg-type]
        self.scan_cache = scan_cache and self.engine_face is None
        self.models_scan = 0  # the generation of the latest scan for models (find_cached_models)
        self._startup_notes: list[tuple[str, str]] = []
        self._apply_keymap()
        self._register_themes()
        self._choose_theme()

    # --- set-up -------------------------------------------------------------------------------

    @staticmethod
    def binding_ids() -> frozenset[str]:
        """Every binding id a user may remap (the one table in workbench.ui.keymap)."""
        return BINDING_IDS

    def _apply_keymap(self) -> None:
        keys, unknown = split_keymap(dict(self.services.settings.keys))
        for binding_id in unknown:
            self._startup_notes.append((f"[keys] {binding_id!r} is not a binding id; ignored", "warning"))
        self.set_keymap(keys)
        self.pane_keys = {p.mode: keys.get(f"pane.{p.mode}", p.key) for p in PANES}

    def _register_themes(self) -> None:
        themes, errors = load_theme_dirs([shipped_path("themes"), self.services.paths.user_themes_dir])
        for theme in themes:
            self.register_theme(theme)
        for error in errors:
            log.warning("theme: %s", error)
            self._startup_notes.append((f"Theme not loaded: {error}", "warning"))

    def _choose_theme(self) -> None:
        """Set before the app runs, so the stylesheet is built once, in the right colours."""
        wanted = self.services.settings.theme
        if wanted in self.available_themes:
            self.theme = wanted
        else:
            self.theme = FALLBACK_THEME
            self._startup_notes.append((f"Theme {wanted!r} is not available; using {FALLBACK_THEME}", "warning"))

    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, lambda theme: self._remember_theme(theme.name))

        if self.services.recovered_messages:
            note = (f"{self.services.recovered_messages} answer(s) were cut off when the app last stopped; "
                    "they are kept and marked incomplete.")  # fmt: skip
            self._startup_notes.append((note, "information"))
        for issue in self.services.issues:
            self._startup_notes.append((f"{issue} (using the default)", "warning"))
        for message, severity in self._startup_notes:
            self.notify(message, severity=severity, timeout=12)  # type: ignore[arg-type]

        default_import = self.services.default_import
        default_import.subscribe(lambda status: self.post_message(ImportProgress(status)))
        if self.import_defaults and self.engine_face is None and default_chat_missing(self.services.paths):
            default_import.plan()  # a message sent before the import starts waits for it instead of being refused
        self.services.manager.subscribe(lambda _event: self.post_message(ModelsChanged()))
        if self.engine_face is None:  # attached, the engine's samples arrive with its events
            self.set_interval(MEMORY_REFRESH_S, self.sample_memory)
        # Everything else waits for the first frame: the background work below imports huggingface_hub and
        # MLX, and even in a thread an import holds the interpreter long enough to delay the first paint.
        self.call_after_refresh(self.start_background_work)

    def start_background_work(self) -> None:
        self.services.downloads.subscribe(lambda job: self.post_message(DownloadChanged(job)))
        if self.engine_face is not None:
            self.engine_face.start()  # the engine finds models, refines the budget and imports the default
            return
        self.sample_memory()
        self.run_worker(self.services.downloads.start, name="downloads", group="downloads")
        if self.services.settings.budget_gb is None:
            self.refine_budget()
        if self.services.default_import.status.state is ImportState.PLANNED:
            self.import_default_model()
        if self.scan_cache:
            self.find_cached_models()

    async def on_unmount(self) -> None:
        await self.services.aclose()

    def find_cached_models(self) -> None:
        """Models in the Hugging Face cache, then the ones remote endpoints serve: found in a thread, registered
        when the message arrives (unless a newer scan started meanwhile)."""
        self.models_scan += 1
        self.scan_for_models(self.models_scan)

    @work(thread=True, group="hf-cache", exclusive=True, exit_on_error=False)
    def scan_for_models(self, generation: int) -> None:
        """The scan imports huggingface_hub and asks endpoints over the network: off the UI path."""
        try:
            specs = self.services.registry.loadable_specs()
        except Exception:
            log.exception("scanning the Hugging Face cache failed")
        else:
            self.post_message(ModelsFound(generation, specs))
        remote, problems = self.services.discover_remote_models()
        self.post_message(ModelsFound(generation, remote, problems))

    def on_models_found(self, message: ModelsFound) -> None:
        if message.generation != self.models_scan:
            return  # a newer scan answers
        self._register_specs(message.specs)
        for problem in message.problems:
            self.notify(f"{problem}. The Models view (6, t) tests the connection.",
                        title="Remote endpoint", severity="warning", timeout=20)  # fmt: skip

    def on_download_changed(self, message: DownloadChanged) -> None:
        from workbench.core.hub.downloads.jobs import JobState

        if message.job.state in (JobState.DONE, JobState.FAILED, JobState.CANCELLED):
            self.downloads_ended += 1  # what is on disk changed: the Catalog's Local column
        if message.job.state is JobState.DONE and self.scan_cache:  # a finished download may be a new chat model
            self.find_cached_models()

    def _register_specs(self, specs: list[ModelSpec]) -> None:
        manager = self.services.manager
        known = {info.spec.id for info in manager.models()}
        for spec in specs:
            if spec.id not in known:
                manager.register(spec)

    # --- live state ---------------------------------------------------------------------------

    def sample_memory(self) -> None:
        self.memory_snapshot = self.services.probe.snapshot()

    def on_models_changed(self, message: ModelsChanged) -> None:
        self.models_version += 1

    def _remember_theme(self, name: str) -> None:
        if name == self.services.settings.theme:
            return
        self.services.settings.theme = name
        try:
            save_setting(self.services.paths.config_file, "theme", name)
        except (OSError, ValueError) as exc:
            log.warning("cannot save the theme: %s", exc)
            self.notify(f"Could not save the theme choice: {exc}", severity="warning")

    @work(group="budget", exit_on_error=False)
    async def refine_budget(self) -> None:
        """On Apple Silicon the Metal working set is the real limit; asking costs an MLX import."""
        manager = self.services.manager
        budget = await manager.inference.run(metal_budget)
        if budget is not None:
            manager.set_budget(budget)
            self.post_message(ModelsChanged())

    @work(group="import-default", exit_on_error=False)
    async def import_default_model(self) -> None:
        """The importer registers the model; messages sent meanwhile wait for it (core/model_wait.py)."""
        try:
            spec = await self.services.default_import.run()
        except Exception as exc:
            log.exception("importing the default chat model failed")
            self.post_message(Notice(f"Could not import the default chat model: {exc}", severity="error", timeout=20))
            return
        self.post_message(Notice(f"{spec.name} is imported and ready.", title="Default chat model"))

    def on_notice(self, message: Notice) -> None:
        self.notify(message.text, title=message.title, severity=message.severity, timeout=message.timeout)

    def on_import_progress(self, message: ImportProgress) -> None:
        self.import_status = message.status
        self.show_activity()

    def show_activity(self) -> None:
        """The strip's activity: the default model's import while it comes, else the engine link's note."""
        if self.import_status.coming:
            self.activity = self.services.default_import.describe()
        else:
            self.activity = self.engine_face.note if self.engine_face is not None else ""

    def on_engine_link_changed(self, message: EngineLinkChanged) -> None:
        if self.engine_face is not None:
            self.engine_face.changed(message.status)  # type: ignore[arg-type]

    def get_driver_class(self) -> type[Driver]:
        driver = super().get_driver_class()
        if driver.__name__ == "LinuxDriver":  # not on Windows, nor when TEXTUAL_DRIVER names another
            from workbench.ui.terminal_keys import WorkbenchDriver  # imports termios: not on Windows

            return WorkbenchDriver
        return driver

    # --- keys ---------------------------------------------------------------------------------

    def switch_mode(self, mode: str) -> AwaitMount:
        """Going to a pane shows its main view: what was open over the pane being left (details, dialogs, the
        Keys panel) closes, so keys typed on the way back do not act on it."""
        if mode != self.current_mode and mode in self._modes:
            while len(self.screen_stack) > 1:
                self.pop_screen()
            self.screen.query("HelpPanel").remove()
        return super().switch_mode(mode)

    def action_next_pane(self, step: int) -> None:
        self.switch_mode(MODES[(MODES.index(self.current_mode) + step) % len(MODES)])

    def action_toggle_keys(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "escape":  # False: neither handled here nor shown, so the pane's own Esc keeps the footer
            screen = self.screen
            return bool(screen.query("HelpPanel")) or (isinstance(screen, PaneScreen) and screen.can_leave_text_box())
        return True

    def action_escape(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        elif isinstance(self.screen, PaneScreen):
            self.screen.leave_text_box()

    def work_running(self) -> list[str]:
        """What quitting now would stop: answers, comparisons, embeddings, downloads."""
        from workbench.core.hub.downloads.jobs import JobState

        running = [text for screen in self.pane_screens() if (text := screen.running())]
        if self.engine_face is not None:  # the import and the downloads go on in the engine
            return running
        if self.services.default_import.status.state is ImportState.RUNNING:
            running.append(f"the first-start import of {self.services.default_import.name}")
        downloading = [job for job in self.services.downloads.jobs() if job.active or job.state is JobState.QUEUED]
        if downloading:
            running.append(f"{len(downloading)} download{'s' if len(downloading) != 1 else ''} in progress")
        return running

    def pane_screens(self) -> list[PaneScreen]:
        """The panes shown so far (each mode's bottom screen)."""
        return [stack[0] for stack in self._screen_stacks.values() if stack and isinstance(stack[0], PaneScreen)]

    def action_quit_asking(self) -> None:
        running = self.work_running()
        if not running:
            self.exit()
            return
        question = f"Quit while {' and '.join(running)}? It stops."

        def answered(yes: bool | None) -> None:
            if yes:
                self.exit()
            else:
                self.notify("Still running. ctrl+q quits at once.", timeout=4)

        self.push_screen(ConfirmScreen(question, "Quit"), answered)

    # --- command palette ----------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for p in PANES:
            yield SystemCommand(f"Go to {p.title}", f"Switch to the {p.title} pane (key {self.pane_keys[p.mode]})",
                                partial(self.switch_mode, p.mode))  # fmt: skip
        if self.engine_face is not None:
            yield from self.engine_face.commands()
