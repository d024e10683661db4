"""Kubernetes mode: an agent is who the API server says its projected service-account token is.

The agent sends the token the kubelet projected into its pod (audience ``nodemesh``) as the
bearer token and claims its node in ``x-nodemesh-node``. The controller asks the API server
(a TokenReview, with its own credentials) who the token belongs to, and accepts the call only if
the token is valid for the ``nodemesh`` audience, belongs to the agents' service account, and
was issued for a pod on the claimed node: the API server records the node of the pod a token is
bound to in ``user.extra["authentication.kubernetes.io/node-name"]``, so a token lifted from one
node cannot speak for another, and no other pod's token speaks for any.

``decide`` is that decision, without IO. ``ReviewCache`` keeps accepted reviews briefly (at most
a minute, never past the token's expiry), so that an agent's start (a config stream, then a CSR
per pod, at once) costs one review, not one per call; refusals are not kept, so a fixed token
works at its next try. ``TokenReviews`` is the thin IO around them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from dataclasses import dataclass
from typing import Any, Callable

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from nodemesh.controller.nodeauth.auth import (NODE_HEADER, AuthFailure, CannotAuthenticate, Metadata,
                                               Unauthenticated, metadata_value, required_token)
from nodemesh.controller.nodeauth.tokens import token_hash

AUDIENCE = "nodemesh"
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
CACHE_SECONDS = 60.0
REVIEW_TIMEOUT_SECONDS = 10.0
_TOKEN_HINT = (f"give the agent its pod's projected service-account token (a serviceAccountToken "
               f"volume with audience {AUDIENCE}; nodemesh agent --token-file FILE)")


@dataclass(frozen=True)
class Expected:
    """Whose tokens are agents': ``system:serviceaccount:<namespace>:<name>``, for ``audience``."""

    namespace: str
    service_account: str
    audience: str = AUDIENCE

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def claimed_node(metadata: Metadata) -> str:
    node = metadata_value(metadata, NODE_HEADER)
    if not node:
        raise Unauthenticated(AuthFailure.NO_NODE,
                              f"no node named: send metadata '{NODE_HEADER}: <node>' with the agent's "
                              "node (nodemesh agent --node NAME does)")
    return node


def decide(status: dict[str, Any], claimed: str, expected: Expected) -> str:
    """The node of an agent whose token's review is ``status`` (a TokenReview's status, as the
    API server spells it) and that claims ``claimed``; Unauthenticated saying why not."""
    if not status.get("authenticated"):
        why = status.get("error") or "no reason given"
        raise Unauthenticated(AuthFailure.BAD_TOKEN,
                              f"the API server does not accept this token for audience "
                              f"{expected.audience} ({why}); {_TOKEN_HINT}")
    if expected.audience not in (status.get("audiences") or ()):
        raise Unauthenticated(AuthFailure.WRONG_AUDIENCE,
                              f"the token is not for audience {expected.audience} (its review names "
                              f"{status.get('audiences') or 'none'}); {_TOKEN_HINT}")
    user = status.get("user") or {}
    username = user.get("username", "")
    if username != expected.username:
        raise Unauthenticated(AuthFailure.WRONG_SERVICE_ACCOUNT,
                              f"the token belongs to {username or 'nobody'}, not to the agents' "
                              f"service account {expected.username}: run the agent as that service "
                              "account (or tell the controller --agent-service-account)")
    nodes = (user.get("extra") or {}).get(NODE_NAME_EXTRA) or []
    if not nodes:
        raise Unauthenticated(AuthFailure.BAD_TOKEN,
                              f"the token is not bound to a pod on a node (its review has no "
                              f"{NODE_NAME_EXTRA}); {_TOKEN_HINT}")
    if nodes != [claimed]:
        raise Unauthenticated(AuthFailure.TOKEN_OF_OTHER_NODE,
                              f"the token belongs to the agent on node {', '.join(nodes)}, not to node "
                              f"{claimed} that the call claims: give each agent its own pod's token "
                              "and its own node's name (--node)")
    return claimed


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, unverified (the review verified the token): when its
    acceptance must stop being remembered. None if the token says nothing readable."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp")
    except (IndexError, ValueError, binascii.Error, AttributeError):
        return None
    return float(exp) if isinstance(exp, (int, float)) else None


class ReviewCache:
    """Accepted reviews by the token's SHA-256 (the cache holds no token), each kept
    ``CACHE_SECONDS`` at most and never past its token's expiry."""

    def __init__(self, clock: Callable[[], float] = time.time, seconds: float = CACHE_SECONDS) -> None:
        self.clock = clock
        self.seconds = seconds
        self._entries: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        until, status = entry
        if self.clock() >= until:
            del self._entries[key]
            return None
        return status

    def put(self, key: str, status: dict[str, Any], expiry: float | None) -> None:
        now = self.clock()
        until = min(now + self.seconds, expiry if expiry is not None else now + self.seconds)
        # Every entry dies within a minute: dropping the dead ones here bounds the cache by the
        # agents seen in the last minute, with no timer.
        self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
        if until > now:
            self._entries[key] = (until, status)


class TokenReviews:
    """The ``Authenticator`` of Kubernetes mode: a TokenReview per new token, through ``api``
    (the controller's own API client, which may create tokenreviews)."""

    def __init__(self, api: client.ApiClient, expected: Expected, cache: ReviewCache | None = None) -> None:
        self._api = api
        self._reviews = client.AuthenticationV1Api(api)
        self.expected = expected
        self.cache = cache or ReviewCache()
        self.reviews = 0  # POSTs made: what the cache saves shows here
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def caller_node(self, metadata: Metadata) -> str:
        token = required_token(metadata, "the agent's projected service-account token")
        claimed = claimed_node(metadata)
        key = token_hash(token)
        status = self.cache.get(key)
        if status is not None:
            return decide(status, claimed, self.expected)
        status = await self._review_once(key, token)
        node = decide(status, claimed, self.expected)
        self.cache.put(key, status, token_expiry(token))
        return node

    async def _review_once(self, key: str, token: str) -> dict[str, Any]:
        """One review for calls with the same token at the same time (an agent's start)."""
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._review(token))
            self._pending[key] = pending
            pending.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(pending)

    def _forget(self, key: str, done: asyncio.Future[dict[str, Any]]) -> None:
        self._pending.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved here, should every caller have gone meanwhile

    async def _review(self, token: str) -> dict[str, Any]:
        self.reviews += 1
        body = client.V1TokenReview(spec=client.V1TokenReviewSpec(
            token=token, audiences=[self.expected.audience]))
        try:
            review = await self._reviews.create_token_review(body, _request_timeout=REVIEW_TIMEOUT_SECONDS)
        except ApiException as exc:
            hint = (" (grant the controller's service account `create` on "
                    "tokenreviews.authentication.k8s.io)" if exc.status in (401, 403) else "")
            raise CannotAuthenticate(f"the API server refused the controller's TokenReview: "
                                     f"{exc.status} {exc.reason}{hint}; try again later") from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise CannotAuthenticate(f"the controller cannot reach the API server to review the "
                                     f"token ({exc or type(exc).__name__}); try again later") from None
        return self._api.sanitize_for_serialization(review.status) or {}
