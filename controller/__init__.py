"""The controller: builds the mesh model from a source and streams it to the agents."""
