"""A load generator that runs inside a pod and prints its measurements as JSON.

Three scenarios, with the same client code for every setup being compared, so that the
client's own cost cancels out of the ratios:
  conn:  open a connection, read the server's name line, close; CONCURRENCY loops for SECONDS.
  rr:    one kept connection, send SIZE bytes and wait for them back, COUNT times; latencies.
  bulk:  one connection, send MEGABYTES while reading the echo back; MB/s of payload each way.

    python3 -m nodemesh.tools.bench.loadgen conn HOST:PORT --seconds 5 --concurrency 8
    python3 -m nodemesh.tools.bench.loadgen rr HOST:PORT --count 2000 --size 64
    python3 -m nodemesh.tools.bench.loadgen bulk HOST:PORT --megabytes 64
"""

from __future__ import annotations

import asyncio
import json
import time

import click


async def connection_rate(host: str, port: int, seconds: float, concurrency: int) -> dict[str, float]:
    done = failed = 0
    end = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal done, failed
        while time.perf_counter() < end:
            try:
                reader, writer = await asyncio.open_connection(host, port)
                await reader.readline()
                writer.close()
                done += 1
            except OSError:
                failed += 1

    start = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return {"connections": done, "failed": failed, "seconds": elapsed, "per_second": done / elapsed}


async def request_response(host: str, port: int, count: int, size: int) -> dict[str, object]:
    reader, writer = await asyncio.open_connection(host, port)
    await reader.readline()
    payload = b"x" * size
    latencies = []
    for _ in range(count):
        t = time.perf_counter()
        writer.write(payload)
        await reader.readexactly(size)
        latencies.append(time.perf_counter() - t)
    writer.close()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1e6

    return {"count": count, "size": size, "p50_us": pct(50), "p90_us": pct(90), "p99_us": pct(99),
            "max_us": latencies[-1] * 1e6}


async def bulk(host: str, port: int, megabytes: int) -> dict[str, float]:
    reader, writer = await asyncio.open_connection(host, port)
    await reader.readline()
    chunk = b"x" * (1 << 16)
    total = megabytes << 20

    async def send() -> None:
        for _ in range(total // len(chunk)):
            writer.write(chunk)
            await writer.drain()
        writer.write_eof()

    async def receive() -> int:
        got = 0
        while data := await reader.read(1 << 18):
            got += len(data)
        return got

    start = time.perf_counter()
    _, received = await asyncio.gather(send(), receive())
    elapsed = time.perf_counter() - start
    writer.close()
    return {"megabytes": megabytes, "received": received, "seconds": elapsed, "mb_per_s": megabytes / elapsed}


@click.command()
@click.argument("scenario", type=click.Choice(["conn", "rr", "bulk"]))
@click.argument("target")
@click.option("--seconds", default=5.0, show_default=True)
@click.option("--concurrency", default=8, show_default=True)
@click.option("--count", default=2000, show_default=True)
@click.option("--size", default=64, show_default=True)
@click.option("--megabytes", default=64, show_default=True)
def main(scenario: str, target: str, seconds: float, concurrency: int, count: int, size: int,
         megabytes: int) -> None:
    host, _, port = target.rpartition(":")
    if scenario == "conn":
        result = asyncio.run(connection_rate(host, int(port), seconds, concurrency))
    elif scenario == "rr":
        result = asyncio.run(request_response(host, int(port), count, size))
    else:
        result = asyncio.run(bulk(host, int(port), megabytes))
    click.echo(json.dumps(result))


if __name__ == "__main__":
    main()
