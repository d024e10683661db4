"""Kubernetes mode against a real API server (tests/kubeapi.py): agents known by TokenReview of
pod-bound service-account tokens (the node comes from the API server, not from the agent), the CA
kept in a Secret that concurrent replicas share, its roots published in a ConfigMap, and an agent
signing over gRPC with its projected token."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import grpc
import pytest

from nodemesh.agent.controlplane.ca_client import CaClient, SignRefused
from nodemesh.agent.controlplane.channel import ControllerAccess, read_credentials
from nodemesh.controller.apiclient import connect
from nodemesh.controller.ca import store
from nodemesh.controller.ca.secret import (CA_KEY, ROOT_CERT, ROOT_CONFIGMAP, ObjectRef, create_secret,
                                           load_authority, new_root_data, publish_roots)
from nodemesh.controller.ca.store import CaError
from nodemesh.controller.main import CaOptions, _authority
from nodemesh.controller.server import DEFAULT_CERT_LIFETIME
from nodemesh.controller.nodeauth.auth import AuthFailure, CannotAuthenticate, Unauthenticated
from nodemesh.controller.nodeauth.tokenreview import Expected, TokenReviews
from nodemesh.model import Workload
from nodemesh.tools.kube.controlplane import LocalControlPlane, free_port
from nodemesh.tools.sim.cluster import nodemesh_argv

from controller_access import sign, start_controller
from eventually import eventually
from kubeapi import create, kubectl_json, pod_manifest, register_node, set_status, unique_name

pytestmark = pytest.mark.slow

AGENT_SA = "nodemesh-agent"


@dataclass
class Cluster:
    cp: LocalControlPlane
    namespace: str
    node_a: str
    node_b: str

    def token(self, pod: str, audience: str | None = "nodemesh") -> str:
        """A token bound to ``pod``, as the kubelet requests it for a projected volume."""
        obj = kubectl_json(self.cp, "get", "pod", pod, "-n", self.namespace)
        args = ["create", "token", obj["spec"]["serviceAccountName"], "-n", self.namespace,
                "--bound-object-kind", "Pod", "--bound-object-name", pod,
                "--bound-object-uid", obj["metadata"]["uid"], "--duration", "1h"]
        done = self.cp.kubectl(*args, *(["--audience", audience] if audience else []))
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


@pytest.fixture
def cluster(control_plane: LocalControlPlane, kube_namespace: str) -> Iterator[Cluster]:
    """Two Nodes; in the namespace the agents' service account and another, and on node A a pod
    of each, on node B an agent pod."""
    ns = kube_namespace
    node_a, node_b = unique_name("auth-a"), unique_name("auth-b")
    register_node(control_plane, node_a, "172.30.0.1")
    register_node(control_plane, node_b, "172.30.0.2")
    for sa in (AGENT_SA, "other"):
        create(control_plane, {"apiVersion": "v1", "kind": "ServiceAccount",
                               "metadata": {"name": sa, "namespace": ns}})
    for name, node, sa in [("agent-a", node_a, AGENT_SA), ("other-a", node_a, "other"),
                           ("agent-b", node_b, AGENT_SA)]:
        create(control_plane, pod_manifest(name, ns, node=node, serviceAccountName=sa))
    yield Cluster(control_plane, ns, node_a, node_b)
    for node in (node_a, node_b):
        control_plane.kubectl("delete", "node", node, "--wait=false")


def call(token: str, node: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"), ("x-nodemesh-node", node))


def test_only_the_agents_own_token_for_its_own_node_is_accepted(cluster):
    agent_a = cluster.token("agent-a")
    cases = [  # (token, claimed node, the reason it is refused, words of the message)
        (agent_a, cluster.node_b, AuthFailure.TOKEN_OF_OTHER_NODE,
         f"belongs to the agent on node {cluster.node_a}, not to node {cluster.node_b}"),
        (cluster.token("other-a"), cluster.node_a, AuthFailure.WRONG_SERVICE_ACCOUNT,
         f"system:serviceaccount:{cluster.namespace}:other, not to the agents' service account"),
        (cluster.token("agent-a", audience=None), cluster.node_a, AuthFailure.BAD_TOKEN,
         "does not accept this token for audience nodemesh"),
        ("garbage", cluster.node_a, AuthFailure.BAD_TOKEN, "does not accept this token"),
    ]

    async def scenario() -> None:
        api = await connect(cluster.cp.admin_kubeconfig)
        try:
            reviews = TokenReviews(api, Expected(cluster.namespace, AGENT_SA))
            assert await reviews.caller_node(call(agent_a, cluster.node_a)) == cluster.node_a
            assert await reviews.caller_node(call(agent_a, cluster.node_a)) == cluster.node_a
            assert reviews.reviews == 1  # the second call was answered from the cache
            for token, node, reason, words in cases:
                with pytest.raises(Unauthenticated) as info:
                    await reviews.caller_node(call(token, node))
                assert (info.value.reason, info.value.code) == (reason, grpc.StatusCode.UNAUTHENTICATED)
                assert words in str(info.value)
            elsewhere = TokenReviews(api, Expected("nodemesh-system", AGENT_SA))
            with pytest.raises(Unauthenticated) as info:
                await elsewhere.caller_node(call(agent_a, cluster.node_a))
            assert info.value.reason is AuthFailure.WRONG_SERVICE_ACCOUNT
        finally:
            await api.close()

    asyncio.run(scenario())


def test_a_deleted_agent_pods_token_is_refused(cluster):
    """Bound tokens die with their pod: a new review (a new controller, no cache) refuses it."""
    token = cluster.token("agent-b")
    done = cluster.cp.kubectl("delete", "pod", "agent-b", "-n", cluster.namespace, "--grace-period=0",
                              "--force")
    assert done.returncode == 0, done.stderr

    async def scenario() -> None:
        api = await connect(cluster.cp.admin_kubeconfig)
        try:
            with pytest.raises(Unauthenticated, match="does not accept this token") as info:
                await TokenReviews(api, Expected(cluster.namespace, AGENT_SA)).caller_node(
                    call(token, cluster.node_b))
            assert info.value.reason is AuthFailure.BAD_TOKEN
        finally:
            await api.close()

    asyncio.run(scenario())


def test_a_controller_without_its_permissions_is_told_which_it_lacks(control_plane, kube_namespace):
    """A user RBAC grants nothing: the review fails UNAVAILABLE (the agent retries, its token is
    not at fault), and the Secret cannot be read; both say what to grant."""
    nobody = control_plane.kubeconfig_for(control_plane.pki.issue_client(
        unique_name("nobody"), "nodemesh-test-nobody"))

    async def scenario() -> None:
        api = await connect(nobody)
        try:
            with pytest.raises(CannotAuthenticate, match=re.escape(
                    "refused the controller's TokenReview: 403 Forbidden (grant the controller's "
                    "service account `create` on tokenreviews.authentication.k8s.io)")) as info:
                await TokenReviews(api, Expected(kube_namespace, AGENT_SA)).caller_node(
                    call("some-token", "node-a"))
            assert info.value.code is grpc.StatusCode.UNAVAILABLE
            with pytest.raises(CaError, match=f"cannot read Secret {kube_namespace}/nodemesh-ca: the API "
                               f"server answered 403 Forbidden; grant the controller's service account "
                               f"get and create on secrets, patch and create on configmaps, in namespace {kube_namespace}"):
                await load_authority(api, ObjectRef(kube_namespace, "nodemesh-ca"))
        finally:
            await api.close()

    asyncio.run(scenario())


def secret_data(cp: LocalControlPlane, where: ObjectRef) -> dict[str, str]:
    return kubectl_json(cp, "get", "secret", where.name, "-n", where.namespace)["data"]


def test_the_ca_secret_is_made_once_and_shared(control_plane, kube_namespace, caplog):
    where = ObjectRef(kube_namespace, "nodemesh-ca")

    async def scenario() -> None:
        apis = [await connect(control_plane.admin_kubeconfig) for _ in range(4)]
        try:
            with caplog.at_level(logging.INFO, logger="nodemesh.controller.ca.secret"):
                first = await load_authority(apis[0], where)
                again = await load_authority(apis[1], where)  # a restart: a new store, same root
            assert again.cert == first.cert and again.key.private_numbers() == first.key.private_numbers()
            assert f"CA created in Secret {where}" in caplog.text
            assert f"CA loaded from Secret {where}" in caplog.text
            stored = secret_data(control_plane, where)
            assert sorted(stored) == ["ca-cert.pem", "ca-key.pem", "root-cert.pem"]
            assert stored[CA_KEY] not in caplog.text and "PRIVATE KEY" not in caplog.text
            assert base64.b64decode(stored[ROOT_CERT]) == first.bundle_pem

            # replicas starting at once: whoever loses the race to create adopts the winner's root
            race = ObjectRef(kube_namespace, "raced-ca")
            authorities = await asyncio.gather(*(load_authority(api, race) for api in apis))
            assert len({a.cert for a in authorities}) == 1
            theirs, made = await create_secret(apis[0], race, new_root_data())
            assert not made and theirs == secret_data(control_plane, race)
        finally:
            for api in apis:
                await api.close()

    asyncio.run(scenario())


def test_a_users_own_ca_is_published_for_the_agents_too(control_plane, kube_namespace, tmp_path):
    """--ca-cert/--ca-key/--ca-bundle in Kubernetes: the DaemonSet's agents verify the controller
    with ConfigMap nodemesh-ca-root, so it holds the user's roots (it was left unwritten)."""
    own = store.self_signed(tmp_path / "own")  # the user's files: a root and its key
    files = tmp_path / "own" / store.CA_DIR
    options = CaOptions(cert=files / store.ROOT_CERT, key=files / store.ROOT_KEY,
                        bundle=files / store.ROOT_CERT, extra_trust_bundle=None,
                        lifetime=DEFAULT_CERT_LIFETIME)

    async def scenario() -> None:
        api = await connect(control_plane.admin_kubeconfig)
        try:
            authority = await _authority(tmp_path / "state", options,
                                         ObjectRef(kube_namespace, "nodemesh-ca"), api)
        finally:
            await api.close()
        assert authority.bundle_pem == own.bundle_pem

    asyncio.run(scenario())
    roots = kubectl_json(control_plane, "get", "configmap", ROOT_CONFIGMAP, "-n", kube_namespace)
    assert roots["data"][ROOT_CERT] == own.bundle_pem.decode()


def test_a_broken_or_unreachable_secret_is_a_clear_error(control_plane, kube_namespace):
    create(control_plane, {"apiVersion": "v1", "kind": "Secret",
                           "metadata": {"name": "nodemesh-ca", "namespace": kube_namespace},
                           "data": {ROOT_CERT: new_root_data()[ROOT_CERT]}})

    async def scenario() -> None:
        api = await connect(control_plane.admin_kubeconfig)
        try:
            with pytest.raises(CaError, match=f"Secret {kube_namespace}/nodemesh-ca lacks ca-cert.pem, "
                                              "ca-key.pem: restore it, or delete the Secret"):
                await load_authority(api, ObjectRef(kube_namespace, "nodemesh-ca"))
            with pytest.raises(CaError, match="cannot create Secret no-such-namespace/nodemesh-ca: "
                                              "the API server answered 404"):
                await load_authority(api, ObjectRef("no-such-namespace", "nodemesh-ca"))
        finally:
            await api.close()

    asyncio.run(scenario())


def test_the_roots_are_published_for_agents_and_follow_the_bundle(control_plane, kube_namespace):
    where = ObjectRef(kube_namespace, "nodemesh-ca-root")

    def published() -> str:
        return kubectl_json(control_plane, "get", "configmap", where.name, "-n", kube_namespace)["data"][ROOT_CERT]

    async def scenario() -> None:
        api = await connect(control_plane.admin_kubeconfig)
        try:
            authority = await load_authority(api, ObjectRef(kube_namespace, "nodemesh-ca"))
            await publish_roots(api, where, authority.bundle_pem)
            assert published() == authority.bundle_pem.decode()
            await publish_roots(api, where, authority.bundle_pem)  # another replica: no conflict
            rotating = authority.bundle_pem + base64.b64decode(new_root_data()[ROOT_CERT])
            await publish_roots(api, where, rotating)
            assert published() == rotating.decode()
        finally:
            await api.close()

    asyncio.run(scenario())


def test_an_agent_signs_for_its_own_nodes_pods_with_its_projected_token(cluster, tmp_path):
    """The whole path: the controller's gRPC server with the TokenReview authenticator, the
    agent's ControllerAccess with a projected token file (mode 0400)."""
    shop = (
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {nodemesh.io/mesh: enabled}}\n---\n"
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: shop}}\n"
        f"spec: {{nodeName: {cluster.node_a}, serviceAccountName: web, containers: [{{name: c}}]}}\n---\n"
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: db, namespace: shop}}\n"
        f"spec: {{nodeName: {cluster.node_b}, serviceAccountName: db, containers: [{{name: c}}]}}\n")

    def token_file(pod: str) -> Path:
        path = tmp_path / f"{pod}.token"
        path.write_text(cluster.token(pod))
        path.chmod(0o400)
        return path

    async def scenario() -> None:
        api = await connect(cluster.cp.admin_kubeconfig)
        controller = await start_controller(
            tmp_path / "controller", shop, authenticator=TokenReviews(api, Expected(cluster.namespace, AGENT_SA)))
        try:
            (root := tmp_path / "root.pem").write_bytes(controller.root_pem)

            def agent(pod: str, node: str) -> CaClient:
                _, token = read_credentials(root, token_file(pod))
                return CaClient(ControllerAccess(f"127.0.0.1:{controller.running.port}",
                                                 controller.root_pem, token, node))

            web, db = controller.workload("web"), controller.workload("db")
            assert await sign(agent("agent-a", cluster.node_a), web, 10.0)
            assert await sign(agent("agent-b", cluster.node_b), db, 10.0)
            with pytest.raises(SignRefused, match=f"runs on node {cluster.node_b}, not on node "
                                                  f"{cluster.node_a}") as info:
                await sign(agent("agent-a", cluster.node_a), db, 10.0)  # node A's agent, node B's pod
            assert info.value.code is grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(SignRefused, match="belongs to the agent on node") as info:
                await sign(agent("agent-a", cluster.node_b), db, 10.0)  # node A's token claiming B
            assert info.value.code is grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(SignRefused, match="not to the agents' service account") as info:
                await sign(agent("other-a", cluster.node_a), web, 10.0)
            assert info.value.code is grpc.StatusCode.UNAUTHENTICATED
        finally:
            await controller.running.stop(grace=0)
            await api.close()

    asyncio.run(asyncio.wait_for(scenario(), timeout=60))


def test_nodemesh_controller_kube_serves_agents_by_their_tokens(cluster, tmp_path):
    """``nodemesh controller --kube`` as the Deployment runs it (POD_NAMESPACE, --server-name),
    against the real API server: it makes the CA Secret, publishes the roots ConfigMap, and
    signs a meshed pod's certificate for its node's agent only, verified by the Service name."""
    cp, ns = cluster.cp, cluster.namespace
    shop = unique_name("shop")
    create(cp, {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": shop, "labels": {"nodemesh.io/mesh": "enabled"}}})
    service_name = f"nodemesh-controller.{ns}.svc"
    log = tmp_path / "controller.log"
    try:
        eventually(lambda: cp.kubectl("get", "serviceaccount", "default", "-n", shop).returncode == 0,
                   60, what=f"the default ServiceAccount of {shop}")
        web = create(cp, pod_manifest("web", shop, node=cluster.node_a))
        set_status(cp, "pod", "web", {"phase": "Running", "podIP": "10.10.1.10",
                                      "podIPs": [{"ip": "10.10.1.10"}]}, shop)
        port = free_port()
        with log.open("w") as out:
            process = subprocess.Popen(
                nodemesh_argv("controller", "--kube", "--kubeconfig", str(cp.admin_kubeconfig),
                              f"--listen=127.0.0.1:{port}", "--metrics-listen=127.0.0.1:0",
                              f"--server-name={service_name}", "--log-level=info"),
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "POD_NAMESPACE": ns})
        try:
            eventually(lambda: "listening on" in log.read_text(), 60, what="the controller listening")
            published = kubectl_json(cp, "get", "configmap", "nodemesh-ca-root", "-n", ns)["data"][ROOT_CERT]
            stored = secret_data(cp, ObjectRef(ns, "nodemesh-ca"))
            assert base64.b64decode(stored[ROOT_CERT]).decode() == published
            assert stored[CA_KEY] not in log.read_text()
            root = tmp_path / "root-cert.pem"
            root.write_text(published)  # as the DaemonSet mounts it

            def agent(pod: str, node: str) -> CaClient:
                token_path = tmp_path / f"{pod}.token"
                token_path.write_text(cluster.token(pod))
                token_path.chmod(0o400)
                root_pem, token = read_credentials(root, token_path)
                return CaClient(ControllerAccess(f"localhost:{port}", root_pem, token, node, service_name))

            workload = Workload(uid=web["metadata"]["uid"], name="web", namespace=shop,
                                service_account="default", node=cluster.node_a, ip="10.10.1.10",
                                identity=f"spiffe://cluster.local/ns/{shop}/sa/default")

            async def scenario() -> None:
                assert await sign(agent("agent-a", cluster.node_a), workload, 10.0)
                with pytest.raises(SignRefused, match=f"runs on node {cluster.node_a}, not on node "
                                                      f"{cluster.node_b}"):
                    await sign(agent("agent-b", cluster.node_b), workload, 10.0)
                with pytest.raises(SignRefused, match="belongs to the agent on node") as info:
                    await sign(agent("agent-a", cluster.node_b), workload, 10.0)
                assert info.value.code is grpc.StatusCode.UNAUTHENTICATED

            asyncio.run(scenario())
        finally:
            process.terminate()
            assert process.wait(timeout=20) == 0, log.read_text()
    finally:
        cp.kubectl("delete", "namespace", shop, "--wait=false")
