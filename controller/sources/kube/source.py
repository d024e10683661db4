"""The Kubernetes source: the mesh model from the API server's objects, rebuilt as they change.

Each resource is listed then watched (``reflector.py``, ``watch.py``); each object is parsed on
its own when it arrives, by the parsers the file source uses (``kube.objects.parse_object``), and
the model is built from every object that parsed and takes part (``model.partial``): a bad object
is left out alone, with its problems logged once per change of them, and the others apply.
Bursts of changes make one rebuild (``debounce.py``), published only when the model changed.

``start`` returns once every resource has been listed (or found not installed): the controller
serves no agent a model made of half a cluster. While the API server cannot be reached it retries,
with a log line per change of the trouble, not per retry.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any, Callable, Mapping

from kubernetes_asyncio import client

from nodemesh.controller.kube.objects import ConfigError, parse_object
from nodemesh.controller.model.partial import build_leaving_out
from nodemesh.controller.sources.kube import watch
from nodemesh.controller.sources.kube.debounce import Debounce
from nodemesh.controller.sources.kube.reflector import Changes, Reflector, TroubleLog
from nodemesh.controller.sources.kube.resources import RESOURCES, Resource
from nodemesh.identity import DEFAULT_TRUST_DOMAIN
from nodemesh.model import MeshModel

log = logging.getLogger(__name__)


class KubeSource:
    def __init__(self, api: client.ApiClient, trust_domain: str = DEFAULT_TRUST_DOMAIN,
                 resources: tuple[Resource, ...] = RESOURCES, debounce: Debounce | None = None) -> None:
        self.api = api
        self.trust_domain = trust_domain
        trouble = TroubleLog()
        self._reflectors = [Reflector(resource, trouble) for resource in resources]
        self._debounce = debounce or Debounce()
        self._parsed: dict[str, tuple[str, Any]] = {}  # object label -> (kind, value)
        self._unparsed: dict[str, list[str]] = {}  # object label -> its problems
        self._reported: dict[str, tuple[str, ...]] = {}  # what was last logged, by object label
        self._changed: set[str] = set()  # labels of objects changed since the last report
        self._warned: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._model: MeshModel | None = None
        self._rejected: Counter[str] = Counter()
        self._died: BaseException | None = None  # a watch task that ended: a bug

    async def start(self) -> None:
        """Watch every resource; return once each has been listed and the first model built."""
        self._tasks = [asyncio.create_task(watch.run(self.api, r, self._changer(r.resource.kind)),
                                           name=f"watch-{r.resource.plural}")
                       for r in self._reflectors]
        for task in self._tasks:
            task.add_done_callback(self._task_done)
        while not all(r.synced for r in self._reflectors):
            self._wake.clear()
            await self._wake.wait()
            self._raise_if_died()
        self._debounce.built()  # the listing's changes are in this first model: no rebuild for them
        self._model = self._build()
        log.info("listed every resource from %s: %d workloads, %d services, %d nodes",
                 self.api.configuration.host, len(self._model.workloads),
                 len(self._model.services), len(self._model.nodes))

    def load(self) -> MeshModel:
        """The model of the first complete list (``start`` must have returned)."""
        if self._model is None:
            raise RuntimeError("KubeSource.load() before start()")
        return self._model

    async def watch(self, publish: Callable[[MeshModel], None]) -> None:
        """Publish the model after each burst of changes, when it changed; until cancelled
        (which stops the watches)."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._raise_if_died()
                due = self._debounce.due()
                self._wake.clear()
                if due is None:
                    await self._wake.wait()
                    continue
                if due > loop.time():
                    try:
                        await asyncio.wait_for(self._wake.wait(), due - loop.time())
                    except TimeoutError:
                        pass
                    continue
                self._debounce.built()
                model = self._build()
                if model != self._model:
                    self._model = model
                    publish(model)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """A watch runs until cancelled: one that ended otherwise is a bug, raised by the source."""
        if not task.cancelled():
            self._died = task.exception() or RuntimeError(f"{task.get_name()} ended")
            self._wake.set()

    def _raise_if_died(self) -> None:
        if self._died is not None:
            raise self._died

    def _changer(self, kind: str) -> Callable[[Changes], None]:
        def changed(changes: Changes) -> None:
            for key, obj in changes.items():
                self._apply(kind, key, obj)
            if changes:  # a bookmark or an empty relist changes nothing to rebuild
                self._debounce.changed(asyncio.get_running_loop().time())
            self._wake.set()  # always: a reflector may have synced
        return changed

    def _apply(self, kind: str, key: str, obj: dict[str, Any] | None) -> None:
        label = f"{kind} {key}"  # as the parsers name objects
        self._changed.add(label)
        self._parsed.pop(label, None)
        self._unparsed.pop(label, None)
        if obj is None:
            return
        try:
            self._parsed[label] = parse_object(obj, label)
        except ConfigError as exc:
            self._unparsed[label] = exc.errors

    def _build(self) -> MeshModel:
        built, left_out = build_leaving_out(self._parsed, self.trust_domain)
        self._report({**self._unparsed, **left_out})
        for warning in set(built.warnings) - self._warned:
            log.warning("%s", warning)
        self._warned = set(built.warnings)
        return built.model

    def _report(self, rejected: dict[str, list[str]]) -> None:
        """Log each object left out when it or its problems change (whoever applies it again sees
        why), not at every rebuild; and when it is taken in again."""
        for label, problems in rejected.items():
            if label in self._changed or self._reported.get(label) != tuple(problems):
                log.error("left out of the mesh: %s", "; ".join(problems))
        for label in self._reported.keys() - rejected.keys():
            log.info("%s is no longer left out (fixed, or deleted)", label)
        self._reported = {label: tuple(problems) for label, problems in rejected.items()}
        self._changed.clear()
        self._rejected = Counter(label.split(" ", 1)[0] for label in rejected)

    def rejected(self) -> Mapping[str, int]:
        """How many objects are left out now, by kind (a metric; read from its thread: one read)."""
        return self._rejected
