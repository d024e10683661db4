"""Flags checked when they are parsed, by the same functions the code uses on the value.

A validator raises ValueError in words; these turn it into a click option callback, so that a
wrong flag is click's usage error (exit 2, the flag named) before anything starts, and no
command writes its own try block for it.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import click

T = TypeVar("T")

Callback = Callable[[click.Context, click.Parameter, str], T]


def parsed_by(parse: Callable[[str], T]) -> Callback[T]:
    """A callback giving the command ``parse(value)``; its ValueError is a usage error."""

    def callback(ctx: click.Context, param: click.Parameter, value: str) -> T:
        try:
            return parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None

    return callback


def checked_by(check: Callable[[str], object]) -> Callback[str]:
    """A callback that runs ``check(value)`` and gives the command the value as written."""

    def checked(value: str) -> str:
        check(value)
        return value

    return parsed_by(checked)
