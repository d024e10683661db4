"""The steering programs (bpf/steer.c): load (bcc, in a child), attach to the node cgroup, keep maps.

The agent owns one ``Steering`` for its node. Everything the kernel needs to decide is in maps:
which network namespaces are enrolled pods (and where their outbound listener is), which IPs
are mesh destinations. The proxy asks it for the original destination of each accepted
connection.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
from importlib import resources
from pathlib import Path

from nodemesh.agent.ebpf import syscall
from nodemesh.agent.ebpf.loader import LoadError, Program, load
from nodemesh.agent.ports import AGENT_MARK
from nodemesh.errors import UserError

log = logging.getLogger(__name__)

# Values of the mesh_destinations map, by what the view calls them.
DESTINATION_KINDS = {"service": 1, "pod": 2}

_PROGRAMS = (
    Program("steer_connect4", syscall.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, syscall.BPF_CGROUP_INET4_CONNECT),
    Program("steer_sockops", syscall.BPF_PROG_TYPE_SOCK_OPS, syscall.BPF_CGROUP_SOCK_OPS),
    Program("steer_getpeername4", syscall.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, syscall.BPF_CGROUP_INET4_GETPEERNAME),
)
_MAPS = ("enrolled_pods", "mesh_destinations", "orig_by_tuple")


class SteeringError(UserError):
    """The programs could not be loaded or attached; the message says what to do."""


def ip_key(ip: str) -> bytes:
    """An IPv4 address as the programs store it: four bytes in network order."""
    return socket.inet_aton(ip)


def port_key(port: int) -> bytes:
    return port.to_bytes(2, "big")


def source_path() -> Path:
    return Path(str(resources.files("nodemesh.bpf") / "steer.c"))


class Steering:
    """The loaded programs, attached to one cgroup until ``close()``."""

    def __init__(self, cgroup: Path) -> None:
        self.cgroup = cgroup
        try:
            self._cgroup_fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise SteeringError(f"cannot open cgroup {cgroup}: {e.strerror}; is it a cgroup v2 directory?") from e
        try:
            self._loaded = load(source_path(), [f"-DNODEMESH_MARK={AGENT_MARK}"], list(_PROGRAMS), list(_MAPS))
        except LoadError as e:
            os.close(self._cgroup_fd)
            raise SteeringError(
                f"cannot load {source_path()}: {e}; `nodemesh check` tells what the host lacks"
            ) from e
        self._attached: list[Program] = []
        try:
            for program in _PROGRAMS:
                syscall.prog_attach(self._loaded.programs[program.function], self._cgroup_fd, program.attach_type)
                self._attached.append(program)
        except OSError as e:
            self.close()
            raise SteeringError(f"cannot attach steering programs to {cgroup}: {e}") from e
        self.enrolled = self._loaded.maps["enrolled_pods"]
        self.destinations = self._loaded.maps["mesh_destinations"]
        self.orig_by_tuple = self._loaded.maps["orig_by_tuple"]
        self._dest_keys: dict[bytes, int] = {}
        log.info("steering programs attached to %s", cgroup)

    # -- enrolled pods -------------------------------------------------------------------
    def enroll(self, netns_cookie: int, listener_ip: str, listener_port: int) -> None:
        # struct pod_listener: ip, port (network order), pad
        self.enrolled.update(struct.pack("=Q", netns_cookie), ip_key(listener_ip) + port_key(listener_port) + b"\0\0")

    def unenroll(self, netns_cookie: int) -> None:
        self.enrolled.delete(struct.pack("=Q", netns_cookie))

    # -- mesh destinations ---------------------------------------------------------------
    def set_destinations(self, wanted: dict[str, str]) -> None:
        """Make the destination map hold exactly ``wanted`` (IP -> "service" | "pod"), by difference."""
        want = {ip_key(ip): DESTINATION_KINDS[kind] for ip, kind in wanted.items()}
        for key in [k for k in self._dest_keys if k not in want]:
            self.destinations.delete(key)
            del self._dest_keys[key]
        for key, kind in want.items():
            if self._dest_keys.get(key) != kind:
                self.destinations.update(key, bytes([kind]))
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
        # struct tuple4: source IP, destination IP, source port, destination port (network order)
        value = self.orig_by_tuple.lookup(ip_key(peer[0]) + ip_key(local[0]) + port_key(peer[1]) + port_key(local[1]))
        if value is None:
            return None
        # struct orig_dst: IP, port (network order), pad
        return socket.inet_ntoa(value[:4]), int.from_bytes(value[4:6], "big")

    def map_usage(self) -> dict[str, int]:
        """Entries per map, for the admin API (iterates the maps: not for the hot path)."""
        return {
            "enrolled_pods": len(self.enrolled),
            "mesh_destinations": len(self._dest_keys),
            "orig_by_tuple": len(self.orig_by_tuple),
        }

    def maps(self) -> dict[str, syscall.Map]:
        """The maps by name, for the metrics (their entries and capacity); none once closed."""
        return dict(self._loaded.maps)

    def close(self) -> None:
        """Detach the programs (the cgroup's connections go back to untouched) and free maps."""
        for program in reversed(self._attached):
            try:
                syscall.prog_detach(self._loaded.programs[program.function], self._cgroup_fd, program.attach_type)
            except OSError as e:  # keep detaching the others
                log.warning("detaching %s from %s failed: %s", program.function, self.cgroup, e)
        self._attached.clear()
        if self._cgroup_fd >= 0:
            os.close(self._cgroup_fd)
            self._cgroup_fd = -1
        self._loaded.close()
        log.info("steering programs detached from %s", self.cgroup)
