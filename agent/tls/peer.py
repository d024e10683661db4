"""Who is at the other end of a completed TLS handshake: its SPIFFE id, TLS version and suite.

The chain was verified by OpenSSL against the trust bundle; what is left to the agent is to
read the one SPIFFE URI off the peer's certificate and to refuse a peer of another trust
domain (a bundle may hold other meshes' roots during a federation or a migration: their
workloads are not ours, whatever their namespace and account are called).
"""

from __future__ import annotations

import asyncio
import ssl

from nodemesh.agent.tls.contexts import ALPN
from nodemesh.identity import Identity, IdentityError, identity_of


def peer_identity(transport: asyncio.BaseTransport, trust_domain: str) -> Identity:
    """The SPIFFE id of the peer of a TLS transport whose handshake completed (chain verified).

    Raises ``IdentityError`` if the peer spoke another protocol than h2, showed no workload
    certificate, or belongs to another trust domain than ``trust_domain``.
    """
    sslobj: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
    if sslobj is None:
        raise IdentityError("not a TLS connection")
    if sslobj.selected_alpn_protocol() != ALPN:
        raise IdentityError(f"the peer did not negotiate ALPN {ALPN!r}")
    der = sslobj.getpeercert(binary_form=True)
    if not der:
        raise IdentityError("the peer presented no certificate")
    identity = identity_of(der)
    if identity.trust_domain != trust_domain:
        raise IdentityError(f"the peer {identity} is not in trust domain {trust_domain!r}")
    return identity


def describe(transport: asyncio.BaseTransport) -> tuple[str, str]:
    """(TLS version, cipher suite) of a TLS transport, for ``nodemesh tunnels``."""
    sslobj: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
    if sslobj is None:
        return "", ""
    cipher = sslobj.cipher()
    return sslobj.version() or "", cipher[0] if cipher else ""
