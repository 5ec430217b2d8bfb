"""A scripted OpenAI-compatible server on 127.0.0.1: /v1/models and streamed /v1/chat/completions, nothing more.

For tests of remote endpoint models that need an answer, not a model (tests/support/mlx_server.py runs a real one).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeOpenAI:
    base_url: str  # ends in /v1
    model: str
    pieces: list[str]
    requests: list[dict[str, Any]] = field(default_factory=list)  # the chat requests received, in order


@contextmanager
def fake_openai(model: str = "m", pieces: tuple[str, ...] = ("Hel", "lo", "!"),
                delay_s: float = 0.0) -> Iterator[FakeOpenAI]:  # fmt: skip
    """Serve ``model``, answering every chat with ``pieces`` streamed one chunk each (``delay_s`` apart), then "stop"
    and usage."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            if self.path.rstrip("/") != "/v1/models":
                return self._json(404, {"error": {"message": f"no route {self.path}"}})
            self._json(200, {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "test"}]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if self.path.rstrip("/") != "/v1/chat/completions" or body.get("model") != model:
                return self._json(404, {"error": {"message": f"no model {body.get('model')!r}"}})
            server.requests.append(body)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            chunks = [{"role": "assistant", "content": piece} for piece in server.pieces]
            for index, delta in enumerate(chunks):
                if index and delay_s:
                    time.sleep(delay_s)
                self._event({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}, index)
            self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, len(chunks))
            usage = {"prompt_tokens": 5, "completion_tokens": len(chunks), "total_tokens": 5 + len(chunks)}
            self._event({"choices": [], "usage": usage}, len(chunks) + 1)
            self.wfile.write(b"data: [DONE]\n\n")

        def _event(self, fields: dict[str, Any], index: int) -> None:
            chunk = {"id": f"chunk-{index}", "object": "chat.completion.chunk", "created": 0, "model": model, **fields}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()

        def _json(self, status: int, document: dict[str, Any]) -> None:
            data = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server = FakeOpenAI(f"http://127.0.0.1:{httpd.server_address[1]}/v1", model, list(pieces))
    thread = threading.Thread(target=httpd.serve_forever, name="fake-openai", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
