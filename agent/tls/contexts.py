"""The one place that builds the agent's SSL contexts for HBONE.

Both ends present a workload certificate (an X.509 SVID) and verify the other's chain against
the mesh's trust bundle; TLS 1.3 only, ALPN ``h2``. Host names play no part: a peer is who its
SPIFFE id says (``nodemesh.agent.tls.peer``), as in ztunnel.

Session tickets are turned off on servers: asyncio (and uvloop) give no way to offer a saved
session when connecting, so tickets would be made, encrypted and sent for nothing. Pooling is
what saves handshakes here.

Keys never touch a disk: OpenSSL's ``load_cert_chain`` reads only files, so the chain and key
are written to anonymous memory files (``memfd_create``) and read back through
``/proc/self/fd/N``; nothing has a name in any file system, and closing the descriptor frees
the memory.
"""

from __future__ import annotations

import os
import ssl
from contextlib import ExitStack, contextmanager
from typing import Iterator, Protocol

ALPN = "h2"


class NoCertificate(Exception):
    """A workload has no usable certificate (not issued yet, expired): its traffic fails closed."""


class Identities(Protocol):
    """Where the proxy gets TLS contexts for this node's workloads (the agent's certificate manager).

    They raise ``NoCertificate`` (or a subclass) with a reason meant for users.
    """

    def client_context(self, uid: str) -> ssl.SSLContext: ...
    def server_context(self, uid: str) -> ssl.SSLContext: ...

    def require_valid(self, uid: str) -> None:
        """Raise ``NoCertificate`` unless the workload holds a certificate valid now."""
        ...


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
    with ExitStack() as files:
        chain_path, key_path = (files.enter_context(_memory_file(name, data))
                                for name, data in (("chain", chain), ("key", key)))
        ctx.load_cert_chain(chain_path, key_path)


@contextmanager
def _memory_file(name: str, data: bytes) -> Iterator[str]:
    """A path to ``data`` held in an anonymous memory file, valid until the block ends."""
    fd = os.memfd_create(f"nodemesh-{name}", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)
