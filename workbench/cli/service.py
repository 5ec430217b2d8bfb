"""`workbench service install|uninstall`: keep `workbench engine` resident under the system's service manager, a
launchd agent on macOS or a systemd user unit on Linux, for people who want it running on a headless machine.

The file is written here; the manager (launchctl / systemctl) is run when it is on PATH and --print-only is not
given, otherwise the exact commands are printed for the person to run."""

from __future__ import annotations

import argparse
import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.cli.common import EXIT_OK, CommandError, add_command

if TYPE_CHECKING:
    from workbench.core.settings.paths import AppPaths

LAUNCHD_LABEL = "io.workbench.engine"
SYSTEMD_UNIT = "workbench-engine.service"
# what the manager runs after the absolute python: resident, since neither manager restarts an engine that ended well
ENGINE_ARGS = ("-m", "workbench.cli", "engine", "--resident")
SERVICE_LOG = "service.log"  # the engine's stray stdout/stderr under launchd (its own log is workbench.log)
THROTTLE_S = 30  # launchd: at most one start per 30 s when the engine keeps dying
RESTART_S = 5  # systemd: RestartSec
MANAGER_TIMEOUT_S = 30
PLATFORMS = ("darwin", "linux")
SYSTEMD_SPECIAL = " \t\"'\\;"  # a word with one of these is quoted in a unit file

SERVICE_EXIT_CODES = ("exit status: 0 done (written and started, removed, or nothing to do); 1 it failed or this "
                      "system has neither launchd nor systemd (the message says why and what to run); "
                      "2 bad arguments")  # fmt: skip


@dataclass(frozen=True)
class Ran:
    returncode: int
    output: str


Runner = Callable[[Sequence[str]], Ran]
Which = Callable[[str], str | None]


def run_manager(argv: Sequence[str]) -> Ran:
    """Run launchctl / systemctl, bounded: a manager that hangs becomes an error for the person, not a hang."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=MANAGER_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)  # fmt: skip
    except subprocess.TimeoutExpired:
        return Ran(124, f"no answer within {MANAGER_TIMEOUT_S} s")
    except OSError as exc:
        return Ran(127, exc.strerror or str(exc))
    return Ran(done.returncode, (done.stderr or done.stdout).strip())


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    service = add_command(
        commands, "service", run_service, "keep the engine resident: a launchd agent or systemd user unit",
        f"`install` writes a launchd agent (macOS: ~/Library/LaunchAgents/{LAUNCHD_LABEL}.plist) or a systemd user "
        f"unit (Linux: ~/.config/systemd/user/{SYSTEMD_UNIT}) that runs `workbench engine` at login and restarts "
        "it when it dies, then loads it with launchctl / systemctl; `uninstall` stops it and removes the file. "
        "Both can be run again safely. With --print-only, or when the manager's command is not on PATH, the "
        "commands to run are printed instead of run. WORKBENCH_HOME, when set, is written into the file.",
        SERVICE_EXIT_CODES,
    )  # fmt: skip
    actions = service.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, summary in (("install", "write the file and start the engine under the manager"),
                          ("uninstall", "stop the engine under the manager and remove the file")):  # fmt: skip
        action = actions.add_parser(name, help=summary, description=summary, epilog=SERVICE_EXIT_CODES)
        action.add_argument("--print-only", action="store_true",
                            help="write or remove the file, and print the launchctl / systemctl commands instead "
                                 "of running them")  # fmt: skip
        action.add_argument("--platform", help=argparse.SUPPRESS)  # tests: "darwin" / "linux"


# --- what is written -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    """One service file for one platform: where it goes, what it says, and the manager's commands."""

    platform: str
    file: Path
    text: bytes
    log_dir: Path
    uid: int

    @property
    def domain(self) -> str:
        return f"gui/{self.uid}"

    def start_commands(self, was_loaded: bool) -> list[list[str]]:
        if self.platform == "darwin":
            stop = [["launchctl", "bootout", f"{self.domain}/{LAUNCHD_LABEL}"]] if was_loaded else []
            return [*stop, ["launchctl", "enable", f"{self.domain}/{LAUNCHD_LABEL}"],
                    ["launchctl", "bootstrap", self.domain, str(self.file)]]  # fmt: skip
        return [["systemctl", "--user", "daemon-reload"],
                ["systemctl", "--user", "enable", SYSTEMD_UNIT],
                ["systemctl", "--user", "restart" if was_loaded else "start", SYSTEMD_UNIT]]  # fmt: skip

    def printed_start(self) -> str:
        """The start commands for a person, who may have an older one loaded."""
        if self.platform == "darwin":
            bootout = shlex.join(["launchctl", "bootout", f"{self.domain}/{LAUNCHD_LABEL}"])
            return f"{bootout} 2>/dev/null; {shell_line(self.start_commands(was_loaded=False))}"
        return shell_line(self.start_commands(was_loaded=True))  # restart also starts one that is not running

    def stop_commands(self, file_present: bool = True) -> list[list[str]]:
        if self.platform == "darwin":
            return [["launchctl", "bootout", f"{self.domain}/{LAUNCHD_LABEL}"]]
        if not file_present:  # running from a unit file removed by hand: disable would not find it
            return [["systemctl", "--user", "stop", SYSTEMD_UNIT]]
        return [["systemctl", "--user", "disable", "--now", SYSTEMD_UNIT]]

    @property
    def wants_link(self) -> Path | None:
        """What `systemctl --user enable` links for WantedBy=default.target."""
        return self.file.parent / "default.target.wants" / SYSTEMD_UNIT if self.platform == "linux" else None

    def after_removal(self) -> list[list[str]]:
        return [["systemctl", "--user", "daemon-reload"]] if self.platform == "linux" else []

    def loaded_command(self) -> list[str]:
        if self.platform == "darwin":
            return ["launchctl", "print", f"{self.domain}/{LAUNCHD_LABEL}"]
        return ["systemctl", "--user", "is-active", "--quiet", SYSTEMD_UNIT]

    @property
    def tool(self) -> str:
        return "launchctl" if self.platform == "darwin" else "systemctl"


def engine_command(python: str) -> list[str]:
    return [python, *ENGINE_ARGS]


def launchd_plist(python: str, log_dir: Path, workbench_home: str | None) -> bytes:
    """The launch agent: started at login, restarted when it dies (not when it exits cleanly: `workbench stop`),
    never more than once per THROTTLE_S."""
    agent: dict[str, object] = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": engine_command(python),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": THROTTLE_S,
        "ProcessType": "Interactive",  # not Background: launchd would throttle the engine's CPU and I/O
        "StandardOutPath": str(log_dir / SERVICE_LOG),
        "StandardErrorPath": str(log_dir / SERVICE_LOG),
    }
    if workbench_home:
        agent["EnvironmentVariables"] = {"WORKBENCH_HOME": workbench_home}
    return plistlib.dumps(agent, fmt=plistlib.FMT_XML, sort_keys=False)


def systemd_quote(word: str, variables: bool = True) -> str:
    """One word of a unit file setting as systemd reads it back (systemd.service, "Command lines"): % is a specifier
    (%%); where variables are expanded (an Exec line's arguments, not its program) $ is $$; a word with blanks,
    quotes, backslashes or ; goes in double quotes, inside which backslash and quote are C-escaped."""
    text = word.replace("%", "%%")
    if variables:
        text = text.replace("$", "$$")
    if word and word.isprintable() and not any(char in word for char in SYSTEMD_SPECIAL):
        return text
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{text}"'


def systemd_unit(python: str, workbench_home: str | None) -> bytes:
    lines = [
        "[Unit]",
        "Description=workbench engine (models, memory, downloads and history for every workbench face)",
        "",
        "[Service]",
        "ExecStart=" + " ".join([systemd_quote(python, variables=False), *map(systemd_quote, ENGINE_ARGS)]),
        "Restart=on-failure",
        f"RestartSec={RESTART_S}",
    ]
    if workbench_home:
        lines.append("Environment=" + systemd_quote(f"WORKBENCH_HOME={workbench_home}", variables=False))
    lines += ["", "[Install]", "WantedBy=default.target", ""]
    return "\n".join(lines).encode("utf-8")


def detect_platform(name: str | None = None) -> str:
    name = name or sys.platform
    return "linux" if name.startswith("linux") else name


def build_service(platform: str, paths: AppPaths, environ: Mapping[str, str] | None = None,
                  python: str | None = None) -> Service:  # fmt: skip
    """The service file for ``platform`` ("darwin" / "linux"); CommandError for any other system."""
    environ = os.environ if environ is None else environ
    if platform not in PLATFORMS:
        raise CommandError(f"not supported on this system ({platform}): `workbench service` knows launchd (macOS) "
                           "and systemd (Linux); run `workbench engine` under your own supervisor instead")  # fmt: skip
    python = python or sys.executable
    if not python:
        raise CommandError("cannot tell which python runs the workbench (sys.executable is empty)")
    python = str(Path(python).absolute())  # not resolved: a venv's python is a link that must stay one
    home_value = environ.get("WORKBENCH_HOME")
    workbench_home = str(Path(home_value).expanduser().absolute()) if home_value else None
    log_dir = paths.log_dir.expanduser().absolute()
    user_home = Path(environ.get("HOME") or Path.home())
    uid = os.getuid() if hasattr(os, "getuid") else 0
    if platform == "darwin":
        file = user_home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
        return Service(platform, file, launchd_plist(python, log_dir, workbench_home), log_dir, uid)
    config = environ.get("XDG_CONFIG_HOME", "")
    config_home = Path(config) if config and Path(config).is_absolute() else user_home / ".config"  # XDG: ignore
    file = config_home / "systemd" / "user" / SYSTEMD_UNIT  # a relative value
    return Service(platform, file, systemd_unit(python, workbench_home), log_dir, uid)


# --- install and uninstall -------------------------------------------------------------------------


def shell_line(commands: list[list[str]]) -> str:
    return " && ".join(shlex.join(argv) for argv in commands)


class Manager:
    """launchctl / systemctl: run, or (--print-only, or not on PATH) only printed."""

    def __init__(self, service: Service, print_only: bool, runner: Runner, which: Which,
                 say: Callable[[str], None]) -> None:  # fmt: skip
        self.service = service
        self.say = say
        self.runner = runner
        present = which(service.tool) is not None
        self.acts = present and not print_only
        self.why_not = "--print-only" if print_only else f"{service.tool} is not on PATH"

    def loaded(self) -> bool:
        return self.acts and self.runner(self.service.loaded_command()).returncode == 0

    def run(self, commands: list[list[str]], what: str, retry: str) -> None:
        for argv in commands:
            ran = self.runner(argv)
            if ran.returncode != 0:
                raise CommandError(f"{what}: `{shlex.join(argv)}` failed ({ran.output or f'exit {ran.returncode}'})"
                                   f"{self.hint(ran.output)}; {retry}")  # fmt: skip
            self.say(f"ran: {shlex.join(argv)}")

    def hint(self, output: str) -> str:
        if self.service.platform == "linux" and ("bus" in output.lower() or "XDG_RUNTIME_DIR" in output):
            return (" (systemctl --user needs your user manager: log in through a session that has one, or run "
                    "`loginctl enable-linger $USER` once)")  # fmt: skip
        return ""


def write_file(service: Service) -> bool:
    """Write the service file (atomically) unless it already says the same; whether it changed."""
    try:
        service.log_dir.mkdir(parents=True, exist_ok=True)  # launchd does not create StandardOutPath's folder
        if service.file.is_file() and service.file.read_bytes() == service.text:
            return False
        service.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = service.file.with_name(service.file.name + ".tmp")
        tmp.write_bytes(service.text)
        tmp.replace(service.file)
    except OSError as exc:
        raise CommandError(f"cannot write {service.file} ({exc.strerror or exc})") from exc
    return True


def install(service: Service, print_only: bool = False, runner: Runner = run_manager,
            which: Which = shutil.which, say: Callable[[str], None] = print) -> int:  # fmt: skip
    manager = Manager(service, print_only, runner, which, say)
    changed = write_file(service)
    say(f"wrote {service.file}" if changed else f"{service.file} is already up to date")
    if not manager.acts:
        say(f"{manager.why_not}: to start the engine now and at each login, run:")
        say(f"  {service.printed_start()}")
    elif (was_loaded := manager.loaded()) and not changed:
        say("the engine is already loaded by the service manager; nothing to do")
    else:
        manager.run(service.start_commands(was_loaded), "the file is written but the engine was not started",
                    "run the commands yourself (`workbench service install --print-only` prints them)")
        say("the engine now runs under the service manager")
    if service.platform == "linux":
        say("to keep it running after you log out (SSH, headless), once: loginctl enable-linger $USER")
        say(f"its output: journalctl --user -u {SYSTEMD_UNIT}; its log: {service.log_dir}")
    else:
        say(f"its output: {service.log_dir / SERVICE_LOG}; its log: {service.log_dir}")
    return EXIT_OK


def uninstall(service: Service, print_only: bool = False, runner: Runner = run_manager,
              which: Which = shutil.which, say: Callable[[str], None] = print) -> int:  # fmt: skip
    manager = Manager(service, print_only, runner, which, say)
    present = service.file.exists()
    if manager.acts and (manager.loaded() or (present and service.platform == "linux")):
        manager.run(service.stop_commands(present), f"{service.file} was kept",
                    "stop it yourself; `workbench service uninstall --print-only` removes the file and prints "
                    "the commands")  # fmt: skip
    if not present:
        say(f"nothing to remove: {service.file} does not exist")
        return EXIT_OK
    # Without systemctl, `disable` is done here: once the unit file is gone, systemctl could not find it to disable
    removing = [service.file]
    if not manager.acts and service.wants_link is not None and service.wants_link.is_symlink():
        removing.append(service.wants_link)
    for path in removing:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise CommandError(f"cannot remove {path} ({exc.strerror or exc})") from exc
        say(f"removed {path}")
    if manager.acts:
        manager.run(service.after_removal(), f"{service.file} is removed", "run `systemctl --user daemon-reload`")
    else:
        stop = service.stop_commands(file_present=False) + service.after_removal()
        say(f"{manager.why_not}: if the engine still runs under the service manager, stop it:")
        say(f"  {'; '.join(shlex.join(argv) for argv in stop)}")
    return EXIT_OK


def run_service(paths: AppPaths, args: argparse.Namespace) -> int:
    service = build_service(detect_platform(args.platform), paths)
    if args.action == "install":
        return install(service, print_only=args.print_only)
    return uninstall(service, print_only=args.print_only)


__all__ = ["build_service", "install", "launchd_plist", "register", "run_service", "systemd_quote", "systemd_unit",
           "uninstall"]
