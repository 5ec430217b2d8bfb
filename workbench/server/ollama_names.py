"""The Hugging Face names Ollama's clients pull and then use: ``org/repo``, ``hf.co/org/repo`` and
``hf.co/org/repo:QUANT`` (a GGUF quantization, imported as ``<repo>-<QUANT>``)."""

from __future__ import annotations

import re

from workbench.core.hub import names as hub_names
from workbench.core.models.names import LATEST
from workbench.server.errors import ApiError

HUB_PREFIXES = ("hf.co/", "huggingface.co/", "https://huggingface.co/", "https://hf.co/")
_QUANT = re.compile(r"[A-Za-z0-9_.-]{1,40}")


def hub_name(name: str) -> tuple[str, str | None] | None:
    """``(repo id, quantization or None)`` for a Hugging Face name (``org/repo``, ``hf.co/org/repo:QUANT``); None
    for anything else. Raises ApiError for a name that looks like one but is not valid."""
    bare = name
    for prefix in HUB_PREFIXES:
        if bare.startswith(prefix):
            bare = bare[len(prefix) :]
            break
    if bare.count("/") != 1:
        return None
    repo, _, tag = bare.partition(":")
    quant = None if tag in ("", LATEST[1:]) else tag
    if quant is not None and not _QUANT.fullmatch(quant):
        raise ApiError(400, f"{quant!r} is not a quantization name (such as Q4_K_M)")
    try:
        return hub_names.check_repo_id(repo), quant
    except hub_names.BadName as exc:
        raise ApiError(400, f"{name!r}: {exc}") from None


def import_name(repo_id: str, quant: str) -> str:
    """The model a GGUF pull imports: ``<repo name>-<QUANT>``, a plain folder name."""
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "-", repo_id.split("/")[1]).strip(".-+_") or "model"
    return re.sub(r"\.{2,}", ".", f"{stem}-{quant}")[:128]


def pulled_id(name: str) -> str | None:
    """The id a pulled name stands for (``hf.co/org/repo`` -> ``org/repo``, ``hf.co/org/repo:Q4_1`` -> its import);
    None when ``name`` is no hub name."""
    try:
        parsed = hub_name(name)
    except ApiError:
        return None
    if parsed is None:
        return None
    repo_id, quant = parsed
    return repo_id if quant is None else import_name(repo_id, quant)


__all__ = ["HUB_PREFIXES", "hub_name", "import_name", "pulled_id"]
