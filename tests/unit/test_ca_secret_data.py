"""The CA Secret's and root ConfigMap's shapes, without an API server: a new root as Secret data,
reading it back (ours and a user's intermediate), each broken Secret refused by name, never
with key material in the message; and an API server that does not answer, a clear error."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt

import pytest
from cryptography import x509

from nodemesh.controller.apiclient import connect
from nodemesh.controller.ca.secret import (CA_CERT, CA_KEY, ROOT_CERT, ObjectRef, authority_from,
                                           load_authority, new_root_data, publish_roots,
                                           roots_configmap, secret_body)
from nodemesh.controller.ca.store import CaError
from nodemesh.identity import key_pem, new_key

from ca_material import UserCa, ca_cert, to_pem, verified_path
from kubeapi import unreachable_kubeconfig

WHERE = ObjectRef("nodemesh-system", "nodemesh-ca")
HOUR = dt.timedelta(hours=1)
ID = "spiffe://cluster.local/ns/shop/sa/web"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_a_new_root_is_the_signer_and_the_bundle():
    data = new_root_data()
    assert sorted(data) == [CA_CERT, CA_KEY, ROOT_CERT]
    assert data[CA_CERT] == data[ROOT_CERT]
    authority = authority_from(data, (), WHERE)
    root = x509.load_pem_x509_certificate(base64.b64decode(data[ROOT_CERT]))
    assert authority.cert == root and authority.roots == (root,) and authority.intermediates == ()
    assert b"PRIVATE KEY" in base64.b64decode(data[CA_KEY])
    assert new_root_data()[CA_KEY] != data[CA_KEY]  # a fresh key each time
    chain = authority.issue_workload(new_key().public_key(), ID, HOUR).chain_pem
    assert verified_path(chain, authority.bundle_pem)[-1] == root


def test_the_objects_are_labelled_and_named():
    secret = secret_body(WHERE, {"k": "v"})
    assert (secret.metadata.namespace, secret.metadata.name, secret.type) == (
        "nodemesh-system", "nodemesh-ca", "Opaque")
    assert secret.metadata.labels["app.kubernetes.io/name"] == "nodemesh"
    config = roots_configmap(ObjectRef("ns", "nodemesh-ca-root"), b"PEM")
    assert config.data == {"root-cert.pem": "PEM"} and config.metadata.name == "nodemesh-ca-root"
    assert str(WHERE) == "nodemesh-system/nodemesh-ca"


def test_a_users_intermediate_in_the_secret_signs_under_their_root(tmp_path):
    user = UserCa(tmp_path)
    extra = ca_cert("next root", new_key())
    data = {CA_CERT: b64(to_pem(user.intermediate)), CA_KEY: b64(key_pem(user.key)),
            ROOT_CERT: b64(to_pem(user.root))}
    authority = authority_from(data, [extra], WHERE)
    assert authority.cert == user.intermediate and authority.roots == (user.root, extra)
    chain = authority.issue_workload(new_key().public_key(), ID, HOUR).chain_pem
    assert verified_path(chain, to_pem(user.root))[-1] == user.root


def broken(**changes: str | None) -> dict[str, str]:
    data = new_root_data()
    for key, value in changes.items():
        key = key.replace("_", "-") + ".pem"
        if value is None:
            del data[key]
        else:
            data[key] = value
    return data


@pytest.mark.parametrize("data, words", [
    (None, "lacks ca-cert.pem, ca-key.pem, root-cert.pem: restore it, or delete the Secret"),
    (broken(ca_key=None), "Secret nodemesh-system/nodemesh-ca lacks ca-key.pem"),
    (broken(ca_key="!!not base64!!"), "ca-key.pem: not base64"),
    (broken(ca_key=b64(b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")),
     "ca-key.pem: not an unencrypted PEM private key"),
    (broken(ca_cert=b64(b"junk")), "ca-cert.pem: not a PEM file of certificates"),
    (broken(ca_key=b64(key_pem(new_key()))), "the key does not belong to the certificate"),
    (broken(root_cert=b64(to_pem(ca_cert("stranger", new_key())))), "does not chain to any root"),
])
def test_a_broken_secret_is_refused_with_its_key_named_and_no_key_material(data, words):
    with pytest.raises(CaError, match=words) as info:
        authority_from(data, (), WHERE)
    assert "c2VjcmV0" not in str(info.value) and "PRIVATE" not in str(info.value)
    assert "nodemesh-system/nodemesh-ca" in str(info.value)


def test_an_api_server_that_does_not_answer_is_a_clear_error(tmp_path):
    async def scenario() -> None:
        api = await connect(unreachable_kubeconfig(tmp_path / "kubeconfig"))
        try:
            with pytest.raises(CaError, match="cannot read Secret nodemesh-system/nodemesh-ca: the "
                                              "Kubernetes API server does not answer"):
                await load_authority(api, WHERE)
            with pytest.raises(CaError, match="cannot update ConfigMap nodemesh-system/nodemesh-ca-root: "
                                              "the Kubernetes API server does not answer"):
                await publish_roots(api, ObjectRef("nodemesh-system", "nodemesh-ca-root"), b"PEM")
        finally:
            await api.close()

    asyncio.run(scenario())
