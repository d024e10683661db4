"""The agent's one way to reach the controller: TLS to a known CA, and the node's token on every call.

Both the config subscription and certificate signing use it, so that neither can be opened
without authentication by mistake. The controller's certificate is checked against
``--controller-ca`` (the controller's CA root, or several roots while one rotates) plus the
roots of the last trust bundle the controller sent, and its name against the address dialled,
as any TLS client does.

Why the bundle too: in a root rotation the controller's own certificate moves to the new root.
Agents learnt that root from the bundle, over a connection they had verified, so they follow
without a restart (which would cut their pods' traffic).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import grpc

from nodemesh.errors import UserError
from nodemesh.private import NotPrivate, check_private

log = logging.getLogger(__name__)

# A controller that vanishes without closing its connections is noticed within ~15 s.
KEEPALIVE = [("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000)]
NODE_HEADER = "x-nodemesh-node"  # the node this agent speaks for (the controller checks it)


class _CallCredentials(grpc.AuthMetadataPlugin):
    """``authorization: Bearer <token>`` and the node's name on every call of a channel."""

    def __init__(self, token: str, node: str) -> None:
        self._metadata = (("authorization", f"Bearer {token}"), (NODE_HEADER, node))

    def __call__(self, context: grpc.AuthMetadataContext,
                 callback: grpc.AuthMetadataPluginCallback) -> None:
        callback(self._metadata, None)


def secure_channel(target: str, root_pem: bytes, token: str, node: str = "",
                   server_name: str | None = None) -> grpc.Channel:
    """A synchronous channel to ``target`` (HOST:PORT) sending the token and ``node`` on every
    call, verifying the controller's certificate for ``server_name`` when given (dialling an IP
    address that the certificate does not name, as a Service's ClusterIP) instead of ``target``'s host."""
    credentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(root_certificates=root_pem),
        grpc.metadata_call_credentials(_CallCredentials(token, node)))
    options = [*KEEPALIVE, *([("grpc.ssl_target_name_override", server_name)] if server_name else [])]
    return grpc.secure_channel(target, credentials, options=options)


class ControllerAccess:
    """Where the controller is and what this agent trusts and presents to reach it.

    gRPC fixes a channel's roots and credentials when it is made, so each user makes a channel
    when it connects (a config stream, a signing call): a bundle learnt meanwhile is then
    trusted, and the token is the current one (``token`` is asked at each channel: the kubelet
    rotates projected tokens in place).
    """

    def __init__(self, target: str, root_pem: bytes, token: Callable[[], str], node: str = "",
                 server_name: str | None = None) -> None:
        self.target = target
        self._root_pem = root_pem
        self._token = token
        self.node = node
        self.server_name = server_name
        self._trust_bundle = b""

    def trust(self, trust_bundle: bytes) -> None:
        """Also trust these roots (the controller's current bundle) from the next channel on."""
        self._trust_bundle = trust_bundle

    def channel(self) -> grpc.Channel:
        """A new channel (close it when done: ``with access.channel() as channel``)."""
        return secure_channel(self.target, self._root_pem + b"\n" + self._trust_bundle, self._token(),
                              self.node, self.server_name)


class CredentialsError(UserError):
    """The agent's controller credentials cannot be used; the message names the file."""


def _read_token(token_file: Path) -> str:
    """The token in ``token_file``; OSError, NotPrivate, or CredentialsError when empty."""
    try:
        token = token_file.read_text().strip()
    except UnicodeDecodeError:
        raise CredentialsError(f"--token-file {token_file}: not text; it must hold this node's token") from None
    check_private(token_file, "--token-file")
    if not token:
        raise CredentialsError(f"--token-file {token_file}: empty; it must hold this node's token")
    return token


class TokenFile:
    """The agent's token as its file holds it now, read again at every call (each new channel):
    a projected service-account token is replaced by the kubelet before it expires. A read that
    fails keeps the token read before (logged): the controller, not a missing file, decides."""

    def __init__(self, path: Path, token: str) -> None:
        self.path = path
        self._token = token

    def __call__(self) -> str:
        try:
            self._token = _read_token(self.path)
        except (OSError, NotPrivate, CredentialsError) as exc:
            log.warning("cannot read --token-file %s again (%s); using the token read before",
                        self.path, getattr(exc, "strerror", None) or exc)
        return self._token


def read_credentials(controller_ca: Path, token_file: Path) -> tuple[bytes, TokenFile]:
    """(root PEM, the token's file) from the agent's --controller-ca and --token-file, checked
    now: a bad file is a clear error at start rather than a TLS or auth failure on every
    reconnect. A token file that group or others may read is refused (as ssh refuses such a
    key; 0400 and 0600 are fine): the token is this node's identity to the CA."""
    from cryptography import x509

    try:
        root_pem = controller_ca.read_bytes()
        try:
            x509.load_pem_x509_certificates(root_pem)
        except ValueError:  # the PEM parser's alone: a token file's errors are told below
            raise CredentialsError(f"--controller-ca {controller_ca}: no PEM certificate in it; give "
                                   "the controller's CA root (<controller state dir>/ca/root.pem, or "
                                   "ConfigMap nodemesh-ca-root in a cluster)") from None
        token = _read_token(token_file)
    except OSError as exc:
        raise CredentialsError(f"{exc.filename}: cannot read: {exc.strerror}") from None
    except NotPrivate as exc:
        raise CredentialsError(str(exc)) from None
    return root_pem, TokenFile(token_file, token)
