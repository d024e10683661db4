"""The manifests in daemonset/, offline: valid Kubernetes objects (kubernetes-validate, strict,
for the release the tests' API server is), exactly the shared contract the simulated kubelet
runs (issue 11: a drift between the manifests and the sim must break a test), least-privilege
RBAC, CRD schemas that agree with the controller's parsers, and a Helm chart that renders the
same objects as the kustomize base.

What only a real API server can say (the CRDs accepted, CEL compiling, what each account may
do) is tests/integration/test_manifests_apply.py.
"""

from __future__ import annotations

import copy
import subprocess
import tomllib
from typing import Any, Callable, Iterator

import jsonschema
import kubernetes_validate
import pytest
import yaml

from nodemesh.controller.kube.authz import parse_authorization_policy
from nodemesh.controller.kube.fields import Fields
from nodemesh.controller.kube.traffic import parse_tcp_route, parse_traffic_policy
from manifests import (CHART, DAEMONSET, NAMESPACE, ROOT, THIRD_PARTY, by_key, helm_bin,
                             helm_template, kube_release, kustomize, one)

CONTROLLER_SA = f"system:serviceaccount:{NAMESPACE}:nodemesh-controller"


@pytest.fixture(scope="module")
def base() -> list[dict]:
    return kustomize(DAEMONSET)


@pytest.fixture(scope="module")
def third_party() -> list[dict]:
    return kustomize(THIRD_PARTY)


def _pod_spec(objects: list[dict], kind: str, name: str) -> dict:
    return one(objects, kind, name)["spec"]["template"]["spec"]


def _container(objects: list[dict], kind: str, name: str) -> dict:
    (container,) = _pod_spec(objects, kind, name)["containers"]
    return container


def _crd_schema(objects: list[dict], name: str, version: str) -> dict:
    crd = one(objects, "CustomResourceDefinition", name)
    (found,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return found["schema"]["openAPIV3Schema"]


# --- valid objects ---------------------------------------------------------------------------

def test_the_base_holds_the_contracts_objects(base: list[dict]) -> None:
    assert sorted(by_key(base)) == sorted([
        ("Namespace", "", NAMESPACE),
        ("CustomResourceDefinition", "", "trafficpolicies.nodemesh.io"),
        ("ServiceAccount", NAMESPACE, "nodemesh-controller"),
        ("ServiceAccount", NAMESPACE, "nodemesh-agent"),
        ("ClusterRole", "", "nodemesh-controller"),
        ("ClusterRoleBinding", "", "nodemesh-controller"),
        ("Role", NAMESPACE, "nodemesh-controller"),
        ("RoleBinding", NAMESPACE, "nodemesh-controller"),
        ("Service", NAMESPACE, "nodemesh-controller"),
        ("Deployment", NAMESPACE, "nodemesh-controller"),
        ("PodDisruptionBudget", NAMESPACE, "nodemesh-controller"),
        ("DaemonSet", NAMESPACE, "nodemesh-agent"),
    ])


def test_third_party_crds_are_apart_from_the_base(base: list[dict], third_party: list[dict]) -> None:
    """Applying the base must never replace a cluster's own Istio or Gateway API CRDs."""
    assert sorted(o["metadata"]["name"] for o in third_party) == [
        "authorizationpolicies.security.istio.io", "tcproutes.gateway.networking.k8s.io"]
    groups = {o["spec"]["group"] for o in base if o["kind"] == "CustomResourceDefinition"}
    assert groups == {"nodemesh.io"}


def test_every_object_is_valid_for_the_api_servers_release_strictly(
        base: list[dict], third_party: list[dict]) -> None:
    """Strict: an unknown or misspelt field (``capabilites``) is an error, not silently dropped.
    The CRDs are checked as apiextensions.k8s.io/v1 objects, their schemas' keywords included."""
    release = kube_release()
    want = kubernetes_validate.utils.major_minor(release)
    for obj in base + third_party:
        used = kubernetes_validate.validate(obj, release, strict=True)
        assert used == want, (f"kubernetes-validate has no schemas for Kubernetes {want} (it used "
                              f"{used}): upgrade it")


def test_strict_validation_can_fail(base: list[dict]) -> None:
    daemonset = copy.deepcopy(one(base, "DaemonSet", "nodemesh-agent"))
    daemonset["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilites"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="capabilites"):
        kubernetes_validate.validate(daemonset, kube_release(), strict=True)


def test_everything_namespaced_is_in_nodemesh_system(base: list[dict]) -> None:
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for obj in base:
        namespace = obj["metadata"].get("namespace")
        assert namespace == (None if obj["kind"] in cluster_scoped else NAMESPACE), obj["kind"]


def test_the_image_is_the_packages_version(base: list[dict]) -> None:
    """One image for both, tagged with the package's version, which the chart's appVersion and
    default tag say too."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    image = f"ghcr.io/nodemesh/nodemesh:{version}"
    assert _container(base, "Deployment", "nodemesh-controller")["image"] == image
    assert _container(base, "DaemonSet", "nodemesh-agent")["image"] == image
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert str(chart["appVersion"]) == version
    assert f"{values['image']['repository']}:{values['image']['tag']}" == image


def test_the_image_runs_the_controller_as_the_deployment_says(base: list[dict]) -> None:
    """The Containerfile's user is the controller's runAsUser (runAsNonRoot needs a number the
    kubelet can check), and it installs what the agent imports from Debian."""
    containerfile = (ROOT / "Containerfile").read_text()
    user = _pod_spec(base, "Deployment", "nodemesh-controller")["securityContext"]["runAsUser"]
    assert f"USER {user}:" in containerfile and f"--uid {user} " in containerfile
    assert "python3-bpfcc" in containerfile and "--system-site-packages" in containerfile


# --- the shared contract (what the sim kubelet runs unchanged) -------------------------------

def test_namespace_allows_the_agent_and_is_not_meshed(base: list[dict]) -> None:
    labels = one(base, "Namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert "nodemesh.io/mesh" not in labels and "istio.io/dataplane-mode" not in labels


def test_controller_container_is_the_contracts(base: list[dict]) -> None:
    container = _container(base, "Deployment", "nodemesh-controller")
    assert container["command"] == ["nodemesh", "controller"]
    assert container["args"] == [
        "--kube", "--listen=0.0.0.0:15012", "--metrics-listen=0.0.0.0:15014",
        "--server-name=nodemesh-controller.nodemesh-system.svc", "--trust-domain=cluster.local",
        "--log-level=info"]
    assert container["env"] == [
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    assert "volumeMounts" not in container  # only the API token the kubelet mounts


def test_controller_deployment_and_service(base: list[dict]) -> None:
    deployment = one(base, "Deployment", "nodemesh-controller")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "nodemesh-controller"
    assert pod.get("automountServiceAccountToken", True)  # it reads the API with it
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]

    service = one(base, "Service", "nodemesh-controller")
    # grpc first: the agents dial $(NODEMESH_CONTROLLER_SERVICE_PORT), the first port
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [("grpc", 15012), ("metrics", 15014)]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    ports = {p["name"]: p["containerPort"] for p in _container(base, "Deployment", "nodemesh-controller")["ports"]}
    assert ports == {"grpc": 15012, "metrics": 15014}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)

    pdb = one(base, "PodDisruptionBudget", "nodemesh-controller")
    assert pdb["spec"] == {"minAvailable": 1, "selector": deployment["spec"]["selector"]}


def test_controller_probes_use_a_port_it_listens_on(base: list[dict]) -> None:
    """It serves no health endpoint: accepting on its gRPC port is the check."""
    container = _container(base, "Deployment", "nodemesh-controller")
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["tcpSocket"] == {"port": "grpc"}


def test_controller_runs_unprivileged(base: list[dict]) -> None:
    pod = _pod_spec(base, "Deployment", "nodemesh-controller")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = pod["containers"][0]["securityContext"]
    assert context == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                       "capabilities": {"drop": ["ALL"]}}
    resources = pod["containers"][0]["resources"]
    assert set(resources) == {"requests", "limits"} and "memory" in resources["limits"]
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and "volumes" not in pod


def test_agent_container_is_the_contracts(base: list[dict]) -> None:
    container = _container(base, "DaemonSet", "nodemesh-agent")
    assert container["command"] == ["nodemesh", "agent"]
    assert container["args"] == [
        "--node=$(NODE_NAME)",
        "--controller=$(NODEMESH_CONTROLLER_SERVICE_HOST):$(NODEMESH_CONTROLLER_SERVICE_PORT)",
        "--controller-name=nodemesh-controller.nodemesh-system.svc",
        "--controller-ca=/var/run/nodemesh/ca/root-cert.pem",
        "--token-file=/var/run/secrets/nodemesh/token", "--pod-netns-from=cgroup",
        "--log-level=info"]
    assert container["env"] == [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": 15021}


def test_agent_pod_is_the_contracts(base: list[dict]) -> None:
    pod = _pod_spec(base, "DaemonSet", "nodemesh-agent")
    assert pod["hostNetwork"] is True and pod["hostPID"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["serviceAccountName"] == "nodemesh-agent"
    assert pod["automountServiceAccountToken"] is False  # only the projected nodemesh token
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["terminationGracePeriodSeconds"] == 30
    strategy = one(base, "DaemonSet", "nodemesh-agent")["spec"]["updateStrategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}


def _mounts(objects: list[dict]) -> dict[str, tuple[dict, dict]]:
    """mount path -> (its volume, its mount) of the agent's container."""
    pod = _pod_spec(objects, "DaemonSet", "nodemesh-agent")
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = pod["containers"][0]["volumeMounts"]
    assert len(volumes) == len(mounts), "every volume mounted once"
    return {m["mountPath"]: (volumes[m["name"]], m) for m in mounts}


def test_agent_volumes_are_the_contracts(base: list[dict]) -> None:
    mounts = _mounts(base)
    host_paths = {path: volume["hostPath"]["path"] for path, (volume, _) in mounts.items()
                  if "hostPath" in volume}
    # bpffs, the cgroup root, and the kernel headers bcc compiles against; no /proc (hostPID makes
    # it the node's, where pods' network namespaces are opened as /proc/<pid>/ns/net)
    assert host_paths == {"/sys/fs/bpf": "/sys/fs/bpf", "/sys/fs/cgroup": "/sys/fs/cgroup",
                          "/lib/modules": "/lib/modules", "/usr/src": "/usr/src"}
    for read_only in ("/lib/modules", "/usr/src", "/sys/fs/cgroup"):
        assert mounts[read_only][1]["readOnly"] is True
    assert not mounts["/sys/fs/bpf"][1].get("readOnly")  # the capture's links are pinned there

    ca, _ = mounts["/var/run/nodemesh/ca"]
    assert ca["configMap"] == {"name": "nodemesh-ca-root"}
    token, _ = mounts["/var/run/secrets/nodemesh"]
    assert token["projected"] == {"defaultMode": 0o400, "sources": [{"serviceAccountToken": {
        "audience": "nodemesh", "expirationSeconds": 3600, "path": "token"}}]}


def test_agent_has_only_the_capabilities_it_needs(base: list[dict]) -> None:
    context = _container(base, "DaemonSet", "nodemesh-agent")["securityContext"]
    assert context["privileged"] is False
    assert context["capabilities"] == {
        "drop": ["ALL"], "add": ["SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


# --- RBAC: least privilege -------------------------------------------------------------------

def _rules(objects: list[dict], kind: str) -> list[dict]:
    return one(objects, kind, "nodemesh-controller")["rules"]


def _grants(rules: list[dict]) -> set[tuple[str, str, str, str]]:
    """(api group, resource, verb, resource name or "") for every combination a rule allows."""
    return {(group, resource, verb, name)
            for rule in rules for group in rule["apiGroups"] for resource in rule["resources"]
            for verb in rule["verbs"] for name in rule.get("resourceNames", [""])}


def test_no_wildcards_anywhere(base: list[dict]) -> None:
    for kind in ("ClusterRole", "Role"):
        for group, resource, verb, name in _grants(_rules(base, kind)):
            assert "*" not in (group, resource, verb, name), (kind, group, resource, verb)


def test_controller_cluster_role_only_reads_and_reviews_tokens(base: list[dict]) -> None:
    read = {"list", "watch"}  # collections only: the source never gets one object
    expected = {(group, resource, verb, "") for group, resource in [
        ("", "namespaces"), ("", "pods"), ("", "services"), ("", "nodes"),
        ("discovery.k8s.io", "endpointslices"), ("security.istio.io", "authorizationpolicies"),
        ("nodemesh.io", "trafficpolicies"), ("gateway.networking.k8s.io", "tcproutes")]
        for verb in read}
    expected.add(("authentication.k8s.io", "tokenreviews", "create", ""))
    assert _grants(_rules(base, "ClusterRole")) == expected


def test_controller_role_touches_only_the_ca_objects(base: list[dict]) -> None:
    role = one(base, "Role", "nodemesh-controller")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert _grants(role["rules"]) == {
        ("", "secrets", "get", "nodemesh-ca"), ("", "configmaps", "patch", "nodemesh-ca-root"),
        # create cannot be limited by name (rbac.yaml says why)
        ("", "secrets", "create", ""), ("", "configmaps", "create", ""),
    }


def test_only_the_controller_is_bound(base: list[dict]) -> None:
    """The agent has no RBAC: it talks only to the controller."""
    bindings = [o for o in base if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert {(b["kind"], b["roleRef"]["kind"], b["roleRef"]["name"]) for b in bindings} == {
        ("ClusterRoleBinding", "ClusterRole", "nodemesh-controller"),
        ("RoleBinding", "Role", "nodemesh-controller")}
    for binding in bindings:
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "nodemesh-controller",
                                        "namespace": NAMESPACE}]
    agent_sa = one(base, "ServiceAccount", "nodemesh-agent")
    assert agent_sa["automountServiceAccountToken"] is False


# --- CRD schemas and the controller's parsers agree ------------------------------------------

Parser = Callable[[dict, Fields], Any]


def _parser_errors(parse: Parser, doc: dict) -> list[str]:
    errors: list[str] = []
    parse(doc, Fields("object", errors))
    return errors


def _schema_errors(schema: dict, doc: dict) -> list[str]:
    """What the schema's OpenAPI keywords refuse (CEL rules are the API server's: integration)."""
    return [e.message for e in jsonschema.Draft4Validator(schema).iter_errors(doc)]


def _leaves(schema: dict, path: tuple) -> Iterator[tuple[tuple, dict]]:
    if schema.get("type") == "object":
        for name, child in schema.get("properties", {}).items():
            yield from _leaves(child, (*path, name))
    elif schema.get("type") == "array":
        yield from _leaves(schema["items"], (*path, 0))
    else:
        yield path, schema


def _samples(leaf: dict) -> Iterator[tuple[Any, bool]]:
    """(value, valid?) at a leaf's edges: its bounds, its enum, its duration syntax."""
    if "enum" in leaf:
        yield from ((value, True) for value in leaf["enum"])
        yield "Other", False
    elif leaf.get("pattern", "").startswith("^([0-9]+(ms|s|m|h|d))+$"):
        # within both ejection times' defaults, 10s and 5m: alone, each must fit the other's
        yield from (("10000ms", True), ("4m30s", True), ("10", False), ("1.5s", False))
    elif leaf["type"] in ("integer", "number") and "minimum" in leaf:
        low, high = leaf["minimum"], leaf.get("maximum")
        if leaf.get("exclusiveMinimum"):
            yield from ((low, False), (low + 0.5, True))
        else:
            yield from ((low, True), (low - 1, False))
        if high is not None:
            yield from ((high, True), (high + 1, False))


def _with(doc: dict, path: tuple, value: Any) -> dict:
    changed = copy.deepcopy(doc)
    node = changed
    for key, next_key in zip(path, path[1:]):
        if isinstance(node, list) and key >= len(node):
            node.append({})
        node = node.setdefault(key, [] if isinstance(next_key, int) else {}) \
            if isinstance(node, dict) else node[key]
    node[path[-1]] = value
    return changed


TRAFFIC_POLICY = {"apiVersion": "nodemesh.io/v1alpha1", "kind": "TrafficPolicy",
                  "metadata": {"name": "web", "namespace": "shop"},
                  "spec": {"targetRefs": [{"kind": "Service", "name": "web"}],
                           "rateLimit": {"connectionsPerSecond": 5}}}
TCP_ROUTE = {"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "TCPRoute",
             "metadata": {"name": "split", "namespace": "shop"},
             "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "web", "port": 80}],
                      # two backends: a weight of 0 on the first leaves the second's
                      "rules": [{"backendRefs": [{"name": "v1", "port": 80, "weight": 1},
                                                 {"name": "v2", "port": 80}]}]}}


@pytest.mark.parametrize("crd, version, doc, parse", [
    ("trafficpolicies.nodemesh.io", "v1alpha1", TRAFFIC_POLICY, parse_traffic_policy),
    ("tcproutes.gateway.networking.k8s.io", "v1alpha2", TCP_ROUTE, parse_tcp_route),
], ids=["TrafficPolicy", "TCPRoute"])
def test_schema_and_parser_agree_at_every_bound(base: list[dict], third_party: list[dict], crd: str,
                                                version: str, doc: dict, parse: Parser) -> None:
    """Every field the schema gives is one the parser knows, and at each bound, enum value and
    duration form both accept or both refuse: the API server refuses at apply time exactly
    what the controller would report later."""
    schema = _crd_schema(base + third_party, crd, version)
    assert not _schema_errors(schema, doc) and not _parser_errors(parse, doc)
    checked = 0
    for path, leaf in _leaves(schema["properties"]["spec"], ("spec",)):
        for value, valid in _samples(leaf):
            changed = _with(doc, path, value)
            schema_ok = not _schema_errors(schema, changed)
            parser_ok = not _parser_errors(parse, changed)
            assert (schema_ok, parser_ok) == (valid, valid), (path, value, _parser_errors(parse, changed))
            checked += 1
    assert checked >= 10


def test_authorization_policy_schema_names_only_what_the_parser_knows(third_party: list[dict]) -> None:
    """Each of the schema's source and operation fields is one the controller reads (or
    reports as L7-only), not one it would call unknown; v1 and v1beta1 are the same schema."""
    name = "authorizationpolicies.security.istio.io"
    schema = _crd_schema(third_party, name, "v1")
    assert _crd_schema(third_party, name, "v1beta1") == schema
    rule = schema["properties"]["spec"]["properties"]["rules"]["items"]["properties"]
    source = rule["from"]["items"]["properties"]["source"]["properties"]
    operation = rule["to"]["items"]["properties"]["operation"]["properties"]
    policy = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
              "metadata": {"name": "p", "namespace": "shop"}, "spec": {"rules": [{}]}}
    cases = [(("from", 0, "source", field), ["10.0.0.0/8" if "Ip" in field else "a/*"])
             for field in source]
    cases += [(("to", 0, "operation", field), ["80" if "orts" in field else "x"]) for field in operation]
    for path, value in cases:
        errors = _parser_errors(parse_authorization_policy, _with(policy, ("spec", "rules", 0, *path), value))
        assert not [e for e in errors if "unknown field" in e], (path, errors)
    assert _parser_errors(parse_authorization_policy,
                          _with(policy, ("spec", "rules", 0, "from", 0, "source", "principal"), ["a"]))


# --- the Helm chart renders the base ---------------------------------------------------------

@pytest.fixture(scope="module")
def helm() -> Any:
    return helm_bin()


def test_helm_chart_with_defaults_renders_the_base(helm: Any, base: list[dict]) -> None:
    assert by_key(helm_template(helm, kube_version=kube_release())) == by_key(base)


def test_helm_values_change_only_their_fields(helm: Any, base: list[dict]) -> None:
    rendered = helm_template(
        helm, "image.repository=registry.example/mesh", "image.tag=9.9.9", "image.pullPolicy=Always",
        "trustDomain=example.org", "logLevel=debug", "controller.replicas=3",
        "controller.resources.limits.memory=1Gi", "agent.resources.requests.cpu=250m",
        kube_version=kube_release())
    expected = by_key(copy.deepcopy(base))
    deployment = expected[("Deployment", NAMESPACE, "nodemesh-controller")]
    deployment["spec"]["replicas"] = 3
    controller = deployment["spec"]["template"]["spec"]["containers"][0]
    controller["args"] = [a.replace("cluster.local", "example.org").replace("=info", "=debug")
                          for a in controller["args"]]
    controller["resources"]["limits"]["memory"] = "1Gi"
    agent = expected[("DaemonSet", NAMESPACE, "nodemesh-agent")]["spec"]["template"]["spec"]["containers"][0]
    agent["args"] = [a.replace("=info", "=debug") for a in agent["args"]]
    agent["resources"]["requests"]["cpu"] = "250m"
    for container in (controller, agent):
        container["image"] = "registry.example/mesh:9.9.9"
        container["imagePullPolicy"] = "Always"
    assert by_key(rendered) == expected


def test_helm_chart_lints_strictly(helm: Any) -> None:
    out = subprocess.run([str(helm), "lint", "--strict", str(CHART)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
