"""Workload keys never touch a file system, and building contexts leaks no descriptor."""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path

import pytest
from hbone_pki import TestCa, spiffe

from nodemesh.agent.tls import contexts


def open_fds() -> set[str]:
    return {os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")}


def test_contexts_load_the_key_from_memory_not_from_a_temporary_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = TestCa()
    chain, key = ca.issue(spiffe("shop", "client"))
    seen: list[str] = []
    real_load = ssl.SSLContext.load_cert_chain

    def spy(self: ssl.SSLContext, certfile: str, keyfile: str | None = None, password: object = None) -> None:
        seen.extend([os.readlink(certfile), os.readlink(keyfile or certfile)])
        real_load(self, certfile, keyfile)

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    before = open_fds()
    for make in (contexts.client_context, contexts.server_context):
        ctx = make(chain, key, ca.bundle)
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert list(tmp_path.iterdir()) == []
    assert len(seen) == 4 and all(target.startswith("/memfd:nodemesh-") for target in seen), seen
    assert open_fds() == before  # the memory files are closed again
