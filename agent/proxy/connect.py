"""The node-to-node hop's handshake: an HTTP/1.1 CONNECT, sans-IO.

The source agent asks the destination pod's agent (port 15008) for ``CONNECT <pod IP>:<port>``
and names the source workload in a header; the destination agent answers 200 (connected to
the app), 400 (not a CONNECT for this pod), 503 (the app did not accept). After a 200 the
connection carries the application's bytes unchanged. This is the plaintext form of the HBONE
handshake (which is HTTP/2 CONNECT over mutual TLS); h11 does the HTTP parsing, so limits and
partial reads are handled by a well-kept parser rather than by us.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

import h11

SOURCE_HEADER = b"x-nodemesh-source"
MAX_HEADER_BYTES = 8192

STATUS_OK = 200
STATUS_BAD_REQUEST = 400
STATUS_UNAVAILABLE = 503


class HandshakeError(Exception):
    """The peer broke the handshake; ``status`` is what a server should answer."""

    def __init__(self, message: str, status: int = STATUS_BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ConnectRequest:
    host: str
    port: int
    source: str  # the source workload, as the client agent names it


def authority(host: str, port: int) -> str:
    return f"{host}:{port}"


def parse_authority(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise HandshakeError(f"bad CONNECT authority {value!r}")
    return host, int(port)


class ClientHandshake:
    """The source agent's side: ``request()`` bytes to send, then ``feed()`` until a status."""

    def __init__(self, host: str, port: int, source: str) -> None:
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)
        self._target = authority(host, port)
        self._source = source

    def request(self) -> bytes:
        headers = [("host", self._target), (SOURCE_HEADER.decode(), self._source)]
        return self._conn.send(h11.Request(method="CONNECT", target=self._target, headers=headers)) + (
            self._conn.send(h11.EndOfMessage()) or b""
        )

    def feed(self, data: bytes) -> tuple[int, bytes] | None:
        """(status, bytes after the response) once the response head is complete, else None."""
        try:
            self._conn.receive_data(data)
            event = self._conn.next_event()
        except h11.RemoteProtocolError as e:
            raise HandshakeError(f"bad CONNECT response: {e}", STATUS_UNAVAILABLE) from e
        if event is h11.NEED_DATA:
            if not data:
                raise HandshakeError("connection closed during the CONNECT handshake", STATUS_UNAVAILABLE)
            return None
        if not isinstance(event, h11.Response):
            raise HandshakeError(f"unexpected {type(event).__name__} in CONNECT response", STATUS_UNAVAILABLE)
        leftover = self._conn.trailing_data[0] if event.status_code == STATUS_OK else b""
        return event.status_code, leftover


class ServerHandshake:
    """The destination agent's side: ``feed()`` until a request, then ``respond()``."""

    def __init__(self) -> None:
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)

    def feed(self, data: bytes) -> ConnectRequest | None:
        try:
            self._conn.receive_data(data)
            event = self._conn.next_event()
        except h11.RemoteProtocolError as e:
            raise HandshakeError(f"bad request: {e}") from e
        if event is h11.NEED_DATA:
            if not data:
                raise HandshakeError("connection closed before a complete request")
            return None
        if not isinstance(event, h11.Request):
            raise HandshakeError(f"unexpected {type(event).__name__}")
        if event.method != b"CONNECT":
            raise HandshakeError(f"method {event.method.decode(errors='replace')} is not CONNECT")
        host, port = parse_authority(event.target.decode(errors="replace"))
        source = dict(event.headers).get(SOURCE_HEADER, b"").decode(errors="replace")
        return ConnectRequest(host=host, port=port, source=source)

    def respond(self, status: int) -> bytes:
        """The response head; after a 200 the stream is the application's."""
        headers = [] if status == STATUS_OK else [("content-length", "0"), ("connection", "close")]
        reason = HTTPStatus(status).phrase.encode()
        return self._conn.send(h11.Response(status_code=status, headers=headers, reason=reason))

    def leftover(self) -> bytes:
        """Bytes that arrived after the request head (the application's first bytes)."""
        return self._conn.trailing_data[0]
