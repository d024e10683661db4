"""The shipped Grafana dashboards as Prometheus sees them: every panel's queries, with the
template variables filled in the way Grafana fills them before it sends a query.

Shared by the unit test (the JSON is what the generator writes, every query parses) and the
end-to-end test (every query returns data from a real cluster's Prometheus).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

GRAFANA_DIR = Path(__file__).resolve().parents[1] / "telemetry" / "grafana"
# Grafana's own variables, as it sets them for a 5-minute range scraped every 2 s
# ($__rate_interval: at least four scrape intervals, here with room for a slow scrape).
BUILTINS = {"__rate_interval": "30s", "__range": "5m", "__interval": "2s"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


@dataclass(frozen=True)
class Target:
    dashboard: str
    panel: str
    ref_id: str
    expr: str

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}: {self.expr}"


def dashboards() -> dict[str, dict[str, Any]]:
    """name -> parsed JSON of every dashboard shipped in telemetry/grafana/."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(GRAFANA_DIR.glob("*.json"))}


def panels(board: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that queries, also those inside collapsed rows."""
    for panel in board.get("panels", []):
        if panel["type"] == "row":
            yield from panels(panel)
        else:
            yield panel


def targets(name: str, board: Mapping[str, Any]) -> list[Target]:
    return [Target(name, panel["title"], target["refId"], target["expr"])
            for panel in panels(board) for target in panel.get("targets", [])]


def variables(board: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in board["templating"]["list"]}


def fill(text: str, values: Mapping[str, str]) -> str:
    """``text`` with $var, ${var} and [[var]] replaced; AssertionError naming an unknown one."""
    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        known = {**BUILTINS, **values}
        assert name in known, f"{text!r} uses ${name}, which is neither a variable nor Grafana's"
        return known[name]

    return _VARIABLE.sub(value, text)
