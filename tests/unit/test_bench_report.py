"""The benchmark report from recorded results: ratios, targets, plots (no cluster needed)."""

from __future__ import annotations

from pathlib import Path

from nodemesh.tools.bench.report import table, targets, write_report

MACHINE = {"cpu": "test cpu", "cores": 2, "memory_gb": 24, "kernel": "6.x", "python": "3.11",
           "date": "2026-11-25 00:00 UTC"}


def rec(setup: str, scenario: str, **metrics: float) -> dict:
    return {"round": 0, "setup": setup, "scenario": scenario, **metrics}


def results() -> dict:
    records = []
    for setup, mb, p50, p99, conn, cpu in (("direct", 400, 100, 200, 6000, None),
                                          ("direct-same", 500, 90, 180, 7000, None),
                                          ("reference", 200, 300, 600, 500, 0.08),
                                          ("mesh-cross", 250, 250, 500, 1600, 0.05),
                                          ("mesh-same", 450, 110, 220, 3000, 0.02)):
        for scenario in ("bulk-1", "bulk-8"):
            records.append(rec(setup, scenario, mb_per_s=mb))
        records.append(rec(setup, "latency-1024B-2000rps", p50_us=p50, p90_us=p50 * 1.5, p99_us=p99,
                           p99_9_us=p99 * 2, vcpu_per_krps=cpu))
        records.append(rec(setup, "conn", per_second=conn,
                           **({"cpu_us_per_conn": cpu * 10000, "wakeups_per_conn": 2.5} if cpu else {})))
    return {"machine": MACHINE, "profile": {"rounds": 3}, "records": records,
            "memory": {"idle_mb": {"node-a": 50.0, "node-b": 48.0}, "held": {"open": 10000},
                       "held_mb": {"node-a": 90.0, "node-b": 80.0}, "churn": {"connections": 50000},
                       "before_churn_mb": {"node-a": 50.5, "node-b": 48.0},
                       "after_churn_mb": {"node-a": 51.0, "node-b": 48.5}}}


def test_ratios_are_to_the_right_floor_and_to_the_reference() -> None:
    text = table(results())
    assert "| bulk-1 | MB/s | mesh-cross | 250 | 250 | 250 | 0.62 | 1.25 |" in text
    assert "| bulk-1 | MB/s | mesh-same | 450 | 450 | 450 | 0.90 | 2.25 |" in text  # vs direct-same
    assert "| latency-1024B-2000rps | vCPU/1000 rps | mesh-cross | 0.050 |" in text
    assert "| conn | CPU us/conn | mesh-cross | 500 | 500 | 500 | - | 0.62 |" in text
    assert "| conn | wake-ups/conn | reference | 2.50 |" in text


def test_targets_are_judged_from_medians() -> None:
    got = {what: (ok, figures) for what, ok, figures in targets(results())}
    assert got["cross-node throughput >= reference (1 and 8 streams)"][0] is True
    assert got["added p50 latency (cross node) <= the reference's"] == (
        True, "mesh +150 us, reference +200 us (latency-1024B-2000rps)")
    assert got["new connections/s >= 3x the reference and >= 0.5x direct"][0] is False  # 0.27x direct
    assert got["same node: latency within 1.3x of direct"][0] is True
    assert got["CPU <= 0.06 vCPU per 1000 rps of 1 KiB, both agents"][0] is True
    assert got["agent memory < 60 MB idle"][0] is True
    assert got["agent memory flat under churn"][0] is True


def test_the_report_links_its_plots_relative_to_itself(tmp_path: Path) -> None:
    out = tmp_path / "docs" / "benchmarks"
    out.mkdir(parents=True)
    text = write_report(results(), out, tmp_path / "docs" / "benchmarks.md")
    assert "![latency.png](benchmarks/latency.png)" in text
    assert (out / "latency.png").stat().st_size > 1000 and (out / "throughput.png").exists()
    assert (tmp_path / "docs" / "benchmarks.md").read_text() == text


def test_the_history_of_changes_is_carried_into_each_new_report(tmp_path: Path) -> None:
    out = tmp_path / "docs" / "benchmarks"
    out.mkdir(parents=True)
    assert "Performance changes" not in write_report(results(), out, tmp_path / "r.md")
    (out / "history.md").write_text("## Performance changes\n\n| change | before | after |\n")
    text = write_report(results(), out, tmp_path / "r.md")
    assert text.rstrip().endswith("| change | before | after |")
