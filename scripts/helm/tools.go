//go:build tools

// Helm, for rendering and linting nodemesh's chart (daemonset/helm/nodemesh) in the tests: built
// from the helm.sh/helm module of the release go.mod pins (see build.sh). Nothing of nodemesh is Go.
package helmbuild

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
