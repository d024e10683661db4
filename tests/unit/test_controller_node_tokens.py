"""Node join tokens: the controller keeps hashes, knows each token's node, follows file edits."""

from __future__ import annotations

import json
import logging
import os

import pytest

from nodemesh.controller.nodeauth.tokens import NodeTokens, TokenFileError, token_hash


def write(path, mapping) -> None:
    path.write_text(json.dumps(mapping))


def test_a_token_is_known_by_its_hash_alone(tmp_path):
    path = tmp_path / "tokens.json"
    write(path, {"n1": token_hash("secret-1"), "n2": token_hash("secret-2").upper()})
    tokens = NodeTokens(path)
    assert tokens.node_for("secret-1") == "n1"
    assert tokens.node_for("secret-2") == "n2"
    assert tokens.node_for("secret-3") is None
    assert tokens.node_for(token_hash("secret-1")) is None  # the hash is not the token
    assert token_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_edits_apply_and_a_broken_edit_keeps_the_tokens_before(tmp_path, caplog):
    path = tmp_path / "tokens.json"
    write(path, {"n1": token_hash("old")})
    tokens = NodeTokens(path)
    write(path, {"n1": token_hash("new"), "n3": token_hash("third")})
    os.utime(path, ns=(1, 1))  # a different mtime even on a coarse clock
    assert tokens.node_for("old") is None  # revoked
    assert tokens.node_for("third") == "n3"
    path.write_text("{broken")
    with caplog.at_level(logging.ERROR, logger="nodemesh.controller.nodeauth.tokens"):
        assert tokens.node_for("new") == "n1"
    assert "not JSON" in caplog.text and "keeping the tokens read before" in caplog.text


@pytest.mark.parametrize("content, message", [
    ("[]", "expected an object like"),
    ('{"n1": "x"}', "node 'n1': 'x' is not a SHA-256 hex digest"),
    (json.dumps({"n1": token_hash("t"), "n2": token_hash("t")}),
     "nodes 'n1' and 'n2' have the same token; give every node its own"),
])
def test_bad_files_are_refused_at_start(tmp_path, content, message):
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(TokenFileError, match=message):
        NodeTokens(path)
