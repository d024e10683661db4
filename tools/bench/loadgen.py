"""A load generator that runs inside a pod and prints its measurements as JSON.

The same client code runs for every setup being compared, so that its own cost cancels out of
the ratios. It is built on asyncio Protocols over uvloop (one Python call per read, no stream
buffers) so that it stays cheap next to what it measures. Targets are the example server
(``nodemesh.tools.apps.server``): a name line on connect, then an echo.

  conn:     connect, read the name line, close; CONCURRENCY loops for SECONDS.
  churn:    the same for a fixed COUNT of connections (memory after churn).
  hold:     open CONNECTIONS and keep them open for SECONDS; prints a line once all are open and
            one at the end (memory with many open connections).
  rr:       one kept connection, send SIZE bytes and wait for them back, COUNT times (closed loop).
  latency:  open loop: RATE requests/s of SIZE bytes for SECONDS over CONNECTIONS kept
            connections; each latency is charged from the moment its request was due.
  bulk:     STREAMS connections in parallel send MEGABYTES in all while reading the echo back,
            then close (no half-close: see ``echo``).

    python3 -m nodemesh.tools.bench.loadgen conn HOST:PORT --seconds 5 --concurrency 8
    python3 -m nodemesh.tools.bench.loadgen churn HOST:PORT --count 100000 --concurrency 8
    python3 -m nodemesh.tools.bench.loadgen hold HOST:PORT --connections 10000 --seconds 30
    python3 -m nodemesh.tools.bench.loadgen rr HOST:PORT --count 2000 --size 64
    python3 -m nodemesh.tools.bench.loadgen latency HOST:PORT --rate 1000 --connections 8 --size 64
    python3 -m nodemesh.tools.bench.loadgen bulk HOST:PORT --megabytes 64 --streams 8
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import itertools
import json
import math
import os
import resource
import time
from collections import deque
from typing import Any, Awaitable, Callable, Coroutine, cast

import click
import uvloop

CHUNK = 256 * 1024          # bulk writes: few Python calls per byte
WRITE_BUFFER = 4 * CHUNK    # how much a bulk stream may queue before it waits
CONNECT_TIMEOUT = 10.0      # connect + name line; past it the attempt counts as failed
DRAIN_SECONDS = 5.0         # how long latency waits for answers after its last request
RESERVED_FDS = 64           # descriptors beyond the held connections (interpreter, loop, pipes)


class EchoConnection(asyncio.Protocol):
    """One connection to the example server: its name line, then the echo, counted as it comes.

    Requests (``request``) go out one at a time: one due while another is on the wire waits
    here, and its latency still counts from when it was due, so queueing is never hidden.
    """

    def __init__(self, payload: bytes = b"") -> None:
        loop = asyncio.get_running_loop()
        self.payload = payload
        self.greeted: asyncio.Future[bytes] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.received = 0                   # echoed bytes, after the name line
        self.latencies: list[float] = []    # seconds, one per answered request
        self.last_answer = 0.0              # perf_counter of the latest answer
        self.transport: asyncio.Transport | None = None
        self._line = b""
        self._due: deque[float] = deque()   # when each waiting request was due; the first is out
        self._idle: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._wanted = 0                    # echoed bytes ``echoed`` waits for
        self._echoed: asyncio.Future[None] | None = None
        self.ending = ""  # how the connection ended, once it has

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not its subclasses

    def data_received(self, data: bytes) -> None:
        if not self.greeted.done():
            name, newline, data = (self._line + data).partition(b"\n")
            if not newline:
                self._line = name
                return
            self.greeted.set_result(name)
        self.received += len(data)
        if self._echoed is not None and self.received >= self._wanted and not self._echoed.done():
            self._echoed.set_result(None)
        if self._due and self.received >= (len(self.latencies) + 1) * len(self.payload):
            self.last_answer = time.perf_counter()
            self.latencies.append(self.last_answer - self._due.popleft())
            if self._due:
                self.transport.write(self.payload)
            elif self._idle is not None and not self._idle.done():
                self._idle.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.ending = f"connection closed ({exc or 'by the server'})"
        lost = ConnectionError(self.ending)
        for waiter in (self.greeted, self._idle, self._writable):
            if waiter is not None and not waiter.done():
                waiter.set_exception(lost)
        if self._echoed is not None and not self._echoed.done():
            self._echoed.set_exception(self._short())
        if not self.closed.done():  # cancelled when a failed run cancels whoever waited on it
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    async def drain(self) -> None:
        """Wait while the transport's write buffer is over its high-water mark."""
        if self.closed.done():
            raise ConnectionError("connection closed while sending")
        if self._writable is not None:
            await self._writable

    def request(self, due: float) -> None:
        """Ask for one echo of the payload, due at ``due`` (a ``time.perf_counter()`` value)."""
        self._due.append(due)
        if len(self._due) == 1 and not self.closed.done():
            self.transport.write(self.payload)

    async def echoed(self, size: int) -> None:
        """Wait until ``size`` echoed bytes have come back; a ConnectionError if it ends first."""
        if self.received >= size:
            return
        self._wanted = size
        if self.closed.done():
            raise self._short()
        self._echoed = asyncio.get_running_loop().create_future()
        await self._echoed

    def _short(self) -> ConnectionError:
        return ConnectionError(f"{self.received} of {self._wanted} bytes came back, then the {self.ending}")

    async def idle(self) -> None:
        """Wait until every request made so far is answered."""
        if self._due and self.closed.done():
            raise ConnectionError(f"connection closed with {len(self._due)} requests unanswered")
        if self._due:
            self._idle = asyncio.get_running_loop().create_future()
            await self._idle


async def connect(host: str, port: int, payload: bytes = b"") -> EchoConnection:
    """A connection that has received the server's name line (it proves the path works)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            _, conn = await loop.create_connection(lambda: EchoConnection(payload), host, port)
            try:
                await conn.greeted
            except BaseException:  # no name line (closed, timed out): do not leave it open
                conn.transport.close()
                raise
    except TimeoutError:  # asyncio's says nothing: say what did not happen
        raise TimeoutError(f"no connection with a name line within {CONNECT_TIMEOUT:g} s") from None
    return conn


async def repeat(concurrency: int, more: Callable[[], bool],
                 attempt: Callable[[], Awaitable[object]]) -> tuple[int, int, float]:
    """Run ``attempt`` in ``concurrency`` loops while ``more()``; (done, failed, seconds taken)."""
    done = failed = 0

    async def loop() -> None:
        nonlocal done, failed
        while more():
            try:
                await attempt()
                done += 1
            except OSError:  # refused, reset, closed early, timed out
                failed += 1

    start = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return done, failed, time.perf_counter() - start


def first(count: int) -> Callable[[], bool]:
    """A ``more`` for ``repeat`` that allows ``count`` attempts in all, whatever the concurrency."""
    claimed = itertools.count()
    return lambda: next(claimed) < count


async def open_close(host: str, port: int) -> None:
    (await connect(host, port)).transport.close()


async def connection_rate(host: str, port: int, seconds: float, concurrency: int) -> dict[str, float]:
    end = time.perf_counter() + seconds
    return connection_counts(*await repeat(concurrency, lambda: time.perf_counter() < end,
                                           lambda: open_close(host, port)))


async def churn(host: str, port: int, count: int, concurrency: int) -> dict[str, float]:
    return connection_counts(*await repeat(concurrency, first(count), lambda: open_close(host, port)))


def connection_counts(done: int, failed: int, seconds: float) -> dict[str, float]:
    return {"connections": done, "failed": failed, "seconds": seconds, "per_second": done / seconds}


async def hold(host: str, port: int, connections: int, seconds: float, concurrency: int,
               emit: Callable[[dict[str, Any]], None]) -> dict[str, int]:
    """Open ``connections``, report, keep them for ``seconds``, report how many are still open."""
    allow_descriptors(connections + RESERVED_FDS)
    held: list[EchoConnection] = []

    async def open_one() -> None:
        held.append(await connect(host, port))

    await repeat(concurrency, first(connections), open_one)
    emit(open_counts(held, connections))
    await asyncio.sleep(seconds)
    result = open_counts(held, connections)
    for conn in held:
        conn.transport.close()
    return result


def open_counts(held: list[EchoConnection], wanted: int) -> dict[str, int]:
    still_open = sum(not conn.closed.done() for conn in held)
    return {"open": still_open, "failed": wanted - still_open}


def allow_descriptors(needed: int) -> None:
    """Raise the soft RLIMIT_NOFILE to the hard limit (the default soft limit is often 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, needed)
    elif needed > hard:
        raise click.ClickException(
            f"about {needed} file descriptors are needed, but this process may open at most {hard} "
            f"(hard RLIMIT_NOFILE): raise the hard limit (as root: `ulimit -Hn {needed}`, or "
            f"LimitNOFILE= for a systemd unit) or hold fewer connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def request_response(host: str, port: int, count: int, size: int) -> dict[str, Any]:
    """Closed loop: each request goes out when the one before is answered."""
    conn = await connect(host, port, b"x" * size)
    for _ in range(count):
        conn.request(time.perf_counter())
        await conn.idle()
    conn.transport.close()
    return {"count": count, "size": size, **percentiles(conn.latencies, (50, 90, 99))}


async def latency(host: str, port: int, rate: float, connections: int, size: int,
                  seconds: float) -> dict[str, Any]:
    """Open loop: request i is due at start + i/rate, whatever the answers before it did.

    Requests go round-robin over the kept connections; one due while its connection still waits
    for an answer queues behind it, and that wait counts in its latency (no coordinated omission).
    """
    conns = await asyncio.gather(*(connect(host, port, b"x" * size) for _ in range(connections)))
    total = max(1, round(rate * seconds))
    all_sent = asyncio.get_running_loop().create_future()
    sent = 0
    start = time.perf_counter()

    def send_due() -> None:
        nonlocal sent
        due = min(total, math.floor((time.perf_counter() - start) * rate) + 1)
        for i in range(sent, due):
            conns[i % connections].request(start + i / rate)
        sent = due
        if sent == total and not all_sent.done():
            all_sent.set_result(None)

    send_due()
    metronome = Metronome(1 / rate, send_due)
    try:
        await all_sent
    finally:
        metronome.close()
    try:
        await asyncio.wait_for(asyncio.gather(*(c.idle() for c in conns), return_exceptions=True),
                               DRAIN_SECONDS)
    except TimeoutError:
        pass  # what is still unanswered counts as errors
    for conn in conns:
        conn.transport.close()
    samples = [s for conn in conns for s in conn.latencies]
    span = max(seconds, max(conn.last_answer for conn in conns) - start)
    return {"rate": rate, "achieved_rate": len(samples) / span, "connections": connections,
            "size": size, "seconds": seconds, "count": len(samples), "errors": total - len(samples),
            **percentiles(samples, (50, 90, 99, 99.9))}


def percentiles(samples: list[float], points: tuple[float, ...]) -> dict[str, float | None]:
    """Exact nearest-rank percentiles and the maximum of latencies in seconds, in microseconds.

    Keys are ``p50_us`` ... ``p99_9_us`` and ``max_us``; None when there are no samples.
    """
    ordered = sorted(samples)

    def at(rank: int) -> float | None:
        return ordered[rank] * 1e6 if ordered else None

    ranks = {f"p{p:g}_us".replace(".", "_"): max(0, math.ceil(round(p / 100 * len(ordered), 6)) - 1)
             for p in points}
    return {**{key: at(rank) for key, rank in ranks.items()}, "max_us": at(-1)}


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_CLOCK_MONOTONIC = 1


class Metronome:
    """Calls ``tick`` every ``interval`` seconds from the running loop, via a timerfd.

    asyncio's and uvloop's own timers work to the millisecond (uvloop's fire up to 1 ms early,
    asyncio's up to 1 ms late): open-loop latencies, charged from when each request was due,
    would carry that error in full. A timerfd wakes the loop within tens of microseconds.
    """

    def __init__(self, interval: float, tick: Callable[[], None]) -> None:
        self._fd = _libc.timerfd_create(_CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        period = _Timespec(*divmod(max(1, round(interval * 1e9)), 1_000_000_000))
        if _libc.timerfd_settime(self._fd, 0, ctypes.byref(_Itimerspec(period, period)), None) < 0:
            os.close(self._fd)
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")
        self._tick = tick
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._expired)

    def _expired(self) -> None:
        try:
            os.read(self._fd, 8)  # how many periods passed: the tick reads the clock instead
        except BlockingIOError:
            return
        self._tick()

    def close(self) -> None:
        self._loop.remove_reader(self._fd)
        os.close(self._fd)


async def bulk(host: str, port: int, megabytes: int, streams: int) -> dict[str, Any]:
    """``streams`` connections in parallel, each echoing its share of ``megabytes``."""
    conns = await asyncio.gather(*(connect(host, port) for _ in range(streams)))
    total = megabytes << 20
    shares = [total // streams + (i < total % streams) for i in range(streams)]
    start = time.perf_counter()
    finished = await asyncio.gather(*(echo(conn, share) for conn, share in zip(conns, shares)))
    elapsed = time.perf_counter() - start
    return {"megabytes": megabytes, "received": sum(conn.received for conn in conns),
            "seconds": elapsed, "mb_per_s": megabytes / elapsed, "streams": streams,
            "per_stream_mb_per_s": [share / (1 << 20) / (end - start)
                                    for share, end in zip(shares, finished)]}


async def echo(conn: EchoConnection, size: int) -> float:
    """Send ``size`` bytes, wait for all of them back, then close; when the last came back.

    No half-close (``write_eof`` after the data): through HAProxy 2.6, the reference, the
    server now and then got only part of the data, then the FIN (its TLS hop lost the tail),
    and echoed that part: about 3% of 8-stream runs against the reference came back short.
    """
    conn.transport.set_write_buffer_limits(high=WRITE_BUFFER)
    filler = memoryview(b"x" * CHUNK)
    for offset in range(0, size, CHUNK):
        conn.transport.write(filler[:min(CHUNK, size - offset)])
        await conn.drain()
    await conn.echoed(size)
    finished = time.perf_counter()
    conn.transport.close()
    return finished


def parse_target(ctx: click.Context, param: click.Parameter, target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"{target!r}: expected HOST:PORT, e.g. 10.96.0.10:80")
    return host, int(port)


def emit(result: dict[str, Any]) -> None:
    """One JSON object per line, flushed at once: the runner may read it while we go on."""
    print(json.dumps(result), flush=True)


@click.command()
@click.argument("scenario", type=click.Choice(["conn", "churn", "hold", "rr", "latency", "bulk"]))
@click.argument("target", callback=parse_target)
@click.option("--seconds", default=5.0, show_default=True, help="conn, latency, hold: how long.")
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1),
              help="conn, churn, hold: connections being opened at once.")
@click.option("--count", default=2000, show_default=True, type=click.IntRange(1),
              help="rr: round trips; churn: connections.")
@click.option("--size", default=64, show_default=True, type=click.IntRange(1),
              help="rr, latency: bytes per request.")
@click.option("--rate", default=1000.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="latency: requests per second.")
@click.option("--connections", default=8, show_default=True, type=click.IntRange(1),
              help="latency: kept connections; hold: connections to hold open.")
@click.option("--megabytes", default=64, show_default=True, type=click.IntRange(1),
              help="bulk: sent in all (and echoed back).")
@click.option("--streams", default=1, show_default=True, type=click.IntRange(1),
              help="bulk: connections in parallel.")
def main(scenario: str, target: tuple[str, int], seconds: float, concurrency: int, count: int,
         size: int, rate: float, connections: int, megabytes: int, streams: int) -> None:
    """Run SCENARIO against TARGET (HOST:PORT of an example server) and print JSON."""
    host, port = target
    scenarios: dict[str, Callable[[], Coroutine[Any, Any, dict[str, Any]]]] = {
        "conn": lambda: connection_rate(host, port, seconds, concurrency),
        "churn": lambda: churn(host, port, count, concurrency),
        "hold": lambda: hold(host, port, connections, seconds, concurrency, emit),
        "rr": lambda: request_response(host, port, count, size),
        "latency": lambda: latency(host, port, rate, connections, size, seconds),
        "bulk": lambda: bulk(host, port, megabytes, streams),
    }
    try:
        result = uvloop.run(scenarios[scenario]())
    except OSError as e:
        raise click.ClickException(f"{scenario} against {host}:{port}: {type(e).__name__}: {e}") from None
    emit(result)


if __name__ == "__main__":
    main()
