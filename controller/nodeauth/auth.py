"""Who is calling: the node a gRPC call authenticates as, or the call ends here.

Every call of the controller's API (the config stream and certificate signing) carries metadata
``authorization: Bearer <token>``. What the token is depends on the mode: a node join token
(``tokens``, local mode) or the agent's projected service-account token checked with a
TokenReview (``tokenreview``, Kubernetes mode). Either way an ``Authenticator`` turns the call's
metadata into the caller's node, or raises ``Unauthenticated`` with a message that tells the
operator what to give the agent. The servicers only see this module's ``authenticate`` (config
stream) or an ``Authenticator`` (the CA, which counts refusals itself): one boundary for every mode.
"""

from __future__ import annotations

import enum
import logging
from typing import Protocol

import grpc

from nodemesh.controller.nodeauth.tokens import NodeTokens

log = logging.getLogger(__name__)

_BEARER = "bearer "
NODE_HEADER = "x-nodemesh-node"  # the node an agent claims, in Kubernetes mode

Metadata = tuple[tuple[str, str | bytes], ...] | None


class AuthFailure(enum.Enum):
    """Why no node could be told, in a word: the CA counts its refusals by it."""

    NO_TOKEN = "no_token"
    BAD_TOKEN = "bad_token"
    NO_NODE = "no_node"  # no x-nodemesh-node metadata (Kubernetes mode)
    WRONG_AUDIENCE = "wrong_audience"
    WRONG_SERVICE_ACCOUNT = "wrong_service_account"
    TOKEN_OF_OTHER_NODE = "token_of_other_node"
    REVIEW_FAILED = "review_failed"  # the API server could not be asked


class Unauthenticated(Exception):
    """The call's credentials name no node here; the message says what the agent needs."""

    code = grpc.StatusCode.UNAUTHENTICATED

    def __init__(self, reason: AuthFailure, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class CannotAuthenticate(Unauthenticated):
    """The credentials could not be checked just now (the API server did not answer): UNAVAILABLE,
    which agents retry with backoff, rather than UNAUTHENTICATED, which says their token is bad."""

    code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, message: str) -> None:
        super().__init__(AuthFailure.REVIEW_FAILED, message)


class Authenticator(Protocol):
    """Tells the node a call comes from; async, as a TokenReview is a call to the API server."""

    async def caller_node(self, metadata: Metadata) -> str:
        """The caller's node; raises Unauthenticated (CannotAuthenticate) when it cannot be told."""


def metadata_value(metadata: Metadata, key: str) -> str | None:
    """The first text value of ``key`` (gRPC lowercases metadata keys)."""
    for name, value in metadata or ():
        if name == key and isinstance(value, str):
            return value
    return None


def bearer_token(metadata: Metadata) -> str | None:
    value = metadata_value(metadata, "authorization")
    if value is None or not value.lower().startswith(_BEARER):
        return None
    return value[len(_BEARER):].strip() or None


def required_token(metadata: Metadata, what: str) -> str:
    """The bearer token; Unauthenticated naming ``what`` the agent should send when absent."""
    token = bearer_token(metadata)
    if token is None:
        raise Unauthenticated(AuthFailure.NO_TOKEN,
                              f"no token: send metadata 'authorization: Bearer <token>' with {what} "
                              "(nodemesh agent --token-file FILE)")
    return token


def caller_node(metadata: Metadata, tokens: NodeTokens) -> str:
    """The name of the node whose join token the call's metadata carries; Unauthenticated if none."""
    node = tokens.node_for(required_token(metadata, "this node's join token"))
    if node is None:
        raise Unauthenticated(AuthFailure.BAD_TOKEN,
                              "the node token is not valid here: its hash is not in the controller's "
                              "--node-tokens file; give the agent its node's current token "
                              "(--token-file)")
    return node


class JoinTokens:
    """Local mode: the node whose join token (``--node-tokens``) the call carries."""

    def __init__(self, tokens: NodeTokens) -> None:
        self.tokens = tokens

    async def caller_node(self, metadata: Metadata) -> str:
        return caller_node(metadata, self.tokens)


async def authenticate(context: grpc.aio.ServicerContext, authenticator: Authenticator) -> str:
    """The calling node's name; aborts the call (UNAUTHENTICATED, or UNAVAILABLE when the
    credentials could not be checked) when it cannot be told."""
    try:
        return await authenticator.caller_node(context.invocation_metadata())
    except Unauthenticated as exc:
        log.warning("refused a call from %s: %s", context.peer(), exc)
        await context.abort(exc.code, str(exc))
        raise  # abort raises; this tells the type checker
