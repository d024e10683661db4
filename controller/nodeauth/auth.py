"""Who is calling: the node a gRPC call's bearer token belongs to, or the call ends here.

Every call of the controller's API (the config stream and certificate signing) carries metadata
``authorization: Bearer <node token>``. A call without it, or with a token the controller does
not know, ends UNAUTHENTICATED with a message that tells the operator what to give the agent.
"""

from __future__ import annotations

import logging

import grpc

from nodemesh.controller.nodeauth.tokens import NodeTokens

log = logging.getLogger(__name__)

_BEARER = "bearer "


def bearer_token(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.lower().startswith(_BEARER):
            return value[len(_BEARER):].strip() or None
    return None


async def authenticate(context: grpc.aio.ServicerContext, tokens: NodeTokens) -> str:
    """The calling node's name; aborts the call (UNAUTHENTICATED) when it cannot be told."""
    token = bearer_token(context.invocation_metadata())
    if token is None:
        log.warning("refused a call from %s: no node token", context.peer())
        await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                            "no node token: send metadata 'authorization: Bearer <token>' with this "
                            "node's join token (nodemesh agent --token-file FILE)")
    node = tokens.node_for(token)
    if node is None:
        log.warning("refused a call from %s: unknown node token", context.peer())
        await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                            "the node token is not valid here: its hash is not in the controller's "
                            "--node-tokens file; give the agent its node's current token "
                            "(--token-file)")
    return node
