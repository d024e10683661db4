"""Where the addresses assigned in local mode are kept: ``state_dir/ipam.json``.

The model layer plans addresses without IO (``model/ipam.py``); keeping them is the source's
job, and it does it only once a model built whole, so that a refused model or reload leaves the
address state as it was.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from pathlib import Path

from nodemesh.controller.files import write_atomically
from nodemesh.controller.kube.objects import KubeObjects
from nodemesh.controller.model.build import Built, build_model
from nodemesh.controller.model.ipam import Assignments, Plan
from nodemesh.controller.problems import Problems
from nodemesh.identity import DEFAULT_TRUST_DOMAIN
from nodemesh.model import MeshModel

STATE_FILE = "ipam.json"


class AddressStateError(Problems):
    """The address state file cannot be used; the message says what to do."""


class AddressStore:
    def __init__(self, state_dir: Path) -> None:
        """Reads the state now; AddressStateError if it is unreadable, OSError if the state
        directory itself is unusable."""
        self.path = Path(state_dir) / STATE_FILE
        self.assigned = self._load()

    def model_for(self, objects: KubeObjects, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> MeshModel:
        """The model of ``objects``, its addresses kept once it built whole. Raises ModelError
        (nothing kept), or OSError when the state cannot be written (nothing adopted)."""
        return self.adopt(objects, trust_domain).model

    def adopt(self, objects: KubeObjects, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> Built:
        """As ``model_for``, with what was built beside the model (its warnings)."""
        built = build_model(objects, self.assigned, trust_domain)
        assert built.addresses is not None  # planned from self.assigned
        self.commit(built.addresses)
        return built

    def commit(self, plan: Plan) -> None:
        """Adopt a plan without errors, writing it first (atomically) when it changed anything.

        Raises OSError when the state cannot be written: then nothing is adopted, so that no
        address is handed out that a restart would forget.
        """
        if plan.errors:
            raise ValueError("a plan with errors cannot be committed")
        if plan.state != self.assigned:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, _to_json(plan.state).encode())
        self.assigned = plan.state

    def _load(self) -> Assignments:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return Assignments()
        # any other OSError propagates: the state directory itself is unusable
        try:
            data = json.loads(text)
            return Assignments(
                nodes={str(k): int(v) for k, v in data["nodes"].items()},
                pods={str(k): str(IPv4Address(v)) for k, v in data["pods"].items()},
                services={str(k): str(IPv4Address(v)) for k, v in data["services"].items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise AddressStateError([f"{self.path}: unreadable address state ({exc}); fix it, or "
                                     "delete it to assign every address afresh"]) from None


def _to_json(assigned: Assignments) -> str:
    return json.dumps({"nodes": assigned.nodes, "pods": assigned.pods, "services": assigned.services},
                      indent=2, sort_keys=True) + "\n"

