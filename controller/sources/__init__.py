"""Where the controller gets the cluster from (a file now; the Kubernetes API later), and where
it keeps the addresses it assigns in local mode."""
