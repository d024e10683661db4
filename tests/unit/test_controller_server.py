"""The config stream over real gRPC (TLS, node tokens) on 127.0.0.1: snapshot, deltas on edits,
acks and nacks; who may open a stream."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Awaitable, Callable

import grpc
import pytest
from eventually import eventually_async

from nodemesh.api import mesh_pb2 as pb
from nodemesh.api.mesh_pb2_grpc import MeshConfigStub
from nodemesh.controller.sources.addresses import AddressStore
from nodemesh.controller.sources.file import FileSource
from nodemesh.controller.ca.store import self_signed
from nodemesh.controller.nodeauth.auth import JoinTokens
from nodemesh.controller.nodeauth.tokens import NodeTokens
from nodemesh.controller.server import ListenError, parse_listen, serve
from nodemesh.controller.stream.session import Rejection
from nodemesh.identity import Identity

from controller_access import auth, start_controller, write_node_tokens

NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {nodemesh.io/mesh: enabled}}\n---\n"


def pod(name: str, node: str, app: str = "web") -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop, labels: {{app: {app}}}}}\n"
            f"spec: {{nodeName: {node}, containers: [{{name: c}}]}}\n---\n")


SERVICE = ("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
           "spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}\n")


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout=15))


def hello(node: str) -> pb.AgentMessage:
    return pb.AgentMessage(hello=pb.AgentHello(node=node, agent_version="test"))


def ack(version: int, accepted: bool = True, reason: str = "") -> pb.AgentMessage:
    return pb.AgentMessage(ack=pb.Ack(version=version, accepted=accepted, reason=reason))


def test_snapshot_then_delta_on_edit_with_acks_and_nacks_recorded(tmp_path, caplog):
    async def scenario() -> None:
        controller = await start_controller(tmp_path, NAMESPACE + pod("a", "n1") + pod("b", "n2") + SERVICE)
        running, path = controller.running, controller.cluster
        try:
            async with controller.channel() as channel:
                call = MeshConfigStub(channel).StreamConfig(metadata=auth("n1"))
                await call.write(hello("n1"))
                snapshot = await call.read()
                assert (snapshot.version, snapshot.snapshot) == (1, True)
                assert snapshot.trust_bundle_pem == controller.root_pem
                assert sorted(w.name for w in snapshot.workloads) == ["a", "b"]
                assert {w.identity for w in snapshot.workloads} == {
                    str(Identity("cluster.local", "shop", "default"))}
                assert [s.name for s in snapshot.services] == ["web"]
                assert sorted(n.name for n in snapshot.nodes) == ["n1", "n2"]

                await call.write(ack(1))
                await eventually_async(lambda: [s.acked_version for s in running.agents()] == [1])

                path.write_text(NAMESPACE + pod("a", "n1") + pod("c", "n2") + SERVICE)
                delta = await call.read()
                assert (delta.version, delta.snapshot) == (2, False)
                assert [w.name for w in delta.workloads] == ["c"]
                assert len(delta.removed_workloads) == 1  # b
                assert delta.trust_bundle_pem == b""  # unchanged
                assert [s.name for s in delta.services] == ["web"]  # its endpoints changed
                assert not delta.nodes and not delta.removed_nodes

                await call.write(ack(2, accepted=False, reason="cannot attach"))
                (agent,) = running.agents()
                await eventually_async(lambda: agent.last_rejection is not None)
                assert agent.last_rejection == Rejection(2, "cannot attach")
                assert agent.acked_version == 1
                await call.done_writing()
        finally:
            await running.stop()

    with caplog.at_level(logging.INFO, logger="nodemesh.controller"):
        run(scenario)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["agent of node n1 rejected version 2: cannot attach"]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(m.startswith("agent connected: node n1") for m in infos)
    assert "agent of node n1 accepted version 1" in infos
    assert any(m.startswith("applied model version 2: 2 workloads, 1 services") for m in infos)


def test_changes_outside_a_nodes_view_are_not_sent_and_versions_still_rise(tmp_path):
    """Unmeshed pods on other nodes that no service selects are not n1's business."""

    async def scenario() -> None:
        plain = "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {nodeName: n2, containers: [{name: c}]}\n---\n"
        controller = await start_controller(tmp_path, NAMESPACE + pod("a", "n1") + plain)
        running, path = controller.running, controller.cluster
        try:
            async with controller.channel() as channel:
                call = MeshConfigStub(channel).StreamConfig(metadata=auth("n1"))
                await call.write(hello("n1"))
                snapshot = await call.read()
                assert [w.name for w in snapshot.workloads] == ["a"]
                path.write_text(NAMESPACE + pod("a", "n1") + plain.replace("name: x", "name: y"))
                await eventually_async(lambda: running.feed.current.version == 2)
                path.write_text(NAMESPACE + pod("a", "n1") + pod("d", "n1") + plain)
                delta = await call.read()
                assert (delta.version, [w.name for w in delta.workloads]) == (3, ["d"])
        finally:
            await running.stop()

    run(scenario)


def test_stop_ends_streams_cleanly_and_disconnects_are_noticed(tmp_path):
    async def scenario() -> None:
        controller = await start_controller(tmp_path, NAMESPACE + pod("a", "n1"))
        running = controller.running
        async with controller.channel() as channel:
            leaving = MeshConfigStub(channel).StreamConfig(metadata=auth("n2"))
            await leaving.write(hello("n2"))
            await leaving.read()
            staying = MeshConfigStub(channel).StreamConfig(metadata=auth("n1"))
            await staying.write(hello("n1"))
            await staying.read()
            await eventually_async(lambda: len(running.agents()) == 2)
            leaving.cancel()
            await eventually_async(lambda: [a.node for a in running.agents()] == ["n1"])
            await running.stop()
            assert await staying.read() is grpc.aio.EOF
            assert await staying.code() is grpc.StatusCode.OK

    run(scenario)


def test_a_stream_must_start_with_hello(tmp_path):
    async def scenario() -> None:
        controller = await start_controller(tmp_path, NAMESPACE + pod("a", "n1"))
        running = controller.running
        try:
            async with controller.channel() as channel:
                call = MeshConfigStub(channel).StreamConfig(metadata=auth("n1"))
                await call.write(ack(1))
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call.read()
                assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
                assert "AgentHello" in info.value.details()
        finally:
            await running.stop()

    run(scenario)


async def stream_error(channel: grpc.aio.Channel, metadata, node: str = "n1") -> grpc.aio.AioRpcError:
    call = MeshConfigStub(channel).StreamConfig(metadata=metadata)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.write(hello(node))  # fails here when there is no connection at all
        await call.read()
    return info.value


def test_a_stream_needs_a_known_token_of_the_node_it_says_hello_for(tmp_path, caplog):
    async def scenario() -> None:
        controller = await start_controller(tmp_path, NAMESPACE + pod("a", "n1"))
        try:
            async with controller.channel() as channel:
                missing = await stream_error(channel, ())
                assert missing.code() is grpc.StatusCode.UNAUTHENTICATED
                assert "authorization: Bearer <token>" in missing.details()
                assert "--token-file" in missing.details()
                unknown = await stream_error(channel, (("authorization", "Bearer guessed"),))
                assert unknown.code() is grpc.StatusCode.UNAUTHENTICATED
                assert "not valid" in unknown.details()
                other = await stream_error(channel, auth("n2"), node="n1")
                assert other.code() is grpc.StatusCode.PERMISSION_DENIED
                assert other.details().startswith("this token belongs to node n2, not to node n1")
                assert controller.running.agents() == []
        finally:
            await controller.running.stop()

    with caplog.at_level(logging.WARNING, logger="nodemesh.controller"):
        run(scenario)
    refusals = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(refusals) == 3 and all(m.startswith("refused") for m in refusals), refusals


def test_the_port_is_tls_only_and_verifiable_with_the_ca_root_alone(tmp_path):
    async def scenario() -> None:
        controller = await start_controller(tmp_path, NAMESPACE + pod("a", "n1"))
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{controller.running.port}") as plain:
                error = await stream_error(plain, auth("n1"))
                assert error.code() is grpc.StatusCode.UNAVAILABLE
            other_root = self_signed(tmp_path / "other").bundle_pem
            untrusted = grpc.aio.secure_channel(f"127.0.0.1:{controller.running.port}",
                                                grpc.ssl_channel_credentials(other_root))
            async with untrusted:
                error = await stream_error(untrusted, auth("n1"))
                assert error.code() is grpc.StatusCode.UNAVAILABLE
        finally:
            await controller.running.stop()

    run(scenario)


def test_a_port_in_use_is_named(tmp_path):
    async def scenario() -> None:
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            port = holder.getsockname()[1]
            path = tmp_path / "c.yaml"
            path.write_text(pod("a", "n1").replace("namespace: shop", "namespace: default"))
            with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}: Address "
                                                  f"already in use; another process holds port {port}"):
                await serve(FileSource(path, AddressStore(tmp_path)), f"127.0.0.1:{port}",
                            self_signed(tmp_path),
                            JoinTokens(NodeTokens(write_node_tokens(tmp_path / "t.json"))))

    run(scenario)


@pytest.mark.parametrize("text, expected", [
    ("0.0.0.0:15012", ("0.0.0.0", 15012)), ("[::1]:0", ("::1", 0)), ("localhost:1", ("localhost", 1)),
])
def test_parse_listen(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["15012", ":15012", "host:", "host:99999", "host:x"])
def test_parse_listen_refuses(text):
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        parse_listen(text)
