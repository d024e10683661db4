"""What telemetry calls a pod: its workload, canonical service and revision, as Istio derives them.

Dashboards and queries written for Istio group by these names, so they are derived the same
way (docs/telemetry.md, "Workload names"):

- workload: the pod's controller. A ReplicaSet made by a Deployment (its pods carry the
  ``pod-template-hash`` label, which ends the ReplicaSet's name) is named for the Deployment; a
  Job made by a CronJob (``<cronjob>-<scheduled time in minutes>``) for the CronJob; any other
  owner by its own name; a pod with no owner by the pod's name.
- canonical service: the label ``service.istio.io/canonical-name``, else
  ``app.kubernetes.io/name``, else ``app``, else the workload name.
- canonical revision: ``service.istio.io/canonical-revision``, else ``app.kubernetes.io/version``,
  else ``version``, else ``latest``.

Metrics' ``*_app`` and ``*_version`` labels are the canonical service and revision, as ztunnel's.
"""

from __future__ import annotations

import re
from typing import Mapping

from nodemesh.controller.kube.objects import Pod

POD_TEMPLATE_HASH = "pod-template-hash"
SERVICE_LABELS = ("service.istio.io/canonical-name", "app.kubernetes.io/name", "app")
REVISION_LABELS = ("service.istio.io/canonical-revision", "app.kubernetes.io/version", "version")
DEFAULT_REVISION = "latest"
_CRONJOB_JOB = re.compile(r"(.+)-\d+")


def workload_name(pod: Pod) -> str:
    owner = pod.owner
    if owner is None:
        return pod.name
    template_hash = pod.labels.get(POD_TEMPLATE_HASH)
    if owner.kind == "ReplicaSet" and template_hash and owner.name.endswith(f"-{template_hash}"):
        return owner.name[: -len(template_hash) - 1]
    if owner.kind == "Job":
        match = _CRONJOB_JOB.fullmatch(owner.name)
        if match:
            return match.group(1)
    return owner.name


def _first_label(labels: Mapping[str, str], keys: tuple[str, ...]) -> str:
    return next((labels[k] for k in keys if labels.get(k)), "")


def canonical_service(pod: Pod) -> str:
    return _first_label(pod.labels, SERVICE_LABELS) or workload_name(pod)


def canonical_revision(pod: Pod) -> str:
    return _first_label(pod.labels, REVISION_LABELS) or DEFAULT_REVISION
