"""nodemesh: a sidecarless service mesh.

This package holds what the agent and the controller share (the wire API, the mesh model,
network-namespace helpers); ``nodemesh.agent``, ``nodemesh.controller`` and ``nodemesh.tools``
are installed from the repository's top-level ``agent/``, ``controller/`` and ``tools/``.
"""

__version__ = "0.1.0"
