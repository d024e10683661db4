"""Authorization policies as plain values: Istio's ``security.istio.io/v1`` AuthorizationPolicy,
the part of it that an L4 proxy can enforce.

The controller parses and validates the YAML (``controller/kube``), the model carries these
values to the agents, and ``nodemesh.authz.evaluate`` decides with them, on the agent for every
connection and in ``nodemesh authz check`` to explain a decision. Fields an L4 proxy cannot check
(methods, paths, hosts, request principals, ``when`` conditions) are not dropped silently: each
rule keeps their names in ``l7`` so that the evaluator fails closed on them and the controller
can warn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

# Policies here without a selector apply to the whole mesh (Istio's root namespace, istio-system).
ROOT_NAMESPACE = "nodemesh-system"

ALLOW = "ALLOW"
DENY = "DENY"
ACTIONS = (ALLOW, DENY)


@dataclass(frozen=True)
class Source:
    """One ``rules[].from[].source``: every field given must match (AND), any value of a field may
    (OR); a ``not_`` field matches when none of its values does. Empty: any source."""

    principals: tuple[str, ...] = ()  # "cluster.local/ns/NS/sa/SA", "*" prefix/suffix wildcards
    not_principals: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()  # with the same wildcards
    not_namespaces: tuple[str, ...] = ()
    ip_blocks: tuple[str, ...] = ()  # CIDRs (a bare address is a /32), normalized
    not_ip_blocks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    """One ``rules[].to[].operation``: destination ports of the pod (not of the service)."""

    ports: tuple[int, ...] = ()
    not_ports: tuple[int, ...] = ()


@dataclass(frozen=True)
class Rule:
    """Matches when one of ``sources`` and one of ``operations`` match (none given: any)."""

    sources: tuple[Source, ...] = ()
    operations: tuple[Operation, ...] = ()
    # Fields of the rule an L4 proxy cannot check, as written (``to[0].operation.methods``): an
    # ALLOW rule with any matches nothing, a DENY rule with any ignores them (denies more).
    l7: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthorizationPolicy:
    name: str
    namespace: str
    action: str  # ALLOW | DENY
    # metadata-style labels a workload must carry; empty: every workload of the namespace (of
    # the mesh in ROOT_NAMESPACE)
    selector: Mapping[str, str] = field(default_factory=dict)
    # None (``rules`` absent or empty): an ALLOW policy allows nothing, a DENY one denies nothing
    rules: tuple[Rule, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def scope(self) -> str:
        """Istio's scope names: where the policy applies, for ``nodemesh policies``."""
        if self.selector:
            return "WORKLOAD_SELECTOR"
        return "GLOBAL" if self.namespace == ROOT_NAMESPACE else "NAMESPACE"
