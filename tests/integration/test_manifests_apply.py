"""The manifests in daemonset/ against a real API server (Kubernetes of scripts/kube/go.mod):
`kubectl apply -k` as docs/install.md says it (the third-party CRDs first), the CRDs' schemas
and CEL rules as the server compiles and enforces them, the examples in docs/ accepted, and
what each service account may and may not do, asked of the server's RBAC authorizer with
`kubectl auth can-i`.

A control plane of this module's own (etcd and kube-apiserver; nothing here needs the
controller manager or a scheduler): the base's objects are cluster-wide (CRDs, ClusterRoles,
the nodemesh-system namespace), and other tests' use of the session's control plane must
neither see nor undo them.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from manifests import CHART, DAEMONSET, NAMESPACE, ROOT, THIRD_PARTY, helm_bin, kustomize, one
from nodemesh.tools.kube.controlplane import LocalControlPlane

pytestmark = pytest.mark.slow

CONTROLLER = f"system:serviceaccount:{NAMESPACE}:nodemesh-controller"
AGENT = f"system:serviceaccount:{NAMESPACE}:nodemesh-agent"
EXAMPLES_NAMESPACE = "shop"  # the namespace of docs/policy.md's and docs/traffic.md's examples
POLICY_KINDS = ("AuthorizationPolicy", "TrafficPolicy", "TCPRoute")


def _ok(done: object) -> str:
    assert done.returncode == 0, done.stderr  # type: ignore[attr-defined]
    return done.stdout  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    """A fresh API server with nodemesh applied as docs/install.md says, CRDs established."""
    with LocalControlPlane(tmp_path_factory.mktemp("manifests"), controllers=False) as cp:
        _ok(cp.kubectl("apply", "-k", str(THIRD_PARTY)))
        _ok(cp.kubectl("apply", "-k", str(DAEMONSET)))
        crds = [o["metadata"]["name"] for o in kustomize(THIRD_PARTY) + kustomize(DAEMONSET)
                if o["kind"] == "CustomResourceDefinition"]
        _ok(cp.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                       *(f"crd/{name}" for name in crds)))
        _ok(cp.kubectl("create", "namespace", EXAMPLES_NAMESPACE))
        yield cp


def test_applying_again_changes_nothing(cluster: LocalControlPlane) -> None:
    """What the server stored is what the manifests say: no defaulting or mutation fights a
    re-apply. (``kubectl apply`` itself reports the PodDisruptionBudget "configured" every time,
    as its selector is patched by replacement; the diff is what counts.)"""
    for directory in (THIRD_PARTY, DAEMONSET):
        _ok(cluster.kubectl("apply", "-k", str(directory)))
        done = cluster.kubectl("diff", "-k", str(directory))
        assert done.returncode == 0, done.stdout + done.stderr


def test_crds_are_structural_and_their_names_accepted(cluster: LocalControlPlane) -> None:
    for obj in kustomize(THIRD_PARTY) + kustomize(DAEMONSET):
        if obj["kind"] != "CustomResourceDefinition":
            continue
        crd = json.loads(_ok(cluster.kubectl("get", "crd", obj["metadata"]["name"], "-o", "json")))
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["NamesAccepted"] == "True" and conditions["Established"] == "True"
        assert "NonStructuralSchema" not in conditions, crd["status"]["conditions"]


def _example_policies() -> list[dict]:
    """The policy objects of docs/policy.md's and docs/traffic.md's YAML examples."""
    found = []
    for doc in ("policy.md", "traffic.md"):
        text = (ROOT / "docs" / doc).read_text()
        for block in re.findall(r"```yaml\n(.*?)```", text, re.S):
            found += [o for o in yaml.safe_load_all(block) if o and o.get("kind") in POLICY_KINDS]
    return found


def test_the_docs_examples_are_accepted(cluster: LocalControlPlane) -> None:
    """The fields users are shown are the schemas' (a field the schema lacks is refused: kubectl
    asks for strict field validation)."""
    examples = _example_policies()
    assert {o["kind"] for o in examples} == set(POLICY_KINDS)
    for obj in examples:
        assert obj["metadata"]["namespace"] in (EXAMPLES_NAMESPACE, NAMESPACE)  # NAMESPACE: mesh-wide
        _ok(cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(obj)))


TRAFFIC_POLICY = {"apiVersion": "nodemesh.io/v1alpha1", "kind": "TrafficPolicy",
                  "metadata": {"name": "web", "namespace": EXAMPLES_NAMESPACE},
                  "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "web"}],
                           "loadBalancer": "LeastConnections", "connectTimeout": "2s"}}
TCP_ROUTE = {"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "TCPRoute",
             "metadata": {"name": "web-split", "namespace": EXAMPLES_NAMESPACE},
             "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "web", "port": 80}],
                      "rules": [{"backendRefs": [{"name": "web-v1", "port": 80, "weight": 90},
                                                 {"name": "web-v2", "port": 80, "weight": 10}]}]}}


def test_a_good_traffic_policy_is_stored_and_listed(cluster: LocalControlPlane) -> None:
    _ok(cluster.kubectl("apply", "-f", "-", input=json.dumps(TRAFFIC_POLICY)))
    try:
        table = _ok(cluster.kubectl("get", "trafficpolicies", "-n", EXAMPLES_NAMESPACE))
        header, row = table.splitlines()
        assert header.split()[:4] == ["NAME", "TARGETS", "LOAD", "BALANCER"]
        assert row.split()[:3] == ["web", "web", "LeastConnections"]
    finally:
        _ok(cluster.kubectl("delete", "trafficpolicy", "web", "-n", EXAMPLES_NAMESPACE))


def _pod_of(workload: dict, namespace: str) -> dict:
    """A Pod as the workload's controller would make it (its template), in ``namespace``."""
    template = workload["spec"]["template"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": workload["metadata"]["name"], "namespace": namespace,
                         "labels": template["metadata"]["labels"]},
            "spec": template["spec"]}


def _workload(kind: str, name: str) -> dict:
    return one(kustomize(DAEMONSET), kind, name)


def _namespace_enforcing(cluster: LocalControlPlane, name: str, level: str, service_account: str) -> None:
    _ok(cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": level}}})))
    _ok(cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": service_account, "namespace": name}})))


def test_the_pods_are_admitted_in_nodemesh_system(cluster: LocalControlPlane) -> None:
    """Pod Security (privileged there), the priority class, the service accounts: what the
    Deployment's and the DaemonSet's pods meet when they are created."""
    for kind, name in (("Deployment", "nodemesh-controller"), ("DaemonSet", "nodemesh-agent")):
        pod = _pod_of(_workload(kind, name), NAMESPACE)
        _ok(cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod)))


def test_the_controller_meets_pod_security_restricted(cluster: LocalControlPlane) -> None:
    _namespace_enforcing(cluster, "restricted-check", "restricted", "nodemesh-controller")
    pod = _pod_of(_workload("Deployment", "nodemesh-controller"), "restricted-check")
    _ok(cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod)))


def test_the_agent_needs_pod_security_privileged(cluster: LocalControlPlane) -> None:
    """Why nodemesh-system is labelled privileged: baseline refuses the agent, naming what."""
    _namespace_enforcing(cluster, "baseline-check", "baseline", "nodemesh-agent")
    pod = _pod_of(_workload("DaemonSet", "nodemesh-agent"), "baseline-check")
    done = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod))
    assert done.returncode != 0
    for why in ("host namespaces", "hostPath volumes", "non-default capabilities"):
        assert why in done.stderr, done.stderr


def _with_spec(obj: dict, **spec: object) -> dict:
    return {**obj, "spec": {**obj["spec"], **spec}}


def _backends(*refs: dict) -> dict:
    return _with_spec(TCP_ROUTE, rules=[{"backendRefs": list(refs)}])


REFUSED = [
    # (the object, what the API server's message must say: the field, and why)
    (_with_spec(TRAFFIC_POLICY, connectRetries=-1), ["spec.connectRetries", "greater than or equal to 0"]),
    (_with_spec(TRAFFIC_POLICY, loadBalancer="Random"), ["spec.loadBalancer", "Unsupported value"]),
    (_with_spec(TRAFFIC_POLICY, connectTimeout="5"), ["spec.connectTimeout", "should match"]),
    (_with_spec(TRAFFIC_POLICY, idleTimeout="0s"), ["spec.idleTimeout", "longer than zero"]),  # CEL
    (_with_spec(TRAFFIC_POLICY, rateLimit={"connectionsPerSecond": 10, "burst": 0}),
     ["spec.rateLimit.burst", "greater than or equal to 1"]),
    (_with_spec(TRAFFIC_POLICY, rateLimit={"connectionsPerSecond": 0}),
     ["spec.rateLimit.connectionsPerSecond", "greater than 0"]),
    (_with_spec(TRAFFIC_POLICY, rateLimit={"burst": 5}), ["spec.rateLimit.connectionsPerSecond", "Required"]),
    (_with_spec(TRAFFIC_POLICY, targetRefs=[{"kind": "Service", "name": "web"}] * 2),
     ["spec.targetRefs", "each Service can be targeted once"]),  # CEL
    (_with_spec(TRAFFIC_POLICY, targetRefs=[{"kind": "Gateway", "name": "web"}]),
     ["spec.targetRefs[0].kind", "Unsupported value"]),
    (_with_spec(TRAFFIC_POLICY, targetRefs=[]), ["spec.targetRefs", "at least 1 items"]),
    (_with_spec(TRAFFIC_POLICY, circuitBreaker={"maxConections": 5}),  # strict field validation
     ['unknown field "spec.circuitBreaker.maxConections"']),
    (_backends({"name": "web-v1", "port": 80, "weight": -1}),
     ["spec.rules[0].backendRefs[0].weight", "greater than or equal to 0"]),
    (_backends({"name": "web-v1"}), ["spec.rules[0].backendRefs[0]", "Must have port for Service reference"]),
]


@pytest.mark.parametrize("obj, says", REFUSED, ids=[says[0] + ("" if len(says) == 1 else f": {says[1]}")
                                                    for _, says in REFUSED])
def test_a_bad_object_is_refused_naming_the_field(cluster: LocalControlPlane, obj: dict,
                                                  says: list[str]) -> None:
    done = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(obj))
    assert done.returncode != 0, f"accepted: {obj['spec']}"
    for text in says:
        assert text in done.stderr, done.stderr


def _can(cluster: LocalControlPlane, user: str, *request: str) -> bool:
    """``kubectl auth can-i`` as the service account, with the groups its tokens carry."""
    namespace = user.split(":")[2]
    done = cluster.kubectl("auth", "can-i", *request, f"--as={user}",
                           "--as-group=system:serviceaccounts",
                           f"--as-group=system:serviceaccounts:{namespace}",
                           "--as-group=system:authenticated")
    assert done.stdout.strip() in ("yes", "no"), done.stdout + done.stderr
    return done.stdout.strip() == "yes"


CONTROLLER_MAY = [
    *[(verb, kind, "--all-namespaces") for verb in ("list", "watch") for kind in (
        "namespaces", "pods", "services", "nodes", "endpointslices.discovery.k8s.io",
        "authorizationpolicies.security.istio.io", "trafficpolicies.nodemesh.io",
        "tcproutes.gateway.networking.k8s.io")],
    ("create", "tokenreviews.authentication.k8s.io"),
    ("get", "secret/nodemesh-ca", "-n", NAMESPACE),
    ("create", "secrets", "-n", NAMESPACE),
    ("patch", "configmap/nodemesh-ca-root", "-n", NAMESPACE),
    ("create", "configmaps", "-n", NAMESPACE),
]
CONTROLLER_MUST_NOT = [
    ("get", "secrets", "-n", "default"),
    ("get", "secret/nodemesh-ca", "-n", "kube-system"),
    ("list", "secrets", "-n", NAMESPACE),
    ("get", "secret/other", "-n", NAMESPACE),
    ("delete", "secret/nodemesh-ca", "-n", NAMESPACE),
    ("patch", "secret/nodemesh-ca", "-n", NAMESPACE),
    ("update", "secret/nodemesh-ca", "-n", NAMESPACE),
    ("get", "pods", "-n", "default"),
    ("update", "configmap/nodemesh-ca-root", "-n", NAMESPACE),
    ("create", "events", "-n", NAMESPACE),
    ("create", "secrets", "-n", "default"),
    ("get", "configmap/other", "-n", NAMESPACE),
    ("patch", "configmap/other", "-n", NAMESPACE),
    ("delete", "configmap/nodemesh-ca-root", "-n", NAMESPACE),
    ("create", "pods/exec", "-n", "default"),
    ("create", "deployments.apps", "-n", "default"),
    ("update", "daemonsets.apps", "-n", NAMESPACE),
    ("delete", "pods", "-n", "default"),
    ("create", "pods", "-n", NAMESPACE),
    ("update", "pods/status", "-n", "default"),
    ("patch", "nodes"),
    ("delete", "namespaces"),
    ("update", "trafficpolicies.nodemesh.io", "-n", "default"),
    ("create", "serviceaccounts/token", "-n", NAMESPACE),
    ("create", "rolebindings.rbac.authorization.k8s.io", "-n", NAMESPACE),
    ("escalate", "clusterroles.rbac.authorization.k8s.io"),
    ("impersonate", "serviceaccounts", "-n", NAMESPACE),
]
AGENT_MUST_NOT = [
    ("list", "pods", "--all-namespaces"),
    ("get", "pods", "-n", NAMESPACE),
    ("get", "secret/nodemesh-ca", "-n", NAMESPACE),
    ("get", "secrets", "-n", "default"),
    ("get", "configmap/nodemesh-ca-root", "-n", NAMESPACE),
    ("list", "nodes"),
    ("create", "tokenreviews.authentication.k8s.io"),
    ("create", "serviceaccounts/token", "-n", NAMESPACE),
    ("list", "trafficpolicies.nodemesh.io", "--all-namespaces"),
]


@pytest.mark.parametrize("request_", CONTROLLER_MAY, ids=" ".join)
def test_the_controller_may(cluster: LocalControlPlane, request_: tuple[str, ...]) -> None:
    assert _can(cluster, CONTROLLER, *request_)


@pytest.mark.parametrize("request_", CONTROLLER_MUST_NOT, ids=" ".join)
def test_the_controller_may_not(cluster: LocalControlPlane, request_: tuple[str, ...]) -> None:
    assert not _can(cluster, CONTROLLER, *request_)


@pytest.mark.parametrize("request_", AGENT_MUST_NOT, ids=" ".join)
def test_the_agent_may_not(cluster: LocalControlPlane, request_: tuple[str, ...]) -> None:
    assert not _can(cluster, AGENT, *request_)


def test_the_agent_may_only_what_every_account_may(cluster: LocalControlPlane) -> None:
    """Its rules are exactly those of any authenticated user (discovery, self reviews): the
    manifests grant it nothing."""
    nobody = "system:serviceaccount:default:nobody"

    def rules(user: str, namespace: str) -> list[str]:
        done = cluster.kubectl("auth", "can-i", "--list", "-n", namespace, f"--as={user}",
                               "--as-group=system:serviceaccounts", "--as-group=system:authenticated")
        return sorted(_ok(done).splitlines()[1:])

    assert rules(AGENT, NAMESPACE) == rules(nobody, NAMESPACE)


def test_helm_install_upgrade_and_uninstall(tmp_path: Path) -> None:
    """docs/install.md's `helm install`, for real (a cluster of its own: the chart makes the
    same cluster-wide objects as the base)."""
    helm = helm_bin()
    with LocalControlPlane(tmp_path / "kube", controllers=False) as cp:
        def run(*args: str) -> str:
            done = subprocess.run([str(helm), f"--kubeconfig={cp.admin_kubeconfig}", *args],
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            return done.stdout

        run("install", "nodemesh", str(CHART))
        deployment = json.loads(_ok(cp.kubectl("get", "deployment", "nodemesh-controller", "-n", NAMESPACE,
                                               "-o", "json")))
        assert "--log-level=info" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        _ok(cp.kubectl("get", "crd", "trafficpolicies.nodemesh.io"))

        run("upgrade", "nodemesh", str(CHART), "--set", "logLevel=debug")
        deployment = json.loads(_ok(cp.kubectl("get", "deployment", "nodemesh-controller", "-n", NAMESPACE,
                                               "-o", "json")))
        assert "--log-level=debug" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]

        run("uninstall", "nodemesh", "--wait=false")
        assert cp.kubectl("get", "deployment", "nodemesh-controller", "-n", NAMESPACE).returncode != 0
