"""The certificates of this node's workloads: requested, renewed, and served as TLS contexts.

For each meshed pod on the node the agent makes a key here (it never leaves the agent), sends a
CSR to the controller and keeps the signed chain. Renewal starts at half life and runs in the
background: the current certificate keeps serving until a new one arrives. If the controller
stays away until a certificate expires, that workload fails closed: new connections are
refused with a reason that says so, rather than presenting an expired certificate.

TLS contexts are built by ``nodemesh.agent.tls.contexts`` (the one place that knows how).
Listeners keep one server context for their life; it hands each handshake to the workload's
current context (an SNI callback), so a renewed certificate or a changed trust bundle takes
effect without reopening listeners.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
from dataclasses import dataclass, field
from typing import Callable

from cryptography import x509

from nodemesh.agent.supervision import Backoff, Supervisor
from nodemesh.agent.tls import contexts
from nodemesh.agent.tls.contexts import NoCertificate
from nodemesh.identity import Identity, certificate_request, key_pem, new_key
from nodemesh.model import Workload

log = logging.getLogger(__name__)

# Signs a CSR for a workload uid; blocking (gRPC), run on a worker thread. Returns chain PEM.
Sign = Callable[[str, bytes], bytes]

RETRY_MIN = 0.5  # the first retry of a refused or unanswered request, doubling up to RETRY_MAX
RETRY_MAX = 5.0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class WorkloadCert:
    workload: Workload
    key_pem: bytes = b""
    chain_pem: bytes = b""
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    serial: int = 0
    client: ssl.SSLContext | None = None
    server: ssl.SSLContext | None = None
    last_error: str = ""
    front: ssl.SSLContext | None = field(default=None, repr=False)  # what listeners hold

    @property
    def renew_at(self) -> dt.datetime | None:
        if self.not_before is None or self.not_after is None:
            return None
        return self.not_before + (self.not_after - self.not_before) / 2

    def valid(self, now: dt.datetime) -> bool:
        return self.not_after is not None and self.not_before is not None and self.not_before <= now < self.not_after


def _front_context(current: Callable[[], ssl.SSLContext | None]) -> ssl.SSLContext:
    """A server context that hands every handshake to ``current()`` (or refuses it: None).

    OpenSSL's servername callback runs on every handshake, with or without SNI, and switching
    the connection's context there switches certificate, key and the store client
    certificates are verified against.
    """
    front = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    front.minimum_version = ssl.TLSVersion.TLSv1_3
    front.verify_mode = ssl.CERT_REQUIRED
    front.set_alpn_protocols(["h2"])
    front.num_tickets = 0  # tickets come from this context, and nothing resumes sessions

    def switch(conn: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> int | None:
        ctx = current()
        if ctx is None:
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
        conn.context = ctx
        return None

    front.sni_callback = switch  # type: ignore[assignment]
    return front


class CertManager:
    def __init__(self, sign: Sign, supervisor: Supervisor | None = None) -> None:
        """``supervisor`` runs each workload's upkeep (a crash is logged, retried and shown by
        readiness); by default one of its own."""
        self._sign = sign
        self._supervisor = supervisor or Supervisor()
        self.certs: dict[str, WorkloadCert] = {}  # by workload uid
        self.trust_bundle = b""
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._ready: dict[str, asyncio.Event] = {}
        # Inbound TLS handshakes refused for want of a valid certificate of the listener's
        # workload: the one inbound handshake failure the agent sees (asyncio's TLS layer
        # drops the others before any of its code runs)
        self.refused_handshakes = 0

    # -- what the proxy asks ----------------------------------------------------------------
    def client_context(self, uid: str) -> ssl.SSLContext:
        cert = self._valid(uid)
        assert cert.client is not None
        return cert.client

    def server_context(self, uid: str) -> ssl.SSLContext:
        """A context for a listener's whole life: each handshake uses the current certificate."""
        cert = self.certs.get(uid)
        if cert is None:
            raise NoCertificate(f"no certificate for workload {uid}: it is not enrolled here")
        if cert.front is None:
            cert.front = _front_context(lambda: self._handshake_context(uid))
        return cert.front

    def require_valid(self, uid: str) -> None:
        """The same-node path's check: an identity serves only while its certificate is valid,
        as it does across nodes (where an expired one fails the TLS handshake)."""
        self._valid(uid)

    def _handshake_context(self, uid: str) -> ssl.SSLContext | None:
        try:
            return self._valid(uid).server
        except NoCertificate as e:
            self.refused_handshakes += 1
            log.warning("refusing a TLS handshake: %s", e)
            return None

    def _valid(self, uid: str) -> WorkloadCert:
        cert = self.certs.get(uid)
        if cert is None:
            raise NoCertificate(f"no certificate for workload {uid}: it is not enrolled here")
        if not cert.valid(_now()):
            if cert.not_after is None:
                raise NoCertificate(
                    f"no certificate for {cert.workload.identity} yet ({cert.last_error or 'requested'})")
            raise NoCertificate(
                f"the certificate of {cert.workload.identity} expired at {cert.not_after:%Y-%m-%d %H:%M:%S}Z "
                f"and could not be renewed ({cert.last_error}); is the controller reachable?")
        return cert

    async def wait_ready(self, uid: str, timeout: float) -> bool:
        event = self._ready.get(uid)
        if event is None:
            return False
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            return False
        return True

    def has_valid(self, uid: str) -> bool:
        cert = self.certs.get(uid)
        return cert is not None and cert.valid(_now())

    # -- keeping them ----------------------------------------------------------------------
    def update(self, workloads: list[Workload], trust_bundle: bytes) -> None:
        """Hold certificates for exactly ``workloads`` (this node's meshed pods)."""
        if trust_bundle != self.trust_bundle:
            self.trust_bundle = trust_bundle
            for cert in self.certs.values():
                if cert.chain_pem:
                    self._install(cert, cert.key_pem, cert.chain_pem)
        wanted = {w.uid: w for w in workloads}
        for uid in [u for u in self.certs if u not in wanted]:
            self._supervisor.cancel(self._tasks.pop(uid))
            del self.certs[uid]
            self._ready.pop(uid, None)
        for uid, w in wanted.items():
            cert = self.certs.get(uid)
            if cert is not None and cert.workload.identity == w.identity:
                cert.workload = w
                continue
            if cert is not None:  # the identity changed (service account): start over
                self._supervisor.cancel(self._tasks.pop(uid))
            self.certs[uid] = WorkloadCert(w)
            self._ready[uid] = asyncio.Event()
            self._tasks[uid] = self._supervisor.spawn(f"certificate of {w.ref} ({uid})",
                                                      lambda uid=uid: self._keep(uid))

    def close(self) -> None:
        for task in self._tasks.values():
            self._supervisor.cancel(task)
        self._tasks.clear()

    async def _keep(self, uid: str) -> None:
        """Request, then renew at half life, forever; retry with backoff when refused or away."""
        loop = asyncio.get_running_loop()
        retry = Backoff(RETRY_MIN, RETRY_MAX)
        while True:
            cert = self.certs[uid]
            renew_at = cert.renew_at
            if renew_at is not None:
                await asyncio.sleep(max(0.0, (renew_at - _now()).total_seconds()))
            if not self.trust_bundle:
                await asyncio.sleep(RETRY_MIN)  # the controller's config carries the bundle
                continue
            identity = cert.workload.identity
            try:
                key = new_key()
                request = certificate_request(key, Identity.parse(identity))
                chain = await loop.run_in_executor(None, self._sign, uid, request)
                self._install(cert, key_pem(key), chain)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                cert.last_error = str(e)
                delay = retry.next()
                log.warning("certificate for %s not issued: %s; retrying in %.1fs", identity, e, delay)
                await asyncio.sleep(delay)
                continue
            retry.reset()
            log.info("certificate for %s: serial %x, valid until %s", identity, cert.serial,
                     cert.not_after.isoformat() if cert.not_after else "?")
            self._ready[uid].set()

    def _install(self, cert: WorkloadCert, key: bytes, chain: bytes) -> None:
        leaf = x509.load_pem_x509_certificate(chain)
        cert.client = contexts.client_context(chain, key, self.trust_bundle)
        cert.server = contexts.server_context(chain, key, self.trust_bundle)
        cert.key_pem, cert.chain_pem = key, chain
        cert.not_before, cert.not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
        cert.serial = leaf.serial_number
        cert.last_error = ""

    def status(self) -> list[dict[str, object]]:
        now = _now()
        out = []
        for cert in self.certs.values():
            renew_at = cert.renew_at
            out.append({
                "workload": cert.workload.ref,
                "identity": cert.workload.identity,
                "serial": f"{cert.serial:x}" if cert.serial else "",
                "not_before": cert.not_before.isoformat() if cert.not_before else None,
                "not_after": cert.not_after.isoformat() if cert.not_after else None,
                "renew_in_seconds": round((renew_at - now).total_seconds(), 1) if renew_at else None,
                "valid": cert.valid(now),
                "last_error": cert.last_error,
            })
        return out
