"""A loopback Hugging Face hub: a real HTTP server on 127.0.0.1 that serves model repos from a folder.

It speaks the part of the hub's HTTP API that huggingface_hub 2.4 uses (``list_models``, ``model_info``,
``list_repo_tree``, ``get_paths_info``, ``hf_hub_download``, ``snapshot_download``), so tests and people can point
the app at it with ``HF_ENDPOINT``. Faults (latency, bandwidth, cut or stalled bodies, 401/404/429/500) are knobs on
``LoopbackHub.faults`` that can be changed while it runs; ``LoopbackHub.lies`` makes it a dishonest hub that gives
file names, ETags and commits no real hub would (``../../evil.json``, an absolute path, ``../etag_evil``).

Repos root layout: ``<root>/<org>/<name>/`` holds a repo's files (any depth). An optional
``<root>/<org>/<name>/.hub.json`` holds what is not a file (downloads, likes, dates, tags, gated, ...); any key in it
overrides the computed property of the same name. Two keys are special: ``file_sizes`` (``{"path": bytes}``) makes
listings (siblings, tree, paths-info, usedStorage) report a size other than the size on disk. That is for placeholder
repos whose real weights would be gigabytes: their resolve URLs still serve the small file on disk, with its own size
and hashes, so such repos are for browsing, not for downloading.

Run ``python -m tests.support.hub_server --demo`` to browse a demo catalog from the app.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import io
import json
import math
import os
import posixpath
import re
import select
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

METADATA_FILE = ".hub.json"
LFS_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth", ".onnx", ".npz", ".h5", ".msgpack")
LFS_MIN_SIZE = 1024 * 1024
LFS_POINTER_SIZE = 134
DEFAULT_TOKEN = "hf_loopback_token"
STREAM_CHUNK = 256 * 1024

# What ``expand`` may ask for (huggingface_hub's ExpandModelProperty_T); anything else is a 400 like on the hub.
EXPANDABLE = frozenset(
    {
        "author", "baseModels", "cardData", "childrenModelCount", "config", "createdAt", "disabled", "downloads",
        "downloadsAllTime", "evalResults", "gated", "gguf", "inference", "inferenceProviderMapping", "lastModified",
        "library_name", "likes", "mask_token", "model-index", "pipeline_tag", "private", "resourceGroup",
        "safetensors", "sha", "siblings", "spaces", "tags", "transformersInfo", "trendingScore", "usedStorage",
        "widgetData",
    }
)  # fmt: skip
LIST_FIELDS = (
    "_id", "id", "modelId", "author", "sha", "lastModified", "createdAt", "private", "gated", "downloads", "likes",
    "trendingScore", "tags", "pipeline_tag", "library_name",
)  # fmt: skip
SORT_KEYS = frozenset({"downloads", "likes", "lastModified", "createdAt", "trendingScore", "id"})
CONFIG_KEYS = (
    "architectures", "model_type", "quantization_config", "quantization", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "hidden_size", "head_dim",
)  # fmt: skip
SAFETENSORS_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8,
}  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# Knobs and records


@dataclass
class HubFaults:
    """Faults the hub injects; change the fields at any time, the next request sees them.

    Counted faults (``rate_limit``, ``server_error``, ``corrupt_next``, ``cut_times``, ``stall_times``) count down as
    they fire; ``corrupt_next`` flips one byte in the middle of the next N file bodies (resolve GETs), as a bad proxy
    or disk would;
    ``None`` for ``cut_times``/``stall_times`` means every time. ``only_path`` (a substring of the request path) and
    ``only_method`` narrow the counted faults, the cut and the stall to matching requests; latency and bandwidth
    apply to every request.
    """

    latency_s: float = 0.0
    bandwidth_bps: int | None = None
    cut_after_bytes: int | None = None
    cut_times: int | None = 1
    stall_after_bytes: int | None = None
    stall_s: float = 0.0
    stall_times: int | None = 1
    gated_repos: set[str] = field(default_factory=set)
    not_found_repos: set[str] = field(default_factory=set)
    rate_limit: int | None = None
    retry_after_s: int | str = 1  # a string goes out as it is (an HTTP date, "86400", junk)
    server_error: int | None = None
    corrupt_next: int | None = None
    only_path: str | None = None
    only_method: str | None = None

    def applies_to(self, method: str, path: str) -> bool:
        if self.only_method is not None and method.upper() != self.only_method.upper():
            return False
        return self.only_path is None or self.only_path in unquote(path)


@dataclass
class HubLies:
    """What a dishonest hub (a compromised mirror, a proxy) says instead of the truth, for tests that a client treats
    every name a hub gives as data.

    ``file_names`` renames files (``{real path: the name listings, trees, paths-info and resolve use}``; a resolve
    URL the client normalised, ``../`` resolved away, still finds the file); ``etag`` goes out as the ETag of every
    file; ``commit`` is the repo's sha everywhere (model_info, trees, ``X-Repo-Commit``) and is accepted as a
    revision; ``listed_hash`` replaces the hashes listings give (``blobId`` and ``lfs.sha256``). ``repo``: lie about
    that repo only (None: every repo).
    """

    file_names: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    commit: str | None = None
    listed_hash: str | None = None
    repo: str | None = None

    def about(self, repo_id: str) -> bool:
        return self.repo is None or self.repo == repo_id

    def tell(self, repo: Repo) -> Repo:
        """The repo as this hub describes it."""
        if not self.about(repo.repo_id) or not (self.file_names or self.commit or self.listed_hash):
            return repo
        files = []
        for f in repo.files:
            f = replace(f, path=self.file_names.get(f.path, f.path))
            if self.listed_hash is not None:
                f = replace(f, oid=self.listed_hash, sha256=self.listed_hash)
            files.append(f)
        sha = self.commit if self.commit is not None else repo.sha
        return Repo(repo.repo_id, repo.folder, repo.meta, files, sha, {**repo.properties, "sha": sha})


class RecordedRequest(NamedTuple):
    """One request as the hub saw it; ``headers`` keeps a few (Authorization masked)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]


RECORDED_HEADERS = ("Range", "Accept-Encoding", "Content-Type", "If-None-Match")


# --------------------------------------------------------------------------------------------------------------------
# Repos on disk


@dataclass(frozen=True)
class RepoFile:
    """One file of a repo: ``oid`` is its git blob sha1, ``sha256`` the LFS oid, ``listed_size`` what listings say."""

    path: str
    disk_path: Path
    size: int
    listed_size: int
    oid: str
    sha256: str

    @property
    def is_lfs(self) -> bool:
        return self.path.endswith(LFS_SUFFIXES) or self.listed_size >= LFS_MIN_SIZE

    @property
    def etag(self) -> str:
        return self.sha256 if self.is_lfs else self.oid


@dataclass
class Repo:
    repo_id: str
    folder: Path
    meta: dict[str, Any]
    files: list[RepoFile]
    sha: str
    properties: dict[str, Any]

    @property
    def is_private(self) -> bool:
        return bool(self.properties.get("private"))

    @property
    def is_gated(self) -> bool:
        return bool(self.properties.get("gated"))

    def file(self, path: str) -> RepoFile | None:
        return next((f for f in self.files if f.path == path), None)

    def directories(self) -> set[str]:
        found: set[str] = set()
        for f in self.files:
            parts = f.path.split("/")[:-1]
            found.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        return found

    def tree_oid(self, directory: str) -> str:
        prefix = f"{directory}/"
        listing = "".join(f"{f.path}\0{f.oid}\n" for f in self.files if f.path.startswith(prefix))
        return hashlib.sha1(b"tree\0" + listing.encode()).hexdigest()

    def file_entry(self, f: RepoFile, *, expand: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": f.oid, "size": f.listed_size, "path": f.path}
        if f.is_lfs:
            entry["lfs"] = {"oid": f.sha256, "size": f.listed_size, "pointerSize": LFS_POINTER_SIZE}
        if expand:
            entry["lastCommit"] = self.last_commit()
            entry["securityFileStatus"] = {
                "status": "safe",
                "avScan": {"virusFound": False, "virusNames": None},
                "pickleImportScan": None,
            }
        return entry

    def directory_entry(self, directory: str, *, expand: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "directory", "oid": self.tree_oid(directory), "path": directory}
        if expand:
            entry["lastCommit"] = self.last_commit()
        return entry

    def last_commit(self) -> dict[str, str]:
        return {"id": self.sha, "title": "Upload folder using huggingface_hub", "date": self.properties["lastModified"]}

    def siblings(self, *, blobs: bool) -> list[dict[str, Any]]:
        if not blobs:
            return [{"rfilename": f.path} for f in self.files]
        out: list[dict[str, Any]] = []
        for f in self.files:
            sibling: dict[str, Any] = {"rfilename": f.path, "size": f.listed_size, "blobId": f.oid}
            if f.is_lfs:
                sibling["lfs"] = {"sha256": f.sha256, "size": f.listed_size, "pointerSize": LFS_POINTER_SIZE}
            out.append(sibling)
        return out


class RepoStore:
    """Reads repos from the repos root on each request, with file hashes cached by (path, size, mtime)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._hashes: dict[tuple[str, int, int], tuple[str, str]] = {}
        self._headers: dict[tuple[str, int, int], dict[str, int]] = {}

    def repo_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        ids = []
        for org in sorted(self.root.iterdir()):
            if not org.is_dir() or org.name.startswith("."):
                continue
            ids.extend(f"{org.name}/{repo.name}" for repo in sorted(org.iterdir()) if _is_repo_dir(repo))
        return ids

    def load(self, repo_id: str) -> Repo | None:
        parts = repo_id.split("/")
        if len(parts) != 2 or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            return None
        folder = self.root / parts[0] / parts[1]
        if not _is_repo_dir(folder):
            return None
        meta = _read_metadata(folder)
        sizes = {str(k): int(v) for k, v in (meta.get("file_sizes") or {}).items()}
        files = []
        for disk_path in _walk_files(folder):
            rel = disk_path.relative_to(folder).as_posix()
            stat = disk_path.stat()
            oid, sha256 = self._hash(disk_path, stat)
            files.append(RepoFile(rel, disk_path, stat.st_size, sizes.get(rel, stat.st_size), oid, sha256))
        files.sort(key=lambda f: f.path)
        listing = "".join(f"{f.path}\0{f.oid}\0{f.listed_size}\n" for f in files)
        sha = hashlib.sha1(f"{repo_id}\n{listing}".encode()).hexdigest()
        repo = Repo(repo_id, folder, meta, files, sha, {})
        repo.properties = self._properties(repo)
        return repo

    def _hash(self, path: Path, stat: os.stat_result) -> tuple[str, str]:
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = self._hashes.get(key)
        if cached is not None:
            return cached
        git = hashlib.sha1(b"blob %d\0" % stat.st_size)
        sha256 = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(1024 * 1024):
                git.update(chunk)
                sha256.update(chunk)
        result = (git.hexdigest(), sha256.hexdigest())
        with self._lock:
            self._hashes[key] = result
        return result

    def _safetensors_counts(self, f: RepoFile) -> dict[str, int]:
        stat = f.disk_path.stat()
        key = (str(f.disk_path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = self._headers.get(key)
        if cached is None:
            cached = safetensors_parameter_counts(f.disk_path)
            with self._lock:
                self._headers[key] = cached
        return cached

    def _properties(self, repo: Repo) -> dict[str, Any]:
        """Everything the hub would say about the repo, before ``expand`` picks from it."""
        org = repo.repo_id.split("/")[0]
        card = _front_matter(repo.folder / "README.md")
        mtimes = [f.disk_path.stat().st_mtime for f in repo.files] or [repo.folder.stat().st_mtime]
        props: dict[str, Any] = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": org,
            "sha": repo.sha,
            "lastModified": iso_date(max(mtimes)),
            "createdAt": iso_date(min(mtimes)),
            "private": False,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "trendingScore": 0,
            "library_name": card.get("library_name"),
            "pipeline_tag": card.get("pipeline_tag"),
            "spaces": [],
            "usedStorage": sum(f.listed_size for f in repo.files),
        }
        if card:
            props["cardData"] = card
        config = _read_config(repo.folder / "config.json")
        if config is not None:
            props["config"] = config
        counts: dict[str, int] = {}
        for f in repo.files:
            if f.path.endswith(".safetensors"):
                for dtype, n in self._safetensors_counts(f).items():
                    counts[dtype] = counts.get(dtype, 0) + n
        if counts:
            props["safetensors"] = {"parameters": counts, "total": sum(counts.values())}
        for key, value in repo.meta.items():
            if key != "file_sizes":
                props[key] = value
        for key in ("lastModified", "createdAt"):
            props[key] = iso_date(props[key])
        if "tags" not in repo.meta:
            props["tags"] = _derived_tags(props, card, repo.files)
        return props


def _is_repo_dir(folder: Path) -> bool:
    return folder.is_dir() and not folder.name.startswith(".")


def _walk_files(folder: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        base = Path(dirpath)
        for name in sorted(filenames):
            if base == folder and name == METADATA_FILE:
                continue
            yield base / name


def _read_metadata(folder: Path) -> dict[str, Any]:
    path = folder / METADATA_FILE
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def _front_matter(readme: Path) -> dict[str, Any]:
    """The YAML front matter of a model card, or {}."""
    if not readme.is_file():
        return {}
    text = readme.read_text(encoding="utf-8")
    match = re.match(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", text, re.DOTALL)
    if match is None:
        return {}
    import yaml  # a dependency of huggingface_hub

    data = yaml.safe_load(match.group(1))
    return data if isinstance(data, dict) else {}


def _read_config(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    if not isinstance(config, dict):
        return None
    return {key: config[key] for key in CONFIG_KEYS if key in config}


def _derived_tags(props: dict[str, Any], card: dict[str, Any], files: list[RepoFile]) -> list[str]:
    tags: list[str] = []
    card_tags = card.get("tags") or []
    candidates: list[Any] = [props.get("library_name"), *(card_tags if isinstance(card_tags, list) else [card_tags])]
    if any(f.path.endswith(".safetensors") for f in files):
        candidates.append("safetensors")
    if any(f.path.endswith(".gguf") for f in files):
        candidates.append("gguf")
    candidates.append(props.get("pipeline_tag"))
    if card.get("license"):
        candidates.append(f"license:{card['license']}")
    for tag in candidates:
        if tag and str(tag) not in tags:
            tags.append(str(tag))
    return tags


def safetensors_parameter_counts(path: Path) -> dict[str, int]:
    """Element count per dtype declared by a safetensors header (the data section is not read)."""
    with path.open("rb") as fh:
        prefix = fh.read(8)
        if len(prefix) != 8:
            return {}
        header_len = int.from_bytes(prefix, "little")
        if header_len > 100 * 1024 * 1024:
            return {}
        try:
            header = json.loads(fh.read(header_len))
        except ValueError:
            return {}
    counts: dict[str, int] = {}
    for name, tensor in header.items():
        if name == "__metadata__" or not isinstance(tensor, dict):
            continue
        dtype = str(tensor.get("dtype"))
        counts[dtype] = counts.get(dtype, 0) + math.prod(int(d) for d in tensor.get("shape", []))
    return counts


def iso_date(value: Any) -> str:
    """A date as the hub writes it (``2024-05-01T12:00:00.000Z``), from a timestamp or an ISO string."""
    if isinstance(value, int | float):
        moment = datetime.fromtimestamp(value, UTC)
    else:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --------------------------------------------------------------------------------------------------------------------
# HTTP


class HubError(Exception):
    """An error answer: status, hub error code (``X-Error-Code``) and message."""

    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


def _flag(values: dict[str, list[str]], name: str) -> bool:
    value = (values.get(name) or [""])[-1].lower()
    return value in ("1", "true", "yes", "on")


def _list_param(values: dict[str, list[str]], name: str) -> list[str]:
    return [item.strip() for value in values.get(name, []) for item in value.split(",") if item.strip()]


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return max(0, int(json.loads(base64.urlsafe_b64decode(cursor.encode()))["offset"]))
    except (ValueError, KeyError, TypeError, binascii.Error) as err:
        raise HubError(400, "Invalid cursor") from err


def _parse_parameter_bound(text: str) -> float:
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMBT]?)\s*", text.upper())
    if match is None:
        raise HubError(400, f"Invalid num_parameters bound: {text}")
    scale = {"": 1, "K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}[match.group(2)]
    return float(match.group(1)) * scale


class _HubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    hub: LoopbackHub


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LoopbackHub/1.0"
    timeout = 300
    server: _HubHTTPServer

    # -- plumbing -------------------------------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.server.hub._connections.add(self.connection)

    def finish(self) -> None:
        self.server.hub._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def handle(self) -> None:
        with contextlib.suppress(OSError):  # the client went away
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.hub.verbose:
            sys.stderr.write(f"[hub] {self.address_string()} {format % args}\n")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # -- dispatch -------------------------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        hub = self.server.hub
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        hub._record(method, url.path, url.query, self.headers)
        faults = hub.faults
        if faults.latency_s > 0 and not hub._wait(faults.latency_s):
            self.close_connection = True
            return
        try:
            if hub._take("rate_limit", method, url.path):
                value = hub.faults.retry_after_s
                retry = value if isinstance(value, str) else str(max(0, int(value)))
                raise HubError(429, "You have been rate-limited; retry later.", headers={"Retry-After": retry})
            if hub._take("server_error", method, url.path):
                raise HubError(500, "Internal Error - We're working hard to fix this as soon as possible!")
            self._route(method, url.path, parse_qs(url.query, keep_blank_values=True), body)
        except HubError as err:
            self._send_error(err)
        except (ValueError, KeyError, TypeError) as err:
            self._send_error(HubError(400, f"Bad request: {err}"))

    def _route(self, method: str, raw_path: str, query: dict[str, list[str]], body: bytes) -> None:
        parts = [unquote(p) for p in raw_path.split("/")[1:]]
        if parts and parts[-1] == "" and len(parts) > 1:
            parts = parts[:-1]
        if parts[:2] == ["api", "models"]:
            if method == "GET" and len(parts) == 2:
                return self._list_models(query)
            if len(parts) >= 4:
                repo_id, rest = f"{parts[2]}/{parts[3]}", parts[4:]
                if method == "GET" and not rest:
                    return self._model_info(repo_id, "main", query)
                if method == "GET" and len(rest) == 2 and rest[0] == "revision":
                    return self._model_info(repo_id, rest[1], query)
                if method == "GET" and len(rest) >= 2 and rest[0] == "tree":
                    return self._tree(repo_id, rest[1], "/".join(rest[2:]), query)
                if method == "POST" and len(rest) == 2 and rest[0] == "paths-info":
                    return self._paths_info(repo_id, rest[1], body)
                if method == "GET" and rest == ["refs"]:
                    return self._refs(repo_id)
        if parts == ["api", "whoami-v2"] and method == "GET":
            return self._whoami()
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(method, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        if method in ("GET", "HEAD") and (lied := self._lied_resolve(unquote(raw_path))) is not None:
            return self._resolve(method, *lied)
        raise HubError(404, "Sorry, we can't find the page you are looking for.")

    def _lied_resolve(self, path: str) -> tuple[str, str, str] | None:
        """``(repo, revision, name)`` of a lying file name whose resolve URL the client normalised to ``path``."""
        hub = self.server.hub
        lies = hub.lies
        if not lies.file_names:
            return None
        for repo_id in [lies.repo] if lies.repo else hub.store.repo_ids():
            loaded = hub.store.load(repo_id)
            if loaded is None:
                continue
            repo = lies.tell(loaded)
            for revision in ("main", repo.sha, *hub.revisions):
                for name in lies.file_names.values():
                    if posixpath.normpath(f"/{repo_id}/resolve/{quote(revision, safe='')}/{name}") == path:
                        return repo_id, revision, name
        return None

    # -- access -----------------------------------------------------------------------------------------------------

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def _authorized(self) -> bool:
        return self._token() == self.server.hub.accepted_token

    def _repo(self, repo_id: str) -> Repo:
        hub = self.server.hub
        repo = None if repo_id in hub.faults.not_found_repos else hub.store.load(repo_id)
        if repo is None or (repo.is_private and not self._authorized()):
            status = 401 if repo is not None else 404
            raise HubError(status, "Repository not found", "RepoNotFound")
        return hub.lies.tell(repo)

    def _check_revision(self, repo: Repo, revision: str) -> None:
        if revision not in ("main", repo.sha, *self.server.hub.revisions):
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _check_gate(self, repo: Repo) -> None:
        if not (repo.is_gated or repo.repo_id in self.server.hub.faults.gated_repos):
            return
        token = self._token()
        if token is None:
            raise HubError(
                401,
                f"Access to model {repo.repo_id} is restricted. You must have access to it and be authenticated "
                "to access it. Please log in.",
                "GatedRepo",
            )
        if token != self.server.hub.accepted_token:
            raise HubError(
                403,
                f"Access to model {repo.repo_id} is restricted and you are not in the authorized list. "
                f"Visit {self._base_url()}/{repo.repo_id} to ask for access.",
                "GatedRepo",
            )

    # -- endpoints --------------------------------------------------------------------------------------------------

    def _list_models(self, query: dict[str, list[str]]) -> None:
        hub = self.server.hub
        search = (query.get("search") or [""])[-1].lower()
        author = (query.get("author") or [""])[-1].lower()
        filters = _list_param(query, "filter")
        pipeline = (query.get("pipeline_tag") or [""])[-1]
        gated = (query.get("gated") or [""])[-1].lower()
        bounds = (query.get("num_parameters") or [""])[-1]
        expand = _list_param(query, "expand")
        unknown = [p for p in expand if p not in EXPANDABLE]
        if unknown:
            raise HubError(400, f'"expand" must be one of the model properties, not {", ".join(unknown)}')

        repos = []
        for repo_id in hub.store.repo_ids():
            if repo_id in hub.faults.not_found_repos:
                continue
            repo = hub.store.load(repo_id)
            if repo is None or (repo.is_private and not self._authorized()):
                continue
            props = repo.properties
            tags = [str(t) for t in props.get("tags") or []]
            if search and search not in repo_id.lower():
                continue
            if author and author != str(props.get("author") or "").lower():
                continue
            if pipeline and pipeline != props.get("pipeline_tag"):
                continue
            if any(f not in tags and f not in (props.get("library_name"), props.get("pipeline_tag")) for f in filters):
                continue
            if gated in ("true", "false") and bool(props.get("gated")) != (gated == "true"):
                continue
            if bounds and not self._within_parameter_bounds(props, bounds):
                continue
            repos.append(repo)

        sort = (query.get("sort") or ["trendingScore"])[-1]
        if sort not in SORT_KEYS:
            raise HubError(400, f"Invalid sort key: {sort}")
        descending = (query.get("direction") or ["-1"])[-1] != "1"
        repos.sort(key=lambda r: r.repo_id)
        repos.sort(key=lambda r: r.properties.get(sort) or 0, reverse=descending)

        limit = int((query.get("limit") or [hub.page_size])[-1])
        limit = max(1, min(limit, 1000))
        start = _decode_cursor((query.get("cursor") or [None])[-1])
        page = repos[start : start + limit]
        items = [self._list_item(repo, query, expand) for repo in page]
        headers = {}
        if start + limit < len(repos):
            headers["Link"] = f'<{self._next_url(query, start + limit)}>; rel="next"'
        self._send_json(items, headers=headers)

    def _within_parameter_bounds(self, props: dict[str, Any], bounds: str) -> bool:
        total = (props.get("safetensors") or {}).get("total") or (props.get("gguf") or {}).get("total")
        if total is None:
            return False
        for part in bounds.split(","):
            kind, _, value = part.partition(":")
            if kind == "min" and total < _parse_parameter_bound(value):
                return False
            if kind == "max" and total > _parse_parameter_bound(value):
                return False
        return True

    def _list_item(self, repo: Repo, query: dict[str, list[str]], expand: list[str]) -> dict[str, Any]:
        props = repo.properties
        if expand:
            names = ["_id", "id", *expand]
        else:
            names = list(LIST_FIELDS)
            if _flag(query, "full"):
                names += ["siblings", "disabled"]
            if _flag(query, "cardData") or _flag(query, "full"):
                names.append("cardData")
            if _flag(query, "config"):
                names.append("config")
        item = {}
        for name in names:
            value = repo.siblings(blobs=False) if name == "siblings" else props.get(name)
            if value is not None:
                item[name] = value
        return item

    def _model_info(self, repo_id: str, revision: str, query: dict[str, list[str]]) -> None:
        repo = self._repo(repo_id)
        self._check_revision(repo, revision)
        expand = _list_param(query, "expand")
        unknown = [p for p in expand if p not in EXPANDABLE]
        if unknown:
            raise HubError(400, f'"expand" must be one of the model properties, not {", ".join(unknown)}')
        props = dict(repo.properties)
        props["siblings"] = repo.siblings(blobs=_flag(query, "blobs"))
        names = ["_id", "id", *expand] if expand else list(props)
        self._send_json({name: props[name] for name in names if props.get(name) is not None})

    def _tree(self, repo_id: str, revision: str, path: str, query: dict[str, list[str]]) -> None:
        hub = self.server.hub
        repo = self._repo(repo_id)
        self._check_revision(repo, revision)
        path = path.strip("/")
        directories = repo.directories()
        if path and path not in directories:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": repo.sha})
        recursive = _flag(query, "recursive")
        expand = _flag(query, "expand")
        prefix = f"{path}/" if path else ""

        def wanted(item: str) -> bool:
            return item.startswith(prefix) and (recursive or "/" not in item[len(prefix) :])

        entries = [repo.directory_entry(d, expand=expand) for d in sorted(directories) if wanted(d)]
        entries += [repo.file_entry(f, expand=expand) for f in repo.files if wanted(f.path)]
        entries.sort(key=lambda e: e["path"])
        start = _decode_cursor((query.get("cursor") or [None])[-1])
        size = max(1, hub.tree_page_size)
        headers = {}
        if start + size < len(entries):
            headers["Link"] = f'<{self._next_url(query, start + size)}>; rel="next"'
        self._send_json(entries[start : start + size], headers=headers)

    def _paths_info(self, repo_id: str, revision: str, body: bytes) -> None:
        repo = self._repo(repo_id)
        self._check_revision(repo, revision)
        content_type = self.headers.get("Content-Type") or ""
        if "json" in content_type:
            payload = json.loads(body or b"{}")
            paths = payload.get("paths") or []
            expand = bool(payload.get("expand"))
        else:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
            paths = form.get("paths", [])
            expand = _flag(form, "expand")
        directories = repo.directories()
        entries = []
        for raw in paths:
            item = str(raw).strip("/")
            found = repo.file(item)
            if found is not None:
                entries.append(repo.file_entry(found, expand=expand))
            elif item in directories:
                entries.append(repo.directory_entry(item, expand=expand))
        self._send_json(entries)

    def _refs(self, repo_id: str) -> None:
        repo = self._repo(repo_id)
        branch = {"name": "main", "ref": "refs/heads/main", "targetCommit": repo.sha}
        self._send_json({"branches": [branch], "converts": [], "tags": []})

    def _whoami(self) -> None:
        if not self._authorized():
            raise HubError(401, "Invalid credentials in Authorization header")
        self._send_json(
            {
                "type": "user",
                "name": "loopback",
                "fullname": "Loopback User",
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "loopback", "role": "read"}},
            }
        )

    def _resolve(self, method: str, repo_id: str, revision: str, path: str) -> None:
        hub = self.server.hub
        repo = self._repo(repo_id)
        self._check_revision(repo, revision)
        self._check_gate(repo)
        found = repo.file(path)
        if found is None:
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": repo.sha})
        size = found.size
        lies = hub.lies
        etag = f'"{lies.etag if lies.etag is not None and lies.about(repo_id) else found.etag}"'
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": etag,
            "X-Linked-Etag": etag,
            "X-Linked-Size": str(size),
            "X-Repo-Commit": repo.sha,
        }
        byte_range = _parse_range(self.headers.get("Range"), size)
        if byte_range is None:
            status, start, end = 200, 0, size - 1
        else:
            status, (start, end) = 206, byte_range
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = max(0, end - start + 1)
        self._send_head(status, length, headers)
        if method == "HEAD" or length == 0:
            return
        corrupt = hub._take("corrupt_next", method, self.path)
        with found.disk_path.open("rb") as fh:
            fh.seek(start)
            self._stream(fh, length, faultable=hub.faults.applies_to(method, self.path),
                         corrupt_at=length // 2 if corrupt else None)  # fmt: skip

    # -- writing ----------------------------------------------------------------------------------------------------

    def _base_url(self) -> str:
        host = self.headers.get("Host")
        return f"http://{host}" if host else self.server.hub.url

    def _next_url(self, query: dict[str, list[str]], offset: int) -> str:
        params = [(k, v) for k, values in query.items() if k != "cursor" for v in values]
        params.append(("cursor", _encode_cursor(offset)))
        path = urlsplit(self.path).path
        return f"{self._base_url()}{path}?{urlencode(params)}"

    def _send_head(self, status: int, length: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send_json(self, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        self._send_head(status, len(body), {"Content-Type": "application/json; charset=utf-8", **(headers or {})})
        if self.command != "HEAD":
            self._stream(io.BytesIO(body), len(body), faultable=False)

    def _send_error(self, err: HubError) -> None:
        headers = dict(err.headers)
        if err.code:
            headers["X-Error-Code"] = err.code
        headers["X-Error-Message"] = err.message.encode("ascii", "replace").decode()
        self._send_json({"error": err.message}, status=err.status, headers=headers)

    def _stream(self, source: BinaryIO, length: int, *, faultable: bool, corrupt_at: int | None = None) -> None:
        """Write ``length`` bytes of ``source``, throttled by the bandwidth knob; a faultable body may be cut or
        stalled; the byte at ``corrupt_at`` (from the start of this body) goes out flipped."""
        hub = self.server.hub
        faults = hub.faults
        cut_at = faults.cut_after_bytes if faultable and faults.cut_times != 0 else None
        stall_at = faults.stall_after_bytes if faultable and faults.stall_times != 0 else None
        sent = 0
        began = hub._clock()
        while True:
            if stall_at is not None and sent >= stall_at:
                stall_at = None
                if hub._take_repeat("stall_times") and not hub._wait(hub.faults.stall_s):
                    self._abort()
                    return
            if cut_at is not None and sent >= cut_at:
                cut_at = None
                if hub._take_repeat("cut_times"):
                    self._abort()
                    return
            if sent >= length:
                return
            bandwidth = hub.faults.bandwidth_bps
            chunk = STREAM_CHUNK if not bandwidth else max(1024, min(STREAM_CHUNK, bandwidth // 20))
            chunk = min(chunk, length - sent)
            for limit in (cut_at, stall_at):
                if limit is not None and limit > sent:
                    chunk = min(chunk, limit - sent)
            data = source.read(chunk)
            if not data:
                self._abort()
                return
            if corrupt_at is not None and sent <= corrupt_at < sent + len(data):
                flipped = bytearray(data)
                flipped[corrupt_at - sent] ^= 0xFF
                data = bytes(flipped)
            if self._peer_gone():  # a client that hung up (or died) gets no more bytes, and none are counted
                self._abort()
                return
            hub._count_sent(len(data))  # before the write, so a client that has the bytes sees them counted
            try:
                self.wfile.write(data)
            except OSError:
                hub._count_sent(-len(data))
                raise
            sent += len(data)
            if bandwidth:
                ahead = began + sent / bandwidth - hub._clock()
                if ahead > 0 and not hub._wait(ahead):
                    self._abort()
                    return

    def _peer_gone(self) -> bool:
        """Whether the client closed its side (its kernel would still accept a write or two into the void)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _abort(self) -> None:
        """Drop the connection mid-body, as a reset or a dying proxy would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` inclusive for a single ``bytes=`` range, None to send everything; 416 when unsatisfiable."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if match is None or (not match.group(1) and not match.group(2)):
        return None  # several ranges or junk: ignored, like many servers do
    unsatisfiable = HubError(416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
    first, last = match.group(1), match.group(2)
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise unsatisfiable
        return max(0, size - suffix), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        raise unsatisfiable
    return start, min(int(last), size - 1) if last else size - 1


# --------------------------------------------------------------------------------------------------------------------
# The server object


class LoopbackHub:
    """A loopback hub serving the repos under ``root``.

    ``faults`` holds the knobs; ``requests`` records every request; ``bytes_sent`` counts body bytes.
    ``accepted_token`` is the one ``Authorization: Bearer`` token that opens gated and private repos.
    ``page_size`` is the ``/api/models`` page size when the client sends no ``limit``; ``tree_page_size`` pages trees.
    ``revisions`` are more names every repo answers to besides ``main`` and its sha (``v1.0``, ``refs/pr/3``).
    ``lies`` (:class:`HubLies`) makes it a dishonest hub.
    """

    def __init__(
        self,
        root: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        accepted_token: str = DEFAULT_TOKEN,
        page_size: int = 30,
        tree_page_size: int = 1000,
        revisions: tuple[str, ...] = (),
        verbose: bool = False,
    ) -> None:
        self.root = Path(root)
        self.store = RepoStore(self.root)
        self.host = host
        self.port = port
        self.accepted_token = accepted_token
        self.page_size = page_size
        self.tree_page_size = tree_page_size
        self.revisions = tuple(revisions)
        self.verbose = verbose
        self.faults = HubFaults()
        self.lies = HubLies()
        self.requests: list[RecordedRequest] = []
        self._bytes_sent = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: _HubHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------------------------

    def start(self) -> str:
        if self._server is not None:
            return self.url
        self._stopping.clear()
        server = _HubHTTPServer((self.host, self.port), _Handler)
        server.hub = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="loopback-hub", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        for conn in list(self._connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LoopbackHub:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the hub is not running: call start()")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- knobs and counters -----------------------------------------------------------------------------------------

    def reset_faults(self) -> None:
        self.faults = HubFaults()

    def reset_counters(self) -> None:
        with self._lock:
            self.requests.clear()
            self._bytes_sent = 0

    @property
    def bytes_sent(self) -> int:
        with self._lock:
            return self._bytes_sent

    def resolve_url(self, repo_id: str, filename: str, revision: str = "main") -> str:
        return f"{self.url}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(filename)}"

    # -- used by the handler ----------------------------------------------------------------------------------------

    def _record(self, method: str, path: str, query: str, headers: Any) -> None:
        kept = {name: headers[name] for name in RECORDED_HEADERS if headers.get(name) is not None}
        if headers.get("Authorization"):
            kept["Authorization"] = "Bearer ***"
        with self._lock:
            self.requests.append(RecordedRequest(method, path, query, kept))

    def _count_sent(self, n: int) -> None:
        with self._lock:
            self._bytes_sent += n

    def _take(self, name: str, method: str, path: str) -> bool:
        """Consume one of a counted fault (``rate_limit``, ``server_error``) if it applies to this request."""
        with self._lock:
            faults = self.faults
            remaining = getattr(faults, name)
            if not remaining or remaining <= 0 or not faults.applies_to(method, path):
                return False
            setattr(faults, name, remaining - 1)
            return True

    def _take_repeat(self, name: str) -> bool:
        """Consume one ``cut_times``/``stall_times`` (None: unlimited)."""
        with self._lock:
            remaining = getattr(self.faults, name)
            if remaining is None:
                return True
            if remaining <= 0:
                return False
            setattr(self.faults, name, remaining - 1)
            return True

    def _wait(self, seconds: float) -> bool:
        """Sleep unless the hub stops first; False when it stopped."""
        return not self._stopping.wait(max(0.0, seconds))

    @staticmethod
    def _clock() -> float:
        return time.monotonic()


# --------------------------------------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.hub_server", description=__doc__.split("\n")[0])
    parser.add_argument("--repos", type=Path, help="repos root: <root>/<org>/<name>/ folders")
    parser.add_argument("--demo", action="store_true", help="build the demo repos into a temp dir and serve them")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each response")
    parser.add_argument("--bandwidth", type=int, default=None, help="body bytes per second (default: unlimited)")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="the token that opens gated and private repos")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)
    if args.repos is None and not args.demo:
        parser.error("give --repos DIR or --demo")

    with contextlib.ExitStack() as stack:
        root = args.repos
        if args.demo:
            from tests.support.hub_repos import make_demo_hub

            if root is None:
                root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="loopback-hub-")))
            print(f"Building demo repos in {root} ...", flush=True)
            make_demo_hub(root)
        hub = LoopbackHub(root, host=args.host, port=args.port, accepted_token=args.token, verbose=not args.quiet)
        hub.faults.latency_s = args.latency
        hub.faults.bandwidth_bps = args.bandwidth
        url = hub.start()
        stack.callback(hub.stop)
        print(f"Loopback hub serving {root} at {url} ({len(hub.store.repo_ids())} repos)")
        print(f"export HF_ENDPOINT={url}")
        print(f"Gated and private repos open with: export HF_TOKEN={args.token}")
        print("Ctrl-C to stop.", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("\nStopped.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
