"""The sim's control-plane processes: where each runs and listens, and that kube-proxy leaves the
host's global settings alone."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from nodemesh.tools.kube import sim
from nodemesh.tools.kube.components import Layout

CP_NETNS = "/run/netns/nm-t-cp"


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Layout:
    # no built binaries needed to compute command lines
    monkeypatch.setattr(sim, "bin_dir", lambda: Path("/kube/bin"))
    return sim.sim_layout(tmp_path / "kube")


def log(component: str) -> Path:
    return Path(f"/logs/{component}.log")


def _flags(argv: list[str]) -> dict[str, str]:
    return dict(a.removeprefix("--").split("=", 1) for a in argv[1:] if "=" in a)


def test_the_api_server_is_at_the_sims_address_and_on_the_namespaces_loopback(layout: Layout) -> None:
    specs = {**sim.apiserver_specs(layout, CP_NETNS, 16443, log), **sim.controller_specs(layout, CP_NETNS, log)}
    assert list(specs) == [sim.ETCD, sim.APISERVER, sim.APISERVER_FORWARD, sim.CONTROLLER_MANAGER, sim.SCHEDULER]
    api = _flags(specs[sim.APISERVER].argv)
    assert (api["advertise-address"], api["bind-address"], api["secure-port"]) == ("172.30.0.254", "0.0.0.0", "6443")
    assert api["etcd-servers"] == "http://127.0.0.1:2379"
    assert all(specs[c].netns == CP_NETNS for c in (sim.ETCD, sim.APISERVER, sim.CONTROLLER_MANAGER, sim.SCHEDULER))
    forward = specs[sim.APISERVER_FORWARD]
    assert forward.netns == sim.CALLER_NETNS
    assert forward.argv[-6:] == ["--listen", "16443", "--netns", CP_NETNS, "--to-port", "6443"]
    assert set(asdict(forward)) == {"argv", "env", "netns", "log", "ready"}


def test_kubeconfigs_point_in_the_sim_at_its_address_and_on_the_host_at_the_forward(
        layout: Layout, tmp_path: Path) -> None:
    layout = sim.prepare_sim(layout.root, tmp_path / "kubeconfig", 16443)

    def server(path: Path) -> str:
        return yaml.safe_load(path.read_text())["clusters"][0]["cluster"]["server"]

    assert server(tmp_path / "kubeconfig") == "https://127.0.0.1:16443"
    assert server(layout.kubeconfig("kube-proxy")) == "https://172.30.0.254:6443"


def test_kube_proxy_runs_in_its_node_and_sets_no_global_conntrack_limits(layout: Layout) -> None:
    spec = sim.kube_proxy_spec(layout, "node-a", "/run/netns/nm-t-node-node-a", log)
    flags = _flags(spec.argv)
    assert spec.netns == "/run/netns/nm-t-node-node-a"
    assert spec.log == "/logs/kube-proxy/node-a.log"
    assert (flags["hostname-override"], flags["proxy-mode"], flags["cluster-cidr"]) == (
        "node-a", "iptables", "10.10.0.0/16")
    assert flags["conntrack-max-per-core"] == "0"
    assert flags["healthz-bind-address"].startswith("127.0.0.1:")
    assert flags["metrics-bind-address"].startswith("127.0.0.1:")
