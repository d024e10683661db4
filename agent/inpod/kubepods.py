"""The kubelet's names for pods' cgroups, under both of its cgroup drivers (sans-IO).

The kubelet puts every pod in a cgroup named after its UID, below one per QoS class (none
for Guaranteed pods), below ``kubepods``:

    cgroupfs: kubepods/pod<uid>, kubepods/burstable/pod<uid>, kubepods/besteffort/pod<uid>
    systemd:  kubepods.slice/kubepods-pod<uid_>.slice,
              kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice, ...

A systemd slice's name repeats its parents' (``a-b.slice`` lives in ``a.slice``), which is
why the UID's dashes, which would mean a level to systemd, become underscores. The kubelet's
``--cgroup-root`` puts kubepods lower and, under systemd, into its names too: kind's
``--cgroup-root=/kubelet`` gives ``kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-
besteffort.slice/...``; so the pod's names are derived from the kubepods directory found, not
from a fixed prefix. The containers' cgroups below the pod's (``<id>``, or
``cri-containerd-<id>.scope``, ``crio-<id>.scope``, ``docker-<id>.scope``) are never named
here: any process of the pod's subtree is in the pod's network namespace.
"""

from __future__ import annotations

CGROUPFS_KUBEPODS = "kubepods"
SYSTEMD_KUBEPODS = "kubepods.slice"
SLICE = ".slice"
QOS_LEVELS = ("burstable", "besteffort")  # the classes with a level of their own; Guaranteed has none


def is_kubepods(name: str) -> bool:
    """Whether a cgroup directory called ``name`` is the kubelet's kubepods, under either driver."""
    return name in (CGROUPFS_KUBEPODS, SYSTEMD_KUBEPODS) or name.endswith("-" + SYSTEMD_KUBEPODS)


def pod_cgroups(kubepods: str, uid: str) -> list[str]:
    """Where the pod ``uid`` may be, relative to a kubepods directory called ``kubepods``.

    One path per QoS class (Guaranteed, Burstable, BestEffort): the agent does not know a
    pod's class, and at most one of them exists. A UID that could name a path elsewhere
    (a "/" in it) is a ValueError.
    """
    if not uid or "/" in uid:
        raise ValueError(f"{uid!r} is not a pod UID")
    if kubepods.endswith(SLICE):
        unit, pod = kubepods.removesuffix(SLICE), "pod" + uid.replace("-", "_")
        return [f"{unit}-{pod}{SLICE}"] + [f"{unit}-{qos}{SLICE}/{unit}-{qos}-{pod}{SLICE}" for qos in QOS_LEVELS]
    return [f"pod{uid}"] + [f"{qos}/pod{uid}" for qos in QOS_LEVELS]
