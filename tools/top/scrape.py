"""The I/O of ``nodemesh top``: one round of GET /metrics over the nodes' agents.

Each agent serves its metrics on 0.0.0.0:15020 in its node's network namespace; the admin
client enters the namespace for the socket. An agent that does not answer, or answers with
something that is not exposition text, is one node marked unreachable with the reason, and the
others are shown all the same.
"""

from __future__ import annotations

from time import monotonic
from typing import Mapping

from nodemesh.agent.ports import METRICS_PORT
from nodemesh.tools import admin_client
from nodemesh.tools.top.metrics import AgentMetrics, Scrape, parse

PATH = "/metrics"
# Nodes are asked one after the other: a hung agent must not stall the view for long.
TIMEOUT_SECONDS = 2.0


def scrape(namespaces: Mapping[str, str]) -> Scrape:
    """Ask every node's agent (node -> its namespace's path) for its metrics, once."""
    agents: dict[str, AgentMetrics] = {}
    unreachable: dict[str, str] = {}
    for node, netns_path in namespaces.items():
        try:
            text = admin_client.get_text(netns_path, PATH, port=METRICS_PORT, timeout=TIMEOUT_SECONDS)
            agents[node] = parse(text, at=monotonic())
        except admin_client.AdminError as e:
            unreachable[node] = str(e)
        except ValueError as e:
            unreachable[node] = f"the agent's {PATH} in {netns_path} is not Prometheus text: {e}"
    return Scrape(agents, unreachable)
