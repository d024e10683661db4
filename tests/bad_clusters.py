"""The demo cluster with one mistake that only the model sees: every field parses, but the
objects do not fit together. Each comes with the line a user must be shown.

Used by the planner's unit tests and by `sim up` run for real, so both check the same cases.
"""

from __future__ import annotations

from pathlib import Path

DEMO = Path(__file__).parents[1] / "tools" / "sim" / "examples" / "demo.yaml"

_SECOND_SERVICE = """---
apiVersion: v1
kind: Service
metadata: {name: catalog2, namespace: shop}
spec: {clusterIP: 10.96.0.50, selector: {app: catalog}, ports: [{port: 81, targetPort: 8080}]}
"""


def _demo(old: str, new: str, extra: str = "") -> str:
    text = DEMO.read_text()
    assert text.count(old) == 1, old
    return text.replace(old, new) + extra


# name -> (cluster file, what the user is told)
MODEL_ERRORS: dict[str, tuple[str, str]] = {
    "mtls-mode typo": (
        _demo("    nodemesh.io/mesh: enabled\n",
              "    nodemesh.io/mesh: enabled\n    nodemesh.io/mtls-mode: STRIKT\n"),
        "Namespace shop: metadata.labels.nodemesh.io/mtls-mode: 'STRIKT' is not STRICT or PERMISSIVE"),
    "duplicate clusterIP": (
        _demo("spec:\n  selector:\n    app: catalog\n",
              "spec:\n  clusterIP: 10.96.0.50\n  selector:\n    app: catalog\n", _SECOND_SERVICE),
        "Service shop/catalog2: spec.clusterIP: 10.96.0.50 is already the address of Service shop/catalog"),
    "undeclared targetPort name": (
        _demo("    app: catalog\n  ports:\n    - name: tcp\n      port: 80\n      targetPort: 8080",
              "    app: catalog\n  ports:\n    - name: tcp\n      port: 80\n      targetPort: http"),
        "Service shop/catalog: spec.ports[0].targetPort: endpoint Pod shop/catalog-a has no container "
        "port named 'http'"),
}
