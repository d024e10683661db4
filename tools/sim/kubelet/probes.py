"""Readiness probes: httpGet, tcpSocket and exec, as the node's kubelet makes them.

httpGet and tcpSocket connect from the kubelet's own network namespace (the node's, where the
sim kubelet runs) to the pod's IP, as a real kubelet does from the host: so a probe arrives at a
meshed pod as plaintext from the node, not as a connection of the pod's own (which the mesh
would steer through the agent). exec runs the command in the container's own namespaces
(``nsenter`` on its pid), as ``kubectl exec`` would. HTTP success is a status from 200 to 399,
as the kubelet's.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, Mapping

Obj = Mapping[str, Any]


def probe_port(port: int | str, container: Obj) -> int:
    """A numeric port, or the named one of the container's ``ports``."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"container {container['name']} declares no port named {port!r}")


async def _connect(host: str, port: int, timeout: float,
                   tls: bool = False) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    context = None
    if tls:  # the kubelet does not verify a probe's certificate either
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return await asyncio.wait_for(asyncio.open_connection(host, port, ssl=context,
                                                          server_hostname=host if tls else None),
                                  timeout)


async def _http(host: str, spec: Obj, container: Obj, timeout: float) -> bool:
    port = probe_port(spec["port"], container)
    reader, writer = await _connect(host, port, timeout, spec.get("scheme") == "HTTPS")
    try:
        headers = "".join(f"{h['name']}: {h['value']}\r\n" for h in spec.get("httpHeaders") or [])
        writer.write(f"GET {spec.get('path', '/')} HTTP/1.1\r\nHost: {host}:{port}\r\n{headers}"
                     "User-Agent: kube-probe/1.36\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line.split()
        return len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400
    finally:
        writer.close()


async def _exec(pid: int, command: list[str], timeout: float) -> bool:
    child = await asyncio.create_subprocess_exec(
        "nsenter", "-t", str(pid), "-m", "-n", "-C", "--", *command,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        return await asyncio.wait_for(child.wait(), timeout) == 0
    except asyncio.TimeoutError:
        child.kill()
        await child.wait()
        return False


async def run_probe(probe: Obj, container: Obj, pod_ip: str, pid: int) -> bool:
    """One try of ``probe`` (a Probe object); False on any failure, never raises."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "httpGet" in probe:
            spec = probe["httpGet"]
            return await _http(spec.get("host") or pod_ip, spec, container, timeout)
        if "tcpSocket" in probe:
            spec = probe["tcpSocket"]
            _, writer = await _connect(spec.get("host") or pod_ip,
                                       probe_port(spec["port"], container), timeout)
            writer.close()
            return True
        if "exec" in probe:
            return await _exec(pid, list(probe["exec"]["command"]), timeout)
    except (OSError, ValueError, asyncio.TimeoutError):
        return False
    return False  # a probe of a kind the sim does not know (grpc) never passes: visibly not ready


class ProbeState:
    """Readiness of one container from its probe's results (sans-IO)."""

    def __init__(self, probe: Obj | None, started: float) -> None:
        self.probe = probe
        self.ready = probe is None
        self.failures = 0
        self.successes = 0
        self.next_at = started + float((probe or {}).get("initialDelaySeconds", 0))

    def due(self, now: float) -> bool:
        return self.probe is not None and now >= self.next_at

    def record(self, ok: bool, now: float) -> None:
        assert self.probe is not None
        self.next_at = now + float(self.probe.get("periodSeconds", 10))
        if ok:
            self.failures, self.successes = 0, self.successes + 1
            if self.successes >= int(self.probe.get("successThreshold", 1)):
                self.ready = True
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.failures >= int(self.probe.get("failureThreshold", 3)):
                self.ready = False
