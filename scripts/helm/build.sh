#!/usr/bin/env bash
# Builds Helm, which the chart's tests render with (daemonset/helm/nodemesh), from the Go module
# proxy, once per release and machine.
#
# No registry nodemesh uses ships a Helm binary; the module proxy serves helm.sh/helm, whose
# cmd/helm builds with a plain `go build` (no replace directives). go.mod and go.sum beside this
# script pin the release and every dependency's checksum.
#
# Cached: the binary under $NODEMESH_CACHE/helm/<release>/bin (default /var/cache/nodemesh), and
# Go's own module and build caches. The first build takes ~1 minute on 2 cores (when the module
# cache is cold, a minute more to download); after it, this script returns at once. Prints the
# bin directory on stdout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
release="$(awk '$1 == "require" && $2 == "helm.sh/helm/v3" {print $3}' "$here/go.mod")"
bin="${NODEMESH_CACHE:-/var/cache/nodemesh}/helm/$release/bin"

if [ ! -x "$bin/helm" ]; then
    . "$here/../gomodule.sh"
    go_module_work helm "Helm $release" "$here"
    echo "nodemesh helm build: building Helm $release into $bin; the first time takes ~1 minute" >&2
    # What Helm's own Makefile sets at link time: the version it reports, and the Kubernetes
    # version `helm template` and `helm lint` assume (its client-go's), which would be 1.20.
    k8s_minor="$(awk '$1 == "k8s.io/client-go" {split($2, v, "."); print v[2]}' "$here/go.mod")"
    ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$release"
    for pkg in pkg/chartutil pkg/lint/rules; do
        ldflags="$ldflags -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$k8s_minor"
    done
    start=$SECONDS
    (cd "$work" && go build -trimpath -o helm -ldflags="$ldflags" helm.sh/helm/v3/cmd/helm) >&2
    mkdir -p "$bin"
    install -m 0755 "$work/helm" "$bin/helm.tmp" && mv "$bin/helm.tmp" "$bin/helm"
    echo "nodemesh helm build: built in $((SECONDS - start)) s" >&2
fi
echo "$bin"
