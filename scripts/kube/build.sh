#!/usr/bin/env bash
# Builds the Kubernetes control plane nodemesh tests against (kube-apiserver,
# kube-controller-manager, kube-scheduler, kube-proxy) from the Go module proxy, once per
# release and machine.
#
# No registry ships these binaries, but the module proxy serves k8s.io/kubernetes. Its own go.mod
# points the k8s.io/* staging modules at ./staging, which a module download does not have; our
# go.mod (beside this script) requires k8s.io/kubernetes and replaces each staging module with
# its published v0.X.Y release, as projects embedding Kubernetes components do.
#
# The release is stamped into the binaries (k8s.io/component-base/version, as Kubernetes' own
# build does), so that the API server reports it: clients such as Helm check it.
#
# Cached: the binaries under $NODEMESH_CACHE/kube/<release>/bin (default /var/cache/nodemesh),
# rebuilt when this recipe (this script, go.mod, go.sum, tools.go) changes, and Go's own module
# and build caches. The first build takes ~4 minutes on 2 cores; after it, this script returns at
# once. Prints the bin directory on stdout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
release="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/go.mod")"
bin="${NODEMESH_CACHE:-/var/cache/nodemesh}/kube/$release/bin"
components=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy)

recipe="$(cat "$0" "$here/go.mod" "$here/go.sum" "$here/tools.go" | sha256sum | cut -d' ' -f1)"
complete=1
for c in "${components[@]}"; do [ -x "$bin/$c" ] || complete=0; done
[ "$(cat "$bin/.recipe" 2>/dev/null)" = "$recipe" ] || complete=0
if [ "$complete" -eq 0 ]; then
    . "$here/../gomodule.sh"
    go_module_work kube "Kubernetes $release" "$here"
    echo "nodemesh kube build: building Kubernetes $release (${components[*]}) into $bin; the first time takes ~4 minutes" >&2
    mkdir -p "$work/bin"
    start=$SECONDS
    major="${release#v}"; major="${major%%.*}"
    minor="${release#v*.}"; minor="${minor%%.*}"
    version=k8s.io/component-base/version
    ldflags="-s -w -X $version.gitVersion=$release -X $version.gitMajor=$major -X $version.gitMinor=$minor -X $version.gitTreeState=clean"
    (cd "$work" && GOFLAGS=-mod=mod go build -trimpath -ldflags="$ldflags" -o bin/ \
        $(printf 'k8s.io/kubernetes/cmd/%s ' "${components[@]}")) >&2
    mkdir -p "$bin"
    for c in "${components[@]}"; do install -m 0755 "$work/bin/$c" "$bin/$c.tmp" && mv "$bin/$c.tmp" "$bin/$c"; done
    echo "$recipe" > "$bin/.recipe"
    echo "nodemesh kube build: built in $((SECONDS - start)) s" >&2
fi
echo "$bin"
