"""L4 authorization: Istio's AuthorizationPolicy as the mesh model holds it, and its evaluation."""
