"""Istio's AuthorizationPolicy (``security.istio.io/v1``, ``v1beta1``): parsed and validated into
``nodemesh.authz.policy`` values, the L4 part of it.

A policy is stricter to read than the core kinds: an unknown field is an error, not ignored,
because a typo (``notPrincipal``, ``ipblocks``) would silently make a policy allow or deny other
connections than its author meant. What only an L7 proxy can check (request principals, remote
IPs, hosts, methods, paths, ``when``) is valid but kept by name in ``Rule.l7``: the agent fails
closed on it and the controller warns (``controller/model/policies.py``). What cannot mean
anything at L4 at all (AUDIT and CUSTOM actions, an external ``provider``, ``targetRef(s)`` to
gateways and waypoints) is refused.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable

from nodemesh.authz.policy import ACTIONS, ALLOW, AuthorizationPolicy, Operation, Rule, Source
from nodemesh.controller.kube.fields import DNS1123_SUBDOMAIN, Fields, metadata, namespace_of
from nodemesh.model import frozen_labels

KIND = "AuthorizationPolicy"
API_VERSIONS = ("security.istio.io/v1", "security.istio.io/v1beta1")

# Fields Istio has that make no sense without an L7 proxy or a gateway: refused, with why.
_NOT_L4 = {
    "targetRef": "policies attached to gateways and waypoints are not enforceable at L4 "
                 "(use selector.matchLabels to choose workloads)",
    "targetRefs": "policies attached to gateways and waypoints are not enforceable at L4 "
                  "(use selector.matchLabels to choose workloads)",
    "provider": "external authorization (CUSTOM) is not enforceable at L4",
}
_SPEC = ("selector", "action", "rules", *_NOT_L4)
_NOT_ENFORCEABLE_ACTIONS = ("AUDIT", "CUSTOM")

_SOURCE_L7 = ("requestPrincipals", "notRequestPrincipals", "remoteIpBlocks", "notRemoteIpBlocks")
_OPERATION_L7 = ("hosts", "notHosts", "methods", "notMethods", "paths", "notPaths")
_SPIFFE = "spiffe://"


def parse_authorization_policy(doc: dict, fields: Fields) -> AuthorizationPolicy:
    name, meta = metadata(doc, fields, DNS1123_SUBDOMAIN, 253, "policy name")
    spec = fields.strict(doc.get("spec"), "spec", _SPEC)
    for key, why in _NOT_L4.items():
        if key in spec:
            fields.error(f"spec.{key}", why)
    selector = fields.strict(spec.get("selector"), "spec.selector", ("matchLabels",))
    rules = fields.items(spec.get("rules"), "spec.rules")
    return AuthorizationPolicy(
        name=name,
        namespace=namespace_of(meta, fields),
        action=_action(spec.get("action"), fields),
        selector=frozen_labels(fields.string_map(selector.get("matchLabels"),
                                                 "spec.selector.matchLabels")),
        rules=tuple(_rule(rule, f"spec.rules[{i}]", fields) for i, rule in enumerate(rules)),
    )


def _action(value: Any, fields: Fields) -> str:
    """ALLOW when absent, as in Istio."""
    action = fields.string(value, "spec.action", default=ALLOW)
    if action in _NOT_ENFORCEABLE_ACTIONS:
        fields.error("spec.action", f"{action} is not enforceable at L4 (use ALLOW or DENY)")
    elif action not in ACTIONS:
        fields.error("spec.action", f"unknown action {action!r} (ALLOW or DENY)")
    return action if action in ACTIONS else ALLOW


def _rule(value: Any, path: str, fields: Fields) -> Rule:
    rule = fields.strict(value, path, ("from", "to", "when"))
    l7: list[str] = []
    sources = []
    for i, item in enumerate(fields.items(rule.get("from"), f"{path}.from")):
        source = fields.strict(item, f"{path}.from[{i}]", ("source",)).get("source")
        sources.append(_source(source, f"from[{i}].source", path, fields, l7))
    operations = []
    for i, item in enumerate(fields.items(rule.get("to"), f"{path}.to")):
        operation = fields.strict(item, f"{path}.to[{i}]", ("operation",)).get("operation")
        operations.append(_operation(operation, f"to[{i}].operation", path, fields, l7))
    if fields.items(rule.get("when"), f"{path}.when"):
        l7.append("when")
    return Rule(sources=tuple(sources), operations=tuple(operations), l7=tuple(l7))


def _l7_fields(spec: dict[str, Any], names: tuple[str, ...], where: str, rule_path: str,
               fields: Fields, l7: list[str]) -> None:
    """Record the L7 fields that are set (``where`` is relative to the rule), checking only their
    shape: their values mean nothing here."""
    for name in names:
        if fields.strings(spec.get(name), f"{rule_path}.{where}.{name}"):
            l7.append(f"{where}.{name}")


def _source(value: Any, where: str, rule_path: str, fields: Fields, l7: list[str]) -> Source:
    path = f"{rule_path}.{where}"
    spec = fields.strict(value, path, (*_SOURCE_FIELDS, *_SOURCE_L7))
    _l7_fields(spec, _SOURCE_L7, where, rule_path, fields, l7)
    return Source(**{attr: _values(spec.get(name), f"{path}.{name}", read, fields)
                     for name, (attr, read) in _SOURCE_FIELDS.items()})


def _operation(value: Any, where: str, rule_path: str, fields: Fields, l7: list[str]) -> Operation:
    path = f"{rule_path}.{where}"
    spec = fields.strict(value, path, ("ports", "notPorts", *_OPERATION_L7))
    _l7_fields(spec, _OPERATION_L7, where, rule_path, fields, l7)
    return Operation(ports=_values(spec.get("ports"), f"{path}.ports", _port, fields),
                     not_ports=_values(spec.get("notPorts"), f"{path}.notPorts", _port, fields))


def _values(value: Any, path: str, read: Callable[[Any, str, Fields], Any], fields: Fields) -> tuple:
    """Each item of a list read by ``read``; the bad ones (None) left out, their errors recorded."""
    read_items = (read(item, f"{path}[{i}]", fields) for i, item in enumerate(fields.items(value, path)))
    return tuple(item for item in read_items if item is not None)


def _pattern(value: Any, path: str, fields: Fields) -> str | None:
    """A principal or namespace: exact, or with ``*`` as the whole value, a prefix or a suffix."""
    text = fields.string(value, path)
    if text is None:
        fields.error(path, "must not be empty")
        return None
    if text.startswith(_SPIFFE):
        fields.error(path, f"{text!r}: write principals without {_SPIFFE!r} "
                           "(cluster.local/ns/NAMESPACE/sa/SERVICE_ACCOUNT)")
        return None
    stars = text.count("*")
    if stars and not (text == "*" or (stars == 1 and (text[0] == "*" or text[-1] == "*"))):
        fields.error(path, f"{text!r}: '*' can only be the whole value, a prefix ('*/sa/web') or "
                           "a suffix ('cluster.local/ns/shop/*')")
        return None
    return text


def _cidr(value: Any, path: str, fields: Fields) -> str | None:
    """Normalized (``10.1.2.3/8`` -> ``10.0.0.0/8``); a bare address is a /32."""
    text = fields.string(value, path)
    if text is None:
        fields.error(path, "must not be empty")
        return None
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        fields.error(path, f"{text!r} is not a CIDR (an address, or an address and a prefix "
                           "length such as 10.0.0.0/16)")
        return None


def _port(value: Any, path: str, fields: Fields) -> int | None:
    """Istio writes ports as strings; numbers are accepted too."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return fields.port(value, path)


# YAML name -> (Source attribute, reader)
_SOURCE_FIELDS: dict[str, tuple[str, Callable[[Any, str, Fields], Any]]] = {
    "principals": ("principals", _pattern),
    "notPrincipals": ("not_principals", _pattern),
    "namespaces": ("namespaces", _pattern),
    "notNamespaces": ("not_namespaces", _pattern),
    "ipBlocks": ("ip_blocks", _cidr),
    "notIpBlocks": ("not_ip_blocks", _cidr),
}
