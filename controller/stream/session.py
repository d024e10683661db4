"""One agent's subscription, as a state machine without IO: what to send it next, what it acked.

The stream handler feeds it model versions and the agent's acks; it answers with the update to
send (or None when the agent's view did not change) and keeps what an operator wants to know:
the last version the agent accepted and the last one it rejected, with the reason.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from nodemesh.api import mesh_pb2 as pb
from nodemesh.controller.stream.views import diff, node_view, to_update
from nodemesh.model import MeshModel


class AckResult(enum.Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UNKNOWN_VERSION = "unknown version"  # an ack for a version this agent was never sent


@dataclass(frozen=True)
class Rejection:
    version: int
    reason: str


@dataclass(eq=False)  # identity: two agents of one node are two sessions
class AgentSession:
    node: str
    peer: str
    sent_version: int = 0
    acked_version: int = 0
    last_rejection: Rejection | None = None
    # What the agent was last sent; None means the next update must be a snapshot (first one,
    # or after a rejection, when what the agent holds is no longer known).
    _sent_view: MeshModel | None = field(default=None, repr=False)
    _sent_bundle: bytes = field(default=b"", repr=False)

    def update_for(self, version: int, model: MeshModel, trust_bundle: bytes) -> pb.ConfigUpdate | None:
        """The update that brings this agent to ``version`` and ``trust_bundle`` (PEM roots), or
        None if neither its view nor the bundle changed. Snapshots always carry the bundle;
        deltas only when it changed."""
        view = node_view(model, self.node)
        if self._sent_view is None:
            update = to_update(diff(MeshModel.empty(), view), version, snapshot=True,
                               trust_bundle=trust_bundle)
        else:
            delta = diff(self._sent_view, view)
            new_bundle = trust_bundle if trust_bundle != self._sent_bundle else b""
            if not delta and not new_bundle:
                return None
            update = to_update(delta, version, snapshot=False, trust_bundle=new_bundle)
        self._sent_view = view
        self._sent_bundle = trust_bundle
        self.sent_version = version
        return update

    def on_ack(self, ack: pb.Ack) -> AckResult:
        if not 0 < ack.version <= self.sent_version:
            return AckResult.UNKNOWN_VERSION
        if ack.accepted:
            self.acked_version = max(self.acked_version, ack.version)
            return AckResult.ACCEPTED
        self.last_rejection = Rejection(ack.version, ack.reason)
        self._sent_view = None
        return AckResult.REJECTED
