"""From Kubernetes objects to the mesh model, and address planning for local mode; pure, no IO."""
