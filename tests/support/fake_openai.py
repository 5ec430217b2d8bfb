"""A scripted OpenAI-compatible server on 127.0.0.1: /v1/models and streamed /v1/chat/completions and /v1/completions,
nothing more.

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
    requests: list[dict[str, Any]] = field(default_factory=list)  # the chat and completion requests, in order
    paths: list[str] = field(default_factory=list)  # the route of each request in ``requests``


@contextmanager
def fake_openai(model: str = "m", pieces: tuple[str, ...] = ("Hel", "lo", "!"),
                delay_s: float = 0.0) -> Iterator[FakeOpenAI]:  # fmt: skip
    """Serve ``model``, answering every chat or completion with ``pieces`` streamed one chunk each (``delay_s`` apart),
    then "stop" and usage."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            if self.path.rstrip("/") != "/v1/models":
                return self._json(404, {"error": {"message": f"no route {self.path}"}})
            self._json(200, {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "test"}]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            path = self.path.rstrip("/")
            if path not in ("/v1/chat/completions", "/v1/completions") or body.get("model") != model:
                return self._json(404, {"error": {"message": f"no model {body.get('model')!r}"}})
            server.requests.append(body)
            server.paths.append(path)
            chat = path == "/v1/chat/completions"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for index, piece in enumerate(server.pieces):
                if index and delay_s:
                    time.sleep(delay_s)
                self._event(chat, {"choices": [self._choice(chat, piece, None)]}, index)
            count = len(server.pieces)
            self._event(chat, {"choices": [self._choice(chat, "", "stop")]}, count)
            usage = {"prompt_tokens": 5, "completion_tokens": count, "total_tokens": 5 + count}
            self._event(chat, {"choices": [], "usage": usage}, count + 1)
            self.wfile.write(b"data: [DONE]\n\n")

        @staticmethod
        def _choice(chat: bool, piece: str, finish: str | None) -> dict[str, Any]:
            if chat:
                delta = {"role": "assistant", "content": piece} if piece else {}
                return {"index": 0, "delta": delta, "finish_reason": finish}
            return {"index": 0, "text": piece, "finish_reason": finish}

        def _event(self, chat: bool, fields: dict[str, Any], index: int) -> None:
            kind = "chat.completion.chunk" if chat else "text_completion"
            chunk = {"id": f"chunk-{index}", "object": kind, "created": 0, "model": model, **fields}
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
