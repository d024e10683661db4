"""``nodemesh bench-ab``: a change measured against its baseline, A/B, in one run.

Full benchmark runs on a small VM drift by more than most single changes, so a change that
touches the hot path is measured the way docs/benchmarks/history.md describes: both variants
in the same time window, alternating round by round (A B, then B A, ...), so that drift falls
on both alike. Each variant brings up the benchmark cluster with its own code (its own
``nodemesh``: controller, agents, load generator), runs the new-connection test and the 1 KiB
request/response test across and within nodes, and is taken down again. The agents' CPU time
and wake-ups are read from /proc, per connection and per request.

The baseline is a git revision of this repository, unpacked (``git archive``) with a virtualenv
of its own under ``--cache``; it is made once per revision and reused.

The report gives each variant's medians over the rounds and the ratio B/A; it asserts nothing.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from nodemesh.errors import UserError

from nodemesh.tools.bench.run import Bench, Profile, mesh_setups

# The A/B scenarios of docs/benchmarks/history.md: connections at concurrency 8, and 1 KiB
# request/response at 2000 requests/s.
AB = Profile(rounds=4, bulk_megabytes=0, latency_seconds=3, rates=(2000,), sizes=(1024,),
             conn_seconds=3, hold=0, churn=0)
METRICS = {  # scenario -> the numbers compared, and whether higher is better
    "conn": {"per_second": True, "cpu_us_per_conn": False, "wakeups_per_conn": False},
    "latency-1024B-2000rps": {"p50_us": False, "p99_us": False, "vcpu_per_krps": False,
                              "wakeups_per_request": False},
}
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Variant:
    name: str
    nodemesh: str  # the ``nodemesh`` executable of its virtualenv
    agent_args: tuple[str, ...] = ()  # e.g. ("--no-metrics",): one revision against itself


def prepare_baseline(revision: str, cache: Path, say: Any) -> Variant:
    """The revision's code in a folder and virtualenv of its own (made once, then reused)."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{revision}^{{commit}}"],
                            capture_output=True, text=True)
    if commit.returncode != 0:
        raise UserError(f"--baseline {revision}: not a revision of {REPO}: {commit.stderr.strip()}")
    sha = commit.stdout.strip()
    tree = cache / sha
    nodemesh = tree / ".venv" / "bin" / "nodemesh"
    if not nodemesh.exists():
        say(f"preparing the baseline {sha[:10]} in {tree} (once)")
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.Popen(["git", "-C", str(REPO), "archive", sha], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(tree)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            raise UserError(f"git archive {sha} failed")
        subprocess.run([str(tree / "scripts" / "setup.sh")], check=True, stdout=subprocess.DEVNULL)
    return Variant(f"A {revision} ({sha[:10]})", str(nodemesh))


def run_variant(variant: Variant, round_: int, sim: str, say: Any) -> list[dict[str, Any]]:
    """One round of one variant: its cluster up, both scenarios on both mesh setups, down."""
    bench = Bench(sim, AB, say, variant.nodemesh, variant.agent_args)
    st = bench.bring_up()  # a sim already up under that name is another run's: not taken down
    try:
        for scenario, args in bench.scenarios():
            if scenario in METRICS:
                for setup in mesh_setups(st):
                    bench.measure(round_, setup, scenario, args)
    finally:
        bench.cli("sim", "down", "--name", sim)
    return [{**r, "variant": variant.name} for r in bench.records]


def schedule(variants: list[Variant], rounds: int) -> list[tuple[int, Variant]]:
    """(round, variant) in the order they run: A B, B A, A B, ... so neither always goes first."""
    return [(r, v) for r in range(rounds) for v in (variants if r % 2 == 0 else variants[::-1])]


def summary(records: list[dict[str, Any]], variants: list[Variant]) -> list[dict[str, Any]]:
    """Per setup, scenario and metric: each variant's median and its rounds, and B/A."""
    rows = []
    setups = sorted({r["setup"] for r in records})
    for scenario, metrics in METRICS.items():
        for setup in setups:
            for metric, higher_better in metrics.items():
                values = {v.name: [r[metric] for r in records if r["variant"] == v.name and r["setup"] == setup
                                   and r["scenario"] == scenario and metric in r] for v in variants}
                if not all(values.values()):
                    continue
                medians = [statistics.median(values[v.name]) for v in variants]
                rows.append({"setup": setup, "scenario": scenario, "metric": metric, "higher_is_better": higher_better,
                             "values": values, "medians": medians,
                             "ratio": medians[1] / medians[0] if medians[0] else None})
    return rows


def markdown(rows: list[dict[str, Any]], variants: list[Variant], rounds: int) -> str:
    lines = [f"A/B, {rounds} alternating rounds: A = {variants[0].name}, B = {variants[1].name}", "",
             "| setup | scenario | metric | A median | B median | B/A | better is | A rounds | B rounds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        a, b = row["medians"]
        ratio = f"{row['ratio']:.3f}" if row["ratio"] is not None else "-"
        rounds_ = [", ".join(f"{x:.4g}" for x in row["values"][v.name]) for v in variants]
        lines.append(f"| {row['setup']} | {row['scenario']} | {row['metric']} | {a:.4g} | {b:.4g} | {ratio} | "
                     f"{'higher' if row['higher_is_better'] else 'lower'} | {rounds_[0]} | {rounds_[1]} |")
    return "\n".join(lines)


@click.command("bench-ab")
@click.option("--baseline", required=True, metavar="REV", help="The git revision to compare with (A).")
@click.option("--rounds", type=click.IntRange(1, 20), default=AB.rounds, show_default=True,
              help="Rounds; each runs both variants, in alternating order.")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path),
              default=Path("/var/cache/nodemesh/bench-ab"), show_default=True,
              help="Where baselines are unpacked with their virtualenvs.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("bench-ab"),
              show_default=True, help="Where results.json and report.md go.")
@click.option("--name", "sim", default="benchab", show_default=True, help="Name of the simulated cluster.")
@click.option("--baseline-agent-arg", "baseline_agent_args", multiple=True, metavar="ARG",
              help="Extra argument for A's agents (repeatable); with --baseline HEAD, measures a flag: "
                   "e.g. --baseline HEAD --baseline-agent-arg=--no-metrics.")
@click.option("--agent-arg", "agent_args", multiple=True, metavar="ARG",
              help="Extra argument for B's agents (repeatable).")
def bench_ab(baseline: str, rounds: int, cache: Path, out: Path, sim: str, baseline_agent_args: tuple[str, ...],
             agent_args: tuple[str, ...]) -> None:
    """Measure this checkout (B) against a baseline revision (A), alternating, in one run."""
    def say(line: str) -> None:
        click.echo(line, err=True)

    base = prepare_baseline(baseline, cache, say)
    variants = [Variant(" ".join((base.name, *baseline_agent_args)), base.nodemesh, baseline_agent_args),
                Variant(" ".join(("B this checkout", *agent_args)), str(Path(sys.executable).parent / "nodemesh"),
                        agent_args)]
    started = time.monotonic()
    records: list[dict[str, Any]] = []
    for r, variant in schedule(variants, rounds):
        say(f"round {r + 1}/{rounds}: {variant.name}")
        records += run_variant(variant, r, sim, say)
    rows = summary(records, variants)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"variants": [v.name for v in variants], "records": records,
                                                  "summary": rows}, indent=1))
    report = markdown(rows, variants, rounds)
    (out / "report.md").write_text(report + "\n")
    click.echo(report)
    click.echo(f"\nwritten to {out}/ in {time.monotonic() - started:.0f}s", err=True)
