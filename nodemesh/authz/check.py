"""What ``nodemesh authz check`` asks an agent: a source, a destination workload and port.

Shared by the CLI, which checks the flags with these parsers and sends the question as a query
string, and by the agent's admin API, which reads it back with the same code; so a question the
CLI accepts is one the agent understands.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlencode

from nodemesh.identity import DEFAULT_TRUST_DOMAIN, Identity

# Kubernetes names: DNS labels (namespaces, service accounts) and subdomains (pods).
_NAME = r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?"
_SOURCE = re.compile(rf"(?P<ns>{_NAME})/(?P<sa>{_NAME})")
_DESTINATION = re.compile(rf"(?P<ref>{_NAME}/{_NAME}):(?P<port>[0-9]+)")


def parse_source(value: str) -> str:
    """``NS/SA`` as written; raises ValueError saying what is expected."""
    if _SOURCE.fullmatch(value) is None:
        raise ValueError(f"{value!r} is not NAMESPACE/SERVICEACCOUNT (e.g. shop/client)")
    return value


def parse_destination(value: str) -> tuple[str, int]:
    """``NS/WORKLOAD:PORT`` -> ("NS/WORKLOAD", port); raises ValueError saying what is expected."""
    m = _DESTINATION.fullmatch(value)
    if m is None or not 0 < int(m["port"]) < 65536:
        raise ValueError(f"{value!r} is not NAMESPACE/WORKLOAD:PORT with a port of 1-65535 (e.g. shop/web-0:8080)")
    return m["ref"], int(m["port"])


def parse_ip(value: str) -> str:
    """An IP address, normalized; "" stays "" (no address given)."""
    if not value:
        return ""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


@dataclass(frozen=True)
class Check:
    """May ``source`` (``NS/SA``; "" for plaintext, no identity) from ``source_ip`` connect to
    ``port`` of ``destination`` (``NS/WORKLOAD``)?"""

    source: str
    destination: str
    port: int
    source_ip: str = ""

    def identity(self, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> str:
        """The SPIFFE id the source would present in ``trust_domain`` (the mesh's); "" for plaintext."""
        if not self.source:
            return ""
        namespace, account = self.source.split("/")
        return str(Identity(trust_domain, namespace, account))

    def query(self) -> str:
        return urlencode({"from": self.source, "to": f"{self.destination}:{self.port}", "from_ip": self.source_ip})

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> "Check":
        """Read back ``query()``; raises ValueError naming the parameter that is wrong."""
        try:
            destination, port = parse_destination(params.get("to", ""))
            source = params.get("from", "")
            return cls(parse_source(source) if source else "", destination, port, parse_ip(params.get("from_ip", "")))
        except ValueError as e:
            raise ValueError(f"{e}; ask as ?from=NS/SA&to=NS/WORKLOAD:PORT&from_ip=IP") from None
