"""The file source: the mesh model from a file of Kubernetes YAML, reloaded when it changes.

The file is polled (stat every 0.2 s) rather than watched with inotify: editors and tools that
replace the file (write a new one, rename it over) change its inode, which a stat notices
without re-arming watches. A change is loaded once the file has stayed the same for one poll,
so that a file caught halfway through a write is not loaded; edits apply within about 0.4 s.
A reload that fails keeps the last good model and logs why. What a good model warns about (a
policy rule the agent cannot enforce as written) is logged each time it is loaded, at start and on
every reload, so that it is seen by whoever just edited the file.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Callable, Mapping

from nodemesh.controller.files import Fingerprint, fingerprint
from nodemesh.controller.kube.objects import load_file
from nodemesh.controller.problems import Problems
from nodemesh.controller.sources.addresses import AddressStore
from nodemesh.identity import DEFAULT_TRUST_DOMAIN
from nodemesh.model import MeshModel

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.2


class FileSource:
    def __init__(self, path: Path, addresses: AddressStore, poll_interval: float = POLL_INTERVAL,
                 trust_domain: str = DEFAULT_TRUST_DOMAIN) -> None:
        self.path = Path(path)
        self.addresses = addresses
        self.trust_domain = trust_domain
        self.poll_interval = poll_interval
        self._loaded: Fingerprint = None

    def load(self) -> MeshModel:
        """The model as the file is now, its addresses kept; raises ConfigError or ModelError
        (or OSError for the state dir)."""
        stamp = fingerprint(self.path)
        model = self._model()
        self._loaded = stamp
        return model

    def _model(self) -> MeshModel:
        built = self.addresses.adopt(load_file(self.path), self.trust_domain)
        for warning in built.warnings:
            log.warning("%s: %s", self.path, warning)
        return built.model

    def rejected(self) -> Mapping[str, int]:
        """None: a file with a bad object is refused whole, no object is left out alone."""
        return {}

    async def watch(self, publish: Callable[[MeshModel], None]) -> None:
        """Publish the model each time the file changes to something valid; runs until cancelled."""
        seen = self._loaded
        while True:
            await asyncio.sleep(self.poll_interval)
            stamp = fingerprint(self.path)
            settled = stamp == seen
            seen = stamp
            if stamp == self._loaded or not settled:
                continue
            self._loaded = stamp
            try:
                model = self._model()
            except Problems as exc:
                log.error("%s changed but cannot be used; keeping the last good model:", self.path)
                for message in exc.errors:
                    log.error("  %s", message)
                continue
            except OSError as exc:
                log.error("%s changed but its addresses cannot be saved (%s); keeping the last "
                          "good model", self.path, exc)
                continue
            log.info("%s changed: reloaded", self.path)
            publish(model)
