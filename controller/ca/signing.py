"""Whether to sign a workload CSR for a node: the CA's policy, without IO.

The key property (ztunnel's): an agent gets certificates only for meshed workloads that the
model places on its own node, so a compromised node cannot mint the identities of pods elsewhere.
The CSR must be well formed, signed by its key, and name exactly the workload's identity.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from nodemesh.model import MESH_ENABLED, MESH_LABEL, MeshModel, Workload


class Refusal(enum.Enum):
    """Why a request was refused, in a word: the CA counts its refusals by it."""

    UNKNOWN_WORKLOAD = "unknown_workload"
    WRONG_NODE = "wrong_node"
    NOT_MESHED = "not_meshed"
    WRONG_IDENTITY = "wrong_identity"
    BAD_CSR = "bad_csr"


class Refused(Exception):
    """The CA will not sign this; the message says why, for the agent and the CA's log."""

    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class NotPermitted(Refused):
    """The caller may not have this certificate."""


class BadRequest(Refused):
    """The CSR is unusable, whoever asks."""

    def __init__(self, message: str) -> None:
        super().__init__(Refusal.BAD_CSR, message)


@dataclass(frozen=True)
class Approved:
    workload: Workload
    csr: x509.CertificateSigningRequest


def check_request(model: MeshModel, caller_node: str, uid: str, csr_pem: bytes) -> Approved:
    """Approve signing ``csr_pem`` for workload ``uid`` on behalf of the agent of ``caller_node``."""
    workload = model.workloads.get(uid)
    if workload is None:
        raise NotPermitted(Refusal.UNKNOWN_WORKLOAD, f"workload {uid!r} is not in the mesh model "
                           f"(asked for by node {caller_node})")
    if workload.node != caller_node:
        raise NotPermitted(Refusal.WRONG_NODE, f"workload {workload.ref} ({uid}) runs on node "
                           f"{workload.node}, not on node {caller_node} that asked for its certificate")
    if not workload.meshed:
        raise NotPermitted(Refusal.NOT_MESHED, f"workload {workload.ref} on node {caller_node} is not "
                           f"meshed (its namespace lacks {MESH_LABEL}={MESH_ENABLED}), so it has no "
                           "certificate")
    csr = _parse(csr_pem, workload)
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1 or len(list(sans)) != 1:
        raise BadRequest(f"the CSR for workload {workload.ref} must carry exactly one SAN, the URI "
                         f"{workload.identity}; it carries {[n.value for n in sans]}")
    if uris[0] != workload.identity:
        raise NotPermitted(Refusal.WRONG_IDENTITY, f"the CSR for workload {workload.ref} on node "
                           f"{caller_node} asks for identity {uris[0]}, but the workload's identity "
                           f"is {workload.identity}")
    return Approved(workload, csr)


def _parse(csr_pem: bytes, workload: Workload) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise BadRequest(f"the CSR for workload {workload.ref} is not a PEM certificate request") from None
    key = csr.public_key()
    if not (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)):
        raise BadRequest(f"the CSR for workload {workload.ref} must be for an ECDSA P-256 key")
    if not csr.is_signature_valid:
        raise BadRequest(f"the CSR for workload {workload.ref} is not signed by its own key")
    return csr
