"""``nodemesh tunnels``, ``certs``, ``policies`` and ``authz check``: what each node's agent
holds and decides, from its admin API.

The agents of a simulated cluster are found through the sim's state (``--sim``); each is asked
over its localhost-only admin API inside its node's namespace. A table for people, ``-o json``
for scripts. ``authz check`` asks the one agent that holds the destination workload, since the
destination's agent is the one that decides (docs/policy.md).
"""

from __future__ import annotations

import json
from typing import Any, Callable

import click

from nodemesh.authz.check import Check, parse_destination, parse_ip, parse_source
from nodemesh.errors import UserError
from nodemesh.flags import parsed_by
from nodemesh.tools.sim.names import DEFAULT_SIM

# `nodemesh authz check`'s exit when the connection would be denied (1 is an error, 2 a wrong flag).
DENIED_EXIT = 3


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


def policy_rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (local workload, policy that applies to it); a workload without any: one row
    saying so (everything not denied is allowed there)."""
    rows = []
    for w in body["workloads"]:
        for p in w["policies"] or [{"policy": "-", "action": "-", "scope": "-", "rules": "-", "l7_ignored": []}]:
            rows.append({"workload": w["workload"], **p})
    return rows


@click.command()
@_options
def policies(sim: str, node: str | None, output: str) -> None:
    """Authorization policies each node enforces: per local workload, action, scope, rules, L7 fields ignored."""
    per_node = {n: body if _failed(body) else policy_rows(body)
                for n, body in _per_node(sim, node, "/policies").items()}
    _show(per_node, output, ["WORKLOAD", "POLICY", "ACTION", "SCOPE", "RULES", "L7 IGNORED"],
          lambda r: [r["workload"], r["policy"], r["action"], r["scope"], r["rules"],
                     ", ".join(r["l7_ignored"]) + f" ({r['l7_effect']})" if r["l7_ignored"] else "-"])


class AuthzError(UserError):
    pass


def holder(per_node: dict[str, Any], destination: str) -> str:
    """The node whose agent holds ``destination`` (a pod ``ns/name``, or a workload ``ns/app``)."""
    known = []
    for node, body in per_node.items():
        if _failed(body):
            continue
        for w in body["workloads"]:
            namespace = w["workload"].split("/")[0]
            if destination in (w["workload"], f"{namespace}/{w['workload_name']}"):
                return node
            known.append(w["workload"])
    unasked = [node for node, body in per_node.items() if _failed(body)]
    also = f"; no answer from the agent on {', '.join(unasked)}" if unasked else ""
    raise AuthzError(f"no meshed workload {destination} on any node (meshed workloads: "
                     f"{', '.join(sorted(known)) or 'none'}){also}")


def explanation(body: dict[str, Any]) -> str:
    """The decision, then each applying policy's verdict rule by rule."""
    d = body["decision"]
    source = f"{body['from']} ({body['identity']})" if body["from"] else "plaintext (no identity)"
    if body["from_ip"]:
        source += f" from {body['from_ip']}"
    lines = [f"{source} -> {body['to']}:{body['port']} on {body['node']}: {'ALLOWED' if d['allowed'] else 'DENIED'}",
             f"  {d['reason']}"]
    if not body["policies"]:
        return "\n".join(lines)
    lines.append("policies that apply:")
    for p in body["policies"]:
        lines.append(f"  {p['action']:<5} {p['policy']}  ({p['scope']}): {p['summary']}")
        lines.extend(f"      {rule}" for rule in p["rules"])
    return "\n".join(lines)


@click.group()
def authz() -> None:
    """L4 authorization: explain what the agents decide."""


@authz.command()
@click.option("--from", "source", default="", metavar="NS/SA", callback=parsed_by(lambda v: v and parse_source(v)),
              help="The source's namespace and service account; without it, plaintext (no identity).")
@click.option("--to", "destination", required=True, metavar="NS/WORKLOAD:PORT", callback=parsed_by(parse_destination),
              help="The destination pod (or its workload name) and the pod's port.")
@click.option("--from-ip", "source_ip", default="", metavar="IP", callback=parsed_by(parse_ip),
              help="The source's address, for ipBlocks and notIpBlocks (default: none).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@click.option("--sim", default=DEFAULT_SIM, show_default=True, envvar="NODEMESH_SIM",
              help="Which simulated cluster (env NODEMESH_SIM).")
def check(source: str, destination: tuple[str, int], source_ip: str, output: str, sim: str) -> None:
    """Would this connection be allowed? Asks the destination's agent, which explains its decision.

    Exits 0 when allowed, 3 when denied, 1 on errors.
    """
    from nodemesh.tools.admin_client import AdminError

    asked = Check(source, destination[0], destination[1], source_ip)
    node = holder(_per_node(sim, None, "/policies"), asked.destination)
    [body] = _per_node(sim, node, f"/authz/check?{asked.query()}").values()
    if _failed(body):
        raise AdminError(f"no answer from the agent on {node}: {body['error']}")
    click.echo(json.dumps(body, indent=2, sort_keys=True) if output == "json" else explanation(body))
    if not body["decision"]["allowed"]:
        raise SystemExit(DENIED_EXIT)
