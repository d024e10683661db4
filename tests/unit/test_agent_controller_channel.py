"""The agent's channel to the controller over real gRPC on 127.0.0.1: the name it verifies when
dialling an address the certificate does not name (--controller-name), the node it claims on
every call, and its token read again for each new channel (the kubelet rotates projected tokens)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import grpc
import pytest

from nodemesh.agent.controlplane.ca_client import CaClient, CaUnavailable, SignRefused
from nodemesh.agent.controlplane.channel import NODE_HEADER, ControllerAccess, read_credentials
from nodemesh.controller.nodeauth.auth import JoinTokens, Metadata
from nodemesh.controller.nodeauth.tokens import NodeTokens

from controller_access import TOKENS, ControllerUnderTest, sign, start_controller, write_node_tokens
from shop import CLUSTER

SERVICE_NAME = "nodemesh-controller.nodemesh-system.svc"


class Recording:
    """The join-token authenticator, noting each call's metadata: what the agent sent."""

    def __init__(self, tokens: NodeTokens) -> None:
        self.inner = JoinTokens(tokens)
        self.seen: list[dict[str, str]] = []

    async def caller_node(self, metadata: Metadata) -> str:
        self.seen.append({k: v for k, v in metadata or () if isinstance(v, str)})
        return await self.inner.caller_node(metadata)


def run(test, tmp_path: Path) -> None:
    async def scenario() -> None:
        recording = Recording(NodeTokens(write_node_tokens(tmp_path / "tokens.json")))
        controller = await start_controller(tmp_path, CLUSTER, authenticator=recording,
                                            extra_names=(SERVICE_NAME,))
        try:
            await test(controller, recording)
        finally:
            await controller.running.stop(grace=0)

    asyncio.run(asyncio.wait_for(scenario(), timeout=20))


def write_token(path: Path, token: str) -> None:
    """As the kubelet does: a new file moved over the old one, mode 0400."""
    fresh = path.with_suffix(".new")
    fresh.write_text(token)
    fresh.chmod(0o400)
    os.replace(fresh, path)


def test_the_controller_name_is_verified_instead_of_the_address_dialled(tmp_path):
    async def test(controller: ControllerUnderTest, recording: Recording) -> None:
        # "localhost" is not in the certificate (127.0.0.1 and the service name are)
        target = f"localhost:{controller.running.port}"
        web = controller.workload("web")
        named = ControllerAccess(target, controller.root_pem, lambda: TOKENS["n1"], "n1", SERVICE_NAME)
        assert await sign(CaClient(named), web)
        for name in (None, "nodemesh-controller.elsewhere.svc"):
            other = ControllerAccess(target, controller.root_pem, lambda: TOKENS["n1"], "n1", name)
            with pytest.raises(CaUnavailable) as info:
                await sign(CaClient(other), web)
            assert info.value.code is grpc.StatusCode.UNAVAILABLE
        assert recording.seen[0]["authorization"] == f"Bearer {TOKENS['n1']}"
        assert recording.seen[0][NODE_HEADER] == "n1"
        assert len(recording.seen) == 1  # the refused names never reached the servicer

    run(test, tmp_path)


def test_the_token_file_is_read_again_for_each_channel(tmp_path):
    async def test(controller: ControllerUnderTest, recording: Recording) -> None:
        root, token_path = tmp_path / "root.pem", tmp_path / "token"
        root.write_bytes(controller.root_pem)
        write_token(token_path, TOKENS["n1"] + "\n")
        _, token = read_credentials(root, token_path)  # mode 0400 is private enough
        access = ControllerAccess(f"127.0.0.1:{controller.running.port}", controller.root_pem,
                                  token, "n1")
        web, db = controller.workload("web"), controller.workload("db")
        assert await sign(CaClient(access), web)
        write_token(token_path, TOKENS["n2"])  # rotated (here: to another node's, to tell them apart)
        with pytest.raises(SignRefused, match="runs on node n1, not on node n2"):
            await sign(CaClient(access), web)
        assert await sign(CaClient(access), db)
        token_path.unlink()  # a failed read keeps the token read before
        assert await sign(CaClient(access), db)
        assert [seen["authorization"] for seen in recording.seen] == [
            f"Bearer {TOKENS['n1']}", *[f"Bearer {TOKENS['n2']}"] * 3]

    run(test, tmp_path)
