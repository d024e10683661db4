"""Processes of the simulated cluster: started inside a netns and a cgroup, found again later.

A process joins its cgroup and namespace in the child, before exec, so that nothing it does (its
first socket, its first fork) happens outside them: eBPF programs attached to a node's cgroup
must see every connect of the pod's processes from the first one on. Processes run detached (a
session of their own, output to a log file) because the CLI call that starts them returns while
they keep running; later calls know them by pid *and* start time, since a pid alone may have been
reused. The host's init may not reap orphans, so a zombie counts as dead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Mapping

from nodemesh import cgroups
from nodemesh.netns import Netns
from nodemesh.tools.sim.names import SimError
from nodemesh.tools.sim.state import ProcessRecord

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def require_root() -> None:
    """Namespaces, cgroups and setns need root; say so plainly rather than fail with EPERM deep inside."""
    if os.geteuid() != 0:
        raise SimError("the simulated cluster needs root (it creates network namespaces and "
                       "cgroups, and enters them): run it with sudo")


def venv_bin() -> str:
    """The bin directory of this Python, where ``python3`` and ``nodemesh`` of our venv live."""
    return str(Path(sys.executable).parent)


def process_env(declared: Mapping[str, str]) -> dict[str, str]:
    """A clean environment, as a container gets: our venv's tools first, then ``declared``."""
    return {"PATH": f"{venv_bin()}:{SYSTEM_PATH}", "PYTHONUNBUFFERED": "1", "LANG": "C.UTF-8",
            **declared}


def start_time(pid: int) -> int | None:
    """The kernel's start time of a live (non-zombie) process, None when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces and parens
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(record: ProcessRecord) -> bool:
    """Still the process we started: same pid, same start time, not a zombie."""
    return (record.pid is not None and record.start_time is not None
            and start_time(record.pid) == record.start_time)


def _enter(netns: Netns, cgroup: Path) -> None:
    cgroups.join(cgroup)
    netns.enter_for_good()


def spawn(record: ProcessRecord) -> subprocess.Popen:
    """Start ``record``'s process detached, in its netns and cgroup; fill in pid and start time.

    The caller may keep the child to learn its exit status (the sim kubelet does); the CLI
    drops it and knows the process by its record only.
    """
    log = Path(record.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out, Netns(record.netns) as netns:
        out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(record.argv)}\n"
                  .encode())
        out.flush()
        child = subprocess.Popen(record.argv, env=record.env, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True, cwd="/",
                                 preexec_fn=lambda: _enter(netns, Path(record.cgroup)))
    record.pid = child.pid
    record.start_time = start_time(child.pid)
    return child


def exec_in(netns_path: str, cgroup: Path, argv: list[str], env: Mapping[str, str]) -> None:
    """Become ``argv`` inside the netns and cgroup: stdio and exit status are the caller's own.

    Raises SimError when the namespace or cgroup is gone, OSError when ``argv`` cannot be run.
    """
    try:
        netns = Netns(netns_path)
        cgroups.join(cgroup)
    except FileNotFoundError as exc:
        raise SimError(f"{exc.filename} is gone: the sim is damaged; run `nodemesh sim down` "
                       "and bring it up again") from None
    with netns:
        netns.enter_for_good()
    os.execvpe(argv[0], argv, dict(env))


def terminate(pids: Iterable[int], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL what is still there after ``grace`` seconds; return once all are gone.

    Each pid's whole process group goes too when it leads one, as every process we spawn does:
    a pod's shell script takes its children with it.
    """
    targets = {pid: start_time(pid) for pid in pids}
    targets = {pid: t for pid, t in targets.items() if t is not None}
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in targets:
            try:
                if os.getpgid(pid) == pid:
                    os.killpg(pid, sig)
                else:
                    os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            targets = {pid: t for pid, t in targets.items() if start_time(pid) == t}
            if not targets:
                return
            time.sleep(0.05)
