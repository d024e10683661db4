"""The controller side of the config stream: per-node views, versions, acks."""
