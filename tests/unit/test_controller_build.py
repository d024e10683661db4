"""Kubernetes objects -> mesh model: uids, meshed flag, selectors, endpoints, target ports."""

from __future__ import annotations

import uuid

import pytest

from nodemesh.controller.kube.objects import parse_documents
from nodemesh.controller.model.build import ModelError, build_model
from nodemesh.controller.model.ipam import Assignments
from nodemesh.controller.sources.addresses import AddressStore
from nodemesh.model import PERMISSIVE, STRICT, Node, ServicePort

CLUSTER = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {nodemesh.io/mesh: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: legacy}
---
apiVersion: v1
kind: Pod
metadata: {name: web-b, namespace: shop, labels: {app: web, tier: front}}
spec:
  nodeName: node-b
  containers: [{name: c, ports: [{containerPort: 8080, name: http}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-a, namespace: shop, uid: given-uid, labels: {app: web}}
spec:
  nodeName: node-a
  serviceAccountName: web
  containers: [{name: c, ports: [{containerPort: 8080, name: http}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-c, namespace: legacy, labels: {app: web}}
spec: {nodeName: node-a, containers: [{name: c}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}, {name: raw, port: 81, targetPort: 9000}, {name: same, port: 82}]
---
apiVersion: v1
kind: Service
metadata: {name: manual, namespace: shop}
spec: {ports: [{port: 80}]}
"""


def build(text: str, state_dir, **kwargs):
    """As a source builds: the model, its addresses kept in ``state_dir`` once it built whole."""
    return AddressStore(state_dir).model_for(parse_documents(text, "t"), **kwargs)


def test_building_returns_the_address_plan_with_the_model_and_keeps_nothing():
    """No path goes in, so nothing is written: keeping the plan is the source's job."""
    objects = parse_documents(CLUSTER, "t")
    built = build_model(objects, Assignments())
    by_ref = {w.ref: w for w in built.model.workloads.values()}
    assert built.addresses.pod_ip("shop/web-a") == by_ref["shop/web-a"].ip
    assert built.addresses.service_vip("shop/web") == built.model.services["shop/web"].vip
    assert build_model(objects, Assignments()) == built  # the same input, the same model and plan


def test_workloads_carry_identity_placement_and_mesh_membership(tmp_path):
    model = build(CLUSTER, tmp_path)
    by_ref = {w.ref: w for w in model.workloads.values()}
    a, b, c = by_ref["shop/web-a"], by_ref["shop/web-b"], by_ref["legacy/web-c"]
    assert model.workloads["given-uid"] is a
    # legacy/web-c sorts first, so it took node-a's first address
    assert (a.service_account, a.node, a.ip, a.meshed) == ("web", "node-a", "10.10.1.11", True)
    assert (b.service_account, b.node, b.ip, b.meshed) == ("default", "node-b", "10.10.2.10", True)
    assert b.labels == {"app": "web", "tier": "front"}
    assert not c.meshed
    assert uuid.UUID(b.uid).version == 5
    assert model.nodes == {"node-a": Node("node-a", "172.30.0.1", "10.10.1.0/24"),
                           "node-b": Node("node-b", "172.30.0.2", "10.10.2.0/24")}


def test_generated_uids_are_stable_across_restarts(tmp_path):
    first = {w.ref: w.uid for w in build(CLUSTER, tmp_path / "1").workloads.values()}
    second = {w.ref: w.uid for w in build(CLUSTER, tmp_path / "2").workloads.values()}
    assert first == second and len(set(first.values())) == 3


def test_endpoints_match_selector_in_namespace_sorted_by_pod_name(tmp_path):
    model = build(CLUSTER, tmp_path)
    uid = {w.ref: w.uid for w in model.workloads.values()}
    web = model.services["shop/web"]
    assert web.endpoints == (uid["shop/web-a"], uid["shop/web-b"])  # not legacy/web-c
    assert web.vip.startswith("10.96.0.")
    assert model.services["shop/manual"].endpoints == ()


def test_target_ports_by_number_name_and_default(tmp_path):
    web = build(CLUSTER, tmp_path).services["shop/web"]
    assert web.ports == (ServicePort("http", 80, 8080), ServicePort("raw", 81, 9000),
                         ServicePort("same", 82, 82))


def test_a_named_target_port_without_endpoints_is_unresolved(tmp_path):
    text = ("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
            "spec: {selector: {app: none}, ports: [{port: 80, targetPort: http}]}\n")
    assert build(text, tmp_path).services["default/s"].ports == (ServicePort("", 80, 0),)


def two_endpoints(a_ports: str, b_ports: str) -> str:
    pods = "".join(
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: web}}}}\n"
        f"spec: {{nodeName: n1, containers: [{{name: c, ports: {ports}}}]}}\n---\n"
        for name, ports in (("a", a_ports), ("b", b_ports)))
    return pods + ("apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
                   "spec: {selector: {app: web}, ports: [{port: 80, targetPort: http}]}\n")


@pytest.mark.parametrize("b_ports, expected", [
    ("[]", "Service default/web: spec.ports[0].targetPort: endpoint Pod default/b has no "
           "container port named 'http' (add it to the pod's ports, or give a number)"),
    ("[{containerPort: 9090, name: http}]",
     "Service default/web: spec.ports[0].targetPort: port name 'http' means different ports on "
     "the endpoints (8080 on Pod default/a, 9090 on Pod default/b); give every endpoint the same "
     "number"),
])
def test_named_target_ports_that_endpoints_do_not_agree_on_are_refused(tmp_path, b_ports, expected):
    agreeing = two_endpoints("[{containerPort: 8080, name: http}]", "[{containerPort: 8080, name: http}]")
    assert build(agreeing, tmp_path / "ok").services["default/web"].ports[0].target_port == 8080
    with pytest.raises(ModelError) as info:
        build(two_endpoints("[{containerPort: 8080, name: http}]", b_ports), tmp_path)
    assert info.value.errors == [expected]
    assert not (tmp_path / "ipam.json").exists()


def test_build_errors_and_address_errors_are_reported_together(tmp_path):
    text = CLUSTER + (
        "---\napiVersion: v1\nkind: Pod\nmetadata: {name: x, namespace: legacy}\n"
        "spec: {nodeName: node-a, containers: [{name: c}]}\nstatus: {podIP: 10.10.2.50}\n"
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: n, namespace: legacy}\n"
        "spec: {selector: {app: web}, ports: [{port: 1, targetPort: http}]}\n")
    with pytest.raises(ModelError) as info:
        build(text, tmp_path)
    assert [e.split(":")[0] for e in info.value.errors] == ["Service legacy/n", "Pod legacy/x"]


def test_identities_are_spiffe_ids_of_namespace_and_service_account(tmp_path):
    by_ref = {w.ref: w for w in build(CLUSTER, tmp_path).workloads.values()}
    assert by_ref["shop/web-a"].identity == "spiffe://cluster.local/ns/shop/sa/web"
    assert by_ref["shop/web-b"].identity == "spiffe://cluster.local/ns/shop/sa/default"
    assert by_ref["legacy/web-c"].identity == "spiffe://cluster.local/ns/legacy/sa/default"
    other = build(CLUSTER, tmp_path / "td", trust_domain="corp.example")
    assert {w.identity.split("/")[2] for w in other.workloads.values()} == {"corp.example"}


def with_mode(mode: str) -> str:
    return CLUSTER.replace("labels: {nodemesh.io/mesh: enabled}",
                           f"labels: {{nodemesh.io/mesh: enabled, nodemesh.io/mtls-mode: {mode}}}")


@pytest.mark.parametrize("label, expected", [("STRICT", STRICT), ("strict", STRICT),
                                             ("Permissive", PERMISSIVE)])
def test_mtls_mode_comes_from_the_namespace_label_in_any_case(tmp_path, label, expected):
    by_ref = {w.ref: w for w in build(with_mode(label), tmp_path).workloads.values()}
    assert by_ref["shop/web-a"].mtls_mode == by_ref["shop/web-b"].mtls_mode == expected
    assert by_ref["legacy/web-c"].mtls_mode == PERMISSIVE  # no label: the default


def test_pods_of_the_implicit_default_namespace_are_permissive(tmp_path):
    text = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {nodeName: n1, containers: [{name: c}]}\n"
    (a,) = build(text, tmp_path).workloads.values()
    assert (a.mtls_mode, a.identity) == (PERMISSIVE, "spiffe://cluster.local/ns/default/sa/default")


def test_an_unknown_mtls_mode_names_the_namespace_and_label(tmp_path):
    with pytest.raises(ModelError) as info:
        build(with_mode("strictest"), tmp_path)
    assert info.value.errors == ["Namespace shop: metadata.labels.nodemesh.io/mtls-mode: 'strictest' "
                                 "is not STRICT or PERMISSIVE"]
    assert not (tmp_path / "ipam.json").exists()
