"""What the agent does that needs privilege, each step on its own, run by
tests/integration/test_agent_capabilities.py in a child with only some capabilities.

    python tests/capability_probe.py CGROUP PID NETNS PINS

Prints a JSON object: step -> null (it worked) or the error. The steps are the agent's own code
(steering, capture, netns), except the socket mark, set here on a fresh socket as the agent sets
it on its own (the same SO_MARK call, needing the same capability).
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Callable

from nodemesh.agent.ebpf.capture import PlaintextCapture
from nodemesh.agent.ebpf.steering import Steering
from nodemesh.agent.ports import AGENT_MARK
from nodemesh.netns import Netns

POD_IP = "127.0.0.1"  # what the capture is attached for, in the probe's namespace


def steering(cgroup: Path) -> None:
    """Compile (bcc, in the loader's child), load and attach the steering programs."""
    Steering(cgroup).close()


def proc_netns(pid: int) -> None:
    """Open the network namespace of a pod's process (of another user) by /proc."""
    Netns(f"/proc/{pid}/ns/net").close()


def setns_socket(netns: str) -> None:
    """Make a socket inside a pod's network namespace (setns there and back)."""
    with Netns(netns) as ns:
        ns.socket().close()


def mark() -> None:
    """Mark one of the agent's sockets, so the steering programs leave it alone."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, AGENT_MARK)


def capture(netns: str, pins: Path) -> None:
    """Load the sk_lookup program and attach it to a pod's namespace, pinning the link."""
    with Netns(netns) as ns:
        PlaintextCapture(pins).attach(ns, POD_IP, None, strict=True)


def main(cgroup: str, pid: str, netns: str, pins: str) -> None:
    steps: dict[str, Callable[[], None]] = {
        "steering": lambda: steering(Path(cgroup)),
        "proc_netns": lambda: proc_netns(int(pid)),
        "setns_socket": lambda: setns_socket(netns),
        "mark": mark,
        "capture": lambda: capture(netns, Path(pins)),
    }
    results: dict[str, str | None] = {}
    for name, step in steps.items():
        try:
            step()
            results[name] = None
        except Exception as exc:  # what failed and why is the result
            results[name] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:])
