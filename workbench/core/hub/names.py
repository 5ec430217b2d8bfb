"""Names that come from outside and become parts of cache paths: checked here, before they touch the file system.

A hub (or whatever answers at ``HF_ENDPOINT``) names the files of a repo, their ETags and the commit a revision
points at; the cache lays them out as ``blobs/<etag>``, ``snapshots/<commit>/<file name>`` and
``refs/<revision>``. A hub that lies (a compromised mirror, a proxy) must not be able to write anywhere else, so each
of its names is data with a shape: file names are relative paths without ``..``, ETags and commits are hex digests.
A revision the user types (``main``, ``v1.0``, ``refs/pr/3``) is checked as git checks a ref name.

Each check returns the name unchanged or raises :class:`BadName` with a message that names it (``repr``, so
control characters show).
"""

from __future__ import annotations

import re
from pathlib import Path

MAX_NAME_CHARS = 1024
COMMIT = re.compile(r"[0-9a-f]{40}")
ETAG = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # a git blob sha1 (small files) or a sha256 (LFS files)
REPO_ID = re.compile(r"(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}")
_DRIVE = re.compile(r"[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


class BadName(ValueError):
    """A name that must not become part of a path; the message says which and why."""


def _shown(name: object) -> str:
    return repr(name)[:200]


def check_file_name(name: object) -> str:
    """A repo file name: relative, ``/``-separated, no empty, ``.`` or ``..`` part, no backslash, NUL, control
    character or drive letter."""
    if not isinstance(name, str) or not name:
        raise BadName(f"{_shown(name)} is not a file name")
    why = None
    if len(name) > MAX_NAME_CHARS:
        why = f"longer than {MAX_NAME_CHARS} characters"
    elif _CONTROL.search(name):
        why = "it holds a NUL or control character"
    elif "\\" in name:
        why = "it holds a backslash"
    elif name.startswith("/"):
        why = "it is an absolute path"
    elif _DRIVE.match(name):
        why = "it starts with a drive letter"
    elif any(part in ("", ".", "..") for part in name.split("/")):
        why = "it has an empty, '.' or '..' part"
    if why:
        raise BadName(f"the file name {_shown(name)} is not a relative path inside the repo ({why})")
    return name


def check_etag(etag: object, what: str = "ETag", file_name: str | None = None) -> str:
    """An ETag the cache names a blob by: a lowercase sha1 or sha256 hex digest. ``what`` and ``file_name`` say in
    the message which one it was (the hashes a listing gives become ETags too)."""
    if not isinstance(etag, str) or not ETAG.fullmatch(etag):
        of = f" given for {_shown(file_name)}" if file_name is not None else ""
        raise BadName(f"the {what} {_shown(etag)}{of} is not a hex digest (40 or 64 hex digits)")
    return etag


def check_commit(sha: object) -> str:
    """A commit id as the hub returns it: 40 lowercase hex digits."""
    if not isinstance(sha, str) or not COMMIT.fullmatch(sha):
        raise BadName(f"the commit {_shown(sha)} is not a commit id (40 hex digits)")
    return sha


def check_revision(revision: object) -> str:
    """A revision a user gives (a branch, a tag, ``refs/pr/3``, a commit id), checked with git's rules for ref
    names (``git check-ref-format``), which also keep ``refs/<revision>`` inside the repo's folder."""
    if not isinstance(revision, str) or not revision:
        raise BadName(f"{_shown(revision)} is not a revision")
    why = None
    if len(revision) > 255:
        why = "longer than 255 characters"
    elif _REF_FORBIDDEN.search(revision):
        why = "it holds a space, control character or one of ~ ^ : ? * [ \\"
    elif ".." in revision or "@{" in revision or revision == "@":
        why = "it holds '..' or '@{' or is '@'"
    elif revision.startswith("/") or revision.endswith(("/", ".")) or "//" in revision:
        why = "it starts or ends with '/', ends with '.' or holds '//'"
    elif any(part.startswith(".") or part.endswith(".lock") for part in revision.split("/")):
        why = "a part starts with '.' or ends with '.lock'"
    if why:
        raise BadName(f"{_shown(revision)} is not a valid revision name ({why})")
    return revision


def check_repo_id(repo_id: object) -> str:
    """``org/name`` (or ``name``) as the hub allows them."""
    if not isinstance(repo_id, str) or not REPO_ID.fullmatch(repo_id) or ".." in repo_id:
        raise BadName(f"{_shown(repo_id)} is not a repo id (org/name)")
    return repo_id


def inside(folder: Path, file_name: str) -> Path:
    """``folder / file_name`` for a checked file name, refused if it would land outside ``folder`` once the
    links on the way are followed (a folder of the snapshot that is a link to elsewhere)."""
    path = Path(folder) / check_file_name(file_name)
    base = Path(folder).resolve()
    if not path.parent.resolve().is_relative_to(base):
        raise BadName(f"the file name {_shown(file_name)} leads outside {folder}")
    return path
