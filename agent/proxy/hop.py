"""The node-to-node hop: from the source pod, through the destination pod's agent (15008).

One interface, ``Hop.open``: a connected socket whose far end is the destination
application, plus any bytes it already sent. This issue's hop is the plaintext CONNECT
handshake of ``connect.py``; mutual-TLS HBONE replaces it behind the same interface.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Protocol

from nodemesh.agent.inpod.pod import INBOUND_PORT, PodNetns
from nodemesh.agent.proxy.connect import STATUS_OK, ClientHandshake, HandshakeError
from nodemesh.agent.proxy.route import Target


class Hop(Protocol):
    async def open(self, source: PodNetns, target: Target) -> tuple[socket.socket, bytes]:
        """A socket relaying to ``target`` through its agent, and the bytes already received."""
        ...


class PlaintextHop:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    async def open(self, source: PodNetns, target: Target) -> tuple[socket.socket, bytes]:
        loop = asyncio.get_running_loop()
        sock = await source.connect(target.host, INBOUND_PORT, self.timeout)
        try:
            handshake = ClientHandshake(target.host, target.port, source.workload.ref)
            async with asyncio.timeout(self.timeout):
                await loop.sock_sendall(sock, handshake.request())
                while (answer := handshake.feed(await loop.sock_recv(sock, 65536))) is None:
                    pass
            status, early = answer
            if status != STATUS_OK:
                raise HandshakeError(f"{target.name}'s agent answered {status}", status)
            return sock, early
        except BaseException:
            sock.close()
            raise
