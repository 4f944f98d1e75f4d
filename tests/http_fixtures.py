"""A real HTTP server on 127.0.0.1 (ephemeral port) that serves recorded API responses, with
switches for error statuses, 429 rate limits, slow answers and malformed bodies. No internet."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass
class Reply:
    """One answer: status, JSON-able or raw body, extra headers."""

    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass(frozen=True)
class Recorded:
    """A request the server received (header names lower-case)."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]


Route = Reply | Callable[[Recorded], Reply]


class FixtureServer:
    """Serves routes by exact path; unknown paths get a 404 JSON error.

    Switches (set between requests): ``fail_status`` answers every request with that status;
    ``rate_limit_retry_after`` answers 429 with that ``Retry-After``; ``delay_seconds`` waits
    before answering; ``malformed`` cuts every body in half (invalid JSON, status 200).
    """

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Recorded] = []
        self.fail_status: int | None = None
        self.rate_limit_retry_after: float | None = None
        self.delay_seconds = 0.0
        self.malformed = False
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def _serve(self) -> None:
        # A short poll interval keeps shutdown (one poll) fast between tests.
        self._httpd.serve_forever(poll_interval=0.01)

    def route(self, path: str, reply: Route) -> None:
        self.routes[path] = reply

    def route_file(self, path: str, fixture: str) -> None:
        """Serve ``tests/fixtures/<fixture>`` as JSON at ``path``."""
        self.routes[path] = Reply((FIXTURES / fixture).read_bytes())

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def __enter__(self) -> FixtureServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def answer(self, request: Recorded) -> Reply:
        self.requests.append(request)
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        if self.rate_limit_retry_after is not None:
            retry = f"{self.rate_limit_retry_after:g}"
            return Reply({"error": "rate limited"}, 429, {"Retry-After": retry})
        if self.fail_status is not None:
            return Reply(
                {"error": {"code": str(self.fail_status), "message": "fixture"}}, self.fail_status
            )

        route = self.routes.get(request.path)
        if route is None:
            return Reply({"error": {"code": "404 Not Found", "message": request.path}}, 404)
        reply = route(request) if callable(route) else route
        if self.malformed:
            raw = reply.encoded()
            return Reply(raw[: len(raw) // 2], reply.status, reply.headers)
        return reply

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                parts = urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                request = Recorded(parts.path, dict(parse_qsl(parts.query)), headers)
                reply = server.answer(request)
                body = reply.encoded()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a slow answer, as the tests intend

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
