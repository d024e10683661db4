"""The eBPF loader child and the raw bpf(2) layer, on the real kernel.

The agent never imports bcc: a child compiles and loads, hands back file descriptors, exits.
These tests check that the descriptors outlive the child and work through ``syscall.Map``,
that compiler errors come back with the compiler's words, and that the agent's constants
are the kernel's (read from the installed UAPI header, not copied from memory).
"""

from __future__ import annotations

import re
import socket
import sys
from pathlib import Path

import pytest

from nodemesh.agent.ebpf import syscall
from nodemesh.agent.ebpf.loader import LoadError, Program, load

pytestmark = pytest.mark.kernel

SOURCE = r"""
BPF_HASH(pairs, u32, u64, 128);
BPF_TABLE("lru_hash", u64, u32, recent, 64);

int count_connect(struct bpf_sock_addr *ctx) {
    u32 key = ctx->user_ip4;
    u64 one = ANSWER;
    pairs.update(&key, &one);
    return 1;
}
"""

UAPI = Path("/usr/include/linux/bpf.h")


def enum_values(header: str, enum: str) -> dict[str, int]:
    """Members of ``enum <enum>``: numbered implicitly from 0, or ``= number`` / ``= an earlier member``."""
    body = re.search(r"enum %s \{(.*?)\};" % enum, header, re.S)
    assert body, f"enum {enum} not in {UAPI}"
    values, current = {}, -1
    for line in body.group(1).splitlines():
        m = re.match(r"\s*(\w+)\s*(?:=\s*(\w+))?\s*,?", line)
        if not m or not m.group(1).startswith("BPF_") or m.group(1).startswith("__"):
            continue
        given = m.group(2)
        if given is None:
            current += 1
            values[m.group(1)] = current
        elif given[0].isdigit():
            current = values[m.group(1)] = int(given, 0)
        else:  # an alias: the next implicit number continues from the last one, not the alias
            values[m.group(1)] = values[given]
    return values


def test_constants_are_the_kernel_headers():
    header = UAPI.read_text()
    kernel = {**enum_values(header, "bpf_cmd"), **enum_values(header, "bpf_prog_type"),
              **enum_values(header, "bpf_attach_type")}
    ours = {name: value for name, value in vars(syscall).items() if name.startswith("BPF_")}
    assert ours and {name: kernel.get(name) for name in ours} == ours


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "probe.c"
    path.write_text(SOURCE)
    return path


def test_loaded_maps_work_after_the_child_exited(source: Path):
    loaded = load(source, ["-DANSWER=42"],
                  [Program("count_connect", syscall.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, syscall.BPF_CGROUP_INET4_CONNECT)],
                  ["pairs", "recent"])
    try:
        pairs = loaded.maps["pairs"]
        assert (pairs.key_size, pairs.value_size, pairs.max_entries) == (4, 8, 128)
        assert loaded.programs["count_connect"] > 2
        assert pairs.lookup(b"\x0a\x00\x00\x01") is None and len(pairs) == 0
        for i in range(5):
            pairs.update(bytes([10, 0, 0, i]), (i * 1000).to_bytes(8, "little"))
        assert len(pairs) == 5
        assert pairs.lookup(bytes([10, 0, 0, 3])) == (3000).to_bytes(8, "little")
        assert pairs.delete(bytes([10, 0, 0, 3])) and not pairs.delete(bytes([10, 0, 0, 3]))
        assert pairs.lookup(bytes([10, 0, 0, 3])) is None and len(pairs) == 4
        with pytest.raises(ValueError, match="key of 2 bytes"):
            pairs.lookup(b"\x00\x00")
        with pytest.raises(ValueError, match="value of 4 bytes"):
            pairs.update(b"\x00" * 4, b"\x00" * 4)
    finally:
        loaded.close()
    assert loaded.programs == {} and loaded.maps == {}


def test_a_compile_error_comes_back_with_the_compilers_words(tmp_path: Path):
    bad = tmp_path / "bad.c"
    bad.write_text("int broken(struct bpf_sock_addr *ctx) { return undeclared_thing; }\n")
    with pytest.raises(LoadError, match="undeclared_thing"):
        load(bad, [], [Program("broken", syscall.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, syscall.BPF_CGROUP_INET4_CONNECT)], [])


def test_a_missing_map_is_named(source: Path):
    with pytest.raises(LoadError, match="no map nonesuch"):
        load(source, ["-DANSWER=1"], [], ["nonesuch"])


COUNTED = r"""
BPF_HASH(small, u32, u8, 256);
BPF_TABLE("lru_hash", u32, u64, recent, 1024);
BPF_TABLE("sockhash", u32, int, listeners, 16);

int count_connect(struct bpf_sock_addr *ctx) { return 1; }
"""


def test_entries_are_counted_by_batch_where_the_map_type_has_one_else_by_walking(tmp_path: Path):
    """Hash maps count in one batch syscall (what keeps the metrics' scrape cheap), socket maps
    have none and are walked; either way the count is the entries', up to a full map."""
    source = tmp_path / "counted.c"
    source.write_text(COUNTED)
    loaded = load(source, [], [Program("count_connect", syscall.BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
                                       syscall.BPF_CGROUP_INET4_CONNECT)], ["small", "recent", "listeners"])
    sockets = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]
    try:
        small, recent, listeners = (loaded.maps[name] for name in ("small", "recent", "listeners"))
        assert (len(small), len(recent), len(listeners)) == (0, 0, 0)
        for i in range(small.max_entries):  # full
            small.update(i.to_bytes(4, "little"), b"\1")
        for i in range(700):
            recent.update(i.to_bytes(4, "little"), bytes(8))
        for i, sock in enumerate(sockets):
            listeners.update(i.to_bytes(4, "little"), sock.fileno().to_bytes(listeners.value_size, sys.byteorder))
        assert (len(small), len(recent), len(listeners)) == (256, 700, 3)
        assert [m._count_walking() for m in (small, recent, listeners)] == [256, 700, 3]
        assert (small._batch, recent._batch, listeners._batch) == (True, True, False)
    finally:
        for sock in sockets:
            sock.close()
        loaded.close()
