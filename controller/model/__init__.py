"""From Kubernetes objects to the mesh model, and address assignment for local mode."""
