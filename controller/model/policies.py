"""The warnings AuthorizationPolicies deserve.

A rule with L7 fields (methods, paths, request principals, ``when``...) is valid Istio, so it is
accepted, but an L4 proxy cannot check those fields, and the agent fails closed on them (an
ALLOW rule matches nothing, a DENY rule denies regardless of them). The policy then does
something other than what it says: the controller warns, naming the policy, the rule and the
fields, each time it loads it.
"""

from __future__ import annotations

from typing import Iterable

from nodemesh.authz.policy import ALLOW, AuthorizationPolicy

_EFFECT = {
    True: "this ALLOW rule matches no connection",
    False: "this DENY rule denies every connection its other fields match, whatever the request",
}


def l7_warnings(policies: Iterable[AuthorizationPolicy]) -> tuple[str, ...]:
    """One message per rule with L7 fields."""
    return tuple(
        f"AuthorizationPolicy {policy.key}: spec.rules[{i}]: {', '.join(rule.l7)}: cannot be "
        f"enforced at L4, so {_EFFECT[policy.action == ALLOW]} (the agent fails closed)"
        for policy in policies
        for i, rule in enumerate(policy.rules)
        if rule.l7
    )
