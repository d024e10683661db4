"""The cluster's PKI: one CA, the API server's serving certificate, every component's client
certificate, and the service-account signing key.

Kubernetes authenticates a client certificate as user = CN, groups = O, so the identities here
are what RBAC and the Node authorizer know by name: ``system:masters`` is bound to cluster-admin
by the API server's bootstrap policy, ``system:kube-controller-manager`` and friends have their
own bootstrap roles, and a kubelet must be ``system:node:<node>`` in ``system:nodes`` for the
Node authorizer and NodeRestriction to scope it to its node. Everything is written once under
one folder; keys are 0600 (only the owner may read a secret, ``nodemesh.private``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nodemesh.controller.ca.authority import create_root
from nodemesh.identity import key_pem, new_key

LIFETIME = dt.timedelta(days=365)
BACKDATE = dt.timedelta(minutes=5)  # a little clock skew between processes is no reason to fail

# The API server's names inside the cluster (the `kubernetes` Service) and the sim's address.
SERVICE_IP = "10.96.0.1"
SIM_APISERVER_IP = "172.30.0.254"
APISERVER_DNS = ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local")

ADMIN = "admin"
CONTROLLER_MANAGER = "kube-controller-manager"
SCHEDULER = "kube-scheduler"
PROXY = "kube-proxy"
APISERVER_KUBELET_CLIENT = "apiserver-kubelet-client"

# user name, groups of each component's client certificate
_CLIENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    ADMIN: ("nodemesh-admin", ("system:masters",)),
    CONTROLLER_MANAGER: ("system:kube-controller-manager", ()),
    SCHEDULER: ("system:kube-scheduler", ()),
    PROXY: ("system:kube-proxy", ()),
    APISERVER_KUBELET_CLIENT: ("kube-apiserver-kubelet-client", ("system:masters",)),
}


@dataclass(frozen=True)
class Credentials:
    """A certificate and its key, as files (what the components' flags and kubeconfigs name)."""

    cert: Path
    key: Path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def write_file(path: Path, data: bytes, private: bool = False) -> Path:
    """Write ``data`` to ``path``; a private file is created 0600, never readable by others even briefly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class ClusterPki:
    """The CA and everything it issued, under ``root`` (made on construction; see ``create``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca_cert_path = root / "ca.crt"
        self.ca_key_path = root / "ca.key"
        self.sa_key_path = root / "sa.key"
        self.sa_pub_path = root / "sa.pub"
        self._ca_cert = x509.load_pem_x509_certificate(self.ca_cert_path.read_bytes())
        self._ca_key = serialization.load_pem_private_key(self.ca_key_path.read_bytes(), None)

    @classmethod
    def create(cls, root: Path, apiserver_ips: Iterable[str] = ("127.0.0.1",)) -> "ClusterPki":
        """A new CA, SA key pair, API server serving certificate and component client certificates."""
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        key = new_key()
        ca = create_root(key)  # the controller's kind of root: a CA for one level below it
        write_file(root / "ca.crt", _cert_pem(ca))
        write_file(root / "ca.key", key_pem(key), private=True)
        sa = new_key()
        write_file(root / "sa.key", key_pem(sa), private=True)
        write_file(root / "sa.pub", sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        pki = cls(root)
        pki.apiserver_serving(apiserver_ips)
        for component in _CLIENTS:
            pki.client(component)
        return pki

    @property
    def ca_pem(self) -> bytes:
        return _cert_pem(self._ca_cert)

    def _issue(self, stem: str, subject: x509.Name, usage: x509.ObjectIdentifier,
               sans: list[x509.GeneralName] | None = None) -> Credentials:
        key = new_key()
        now = _now()
        builder = (x509.CertificateBuilder()
                   .subject_name(subject).issuer_name(self._ca_cert.subject)
                   .public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - BACKDATE).not_valid_after(now + LIFETIME)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                                content_commitment=False, data_encipherment=False,
                                                key_agreement=False, key_cert_sign=False, crl_sign=False,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       self._ca_key.public_key()), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        assert isinstance(self._ca_key, ec.EllipticCurvePrivateKey)
        cert = builder.sign(self._ca_key, hashes.SHA256())
        return Credentials(cert=write_file(self.root / f"{stem}.crt", _cert_pem(cert)),
                           key=write_file(self.root / f"{stem}.key", key_pem(key), private=True))

    def apiserver_serving(self, ips: Iterable[str]) -> Credentials:
        """The API server's serving certificate: ``ips`` plus 127.0.0.1, the Service IP and the sim's address."""
        addresses = dict.fromkeys(["127.0.0.1", SERVICE_IP, SIM_APISERVER_IP, *ips])
        sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
        sans += [x509.DNSName(d) for d in APISERVER_DNS]
        return self._issue("apiserver", x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
                           ExtendedKeyUsageOID.SERVER_AUTH, sans)

    def client(self, component: str) -> Credentials:
        """The client certificate of ``component`` (ADMIN, CONTROLLER_MANAGER, ...), issued on first use."""
        cert = self.root / f"{component}.crt"
        if cert.exists():
            return Credentials(cert=cert, key=self.root / f"{component}.key")
        user, groups = _CLIENTS[component]
        return self.issue_client(component, user, groups)

    def issue_client(self, stem: str, user: str, groups: Iterable[str] = ()) -> Credentials:
        """A client certificate for ``user`` in ``groups`` (the API server reads CN and O), as ``stem``.crt/.key."""
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
                            + [x509.NameAttribute(NameOID.COMMON_NAME, user)])
        return self._issue(stem, subject, ExtendedKeyUsageOID.CLIENT_AUTH)

    def node_credentials(self, node: str) -> Credentials:
        """A kubelet's client certificate: ``system:node:<node>`` in ``system:nodes`` (Node authorizer)."""
        cert = self.root / f"node-{node}.crt"
        if cert.exists():
            return Credentials(cert=cert, key=self.root / f"node-{node}.key")
        return self.issue_client(f"node-{node}", f"system:node:{node}", ("system:nodes",))
