"""Which files of a repo a download takes unless told otherwise, and how a glob names them.

Kept apart from the download queue: the catalog's details view shows the default download's size with it, and
the first frame must not import the queue."""

from __future__ import annotations

from fnmatch import fnmatch

DEFAULT_PATTERNS = ("*.safetensors", "*.json", "tokenizer.model", "*.tiktoken", "*.txt", "*.jinja", "README.md",
                    "*.py")  # fmt: skip


def default_selection(paths: list[str]) -> list[str]:
    """The files an MLX repo needs: weights, configs, tokenizer, card. Not other formats (GGUF, .bin, .pth)."""
    chosen = [p for p in paths if any(fnmatch(p.rsplit("/", 1)[-1], pattern) for pattern in DEFAULT_PATTERNS)]
    return [p for p in chosen if not p.endswith(".py")]  # remote code is never fetched silently


def matches(path: str, pattern: str) -> bool:
    """A glob on the repo path; a pattern without ``/`` also matches the file name in any folder."""
    return fnmatch(path, pattern) or ("/" not in pattern and fnmatch(path.rsplit("/", 1)[-1], pattern))
