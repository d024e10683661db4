"""One resource's list-then-watch, sans-IO: what to ask the API server next, and what its answers
change in the local copy of the objects.

The IO part (``watch.py``) asks what to do (``next_step``: list, watch from a resourceVersion, or
wait), does it, and reports what came back (``listed``, ``not_installed``, ``event``, ``gone``,
``failed``); each report returns the objects it changed, by key, so that the
source re-parses those alone. The rules, as client-go's reflector has them:

- A watch starts from the resourceVersion of the last list, event or bookmark (bookmarks are
  asked for, so that a quiet resource's version stays fresh and a re-watch after a disconnect
  is not refused as too old).
- 410 Gone (an ERROR event, or the HTTP status of the watch request): the version is compacted
  away; list again and replace the copy, by a diff, so that objects deleted meanwhile are seen
  as deleted, and the unchanged ones are not reported at all.
- Any other failure (connection refused, reset, an HTTP error): watch again from the same
  version after a capped, jittered exponential backoff; the first success resets it. A watch
  the server ends (its ``timeoutSeconds``) is re-watched at once.
- An optional resource (a CRD) the server does not serve (404 on list) is "none of those",
  checked again every ``RECHECK`` seconds.

Trouble is logged once per change of state (a new reason, the recovery), never once per retry;
and trouble every resource meets at once (the API server down) once for all of them
(``TroubleLog``, shared by a source's reflectors).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from nodemesh.backoff import Backoff
from nodemesh.controller.sources.kube.resources import Resource

log = logging.getLogger(__name__)

BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
RECHECK = 30.0  # seconds between lists of a CRD that is not installed
WATCH_TIMEOUT = 300  # timeoutSeconds of each watch: the server ends it, and it is made again
GONE = 410


@dataclass(frozen=True)
class List:
    """List the collection (then replace the copy with ``listed``)."""


@dataclass(frozen=True)
class Watch:
    resource_version: str

    @property
    def params(self) -> dict[str, str]:
        return {"watch": "true", "resourceVersion": self.resource_version,
                "allowWatchBookmarks": "true", "timeoutSeconds": str(WATCH_TIMEOUT)}


@dataclass(frozen=True)
class Wait:
    seconds: float


Step = List | Watch | Wait
Changes = dict[str, dict[str, Any] | None]  # object key -> the object now, None when deleted


def key_of(obj: dict[str, Any]) -> str:
    """``namespace/name``, or ``name`` for cluster-scoped objects."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta.get('name')}" if namespace else str(meta.get("name"))


def _version(obj: dict[str, Any]) -> str | None:
    return (obj.get("metadata") or {}).get("resourceVersion")


class TroubleLog:
    """What is wrong now, by resource, logged once per reason however many resources it hits:
    an API server that does not answer makes one line, not one per resource, and one more when
    the last of them gets through again."""

    def __init__(self) -> None:
        self._reasons: dict[str, str] = {}  # resource kind -> what fails it now

    def failed(self, kind: str, reason: str) -> None:
        if self._reasons.get(kind) == reason:
            return
        self._reasons.pop(kind, None)  # another failure in its place: not a recovery
        if reason not in self._reasons.values():
            log.warning("%s; retrying", reason)
        self._reasons[kind] = reason

    def ok(self, kind: str) -> None:
        reason = self._reasons.pop(kind, None)
        if reason is not None and reason not in self._reasons.values():
            log.info("the Kubernetes API answers again (after: %s)", reason)


class Reflector:
    """The copy of one resource's objects and where its watch resumes."""

    def __init__(self, resource: Resource, trouble: TroubleLog | None = None,
                 backoff: Callable[[], Backoff] = lambda: Backoff(BACKOFF_START, BACKOFF_MAX)) -> None:
        self.resource = resource
        self.objects: dict[str, dict[str, Any]] = {}
        self.resource_version: str | None = None
        self.synced = False  # listed (or found not installed) at least once
        self._trouble = trouble or TroubleLog()
        self._backoff = backoff()
        self._pending: Wait | None = None
        self._not_installed = False  # as last logged

    def next_step(self) -> Step:
        if self._pending is not None:
            step, self._pending = self._pending, None
            return step
        if self.resource_version is None:
            return List()
        return Watch(self.resource_version)

    def listed(self, items: list[dict[str, Any]], resource_version: str) -> Changes:
        """A complete list at ``resource_version``: the copy becomes it."""
        if self._not_installed:
            log.info("%s: %s is installed now", self.resource.kind, self.resource.crd)
            self._not_installed = False
        self._ok()
        self.resource_version = resource_version
        # A list's items carry no kind or apiVersion (the list says them once); events' do.
        typed = ({"kind": self.resource.kind, "apiVersion": self.resource.api_version, **obj}
                 for obj in items)
        return self._replace({key_of(obj): obj for obj in typed})

    def not_installed(self) -> Changes:
        """The server does not serve the (optional) resource: none of those, for now."""
        if not self.resource.optional:
            raise ValueError(f"{self.resource.kind} is not optional")
        self._ok()
        if not self._not_installed:
            log.warning("%s: the CustomResourceDefinition %s is not installed: no %s objects "
                        "until it is (checking every %.0fs)", self.resource.kind,
                        self.resource.crd, self.resource.kind, RECHECK)
            self._not_installed = True
        self.resource_version = None
        self._pending = Wait(RECHECK)
        return self._replace({})

    def watching(self) -> None:
        """The watch request was accepted: the API server is reachable again."""
        self._ok()

    def event(self, event: dict[str, Any]) -> Changes:
        """One watch event (a decoded line of the watch stream)."""
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == GONE:
                return self.gone()
            self.failed(f"{self.resource.kind}: the watch failed: {obj.get('code')} {obj.get('message')}")
            return {}
        version = _version(obj)
        if version:
            self.resource_version = version
        if kind == "BOOKMARK":
            return {}
        key = key_of(obj)
        if kind == "DELETED":
            return {key: None} if self.objects.pop(key, None) is not None else {}
        if kind in ("ADDED", "MODIFIED"):
            self.objects[key] = obj
            return {key: obj}
        return {}

    def gone(self) -> Changes:
        """410 Gone: the version was compacted away; list again (``listed`` gives the diff)."""
        log.info("%s: resourceVersion %s is too old (410 Gone): listing again",
                 self.resource.kind, self.resource_version)
        self.resource_version = None
        return {}

    def failed(self, reason: str) -> None:
        """A list or watch failed for ``reason`` (which names the resource when only it fails,
        e.g. an HTTP error on its path): the same step again, after a backoff."""
        self._trouble.failed(self.resource.kind, reason)
        self._pending = Wait(self._backoff.next())

    def _ok(self) -> None:
        self._trouble.ok(self.resource.kind)
        self._backoff.reset()

    def _replace(self, objects: dict[str, dict[str, Any]]) -> Changes:
        changes: Changes = {key: None for key in self.objects.keys() - objects.keys()}
        changes.update({key: obj for key, obj in objects.items()
                        if key not in self.objects or _version(self.objects[key]) != _version(obj)})
        self.objects = objects
        self.synced = True
        return changes

