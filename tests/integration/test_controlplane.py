"""The local control plane is a real one: RBAC, bound service-account tokens that carry their
node, the controller manager's EndpointSlices, the scheduler's bindings, 410 after compaction,
an API server restart."""

from __future__ import annotations

import json

import pytest

from eventually import eventually
from kubeapi import private_control_plane  # noqa: F401 (this module's control_plane: it restarts the API server)
from kubeapi import create, kubectl_json, pod_manifest, register_node, set_status, unique_name
from nodemesh.tools.kube.controlplane import LocalControlPlane


pytestmark = pytest.mark.slow

WAIT = 60.0  # the controllers react in well under a second; a loaded 2-core host may take far longer
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"


def test_readyz(control_plane: LocalControlPlane) -> None:
    done = control_plane.kubectl("get", "--raw", "/readyz")
    assert (done.returncode, done.stdout) == (0, "ok")


def test_a_user_without_a_binding_is_forbidden(control_plane: LocalControlPlane) -> None:
    nobody = control_plane.pki.issue_client(unique_name("nobody"), "nobody")
    done = control_plane.kubectl("get", "secrets", "-A", kubeconfig=control_plane.kubeconfig_for(nobody))
    assert done.returncode != 0
    assert 'User "nobody" cannot list resource "secrets"' in done.stderr


def test_a_pod_bound_token_reviews_with_its_node(control_plane: LocalControlPlane, kube_namespace: str) -> None:
    node = unique_name("node")
    register_node(control_plane, node, "172.30.0.1")
    create(control_plane, {"apiVersion": "v1", "kind": "ServiceAccount",
                           "metadata": {"name": "nodemesh-agent", "namespace": kube_namespace}})
    pod = create(control_plane, pod_manifest("agent", kube_namespace, node=node,
                                             serviceAccountName="nodemesh-agent"))
    token = control_plane.kubectl("create", "token", "nodemesh-agent", "-n", kube_namespace,
                                  "--audience=nodemesh", "--bound-object-kind=Pod", "--bound-object-name=agent",
                                  f"--bound-object-uid={pod['metadata']['uid']}")
    assert token.returncode == 0, token.stderr
    review = create(control_plane, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                    "spec": {"token": token.stdout.strip(), "audiences": ["nodemesh"]}})
    status = review["status"]
    assert status["authenticated"], status
    assert status["audiences"] == ["nodemesh"]
    assert status["user"]["username"] == f"system:serviceaccount:{kube_namespace}:nodemesh-agent"
    assert status["user"]["extra"][NODE_NAME_EXTRA] == [node]


def test_a_token_for_another_audience_is_not_authenticated(control_plane: LocalControlPlane,
                                                           kube_namespace: str) -> None:
    token = control_plane.kubectl("create", "token", "default", "-n", kube_namespace, "--audience=elsewhere")
    assert token.returncode == 0, token.stderr
    review = create(control_plane, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                    "spec": {"token": token.stdout.strip(), "audiences": ["nodemesh"]}})
    assert not review["status"].get("authenticated")


def test_the_controller_manager_makes_endpointslices_of_ready_pods(control_plane: LocalControlPlane,
                                                                   kube_namespace: str) -> None:
    node = unique_name("node")
    register_node(control_plane, node, "172.30.0.1", "10.10.1.0/24")
    create(control_plane, {"apiVersion": "v1", "kind": "Service",
                           "metadata": {"name": "web", "namespace": kube_namespace},
                           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    pod = create(control_plane, pod_manifest("web-1", kube_namespace, {"app": "web"}, node=node))
    set_status(control_plane, "pod", "web-1", {
        "phase": "Running", "podIP": "10.10.1.10", "podIPs": [{"ip": "10.10.1.10"}],
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}]},
        kube_namespace)

    def ready_endpoints() -> list[tuple[str, str, bool]]:
        slices = kubectl_json(control_plane, "get", "endpointslices", "-n", kube_namespace,
                              "-l", "kubernetes.io/service-name=web")["items"]
        return [(e["addresses"][0], e["targetRef"]["uid"], e["conditions"]["ready"])
                for s in slices for e in s.get("endpoints") or []]

    eventually(lambda: ready_endpoints() == [("10.10.1.10", pod["metadata"]["uid"], True)], WAIT,
               interval=0.2, what="an EndpointSlice with the ready pod")


def test_the_scheduler_binds_a_pod_to_a_ready_node(control_plane: LocalControlPlane, kube_namespace: str) -> None:
    node = unique_name("node")
    register_node(control_plane, node, "172.30.0.2")
    # the node selector keeps other tests' nodes out of the choice; the scheduler still decides
    create(control_plane, pod_manifest("placed", kube_namespace, nodeSelector={"kubernetes.io/hostname": node}))

    def node_name() -> str | None:
        return kubectl_json(control_plane, "get", "pod", "placed", "-n", kube_namespace)["spec"].get("nodeName")

    eventually(lambda: node_name() == node, WAIT, interval=0.2, what="the pod bound to the node")


def test_after_compaction_an_old_resource_version_is_gone(control_plane: LocalControlPlane,
                                                          kube_namespace: str) -> None:
    old = create(control_plane, {"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": "before", "namespace": kube_namespace}})
    for i in range(3):  # later revisions, so that "before" is not the newest one
        create(control_plane, {"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": f"after-{i}", "namespace": kube_namespace}})
    control_plane.compact_etcd()
    rv = old["metadata"]["resourceVersion"]
    path = f"/api/v1/namespaces/{kube_namespace}/configmaps"
    watch = control_plane.kubectl("get", "--raw", f"{path}?watch=1&resourceVersion={rv}&timeoutSeconds=5")
    event = json.loads(watch.stdout.splitlines()[0])
    assert (event["type"], event["object"]["code"], event["object"]["reason"]) == ("ERROR", 410, "Expired")
    listed = control_plane.kubectl("get", "--raw", f"{path}?resourceVersion={rv}&resourceVersionMatch=Exact")
    assert listed.returncode != 0
    assert "Error from server (Expired)" in listed.stderr, listed.stderr


def test_objects_survive_an_apiserver_restart(control_plane: LocalControlPlane, kube_namespace: str) -> None:
    create(control_plane, {"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "kept", "namespace": kube_namespace}, "data": {"k": "v"}})
    control_plane.restart_apiserver()
    assert kubectl_json(control_plane, "get", "configmap", "kept", "-n", kube_namespace)["data"] == {"k": "v"}
