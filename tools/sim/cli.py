"""``nodemesh sim``: a simulated cluster (namespaces and cgroups as nodes and pods) on this host.

Components named by ``stop``, ``start`` and ``logs``: ``controller``, ``agent/<node>`` and
``pod/<namespace>/<pod>/<container>`` (``status`` lists them).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

from nodemesh.tools.sim.names import DEFAULT_SIM, SimError, SimNames


def _sim_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--name", "sim", default=DEFAULT_SIM, show_default=True, envvar="NODEMESH_SIM",
                        help="Which simulated cluster (env NODEMESH_SIM).")(command)


def prometheus_port_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """--prometheus-port, for every command that starts a sim's Prometheus (`nodemesh demo` too)."""
    from nodemesh.tools.sim.prometheus import DEFAULT_HOST_PORT

    return click.option("--prometheus-port", type=click.IntRange(1, 65535), default=DEFAULT_HOST_PORT,
                        show_default=True,
                        help="Port on this host's 127.0.0.1 that forwards to the sim's Prometheus.")(command)


def _names(sim: str) -> SimNames:
    try:
        return SimNames(sim)
    except SimError as exc:
        raise click.UsageError(str(exc)) from None


@click.group()
def sim() -> None:
    """A simulated cluster on this host: nodes and pods are network namespaces and cgroups."""


@sim.command()
@click.option("-f", "--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Kubernetes YAML (Namespaces, Pods, Services) describing the cluster.")
@click.option("--kube", is_flag=True,
              help="Instead of a file: a real Kubernetes control plane drives the sim's nodes "
                   "(`kubectl apply` makes pods run; docs/sim.md).")
@click.option("--nodes", type=click.IntRange(1, 26), default=3, show_default=True,
              help="With --kube: how many nodes.")
@click.option("--kube-port", type=click.IntRange(0, 65535), default=6443, show_default=True,
              help="With --kube: the host's 127.0.0.1 port forwarding to the API server (0: a free one).")
@click.option("--controller-arg", "controller_args", multiple=True, metavar="ARG",
              help="Extra argument for `nodemesh controller`, e.g. --controller-arg=--cert-lifetime=1h "
                   "(repeatable).")
@click.option("--agent-arg", "agent_args", multiple=True, metavar="ARG",
              help="Extra argument for every `nodemesh agent`, e.g. --agent-arg=--access-log=off (repeatable).")
@click.option("--prometheus", "with_prometheus", is_flag=True,
              help="Also run a Prometheus scraping the agents and the controller, reachable at "
                   "http://127.0.0.1:PORT on this host (see --prometheus-port).")
@prometheus_port_option
@_sim_option
def up(file: Path | None, kube: bool, nodes: int, kube_port: int, sim: str, controller_args: tuple[str, ...],
       agent_args: tuple[str, ...], with_prometheus: bool, prometheus_port: int) -> None:
    """Create the cluster in FILE, start the controller, the agents and the pods; wait until ready."""
    from nodemesh.tools.sim.cluster import ExtraArgs, up as bring_up

    names = _names(sim)
    if kube == (file is not None):
        raise click.UsageError("give either -f FILE or --kube")
    if kube:
        from nodemesh.tools.sim.kube import up_kube

        state = up_kube(names, click.echo, nodes, kube_port)
        click.echo(f"sim {sim!r} is up: {len(state.nodes)} nodes Ready.\n"
                   f"export KUBECONFIG={names.admin_kubeconfig}")
        return
    state = bring_up(file, names, click.echo, ExtraArgs(controller_args, agent_args),
                     prometheus_port if with_prometheus else None)
    for ref, svc in state.services.items():
        click.echo(f"service {ref}: {svc['vip']}")
    click.echo(f"sim {sim!r} is up: {len(state.nodes)} nodes, {len(state.pods)} pods. "
               f"Try `nodemesh sim status --name {sim}`; "
               f"`nodemesh sim exec --name {sim} NAMESPACE/POD -- CMD` runs a command in a pod.")


@sim.command("prometheus")
@prometheus_port_option
@_sim_option
def prometheus_(sim: str, prometheus_port: int) -> None:
    """Add a Prometheus to a sim that is up (what `sim up --prometheus` starts)."""
    from nodemesh.tools.sim.cluster import add_prometheus

    state = add_prometheus(_names(sim), prometheus_port)
    click.echo(f"prometheus at {state.prometheus['url']}")


@sim.command()
@_sim_option
def down(sim: str) -> None:
    """Remove everything the sim made (safe to run twice, and after a failed or killed `up`)."""
    from nodemesh.tools.sim.cleanup import down as tear_down

    removed = tear_down(_names(sim))
    click.echo(f"sim {sim!r} removed ({len(removed)} objects)" if removed else f"sim {sim!r}: nothing to remove")


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "no"


@sim.command()
@_sim_option
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
def status(sim: str, output: str) -> None:
    """Nodes, pods and processes of the sim, with whether each is alive and ready."""
    from nodemesh.tools.sim.cluster import status as snapshot

    s = snapshot(_names(sim))
    if output == "json":
        click.echo(json.dumps(s, indent=2, sort_keys=True))
        return
    click.echo(f"sim {s['sim']} ({s['phase']}) from {s['file']}; controller at "
               f"{s['controller']['address']}"
               + (f"; prometheus at {s['prometheus']['url']}" if s["prometheus"] else "") + "\n")
    click.echo(_table(["NODE", "IP", "POD CIDR"],
                      [[n, v["ip"], v["pod_cidr"]] for n, v in s["nodes"].items()]) + "\n")
    if "kubeconfig" in s["controller"]:  # --kube: the API server knows the pods
        click.echo(f"pods: `kubectl get pods -A -o wide` with KUBECONFIG={s['controller']['kubeconfig']} "
                   f"(API server forwarded at https://127.0.0.1:{s['controller']['kube_port']})\n")
    else:
        click.echo(_table(["POD", "IP", "NODE", "MESHED", "RUNNING"],
                          [[ref, p["ip"], p["node"], _yes_no(p["meshed"]),
                            f"{p['running']}/{p['containers']}"] for ref, p in s["pods"].items()]) + "\n")
    if s["services"]:
        click.echo(_table(["SERVICE", "VIP", "PORTS"],
                          [[ref, v["vip"], " ".join(f"{p}->{t}" for p, t in v["ports"].items())]
                           for ref, v in s["services"].items()]) + "\n")
    click.echo(_table(["COMPONENT", "PID", "ALIVE", "READY"],
                      [[name, p["pid"], _yes_no(p["alive"]), _yes_no(p["ready"])]
                       for name, p in s["processes"].items()]))


@sim.command("exec", context_settings={"ignore_unknown_options": True})
@_sim_option
@click.argument("pod")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(sim: str, pod: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in POD (NAMESPACE/POD): in its network namespace and cgroup, with its env.

    Standard input and output are passed through and the exit status is COMMAND's.
    Example: nodemesh sim exec shop/client -- python3 -m nodemesh.tools.apps.client catalog:80
    """
    from nodemesh.tools.sim.process import exec_in, require_root
    from nodemesh.tools.sim.state import load

    record = load(_names(sim)).pod(pod)
    require_root()
    try:
        exec_in(record["netns"], Path(record["cgroup"]), list(command), record["env"])
    except FileNotFoundError:
        raise SimError(f"{command[0]}: command not found in pod {pod} "
                       f"(PATH={record['env']['PATH']})") from None
    except OSError as exc:
        raise SimError(f"{command[0]}: cannot run it in pod {pod}: {exc.strerror}") from None


@sim.command()
@_sim_option
@click.argument("component")
def stop(sim: str, component: str) -> None:
    """Stop COMPONENT (controller, agent/<node>, pod/<ns>/<pod>/<container>): SIGTERM, then SIGKILL."""
    from nodemesh.tools.sim.cluster import stop as stop_component

    stop_component(_names(sim), component)
    click.echo(f"{component} stopped")


@sim.command()
@_sim_option
@click.argument("component")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until the component is ready (an agent needs the controller for that).")
def start(sim: str, component: str, wait: bool) -> None:
    """Start COMPONENT again, as `up` started it (same argv, netns, cgroup; log appended)."""
    from nodemesh.tools.sim.cluster import start as start_component

    start_component(_names(sim), component, wait)
    click.echo(f"{component} started" + (" and ready" if wait else ""))


@sim.command()
@_sim_option
@click.argument("component")
@click.option("-n", "--lines", type=int, default=0, help="Only the last N lines (0: all).")
def logs(sim: str, component: str, lines: int) -> None:
    """Print the log of COMPONENT (see `status` for the names)."""
    from nodemesh.tools.sim.state import load

    log = Path(load(_names(sim)).process(component).log)
    if not log.exists():
        raise SimError(f"{component} has no log yet ({log}): it has not been started")
    text = log.read_text(errors="replace")
    sys.stdout.write("".join(text.splitlines(keepends=True)[-lines:]) if lines else text)
