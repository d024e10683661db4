"""CertificateAuthority.SignWorkload on grpc.aio: authenticate the node, apply the policy, issue.

Every refusal is logged (WARNING, "refused ...") with the reason the caller gets, and every
issuance (INFO) with identity, serial and expiry: the CA's log is its audit trail.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Callable

import grpc

from nodemesh.api import mesh_pb2 as pb
from nodemesh.api import mesh_pb2_grpc
from nodemesh.controller.ca.authority import Authority
from nodemesh.controller.ca.signing import BadRequest, NotPermitted, check_request
from nodemesh.controller.nodeauth.auth import authenticate
from nodemesh.controller.nodeauth.tokens import NodeTokens
from nodemesh.model import MeshModel

log = logging.getLogger(__name__)


class CaServicer(mesh_pb2_grpc.CertificateAuthorityServicer):
    def __init__(self, current_model: Callable[[], MeshModel], authority: Authority,
                 tokens: NodeTokens, lifetime: dt.timedelta) -> None:
        """``current_model`` returns the model served now, so that the CA places workloads by the
        version the agents are streamed; a callable, not the stream's feed, keeps the CA below
        the stream in the controller's layers."""
        self.current_model = current_model
        self.authority = authority
        self.tokens = tokens
        self.lifetime = lifetime

    async def SignWorkload(self, request: pb.SignRequest,
                           context: grpc.aio.ServicerContext) -> pb.SignResponse:
        node = await authenticate(context, self.tokens)
        try:
            approved = check_request(self.current_model(), node, request.workload_uid,
                                     request.csr_pem)
        except (NotPermitted, BadRequest) as exc:
            code = (grpc.StatusCode.PERMISSION_DENIED if isinstance(exc, NotPermitted)
                    else grpc.StatusCode.INVALID_ARGUMENT)
            log.warning("refused to sign for node %s (%s): %s", node, context.peer(), exc)
            await context.abort(code, str(exc))
        workload = approved.workload
        issued = self.authority.issue_workload(approved.csr.public_key(), workload.identity,
                                               self.lifetime)
        log.info("issued a certificate for %s (workload %s on node %s): serial %x, not after %s",
                 workload.identity, workload.ref, node, issued.cert.serial_number,
                 issued.cert.not_valid_after_utc.isoformat())
        return pb.SignResponse(cert_chain_pem=issued.chain_pem)
