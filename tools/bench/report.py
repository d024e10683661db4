"""The benchmark report: a Markdown table (min / median / max over rounds, ratios to direct and
to the reference), the targets from the issue marked met or not, and PNG plots."""

from __future__ import annotations

import os
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

# (scenario prefix, metric key, label, higher is better)
METRICS = (
    ("bulk-", "mb_per_s", "MB/s", True),
    ("latency-", "p50_us", "p50 us", False),
    ("latency-", "p90_us", "p90 us", False),
    ("latency-", "p99_us", "p99 us", False),
    ("latency-", "p99_9_us", "p99.9 us", False),
    ("latency-", "vcpu_per_krps", "vCPU/1000 rps", False),
    ("latency-", "wakeups_per_request", "wake-ups/request", False),
    ("conn", "per_second", "conn/s", True),
    ("conn", "cpu_us_per_conn", "CPU us/conn", False),
    ("conn", "wakeups_per_conn", "wake-ups/conn", False),
)
DECIMALS = {"vcpu_per_krps": 3, "wakeups_per_request": 2, "wakeups_per_conn": 2}  # the rest: whole numbers
FLOOR = {"mesh-same": "direct-same", "direct-same": "direct-same"}  # the rest compare with direct
PERCENTILES = (("p50_us", "p50"), ("p90_us", "p90"), ("p99_us", "p99"), ("p99_9_us", "p99.9"))


def medians(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[float]]:
    """(scenario, setup, metric) -> the values over rounds."""
    out: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in records:
        for prefix, key, _, _ in METRICS:
            if r["scenario"].startswith(prefix) and r.get(key) is not None:
                out[(r["scenario"], r["setup"], key)].append(float(r[key]))
    return out


def _median(values: dict[tuple[str, str, str], list[float]], scenario: str, setup: str, key: str
            ) -> float | None:
    v = values.get((scenario, setup, key))
    return statistics.median(v) if v else None


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def table(results: dict[str, Any]) -> str:
    values = medians(results["records"])
    scenarios = list(dict.fromkeys(r["scenario"] for r in results["records"]))
    setups = list(dict.fromkeys(r["setup"] for r in results["records"]))
    lines = ["| scenario | metric | setup | min | median | max | / direct | / reference |",
             "|---|---|---|---|---|---|---|---|"]
    for scenario in scenarios:
        for prefix, key, label, _ in METRICS:
            if not scenario.startswith(prefix):
                continue
            for setup in setups:
                v = values.get((scenario, setup, key))
                if not v:
                    continue
                med = statistics.median(v)
                floor = _median(values, scenario, FLOOR.get(setup, "direct"), key)
                ref = _median(values, scenario, "reference", key)
                fmt = f"{{:.{DECIMALS.get(key, 0)}f}}"
                lines.append(f"| {scenario} | {label} | {setup} | {fmt.format(min(v))} | {fmt.format(med)} "
                             f"| {fmt.format(max(v))} | {_ratio(med, floor)} | {_ratio(med, ref)} |")
    return "\n".join(lines)


def targets(results: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    """Each target of the issue: (what, met? (None: not measured), the measured figures)."""
    v = medians(results["records"])
    lat = [s for s in dict.fromkeys(r["scenario"] for r in results["records"]) if s.startswith("latency-1024B")]
    lat_s = lat[-1] if lat else None  # the highest rate of 1 KiB requests
    out: list[tuple[str, bool | None, str]] = []

    def m(s: str | None, setup: str, key: str) -> float | None:
        return _median(v, s, setup, key) if s else None

    mesh, ref = m("bulk-1", "mesh-cross", "mb_per_s"), m("bulk-1", "reference", "mb_per_s")
    mesh8, ref8 = m("bulk-8", "mesh-cross", "mb_per_s"), m("bulk-8", "reference", "mb_per_s")
    out.append(("cross-node throughput >= reference (1 and 8 streams)",
                None if None in (mesh, ref, mesh8, ref8) else mesh >= ref and mesh8 >= ref8,  # type: ignore[operator]
                f"1 stream {_ratio(mesh, ref)}x, 8 streams {_ratio(mesh8, ref8)}x the reference"))
    for key, label in (("p50_us", "p50"), ("p99_us", "p99")):
        d, r_, me = m(lat_s, "direct", key), m(lat_s, "reference", key), m(lat_s, "mesh-cross", key)
        ok = None if None in (d, r_, me) else (me - d) <= (r_ - d)  # type: ignore[operator]
        out.append((f"added {label} latency (cross node) <= the reference's", ok,
                    f"mesh {me - d:+.0f} us, reference {r_ - d:+.0f} us ({lat_s})" if ok is not None else "-"))
    c_mesh, c_ref, c_dir = m("conn", "mesh-cross", "per_second"), m("conn", "reference", "per_second"), \
        m("conn", "direct", "per_second")
    out.append(("new connections/s >= 3x the reference and >= 0.5x direct",
                None if None in (c_mesh, c_ref, c_dir) else c_mesh >= 3 * c_ref and c_mesh >= 0.5 * c_dir,  # type: ignore[operator]
                f"{_ratio(c_mesh, c_ref)}x the reference, {_ratio(c_mesh, c_dir)}x direct"))
    same, floor = m(lat_s, "mesh-same", "p50_us"), m(lat_s, "direct-same", "p50_us")
    out.append(("same node: latency within 1.3x of direct", None if None in (same, floor) else same <= 1.3 * floor,  # type: ignore[operator]
                f"p50 {_ratio(same, floor)}x direct"))
    cpu = m(lat_s, "mesh-cross", "vcpu_per_krps")
    out.append(("CPU <= 0.06 vCPU per 1000 rps of 1 KiB, both agents", None if cpu is None else cpu <= 0.06,
                f"{cpu:.3f} vCPU per 1000 rps" if cpu is not None else "-"))
    mem = results.get("memory", {})
    idle, before, churned = mem.get("idle_mb", {}), mem.get("before_churn_mb", {}), mem.get("after_churn_mb", {})
    if idle and before and churned:
        worst_idle = max(idle.values())
        growth = max(churned[n] - before[n] for n in before)
        out.append(("agent memory < 60 MB idle", worst_idle < 60, f"{worst_idle:.0f} MB idle (largest agent)"))
        out.append(("agent memory flat under churn", growth < 0.1 * worst_idle,
                    f"{growth:+.1f} MB after {mem.get('churn', {}).get('connections', '?')} connections"))
    return out


def plots(results: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    v = medians(results["records"])
    setups = list(dict.fromkeys(r["setup"] for r in results["records"]))
    names = []
    lat = [s for s in dict.fromkeys(r["scenario"] for r in results["records"]) if s.startswith("latency-")]
    if lat:
        fig, axes = plt.subplots(1, len(lat), figsize=(4.2 * len(lat), 3.6), squeeze=False)
        for ax, scenario in zip(axes[0], lat):
            for setup in setups:
                ys = [_median(v, scenario, setup, k) for k, _ in PERCENTILES]
                if all(y is not None for y in ys):
                    ax.plot([lbl for _, lbl in PERCENTILES], ys, marker="o", label=setup)
            ax.set_title(scenario, fontsize=9)
            ax.set_yscale("log")
            ax.set_ylabel("latency (us)")
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=110)
        plt.close(fig)
        names.append("latency.png")
    bulk = [s for s in dict.fromkeys(r["scenario"] for r in results["records"]) if s.startswith("bulk-")]
    if bulk:
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        width = 0.8 / len(setups)
        for i, setup in enumerate(setups):
            ys = [_median(v, s, setup, "mb_per_s") or 0 for s in bulk]
            ax.bar([x + i * width for x in range(len(bulk))], ys, width, label=setup)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(bulk))], bulk)
        ax.set_ylabel("MB/s (median)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "throughput.png", dpi=110)
        plt.close(fig)
        names.append("throughput.png")
    return names


# In the output directory, if present: appended to the report (docs/benchmarks/history.md).
HISTORY = "history.md"


def write_report(results: dict[str, Any], out: Path, report: Path) -> str:
    """Write the plots into ``out`` and the report to ``report``; return the report's text."""
    m = results["machine"]
    images = plots(results, out)
    lines = [
        "# nodemesh benchmarks",
        "",
        f"Run on {m['date']}: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Linux {m['kernel']}, "
        f"Python {m['python']}; {results['profile']['rounds']} interleaved rounds, "
        f"{results.get('duration_seconds', '?')} s in all. Produced by `nodemesh bench`"
        + (" --quick" if results["profile"]["rounds"] == 1 else "") + ".",
        "",
        "Setups: **direct** (no mesh, across nodes), **direct-same** (no mesh, one node), **reference** "
        "(HAProxy on each node: TLS 1.3 mutual TLS between the nodes, ECDSA P-256), **mesh-cross** "
        "(nodemesh HBONE between the nodes), **mesh-same** (nodemesh, one node). Same client and servers "
        "for all (tools/bench/loadgen.py, an open-loop generator for latency).",
        "",
        "## Targets",
        "",
        "| target | met | measured |",
        "|---|---|---|",
    ]
    for what, ok, figures in targets(results):
        lines.append(f"| {what} | {'-' if ok is None else 'yes' if ok else 'no'} | {figures} |")
    mem = results.get("memory", {})
    if mem:
        lines += ["", "## Agent memory (RSS, MB)", "",
                  f"idle {fmt_nodes(mem.get('idle_mb'))}; with {mem.get('held', {}).get('open', '?')} connections "
                  f"open {fmt_nodes(mem.get('held_mb'))}; once they closed {fmt_nodes(mem.get('before_churn_mb'))}; "
                  f"after {mem.get('churn', {}).get('connections', '?')} more connections of churn "
                  f"{fmt_nodes(mem.get('after_churn_mb'))}"]
    lines += ["", "## Results", "", table(results), ""]
    lines += [f"![{name}]({os.path.relpath(out / name, report.parent)})" for name in images]
    history = out / HISTORY
    if history.exists():  # kept by hand: what each performance change measured, before and after
        lines += ["", history.read_text().strip()]
    text = "\n".join(lines) + "\n"
    report.write_text(text)
    return text


def fmt_nodes(values: dict[str, float] | None) -> str:
    return ", ".join(f"{n} {mb:.0f}" for n, mb in (values or {}).items()) or "-"
