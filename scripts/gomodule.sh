# Sourced by the scripts that build tools from the Go module proxy (scripts/kube/build.sh,
# scripts/helm/build.sh): each keeps a go.mod, go.sum and tools.go beside it that pin what it
# builds.

# go_module_work LABEL WHAT DIR: exits with what to install unless Go is there, then sets $work
# to a temporary copy of DIR's go.mod, go.sum and tools.go, removed when the script exits.
go_module_work() {
    local label="$1" what="$2" dir="$3"
    # Go's own installer puts it in /usr/local/go, which non-login shells may not have on PATH
    command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
    command -v go >/dev/null || {
        echo "nodemesh $label build: Go $(awk '$1 == "go" {print $2}' "$dir/go.mod") or newer is needed to build $what: https://go.dev/dl (Debian's golang-go is too old)" >&2
        exit 1
    }
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    cp "$dir/go.mod" "$dir/go.sum" "$dir/tools.go" "$work/"
}
