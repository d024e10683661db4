"""The first program of every container: join its cgroup, make its mounts, exec the command.

The kubelet starts ``unshare --mount --cgroup --propagation private python -m ...mountinit``
inside the pod's netns and the *node's* cgroup, so the new cgroup namespace is rooted at the
node (the contract: a container sees the node's cgroup as the root). Here, already in the new
namespaces, this moves itself to the container's cgroup, makes the mounts of the plan
(``volumes.mount_plan``) in its private mount namespace, where nothing leaks to the host, and
execs the container's argv with the environment it was given. Python 3.11 has no
``os.unshare`` or ``os.mount``, hence unshare(1) for the namespaces and libc's mount(2) here.

    python -m nodemesh.tools.sim.kubelet.mountinit --cgroup DIR --mounts JSON -- ARGV...
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_SLAVE = 1 << 19
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    if _libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(),
                   ctypes.c_ulong(flags), None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source or fstype} on {target}: {os.strerror(errno)}")


def _mount_point(source: str, target: str) -> None:
    """Make ``target`` exist as the kind of thing ``source`` is (a file binds onto a file)."""
    if os.path.isdir(source) or not source:
        os.makedirs(target, exist_ok=True)
    elif not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        Path(target).touch()


def make(mount: dict) -> None:
    """One mount of the plan (``volumes.Mount.as_dict``)."""
    target = mount["target"]
    if mount["kind"] == "cgroup2":
        os.makedirs(target, exist_ok=True)
        # The kernel will not mount cgroup2 over the host's cgroup2 at the same place (EBUSY):
        # take the host's off first; in this private namespace that touches nothing outside.
        _libc.umount2(target.encode(), MNT_DETACH)
        _mount("cgroup2", target, "cgroup2", 0)
        return
    _mount_point(mount["source"], target)
    _mount(mount["source"], target, None, MS_BIND | MS_REC)
    if mount["readonly"]:
        _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    if mount["slave"]:
        _mount(None, target, None, MS_SLAVE | MS_REC)


def main(argv: list[str]) -> None:
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1:]
    opts = dict(zip(options[::2], options[1::2]))
    try:
        Path(opts["--cgroup"], "cgroup.procs").write_text(f"{os.getpid()}\n")
        for mount in json.loads(opts["--mounts"]):
            make(mount)
        os.execvp(command[0], command)
    except OSError as exc:
        sys.exit(f"sim kubelet: cannot start container {command[0]!r}: {exc}")


if __name__ == "__main__":
    main(sys.argv[1:])
