#!/usr/bin/env bash
# Builds helm from its Go module into the same cache as scripts/build-binaries.sh, keyed by version,
# and prints the path of the binary. Nothing is downloaded except Go modules; nothing is committed.
# Usage: scripts/build-helm.sh [--print-path]
#   HELM_VERSION        helm release to build (default below)
#   KUBEWATCHER_CACHE   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/kubewatcher)
set -euo pipefail

HELM_VERSION=${HELM_VERSION:-v3.22.0}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Next to the control-plane binaries: <cache>/bin/helm-<version>/helm
dir="$(dirname "$(bash "$root/scripts/build-binaries.sh" --print-dir)")/helm-$HELM_VERSION"
helm="$dir/helm"
if [[ "${1:-}" == "--print-path" ]]; then echo "$helm"; exit 0; fi
if [[ -x "$helm" ]]; then echo "$helm"; exit 0; fi

command -v go >/dev/null || { echo "build-helm: Go is required (https://go.dev/dl) to build helm" >&2; exit 1; }
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
major=${HELM_VERSION%%.*}
start=$(date +%s)
echo "build-helm: building helm $HELM_VERSION" >&2
mkdir -p "$dir"
gobin="$dir/.gobin"
rm -rf "$gobin"
# The same -X stamps as helm's Makefile: the release version, and the Kubernetes version that
# `helm template` and `helm lint` assume (derived from the client-go helm builds with; the default
# would be v1.20, too old for the chart's kubeVersion).
gomod=$(cd "$dir" && go mod download -json "helm.sh/helm/$major@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
client_go=$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$gomod" | head -1)
[[ -n "$client_go" ]] || { echo "build-helm: cannot find the client-go version in $gomod" >&2; exit 1; }
pkg="helm.sh/helm/$major"
ldflags="-s -w -X $pkg/internal/version.version=$HELM_VERSION -X $pkg/internal/version.gitTreeState=clean"
for p in "$pkg/pkg/lint/rules" "$pkg/pkg/chartutil"; do
  ldflags="$ldflags -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$client_go"
done
GOBIN="$gobin" go install -trimpath -ldflags "$ldflags" "$pkg/cmd/helm@$HELM_VERSION"
mv "$gobin/helm" "$helm.tmp" && mv "$helm.tmp" "$helm"
rm -rf "$gobin"
echo "build-helm: built helm $HELM_VERSION in $(( $(date +%s) - start ))s into $dir" >&2
echo "$helm"
