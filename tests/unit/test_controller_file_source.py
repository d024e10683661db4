"""The file source: edits (in place or by replacing the file) apply; bad edits keep the last good model."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest

from nodemesh.controller.kube.objects import ConfigError
from nodemesh.controller.sources.addresses import AddressStore
from nodemesh.controller.sources.file import FileSource
from nodemesh.model import MeshModel


def pods(*names: str) -> str:
    return "".join(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {n}}}\n"
                   f"spec: {{nodeName: n1, containers: [{{name: c}}]}}\n---\n" for n in names)


def names(model: MeshModel) -> list[str]:
    return sorted(w.name for w in model.workloads.values())


FAST_POLL = 0.05  # the default (0.2 s) is tested once; the other tests need not wait for it


async def watch_while(source: FileSource, edit) -> list[MeshModel]:
    """Run the watch loop, apply ``edit`` once it runs, collect what it publishes within 1 s (at
    most 10 polls), and for two polls after the first model, to see that nothing else comes."""
    published: list[MeshModel] = []
    task = asyncio.create_task(source.watch(published.append))
    await asyncio.sleep(0)  # one loop pass runs the watch up to its first poll: it watches before the edit
    started = time.monotonic()
    edit()
    # not eventually(): for a bad edit, nothing published is the right outcome, so this wait may end empty
    while not published and time.monotonic() - started < min(1.0, 10 * source.poll_interval):
        await asyncio.sleep(0.01)
    await asyncio.sleep(2 * source.poll_interval)  # not a condition: time for a wrong second model to come
    task.cancel()
    return published


@pytest.fixture
def cluster(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(pods("a"))
    return path


def test_load_builds_the_model(cluster, tmp_path):
    assert names(FileSource(cluster, AddressStore(tmp_path)).load()) == ["a"]


def test_load_refuses_a_bad_file(cluster, tmp_path):
    cluster.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c}]}\n")
    with pytest.raises(ConfigError, match="Pod default/a: spec.nodeName: required"):
        FileSource(cluster, AddressStore(tmp_path)).load()


def test_an_edit_in_place_applies_within_a_second(cluster, tmp_path):
    source = FileSource(cluster, AddressStore(tmp_path))  # default poll interval
    source.load()
    published = asyncio.run(watch_while(source, lambda: cluster.write_text(pods("a", "b"))))
    assert [names(m) for m in published] == [["a", "b"]]


def test_a_replaced_file_applies(cluster, tmp_path):
    """Editors write a new file and rename it over the old one: a new inode, maybe the same size."""
    source = FileSource(cluster, AddressStore(tmp_path), poll_interval=FAST_POLL)
    source.load()
    stat = cluster.stat()

    def replace_file() -> None:
        new = cluster.with_suffix(".new")
        new.write_text(pods("z"))  # same size as before
        os.utime(new, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same mtime
        new.rename(cluster)

    published = asyncio.run(watch_while(source, replace_file))
    assert [names(m) for m in published] == [["z"]]


@pytest.mark.parametrize("bad, expected", [
    # objects that do not parse
    ("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: x}]}\n",
     "Service default/s: spec.ports[0].port: must be a number"),
    # objects that parse but make no model
    ("apiVersion: v1\nkind: Namespace\nmetadata: {name: default, labels: {nodemesh.io/mtls-mode: lax}}\n",
     "Namespace default: metadata.labels.nodemesh.io/mtls-mode: 'lax' is not STRICT or PERMISSIVE"),
])
def test_a_bad_edit_keeps_the_last_good_model_and_logs_why(cluster, tmp_path, caplog, bad, expected):
    source = FileSource(cluster, AddressStore(tmp_path), poll_interval=FAST_POLL)
    source.load()
    with caplog.at_level(logging.ERROR, logger="nodemesh.controller.sources.file"):
        published = asyncio.run(watch_while(source, lambda: cluster.write_text(pods("a", "b") + bad)))
    assert published == []
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("keeping the last good model" in m for m in messages)
    assert any(expected in m for m in messages)
    assert "default/b" not in (tmp_path / "ipam.json").read_text()  # nothing was assigned

    # and the next good edit applies again
    published = asyncio.run(watch_while(source, lambda: cluster.write_text(pods("a", "c"))))
    assert [names(m) for m in published] == [["a", "c"]]


def test_a_deleted_file_keeps_the_last_good_model(cluster, tmp_path, caplog):
    source = FileSource(cluster, AddressStore(tmp_path), poll_interval=FAST_POLL)
    source.load()
    with caplog.at_level(logging.ERROR, logger="nodemesh.controller.sources.file"):
        published = asyncio.run(watch_while(source, cluster.unlink))
    assert published == []
    assert sum("cannot read" in r.getMessage() for r in caplog.records) == 1  # said once, not per poll


NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n"


def authorization_policy(source: str, extra: str = "") -> str:
    return (f"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
            f"metadata: {{name: deny-legacy, namespace: shop}}\n"
            f"spec:\n  action: DENY\n  rules: [{{from: [{{source: {source}}}]{extra}}}]\n---\n")


def test_a_bad_policy_edit_keeps_the_last_good_policies(cluster, tmp_path, caplog):
    cluster.write_text(NAMESPACE + authorization_policy("{ipBlocks: [10.0.0.0/8]}") + pods("a"))
    source = FileSource(cluster, AddressStore(tmp_path), poll_interval=FAST_POLL)
    first = source.load()
    assert first.policies["shop/deny-legacy"].rules[0].sources[0].ip_blocks == ("10.0.0.0/8",)
    bad = NAMESPACE + authorization_policy("{ipBlocks: [10.0.0.0/33]}") + pods("a", "b")
    with caplog.at_level(logging.ERROR, logger="nodemesh.controller.sources.file"):
        published = asyncio.run(watch_while(source, lambda: cluster.write_text(bad)))
    assert published == []  # neither the policy nor the new pod
    assert any("AuthorizationPolicy shop/deny-legacy: spec.rules[0].from[0].source.ipBlocks[0]: "
               "'10.0.0.0/33' is not a CIDR" in r.getMessage() for r in caplog.records)
    assert "default/b" not in (tmp_path / "ipam.json").read_text()


def test_l7_warnings_are_logged_at_start_and_on_each_reload(cluster, tmp_path, caplog):
    def warnings() -> list[str]:
        found = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        caplog.clear()
        return found

    l7 = NAMESPACE + authorization_policy("{namespaces: [legacy]}", ", to: [{operation: {methods: [GET]}}]")
    cluster.write_text(l7 + pods("a"))
    source = FileSource(cluster, AddressStore(tmp_path), poll_interval=FAST_POLL)
    with caplog.at_level(logging.WARNING, logger="nodemesh.controller.sources.file"):
        source.load()
        expected = (f"{cluster}: AuthorizationPolicy shop/deny-legacy: spec.rules[0]: "
                    "to[0].operation.methods: cannot be enforced at L4, so this DENY rule denies")
        (at_start,) = warnings()
        assert at_start.startswith(expected)

        assert len(asyncio.run(watch_while(source, lambda: cluster.write_text(l7 + pods("a", "b"))))) == 1
        assert [m.startswith(expected) for m in warnings()] == [True]  # once per load, not per poll

        fixed = NAMESPACE + authorization_policy("{namespaces: [legacy]}") + pods("a", "b")
        assert len(asyncio.run(watch_while(source, lambda: cluster.write_text(fixed)))) == 1
        assert warnings() == []
