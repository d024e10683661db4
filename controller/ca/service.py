"""CertificateAuthority.SignWorkload on grpc.aio: authenticate the node, apply the policy, issue.

Every refusal is logged (WARNING, "refused ...") with the reason the caller gets, and every
issuance (INFO) with identity, serial and expiry: the CA's log is its audit trail. Both are
counted too (``stats``), refusals by their reason, for the controller's metrics.
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
from nodemesh.controller.ca.stats import CaStats
from nodemesh.controller.nodeauth.auth import Authenticator, Unauthenticated
from nodemesh.model import MeshModel

log = logging.getLogger(__name__)

_STATUS = {NotPermitted: grpc.StatusCode.PERMISSION_DENIED,
           BadRequest: grpc.StatusCode.INVALID_ARGUMENT}


class CaServicer(mesh_pb2_grpc.CertificateAuthorityServicer):
    def __init__(self, current_model: Callable[[], MeshModel], authority: Authority,
                 authenticator: Authenticator, lifetime: dt.timedelta) -> None:
        """``current_model`` returns the model served now, so that the CA places workloads by the
        version the agents are streamed; a callable, not the stream's feed, keeps the CA below
        the stream in the controller's layers."""
        self.current_model = current_model
        self.authority = authority
        self.authenticator = authenticator
        self.lifetime = lifetime
        self.stats = CaStats()

    async def SignWorkload(self, request: pb.SignRequest,
                           context: grpc.aio.ServicerContext) -> pb.SignResponse:
        node = None
        try:
            node = await self.authenticator.caller_node(context.invocation_metadata())
            approved = check_request(self.current_model(), node, request.workload_uid,
                                     request.csr_pem)
        except (Unauthenticated, NotPermitted, BadRequest) as exc:
            self.stats.count_refusal(exc.reason)
            caller = f"node {node} ({context.peer()})" if node else context.peer()
            log.warning("refused to sign for %s: %s", caller, exc)
            code = exc.code if isinstance(exc, Unauthenticated) else _STATUS[type(exc)]
            await context.abort(code, str(exc))
        workload = approved.workload
        issued = self.authority.issue_workload(approved.csr.public_key(), workload.identity,
                                               self.lifetime)
        self.stats.count_signed()
        log.info("issued a certificate for %s (workload %s on node %s): serial %x, not after %s",
                 workload.identity, workload.ref, node, issued.cert.serial_number,
                 issued.cert.not_valid_after_utc.isoformat())
        return pb.SignResponse(cert_chain_pem=issued.chain_pem)
