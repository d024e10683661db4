"""A TCP port forward from the host's loopback into a sim's namespace, as kubectl port-forward.

The sim's addresses are never routed to the host, so a browser on the host cannot reach the
sim's Prometheus (on 127.0.0.1 inside the controller's namespace). This process listens on
the host's 127.0.0.1:PORT and, for each connection it accepts, creates a socket inside the
target namespace (``nodemesh.netns``: setns only around socket(), as the admin client does),
connects it to the namespace's own 127.0.0.1:TO-PORT and relays both ways until both sides
are done.

A small asyncio relay rather than socat: socat cannot enter a namespace per connection
without forking ``ip netns exec socat ...`` for each one, and would be one more package.

    python3 -m nodemesh.tools.sim.forward --listen 9090 --netns /run/netns/nm-demo-cp --to-port 9090
"""

from __future__ import annotations

import asyncio
import os
import sys
from functools import partial

import click

from nodemesh.netns import Netns

READ_SIZE = 64 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then pass the EOF on (half-close): HTTP clients may rely on it."""
    try:
        while data := await reader.read(READ_SIZE):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.transport.abort()  # a reset on one side resets the other


async def _relay(netns: Netns, target: tuple[str, int], client_reader: asyncio.StreamReader,
                 client_writer: asyncio.StreamWriter) -> None:
    sock = netns.socket()
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, target)
    except OSError:
        sock.close()
        client_writer.transport.abort()  # the client sees a reset, as from a closed port
        return
    upstream_reader, upstream_writer = await asyncio.open_connection(sock=sock)
    try:
        await asyncio.gather(_pipe(client_reader, upstream_writer),
                             _pipe(upstream_reader, client_writer))
    finally:
        upstream_writer.close()
        client_writer.close()


async def serve(port: int, netns: Netns, target: tuple[str, int]) -> None:
    """Forward the host's 127.0.0.1:``port`` to ``target`` inside ``netns``, until cancelled."""
    server = await asyncio.start_server(partial(_relay, netns, target), "127.0.0.1", port,
                                        reuse_address=True)
    async with server:
        await server.serve_forever()


@click.command()
@click.option("--listen", "port", type=int, required=True, help="Port on the host's 127.0.0.1.")
@click.option("--netns", "netns_path", required=True, help="The target's network namespace (a path).")
@click.option("--to-port", "target_port", type=int, required=True,
              help="Port on 127.0.0.1 inside that namespace.")
def main(port: int, netns_path: str, target_port: int) -> None:
    """Forward 127.0.0.1:PORT of this namespace to 127.0.0.1:TO-PORT inside another one."""
    try:
        netns = Netns(netns_path)
    except OSError as exc:
        sys.exit(f"cannot open network namespace {netns_path}: {exc.strerror}")
    with netns:
        try:
            asyncio.run(serve(port, netns, ("127.0.0.1", target_port)))
        except OSError as exc:  # from listening: every connection's errors stay in its task
            sys.exit(f"cannot listen on 127.0.0.1:{port}: {os.strerror(exc.errno) if exc.errno else exc}")


if __name__ == "__main__":
    main()
