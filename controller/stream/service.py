"""MeshConfig.StreamConfig on grpc.aio: each agent's config stream.

Each stream: the agent says hello with its node name, gets a snapshot of its node's view, then
a delta for every model version that changes that view; meanwhile its acks are read on a task of
their own and recorded in its AgentSession. Every call must carry a node token (``nodeauth``),
and a stream's hello must name the token's node.
"""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

import grpc

from nodemesh.api import mesh_pb2 as pb
from nodemesh.api import mesh_pb2_grpc
from nodemesh.controller.nodeauth.auth import authenticate
from nodemesh.controller.nodeauth.tokens import NodeTokens
from nodemesh.controller.stream.feed import ModelFeed
from nodemesh.controller.stream.session import AckResult, AgentSession

log = logging.getLogger(__name__)


class ConfigServicer(mesh_pb2_grpc.MeshConfigServicer):
    def __init__(self, feed: ModelFeed, tokens: NodeTokens, trust_bundle: bytes) -> None:
        self.feed = feed
        self.tokens = tokens
        self.trust_bundle = trust_bundle
        self.sessions: set[AgentSession] = set()

    async def StreamConfig(self, request_iterator: AsyncIterator[pb.AgentMessage],
                           context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ConfigUpdate]:
        node = await authenticate(context, self.tokens)
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("msg") != "hello" or not first.hello.node:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "open the stream with AgentHello{node: <this node's name>}")
        if first.hello.node != node:
            log.warning("refused a config stream from %s: hello for node %s with node %s's token",
                        context.peer(), first.hello.node, node)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"this token belongs to node {node}, not to node {first.hello.node}: "
                                "give each agent its own node's token")
        session = AgentSession(node=node, peer=context.peer())
        self.sessions.add(session)
        log.info("agent connected: node %s from %s (agent version %r, last applied version %d)",
                 session.node, session.peer, first.hello.agent_version, first.hello.last_version)
        acks = asyncio.create_task(self._read_acks(session, request_iterator))
        try:
            current = self.feed.current
            yield session.update_for(current.version, current.model, self.trust_bundle)
            while (current := await self.feed.next_after(current.version)) is not None:
                update = session.update_for(current.version, current.model, self.trust_bundle)
                if update is not None:
                    yield update
        finally:
            acks.cancel()
            self.sessions.discard(session)
            log.info("agent disconnected: node %s from %s", session.node, session.peer)

    async def _read_acks(self, session: AgentSession,
                         request_iterator: AsyncIterator[pb.AgentMessage]) -> None:
        async for message in request_iterator:
            if message.WhichOneof("msg") != "ack":
                log.warning("agent of node %s sent a second hello; ignored", session.node)
                continue
            ack = message.ack
            result = session.on_ack(ack)
            if result is AckResult.ACCEPTED:
                log.info("agent of node %s accepted version %d", session.node, ack.version)
            elif result is AckResult.REJECTED:
                log.warning("agent of node %s rejected version %d: %s", session.node,
                            ack.version, ack.reason)
            else:
                log.warning("agent of node %s acked version %d, which it was never sent "
                            "(last sent: %d); ignored", session.node, ack.version,
                            session.sent_version)

