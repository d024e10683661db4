"""A Pod's QoS class and the cgroups the kubelet's cgroupfs driver gives it and its containers.

The layout is the contract the agent's ``--pod-netns-from=cgroup`` discovery reads on real nodes
too: ``kubepods/pod<uid>`` (Guaranteed), ``kubepods/burstable/pod<uid>``,
``kubepods/besteffort/pod<uid>``, a directory per container below. QoS rules are Kubernetes'
(pkg/apis/core/helper/qos): Guaranteed when every container has cpu and memory limits and its
requests (defaulted to the limits) equal them; BestEffort when no container asks for or limits
anything; Burstable otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

GUARANTEED = "Guaranteed"
BURSTABLE = "Burstable"
BEST_EFFORT = "BestEffort"

_COMPUTE = ("cpu", "memory")


def qos_class(spec: Mapping[str, Any]) -> str:
    """The QoS class of a Pod ``spec`` (init containers count, as in Kubernetes)."""
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    any_set = False
    guaranteed = True
    for c in containers:
        resources = c.get("resources") or {}
        limits = {k: v for k, v in (resources.get("limits") or {}).items() if k in _COMPUTE}
        requests = {**limits, **{k: v for k, v in (resources.get("requests") or {}).items()
                                 if k in _COMPUTE}}
        any_set = any_set or bool(limits or requests)
        if set(limits) != set(_COMPUTE) or requests != limits:
            guaranteed = False
    if not any_set:
        return BEST_EFFORT
    return GUARANTEED if guaranteed else BURSTABLE


def pod_cgroup(node_cgroup: Path, spec: Mapping[str, Any], uid: str) -> Path:
    """The pod's cgroup under the node's: where its containers' cgroups go."""
    qos = qos_class(spec)
    base = node_cgroup / "kubepods"
    return base / f"pod{uid}" if qos == GUARANTEED else base / qos.lower() / f"pod{uid}"
