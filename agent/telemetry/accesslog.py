"""The access log: one JSON line per connection, when it ends, written off the proxy's loop.

On the loop a connection's end costs one list append: ended connections are handed to the
writer's thread in batches (every ``FLUSH_SECONDS``, or at ``BATCH`` lines), so the thread
wakes a few times a second, not once per connection (measured: a wake-up and a write per
line cost more CPU than the connection itself). The thread makes the JSON and writes each
batch at once, so a slow terminal or disk never stalls relaying. If the writer falls that far
behind (``QUEUE_BATCHES`` batches waiting), whole batches are dropped and their lines counted
(``dropped``, exported as ``nodemesh_access_log_dropped_total``) rather than holding memory or
the loop.

Fields (ztunnel's names where it has them): ``start``, ``end`` (RFC 3339, UTC), ``duration_ms``,
``direction``, ``via`` (hbone, local, direct, plaintext), ``src`` and ``dst`` (``addr``,
``workload``, ``namespace``, ``identity``; ``dst`` also ``service`` and ``upstream``),
``bytes_received`` (from the client), ``bytes_sent`` (toward it),
``connection_security_policy``, ``response_flags``, ``outcome`` and, when it failed, ``error``;
``trace_id`` when the connection carries a trace; ``policy`` and ``policy_action`` when an
authorization policy decided a connection into a local pod (allowed it, denied it, or closed it
on a policy change: outcome ``denied_late``). Through a service VIP, the traffic policy's
decisions (docs/traffic.md): ``chosen_by`` (round_robin, least_connections, p2c), ``locality``
and ``failover`` (with prefer_close), ``backend`` (a split's), ``attempts`` (each endpoint that
failed, why, and for how long it was ejected then); ``closed_by`` (``idle_timeout``) when the
proxy closed a relayed connection.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, TextIO

from prometheus_client.core import CounterMetricFamily, Metric

from nodemesh.agent.proxy.conntrack import Connection
from nodemesh.agent.proxy.traffic import OK_FLAG, response_flag
from nodemesh.errors import UserError
from nodemesh.model import Workload

FLUSH_SECONDS = 0.2
BATCH = 256
QUEUE_BATCHES = 64  # up to 16,384 lines waiting for the writer
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
    decision = conn.authorization
    if decision is not None and decision.policy:  # decided by a policy, not the default
        out["policy"], out["policy_action"] = decision.policy, decision.action
    if conn.trace_id:
        out["trace_id"] = f"{conn.trace_id:032x}"
    if conn.lease is not None:
        out.update(conn.lease.as_dict())
    if conn.closed_by:
        out["closed_by"] = conn.closed_by
    return out


class AccessLog:
    """An observer of the connection table that logs each connection once it ended; a
    collector of its own dropped lines."""

    def __init__(self, target: str) -> None:
        """``target``: "stderr", or a file path to append to."""
        if target == STDERR:
            self._out: TextIO = sys.stderr
        else:
            try:
                self._out = open(Path(target), "a", encoding="utf-8")
            except OSError as e:
                raise AccessLogError(f"cannot open the access log {target}: {e.strerror}; give a writable "
                                     f"path, {STDERR!r} or {OFF!r} with --access-log") from e
        self._dropped_queue = 0  # written by the loop's thread only
        self._dropped_write = 0  # by the writer's only
        self._pending: list[Connection] = []
        self._timer: asyncio.TimerHandle | None = None
        self._batches: queue.Queue[list[Connection] | None] = queue.Queue(QUEUE_BATCHES)
        self._thread = threading.Thread(target=self._write, name="access-log", daemon=True)
        self._thread.start()

    def __call__(self, conn: Connection) -> None:
        # The connection itself is kept: it is done changing (ended), and reading its fields
        # into a line is left to the writer's thread too.
        self._pending.append(conn)
        if len(self._pending) >= BATCH:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)
            except RuntimeError:  # no loop (a tool, a test): no batching
                self.flush()

    def flush(self) -> None:
        """Hand what is pending to the writer (on the loop's thread)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            self._batches.put_nowait(batch)
        except queue.Full:
            self._dropped_queue += len(batch)

    @property
    def dropped(self) -> int:
        return self._dropped_queue + self._dropped_write

    def _write(self) -> None:
        while (batch := self._batches.get()) is not None:
            text = "".join(json.dumps(line(conn), separators=(",", ":")) + "\n" for conn in batch)
            try:
                self._out.write(text)
                self._out.flush()
            except (OSError, ValueError):  # a full disk, a closed stream: the lines are lost, counted
                self._dropped_write += len(batch)

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily("nodemesh_access_log_dropped", "Access log lines dropped: the writer "
                                  "fell behind by a whole queue.", value=self.dropped)

    def close(self) -> None:
        """Write what is pending, then stop; waits a bounded time for a writer that is stuck."""
        self.flush()
        try:
            self._batches.put(None, timeout=CLOSE_TIMEOUT)
        except queue.Full:
            return
        self._thread.join(CLOSE_TIMEOUT)
        if self._out is not sys.stderr:
            self._out.close()
