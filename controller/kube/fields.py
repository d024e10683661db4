"""Typed reads of one object's fields that record, rather than raise, what is wrong; and what
every kind's metadata shares (names, namespace, labels).

Every kind's parser (``objects.py`` for the core kinds, ``authz.py``, ``traffic.py``) reads through
a ``Fields``, so that each message has the same shape: the object, the field's path, what is
wrong, e.g. ``Pod demo/client: spec.nodeName: required``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from nodemesh.controller.durations import parse_duration

DEFAULT_NAMESPACE = "default"

# Kubernetes' own name rules: namespaces are DNS-1123 labels, pods and node names DNS-1123
# subdomains, services DNS-1035 labels, port names IANA service names. The simulated cluster builds
# netns and cgroup names from them, so they must not hold slashes, spaces or the like.
DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@dataclass(frozen=True)
class Namespaced:
    """What every namespaced object's value starts with, and how messages and references name it."""

    namespace: str
    name: str

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


class Fields:
    """Typed reads of one object's fields that record, rather than raise, what is wrong.

    Each reader returns a usable default when the value is bad, so that parsing goes on and finds
    the next problem too.
    """

    def __init__(self, label: str, errors: list[str]) -> None:
        self.label = label
        self.errors = errors

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{self.label}: {path}: {message}")

    def mapping(self, value: Any, path: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping, got {kind_of(value)}")
            return {}
        return value

    def strict(self, value: Any, path: str, known: Iterable[str]) -> dict[str, Any]:
        """A mapping whose every key is one of ``known``: where a typo would silently weaken a
        policy, an unknown field is an error rather than ignored."""
        result = self.mapping(value, path)
        known = tuple(known)
        for key in result:
            if key not in known:
                self.error(f"{path}.{key}", f"unknown field (expected one of {', '.join(known)})")
        return result

    def items(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, f"must be a list, got {kind_of(value)}")
            return []
        return value

    def string(self, value: Any, path: str, default: str | None = None) -> str | None:
        if value is None or value == "":
            return default
        if not isinstance(value, str):
            self.error(path, f"must be a string, got {value!r} (quote it)")
            return default
        return value

    def name(self, value: Any, path: str, rule: re.Pattern[str], limit: int, what: str) -> str | None:
        text = self.string(value, path)
        if text is None:
            return None
        if len(text) > limit or not rule.fullmatch(text):
            self.error(path, f"{text!r} is not a valid {what} (at most {limit} characters: "
                             "lowercase letters, digits and '-')")
        return text

    def strings(self, value: Any, path: str) -> list[str]:
        result = []
        for i, item in enumerate(self.items(value, path)):
            text = self.string(item, f"{path}[{i}]", default="")
            result.append(text)
        return result

    def string_map(self, value: Any, path: str) -> dict[str, str]:
        result = {}
        for key, item in self.mapping(value, path).items():
            text = self.string(item, f"{path}.{key}", default="")
            result[str(key)] = text
        return result

    def choice(self, value: Any, path: str, choices: tuple[str, ...], default: str) -> str:
        text = self.string(value, path)
        if text is None:
            return default
        if text not in choices:
            self.error(path, f"{text!r} is not one of {', '.join(choices)}")
            return default
        return text

    def integer(self, value: Any, path: str, low: int, high: int) -> int | None:
        """A whole number from ``low`` to ``high``; None (absent or bad) lets the caller default."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.error(path, f"must be a whole number from {low} to {high}, got {value!r}")
            return None
        return value

    def positive(self, value: Any, path: str) -> float | None:
        """A number above zero (a rate); None when absent or bad."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            self.error(path, f"must be a number above zero, got {value!r}")
            return None
        return float(value)

    def duration(self, value: Any, path: str) -> float | None:
        """Seconds, from ``250ms``, ``2s``, ``1h30m``; None when absent or bad."""
        text = self.string(value, path)
        if text is None:
            return None
        try:
            return parse_duration(text).total_seconds()
        except ValueError as exc:
            self.error(path, str(exc))
            return None

    def port(self, value: Any, path: str) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, f"must be a number between 1 and 65535, got {value!r}")
            return None
        if not 1 <= value <= 65535:
            self.error(path, f"port {value} is out of range (1-65535)")
            return None
        return value

    def ipv4(self, value: Any, path: str) -> str | None:
        return self._address(value, path, ipaddress.IPv4Address, "is not an IPv4 address")

    def cidr(self, value: Any, path: str) -> str | None:
        """An IPv4 network in CIDR notation (``10.10.1.0/24``); None when absent or bad."""
        return self._address(value, path, ipaddress.IPv4Network,
                             "is not an IPv4 network (e.g. 10.10.1.0/24)")

    def _address(self, value: Any, path: str, parse: Callable[[str], Any], problem: str) -> str | None:
        text = self.string(value, path)
        if text is None:
            return None
        try:
            return str(parse(text))
        except ValueError:
            self.error(path, f"{text!r} {problem}")
            return None


def kind_of(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string"}.get(type(value), repr(value))


def metadata(doc: dict, fields: Fields, name_rule: re.Pattern[str], limit: int,
             what: str) -> tuple[str, dict[str, Any]]:
    """The object's name (required) and its metadata mapping."""
    meta = fields.mapping(doc.get("metadata"), "metadata")
    name = fields.name(meta.get("name"), "metadata.name", name_rule, limit, what)
    if name is None:
        fields.error("metadata.name", "required")
    return name or "", meta


def labels(meta: dict[str, Any], fields: Fields) -> dict[str, str]:
    return fields.string_map(meta.get("labels"), "metadata.labels")


def namespace_of(meta: dict[str, Any], fields: Fields) -> str:
    return fields.name(meta.get("namespace"), "metadata.namespace", DNS1123_LABEL, 63,
                       "namespace name") or DEFAULT_NAMESPACE


def check_unique(fields: Fields, path: str, what: str, values: list[Any]) -> None:
    seen = set()
    for value in values:
        if value in seen:
            fields.error(path, f"{what} {value!r} is used twice")
        seen.add(value)
