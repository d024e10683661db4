"""cgroup v2: where the unified hierarchy is mounted, and moving processes into a cgroup.

eBPF programs attach to a cgroup v2 directory and see every socket operation of the processes
below it. Hosts mount the unified hierarchy either at /sys/fs/cgroup (pure v2) or beside the
v1 controllers (often /sys/fs/cgroup/unified): we read /proc/self/mounts rather than guess.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator


def unified_root() -> Path | None:
    """The mount point of the cgroup v2 hierarchy, or None when it is not mounted."""
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "cgroup2":
                return Path(parts[1])
    return None


def join(cgroup: Path, pid: int | None = None) -> None:
    """Move a process (default: this one) into ``cgroup``."""
    (cgroup / "cgroup.procs").write_text(f"{pid if pid is not None else os.getpid()}\n")


def pids(cgroup: Path) -> list[int]:
    """The processes directly in ``cgroup``; [] when it does not exist."""
    try:
        text = (cgroup / "cgroup.procs").read_text()
    except FileNotFoundError:
        return []
    return [int(x) for x in text.split()]


def subtree_pids(cgroup: Path) -> Iterator[int]:
    """The processes in ``cgroup`` and every cgroup below it, top-down; none when it does not exist.

    cgroup v2 keeps processes out of a cgroup that delegates controllers to its children, so a
    pod's processes are in its containers' cgroups, not in the pod's own.
    """
    for directory, _subdirs, _files in os.walk(cgroup):
        yield from pids(Path(directory))
