"""The shop the CA tests share: web on node n1 and db on n2, both meshed, and an unmeshed batch
pod on n1; as model objects (the CA's policy without a controller) and as the cluster YAML a
controller watches."""

from __future__ import annotations

from nodemesh.model import MeshModel, Workload

WEB = Workload(uid="u-web", name="web", namespace="shop", service_account="web", node="n1",
               ip="10.10.1.10", meshed=True, identity="spiffe://cluster.local/ns/shop/sa/web")
DB = Workload(uid="u-db", name="db", namespace="shop", service_account="db", node="n2",
              ip="10.10.2.10", meshed=True, identity="spiffe://cluster.local/ns/shop/sa/db")
LEGACY = Workload(uid="u-legacy", name="batch", namespace="legacy", service_account="default",
                  node="n1", ip="10.10.1.11", identity="spiffe://cluster.local/ns/legacy/sa/default")
MODEL = MeshModel(workloads={w.uid: w for w in (WEB, DB, LEGACY)}, services={}, nodes={})

CLUSTER = (  # web and db alone: a controller gives them uids of its own
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {nodemesh.io/mesh: enabled}}\n---\n"
    "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\n"
    "spec: {nodeName: n1, serviceAccountName: web, containers: [{name: c}]}\n---\n"
    "apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: shop}\n"
    "spec: {nodeName: n2, serviceAccountName: db, containers: [{name: c}]}\n"
)
