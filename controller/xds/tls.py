"""The controller's TLS identity for its gRPC port: a fresh key and certificate at each start.

The certificate comes from the controller's own CA, so agents need nothing but the CA root
(``--controller-ca``) to verify it. Its names are the addresses agents dial: the --listen address
(every address of this host when that is a wildcard) and 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import logging

import grpc

from nodemesh.controller.ca.authority import Authority
from nodemesh.identity import key_pem, new_key

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def _local_addresses() -> list[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr()]


def server_names(host: str) -> list[str]:
    """What the certificate must name for agents dialling ``host`` (as given to --listen)."""
    try:
        wildcard = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        wildcard = False  # a DNS name
    names = _local_addresses() if wildcard else [host]
    return list(dict.fromkeys([*names, LOOPBACK]))


def server_credentials(authority: Authority, host: str) -> grpc.ServerCredentials:
    key = new_key()
    names = server_names(host)
    issued = authority.issue_server(key.public_key(), names)
    log.info("TLS certificate for %s, serial %x, not after %s", ", ".join(names),
             issued.cert.serial_number, issued.cert.not_valid_after_utc.isoformat())
    return grpc.ssl_server_credentials([(key_pem(key), issued.chain_pem)])
