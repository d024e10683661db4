"""In-pod enrollment: marking a pod as meshed and opening the proxy listeners in its namespace."""
