//go:build tools

// The Kubernetes components nodemesh's tests and `nodemesh sim up --kube` run, built from the
// k8s.io/kubernetes module of the release go.mod pins (see build.sh). Nothing of nodemesh is Go.
package kubebuild

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
