"""Is a component serving? Probes run from inside the component's own network namespace.

The agent's readiness endpoint is in the node's namespace, and the controller's port is on the
simulated bridge: neither is reachable from the host, which is the point. A probe opens its
socket in the namespace (``nodemesh.netns``) and talks from there; HTTP checks go through the
agent admin client, which does exactly that.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping

from nodemesh.netns import Netns
from nodemesh.tools.admin_client import AdminError, fetch
from nodemesh.tools.sim.names import SimError
from nodemesh.tools.sim.process import alive
from nodemesh.tools.sim.state import ProcessRecord


def _tcp_open(netns_path: str, host: str, port: int, timeout: float = 1.0) -> bool:
    with Netns(netns_path) as netns:
        sock = netns.socket()
    with sock:
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
        except OSError:
            return False
    return True


def probe(record: ProcessRecord) -> bool:
    """Whether the process answers its readiness check (True when it has none and is alive)."""
    if not alive(record):
        return False
    check = record.ready or {}
    if "http" in check:
        try:
            fetch(record.netns, check["http"]["path"], port=check["http"]["port"], timeout=2.0)
        except (AdminError, OSError, ValueError):  # not 200, not answering, not JSON
            return False
    if "tcp" in check:
        return _tcp_open(record.netns, check["tcp"]["host"], check["tcp"]["port"])
    return True


def last_lines(path: str, count: int = 20) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(lines[-count:]) or "(empty log)"


def wait_ready(components: Mapping[str, ProcessRecord], timeout: float = 30.0) -> None:
    """Return when every component is ready; SimError naming the first that died or is late.

    A component that exits stops the wait at once: waiting out the timeout would only delay
    the error its log already explains.
    """
    waiting = dict(components)
    deadline = time.monotonic() + timeout
    while waiting:
        for name, record in list(waiting.items()):
            if not alive(record):
                raise SimError(f"{name} exited while starting; the end of its log ({record.log}):\n"
                               f"{last_lines(record.log)}")
            if probe(record):
                del waiting[name]
        if not waiting:
            return
        if time.monotonic() > deadline:
            name, record = next(iter(waiting.items()))
            raise SimError(f"{name} is not ready after {timeout:g} s; the end of its log "
                           f"({record.log}):\n{last_lines(record.log)}")
        time.sleep(0.1)
