"""An HBONE connection: HTTP/2 (h2, sans-IO) over one TLS transport, carrying many streams.

What client and server share: the settings, feeding received bytes to h2 and its events to
the streams, writing h2's output once per batch of events or loop iteration (one TLS write
where a naive loop would make one per frame), the TLS transport's back-pressure passed to
every stream, closing when idle, and failing every stream at once when the connection is lost.

Settings, for throughput with few Python calls per byte: streams get a 4 MiB window and the
connection 16 MiB (ztunnel's values), so one stream keeps a link busy without waiting for
WINDOW_UPDATEs; DATA frames are up to 64 KiB. Measured (tools/bench/hbone.py): 64 KiB frames
beat both 16 KiB (more per-frame calls) and 256 KiB or 1 MiB (h2 copies each payload three or
four times, and copies of frames that no longer fit the CPU cache cost more than the calls
saved). Headers are tiny in HBONE: the header list is capped at 16 KiB; a header block split
over CONTINUATION frames is bounded by h2 (64 frames) times the frame size.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame

from nodemesh.agent.proxy.hbone.stream import StreamTransport
from nodemesh.agent.tls.peer import describe

log = logging.getLogger(__name__)

MAX_HEADER_LIST_SIZE = 16 << 10
MAX_CONCURRENT_STREAMS = 100
DEFAULT_CONNECTION_WINDOW = 65535  # RFC 9113 6.9.2

# The TLS transport's write buffer: above HIGH every stream's source stops reading.
WRITE_BUFFER_HIGH = 4 << 20
WRITE_BUFFER_LOW = 1 << 20


def _data_frame_body_repr(self: DataFrame) -> str:
    return f"data=<{len(self.data)} bytes>"


# h2 formats every frame it receives for a trace log line, logged or not
# (``logger.trace("Received frame: %s", repr(frame))`` in H2Connection._receive_frame), and
# hyperframe's repr of a DATA frame copies and hex-encodes the whole payload to show 20
# characters of it: at 256 KiB frames that was half of a receiver's CPU time. DATA frames
# describe themselves by length instead (checked by tests/unit/test_hbone_tunnel.py).
DataFrame._body_repr = _data_frame_body_repr  # type: ignore[method-assign]


@dataclass(frozen=True)
class Windows:
    """Flow-control windows and frame size: what decides throughput (see tools/bench/hbone.py)."""

    stream: int = 4 << 20
    connection: int = 16 << 20
    max_frame: int = 64 << 10


TUNED = Windows()
H2_DEFAULTS = Windows(stream=65535, connection=65535, max_frame=16384)  # what h2 does untold


def new_connection(client: bool, windows: Windows = TUNED,
                   max_concurrent_streams: int = MAX_CONCURRENT_STREAMS) -> h2.connection.H2Connection:
    """An h2 connection with HBONE's settings, its preface queued."""
    # Outbound headers are ours alone (CONNECT, an IP:port authority, a status), built well
    # formed: checking and normalising them again was a tenth of h2's cost per stream.
    # What the peer sends is still validated.
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=client, header_encoding=None, validate_outbound_headers=False,
        normalize_outbound_headers=False))
    initial = {
        SettingCodes.INITIAL_WINDOW_SIZE: windows.stream,
        SettingCodes.MAX_FRAME_SIZE: windows.max_frame,
        SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
        SettingCodes.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
    }
    if client:
        initial[SettingCodes.ENABLE_PUSH] = 0
    # Our first SETTINGS frame carries these; enforcing them from the start is safe because
    # each is at least as permissive as the default the peer may use until it has read them,
    # except the two limits, which bound what we accept from the first byte on.
    conn.local_settings = h2.settings.Settings(client=client, initial_values=initial)
    conn.max_inbound_frame_size = windows.max_frame
    conn.decoder.max_header_list_size = MAX_HEADER_LIST_SIZE
    conn.initiate_connection()
    if windows.connection > DEFAULT_CONNECTION_WINDOW:
        conn.increment_flow_control_window(windows.connection - DEFAULT_CONNECTION_WINDOW)
    return conn


class Tunnel(asyncio.Protocol):
    """The protocol of one HBONE TLS connection; ``ClientTunnel`` and ``ServerTunnel`` add their side."""

    client = True

    def __init__(self, idle_timeout: float, windows: Windows = TUNED) -> None:
        self.source_identity = ""  # SPIFFE ids of the two ends, once known
        self.destination_identity = ""
        self.peer_node = ""
        self.h2 = new_connection(self.client, windows)
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, StreamTransport] = {}
        self.blocked: set[StreamTransport] = set()  # streams waiting for window
        self.writing_paused = False
        self.lost = False
        self.goaway = False  # the peer will take no new streams
        self.idle_timeout = idle_timeout
        self.started = time.monotonic()
        self.bytes_sent = 0
        self.bytes_received = 0
        self.streams_total = 0
        self._batching = False
        self._flush_scheduled = False
        self._loop = asyncio.get_running_loop()
        self._idle: asyncio.TimerHandle | None = None
        self._handlers: dict[type, Callable] = {
            h2.events.DataReceived: self._data,
            h2.events.StreamEnded: self._ended,
            h2.events.StreamReset: self._reset,
            h2.events.WindowUpdated: self._window,
            h2.events.RemoteSettingsChanged: self._settings,
            h2.events.ConnectionTerminated: self._terminated,
        }

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH, low=WRITE_BUFFER_LOW)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            # h2 has queued a GOAWAY naming the error: send it, then close
            log.info("HBONE connection %s: protocol error from the peer: %s", self.peer(), e)
            self.flush_now()
            self.transport.close()  # type: ignore[union-attr]
            return
        self._batching = True
        try:
            handlers = self._handlers
            for event in events:
                handler = handlers.get(type(event))
                if handler is not None:
                    handler(event)
        finally:
            self._batching = False
        self.flush_now()  # what the batch queued (replies, acknowledgements), in one write

    def pause_writing(self) -> None:
        self.writing_paused = True
        for stream in list(self.streams.values()):
            stream.update_writing()

    def resume_writing(self) -> None:
        self.writing_paused = False
        for stream in list(self.streams.values()):
            stream.update_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._cancel_idle()
        why = f"the HBONE connection to {self.peer()} was lost" + (f": {exc}" if exc else "")
        for stream in list(self.streams.values()):
            stream.reset_by_peer(why)

    # -- for streams and subclasses ------------------------------------------------------
    def flush(self) -> None:
        """Write what h2 has queued, once, when the work at hand is done.

        Frames queued while received events are handled go out in one write at the end of
        the batch. Others (a stream opening, a reply, an end of stream) go at the end of this
        loop iteration, with what the connection's other streams queued meanwhile: under
        many concurrent connections, one TLS record encrypted, one send and one wake-up of
        the peer for several frames (measured: 17% less CPU per new connection). DATA does
        not wait (``flush_now``): a relay's write is already a large batch.
        """
        if not (self._batching or self._flush_scheduled) and self.transport is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush_now)

    def flush_now(self) -> None:
        """Write what h2 has queued now: before closing, so that nothing queued is lost."""
        self._flush_scheduled = False
        if self.transport is None or self.transport.is_closing():
            return
        data = self.h2.data_to_send()
        if data:
            self.bytes_sent += len(data)
            self.transport.write(data)

    def add_stream(self, stream: StreamTransport) -> None:
        self.streams[stream.id] = stream
        self.streams_total += 1
        self._cancel_idle()

    def stream_finished(self, stream: StreamTransport) -> None:
        self.streams.pop(stream.id, None)
        self.blocked.discard(stream)
        if not self.streams and not self.lost:
            self.idle()

    def idle(self) -> None:
        """No stream is open: close after ``idle_timeout``, or at once if no new stream may come."""
        if self.goaway:
            self.close()
        elif self._idle is None:
            self._idle = asyncio.get_running_loop().call_later(self.idle_timeout, self.close)

    def close(self) -> None:
        """Say goodbye (GOAWAY) and close once written; open streams are reset."""
        self._cancel_idle()
        if self.transport is None or self.transport.is_closing():
            return
        try:
            self.h2.close_connection()
        except h2.exceptions.ProtocolError:
            pass  # already closed on the h2 level
        self.flush_now()
        self.transport.close()

    def peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return f"{peer[0]}:{peer[1]}" if peer else "?"

    def info(self) -> dict[str, object]:
        """What ``nodemesh tunnels`` shows of this connection."""
        version, cipher = describe(self.transport) if self.transport else ("", "")
        return {
            "direction": "outbound" if self.client else "inbound",
            "peer": self.peer(),
            "peer_node": self.peer_node,
            "source_identity": self.source_identity,
            "destination_identity": self.destination_identity,
            "streams_open": len(self.streams),
            "streams_total": self.streams_total,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "age_seconds": round(time.monotonic() - self.started, 3),
            "tls_version": version,
            "cipher": cipher,
        }

    def _cancel_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    # -- h2 events -----------------------------------------------------------------------
    def _data(self, event: h2.events.DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:  # we reset it: still give the connection's window back
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        else:
            stream.data_from_peer(event.data, event.flow_controlled_length)

    def _ended(self, event: h2.events.StreamEnded) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.end_from_peer()

    def _reset(self, event: h2.events.StreamReset) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.reset_by_peer(f"the peer reset the stream ({_code(event.error_code)})")

    def _window(self, event: h2.events.WindowUpdated) -> None:
        if event.stream_id == 0:
            for stream in list(self.blocked):
                stream.window_opened()
        else:
            stream = self.streams.get(event.stream_id)
            if stream is not None and stream in self.blocked:
                stream.window_opened()

    def _settings(self, event: h2.events.RemoteSettingsChanged) -> None:
        if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            for stream in list(self.blocked):
                stream.window_opened()

    def _terminated(self, event: h2.events.ConnectionTerminated) -> None:
        """GOAWAY: no new streams. A server's names the last of ours it saw: the later ones fail."""
        self.goaway = True
        if self.client:
            why = f"the peer closed the connection (GOAWAY {_code(event.error_code)})"
            for stream in [s for s in self.streams.values() if s.id > (event.last_stream_id or 0)]:
                stream.reset_by_peer(why)
        if not self.streams:
            self.close()


def _code(code: object) -> str:
    return code.name if isinstance(code, ErrorCodes) else str(code)
