"""``nodemesh demo``: the bundled example cluster, traffic through the mesh, and what it shows.

Brings up tools/sim/examples/demo.yaml (two nodes; the meshed namespace ``shop`` with a client
and the Service ``catalog`` backed by one pod per node; the plain namespace ``legacy``), sends
connections from the client to the Service, and reports them from three points of view: the
client's (which endpoint answered), the source agent's and the destination agents' (what they
relayed). Then a pod outside the mesh connects to a meshed pod directly, and the agents show
that they did not touch it. Tears everything down unless ``--keep``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import click

CONNECTIONS = 20
PAYLOAD = 1024


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
            raise click.ClickException(f"the client in {pod} failed: {result.stderr.strip()}")
        return json.loads(result.stdout)

    def connections(self, node: str) -> dict[str, Any]:
        from nodemesh.tools.admin_client import fetch

        return fetch(self.names.netns_path(self.names.node_netns(node)), "/connections")

    def run(self, keep: bool) -> None:
        from nodemesh.tools.sim.cleanup import down
        from nodemesh.tools.sim.cluster import status, up

        say = click.echo
        say(f"nodemesh demo: bringing up {bundled_example()}")
        up(bundled_example(), self.names, lambda line: say(f"  {line}"))
        try:
            st = status(self.names)
            self.show(st)
        finally:
            if keep:
                vip = st["services"]["shop/catalog"]["vip"]
                say(f"\nThe cluster stays up (--keep). Try:\n"
                    f"  nodemesh sim status --name {self.names.sim}\n"
                    f"  nodemesh sim exec --name {self.names.sim} shop/client -- "
                    f"python3 -m nodemesh.tools.apps.client {vip}:80 --count 10\n"
                    f"  nodemesh sim down --name {self.names.sim}")
            else:
                say("\nTearing down...")
                down(self.names)
                say("done: nothing left behind.")

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
                    where = "on the same node" if dest_node == node else f"through the agent on {dest_node}"
                    say(f"     agent on {node}: {n} outbound from shop/client to {dest} "
                        f"(asked for {vip}:80), {where}")

        batch, target = "legacy/batch", pods["shop/catalog-a"]["ip"]
        say(f"\n2. {batch} (namespace legacy, not meshed, on {pods[batch]['node']}) -> "
            f"shop/catalog-a's pod IP {target}:8080, 5 connections")
        before = after
        tally = self.client(batch, f"{target}:8080", 5)
        after = {n: self.connections(n) for n in nodes}
        seen = sum(n for node in nodes for _, _, n in _new_connections(before[node], after[node]))
        say(f"   the client saw: {tally['servers']}; failed: {tally['failed']}")
        say(f"   the agents saw {seen} of them: pods outside the mesh are not steered.")


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
@click.option("--keep", is_flag=True, help="Leave the cluster up afterwards.")
@click.option("--name", "sim", default="demo", show_default=True, help="Name of the simulated cluster.")
def demo(keep: bool, sim: str) -> None:
    """Bring up the example cluster, send traffic through the mesh, show what happened."""
    from nodemesh.tools.sim.names import SimError

    try:
        Demo(sim).run(keep)
    except SimError as e:
        raise click.ClickException(str(e)) from e
