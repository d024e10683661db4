#!/usr/bin/env bash
# Installs what nodemesh needs on a Debian host, idempotently: Debian packages (bcc, kernel
# headers, iproute2, Prometheus), the kernel-header links bcc looks for, and the project's
# virtualenv. With --kube, also what the Kubernetes tests and `nodemesh sim up --kube` run: etcd
# and iptables (kube-proxy's) from Debian, and the Kubernetes control plane built from the Go
# module proxy (scripts/kube/build.sh, cached; ~4 minutes the first time), and Helm for the
# chart's tests, from the same proxy (scripts/helm/build.sh, cached; ~1 minute).
# `make demo` and `make test` (with --kube) call it first, so a fresh machine needs nothing
# done by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(python3-bpfcc linux-headers-amd64 iproute2 bpftool nodejs python3-venv python3-dev gcc haproxy)
kube=0
if [ "${1:-}" = "--kube" ]; then
    kube=1
    # etcd-server's own service is not started here (no systemd; each control plane runs its own)
    DEBIAN_PACKAGES+=(etcd-server iptables)
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "nodemesh setup: run as root (it installs Debian packages and loads eBPF programs)." >&2
    exit 1
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "nodemesh setup: installing Debian packages: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

# Prometheus (and promtool) for `nodemesh sim up --prometheus`, the demo and the dashboard
# tests: we want the binaries only, each sim runs its own instance inside the sim. Debian's
# package also enables and starts a service scraping this host (and recommends the node
# exporter, another one): installed without recommends, under a policy-rc.d that forbids
# starting services (unless the host has its own, as containers do), then disabled.
if ! installed prometheus; then
    echo "nodemesh setup: installing Debian package prometheus (its system service stays off)"
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    [ "${#missing[@]}" -gt 0 ] || apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus
    # only right after installing it: a host's own use of that service is not ours to undo later
    if command -v systemctl >/dev/null && systemctl -q is-enabled prometheus 2>/dev/null; then
        systemctl disable --now prometheus 2>/dev/null || systemctl disable prometheus
    fi
fi

# bcc compiles against /lib/modules/$(uname -r)/{build,source}. When the running kernel has no
# headers package, our programs use only UAPI structures, so the newest installed Debian
# headers serve: Debian splits them into an arch folder (build) and a -common folder (source).
kdir="/lib/modules/$(uname -r)"
if [ ! -e "$kdir/build/include/linux/kconfig.h" ] && [ ! -e "$kdir/source/include/linux/kconfig.h" ]; then
    arch_dir=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$arch_dir" ]; then
        echo "nodemesh setup: no linux-headers-*-amd64 under /usr/src after installing linux-headers-amd64" >&2
        exit 1
    fi
    common_dir="${arch_dir%-amd64}-common"
    mkdir -p "$kdir"
    ln -sfn "$arch_dir" "$kdir/build"
    ln -sfn "$common_dir" "$kdir/source"
    echo "nodemesh setup: bcc will use headers from $arch_dir (running kernel $(uname -r) has none)"
fi

# The virtualenv sees the system site-packages, where Debian's bcc lives (it is not on PyPI).
stamp=.venv/.nodemesh-installed
if [ ! -x .venv/bin/python ] || [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    [ -x .venv/bin/python ] || /usr/bin/python3 -m venv --system-site-packages .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test,bench,kube]'
    touch "$stamp"
fi
.venv/bin/python -c "import bcc" 2>/dev/null || {
    echo "nodemesh setup: the virtualenv cannot import bcc; is python3-bpfcc installed for /usr/bin/python3?" >&2
    exit 1
}

if [ "$kube" -eq 1 ]; then
    scripts/kube/build.sh >/dev/null
    scripts/helm/build.sh >/dev/null
fi
