"""``nodemesh controller`` as users run it: clear refusals (config, state dir, port, tokens, CA
options), and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess

import grpc

from nodemesh.api import mesh_pb2 as pb
from nodemesh.api.mesh_pb2_grpc import MeshConfigStub
from nodemesh.controller.ca.store import root_path
from nodemesh.tools.sim.cluster import nodemesh_argv

from controller_access import auth, write_node_tokens

GOOD = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {nodeName: n1, containers: [{name: c}]}\n"


def tokens_flag(tmp_path) -> list[str]:
    return ["--node-tokens", str(write_node_tokens(tmp_path / "tokens.json"))]


def test_a_bad_file_exits_2_listing_every_problem(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: client, namespace: demo}\n"
                   "spec: {containers: [{name: c}]}\n---\n"
                   "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 99999}]}\n")
    result = cli("controller", "--file", str(bad), "--state-dir", str(tmp_path / "state"),
                 "--listen", "127.0.0.1:0", *tokens_flag(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "cannot start, 3 problem(s):" in result.stderr
    assert "  Pod demo/client: spec.nodeName: required" in result.stderr
    assert "  Service default/s: spec.ports[0].port: port 99999 is out of range" in result.stderr
    assert "  Pod demo/client: metadata.namespace: namespace 'demo' is not defined" in result.stderr


def test_a_missing_file_exits_2(cli, tmp_path):
    result = cli("controller", "--file", str(tmp_path / "nope.yaml"), "--state-dir", str(tmp_path),
                 "--listen", "127.0.0.1:0", *tokens_flag(tmp_path))
    assert result.returncode == 2
    assert f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory" in result.stderr


def test_an_unusable_state_dir_says_so(cli, tmp_path):
    (tmp_path / "c.yaml").write_text(GOOD)
    result = cli("controller", "--file", str(tmp_path / "c.yaml"), "--state-dir",
                 str(tmp_path / "c.yaml" / "state"), "--listen", "127.0.0.1:0", *tokens_flag(tmp_path))
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
                     "--listen", f"127.0.0.1:{port}", *tokens_flag(tmp_path))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "--listen HOST:PORT" in result.stderr


def test_sigterm_closes_streams_and_exits_0(tmp_path):
    (tmp_path / "c.yaml").write_text(GOOD)
    proc = subprocess.Popen(
        nodemesh_argv("controller", "--file", str(tmp_path / "c.yaml"), "--state-dir",
                      str(tmp_path / "state"), "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                      *tokens_flag(tmp_path)),
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
            root = root_path(tmp_path / "state").read_bytes()
            async with grpc.aio.secure_channel(f"127.0.0.1:{port}",
                                               grpc.ssl_channel_credentials(root)) as channel:
                call = MeshConfigStub(channel).StreamConfig(metadata=auth("n1"))
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


def test_unusable_tokens_files_are_named_with_what_they_should_hold(cli, tmp_path):
    (tmp_path / "c.yaml").write_text(GOOD)
    base = ["controller", "--file", str(tmp_path / "c.yaml"), "--state-dir", str(tmp_path / "s"),
            "--listen", "127.0.0.1:0", "--node-tokens"]
    missing = cli(*base, str(tmp_path / "none.json"))
    assert missing.returncode == 1
    assert f"--node-tokens {tmp_path / 'none.json'}: cannot read: No such file" in missing.stderr
    (tmp_path / "plain.json").write_text('{"n1": "the-token-itself"}')
    plain = cli(*base, str(tmp_path / "plain.json"))
    assert plain.returncode == 1
    assert "node 'n1': 'the-token-itself' is not a SHA-256 hex digest" in plain.stderr
    assert "sha256sum" in plain.stderr
    without = cli(*base[:-1])
    assert without.returncode == 2 and "--node-tokens" in without.stderr


def test_ca_options_are_checked_before_anything_starts(cli, tmp_path):
    (tmp_path / "c.yaml").write_text(GOOD)
    base = ["controller", "--file", str(tmp_path / "c.yaml"), "--state-dir", str(tmp_path / "s"),
            "--listen", "127.0.0.1:0", *tokens_flag(tmp_path)]
    half = cli(*base, "--ca-cert", str(tmp_path / "ca.pem"))
    assert half.returncode == 2
    assert "needs --ca-cert, --ca-key and --ca-bundle together (missing: --ca-key, --ca-bundle)" in half.stderr
    lifetime = cli(*base, "--cert-lifetime", "24")
    assert lifetime.returncode == 2 and "'24' is not a duration" in lifetime.stderr
    domain = cli(*base, "--trust-domain", "Cluster/Local")
    assert domain.returncode == 2 and "'Cluster/Local' is not a trust domain" in domain.stderr
    (tmp_path / "junk.pem").write_text("junk")
    extra = cli(*base, "--extra-trust-bundle", str(tmp_path / "junk.pem"))
    assert extra.returncode == 1
    assert f"--extra-trust-bundle {tmp_path / 'junk.pem'}: not a PEM file of certificates" in extra.stderr


def test_a_ca_directory_open_to_others_stops_the_start_with_the_chmod_to_run(cli, tmp_path):
    (tmp_path / "c.yaml").write_text(GOOD)
    ca = tmp_path / "s" / "ca"
    ca.mkdir(parents=True)
    ca.chmod(0o755)
    result = cli("controller", "--file", str(tmp_path / "c.yaml"), "--state-dir", str(tmp_path / "s"),
                 "--listen", "127.0.0.1:0", *tokens_flag(tmp_path))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"Error: CA directory {ca} has mode 0755: group or others may use it; "
        f"allow only its owner: chmod 700 {ca}")
    assert list(ca.iterdir()) == []


def test_node_auth_options_are_checked_before_anything_starts(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    (tmp_path / "c.yaml").write_text(GOOD)
    base = ["controller", "--file", str(tmp_path / "c.yaml"), "--state-dir", str(tmp_path / "s"),
            "--listen", "127.0.0.1:0"]
    without = cli(*base)
    assert without.returncode == 2 and "give --node-tokens FILE" in without.stderr
    both = cli(*base, "--node-auth", "tokenreview", *tokens_flag(tmp_path))
    assert both.returncode == 2 and "--node-tokens is for --node-auth tokens" in both.stderr
    nowhere = cli(*base, "--node-auth", "tokenreview")
    assert nowhere.returncode == 2 and "POD_NAMESPACE is not set" in nowhere.stderr
    bad = cli(*base, "--node-auth", "tokenreview", "--agent-service-account", "nodemesh-agent")
    assert bad.returncode == 2 and "'nodemesh-agent' is not NAMESPACE/NAME" in bad.stderr
    secret = cli(*base, *tokens_flag(tmp_path), "--ca-secret", "a/b/c")
    assert secret.returncode == 2 and "'a/b/c' is not NAMESPACE/NAME" in secret.stderr
