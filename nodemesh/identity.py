"""Workload identity: SPIFFE ids, keys and certificate requests, reading identities off certs.

Shared by the controller (which signs) and the agent (which asks and verifies), so that both
agree on one spelling of an identity: ``spiffe://<trust domain>/ns/<namespace>/sa/<account>``.
Keys are ECDSA P-256, as in the design: small, fast to generate, TLS 1.3 everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

DEFAULT_TRUST_DOMAIN = "cluster.local"

_SPIFFE = re.compile(r"spiffe://(?P<td>[a-z0-9._-]+)/ns/(?P<ns>[^/]+)/sa/(?P<sa>[^/]+)")


class IdentityError(ValueError):
    pass


@dataclass(frozen=True)
class Identity:
    trust_domain: str
    namespace: str
    service_account: str

    def __str__(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @classmethod
    def parse(cls, uri: str) -> "Identity":
        m = _SPIFFE.fullmatch(uri)
        if m is None:
            raise IdentityError(f"not a workload SPIFFE id: {uri!r}")
        return cls(m["td"], m["ns"], m["sa"])


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def certificate_request(key: ec.EllipticCurvePrivateKey, identity: Identity) -> bytes:
    """A PEM CSR naming ``identity`` as its only URI SAN."""
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(identity))]),
                          critical=True)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def uri_sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return ext.value.get_values_for_type(x509.UniformResourceIdentifier)


def identity_of(cert_der: bytes) -> Identity:
    """The workload identity a (chain-verified) peer certificate carries: exactly one SPIFFE URI."""
    sans = uri_sans(x509.load_der_x509_certificate(cert_der))
    if len(sans) != 1:
        raise IdentityError(f"a workload certificate carries exactly one URI SAN, this one has {sans}")
    return Identity.parse(sans[0])
