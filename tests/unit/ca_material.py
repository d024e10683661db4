"""CA material as users bring it (their own root and an intermediate under it), and chain checks
done by an independent verifier (cryptography's RFC 5280 path validation), for the CA tests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from nodemesh.identity import key_pem, new_key


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def ca_cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None = None,
            issuer_key: ec.EllipticCurvePrivateKey | None = None, path_length: int | None = None,
            days: int = 365) -> x509.Certificate:
    """A CA certificate, self-signed without ``issuer``; negative ``days``: expired that long ago."""
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer.subject if issuer else name(subject))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + dt.timedelta(days=min(days, 0) - 1))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(issuer_key or key, hashes.SHA256()))


def to_pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


class UserCa:
    """A user's root and an intermediate under it, written to files as --ca-* options take them."""

    def __init__(self, directory: Path, label: str = "corp") -> None:
        self.root_key, self.key = new_key(), new_key()
        self.root = ca_cert(f"{label} root", self.root_key)
        self.intermediate = ca_cert(f"{label} mesh intermediate", self.key, self.root, self.root_key,
                                    path_length=0)
        directory.mkdir(parents=True, exist_ok=True)
        self.cert_path = directory / f"{label}-intermediate.pem"
        self.key_path = directory / f"{label}-intermediate-key.pem"
        self.bundle_path = directory / f"{label}-root.pem"
        self.cert_path.write_bytes(to_pem(self.intermediate))
        self.key_path.write_bytes(key_pem(self.key))
        self.key_path.chmod(0o600)
        self.bundle_path.write_bytes(to_pem(self.root))


def split_chain(chain_pem: bytes) -> tuple[x509.Certificate, list[x509.Certificate]]:
    leaf, *intermediates = x509.load_pem_x509_certificates(chain_pem)
    return leaf, intermediates


def verified_path(chain_pem: bytes, bundle_pem: bytes) -> list[x509.Certificate]:
    """The path from the chain's leaf to a root of the bundle, as a TLS client-cert check finds it;
    raises VerificationError when there is none."""
    leaf, intermediates = split_chain(chain_pem)
    roots = x509.load_pem_x509_certificates(bundle_pem)
    verifier = PolicyBuilder().store(Store(roots)).build_client_verifier()
    return verifier.verify(leaf, intermediates).chain
