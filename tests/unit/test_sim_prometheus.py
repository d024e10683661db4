"""The sim's Prometheus config and the checks made before starting it (no root, no sim)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml
from promtool import RULES, promtool

from nodemesh.tools.sim import prometheus
from nodemesh.tools.sim.names import SimError
from nodemesh.tools.sim.state import SimState

STATE = SimState(sim="t1", file="/x.yaml", nodes={"node-b": {"ip": "172.30.0.2"},
                                                  "node-a": {"ip": "172.30.0.1"}})


def test_every_node_is_an_agent_target_with_its_name_and_the_controller_has_its_own_job() -> None:
    config = prometheus.config(STATE, RULES)
    assert config["global"]["scrape_interval"] == "2s"
    assert config["rule_files"] == [str(RULES)]
    jobs = {job["job_name"]: job["static_configs"] for job in config["scrape_configs"]}
    assert jobs == {
        "nodemesh-agent": [{"targets": ["172.30.0.1:15020"], "labels": {"node": "node-a"}},
                           {"targets": ["172.30.0.2:15020"], "labels": {"node": "node-b"}}],
        "nodemesh-controller": [{"targets": ["172.30.0.254:15014"]}],
    }


def test_promtool_accepts_the_config_with_the_shipped_rules(tmp_path: Path) -> None:
    file = tmp_path / "prometheus.yml"
    file.write_text(yaml.safe_dump(prometheus.config(STATE, prometheus.rules_file())))
    result = promtool("check", "config", str(file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 14 rules found" in result.stdout, result.stdout


def test_the_shipped_rules_are_the_repositorys() -> None:
    assert prometheus.rules_file().read_text() == RULES.read_text()


def test_a_port_in_use_is_one_message_naming_the_flag() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SimError, match=rf"^cannot use 127\.0\.0\.1:{port} for Prometheus: it is "
                                           r"already in use .*choose another port with --prometheus-port$"):
            prometheus.check_port(port)
    prometheus.check_port(port)  # free again


def test_a_missing_prometheus_says_to_run_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prometheus.shutil, "which", lambda name: None)
    assert not prometheus.installed()
    with pytest.raises(SimError, match=r"^prometheus is not installed: run scripts/setup.sh \(as root\)"):
        prometheus.binary()
