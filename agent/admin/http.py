"""A small HTTP server for the agent's admin API, readiness and metrics (``views`` says what they show).

Served by the standard library on threads, away from the proxy's loop; each request runs its
view on the loop (``run_coroutine_threadsafe``), so what it returns is consistent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Awaitable, Callable
from urllib.parse import parse_qsl

from nodemesh.errors import CannotListen

log = logging.getLogger(__name__)

Answer = Awaitable[tuple[int, object]]
Route = Callable[[], Answer]


@dataclass(frozen=True)
class WithQuery:
    """A route that reads the request's query string (``?a=1&b=2``; a name given twice: the last)."""

    view: Callable[[dict[str, str]], Answer]


Routes = dict[str, Route | WithQuery]


@dataclass(frozen=True)
class Text:
    """A body that is not JSON (the Prometheus exposition format)."""

    body: bytes
    content_type: str


def _json(body: object) -> bytes:
    return json.dumps(body, indent=2, sort_keys=True).encode() + b"\n"


class _Handler(BaseHTTPRequestHandler):
    routes: Routes = {}
    loop: asyncio.AbstractEventLoop

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path, _, query = self.path.partition("?")
        route = self.routes.get(path)
        try:
            if route is None:
                status, body = HTTPStatus.NOT_FOUND, {"error": f"no such endpoint; try {sorted(self.routes)}"}
            else:
                answer = route.view(dict(parse_qsl(query))) if isinstance(route, WithQuery) else route()
                status, body = asyncio.run_coroutine_threadsafe(answer, self.loop).result(timeout=5)
            if isinstance(body, Text):
                data, content_type = body.body, body.content_type
            else:  # here: an answer that is not JSON is the view's error too, not a dropped connection
                data, content_type = _json(body), "application/json"
        except Exception as e:
            status, data, content_type = HTTPStatus.INTERNAL_SERVER_ERROR, _json({"error": repr(e)}), "application/json"
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("admin: " + format, *args)


class HttpEndpoint:
    """A small HTTP server on a thread, whose routes run on the loop."""

    def __init__(self, host: str, port: int, routes: Routes, loop: asyncio.AbstractEventLoop) -> None:
        handler = type("Handler", (_Handler,), {"routes": routes, "loop": loop})
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as e:
            raise CannotListen(e.errno, f"cannot listen on {host}:{port}: {e.strerror}; is another agent "
                               "running in this network namespace? choose another port with the flags") from e
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"http-{port}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
