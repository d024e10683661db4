"""telemetry/grafana/: what tools/dashboards.py writes, for Grafana 11.6, every query valid
PromQL once its variables are filled in. The end-to-end test runs them against Prometheus."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dashboard_queries import GRAFANA_DIR, dashboards, fill, panels, targets, variables
from promtool import promtool

from nodemesh.tools import dashboards as generator

BOARDS = dashboards()
# The values a user would pick; any value will do for checking the syntax.
VALUES = {"namespace": "shop", "workload": "catalog", "node": "node-a"}
SCHEMA_VERSION = 41  # Grafana 11.6's


def test_the_committed_json_is_what_the_generator_writes(tmp_path: Path) -> None:
    written = generator.write(tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in GRAFANA_DIR.glob("*.json"))
    for path in written:
        assert path.read_text() == (GRAFANA_DIR / path.name).read_text(), (
            f"{path.name} is stale: run `.venv/bin/python -m nodemesh.tools.dashboards`")


def test_the_generator_writes_into_the_repository() -> None:
    assert generator.output_dir().resolve() == GRAFANA_DIR


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_each_dashboard_targets_grafana_11_6_and_queries_the_chosen_prometheus(name: str) -> None:
    board = BOARDS[name]
    assert board["schemaVersion"] == SCHEMA_VERSION and generator.GRAFANA_VERSION == "11.6"
    assert variables(board)["datasource"]["type"] == "datasource"
    assert variables(board)["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(set(ids)) == len(ids), "panel ids repeat"
    titles = [p["title"] for p in panels(board)]
    assert len(set(titles)) == len(titles), "panel titles repeat (a failing query must name its panel)"
    for panel in panels(board):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(set(refs)) == len(refs), panel["title"]


def test_the_dashboards_have_their_own_uids_and_the_variables_they_filter_by() -> None:
    assert sorted(b["uid"] for b in BOARDS.values()) == ["nodemesh-health", "nodemesh-mesh", "nodemesh-workload"]
    assert set(variables(BOARDS["mesh"])) == {"datasource", "namespace"}
    assert set(variables(BOARDS["workload"])) == {"datasource", "namespace", "workload"}
    assert set(variables(BOARDS["health"])) == {"datasource", "node"}


def test_every_query_is_valid_promql_with_its_variables_filled_in(tmp_path: Path) -> None:
    """promtool parses each one as a recording rule: no server needed to catch a typo."""
    queries = [t for name, board in BOARDS.items() for t in targets(name, board)]
    assert len(queries) > 60
    rules = [{"record": f"dashboard:query:{i}", "expr": fill(t.expr, VALUES)} for i, t in enumerate(queries)]
    file = tmp_path / "queries.yaml"
    file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = promtool("check", "rules", str(file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_variable_no_dashboard_defines_is_caught() -> None:
    with pytest.raises(AssertionError, match=r"uses \$pod, which is neither"):
        fill('up{pod="$pod"}', VALUES)
    assert fill('rate(x{a=~"$namespace", b="${node}"}[$__rate_interval])', VALUES) == \
        'rate(x{a=~"shop", b="node-a"}[30s])'
