"""The agent's side of the controller API over real gRPC on 127.0.0.1: the authenticated channel,
certificate signing (own node yes, other node no, bad token no, controller away), the config
subscription, and following a root rotation, with the agent's own clients."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import load_pem_x509_certificate

from nodemesh.agent.controlplane.ca_client import CaClient, CaUnavailable, SignRefused
from nodemesh.agent.controlplane.channel import ControllerAccess, CredentialsError, read_credentials
from nodemesh.agent.controlplane.subscription import ConfigClient
from nodemesh.api import mesh_pb2 as pb
from nodemesh.controller.ca.store import self_signed, user_supplied
from nodemesh.identity import Identity, identity_of

from ca_material import UserCa, split_chain, verified_path
from controller_access import TOKENS, ControllerUnderTest, sign, start_controller
from eventually import eventually_async
from shop import CLUSTER


def run(test, tmp_path: Path, lifetime: dt.timedelta = dt.timedelta(hours=24)) -> None:
    async def scenario() -> None:
        controller = await start_controller(tmp_path, CLUSTER, lifetime)
        try:
            await test(controller)
        finally:
            await controller.running.stop(grace=0)

    asyncio.run(asyncio.wait_for(scenario(), timeout=20))


def access(controller: ControllerUnderTest, token: str) -> ControllerAccess:
    return ControllerAccess(f"127.0.0.1:{controller.running.port}", controller.root_pem, lambda: token)


def ca_client(controller: ControllerUnderTest, token: str) -> CaClient:
    return CaClient(access(controller, token))


def test_an_agent_gets_certificates_for_its_own_nodes_workloads_only(tmp_path, caplog):
    async def test(controller: ControllerUnderTest) -> None:
        n1 = ca_client(controller, TOKENS["n1"])
        web, db = controller.workload("web"), controller.workload("db")
        chain = await sign(n1, web)
        leaf, _ = split_chain(chain)
        assert identity_of(leaf.public_bytes(Encoding.DER)) == Identity("cluster.local", "shop", "web")
        assert verified_path(chain, controller.root_pem)[-1] == load_pem_x509_certificate(controller.root_pem)
        lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        assert dt.timedelta(hours=24) < lifetime <= dt.timedelta(hours=24, minutes=1)

        with pytest.raises(SignRefused) as info:
            await sign(n1, db)
        assert info.value.code is grpc.StatusCode.PERMISSION_DENIED
        assert "workload shop/db" in str(info.value) and "node n2" in str(info.value) \
            and "node n1" in str(info.value)

        # n2's own agent gets it
        assert await sign(ca_client(controller, TOKENS["n2"]), db)

        with pytest.raises(SignRefused) as info:
            await sign(ca_client(controller, "stolen?"), web)
        assert info.value.code is grpc.StatusCode.UNAUTHENTICATED
        assert "--token-file" in str(info.value)

    with caplog.at_level(logging.INFO, logger="nodemesh.controller"):
        run(test, tmp_path)
    issued = [r.getMessage() for r in caplog.records if r.getMessage().startswith("issued")]
    assert len(issued) == 2
    assert issued[0].startswith("issued a certificate for spiffe://cluster.local/ns/shop/sa/web "
                                "(workload shop/web on node n1): serial ")
    assert "not after 20" in issued[0]
    refused = [r for r in caplog.records if r.getMessage().startswith("refused")]
    assert [r.levelno for r in refused] == [logging.WARNING, logging.WARNING]
    assert "refused to sign for node n1" in refused[0].getMessage()


def test_certificate_lifetime_follows_the_controllers_setting(tmp_path):
    async def test(controller: ControllerUnderTest) -> None:
        chain = await sign(ca_client(controller, TOKENS["n1"]), controller.workload("web"))
        leaf, _ = split_chain(chain)
        assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(seconds=11)

    run(test, tmp_path, lifetime=dt.timedelta(seconds=10))


def test_a_controller_that_is_away_is_told_apart_from_a_refusal(tmp_path):
    async def test(controller: ControllerUnderTest) -> None:
        client = ca_client(controller, TOKENS["n1"])
        web = controller.workload("web")
        await controller.running.stop(grace=0)
        with pytest.raises(CaUnavailable) as info:
            await sign(client, web, 2.0)
        assert info.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        assert "did not answer for workload" in str(info.value)

    run(test, tmp_path)


def test_the_config_client_subscribes_with_its_token_and_the_ca_root(tmp_path):
    async def test(controller: ControllerUnderTest) -> None:
        received: list[pb.ConfigUpdate] = []

        async def apply(update: pb.ConfigUpdate) -> str | None:
            received.append(update)
            return None

        loop = asyncio.get_running_loop()
        good = ConfigClient(access(controller, TOKENS["n1"]), "n1", apply, loop)
        impostor = ConfigClient(access(controller, TOKENS["n2"]), "n1", apply, loop)
        good.start()
        impostor.start()
        try:
            await eventually_async(lambda: good.applied_version == 1 and "PERMISSION_DENIED" in impostor.last_error)
            assert len(received) == 1 and received[0].trust_bundle_pem == controller.root_pem
            assert "this token belongs to node n2" in impostor.last_error
            assert [a.node for a in controller.running.agents()] == ["n1"]
        finally:
            await asyncio.gather(asyncio.to_thread(good.stop), asyncio.to_thread(impostor.stop))

    run(test, tmp_path)


def test_an_update_that_fails_to_apply_is_rejected_and_the_subscription_lives_on(tmp_path):
    """A bug in applying (here a KeyError) is a rejection with its reason and a failing health
    entry, not a dead config thread behind an agent that still looks alive."""
    async def test(controller: ControllerUnderTest) -> None:
        async def apply(update: pb.ConfigUpdate) -> str | None:
            raise KeyError("namespace")

        client = ConfigClient(access(controller, TOKENS["n1"]), "n1", apply, asyncio.get_running_loop())
        client.start()
        try:
            await eventually_async(lambda: client.last_rejection != "")
            assert client.last_rejection == "version 1: the agent failed to apply it: KeyError: 'namespace'"
            assert client.health.problems() == {"config subscription": "KeyError: 'namespace'"}
            assert client.connected and client.applied_version == 0  # still subscribed, nothing applied
        finally:
            await asyncio.to_thread(client.stop)

    run(test, tmp_path)


def test_the_config_client_counts_updates_and_streams_lost_once_up(tmp_path):
    """What the node metrics report: updates accepted and rejected, and a stream that was up and
    got lost (the controller went away) as a disconnect; an agent stopping is none."""
    async def test(controller: ControllerUnderTest) -> None:
        async def apply(update: pb.ConfigUpdate) -> str | None:
            return "not the first" if update.version == 1 else None

        loop = asyncio.get_running_loop()
        stopping, staying = (ConfigClient(access(controller, TOKENS["n1"]), "n1", apply, loop) for _ in range(2))
        stopping.start()
        staying.start()
        try:
            await eventually_async(lambda: stopping.rejected == staying.rejected == 1)
            assert (staying.accepted, staying.applied_version, staying.connected) == (0, 0, True)
            controller.cluster.write_text(CLUSTER.replace("name: web,", "name: web2,"))
            await eventually_async(lambda: staying.accepted == 1 and staying.applied_version == 2)
            await asyncio.to_thread(stopping.stop)
            assert (stopping.connects, stopping.disconnects) == (1, 0)
            await controller.running.stop(grace=0)
            await eventually_async(lambda: not staying.connected)
            assert (staying.connects, staying.disconnects, staying.rejected) == (1, 1, 1)
        finally:
            await asyncio.gather(asyncio.to_thread(stopping.stop), asyncio.to_thread(staying.stop))

    run(test, tmp_path)


def test_agents_follow_a_root_rotation_without_a_restart(tmp_path):
    """Rotation step 1: the controller (old root) hands out a bundle of old and new roots.
    Step 2: a controller signing under the new root, the old one kept in the bundle, takes
    over the address. An agent started with the old root alone reconnects to it and gets
    certificates from the new CA; without the bundle, the old root alone would not reach it."""

    async def scenario() -> None:
        new = UserCa(tmp_path / "new", "new")
        old = self_signed(tmp_path / "old")
        step1 = self_signed(tmp_path / "old", extra_roots=[new.root])
        first = await start_controller(tmp_path / "c1", CLUSTER, authority=step1)
        target = f"127.0.0.1:{first.running.port}"

        async def apply(update: pb.ConfigUpdate) -> str | None:
            return None

        agent = ControllerAccess(target, old.bundle_pem, lambda: TOKENS["n1"])
        client = ConfigClient(agent, "n1", apply, asyncio.get_running_loop())
        client.start()
        try:
            await eventually_async(lambda: client.applied_version == 1)
            await first.running.stop(grace=0)
            step2 = user_supplied(new.cert_path, new.key_path, new.bundle_path, extra_roots=[old.cert])
            second = await start_controller(tmp_path / "c2", CLUSTER, authority=step2,
                                            port=first.running.port)
            try:
                await eventually_async(lambda: client.connects == 2 and client.connected, timeout=10)
                chain = await sign(CaClient(agent), second.workload("web"))
                assert verified_path(chain, step2.bundle_pem)[-1] == new.root
                with pytest.raises(CaUnavailable):
                    await sign(CaClient(ControllerAccess(target, old.bundle_pem, lambda: TOKENS["n1"])),
                               second.workload("web"))
            finally:
                await second.running.stop(grace=0)
        finally:
            await asyncio.to_thread(client.stop)

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))


def test_agent_credentials_are_checked_at_start(tmp_path):
    root, token = tmp_path / "root.pem", tmp_path / "token"
    root.write_text("not a certificate")
    token.write_text("\n")
    token.chmod(0o600)
    with pytest.raises(CredentialsError, match=f"--controller-ca {root}: no PEM certificate in it"):
        read_credentials(root, token)
    root.write_bytes(self_signed(tmp_path / "ca").bundle_pem)
    with pytest.raises(CredentialsError, match="--token-file .*: empty"):
        read_credentials(root, token)
    with pytest.raises(CredentialsError, match="cannot read: No such file"):
        read_credentials(root, tmp_path / "none")
    token.write_bytes(b"\xff\xfe")
    with pytest.raises(CredentialsError, match=f"--token-file {token}: not text"):
        read_credentials(root, token)  # told as the token's error, not the CA file's
    token.write_text("abc\n")
    token.chmod(0o640)
    with pytest.raises(CredentialsError, match=f"--token-file {token} has mode 0640: .* chmod 600 {token}"):
        read_credentials(root, token)
    token.chmod(0o400)  # a projected token's mode (the DaemonSet's defaultMode)
    root_pem, token_file = read_credentials(root, token)
    assert (root_pem, token_file()) == (root.read_bytes(), "abc")
