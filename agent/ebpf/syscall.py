"""The few bpf(2) commands the agent needs once its programs are loaded, as raw syscalls.

Why not bcc here: bcc keeps LLVM and clang in the process that imports it (over 60 MB of
resident memory in the agent), and its table objects cost several Python calls and ctypes
conversions per lookup, on the path of every accepted connection. Compiling happens in a
short-lived child (``loader``); what remains for the agent is attaching programs and reading
and writing maps, which are single syscalls on file descriptors.

The structures are the members of ``union bpf_attr`` (include/uapi/linux/bpf.h) that each
command reads; the kernel zeroes whatever lies past the ``size`` it is given.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
from typing import TypeVar

# enum bpf_cmd
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_OBJ_PIN = 6
BPF_OBJ_GET = 7
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_MAP_LOOKUP_BATCH = 24
BPF_LINK_CREATE = 28
BPF_LINK_UPDATE = 29
BPF_LINK_DETACH = 34

# enum bpf_prog_type
BPF_PROG_TYPE_SOCK_OPS = 13
BPF_PROG_TYPE_CGROUP_SOCK_ADDR = 18
BPF_PROG_TYPE_SK_LOOKUP = 30

# enum bpf_attach_type
BPF_CGROUP_SOCK_OPS = 3
BPF_CGROUP_INET4_CONNECT = 10
BPF_CGROUP_INET4_GETPEERNAME = 29
BPF_SK_LOOKUP = 36

# bpf(2) has no libc wrapper; its number depends on the architecture.
_SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_syscall = _libc.syscall


def _number() -> int:
    number = _SYS_BPF.get(platform.machine())
    if number is None:
        raise OSError(f"no bpf(2) syscall number known for {platform.machine()}; add it to _SYS_BPF")
    return number


_SYS_NUMBER = _number()


class _ElemAttr(ctypes.Structure):
    """Map element commands: map_fd, key, value (or next_key), flags."""

    _fields_ = [("map_fd", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("key", ctypes.c_uint64),
                ("value", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


class _BatchAttr(ctypes.Structure):
    """BPF_MAP_LOOKUP_BATCH: where to resume (opaque tokens), buffers for ``count`` elements."""

    _fields_ = [("in_batch", ctypes.c_uint64), ("out_batch", ctypes.c_uint64), ("keys", ctypes.c_uint64),
                ("values", ctypes.c_uint64), ("count", ctypes.c_uint32), ("map_fd", ctypes.c_uint32),
                ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


# What BPF_MAP_LOOKUP_BATCH fails with where a map type has no batch operations: EINVAL before
# Linux 5.6, the kernel's own ENOTSUPP (524, no errno name) from socket maps, EOPNOTSUPP.
_NO_BATCH = {errno.EINVAL, 524, errno.EOPNOTSUPP}


class _AttachAttr(ctypes.Structure):
    """BPF_PROG_ATTACH and BPF_PROG_DETACH."""

    _fields_ = [("target_fd", ctypes.c_uint32), ("attach_bpf_fd", ctypes.c_uint32),
                ("attach_type", ctypes.c_uint32), ("attach_flags", ctypes.c_uint32)]


class _LinkCreateAttr(ctypes.Structure):
    """BPF_LINK_CREATE: the fields every link type shares."""

    _fields_ = [("prog_fd", ctypes.c_uint32), ("target_fd", ctypes.c_uint32),
                ("attach_type", ctypes.c_uint32), ("flags", ctypes.c_uint32)]


class _LinkUpdateAttr(ctypes.Structure):
    """BPF_LINK_UPDATE; no BPF_F_REPLACE: whatever program the link runs is replaced."""

    _fields_ = [("link_fd", ctypes.c_uint32), ("new_prog_fd", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("old_prog_fd", ctypes.c_uint32)]


class _LinkDetachAttr(ctypes.Structure):
    """BPF_LINK_DETACH."""

    _fields_ = [("link_fd", ctypes.c_uint32)]


class _ObjAttr(ctypes.Structure):
    """BPF_OBJ_PIN and BPF_OBJ_GET: a bpffs path and, for pinning, the object's fd."""

    _fields_ = [("pathname", ctypes.c_uint64), ("bpf_fd", ctypes.c_uint32), ("file_flags", ctypes.c_uint32)]


class _InfoAttr(ctypes.Structure):
    """BPF_OBJ_GET_INFO_BY_FD."""

    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


class _MapInfo(ctypes.Structure):
    """The head of ``struct bpf_map_info``; the kernel fills no more than ``info_len``."""

    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
                ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32),
                ("map_flags", ctypes.c_uint32), ("name", ctypes.c_char * 16)]


class _NetnsLinkInfo(ctypes.Structure):
    """The head of ``struct bpf_link_info`` for a network-namespace link (sk_lookup, flow dissector).

    The union after ``prog_id`` holds 64-bit members, so it starts at offset 16.
    """

    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("prog_id", ctypes.c_uint32),
                ("pad", ctypes.c_uint32), ("netns_ino", ctypes.c_uint32), ("attach_type", ctypes.c_uint32)]


def bpf(cmd: int, attr: ctypes.Structure, what: str) -> int:
    """One bpf(2) call; a failure raises OSError naming ``what`` was attempted."""
    result = _syscall(_SYS_NUMBER, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def prog_attach(prog_fd: int, target_fd: int, attach_type: int) -> None:
    """Attach to a cgroup without BPF_F_ALLOW_MULTI: this replaces what a crashed agent left."""
    bpf(BPF_PROG_ATTACH, _AttachAttr(target_fd, prog_fd, attach_type, 0), "bpf(BPF_PROG_ATTACH)")


def prog_detach(prog_fd: int, target_fd: int, attach_type: int) -> None:
    bpf(BPF_PROG_DETACH, _AttachAttr(target_fd, prog_fd, attach_type, 0), "bpf(BPF_PROG_DETACH)")


def link_create(prog_fd: int, target_fd: int, attach_type: int) -> int:
    """Attach through a link and return its fd: the program stays attached while the fd lives."""
    return bpf(BPF_LINK_CREATE, _LinkCreateAttr(prog_fd, target_fd, attach_type, 0), "bpf(BPF_LINK_CREATE)")


def link_update(link_fd: int, prog_fd: int) -> None:
    """Make the link run ``prog_fd`` instead of its program, in one step: no lookup sees neither."""
    bpf(BPF_LINK_UPDATE, _LinkUpdateAttr(link_fd, prog_fd, 0, 0), "bpf(BPF_LINK_UPDATE)")


def link_detach(link_fd: int) -> None:
    """Detach the link's program now, whoever else holds the link: closing or unpinning the last
    reference frees a link only when the kernel gets to it (deferred), detaching is immediate."""
    bpf(BPF_LINK_DETACH, _LinkDetachAttr(link_fd), "bpf(BPF_LINK_DETACH)")


def netns_link_info(fd: int) -> _NetnsLinkInfo:
    """The program and namespace of a netns link; ``netns_ino`` is 0 once its namespace is gone."""
    return _info(fd, _NetnsLinkInfo(), "a link")


def obj_pin(fd: int, path: str) -> None:
    """Name the object behind ``fd`` in bpffs: it then lives until the file is removed."""
    name = ctypes.create_string_buffer(os.fsencode(path))
    bpf(BPF_OBJ_PIN, _ObjAttr(ctypes.addressof(name), fd, 0), f"bpf(BPF_OBJ_PIN) at {path}")


def obj_get(path: str) -> int:
    """A new fd for the object pinned at ``path`` (FileNotFoundError when nothing is)."""
    name = ctypes.create_string_buffer(os.fsencode(path))
    return bpf(BPF_OBJ_GET, _ObjAttr(ctypes.addressof(name), 0, 0), f"bpf(BPF_OBJ_GET) of {path}")


def map_info(fd: int) -> _MapInfo:
    """What the kernel knows of the map behind ``fd`` (sizes, type, name)."""
    return _info(fd, _MapInfo(), "a map")


_Info = TypeVar("_Info", bound=ctypes.Structure)


def _info(fd: int, info: _Info, what: str) -> _Info:
    """Fill ``info`` (the head of a ``struct bpf_*_info``) for the object behind ``fd``."""
    bpf(BPF_OBJ_GET_INFO_BY_FD, _InfoAttr(fd, ctypes.sizeof(info), ctypes.addressof(info)),
        f"bpf(BPF_OBJ_GET_INFO_BY_FD) of {what}")
    return info


class Map:
    """A map by its fd, keys and values as bytes of the sizes the program declared.

    ``lookup`` reuses one attribute block and one value buffer: it runs once per accepted
    connection and allocates little beyond the bytes it returns.
    """

    def __init__(self, name: str, fd: int) -> None:
        """Take ownership of ``fd``; sizes come from the kernel, so they cannot disagree with it."""
        info = map_info(fd)
        self.name, self.fd, self.key_size, self.value_size = name, fd, info.key_size, info.value_size
        self.max_entries = info.max_entries
        self._value = ctypes.create_string_buffer(self.value_size)
        self._lookup_attr = _ElemAttr(fd, 0, 0, ctypes.addressof(self._value), 0)
        self._lookup_what = f"lookup in map {name}"
        self._batch = True  # until the kernel says this map type has no batch lookup

    def lookup(self, key: bytes) -> bytes | None:
        """The value under ``key``, or None when absent."""
        self._check(key, self.key_size, "key")
        self._lookup_attr.key = ctypes.cast(key, ctypes.c_void_p).value  # the bytes' own buffer: no copy
        try:
            bpf(BPF_MAP_LOOKUP_ELEM, self._lookup_attr, self._lookup_what)
        except FileNotFoundError:  # ENOENT
            return None
        return self._value.raw

    def update(self, key: bytes, value: bytes) -> None:
        self._check(key, self.key_size, "key")
        self._check(value, self.value_size, "value")
        k, v = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(value, len(value))
        attr = _ElemAttr(self.fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0)
        bpf(BPF_MAP_UPDATE_ELEM, attr, f"update of map {self.name}")

    def delete(self, key: bytes) -> bool:
        """Remove ``key``; False when it was not there."""
        self._check(key, self.key_size, "key")
        k = ctypes.create_string_buffer(key, len(key))
        try:
            bpf(BPF_MAP_DELETE_ELEM, _ElemAttr(self.fd, 0, ctypes.addressof(k), 0, 0), f"delete in map {self.name}")
        except FileNotFoundError:
            return False
        return True

    def __len__(self) -> int:
        """Entries, for the admin API and the metrics (not the hot path).

        One batch lookup where the map type has one (hash maps: about 6 ms for 65536 entries),
        else a walk of the keys, a syscall an entry (about 1 us each: 70 ms for as many).
        ``orig_by_tuple`` is an LRU nobody empties, so on a busy node it is always full, and
        the metrics count it on the proxy's loop at every scrape.
        """
        if self._batch:
            try:
                return self._count_batched()
            except OSError as e:
                if e.errno not in _NO_BATCH:
                    raise
                self._batch = False  # this map type never will: walk from now on
        return self._count_walking()

    def _count_batched(self) -> int:
        """Entries, copied out in one call for the whole map (more only if it grows meanwhile)."""
        room = self.max_entries
        keys = ctypes.create_string_buffer(self.key_size * room)
        values = ctypes.create_string_buffer(self.value_size * room)
        # Where to resume: a bucket number (u32) for hash maps, a key for arrays. The kernel
        # reads in_batch before it writes out_batch, so one buffer serves as both.
        resume = ctypes.create_string_buffer(max(self.key_size, 4))
        attr = _BatchAttr(0, ctypes.addressof(resume), ctypes.addressof(keys), ctypes.addressof(values),
                          room, self.fd, 0, 0)
        count, what = 0, f"batch lookup in map {self.name}"
        while True:
            try:
                bpf(BPF_MAP_LOOKUP_BATCH, attr, what)
            except FileNotFoundError:  # ENOENT: the end, with the last elements counted
                return count + attr.count
            count += attr.count
            attr.in_batch, attr.count = ctypes.addressof(resume), room

    def _count_walking(self) -> int:
        count = 0
        current = ctypes.create_string_buffer(self.key_size)
        following = ctypes.create_string_buffer(self.key_size)
        attr = _ElemAttr(self.fd, 0, 0, ctypes.addressof(following), 0)  # key 0: start from the first
        what = f"walk of map {self.name}"
        while True:
            try:
                bpf(BPF_MAP_GET_NEXT_KEY, attr, what)
            except FileNotFoundError:
                return count
            count += 1
            ctypes.memmove(current, following, self.key_size)
            attr.key = ctypes.addressof(current)

    def _check(self, data: bytes, size: int, what: str) -> None:
        if len(data) != size:
            raise ValueError(f"map {self.name}: {what} of {len(data)} bytes, the program declared {size}")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
