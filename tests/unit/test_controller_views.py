"""Per-node views, diffs, update messages and one agent's session (all without IO)."""

from __future__ import annotations

from dataclasses import replace

from nodemesh.api import mesh_pb2 as pb
from nodemesh.controller.stream.session import AckResult, AgentSession, Rejection
from nodemesh.controller.stream.views import Delta, diff, node_view, to_update
from nodemesh.model import MeshModel, Node, Service, ServicePort, Workload


def workload(uid: str, node: str, meshed: bool = False) -> Workload:
    return Workload(uid=uid, name=uid, namespace="ns", service_account="default", node=node,
                    ip=f"10.10.1.{len(uid) + 10}", meshed=meshed)


MESHED_REMOTE = workload("meshed", "n2", meshed=True)
LOCAL_PLAIN = workload("local", "n1")
REMOTE_PLAIN = workload("remote", "n2")
REMOTE_ENDPOINT = workload("backend", "n2")
SERVICE = Service(name="svc", namespace="ns", vip="10.96.0.10",
                  ports=(ServicePort("http", 80, 8080),), endpoints=("backend",))
NODES = {"n1": Node("n1", "172.30.0.1", "10.10.1.0/24"), "n2": Node("n2", "172.30.0.2", "10.10.2.0/24")}
MODEL = MeshModel(
    workloads={w.uid: w for w in (MESHED_REMOTE, LOCAL_PLAIN, REMOTE_PLAIN, REMOTE_ENDPOINT)},
    services={SERVICE.key: SERVICE}, nodes=NODES)


def test_view_holds_meshed_local_and_endpoint_workloads_and_everything_else():
    view = node_view(MODEL, "n1")
    assert set(view.workloads) == {"meshed", "local", "backend"}  # not the remote plain pod
    assert set(node_view(MODEL, "n2").workloads) == {"meshed", "remote", "backend"}
    assert view.services == MODEL.services and view.nodes == MODEL.nodes


def test_diff_from_empty_is_everything_and_from_itself_nothing():
    full = diff(MeshModel.empty(), MODEL)
    assert [w.uid for w in full.workloads] == sorted(MODEL.workloads)
    assert full.services == (SERVICE,) and full.nodes == tuple(NODES.values())
    assert not full.removed_workloads
    assert not diff(MODEL, MODEL) and diff(MODEL, MODEL) == Delta()


def test_diff_has_changes_and_removals_only():
    moved = replace(LOCAL_PLAIN, ip="10.10.1.99")
    new = MeshModel(workloads={"local": moved, "meshed": MESHED_REMOTE}, services={},
                    nodes={"n1": NODES["n1"]})
    delta = diff(MODEL, new)
    assert delta.workloads == (moved,)
    assert delta.removed_workloads == ("backend", "remote")
    assert delta.removed_services == ("ns/svc",) and delta.removed_nodes == ("n2",)
    assert not delta.services and not delta.nodes


def test_update_message_carries_the_delta():
    update = to_update(diff(MeshModel.empty(), MODEL), 7, snapshot=True)
    assert (update.version, update.snapshot) == (7, True)
    assert [w.uid for w in update.workloads] == sorted(MODEL.workloads)
    assert update.services[0].ports[0].target_port == 8080
    assert list(update.services[0].endpoints) == ["backend"]
    assert [n.name for n in update.nodes] == ["n1", "n2"]


BUNDLE = b"-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n"


def test_session_sends_snapshot_then_deltas_of_its_own_view_only():
    session = AgentSession(node="n1", peer="p")
    first = session.update_for(1, MODEL, BUNDLE)
    assert first.snapshot and first.version == 1 and len(first.workloads) == 3
    assert first.trust_bundle_pem == BUNDLE
    # a change to a pod n1 does not see: nothing to send
    hidden = MeshModel(workloads={**MODEL.workloads, "remote": replace(REMOTE_PLAIN, ip="10.10.2.99")},
                       services=MODEL.services, nodes=NODES)
    assert session.update_for(2, hidden, BUNDLE) is None
    # a change it does see: a delta with just that, at the new version
    seen = MeshModel(workloads={**hidden.workloads, "local": replace(LOCAL_PLAIN, labels={"a": "b"})},
                     services=MODEL.services, nodes=NODES)
    delta = session.update_for(3, seen, BUNDLE)
    assert (delta.version, delta.snapshot) == (3, False)
    assert [w.uid for w in delta.workloads] == ["local"] and not delta.removed_workloads
    assert delta.trust_bundle_pem == b""  # unchanged
    assert session.sent_version == 3


def test_session_records_acks_and_resyncs_with_a_snapshot_after_a_rejection():
    session = AgentSession(node="n1", peer="p")
    session.update_for(1, MODEL, BUNDLE)
    assert session.on_ack(pb.Ack(version=1, accepted=True)) is AckResult.ACCEPTED
    assert session.on_ack(pb.Ack(version=5, accepted=True)) is AckResult.UNKNOWN_VERSION
    assert session.acked_version == 1
    assert session.on_ack(pb.Ack(version=1, accepted=False, reason="bad")) is AckResult.REJECTED
    assert session.last_rejection == Rejection(1, "bad")
    changed = MeshModel(workloads={"local": LOCAL_PLAIN}, services={}, nodes=NODES)
    update = session.update_for(2, changed, BUNDLE)
    assert update.snapshot and [w.uid for w in update.workloads] == ["local"]
    assert update.trust_bundle_pem == BUNDLE  # a snapshot always carries it


def test_a_changed_trust_bundle_goes_out_in_a_delta_even_when_the_view_did_not_change():
    session = AgentSession(node="n1", peer="p")
    session.update_for(1, MODEL, BUNDLE)
    rotated = BUNDLE + b"-----BEGIN CERTIFICATE-----\nnew root\n-----END CERTIFICATE-----\n"
    update = session.update_for(2, MODEL, rotated)
    assert (update.version, update.snapshot, update.trust_bundle_pem) == (2, False, rotated)
    assert not update.workloads and not update.removed_workloads
    assert session.update_for(3, MODEL, rotated) is None
