"""The one error boundary (nodemesh/errors.py, tools/cli.py): a user's error is one message and
its exit code, a bug keeps its traceback, click's usage errors stay click's."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from nodemesh.errors import UserError
from nodemesh.tools import cli


class _Invalid(UserError):
    exit_code = 3


@click.command()
@click.argument("what", type=click.Choice(["user", "invalid", "bug", "nothing"]))
def failing(what: str) -> None:
    if what == "user":
        raise UserError("the file is wrong: fix line 3")
    if what == "invalid":
        raise _Invalid("2 problems:\n  a\n  b")
    if what == "bug":
        raise KeyError("a bug")


@pytest.fixture
def run(monkeypatch):
    monkeypatch.setitem(cli.COMMANDS, "failing", f"{__name__}:failing")
    return lambda *args: CliRunner().invoke(cli.main, ["failing", *args])


def test_a_user_error_is_its_message_and_exit_1(run):
    result = run("user")
    assert result.exit_code == 1
    assert result.output == "Error: the file is wrong: fix line 3\n"


def test_a_user_error_keeps_its_own_exit_code_and_lines(run):
    result = run("invalid")
    assert result.exit_code == 3
    assert result.output == "Error: 2 problems:\n  a\n  b\n"


def test_a_bug_is_not_taken_for_a_user_error(run):
    result = run("bug")
    assert isinstance(result.exception, KeyError)  # standalone, Python prints its traceback


def test_usage_errors_stay_click_s(run):
    result = run("nonsense")
    assert result.exit_code == 2 and "Invalid value for '{user|invalid|bug|nothing}'" in result.output
    assert run("nothing").exit_code == 0
