"""``nodemesh controller --kube`` as users run it: one source of objects, and an API server it
cannot reach is retried with a clear line, not served as an empty mesh."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from nodemesh.tools.sim.cluster import nodemesh_argv
from nodemesh.tools.kube.controlplane import free_port

from controller_access import write_node_tokens
from eventually import eventually
from kubeapi import unreachable_kubeconfig


@pytest.mark.parametrize("args, message", [
    (["--kube", "--file", "c.yaml"], "give one source of objects: --file FILE (local mode) or --kube"),
    ([], "give one source of objects: --file FILE (local mode) or --kube"),
    (["--file", "c.yaml", "--kubeconfig", "k"], "--kubeconfig is for the Kubernetes API server"),
])
def test_one_source_of_objects(cli, tmp_path, args, message):
    tokens = write_node_tokens(tmp_path / "tokens.json")
    result = cli("controller", *args, "--node-tokens", str(tokens), "--state-dir", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_an_unreachable_api_server_is_retried_and_no_agent_is_served(tmp_path):
    listen_port = free_port()
    kubeconfig = unreachable_kubeconfig(tmp_path / "kubeconfig")
    log = tmp_path / "controller.log"
    with log.open("w") as out:  # as in the controller's pod: TokenReview, the CA in a Secret
        process = subprocess.Popen(nodemesh_argv(
            "controller", "--kube", "--kubeconfig", str(kubeconfig), "--state-dir", str(tmp_path / "s"),
            "--listen", f"127.0.0.1:{listen_port}", "--metrics-listen", "127.0.0.1:0"),
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "POD_NAMESPACE": "nodemesh-system"})
    try:
        line = "cannot reach the Kubernetes API at http://127.0.0.1:1"
        eventually(lambda: line in log.read_text(), timeout=30, what="the retry line")
        assert process.poll() is None, log.read_text()  # still trying, not given up
        with socket.socket() as probe:  # and not serving agents a mesh made of nothing
            assert probe.connect_ex(("127.0.0.1", listen_port)) != 0
        assert log.read_text().count(line) == 1  # once for all resources, not per resource or retry
    finally:
        process.terminate()
        process.wait(timeout=10)
