"""``nodemesh tunnels`` and ``nodemesh certs``: what each node's agent holds, from its admin API.

The agents of a simulated cluster are found through the sim's state (``--sim``); each is asked
over its localhost-only admin API inside its node's namespace. A table for people, ``-o json``
for scripts.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import click

from nodemesh.tools.sim.names import DEFAULT_SIM


def _per_node(sim: str, node: str | None, path: str) -> dict[str, Any]:
    from nodemesh.tools.admin_client import AdminError, fetch
    from nodemesh.tools.agents import node_namespaces

    out: dict[str, Any] = {}
    for n, netns_path in node_namespaces(sim, node).items():
        try:
            out[n] = fetch(netns_path, path)
        except AdminError as e:
            out[n] = {"error": str(e)}
    return out


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def _failed(body: Any) -> bool:
    return isinstance(body, dict) and "error" in body


def _show(per_node: dict[str, Any], output: str, headers: list[str],
          row: Callable[[dict[str, Any]], list[Any]]) -> None:
    """Every node's answer, or why there is none; then exit 1 if any node is missing, so that a
    script does not take a partial picture for the whole."""
    from nodemesh.tools.admin_client import AdminError

    if output == "json":
        click.echo(json.dumps(per_node, indent=2, sort_keys=True))
    else:
        for node, body in per_node.items():
            click.echo(f"node {node}:")
            if _failed(body):
                click.echo(f"  {body['error']}")
                continue
            click.echo("  " + _table(headers, [row(item) for item in body]).replace("\n", "\n  ") if body
                       else "  (none)")
    failed = [node for node, body in per_node.items() if _failed(body)]
    if failed:
        raise AdminError(f"no answer from the agent on {', '.join(failed)} (the reason is above)")


def _options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")(command)
    command = click.option("--node", default=None, help="Only this node.")(command)
    return click.option("--sim", default=DEFAULT_SIM, show_default=True, envvar="NODEMESH_SIM",
                        help="Which simulated cluster (env NODEMESH_SIM).")(command)


@click.command()
@_options
def tunnels(sim: str, node: str | None, output: str) -> None:
    """Live HBONE tunnels per node: peer, identities, streams, bytes, age, TLS."""
    per_node = {n: body if _failed(body) else body["tunnels"]
                for n, body in _per_node(sim, node, "/tunnels").items()}
    _show(per_node, output,
          ["DIR", "PEER", "PEER NODE", "SOURCE", "DESTINATION", "STREAMS", "TOTAL", "SENT", "RECEIVED",
           "AGE", "TLS"],
          lambda t: [t["direction"], t["peer"], t["peer_node"] or "-", t["source_identity"],
                     t["destination_identity"], t["streams_open"],
                     t["streams_total"], t["bytes_sent"], t["bytes_received"], f"{t['age_seconds']:.0f}s",
                     f"{t['tls_version']} {t['cipher']}"])


@click.command()
@_options
def certs(sim: str, node: str | None, output: str) -> None:
    """Workload certificates per node: identity, serial, validity, time to renewal."""
    _show(_per_node(sim, node, "/certs"), output,
          ["WORKLOAD", "IDENTITY", "SERIAL", "NOT BEFORE", "NOT AFTER", "RENEW IN", "VALID"],
          lambda c: [c["workload"], c["identity"], c["serial"][:16], c["not_before"], c["not_after"],
                     f"{c['renew_in_seconds']}s" if c["renew_in_seconds"] is not None else "-",
                     "yes" if c["valid"] else f"NO: {c['last_error']}"])
