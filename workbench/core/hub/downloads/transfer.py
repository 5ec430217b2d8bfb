"""One file of a job into the cache over HTTP, on a transfer thread.

1. metadata by ``HEAD`` (``get_hf_file_metadata``): ETag, size, where to fetch it;
2. huggingface_hub's own per-file lock (``<cache>/.locks/models--org--name/<etag>.lock``), so ``hf download`` and
   the workbench never write the same blob at once;
3. ``GET`` with ``Range: bytes=N-`` into a *stable* ``blobs/<etag>.incomplete``: a pause, a dropped connection or a
   killed process resumes from the bytes on disk (which are hashed first);
4. hashing while writing (sha256 for LFS files, the git blob sha1 for the rest), compared with what the hub listed;
   a mismatch discards the file and fetches it once more;
5. ``os.replace`` into ``blobs/<etag>``, then the relative ``snapshots/<commit>/<path>`` link.

Through huggingface_hub's HTTP session and headers (the token is sent, never shown; never to a CDN). Retries follow
:class:`~workbench.core.hub.downloads.retry.RetryPolicy`; a shared :class:`TokenBucket` caps the bandwidth; free
space is checked every DISK_CHECK_BYTES. What the queue must hear goes through :class:`TransferEvents`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from workbench.core.hub import cache as hf_cache
from workbench.core.hub import names as hub_names
from workbench.core.hub.downloads.jobs import GIT_SHA1, SHA256, DownloadFailure, FileState, Job, JobFile
from workbench.core.hub.downloads.layout import CacheLayout, link
from workbench.core.hub.downloads.progress import PROGRESS_INTERVAL_S
from workbench.core.hub.downloads.retry import Control, DiskLow, HashMismatch, RetryPolicy, Stopped, Truncated
from workbench.core.models.memory import format_bytes

DISK_CHECK_BYTES = 16 * 1024 * 1024  # free space is checked again after this many bytes
HASH_BLOCK = 8 * 1024 * 1024


@dataclass(frozen=True)
class TransferEvents:
    """What a transfer thread tells the queue. Each is called on the transfer thread and must hand over to the loop."""

    note: Callable[[int, str | None], None]  # a job's message: what it waits for, what it fetches again
    file_phase: Callable[[int], None]  # a file of the job started or stopped verifying
    file_named: Callable[[Job, JobFile], None]  # the hub gave a file another ETag or size: keep them
    progressed: Callable[[int], None]  # bytes arrived (at most every PROGRESS_INTERVAL_S)


class TokenBucket:
    """A shared bandwidth cap: every transfer thread takes its bytes from here before writing them."""

    def __init__(self, rate_bps: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.rate_bps = rate_bps
        self._tokens = rate_bps / 4
        self._last = clock()

    def set_rate(self, rate_bps: int) -> None:
        with self._lock:
            self.rate_bps = rate_bps

    def take(self, n: int, control: Control) -> None:
        with self._lock:
            now = self._clock()
            burst = self.rate_bps / 4
            self._tokens = min(burst, self._tokens + (now - self._last) * self.rate_bps) - n
            self._last = now
            debt = -self._tokens
        if debt > 0:
            control.sleep(debt / self.rate_bps)


def disk_free(path: Path) -> int:
    """Free bytes on the disk that holds ``path`` (or its nearest existing parent)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


class Transfer:
    """Fetches files of jobs into ``layout``'s cache; one instance serves every transfer thread, all of them under
    one bandwidth cap (``bandwidth_bps``; None: none). A new cap applies to the GETs that start after it."""

    def __init__(
        self,
        layout: CacheLayout,
        retry: RetryPolicy,
        events: TransferEvents,
        endpoint: str | None,
        chunk_size: int,
        stall_timeout_s: float,
        min_free_bytes: int,
        clock: Callable[[], float] = time.monotonic,
        bandwidth_bps: int | None = None,
    ) -> None:
        self.layout = layout
        self.retry = retry
        self.events = events
        self.endpoint = endpoint
        self.chunk_size = chunk_size
        self.stall_timeout_s = stall_timeout_s
        self.min_free_bytes = min_free_bytes
        self._clock = clock
        self._bucket = TokenBucket(bandwidth_bps, clock) if bandwidth_bps else None

    @property
    def bandwidth_bps(self) -> int | None:
        return self._bucket.rate_bps if self._bucket else None

    @bandwidth_bps.setter
    def bandwidth_bps(self, value: int | None) -> None:
        if not value:
            self._bucket = None
        elif self._bucket is None:
            self._bucket = TokenBucket(value, self._clock)
        else:
            self._bucket.set_rate(value)

    def prepare(self, job: Job) -> None:
        """The repo folder laid out and enough free space for what the job still fetches (else DiskLow)."""
        assert job.commit is not None
        self.layout.prepare_repo_folder(job.repo_id, job.revision, job.commit)
        self.check_disk(job)

    def check_disk(self, job: Job) -> None:
        remaining = job.remaining_bytes()
        if not remaining:
            return
        free = disk_free(self.layout.root)
        if free - remaining < self.min_free_bytes:
            raise DiskLow(f"paused: low disk space ({format_bytes(free)} free, {format_bytes(remaining)} still to "
                          f"download, keeping {format_bytes(self.min_free_bytes)} free)")  # fmt: skip

    def fetch_file(self, job: Job, f: JobFile, control: Control) -> None:
        """One file into the cache, verified and linked, with retries; raises DownloadFailure when it gives up."""
        folder = self.layout.repo_folder(job.repo_id)
        assert job.commit is not None
        try:
            pointer = hub_names.inside(folder / "snapshots" / hub_names.check_commit(job.commit), f.path)
        except hub_names.BadName as exc:
            f.state, f.error = FileState.FAILED, f"refused: {exc}"
            raise DownloadFailure(f.error) from exc
        if pointer.exists():  # already in the cache
            f.state, f.done_bytes = FileState.DONE, f.size or pointer.stat().st_size
            return
        mismatches = 0
        while True:
            try:
                self.retry.run(job, f, control, lambda: self._fetch_once(job, f, control, folder, pointer))
                break
            except DownloadFailure as exc:
                f.state, f.error = FileState.FAILED, f.error or str(exc)
                raise
            except HashMismatch as exc:
                mismatches += 1
                if mismatches >= 2:
                    f.state, f.error = FileState.FAILED, f"{exc}, twice"
                    raise DownloadFailure(f"{f.path}: {exc}, twice: the download is corrupt (or the file changed "
                                          "on the hub)") from exc  # fmt: skip
                self.events.note(job.id, f"{f.path}: {exc}; fetching it once more")
        f.state, f.error = FileState.DONE, None
        f.done_bytes = f.size or 0
        self.events.file_phase(job.id)
        self.events.note(job.id, None)

    def _fetch_once(self, job: Job, f: JobFile, control: Control, folder: Path, pointer: Path) -> None:
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        endpoint = job.endpoint(self.endpoint)
        url = hf_hub_url(job.repo_id, f.path, revision=job.commit, endpoint=endpoint)
        meta = get_hf_file_metadata(url, token=job.token, timeout=max(self.stall_timeout_s, 1.0), endpoint=endpoint)
        if not meta.etag:
            raise DownloadFailure(f"{f.path}: the hub sent no ETag, so the file cannot be named in the cache")
        try:
            hub_names.check_etag(meta.etag, "ETag", f.path)
        except hub_names.BadName as exc:
            raise DownloadFailure(f"refused: {exc}") from exc
        size = meta.size if meta.size is not None else f.size
        if size is None:
            raise DownloadFailure(f"{f.path}: the hub did not say how big the file is")
        if f.etag != meta.etag or f.size != size:
            f.etag, f.size = meta.etag, size
            self.events.file_named(job, f)
        kind, expected = _expected_hash(f, meta.etag)
        blob = folder / "blobs" / meta.etag
        with self._locked(job, f, control, folder.name, meta.etag):
            if not blob.exists():
                self._download_blob(job, f, control, meta.location, url, blob, size, kind, expected)
            link(blob, pointer)

    @contextlib.contextmanager
    def _locked(self, job: Job, f: JobFile, control: Control, folder_name: str, etag: str) -> Iterator[None]:
        """huggingface_hub's lock for this blob, waited for in short steps so a pause still stops us."""
        from filelock import Timeout

        path = hf_cache.lock_path(self.layout.root, folder_name, etag)
        noted = False
        while True:
            try:
                lock = hf_cache.acquire_lock(path, timeout=0.25)
                break
            except Timeout:
                control.check()
                if not noted:
                    noted = True
                    self.events.note(job.id, f"{f.path}: waiting for another download of this file")
        try:
            yield
        finally:
            lock.release()

    def _set_file_state(self, job: Job, f: JobFile, state: FileState) -> None:
        if f.state is not state:
            f.state = state
            self.events.file_phase(job.id)

    def _download_blob(self, job: Job, f: JobFile, control: Control, location: str, url: str, blob: Path,
                       size: int, kind: str, expected: str) -> None:  # fmt: skip
        """Resume (or start) ``<etag>.incomplete``, verify it, move it into place."""
        incomplete = blob.with_name(blob.name + hf_cache.INCOMPLETE_SUFFIX)
        hasher = _new_hasher(kind, size)
        with incomplete.open("ab", buffering=self.chunk_size) as out:  # closing it keeps every byte received
            offset = out.tell()
            if offset > size:  # not this file: start again
                out.truncate(0)
                offset = 0
            if offset:
                self._set_file_state(job, f, FileState.VERIFYING)
                _hash_file(incomplete, offset, hasher, control)
            f.done_bytes = offset
            if offset < size:
                self._set_file_state(job, f, FileState.DOWNLOADING)
                hasher = self._stream(job, f, control, location, url, out, offset, size, kind, hasher)
        self._set_file_state(job, f, FileState.VERIFYING)
        digest = hasher.hexdigest()
        if digest != expected:
            incomplete.unlink(missing_ok=True)
            f.done_bytes = 0
            label = "sha256" if kind == SHA256 else "git sha1"
            raise HashMismatch(f"{label} mismatch (expected {expected[:12]}…, got {digest[:12]}…)")
        os.replace(incomplete, blob)

    def _stream(self, job: Job, f: JobFile, control: Control, location: str, url: str, out: BinaryIO, offset: int,
                size: int, kind: str, hasher: Any) -> Any:  # fmt: skip
        """GET the rest of the file from ``offset``, writing and hashing each chunk; returns the hasher."""
        import httpx2
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        headers = build_hf_headers(token=job.token)
        headers["Accept-Encoding"] = "identity"
        if urlsplit(location).netloc != urlsplit(url).netloc:  # a CDN: the token stays with the hub
            headers.pop("authorization", None)
        if offset:
            headers["Range"] = f"bytes={offset}-"
        timeout = httpx2.Timeout(self.stall_timeout_s)  # the stall watchdog: no byte for this long drops the link
        with get_session().stream("GET", location, headers=headers, timeout=timeout) as response:
            if response.status_code == 416:  # the partial file is longer than the file now: start again
                out.truncate(0)
                f.done_bytes = 0
                raise Truncated("the hub refused the range; starting the file again")
            if response.status_code >= 400:
                response.read()
                hf_raise_for_status(response)
            if offset and response.status_code != 206:  # the Range was ignored: the body is the whole file
                out.truncate(0)
                offset, hasher = 0, _new_hasher(kind, size)
                f.done_bytes = 0
            elif offset and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                raise Truncated(f"the hub sent another range ({response.headers.get('Content-Range')})")
            bucket, write, update, clock = self._bucket, out.write, hasher.update, self._clock
            progressed = self.events.progressed
            next_tick = 0.0
            next_disk_check = offset + DISK_CHECK_BYTES
            # Each piece is what one socket read brought (up to 64 KiB; a few hundred bytes on a slow link), so the
            # flag is seen within one read, and a stop shuts the socket down to end a read that waits for bytes.
            with control.aborting(_socket_shutdown(response)):
                try:
                    for chunk in response.iter_raw():
                        # bytes received are kept: write first, then pace and look at the flag
                        write(chunk)
                        update(chunk)
                        offset += len(chunk)
                        f.done_bytes = offset
                        job.transferred += len(chunk)
                        if offset > size:
                            break
                        now = clock()
                        if now >= next_tick:
                            next_tick = now + PROGRESS_INTERVAL_S
                            job.meter.add(now, job.transferred)
                            progressed(job.id)
                        if offset >= next_disk_check:
                            next_disk_check = offset + DISK_CHECK_BYTES
                            self.check_disk(job)
                        if bucket is not None:
                            bucket.take(len(chunk), control)
                        control.check()
                except (Stopped, DiskLow):
                    raise
                except Exception:
                    control.check()  # the read ended because a stop shut the socket: that is the stop
                    raise
        if offset < size:
            raise Truncated(f"the download ended early ({format_bytes(offset)} of {format_bytes(size)})")
        if offset > size:
            raise HashMismatch(f"the hub sent more than the file's {size} bytes")
        return hasher


def _socket_shutdown(response: Any) -> Callable[[], None]:
    """What ends a read blocked on ``response``'s connection at once: shutting its socket down (the connection is
    then dropped, not reused). Nothing when the socket cannot be reached."""
    import socket

    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if not isinstance(sock, socket.socket):
        return lambda: None

    def abort() -> None:
        # linger 0: the close that follows resets the connection, so the server stops sending at once;
        # socket.socket's own shutdown, also for a TLS socket (the SSL layer's drops its state under the reader)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        socket.socket.shutdown(sock, socket.SHUT_RDWR)

    return abort


def _expected_hash(f: JobFile, etag: str) -> tuple[str, str]:
    if f.hash_kind and f.expected_hash:
        return f.hash_kind, f.expected_hash
    if len(etag) == 64:
        return SHA256, etag
    if len(etag) == 40:
        return GIT_SHA1, etag
    raise DownloadFailure(f"{f.path}: no checksum is known to verify it against")


def _new_hasher(kind: str, size: int) -> Any:
    if kind == SHA256:
        return hashlib.sha256()
    git = hashlib.sha1(usedforsecurity=False)
    git.update(b"blob %d\0" % size)  # git's blob id hashes a header, then the content
    return git


def _hash_file(path: Path, length: int, hasher: Any, control: Control) -> None:
    """Feed the first ``length`` bytes already on disk to ``hasher`` (a resumed file is verified whole)."""
    buffer = bytearray(min(HASH_BLOCK, max(1, length)))
    view = memoryview(buffer)
    remaining = length
    with path.open("rb") as source:
        while remaining:
            n = source.readinto(view[: min(len(buffer), remaining)])
            if not n:
                raise Truncated("the partial file shrank while it was read")
            hasher.update(view[:n])
            remaining -= n
            control.check()
