"""Asking the controller's CA to sign a workload's CSR (synchronous: the caller runs it on a
worker thread, as gRPC's blocking client wants).

Failures come out as two kinds, because the agent acts differently on them: ``SignRefused``
(the controller said no: the reason is in the message, retrying unchanged will not help until
the model or the credentials change) and ``CaUnavailable`` (no answer: retry later, keep the
current certificate meanwhile).
"""

from __future__ import annotations

import grpc

from nodemesh.agent.controlplane.channel import ControllerAccess
from nodemesh.api import mesh_pb2 as pb
from nodemesh.api import mesh_pb2_grpc

DEFAULT_TIMEOUT = 10.0

_REFUSALS = {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
             grpc.StatusCode.INVALID_ARGUMENT}


class SignError(Exception):
    """A certificate was not issued; ``code`` is the gRPC status."""

    def __init__(self, message: str, code: grpc.StatusCode) -> None:
        super().__init__(message)
        self.code = code


class SignRefused(SignError):
    """The controller refused to sign (not this node's workload, bad CSR, bad token)."""


class CaUnavailable(SignError):
    """The controller did not answer (down, unreachable, timed out, TLS failure)."""


class CaClient:
    def __init__(self, access: ControllerAccess) -> None:
        """``access``: the controller and this node's credentials, shared with the config client
        (which keeps its trusted roots current). A channel per call: calls are rare (one per
        workload per half lifetime) and each then uses the roots trusted at that moment."""
        self.access = access

    def sign(self, uid: str, csr_pem: bytes, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """The PEM chain (workload certificate, then intermediates) for workload ``uid``."""
        request = pb.SignRequest(workload_uid=uid, csr_pem=csr_pem)
        try:
            with self.access.channel() as channel:
                response = mesh_pb2_grpc.CertificateAuthorityStub(channel).SignWorkload(
                    request, timeout=timeout)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
            details: str = exc.details()  # type: ignore[attr-defined]
            if code in _REFUSALS:
                raise SignRefused(f"the controller refused to sign for workload {uid}: {details}",
                                  code) from None
            raise CaUnavailable(f"the controller's CA did not answer for workload {uid} "
                                f"({code.name}: {details})", code) from None
        if not response.cert_chain_pem:
            raise SignRefused(f"the controller answered with no certificate for workload {uid}",
                              grpc.StatusCode.UNKNOWN)
        return response.cert_chain_pem
