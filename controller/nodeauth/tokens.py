"""Node join tokens: how an agent proves which node it runs on (local mode).

The controller keeps only SHA-256 hashes of the tokens (``--node-tokens FILE``, JSON
``{"<node>": "<sha256 hex of the token>"}``), so the file it reads is no secret worth stealing;
each agent holds its own node's token. The file is looked at again when it changes, so nodes can
be added or a token revoked without restarting the controller; a broken edit keeps the last good
tokens and is logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from pathlib import Path

from nodemesh.controller.files import Fingerprint, fingerprint
from nodemesh.errors import UserError

log = logging.getLogger(__name__)

_HEX64 = re.compile(r"[0-9a-f]{64}")
EXAMPLE = '{"node-a": "<sha256 hex of node-a\'s token>"}'


class TokenFileError(UserError):
    """The tokens file cannot be used; the message says why and what it should look like."""


def token_hash(token: str) -> str:
    """What the tokens file holds for ``token`` (``printf %s TOKEN | sha256sum``)."""
    return hashlib.sha256(token.encode()).hexdigest()


def read_tokens_file(path: Path) -> dict[str, str]:
    """``{hash: node}`` from the file; TokenFileError naming the file and the problem."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise TokenFileError(f"--node-tokens {path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise TokenFileError(f"--node-tokens {path}: not JSON ({exc}); expected {EXAMPLE}") from None
    if not isinstance(data, dict):
        raise TokenFileError(f"--node-tokens {path}: expected an object like {EXAMPLE}")
    by_hash: dict[str, str] = {}
    for node, digest in data.items():
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest.lower()):
            raise TokenFileError(f"--node-tokens {path}: node {node!r}: {digest!r} is not a SHA-256 "
                                 "hex digest (64 hex digits: `printf %s TOKEN | sha256sum`)")
        if digest.lower() in by_hash:
            raise TokenFileError(f"--node-tokens {path}: nodes {by_hash[digest.lower()]!r} and {node!r} "
                                 "have the same token; give every node its own")
        by_hash[digest.lower()] = node
    return by_hash


class NodeTokens:
    def __init__(self, path: Path) -> None:
        """Reads ``path`` now: a controller must not start with tokens it cannot read."""
        self.path = Path(path)
        self._stamp: Fingerprint = fingerprint(self.path)
        self._by_hash = read_tokens_file(self.path)

    def node_for(self, token: str) -> str | None:
        """The node whose token this is, None for an unknown token."""
        self._reload_if_changed()
        digest = token_hash(token)
        found = None
        for known, node in self._by_hash.items():  # compare all: no early exit to time
            if hmac.compare_digest(known, digest):
                found = node
        return found

    def _reload_if_changed(self) -> None:
        stamp = fingerprint(self.path)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._by_hash = read_tokens_file(self.path)
        except TokenFileError as exc:
            log.error("%s; keeping the tokens read before", exc)
            return
        log.info("node tokens reloaded from %s: %d node(s)", self.path, len(self._by_hash))
