"""The Kubernetes source: list-then-watch of the resources the mesh reads (``reflector``, sans-IO;
``watch``, its IO), and the source that builds the model from them (``source``)."""
