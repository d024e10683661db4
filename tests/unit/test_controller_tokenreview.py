"""Kubernetes mode's node authentication without an API server: the decision on a TokenReview's
status, the metadata an agent sends, the cache of accepted reviews (a fake clock), and what an
unreachable API server means to the agent."""

from __future__ import annotations

import asyncio
import base64
import json

import grpc
import pytest

from nodemesh.controller.apiclient import connect
from nodemesh.controller.nodeauth.auth import AuthFailure, CannotAuthenticate, Unauthenticated
from nodemesh.controller.nodeauth.tokenreview import (CACHE_SECONDS, NODE_NAME_EXTRA, Expected,
                                                      ReviewCache, TokenReviews, claimed_node,
                                                      decide, token_expiry)

from kubeapi import unreachable_kubeconfig

AGENTS = Expected("nodemesh-system", "nodemesh-agent")
AGENT = "system:serviceaccount:nodemesh-system:nodemesh-agent"


def status(node: str | list[str] | None = "node-a", username: str = AGENT,
           audiences: list[str] | None = None, authenticated: bool = True) -> dict:
    """A TokenReview status as the API server writes it (camelCase JSON)."""
    extra = {} if node is None else {NODE_NAME_EXTRA: [node] if isinstance(node, str) else node,
                                     "authentication.kubernetes.io/pod-name": ["agent-x"]}
    return {"authenticated": authenticated, "audiences": ["nodemesh"] if audiences is None else audiences,
            "user": {"username": username, "uid": "u", "groups": ["system:serviceaccounts"],
                     "extra": extra}}


def test_the_agents_token_for_its_own_node_is_accepted():
    assert AGENTS.username == AGENT
    assert decide(status("node-a"), "node-a", AGENTS) == "node-a"


@pytest.mark.parametrize("review, claimed, reason, words", [
    ({"authenticated": False, "error": "token audiences [\"https://kubernetes.default.svc\"] is invalid "
      "for the target audiences [\"nodemesh\"]"}, "node-a", AuthFailure.BAD_TOKEN,
     "does not accept this token for audience nodemesh (token audiences"),
    ({"authenticated": False}, "node-a", AuthFailure.BAD_TOKEN, "(no reason given)"),
    ({}, "node-a", AuthFailure.BAD_TOKEN, "projected service-account token"),
    (status(audiences=[]), "node-a", AuthFailure.WRONG_AUDIENCE, "not for audience nodemesh"),
    (status(audiences=["other"]), "node-a", AuthFailure.WRONG_AUDIENCE, "names ['other']"),
    (status(username="system:serviceaccount:nodemesh-system:other"), "node-a",
     AuthFailure.WRONG_SERVICE_ACCOUNT, "belongs to system:serviceaccount:nodemesh-system:other, not "
     f"to the agents' service account {AGENT}"),
    (status(username="system:serviceaccount:elsewhere:nodemesh-agent"), "node-a",
     AuthFailure.WRONG_SERVICE_ACCOUNT, "--agent-service-account"),
    (status(node=None), "node-a", AuthFailure.BAD_TOKEN, f"not bound to a pod on a node (its review "
     f"has no {NODE_NAME_EXTRA})"),
    (status(node=[]), "node-a", AuthFailure.BAD_TOKEN, "not bound to a pod"),
    (status("node-b"), "node-a", AuthFailure.TOKEN_OF_OTHER_NODE,
     "belongs to the agent on node node-b, not to node node-a that the call claims"),
    (status(["node-a", "node-b"]), "node-a", AuthFailure.TOKEN_OF_OTHER_NODE, "node-a, node-b"),
])
def test_each_refusal_says_why(review, claimed, reason, words):
    with pytest.raises(Unauthenticated) as info:
        decide(review, claimed, AGENTS)
    assert info.value.reason is reason
    assert info.value.code is grpc.StatusCode.UNAUTHENTICATED
    assert words in str(info.value)


def test_the_metadata_names_the_node():
    assert claimed_node((("authorization", "Bearer t"), ("x-nodemesh-node", "node-a"))) == "node-a"
    for metadata in [(("authorization", "Bearer t"),), (("x-nodemesh-node", ""),), None]:
        with pytest.raises(Unauthenticated, match="send metadata 'x-nodemesh-node: <node>'") as info:
            claimed_node(metadata)
        assert info.value.reason is AuthFailure.NO_NODE


def jwt(claims: dict) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


def test_a_tokens_expiry_is_read_without_verifying_it():
    assert token_expiry(jwt({"exp": 1700000000, "aud": ["nodemesh"]})) == 1700000000.0
    assert token_expiry(jwt({"aud": ["nodemesh"]})) is None
    assert token_expiry(jwt({"exp": "soon"})) is None
    for junk in ["", "garbage", "a.!!!.c", "a.bm90IGpzb24.c", f"a.{base64.b64encode(b'[1]').decode()}.c"]:
        assert token_expiry(junk) is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_accepted_review_is_kept_a_minute_at_most_and_never_past_the_tokens_expiry():
    clock = Clock()
    cache = ReviewCache(clock)
    cache.put("long", status(), expiry=clock.now + 3600)
    cache.put("short", status(), expiry=clock.now + 10)
    cache.put("unknown", status(), expiry=None)
    cache.put("expired", status(), expiry=clock.now - 1)
    assert cache.get("expired") is None
    clock.now += 9.9
    assert all(cache.get(k) == status() for k in ("long", "short", "unknown"))
    clock.now += 0.1
    assert cache.get("short") is None
    clock.now = 1000.0 + CACHE_SECONDS - 0.1
    assert cache.get("long") is not None and cache.get("unknown") is not None
    clock.now += 0.1
    assert cache.get("long") is None and cache.get("unknown") is None


def test_dead_entries_are_dropped_as_new_ones_come():
    clock = Clock()
    cache = ReviewCache(clock)
    for i in range(100):
        cache.put(f"t{i}", status(), expiry=None)
    clock.now += CACHE_SECONDS
    cache.put("fresh", status(), expiry=None)
    assert list(cache._entries) == ["fresh"]


def test_an_unreachable_api_server_is_unavailable_not_unauthenticated(tmp_path):
    """The agent retries UNAVAILABLE with backoff; UNAUTHENTICATED would say its token is bad.
    Nothing listens on the kubeconfig's port (a real refused connection, not a mock)."""
    async def scenario() -> None:
        api = await connect(unreachable_kubeconfig(tmp_path / "kubeconfig"))
        try:
            reviews = TokenReviews(api, AGENTS)
            metadata = (("authorization", "Bearer some-token"), ("x-nodemesh-node", "node-a"))
            calls = [reviews.caller_node(metadata) for _ in range(3)]
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert all(isinstance(r, CannotAuthenticate) for r in results), results
            assert results[0].code is grpc.StatusCode.UNAVAILABLE
            assert results[0].reason is AuthFailure.REVIEW_FAILED
            assert "cannot reach the API server to review the token" in str(results[0])
            assert "some-token" not in str(results[0])
            assert reviews.reviews == 1  # three calls at once, one review
            with pytest.raises(CannotAuthenticate):  # a failure is not remembered: asked again
                await reviews.caller_node(metadata)
            assert reviews.reviews == 2
            with pytest.raises(Unauthenticated, match="no token") as info:
                await reviews.caller_node((("x-nodemesh-node", "node-a"),))
            assert info.value.reason is AuthFailure.NO_TOKEN and reviews.reviews == 2
        finally:
            await api.close()

    asyncio.run(scenario())
