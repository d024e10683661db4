"""A Prometheus for a simulated cluster: its config, its two processes, and asking it.

Prometheus runs inside the controller's namespace, which sits on the sim's bridge beside the
nodes: from there it reaches every agent's metrics at ``<node ip>:15020`` and the controller's
at ``172.30.0.254:15014`` (docs/telemetry.md) without a route from the host into the sim. It
listens on 127.0.0.1 there, so nothing else on the bridge sees it either. The host reaches it
through a port forward (``forward.py``) on the host's 127.0.0.1:PORT: the sim's addresses
stay where the design puts them, inside the sim.

Both are sim processes recorded in state.json like the agents (``sim down`` stops them,
``sim stop|start prometheus`` works), in a cgroup of the sim so that cleanup finds them even
without the state. The scrape interval is short (2 s) so that a demo or a test sees its
traffic within seconds.
"""

from __future__ import annotations

import errno
import json
import shutil
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from nodemesh.agent.ports import METRICS_PORT
from nodemesh.tools.sim.names import CONTROLLER_IP, SimError, SimNames
from nodemesh.tools.sim.process import process_env
from nodemesh.tools.sim.state import ProcessRecord, SimState

PROMETHEUS = "prometheus"
FORWARD = "prometheus-forward"
DEFAULT_HOST_PORT = 9090
LISTEN_PORT = 9090  # Prometheus' own, on 127.0.0.1 inside the controller's namespace
# The metrics endpoints of docs/telemetry.md, scraped by the jobs its dashboards and rules name.
CONTROLLER_METRICS_PORT = 15014  # controller/server.py METRICS_PORT (importing it would load gRPC)
AGENT_JOB = "nodemesh-agent"
CONTROLLER_JOB = "nodemesh-controller"
SCRAPE_INTERVAL = "2s"
# The caller's own network namespace: the forward listens where `sim up` (or `sim start`) runs.
CALLER_NETNS = "/proc/self/ns/net"
SETUP_HINT = "run scripts/setup.sh (as root): it installs Debian's prometheus package"


def rules_file() -> Path:
    """The alerting and recording rules shipped with nodemesh (telemetry/prometheus/rules.yaml)."""
    return Path(str(resources.files("nodemesh.telemetry") / "prometheus" / "rules.yaml"))


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def config(state: SimState, rules: Path) -> dict[str, Any]:
    """prometheus.yml for the sim in ``state``: one agent target per node, labelled with its name."""
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL,
                   "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": AGENT_JOB,
             "static_configs": [{"targets": [f"{node['ip']}:{METRICS_PORT}"],
                                 "labels": {"node": name}}
                                for name, node in sorted(state.nodes.items())]},
            {"job_name": CONTROLLER_JOB,
             "static_configs": [{"targets": [f"{CONTROLLER_IP}:{CONTROLLER_METRICS_PORT}"]}]},
        ],
    }


def binary() -> str:
    """The prometheus executable; SimError saying how to install it when there is none."""
    found = shutil.which(PROMETHEUS)
    if found is None:
        raise SimError(f"prometheus is not installed: {SETUP_HINT}")
    return found


def installed() -> bool:
    return shutil.which(PROMETHEUS) is not None


def check_port(port: int) -> None:
    """SimError when the host's 127.0.0.1:``port`` is taken: said before anything is started."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the forward binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            taken = exc.errno == errno.EADDRINUSE
            raise SimError(f"cannot use 127.0.0.1:{port} for Prometheus: "
                           + ("it is already in use (another sim's Prometheus, or one of this "
                              "host?); choose another port with --prometheus-port"
                              if taken else exc.strerror)) from None


def preflight(host_port: int) -> None:
    """What a user can fix, said before anything is started: no prometheus, or the port taken."""
    binary()
    check_port(host_port)


def components(state: SimState, names: SimNames, host_port: int) -> dict[str, ProcessRecord]:
    """The records of Prometheus and its forward; writes the config they start with."""
    names.prometheus_dir.mkdir(parents=True, exist_ok=True)
    config_file = names.prometheus_dir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config(state, rules_file()), sort_keys=False))
    cgroup = names.prometheus_cgroup
    cgroup.mkdir(parents=True, exist_ok=True)
    controller_netns = names.netns_path(names.controller_netns)
    return {
        PROMETHEUS: ProcessRecord(
            argv=[binary(), f"--config.file={config_file}",
                  f"--storage.tsdb.path={names.prometheus_dir / 'data'}",
                  f"--web.listen-address=127.0.0.1:{LISTEN_PORT}"],
            env=process_env({}), netns=controller_netns, cgroup=str(cgroup),
            log=str(names.component_log(PROMETHEUS)),
            # JSON once the TSDB is open: before that the API answers 503
            ready={"http": {"port": LISTEN_PORT, "path": "/api/v1/status/buildinfo"}}),
        FORWARD: ProcessRecord(
            argv=[sys.executable, "-m", "nodemesh.tools.sim.forward", "--listen", str(host_port),
                  "--netns", controller_netns, "--to-port", str(LISTEN_PORT)],
            env=process_env({}), netns=CALLER_NETNS, cgroup=str(cgroup),
            log=str(names.component_log(FORWARD)),
            ready={"tcp": {"host": "127.0.0.1", "port": host_port}}),
    }


def query(base_url: str, expr: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The result of an instant query (Prometheus' HTTP API): ``[{"metric": {...}, "value": [t, v]}]``."""
    address = f"{base_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(address, timeout=timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:  # a bad query: the body says why
        raise SimError(f"Prometheus refused {expr!r}: {exc.read().decode(errors='replace')}") from None
    except OSError as exc:
        raise SimError(f"Prometheus at {base_url} unreachable: {exc}") from None
    return body["data"]["result"]


def scraped(base_url: str, targets: int, timeout: float = 20.0) -> dict[str, str]:
    """Wait until each of ``targets`` has been scraped once; ``up`` per target (node or job)."""
    deadline = time.monotonic() + timeout
    while len(up := query(base_url, "up")) < targets and time.monotonic() < deadline:
        time.sleep(0.5)
    return {r["metric"].get("node", r["metric"]["job"]): r["value"][1] for r in up}
