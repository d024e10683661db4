"""The config stream to the agents (our own protocol, not xDS): per-node views, versions, acks."""
