"""Parsing Kubernetes YAML into typed objects, and every way it can be refused."""

from __future__ import annotations

import textwrap

import pytest

from nodemesh.controller.kube.objects import (
    ConfigError,
    ContainerPort,
    ServicePortSpec,
    load_file,
    parse_documents,
    parse_objects,
)

GOOD = """
apiVersion: v1
kind: Namespace
metadata: {name: demo, labels: {nodemesh.io/mesh: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: demo, uid: 1111-2222, labels: {app: client}}
spec:
  nodeName: node-a
  serviceAccountName: buyer
  containers:
    - name: main
      command: [python3, -m, app]
      args: ["--port", "8080"]
      env: [{name: MODE, value: fast}, {name: EMPTY}]
      ports: [{containerPort: 8080, name: http}, {containerPort: 53, protocol: UDP, name: dns}]
status: {podIP: 10.10.1.20}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  selector: {app: web}
  clusterIP: 10.96.0.50
  ports: [{name: http, port: 80, targetPort: http}, {name: admin, port: 9000}]
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_documents(textwrap.dedent(text), "test.yaml")
    return info.value.errors


def pod(spec: str = "nodeName: n1\n  containers: [{name: c}]", meta: str = "{name: p}",
        extra: str = "") -> str:
    return f"apiVersion: v1\nkind: Pod\nmetadata: {meta}\nspec:\n  {spec}\n{extra}"


def service(spec: str, meta: str = "{name: s}") -> str:
    return f"apiVersion: v1\nkind: Service\nmetadata: {meta}\nspec:\n  {spec}\n"


def test_parses_every_field_the_mesh_reads():
    objs = parse_documents(GOOD, "test.yaml")
    (ns,) = objs.namespaces
    assert ns.name == "demo" and ns.meshed
    (p,) = objs.pods
    assert (p.namespace, p.name, p.uid, p.node_name, p.service_account, p.pod_ip) == (
        "demo", "client", "1111-2222", "node-a", "buyer", "10.10.1.20")
    assert p.labels == {"app": "client"}
    (c,) = p.containers
    assert (c.name, c.command, c.args) == ("main", ["python3", "-m", "app"], ["--port", "8080"])
    assert c.env == {"MODE": "fast", "EMPTY": ""}
    assert c.ports == (ContainerPort(8080, "http"),)  # the UDP port is not the mesh's business
    (s,) = objs.services
    assert (s.namespace, s.name, s.cluster_ip, s.selector) == ("demo", "web", "10.96.0.50",
                                                               {"app": "web"})
    assert s.ports == (ServicePortSpec("http", 80, "http"), ServicePortSpec("admin", 9000, 9000))


def test_defaults_namespace_service_account_and_uid():
    (p,) = parse_documents(pod(), "t").pods
    assert (p.namespace, p.service_account, p.uid, p.pod_ip) == ("default", "default", None, None)


def test_kind_list_and_empty_documents():
    text = "---\n---\napiVersion: v1\nkind: List\nitems:\n" + textwrap.indent(
        "- " + pod().replace("\n", "\n  ") + "\n- " + pod(meta="{name: q}").replace("\n", "\n  "), "  ")
    assert [p.name for p in parse_documents(text, "t").pods] == ["p", "q"]


def test_api_shaped_dicts_parse_without_yaml():
    """What a Kubernetes API source will hand over."""
    objs = parse_objects([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}], "api")
    assert objs.namespaces[0].name == "x" and not objs.namespaces[0].meshed


def test_bad_yaml_names_the_line():
    (message,) = errors_of("apiVersion: v1\nkind: Pod\nmetadata: {name: [x\n")
    assert message.startswith("test.yaml: line 4") and "invalid YAML" in message


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match=r"missing.yaml: cannot read: No such file"):
        load_file(tmp_path / "missing.yaml")


def test_load_file_reads_and_names_the_path(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(pod(spec="containers: [{name: c}]"))
    with pytest.raises(ConfigError, match=r"Pod default/p: spec.nodeName: required"):
        load_file(path)


@pytest.mark.parametrize("text, expected", [
    ("apiVersion: v1\nkind: Deployment\nmetadata: {name: d, namespace: demo}\n",
     "Deployment demo/d: kind: unsupported kind 'Deployment'"),
    ("apiVersion: v1\nmetadata: {name: d}\n", "test.yaml document 1: kind: required"),
    ("- just\n- a list\n", "test.yaml document 1: expected a Kubernetes object"),
    ("apiVersion: apps/v1\nkind: Namespace\nmetadata: {name: n}\n",
     "Namespace n: apiVersion: must be v1"),
    ("apiVersion: v1\nkind: Namespace\nmetadata: {}\n", "Namespace (test.yaml document 1): metadata.name: required"),
    ("apiVersion: v1\nkind: Namespace\nmetadata: {name: Bad_Name}\n",
     "Namespace Bad_Name: metadata.name: 'Bad_Name' is not a valid namespace name"),
    ("apiVersion: v1\nkind: Namespace\nmetadata: {name: n, labels: {a: true}}\n",
     "Namespace n: metadata.labels.a: must be a string, got True (quote it)"),
    ("apiVersion: v1\nkind: List\nitems: [7]\n", "List (test.yaml document 1): items[0]: expected"),
    (pod(spec="containers: [{name: c}]"), "Pod default/p: spec.nodeName: required"),
    (pod(spec="nodeName: n1"), "Pod default/p: spec.containers: required"),
    (pod(spec="nodeName: n1\n  containers: [{command: [x]}]"),
     "Pod default/p: spec.containers[0].name: required"),
    (pod(spec="nodeName: n1\n  containers: [{name: c, args: [1]}]"),
     "Pod default/p: spec.containers[0].args[0]: must be a string, got 1"),
    (pod(spec="nodeName: n1\n  containers: [{name: c, env: [{name: A, valueFrom: {}}]}]"),
     "Pod default/p: spec.containers[0].env[0].valueFrom: not supported"),
    (pod(spec="nodeName: n1\n  containers: [{name: c, ports: [{containerPort: 0}]}]"),
     "Pod default/p: spec.containers[0].ports[0].containerPort: port 0 is out of range"),
    (pod(extra="status: {podIP: 10.10.1.300}"),
     "Pod default/p: status.podIP: '10.10.1.300' is not an IPv4 address"),
    (pod(meta="{name: p, namespace: ghost}"),
     "Pod ghost/p: metadata.namespace: namespace 'ghost' is not defined (add a Namespace"),
    (pod() + "---\n" + pod(), "Pod default/p: metadata.name: defined twice (test.yaml document 1 "
                              "and test.yaml document 2)"),
    (pod(meta="{name: p, uid: u}") + "---\n" + pod(meta="{name: q, uid: u}"),
     "Pod default/q: metadata.uid: 'u' is also the uid of Pod default/p"),
    (service("ports: [{port: http}]"),
     "Service default/s: spec.ports[0].port: must be a number between 1 and 65535, got 'http'"),
    (service("ports: [{port: '80'}]"),
     "Service default/s: spec.ports[0].port: must be a number between 1 and 65535, got '80'"),
    (service("ports: [{port: 70000}]"), "Service default/s: spec.ports[0].port: port 70000 is out of range"),
    (service("ports: [{port: 80, targetPort: 0}]"),
     "Service default/s: spec.ports[0].targetPort: port 0 is out of range"),
    (service("ports: [{port: 80, targetPort: '8080'}]"),
     "Service default/s: spec.ports[0].targetPort: must be a number or a container port name"),
    (service("ports: [{port: 80, protocol: UDP}]"),
     "Service default/s: spec.ports[0].protocol: only TCP is supported, got 'UDP'"),
    (service("ports: [{port: 80}, {port: 81}]"),
     "Service default/s: spec.ports[0].name: required when a service has more than one port"),
    (service("ports: [{name: a, port: 80}, {name: b, port: 80}]"),
     "Service default/s: spec.ports: port 80 is used twice"),
    (service("selector: {}"), "Service default/s: spec.ports: required"),
    (service("clusterIP: 10.96.1\n  ports: [{port: 80}]"),
     "Service default/s: spec.clusterIP: '10.96.1' is not an IPv4 address"),
    (service("clusterIP: None\n  ports: [{port: 80}]"),
     "Service default/s: spec.clusterIP: headless services (None) are not supported"),
    (service("type: ExternalName\n  externalName: db.example.com"),
     "Service default/s: spec.type: ExternalName services are not supported"),
    (service("selector: [app]\n  ports: [{port: 80}]"),
     "Service default/s: spec.selector: must be a mapping, got a list"),
    (service("ports: [{port: 80}]", meta="{name: 9s}"),
     "Service default/9s: metadata.name: '9s' is not a valid service name"),
])
def test_each_problem_names_object_and_field(text, expected):
    assert any(message.startswith(expected) for message in errors_of(text)), errors_of(text)


def test_a_pending_pod_needs_a_node_in_a_file_too():
    text = pod(spec="containers: [{name: c}]") + "status: {phase: Pending}\n"
    assert errors_of(text) == ["Pod default/p: spec.nodeName: required (the node the pod runs on)"]


def test_all_problems_are_collected():
    text = pod(spec="containers: [{name: c}]") + "---\n" + service("ports: [{port: x}]")
    assert errors_of(text) == [
        "Pod default/p: spec.nodeName: required (the node the pod runs on)",
        "Service default/s: spec.ports[0].port: must be a number between 1 and 65535, got 'x'",
    ]
