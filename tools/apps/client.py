"""A TCP client that opens many connections and tallies which server answered each.

For every connection it reads the server's name line (see ``server``), optionally sends a
random payload and checks that the same bytes come back, then closes. The tally (connections
per server name, failures per reason) shows load balancing and breakage at a glance; ``-o json``
gives it to tests. Exit status 1 when any connection failed.

    python3 -m nodemesh.tools.apps.client HOST:PORT --count N --concurrency C [--payload BYTES]
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field

import click


@dataclass
class Tally:
    target: str
    servers: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def ok(self) -> int:
        return sum(self.servers.values())

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def to_dict(self) -> dict:
        return {"target": self.target, "ok": self.ok, "failed": self.failed,
                "servers": dict(self.servers), "errors": dict(self.errors),
                "seconds": round(self.seconds, 3)}

    def to_text(self) -> str:
        lines = [f"{self.ok + self.failed} connections to {self.target} in {self.seconds:.2f} s: "
                 f"{self.ok} ok, {self.failed} failed"]
        lines += [f"  {name}  {n}" for name, n in sorted(self.servers.items())]
        if self.errors:
            lines.append("failures:")
            lines += [f"  {n}  {reason}" for reason, n in self.errors.most_common()]
        return "\n".join(lines)


class EchoError(Exception):
    pass


async def _one(host: str, port: int, payload_size: int) -> str:
    """One connection: the server's name, after checking the echo of a payload if any."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        line = await reader.readline()
        if not line.endswith(b"\n"):
            raise EchoError("closed before the server said its name")
        if payload_size:
            payload = os.urandom(payload_size)
            writer.write(payload)
            echoed, _ = await asyncio.gather(reader.readexactly(payload_size), writer.drain())
            if echoed != payload:
                raise EchoError("echo differs from what was sent")
        return line[:-1].decode(errors="replace")
    finally:
        writer.close()


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timeout after {timeout:g} s"
    if isinstance(exc, EchoError):
        return str(exc)
    if isinstance(exc, asyncio.IncompleteReadError):
        return f"closed during the echo ({len(exc.partial)} of {exc.expected} bytes back)"
    return f"{type(exc).__name__}: {exc}"


async def run(host: str, port: int, count: int, concurrency: int, payload_size: int = 0,
              timeout: float = 5.0) -> Tally:
    tally = Tally(target=f"{host}:{port}")
    slots = asyncio.Semaphore(concurrency)
    started = time.monotonic()

    async def attempt() -> None:
        async with slots:
            try:
                async with asyncio.timeout(timeout):
                    tally.servers[await _one(host, port, payload_size)] += 1
            except (OSError, EchoError, TimeoutError, asyncio.IncompleteReadError) as exc:
                tally.errors[_reason(exc, timeout)] += 1

    await asyncio.gather(*(attempt() for _ in range(count)))
    tally.seconds = time.monotonic() - started
    return tally


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise click.BadParameter(f"{value!r}: expected HOST:PORT, e.g. 10.96.0.10:80")
    return host, int(port)


@click.command()
@click.argument("target")
@click.option("--count", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--payload", "payload_size", type=click.IntRange(min=0), default=0,
              show_default=True, help="Bytes to send on each connection and expect back.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=5.0,
              show_default=True, help="Seconds each connection may take.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
def main(target: str, count: int, concurrency: int, payload_size: int, timeout: float,
         output: str) -> None:
    """Open COUNT connections to TARGET (HOST:PORT), CONCURRENCY at a time; tally the servers."""
    host, port = _host_port(target)
    tally = asyncio.run(run(host, port, count, concurrency, payload_size, timeout))
    click.echo(json.dumps(tally.to_dict()) if output == "json" else tally.to_text())
    raise SystemExit(1 if tally.failed else 0)


if __name__ == "__main__":
    main()
