"""Tearing a simulated cluster down, completely, from whatever is left of it.

``down`` trusts state.json only for what it adds (the pids ``up`` recorded); everything else is
found by name, so it works after an ``up`` that was killed midway, with a damaged or missing
state file, and a second time (then it finds nothing). Order matters: processes first (an agent
shutting down detaches its programs from cgroups that must still exist), then namespaces (their
links go with them), then cgroups, pinned BPF objects and the sim's files.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path

from pyroute2 import netns

from nodemesh import cgroups
from nodemesh.tools.sim.names import SimError, SimNames
from nodemesh.tools.sim.process import alive, require_root, terminate
from nodemesh.tools.sim.state import load


def sim_netns(names: SimNames) -> list[str]:
    return sorted(n for n in netns.listnetns() if names.owns_netns(n))


def _cgroup_tree(root: Path) -> list[Path]:
    """``root`` and the cgroups below it, deepest first (the order rmdir needs)."""
    if not root.is_dir():
        return []
    return [Path(d) for d, _, _ in os.walk(root, topdown=False)]


def _cgroup_dirs(names: SimNames) -> list[Path]:
    return _cgroup_tree(names.cgroup_root)


def leftovers(names: SimNames) -> list[str]:
    """Everything of this sim that exists on the host, named for a person; [] when it is gone."""
    found = [f"netns {n}" for n in sim_netns(names)]
    found += [f"cgroup {d}" for d in _cgroup_dirs(names)]
    found += [f"{what} {p}" for what, p in (("directory", names.run_dir), ("BPF pins", names.bpf_dir))
              if p.exists()]
    return found


def sim_pids(names: SimNames) -> set[int]:
    """Processes that belong to the sim: recorded by ``up``, in its cgroups or in its namespaces."""
    pids = {pid for d in _cgroup_dirs(names) for pid in cgroups.pids(d)}
    for name, in_netns in netns.ns_pids().items():
        if names.owns_netns(name):
            pids.update(in_netns)
    try:
        state = load(names)
    except SimError:
        return pids - {os.getpid()}
    pids.update(r.pid for r in state.processes.values() if alive(r))
    return pids - {os.getpid()}


def _rmdir_when_empty(path: Path, timeout: float = 5.0) -> None:
    """rmdir a cgroup, waiting out processes that are still on their way out of it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise SimError(f"cannot remove cgroup {path}: {exc.strerror} "
                               f"(processes left: {cgroups.pids(path)})") from None
            time.sleep(0.05)


def remove_cgroup_tree(root: Path) -> None:
    """Remove ``root`` and every cgroup below it (their processes must be gone or going)."""
    for d in _cgroup_tree(root):
        _rmdir_when_empty(d)


def _remove_once(names: SimNames) -> None:
    terminate(sim_pids(names))
    for name in sim_netns(names):
        netns.remove(name)
    remove_cgroup_tree(names.cgroup_root)
    for path in (names.bpf_dir, names.run_dir):
        shutil.rmtree(path, ignore_errors=True)


def down(names: SimNames, settle: float = 0.1, timeout: float = 5.0) -> list[str]:
    """Remove every trace of the sim; returns what was there. Safe to call at any time, twice.

    An ``up`` killed midway may leave a helper process that finishes creating a namespace a
    moment later (pyroute2 creates each in a forked child), so ``down`` looks again
    ``settle`` seconds after each pass and goes on until that look finds nothing.
    """
    require_root()
    found = leftovers(names)
    deadline = time.monotonic() + timeout
    while True:
        _remove_once(names)
        time.sleep(settle)
        still = leftovers(names)
        if not still:
            return found
        if time.monotonic() > deadline:
            raise SimError("could not remove: " + ", ".join(still))
