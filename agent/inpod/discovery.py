"""Where a pod's network namespace is: found from the kubelet's cgroups, or named by a template.

On a Kubernetes node nothing names pods' namespaces in a place the agent can count on (the
runtime picks the path, or pins none), but the kubelet names every pod's cgroup after its UID
(``kubepods``), and every process of a pod is in the pod's namespace: ``KubeletCgroups``
opens ``/proc/<pid>/ns/net`` of one of them. The same code serves a real node and the sim
kubelet, which names pods' cgroups as the kubelet's cgroupfs driver does. ``PathTemplate``
(``--pod-netns-template``) serves the file-based sim, whose pods' namespaces are pinned by name.

Either gives the enroller an open namespace, or raises ``NotYet`` saying why: the pod stays
pending and is asked for again (its cgroup or first process may not be there yet).
"""

from __future__ import annotations

import errno
import os
from collections import deque
from pathlib import Path
from typing import Protocol

from nodemesh import cgroups
from nodemesh.agent.inpod.kubepods import is_kubepods, pod_cgroups
from nodemesh.model import Workload
from nodemesh.netns import Netns

# How deep below the cgroup root the kubepods directory may be: the kubelet's --cgroup-root
# puts it one or two levels down (kind: kubelet.slice/kubelet-kubepods.slice).
SEARCH_DEPTH = 3
GONE = (errno.ENOENT, errno.ESRCH)  # the process exited since its cgroup listed it


class NotYet(Exception):
    """The pod's namespace cannot be opened now; the message says why. The pod stays pending."""


class NetnsSource(Protocol):
    def open(self, w: Workload) -> Netns:
        """The pod's network namespace, open; raises NotYet."""
        ...


class PathTemplate:
    """Namespaces at a path made from the pod's names (``--pod-netns-template``)."""

    def __init__(self, template: str) -> None:
        self.template = template

    def open(self, w: Workload) -> Netns:
        path = netns_path(self.template, w)
        try:
            return Netns(path)
        except OSError as e:
            raise NotYet(f"network namespace {path}: {e.strerror or e}") from None


class KubeletCgroups:
    """Namespaces of a process in the pod's cgroup, found by pod UID below ``root``.

    The namespace is opened at once, so a process that exits afterwards takes nothing away:
    the open file keeps the namespace as long as the enroller holds it. A process in the
    agent's own namespace is passed over: a container runtime's helper is there for a moment
    (runc's first stage joins the container's cgroup before the pod's namespace), and a pod
    whose processes all are is a hostNetwork pod, never enrolled. That the agent's namespace
    is the host's, where such helpers start, holds on a node; a simulation must start a pod's
    processes in its namespace before moving them into its cgroup.
    """

    def __init__(self, root: Path, proc: Path = Path("/proc")) -> None:
        self.root = root
        self.proc = proc
        self.kubepods: list[Path] = []  # found once, searched again when one vanishes

    def open(self, w: Workload) -> Netns:
        pod = self.pod_cgroup(w.uid)
        home = os.stat(self.proc / "self/ns/net")
        in_home = False
        for pid in cgroups.subtree_pids(pod):
            path = self.proc / str(pid) / "ns/net"
            try:
                netns = Netns(str(path))
            except OSError as e:
                if e.errno in GONE:
                    continue
                raise NotYet(f"{path} (a process of cgroup {pod}): {e.strerror or e}") from None
            seen = os.fstat(netns.fd)
            if (seen.st_dev, seen.st_ino) != (home.st_dev, home.st_ino):
                return netns
            netns.close()  # a runtime's helper not in the pod's namespace yet, or a hostNetwork pod
            in_home = True
        if in_home:
            raise NotYet(f"its processes (cgroup {pod}) are in the node's network namespace: "
                         "a hostNetwork pod is not enrolled")
        raise NotYet(f"cgroup {pod} has no process yet")

    def pod_cgroup(self, uid: str) -> Path:
        """The pod's cgroup directory; NotYet while the kubelet has not made it."""
        if not self.kubepods or not all(d.is_dir() for d in self.kubepods):
            self.kubepods = find_kubepods(self.root, SEARCH_DEPTH)
        if not self.kubepods:
            raise NotYet(f"no kubepods cgroup within {SEARCH_DEPTH} levels of {self.root}: is the kubelet "
                         "running here, and is --cgroup the cgroup root it sees?")
        try:
            found = [d / rel for d in self.kubepods for rel in pod_cgroups(d.name, uid)]
        except ValueError as e:
            raise NotYet(str(e)) from None
        for candidate in found:
            if candidate.is_dir():
                return candidate
        raise NotYet(f"no cgroup for pod UID {uid} in {', '.join(map(str, self.kubepods))}")


def find_kubepods(root: Path, depth: int) -> list[Path]:
    """The kubepods directories at most ``depth`` levels below ``root``, breadth first.

    Nothing below a kubepods directory is searched: pods' cgroups are there, not others'.
    """
    found: list[Path] = []
    level = deque([(root, 0)])
    while level:
        directory, below = level.popleft()
        try:
            children = [e for e in os.scandir(directory) if e.is_dir(follow_symlinks=False)]
        except OSError:  # removed meanwhile, or not ours to read: not the kubelet's
            continue
        for child in children:
            if is_kubepods(child.name):
                found.append(Path(child.path))
            elif below + 1 < depth:
                level.append((Path(child.path), below + 1))
    return found


def netns_path(template: str, w: Workload) -> str:
    """Where the pod's network namespace is, by ``--pod-netns-template``."""
    return template.format(namespace=w.namespace, name=w.name, uid=w.uid)


def check_netns_template(template: str) -> None:
    """Raise ValueError, in words, unless ``template`` names only {namespace}, {name} and {uid}."""
    probe = Workload(uid="uid", name="name", namespace="namespace", service_account="sa", node="node", ip="")
    try:
        netns_path(template, probe)
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"{template!r}: only {{namespace}}, {{name}} and {{uid}} may appear in it "
                         f"({type(e).__name__}: {e})") from None
