"""AuthorizationPolicy objects -> nodemesh.authz values: Istio's YAML, its L4 part, every error
named by object and field."""

from __future__ import annotations

import pytest

from nodemesh.authz.policy import ALLOW, DENY, AuthorizationPolicy, Operation, Rule, Source
from nodemesh.controller.kube.objects import ConfigError, parse_documents

NAMESPACES = """apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: nodemesh-system}
---
"""


def policy(spec: str, version: str = "security.istio.io/v1", meta: str = "{name: p, namespace: shop}") -> str:
    return (f"{NAMESPACES}apiVersion: {version}\nkind: AuthorizationPolicy\nmetadata: {meta}\n"
            f"spec:\n{spec}")


def parsed(spec: str, **kwargs: str) -> AuthorizationPolicy:
    (result,) = parse_documents(policy(spec, **kwargs), "test.yaml").authorization_policies
    return result


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_documents(text, "test.yaml")
    return info.value.errors


def test_a_full_policy_parses_into_the_shared_values():
    result = parsed("""
  selector: {matchLabels: {app: web}}
  action: DENY
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/shop/sa/client, "*/sa/admin"]
        notPrincipals: ["cluster.local/ns/shop/*"]
        namespaces: [legacy]
        notNamespaces: ["*"]
        ipBlocks: [10.1.2.3/8, 192.168.0.7]
        notIpBlocks: [10.0.0.0/24]
    to:
    - operation: {ports: ["8080", 9090], notPorts: ["22"]}
  - {}
""")
    assert result == AuthorizationPolicy(
        name="p", namespace="shop", action=DENY, selector={"app": "web"},
        rules=(Rule(sources=(Source(principals=("cluster.local/ns/shop/sa/client", "*/sa/admin"),
                                    not_principals=("cluster.local/ns/shop/*",),
                                    namespaces=("legacy",), not_namespaces=("*",),
                                    ip_blocks=("10.0.0.0/8", "192.168.0.7/32"),
                                    not_ip_blocks=("10.0.0.0/24",)),),
                    operations=(Operation(ports=(8080, 9090), not_ports=(22,)),)),
               Rule()))
    assert result.scope == "WORKLOAD_SELECTOR"


def test_defaults_as_istio_an_absent_action_allows_and_an_empty_spec_allows_nothing():
    result = parsed("  {}\n")
    assert (result.action, result.rules, dict(result.selector)) == (ALLOW, (), {})


@pytest.mark.parametrize("version", ["security.istio.io/v1", "security.istio.io/v1beta1"])
def test_both_istio_versions_are_read(version):
    assert parsed("  action: ALLOW\n", version=version).action == ALLOW


def test_a_root_namespace_policy_applies_to_the_mesh():
    assert parsed("  action: DENY\n", meta="{name: p, namespace: nodemesh-system}").scope == "GLOBAL"


def test_l7_fields_are_recorded_by_their_path_in_the_rule():
    result = parsed("""
  rules:
  - from:
    - source: {namespaces: [shop]}
    - source: {requestPrincipals: ["*"], remoteIpBlocks: [1.2.3.4], notRemoteIpBlocks: [], notRequestPrincipals: [x]}
    to:
    - operation: {ports: ["80"], methods: [GET], notMethods: [POST], paths: [/a], notPaths: [/b], hosts: [h], notHosts: [i]}
    when: [{key: "request.auth.claims[iss]", values: [x]}]
  - to: [{operation: {ports: ["80"]}}]
""")
    assert result.rules[0].l7 == (
        "from[1].source.requestPrincipals", "from[1].source.notRequestPrincipals",
        "from[1].source.remoteIpBlocks",
        "to[0].operation.hosts", "to[0].operation.notHosts", "to[0].operation.methods",
        "to[0].operation.notMethods", "to[0].operation.paths", "to[0].operation.notPaths", "when")
    assert result.rules[0].sources[1] == Source()  # what it has for L4: nothing
    assert result.rules[1].l7 == ()


P = "AuthorizationPolicy shop/p"


@pytest.mark.parametrize("spec, expected", [
    # actions
    ("  action: ALOW\n", f"{P}: spec.action: unknown action 'ALOW' (ALLOW or DENY)"),
    ("  action: allow\n", f"{P}: spec.action: unknown action 'allow'"),
    ("  action: AUDIT\n", f"{P}: spec.action: AUDIT is not enforceable at L4"),
    ("  action: CUSTOM\n  provider: {name: ext}\n", f"{P}: spec.action: CUSTOM is not enforceable at L4"),
    ("  action: CUSTOM\n  provider: {name: ext}\n", f"{P}: spec.provider: external authorization (CUSTOM) is not enforceable at L4"),
    ("  targetRef: {kind: Gateway, name: g}\n", f"{P}: spec.targetRef: policies attached to gateways"),
    ("  targetRefs: [{kind: Service, name: s}]\n", f"{P}: spec.targetRefs: policies attached to gateways"),
    # CIDRs
    ("  rules: [{from: [{source: {ipBlocks: [10.0.0.0/8, 10.0.0.0/33]}}]}]\n",
     f"{P}: spec.rules[0].from[0].source.ipBlocks[1]: '10.0.0.0/33' is not a CIDR"),
    ("  rules: [{from: [{source: {notIpBlocks: [10.0.0]}}]}]\n",
     f"{P}: spec.rules[0].from[0].source.notIpBlocks[0]: '10.0.0' is not a CIDR"),
    ("  rules: [{from: [{source: {ipBlocks: [\"\"]}}]}]\n",
     f"{P}: spec.rules[0].from[0].source.ipBlocks[0]: must not be empty"),
    ("  rules: [{from: [{source: {ipBlocks: 10.0.0.0/8}}]}]\n",
     f"{P}: spec.rules[0].from[0].source.ipBlocks: must be a list, got a string"),
    # ports
    ("  rules: [{to: [{operation: {ports: [\"0\"]}}]}]\n",
     f"{P}: spec.rules[0].to[0].operation.ports[0]: port 0 is out of range (1-65535)"),
    ("  rules: [{to: [{operation: {notPorts: [70000]}}]}]\n",
     f"{P}: spec.rules[0].to[0].operation.notPorts[0]: port 70000 is out of range"),
    ("  rules: [{to: [{operation: {ports: [http]}}]}]\n",
     f"{P}: spec.rules[0].to[0].operation.ports[0]: must be a number between 1 and 65535, got 'http'"),
    ("  rules: [{to: [{operation: {ports: [\"80-90\"]}}]}]\n",
     f"{P}: spec.rules[0].to[0].operation.ports[0]: must be a number between 1 and 65535, got '80-90'"),
    # principals and namespaces
    ("  rules: [{from: [{source: {principals: [\"cluster.local/*/sa/x\"]}}]}]\n",
     f"{P}: spec.rules[0].from[0].source.principals[0]: 'cluster.local/*/sa/x': '*' can only be"),
    ("  rules: [{from: [{source: {namespaces: [\"*a*\"]}}]}]\n",
     f"{P}: spec.rules[0].from[0].source.namespaces[0]: '*a*': '*' can only be"),
    ("  rules: [{from: [{source: {principals: [\"spiffe://cluster.local/ns/a/sa/b\"]}}]}]\n",
     f"{P}: spec.rules[0].from[0].source.principals[0]: 'spiffe://cluster.local/ns/a/sa/b': write principals without 'spiffe://'"),
    ("  rules: [{from: [{source: {notPrincipals: [7]}}]}]\n",
     f"{P}: spec.rules[0].from[0].source.notPrincipals[0]: must be a string, got 7"),
    # selector
    ("  selector: {matchLabels: {app: 1}}\n", f"{P}: spec.selector.matchLabels.app: must be a string, got 1"),
    ("  selector: {app: web}\n", f"{P}: spec.selector.app: unknown field (expected one of matchLabels)"),
    # unknown fields, at every level
    ("  action: DENY\n  rule: []\n", f"{P}: spec.rule: unknown field (expected one of selector, action, rules"),
    ("  rules: [{form: []}]\n", f"{P}: spec.rules[0].form: unknown field (expected one of from, to, when)"),
    ("  rules: [{from: [{sources: {}}]}]\n", f"{P}: spec.rules[0].from[0].sources: unknown field (expected one of source)"),
    ("  rules: [{from: [{source: {principal: [a]}}]}]\n",
     f"{P}: spec.rules[0].from[0].source.principal: unknown field (expected one of principals, notPrincipals"),
    ("  rules: [{to: [{operation: {port: [\"80\"]}}]}]\n",
     f"{P}: spec.rules[0].to[0].operation.port: unknown field (expected one of ports, notPorts"),
    ("  rules: [{to: [{operations: {}}]}]\n", f"{P}: spec.rules[0].to[0].operations: unknown field"),
    # L7 fields are checked for their shape too
    ("  rules: [{to: [{operation: {methods: GET}}]}]\n",
     f"{P}: spec.rules[0].to[0].operation.methods: must be a list, got a string"),
])
def test_errors_name_the_object_and_field(spec, expected):
    found = errors(policy(spec))
    assert any(expected in e for e in found), found


def test_every_problem_is_listed():
    found = errors(policy("  action: ALOW\n  rules: [{from: [{source: {ipBlocks: [x, y]}}]}]\n"))
    assert len(found) == 3, found


def test_a_wrong_api_version_is_named():
    found = errors(policy("  {}\n", version="security.istio.io/v2"))
    assert found == [f"{P}: apiVersion: must be security.istio.io/v1 or security.istio.io/v1beta1 "
                     "for an AuthorizationPolicy, got 'security.istio.io/v2'"]


def test_a_policy_needs_its_namespace():
    found = errors("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
                   "metadata: {name: p, namespace: ghost}\nspec: {}\n")
    assert found == ["AuthorizationPolicy ghost/p: metadata.namespace: namespace 'ghost' is not "
                     "defined (add a Namespace object named ghost)"]


def test_the_root_namespace_needs_its_namespace_object_too_and_says_why():
    (found,) = errors("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
                      "metadata: {name: p, namespace: nodemesh-system}\nspec: {}\n")
    assert found.startswith("AuthorizationPolicy nodemesh-system/p: metadata.namespace: namespace "
                            "'nodemesh-system' is not defined (add a Namespace object named "
                            "nodemesh-system) (nodemesh-system is the mesh's root namespace")


def test_a_policy_in_default_needs_no_namespace_object():
    text = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {}\n"
    (result,) = parse_documents(text, "test.yaml").authorization_policies
    assert result.key == "default/p"


def test_a_policy_defined_twice_is_named():
    text = policy("  {}\n") + "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n" \
                              "metadata: {name: p, namespace: shop}\n"
    found = errors(text)
    assert len(found) == 1 and f"{P}: metadata.name: defined twice" in found[0]
