"""Kubernetes mode: the CA kept in a Secret that every controller replica shares, and its root
published in a ConfigMap for the agents.

Secret ``<namespace>/nodemesh-ca`` holds ``ca-cert.pem`` (the signing certificate, then any
issuers), ``ca-key.pem`` (its key) and ``root-cert.pem`` (the root(s) above it); the root the
controller makes on first start is all three at once. A user's intermediate goes in the same
three keys (as Istio's ``cacerts``). Whichever replica starts first and finds no Secret makes the
root and creates it; a replica that loses that race (409 Conflict) reads the winner's, so every
replica signs with one root. The key never leaves the Secret and the controller's memory: no log
line, no error message carries it (API errors are reported by status, never by body).

ConfigMap ``<namespace>/nodemesh-ca-root``, key ``root-cert.pem``, is the trust bundle (the roots,
with ``--extra-trust-bundle``'s during a rotation) that the agents' DaemonSet mounts as
``--controller-ca``; each start writes it again, so a rotation's bundle reaches new agents.

The parsing and the objects' shapes are plain functions of the Secret's ``data`` (base64, as the
API has it); ``load_authority`` and ``publish_roots`` are the IO.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import aiohttp

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from nodemesh.controller.ca.authority import Authority, create_root, pem
from nodemesh.controller.ca.store import CaError, signing_under
from nodemesh.identity import key_pem, new_key

log = logging.getLogger(__name__)

SECRET_NAME = "nodemesh-ca"
ROOT_CONFIGMAP = "nodemesh-ca-root"
CA_CERT, CA_KEY, ROOT_CERT = "ca-cert.pem", "ca-key.pem", "root-cert.pem"
LABELS = {"app.kubernetes.io/name": "nodemesh", "app.kubernetes.io/component": "ca"}


@dataclass(frozen=True)
class ObjectRef:
    """A namespaced object's place, as ``--ca-secret NAMESPACE/NAME`` spells it."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def new_root_data() -> dict[str, str]:
    """A fresh root as a Secret's ``data``: it signs, and is the bundle."""
    key = new_key()
    cert_pem = pem(create_root(key))
    return {CA_CERT: _b64(cert_pem), CA_KEY: _b64(key_pem(key)), ROOT_CERT: _b64(cert_pem)}


def authority_from(data: dict[str, str] | None, extra_roots: Sequence[x509.Certificate],
                   where: ObjectRef) -> Authority:
    """The CA a Secret's ``data`` holds, checked as the state directory's is; CaError naming the
    Secret and its key otherwise."""
    source = f"Secret {where}"
    data = data or {}
    missing = [k for k in (CA_CERT, CA_KEY, ROOT_CERT) if not data.get(k)]
    if missing:
        raise CaError(f"{source} lacks {', '.join(missing)}: restore it, or delete the Secret so the "
                      "controller makes a new root (agents then trust only the new one, published "
                      f"in ConfigMap {ROOT_CONFIGMAP})")
    certs = _certs(data[CA_CERT], f"{source} {CA_CERT}")
    roots = _certs(data[ROOT_CERT], f"{source} {ROOT_CERT}")
    return signing_under(certs, _key(data[CA_KEY], f"{source} {CA_KEY}"), roots, extra_roots,
                         f"{source} {CA_CERT}", f"{source} {ROOT_CERT}")


def secret_body(where: ObjectRef, data: dict[str, str]) -> client.V1Secret:
    return client.V1Secret(metadata=client.V1ObjectMeta(name=where.name, namespace=where.namespace,
                                                        labels=LABELS),
                           type="Opaque", data=data)


def roots_configmap(where: ObjectRef, bundle_pem: bytes) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=where.name, namespace=where.namespace,
                                                           labels=LABELS),
                              data={ROOT_CERT: bundle_pem.decode()})


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CaError(f"{what}: not base64 (a Secret's data is)") from None


def _certs(text: str, what: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(_unb64(text, what))
    except ValueError:
        raise CaError(f"{what}: not a PEM file of certificates (-----BEGIN CERTIFICATE-----)") from None


def _key(text: str, what: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(_unb64(text, what), password=None)
    except (ValueError, TypeError):
        # not the library's message: it must not quote what it could not parse
        raise CaError(f"{what}: not an unencrypted PEM private key") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise CaError(f"{what}: an ECDSA or RSA key is needed, this is {type(key).__name__}")
    return key


def _api_error(exc: ApiException, doing: str, where: str) -> CaError:
    """What to do about an API refusal, by its status alone (a body may echo what was sent)."""
    hint = {403: f"grant the controller's service account get and create on secrets, patch "
                 f"and create on configmaps, in namespace {where.split('/')[0]}",
            404: f"create namespace {where.split('/')[0]}, or give the controller's own "
                 "(POD_NAMESPACE)"}.get(exc.status, "check the API server")
    return CaError(f"cannot {doing} {where}: the API server answered {exc.status} {exc.reason}; {hint}")


@contextlib.contextmanager
def _reaching(doing: str, where: ObjectRef) -> Iterator[None]:
    """An API server that does not answer is a CaError too: the controller cannot start without
    its CA, so it exits (its pod restarts, with the kubelet's backoff) rather than hang."""
    try:
        yield
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise CaError(f"cannot {doing} {where}: the Kubernetes API server does not answer "
                      f"({exc or type(exc).__name__})") from None


async def _read_secret(core: client.CoreV1Api, where: ObjectRef) -> dict[str, str] | None:
    """The Secret's data, None if there is no such Secret."""
    try:
        secret = await core.read_namespaced_secret(where.name, where.namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise _api_error(exc, "read Secret", str(where)) from None
    return secret.data or {}


async def create_secret(api: client.ApiClient, where: ObjectRef,
                        data: dict[str, str]) -> tuple[dict[str, str], bool]:
    """Create Secret ``where`` holding ``data``: (``data``, True); or, if it exists already
    (another replica won the race to make it), (its data, False), so that both sign alike."""
    core = client.CoreV1Api(api)
    try:
        await core.create_namespaced_secret(where.namespace, secret_body(where, data))
        return data, True
    except ApiException as exc:
        if exc.status != 409:
            raise _api_error(exc, "create Secret", str(where)) from None
    theirs = await _read_secret(core, where)
    if theirs is None:
        raise CaError(f"Secret {where} was created and deleted at once by someone else; start the "
                      "controller again")
    return theirs, False


async def load_authority(api: client.ApiClient, where: ObjectRef,
                         extra_roots: Sequence[x509.Certificate] = ()) -> Authority:
    """The CA of Secret ``where``, which is made (a new root) if it does not exist yet."""
    with _reaching("read Secret", where):
        data = await _read_secret(client.CoreV1Api(api), where)
        made = False
        if data is None:
            data, made = await create_secret(api, where, new_root_data())
    authority = authority_from(data, extra_roots, where)
    log.info("CA %s Secret %s: signing with %s (valid until %s), trust bundle of %d root(s)",
             "created in" if made else "loaded from", where, authority.cert.subject.rfc4514_string(),
             authority.cert.not_valid_after_utc.date(), len(authority.roots))
    return authority


async def publish_roots(api: client.ApiClient, where: ObjectRef, bundle_pem: bytes) -> None:
    """Make ConfigMap ``where`` hold ``bundle_pem`` as root-cert.pem (created, or patched: a
    merge patch needs no resourceVersion, so replicas writing the same bundle never conflict)."""
    core = client.CoreV1Api(api)
    body = roots_configmap(where, bundle_pem)
    patch: dict[str, Any] = {"metadata": {"labels": LABELS}, "data": body.data}
    with _reaching("update ConfigMap", where):
        await _patch_or_create(core, where, body, patch)
    log.info("trust bundle published in ConfigMap %s (%s)", where, ROOT_CERT)


async def _patch_or_create(core: client.CoreV1Api, where: ObjectRef, body: client.V1ConfigMap,
                           patch: dict[str, Any]) -> None:
    try:
        await core.patch_namespaced_config_map(where.name, where.namespace, patch)
    except ApiException as exc:
        if exc.status != 404:
            raise _api_error(exc, "update ConfigMap", str(where)) from None
        try:
            await core.create_namespaced_config_map(where.namespace, body)
        except ApiException as exc2:
            if exc2.status != 409:
                raise _api_error(exc2, "create ConfigMap", str(where)) from None
            await core.patch_namespaced_config_map(where.name, where.namespace, patch)
