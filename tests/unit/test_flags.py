"""Flags checked by the code's own validators (nodemesh/flags.py): a ValueError is click's usage
error naming the flag; a good value reaches the command as written, or parsed."""

from __future__ import annotations

import click
from click.testing import CliRunner

from nodemesh.flags import checked_by, parsed_by


def _even(text: str) -> int:
    if int(text) % 2:
        raise ValueError(f"{text} is odd: give an even number")
    return int(text)


@click.command()
@click.option("--kept", callback=checked_by(_even), default="2")
@click.option("--parsed", callback=parsed_by(_even), default="4")
def show(kept: str, parsed: int) -> None:
    click.echo(f"{kept!r} {parsed!r}")


def test_good_values_pass_as_written_or_parsed():
    result = CliRunner().invoke(show, ["--kept", "6", "--parsed", "8"])
    assert result.output == "'6' 8\n"


def test_a_value_the_validator_refuses_is_a_usage_error_naming_the_flag():
    for flag in ("--kept", "--parsed"):
        result = CliRunner().invoke(show, [flag, "3"])
        assert result.exit_code == 2
        assert f"Invalid value for '{flag}': 3 is odd: give an even number" in result.output
