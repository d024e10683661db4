"""A controller on 127.0.0.1 for tests, reached as agents reach it: TLS to its CA, a token per node."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import grpc

from nodemesh.agent.controlplane.ca_client import CaClient
from nodemesh.controller.ca.authority import Authority
from nodemesh.controller.ca.store import self_signed
from nodemesh.controller.nodeauth.auth import Authenticator, JoinTokens
from nodemesh.controller.nodeauth.tokens import NodeTokens, token_hash
from nodemesh.controller.sources.addresses import AddressStore
from nodemesh.controller.sources.file import FileSource
from nodemesh.controller.server import DEFAULT_CERT_LIFETIME, RunningServer, serve
from nodemesh.identity import Identity, certificate_request, new_key
from nodemesh.model import Workload

TOKENS = {"n1": "token-of-n1", "n2": "token-of-n2"}

Metadata = tuple[tuple[str, str], ...]


def write_node_tokens(path: Path, tokens: dict[str, str] = TOKENS) -> Path:
    path.write_text(json.dumps({node: token_hash(token) for node, token in tokens.items()}))
    return path


def auth(node: str) -> Metadata:
    """The call metadata of node ``node``'s agent."""
    return (("authorization", f"Bearer {TOKENS[node]}"),)


@dataclass
class ControllerUnderTest:
    running: RunningServer
    cluster: Path  # the YAML the controller watches
    root_pem: bytes

    def workload(self, name: str) -> Workload:
        """The workload of the model served now whose pod is called ``name``."""
        (found,) = [w for w in self.running.feed.current.model.workloads.values() if w.name == name]
        return found

    def channel(self) -> grpc.aio.Channel:
        """TLS to the controller, verified against its CA root; no token (calls add theirs)."""
        return grpc.aio.secure_channel(f"127.0.0.1:{self.running.port}",
                                       grpc.ssl_channel_credentials(self.root_pem))


async def sign(client: CaClient, w: Workload, timeout: float = 5.0) -> bytes:
    """What an agent's certificate manager does for ``w``: a fresh key, a CSR, a signing call
    (on a thread: the client is synchronous, as on the agent's gRPC thread)."""
    csr = certificate_request(new_key(), Identity.parse(w.identity))
    return await asyncio.to_thread(client.sign, w.uid, csr, timeout)


async def start_controller(tmp_path: Path, text: str,
                           lifetime: dt.timedelta = DEFAULT_CERT_LIFETIME,
                           authority: Authority | None = None, port: int = 0,
                           authenticator: Authenticator | None = None,
                           extra_names: tuple[str, ...] = ()) -> ControllerUnderTest:
    """A controller on 127.0.0.1:``port`` signing with ``authority`` (by default a root of its
    own in tmp_path/state) for the nodes ``authenticator`` tells (by default TOKENS' join
    tokens); ``root_pem`` is the trust bundle it hands out."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(text)
    state = tmp_path / "state"
    authority = authority or self_signed(state)
    source = FileSource(cluster, AddressStore(state), poll_interval=0.05)
    authenticator = authenticator or JoinTokens(NodeTokens(write_node_tokens(tmp_path / "tokens.json")))
    running = await serve(source, f"127.0.0.1:{port}", authority, authenticator, lifetime,
                          extra_names=extra_names)
    return ControllerUnderTest(running, cluster, authority.bundle_pem)
