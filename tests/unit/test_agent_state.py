"""Applying the controller's snapshots and deltas, and routing over the result."""

import pytest

from nodemesh.agent.proxy.route import NoRoute, Router
from nodemesh.agent.state.store import Rejected, apply_update
from nodemesh.api import mesh_pb2 as pb


def wl(uid: str, ip: str, node: str = "node-a", meshed: bool = True) -> pb.Workload:
    return pb.Workload(uid=uid, name=uid, namespace="shop", service_account="sa", node=node, ip=ip, meshed=meshed)


def svc(name: str, vip: str, endpoints: list[str], port: int = 80, target: int = 8080) -> pb.Service:
    return pb.Service(name=name, namespace="shop", vip=vip,
                      ports=[pb.ServicePort(name="http", port=port, target_port=target)], endpoints=endpoints)


def snapshot() -> pb.ConfigUpdate:
    return pb.ConfigUpdate(
        version=3, snapshot=True,
        workloads=[wl("a", "10.10.1.10"), wl("b", "10.10.2.10", node="node-b"),
                   wl("legacy", "10.10.2.11", node="node-b", meshed=False)],
        services=[svc("catalog", "10.96.0.10", ["a", "b"])],
    )


def test_snapshot_then_delta() -> None:
    view = apply_update(None, snapshot())
    assert view.version == 3
    assert set(view.by_ip) == {"10.10.1.10", "10.10.2.10", "10.10.2.11"}
    assert view.mesh_destinations() == {"10.96.0.10": "service", "10.10.1.10": "pod", "10.10.2.10": "pod"}
    assert [w.uid for w in view.local_meshed("node-a")] == ["a"]

    delta = pb.ConfigUpdate(version=4, removed_workloads=["a"], services=[svc("catalog", "10.96.0.10", ["b"])])
    after = apply_update(view, delta)
    assert "a" not in after.model.workloads and after.version == 4
    assert [w.uid for w in after.endpoints(after.by_vip["10.96.0.10"])] == ["b"]
    assert view.version == 3 and "a" in view.model.workloads  # the old view is untouched


@pytest.mark.parametrize(
    "update, reason",
    [
        (pb.ConfigUpdate(version=9), "before any snapshot"),
    ],
)
def test_rejects_a_delta_without_a_snapshot(update: pb.ConfigUpdate, reason: str) -> None:
    with pytest.raises(Rejected, match=reason):
        apply_update(None, update)


def test_rejects_old_versions_and_conflicts() -> None:
    view = apply_update(None, snapshot())
    with pytest.raises(Rejected, match="not newer"):
        apply_update(view, pb.ConfigUpdate(version=3))
    with pytest.raises(Rejected, match="both have IP"):
        apply_update(view, pb.ConfigUpdate(version=5, workloads=[wl("c", "10.10.1.10")]))
    with pytest.raises(Rejected, match="also the IP"):
        apply_update(view, pb.ConfigUpdate(version=5, services=[svc("x", "10.10.2.10", [])]))


def test_round_robin_over_endpoints_and_target_port() -> None:
    view = apply_update(None, snapshot())
    router = Router()
    picks = [router.route(view, None, "10.96.0.10", 80) for _ in range(4)]
    assert [t.workload.uid for t in picks] == ["a", "b", "a", "b"]
    assert {(t.port, t.service) for t in picks} == {(8080, "shop/catalog")}
    assert all(t.meshed for t in picks)


def test_routes_to_pods_and_passes_unknown_addresses_through() -> None:
    view = apply_update(None, snapshot())
    router = Router()
    direct = router.route(view, None, "10.10.2.10", 9000)
    assert (direct.workload.uid, direct.port, direct.meshed) == ("b", 9000, True)
    legacy = router.route(view, None, "10.10.2.11", 9000)
    assert not legacy.meshed  # not meshed: the proxy connects directly, no hop
    unknown = router.route(view, None, "192.0.2.1", 80)
    assert unknown.workload is None and not unknown.meshed


def test_no_route_for_a_missing_port_or_no_endpoints() -> None:
    view = apply_update(None, snapshot())
    with pytest.raises(NoRoute, match="no port 81"):
        Router().route(view, None, "10.96.0.10", 81)
    empty = apply_update(view, pb.ConfigUpdate(version=4, services=[svc("catalog", "10.96.0.10", [])]))
    with pytest.raises(NoRoute, match="no endpoints"):
        Router().route(empty, None, "10.96.0.10", 80)


def test_the_trust_bundle_comes_with_snapshots_and_survives_deltas_without_one() -> None:
    first = snapshot()
    first.trust_bundle_pem = b"ROOT-1"
    view = apply_update(None, first)
    assert view.trust_bundle == b"ROOT-1"
    view = apply_update(view, pb.ConfigUpdate(version=4, removed_workloads=["a"]))
    assert view.trust_bundle == b"ROOT-1"
    view = apply_update(view, pb.ConfigUpdate(version=5, trust_bundle_pem=b"ROOT-1ROOT-2"))
    assert view.trust_bundle == b"ROOT-1ROOT-2"
