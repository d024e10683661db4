"""The A/B benchmark's arithmetic and order (the runs themselves need a cluster: `nodemesh bench-ab`)."""

from __future__ import annotations

from nodemesh.tools.bench.ab import Variant, markdown, schedule, summary

A, B = Variant("A base", "/a/nodemesh"), Variant("B this", "/b/nodemesh")


def test_variants_alternate_which_goes_first() -> None:
    assert [(r, v.name[0]) for r, v in schedule([A, B], 4)] == [
        (0, "A"), (0, "B"), (1, "B"), (1, "A"), (2, "A"), (2, "B"), (3, "B"), (3, "A")]


def test_summary_gives_medians_per_variant_and_the_ratio() -> None:
    records = [
        {"variant": v.name, "setup": "mesh-cross", "scenario": "conn", "per_second": rate, "cpu_us_per_conn": cpu}
        for v, rates, cpus in ((A, (1000, 1100, 900), (500, 520, 480)), (B, (1200, 1250, 1150), (400, 410, 390)))
        for rate, cpu in zip(rates, cpus)
    ]
    rows = {row["metric"]: row for row in summary(records, [A, B])}
    assert set(rows) == {"per_second", "cpu_us_per_conn"}  # what was not measured is left out
    assert rows["per_second"]["medians"] == [1000, 1200] and rows["per_second"]["ratio"] == 1.2
    assert rows["cpu_us_per_conn"]["medians"] == [500, 400] and rows["cpu_us_per_conn"]["ratio"] == 0.8
    table = markdown(list(rows.values()), [A, B], 3)
    assert "| mesh-cross | conn | per_second | 1000 | 1200 | 1.200 | higher | 1000, 1100, 900 | 1200, 1250, 1150 |" in table
