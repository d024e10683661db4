"""TLS for HBONE: the one place that builds the agent's SSL contexts, and reads a peer's identity.

Both ends present a workload certificate (an X.509 SVID) and verify the other's chain against
the mesh's trust bundle; TLS 1.3 only, ALPN ``h2``. Host names play no part: a peer is who its
SPIFFE id says, and the client compares that id with the destination workload's expected
identity after the handshake (``peer_identity``), as ztunnel does.

Session tickets are turned off on servers: asyncio (and uvloop) give no way to offer a saved
session when connecting, so tickets would be made, encrypted and sent for nothing. Pooling is
what saves handshakes here.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import tempfile
from typing import Protocol

from nodemesh.identity import Identity, IdentityError, identity_of

ALPN = "h2"


class NoCertificate(Exception):
    """A workload has no usable certificate (not issued yet, expired): its traffic fails closed."""


class Identities(Protocol):
    """Where the proxy gets TLS contexts for this node's workloads (the agent's certificate manager).

    Both raise ``NoCertificate`` (or a subclass) with a reason meant for users.
    """

    def client_context(self, uid: str) -> ssl.SSLContext: ...
    def server_context(self, uid: str) -> ssl.SSLContext: ...


def client_context(cert_chain_pem: bytes, key_pem: bytes, trust_bundle_pem: bytes) -> ssl.SSLContext:
    """Presents ``cert_chain_pem`` and verifies the server's chain; the caller checks its identity."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # peers are named by SPIFFE id, checked after the handshake
    _configure(ctx, cert_chain_pem, key_pem, trust_bundle_pem)
    return ctx


def server_context(cert_chain_pem: bytes, key_pem: bytes, trust_bundle_pem: bytes) -> ssl.SSLContext:
    """Presents ``cert_chain_pem`` and requires a client certificate that chains to the bundle."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.num_tickets = 0  # no resumption on the client side: see the module's docstring
    _configure(ctx, cert_chain_pem, key_pem, trust_bundle_pem)
    return ctx


def _configure(ctx: ssl.SSLContext, chain: bytes, key: bytes, bundle: bytes) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols([ALPN])
    ctx.load_verify_locations(cadata=bundle.decode())
    # load_cert_chain reads only files: write them where no one else can read, for an instant.
    with tempfile.TemporaryDirectory(prefix="nodemesh-tls-") as tmp:  # mode 0700
        chain_path, key_path = os.path.join(tmp, "chain.pem"), os.path.join(tmp, "key.pem")
        for path, data in ((chain_path, chain), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx.load_cert_chain(chain_path, key_path)


def peer_identity(transport: asyncio.BaseTransport) -> Identity:
    """The SPIFFE id of the peer of a TLS transport whose handshake completed (chain verified).

    Raises ``IdentityError`` if the peer spoke another protocol than h2 or showed no workload
    certificate.
    """
    sslobj: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
    if sslobj is None:
        raise IdentityError("not a TLS connection")
    if sslobj.selected_alpn_protocol() != ALPN:
        raise IdentityError(f"the peer did not negotiate ALPN {ALPN!r}")
    der = sslobj.getpeercert(binary_form=True)
    if not der:
        raise IdentityError("the peer presented no certificate")
    return identity_of(der)


def describe(transport: asyncio.BaseTransport) -> tuple[str, str]:
    """(TLS version, cipher suite) of a TLS transport, for ``nodemesh tunnels``."""
    sslobj: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
    if sslobj is None:
        return "", ""
    cipher = sslobj.cipher()
    return sslobj.version() or "", cipher[0] if cipher else ""
