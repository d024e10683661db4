"""The simulated cluster: nodes and pods as network namespaces and cgroups on one host."""
