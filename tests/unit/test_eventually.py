"""The tests' one wait (tests/eventually.py): it returns when the check holds and fails saying why not."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from eventually import eventually, eventually_async


def test_returns_the_predicates_value_once_it_holds() -> None:
    tries = itertools.count()
    assert eventually(lambda: next(tries) >= 3 and "done") == "done"


def test_an_assertion_function_is_retried_until_it_passes() -> None:
    tries = itertools.count()

    def check() -> None:
        assert next(tries) >= 3, "not yet"

    assert eventually(check) is None
    assert next(tries) == 4


def test_at_the_deadline_it_fails_with_the_last_assertion_message() -> None:
    def check() -> None:
        assert [] == ["spare"], "spare never answered"

    with pytest.raises(AssertionError, match=r"after 0.05s waiting for check: spare never answered"):
        eventually(check, timeout=0.05)


def test_a_predicate_that_stays_false_fails_with_its_last_value_and_what() -> None:
    with pytest.raises(AssertionError, match=r"waiting for the reply: still \[\]"):
        eventually(lambda: [], timeout=0.05, what="the reply")


def test_other_errors_are_not_retried() -> None:
    tries = itertools.count()

    def check() -> bool:
        next(tries)
        raise KeyError("a bug, not 'not yet'")

    with pytest.raises(KeyError):
        eventually(check)
    assert next(tries) == 1


def test_the_async_variant_lets_the_loop_run_between_tries() -> None:
    async def main() -> None:
        done = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, done.set)
        assert await eventually_async(done.is_set) is True
        with pytest.raises(AssertionError, match="waiting for never"):
            await eventually_async(lambda: False, timeout=0.05, what="never")

    asyncio.run(main())
