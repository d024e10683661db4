"""``nodemesh demo``: the bundled example cluster, traffic through the mesh, and what it shows.

Brings up tools/sim/examples/demo.yaml (two nodes; the meshed namespace ``shop`` with a client
and the Service ``catalog`` backed by one pod per node; the plain namespace ``legacy``), sends
connections from the client to the Service, and reports them from three points of view: the
client's (which endpoint answered), the source agent's and the destination agents' (what they
relayed, over which mutual-TLS tunnel, with which workload identities). Then a pod outside the
mesh connects to a meshed pod directly: its own agent does not steer it, and the destination's
agent takes it as plaintext (the namespace is PERMISSIVE). A client whose service account an
AuthorizationPolicy denies is refused by the destinations' agents, and ``nodemesh authz check``
explains why; a TCPRoute splits the Service ``reviews`` 90/10 between two versions. Last, when
Prometheus is installed,
the sim's Prometheus starts and says what the agents counted: the same connections, as metrics.
Tears down unless ``--keep``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import click

from nodemesh.errors import UserError
from nodemesh.tools.sim.cli import prometheus_port_option

CONNECTIONS = 20
PAYLOAD = 1024
CANARY_CONNECTIONS = 100
DENY_POLICY = "catalog-deny-reports"


def bundled_example() -> Path:
    return Path(str(resources.files("nodemesh.tools.sim") / "examples" / "demo.yaml"))


class Demo:
    def __init__(self, sim: str) -> None:
        from nodemesh.tools.sim.names import SimNames

        self.names = SimNames(sim)
        self.nodemesh = str(Path(sys.executable).parent / "nodemesh")

    def client(self, pod: str, target: str, count: int, payload: int = 0) -> dict[str, Any]:
        """Run the example client inside ``pod`` (as `nodemesh sim exec` would) and read its tally."""
        result = subprocess.run(
            [self.nodemesh, "sim", "exec", "--name", self.names.sim, pod, "--", "python3", "-m",
             "nodemesh.tools.apps.client", target, "--count", str(count), "--payload", str(payload),
             "-o", "json"], capture_output=True, text=True, timeout=120)
        if not result.stdout.strip():
            raise UserError(f"the client in {pod} failed: {result.stderr.strip()}")
        return json.loads(result.stdout)

    def connections(self, node: str) -> dict[str, Any]:
        return self.admin(node, "/connections")

    def run(self, keep: bool, prometheus_port: int | None) -> None:
        """The demo; with ``prometheus_port``, metrics last (skipped when Prometheus is not installed)."""
        from nodemesh.tools.sim import prometheus
        from nodemesh.tools.sim.cluster import status, up

        say = click.echo
        sim = self.names.sim
        if prometheus_port is not None and not prometheus.installed():
            say(f"(Prometheus is not installed, so no metrics at the end: {prometheus.SETUP_HINT})")
            prometheus_port = None
        if prometheus_port is not None:
            prometheus.preflight(prometheus_port)
        say(f"nodemesh demo: bringing up {bundled_example()}")
        up(bundled_example(), self.names, lambda line: say(f"  {line}"))  # leaves nothing if it fails
        try:
            st = status(self.names)
            self.show(st)
            if prometheus_port is not None:
                self.show_metrics(prometheus_port)
        except BaseException:
            # the error itself is shown once, by `nodemesh`; here only what became of the cluster
            if keep:
                say(f"\nThe cluster stays up (--keep): `nodemesh sim down --name {sim}` removes it.")
            else:
                self.tear_down()
            raise
        if keep:
            vip = st["services"]["shop/catalog"]["vip"]
            say(f"\nThe cluster stays up (--keep). Try:\n"
                f"  nodemesh sim status --name {sim}\n"
                f"  nodemesh sim exec --name {sim} shop/client -- "
                f"python3 -m nodemesh.tools.apps.client {vip}:80 --count 10\n"
                f"  nodemesh top --name {sim}   (live, per workload pair, while the client runs)\n"
                f"  nodemesh policies --sim {sim}   (what each node's agent enforces)\n"
                + (f"  open {prometheus.url(prometheus_port)} (Prometheus; the dashboards of "
                   "telemetry/grafana/ read it, see docs/dashboards.md)\n" if prometheus_port else "")
                + f"  nodemesh sim down --name {sim}")
        else:
            self.tear_down()

    def tear_down(self) -> None:
        from nodemesh.tools.sim.cleanup import down

        click.echo("\nTearing down...")
        down(self.names)
        click.echo("done: nothing left behind.")

    def show(self, st: dict[str, Any]) -> None:
        say = click.echo
        nodes = sorted(st["nodes"])
        vip = st["services"]["shop/catalog"]["vip"]
        pods = st["pods"]
        before = {n: self.connections(n) for n in nodes}

        say(f"\n1. shop/client (meshed, on {pods['shop/client']['node']}) -> Service shop/catalog "
            f"{vip}:80, {CONNECTIONS} connections, {PAYLOAD} bytes echoed on each")
        tally = self.client("shop/client", f"{vip}:80", CONNECTIONS, PAYLOAD)
        say("   the client saw: " + ", ".join(
            f"{name} (on {pods['shop/' + name]['node']}) answered {n}" for name, n in sorted(tally["servers"].items()))
            + f"; failed: {tally['failed']}")
        after = {n: self.connections(n) for n in nodes}
        say("   the agents saw (eBPF steered the client's connect() into its node's agent):")
        for direction in ("outbound", "inbound"):
            for node in nodes:
                for d, dest, n in _new_connections(before[node], after[node]):
                    if d != direction:
                        continue
                    if d == "inbound":
                        say(f"     agent on {node}: {n} inbound for {dest}, delivered inside the pod")
                        continue
                    dest_node = pods[dest]["node"]
                    where = ("on the same node: straight to the app, no TLS needed" if dest_node == node
                             else f"over mutual TLS (HBONE) to the agent on {dest_node}")
                    say(f"     agent on {node}: {n} outbound from shop/client to {dest} "
                        f"(asked for {vip}:80), {where}")

        say("\n   the tunnels (`nodemesh tunnels`), pooled: many connections, one TLS connection:")
        for node in nodes:
            for t in self.admin(node, "/tunnels")["tunnels"]:
                say(f"     {node} {t['direction']:8} peer {t['peer']}: {t['source_identity']} -> "
                    f"{t['destination_identity']}, {t['streams_total']} streams, {t['tls_version']} "
                    f"{t['cipher']}")
        say("   the certificates (`nodemesh certs`), issued by the controller to each node's pods:")
        for node in nodes:
            for c in self.admin(node, "/certs"):
                say(f"     {node} {c['workload']}: {c['identity']}, renews in {c['renew_in_seconds']:.0f}s")

        batch, target = "legacy/batch", pods["shop/catalog-a"]["ip"]
        batch_node, target_node = pods[batch]["node"], pods["shop/catalog-a"]["node"]
        say(f"\n2. {batch} (namespace legacy, not meshed, on {batch_node}) -> "
            f"shop/catalog-a's pod IP {target}:8080, 5 connections")
        before = after
        tally = self.client(batch, f"{target}:8080", 5)
        after = {n: self.connections(n) for n in nodes}
        steered = sum(n for d, _, n in _new_connections(before[batch_node], after[batch_node]) if d == "outbound")
        plaintext = sum(n for d, dest, n in _new_connections(before[target_node], after[target_node])
                        if d == "inbound" and dest == "shop/catalog-a")
        say(f"   the client saw: {tally['servers']}; failed: {tally['failed']}")
        say(f"   the agent on {batch_node} steered {steered} of them: pods outside the mesh are not steered.")
        say(f"   the agent on {target_node} took {plaintext} as plaintext inbound (eBPF sk_lookup into 15006): "
            f"namespace shop is PERMISSIVE, so they were let through and marked as not mutual TLS.")
        self.show_denied(pods, nodes, vip)
        self.show_canary(st)

    def show_denied(self, pods: dict[str, Any], nodes: list[str], vip: str) -> None:
        """A client whose service account a policy denies: refused by the destinations' agents."""
        say = click.echo
        before = {n: self.connections(n) for n in nodes}
        say(f"\n3. shop/reports (service account reports, on {pods['shop/reports']['node']}) -> "
            f"Service shop/catalog {vip}:80, 6 connections; AuthorizationPolicy "
            f"shop/{DENY_POLICY} denies its principal")
        tally = self.client("shop/reports", f"{vip}:80", 6)
        say(f"   the client saw: answered {sum(tally['servers'].values())}, failed {tally['failed']}")
        after = {n: self.connections(n) for n in nodes}
        for node in nodes:
            denied = _denied(before[node], after[node])
            if denied:
                say(f"   the agent on {node} denied {denied}: "
                    + ("the same-node path, before connecting to the app" if node == pods["shop/reports"]["node"]
                       else "answered the HBONE CONNECT with 401, the client's connection was reset"))
        explained = subprocess.run([self.nodemesh, "authz", "check", "--sim", self.names.sim, "--from",
                                    "shop/reports", "--to", "shop/catalog-b:8080"],
                                   capture_output=True, text=True, timeout=60)
        say("   `nodemesh authz check --from shop/reports --to shop/catalog-b:8080` explains it:")
        for line in explained.stdout.splitlines():
            say(f"     {line}")

    def show_canary(self, st: dict[str, Any]) -> None:
        """A TCPRoute splitting a Service 90/10 between two versions."""
        say = click.echo
        vip = st["services"]["shop/reviews"]["vip"]
        say(f"\n4. canary: shop/client -> Service shop/reviews {vip}:80, {CANARY_CONNECTIONS} "
            "connections; TCPRoute shop/reviews-canary sends 90% to reviews-v1, 10% to reviews-v2")
        tally = self.client("shop/client", f"{vip}:80", CANARY_CONNECTIONS)
        say("   the client saw: " + ", ".join(f"{name} answered {n}" for name, n in sorted(tally["servers"].items()))
            + f"; failed: {tally['failed']}")

    def show_metrics(self, port: int) -> None:
        from nodemesh.tools.sim.cluster import add_prometheus
        from nodemesh.tools.sim.prometheus import query, scraped

        say = click.echo
        state = add_prometheus(self.names, port)
        url = state.prometheus["url"]
        say(f"\n5. Prometheus at {url}, in the controller's namespace, scraping every agent and the "
            "controller every 2 s")
        up = scraped(url, len(state.nodes) + 1)
        say("   scraped: " + ", ".join(f"{target} {'up' if value == '1' else 'down'}"
                                       for target, value in sorted(up.items())))
        expr = "sum by (destination_service, reporter) (istio_tcp_connections_opened_total)"
        say(f"   {expr}:")
        rows = query(url, expr)
        for row in sorted(rows, key=lambda r: sorted(r["metric"].items())):
            say(f"     {row['metric'].get('destination_service', '-')}: {float(row['value'][1]):.0f} "
                f"connections, counted by the {row['metric'].get('reporter', '?')}'s agent")
        if not rows:
            say("     nothing yet: the agents export no connection metrics (see the targets above)")

    def admin(self, node: str, path: str) -> Any:
        from nodemesh.tools.admin_client import fetch

        return fetch(self.names.netns_path(self.names.node_netns(node)), path)


def _denied(before: dict[str, Any], after: dict[str, Any]) -> int:
    """Connections an agent refused by policy between two /connections snapshots."""
    def count(table: dict[str, Any]) -> int:
        return sum(t["count"] for t in table["totals"] if t["outcome"] == "denied")
    return count(after) - count(before)


def _new_connections(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(direction, destination, count) established between two /connections snapshots."""
    old = {(e["direction"], e["destination"]): e["count"] for e in before["by_destination"]}
    out = []
    for e in after["by_destination"]:
        n = e["count"] - old.get((e["direction"], e["destination"]), 0)
        if n:
            out.append((e["direction"], e["destination"], n))
    return out


@click.command()
@click.option("--kube", is_flag=True,
              help="The Kubernetes path instead: a real control plane drives the simulated nodes "
                   "and the mesh is installed with `kubectl apply -k daemonset/` (needs "
                   "`scripts/setup.sh --kube`; no Prometheus step).")
@click.option("--keep", is_flag=True, help="Leave the cluster up afterwards.")
@click.option("--name", "sim", default="demo", show_default=True, help="Name of the simulated cluster.")
@click.option("--prometheus/--no-prometheus", "with_prometheus", default=True, show_default=True,
              help="End by starting the sim's Prometheus and showing the metrics (when installed).")
@prometheus_port_option
def demo(kube: bool, keep: bool, sim: str, with_prometheus: bool, prometheus_port: int) -> None:
    """Bring up the example cluster, send traffic through the mesh, show what happened."""
    if kube:
        from nodemesh.tools.kubedemo import KubeDemo

        KubeDemo(sim).run(keep)
        return
    Demo(sim).run(keep, prometheus_port if with_prometheus else None)
