"""Who is calling: the node a gRPC call's bearer token belongs to, or the call ends here.

Every call of the controller's API (the config stream and certificate signing) carries metadata
``authorization: Bearer <node token>``. A call without it, or with a token the controller does
not know, ends UNAUTHENTICATED with a message that tells the operator what to give the agent.
"""

from __future__ import annotations

import enum
import logging

import grpc

from nodemesh.controller.nodeauth.tokens import NodeTokens

log = logging.getLogger(__name__)

_BEARER = "bearer "


class AuthFailure(enum.Enum):
    """Why no node could be told, in a word: the CA counts its refusals by it."""

    NO_TOKEN = "no_token"
    BAD_TOKEN = "bad_token"


class Unauthenticated(Exception):
    """The call carries no token this controller knows; the message says what the agent needs."""

    def __init__(self, reason: AuthFailure, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def bearer_token(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.lower().startswith(_BEARER):
            return value[len(_BEARER):].strip() or None
    return None


def caller_node(metadata: tuple[tuple[str, str | bytes], ...] | None, tokens: NodeTokens) -> str:
    """The name of the node whose token the call's metadata carries; Unauthenticated if none."""
    token = bearer_token(metadata)
    if token is None:
        raise Unauthenticated(AuthFailure.NO_TOKEN,
                              "no node token: send metadata 'authorization: Bearer <token>' with this "
                              "node's join token (nodemesh agent --token-file FILE)")
    node = tokens.node_for(token)
    if node is None:
        raise Unauthenticated(AuthFailure.BAD_TOKEN,
                              "the node token is not valid here: its hash is not in the controller's "
                              "--node-tokens file; give the agent its node's current token "
                              "(--token-file)")
    return node


async def authenticate(context: grpc.aio.ServicerContext, tokens: NodeTokens) -> str:
    """The calling node's name; aborts the call (UNAUTHENTICATED) when it cannot be told."""
    try:
        return caller_node(context.invocation_metadata(), tokens)
    except Unauthenticated as exc:
        log.warning("refused a call from %s: %s", context.peer(), exc)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
