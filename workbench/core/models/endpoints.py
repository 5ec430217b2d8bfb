"""Remote OpenAI-compatible endpoints from ``[[endpoints]]`` in config.toml, and a connection test in words.

The API key is never in the config: ``api_key_env`` names the environment variable that holds it, and the
key is read from the environment when a request is made. Messages name the variable, never the key.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NO_KEY = "not-needed"  # what the client sends when no key is configured (many local servers want none)
TEST_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Endpoint:
    name: str
    base_url: str
    api_key_env: str | None = None
    models: tuple[str, ...] = ()  # empty: ask the server (GET /models)
    context_length: int | None = None
    timeout_s: float = 600.0

    def api_key(self) -> str:
        if self.api_key_env:
            return os.environ.get(self.api_key_env, "") or NO_KEY
        return NO_KEY

    def key_hint(self) -> str:
        if not self.api_key_env:
            return "set api_key_env in its [[endpoints]] entry to the name of the variable that holds the key"
        if not os.environ.get(self.api_key_env):
            return f"${self.api_key_env} is not set in the environment the workbench runs in"
        return f"check the key in ${self.api_key_env}"

    def model_id(self, model: str) -> str:
        """The id the workbench uses for a model on this endpoint."""
        return f"{self.name}:{model}"


def parse_endpoints(value: object, issue: Callable[[tuple[Any, ...], str], None]) -> list[Endpoint]:
    """``[[endpoints]]`` tables; a bad entry is reported (file, line, key) and skipped."""
    if not isinstance(value, list):
        issue(("endpoints",), "expected [[endpoints]] tables (an array of tables)")
        return []
    endpoints: list[Endpoint] = []
    seen: set[str] = set()
    for index, table in enumerate(value):
        where = ("endpoints", index)
        if not isinstance(table, dict):
            issue(where, "expected a table with name and base_url")
            continue
        endpoint = _parse_one(table, lambda key, message, w=where: issue((*w, key) if key else w, message))
        if endpoint is None:
            continue
        if endpoint.name in seen:
            issue((*where, "name"), f"another endpoint is already called {endpoint.name!r}")
            continue
        seen.add(endpoint.name)
        endpoints.append(endpoint)
    return endpoints


def _parse_one(table: dict[str, Any], issue: Callable[[str | None, str], None]) -> Endpoint | None:
    known = {"name", "base_url", "api_key_env", "models", "context_length", "timeout_s"}
    for key in table:
        if key not in known and key != "api_key":  # api_key gets its own message below
            issue(key, f"unknown setting (known: {', '.join(sorted(known))})")
    if "api_key" in table:
        issue("api_key", "keys do not belong in the config: put the key in an environment variable and name it "
                         "with api_key_env")  # fmt: skip
    name, base_url = table.get("name"), table.get("base_url")
    ok = True
    if not isinstance(name, str) or not NAME.fullmatch(name):
        issue("name", "expected a short name of letters, digits, '.', '_' or '-' (it prefixes the model names)")
        ok = False
    if not isinstance(base_url, str) or urlsplit(base_url).scheme not in ("http", "https") or \
            not urlsplit(base_url).netloc:  # fmt: skip
        issue("base_url", 'expected an http(s) URL such as "http://gpu-box:8000/v1"')
        ok = False
    env = table.get("api_key_env")
    if env is not None and (not isinstance(env, str) or not ENV_NAME.fullmatch(env)):
        issue("api_key_env", 'expected the name of an environment variable, such as "OPENAI_API_KEY"')
        env = None
    models = table.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) and m.strip() for m in models):
        issue("models", "expected a list of model names as the server knows them")
        models = []
    context = table.get("context_length")
    if context is not None and (isinstance(context, bool) or not isinstance(context, int) or context < 256):
        issue("context_length", "expected a whole number of tokens >= 256")
        context = None
    timeout = table.get("timeout_s", 600.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        issue("timeout_s", "expected a number of seconds > 0")
        timeout = 600.0
    if not ok:
        return None
    assert isinstance(name, str) and isinstance(base_url, str)
    return Endpoint(name=name, base_url=base_url.rstrip("/"), api_key_env=env, models=tuple(models),
                    context_length=context, timeout_s=float(timeout))  # fmt: skip


# --- talking to an endpoint -----------------------------------------------------------------------


class EndpointError(Exception):
    """Something about an endpoint a person can fix; the message says what."""


def make_client(endpoint: Endpoint, timeout_s: float | None = None) -> Any:
    import openai

    return openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key(), max_retries=0,
                         timeout=timeout_s or endpoint.timeout_s)  # fmt: skip


def explain(endpoint: Endpoint, exc: BaseException, model: str | None = None) -> str:
    """An openai client error as a sentence that says what is wrong and what to do."""
    import openai

    where = f"{endpoint.name} ({endpoint.base_url})"
    if isinstance(exc, openai.APITimeoutError):
        return f"{where} did not answer in time: is the server busy or the address wrong?"
    if isinstance(exc, openai.APIConnectionError):
        cause = repr(exc.__cause__ or exc).lower()
        if "refused" in cause:
            return f"{where} refused the connection: nothing listens there; start the server or fix base_url"
        if "name or service" in cause or "nodename" in cause or "getaddrinfo" in cause or "resolve" in cause:
            return f"{where}: the host name does not resolve; check base_url"
        return f"cannot reach {where}: {exc.__cause__ or exc}"
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return f"{where} refused the API key ({exc.status_code}): {endpoint.key_hint()}"
    if isinstance(exc, openai.NotFoundError):
        if model is not None:
            return (f"{where} answered 404 for model {model!r}: no such model there, or base_url has the wrong "
                    "path (it usually ends in /v1); the Models view's connection test tells which")  # fmt: skip
        return f"{where} answered 404: wrong path; base_url usually ends in /v1"
    if isinstance(exc, openai.RateLimitError):
        return f"{where} is rate limiting (429); try again later"
    if isinstance(exc, openai.APIStatusError):
        return f"{where} answered {exc.status_code}: {_server_message(exc)}"
    if isinstance(exc, openai.APIResponseValidationError | ValueError):
        return f"{where} did not answer like an OpenAI-compatible API ({exc})"
    return f"{where}: {type(exc).__name__}: {exc}"


def _server_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        if isinstance(error, str):
            return error[:300]
    return str(getattr(exc, "message", exc))[:300]


def list_models(endpoint: Endpoint, timeout_s: float = TEST_TIMEOUT_S) -> list[str]:
    """The model ids the server reports (GET /models). Raises EndpointError in words."""
    client = make_client(endpoint, timeout_s)
    try:
        page = client.models.list()
        return sorted(model.id for model in page.data)
    except Exception as exc:
        raise EndpointError(explain(endpoint, exc)) from exc
    finally:
        client.close()


def endpoint_models(endpoint: Endpoint) -> list[str]:
    """The configured models, or else the server's list."""
    return list(endpoint.models) if endpoint.models else list_models(endpoint)


@dataclass
class ConnectionReport:
    ok: bool
    lines: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(self.lines)


def check_connection(endpoint: Endpoint, model: str | None = None, timeout_s: float = TEST_TIMEOUT_S
                    ) -> ConnectionReport:  # fmt: skip
    """Check an endpoint step by step (reach it, list models, find the model, get one token) and say what is
    wrong in words a person can act on. Blocking: run it in a thread."""
    report = ConnectionReport(ok=False)
    started = time.monotonic()
    try:
        served = list_models(endpoint, timeout_s)
    except EndpointError as exc:
        report.lines.append(str(exc))
        if "404" in str(exc) and not endpoint.base_url.endswith("/v1"):
            report.lines.append(f"try base_url = \"{endpoint.base_url}/v1\"")
        return report
    report.lines.append(f"{endpoint.name} answers at {endpoint.base_url} ({time.monotonic() - started:.2f} s); "
                        f"it serves {len(served)} model(s)")  # fmt: skip
    if model is None:
        report.ok = True
        return report
    if served and model not in served:
        shown = ", ".join(served[:8]) + (" …" if len(served) > 8 else "")
        report.lines.append(f"no model {model!r} on {endpoint.name}; it serves: {shown}")
        return report
    client = make_client(endpoint, timeout_s * 6)
    try:
        started = time.monotonic()
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Say OK."}], max_tokens=1)
        report.lines.append(f"{model} answers ({time.monotonic() - started:.2f} s for one token)")
        report.ok = True
    except Exception as exc:
        report.lines.append(explain(endpoint, exc, model))
    finally:
        client.close()
    return report
