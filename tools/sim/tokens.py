"""Join tokens for a simulated cluster's agents: what `sim up` gives each node.

A fresh random token per node and per ``up``, readable by root only; the controller gets their
SHA-256 hashes (``--node-tokens``), each agent its own node's token (``--token-file``). So the
agents of a sim authenticate exactly as on a real installation, and one node's agent cannot
speak for another.
"""

from __future__ import annotations

import json
import secrets
from typing import Iterable

from nodemesh.tools.sim.names import SimNames


def write_tokens(names: SimNames, nodes: Iterable[str]) -> None:
    from nodemesh.controller.files import write_atomically
    from nodemesh.controller.nodeauth.tokens import token_hash

    names.tokens_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    hashes = {}
    for node in nodes:
        token = secrets.token_urlsafe(32)
        write_atomically(names.node_token(node), token.encode(), 0o600)
        hashes[node] = token_hash(token)
    write_atomically(names.node_tokens, json.dumps(hashes, indent=2, sort_keys=True).encode(), 0o600)
