"""The Kubernetes source's list-then-watch rules, sans-IO: a reflector fed what an API server
would answer, and the debounce of rebuilds, with fixed clocks and random draws."""

import logging

import pytest

from nodemesh.backoff import Backoff
from nodemesh.controller.sources.kube.debounce import Debounce
from nodemesh.controller.sources.kube.reflector import RECHECK, List, Reflector, TroubleLog, Wait, Watch
from nodemesh.controller.sources.kube.resources import RESOURCES, Resource

PODS = Resource("Pod", "v1", "pods")
POLICIES = Resource("TrafficPolicy", "nodemesh.io/v1alpha1", "trafficpolicies", optional=True)


def pod(name, rv, namespace="demo"):
    return {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name, "namespace": namespace, "resourceVersion": rv}}


def whole_draws():
    """Backoff drawing the whole step each time: the schedule without jitter."""
    return Backoff(0.5, 30.0, uniform=lambda low, high: high)


def test_paths_of_core_and_group_resources():
    paths = {r.kind: r.path for r in RESOURCES}
    assert paths["Pod"] == "/api/v1/pods"
    assert paths["EndpointSlice"] == "/apis/discovery.k8s.io/v1/endpointslices"
    assert paths["TrafficPolicy"] == "/apis/nodemesh.io/v1alpha1/trafficpolicies"
    assert POLICIES.crd == "trafficpolicies.nodemesh.io"


def test_list_then_watch_from_the_lists_version_with_bookmarks():
    r = Reflector(PODS)
    assert r.next_step() == List() and not r.synced
    changes = r.listed([pod("a", "5"), pod("b", "6")], "7")
    assert set(changes) == {"demo/a", "demo/b"} and r.synced
    step = r.next_step()
    assert step == Watch("7")
    assert step.params == {"watch": "true", "resourceVersion": "7", "allowWatchBookmarks": "true",
                           "timeoutSeconds": "300"}


def test_listed_items_are_given_the_kind_and_version_the_list_left_out():
    r = Reflector(PODS)
    changes = r.listed([{"metadata": {"name": "a", "namespace": "demo", "resourceVersion": "5"}}], "7")
    assert changes["demo/a"]["kind"] == "Pod" and changes["demo/a"]["apiVersion"] == "v1"


def test_events_change_the_copy_and_advance_the_version():
    r = Reflector(PODS)
    r.listed([pod("a", "5")], "7")
    assert r.event({"type": "ADDED", "object": pod("c", "8")}) == {"demo/c": pod("c", "8")}
    assert r.event({"type": "MODIFIED", "object": pod("a", "9")}) == {"demo/a": pod("a", "9")}
    assert r.event({"type": "DELETED", "object": pod("c", "10")}) == {"demo/c": None}
    assert r.event({"type": "DELETED", "object": pod("zz", "11")}) == {}  # never seen: no change
    assert set(r.objects) == {"demo/a"} and r.next_step() == Watch("11")


def test_a_bookmark_advances_the_version_and_changes_nothing():
    r = Reflector(PODS)
    r.listed([pod("a", "5")], "7")
    bookmark = {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": "42"}}}
    assert r.event(bookmark) == {}
    assert set(r.objects) == {"demo/a"} and r.next_step() == Watch("42")


@pytest.mark.parametrize("how", ["event", "status"])
def test_410_gone_relists_and_the_diff_shows_deletions_made_meanwhile(how):
    r = Reflector(PODS)
    r.listed([pod("a", "5"), pod("b", "6"), pod("c", "7")], "7")
    if how == "event":
        assert r.event({"type": "ERROR", "object": {"kind": "Status", "code": 410,
                                                    "message": "too old resource version"}}) == {}
    else:
        assert r.gone() == {}
    assert r.next_step() == List()
    # meanwhile: b deleted, c changed, d added; a as it was
    changes = r.listed([pod("a", "5"), pod("c", "20"), pod("d", "21")], "22")
    assert changes == {"demo/b": None, "demo/c": pod("c", "20"), "demo/d": pod("d", "21")}
    assert set(r.objects) == {"demo/a", "demo/c", "demo/d"} and r.next_step() == Watch("22")


def test_failures_rewatch_from_the_last_version_after_a_capped_doubling_backoff(caplog):
    r = Reflector(PODS, backoff=whole_draws)
    r.listed([], "7")
    r.event({"type": "ADDED", "object": pod("a", "8")})
    delays = []
    with caplog.at_level(logging.INFO):
        for _ in range(9):
            r.failed("cannot reach the Kubernetes API at https://127.0.0.1:1: refused")
            step = r.next_step()
            assert isinstance(step, Wait)
            delays.append(step.seconds)
            assert r.next_step() == Watch("8")  # from where it was, not a relist
        r.watching()  # reached again: one line, and the backoff starts over
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert warnings == ["cannot reach the Kubernetes API at https://127.0.0.1:1: refused; retrying"]
    r.failed("reset")
    assert r.next_step() == Wait(0.5)
    assert "the Kubernetes API answers again (after: cannot reach" in caplog.text


def test_trouble_every_resource_meets_is_logged_once_for_all(caplog):
    trouble = TroubleLog()
    reflectors = [Reflector(r, trouble) for r in RESOURCES]
    down = "cannot reach the Kubernetes API at https://10.96.0.1:443: refused"
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            for r in reflectors:
                r.failed(down)
        reflectors[1].failed("HTTP 403 from /api/v1/nodes: forbidden")  # its own trouble: its own line
        for r in reflectors[:-1]:
            r.listed([], "1")
        assert f"(after: {down})" not in caplog.text  # one resource still cannot get through
        reflectors[-1].listed([], "1")
    lines = [rec.getMessage() for rec in caplog.records]
    assert lines == [f"{down}; retrying", "HTTP 403 from /api/v1/nodes: forbidden; retrying",
                     "the Kubernetes API answers again (after: HTTP 403 from /api/v1/nodes: forbidden)",
                     f"the Kubernetes API answers again (after: {down})"]


def test_another_failure_in_place_of_one_is_no_recovery(caplog):
    trouble = TroubleLog()
    with caplog.at_level(logging.INFO):
        trouble.failed("Pod", "cannot reach the Kubernetes API: refused")
        trouble.failed("Pod", "cannot reach the Kubernetes API: timed out")
        trouble.ok("Pod")
    assert [rec.getMessage() for rec in caplog.records] == [
        "cannot reach the Kubernetes API: refused; retrying",
        "cannot reach the Kubernetes API: timed out; retrying",
        "the Kubernetes API answers again (after: cannot reach the Kubernetes API: timed out)"]


def test_backoff_jitter_draws_from_half_to_whole_step():
    draws = []
    backoff = Backoff(1.0, 30.0, uniform=lambda low, high: draws.append((low, high)) or low)
    assert [backoff.next() for _ in range(3)] == [0.5, 1.0, 2.0]
    assert draws == [(0.5, 1.0)] * 3


def test_an_error_event_other_than_gone_rewatches_after_a_backoff():
    r = Reflector(PODS, backoff=whole_draws)
    r.listed([], "7")
    r.event({"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "etcd down"}})
    assert r.next_step() == Wait(0.5) and r.next_step() == Watch("7")


def test_a_crd_not_installed_is_none_of_those_checked_again_later(caplog):
    r = Reflector(POLICIES)
    r.listed([{"kind": "TrafficPolicy", "metadata": {"name": "x", "namespace": "demo",
                                                      "resourceVersion": "3"}}], "3")
    with caplog.at_level(logging.INFO):
        assert r.not_installed() == {"demo/x": None}  # the CRD was removed: its objects go
        assert r.synced and r.next_step() == Wait(RECHECK) and r.next_step() == List()
        assert r.not_installed() == {}
        r.listed([], "9")
    assert caplog.text.count("CustomResourceDefinition trafficpolicies.nodemesh.io is not installed") == 1
    assert "trafficpolicies.nodemesh.io is installed now" in caplog.text


def test_a_core_resource_is_never_not_installed():
    with pytest.raises(ValueError):
        Reflector(PODS).not_installed()


def test_debounce_waits_for_quiet_but_not_longer_than_at_most():
    d = Debounce(quiet=0.1, at_most=1.0)
    assert d.due() is None
    d.changed(10.0)
    assert d.due() == pytest.approx(10.1)
    d.changed(10.05)
    assert d.due() == pytest.approx(10.15)
    for t in (10.2, 10.4, 10.6, 10.8, 10.95):  # a steady trickle
        d.changed(t)
    assert d.due() == pytest.approx(11.0)
    d.built()
    assert d.due() is None
