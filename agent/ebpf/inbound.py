"""Inbound capture (bpf/inbound.c): plaintext arriving at a meshed pod goes to its 15006 listener.

The agent owns one ``InboundCapture``. For each enrolled pod it puts the pod's plaintext
listener in the program's socket map (keyed by the pod IP) and attaches the program to the
pod's network namespace with a BPF link. Links are plain file descriptors of the agent: when
the agent exits, even by SIGKILL, the kernel closes them and the program is detached, so pods
are never left capturing into listeners that are gone (their apps are reached directly
again, as without the mesh).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
import socket
from importlib import resources
from pathlib import Path

from nodemesh.agent.ebpf.steering import ip_key
from nodemesh.agent.inpod.pod import INBOUND_PORT, OUTBOUND_PORT, PLAINTEXT_PORT
from nodemesh.netns import Netns

log = logging.getLogger(__name__)

# UAPI numbers (include/uapi/linux/bpf.h); bcc 0.26's BPFProgType predates SK_LOOKUP.
BPF_PROG_TYPE_SK_LOOKUP = 30
BPF_SK_LOOKUP = 36
BPF_LINK_CREATE = 28

# bpf(2) has no libc wrapper; its number depends on the architecture.
_SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


class CaptureError(RuntimeError):
    """The program could not be loaded or attached; the message says what to do."""


class _LinkCreateAttr(ctypes.Structure):
    """The ``link_create`` member of ``union bpf_attr``: the fields BPF_SK_LOOKUP uses."""

    _fields_ = [
        ("prog_fd", ctypes.c_uint32),
        ("target_fd", ctypes.c_uint32),  # for BPF_SK_LOOKUP: a network namespace fd
        ("attach_type", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
    ]


def link_create(prog_fd: int, target_fd: int, attach_type: int) -> int:
    """``bpf(BPF_LINK_CREATE)``: attach a program through a link; returns the link's fd.

    bcc attaches sk_lookup programs no other way, hence the raw syscall. The kernel reads
    only the ``size`` bytes given and zeroes the rest of its ``bpf_attr``. The link lives as
    long as its fd (and any copies): closing it detaches the program.
    """
    number = _SYS_BPF.get(platform.machine())
    if number is None:
        raise CaptureError(f"no bpf(2) syscall number known for {platform.machine()}; add it to _SYS_BPF")
    attr = _LinkCreateAttr(prog_fd, target_fd, attach_type, 0)
    fd = _libc.syscall(number, BPF_LINK_CREATE, ctypes.byref(attr), ctypes.sizeof(attr))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf(BPF_LINK_CREATE): {os.strerror(err)}")
    return fd


def source_path() -> Path:
    return Path(str(resources.files("nodemesh.bpf") / "inbound.c"))


class InboundCapture:
    """The loaded sk_lookup program, its listener map and one link per enrolled pod."""

    def __init__(self) -> None:
        ports = {"OUTBOUND_PORT": OUTBOUND_PORT, "PLAINTEXT_PORT": PLAINTEXT_PORT, "HBONE_PORT": INBOUND_PORT}
        try:
            from bcc import BPF, lib

            self._bpf = BPF(src_file=str(source_path()).encode(),
                            cflags=[f"-D{name}={port}" for name, port in ports.items()])
            self._prog_fd = self._bpf.load_func(
                b"capture_inbound", BPF_PROG_TYPE_SK_LOOKUP, attach_type=BPF_SK_LOOKUP).fd
        except Exception as e:
            raise CaptureError(
                f"cannot load {source_path()}: {e}; it needs bcc (python3-bpfcc) and Linux >= 5.9 "
                "(sk_lookup): `nodemesh check` tells what the host lacks"
            ) from e
        self._lib = lib
        self._map_fd = lib.bpf_table_fd(self._bpf.module, b"plaintext_listeners")
        self._links: dict[str, int] = {}  # pod IP -> link fd

    def attach(self, netns: Netns, pod_ip: str, listener: socket.socket) -> None:
        """Capture plaintext to ``pod_ip`` in ``netns`` into ``listener`` (bound to pod_ip:15006).

        The listener goes in the map first, so the program never runs without it.
        """
        self.detach(pod_ip)
        self._map_update(pod_ip, listener.fileno())
        try:
            self._links[pod_ip] = link_create(self._prog_fd, netns.fd, BPF_SK_LOOKUP)
        except OSError as e:
            self._map_delete(pod_ip)
            raise OSError(e.errno, f"cannot attach inbound capture to {netns.path}: {e.strerror}") from e

    def detach(self, pod_ip: str) -> None:
        """Stop capturing for a pod: its apps are reached directly again. Idempotent."""
        link = self._links.pop(pod_ip, None)
        if link is not None:
            os.close(link)
        self._map_delete(pod_ip)

    # bcc 0.26's Python tables do not know socket maps: their two operations, through its lib.
    def _map_update(self, pod_ip: str, fd: int) -> None:
        key, value = ctypes.c_uint32(ip_key(pod_ip)), ctypes.c_int(fd)
        if self._lib.bpf_update_elem(self._map_fd, ctypes.byref(key), ctypes.byref(value), 0) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"cannot add the plaintext listener of {pod_ip} to the socket map: "
                               f"{os.strerror(err)}")

    def _map_delete(self, pod_ip: str) -> None:
        """Remove a pod's entry; absent is fine (never added, or dropped when the listener closed)."""
        key = ctypes.c_uint32(ip_key(pod_ip))
        self._lib.bpf_delete_elem(self._map_fd, ctypes.byref(key))

    def attached(self) -> list[str]:
        """Pod IPs being captured, for the admin API."""
        return sorted(self._links)

    def close(self) -> None:
        for pod_ip in list(self._links):
            self.detach(pod_ip)
        self._bpf.cleanup()
        log.info("inbound capture detached")
