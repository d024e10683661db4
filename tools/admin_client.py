"""Reading an agent's admin API, which listens on 127.0.0.1 inside the agent's network namespace.

The CLI runs on the host, so it enters the node's namespace just long enough to create the
socket (``nodemesh.netns``); the HTTP exchange itself is the standard library's.
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any

from nodemesh.agent.ports import ADMIN_PORT
from nodemesh.errors import UserError
from nodemesh.netns import Netns


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


def fetch(netns_path: str, path: str, port: int = ADMIN_PORT, timeout: float = 5.0) -> Any:
    """GET ``path`` from the agent admin API in the namespace at ``netns_path``; parsed JSON."""
    sock = _socket_in(netns_path)
    try:
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
    except OSError as e:
        sock.close()
        raise AdminError(f"agent admin API in {netns_path} (127.0.0.1:{port}) unreachable: {e}; "
                         "is the agent running?") from e
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.sock = sock
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise AdminError(f"agent admin API {path}: HTTP {response.status}: {body[:200]!r}")
    return json.loads(body)
