"""The CA's policy: a node gets certificates only for meshed workloads placed on it, for exactly
their identity, from a well-formed CSR signed by its key."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nodemesh.controller.ca.signing import BadRequest, NotPermitted, check_request
from nodemesh.identity import Identity, certificate_request, new_key

from shop import DB, LEGACY, MODEL, WEB


def csr_for(identity: str, key=None, extra: list[x509.GeneralName] = ()) -> bytes:
    builder = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
               .add_extension(x509.SubjectAlternativeName(
                   [x509.UniformResourceIdentifier(identity), *extra]), critical=True))
    return builder.sign(key or new_key(), hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_a_node_gets_its_own_workloads_certificate():
    key = new_key()
    approved = check_request(MODEL, "n1", "u-web", certificate_request(key, Identity.parse(WEB.identity)))
    assert approved.workload is WEB
    assert approved.csr.public_key() == key.public_key()


def test_another_nodes_workload_is_refused_naming_it_and_both_nodes():
    with pytest.raises(NotPermitted) as info:
        check_request(MODEL, "n1", "u-db", csr_for(DB.identity))
    assert str(info.value) == ("workload shop/db (u-db) runs on node n2, not on node n1 that asked "
                               "for its certificate")


@pytest.mark.parametrize("uid, reason", [
    ("u-gone", "workload 'u-gone' is not in the mesh model (asked for by node n1)"),
    ("u-legacy", "workload legacy/batch on node n1 is not meshed"),
])
def test_unknown_and_unmeshed_workloads_are_refused(uid, reason):
    with pytest.raises(NotPermitted) as info:
        check_request(MODEL, "n1", uid, csr_for(LEGACY.identity))
    assert str(info.value).startswith(reason)


def test_a_csr_for_another_identity_is_refused():
    with pytest.raises(NotPermitted, match="asks for identity spiffe://cluster.local/ns/shop/sa/db, "
                                           "but the workload's identity is .*/sa/web"):
        check_request(MODEL, "n1", "u-web", csr_for(DB.identity))


def test_a_csr_with_more_names_than_the_identity_is_refused():
    with pytest.raises(BadRequest, match="must carry exactly one SAN"):
        check_request(MODEL, "n1", "u-web", csr_for(WEB.identity, extra=[x509.DNSName("web.shop")]))
    with pytest.raises(BadRequest, match="must carry exactly one SAN"):
        check_request(MODEL, "n1", "u-web", csr_for(WEB.identity, extra=[
            x509.UniformResourceIdentifier(DB.identity)]))


def test_malformed_csrs_are_refused():
    with pytest.raises(BadRequest, match="is not a PEM certificate request"):
        check_request(MODEL, "n1", "u-web", b"not a csr")
    with pytest.raises(BadRequest, match="must be for an ECDSA P-256 key"):
        check_request(MODEL, "n1", "u-web", csr_for(WEB.identity, ec.generate_private_key(ec.SECP384R1())))
    no_san = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
              .sign(new_key(), hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    with pytest.raises(BadRequest, match=r"must carry exactly one SAN.*it carries \[\]"):
        check_request(MODEL, "n1", "u-web", no_san)


def test_a_csr_not_signed_by_its_own_key_is_refused():
    """A CSR whose signature does not match its public key: the key was not proven."""
    good = x509.load_pem_x509_csr(csr_for(WEB.identity))
    der = bytearray(good.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    forged = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(BadRequest, match="is not signed by its own key"):
        check_request(MODEL, "n1", "u-web", forged)
