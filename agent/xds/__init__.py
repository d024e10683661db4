"""The agent side of the config stream."""
