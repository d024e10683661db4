"""The one backoff and the supervisor of background work: crashes are retried and shown, not lost."""

from __future__ import annotations

import asyncio
import logging

import pytest
from eventually import eventually_async

from nodemesh.agent.supervision import Backoff, Health, Supervisor


def test_backoff_doubles_with_jitter_up_to_its_cap_and_starts_over_on_reset() -> None:
    backoff = Backoff(0.2, 1.0)
    delays = [backoff.next() for _ in range(6)]
    for delay, whole in zip(delays, [0.2, 0.4, 0.8, 1.0, 1.0, 1.0]):
        assert whole / 2 <= delay <= whole
    backoff.reset()
    assert 0.1 <= backoff.next() <= 0.2


def test_health_records_what_fails_until_it_recovers() -> None:
    health = Health()
    health.failing("a", KeyError("namespace"))
    health.failing("b", "plain words")
    assert health.problems() == {"a": "KeyError: 'namespace'", "b": "plain words"}
    health.ok("a")
    assert health.problems() == {"b": "plain words"}


def test_a_crashing_task_is_logged_shown_and_run_again_until_it_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        supervisor = Supervisor()
        runs = 0
        seen: list[dict[str, str]] = []

        async def work() -> None:
            nonlocal runs
            runs += 1
            seen.append(supervisor.health.problems())
            if runs < 3:
                raise KeyError("uid")

        task = supervisor.spawn("flaky", work)
        await asyncio.wait_for(task, 5)
        assert runs == 3
        assert seen[0] == {} and seen[1] == seen[2] == {"flaky": "KeyError: 'uid'"}
        assert supervisor.health.problems() == {}  # it succeeded in the end

    with caplog.at_level(logging.ERROR, logger="nodemesh.agent.supervision"):
        asyncio.run(main())
    failures = [r for r in caplog.records if "flaky failed" in r.getMessage()]
    assert len(failures) == 2 and all(r.exc_info for r in failures)  # with the traceback


def test_every_runs_a_step_periodically_and_a_failed_step_does_not_stop_it() -> None:
    async def main() -> None:
        supervisor = Supervisor()
        steps = 0
        problems: list[dict[str, str]] = []

        async def step() -> None:
            nonlocal steps
            steps += 1
            problems.append(supervisor.health.problems())
            if steps == 2:
                raise OSError("the kernel said no")

        supervisor.every("retry", 0.01, step)
        await eventually_async(lambda: steps >= 4, what="four steps")
        supervisor.close()
        assert problems[2] == {"retry": "OSError: the kernel said no"}
        assert supervisor.health.problems() == {}  # the later steps completed

    asyncio.run(main())


def test_cancelled_work_no_longer_counts_as_failing() -> None:
    async def main() -> None:
        supervisor = Supervisor()

        async def always_fails() -> None:
            raise RuntimeError("bug")

        task = supervisor.spawn("doomed", always_fails)
        assert await eventually_async(supervisor.health.problems) == {"doomed": "RuntimeError: bug"}
        supervisor.cancel(task)
        assert supervisor.health.problems() == {}
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
