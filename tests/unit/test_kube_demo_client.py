"""`nodemesh demo --kube`'s client pod: a pod that ends without its tally is the user's clear
error (which pod, where its log is), not a JSON traceback."""

from __future__ import annotations

import pytest

from nodemesh.tools.kubedemo import KubeDemo
from nodemesh.tools.sim.names import SimError


@pytest.mark.parametrize("log", [[], ["Traceback (most recent call last):", "OSError: no route"]])
def test_a_client_without_its_tally_names_its_pod_and_log(monkeypatch: pytest.MonkeyPatch,
                                                           log: list[str]) -> None:
    demo = KubeDemo("kdemounit")
    ended = {"spec": {"nodeName": "node-a"}, "status": {"phase": "Failed"}}
    monkeypatch.setattr(demo.kubectl, "run_pod", lambda *args: (ended, log))
    with pytest.raises(SimError, match=r"client pod shop/client1 ended Failed without its tally: "
                                       r"see /run/nodemesh/sim/kdemounit/logs/pods/shop\.client1\.client\.log"):
        demo.client(3)


def test_a_clients_tally_says_its_node(monkeypatch: pytest.MonkeyPatch) -> None:
    demo = KubeDemo("kdemounit")
    ended = {"spec": {"nodeName": "node-b"}, "status": {"phase": "Succeeded"}}
    monkeypatch.setattr(demo.kubectl, "run_pod", lambda *args: (ended, ['{"ok": 3, "servers": {}}']))
    assert demo.client(3) == {"ok": 3, "servers": {}, "node": "node-b"}
