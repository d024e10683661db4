"""What the admin API says about authorization: the policies this node enforces, and why a
connection would be allowed or denied.

Both read the authorizer's current ``PolicySet``, the one deciding connections now, so what
``nodemesh policies`` and ``nodemesh authz check`` show is what the agent enforces, explained by
the same evaluator (``nodemesh.authz.evaluate``).
"""

from __future__ import annotations

from http import HTTPStatus

from nodemesh.agent.state.store import View
from nodemesh.authz.check import Check
from nodemesh.authz.evaluate import CompiledPolicy, PolicySet
from nodemesh.authz.policy import ALLOW
from nodemesh.identity import Identity
from nodemesh.model import Workload

Response = tuple[int, object]


def _policy(compiled: CompiledPolicy) -> dict[str, object]:
    p = compiled.policy
    l7 = [f"rules[{i}].{name}" for i, rule in enumerate(p.rules) for name in rule.l7]
    effect = ""
    if l7:
        effect = "rules with them match nothing" if p.action == ALLOW else "rules with them are evaluated without them"
    return {"policy": p.key, "action": p.action, "scope": p.scope, "rules": len(p.rules), "l7_ignored": l7,
            "l7_effect": effect}


def enforced(node: str, view: View | None, policies: PolicySet) -> dict[str, object]:
    """Per meshed workload of this node, the policies that apply to it (DENY ones first)."""
    workloads = sorted(view.local_meshed(node), key=lambda w: w.ref) if view is not None else []
    return {"node": node, "version": view.version if view is not None else 0, "workloads": [
        {"workload": w.ref, "workload_name": w.workload_name,
         "policies": [_policy(p) for p in (*applying.deny, *applying.allow)]}
        for w in workloads for applying in (policies.for_workload(w),)]}


def _local(node: str, view: View | None, destination: str) -> Workload | None:
    """The meshed workload of this node that ``destination`` names: its pod (``ns/pod``) or its
    workload name (``ns/deployment``: the first of its pods)."""
    if view is None:
        return None
    candidates = sorted(view.local_meshed(node), key=lambda w: w.ref)
    return next((w for w in candidates if w.ref == destination), None) or next(
        (w for w in candidates if w.workload_name and f"{w.namespace}/{w.workload_name}" == destination), None)


def check(node: str, view: View | None, policies: PolicySet, params: dict[str, str]) -> Response:
    """The decision for the connection ``params`` describe (``Check.query``), explained."""
    try:
        asked = Check.from_query(params)
    except ValueError as e:
        return HTTPStatus.BAD_REQUEST, {"error": str(e)}
    workload = _local(node, view, asked.destination)
    if workload is None:
        return HTTPStatus.NOT_FOUND, {"error": f"no meshed workload {asked.destination} on node {node}"}
    identity = asked.identity(Identity.parse(workload.identity).trust_domain)  # the mesh's own
    explained = policies.explain(identity, asked.source_ip, workload, asked.port)
    return HTTPStatus.OK, {"node": node, "version": view.version if view is not None else 0,
                           "from": asked.source, "identity": identity, "from_ip": asked.source_ip,
                           "to": workload.ref, "port": asked.port, **explained.as_dict()}
