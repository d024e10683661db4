"""How ``nodemesh top`` shows its rows: a rich table for people, a JSON document for scripts.

Both say which agents did not answer and why: a table without them is not the whole mesh.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from rich.table import Table
from rich.text import Text

from nodemesh.tools.top.metrics import Scrape
from nodemesh.tools.top.rates import QUANTILES, Row

HEADERS = ("SOURCE", "DESTINATION", "MTLS", "CONN/S", "ACTIVE", "TO/S", "FROM/S", "FAILED/S",
           *(name.upper() for name in QUANTILES))
_MTLS = {"mutual_tls": "yes", "none": "no"}


def _rate(value: float) -> str:
    return f"{value:.1f}"


def _bytes(value: float) -> str:
    """Bytes per second, in binary units: a table column must stay narrow."""
    units = ("B", "KiB", "MiB", "GiB")
    step = 0
    while value >= 1024 and step < len(units) - 1:
        value /= 1024
        step += 1
    return f"{value:.0f} B" if step == 0 else f"{value:.1f} {units[step]}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.3g} ms" if value < 1 else f"{value:.3g} s"


def _failures(per_flag: dict[str, float]) -> str:
    return " ".join(f"{flag} {_rate(v)}" for flag, v in sorted(per_flag.items(), key=lambda i: -i[1])) or "-"


def cells(row: Row) -> list[str]:
    key = row.key
    policy = key.connection_security_policy
    return [key.source, key.destination, _MTLS.get(policy, policy),
            _rate(row.connections_per_second), str(row.active_connections),
            _bytes(row.bytes_to_destination_per_second), _bytes(row.bytes_from_destination_per_second),
            _failures(row.failures_per_second), *map(_seconds, row.connect_latency_seconds.values())]


def table(rows: list[Row], scrape: Scrape, title: str) -> Table:
    """The rows, with a caption naming each node whose agent did not answer, and why."""
    shown = Table(*HEADERS, title=title, caption=_unreachable(scrape), caption_justify="left",
                  box=None, header_style="bold")
    for column in shown.columns[:2]:  # names: folded when narrow, never cut short
        column.overflow = "fold"
    for column in shown.columns[3:]:  # figures: whole, on one line
        column.justify, column.no_wrap = "right", True
    for row in rows:
        shown.add_row(*cells(row))
    return shown


def _unreachable(scrape: Scrape) -> Text | None:
    if not scrape.unreachable:
        return None
    return Text("\n".join(f"{node} unreachable: {why}" for node, why in sorted(scrape.unreachable.items())),
                style="red")


def document(rows: list[Row], scrape: Scrape, sim: str, reporter: str, interval: float) -> dict[str, Any]:
    """One snapshot for scripts: every node's answer or error, and the rows at full precision."""
    nodes: dict[str, Any] = {node: {"reachable": True} for node in scrape.agents}
    nodes.update({node: {"reachable": False, "error": why} for node, why in scrape.unreachable.items()})
    return {"sim": sim, "reporter": reporter, "interval_seconds": interval,
            "nodes": dict(sorted(nodes.items())),
            "rows": [_flat(row) for row in rows]}


def _flat(row: Row) -> dict[str, Any]:
    fields = asdict(row)
    return {**fields.pop("key"), **fields}
