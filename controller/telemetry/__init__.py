"""The controller's own metrics: connected agents, pushes, certificates."""
