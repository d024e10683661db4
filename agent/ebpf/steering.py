"""The steering programs (bpf/steer.c): load with bcc, attach to the node cgroup, keep maps.

The agent owns one ``Steering`` for its node. Everything the kernel needs to decide is in maps:
which network namespaces are enrolled pods (and where their outbound listener is), which IPs
are mesh destinations. The proxy asks it for the original destination of each accepted
connection.
"""

from __future__ import annotations

import ctypes
import logging
import os
import socket
import struct
from importlib import resources
from pathlib import Path

log = logging.getLogger(__name__)

# SO_MARK on the agent's own sockets; the programs never steer a socket carrying it.
AGENT_MARK = 0x4E4D  # "NM"

# Values of the mesh_destinations map, by what the view calls them.
DESTINATION_KINDS = {"service": 1, "pod": 2}

# (program name in steer.c, attach type name in bcc's BPFAttachType, program type name)
_PROGRAMS = (
    ("steer_connect4", "CGROUP_INET4_CONNECT", "CGROUP_SOCK_ADDR"),
    ("steer_sockops", "CGROUP_SOCK_OPS", "SOCK_OPS"),
    ("steer_getpeername4", "CGROUP_INET4_GETPEERNAME", "CGROUP_SOCK_ADDR"),
)


class SteeringError(RuntimeError):
    """The programs could not be loaded or attached; the message says what to do."""


def ip_key(ip: str) -> int:
    """An IPv4 address as the u32 the programs see (network byte order in memory)."""
    return struct.unpack("=I", socket.inet_aton(ip))[0]


def ip_str(key: int) -> str:
    return socket.inet_ntoa(struct.pack("=I", key))


def port_key(port: int) -> int:
    return socket.htons(port)


def source_path() -> Path:
    return Path(str(resources.files("nodemesh.bpf") / "steer.c"))


class Steering:
    """The loaded programs, attached to one cgroup until ``close()``."""

    def __init__(self, cgroup: Path) -> None:
        try:
            from bcc import BPF, BPFAttachType, BPFProgType
        except ImportError as e:  # pragma: no cover - depends on the host
            raise SteeringError(
                "bcc is not importable: install python3-bpfcc (run `make setup`) and use a "
                "virtualenv created with --system-site-packages"
            ) from e
        self._BPF = BPF
        self.cgroup = cgroup
        try:
            self._cgroup_fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise SteeringError(f"cannot open cgroup {cgroup}: {e.strerror}; is it a cgroup v2 directory?") from e
        try:
            self._bpf = BPF(src_file=str(source_path()).encode(), cflags=[f"-DNODEMESH_MARK={AGENT_MARK}"])
        except Exception as e:
            os.close(self._cgroup_fd)
            raise SteeringError(
                f"cannot compile {source_path()}: {e}; `nodemesh check` tells what the host lacks"
            ) from e
        self._attached: list[tuple[int, object]] = []
        try:
            for func, attach_name, prog_type in _PROGRAMS:
                attach_type = getattr(BPFAttachType, attach_name)
                fn = self._bpf.load_func(func, getattr(BPFProgType, prog_type), attach_type=attach_type)
                # No BPF_F_ALLOW_MULTI: attaching replaces what a crashed agent may have left here.
                self._bpf.attach_func(fn, self._cgroup_fd, attach_type)
                self._attached.append((fn, attach_type))
        except Exception as e:
            self.close()
            raise SteeringError(f"cannot attach steering programs to {cgroup}: {e}") from e
        self.enrolled = self._bpf[b"enrolled_pods"]
        self.destinations = self._bpf[b"mesh_destinations"]
        self.orig_by_tuple = self._bpf[b"orig_by_tuple"]
        self._dest_keys: dict[int, int] = {}
        log.info("steering programs attached to %s", cgroup)

    # -- enrolled pods -------------------------------------------------------------------
    def enroll(self, netns_cookie: int, listener_ip: str, listener_port: int) -> None:
        leaf = self.enrolled.Leaf(ip_key(listener_ip), port_key(listener_port), 0)
        self.enrolled[self.enrolled.Key(netns_cookie)] = leaf

    def unenroll(self, netns_cookie: int) -> None:
        try:
            del self.enrolled[self.enrolled.Key(netns_cookie)]
        except KeyError:
            pass

    # -- mesh destinations ---------------------------------------------------------------
    def set_destinations(self, wanted: dict[str, str]) -> None:
        """Make the destination map hold exactly ``wanted`` (IP -> "service" | "pod"), by difference."""
        want = {ip_key(ip): DESTINATION_KINDS[kind] for ip, kind in wanted.items()}
        for key in [k for k in self._dest_keys if k not in want]:
            try:
                del self.destinations[self.destinations.Key(key)]
            except KeyError:
                pass
            del self._dest_keys[key]
        for key, kind in want.items():
            if self._dest_keys.get(key) != kind:
                self.destinations[self.destinations.Key(key)] = ctypes.c_uint8(kind)
                self._dest_keys[key] = kind

    # -- original destinations -----------------------------------------------------------
    def original_dst(self, peer: tuple[str, int], local: tuple[str, int]) -> tuple[str, int] | None:
        """The address the client asked for, for a connection accepted on an outbound listener.

        Entries are not deleted after reading: the map is an LRU, and a 4-tuple that comes back
        (a port reused after TIME_WAIT) is written afresh by sockops before the proxy can accept
        it, so an old entry is never read for a new steered connection (a pod dialling its own
        15001 directly could meet one: it reaches an address it dialled before, nothing more).
        That saves a syscall per accept.
        """
        table = self.orig_by_tuple
        key = table.Key(ip_key(peer[0]), ip_key(local[0]), port_key(peer[1]), port_key(local[1]))
        try:
            value = table[key]
        except KeyError:
            return None
        return ip_str(value.ip), socket.ntohs(value.port)

    def map_usage(self) -> dict[str, int]:
        """Entries per map, for the admin API (iterates the maps: not for the hot path)."""
        return {
            "enrolled_pods": len(self.enrolled),
            "mesh_destinations": len(self._dest_keys),
            "orig_by_tuple": len(self.orig_by_tuple),
        }

    def close(self) -> None:
        """Detach the programs (the cgroup's connections go back to untouched) and free maps."""
        for fn, attach_type in reversed(self._attached):
            try:
                self._bpf.detach_func(fn, self._cgroup_fd, attach_type)
            except Exception as e:  # keep detaching the others
                log.warning("detaching %s from %s failed: %s", attach_type, self.cgroup, e)
        self._attached.clear()
        if self._cgroup_fd >= 0:
            os.close(self._cgroup_fd)
            self._cgroup_fd = -1
        self._bpf.cleanup()
        log.info("steering programs detached from %s", self.cgroup)
