"""Plaintext capture (bpf/capture.c): plaintext arriving at a meshed pod goes to its 15006 listener.

The agent owns one ``PlaintextCapture``. For each enrolled pod it puts the pod's plaintext
listener in the program's socket map and the pod's mTLS mode in ``pod_modes`` (both keyed by
the pod IP), and links the program to the pod's network namespace.

STRICT must hold with no agent at all, so the links are pinned in bpffs
(``<pin dir>/capture/<pod IP with dashes>``: bpffs refuses dots in names) and outlive the
process. When the agent exits, even by
SIGKILL, its listeners close and the kernel drops them from the socket map; the program, still
linked (and holding its maps), then refuses plaintext to STRICT pods and lets PERMISSIVE pods'
apps be reached directly, as without the mesh. The next agent takes each pin over: it fills
its own fresh maps, then switches the link to its own program in one BPF_LINK_UPDATE, so no
connection meets neither program. Only a real unenroll removes a pin (``detach``, and
``keep_only`` for pods that left while no agent ran); ``close()`` leaves them all.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Collection, Iterator
from contextlib import contextmanager
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
MODE_STRICT = 1  # pod_modes' value for STRICT; PERMISSIVE is 0


class CaptureError(UserError):
    """The program could not be loaded or attached; the message says what to do."""


def source_path() -> Path:
    return Path(str(resources.files("nodemesh.bpf") / "capture.c"))


def links_dir(pin_dir: Path) -> Path:
    """Where the per-pod links are pinned, one file per pod IP."""
    return pin_dir / "capture"


def pinned(links: Path) -> list[str]:
    """The pod IPs that have a link pinned in ``links``."""
    return sorted(name.replace("-", ".") for name in os.listdir(links))


class PlaintextCapture:
    """The loaded sk_lookup program and its maps, and the pinned link of every captured pod."""

    def __init__(self, pin_dir: Path) -> None:
        """``pin_dir``: a directory in bpffs that only this node's agent uses (made if missing)."""
        self._links_dir = links_dir(pin_dir)
        try:
            self._links_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CaptureError(f"cannot make {self._links_dir}: {e.strerror}; it must be on a bpffs "
                               "mount (`mount -t bpf bpf /sys/fs/bpf`)") from e
        defines = {"OUTBOUND_PORT": OUTBOUND_PORT, "PLAINTEXT_PORT": PLAINTEXT_PORT,
                   "HBONE_PORT": HBONE_PORT, "MODE_STRICT": MODE_STRICT}
        try:
            self._loaded = load(source_path(), [f"-D{name}={value}" for name, value in defines.items()],
                                [_PROGRAM], ["plaintext_listeners", "pod_modes"])
        except LoadError as e:
            raise CaptureError(
                f"cannot load {source_path()}: {e}; it needs bcc (python3-bpfcc) and Linux >= 5.9 "
                "(sk_lookup): `nodemesh check` tells what the host lacks"
            ) from e
        self._prog_fd = self._loaded.programs[_PROGRAM.function]
        self._listeners = self._loaded.maps["plaintext_listeners"]
        self._modes = self._loaded.maps["pod_modes"]
        self._attached: set[str] = set()  # pod IPs this process captures into its listeners

    def attach(self, netns: Netns, pod_ip: str, listener: socket.socket | None, strict: bool) -> None:
        """Capture plaintext to ``pod_ip`` in ``netns`` into ``listener`` (bound to pod_ip:15006).

        No listener: the pod is meshed but not served (yet); its plaintext is refused if
        ``strict``, else it reaches the app directly. The maps are filled first, so the program
        never runs for the pod without them; a link pinned for this namespace (by a previous
        agent, or by this one) is switched to this program in place.
        """
        self.set_mode(pod_ip, strict)
        if listener is None:
            self._listeners.delete(ip_key(pod_ip))
        else:
            try:
                self._listeners.update(ip_key(pod_ip),
                                       listener.fileno().to_bytes(self._listeners.value_size, sys.byteorder))
            except OSError as e:
                raise OSError(e.errno, f"cannot add the plaintext listener of {pod_ip} to the socket map: "
                                       f"{e.strerror}") from e
        try:
            self._link(netns, pod_ip)
        except OSError as e:
            self._listeners.delete(ip_key(pod_ip))  # a previous agent's link, if any, is untouched
            raise OSError(e.errno, f"cannot attach plaintext capture to {netns.path}: {e.strerror}") from e
        if listener is None:
            self._attached.discard(pod_ip)
        else:
            self._attached.add(pod_ip)

    def set_mode(self, pod_ip: str, strict: bool) -> None:
        """What the program does with the pod's plaintext when no listener of an agent is there."""
        self._modes.update(ip_key(pod_ip), bytes([MODE_STRICT if strict else 0]))

    def detach(self, pod_ip: str) -> None:
        """The pod left the mesh: detach and unpin its link (the program lets go of the namespace
        at once: the kernel frees an unpinned link only later). Idempotent."""
        self._attached.discard(pod_ip)
        pin = self._pin(pod_ip)
        with _pinned(pin) as fd:
            if fd is not None:
                syscall.link_detach(fd)
                os.unlink(pin)
        # Absent is fine: never added, or (the listener) dropped by the kernel when it closed.
        self._listeners.delete(ip_key(pod_ip))
        self._modes.delete(ip_key(pod_ip))

    def keep_only(self, pod_ips: Collection[str]) -> None:
        """Detach every pinned pod not in ``pod_ips``: it left the mesh or the node, maybe while no agent ran."""
        for pod_ip in pinned(self._links_dir):
            if pod_ip not in pod_ips:
                self.detach(pod_ip)
                log.info("plaintext capture of %s removed: no longer a meshed pod of this node", pod_ip)

    def attached(self) -> list[str]:
        """Pod IPs being captured into this process's listeners, for the admin API."""
        return sorted(self._attached)

    def maps(self) -> dict[str, syscall.Map]:
        """The maps by name, for the metrics (their entries and capacity); none once closed."""
        return dict(self._loaded.maps)

    def close(self) -> None:
        """Let go of the program and maps; the pinned links keep them for as long as they are pinned."""
        self._loaded.close()
        self._attached.clear()
        log.info("plaintext capture closed; links stay pinned in %s", self._links_dir)

    def _pin(self, pod_ip: str) -> str:
        return str(self._links_dir / pod_ip.replace(".", "-"))

    def _link(self, netns: Netns, pod_ip: str) -> None:
        """Make the pod's pinned link run this program: take over a live one, else create and pin one."""
        pin = self._pin(pod_ip)
        with _pinned(pin) as fd:
            if fd is not None:
                if syscall.netns_link_info(fd).netns_ino == os.fstat(netns.fd).st_ino:
                    syscall.link_update(fd, self._prog_fd)
                    return
                os.unlink(pin)  # its namespace is gone (0) or another one: the pod was made again
        fd = syscall.link_create(self._prog_fd, netns.fd, syscall.BPF_SK_LOOKUP)
        try:
            syscall.obj_pin(fd, pin)
        finally:
            os.close(fd)  # pinned, it lives on; not pinned, it goes now rather than with the agent


@contextmanager
def _pinned(pin: str) -> Iterator[int | None]:
    """An fd of the link pinned at ``pin`` for the block (closed after it), or None if none is."""
    try:
        fd = syscall.obj_get(pin)
    except FileNotFoundError:
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)
