"""Deciding a connection with the authorization policies, and explaining the decision.

Sans-IO and shared: the destination's agent decides every connection into a local pod with it,
and its admin API explains a decision with the same code, so that ``nodemesh authz check`` can
never disagree with what the agent enforces.

Istio's semantics, at L4 (``docs/policy.md``): DENY policies first, any matching rule denies;
then, if any ALLOW policy applies to the workload, only a matching ALLOW rule allows; with none,
everything not denied is allowed. An ALLOW rule with L7 fields matches nothing, a DENY rule with
L7 fields is evaluated without them (both fail closed). A policy without rules: ALLOW allows
nothing, DENY denies nothing; a rule without ``from`` and ``to`` matches every connection.

Why it is fast: a ``PolicySet`` is made once per view of the mesh. It compiles each policy into
matcher objects (CIDRs parsed into integers, wildcards split into exact names, prefixes and
suffixes) and reuses the compiled form of a policy whose value did not change since the previous
set; it works out the policies that apply to a workload once, on the workload's first
connection, as one flat tuple of rule tests, DENY rules first. A connection into a workload no
policy applies to costs one dict lookup; every ``Decision`` is made when the set is compiled,
and a source's principal and address are parsed once (cached), so deciding allocates nothing
but the one ``Attempt`` it reads. Measured: 0.25 us per connection without policies, 1.7 us
with six (docs/policy.md).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Mapping

from nodemesh.authz.policy import ALLOW, DENY, ROOT_NAMESPACE, AuthorizationPolicy, Operation, Rule, Source
from nodemesh.model import Workload

SPIFFE_SCHEME = "spiffe://"
PLAINTEXT = "(none: plaintext)"  # how an explanation shows the missing identity


def applies(policy: AuthorizationPolicy, workload: Workload) -> bool:
    """Whether ``policy`` governs connections into ``workload``: its namespace (or the mesh's
    root namespace), and a selector whose labels the workload all carries."""
    if policy.namespace != workload.namespace and policy.namespace != ROOT_NAMESPACE:
        return False
    labels = workload.labels
    return all(labels.get(k) == v for k, v in policy.selector.items())


@lru_cache(maxsize=4096)  # identities are the mesh's workloads': bounded
def principal_of(identity: str) -> tuple[str, str]:
    """(principal, namespace) of a SPIFFE id, as policies name them; ("", "") for none.

    The principal is the id without its scheme (``cluster.local/ns/NS/sa/SA``), the namespace is
    the identity's, never the pod's: it is what the certificate proves.
    """
    if not identity:
        return "", ""
    principal = identity.removeprefix(SPIFFE_SCHEME)
    parts = principal.split("/")
    namespace = parts[2] if len(parts) >= 5 and parts[1] == "ns" else ""
    return principal, namespace


class Names:
    """Istio's string match: exact, ``*`` (any value present), ``prefix*`` and ``*suffix``.

    An absent value (plaintext has no principal, no namespace) matches no pattern, ``*`` neither.
    """

    __slots__ = ("exact", "prefixes", "suffixes", "any")

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.any = "*" in patterns
        self.exact = frozenset(p for p in patterns if "*" not in p)
        self.prefixes = tuple(p[:-1] for p in patterns if p.endswith("*") and p != "*")
        self.suffixes = tuple(p[1:] for p in patterns if p.startswith("*") and p != "*")

    def __call__(self, value: str) -> bool:
        if not value:
            return False
        return (self.any or value in self.exact or value.startswith(self.prefixes)
                or value.endswith(self.suffixes))


# An address as networks compare it: (IP version, integer value).
Address = tuple[int, int]


@lru_cache(maxsize=4096)  # sources are pods and a bounded set of outside clients: parsed once each
def address_of(ip: str) -> Address | None:
    """``ip`` as networks compare it; None for no address or not one."""
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return None
    return a.version, int(a)


class Networks:
    """CIDRs, parsed once into (version, network, mask) integers; an absent address matches none."""

    __slots__ = ("networks",)

    def __init__(self, cidrs: tuple[str, ...]) -> None:
        nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
        self.networks = tuple((n.version, int(n.network_address), int(n.netmask)) for n in nets)

    def __call__(self, address: Address | None) -> bool:
        if address is None:
            return False
        version, value = address
        for v, network, mask in self.networks:
            if v == version and value & mask == network:
                return True
        return False


# What conditions read, by index into ``Attempt.values``
PRINCIPAL, NAMESPACE, ADDRESS, PORT = range(4)


class Attempt:
    """The connection being decided, as conditions read it: ``values`` by index."""

    __slots__ = ("ip", "values")

    def __init__(self, identity: str, ip: str, port: int) -> None:
        self.ip = ip  # as given, for explanations
        principal, namespace = principal_of(identity)
        self.values = (principal, namespace, address_of(ip), port)


class Condition:
    """One field of a ``source`` or an ``operation``: one of its values matches what the attempt
    has, or for a ``not`` field, none does. ``test`` is the same as a plain tuple, which is what
    deciding loops over (no method call per condition)."""

    __slots__ = ("field", "values", "reads", "test")

    def __init__(self, field: str, values: tuple[str, ...] | tuple[int, ...], reads: int,
                 matches: Callable[[object], bool]) -> None:
        self.field = field  # as users write it: "notPrincipals"
        self.values = values
        self.reads = reads  # index into Attempt.values
        self.test = (matches, reads, field.startswith("not"))  # holds when matches(value) is not negated

    def holds(self, attempt: Attempt) -> bool:
        matches, reads, negated = self.test
        return matches(attempt.values[reads]) is not negated

    def why_not(self, attempt: Attempt) -> str:
        """Why it did not hold, for an explanation."""
        shown = (attempt.ip or "(no address)") if self.reads == ADDRESS else (attempt.values[self.reads] or PLAINTEXT)
        verb = "match" if self.test[2] else "do not match"
        return f"{self.field} {list(self.values)} {verb} {shown}"


def _conditions(fields: list[tuple[str, tuple, int, Callable[[tuple], Callable[[object], bool]]]]
                ) -> tuple[Condition, ...]:
    """The conditions of the fields given (an empty field is no condition)."""
    return tuple(Condition(name, values, reads, make(values)) for name, values, reads, make in fields if values)


def _ports(ports: tuple[int, ...]) -> Callable[[object], bool]:
    return frozenset(ports).__contains__


def _source(s: Source) -> tuple[Condition, ...]:
    return _conditions([
        ("principals", s.principals, PRINCIPAL, Names), ("notPrincipals", s.not_principals, PRINCIPAL, Names),
        ("namespaces", s.namespaces, NAMESPACE, Names), ("notNamespaces", s.not_namespaces, NAMESPACE, Names),
        ("ipBlocks", s.ip_blocks, ADDRESS, Networks), ("notIpBlocks", s.not_ip_blocks, ADDRESS, Networks),
    ])


def _operation(o: Operation) -> tuple[Condition, ...]:
    return _conditions([("ports", o.ports, PORT, _ports), ("notPorts", o.not_ports, PORT, _ports)])


Clauses = tuple[tuple[tuple[Callable[[object], bool], int, bool], ...], ...]


def _tests(clauses: tuple[tuple[Condition, ...], ...]) -> Clauses:
    return tuple(tuple(c.test for c in clause) for clause in clauses)


def _any_clause(clauses: Clauses, values: tuple[object, ...]) -> bool:
    """Clauses are OR'ed, their conditions AND'ed; no clause at all: anything."""
    if not clauses:
        return True
    for clause in clauses:
        for matches, reads, negated in clause:
            if matches(values[reads]) is negated:
                break
        else:
            return True
    return False


def _first_failing(clause: tuple[Condition, ...], attempt: Attempt) -> Condition:
    return next(c for c in clause if not c.holds(attempt))


@dataclass(frozen=True, eq=False)  # compared by identity: counting decisions hashes them per connection
class Decision:
    """What was decided and why; made once per rule (and per workload's default) at compile time."""

    allowed: bool
    policy: str  # the deciding policy's key; "" for the default; on "no ALLOW matched", the ALLOW
    #              policies that apply, comma-separated
    action: str  # ALLOW | DENY of that policy; "" for the default
    rule: int  # index of the matching rule; -1 when no rule decided
    reason: str  # one line, for logs and refusals

    def as_dict(self) -> dict[str, object]:
        return {"allowed": self.allowed, "policy": self.policy, "action": self.action, "rule": self.rule,
                "reason": self.reason}


ALLOWED_BY_DEFAULT = Decision(True, "", "", -1, "allowed: no authorization policy applies")
ALLOWED_NO_DENY = Decision(True, "", "", -1, "allowed: no DENY rule matched and no ALLOW policy applies")


class CompiledRule:
    __slots__ = ("index", "sources", "operations", "source_tests", "operation_tests", "l7", "never", "decision")

    def __init__(self, index: int, rule: Rule, policy: AuthorizationPolicy) -> None:
        self.index = index
        self.sources = tuple(_source(s) for s in rule.sources)  # for explanations
        self.operations = tuple(_operation(o) for o in rule.operations)
        self.source_tests, self.operation_tests = _tests(self.sources), _tests(self.operations)  # for deciding
        self.l7 = rule.l7
        self.never = bool(rule.l7) and policy.action == ALLOW  # fail closed
        verb = "allowed" if policy.action == ALLOW else "denied"
        self.decision = Decision(policy.action == ALLOW, policy.key, policy.action, index,
                                 f"{verb} by {policy.action} policy {policy.key} rule {index}")

    def matches(self, attempt: Attempt) -> bool:
        values = attempt.values
        return (not self.never and _any_clause(self.source_tests, values)
                and _any_clause(self.operation_tests, values))

    def why(self, attempt: Attempt) -> str:
        """Why the rule matched or not, in one line."""
        if self.never:
            return (f"has L7 fields ({', '.join(self.l7)}): an ALLOW rule with them matches nothing at L4")
        parts = []
        for what, clauses, tests in (("from", self.sources, self.source_tests),
                                     ("to", self.operations, self.operation_tests)):
            if _any_clause(tests, attempt.values):
                continue
            failing = [f"{what}[{i}]: {_first_failing(c, attempt).why_not(attempt)}" for i, c in enumerate(clauses)]
            parts.append("; ".join(failing))
        if parts:
            return "no match: " + "; ".join(parts)
        said = "matches" if self.sources or self.operations else "matches every connection (no from, no to)"
        return said + (f" (L7 fields ignored at L4: {', '.join(self.l7)})" if self.l7 else "")


class CompiledPolicy:
    __slots__ = ("policy", "key", "action", "rules")

    def __init__(self, policy: AuthorizationPolicy) -> None:
        self.policy = policy
        self.key = policy.key
        self.action = policy.action
        self.rules = tuple(CompiledRule(i, r, policy) for i, r in enumerate(policy.rules))


class WorkloadPolicies:
    """The policies that apply to one workload, DENY and ALLOW apart, and what happens when no
    rule matches."""

    __slots__ = ("deny", "allow", "rules", "otherwise")

    def __init__(self, applying: list[CompiledPolicy]) -> None:
        self.deny = tuple(p for p in applying if p.action == DENY)
        self.allow = tuple(p for p in applying if p.action == ALLOW)
        # Every rule that can match, DENY ones first, flat: the first match decides.
        self.rules = tuple((r.source_tests, r.operation_tests, r.decision)
                           for p in (*self.deny, *self.allow) for r in p.rules if not r.never)
        if self.allow:
            keys = ",".join(p.key for p in self.allow)
            self.otherwise = Decision(False, keys, ALLOW, -1,
                                      f"denied: no rule of the ALLOW policies that apply ({keys}) matched")
        else:
            self.otherwise = ALLOWED_NO_DENY if self.deny else ALLOWED_BY_DEFAULT

    def decide(self, attempt: Attempt) -> Decision:
        values = attempt.values
        for sources, operations, decision in self.rules:
            if _any_clause(sources, values) and _any_clause(operations, values):
                return decision
        return self.otherwise


NO_POLICIES = WorkloadPolicies([])


@dataclass(frozen=True)
class PolicyTrace:
    """One applying policy in an explanation: each rule's verdict, and which rule matched."""

    policy: str
    action: str
    scope: str
    matched: int  # the first matching rule, -1 if none
    rules: tuple[str, ...]  # per rule, why it matched or not
    summary: str

    def as_dict(self) -> dict[str, object]:
        return {"policy": self.policy, "action": self.action, "scope": self.scope, "matched_rule": self.matched,
                "rules": list(self.rules), "summary": self.summary}


@dataclass(frozen=True)
class Explanation:
    decision: Decision
    policies: tuple[PolicyTrace, ...]  # every policy that applies, DENY ones first

    def as_dict(self) -> dict[str, object]:
        return {"decision": self.decision.as_dict(), "policies": [p.as_dict() for p in self.policies]}


def _trace(policy: CompiledPolicy, attempt: Attempt) -> PolicyTrace:
    matched = next((r.index for r in policy.rules if r.matches(attempt)), -1)
    if not policy.rules:
        summary = "no rules: " + ("allows nothing" if policy.action == ALLOW else "denies nothing")
    else:
        summary = f"rule {matched} matched" if matched >= 0 else "no rule matched"
    return PolicyTrace(policy.key, policy.action, policy.policy.scope, matched,
                       tuple(f"rule {r.index}: {r.why(attempt)}" for r in policy.rules), summary)


class PolicySet:
    """The mesh's policies, compiled, for one view; deciding and explaining with them."""

    def __init__(self, policies: Mapping[str, AuthorizationPolicy], previous: "PolicySet | None" = None) -> None:
        """``previous``: the set of the view before, whose compiled policies are reused when
        their value did not change."""
        reused = previous.compiled if previous is not None else {}
        self.compiled: dict[str, CompiledPolicy] = {}
        for key in sorted(policies):
            policy = policies[key]
            old = reused.get(key)
            self.compiled[key] = old if old is not None and old.policy == policy else CompiledPolicy(policy)
        # Whether this set decides differently from ``previous`` could (a policy added, removed
        # or changed): what the agent re-checks open connections on.
        self.changed = previous is None or list(reused) != list(self.compiled) or any(
            self.compiled[k] is not reused[k] for k in self.compiled)
        self._by_workload: dict[str, WorkloadPolicies] = {}

    def for_workload(self, workload: Workload) -> WorkloadPolicies:
        """Worked out on the workload's first connection, kept for the set's life (one view:
        its labels do not change within it)."""
        found = self._by_workload.get(workload.uid)
        if found is None:
            applying = [p for p in self.compiled.values() if applies(p.policy, workload)]
            found = self._by_workload[workload.uid] = WorkloadPolicies(applying) if applying else NO_POLICIES
        return found

    def decide(self, identity: str, ip: str, workload: Workload, port: int) -> Decision:
        """May ``identity`` ("" for plaintext) from ``ip`` connect to ``port`` of ``workload``?"""
        policies = self.for_workload(workload)
        if policies is NO_POLICIES:
            return ALLOWED_BY_DEFAULT
        return policies.decide(Attempt(identity, ip, port))

    def explain(self, identity: str, ip: str, workload: Workload, port: int) -> Explanation:
        """The decision, with every applying policy's verdict rule by rule."""
        policies = self.for_workload(workload)
        attempt = Attempt(identity, ip, port)
        return Explanation(policies.decide(attempt),
                           tuple(_trace(p, attempt) for p in (*policies.deny, *policies.allow)))
