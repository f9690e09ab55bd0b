#!/usr/bin/env bash
# Builds the NetworkPolicy enforcer that test/networkpolicy.test.ts runs inside network namespaces of
# its own to prove that the shipped NetworkPolicies are enforced as intended: kube-router's firewall
# (iptables and ipsets; the test runs it with routing and the service proxy off), from its Go module,
# into the same cache as scripts/build-binaries.sh, keyed by version; prints the path of the binary.
# A test tool only: nothing of it is shipped, committed or run outside the test's namespaces.
#
# Why not kube-network-policies (SIG Network's implementation): it filters with the nftables `queue`
# expression, and this machine's kernel has NFQUEUE only as an xtables target
# (CONFIG_NETFILTER_XT_TARGET_NFQUEUE=y, CONFIG_NFT_QUEUE unset), so its rules are refused
# ("netlink receive: no such file or directory").
#
# Usage: scripts/build-netpol-enforcer.sh [--print-path]
#   KUBE_ROUTER_VERSION   kube-router release to build (default below)
#   KUBEWATCHER_CACHE     cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/kubewatcher)
set -euo pipefail

KUBE_ROUTER_VERSION=${KUBE_ROUTER_VERSION:-v2.1.0}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Next to the control-plane binaries: <cache>/bin/kube-router-<version>/kube-router
dir="$(dirname "$(bash "$root/scripts/build-binaries.sh" --print-dir)")/kube-router-$KUBE_ROUTER_VERSION"
bin="$dir/kube-router"
if [[ "${1:-}" == "--print-path" ]]; then echo "$bin"; exit 0; fi
if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi

command -v go >/dev/null || { echo "build-netpol-enforcer: Go is required (https://go.dev/dl) to build kube-router" >&2; exit 1; }
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
start=$(date +%s)
echo "build-netpol-enforcer: building kube-router $KUBE_ROUTER_VERSION" >&2
mkdir -p "$dir"
gobin="$dir/.gobin"
rm -rf "$gobin"
# The module has no replace directives, so `go install pkg@version` builds it as released.
pkg=github.com/cloudnativelabs/kube-router/v2
ldflags="-s -w -X $pkg/pkg/version.Version=$KUBE_ROUTER_VERSION"
GOBIN="$gobin" go install -trimpath -ldflags "$ldflags" "$pkg/cmd/kube-router@$KUBE_ROUTER_VERSION"
mv "$gobin/kube-router" "$bin.tmp" && mv "$bin.tmp" "$bin"
rm -rf "$gobin"
echo "build-netpol-enforcer: built kube-router $KUBE_ROUTER_VERSION in $(( $(date +%s) - start ))s into $dir" >&2
echo "$bin"
