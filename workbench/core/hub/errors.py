"""Hub failures in words a person can act on (gated, not found, offline, rate limited with the Retry-After, server
error), and huggingface_hub's own warnings routed to the log file instead of the terminal. huggingface_hub (and its
HTTP client) are imported only when an error is translated."""

from __future__ import annotations

import logging
import re
import time
from enum import StrEnum
from typing import Any


class HubErrorKind(StrEnum):
    OFFLINE = "offline"
    GATED = "gated"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not found"
    RATE_LIMITED = "rate limited"
    SERVER = "server error"
    OTHER = "error"


class HubError(Exception):
    """A hub failure in words a person can act on."""

    def __init__(self, kind: HubErrorKind, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after_s = retry_after_s


def retry_after_of(response: Any) -> float | None:
    """The seconds a response's ``Retry-After`` header asks to wait, or None."""
    value = response.headers.get("Retry-After") if response is not None else None
    return parse_retry_after(value) if value is not None else None


def parse_retry_after(value: str, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: a number of seconds or an HTTP date (``now``: the wall clock
    the date is measured from). None for anything else (the caller's own backoff applies)."""
    import email.utils
    import math

    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def translate_error(exc: BaseException, repo_id: str | None = None) -> HubError:
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    what = repo_id or "the hub"
    if isinstance(exc, GatedRepoError):
        return HubError(HubErrorKind.GATED, f"{what} is gated: accept its licence on the hub's model page, then "
                        "set HF_TOKEN (or run `hf auth login`) and retry")  # fmt: skip
    if isinstance(exc, RepositoryNotFoundError | RevisionNotFoundError):
        return HubError(HubErrorKind.NOT_FOUND, f"{what} was not found (or is private: set HF_TOKEN if it is yours)")
    if isinstance(exc, OfflineModeIsEnabled):
        return HubError(HubErrorKind.OFFLINE, "offline mode is on (HF_HUB_OFFLINE): showing what is cached")
    if isinstance(exc, HfHubHTTPError):
        response = exc.response
        status = getattr(response, "status_code", None)
        if status == 429:
            wait = retry_after_of(response)
            after = f"{wait:g} s" if wait is not None else "a while"
            return HubError(HubErrorKind.RATE_LIMITED, f"the hub asks to slow down: retry in {after}", wait)
        if status == 401:
            return HubError(HubErrorKind.UNAUTHORIZED, "the hub refused the request (401): check HF_TOKEN")
        if status is not None and status >= 500:
            return HubError(HubErrorKind.SERVER, f"the hub had an error ({status}): retry in a moment")
        return HubError(HubErrorKind.OTHER, f"the hub answered {status}")
    if _is_connection_error(exc):
        return HubError(HubErrorKind.OFFLINE, "cannot reach the hub (offline or connection refused): showing "
                        "what is cached")  # fmt: skip
    return HubError(HubErrorKind.OTHER, f"{type(exc).__name__}: {exc}")


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    try:
        import httpx2 as httpx  # the HTTP client huggingface_hub 2.x uses
    except ImportError:
        try:
            import httpx  # type: ignore[no-redef]
        except ImportError:
            return False
    return isinstance(exc, httpx.TransportError)


def quiet_hub_logging() -> None:
    """huggingface_hub prints warnings to stderr by default, which would scribble over the TUI: route its
    records through the root logger (the log file) instead."""
    hub_logger = logging.getLogger("huggingface_hub")
    for handler in list(hub_logger.handlers):
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            hub_logger.removeHandler(handler)
    hub_logger.propagate = True
