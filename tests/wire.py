"""What the simulated network's wire shows: TCP payloads on a node's link, and TLS handshakes in them.

Tests read the wire rather than take a proxy's word that a hop is encrypted: a capture on the
bridge sees what a neighbour on a real network would. The one part of a TLS 1.3 handshake left
in the clear, the ServerHello, says which version and cipher suite were negotiated and whether
the session was resumed.
"""

from __future__ import annotations

import socket
from collections import defaultdict
from dataclasses import dataclass

from nodemesh.netns import Netns
from nodemesh.tools.sim.names import SimNames, node_port_ifname

ETH_P_ALL = 0x0003
SO_RCVBUFFORCE = 33  # root may go past net.core.rmem_max: a burst must not be dropped unread
CAPTURE_BUFFER = 8 << 20


class Capture:
    """Every TCP payload on ``node``'s link (its port on the bridge), read with an AF_PACKET socket."""

    def __init__(self, names: SimNames, node: str) -> None:
        with Netns(names.netns_path(names.bridge_netns)) as ns:
            self.sock = ns.socket(socket.AF_PACKET, socket.SOCK_RAW)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, CAPTURE_BUFFER)
        self.sock.bind((node_port_ifname(node), ETH_P_ALL))
        self.sock.setblocking(False)
        self.segments: list[tuple[int, int, bytes]] = []  # (source port, destination port, payload)

    def drain(self) -> None:
        while True:
            try:
                frame = self.sock.recv(65536)
            except BlockingIOError:
                return
            if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != socket.IPPROTO_TCP:
                continue
            ip = frame[14:]
            ihl, total = (ip[0] & 0x0F) * 4, int.from_bytes(ip[2:4], "big")
            tcp = ip[ihl:total]
            offset = (tcp[12] >> 4) * 4
            if len(tcp) > offset:
                self.segments.append((int.from_bytes(tcp[0:2], "big"), int.from_bytes(tcp[2:4], "big"),
                                      bytes(tcp[offset:])))

    def payload(self, port: int) -> bytes:
        """Everything sent to or from ``port``, all connections and both directions together."""
        return b"".join(p for src, dst, p in self.segments if port in (src, dst))

    def sent_from(self, port: int) -> list[bytes]:
        """What ``port`` sent, one item per connection (told apart by the peer's port), in order."""
        streams: dict[int, bytearray] = defaultdict(bytearray)
        for src, dst, p in self.segments:
            if src == port:
                streams[dst] += p
        return [bytes(s) for s in streams.values()]

    def close(self) -> None:
        self.sock.close()


TLS13 = 0x0304
TLS13_SUITES = {0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384",
                0x1303: "TLS_CHACHA20_POLY1305_SHA256"}
_SUPPORTED_VERSIONS = 0x002B
_PRE_SHARED_KEY = 0x0029


@dataclass(frozen=True)
class ServerHello:
    version: int  # the negotiated one: supported_versions when present (TLS 1.3), else legacy
    cipher_suite: int
    extensions: tuple[int, ...]

    @property
    def resumed(self) -> bool:
        """A TLS 1.3 server that accepts a ticket (a PSK) says so with pre_shared_key."""
        return _PRE_SHARED_KEY in self.extensions


def server_hello(stream: bytes) -> ServerHello:
    """The ServerHello opening a server's side of a TLS connection; ValueError when there is none."""
    if len(stream) < 9 or stream[0] != 0x16 or stream[5] != 0x02:
        raise ValueError(f"not a TLS handshake record holding a ServerHello: {stream[:9].hex()}")
    body = stream[9:5 + int.from_bytes(stream[3:5], "big")]
    version = int.from_bytes(body[0:2], "big")
    at = 34 + 1 + body[34]  # legacy version, random, then the echoed session id
    suite = int.from_bytes(body[at:at + 2], "big")
    at += 3  # the suite and the compression method
    end = at + 2 + int.from_bytes(body[at:at + 2], "big")
    at += 2
    extensions = []
    while at + 4 <= end:
        kind, size = int.from_bytes(body[at:at + 2], "big"), int.from_bytes(body[at + 2:at + 4], "big")
        if kind == _SUPPORTED_VERSIONS:
            version = int.from_bytes(body[at + 4:at + 6], "big")
        extensions.append(kind)
        at += 4 + size
    return ServerHello(version, suite, tuple(extensions))
