"""Where the engine lives: its private folder, socket and lock, one per data folder; and the code's fingerprint.

The folder is ``<runtime folder>/<key>`` (the key: the first 12 hex digits of the sha256 of the resolved data folder,
so two homes never meet each other's engine), mode 0700 and owned by the user: a folder owned by someone else, or
with group/other permissions that cannot be taken away, is refused. On Linux the runtime folder can be missing or
unwritable (logind removes it at logout): then a private folder under the data folder is used. A socket path longer
than Unix sockets allow falls back to a short private folder under /tmp.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import os
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from workbench.core.settings.paths import AppPaths

SOCKET_NAME = "engine.sock"
LOCK_NAME = "engine.lock"
MAX_SOCKET_PATH = 104  # bytes, with the terminating NUL as macOS counts it (sun_path is 104 there, 108 on Linux)
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


class EngineHomeError(Exception):
    """The engine's folder cannot be used safely; the message says what to do."""


@dataclass(frozen=True)
class EngineHome:
    folder: Path
    key: str

    @property
    def socket(self) -> Path:
        return self.folder / SOCKET_NAME

    @property
    def lock(self) -> Path:
        return self.folder / LOCK_NAME


def engine_key(data_dir: Path) -> str:
    return hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:12]


def private_dir(path: Path, parents: bool = True) -> Path:
    """``path`` as a folder of mode 0700 owned by this user (created if missing). Raises EngineHomeError for a
    folder owned by someone else or whose group/other permissions cannot be removed; OSError when it cannot be
    made."""
    path.mkdir(mode=0o700, parents=parents, exist_ok=True)
    info = os.stat(path, follow_symlinks=False)
    if not stat.S_ISDIR(info.st_mode):
        raise EngineHomeError(f"{path} is not a folder; remove it so the engine can make its own")
    if info.st_uid != os.getuid():
        raise EngineHomeError(f"{path} belongs to another user (uid {info.st_uid}); the engine's socket must live in a "
                              "folder only you can open: remove it or set WORKBENCH_HOME elsewhere")  # fmt: skip
    if info.st_mode & 0o077:
        with contextlib.suppress(OSError):
            os.chmod(path, 0o700)
        if os.stat(path, follow_symlinks=False).st_mode & 0o077:
            raise EngineHomeError(f"{path} is open to other users and its permissions cannot be changed to 0700 "
                                  f"(chmod 700 {path})")  # fmt: skip
    return path


def _usable_runtime(runtime_dir: Path | None, key: str, create_parents: bool) -> Path | None:
    """``runtime_dir/key`` as a private folder, or None when the runtime folder is missing or unwritable."""
    if runtime_dir is None:
        return None
    if not create_parents and not runtime_dir.parent.is_dir():  # /run/user/UID is gone: logged out
        return None
    try:
        private_dir(runtime_dir, parents=create_parents)
        folder = private_dir(runtime_dir / key, parents=False)
    except PermissionError:
        return None
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EEXIST):
            return None
        raise
    return folder if os.access(folder, os.W_OK | os.X_OK) else None


def engine_home(paths: AppPaths, tmp_root: Path | None = None) -> EngineHome:
    """The engine's folder for this data folder, made private (see the module's docstring). ``tmp_root``: where the
    short fallback goes (default: the system's temporary folder)."""
    key = engine_key(paths.data_dir)
    # under WORKBENCH_HOME the runtime folder sits beside the data folder and may be made; the platform's
    # (/run/user/UID) is the system's to make, and its absence means it is gone
    under_home = paths.runtime_dir is not None and paths.runtime_dir.parent == paths.data_dir.parent
    folder = _usable_runtime(paths.runtime_dir, key, create_parents=under_home)
    if folder is None:
        paths.data_dir.mkdir(parents=True, exist_ok=True)
        folder = private_dir(paths.data_dir / "run")
    if len(os.fsencode(folder / SOCKET_NAME)) >= MAX_SOCKET_PATH:
        base = Path(tmp_root or tempfile.gettempdir()) / f"workbench-{os.getuid()}"
        private_dir(base)
        folder = private_dir(base / key, parents=False)
    return EngineHome(folder=folder, key=key)


# --- the lock -------------------------------------------------------------------------------------


class EngineLock:
    """``engine.lock``, held (flock, exclusive) by the running engine for its lifetime and by a face while it starts
    one: two faces starting at once start one engine. The lock belongs to the open file, so a child handed the fd
    holds it too."""

    def __init__(self, path: Path, fd: int | None = None) -> None:
        self.path = path
        self.fd = fd

    @property
    def held(self) -> bool:
        return self.fd is not None

    def try_acquire(self) -> bool:
        if self.fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return True

    def acquire(self, timeout_s: float, poll_s: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)
        return True

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def detach(self) -> None:
        """Close this copy of the fd without unlocking: another process holding the same open file keeps the lock."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


# --- the code's fingerprint -----------------------------------------------------------------------


@functools.cache
def code_fingerprint(root: Path = PACKAGE_ROOT) -> str:
    """sha256 over the package's .py files (relative path and bytes), computed once per root: editable installs keep
    the version "0.1.0" across changes, so the version alone does not tell two engines' code apart."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()
