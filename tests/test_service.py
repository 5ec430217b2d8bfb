"""`workbench service install|uninstall`: the launchd agent and systemd unit files' text, and what is run or printed.
Neither manager runs here: launchctl / systemctl are a recording fake, or --print-only."""

from __future__ import annotations

import os
import plistlib
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from workbench.cli.common import EXIT_ERROR, CommandError
from workbench.cli.service import (
    LAUNCHD_LABEL,
    SYSTEMD_UNIT,
    Ran,
    Service,
    build_service,
    install,
    systemd_quote,
    uninstall,
)
from workbench.core.settings.paths import AppPaths

PYTHON = "/opt/my tools/venv/bin/python3"  # a space: systemd must get it as one word


class FakeManager:
    """launchctl / systemctl: records each command; ``loaded`` answers the is-loaded question; ``fail`` makes the
    commands that start with it fail with that output."""

    def __init__(self, loaded: bool = False, fail: tuple[str, str] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.loaded = loaded
        self.fail = fail

    def __call__(self, argv: Sequence[str]) -> Ran:
        argv = list(argv)
        if argv[1:2] == ["print"] or "is-active" in argv:
            return Ran(0 if self.loaded else 3, "")
        self.calls.append(argv)
        if self.fail and " ".join(argv).startswith(self.fail[0]):
            return Ran(1, self.fail[1])
        if argv[1:2] == ["bootstrap"] or argv[-2:-1] in (["start"], ["restart"]):
            self.loaded = True
        if argv[1:2] == ["bootout"] or "--now" in argv:
            self.loaded = False
        return Ran(0, "")


def never_run(argv: Sequence[str]) -> Ran:
    raise AssertionError(f"ran {argv}")


def on_path(name: str) -> str:
    return f"/usr/bin/{name}"


def service_for(platform: str, tmp_path: Path, with_home: bool = True, python: str = PYTHON) -> Service:
    environ = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    if with_home:
        environ["WORKBENCH_HOME"] = str(tmp_path / "wb home")
    return build_service(platform, AppPaths.under(tmp_path / "wb home"), environ, python=python)


# --- the files -------------------------------------------------------------------------------------


def test_the_launch_agent_parses_and_runs_the_engine_with_its_logs_and_home(tmp_path: Path) -> None:
    service = service_for("darwin", tmp_path)
    assert service.file == tmp_path / "home" / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
    agent = plistlib.loads(service.text)
    assert agent["Label"] == LAUNCHD_LABEL
    assert agent["ProgramArguments"] == [PYTHON, "-m", "workbench.cli", "engine", "--resident"]
    assert agent["RunAtLoad"] is True
    assert agent["KeepAlive"] == {"SuccessfulExit": False}  # restarted when it dies, not after `workbench stop`
    assert agent["ThrottleInterval"] >= 10
    logs = tmp_path / "wb home" / "logs"
    assert Path(agent["StandardOutPath"]).parent == logs
    assert Path(agent["StandardErrorPath"]).parent == logs
    assert agent["EnvironmentVariables"] == {"WORKBENCH_HOME": str(tmp_path / "wb home")}


def test_the_launch_agent_names_no_home_when_none_is_set(tmp_path: Path) -> None:
    assert "EnvironmentVariables" not in plistlib.loads(service_for("darwin", tmp_path, with_home=False).text)


def test_the_systemd_unit_runs_the_engine_and_restarts_it(tmp_path: Path) -> None:
    service = service_for("linux", tmp_path)
    assert service.file == tmp_path / "xdg" / "systemd" / "user" / SYSTEMD_UNIT
    lines = service.text.decode().splitlines()
    assert lines[0] == "[Unit]"
    assert any(line.startswith("Description=") for line in lines)
    assert 'ExecStart="/opt/my tools/venv/bin/python3" -m workbench.cli engine --resident' in lines
    assert "Restart=on-failure" in lines
    assert "RestartSec=5" in lines
    assert f'Environment="WORKBENCH_HOME={tmp_path / "wb home"}"' in lines
    assert lines.index("[Install]") < lines.index("WantedBy=default.target")
    assert not any(line.startswith("Environment=") for line in service_for("linux", tmp_path, False).text.decode()
                   .splitlines())  # fmt: skip


def test_the_systemd_unit_goes_under_dot_config_without_an_absolute_xdg_config_home(tmp_path: Path) -> None:
    for xdg in ({}, {"XDG_CONFIG_HOME": ""}, {"XDG_CONFIG_HOME": "relative/config"}):
        service = build_service("linux", AppPaths.under(tmp_path), {"HOME": str(tmp_path), **xdg}, python=PYTHON)
        assert service.file == tmp_path / ".config" / "systemd" / "user" / SYSTEMD_UNIT


@pytest.mark.parametrize(("word", "variables", "written"), [
    ("/usr/bin/python3", True, "/usr/bin/python3"),
    ("/opt/my tools/python", False, '"/opt/my tools/python"'),
    ('/a "b"\\c', False, '"/a \\"b\\"\\\\c"'),
    ("100%", True, "100%%"),  # a specifier otherwise
    ("$HOME", True, "$$HOME"),  # a variable otherwise, in an argument
    ("/opt/$x", False, "/opt/$x"),  # the program and Environment= expand no variables
    ("a;b", True, '"a;b"'),
    ("", True, '""'),
])  # fmt: skip
def test_systemd_quoting(word: str, variables: bool, written: str) -> None:
    assert systemd_quote(word, variables) == written


def test_other_systems_are_not_supported(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="not supported on this system") as error:
        service_for("win32", tmp_path)
    assert error.value.code == EXIT_ERROR


# --- install and uninstall -------------------------------------------------------------------------


@pytest.mark.parametrize("platform", ["darwin", "linux"])
def test_install_then_uninstall_runs_the_manager_and_leaves_nothing(platform: str, tmp_path: Path) -> None:
    service = service_for(platform, tmp_path)
    manager, said = FakeManager(), []
    assert install(service, runner=manager, which=on_path, say=said.append) == 0
    assert service.file.is_file()
    assert service.log_dir.is_dir()  # launchd would not create StandardOutPath's folder
    uid = os.getuid()
    if platform == "darwin":
        assert manager.calls == [["launchctl", "enable", f"gui/{uid}/{LAUNCHD_LABEL}"],
                                 ["launchctl", "bootstrap", f"gui/{uid}", str(service.file)]]  # fmt: skip
    else:
        assert manager.calls == [["systemctl", "--user", "daemon-reload"],
                                 ["systemctl", "--user", "enable", SYSTEMD_UNIT],
                                 ["systemctl", "--user", "start", SYSTEMD_UNIT]]  # fmt: skip
        assert any("loginctl enable-linger" in line for line in said)
    assert f"wrote {service.file}" in said

    manager.calls.clear()
    said.clear()
    assert uninstall(service, runner=manager, which=on_path, say=said.append) == 0
    if platform == "darwin":
        assert manager.calls == [["launchctl", "bootout", f"gui/{uid}/{LAUNCHD_LABEL}"]]
    else:
        assert manager.calls == [["systemctl", "--user", "disable", "--now", SYSTEMD_UNIT],
                                 ["systemctl", "--user", "daemon-reload"]]  # fmt: skip
    assert f"removed {service.file}" in said
    assert not service.file.exists()
    assert list(service.file.parent.iterdir()) == []

    said.clear()
    assert uninstall(service, runner=manager, which=on_path, say=said.append) == 0  # again: nothing to do
    assert f"nothing to remove: {service.file} does not exist" in said


@pytest.mark.parametrize("platform", ["darwin", "linux"])
def test_installing_twice_is_fine(platform: str, tmp_path: Path) -> None:
    service = service_for(platform, tmp_path)
    manager, said = FakeManager(), []
    install(service, runner=manager, which=on_path, say=said.append)
    started = list(manager.calls)
    said.clear()
    assert install(service, runner=manager, which=on_path, say=said.append) == 0
    assert manager.calls == started  # nothing run again
    assert f"{service.file} is already up to date" in said
    assert any("already loaded" in line for line in said)
    assert service.file.read_bytes() == service.text


def test_reinstalling_a_changed_file_reloads_it(tmp_path: Path) -> None:
    manager = FakeManager()
    install(service_for("darwin", tmp_path), runner=manager, which=on_path, say=lambda _: None)
    manager.calls.clear()
    moved = service_for("darwin", tmp_path, python="/usr/local/bin/python3")
    install(moved, runner=manager, which=on_path, say=lambda _: None)
    assert [call[1] for call in manager.calls] == ["bootout", "enable", "bootstrap"]
    assert plistlib.loads(moved.file.read_bytes())["ProgramArguments"][0] == "/usr/local/bin/python3"


@pytest.mark.parametrize("platform", ["darwin", "linux"])
def test_print_only_writes_the_file_and_prints_the_commands(platform: str, tmp_path: Path) -> None:
    service = service_for(platform, tmp_path)
    said: list[str] = []
    assert install(service, print_only=True, runner=never_run, which=on_path, say=said.append) == 0
    assert service.file.is_file()
    uid = os.getuid()
    if platform == "darwin":
        label = f"gui/{uid}/{LAUNCHD_LABEL}"
        assert f"  launchctl bootout {label} 2>/dev/null; launchctl enable {label} && launchctl bootstrap gui/{uid} " \
               f"{shlex.quote(str(service.file))}" in said  # fmt: skip
    else:
        assert f"  systemctl --user daemon-reload && systemctl --user enable {SYSTEMD_UNIT} && systemctl --user " \
               f"restart {SYSTEMD_UNIT}" in said  # fmt: skip
        assert "to keep it running after you log out (SSH, headless), once: loginctl enable-linger $USER" in said
    said.clear()
    assert uninstall(service, print_only=True, runner=never_run, which=on_path, say=said.append) == 0
    assert not service.file.exists()
    expected = (f"launchctl bootout gui/{uid}/{LAUNCHD_LABEL}" if platform == "darwin"
                else f"systemctl --user stop {SYSTEMD_UNIT}; systemctl --user daemon-reload")  # fmt: skip
    assert f"  {expected}" in said


def test_without_systemctl_the_commands_are_printed_and_uninstall_disables_by_itself(tmp_path: Path) -> None:
    service = service_for("linux", tmp_path)
    said: list[str] = []
    install(service, runner=never_run, which=lambda _: None, say=said.append)
    assert any(line.startswith("systemctl is not on PATH") for line in said)
    wants = service.file.parent / "default.target.wants" / SYSTEMD_UNIT  # as `systemctl --user enable` links it
    wants.parent.mkdir()
    wants.symlink_to(service.file)
    uninstall(service, runner=never_run, which=lambda _: None, say=said.append)
    assert not service.file.exists()
    assert not wants.is_symlink()
    assert f"removed {wants}" in said


def test_a_manager_that_fails_is_an_actionable_error(tmp_path: Path) -> None:
    service = service_for("linux", tmp_path)
    manager = FakeManager(fail=("systemctl --user daemon-reload", "Failed to connect to bus: No medium found"))
    with pytest.raises(CommandError) as error:
        install(service, runner=manager, which=on_path, say=lambda _: None)
    assert error.value.code == EXIT_ERROR
    message = str(error.value)
    assert "the file is written but the engine was not started" in message
    assert "Failed to connect to bus" in message
    assert "loginctl enable-linger" in message
    assert "--print-only" in message
    assert service.file.is_file()


def test_uninstall_keeps_the_file_when_the_engine_cannot_be_stopped(tmp_path: Path) -> None:
    service = service_for("darwin", tmp_path)
    manager = FakeManager()
    install(service, runner=manager, which=on_path, say=lambda _: None)
    manager.fail = ("launchctl bootout", "Boot-out failed: 5: Input/output error")
    with pytest.raises(CommandError, match="was kept"):
        uninstall(service, runner=manager, which=on_path, say=lambda _: None)
    assert service.file.is_file()


# --- the verb ----------------------------------------------------------------------------------------


def run_verb(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
           "WORKBENCH_HOME": str(tmp_path / "wb")}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "workbench.cli", "service", *args], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def test_the_verb_keeps_the_exit_statuses_its_help_promises(tmp_path: Path) -> None:
    helped = run_verb(tmp_path, "--help")
    assert helped.returncode == 0
    help_text = " ".join(helped.stdout.split())
    assert "exit status: 0 done" in help_text and "1 it failed" in help_text and "2 bad arguments" in help_text

    installed = run_verb(tmp_path, "install", "--print-only", "--platform", "linux")
    assert installed.returncode == 0, installed.stderr
    unit = tmp_path / "xdg" / "systemd" / "user" / SYSTEMD_UNIT
    python = systemd_quote(sys.executable, variables=False)
    assert f"ExecStart={python} -m workbench.cli engine --resident" in unit.read_text()
    assert "systemctl --user daemon-reload && " in installed.stdout
    assert "loginctl enable-linger $USER" in installed.stdout

    removed = run_verb(tmp_path, "uninstall", "--print-only", "--platform", "linux")
    assert removed.returncode == 0, removed.stderr
    assert not unit.exists()

    assert run_verb(tmp_path).returncode == 2  # no ACTION
    assert run_verb(tmp_path, "install", "--bogus").returncode == 2
    unsupported = run_verb(tmp_path, "install", "--print-only", "--platform", "plan9")
    assert unsupported.returncode == 1
    assert "not supported on this system" in unsupported.stderr
    assert "Traceback" not in unsupported.stderr
    assert not (tmp_path / "home" / "Library").exists()
