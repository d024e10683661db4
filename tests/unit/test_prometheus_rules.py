"""telemetry/prometheus/rules.yaml: valid, its unit tests pass, every alert is tested and
documented, and the unit tests catch a broken rule."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml
from promtool import REPO, RULES, RULES_TEST, promtool

DOC = REPO / "docs" / "dashboards.md"


def _alerts() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_rules_are_valid() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_where_it_fires() -> None:
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])
             if case["exp_alerts"]}
    assert {rule["alert"] for rule in _alerts()} <= fired


def test_every_alert_has_a_severity_and_a_runbook_section_in_the_docs() -> None:
    headings = {re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
                for line in DOC.read_text().splitlines() if line.startswith("#")}
    for rule in _alerts():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        anchor = rule["annotations"]["runbook"].removeprefix("docs/dashboards.md#")
        assert anchor == rule["alert"].lower() and anchor in headings, rule["alert"]


def test_a_loosened_threshold_fails_the_unit_tests(tmp_path: Path) -> None:
    """The unit tests are not vacuous: a rule that would no longer fire is caught."""
    shutil.copy(RULES_TEST, tmp_path)
    rules = RULES.read_text()
    loosened = rules.replace("ratio_rate5m > 0.05", "ratio_rate5m > 0.5")
    assert loosened != rules
    (tmp_path / RULES.name).write_text(loosened)
    result = promtool("test", "rules", str(tmp_path / RULES_TEST.name))
    assert result.returncode != 0
    assert "alertname: NodemeshConnectionFailureRatioHigh" in result.stderr, result.stdout + result.stderr
