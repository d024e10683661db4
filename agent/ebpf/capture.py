"""Plaintext capture (bpf/capture.c): plaintext arriving at a meshed pod goes to its 15006 listener.

The agent owns one ``PlaintextCapture``. For each enrolled pod it puts the pod's plaintext
listener in the program's socket map (keyed by the pod IP) and attaches the program to the
pod's network namespace with a BPF link. Links are plain file descriptors of the agent: when
the agent exits, even by SIGKILL, the kernel closes them and the program is detached, so pods
are never left capturing into listeners that are gone (their apps are reached directly
again, as without the mesh).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from importlib import resources
from pathlib import Path

from nodemesh.agent.ebpf import syscall
from nodemesh.agent.ebpf.loader import LoadError, Program, load
from nodemesh.agent.ebpf.steering import ip_key
from nodemesh.agent.ports import HBONE_PORT, OUTBOUND_PORT, PLAINTEXT_PORT
from nodemesh.errors import UserError
from nodemesh.netns import Netns

log = logging.getLogger(__name__)

_PROGRAM = Program("capture_plaintext", syscall.BPF_PROG_TYPE_SK_LOOKUP, syscall.BPF_SK_LOOKUP)


class CaptureError(UserError):
    """The program could not be loaded or attached; the message says what to do."""


def source_path() -> Path:
    return Path(str(resources.files("nodemesh.bpf") / "capture.c"))


class PlaintextCapture:
    """The loaded sk_lookup program, its listener map and one link per enrolled pod."""

    def __init__(self) -> None:
        ports = {"OUTBOUND_PORT": OUTBOUND_PORT, "PLAINTEXT_PORT": PLAINTEXT_PORT, "HBONE_PORT": HBONE_PORT}
        try:
            self._loaded = load(source_path(), [f"-D{name}={port}" for name, port in ports.items()],
                                [_PROGRAM], ["plaintext_listeners"])
        except LoadError as e:
            raise CaptureError(
                f"cannot load {source_path()}: {e}; it needs bcc (python3-bpfcc) and Linux >= 5.9 "
                "(sk_lookup): `nodemesh check` tells what the host lacks"
            ) from e
        self._prog_fd = self._loaded.programs[_PROGRAM.function]
        self._listeners = self._loaded.maps["plaintext_listeners"]
        self._links: dict[str, int] = {}  # pod IP -> link fd

    def attach(self, netns: Netns, pod_ip: str, listener: socket.socket) -> None:
        """Capture plaintext to ``pod_ip`` in ``netns`` into ``listener`` (bound to pod_ip:15006).

        The listener goes in the map first, so the program never runs without it.
        """
        self.detach(pod_ip)
        try:
            self._listeners.update(ip_key(pod_ip), listener.fileno().to_bytes(self._listeners.value_size, sys.byteorder))
        except OSError as e:
            raise OSError(e.errno, f"cannot add the plaintext listener of {pod_ip} to the socket map: "
                                   f"{e.strerror}") from e
        try:
            self._links[pod_ip] = syscall.link_create(self._prog_fd, netns.fd, syscall.BPF_SK_LOOKUP)
        except OSError as e:
            self._listeners.delete(ip_key(pod_ip))
            raise OSError(e.errno, f"cannot attach plaintext capture to {netns.path}: {e.strerror}") from e

    def detach(self, pod_ip: str) -> None:
        """Stop capturing for a pod: its apps are reached directly again. Idempotent."""
        link = self._links.pop(pod_ip, None)
        if link is not None:
            os.close(link)
        # Absent is fine: never added, or dropped by the kernel when the listener closed.
        self._listeners.delete(ip_key(pod_ip))

    def attached(self) -> list[str]:
        """Pod IPs being captured, for the admin API."""
        return sorted(self._links)

    def close(self) -> None:
        for pod_ip in list(self._links):
            self.detach(pod_ip)
        self._loaded.close()
        log.info("plaintext capture detached")
