"""Bringing a simulated cluster up, and acting on its components afterwards.

``up`` goes in steps, recording each in state.json before taking it: a join token per node, the
topology (namespaces, links, cgroups), the controller (waited for until its port answers), one
agent per node (waited for until ready), then the pods' containers. Pods start last, like on a node whose
CNI plugin waits for the mesh agent: their first connection is already in the mesh. Anything
failing, Ctrl-C included, tears down what was made before the error is shown. A Prometheus
(``prometheus.py``) comes last when asked for, or later to a sim that is up.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from nodemesh.agent.ports import READINESS_PORT
from nodemesh.tools.sim import prometheus, topology
from nodemesh.tools.sim.cleanup import down, leftovers
from nodemesh.tools.sim.names import (
    CONTROLLER_IP,
    CONTROLLER_PORT,
    SimError,
    SimNames,
)
from nodemesh.tools.sim.plan import ClusterPlan, plan_from_file
from nodemesh.tools.sim.process import (
    alive,
    process_env,
    require_root,
    spawn,
    terminate,
    venv_bin,
)
from nodemesh.tools.sim.ready import probe, wait_ready
from nodemesh.tools.sim.state import (
    CONTROLLER,
    ProcessRecord,
    SimState,
    agent_component,
    load,
    pod_component,
)
from nodemesh.tools.sim.tokens import write_tokens

READY_TIMEOUT = 30.0


def nodemesh_argv(*args: str) -> list[str]:
    """argv running our own CLI from this venv (what `pip install -e` put next to python)."""
    return [str(Path(venv_bin()) / "nodemesh"), *args]


@dataclass(frozen=True)
class ExtraArgs:
    """Arguments added to the components' own (``sim up --controller-arg/--agent-arg``)."""

    controller: tuple[str, ...] = ()
    agent: tuple[str, ...] = ()


def new_state(plan: ClusterPlan, names: SimNames, file: Path, extra: ExtraArgs = ExtraArgs()) -> SimState:
    """The state of a sim about to be made from ``plan``: names, addresses and argv, no pids yet.

    Agents verify the controller with the CA root it makes in its state directory on first
    start, which is before any agent starts.
    """
    from nodemesh.controller.ca.store import root_path

    state = SimState(sim=names.sim, file=str(file.resolve()),
                     controller={"address": f"{CONTROLLER_IP}:{CONTROLLER_PORT}",
                                 "netns": names.controller_netns})
    state.processes[CONTROLLER] = ProcessRecord(
        argv=nodemesh_argv("controller", "--file", state.file,
                           "--state-dir", str(names.controller_state_dir),
                           "--listen", state.controller["address"],
                           "--node-tokens", str(names.node_tokens), *extra.controller),
        env=process_env({}), netns=names.netns_path(names.controller_netns),
        cgroup=str(names.controller_cgroup), log=str(names.component_log(CONTROLLER)),
        ready={"tcp": {"host": CONTROLLER_IP, "port": CONTROLLER_PORT}})
    for node in plan.nodes:
        netns = names.node_netns(node.name)
        state.nodes[node.name] = {"ip": node.ip, "pod_cidr": node.pod_cidr, "netns": netns,
                                  "cgroup": str(names.node_cgroup(node.name))}
        component = agent_component(node.name)
        state.processes[component] = ProcessRecord(
            argv=nodemesh_argv("agent", "--node", node.name,
                               "--controller", state.controller["address"],
                               "--controller-ca", str(root_path(names.controller_state_dir)),
                               "--token-file", str(names.node_token(node.name)),
                               "--cgroup", str(names.node_cgroup(node.name)),
                               "--pod-netns-template", names.pod_netns_template,
                               "--bpffs-dir", str(names.node_bpf_dir(node.name)), *extra.agent),
            env=process_env({}), netns=names.netns_path(netns),
            cgroup=str(names.agent_cgroup(node.name)), log=str(names.component_log(component)),
            ready={"http": {"port": READINESS_PORT, "path": "/healthz/ready"}})
    for svc in plan.services:
        state.services[svc.ref] = {"vip": svc.vip, "ports": {str(p): t for p, t in svc.ports.items()}}
    for pod in plan.pods:
        netns = names.netns_path(names.pod_netns(pod.namespace, pod.name))
        cgroup = str(names.pod_cgroup(pod.node, pod.namespace, pod.name))
        # `exec` gets the first container's env, as `kubectl exec` runs in the first container
        env = {**pod.env, **(pod.containers[0].env if pod.containers else {})}
        state.pods[pod.ref] = {"namespace": pod.namespace, "name": pod.name, "node": pod.node,
                               "ip": pod.ip, "meshed": pod.meshed, "netns": netns,
                               "cgroup": cgroup, "env": process_env(env)}
        for c in pod.containers:
            state.processes[pod_component(pod.namespace, pod.name, c.name)] = ProcessRecord(
                argv=list(c.argv), env=process_env(c.env), netns=netns, cgroup=cgroup,
                log=str(names.pod_log(pod.namespace, pod.name, c.name)))
    return state


def agents(state: SimState) -> list[str]:
    return [agent_component(node) for node in state.nodes]


def pod_containers(state: SimState) -> list[str]:
    return [name for name in state.processes if name.startswith("pod/")]


def start_components(state: SimState, names: SimNames, components: list[str],
                     wait: bool = True) -> None:
    """Start ``components`` (recording their pids) and, with ``wait``, wait until they are ready."""
    for name in components:
        record = state.processes[name]
        try:
            spawn(record)
        except OSError as exc:  # raised in the child before exec: command missing, not executable
            raise SimError(f"{name}: cannot run {record.argv[0]!r}: {exc.strerror} "
                           f"(PATH={record.env.get('PATH')})") from None
        state.save(names)
    if wait:
        wait_ready({name: state.processes[name] for name in components}, READY_TIMEOUT)


def lay_out(plan: ClusterPlan, names: SimNames, file: Path, extra: ExtraArgs = ExtraArgs()) -> SimState:
    """The sim's topology and its state file, with nothing running yet."""
    state = new_state(plan, names, file, extra)
    state.save(names)
    topology.build(plan, names)
    return state


def _ensure_absent(names: SimNames) -> None:
    found = leftovers(names)
    if found:
        raise SimError(f"sim {names.sim!r} is already up (or was left half made: {found[0]}, ...): "
                       f"run `nodemesh sim down --name {names.sim}` first")


def start_prometheus(state: SimState, names: SimNames, host_port: int) -> None:
    """Start the sim's Prometheus and its forward to the host's 127.0.0.1:``host_port``."""
    records = prometheus.components(state, names, host_port)
    state.processes.update(records)
    state.prometheus = {"url": prometheus.url(host_port)}
    state.save(names)
    start_components(state, names, list(records))


def add_prometheus(names: SimNames, host_port: int) -> SimState:
    """Give a sim that is up a Prometheus (or start again the one it has, on ``host_port``)."""
    state = load(names)
    require_root()
    running = [name for name in (prometheus.PROMETHEUS, prometheus.FORWARD)
               if name in state.processes and alive(state.processes[name])]
    if running:
        raise SimError(f"sim {names.sim!r} already has a Prometheus at {state.prometheus['url']}: "
                       f"`nodemesh sim stop --name {names.sim} {running[0]}` stops it")
    prometheus.preflight(host_port)
    start_prometheus(state, names, host_port)
    return state


@contextmanager
def making(names: SimNames) -> Iterator[None]:
    """Around every ``up``'s steps: root, no sim of that name yet, and on any failure (Ctrl-C
    included) nothing left of what the steps made."""
    require_root()
    _ensure_absent(names)
    names.logs_dir.mkdir(parents=True)
    try:
        yield
    except BaseException:
        down(names)
        raise


def mark_ready(state: SimState, names: SimNames) -> SimState:
    state.phase = "ready"
    state.save(names)
    return state


def up(file: Path, names: SimNames, say: Callable[[str], None],
       extra: ExtraArgs = ExtraArgs(), prometheus_port: int | None = None) -> SimState:
    """Bring the sim described by ``file`` up, with a Prometheus on the host's
    ``prometheus_port`` if given; on any failure leave nothing behind."""
    with making(names):
        if prometheus_port is not None:
            prometheus.preflight(prometheus_port)
        plan = plan_from_file(file, names.controller_state_dir)
        write_tokens(names, [node.name for node in plan.nodes])
        state = lay_out(plan, names, file, extra)
        say(f"topology: {len(plan.nodes)} nodes, {len(plan.pods)} pods")
        start_components(state, names, [CONTROLLER])
        say(f"controller ready at {state.controller['address']}")
        start_components(state, names, agents(state))
        say(f"agents ready on {', '.join(state.nodes)}")
        start_components(state, names, pod_containers(state), wait=False)
        if prometheus_port is not None:
            start_prometheus(state, names, prometheus_port)
            say(f"prometheus at {state.prometheus['url']}")
        return mark_ready(state, names)


def stop(names: SimNames, component: str, grace: float = 10.0) -> None:
    record = load(names).process(component)
    require_root()
    if alive(record):
        terminate([record.pid], grace)


def start(names: SimNames, component: str, wait: bool = True) -> None:
    state = load(names)
    require_root()
    if alive(state.process(component)):
        raise SimError(f"{component} is already running (pid {state.processes[component].pid})")
    start_components(state, names, [component], wait)


def status(names: SimNames) -> dict:
    """A snapshot for people and tests: nodes, pods and every process, alive and ready."""
    state = load(names)
    require_root()
    processes = {name: {"pid": r.pid, "alive": alive(r), "ready": probe(r) if r.ready else None,
                        "log": r.log}
                 for name, r in state.processes.items()}
    pods = {}
    for ref, pod in state.pods.items():
        mine = [p for name, p in processes.items() if name.startswith(f"pod/{ref}/")]
        pods[ref] = {"ip": pod["ip"], "node": pod["node"], "meshed": pod["meshed"],
                     "containers": len(mine), "running": sum(p["alive"] for p in mine)}
    return {"sim": state.sim, "phase": state.phase, "file": state.file,
            "controller": state.controller, "nodes": state.nodes, "pods": pods,
            "services": state.services, "prometheus": state.prometheus, "processes": processes}
