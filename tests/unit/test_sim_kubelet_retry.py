"""The sim kubelet tries a pod again after its worker failed, with the pod as the watch saw it last.

A worker that died used to leave its pod Pending for good (a CI run's scale-up waited on a pod
that never started); the kubelet's pod workers retry a failed sync. Workers here are stand-ins
that fail on demand: what is under test is the Kubelet's bookkeeping, not a pod's processes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from eventually import eventually_async

from nodemesh.tools.sim.kubelet import main
from nodemesh.tools.sim.kubelet.main import Kubelet
from nodemesh.tools.sim.kubelet.pods import PodWorker


class Worker(PodWorker):
    """The real worker's bookkeeping; its run fails while ``failures`` says so, otherwise waits
    until the pod is deleted or gone."""

    failures = 0
    started: list["Worker"] = []

    def __init__(self, ctx: Any, pod: dict[str, Any], predecessor: asyncio.Task | None) -> None:
        super().__init__(ctx, pod, predecessor)
        Worker.started.append(self)

    async def run(self) -> None:
        await asyncio.sleep(0)
        if Worker.failures:
            Worker.failures -= 1
            raise OSError("netlink said no")
        await self.deleting.wait()


class StandInKubelet(Kubelet):
    worker = Worker  # type: ignore[assignment]


def pod(version: str, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"uid": "u1", "name": "web", "namespace": "shop", "resourceVersion": version}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    return {"metadata": meta, "spec": {"containers": []}, "status": {}}


@pytest.fixture
def kubelet(monkeypatch: pytest.MonkeyPatch) -> StandInKubelet:
    monkeypatch.setattr(main, "RETRY_AFTER", 0.05)
    Worker.failures, Worker.started = 1, []
    return StandInKubelet(ctx=None)  # type: ignore[arg-type]


def test_a_failed_worker_is_followed_by_a_new_one_with_the_latest_pod(kubelet: StandInKubelet) -> None:
    async def scenario() -> None:
        kubelet.apply(pod("1"))
        await eventually_async(lambda: "u1" in kubelet.retrying, what="the first worker failed")
        assert "u1" not in kubelet.workers
        kubelet.apply(pod("2"))  # a change while it waits: no worker yet, the change is kept
        assert len(Worker.started) == 1
        await eventually_async(lambda: len(Worker.started) == 2, what="a second worker")
        assert Worker.started[1].pod["metadata"]["resourceVersion"] == "2"
        assert kubelet.workers["u1"] is Worker.started[1] and not kubelet.retrying
        kubelet.vanish("u1")
        await eventually_async(lambda: not kubelet.workers, what="the worker to end")

    asyncio.run(scenario())


@pytest.mark.parametrize("how", ["deleted", "gone"])
def test_a_pod_deleted_while_waiting_gets_a_worker_at_once_to_clean_up(kubelet: StandInKubelet,
                                                                       how: str) -> None:
    async def scenario() -> None:
        kubelet.apply(pod("1"))
        await eventually_async(lambda: "u1" in kubelet.retrying, what="the first worker failed")
        if how == "deleted":
            kubelet.apply(pod("2", deleting=True))
        else:
            kubelet.vanish("u1")
        assert len(Worker.started) == 2 and Worker.started[1].deleting.is_set()
        assert Worker.started[1].gone == (how == "gone") and not kubelet.retrying
        await eventually_async(lambda: not kubelet.workers, what="the cleaning worker to end")
        await asyncio.sleep(0.1)  # the retry's timer fires and finds nothing left to do
        assert len(Worker.started) == 2

    asyncio.run(scenario())
