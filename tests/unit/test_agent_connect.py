"""The hop's CONNECT handshake, without sockets."""

import pytest

from nodemesh.agent.proxy.connect import (
    MAX_HEADER_BYTES,
    ClientHandshake,
    HandshakeError,
    ServerHandshake,
    parse_authority,
)


def test_round_trip_keeps_application_bytes_on_both_sides() -> None:
    client = ClientHandshake("10.10.2.10", 8080, "shop/client")
    server = ServerHandshake()
    request = client.request()
    assert server.feed(request[:7]) is None  # partial head: needs more
    got = server.feed(request[7:] + b"first app bytes")
    assert (got.host, got.port, got.source) == ("10.10.2.10", 8080, "shop/client")
    assert server.leftover() == b"first app bytes"
    assert client.feed(server.respond(200) + b"greeting") == (200, b"greeting")


@pytest.mark.parametrize("status", [400, 503])
def test_client_sees_refusals(status: int) -> None:
    client = ClientHandshake("10.10.2.10", 8080, "shop/client")
    server = ServerHandshake()
    client.request()
    head = server.respond(status)
    assert head.startswith(b"HTTP/1.1 %d" % status)
    assert client.feed(head) == (status, b"")


@pytest.mark.parametrize(
    "request_bytes, message",
    [
        (b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", "not CONNECT"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", "bad request"),
        (b"CONNECT nohostport HTTP/1.1\r\nhost: x\r\n\r\n", "authority"),
    ],
)
def test_server_refuses_what_is_not_a_connect(request_bytes: bytes, message: str) -> None:
    server = ServerHandshake()
    with pytest.raises(HandshakeError, match=message) as e:
        server.feed(request_bytes)
    assert e.value.status == 400
    assert server.respond(400).startswith(b"HTTP/1.1 400")


def test_server_refuses_a_huge_header_block() -> None:
    server = ServerHandshake()
    with pytest.raises(HandshakeError):
        server.feed(b"CONNECT 10.0.0.1:80 HTTP/1.1\r\nx-filler: " + b"a" * (MAX_HEADER_BYTES + 1))


def test_eof_before_a_whole_request_is_an_error() -> None:
    server = ServerHandshake()
    server.feed(b"CONNECT 10.0.0.1:80 HTTP/1.1\r\n")
    with pytest.raises(HandshakeError, match="closed"):
        server.feed(b"")


@pytest.mark.parametrize("value", ["10.0.0.1", "10.0.0.1:", ":80", "10.0.0.1:99999", "10.0.0.1:x"])
def test_bad_authorities(value: str) -> None:
    with pytest.raises(HandshakeError):
        parse_authority(value)
