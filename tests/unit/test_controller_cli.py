"""``nodemesh controller`` as users run it: clear refusals, and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess

import grpc

from nodemesh.api import mesh_pb2 as pb
from nodemesh.api.mesh_pb2_grpc import MeshConfigStub
from nodemesh.tools.sim.cluster import nodemesh_argv

GOOD = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {nodeName: n1, containers: [{name: c}]}\n"


def test_a_bad_file_exits_2_listing_every_problem(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: client, namespace: demo}\n"
                   "spec: {containers: [{name: c}]}\n---\n"
                   "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 99999}]}\n")
    result = cli("controller", "--file", str(bad), "--state-dir", str(tmp_path / "state"),
                 "--listen", "127.0.0.1:0")
    assert result.returncode == 2, result.stderr
    assert "cannot start, 3 problem(s):" in result.stderr
    assert "  Pod demo/client: spec.nodeName: required" in result.stderr
    assert "  Service default/s: spec.ports[0].port: port 99999 is out of range" in result.stderr
    assert "  Pod demo/client: metadata.namespace: namespace 'demo' is not defined" in result.stderr


def test_a_missing_file_exits_2(cli, tmp_path):
    result = cli("controller", "--file", str(tmp_path / "nope.yaml"), "--state-dir", str(tmp_path),
                 "--listen", "127.0.0.1:0")
    assert result.returncode == 2
    assert f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory" in result.stderr


def test_an_unusable_state_dir_says_so(cli, tmp_path):
    (tmp_path / "c.yaml").write_text(GOOD)
    result = cli("controller", "--file", str(tmp_path / "c.yaml"), "--state-dir",
                 str(tmp_path / "c.yaml" / "state"), "--listen", "127.0.0.1:0")
    assert result.returncode == 1
    assert "cannot use the state directory:" in result.stderr
    assert "Not a directory; choose a writable --state-dir" in result.stderr


def test_a_port_in_use_is_named_with_what_to_do(cli, tmp_path):
    (tmp_path / "c.yaml").write_text(GOOD)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = cli("controller", "--file", str(tmp_path / "c.yaml"), "--state-dir", str(tmp_path),
                     "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "--listen HOST:PORT" in result.stderr


def test_sigterm_closes_streams_and_exits_0(tmp_path):
    (tmp_path / "c.yaml").write_text(GOOD)
    proc = subprocess.Popen(
        nodemesh_argv("controller", "--file", str(tmp_path / "c.yaml"), "--state-dir",
                      str(tmp_path / "state"), "--listen", "127.0.0.1:0"),
        stderr=subprocess.PIPE, text=True)
    try:
        port = None
        for line in proc.stderr:
            if match := re.search(r"listening on 127\.0\.0\.1:(\d+)", line):
                port = int(match.group(1))
                break
        assert port, "the controller never said where it listens"
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO ", line)  # timestamped

        async def stream_until_sigterm() -> grpc.StatusCode:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = MeshConfigStub(channel).StreamConfig()
                await call.write(pb.AgentMessage(hello=pb.AgentHello(node="n1")))
                assert (await call.read()).snapshot
                proc.send_signal(signal.SIGTERM)
                assert await call.read() is grpc.aio.EOF
                return await call.code()

        assert asyncio.run(asyncio.wait_for(stream_until_sigterm(), 10)) is grpc.StatusCode.OK
        assert proc.wait(timeout=10) == 0
        rest = proc.stderr.read()
        assert "agent disconnected: node n1" in rest and "stopped" in rest
        assert (tmp_path / "state" / "ipam.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
