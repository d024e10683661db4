"""The benchmark runner's failed steps (a load-generator run, a CLI call) must explain themselves.

A stand-in for the ``nodemesh`` CLI plays the failing command, so no cluster is needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nodemesh.tools.bench.run import QUICK, Bench, BenchError, LoadgenFailed, Setup

FAILING = """#!/bin/sh
echo "Error: bulk against 10.10.2.10:8080: connection closed (by the server)" >&2
exit 1
"""


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    fake = tmp_path / "nodemesh"
    fake.write_text(FAILING)
    fake.chmod(0o755)
    run = Bench("unit", QUICK, lambda line: None)
    run.nodemesh = str(fake)
    return run


def test_a_failed_run_names_the_setup_the_scenario_its_status_and_its_stderr(bench: Bench) -> None:
    setup = Setup("direct", "plain/client", "10.10.2.10:8080", [])
    with pytest.raises(LoadgenFailed) as failed:
        bench.measure(0, setup, "bulk-8", ["bulk", "--streams", "8", "--megabytes", "8"])
    message = str(failed.value)
    assert "bulk-8 against direct, exit status 1" in message
    assert "bulk against 10.10.2.10:8080: connection closed (by the server)" in message
    assert bench.records == []


def test_a_hold_that_fails_before_reporting_explains_itself_too(bench: Bench) -> None:
    mesh = Setup("mesh-cross", "bench/client", "10.96.0.11:80", [])
    with pytest.raises(LoadgenFailed) as failed:
        bench.measure_memory(mesh, {})
    message = str(failed.value)
    assert "hold against mesh-cross, exit status 1" in message and "connection closed" in message


def test_a_failed_cli_step_says_what_the_cli_said(bench: Bench) -> None:
    with pytest.raises(BenchError) as failed:
        bench.cli("sim", "up", "-f", "cluster.yaml", "--name", "unit")
    message = str(failed.value)
    assert "`nodemesh sim up -f cluster.yaml --name unit` exited 1" in message
    assert "connection closed (by the server)" in message  # the stand-in's stderr


def test_a_sim_that_was_already_up_is_not_taken_down(tmp_path: Path) -> None:
    """A second run under the same name must fail alone, not take the first run's cluster away."""
    calls = tmp_path / "calls"
    fake = tmp_path / "nodemesh"
    fake.write_text(f"""#!/bin/sh
echo "$*" >> {calls}
if [ "$1 $2" = "sim up" ]; then echo "Error: sim 'unit' is already up" >&2; exit 1; fi
""")
    fake.chmod(0o755)
    with pytest.raises(BenchError, match="already up"):
        Bench("unit", QUICK, lambda line: None, str(fake)).run()
    assert [line.split()[:2] for line in calls.read_text().splitlines()] == [["sim", "up"]]
