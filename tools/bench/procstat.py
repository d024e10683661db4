"""CPU time, wake-ups and resident memory of processes, read from /proc (what `ps` reads, without it)."""

from __future__ import annotations

import os

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time so far of ``pids`` (all their threads), in seconds."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / _TICKS


def wakeups(pids: list[int]) -> int:
    """Voluntary context switches so far of ``pids``, all threads: how often they slept and woke.

    On a VM a wake-up costs more than the work of a small request, and unlike CPU seconds the
    count hardly drifts between runs, so it shows what a change to the event loop's use buys.
    """
    total = 0
    for pid in pids:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/status") as f:
                    for line in f:
                        if line.startswith("voluntary_ctxt_switches:"):
                            total += int(line.split()[1])
                            break
            except FileNotFoundError:  # the thread ended meanwhile
                pass
    return total


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0
