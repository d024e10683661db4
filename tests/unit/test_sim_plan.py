import ipaddress
from pathlib import Path

import pytest
import yaml

import nodemesh.tools.sim
from nodemesh.controller.kube.objects import parse_documents
from nodemesh.model import MeshModel, Node, Workload
from nodemesh.tools.sim.names import SimError
from nodemesh.tools.sim.plan import NodePlan, plan_cluster, plan_from_file

from bad_clusters import MODEL_ERRORS

DEMO = Path(nodemesh.tools.sim.__file__).parent / "examples" / "demo.yaml"


def test_demo_plan_has_the_documented_cluster(tmp_path):
    plan = plan_from_file(DEMO, tmp_path)
    assert [n.name for n in plan.nodes] == ["node-a", "node-b"]
    pods = {p.ref: p for p in plan.pods}
    assert set(pods) == {"shop/client", "shop/reports", "shop/catalog-a", "shop/catalog-b", "shop/reviews-v1",
                         "shop/reviews-v2", "legacy/batch"}
    assert pods["shop/catalog-a"].meshed and not pods["legacy/batch"].meshed
    assert (pods["shop/catalog-a"].node, pods["shop/catalog-b"].node) == ("node-a", "node-b")
    server = pods["shop/catalog-b"].containers[0]
    assert server.argv == ("python3", "-m", "nodemesh.tools.apps.server", "--port", "8080",
                           "--name", "catalog-b")
    services = {svc.ref: svc for svc in plan.services}
    assert set(services) == {"shop/catalog", "shop/reviews", "shop/reviews-v1", "shop/reviews-v2"}
    catalog = services["shop/catalog"]
    assert catalog.ports == {80: 8080}
    assert ipaddress.ip_address(catalog.vip) in ipaddress.ip_network("10.96.0.0/16")
    for pod in plan.pods:
        assert ipaddress.ip_address(pod.ip) in ipaddress.ip_network(plan.node(pod.node).pod_cidr)


def test_addresses_agree_with_a_second_planner_on_the_same_state(tmp_path):
    """What the controller started after `up` will compute, from the same state dir."""
    first = plan_from_file(DEMO, tmp_path)
    assert plan_from_file(DEMO, tmp_path) == first


def test_bad_file_lists_its_problems(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: c}]}\n")
    with pytest.raises(SimError, match=r"Pod default/x: spec.nodeName: required"):
        plan_from_file(bad, tmp_path / "state")


POD = """
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default}
spec:
  nodeName: n1
  containers:
    - name: main
      command: [sh, -c]
      args: ["echo $(GREETING) from $(POD_NAME) at $(POD_IP) on $(NODE_NAME) in $(POD_NAMESPACE)"]
      env:
        - {name: GREETING, value: "hi $(POD_NAME)"}
"""


def _model(**overrides) -> MeshModel:
    w = Workload(uid="u1", name="web", namespace="default", service_account="default", node="n1",
                 ip="10.10.1.10", **overrides)
    return MeshModel(workloads={"u1": w}, services={},
                     nodes={"n1": Node(name="n1", ip="172.30.0.1/24", pod_cidr="10.10.1.0/24")})


def test_containers_get_the_pod_env_and_kubernetes_expansion():
    plan = plan_cluster(parse_documents(POD, "test"), _model())
    (pod,) = plan.pods
    (container,) = pod.containers
    assert container.argv == ("sh", "-c", "echo hi web from web at 10.10.1.10 on n1 in default")
    assert container.env == {"POD_NAME": "web", "POD_NAMESPACE": "default", "POD_IP": "10.10.1.10",
                             "NODE_NAME": "n1", "GREETING": "hi web"}


def test_node_addresses_lose_their_prefix_and_gateways_are_the_first_host():
    (node,) = plan_cluster(parse_documents(POD, "test"), _model()).nodes
    assert node == NodePlan(name="n1", ip="172.30.0.1", pod_cidr="10.10.1.0/24")
    assert node.gateway == "10.10.1.1"


def test_a_container_without_command_is_refused_with_the_reason():
    text = POD.replace("command: [sh, -c]", "").replace("args:", "image: nginx\n      args:")
    with pytest.raises(SimError, match="container main: command is required"):
        plan_cluster(parse_documents(text, "test"), _model())


def test_a_pod_missing_from_the_model_is_an_error():
    empty = MeshModel(workloads={}, services={}, nodes={})
    with pytest.raises(SimError, match="Pod default/web: the controller's model has no workload"):
        plan_cluster(parse_documents(POD, "test"), empty)


@pytest.mark.parametrize("case", MODEL_ERRORS)
def test_objects_that_do_not_fit_together_are_listed_like_bad_fields(tmp_path, case):
    """Errors found while building the model, not only while parsing, are the file's problems."""
    text, message = MODEL_ERRORS[case]
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(SimError, match="the cluster file has problems:\n  ") as raised:
        plan_from_file(tmp_path / "c.yaml", tmp_path / "state")
    assert message in str(raised.value)
    assert not (tmp_path / "state" / "ipam.json").exists()  # nothing assigned


MESH_OBJECTS = """---
apiVersion: v1
kind: Node
metadata: {name: node-a, labels: {topology.kubernetes.io/zone: zone-1}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-legacy, namespace: shop}
spec:
  action: DENY
  rules: [{from: [{source: {namespaces: [legacy]}}]}]
---
apiVersion: nodemesh.io/v1alpha1
kind: TrafficPolicy
metadata: {name: catalog, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: catalog}]
  loadBalancer: LeastConnections
  connectTimeout: 500ms
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: catalog, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: catalog, port: 80}]
  rules: [{backendRefs: [{name: catalog, port: 80, weight: 9}, {name: catalog, port: 80, weight: 1}]}]
"""


def test_a_file_with_policies_and_traffic_objects_plans_as_without_them(tmp_path):
    """`sim up` on a cluster file that also holds the mesh's own kinds: they change no address."""
    plain = [doc for doc in yaml.safe_load_all(DEMO.read_text()) if doc["kind"] in ("Namespace", "Pod", "Service")]
    without = tmp_path / "plain.yaml"
    without.write_text(yaml.safe_dump_all(plain))
    with_mesh_objects = tmp_path / "cluster.yaml"
    with_mesh_objects.write_text(without.read_text() + MESH_OBJECTS)
    expected = plan_from_file(without, tmp_path / "one")
    assert plan_from_file(with_mesh_objects, tmp_path / "two") == expected
    assert plan_from_file(DEMO, tmp_path / "three") == expected  # the demo's own policy, route and nodes
