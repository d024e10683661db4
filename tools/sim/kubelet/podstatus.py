"""A Pod's status as the kubelet reports it, from what its containers are doing (sans-IO).

The runner keeps a ``ContainerState`` per container; ``pod_status`` turns them into the status
subresource (phase, conditions, containerStatuses, addresses), which the kubelet sends whole as
a merge patch. Phase: Pending until every container has started once; Succeeded or Failed when
all have terminated and none will start again; Running otherwise (a container in CrashLoop
backoff keeps its pod Running, as on a node).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

from nodemesh.tools.sim.kubelet.envvars import Obj
from nodemesh.tools.sim.kubelet.qos import qos_class


def timestamp(seconds: float) -> str:
    """RFC 3339, second precision, UTC: the API's metav1.Time."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


@dataclass
class ContainerState:
    """What one container is doing; the runner updates it, ``pod_status`` reports it."""

    name: str
    started_at: float | None = None  # the current run's start, None when not running
    ready: bool = False
    restart_count: int = 0
    exit_code: int | None = None  # of the last run
    finished_at: float | None = None
    waiting_reason: str = "ContainerCreating"
    done: bool = False  # exited and will not be started again
    pid: int | None = None

    def status(self) -> dict[str, Any]:
        if self.started_at is not None:
            state: dict[str, Any] = {"running": {"startedAt": timestamp(self.started_at)}}
        elif self.done:
            state = {"terminated": {"exitCode": self.exit_code,
                                    "reason": "Completed" if self.exit_code == 0 else "Error",
                                    "finishedAt": timestamp(self.finished_at or 0)}}
        else:
            state = {"waiting": {"reason": self.waiting_reason}}
        out = {"name": self.name, "ready": self.ready, "restartCount": self.restart_count,
               "started": self.started_at is not None, "state": state,
               "image": "nodemesh-sim", "imageID": "", "containerID": ""}
        if self.pid is not None:
            out["containerID"] = f"sim://{self.pid}"
        if self.exit_code is not None and not self.done:
            out["lastState"] = {"terminated": {"exitCode": self.exit_code,
                                               "reason": "Completed" if self.exit_code == 0 else "Error",
                                               "finishedAt": timestamp(self.finished_at or 0)}}
        return out


def phase(containers: Sequence[ContainerState]) -> str:
    if containers and all(c.done for c in containers):
        return "Succeeded" if all(c.exit_code == 0 for c in containers) else "Failed"
    # never started yet (an exited container waiting for its restart has an exit code: Running)
    if any(c.started_at is None and c.exit_code is None and not c.done for c in containers):
        return "Pending"
    return "Running"


def _condition(kind: str, ok: bool, since: float) -> dict[str, Any]:
    return {"type": kind, "status": "True" if ok else "False",
            "lastTransitionTime": timestamp(since), "lastProbeTime": None}


def pod_status(pod: Obj, pod_ip: str, host_ip: str, started: float,
               containers: Sequence[ContainerState], since: float) -> dict[str, Any]:
    """The status subresource's content; ``since`` dates the conditions' last transition."""
    ready = bool(containers) and all(c.ready for c in containers)
    addresses = {"podIP": pod_ip, "podIPs": [{"ip": pod_ip}]} if pod_ip else {}  # none while waiting
    return {"phase": phase(containers), **addresses,
            "hostIP": host_ip, "hostIPs": [{"ip": host_ip}], "startTime": timestamp(started),
            "qosClass": qos_class(pod["spec"]),
            "conditions": [_condition("PodScheduled", True, started),
                           _condition("Initialized", True, started),
                           _condition("ContainersReady", ready, since),
                           _condition("Ready", ready, since)],
            "containerStatuses": [c.status() for c in containers]}
