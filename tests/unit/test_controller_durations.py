"""Durations as operators write them: certificate lifetimes, TrafficPolicy timeouts."""

from __future__ import annotations

import datetime as dt

import pytest

from nodemesh.controller.durations import parse_duration


@pytest.mark.parametrize("text, seconds", [("10s", 10), ("5m", 300), ("24h", 86400), ("7d", 604800),
                                           ("1h30m", 5400), (" 2H ", 7200),
                                           ("250ms", 0.25), ("1s500ms", 1.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["24", "h", "1.5h", "10 s", "1w", "-5m", "", "1h-30m", "5mss", "1us"])
def test_a_duration_needs_numbers_with_units(text):
    with pytest.raises(ValueError, match="is not a duration: write a number and a unit"):
        parse_duration(text)


def test_zero_is_not_a_lifetime():
    with pytest.raises(ValueError, match="longer than zero"):
        parse_duration("0ms")
