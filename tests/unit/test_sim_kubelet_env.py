"""The sim kubelet's container environment and argv: service links, fieldRefs, $(VAR) rules."""

import pytest

from nodemesh.tools.sim.kubelet.envvars import (
    PodSpecError,
    container_argv,
    container_env,
    field_value,
    service_links,
    visible_services,
)


def pod(**spec):
    return {"metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1",
                         "labels": {"app": "web"}},
            "spec": {"nodeName": "node-a", "serviceAccountName": "web", **spec},
            "status": {"podIP": "10.10.1.10", "hostIP": "172.30.0.1"}}


def service(ns, name, ip, *ports):
    return {"metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": ip, "ports": list(ports)}}


KUBERNETES = service("default", "kubernetes", "10.96.0.1", {"name": "https", "port": 443})


def test_service_links_are_named_as_the_kubelet_names_them():
    env = service_links([service("shop", "nodemesh-controller", "10.96.0.20",
                                 {"name": "grpc", "port": 15012}, {"name": "metrics", "port": 15014})])
    assert env["NODEMESH_CONTROLLER_SERVICE_HOST"] == "10.96.0.20"
    assert env["NODEMESH_CONTROLLER_SERVICE_PORT"] == "15012"  # the first port
    assert env["NODEMESH_CONTROLLER_SERVICE_PORT_GRPC"] == "15012"
    assert env["NODEMESH_CONTROLLER_SERVICE_PORT_METRICS"] == "15014"
    assert env["NODEMESH_CONTROLLER_PORT"] == "tcp://10.96.0.20:15012"
    assert env["NODEMESH_CONTROLLER_PORT_15014_TCP_ADDR"] == "10.96.0.20"


def test_headless_services_give_no_links():
    assert service_links([service("shop", "db", "None", {"port": 5432})]) == {}


def test_a_pod_sees_its_namespace_and_the_kubernetes_service_only():
    chosen = visible_services(pod(), [KUBERNETES, service("shop", "a", "10.96.0.5", {"port": 80}),
                                      service("other", "b", "10.96.0.6", {"port": 80})])
    assert [s["metadata"]["name"] for s in chosen] == ["kubernetes", "a"]
    without = visible_services(pod(enableServiceLinks=False),
                               [KUBERNETES, service("shop", "a", "10.96.0.5", {"port": 80})])
    assert [s["metadata"]["name"] for s in without] == ["kubernetes"]


@pytest.mark.parametrize("path,value", [
    ("metadata.name", "web-1"), ("metadata.namespace", "shop"), ("metadata.uid", "u-1"),
    ("spec.nodeName", "node-a"), ("spec.serviceAccountName", "web"),
    ("status.podIP", "10.10.1.10"), ("status.hostIP", "172.30.0.1"),
    ("metadata.labels['app']", "web"),
])
def test_field_refs(path, value):
    assert field_value(pod(), path) == value


def test_an_unknown_field_ref_is_refused_by_name():
    with pytest.raises(PodSpecError, match="metadata.generation"):
        field_value(pod(), "metadata.generation")


def test_env_values_expand_earlier_variables_and_keep_unknown_ones():
    container = {"name": "c", "env": [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "A", "value": "on-$(NODE_NAME)"},
        {"name": "B", "value": "$(LATER) $$(A) $(A)"},
        {"name": "LATER", "value": "x"},
    ]}
    env = container_env(pod(), container, [KUBERNETES], {"PATH": "/venv/bin:/usr/bin"})
    assert env["A"] == "on-node-a"
    assert env["B"] == "$(LATER) $(A) on-node-a"  # unknown stays, $$ escapes, known expands
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["PATH"] == "/venv/bin:/usr/bin"


def test_env_can_refer_to_service_links():
    container = {"name": "c", "env": [{"name": "API", "value": "$(KUBERNETES_SERVICE_HOST):443"}]}
    assert container_env(pod(), container, [KUBERNETES], {})["API"] == "10.96.0.1:443"


def test_argv_is_command_then_args_expanded():
    container = {"name": "agent", "command": ["nodemesh", "agent"],
                 "args": ["--node=$(NODE_NAME)", "--controller=$(H):$(P)", "$$(NODE_NAME)"]}
    argv = container_argv(pod(), container, {"NODE_NAME": "node-a", "H": "10.96.0.20", "P": "15012"})
    assert argv == ["nodemesh", "agent", "--node=node-a", "--controller=10.96.0.20:15012",
                    "$(NODE_NAME)"]


def test_a_container_without_command_is_refused():
    with pytest.raises(PodSpecError, match="container web: command is required"):
        container_argv(pod(), {"name": "web", "args": ["x"]}, {})


def test_secret_key_refs_are_refused_with_the_field_named():
    container = {"name": "c", "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "s",
                                                                                   "key": "k"}}}]}
    with pytest.raises(PodSpecError, match="env T: only valueFrom.fieldRef"):
        container_env(pod(), container, [], {})
