#!/usr/bin/env bash
# Builds kube-network-policies (sigs.k8s.io/kube-network-policies, the NetworkPolicy implementation of
# SIG Network: nftables rules that queue each connection's first packet to a userspace verdict) into the
# same cache as scripts/build-binaries.sh, keyed by version, and prints the path of the binary.
# test/networkpolicy.test.ts runs it inside network namespaces of its own to prove that the shipped
# NetworkPolicies are enforced as intended. It is a test tool: nothing of it is shipped or committed.
# Usage: scripts/build-netpol-enforcer.sh [--print-path]
#   KNP_VERSION         kube-network-policies release to build (default below)
#   KUBEWATCHER_CACHE   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/kubewatcher)
set -euo pipefail

KNP_VERSION=${KNP_VERSION:-v0.8.0}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Next to the control-plane binaries: <cache>/bin/kube-network-policies-<version>/kube-network-policies
dir="$(dirname "$(bash "$root/scripts/build-binaries.sh" --print-dir)")/kube-network-policies-$KNP_VERSION"
knp="$dir/kube-network-policies"
if [[ "${1:-}" == "--print-path" ]]; then echo "$knp"; exit 0; fi
if [[ -x "$knp" ]]; then echo "$knp"; exit 0; fi

command -v go >/dev/null || { echo "build-netpol-enforcer: Go is required (https://go.dev/dl) to build kube-network-policies" >&2; exit 1; }
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
start=$(date +%s)
echo "build-netpol-enforcer: building kube-network-policies $KNP_VERSION" >&2
mkdir -p "$dir"
gobin="$dir/.gobin"
rm -rf "$gobin"
# The module has no replace directives, so `go install pkg@version` builds it as released; its main
# package is ./cmd, hence the binary's name `cmd`.
GOBIN="$gobin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kube-network-policies/cmd@$KNP_VERSION"
mv "$gobin/cmd" "$knp.tmp" && mv "$knp.tmp" "$knp"
rm -rf "$gobin"
echo "build-netpol-enforcer: built kube-network-policies $KNP_VERSION in $(( $(date +%s) - start ))s into $dir" >&2
echo "$knp"
