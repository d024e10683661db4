"""Where the CLI finds a simulated cluster's agents: each node's network namespace.

``nodemesh tunnels``, ``certs`` and ``top`` ask every agent (or one) over HTTP from inside its
node's namespace; this is the one place that turns ``--sim``/``--node`` into those namespaces,
so that they check root and node names, and word their errors, alike.
"""

from __future__ import annotations


def node_namespaces(sim: str, node: str | None = None) -> dict[str, str]:
    """node -> path of its network namespace, for every node of the sim (sorted) or ``node``.

    Root is checked first: the agents answer only inside their nodes' namespaces, and entering
    one without root would fail once per node with a less helpful EPERM.
    """
    from nodemesh.tools.sim.names import SimError, SimNames
    from nodemesh.tools.sim.process import require_root
    from nodemesh.tools.sim.state import load

    names = SimNames(sim)
    require_root()
    nodes = sorted(load(names).nodes)
    if node is not None:
        if node not in nodes:
            raise SimError(f"no node {node!r} in sim {sim!r}; nodes: {', '.join(nodes)}")
        nodes = [node]
    return {n: names.netns_path(names.node_netns(n)) for n in nodes}
