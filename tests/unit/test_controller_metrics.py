"""The controller's metrics (docs/telemetry.md, "Controller"): what the stream and the CA count,
the names and labels the collector gives them, and ``/metrics`` of a real controller process.

Most tests drive the servicers directly, with a stand-in for gRPC's call context: no network,
nothing to wait for but the servicers' own tasks. The last ones run ``nodemesh controller``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import AsyncIterator

import grpc
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nodemesh.api import mesh_pb2 as pb
from nodemesh.api.mesh_pb2_grpc import CertificateAuthorityStub, MeshConfigStub
from nodemesh.controller.ca.service import CaServicer
from nodemesh.controller.ca.signing import Refusal
from nodemesh.controller.ca.stats import REFUSAL_REASONS, CaCounts
from nodemesh.controller.ca.store import root_path, self_signed
from nodemesh.controller.nodeauth.auth import JoinTokens
from nodemesh.controller.nodeauth.tokens import NodeTokens
from nodemesh.controller.stream.feed import ModelFeed, Versioned
from nodemesh.controller.stream.service import ConfigServicer
from nodemesh.controller.stream.session import AckResult, AgentSession
from nodemesh.controller.stream.stats import StreamStats
from nodemesh.controller.telemetry.collector import controller_registry
from nodemesh.identity import Identity, certificate_request, new_key
from nodemesh.model import MeshModel
from nodemesh.tools.sim.cluster import nodemesh_argv

from controller_access import TOKENS, auth, write_node_tokens
from eventually import eventually, eventually_async
from shop import CLUSTER, DB, LEGACY, MODEL, WEB

PROMTOOL = shutil.which("promtool")


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code


class FakeContext:
    """What the servicers use of a grpc.aio call context."""

    def __init__(self, token: str | None) -> None:
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def peer(self) -> str:
        return "ipv4:192.0.2.1:40000"

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


def csr(identity: str) -> bytes:
    return certificate_request(new_key(), Identity.parse(identity))


def tokens(tmp_path: Path) -> JoinTokens:
    return JoinTokens(NodeTokens(write_node_tokens(tmp_path / "tokens.json")))


def hello(node: str) -> pb.AgentMessage:
    return pb.AgentMessage(hello=pb.AgentHello(node=node))


def ack(version: int, accepted: bool = True) -> pb.AgentMessage:
    return pb.AgentMessage(ack=pb.Ack(version=version, accepted=accepted,
                                      reason="" if accepted else "cannot apply"))


async def sent(queue: asyncio.Queue[pb.AgentMessage]) -> AsyncIterator[pb.AgentMessage]:
    """An agent's side of a stream: what the test puts in ``queue``."""
    while True:
        yield await queue.get()


def series(text: str) -> dict[str, float]:
    """The controller's own series in Prometheus text, ``name{label=value}`` -> value; of the
    histogram only its count (the rest depends on timing)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("nodemesh_controller_") and not sample.name.endswith(("_bucket", "_sum")):
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def expected(connected: int, version: int, snapshots: int, deltas: int, pushes_answered: int,
             accepted: int, rejected: int, signed: int, **refusals: int) -> dict[str, float]:
    return {
        "nodemesh_controller_connected_agents": connected,
        "nodemesh_controller_config_version": version,
        "nodemesh_controller_pushes_total{type=snapshot}": snapshots,
        "nodemesh_controller_pushes_total{type=delta}": deltas,
        "nodemesh_controller_push_duration_seconds_count": pushes_answered,
        "nodemesh_controller_acks_total{result=accepted}": accepted,
        "nodemesh_controller_acks_total{result=rejected}": rejected,
        "nodemesh_controller_certificates_signed_total": signed,
        **{f"nodemesh_controller_certificate_refusals_total{{reason={reason}}}": refusals.get(reason, 0)
           for reason in REFUSAL_REASONS},
    }


def assert_promtool_accepts(text: str) -> None:
    """``promtool check metrics``: the exposition and its names follow Prometheus' rules."""
    if PROMTOOL is None:
        return  # Debian's prometheus package brings it (scripts/setup.sh)
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                            text=True, timeout=30)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_ca_counts_what_it_signs_and_each_refusal_by_its_reason(tmp_path):
    ca = CaServicer(lambda: MODEL, self_signed(tmp_path), tokens(tmp_path), dt.timedelta(hours=1))
    n1 = TOKENS["n1"]
    refused = [  # (token, workload uid, CSR): one of each reason, in REFUSAL_REASONS' order
        (None, WEB.uid, csr(WEB.identity)),
        ("guessed", WEB.uid, csr(WEB.identity)),
        (n1, "u-gone", csr(WEB.identity)),
        (n1, DB.uid, csr(DB.identity)),
        (n1, LEGACY.uid, csr(LEGACY.identity)),
        (n1, WEB.uid, csr(DB.identity)),
        (n1, WEB.uid, b"junk"),
    ]

    async def calls() -> list[grpc.StatusCode]:
        await ca.SignWorkload(pb.SignRequest(workload_uid=WEB.uid, csr_pem=csr(WEB.identity)),
                              FakeContext(n1))
        codes = []
        for token, uid, csr_pem in refused:
            with pytest.raises(Aborted) as info:
                await ca.SignWorkload(pb.SignRequest(workload_uid=uid, csr_pem=csr_pem), FakeContext(token))
            codes.append(info.value.code)
        return codes

    codes = asyncio.run(calls())
    kube_only = ["no_node", "wrong_audience", "wrong_service_account", "token_of_other_node",
                 "review_failed"]  # TokenReview's refusals (test_controller_tokenreview.py)
    assert ca.stats.read() == CaCounts(signed=1, refusals={
        reason: 0 if reason in kube_only else 1 for reason in REFUSAL_REASONS})
    assert list(REFUSAL_REASONS) == ["no_token", "bad_token", *kube_only, "unknown_workload",
                                     "wrong_node", "not_meshed", "wrong_identity", "bad_csr"]
    status = grpc.StatusCode
    assert codes == [status.UNAUTHENTICATED] * 2 + [status.PERMISSION_DENIED] * 4 + [status.INVALID_ARGUMENT]


def test_the_stream_counts_pushes_by_type_and_answers_by_result_with_their_durations(tmp_path):
    feed = ModelFeed(MODEL)
    config = ConfigServicer(feed, tokens(tmp_path), b"bundle")

    async def scenario() -> None:
        agent: asyncio.Queue[pb.AgentMessage] = asyncio.Queue()
        stream = config.StreamConfig(sent(agent), FakeContext(TOKENS["n1"]))
        agent.put_nowait(hello("n1"))
        assert (await anext(stream)).snapshot
        assert len(config.sessions) == 1
        agent.put_nowait(ack(1))
        await eventually_async(lambda: config.stats.read().acks["accepted"] == 1)
        moved = replace(DB, node="n1")
        feed.publish(MeshModel(workloads={**MODEL.workloads, DB.uid: moved}, services={}, nodes={}))
        assert not (await anext(stream)).snapshot
        agent.put_nowait(ack(7))  # never sent: not an answer
        agent.put_nowait(ack(2, accepted=False))
        await eventually_async(lambda: config.stats.read().acks["rejected"] == 1)
        feed.close()
        assert await anext(stream, None) is None
        assert config.sessions == set()

    asyncio.run(asyncio.wait_for(scenario(), 10))
    counts = config.stats.read()
    assert (counts.pushes, counts.acks) == ({"snapshot": 1, "delta": 1}, {"accepted": 1, "rejected": 1})
    durations = counts.push_seconds
    assert sum(durations.counts) == 2 and durations.counts[-1] == 0  # both answered, within a minute
    assert 0 < durations.sum < 10


class StaleFeed:
    """A feed whose only version was made an hour before the agent connects."""

    def __init__(self, model: MeshModel) -> None:
        self.current = Versioned(1, model, made_at=time.monotonic() - 3600)

    async def next_after(self, version: int) -> Versioned | None:
        await asyncio.Event().wait()


def test_a_push_to_an_agent_that_connects_late_is_timed_from_its_connecting(tmp_path):
    config = ConfigServicer(StaleFeed(MODEL), tokens(tmp_path), b"bundle")

    async def scenario() -> None:
        agent: asyncio.Queue[pb.AgentMessage] = asyncio.Queue()
        stream = config.StreamConfig(sent(agent), FakeContext(TOKENS["n1"]))
        agent.put_nowait(hello("n1"))
        await anext(stream)
        agent.put_nowait(ack(1))
        await eventually_async(lambda: config.stats.read().acks["accepted"] == 1)
        await stream.aclose()

    asyncio.run(asyncio.wait_for(scenario(), 10))
    durations = config.stats.read().push_seconds
    assert sum(durations.counts) == 1 and durations.sum < 60, (durations.counts, durations.sum)


def test_the_collector_names_every_count_as_the_catalog_does(tmp_path):
    feed = ModelFeed(MODEL)
    feed.publish(MeshModel.empty())
    config = ConfigServicer(feed, tokens(tmp_path), b"bundle")
    ca = CaServicer(lambda: MODEL, self_signed(tmp_path), tokens(tmp_path), dt.timedelta(hours=1))
    config.sessions.update({AgentSession("n1", "p1"), AgentSession("n2", "p2")})
    config.stats.count_push(pb.ConfigUpdate(version=1, snapshot=True))
    config.stats.count_push(pb.ConfigUpdate(version=2))
    config.stats.count_answer(AckResult.ACCEPTED, 0.003)
    config.stats.count_answer(AckResult.REJECTED, None)
    ca.stats.count_signed()
    ca.stats.count_refusal(Refusal.WRONG_NODE)

    text = generate_latest(controller_registry(config, ca, lambda: {"TrafficPolicy": 2})).decode()
    assert series(text) == {**expected(connected=2, version=2, snapshots=1, deltas=1, pushes_answered=1,
                                       accepted=1, rejected=1, signed=1, wrong_node=1),
                            "nodemesh_controller_rejected_objects{kind=TrafficPolicy}": 2}
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert {name: kind for name, kind in families.items() if name.startswith("nodemesh_")} == {
        "nodemesh_controller_connected_agents": "gauge",
        "nodemesh_controller_config_version": "gauge",
        "nodemesh_controller_pushes": "counter",
        "nodemesh_controller_push_duration_seconds": "histogram",
        "nodemesh_controller_acks": "counter",
        "nodemesh_controller_certificates_signed": "counter",
        "nodemesh_controller_certificate_refusals": "counter",
        "nodemesh_controller_rejected_objects": "gauge",
    }
    assert 'nodemesh_controller_push_duration_seconds_bucket{le="0.005"} 1.0' in text
    assert 'istio_build{component="controller",tag="' in text and "process_cpu_seconds_total" in text
    assert_promtool_accepts(text)


def test_a_scrape_on_another_thread_sees_a_histogram_whole():
    """The loop counts while the endpoint's thread reads: every read's count and sum agree."""
    stats = StreamStats()
    torn = []

    def count() -> None:
        for _ in range(100_000):
            stats.count_answer(AckResult.ACCEPTED, 1.0)

    counting = threading.Thread(target=count)
    counting.start()
    while counting.is_alive():
        counts = stats.read()
        durations = counts.push_seconds
        if not sum(durations.counts) == durations.sum == counts.acks["accepted"]:
            torn.append((durations.counts, durations.sum, counts.acks))
    counting.join()
    assert torn == []


def controller_argv(tmp_path: Path, metrics_listen: str) -> list[str]:
    (tmp_path / "cluster.yaml").write_text(CLUSTER)
    return ["controller", "--file", str(tmp_path / "cluster.yaml"), "--state-dir", str(tmp_path / "state"),
            "--listen", "127.0.0.1:0", "--metrics-listen", metrics_listen,
            "--node-tokens", str(write_node_tokens(tmp_path / "tokens.json"))]


def logged_port(log: Path, pattern: str) -> int:
    """The port in the first line of the controller's log matching ``pattern``, once it is there."""
    found = eventually(lambda: re.search(pattern, log.read_text()) or False, timeout=20, what=pattern)
    return int(found.group(1))


def test_a_controller_process_serves_its_metrics_over_http(tmp_path):
    """An agent subscribes and acks, gets one certificate and is refused another: /metrics says
    exactly that, in text promtool accepts."""
    log = tmp_path / "controller.log"
    with log.open("w") as out:
        proc = subprocess.Popen(nodemesh_argv(*controller_argv(tmp_path, "127.0.0.1:0")), stderr=out)
    try:
        metrics_port = logged_port(log, r"metrics on http://127\.0\.0\.1:(\d+)/metrics")
        grpc_port = logged_port(log, r"listening on 127\.0\.0\.1:(\d+)")

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as answer:
                assert answer.headers.get_content_type() == "text/plain"
                return answer.read().decode()

        async def agent() -> str:
            root = root_path(tmp_path / "state").read_bytes()
            async with grpc.aio.secure_channel(f"127.0.0.1:{grpc_port}",
                                               grpc.ssl_channel_credentials(root)) as channel:
                stream = MeshConfigStub(channel).StreamConfig(metadata=auth("n1"))
                await stream.write(hello("n1"))
                snapshot = await stream.read()
                await stream.write(ack(snapshot.version))
                workloads = {w.name: w for w in snapshot.workloads}
                ca = CertificateAuthorityStub(channel)
                for name in ("web", "db"):  # db runs on n2: refused
                    request = pb.SignRequest(workload_uid=workloads[name].uid,
                                             csr_pem=csr(workloads[name].identity))
                    try:
                        await ca.SignWorkload(request, metadata=auth("n1"), timeout=5)
                    except grpc.aio.AioRpcError as exc:
                        assert (name, exc.code()) == ("db", grpc.StatusCode.PERMISSION_DENIED)
                await eventually_async(lambda: 'acks_total{result="accepted"} 1.0' in scrape())
                text = scrape()  # with the stream still open
                stream.cancel()
                return text

        text = asyncio.run(asyncio.wait_for(agent(), 20))
        assert series(text) == expected(connected=1, version=1, snapshots=1, deltas=0, pushes_answered=1,
                                        accepted=1, rejected=0, signed=1, wrong_node=1)
        assert 'istio_build{component="controller",tag="' in text and "process_open_fds" in text
        assert_promtool_accepts(text)
        eventually(lambda: series(scrape())["nodemesh_controller_connected_agents"] == 0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_metrics_port_in_use_is_named_with_what_to_do(cli, tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = cli(*controller_argv(tmp_path, f"127.0.0.1:{port}"))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use; another process holds "
        f"port {port}: stop it (`ss -ltnp 'sport = :{port}'` shows which) or choose another port "
        "with --metrics-listen HOST:PORT")
    assert "Traceback" not in result.stderr


def test_a_metrics_address_that_is_not_host_port_is_a_usage_error(cli, tmp_path):
    result = cli(*controller_argv(tmp_path, "15014"))
    assert result.returncode == 2
    assert "Invalid value for '--metrics-listen': '15014' is not HOST:PORT (e.g. 0.0.0.0:15014" in result.stderr
