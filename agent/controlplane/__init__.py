"""The agent's link to the controller: the authenticated channel, the config subscription and
certificate signing. Our own protocol (``nodemesh/api/mesh.proto``), not Envoy's xDS."""
