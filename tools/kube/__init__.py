"""A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
kube-proxy) for the tests and the simulated cluster: its PKI, its components' command lines, and
a local one run as child processes (docs/kubernetes-testing.md)."""
