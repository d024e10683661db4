"""Where the controller gets the cluster from (a file now; the Kubernetes API later)."""
