"""The kernel side of running a Pod on a sim node: its netns, cgroups, files and processes.

Thin on purpose: what to make comes from the sans-IO modules (``volumes``, ``qos``, ``envvars``);
this makes it. A pod's network is the file-mode sim's (``topology.attach_pod``: a netns named
``names.pod_netns(ns, name)``, a veth to the node, /32 routes both ways). A container is
``unshare`` + ``mountinit`` started by ``process.spawn`` in the pod's netns and the node's cgroup
(the root of the container's cgroup namespace); ``mountinit`` moves it to its own cgroup.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Mapping

from pyroute2 import IPRoute, netns

from nodemesh import cgroups
from nodemesh.controller.files import write_atomically
from nodemesh.tools.sim import topology
from nodemesh.tools.sim.cleanup import remove_cgroup_tree
from nodemesh.tools.sim.names import SimNames, pod_port_ifname
from nodemesh.tools.sim.plan import NodePlan, PodPlan
from nodemesh.tools.sim.process import spawn, terminate
from nodemesh.tools.sim.state import ProcessRecord


def ensure_pod_network(names: SimNames, node: NodePlan, namespace: str, name: str, ip: str) -> str:
    """The pod's netns (made unless a restarted kubelet finds it already there); its path."""
    netns_name = names.pod_netns(namespace, name)
    if netns_name not in netns.listnetns():
        topology.attach_pod(node, PodPlan(namespace=namespace, name=name, node=node.name, ip=ip,
                                          meshed=False), names)
    return names.netns_path(netns_name)


def remove_pod_network(names: SimNames, node: str, namespace: str, name: str) -> None:
    """The pod's veth pair goes (and with it the node's gateway address and route on it), then
    its netns' name, as a CNI plugin's DEL does.

    The veth is deleted by hand: removing the name does not end a namespace that someone still
    holds open (the mesh agent does until the pod leaves its config, after the final delete), and
    the pair, with the /32 route to the pod's IP, would live on in it: the next pod given that IP
    could not be routed.
    """
    with IPRoute(netns=names.node_netns(node)) as ipr:
        found = ipr.link_lookup(ifname=pod_port_ifname(namespace, name))
        if found:
            ipr.link("del", index=found[0])
    netns_name = names.pod_netns(namespace, name)
    if netns_name in netns.listnetns():
        netns.remove(netns_name)


def write_files(directory: Path, files: Mapping[str, tuple[bytes, int]]) -> None:
    """Make ``directory`` hold exactly ``files``, each replaced atomically (a rotated token
    never reads half written), with its mode."""
    directory.mkdir(parents=True, exist_ok=True)
    for rel, (content, mode) in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, content, mode)
    wanted = {directory / rel for rel in files}
    for path in directory.rglob("*"):
        if path.is_file() and path not in wanted:
            path.unlink()


def container_record(argv: list[str], env: Mapping[str, str], netns_path: str, node_cgroup: Path,
                     cgroup: Path, mounts_json: str, log: Path) -> ProcessRecord:
    """The container's process: unshare, then mountinit joining ``cgroup``, then ``argv``."""
    return ProcessRecord(
        argv=["unshare", "--mount", "--cgroup", "--propagation", "private", "--",
              sys.executable, "-m", "nodemesh.tools.sim.kubelet.mountinit",
              "--cgroup", str(cgroup), "--mounts", mounts_json, "--", *argv],
        env=dict(env), netns=netns_path, cgroup=str(node_cgroup), log=str(log))


def start(record: ProcessRecord, cgroup: Path) -> subprocess.Popen:
    cgroup.mkdir(parents=True, exist_ok=True)
    return spawn(record)


def stop(pids: list[int], grace: float) -> None:
    """SIGTERM each (and its process group), SIGKILL what is left after ``grace`` seconds."""
    terminate(pids, grace)


def cgroup_pids(root: Path) -> list[int]:
    """The processes in ``root`` and below."""
    return [pid for d, _, _ in os.walk(root) for pid in cgroups.pids(Path(d))]


def remove_pod_files(pod_cgroup: Path, pod_dir: Path) -> None:
    remove_cgroup_tree(pod_cgroup)
    shutil.rmtree(pod_dir, ignore_errors=True)
