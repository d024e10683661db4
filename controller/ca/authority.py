"""Issuing certificates: workload SVIDs for the agents and the controller's own TLS certificate.

An ``Authority`` is what signs (a CA certificate and its key), the intermediates between it and
a root, and the trust bundle agents verify against. Where that material comes from (a root made
on first start, or the user's intermediate) is ``store``'s business; this module only issues.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# How far back a certificate's not-before is set, so that a peer whose clock is a little behind
# accepts it at once; a tenth of the lifetime at most, so that second-long test lifetimes stay
# mostly in the future.
MAX_BACKDATE = dt.timedelta(seconds=60)
ROOT_LIFETIME = dt.timedelta(days=3650)
SERVER_LIFETIME = dt.timedelta(days=365)

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    chain_pem: bytes  # the certificate, then the intermediates up to (not including) a root


def create_root(key: ec.EllipticCurvePrivateKey, now: dt.datetime | None = None) -> x509.Certificate:
    """A self-signed root: CA with path length 1 (room for one intermediate), ten years."""
    now = now or utcnow()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nodemesh"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"nodemesh root CA {now:%Y-%m-%d %H:%M:%S}")])
    return (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - MAX_BACKDATE)
            .not_valid_after(now + ROOT_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))


@dataclass(frozen=True)
class Authority:
    cert: x509.Certificate  # the signing CA certificate
    key: SigningKey
    # What follows an issued certificate in its chain: ``cert`` and its issuers below a root
    # (the user's intermediate and above); empty when ``cert`` is itself a root.
    intermediates: tuple[x509.Certificate, ...]
    roots: tuple[x509.Certificate, ...]  # the trust bundle, the signing root among them

    @property
    def bundle_pem(self) -> bytes:
        return pem(*self.roots)

    @property
    def expires(self) -> dt.datetime:
        """When the first certificate of the signing chain expires: nothing issued outlives it."""
        return min(c.not_valid_after_utc for c in (self.cert, *self.intermediates))

    def issue_workload(self, public_key: CertificatePublicKeyTypes, identity: str,
                       lifetime: dt.timedelta, now: dt.datetime | None = None) -> Issued:
        """An X.509 SVID: the SPIFFE id as the one (critical) URI SAN, an empty subject."""
        san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)])
        return self._issue(public_key, x509.Name([]), san, lifetime, now)

    def issue_server(self, public_key: CertificatePublicKeyTypes, names: list[str],
                     lifetime: dt.timedelta = SERVER_LIFETIME, now: dt.datetime | None = None) -> Issued:
        """The controller's gRPC certificate: ``names`` are IP addresses or DNS names."""
        san = x509.SubjectAlternativeName([_general_name(n) for n in names])
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nodemesh controller")])
        return self._issue(public_key, subject, san, lifetime, now)

    def _issue(self, public_key: CertificatePublicKeyTypes, subject: x509.Name,
               san: x509.SubjectAlternativeName, lifetime: dt.timedelta,
               now: dt.datetime | None) -> Issued:
        now = now or utcnow()
        not_after = min(now + lifetime, self.expires)
        builder = (x509.CertificateBuilder()
                   .subject_name(subject).issuer_name(self.cert.subject)
                   .public_key(public_key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - min(MAX_BACKDATE, lifetime / 10))
                   .not_valid_after(not_after)
                   # an empty subject makes the SAN the name, and RFC 5280 then wants it critical
                   .add_extension(san, critical=len(subject) == 0)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True,
                                                content_commitment=False, data_encipherment=False,
                                                key_agreement=False, key_cert_sign=False,
                                                crl_sign=False, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                         ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       self.cert.public_key()), critical=False))  # type: ignore[arg-type]
        cert = builder.sign(self.key, hashes.SHA256())
        return Issued(cert, pem(cert, *self.intermediates))


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)
