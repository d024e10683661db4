"""The Kubernetes source against a real control plane (etcd, kube-apiserver, controller-manager,
scheduler): the published model follows what is made, changed and deleted, through an API server
restart and a compaction, and a bad object is left out alone.

Nothing runs the pods: the tests write their status as a kubelet would, and the real
EndpointSlice controller makes the slices from it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from eventually import eventually
from kubeapi import private_control_plane  # noqa: F401 (this module's control_plane: it restarts the API server)
from kubeapi import create, kubectl_json, pod_manifest, register_node, set_status, unique_name
from nodemesh.controller.apiclient import connect
from nodemesh.controller.sources.kube import watch
from nodemesh.controller.sources.kube.reflector import Reflector
from nodemesh.controller.sources.kube.resources import RESOURCES
from nodemesh.controller.sources.kube.source import KubeSource
from nodemesh.tools.kube.controlplane import LocalControlPlane, free_port
from nodemesh.model import MeshModel
from nodemesh.tools.sim.cluster import nodemesh_argv


pytestmark = pytest.mark.slow

FOLLOW = 60.0  # seconds for the model to follow a change: ~1 s on an idle host
KCM_RECOVERY = 180.0  # for the real controller-manager to act again after an API server restart
PODS = next(r for r in RESOURCES if r.kind == "Pod")


class RunningSource:
    """A KubeSource on a loop of its own (a thread), holding the last model it published."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.model: MeshModel | None = None
        self.source: KubeSource | None = None
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._main(),),
                                        daemon=True)
        self._thread.start()

    async def _main(self) -> None:
        self._task = asyncio.current_task()
        api = await connect(self.kubeconfig)
        try:
            source = self.source = KubeSource(api)
            await source.start()
            self.model = source.load()
            await source.watch(self._publish)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # shown by the test's next wait
            self._failed = exc
        finally:
            await api.close()

    def _publish(self, model: MeshModel) -> None:
        self.model = model

    def current(self) -> MeshModel:
        assert self._failed is None, f"the source failed: {self._failed!r}"
        assert self.model is not None, "not listed yet"
        return self.model

    def stop(self) -> None:
        if self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout=30)


@pytest.fixture
def source(control_plane):
    running = RunningSource(control_plane.admin_kubeconfig)
    eventually(lambda: running.current(), FOLLOW, interval=0.1, what="the first complete list")
    yield running
    running.stop()


@pytest.fixture
def meshed(control_plane, kube_namespace):
    done = control_plane.kubectl("label", "namespace", kube_namespace, "nodemesh.io/mesh=enabled")
    assert done.returncode == 0, done.stderr
    return kube_namespace


@pytest.fixture
def node(control_plane):
    """A Node registered Ready, as a kubelet would; removed after the test."""
    name = unique_name("node")
    register_node(control_plane, name, "172.31.9.1", "10.77.9.0/24")
    yield name
    control_plane.kubectl("delete", "node", name, "--wait=false")


def running_pod(cp, namespace: str, name: str, node: str, ip: str, ready: bool = True) -> dict:
    """A pod bound to ``node`` whose status says it runs at ``ip`` (Ready or not)."""
    made = create(cp, pod_manifest(name, namespace, {"app": "web"}, node,
                                   containers=[{"name": "app", "image": "nodemesh/app",
                                                "ports": [{"containerPort": 8080, "name": "http"}]}]))
    set_ready(cp, namespace, name, ip, ready)
    return made


def set_ready(cp, namespace: str, name: str, ip: str, ready: bool) -> None:
    status = "True" if ready else "False"
    set_status(cp, "pod", name, {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "172.31.9.1",
        "conditions": [{"type": "Ready", "status": status}, {"type": "ContainersReady", "status": status},
                       {"type": "PodScheduled", "status": "True"}, {"type": "Initialized", "status": "True"}],
    }, namespace)


def web_service(cp, namespace: str, name: str = "web") -> dict:
    return create(cp, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
                       "spec": {"selector": {"app": "web"},
                                "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})


def api_ready_endpoints(cp, namespace: str, service: str) -> list[str]:
    """The pod uids of a Service's ready endpoints, as the API server's EndpointSlices have them."""
    slices = kubectl_json(cp, "get", "endpointslices", "-n", namespace, "-l",
                          f"kubernetes.io/service-name={service}")["items"]
    return sorted(e["targetRef"]["uid"] for s in slices for e in s.get("endpoints") or []
                  if e.get("conditions", {}).get("ready") and e.get("targetRef"))


def endpoints_of(source: RunningSource, key: str) -> tuple[str, ...] | None:
    service = source.current().services.get(key)
    return None if service is None else service.endpoints


def test_the_model_follows_objects_made_changed_and_deleted(control_plane, source, meshed, node):
    svc = web_service(control_plane, meshed)
    a = running_pod(control_plane, meshed, "web-a", node, "10.77.9.10")
    b = running_pod(control_plane, meshed, "web-b", node, "10.77.9.11")
    uid_a, uid_b = a["metadata"]["uid"], b["metadata"]["uid"]
    key = f"{meshed}/web"

    eventually(lambda: endpoints_of(source, key) == (uid_a, uid_b), FOLLOW,  # in pod name order
               interval=0.1, what="both ready pods as the service's endpoints")
    model = source.current()
    assert model.services[key].vip == svc["spec"]["clusterIP"]
    assert (model.workloads[uid_a].ip, model.workloads[uid_a].node, model.workloads[uid_a].meshed) == \
        ("10.77.9.10", node, True)
    assert (model.nodes[node].ip, model.nodes[node].pod_cidr) == ("172.31.9.1", "10.77.9.0/24")
    assert [(p.port, p.target_port) for p in model.services[key].ports] == [(80, 8080)]

    set_ready(control_plane, meshed, "web-b", "10.77.9.11", ready=False)
    eventually(lambda: endpoints_of(source, key) == (uid_a,), FOLLOW, interval=0.1,
               what="the not-ready pod out of the endpoints")
    assert uid_b in source.current().workloads  # still a workload: it runs, it is not ready

    control_plane.kubectl("label", "namespace", meshed, "nodemesh.io/mesh-")
    eventually(lambda: not source.current().workloads[uid_a].meshed, FOLLOW, interval=0.1,
               what="the namespace unmeshed")

    assert control_plane.kubectl("delete", "pod", "web-a", "-n", meshed, "--grace-period=0",
                                 "--force").returncode == 0
    eventually(lambda: uid_a not in source.current().workloads and endpoints_of(source, key) == (),
               FOLLOW, interval=0.1, what="the deleted pod gone")
    assert control_plane.kubectl("delete", "service", "web", "-n", meshed).returncode == 0
    eventually(lambda: key not in source.current().services, FOLLOW, interval=0.1,
               what="the deleted service gone")


def test_only_pods_with_addresses_of_their_own_on_known_nodes_are_workloads(control_plane, source, meshed):
    late = unique_name("late-node")
    try:
        running_pod(control_plane, meshed, "early", late, "10.77.8.10")  # its Node not there yet
        create(control_plane, pod_manifest("pending", meshed, {"app": "web"}))  # nowhere yet
        create(control_plane, pod_manifest("hostnet", meshed, {"app": "web"}, late, hostNetwork=True))
        set_ready(control_plane, meshed, "hostnet", "172.31.8.1", True)  # the node's address
        web_service(control_plane, meshed)  # a change the source surely saw after the pods
        eventually(lambda: f"{meshed}/web" in source.current().services, FOLLOW, interval=0.1,
                   what="the service")
        assert not [w for w in source.current().workloads.values() if w.namespace == meshed]

        register_node(control_plane, late, "172.31.8.1", "10.77.8.0/24")
        eventually(lambda: sorted(w.name for w in source.current().workloads.values()
                                  if w.namespace == meshed) == ["early"], FOLLOW, interval=0.1,
                   what="the pods of the node once it appeared (not the hostNetwork or pending one)")
        assert source.current().nodes[late].pod_cidr == "10.77.8.0/24"
    finally:
        control_plane.kubectl("delete", "node", late, "--wait=false")


def test_an_api_server_restart_loses_no_change_and_leaves_nothing_stale(control_plane, source, meshed, node):
    web_service(control_plane, meshed)
    a = running_pod(control_plane, meshed, "web-a", node, "10.77.9.10")
    b = running_pod(control_plane, meshed, "web-b", node, "10.77.9.11")
    key = f"{meshed}/web"
    eventually(lambda: len(endpoints_of(source, key) or ()) == 2, FOLLOW, interval=0.1,
               what="two endpoints before the restart")

    control_plane.restart_apiserver()
    assert control_plane.kubectl("delete", "pod", "web-a", "-n", meshed, "--grace-period=0",
                                 "--force").returncode == 0
    c = running_pod(control_plane, meshed, "web-c", node, "10.77.9.12")

    expected = (b["metadata"]["uid"], c["metadata"]["uid"])  # in pod name order
    # First the controller-manager's part: its own watches come back from the restart with
    # client-go's backoff (which grows over the restarts earlier tests made, up to 30 s), and only
    # then does the EndpointSlice change. Then ours, timed on its own.
    eventually(lambda: api_ready_endpoints(control_plane, meshed, "web") == sorted(expected),
               KCM_RECOVERY, interval=0.2, what="the controller-manager's EndpointSlice after the restart")
    eventually(lambda: endpoints_of(source, key) == expected, FOLLOW, interval=0.1,
               what="the endpoints after the restart: b and c, once each")
    names = sorted(w.name for w in source.current().workloads.values() if w.namespace == meshed)
    assert names == ["web-b", "web-c"] and a["metadata"]["uid"] not in source.current().workloads


def test_a_compacted_etcd_gives_410_and_the_relist_sees_deletions_made_meanwhile(control_plane, meshed,
                                                                                 node, caplog):
    for name, ip in (("gone-a", "10.77.9.20"), ("kept-b", "10.77.9.21")):
        running_pod(control_plane, meshed, name, node, ip)

    async def watch_until(reflector: Reflector, done) -> dict[str, Any]:
        """Run the real list/watch loop on ``reflector`` until ``done(changes so far)``."""
        seen: dict[str, Any] = {}
        api = await connect(control_plane.admin_kubeconfig)
        running = asyncio.create_task(watch.run(api, reflector, seen.update))
        try:
            while not done(seen):
                await asyncio.sleep(0.05)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await api.close()
        return seen

    reflector = Reflector(PODS)
    with caplog.at_level(logging.INFO, logger="nodemesh.controller.sources.kube"):
        asyncio.run(asyncio.wait_for(watch_until(reflector, lambda seen: reflector.synced), FOLLOW))
        old = reflector.resource_version
        # While nobody watches: a deletion, then etcd compacted past the version the watch has.
        # (On this thread: the control plane's children die with the thread that started them.)
        deleted = control_plane.kubectl("delete", "pod", "gone-a", "-n", meshed, "--grace-period=0", "--force")
        assert deleted.returncode == 0, deleted.stderr
        control_plane.compact_etcd()
        assert reflector.resource_version == old
        seen = asyncio.run(asyncio.wait_for(
            watch_until(reflector, lambda seen: f"{meshed}/gone-a" in seen), FOLLOW))
    assert seen[f"{meshed}/gone-a"] is None  # seen as deleted, though no event said so
    assert f"{meshed}/kept-b" not in seen  # unchanged: not reported again
    assert "(410 Gone): listing again" in caplog.text


def lax_crd(group: str, version: str, kind: str, plural: str) -> dict:
    """A CRD with no schema to speak of: the API server takes bad objects, so the controller
    must judge them (daemonset/'s CRDs would refuse most of them)."""
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": "Namespaced",
                     "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
                     "versions": [{"name": version, "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {
                                       "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}


POLICY_CRDS = (lax_crd("nodemesh.io", "v1alpha1", "TrafficPolicy", "trafficpolicies"),
               lax_crd("security.istio.io", "v1", "AuthorizationPolicy", "authorizationpolicies"))


@pytest.fixture
def policy_crds(control_plane):
    for crd in POLICY_CRDS:
        done = control_plane.kubectl("apply", "-f", "-", input=json.dumps(crd))
        assert done.returncode == 0, done.stderr
        established = control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                                            f"crd/{crd['metadata']['name']}")
        assert established.returncode == 0, established.stderr
    yield
    for crd in POLICY_CRDS:
        control_plane.kubectl("delete", "crd", crd["metadata"]["name"], "--wait=false")


def traffic_policy(namespace: str, name: str, target: str, load_balancer: str) -> dict:
    return {"apiVersion": "nodemesh.io/v1alpha1", "kind": "TrafficPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"targetRefs": [{"kind": "Service", "name": target}], "loadBalancer": load_balancer}}


def authorization_policy(namespace: str, name: str, action: str) -> dict:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"action": action, "rules": [{"from": [{"source": {"namespaces": [namespace]}}]}]}}


def test_a_bad_policy_is_left_out_alone_named_with_its_field(control_plane, policy_crds, meshed, caplog):
    for name in ("web", "db", "cache"):
        web_service(control_plane, meshed, name)
    create(control_plane, traffic_policy(meshed, "good", "web", "PowerOfTwoChoices"))
    create(control_plane, traffic_policy(meshed, "bad", "db", "Fastest"))
    create(control_plane, traffic_policy(meshed, "cache-1", "cache", "LeastConnections"))
    create(control_plane, authorization_policy(meshed, "allow-own", "ALLOW"))
    create(control_plane, authorization_policy(meshed, "maybe", "MAYBE"))
    with caplog.at_level(logging.INFO, logger="nodemesh.controller.sources.kube"):
        running = RunningSource(control_plane.admin_kubeconfig)
        try:
            eventually(lambda: running.current(), FOLLOW, interval=0.1, what="the first complete list")
            services = running.current().services
            assert services[f"{meshed}/web"].traffic.load_balancer == "PowerOfTwoChoices"
            assert services[f"{meshed}/db"].traffic.load_balancer == "RoundRobin"  # its policy left out
            assert f"TrafficPolicy {meshed}/bad: spec.loadBalancer: 'Fastest' is not one of" in caplog.text
            assert f"AuthorizationPolicy {meshed}/maybe: spec.action: " in caplog.text
            assert set(running.current().policies) == {f"{meshed}/allow-own"}
            assert running.source.rejected() == {"TrafficPolicy": 1, "AuthorizationPolicy": 1}  # the metric

            # a second policy for one Service: the model is fine, the later one is left out
            create(control_plane, traffic_policy(meshed, "cache-2", "cache", "PowerOfTwoChoices"))
            eventually(lambda: f"TrafficPolicy {meshed}/cache-2: spec.targetRefs[0]: Service "
                               f"{meshed}/cache is also the target of TrafficPolicy {meshed}/cache-1"
                               in caplog.text, FOLLOW, interval=0.1, what="the conflict reported")
            assert running.current().services[f"{meshed}/cache"].traffic.load_balancer == "LeastConnections"
            assert running.source.rejected() == {"TrafficPolicy": 2, "AuthorizationPolicy": 1}

            bad = f"TrafficPolicy {meshed}/bad: spec.loadBalancer"
            assert caplog.text.count(bad) == 1  # the rebuilds since did not log it again
            # changed, still bad: logged again, for whoever just applied it
            assert control_plane.kubectl("label", "trafficpolicy", "bad", "-n", meshed, "edited=yes").returncode == 0
            eventually(lambda: caplog.text.count(bad) == 2, FOLLOW, interval=0.1, what="the change logged")

            # fixed: taken in
            fixed = traffic_policy(meshed, "bad", "db", "LeastConnections")
            assert control_plane.kubectl("apply", "-f", "-", input=json.dumps(fixed)).returncode == 0
            eventually(lambda: running.current().services[f"{meshed}/db"].traffic.load_balancer
                       == "LeastConnections", FOLLOW, interval=0.1, what="the fixed policy applied")
        finally:
            running.stop()
    assert caplog.text.count(f"TrafficPolicy {meshed}/bad: spec.loadBalancer") == 2  # once per change
    assert f"TrafficPolicy {meshed}/bad is no longer left out" in caplog.text


def test_the_controller_serves_once_listed_and_stops_cleanly(control_plane, kube_namespace, tmp_path):
    """``nodemesh controller --kube --kubeconfig``, as in its pod (TokenReview, the CA Secret in
    $POD_NAMESPACE) but from outside the cluster."""
    listen, metrics = free_port(), free_port()
    log = tmp_path / "controller.log"
    with log.open("w") as out:
        process = subprocess.Popen(nodemesh_argv(
            "controller", "--kube", "--kubeconfig", str(control_plane.admin_kubeconfig),
            "--state-dir", str(tmp_path / "state"),
            "--listen", f"127.0.0.1:{listen}", "--metrics-listen", f"127.0.0.1:{metrics}"),
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "POD_NAMESPACE": kube_namespace})
    try:
        eventually(lambda: f"listening on 127.0.0.1:{listen}" in log.read_text(), FOLLOW, interval=0.1,
                   what="the controller listening")
        assert f"listed every resource from {control_plane.server}" in log.read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as response:
            assert "nodemesh_controller_config_version 1.0" in response.read().decode()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text and "Unclosed" not in text, text
