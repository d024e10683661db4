"""Is a component serving? Probes run from inside the component's own network namespace.

The agent's readiness endpoint listens on 127.0.0.1 of the node's namespace, and the
controller's port is on the simulated bridge: neither is reachable from the host, which is
the point. A probe opens its socket in the namespace (``nodemesh.netns``) and talks from there.
"""

from __future__ import annotations

import http.client
import time
from pathlib import Path
from typing import Mapping

from nodemesh.netns import Netns
from nodemesh.tools.sim.names import SimError
from nodemesh.tools.sim.process import alive
from nodemesh.tools.sim.state import ProcessRecord


def _connect(netns_path: str, host: str, port: int, timeout: float):
    with Netns(netns_path) as netns:
        sock = netns.socket()
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def http_get(netns_path: str, port: int, path: str, host: str = "127.0.0.1",
             timeout: float = 2.0) -> tuple[int, bytes]:
    """(status, body) of ``GET path`` on ``host:port`` as seen from inside the namespace.

    Tests use it for the agent's admin API (127.0.0.1:15000 of a node), which only the node sees.
    """
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.sock = _connect(netns_path, host, port, timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def probe(record: ProcessRecord) -> bool:
    """Whether the process answers its readiness check (True when it has none and is alive)."""
    if not alive(record):
        return False
    check = record.ready or {}
    try:
        if "http" in check:
            return http_get(record.netns, check["http"]["port"], check["http"]["path"])[0] == 200
        if "tcp" in check:
            _connect(record.netns, check["tcp"]["host"], check["tcp"]["port"], 1.0).close()
    except OSError:
        return False
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
