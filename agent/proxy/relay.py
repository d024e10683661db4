"""Relaying bytes between two transports: the proxy's hot path.

Two ``Pipe`` protocols, one per connection end, each writing what it reads into the other's
transport. Back-pressure is the transports' own: when a side's write buffer passes its high
mark, the other side stops reading until it drains. A half-close (EOF one way) is passed on
with ``write_eof`` while the other direction keeps flowing; the connection is closed when both
directions ended, and a reset on one side resets the other.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Callable

# Large buffers: fewer wake-ups and Python calls per byte on bulk transfers.
WRITE_BUFFER_HIGH = 1 << 20
WRITE_BUFFER_LOW = 1 << 18

_LINGER_RESET = struct.pack("ii", 1, 0)


def reset(transport: asyncio.BaseTransport) -> None:
    """Close with a TCP RST, so that the peer learns at once that the connection failed."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass
    transport.abort()


class Pipe(asyncio.Protocol):
    """One end of a relayed connection."""

    __slots__ = ("transport", "peer", "received", "read_eof", "lost", "writing_paused", "_on_lost")

    def __init__(self, on_lost: Callable[["Pipe", Exception | None], None]) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Pipe | None = None
        self.received = 0
        self.read_eof = False
        self.lost = False
        self.writing_paused = False
        self._on_lost = on_lost

    def attach(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH, low=WRITE_BUFFER_LOW)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.attach(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.peer.transport.write(data)  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        self.read_eof = True
        peer = self.peer
        if peer is None or peer.lost:
            return False
        if peer.transport.can_write_eof():  # type: ignore[union-attr]
            peer.transport.write_eof()  # type: ignore[union-attr]
        if peer.read_eof:  # both directions are done
            peer.transport.close()  # type: ignore[union-attr]
            return False
        return True  # keep our side open: the other direction still flows

    def pause_writing(self) -> None:
        self.writing_paused = True
        self.peer.transport.pause_reading()  # type: ignore[union-attr]

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.peer.transport.resume_reading()  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        peer = self.peer
        if peer is not None and not peer.lost and peer.transport is not None:
            if exc is not None:
                reset(peer.transport)
            else:
                peer.transport.close()  # flushes what is buffered first
        self._on_lost(self, exc)


def pair(on_lost: Callable[[Pipe, Exception | None], None]) -> tuple[Pipe, Pipe]:
    """Two pipes that feed each other: (downstream end, upstream end)."""
    down, up = Pipe(on_lost), Pipe(on_lost)
    down.peer, up.peer = up, down
    return down, up
