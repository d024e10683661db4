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

from pathlib import Path

import grpc

from nodemesh.errors import UserError
from nodemesh.private import NotPrivate, check_private

# A controller that vanishes without closing its connections is noticed within ~15 s.
KEEPALIVE = [("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000)]


def secure_channel(target: str, root_pem: bytes, token: str) -> grpc.Channel:
    """A synchronous channel to ``target`` (HOST:PORT) sending ``authorization: Bearer <token>``."""
    credentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(root_certificates=root_pem),
        grpc.access_token_call_credentials(token))
    return grpc.secure_channel(target, credentials, options=KEEPALIVE)


class ControllerAccess:
    """Where the controller is and what this agent trusts and presents to reach it.

    gRPC fixes a channel's roots when it is made, so each user makes a channel when it connects
    (a config stream, a signing call): a bundle learnt meanwhile is then trusted.
    """

    def __init__(self, target: str, root_pem: bytes, token: str) -> None:
        self.target = target
        self._root_pem = root_pem
        self._token = token
        self._trust_bundle = b""

    def trust(self, trust_bundle: bytes) -> None:
        """Also trust these roots (the controller's current bundle) from the next channel on."""
        self._trust_bundle = trust_bundle

    def channel(self) -> grpc.Channel:
        """A new channel (close it when done: ``with access.channel() as channel``)."""
        return secure_channel(self.target, self._root_pem + b"\n" + self._trust_bundle, self._token)


class CredentialsError(UserError):
    """The agent's controller credentials cannot be used; the message names the file."""


def read_credentials(controller_ca: Path, token_file: Path) -> tuple[bytes, str]:
    """(root PEM, token) from the agent's --controller-ca and --token-file, checked now: a bad
    file is a clear error at start rather than a TLS or auth failure on every reconnect. A token
    file that others may read is refused (as ssh refuses such a key): the token is this node's
    identity to the CA."""
    from cryptography import x509

    try:
        root_pem = controller_ca.read_bytes()
        token = token_file.read_text().strip()
        check_private(token_file, "--token-file")
    except OSError as exc:
        raise CredentialsError(f"{exc.filename}: cannot read: {exc.strerror}") from None
    except NotPrivate as exc:
        raise CredentialsError(str(exc)) from None
    try:
        x509.load_pem_x509_certificates(root_pem)
    except ValueError:
        raise CredentialsError(f"--controller-ca {controller_ca}: no PEM certificate in it; give "
                               "the controller's CA root (<controller state dir>/ca/root.pem)") from None
    if not token:
        raise CredentialsError(f"--token-file {token_file}: empty; it must hold this node's join token")
    return root_pem, token
