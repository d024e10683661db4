"""`nodemesh bench --quick`: the harness works end to end (it measures; it asserts no number)."""

import json
import os
from pathlib import Path

import pytest

from simcluster import nodemesh
from nodemesh.tools.bench.run import SETUPS
from nodemesh.tools.sim.cleanup import leftovers
from nodemesh.tools.sim.names import SimNames

pytestmark = [pytest.mark.e2e, pytest.mark.kernel]


def test_quick_bench_measures_every_setup_and_writes_the_report(tmp_path: Path) -> None:
    # A sim of this run's own: CI and people run the suite on one machine at the same time, and
    # with one fixed name a second run's `sim up` failed ("already up") and its clean-up below
    # took the first run's cluster away in the middle of its measurements.
    names = SimNames(f"bench{os.getpid()}")
    try:
        nodemesh("bench", "--quick", "--out", str(tmp_path), "--name", names.sim, timeout=300)
    finally:
        nodemesh("sim", "down", "--name", names.sim)
    assert leftovers(names) == []
    results = json.loads((tmp_path / "results.json").read_text())
    scenarios = {r["scenario"] for r in results["records"]}
    assert {"bulk-1", "bulk-8", "conn"} <= scenarios and any(s.startswith("latency-") for s in scenarios)
    for scenario in scenarios:
        measured = {r["setup"] for r in results["records"] if r["scenario"] == scenario}
        assert measured == set(SETUPS), (scenario, measured)
    # every setup carried traffic: nothing failed silently into a fast empty run
    for r in results["records"]:
        if r["scenario"].startswith("bulk"):
            assert r["mb_per_s"] > 0, r
        if r["scenario"] == "conn":
            assert r["connections"] > 0 and r["failed"] == 0, r
    assert results["memory"]["held"]["open"] == results["profile"]["hold"]
    report = (tmp_path / "report.md").read_text()
    assert "## Targets" in report and "| mesh-cross |" in report
    assert (tmp_path / "latency.png").exists() and (tmp_path / "throughput.png").exists()
