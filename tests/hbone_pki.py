"""A small CA for the HBONE tests: workload certificates (SPIFFE URI SAN) and the contexts built
from them by the one function the agent uses (``nodemesh.agent.tls.contexts``)."""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass, field

from cryptography import x509

from nodemesh.agent.tls import contexts
from nodemesh.agent.tls.contexts import NoCertificate
from nodemesh.controller.ca.authority import Authority, create_root, pem
from nodemesh.identity import key_pem, new_key

LIFETIME = dt.timedelta(hours=1)  # of the workload certificates issued


class TestCa:
    """A root made as the controller makes its own, issuing as the controller issues."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self) -> None:
        key = new_key()
        root = create_root(key)
        self.authority = Authority(cert=root, key=key, intermediates=(), roots=(root,))
        self.bundle = pem(root)

    def issue(self, identity: str | None) -> tuple[bytes, bytes]:
        """(chain PEM, key PEM) for ``identity`` (a SPIFFE id); None: a certificate that names a
        host instead (valid under this root, but no workload's)."""
        key = new_key()
        if identity is None:
            issued = self.authority.issue_server(key.public_key(), ["127.0.0.1"])
        else:
            issued = self.authority.issue_workload(key.public_key(), identity, LIFETIME)
        return issued.chain_pem, key_pem(key)

    def sign(self, uid: str, csr_pem: bytes, lifetime: dt.timedelta = LIFETIME) -> bytes:
        """What the controller answers the agent's certificate manager (its ``Sign``): a chain
        for the identity the request names."""
        csr = x509.load_pem_x509_csr(csr_pem)
        [identity] = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
            .get_values_for_type(x509.UniformResourceIdentifier)
        return self.authority.issue_workload(csr.public_key(), identity, lifetime).chain_pem

    def client_context(self, identity: str | None) -> ssl.SSLContext:
        return contexts.client_context(*self.issue(identity), self.bundle)

    def server_context(self, identity: str | None) -> ssl.SSLContext:
        return contexts.server_context(*self.issue(identity), self.bundle)


def spiffe(namespace: str, account: str = "default") -> str:
    return f"spiffe://cluster.local/ns/{namespace}/sa/{account}"


@dataclass
class Identities:
    """What the agent's certificate manager offers the proxy, for workloads of one test CA."""

    ca: TestCa
    by_uid: dict[str, str] = field(default_factory=dict)  # uid -> identity
    clients: dict[str, ssl.SSLContext] = field(default_factory=dict)

    def require_valid(self, uid: str) -> None:
        if uid not in self.by_uid:
            raise NoCertificate(f"no certificate for workload {uid}")

    def client_context(self, uid: str) -> ssl.SSLContext:
        self.require_valid(uid)
        if uid not in self.clients:
            self.clients[uid] = self.ca.client_context(self.by_uid[uid])
        return self.clients[uid]

    def server_context(self, uid: str) -> ssl.SSLContext:
        self.require_valid(uid)
        return self.ca.server_context(self.by_uid[uid])

    def renew(self, uid: str) -> None:
        """A new certificate for ``uid``: new connections must use it."""
        self.clients.pop(uid, None)
