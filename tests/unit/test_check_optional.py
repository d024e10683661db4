"""`nodemesh check`'s optional lines: a missing extra is shown with its fix, and the host still passes."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from nodemesh.tools import check
from nodemesh.tools.cli import main


@pytest.fixture
def only_prometheus(monkeypatch: pytest.MonkeyPatch) -> None:
    """One required check that holds, and the real prometheus check on a PATH without it."""
    monkeypatch.setattr(check, "CHECKS", (lambda: check.Result("kernel", True, "fine"),))
    monkeypatch.setattr(check.shutil, "which", lambda tool: None)


def test_a_missing_optional_tool_says_how_to_get_it_and_does_not_fail_the_host(only_prometheus) -> None:
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 0, result.output
    assert ("--    prometheus: prometheus and promtool not found (optional)\n"
            "      -> run `make setup` (as root): it installs Debian's prometheus package\n") in result.output
    assert result.output.endswith("this host can run a nodemesh agent\n")


def test_a_failed_required_check_still_fails_beside_optional_ones(only_prometheus,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check, "CHECKS", (lambda: check.Result("kernel", False, "too old"),))
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 1
    assert result.output.endswith("missing: kernel\n")
