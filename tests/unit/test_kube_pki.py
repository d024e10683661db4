"""The cluster PKI names each component as RBAC and the Node authorizer expect, and keeps keys private."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from nodemesh.tools.kube import pki
from nodemesh.tools.kube.kubeconfig import write_kubeconfig


def _subject(path: Path) -> tuple[list[str], list[str]]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return ([a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)],
            [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)])


def test_client_certificates_name_the_users_kubernetes_knows(tmp_path: Path) -> None:
    cluster = pki.ClusterPki.create(tmp_path / "pki")
    assert _subject(cluster.client(pki.ADMIN).cert)[1] == ["system:masters"]
    assert _subject(cluster.client(pki.CONTROLLER_MANAGER).cert) == (["system:kube-controller-manager"], [])
    assert _subject(cluster.client(pki.SCHEDULER).cert) == (["system:kube-scheduler"], [])
    assert _subject(cluster.client(pki.PROXY).cert) == (["system:kube-proxy"], [])
    assert _subject(cluster.node_credentials("node-a").cert) == (["system:node:node-a"], ["system:nodes"])


def test_the_serving_certificate_has_every_name_the_api_server_is_reached_by(tmp_path: Path) -> None:
    cluster = pki.ClusterPki.create(tmp_path / "pki", ["192.0.2.7"])
    cert = x509.load_pem_x509_certificate((tmp_path / "pki" / "apiserver.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address(a) for a in ("127.0.0.1", "10.96.0.1", "172.30.0.254", "192.0.2.7")}
    assert sans.get_values_for_type(x509.DNSName) == list(pki.APISERVER_DNS)
    assert cluster.ca_pem.startswith(b"-----BEGIN CERTIFICATE-----")


def test_keys_and_kubeconfigs_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    cluster = pki.ClusterPki.create(tmp_path / "pki")
    config = write_kubeconfig(tmp_path / "admin.kubeconfig", "https://127.0.0.1:1", cluster.ca_pem,
                              cluster.client(pki.ADMIN))
    for path in [*(tmp_path / "pki").glob("*.key"), config]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert yaml.safe_load(config.read_text())["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:1"
