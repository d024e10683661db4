"""The agent's certificate manager against a real CA: issue, renew at half life, fail closed."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path

import pytest
import uvloop
from cryptography import x509
from eventually import eventually_async

from nodemesh.agent.identity.manager import CertManager
from nodemesh.agent.tls.contexts import NoCertificate
from nodemesh.controller.ca.store import self_signed
from nodemesh.model import Workload

LIFETIME = dt.timedelta(seconds=2)


def workload(name: str) -> Workload:
    return Workload(uid=f"uid-{name}", name=name, namespace="shop", service_account=name, node="node-a",
                    ip="10.10.1.10", meshed=True, identity=f"spiffe://cluster.local/ns/shop/sa/{name}")


class Signer:
    """The controller's signing, in process; ``down`` makes it fail like an absent controller."""

    def __init__(self, state_dir: Path) -> None:
        self.authority = self_signed(state_dir)
        self.down = False
        self.times: dict[str, list[dt.datetime]] = {}  # when each request came, by workload uid

    def __call__(self, uid: str, csr_pem: bytes) -> bytes:
        self.times.setdefault(uid, []).append(dt.datetime.now(dt.timezone.utc))
        if self.down:
            raise ConnectionError("controller unavailable")
        csr = x509.load_pem_x509_csr(csr_pem)
        identity = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
            .get_values_for_type(x509.UniformResourceIdentifier)[0]
        return self.authority.issue_workload(csr.public_key(), identity, LIFETIME).chain_pem


async def certified(signer: Signer, *workloads: Workload) -> CertManager:
    """A manager holding certificates for ``workloads``, once all have one."""
    certs = CertManager(signer)
    certs.update(list(workloads), signer.authority.bundle_pem)
    for w in workloads:
        assert await certs.wait_ready(w.uid, 5)
    return certs


def run(coro) -> None:  # type: ignore[no-untyped-def]
    uvloop.run(asyncio.wait_for(coro, 30))


async def handshake(client: ssl.SSLContext, server: ssl.SSLContext) -> str:
    """A real TLS handshake on loopback; the server's view of the client's certificate."""
    seen: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not seen.done():
            seen.set_result(writer.get_extra_info("ssl_object").version())
        writer.close()

    srv = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=server)
    _, writer = await asyncio.open_connection(*srv.sockets[0].getsockname(), ssl=client, server_hostname="")
    version = await asyncio.wait_for(seen, 5)
    writer.close()
    srv.close()
    return version


def test_issues_then_renews_at_half_life_and_contexts_keep_working(tmp_path: Path) -> None:
    signer = Signer(tmp_path)

    async def main() -> None:
        a, b = workload("a"), workload("b")
        certs = await certified(signer, a, b)
        front = certs.server_context(b.uid)  # what a listener holds for its whole life
        assert await handshake(certs.client_context(a.uid), front) == "TLSv1.3"
        cert = certs.certs[a.uid]
        # half life from the certificate itself (whole seconds, as X.509 keeps them), not from the
        # manager's renew_at, so that a manager that renews too early cannot move the bar too
        first, half_life = cert.serial, cert.not_before + (cert.not_after - cert.not_before) / 2
        await eventually_async(lambda: certs.certs[a.uid].serial != first, timeout=LIFETIME.total_seconds(),
                               what="a renewal before the first certificate expires")
        # The first renewal was asked for at half life, not before. (Not "only once": X.509 keeps
        # whole seconds, so a 2 s certificate's own half life may be a few ms after its issue,
        # and a second renewal may legitimately follow at once.)
        renewal = signer.times[a.uid][1]
        early = dt.timedelta(milliseconds=50)  # a timer may fire a hair early
        assert renewal > half_life - early, f"renewal asked at {renewal}, before {half_life}"
        assert await handshake(certs.client_context(a.uid), front) == "TLSv1.3"
        status = {s["identity"]: s for s in certs.status()}
        assert status[a.identity]["valid"] and status[a.identity]["renew_in_seconds"] is not None
        certs.close()

    run(main())


def test_fails_closed_after_expiry_and_recovers(tmp_path: Path) -> None:
    signer = Signer(tmp_path)

    async def main() -> None:
        a = workload("a")
        certs = await certified(signer, a)
        signer.down = True
        await eventually_async(lambda: not certs.has_valid(a.uid), timeout=2 * LIFETIME.total_seconds(),
                               what="the certificate to expire unrenewed")
        with pytest.raises(NoCertificate, match="expired at .*controller unavailable"):
            certs.client_context(a.uid)
        assert not certs.status()[0]["valid"]
        signer.down = False
        await eventually_async(lambda: certs.has_valid(a.uid), timeout=8, what="a certificate once the CA is back")
        assert certs.client_context(a.uid)
        certs.close()

    run(main())


def test_workloads_that_leave_lose_their_certificates(tmp_path: Path) -> None:
    signer = Signer(tmp_path)

    async def main() -> None:
        a = workload("a")
        certs = await certified(signer, a)
        certs.update([], signer.authority.bundle_pem)
        with pytest.raises(NoCertificate, match="not enrolled"):
            certs.client_context(a.uid)
        certs.close()

    run(main())
