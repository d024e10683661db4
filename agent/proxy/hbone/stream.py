"""One HBONE stream as an asyncio transport, so that the relay's ``Pipe`` works on it as on a socket.

The relay (``nodemesh.agent.proxy.relay``) already knows how to splice two transports: pass
data on, map back-pressure, pass half-closes, turn a reset on one side into a reset on the
other. Making a CONNECT stream look like a transport reuses all of that, and maps HTTP/2 onto
it in one place:

- writing: DATA frames within the stream's and the connection's flow-control windows; what
  does not fit waits here and the protocol is told to pause (the other side stops reading)
  until a WINDOW_UPDATE lets it go. ``write_eof`` is END_STREAM, after what waits.
- reading: DATA is handed to the protocol and acknowledged (WINDOW_UPDATE, batched by h2) only
  as it is handed over. While the protocol has reading paused (its peer's write buffer is
  full), DATA waits here unacknowledged, so the sender's window closes: a slow reader stops the
  sender and no buffer grows beyond the window.
- END_STREAM from the peer is ``eof_received``; RST_STREAM from the peer is ``connection_lost``
  with an error (the relay then resets the TCP side); ``abort`` sends RST_STREAM.

A stream starts with reading paused: what arrives before the relay is attached waits.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Protocol

import h2.connection
from h2.errors import ErrorCodes
from h2.exceptions import StreamClosedError


class Carrier(Protocol):
    """What a stream needs of the connection carrying it (``nodemesh.agent.proxy.hbone.tunnel``)."""

    h2: h2.connection.H2Connection
    blocked: set["StreamTransport"]  # streams waiting for flow-control window
    writing_paused: bool  # the TLS transport's write buffer is full

    def flush(self) -> None:
        """Write h2's output at the end of this loop iteration (batched with other streams')."""

    def flush_now(self) -> None:
        """Write h2's output now."""

    def stream_finished(self, stream: "StreamTransport") -> None:
        """The stream is done both ways: forget it."""


class StreamReset(ConnectionResetError):
    """The peer reset the stream, or the connection carrying it was lost."""


class StreamTransport(asyncio.Transport):
    __slots__ = ("tunnel", "id", "response", "_protocol", "_reading", "_inbox", "_remote_ended",
                 "_eof_delivered", "_local_ended", "_eof_pending", "_pending", "_pending_size",
                 "_closing", "_done", "_error", "_protocol_paused")

    def __init__(self, tunnel: Carrier, stream_id: int) -> None:
        super().__init__()
        self.tunnel = tunnel
        self.id = stream_id
        self.response: asyncio.Future[int] | None = None  # client side: the :status answer
        self._protocol: asyncio.BaseProtocol | None = None
        self._reading = False
        self._inbox: deque[tuple[bytes, int]] = deque()  # (data, flow-controlled length) not handed over
        self._remote_ended = False
        self._eof_delivered = False
        self._local_ended = False
        self._eof_pending = False  # write_eof() while data still waits for window
        self._pending: deque[bytes | memoryview] = deque()  # written, waiting for window
        self._pending_size = 0
        self._closing = False
        self._done = False
        self._error: Exception | None = None
        self._protocol_paused = False

    # -- the transport interface ---------------------------------------------------------
    def connect(self, protocol: asyncio.BaseProtocol) -> None:
        """Make ``protocol`` this stream's, as ``loop.create_connection`` would (reading stays paused)."""
        self._protocol = protocol
        self._protocol_paused = False
        protocol.connection_made(self)
        if self._done:
            asyncio.get_running_loop().call_soon(protocol.connection_lost, self._error)
        else:
            self._update_writing()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol
        if self._protocol_paused:  # the new protocol must learn what the old one was told
            protocol.pause_writing()

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol  # type: ignore[return-value]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default  # no socket of its own: relay.reset() falls back to abort()

    def is_closing(self) -> bool:
        return self._closing

    def is_reading(self) -> bool:
        return self._reading

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if self._reading or self._closing:
            return
        self._reading = True
        inbox, h2 = self._inbox, self.tunnel.h2
        while inbox and self._reading:
            data, length = inbox.popleft()
            self._protocol.data_received(data)  # type: ignore[union-attr]
            h2.acknowledge_received_data(length, self.id)
        if self._reading and self._remote_ended and not self._eof_delivered and not self._done:
            self._deliver_eof()
        self.tunnel.flush()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Nothing to set: writes wait here only while the window is closed, one write at most."""

    def get_write_buffer_size(self) -> int:
        return self._pending_size

    def can_write_eof(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._local_ended or self._eof_pending:
            return  # a socket would raise; the relay never writes after EOF or close
        if self._pending:
            self._pending.append(data)
            self._pending_size += len(data)
            return
        rest = self._send(data)
        if rest is not None:
            self._pending.append(rest)
            self._pending_size += len(rest)
            self.tunnel.blocked.add(self)
            self._update_writing()
        self.tunnel.flush_now()

    def write_eof(self) -> None:
        if self._local_ended or self._eof_pending or self._done:
            return
        if self._pending:
            self._eof_pending = True
            return
        self._end()
        self.tunnel.flush()

    def close(self) -> None:
        """END_STREAM after what waits; if the peer is still sending, RST_STREAM (CANCEL) too."""
        if self._closing:
            return
        self._closing = True
        self._reading = False
        if not self._pending:
            self._close_now()

    def abort(self) -> None:
        self.reset(ErrorCodes.CONNECT_ERROR)  # RFC 9113 8.5: how a proxy reports a TCP failure

    def reset(self, code: ErrorCodes) -> None:
        """RST_STREAM with ``code`` now, dropping whatever waits."""
        if self._done:
            return
        self._closing = True
        if not (self._local_ended and self._remote_ended):
            try:
                self.tunnel.h2.reset_stream(self.id, code)
            except StreamClosedError:
                pass
        self._local_ended = self._remote_ended = True
        self.tunnel.flush()
        self._finish(None)

    # -- server side: the answer to the CONNECT request ----------------------------------
    def respond(self, status: int) -> None:
        """Send the response; anything but 200 ends the stream (and stops the client's sending)."""
        if self._done:
            return
        ok = status == 200
        try:
            self.tunnel.h2.send_headers(self.id, [(b":status", b"%d" % status)], end_stream=not ok)
        except StreamClosedError:
            return  # reset by the peer in this same batch: see _end's note
        if ok:
            self.tunnel.flush()
            return
        self._local_ended = True
        if not self._remote_ended:  # RFC 9113 8.1: NO_ERROR asks the client to stop sending
            self.reset(ErrorCodes.NO_ERROR)
        else:
            self.tunnel.flush()
            self._finish(None)

    # -- what the tunnel hands over ------------------------------------------------------
    def data_from_peer(self, data: bytes, length: int) -> None:
        if self._reading and not self._inbox:
            self._protocol.data_received(data)  # type: ignore[union-attr]
            self.tunnel.h2.acknowledge_received_data(length, self.id)
        elif self._closing:
            self.tunnel.h2.acknowledge_received_data(length, self.id)  # dropped, as close() would
        else:
            self._inbox.append((data, length))

    def end_from_peer(self) -> None:
        self._remote_ended = True
        if self._reading and not self._inbox:
            self._deliver_eof()

    def reset_by_peer(self, why: str) -> None:
        self._local_ended = self._remote_ended = True
        self._finish(StreamReset(why))

    def window_opened(self) -> None:
        """The peer let us send more: send what waits, then EOF or close if they were asked for."""
        pending = self._pending
        while pending:
            rest = self._send(pending[0])
            if rest is not None:
                self._pending_size -= len(pending[0]) - len(rest)
                pending[0] = rest
                return
            self._pending_size -= len(pending.popleft())
        self.tunnel.blocked.discard(self)
        if self._eof_pending:
            self._end()
        if self._closing:
            self._close_now()
        else:
            self._update_writing()

    def update_writing(self) -> None:
        """The tunnel's own write buffer filled or drained: tell the protocol if that changes things."""
        self._update_writing()

    # -- inside --------------------------------------------------------------------------
    def _send(self, data: bytes | bytearray | memoryview) -> memoryview | None:
        """Send what the windows allow; return the rest, or None if all went (or was dropped)."""
        h2 = self.tunnel.h2
        try:
            window = h2.local_flow_control_window(self.id)
            frame = h2.max_outbound_frame_size
            size = len(data)
            if size <= window and size <= frame:
                h2.send_data(self.id, data)
                return None
            view = memoryview(data)
            while view and window > 0:
                n = min(len(view), window, frame)
                h2.send_data(self.id, view[:n])
                view = view[n:]
                window -= n
        except StreamClosedError:
            return None  # reset by the peer in this same batch: see _end's note
        return view if view else None

    def _end(self) -> None:
        self._eof_pending = False
        self._local_ended = True
        try:
            self.tunnel.h2.end_stream(self.id)
        except StreamClosedError:
            pass  # reset by the peer in this same batch: see _end's note

    # h2 parses a whole read before we see its events: when a batch holds DATA then
    # RST_STREAM, the stream is already closed inside h2 while we hand over the DATA, and what
    # the protocol writes back meets a closed stream. It is dropped: the StreamReset event of
    # the same batch comes next and ends the stream.

    def _deliver_eof(self) -> None:
        self._eof_delivered = True
        if not self._protocol.eof_received():  # type: ignore[union-attr]
            self.close()

    def _close_now(self) -> None:
        if self._done:
            return
        if not self._local_ended:
            self._end()
        if not self._remote_ended:
            self.reset(ErrorCodes.CANCEL)
            return
        self.tunnel.flush()
        self._finish(None)

    def _update_writing(self) -> None:
        paused = bool(self._pending) or self.tunnel.writing_paused
        if paused is self._protocol_paused:
            return
        self._protocol_paused = paused
        protocol = self._protocol
        if protocol is not None and not self._done:
            if paused:
                protocol.pause_writing()
            else:
                protocol.resume_writing()

    def _finish(self, exc: Exception | None) -> None:
        """The stream is over: give back the window of what was not handed over, tell everyone."""
        if self._done:
            return
        self._done = self._closing = True
        self._error = exc
        h2 = self.tunnel.h2
        for _, length in self._inbox:
            h2.acknowledge_received_data(length, self.id)  # the connection's window, not lost
        self._inbox.clear()
        self._pending.clear()
        self._pending_size = 0
        if self.response is not None and not self.response.done():
            self.response.set_exception(exc or StreamReset("the stream ended before an answer"))
        self.tunnel.stream_finished(self)
        if self._protocol is not None:
            asyncio.get_running_loop().call_soon(self._protocol.connection_lost, exc)
