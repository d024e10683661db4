"""The record of a running simulated cluster (state.json), so later CLI calls can act on it.

``up`` writes it before it creates anything and again after each step, atomically (write a
temporary file, then rename), so that a reader never sees half a file and an ``up`` killed
midway leaves a record of what it had started. Shape::

    {"sim": "demo", "file": "/abs/cluster.yaml", "phase": "starting" | "ready",
     "controller": {"address": "172.30.0.254:15012", "netns": "nm-demo-cp"},
     "nodes": {"node-a": {"ip", "pod_cidr", "netns", "cgroup"}},
     "pods": {"shop/client": {"namespace", "name", "node", "ip", "meshed", "netns", "cgroup",
                              "env"}},
     "services": {"shop/catalog": {"vip": "10.96.0.10", "ports": {"80": 8080}}},
     "prometheus": {"url": "http://127.0.0.1:9090"} (empty without one),
     "processes": {"controller" | "agent/<node>" | "pod/<ns>/<pod>/<container>"
                   | "prometheus" | "prometheus-forward":
                   {"argv", "env", "netns", "cgroup", "log", "ready", "pid", "start_time"}}}

``ready`` says how to tell the process is serving: ``{"http": {"port", "path"}}``,
``{"tcp": {"host", "port"}}`` or null. ``start_time`` is the kernel's start time of ``pid``
(clock ticks since boot), which tells the process apart from a later one given the same pid.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from nodemesh.tools.sim.names import SimError, SimNames

CONTROLLER = "controller"


def agent_component(node: str) -> str:
    return f"agent/{node}"


def pod_component(namespace: str, pod: str, container: str) -> str:
    return f"pod/{namespace}/{pod}/{container}"


@dataclass
class ProcessRecord:
    argv: list[str]
    env: dict[str, str]
    netns: str  # path of the namespace file
    cgroup: str
    log: str
    ready: dict[str, Any] | None = None
    pid: int | None = None
    start_time: int | None = None


@dataclass
class SimState:
    sim: str
    file: str
    phase: str = "starting"
    controller: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    prometheus: dict[str, Any] = field(default_factory=dict)
    processes: dict[str, ProcessRecord] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SimState":
        data = json.loads(text)
        data["processes"] = {k: ProcessRecord(**v) for k, v in data.get("processes", {}).items()}
        return cls(**data)

    def save(self, names: SimNames) -> None:
        tmp = names.state_path.with_suffix(".tmp")
        tmp.write_text(self.to_json())
        os.replace(tmp, names.state_path)

    def process(self, component: str) -> ProcessRecord:
        try:
            return self.processes[component]
        except KeyError:
            known = ", ".join(sorted(self.processes)) or "none"
            raise SimError(f"sim {self.sim!r} has no component {component!r} (it has: {known})") from None

    def pod(self, ref: str) -> dict[str, Any]:
        try:
            return self.pods[ref]
        except KeyError:
            known = ", ".join(sorted(self.pods)) or "none"
            raise SimError(f"sim {self.sim!r} has no pod {ref!r} (pods: {known})") from None


def load(names: SimNames) -> SimState:
    """The state of a sim that is up; a clear error when it is not."""
    try:
        return SimState.from_json(names.state_path.read_text())
    except FileNotFoundError:
        raise SimError(f"sim {names.sim!r} is not up (no {names.state_path}): "
                       f"start it with `nodemesh sim up -f FILE --name {names.sim}`") from None
    except (ValueError, TypeError) as exc:
        raise SimError(f"{names.state_path} is damaged ({exc}): "
                       f"run `nodemesh sim down --name {names.sim}` and bring the sim up again") from None
