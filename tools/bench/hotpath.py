"""What the hot path costs now: connection rate, latency and throughput, mesh against direct.

Brings up a small simulated cluster (client pods on node-a, a server on each node), then, for
several interleaved rounds, runs the same load generator (``loadgen``) for each setup:
  direct      a pod outside the mesh -> a server outside the mesh on node-b (no agent involved)
  cross-node  a meshed pod -> a Service VIP backed by the node-b server (both agents, HBONE)
  same-node   a meshed pod -> a Service VIP backed by the node-a server (one agent, no TLS)
and prints min/median/max per metric with the ratio to direct. Measures; asserts nothing.

    python -m nodemesh.tools.bench.hotpath [--rounds 3] [--seconds 3] [--count 2000]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import click

CLUSTER = """
apiVersion: v1
kind: Namespace
metadata: {name: bench, labels: {nodemesh.io/mesh: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: plain}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: bench}
spec: {nodeName: node-a, containers: [{name: main, command: [sleep, infinity]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: plain}
spec: {nodeName: node-a, containers: [{name: main, command: [sleep, infinity]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: server-b, namespace: bench, labels: {app: server-b}}
spec:
  nodeName: node-b
  containers: [{name: server, command: [python3, -m, nodemesh.tools.apps.server, --port, "8080"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: server-a, namespace: bench, labels: {app: server-a}}
spec:
  nodeName: node-a
  containers: [{name: server, command: [python3, -m, nodemesh.tools.apps.server, --port, "8080"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: server-b, namespace: plain}
spec:
  nodeName: node-b
  containers: [{name: server, command: [python3, -m, nodemesh.tools.apps.server, --port, "8080"]}]
---
apiVersion: v1
kind: Service
metadata: {name: server-b, namespace: bench}
spec: {selector: {app: server-b}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: server-a, namespace: bench}
spec: {selector: {app: server-a}, ports: [{port: 80, targetPort: 8080}]}
"""

SIM = "hotpath"


def nodemesh(*args: str) -> str:
    exe = str(Path(sys.executable).parent / "nodemesh")
    return subprocess.run([exe, *args], capture_output=True, text=True, check=True, timeout=600).stdout


def loadgen(pod: str, *args: str) -> dict:
    return json.loads(nodemesh("sim", "exec", "--name", SIM, pod, "--", "python3", "-m",
                               "nodemesh.tools.bench.loadgen", *args))


@click.command()
@click.option("--rounds", default=3, show_default=True)
@click.option("--seconds", default=3.0, show_default=True, help="Length of each connection-rate run.")
@click.option("--count", default=2000, show_default=True, help="Round trips per latency run.")
@click.option("--concurrency", default=8, show_default=True)
@click.option("--megabytes", default=64, show_default=True, help="Echoed through one connection per bulk run.")
def main(rounds: int, seconds: float, count: int, concurrency: int, megabytes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "bench.yaml"
        file.write_text(CLUSTER)
        nodemesh("sim", "up", "-f", str(file), "--name", SIM)
        try:
            status = json.loads(nodemesh("sim", "status", "--name", SIM, "-o", "json"))
            for pod in status["pods"]:
                # Thousands of short connections per second from one address: let the pods reuse
                # TIME_WAIT ports, as load-test hosts do, or the port search dominates. The server
                # pods need it too: the agent delivers to the app from inside the pod, and its
                # side closes first, so its TIME_WAIT ports pile up there.
                nodemesh("sim", "exec", "--name", SIM, pod, "--", "sysctl", "-q", "-w",
                         "net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=1024 65000")
            setups = {
                "direct": ("plain/client", f"{status['pods']['plain/server-b']['ip']}:8080"),
                "cross-node": ("bench/client", f"{status['services']['bench/server-b']['vip']}:80"),
                "same-node": ("bench/client", f"{status['services']['bench/server-a']['vip']}:80"),
            }
            results: dict[str, dict[str, list[float]]] = {s: {} for s in setups}
            for r in range(rounds):
                for setup, (pod, target) in setups.items():
                    conn = loadgen(pod, "conn", target, "--seconds", str(seconds),
                                   "--concurrency", str(concurrency))
                    rr = loadgen(pod, "rr", target, "--count", str(count), "--size", "64")
                    bulk = loadgen(pod, "bulk", target, "--megabytes", str(megabytes))
                    for key, value in (("conn/s", conn["per_second"]), ("p50 us", rr["p50_us"]),
                                       ("p99 us", rr["p99_us"]), ("bulk MB/s", bulk["mb_per_s"])):
                        results[setup].setdefault(key, []).append(value)
                click.echo(f"round {r + 1}/{rounds} done", err=True)
        finally:
            nodemesh("sim", "down", "--name", SIM)
    click.echo(report(results))


def report(results: dict[str, dict[str, list[float]]]) -> str:
    lines = ["| setup | metric | min | median | max | median / direct |", "|---|---|---|---|---|---|"]
    for setup, metrics in results.items():
        for metric, values in metrics.items():
            median = statistics.median(values)
            base = statistics.median(results["direct"][metric])
            lines.append(f"| {setup} | {metric} | {min(values):.0f} | {median:.0f} | {max(values):.0f} "
                         f"| {median / base:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
