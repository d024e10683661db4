"""Reading an agent's HTTP endpoints, which listen inside the agent's network namespace.

The admin API (JSON) is on 127.0.0.1 there, the metrics (Prometheus text) on 0.0.0.0: either
way unreachable from the host. The CLI runs on the host, so it enters the node's namespace just
long enough to create the socket (``nodemesh.netns``); the HTTP exchange itself is the
standard library's.
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any

from nodemesh.agent.ports import ADMIN_PORT, METRICS_PORT, READINESS_PORT
from nodemesh.errors import UserError
from nodemesh.netns import Netns

# What to call the endpoint on each port in messages.
ENDPOINTS = {ADMIN_PORT: "agent admin API", METRICS_PORT: "agent metrics endpoint",
             READINESS_PORT: "agent readiness endpoint"}


class AdminError(UserError):
    pass


def _socket_in(netns_path: str) -> socket.socket:
    """A socket in the agent's namespace. Entering it is where a user's mistakes show: no root
    (EPERM from setns), or a namespace that is gone (ENOENT: the sim is down or damaged)."""
    try:
        with Netns(netns_path) as ns:
            return ns.socket()
    except FileNotFoundError:
        raise AdminError(f"network namespace {netns_path} does not exist: is the sim up? "
                         "`nodemesh sim status`") from None
    except PermissionError as e:
        raise AdminError(f"cannot enter network namespace {netns_path} ({e.strerror}): "
                         "run as root") from None
    except OSError as e:
        raise AdminError(f"cannot enter network namespace {netns_path} ({e.strerror or e})") from None


def get_text(netns_path: str, path: str, port: int = ADMIN_PORT, timeout: float = 5.0) -> str:
    """GET ``path`` from the agent's port ``port`` on 127.0.0.1 in the namespace at
    ``netns_path``; the body. Whatever stops the exchange is an ``AdminError`` naming the
    endpoint, since an agent that is down, hung or restarting is a state the user meets."""
    endpoint = ENDPOINTS.get(port, f"agent port {port}")
    sock = _socket_in(netns_path)
    try:
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
    except OSError as e:
        sock.close()
        raise AdminError(f"{endpoint} in {netns_path} (127.0.0.1:{port}) unreachable: {e}; "
                         "is the agent running?") from e
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.sock = sock
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as e:
        raise AdminError(f"{endpoint} in {netns_path} (127.0.0.1:{port}) broke off {path}: "
                         f"{str(e) or type(e).__name__}") from e
    finally:
        conn.close()
    if response.status != 200:
        raise AdminError(f"{endpoint} {path}: HTTP {response.status}: {body[:200]!r}")
    return body.decode(errors="replace")


def fetch(netns_path: str, path: str, port: int = ADMIN_PORT, timeout: float = 5.0) -> Any:
    """GET ``path`` from the agent admin API in the namespace at ``netns_path``; parsed JSON."""
    return json.loads(get_text(netns_path, path, port, timeout))
