"""``nodemesh top`` as a user runs it (click's CliRunner through the CLI's group), with the
network left out: the sim's state (two nodes), the agents' /metrics (``FakeAgent``'s text, or
the error of an agent that is down) and the clock stand in. Everything between runs for real.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Callable

import pytest
from agent_metrics import SERVICE, FakeAgent
from click.testing import CliRunner, Result

from nodemesh.agent.ports import METRICS_PORT
from nodemesh.tools import admin_client
from nodemesh.tools.cli import main
from nodemesh.tools.sim import process, state
from nodemesh.tools.sim.names import SimNames
from nodemesh.tools.top import command, scrape

SIM = "topt"
DOWN = "agent metrics endpoint in /run/netns/nm-topt-node-node-b (127.0.0.1:15020) unreachable: refused"
# What each node's agent answers, one entry a scrape: its text then, or an error to raise.
Answers = dict[str, list[Callable[[], str]]]


class Clock:
    """Time that moves only when top sleeps, so that rates come out exact."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(scrape, "monotonic", lambda: clock.now)
    monkeypatch.setattr(command, "sleep", clock.sleep)
    return clock


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> Answers:
    names = SimNames(SIM)
    by_netns = {names.netns_path(names.node_netns(n)): n for n in ("node-a", "node-b")}
    queued: Answers = {"node-a": [], "node-b": []}

    def get_text(netns_path: str, path: str, port: int, timeout: float) -> str:
        assert (path, port) == ("/metrics", METRICS_PORT)
        return queued[by_netns[netns_path]].pop(0)()

    monkeypatch.setattr(state, "load", lambda n: SimpleNamespace(nodes={"node-b": {}, "node-a": {}}))
    monkeypatch.setattr(process, "require_root", lambda: None)
    monkeypatch.setattr(admin_client, "get_text", get_text)
    return queued


def down() -> str:
    raise admin_client.AdminError(DOWN)


def interrupted() -> str:
    raise KeyboardInterrupt


def traffic(answers: Answers, *per_scrape: Callable[[FakeAgent], None]) -> None:
    """node-a's agent answers once per step, after the step's connections; node-b is down."""
    agent = FakeAgent()
    for step in per_scrape:
        answers["node-a"].append(lambda step=step: (step(agent), agent.text())[1])
        answers["node-b"].append(down)


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["top", "--name", SIM, *args], catch_exceptions=False)


def quiet(agent: FakeAgent) -> None:
    pass


def test_json_is_one_snapshot_two_scrapes_an_interval_apart(answers: Answers, clock: Clock) -> None:
    traffic(answers, quiet, lambda agent: agent.connections(8, received=100, open_=2, connect_seconds=0.002))
    result = run("-o", "json", "--interval", "4")
    assert clock.sleeps == [4.0]
    assert result.exit_code == 1  # a partial picture is not taken for the whole
    assert result.stderr == "Error: no answer from the agent on node-b (the reason is above)\n"
    snapshot = json.loads(result.stdout)
    assert snapshot["nodes"] == {"node-a": {"reachable": True}, "node-b": {"reachable": False, "error": DOWN}}
    row = snapshot["rows"][0]
    assert (row["source"], row["destination"], row["connections_per_second"], row["active_connections"],
            row["bytes_to_destination_per_second"]) == ("shop/client", SERVICE, 2.0, 2, 200.0)


def test_count_gives_that_many_documents_each_over_its_own_interval(answers: Answers, clock: Clock) -> None:
    traffic(answers, quiet, lambda agent: agent.connections(2), lambda agent: agent.connections(6))
    result = run("-o", "json", "--count", "2")
    decoder, text, documents = json.JSONDecoder(), result.stdout, []
    while text.strip():
        document, end = decoder.raw_decode(text.lstrip())
        documents.append(document)
        text = text.lstrip()[end:]
    assert [d["rows"][0]["connections_per_second"] for d in documents] == [1.0, 3.0]
    assert clock.sleeps == [2.0, 2.0]


def test_once_prints_one_table_and_marks_the_node_that_did_not_answer(answers: Answers) -> None:
    traffic(answers, quiet, lambda agent: agent.connections(4, flag="CONNECT", connect_seconds=0.002))
    result = run("--once")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].strip() == "nodemesh top: sim topt, reporter source, every 2 s"
    assert lines[1].split() == ["SOURCE", "DESTINATION", "MTLS", "CONN/S", "ACTIVE", "TO/S", "FROM/S",
                                "FAILED/S", "P50", "P99"]
    assert lines[2].split() == ["shop/client", SERVICE, "yes", "2.0", "0", "0", "B", "0", "B", "CONNECT", "2.0",
                                "1.75", "ms", "2.49", "ms"]
    assert " ".join(" ".join(lines[3:]).split()) == f"node-b unreachable: {DOWN}"  # the caption
    assert result.stderr == "Error: no answer from the agent on node-b (the reason is above)\n"


def test_ctrl_c_ends_the_view_quietly(answers: Answers) -> None:
    traffic(answers, quiet, lambda agent: agent.connections(2))
    answers["node-a"].append(interrupted)
    result = run("--reporter", "destination")
    assert result.exit_code == 0 and result.stderr == ""
    assert "node-b unreachable" in result.stdout  # the one table shown before Ctrl-C
    assert SERVICE not in result.stdout  # node-a's connections were reported by source


def test_node_asks_only_that_nodes_agent(answers: Answers) -> None:
    answers["node-b"] += [lambda: FakeAgent().text()] * 2
    result = run("--node", "node-b", "-o", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["nodes"] == {"node-b": {"reachable": True}}


def test_an_agent_answering_with_something_else_is_unreachable_with_the_reason(answers: Answers) -> None:
    answers["node-b"] += [lambda: "<html>502</html>"] * 2
    result = run("--node", "node-b", "-o", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["nodes"]["node-b"]["error"].startswith(
        "the agent's /metrics in /run/netns/nm-topt-node-node-b is not Prometheus text: ")


def test_once_and_another_count_are_a_usage_error(answers: Answers) -> None:
    result = run("--once", "--count", "3")
    assert result.exit_code == 2 and "--once is --count 1: give one of them" in result.output


def test_a_sim_that_is_not_up_is_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """(No root: tests/unit/test_observe.py, as for the other commands that ask agents.)"""
    monkeypatch.setattr(process, "require_root", lambda: None)
    result = CliRunner().invoke(main, ["top", "--name", "notupx", "--once"])
    assert (result.exit_code, result.output) == (
        1, "Error: sim 'notupx' is not up (no /run/nodemesh/sim/notupx/state.json): "
           "start it with `nodemesh sim up -f FILE --name notupx`\n")
