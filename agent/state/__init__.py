"""The agent's view of the mesh, applied from the controller's snapshots and deltas."""
