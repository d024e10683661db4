"""The HBONE listener (15008) facing other peers than our own agent: another HTTP/2 client
(Node.js's http2, built on nghttp2) with a valid workload certificate, and bad input.

Same setup as test_hbone_path (sim topology, two agents' proxies in this process); the peers
run inside the client pod's namespace, as a workload there would.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import tempfile
from pathlib import Path
from typing import Awaitable, Callable

import h2.config
import h2.connection
import h2.events
import pytest
from test_hbone_path import (  # the cluster of two agents, its topology fixture and its pods
    APP_PORT,
    CATALOG,
    CLIENT,
    NAMES,
    Cluster,
    pod_netns,
    run,
    topology,  # noqa: F401  (a module fixture, used by every test here)
)

pytestmark = pytest.mark.kernel

HBONE_PORT = 15008
SINK_PORT = 8081  # an app that accepts and never reads

NODE_CLIENT = r"""
const http2 = require('http2');
const fs = require('fs');
const [dir, url, authority, mode, size] = process.argv.slice(1);
const read = (f) => fs.readFileSync(`${dir}/${f}`);
const out = (o) => { console.log(JSON.stringify(o)); process.exit(0); };
const client = http2.connect(url, {ca: read('bundle.pem'), cert: read('chain.pem'), key: read('key.pem'),
                                   checkServerIdentity: () => undefined, minVersion: 'TLSv1.3'});
client.on('error', (e) => out({error: e.code || e.message}));
const headers = mode === 'get'
  ? {':method': 'GET', ':authority': authority, ':scheme': 'https', ':path': '/'}
  : {':method': 'CONNECT', ':authority': authority};
const req = client.request(headers);
let status = 0, got = [], pushed = 0;
req.on('error', (e) => out({status, error: e.code || e.message}));
req.on('response', (h) => {
  status = h[':status'];
  if (mode === 'flood') {
    const chunk = Buffer.alloc(1 << 16, 120);
    const push = () => { while (req.write(chunk)) pushed += chunk.length; };
    req.on('drain', () => { pushed += chunk.length; push(); });
    push();
    setTimeout(() => out({status, pushed}), Number(size));
  }
});
req.on('data', (d) => got.push(d));
req.on('end', () => { out({status, data: Buffer.concat(got).toString()}); });
if (mode === 'echo') req.end(Buffer.from(size));
else if (mode === 'get') req.end();
"""


async def node_client(c: Cluster, certs: Path, mode: str, authority: str, arg: str = "") -> dict:
    """Node's http2 client, run inside the client pod, against catalog's 15008."""
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", NAMES.pod_netns(CLIENT.namespace, CLIENT.name),
        "node", "-e", NODE_CLIENT, str(certs), f"https://{CATALOG.ip}:{HBONE_PORT}", authority, mode, arg,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


def with_certs(test: Callable[[Cluster, Path], Awaitable[None]]) -> None:
    """Run ``test`` with the client workload's certificate, key and the bundle written to files."""
    async def outer(c: Cluster) -> None:
        chain, key = c.ca.issue(CLIENT.identity)
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in (("chain.pem", chain), ("key.pem", key), ("bundle.pem", c.ca.bundle)):
                Path(tmp, name).write_bytes(data)
            await test(c, Path(tmp))

    run(outer)


def test_nodejs_http2_client_opens_a_connect_stream_and_exchanges_data() -> None:
    async def test(c: Cluster, certs: Path) -> None:
        await c.app(CATALOG)
        got = await node_client(c, certs, "echo", f"{CATALOG.ip}:{APP_PORT}", "hello from nghttp2")
        assert got == {"status": 200, "data": "hello from nghttp2"}
        await c.b.counted("inbound", "ok")
        [conn] = [k for k in c.b.proxy.core.table.by_destination]
        assert conn == ("inbound", "shop/catalog")

    with_certs(test)


def test_nodejs_non_connect_request_is_400() -> None:
    async def test(c: Cluster, certs: Path) -> None:
        await c.app(CATALOG)
        got = await node_client(c, certs, "get", f"{CATALOG.ip}:{APP_PORT}")
        assert got["status"] == 400
        assert c.b.totals()[("inbound", "refused_400")] == 1
        assert await c.echo(CATALOG) == b"hello through the mesh"  # others still served

    with_certs(test)


def rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_peer_that_floods_an_app_that_does_not_read_is_held_by_flow_control() -> None:
    async def test(c: Cluster, certs: Path) -> None:
        stuck = asyncio.Event()

        async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await stuck.wait()
            writer.close()

        await c.app(CATALOG)
        await c.app(CATALOG, never_reads, SINK_PORT)
        before = rss()
        got = await node_client(c, certs, "flood", f"{CATALOG.ip}:{SINK_PORT}", "3000")
        grown = rss() - before
        assert got["status"] == 200
        # what got through is what the windows, the proxy's buffer and the kernel hold: not the flood
        assert got["pushed"] < 64 << 20, got
        assert grown < 32 << 20, f"the agent grew by {grown >> 20} MiB"
        assert await c.echo(CATALOG) == b"hello through the mesh"
        stuck.set()

    with_certs(test)


async def from_client_pod(c: Cluster, ctx: ssl.SSLContext | None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    with pod_netns(CLIENT) as ns:
        sock = ns.socket()
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (CATALOG.ip, HBONE_PORT))
    return await asyncio.open_connection(sock=sock, ssl=ctx, server_hostname="" if ctx else None)


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before closing; raises if it keeps the connection open."""
    received = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            received += chunk
    except (ConnectionResetError, ssl.SSLError):
        pass
    return received


def test_tls_garbage_is_dropped_and_others_are_served() -> None:
    async def test(c: Cluster) -> None:
        await c.app(CATALOG)
        reader, writer = await from_client_pod(c, None)
        writer.write(b"\x16\x03\x01\x02\x00" + os.urandom(4096))
        answer = await closed_by_server(reader)
        assert answer == b"" or answer[0] == 0x15, answer  # at most a TLS alert record, then closed
        writer.close()
        assert await c.echo(CATALOG) == b"hello through the mesh"

    run(test)


def test_a_client_without_a_certificate_gets_nothing() -> None:
    async def test(c: Cluster) -> None:
        await c.app(CATALOG)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(cadata=c.ca.bundle.decode())
        ctx.set_alpn_protocols(["h2"])
        try:
            reader, writer = await from_client_pod(c, ctx)
        except (ssl.SSLError, ConnectionResetError):
            pass  # refused during the handshake
        else:
            writer.write(h2_preface())
            assert await closed_by_server(reader) == b""  # not even the server's SETTINGS
            writer.close()
        assert c.b.totals().get(("inbound", "ok")) is None
        assert await c.echo(CATALOG) == b"hello through the mesh"

    run(test)


def h2_preface() -> bytes:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    return conn.data_to_send()


def test_a_huge_header_block_ends_that_connection_only() -> None:
    async def test(c: Cluster) -> None:
        await c.app(CATALOG)
        reader, writer = await from_client_pod(c, c.ca.client_context(CLIENT.identity))
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "CONNECT"), (":authority", f"{CATALOG.ip}:{APP_PORT}"),
                              ("x-filler", "a" * (256 << 10))])
        writer.write(conn.data_to_send())
        events = conn.receive_data(await closed_by_server(reader))
        writer.close()
        [goaway] = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
        assert goaway.error_code != 0
        assert not any(isinstance(e, h2.events.ResponseReceived) for e in events)
        assert await c.echo(CATALOG) == b"hello through the mesh"

    run(test)
