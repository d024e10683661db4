"""Address assignment: ranges, given addresses, conflicts, and stability across restarts."""

from __future__ import annotations

import json

import pytest

from nodemesh.controller.kube.objects import parse_documents
from nodemesh.controller.model.build import ModelError
from nodemesh.controller.model.ipam import plan_addresses
from nodemesh.controller.sources.addresses import AddressStateError, AddressStore


def pod(name: str, node: str, ip: str | None = None) -> str:
    status = f"\nstatus: {{podIP: {ip}}}" if ip else ""
    return (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\n"
            f"spec: {{nodeName: {node}, containers: [{{name: c}}]}}{status}\n---\n")


def service(name: str, cluster_ip: str | None = None) -> str:
    ip = f", clusterIP: {cluster_ip}" if cluster_ip else ""
    return f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{ports: [{{port: 80}}]{ip}}}\n---\n"


def assign(store: AddressStore, text: str):
    """Plan the addresses of ``text`` from what ``store`` holds, and keep them there."""
    plan = plan_addresses(store.assigned, parse_documents(text, "t"))
    if plan.errors:
        raise ModelError(plan.errors)
    store.commit(plan)
    return plan


def test_ranges_follow_the_briefing(tmp_path):
    plan = assign(AddressStore(tmp_path),
                  pod("b", "n2") + pod("a", "n1") + pod("c", "n1") + service("s"))
    assert (plan.node_ip("n1"), plan.node_pod_cidr("n1")) == ("172.30.0.1", "10.10.1.0/24")
    assert (plan.node_ip("n2"), plan.node_pod_cidr("n2")) == ("172.30.0.2", "10.10.2.0/24")
    assert [plan.pod_ip(r) for r in ("default/a", "default/c", "default/b")] == [
        "10.10.1.10", "10.10.1.11", "10.10.2.10"]
    assert plan.service_vip("default/s") == "10.96.0.10"


def test_addresses_survive_a_restart_and_new_objects_do_not_move_old_ones(tmp_path):
    first = assign(AddressStore(tmp_path), pod("m", "n1") + pod("z", "n1") + service("s"))
    # a new instance reads ipam.json; "a" sorts first but must not take m's or z's address
    second = assign(AddressStore(tmp_path), pod("a", "n1") + pod("m", "n1") + pod("z", "n1")
                    + service("a") + service("s"))
    assert second.pod_ip("default/m") == first.pod_ip("default/m") == "10.10.1.10"
    assert second.pod_ip("default/z") == first.pod_ip("default/z") == "10.10.1.11"
    assert second.pod_ip("default/a") == "10.10.1.12"
    assert second.service_vip("default/s") == "10.96.0.10"
    assert second.service_vip("default/a") == "10.96.0.11"
    saved = json.loads((tmp_path / "ipam.json").read_text())
    assert saved["pods"]["default/a"] == "10.10.1.12"


def test_removed_objects_release_their_address_but_nodes_keep_theirs(tmp_path):
    store = AddressStore(tmp_path)
    assign(store, pod("a", "n1") + pod("b", "n2"))
    plan = assign(store, pod("c", "n1"))
    assert plan.pod_ip("default/c") == "10.10.1.10"  # a's, released
    assert "default/a" not in json.loads((tmp_path / "ipam.json").read_text())["pods"]
    assert assign(store, pod("b", "n2") + pod("c", "n1")).node_ip("n2") == "172.30.0.2"


def test_given_addresses_are_honoured_and_others_go_around_them(tmp_path):
    plan = assign(AddressStore(tmp_path), pod("a", "n1") + pod("b", "n1", "10.10.1.10")
                  + service("s") + service("t", "10.96.0.10"))
    assert plan.pod_ip("default/b") == "10.10.1.10"
    assert plan.pod_ip("default/a") == "10.10.1.11"
    assert plan.service_vip("default/t") == "10.96.0.10"
    assert plan.service_vip("default/s") == "10.96.0.11"


def test_a_pod_moved_to_another_node_gets_an_address_there(tmp_path):
    store = AddressStore(tmp_path)
    assign(store, pod("a", "n1") + pod("x", "n2"))
    assert assign(store, pod("a", "n2") + pod("x", "n2")).pod_ip("default/a") == "10.10.2.11"


@pytest.mark.parametrize("text, expected", [
    (pod("a", "n1", "10.10.2.10"),
     "Pod default/a: status.podIP: 10.10.2.10 is outside node n1's pod range 10.10.1.10-10.10.1.254"),
    (pod("a", "n1", "10.10.1.10") + pod("b", "n1", "10.10.1.10"),
     "Pod default/b: status.podIP: 10.10.1.10 is already the address of Pod default/a"),
    (service("s", "10.97.0.1"),
     "Service default/s: spec.clusterIP: 10.97.0.1 is outside the service range "
     "10.96.0.10-10.96.255.254"),
    (service("s", "10.96.0.20") + service("t", "10.96.0.20"),
     "Service default/t: spec.clusterIP: 10.96.0.20 is already the address of Service default/s"),
])
def test_conflicts_and_out_of_range_addresses_are_refused(tmp_path, text, expected):
    with pytest.raises(ModelError) as info:
        assign(AddressStore(tmp_path), text)
    assert info.value.errors == [expected]
    assert not (tmp_path / "ipam.json").exists()


def test_a_given_address_cannot_take_one_an_existing_pod_holds(tmp_path):
    store = AddressStore(tmp_path)
    assign(store, pod("a", "n1"))
    with pytest.raises(ModelError, match="10.10.1.10 is already the address of Pod default/a"):
        assign(store, pod("a", "n1") + pod("b", "n1", "10.10.1.10"))


def test_a_failed_plan_changes_nothing(tmp_path):
    store = AddressStore(tmp_path)
    assign(store, pod("a", "n1"))
    before = (tmp_path / "ipam.json").read_text()
    plan = plan_addresses(store.assigned,
                          parse_documents(pod("b", "n1") + pod("c", "n1", "10.10.9.9"), "t"))
    assert plan.errors
    with pytest.raises(ValueError):
        store.commit(plan)
    assert (tmp_path / "ipam.json").read_text() == before
    assert assign(store, pod("a", "n1") + pod("b", "n1")).pod_ip("default/b") == "10.10.1.11"


def test_a_corrupt_state_file_says_what_to_do(tmp_path):
    (tmp_path / "ipam.json").write_text("{not json")
    with pytest.raises(AddressStateError, match="ipam.json: unreadable address state .*delete it"):
        AddressStore(tmp_path)


def test_no_leftover_temporary_files(tmp_path):
    store = AddressStore(tmp_path)
    assign(store, pod("a", "n1"))
    assign(store, pod("b", "n1"))
    assert [p.name for p in tmp_path.iterdir()] == ["ipam.json"]
