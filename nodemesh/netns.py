"""Network namespaces: enter one briefly to create sockets there, and identify it.

The agent keeps sockets in pods' namespaces while the process stays in the node's: a socket
belongs to the namespace it was created in, whatever the creator does afterwards. Entering is
``setns(2)`` on the calling thread; we hold the namespace files open, because the proxy enters
a pod's namespace for every upstream connection and reopening the path each time (what
pyroute2's helpers do) costs more than the switch itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import struct
import threading
from contextlib import contextmanager
from typing import Iterator

CLONE_NEWNET = 0x40000000
SO_NETNS_COOKIE = 71  # Linux >= 5.14

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns(CLONE_NEWNET): {os.strerror(err)}")


class Netns:
    """An open network namespace (a file such as /run/netns/NAME or /proc/PID/ns/net)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "Netns":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def entered(self) -> Iterator[None]:
        """Run the block with this thread inside the namespace, then come back."""
        home = _home_netns()
        _setns(self.fd)
        try:
            yield
        finally:
            _setns(home)

    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket that lives in this namespace."""
        with self.entered():
            return socket.socket(family, type)

    def enter_for_good(self) -> None:
        """Move this thread into the namespace for the rest of its life (a child before exec)."""
        _setns(self.fd)

    def cookie(self) -> int:
        """The kernel's 64-bit cookie for this namespace, what eBPF's bpf_get_netns_cookie returns."""
        s = self.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            return socket_netns_cookie(s)
        finally:
            s.close()


_homes = threading.local()


def _home_netns() -> int:
    """This thread's own namespace, opened once per thread (threads may live in different ones)."""
    fd = getattr(_homes, "fd", None)
    if fd is None:
        fd = _homes.fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    return fd


def socket_netns_cookie(sock: socket.socket) -> int:
    return struct.unpack("Q", sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))[0]
