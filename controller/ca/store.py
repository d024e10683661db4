"""Where the CA comes from: a root made on first start and kept in the state directory, or the
user's own intermediate; plus the extra roots that make a rotation possible.

Everything read here is checked before the controller serves: the key matches the certificate,
the signing certificate is a CA, it chains up to a root of the trust bundle, nothing has expired.
A mistake shows up as a CaError naming the file and what to do, not as agents failing to verify
certificates later.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nodemesh.controller.ca.authority import Authority, SigningKey, create_root, utcnow
from nodemesh.controller.files import write_atomically
from nodemesh.errors import UserError
from nodemesh.identity import key_pem, new_key
from nodemesh.private import NotPrivate, check_private

log = logging.getLogger(__name__)

CA_DIR = "ca"
ROOT_CERT = "root.pem"
ROOT_KEY = "root-key.pem"


class CaError(UserError):
    """The CA material cannot be used; the message names the file and what to do."""


def root_path(state_dir: Path) -> Path:
    """The self-signed root's certificate: what agents get as --controller-ca."""
    return Path(state_dir) / CA_DIR / ROOT_CERT


def read_certs(path: Path, what: str) -> list[x509.Certificate]:
    """Every certificate of a PEM file (at least one)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CaError(f"{what} {path}: cannot read: {exc.strerror}") from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CaError(f"{what} {path}: not a PEM file of certificates (-----BEGIN CERTIFICATE-----)") from None
    return certs


def read_key(path: Path, what: str) -> SigningKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CaError(f"{what} {path}: cannot read: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise CaError(f"{what} {path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise CaError(f"{what} {path}: an ECDSA or RSA key is needed, this is {type(key).__name__}")
    _check_private(path, what)
    return key


def _check_private(path: Path, what: str) -> None:
    """Whoever reads the CA key can sign any identity of the mesh, and whoever may write its
    folder can put in a key of their own: the controller does not start until both are their
    owner's alone (``nodemesh/private.py``, as ssh refuses such a key)."""
    try:
        check_private(path, what)
    except NotPrivate as exc:
        raise CaError(str(exc)) from None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _unique(certs: Sequence[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """In order, each certificate once (a root may be both ours and in an extra bundle)."""
    seen: dict[bytes, x509.Certificate] = {}
    for cert in certs:
        seen.setdefault(cert.public_bytes(serialization.Encoding.DER), cert)
    return tuple(seen.values())


def _check_bundle(certs: Sequence[x509.Certificate], source: str) -> None:
    now = utcnow()
    for cert in certs:
        if not _is_ca(cert):
            raise CaError(f"{source}: {cert.subject.rfc4514_string() or 'a certificate'} is not a CA "
                          "certificate (basicConstraints CA:TRUE); a trust bundle holds roots only")
        if cert.not_valid_after_utc <= now:
            raise CaError(f"{source}: {cert.subject.rfc4514_string()} expired on "
                          f"{cert.not_valid_after_utc:%Y-%m-%d}; remove it from the bundle")


def _authority(cert: x509.Certificate, key: SigningKey, above: list[x509.Certificate],
               roots: Sequence[x509.Certificate], source: str) -> Authority:
    """Check that ``key`` signs as ``cert`` and that ``cert``, then ``above`` (its issuers, not
    roots) reach one of ``roots``."""
    if cert.public_key() != key.public_key():
        raise CaError(f"{source}: the key does not belong to the certificate; give the key that "
                      "was issued with it")
    if not _is_ca(cert):
        raise CaError(f"{source}: {cert.subject.rfc4514_string()} is not a CA certificate "
                      "(basicConstraints CA:TRUE), so it cannot sign workload certificates")
    chain = [cert, *above]
    expired = [c for c in chain if c.not_valid_after_utc <= utcnow()]
    if expired:
        raise CaError(f"{source}: {expired[0].subject.rfc4514_string()} expired on "
                      f"{expired[0].not_valid_after_utc:%Y-%m-%d}; give a current CA")
    for child, parent in zip(chain, chain[1:]):
        if not _issued_by(child, parent):
            raise CaError(f"{source}: {child.subject.rfc4514_string()} is not issued by the next "
                          f"certificate of the file, {parent.subject.rfc4514_string()}; list the "
                          "signing certificate first, then each issuer up to the root")
    top = chain[-1]
    if not any(top == root or _issued_by(top, root) for root in roots):
        raise CaError(f"{source}: {top.subject.rfc4514_string()} does not chain to any root of the "
                      "trust bundle; add its root to --ca-bundle")
    intermediates = () if cert in roots else tuple(chain)
    return Authority(cert=cert, key=key, intermediates=intermediates, roots=_unique(roots))


def self_signed(state_dir: Path, extra_roots: Sequence[x509.Certificate] = ()) -> Authority:
    """The root kept in ``state_dir/ca/``, made on first start; OSError if the directory is unusable."""
    ca_dir = Path(state_dir) / CA_DIR
    cert_path, key_path = ca_dir / ROOT_CERT, ca_dir / ROOT_KEY
    if ca_dir.exists():
        _check_private(ca_dir, "CA directory")
    if cert_path.exists() != key_path.exists():
        present, missing = (cert_path, key_path) if cert_path.exists() else (key_path, cert_path)
        raise CaError(f"{present} exists but {missing} does not: restore it, or remove {ca_dir} "
                      "to make a new root (agents must then be given the new root)")
    if cert_path.exists():
        (cert, *_), key = read_certs(cert_path, "CA root"), read_key(key_path, "CA root key")
        log.info("CA root loaded from %s (valid until %s)", cert_path, cert.not_valid_after_utc.date())
    else:
        ca_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = new_key()
        cert = create_root(key)
        write_atomically(key_path, key_pem(key), 0o600)
        write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        log.info("CA root created in %s (valid until %s)", cert_path, cert.not_valid_after_utc.date())
    _check_bundle(extra_roots, "--extra-trust-bundle")
    return _authority(cert, key, [], [cert, *extra_roots], str(cert_path))


def signing_under(certs: Sequence[x509.Certificate], key: SigningKey, roots: Sequence[x509.Certificate],
                  extra_roots: Sequence[x509.Certificate], source: str, roots_source: str) -> Authority:
    """The CA that signs with ``certs[0]`` (its issuers after it) and ``key``, checked under
    ``roots`` plus ``extra_roots``: a root listed in ``certs`` is left out of issued chains.
    ``source`` and ``roots_source`` name where each came from, for the errors."""
    _check_bundle(roots, roots_source)
    _check_bundle(extra_roots, "--extra-trust-bundle")
    cert, *above = certs
    return _authority(cert, key, [c for c in above if not _issued_by(c, c)], [*roots, *extra_roots],
                      source)


def user_supplied(cert_path: Path, key_path: Path, bundle_path: Path,
                  extra_roots: Sequence[x509.Certificate] = ()) -> Authority:
    """The user's intermediate (``cert_path``: it first, then any issuers) under the roots of
    ``bundle_path``; a root listed in ``cert_path`` is left out of issued chains."""
    authority = signing_under(read_certs(cert_path, "--ca-cert"), read_key(key_path, "--ca-key"),
                              read_certs(bundle_path, "--ca-bundle"), extra_roots,
                              f"--ca-cert {cert_path}", f"--ca-bundle {bundle_path}")
    cert = authority.cert
    log.info("CA: signing with %s (valid until %s), trust bundle of %d root(s)",
             cert.subject.rfc4514_string(), cert.not_valid_after_utc.date(), len(authority.roots))
    return authority
