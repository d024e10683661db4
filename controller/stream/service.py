"""MeshConfig.StreamConfig on grpc.aio: each agent's config stream.

Each stream: the agent says hello with its node name, gets a snapshot of its node's view, then
a delta for every model version that changes that view; meanwhile its acks are read on a task of
their own and recorded in its AgentSession. Every call must carry a node token (``nodeauth``),
and a stream's hello must name the token's node. Pushes and answers are counted (``stats``); a
push's duration runs from when the agent should have had the version (when it was made, or when
the agent connected if that was later) to the agent's answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator

import grpc

from nodemesh.api import mesh_pb2 as pb
from nodemesh.api import mesh_pb2_grpc
from nodemesh.controller.nodeauth.auth import Authenticator, authenticate
from nodemesh.controller.stream.feed import ModelFeed, Versioned
from nodemesh.controller.stream.session import AckResult, AgentSession
from nodemesh.controller.stream.stats import StreamStats

log = logging.getLogger(__name__)


class ConfigServicer(mesh_pb2_grpc.MeshConfigServicer):
    def __init__(self, feed: ModelFeed, authenticator: Authenticator, trust_bundle: bytes) -> None:
        self.feed = feed
        self.authenticator = authenticator
        self.trust_bundle = trust_bundle
        self.sessions: set[AgentSession] = set()
        self.stats = StreamStats()

    async def StreamConfig(self, request_iterator: AsyncIterator[pb.AgentMessage],
                           context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ConfigUpdate]:
        node = await authenticate(context, self.authenticator)
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
        opened = time.monotonic()
        due: dict[int, float] = {}  # versions sent and not answered yet -> when they were due
        self.sessions.add(session)
        log.info("agent connected: node %s from %s (agent version %r, last applied version %d)",
                 session.node, session.peer, first.hello.agent_version, first.hello.last_version)
        acks = asyncio.create_task(self._read_acks(session, request_iterator, due))
        try:
            current: Versioned | None = self.feed.current
            while current is not None:
                update = session.update_for(current.version, current.model, self.trust_bundle)
                if update is not None:
                    due[current.version] = max(current.made_at, opened)
                    self.stats.count_push(update)
                    yield update
                current = await self.feed.next_after(current.version)
        finally:
            acks.cancel()
            self.sessions.discard(session)
            log.info("agent disconnected: node %s from %s", session.node, session.peer)

    async def _read_acks(self, session: AgentSession, request_iterator: AsyncIterator[pb.AgentMessage],
                         due: dict[int, float]) -> None:
        async for message in request_iterator:
            if message.WhichOneof("msg") != "ack":
                log.warning("agent of node %s sent a second hello; ignored", session.node)
                continue
            ack = message.ack
            result = session.on_ack(ack)
            if result is not AckResult.UNKNOWN_VERSION:
                self.stats.count_answer(result, _seconds_since_due(due, ack.version))
            if result is AckResult.ACCEPTED:
                log.info("agent of node %s accepted version %d", session.node, ack.version)
            elif result is AckResult.REJECTED:
                log.warning("agent of node %s rejected version %d: %s", session.node,
                            ack.version, ack.reason)
            else:
                log.warning("agent of node %s acked version %d, which it was never sent "
                            "(last sent: %d); ignored", session.node, ack.version,
                            session.sent_version)


def _seconds_since_due(due: dict[int, float], version: int) -> float | None:
    """How long ``version`` took to be answered (None if this stream never sent it); forgets it
    and any older version still waiting, which its answer supersedes."""
    since = due.get(version)
    for answered in [v for v in due if v <= version]:
        del due[answered]
    return None if since is None else time.monotonic() - since
