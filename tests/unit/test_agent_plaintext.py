"""The plaintext listener's decision: refuse or deliver, by mTLS mode and how the connection came."""

from __future__ import annotations

from nodemesh.agent.ports import PLAINTEXT_PORT
from nodemesh.agent.proxy.plaintext import NOT_CAPTURED, REFUSED_STRICT, refusal
from nodemesh.model import PERMISSIVE, STRICT


def test_permissive_delivers_captured_connections() -> None:
    assert refusal(PERMISSIVE, 8080) is None


def test_strict_refuses_captured_connections() -> None:
    assert refusal(STRICT, 8080)[0] == REFUSED_STRICT  # type: ignore[index]


def test_a_connection_dialled_to_15006_itself_is_refused_in_any_mode() -> None:
    """Delivering it to "the app" at its local address would dial 15006 again: a loop."""
    for mode in (PERMISSIVE, STRICT):
        assert refusal(mode, PLAINTEXT_PORT)[0] == NOT_CAPTURED  # type: ignore[index]
