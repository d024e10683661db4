"""A meshed pod as the agent holds it: its network namespace, listeners and upstream sockets.

The agent's process stays in the node's namespace; sockets it creates while briefly inside
the pod's namespace stay there. Listeners thus accept the pod's own (steered) connections,
and upstream sockets leave from the pod's address, as the pod's own would.
"""

from __future__ import annotations

import asyncio
import socket

from nodemesh.agent.ports import AGENT_MARK
from nodemesh.errors import CannotListen
from nodemesh.model import Workload
from nodemesh.netns import Netns

# A burst of connects (hundreds from one pod at once) must wait in the kernel's accept queue:
# past the backlog it drops SYNs (the clients retry a second later, all in the same instant)
# and, once that wave fills the SYN queue too, answers with SYN cookies whose last ACK meets a
# full accept queue: those clients believe they are connected and are never accepted.
# loop.create_server(sock=...) listens again with its own backlog: pass this one.
LISTEN_BACKLOG = 4096


class PodNetns:
    def __init__(self, workload: Workload, netns: Netns) -> None:
        """Takes ``netns`` over: closing the pod closes it."""
        self.workload = workload
        self.netns = netns
        self.cookie = netns.cookie()

    def listener(self, port: int) -> socket.socket:
        """A listening socket on the pod's IP inside its namespace.

        Binding the pod IP (not 0.0.0.0) keeps the 4-tuples of steered connections unique
        across pods, which is how the original destination is found again.
        """
        sock = self.netns.socket()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.workload.ip, port))
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            if e.errno == 98:  # EADDRINUSE
                raise CannotListen(e.errno, f"port {port} is already in use inside pod {self.workload.ref}; "
                                   "is another agent running for this node?") from e
            raise
        return sock

    async def connect(self, host: str, port: int, timeout: float) -> socket.socket:
        """A connected, non-blocking socket from inside the pod, marked so it is never steered."""
        sock = self.netns.socket()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, AGENT_MARK)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            async with asyncio.timeout(timeout):  # not wait_for: that costs a task per connect
                await asyncio.get_running_loop().sock_connect(sock, (host, port))
        except BaseException:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        self.netns.close()
