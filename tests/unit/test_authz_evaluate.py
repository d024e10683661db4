"""The authorization evaluator without sockets: a table of Istio's documented examples
(istio.io: reference/config/security/authorization-policy, tasks/security/authorization/authz-tcp,
docs/ambient/usage/l4-policy), each case a policy set and connections with the expected verdict;
then what applies to a workload, the explanation, and the per-view compilation."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from nodemesh.authz.evaluate import (
    ALLOWED_BY_DEFAULT,
    PLAINTEXT,
    Names,
    PolicySet,
    applies,
    principal_of,
)
from nodemesh.authz.policy import ALLOW, DENY, ROOT_NAMESPACE, AuthorizationPolicy, Operation, Rule, Source
from nodemesh.model import Workload, frozen_labels

WEB = Workload(uid="u-web", name="web", namespace="foo", service_account="web", node="n1", ip="10.10.1.10",
               meshed=True, identity="spiffe://cluster.local/ns/foo/sa/web", labels=frozen_labels({"app": "web"}))
DB = Workload(uid="u-db", name="db", namespace="foo", service_account="db", node="n1", ip="10.10.1.11",
              meshed=True, identity="spiffe://cluster.local/ns/foo/sa/db", labels=frozen_labels({"app": "db"}))
OTHER_NS = Workload(uid="u-bar", name="api", namespace="bar", service_account="api", node="n1",
                    ip="10.10.1.12", meshed=True, identity="spiffe://cluster.local/ns/bar/sa/api")


def spiffe(ns: str, sa: str) -> str:
    return f"spiffe://cluster.local/ns/{ns}/sa/{sa}"


SLEEP = spiffe("default", "sleep")
DEV = spiffe("dev", "tool")
FOO_ADMIN = spiffe("foo", "admin")
PLAIN = ""  # no identity


def policy(name: str, action: str = ALLOW, *rules: Rule, namespace: str = "foo",
           selector: dict[str, str] | None = None) -> AuthorizationPolicy:
    return AuthorizationPolicy(name, namespace, action, frozen_labels(selector), tuple(rules))


def rule(*sources: Source, ops: tuple[Operation, ...] = (), l7: tuple[str, ...] = ()) -> Rule:
    return Rule(tuple(sources), ops, l7)


@dataclass(frozen=True)
class Case:
    """Policies, then connections: (identity, source ip, port, allowed, deciding policy, rule)."""

    name: str
    policies: tuple[AuthorizationPolicy, ...]
    checks: tuple[tuple[str, str, int, bool, str, int], ...]
    workload: Workload = WEB


CASES = [
    Case("no policy: everything is allowed", (), (
        (SLEEP, "10.10.2.1", 80, True, "", -1), (PLAIN, "203.0.113.9", 80, True, "", -1))),
    Case("allow by principal", (policy("allow-sleep", ALLOW, rule(Source(principals=("cluster.local/ns/default/sa/sleep",)))),), (
        (SLEEP, "10.10.2.1", 80, True, "foo/allow-sleep", 0),
        (DEV, "10.10.2.2", 80, False, "foo/allow-sleep", -1),
        (PLAIN, "10.10.2.1", 80, False, "foo/allow-sleep", -1))),
    Case("allow by namespace", (policy("allow-dev", ALLOW, rule(Source(namespaces=("dev",)))),), (
        (DEV, "10.10.2.2", 80, True, "foo/allow-dev", 0), (SLEEP, "10.10.2.1", 80, False, "foo/allow-dev", -1))),
    Case("deny by namespace", (policy("deny-dev", DENY, rule(Source(namespaces=("dev",)))),), (
        (DEV, "10.10.2.2", 80, False, "foo/deny-dev", 0), (SLEEP, "10.10.2.1", 80, True, "", -1),
        (PLAIN, "10.10.2.1", 80, True, "", -1))),
    Case("deny from other namespaces (notNamespaces)", (policy("only-foo", DENY, rule(Source(not_namespaces=("foo",)))),), (
        (FOO_ADMIN, "10.10.1.20", 80, True, "", -1), (DEV, "10.10.2.2", 80, False, "foo/only-foo", 0),
        (PLAIN, "10.10.2.9", 80, False, "foo/only-foo", 0))),  # no identity: a not-field matches it
    Case("deny wins over allow", (policy("allow-all", ALLOW, Rule()),
                                  policy("deny-dev", DENY, rule(Source(namespaces=("dev",))))), (
        (DEV, "10.10.2.2", 80, False, "foo/deny-dev", 0), (SLEEP, "10.10.2.1", 80, True, "foo/allow-all", 0))),
    Case("ports", (policy("tcp-8080", ALLOW, rule(Source(namespaces=("default",)), ops=(Operation(ports=(8080,)),))),), (
        (SLEEP, "10.10.2.1", 8080, True, "foo/tcp-8080", 0), (SLEEP, "10.10.2.1", 9090, False, "foo/tcp-8080", -1),
        (DEV, "10.10.2.2", 8080, False, "foo/tcp-8080", -1))),
    Case("notPorts", (policy("not-admin", DENY, rule(ops=(Operation(not_ports=(80, 443)),))),), (
        (SLEEP, "10.10.2.1", 80, True, "", -1), (SLEEP, "10.10.2.1", 15000, False, "foo/not-admin", 0))),
    Case("ipBlocks for plaintext", (policy("from-lan", ALLOW, rule(Source(ip_blocks=("203.0.113.0/24", "198.51.100.7/32")))),), (
        (PLAIN, "203.0.113.4", 80, True, "foo/from-lan", 0), (PLAIN, "198.51.100.7", 80, True, "foo/from-lan", 0),
        (PLAIN, "198.51.100.8", 80, False, "foo/from-lan", -1), (PLAIN, "", 80, False, "foo/from-lan", -1))),
    Case("notIpBlocks", (policy("deny-outside", DENY, rule(Source(not_ip_blocks=("10.0.0.0/8",)))),), (
        (PLAIN, "10.10.3.3", 80, True, "", -1), (PLAIN, "192.0.2.1", 80, False, "foo/deny-outside", 0))),
    Case("require mTLS: deny notPrincipals *", (policy("require-mtls", DENY, rule(Source(not_principals=("*",)))),), (
        (PLAIN, "10.10.3.3", 80, False, "foo/require-mtls", 0), (SLEEP, "10.10.2.1", 80, True, "", -1))),
    Case("an ALLOW rule with L7 fields matches nothing", (
        policy("get-only", ALLOW, rule(Source(namespaces=("default",)), l7=("to[0].operation.methods",))),), (
        (SLEEP, "10.10.2.1", 80, False, "foo/get-only", -1), (DEV, "10.10.2.2", 80, False, "foo/get-only", -1))),
    Case("a DENY rule with L7 fields is evaluated without them", (
        policy("no-post-from-dev", DENY, rule(Source(namespaces=("dev",)), l7=("to[0].operation.methods",))),), (
        (DEV, "10.10.2.2", 80, False, "foo/no-post-from-dev", 0), (SLEEP, "10.10.2.1", 80, True, "", -1))),
    Case("empty ALLOW (allow-nothing) denies all", (policy("allow-nothing", ALLOW),), (
        (SLEEP, "10.10.2.1", 80, False, "foo/allow-nothing", -1), (PLAIN, "203.0.113.4", 80, False, "foo/allow-nothing", -1))),
    Case("empty DENY denies nothing", (policy("deny-nothing", DENY),), ((DEV, "10.10.2.2", 80, True, "", -1),)),
    Case("rules [{}] allows all", (policy("allow-all", ALLOW, Rule()),), (
        (SLEEP, "10.10.2.1", 80, True, "foo/allow-all", 0), (PLAIN, "203.0.113.4", 1, True, "foo/allow-all", 0))),
    Case("mesh-wide policy in the root namespace", (
        policy("deny-dev-everywhere", DENY, rule(Source(namespaces=("dev",))), namespace=ROOT_NAMESPACE),), (
        (DEV, "10.10.2.2", 80, False, f"{ROOT_NAMESPACE}/deny-dev-everywhere", 0),), workload=OTHER_NS),
    Case("a policy of another namespace does not apply", (policy("allow-nothing", ALLOW, namespace="bar"),), (
        (SLEEP, "10.10.2.1", 80, True, "", -1),)),
    Case("selector: only matching workloads", (policy("db-only", ALLOW, rule(Source(principals=(FOO_ADMIN[9:],))),
                                                      selector={"app": "db"}),), (
        (SLEEP, "10.10.2.1", 80, False, "foo/db-only", -1), (FOO_ADMIN, "10.10.1.20", 80, True, "foo/db-only", 0)),
        workload=DB),
    Case("selector: other workloads untouched", (policy("db-only", ALLOW, selector={"app": "db"}),), (
        (SLEEP, "10.10.2.1", 80, True, "", -1),)),
    Case("principal wildcards: prefix, suffix, presence", (
        policy("wild", ALLOW, rule(Source(principals=("cluster.local/ns/dev/*",)), Source(principals=("*/sa/sleep",)))),
        policy("any-identity", ALLOW, rule(Source(principals=("*",)), ops=(Operation(ports=(9000,)),)))), (
        (DEV, "10.10.2.2", 80, True, "foo/wild", 0), (SLEEP, "10.10.2.1", 80, True, "foo/wild", 0),
        (FOO_ADMIN, "10.10.1.20", 80, False, "foo/any-identity,foo/wild", -1),
        (FOO_ADMIN, "10.10.1.20", 9000, True, "foo/any-identity", 0),
        (PLAIN, "10.10.3.3", 9000, False, "foo/any-identity,foo/wild", -1))),
    Case("namespace wildcards", (policy("dev-star", DENY, rule(Source(namespaces=("dev*",)))),), (
        (DEV, "10.10.2.2", 80, False, "foo/dev-star", 0), (SLEEP, "10.10.2.1", 80, True, "", -1))),
    Case("fields of a source are AND'ed, sources OR'ed, from and to AND'ed", (
        policy("and-or", ALLOW, rule(Source(namespaces=("default",), principals=("cluster.local/ns/default/sa/other",)),
                                     Source(ip_blocks=("203.0.113.0/24",)), ops=(Operation(ports=(80,)),))),), (
        (SLEEP, "10.10.2.1", 80, False, "foo/and-or", -1),  # namespace yes, principal no
        (SLEEP, "203.0.113.5", 80, True, "foo/and-or", 0),  # the second source
        (SLEEP, "203.0.113.5", 81, False, "foo/and-or", -1))),  # but not that port
    Case("the second rule matches", (policy("two", ALLOW, rule(Source(namespaces=("dev",))),
                                            rule(Source(namespaces=("default",)))),), (
        (SLEEP, "10.10.2.1", 80, True, "foo/two", 1),)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_istio_examples(case: Case) -> None:
    policies = PolicySet({p.key: p for p in case.policies})
    for identity, ip, port, allowed, deciding, rule_index in case.checks:
        d = policies.decide(identity, ip, case.workload, port)
        assert (d.allowed, d.policy, d.rule) == (allowed, deciding, rule_index), (identity, ip, port, d.reason)
        explained = policies.explain(identity, ip, case.workload, port).decision
        assert explained is d  # the explanation is the same decision, not a second opinion


def test_decisions_name_the_action_and_say_why_in_one_line() -> None:
    deny = policy("deny-dev", DENY, rule(Source(namespaces=("dev",))))
    allow = policy("allow-sleep", ALLOW, rule(Source(principals=(SLEEP[9:],))))
    policies = PolicySet({p.key: p for p in (deny, allow)})
    d = policies.decide(DEV, "10.10.2.2", WEB, 80)
    assert (d.action, d.reason) == (DENY, "denied by DENY policy foo/deny-dev rule 0")
    d = policies.decide(SLEEP, "10.10.2.1", WEB, 80)
    assert (d.action, d.reason) == (ALLOW, "allowed by ALLOW policy foo/allow-sleep rule 0")
    d = policies.decide(FOO_ADMIN, "10.10.2.1", WEB, 80)
    assert (d.action, d.reason) == (ALLOW, "denied: no rule of the ALLOW policies that apply (foo/allow-sleep) matched")
    assert PolicySet({}).decide(SLEEP, "", WEB, 80) is ALLOWED_BY_DEFAULT
    assert ALLOWED_BY_DEFAULT.action == ""


def test_applies_by_namespace_root_namespace_and_selector_subset() -> None:
    assert applies(policy("p"), WEB) and not applies(policy("p"), OTHER_NS)
    assert applies(policy("p", namespace=ROOT_NAMESPACE), OTHER_NS)
    assert applies(policy("p", namespace=ROOT_NAMESPACE, selector={"app": "web"}), WEB)
    assert not applies(policy("p", namespace=ROOT_NAMESPACE, selector={"app": "web"}), OTHER_NS)
    assert applies(policy("p", selector={"app": "web"}), WEB) and not applies(policy("p", selector={"app": "web"}), DB)
    assert not applies(policy("p", selector={"app": "web", "tier": "front"}), WEB)


@pytest.mark.parametrize(("pattern", "value", "matches"), [
    ("cluster.local/ns/a/sa/b", "cluster.local/ns/a/sa/b", True), ("cluster.local/ns/a/sa/b", "cluster.local/ns/a/sa/bb", False),
    ("cluster.local/ns/a/*", "cluster.local/ns/a/sa/b", True), ("cluster.local/ns/a/*", "cluster.local/ns/ab/sa/b", False),
    ("*/sa/b", "cluster.local/ns/a/sa/b", True), ("*/sa/b", "cluster.local/ns/a/sa/bb", False),
    ("*", "anything", True), ("*", "", False), ("a*", "", False),
])
def test_istio_wildcards(pattern: str, value: str, matches: bool) -> None:
    assert Names((pattern,))(value) is matches


def test_principal_and_namespace_come_from_the_identity() -> None:
    assert principal_of(SLEEP) == ("cluster.local/ns/default/sa/sleep", "default")
    assert principal_of("") == ("", "")


def test_explanation_lists_every_applying_policy_rule_by_rule() -> None:
    policies = PolicySet({p.key: p for p in (
        policy("deny-dev", DENY, rule(Source(namespaces=("dev",)))),
        policy("web-8080", ALLOW, rule(Source(principals=("cluster.local/ns/dev/*",)), ops=(Operation(ports=(8080,)),)),
               rule(Source(namespaces=("default",)), l7=("to[0].operation.methods",))),
        policy("db-only", ALLOW, selector={"app": "db"}),  # does not apply to web
    )})
    e = policies.explain(SLEEP, "10.10.2.1", WEB, 9090)
    assert not e.decision.allowed
    assert [(p.policy, p.action, p.scope, p.matched, p.summary) for p in e.policies] == [
        ("foo/deny-dev", DENY, "NAMESPACE", -1, "no rule matched"),
        ("foo/web-8080", ALLOW, "NAMESPACE", -1, "no rule matched")]
    assert e.policies[0].rules == ("rule 0: no match: from[0]: namespaces ['dev'] do not match default",)
    assert e.policies[1].rules == (
        "rule 0: no match: from[0]: principals ['cluster.local/ns/dev/*'] do not match cluster.local/ns/default/sa/sleep; "
        "to[0]: ports [8080] do not match 9090",
        "rule 1: has L7 fields (to[0].operation.methods): an ALLOW rule with them matches nothing at L4")
    e = policies.explain(PLAIN, "203.0.113.4", WEB, 8080)
    assert e.policies[1].rules[0] == f"rule 0: no match: from[0]: principals ['cluster.local/ns/dev/*'] do not match {PLAINTEXT}"
    e = policies.explain(DEV, "10.10.2.2", WEB, 8080)
    assert (e.decision.policy, e.policies[0].rules, e.policies[0].summary) == (
        "foo/deny-dev", ("rule 0: matches",), "rule 0 matched")
    assert e.as_dict()["decision"] == {"allowed": False, "policy": "foo/deny-dev", "action": DENY, "rule": 0,
                                       "reason": "denied by DENY policy foo/deny-dev rule 0"}


def test_explanation_of_empty_rules_and_broadened_deny() -> None:
    policies = PolicySet({p.key: p for p in (
        policy("nothing", ALLOW), policy("deny-post", DENY, Rule(l7=("to[0].operation.methods",))))})
    e = policies.explain(SLEEP, "10.10.2.1", WEB, 80)
    assert [(p.policy, p.summary, p.rules) for p in e.policies] == [
        ("foo/deny-post", "rule 0 matched",
         ("rule 0: matches every connection (no from, no to) (L7 fields ignored at L4: to[0].operation.methods)",)),
        ("foo/nothing", "no rules: allows nothing", ())]
    assert e.policies[1].as_dict()["matched_rule"] == -1
    assert PolicySet({}).explain(SLEEP, "", WEB, 80).policies == ()


def test_a_notfield_that_holds_is_explained_as_matching() -> None:
    policies = PolicySet({"foo/p": policy("p", ALLOW, rule(Source(not_ip_blocks=("10.0.0.0/8",))))})
    e = policies.explain(SLEEP, "10.10.2.1", WEB, 80)
    assert e.policies[0].rules == ("rule 0: no match: from[0]: notIpBlocks ['10.0.0.0/8'] match 10.10.2.1",)


def test_compiled_policies_are_reused_while_their_value_is_unchanged() -> None:
    a, b = policy("a", ALLOW, Rule()), policy("b", DENY, rule(Source(ip_blocks=("10.0.0.0/8",))))
    first = PolicySet({p.key: p for p in (a, b)})
    assert first.changed
    same = PolicySet({"foo/a": policy("a", ALLOW, Rule()), "foo/b": b}, first)  # an equal value, a new object
    assert not same.changed
    assert same.compiled["foo/a"] is first.compiled["foo/a"] and same.compiled["foo/b"] is first.compiled["foo/b"]
    edited = PolicySet({"foo/a": a, "foo/b": policy("b", DENY, rule(Source(ip_blocks=("10.0.0.0/16",))))}, same)
    assert edited.changed and edited.compiled["foo/a"] is first.compiled["foo/a"]
    assert edited.compiled["foo/b"] is not first.compiled["foo/b"]
    assert PolicySet({"foo/a": a}, edited).changed  # one removed
    assert not PolicySet({}, PolicySet({})).changed


def test_what_applies_to_a_workload_is_worked_out_once_per_set() -> None:
    policies = PolicySet({"foo/p": policy("p", DENY, rule(Source(namespaces=("dev",))))})
    first = policies.for_workload(WEB)
    assert policies.for_workload(WEB) is first and [p.key for p in first.deny] == ["foo/p"]
    assert policies.for_workload(OTHER_NS).deny == ()
