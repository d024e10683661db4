"""The access log: one JSON line per connection, when it ends, written off the proxy's loop.

On the loop a connection's end costs one small dict of its values put on a bounded queue; a
thread of the standard library's ``QueueListener`` turns it into JSON and writes it, so a slow
terminal or disk never stalls relaying. If the writer falls that far behind (the queue holds
``QUEUE_SIZE`` lines), lines are dropped and counted (``dropped``, exported as
``nodemesh_access_log_dropped_total``) rather than holding memory or the loop.

Fields (ztunnel's names where it has them): ``start``, ``end`` (RFC 3339, UTC), ``duration_ms``,
``direction``, ``via`` (hbone, local, direct, plaintext), ``src`` and ``dst`` (``addr``,
``workload``, ``namespace``, ``identity``; ``dst`` also ``service`` and ``upstream``),
``bytes_received`` (from the client), ``bytes_sent`` (toward it),
``connection_security_policy``, ``response_flags``, ``outcome`` and, when it failed, ``error``;
``trace_id`` when the connection carries a trace.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from prometheus_client.core import CounterMetricFamily, Metric

from nodemesh.agent.proxy.conntrack import Connection
from nodemesh.agent.proxy.traffic import OK_FLAG, response_flag
from nodemesh.errors import UserError
from nodemesh.model import Workload

QUEUE_SIZE = 10_000
CLOSE_TIMEOUT = 5.0
STDERR = "stderr"
OFF = "off"


class AccessLogError(UserError):
    pass


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _side(workload: Workload | None, identity: str, addr: str) -> dict[str, str]:
    side = {"addr": addr}
    if workload is not None:
        side.update(workload=workload.workload_name or workload.name, namespace=workload.namespace)
    if identity:
        side["identity"] = identity
    return side


def line(conn: Connection) -> dict[str, object]:
    """What the log says about an ended connection (the writer's thread formats it)."""
    ok = conn.outcome == "ok"
    src_addr = conn.source_workload.ip if conn.source_workload is not None else conn.source
    dst = _side(conn.destination_workload, conn.destination_identity, conn.original_dst)
    dst.update(service=conn.service, upstream=conn.upstream)
    out: dict[str, object] = {
        "start": _time(conn.started), "end": _time(conn.ended),
        "duration_ms": round((conn.ended - conn.started) * 1000, 3),
        "direction": conn.direction, "via": conn.via,
        "src": _side(conn.source_workload, conn.source_identity, src_addr), "dst": dst,
        "bytes_received": conn.received, "bytes_sent": conn.sent,
        "connection_security_policy": conn.connection_security_policy or "unknown",
        "response_flags": OK_FLAG if ok else response_flag(conn.outcome), "outcome": conn.outcome,
    }
    if not ok:
        out["error"] = conn.failure
    if conn.trace_id:
        out["trace_id"] = f"{conn.trace_id:032x}"
    return out


class _Enqueue(logging.handlers.QueueHandler):
    """Puts the record as it is (its ``msg`` the connection's values): formatting is the
    writer's work, on its thread; a full queue drops the line and counts it."""

    def __init__(self, q: queue.Queue[logging.LogRecord], log: "AccessLog") -> None:
        super().__init__(q)
        self.log = log

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.log.dropped += 1


class _Writer(logging.handlers.QueueListener):
    """The writer's thread. Stopping waits for room for its end marker (a full queue is written
    out first), for a bounded time: a writer stuck for good loses what it still holds."""

    def stop(self) -> None:
        try:
            self.queue.put(self._sentinel, timeout=CLOSE_TIMEOUT)
        except queue.Full:
            return
        if self._thread is not None:
            self._thread.join(CLOSE_TIMEOUT)
            self._thread = None


class _Json(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = record.msg
        if isinstance(entry, Connection):
            entry = line(entry)
        return json.dumps(entry, separators=(",", ":"))


class AccessLog:
    """An observer of the connection table that logs each connection once it ended; a
    collector of its own dropped lines."""

    def __init__(self, target: str) -> None:
        """``target``: "stderr", or a file path to append to."""
        if target == STDERR:
            handler: logging.Handler = logging.StreamHandler(sys.stderr)
        else:
            try:
                handler = logging.FileHandler(Path(target), encoding="utf-8")
            except OSError as e:
                raise AccessLogError(f"cannot open the access log {target}: {e.strerror}; give a writable "
                                     f"path, {STDERR!r} or {OFF!r} with --access-log") from e
        handler.setFormatter(_Json())
        self.dropped = 0
        q: queue.Queue[logging.LogRecord] = queue.Queue(QUEUE_SIZE)
        self._logger = logging.Logger("nodemesh.access")  # its own: never the root's handlers
        self._logger.addHandler(_Enqueue(q, self))
        self._listener = _Writer(q, handler)
        self._handler = handler
        self._listener.start()

    def __call__(self, conn: Connection) -> None:
        # The connection itself goes on the queue: it is done changing (ended), and reading its
        # fields into a line is left to the writer's thread too.
        self._logger.info(conn)

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily("nodemesh_access_log_dropped", "Access log lines dropped: the writer "
                                  "fell behind by a whole queue.", value=self.dropped)

    def close(self) -> None:
        """Write what is queued, then stop."""
        self._listener.stop()
        self._handler.close()
