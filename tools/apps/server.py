"""A TCP server that says who it is, then echoes: the endpoint app of the simulated cluster.

Each connection first receives the server's name and a newline, then gets back every byte it
sends until it closes its side. The name line lets a client tell which endpoint a mesh sent it
to (load balancing is visible), and the echo lets it check that the bytes came through intact.

    python3 -m nodemesh.tools.apps.server --port 8080 [--name NAME] [--delay SECONDS]
    (NAME defaults to $POD_NAME)

``--delay`` makes a slow endpoint: each connection waits that long before the name line, so
it stays open longer and the mesh's least-connections and P2C balancers see more of them
active there than at a fast endpoint (tests/e2e/test_balancing.py).
"""

from __future__ import annotations

import asyncio
from functools import partial

import click

READ_SIZE = 64 * 1024
# The mesh hands the app its connections in bursts (the node's agent connects for every client
# at once): asyncio's default backlog of 100 overflows, and past it the kernel drops SYNs (a
# second's delay) or, once the SYN queue is full too, sends SYN cookies whose last ACK meets a
# full accept queue: the connection is lost while the client waits for the name line.
LISTEN_BACKLOG = 4096


async def _serve_connection(name: bytes, delay: float, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
    try:
        if delay:
            await asyncio.sleep(delay)
        writer.write(name + b"\n")
        await writer.drain()
        while data := await reader.read(READ_SIZE):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass  # the client went away; nothing to tell it
    finally:
        writer.close()


async def start(host: str, port: int, name: str, delay: float = 0.0) -> asyncio.Server:
    """A listening server (port 0 picks a free one: see ``server.sockets``); ``delay``: seconds
    each connection waits for the name line."""
    return await asyncio.start_server(partial(_serve_connection, name.encode(), delay), host, port,
                                      backlog=LISTEN_BACKLOG)


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), required=True)
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--name", envvar="POD_NAME", required=True,
              help="What to say on each connection (default: $POD_NAME).")
@click.option("--delay", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds each connection waits before the name line: a slow endpoint.")
def main(port: int, host: str, name: str, delay: float) -> None:
    """Say NAME on each connection, then echo until the client closes."""

    async def run() -> None:
        server = await start(host, port, name, delay)
        click.echo(f"{name} listening on {host}:{port}")
        await server.serve_forever()

    asyncio.run(run())


if __name__ == "__main__":
    main()
