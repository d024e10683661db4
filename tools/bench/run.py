"""``nodemesh bench``: the mesh against no mesh and against HAProxy, side by side in one run.

One simulated cluster (tools/bench/cluster.yaml) holds every setup at once, so they share the
machine's state; rounds interleave the setups, scenario by scenario, so that drift (thermal,
page cache, other load) spreads over all of them rather than favouring one:
  direct       plain client -> plain server on the other node: the floor
  direct-same  plain client -> plain server on the same node: the same-node floor
  reference    plain client -> HAProxy on node-a -> mutual TLS 1.3 -> HAProxy on node-b -> server
  mesh-cross   meshed client -> Service VIP -> agent -> HBONE -> agent -> server on node-b
  mesh-same    meshed client -> Service VIP -> agent -> server on node-a
Every scenario runs the same load generator (loadgen.py) inside the client pod. The mesh's and
the reference's processes are watched for CPU time and memory. Nothing here asserts a number;
the report says which targets were met.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import click

from nodemesh.errors import UserError
from nodemesh.tools.bench.procstat import cpu_seconds, rss_mb, wakeups

SETUPS = ("direct", "direct-same", "reference", "mesh-cross", "mesh-same")


@dataclass(frozen=True)
class Profile:
    rounds: int
    bulk_megabytes: int
    latency_seconds: float
    rates: tuple[int, ...]  # requests/s of the open-loop latency runs
    sizes: tuple[int, ...]  # bytes per request
    conn_seconds: float
    hold: int  # connections held open for the memory measurement
    churn: int  # connections opened and closed for the memory-after-churn measurement


DEFAULT = Profile(rounds=3, bulk_megabytes=64, latency_seconds=3, rates=(500, 2000), sizes=(64, 1024),
                  conn_seconds=3, hold=10_000, churn=50_000)
QUICK = Profile(rounds=1, bulk_megabytes=8, latency_seconds=1, rates=(200,), sizes=(64, 1024),
                conn_seconds=1, hold=200, churn=1_000)


class BenchError(UserError):
    """A step of the run failed (a ``nodemesh`` command, a load-generator run): which, and what
    it said on stderr. The runner stops at the first failure; without those words (a refused or
    reset connection, a short echo, a traceback, "sim is not up") a failed CI run cannot be
    explained."""


class LoadgenFailed(BenchError):
    """A load-generator run failed: which setup and scenario, its exit status, and its stderr."""

    def __init__(self, setup: str, scenario: str, status: int, stderr: str) -> None:
        super().__init__(f"the load generator failed: {scenario} against {setup}, exit status {status}; "
                         f"its stderr:\n{stderr.strip() or '(nothing)'}")


@dataclass
class Setup:
    name: str
    pod: str  # where the load generator runs
    target: str  # what it dials
    watched: list[int]  # pids whose CPU is the setup's cost (the mesh's or the reference's)


class Bench:
    def __init__(self, sim: str, profile: Profile, say: Any, nodemesh: str | None = None,
                 agent_args: tuple[str, ...] = ()) -> None:
        """``nodemesh``: the CLI whose code runs the cluster (by default this virtualenv's);
        ``agent_args``: added to every agent's command line."""
        self.sim = sim
        self.agent_args = agent_args
        self.profile = profile
        self.say = say
        self.nodemesh = nodemesh or str(Path(sys.executable).parent / "nodemesh")
        self.records: list[dict[str, Any]] = []
        self.memory: dict[str, Any] = {}

    def cli(self, *args: str, timeout: float = 600) -> str:
        """``nodemesh ARGS``' output; when it fails, an error with what it said on stderr."""
        run = subprocess.run([self.nodemesh, *args], capture_output=True, text=True, timeout=timeout)
        if run.returncode != 0:
            raise BenchError(f"`nodemesh {' '.join(args)}` exited {run.returncode}:\n{run.stderr.strip()}")
        return run.stdout

    def loadgen_argv(self, pod: str, *args: str) -> list[str]:
        return [self.nodemesh, "sim", "exec", "--name", self.sim, pod, "--", "python3", "-m",
                "nodemesh.tools.bench.loadgen", *args]

    def loadgen(self, setup: str, scenario: str, pod: str, *args: str) -> dict[str, Any]:
        """Run the load generator in ``pod``; its JSON result, or ``LoadgenFailed``."""
        run = subprocess.run(self.loadgen_argv(pod, *args), capture_output=True, text=True, timeout=600)
        if run.returncode != 0:
            raise LoadgenFailed(setup, scenario, run.returncode, run.stderr)
        return json.loads(run.stdout.strip().splitlines()[-1])

    def status(self) -> dict[str, Any]:
        return json.loads(self.cli("sim", "status", "--name", self.sim, "-o", "json"))

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> None:
        from nodemesh.tools.bench.reference import HaproxyTunnel

        st = self.bring_up()
        try:
            agents = agent_pids(st)
            self.memory["idle_mb"] = {n: rss_mb(pid) for n, pid in agents.items()}
            pods = st["pods"]
            with HaproxyTunnel(self.sim, "node-a", "node-b", (pods["plain/server-b"]["ip"], 8080)) as haproxy:
                setups = [
                    Setup("direct", "plain/client", f"{pods['plain/server-b']['ip']}:8080", []),
                    Setup("direct-same", "plain/client", f"{pods['plain/server-a']['ip']}:8080", []),
                    Setup("reference", "plain/client", haproxy.client_target, haproxy.pids),
                    *mesh_setups(st),
                ]
                for r in range(self.profile.rounds):
                    self.say(f"round {r + 1}/{self.profile.rounds}")
                    for scenario, args in self.scenarios():
                        for setup in setups:
                            self.measure(r, setup, scenario, args)
            self.measure_memory(setups[3], agents)
        finally:
            self.cli("sim", "down", "--name", self.sim)

    def bring_up(self) -> dict[str, Any]:
        """The benchmark cluster, up and tuned; its ``sim status``. Take it down when done.

        When ``sim up`` fails, nothing is taken down: a sim of that name that is already up is
        another run's, and taking it away would fail that run in the middle of its measurements.
        """
        file = Path(str(resources.files("nodemesh.tools.bench") / "cluster.yaml"))
        self.say(f"bringing up the benchmark cluster ({file.name})")
        self.cli("sim", "up", "-f", str(file), "--name", self.sim, *(f"--agent-arg={a}" for a in self.agent_args))
        try:
            st = self.status()
            for pod in st["pods"]:
                # Thousands of short connections per second from one address: let the pods reuse
                # TIME_WAIT ports, as load-test hosts do, or the port search dominates. The server
                # pods need it too: the agent delivers to the app from inside the pod, and its
                # side closes first, so its TIME_WAIT ports pile up there.
                self.cli("sim", "exec", "--name", self.sim, pod, "--", "sysctl", "-q", "-w",
                         "net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=1024 65000")
        except BaseException:
            self.cli("sim", "down", "--name", self.sim)
            raise
        return st

    def scenarios(self) -> list[tuple[str, list[str]]]:
        p = self.profile
        out = [(f"bulk-{n}", ["bulk", "--streams", str(n), "--megabytes", str(p.bulk_megabytes)]) for n in (1, 8)]
        out += [(f"latency-{size}B-{rate}rps", ["latency", "--rate", str(rate), "--size", str(size),
                                                 "--connections", "8", "--seconds", str(p.latency_seconds)])
                for size in p.sizes for rate in p.rates]
        out.append(("conn", ["conn", "--seconds", str(p.conn_seconds), "--concurrency", "8"]))
        return out

    def measure(self, round_: int, setup: Setup, scenario: str, args: list[str]) -> None:
        before, woke, start = cpu_seconds(setup.watched), wakeups(setup.watched), time.perf_counter()
        result = self.loadgen(setup.name, scenario, setup.pod, args[0], setup.target, *args[1:])
        elapsed = time.perf_counter() - start
        cpu, woke = cpu_seconds(setup.watched) - before, wakeups(setup.watched) - woke
        record = {"round": round_, "setup": setup.name, "scenario": scenario, **result,
                  "cpu_seconds": cpu, "wakeups": woke, "wall_seconds": elapsed}
        if setup.watched:
            record.update(per_operation(scenario, result, cpu, woke))
        self.records.append(record)

    def measure_memory(self, mesh: Setup, agents: dict[str, int]) -> None:
        p = self.profile
        self.say(f"memory: {p.hold} connections held open through the mesh, then {p.churn} of churn")
        hold = subprocess.Popen(
            self.loadgen_argv(mesh.pod, "hold", mesh.target, "--connections", str(p.hold), "--seconds", "5"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            opened = hold.stdout.readline()  # type: ignore[union-attr]
            if opened:
                self.memory["held"] = json.loads(opened)
                self.memory["held_mb"] = {n: rss_mb(pid) for n, pid in agents.items()}
        finally:
            _, stderr = hold.communicate(timeout=120)
        if hold.returncode != 0 or not opened:
            raise LoadgenFailed(mesh.name, "hold", hold.returncode, stderr)
        time.sleep(1.0)
        self.memory["before_churn_mb"] = {n: rss_mb(pid) for n, pid in agents.items()}
        churn = self.loadgen(mesh.name, "churn", mesh.pod, "churn", mesh.target, "--count", str(p.churn),
                             "--concurrency", "16")
        self.memory["churn"] = churn
        time.sleep(1.0)
        self.memory["after_churn_mb"] = {n: rss_mb(pid) for n, pid in agents.items()}

    def results(self) -> dict[str, Any]:
        return {"machine": machine(), "profile": asdict(self.profile), "records": self.records,
                "memory": self.memory}


def agent_pids(st: dict[str, Any]) -> dict[str, int]:
    """node -> its agent's pid, from ``sim status``."""
    return {n: st["processes"][f"agent/{n}"]["pid"] for n in ("node-a", "node-b")}


def mesh_setups(st: dict[str, Any]) -> list[Setup]:
    """The two mesh setups of the benchmark cluster, watching the agents that carry them."""
    agents = agent_pids(st)
    return [
        Setup("mesh-cross", "bench/client", f"{st['services']['bench/server-b']['vip']}:80", list(agents.values())),
        Setup("mesh-same", "bench/client", f"{st['services']['bench/server-a']['vip']}:80", [agents["node-a"]]),
    ]


def per_operation(scenario: str, result: dict[str, Any], cpu: float, woke: int) -> dict[str, float]:
    """CPU and wake-ups of a setup's own processes (agents, HAProxies) per request or connection.

    The load generator's start and stop fall in the window too: a small constant overcount,
    the same for every setup.
    """
    if scenario.startswith("latency") and result.get("count"):
        return {"vcpu_per_krps": cpu / result["seconds"] / (result["achieved_rate"] / 1000),
                "wakeups_per_request": woke / result["count"]}
    if scenario == "conn" and result.get("connections"):
        return {"cpu_us_per_conn": cpu * 1e6 / result["connections"],
                "wakeups_per_conn": woke / result["connections"]}
    return {}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    import os

    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem_kb / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


@click.command()
@click.option("--quick", is_flag=True, help="A smoke run (under 2 minutes): checks the harness, not numbers.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("bench-results"),
              show_default=True, help="Where results.json, the report and the plots go.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where the Markdown report goes [default: OUT/report.md].")
@click.option("--name", "sim", default="bench", show_default=True, help="Name of the simulated cluster.")
def bench(quick: bool, out: Path, report: Path | None, sim: str) -> None:
    """Benchmark the mesh against no mesh and HAProxy, in one run; write a report and plots."""
    from nodemesh.tools.bench.report import write_report

    profile = QUICK if quick else DEFAULT
    run = Bench(sim, profile, lambda line: click.echo(line, err=True))
    started = time.monotonic()
    run.run()
    out.mkdir(parents=True, exist_ok=True)
    results = run.results()
    results["duration_seconds"] = round(time.monotonic() - started, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    click.echo(write_report(results, out, report or out / "report.md"))
    click.echo(f"\nwritten to {out}/ in {results['duration_seconds']}s", err=True)
