"""What the CA issues: SVIDs with the identity as the only name, the profile TLS peers check,
lifetimes from seconds to days, and certificates that OpenSSL accepts in mutual TLS 1.3."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from nodemesh.controller.ca.authority import MAX_BACKDATE
from nodemesh.controller.ca.store import self_signed, user_supplied
from nodemesh.identity import Identity, identity_of, key_pem, new_key

from ca_material import UserCa, split_chain, verified_path

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
WEB = "spiffe://cluster.local/ns/shop/sa/web"


@pytest.fixture(scope="module")
def authority(tmp_path_factory):
    return self_signed(tmp_path_factory.mktemp("ca"))


def test_a_workload_certificate_names_only_its_identity(authority):
    issued = authority.issue_workload(new_key().public_key(), WEB, dt.timedelta(hours=24))
    cert = issued.cert
    assert issued.chain_pem.count(b"BEGIN CERTIFICATE") == 1  # the root is not sent
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical and list(san.value) == [x509.UniformResourceIdentifier(WEB)]
    assert len(cert.subject) == 0 and cert.issuer == authority.cert.subject
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment and not usage.key_cert_sign
    assert set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == {
        ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert identity_of(cert.public_bytes(serialization.Encoding.DER)) == Identity.parse(WEB)
    assert verified_path(issued.chain_pem, authority.bundle_pem)[-1] == authority.cert


def test_serials_are_random_and_distinct(authority):
    serials = {authority.issue_workload(new_key().public_key(), WEB, dt.timedelta(hours=1))
               .cert.serial_number for _ in range(20)}
    assert len(serials) == 20 and all(s.bit_length() > 100 for s in serials)


@pytest.mark.parametrize("lifetime, backdate", [
    (dt.timedelta(hours=24), MAX_BACKDATE),
    (dt.timedelta(minutes=5), dt.timedelta(seconds=30)),
    (dt.timedelta(seconds=10), dt.timedelta(seconds=1)),
])
def test_lifetime_runs_from_now_with_a_small_backdate(authority, lifetime, backdate):
    """Backdating covers peers with slow clocks; a tenth of the lifetime at most, so a
    ten-second certificate is not mostly spent before it is issued."""
    cert = authority.issue_workload(new_key().public_key(), WEB, lifetime, now=NOW).cert
    assert cert.not_valid_after_utc == NOW + lifetime
    assert cert.not_valid_before_utc == NOW - backdate


def test_nothing_outlives_the_ca_that_signs_it(tmp_path):
    user = UserCa(tmp_path)
    authority = user_supplied(user.cert_path, user.key_path, user.bundle_path)
    cert = authority.issue_workload(new_key().public_key(), WEB, dt.timedelta(days=3650)).cert
    assert cert.not_valid_after_utc == user.intermediate.not_valid_after_utc


def test_the_server_certificate_names_addresses_and_dns_names(authority):
    cert = authority.issue_server(new_key().public_key(), ["172.30.0.254", "127.0.0.1", "ctl.local"]).cert
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("172.30.0.254"),
                                                       ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["ctl.local"]


def _context(side: int, authority, identity: str, tmp_path, name: str) -> ssl.SSLContext:
    key = new_key()
    issued = authority.issue_workload(key.public_key(), identity, dt.timedelta(minutes=5))
    (tmp_path / f"{name}.pem").write_bytes(issued.chain_pem)
    (tmp_path / f"{name}-key.pem").write_bytes(key_pem(key))
    context = ssl.SSLContext(side)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(tmp_path / f"{name}.pem", tmp_path / f"{name}-key.pem")
    context.load_verify_locations(cadata=authority.bundle_pem.decode())
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = False  # SPIFFE: the peer is checked by its URI SAN, below
    return context


def test_workload_certificates_work_for_mutual_tls_13_through_an_intermediate(tmp_path):
    """OpenSSL (what the agent's TLS uses) accepts the chains both ways and each side reads the
    other's identity; the user's intermediate travels in the chain."""
    user = UserCa(tmp_path / "user")
    authority = user_supplied(user.cert_path, user.key_path, user.bundle_path)
    client_id, server_id = WEB, "spiffe://cluster.local/ns/shop/sa/catalog"
    client_ctx = _context(ssl.PROTOCOL_TLS_CLIENT, authority, client_id, tmp_path, "client")
    server_ctx = _context(ssl.PROTOCOL_TLS_SERVER, authority, server_id, tmp_path, "server")
    a, b = socket.socketpair()
    seen: dict[str, object] = {}

    def serve() -> None:
        with server_ctx.wrap_socket(b, server_side=True) as tls:
            seen["client"] = identity_of(tls.getpeercert(binary_form=True))
            tls.sendall(tls.recv(5))

    thread = threading.Thread(target=serve)
    thread.start()
    with client_ctx.wrap_socket(a) as tls:
        assert tls.version() == "TLSv1.3"
        assert identity_of(tls.getpeercert(binary_form=True)) == Identity.parse(server_id)
        tls.sendall(b"hello")
        assert tls.recv(5) == b"hello"
    thread.join(5)
    assert seen["client"] == Identity.parse(client_id)
    assert split_chain((tmp_path / "client.pem").read_bytes())[1] == [user.intermediate]
