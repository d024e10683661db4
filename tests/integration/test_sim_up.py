"""`nodemesh sim up` with the real controller and agents, on the bundled demo cluster."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from nodemesh.tools.sim.cleanup import leftovers
from nodemesh.tools.sim.cluster import nodemesh_argv
from nodemesh.tools.sim.process import start_time
from nodemesh.tools.sim.state import load

from bad_clusters import MODEL_ERRORS

pytestmark = pytest.mark.kernel

DEMO = Path(__file__).parents[2] / "tools" / "sim" / "examples" / "demo.yaml"


def _status(cli, sim: str) -> dict:
    out = cli("sim", "status", "--name", sim, "-o", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _tally(cli, sim: str, pod: str, target: str) -> dict:
    out = cli("sim", "exec", "--name", sim, pod, "--", "python3", "-m", "nodemesh.tools.apps.client",
              target, "--count", "20", "--concurrency", "4", "-o", "json")
    return json.loads(out.stdout)


def test_demo_comes_up_and_its_components_restart(sim_names, cli):
    names = sim_names("u1")
    up = cli("sim", "up", "-f", str(DEMO), "--name", "u1")
    assert up.returncode == 0, up.stdout + up.stderr
    status = _status(cli, "u1")
    assert status["phase"] == "ready"
    assert all(p["alive"] for p in status["processes"].values()), status["processes"]
    assert all(status["processes"][c]["ready"] for c in ("controller", "agent/node-a", "agent/node-b"))
    vip = status["services"]["shop/catalog"]["vip"]
    assert status["services"]["shop/catalog"]["ports"] == {"80": 8080}
    assert f"service shop/catalog: {vip}" in up.stdout

    # the meshed client reaches both endpoints through the VIP; the legacy pod reaches a pod by IP
    assert set(_tally(cli, "u1", "shop/client", f"{vip}:80")["servers"]) == {"catalog-a", "catalog-b"}
    catalog_b = status["pods"]["shop/catalog-b"]["ip"]
    assert _tally(cli, "u1", "legacy/batch", f"{catalog_b}:8080")["servers"] == {"catalog-b": 20}

    for component in ("agent/node-b", "controller"):
        old = load(names).processes[component].pid
        assert cli("sim", "stop", "--name", "u1", component).returncode == 0
        assert start_time(old) is None and not _status(cli, "u1")["processes"][component]["alive"]
        started = cli("sim", "start", "--name", "u1", component)
        assert started.returncode == 0, started.stderr
        assert _status(cli, "u1")["processes"][component]["ready"]
    assert "agent for node node-b running" in cli("sim", "logs", "--name", "u1", "agent/node-b").stdout
    assert cli("sim", "down", "--name", "u1").returncode == 0
    assert leftovers(names) == []


def _interrupt_up(sim: str, sig: int, after: float) -> subprocess.CompletedProcess:
    # SIGINT as a terminal delivers it: a suite started in the background (as CI may start it)
    # hands its children SIGINT ignored, and an ignored interrupt interrupts nothing.
    up = subprocess.Popen(nodemesh_argv("sim", "up", "-f", str(DEMO), "--name", sim),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert up.stdout.readline().startswith("topology:")  # midway: namespaces made, components next
    time.sleep(after)  # not a condition: the moment of the interrupt is what each case varies
    up.send_signal(sig)
    out, err = up.communicate(timeout=30)
    return subprocess.CompletedProcess(up.args, up.returncode, out, err)


def test_an_interrupted_up_removes_what_it_made(sim_names):
    names = sim_names("u2")
    done = _interrupt_up("u2", signal.SIGINT, 0.2)
    assert done.returncode != 0
    assert leftovers(names) == []


def test_down_after_an_up_killed_midway(sim_names, cli):
    names = sim_names("u3")
    _interrupt_up("u3", signal.SIGKILL, 0.2)
    started = [r.pid for r in load(names).processes.values() if r.pid]
    assert started and leftovers(names)
    assert cli("sim", "down", "--name", "u3").returncode == 0
    assert leftovers(names) == []
    assert all(start_time(pid) is None for pid in started)


def test_a_bad_file_is_refused_before_anything_is_made(sim_names, cli, tmp_path):
    names = sim_names("u4")
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text().replace("nodeName: node-b", "nodeName: Node_B"))
    out = cli("sim", "up", "-f", str(bad), "--name", "u4")
    assert out.returncode == 1
    assert "the cluster file has problems" in out.stderr and "spec.nodeName" in out.stderr
    assert leftovers(names) == []


@pytest.mark.parametrize("case", MODEL_ERRORS)
def test_objects_that_do_not_fit_together_are_refused_in_words(sim_names, cli, tmp_path, case):
    names = sim_names("u5")
    text, message = MODEL_ERRORS[case]
    (tmp_path / "c.yaml").write_text(text)
    out = cli("sim", "up", "-f", str(tmp_path / "c.yaml"), "--name", "u5")
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stderr.startswith("Error: the cluster file has problems:\n  "), out.stderr
    assert f"\n  {message}" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert leftovers(names) == []  # no `sim down` needed
