"""Workload, canonical service and revision names, derived as Istio derives them."""

from __future__ import annotations

import pytest

from nodemesh.controller.kube.objects import ConfigError, parse_objects
from nodemesh.controller.model.workloads import canonical_revision, canonical_service, workload_name


def pod(name: str = "web-7d9f8c6b5-x2x4k", labels: dict[str, str] | None = None,
        owners: list[dict] | None = None):
    meta: dict = {"name": name, "namespace": "shop", "labels": labels or {}}
    if owners is not None:
        meta["ownerReferences"] = owners
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
           "spec": {"nodeName": "n1", "containers": [{"name": "c", "command": ["true"]}]}}
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
    return parse_objects([namespace, doc], "test").pods[0]


def rs(name: str, controller: bool = True) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": "u", "controller": controller}


@pytest.mark.parametrize("owners,labels,expected", [
    (None, {}, "web-7d9f8c6b5-x2x4k"),  # a bare pod is its own workload
    ([rs("web-7d9f8c6b5")], {"pod-template-hash": "7d9f8c6b5"}, "web"),  # Deployment
    ([rs("web-7d9f8c6b5")], {}, "web-7d9f8c6b5"),  # a ReplicaSet of its own: no template hash
    ([{"kind": "Job", "name": "backup-28930410", "controller": True}], {}, "backup"),  # CronJob
    ([{"kind": "Job", "name": "migrate", "controller": True}], {}, "migrate"),
    ([{"kind": "StatefulSet", "name": "db", "controller": True}], {}, "db"),
    # the controller wins over an owner listed before it
    ([rs("other", controller=False), {"kind": "DaemonSet", "name": "agent", "controller": True}], {}, "agent"),
    ([rs("first", controller=False)], {}, "first"),  # no controller: the first owner
])
def test_workload_name(owners, labels, expected):
    assert workload_name(pod(labels=labels, owners=owners)) == expected


def test_canonical_names_follow_istio_label_precedence():
    labels = {"service.istio.io/canonical-name": "cn", "app.kubernetes.io/name": "k8s", "app": "a",
              "service.istio.io/canonical-revision": "cr", "app.kubernetes.io/version": "kv", "version": "v"}
    p = pod(labels=labels)
    assert (canonical_service(p), canonical_revision(p)) == ("cn", "cr")
    del labels["service.istio.io/canonical-name"], labels["service.istio.io/canonical-revision"]
    p = pod(labels=labels)
    assert (canonical_service(p), canonical_revision(p)) == ("k8s", "kv")
    p = pod(labels={"app": "a", "version": "v"})
    assert (canonical_service(p), canonical_revision(p)) == ("a", "v")


def test_without_labels_the_service_is_the_workload_and_the_revision_latest():
    p = pod(labels={"pod-template-hash": "7d9f8c6b5"}, owners=[rs("web-7d9f8c6b5")])
    assert (canonical_service(p), canonical_revision(p)) == ("web", "latest")


def test_an_owner_reference_without_a_name_is_an_error_naming_the_field():
    with pytest.raises(ConfigError, match=r"metadata.ownerReferences\[0\]: kind and name are required"):
        pod(owners=[{"kind": "ReplicaSet"}])
