"""A model from every object that can take part, the others left out (kube mode).

The file source refuses a file with any problem: its author is at hand to fix it. A cluster is
many authors' objects arriving one by one, so one bad object must not stop the mesh from following
the others. Objects are parsed one by one as they come (``kube.objects.parse_object``); what only
shows with every object at hand (two TrafficPolicies for one Service, a TCPRoute to a Service or
port that does not exist, a named targetPort the endpoints disagree on) is a ``ModelError`` whose
every message starts with the label of the object it blames (``TrafficPolicy demo/b: ...``): that
object is left out and the model built again, until it builds. Each pass leaves out at least one
object, so it ends. A message that names no object given is a bug in that convention, and is
raised as it is.
"""

from __future__ import annotations

from typing import Any, Mapping

from nodemesh.controller.kube.objects import collect
from nodemesh.controller.model.build import Built, ModelError, build_model
from nodemesh.identity import DEFAULT_TRUST_DOMAIN


def build_leaving_out(parsed: Mapping[str, tuple[str, Any]],
                      trust_domain: str = DEFAULT_TRUST_DOMAIN
                      ) -> tuple[Built, dict[str, list[str]]]:
    """The kube-mode model of ``parsed`` (object label -> (kind, value)), and the objects left
    out, by label, with the problems that blame them."""
    kept = dict(parsed)
    left_out: dict[str, list[str]] = {}
    while True:
        try:
            return build_model(collect(kept.values()), None, trust_domain), left_out
        except ModelError as exc:
            blamed = _blame(exc, kept)
        for label, messages in blamed.items():
            del kept[label]
            left_out.setdefault(label, []).extend(messages)


def _blame(exc: ModelError, labels: Mapping[str, Any]) -> dict[str, list[str]]:
    """The problems of ``exc`` by the label of the object each one starts with."""
    blamed: dict[str, list[str]] = {}
    for message in exc.errors:
        label = message.split(": ", 1)[0]
        if label not in labels:
            raise exc
        blamed.setdefault(label, []).append(message)
    return blamed
