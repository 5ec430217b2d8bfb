"""Prompt (KV) caches saved to disk, one file per conversation, so that reopening a chat after a restart only has to
prefill what is new.

Each file is an mlx-lm prompt cache (``save_prompt_cache``: safetensors with string metadata) named
``{key}--{sha256(model_id)[:16]}.safetensors``: the conversation key is validated against a strict pattern, and the
model's hash in the name lets a deleted model's files be found without an index and without opening any file. The
metadata records the model id, the model's fingerprint (weights, config, chat template), the tokens the cache holds
and a format version; a file that does not match what it is loaded for is deleted, never misused. The folder is kept
within a byte limit by deleting the least recently saved or used files (by mtime).

The files hold chat content: the folder is 0700 and every file 0600 from its creation on. A file is written under a
temporary name in the same folder and renamed into place, so a crash never leaves a half-written cache under a real
name. mlx and mlx_lm are imported only inside the functions that need them, so importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.core.prompt_cache.store import cache_offsets

FORMAT_VERSION = "1"
SUFFIX = ".safetensors"
TMP_PREFIX = ".tmp-prompt-cache-"
STALE_TMP_SECONDS = 3600  # a temporary file this old was left by a crash: no save takes that long

KEY_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
# The key is everything before the last "--" followed by the 16 hex digits of the model's hash, so a key that itself
# contains "--" or ends in "-" still parses to one key only.
FILE_PATTERN = re.compile(r"(?P<key>[a-z0-9][a-z0-9-]{0,63})--(?P<model>[0-9a-f]{16})" + re.escape(SUFFIX))
TMP_PATTERN = re.compile(re.escape(TMP_PREFIX) + r"[A-Za-z0-9_]+" + re.escape(SUFFIX))


@dataclass(frozen=True)
class DiskEntry:
    """One cache file in the folder: the conversation it belongs to, its model's name hash, size and mtime."""

    key: str
    model_hash: str
    path: Path
    nbytes: int
    mtime_ns: int


def check_key(key: str) -> str:
    """``key`` when it is a valid conversation key (it becomes part of a file name); ValueError otherwise."""
    if not isinstance(key, str) or KEY_PATTERN.fullmatch(key) is None:
        raise ValueError(f"not a valid prompt-cache key: {key!r} (lowercase letters, digits and '-', at most 64)")
    return key


def model_hash(model_id: str) -> str:
    """The short hash of ``model_id`` that names its files: model ids hold '/' and other characters unfit for names."""
    return hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:16]


def file_name(key: str, model_id: str) -> str:
    """The name of the file holding the cache of conversation ``key`` for ``model_id``."""
    return f"{check_key(key)}--{model_hash(model_id)}{SUFFIX}"


def model_fingerprint(model_dir: Path, chat_template: str | None) -> str:
    """A sha256 that changes when the model's config, weights, tokenizer config or chat template change: a cache saved
    under one fingerprint is useless (and wrong) under another.

    The weights are identified by each ``model*.safetensors`` file's name, size and mtime, not by their bytes: hashing
    gigabytes on every load would be too slow, and a rewritten weights file gets a new mtime.
    """
    digest = hashlib.sha256()

    def part(label: str, data: bytes) -> None:
        # Labelled and length-prefixed, so that no two different inputs feed the hash the same bytes.
        digest.update(f"{label}:{len(data)}:".encode())
        digest.update(data)

    part("config.json", (model_dir / "config.json").read_bytes())
    for weights in sorted(model_dir.glob("model*.safetensors")):
        info = weights.stat()
        part("weights", f"{weights.name}\0{info.st_size}\0{info.st_mtime_ns}".encode())
    tokenizer_config = model_dir / "tokenizer_config.json"
    if tokenizer_config.is_file():
        part("tokenizer_config.json", tokenizer_config.read_bytes())
    part("chat_template", b"\0none" if chat_template is None else chat_template.encode("utf-8"))
    return digest.hexdigest()


def _state_nbytes(cache: list[Any]) -> int:
    """Bytes of the arrays a save writes (each layer's ``state``); the file is this plus a small header."""
    from mlx.utils import tree_flatten

    return sum(int(getattr(x, "nbytes", 0)) for layer in cache for _, x in tree_flatten(layer.state))


def _parse_tokens(text: str) -> tuple[int, ...] | None:
    """The tokens of a file's metadata, or None when they are not a JSON list of ints."""
    try:
        tokens = json.loads(text)
    except ValueError:
        return None
    if not isinstance(tokens, list) or not all(type(t) is int for t in tokens):
        return None
    return tuple(tokens)


class PromptCacheDisk:
    """Prompt caches on disk, one file per conversation key, bounded by ``limit_bytes`` in total.

    Thread-safety: every call happens on the one inference thread (the caches are MLX arrays of that thread's stream),
    so there are no locks and nothing here is async. Only regular files named like this class names them are touched;
    stray files and symlinks in the folder are left alone (and never followed), except this class's own temporary
    files left by a crash, which are removed once they are an hour old.
    """

    def __init__(self, folder: Path, limit_bytes: int) -> None:
        self._folder = Path(folder)
        self._limit = max(0, int(limit_bytes))

    @property
    def folder(self) -> Path:
        """The folder holding the cache files (created on the first save)."""
        return self._folder

    @property
    def limit_bytes(self) -> int:
        """The most bytes the cache files may hold together; 0 turns saving off."""
        return self._limit

    def set_limit(self, limit_bytes: int) -> None:
        """Change the bound and delete the least recently saved or used files until the total is within it."""
        self._limit = max(0, int(limit_bytes))
        self._evict()

    def entries(self) -> list[DiskEntry]:
        """The cache files in the folder, least recently saved or used first."""
        found: list[DiskEntry] = []
        try:
            scan = list(os.scandir(self._folder))
        except (FileNotFoundError, NotADirectoryError):
            return []
        for item in scan:
            match = FILE_PATTERN.fullmatch(item.name)
            if match is None or not item.is_file(follow_symlinks=False):
                continue
            try:
                info = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            found.append(DiskEntry(match["key"], match["model"], Path(item.path), info.st_size, info.st_mtime_ns))
        found.sort(key=lambda entry: (entry.mtime_ns, entry.path.name))
        return found

    def bytes_used(self) -> int:
        """Bytes held by the cache files now."""
        return sum(entry.nbytes for entry in self.entries())

    def save(self, key: str, model_id: str, fingerprint: str, tokens: Sequence[int], cache: list[Any]) -> bool:
        """Save ``cache``, which holds exactly ``tokens`` for ``model_id``, as conversation ``key``'s file; returns
        whether it was saved.

        A conversation has one file whatever its model: this replaces the key's file and deletes the key's files of
        other models. The least recently saved or used files are then deleted until the total is within the limit. A
        cache larger than the whole limit is not saved, and a limit of 0 writes nothing.

        Raises ValueError when ``key`` is not a valid key or the cache's layers hold a different number of tokens than
        ``tokens``; an error while writing leaves no temporary file behind and propagates.
        """
        name = file_name(key, model_id)
        held = tuple(int(t) for t in tokens)
        offsets = cache_offsets(cache)
        if offsets and offsets != {len(held)}:
            raise ValueError(f"the cache holds {sorted(offsets)} tokens, not the {len(held)} given")
        if self._limit == 0 or _state_nbytes(cache) > self._limit:
            return False
        self._make_folder()
        self._remove_stale_tmp()
        tmp = self._write_tmp(model_id, fingerprint, held, cache)
        try:
            if tmp.stat().st_size > self._limit:
                tmp.unlink()
                return False
            self._touch(tmp)
            os.replace(tmp, self._folder / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        for entry in self.entries():
            if entry.key == key and entry.path.name != name:
                entry.path.unlink(missing_ok=True)
        self._evict()
        return True

    def load(self, key: str, model_id: str, fingerprint: str) -> tuple[tuple[int, ...], list[Any]] | None:
        """The tokens and the cache saved for conversation ``key``, when its file belongs to ``model_id`` under the
        same ``fingerprint`` and is a readable file of the current format; None otherwise.

        A file of the key that does not match (another model, another fingerprint, unreadable or corrupt, bad metadata,
        tokens disagreeing with the cache) is deleted: a cache that does not match is discarded, never misused. A
        successful load marks the file as the most recently used.
        """
        name = file_name(key, model_id)
        for entry in self.entries():
            if entry.key == key and entry.path.name != name:
                entry.path.unlink(missing_ok=True)  # the conversation moved to another model
        path = self._folder / name
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                return None  # a symlink or other non-file under our name: not ours, never followed
        except FileNotFoundError:
            return None
        loaded = self._read(path, model_id, fingerprint)
        if loaded is None:
            path.unlink(missing_ok=True)
            return None
        self._touch(path)
        return loaded

    def forget(self, key: str) -> None:
        """Delete conversation ``key``'s files (the chat was deleted)."""
        check_key(key)
        for entry in self.entries():
            if entry.key == key:
                entry.path.unlink(missing_ok=True)

    def forget_model(self, model_id: str) -> int:
        """Delete every file of ``model_id`` (the model was deleted); returns how many were deleted."""
        wanted = model_hash(model_id)
        count = 0
        for entry in self.entries():
            if entry.model_hash == wanted:
                entry.path.unlink(missing_ok=True)
                count += 1
        return count

    def _make_folder(self) -> None:
        """Create the folder 0700 (its files hold chat content), and bring an existing one back to 0700."""
        self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if stat.S_IMODE(self._folder.stat().st_mode) != 0o700:
            self._folder.chmod(0o700)

    def _write_tmp(self, model_id: str, fingerprint: str, tokens: tuple[int, ...], cache: list[Any]) -> Path:
        """Write the cache to a new temporary file in the folder and return its path.

        ``mkstemp`` creates the file 0600 with O_EXCL, before a byte is written, and mlx writes through that open
        file: it is never readable by others, not even briefly, and never written through a name someone else made.
        """
        from mlx_lm.models.cache import save_prompt_cache

        metadata = {
            "format": FORMAT_VERSION,
            "model_id": model_id,
            "fingerprint": fingerprint,
            "tokens": json.dumps(tokens, separators=(",", ":")),
        }
        fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=SUFFIX, dir=self._folder)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                save_prompt_cache(handle, cache, metadata)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def _read(self, path: Path, model_id: str, fingerprint: str) -> tuple[tuple[int, ...], list[Any]] | None:
        """The tokens and cache in ``path`` when it is a readable file of the current format for ``model_id`` under
        ``fingerprint`` whose tokens agree with the cache; None otherwise.

        The arrays are evaluated here, so the file's data is read now: a read error surfaces here, not in the middle
        of a generation, and a later eviction of the file cannot pull the data from under the cache.
        """
        import mlx.core as mx
        from mlx_lm.models.cache import load_prompt_cache

        try:
            cache, metadata = load_prompt_cache(str(path), return_metadata=True)
            mx.eval([layer.state for layer in cache])
        except Exception:  # anything a corrupt file makes mlx or mlx_lm raise: the file is unusable
            return None
        if not isinstance(metadata, dict) or not isinstance(cache, list):
            return None
        if (metadata.get("format"), metadata.get("model_id"), metadata.get("fingerprint")) != (
            FORMAT_VERSION,
            model_id,
            fingerprint,
        ):
            return None
        tokens = _parse_tokens(metadata.get("tokens", ""))
        offsets = cache_offsets(cache)
        if tokens is None or (offsets and offsets != {len(tokens)}):
            return None
        return tokens, cache

    def _touch(self, path: Path) -> None:
        """Mark ``path`` as the most recently saved or used file.

        The mtime is set from the nanosecond clock (the kernel's own file times are coarser, so two saves in a row
        could share one) and made later than every other file's, even one stamped in the future (a clock stepped back,
        a copied folder), so that eviction order is always the order of use.
        """
        newest = max((entry.mtime_ns for entry in self.entries() if entry.path != path), default=0)
        now = max(time.time_ns(), newest + 1)
        os.utime(path, ns=(now, now), follow_symlinks=False)

    def _remove_stale_tmp(self) -> None:
        """Delete this class's own temporary files that a crash left behind (older than an hour)."""
        cutoff = time.time() - STALE_TMP_SECONDS
        for item in os.scandir(self._folder):
            if TMP_PATTERN.fullmatch(item.name) is None or not item.is_file(follow_symlinks=False):
                continue
            try:
                if item.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(item.path)
            except FileNotFoundError:
                continue

    def _evict(self) -> None:
        """Delete the least recently saved or used files until the total is within the limit. A file just saved or
        loaded is the newest and no larger than the limit, so it is never the one deleted."""
        entries = self.entries()
        total = sum(entry.nbytes for entry in entries)
        for entry in entries:
            if total <= self._limit:
                break
            entry.path.unlink(missing_ok=True)
            total -= entry.nbytes
