"""The controller's one way of writing what it keeps: whole or not at all, with the mode asked for."""

from __future__ import annotations

import os
import stat

import pytest

from nodemesh.controller.files import write_atomically


@pytest.mark.parametrize("mode", [0o600, 0o644])
def test_the_file_gets_the_mode_asked_for_whatever_the_umask(tmp_path, mode):
    old = os.umask(0o077)
    try:
        write_atomically(tmp_path / "f", b"data", mode)
    finally:
        os.umask(old)
    assert (tmp_path / "f").read_bytes() == b"data"
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == mode


def test_a_failed_write_leaves_the_old_file_and_nothing_else(tmp_path):
    write_atomically(tmp_path / "f", b"old")
    with pytest.raises(TypeError):
        write_atomically(tmp_path / "f", "not bytes")  # type: ignore[arg-type]
    assert [p.name for p in tmp_path.iterdir()] == ["f"]
    assert (tmp_path / "f").read_bytes() == b"old"
