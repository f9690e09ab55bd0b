#!/usr/bin/env bash
# Builds the real control-plane and registry binaries the local cluster runs, from Go modules,
# into a cache keyed by version. Nothing is downloaded except Go modules; nothing is committed.
# Usage: scripts/build-binaries.sh [--print-dir]
#   KUBEWATCHER_CACHE   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/kubewatcher)
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
CRANE_VERSION=${CRANE_VERSION:-v0.22.1}
REGISTRY_VERSION=${REGISTRY_VERSION:-v3.1.2}

cache=${KUBEWATCHER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubewatcher}
bin="$cache/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-crane-$CRANE_VERSION-registry-$REGISTRY_VERSION"
if [[ "${1:-}" == "--print-dir" ]]; then echo "$bin"; exit 0; fi

want=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet etcd kwok crane registry)
missing=()
for b in "${want[@]}"; do [[ -x "$bin/$b" ]] || missing+=("$b"); done
# kwok run on its own (not through kwokctl) has no built-in stages: it needs their manifests as config.
[[ -f "$bin/kwok-stages.yaml" ]] || missing+=(kwok-stages.yaml)
if [[ ${#missing[@]} -eq 0 ]]; then echo "$bin"; exit 0; fi

command -v go >/dev/null || { echo "build-binaries: Go is required (https://go.dev/dl) to build the control plane" >&2; exit 1; }
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
mkdir -p "$bin"
work="$cache/build"
mkdir -p "$work"
log() { echo "build-binaries: $*" >&2; }
has() { [[ " ${missing[*]} " == *" $1 "* ]]; }
start=$(date +%s)

if has kube-apiserver || has kube-controller-manager || has kube-scheduler || has kubectl || has kubelet; then
  # k8s.io/kubernetes pins every staging module to v0.0.0 and replaces it with ./staging/...;
  # a wrapper module replaces each with its published v0.X.Y instead.
  mod="$work/k8s-$K8S_VERSION"
  rm -rf "$mod" && mkdir -p "$mod"
  log "fetching k8s.io/kubernetes@$K8S_VERSION"
  upstream=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  staging_ver="v0${K8S_VERSION#v1}"
  {
    echo "module kubewatcher.local/k8s-binaries"
    echo
    grep -E '^go [0-9]' "$upstream"
    # keep upstream's godebug settings (single line or block)
    awk '/^godebug \(/{p=1} p{print} p&&/^\)/{p=0} /^godebug [^(]/{print}' "$upstream"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$upstream" | while read -r m; do
      echo "	$m => $m $staging_ver"
    done
    echo ")"
  } >"$mod/go.mod"
  ldflags="-s -w"
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  (
    cd "$mod"
    for c in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet; do
      go get "k8s.io/kubernetes/cmd/$c@$K8S_VERSION" >/dev/null 2>&1 || go get "k8s.io/kubernetes/cmd/$c@$K8S_VERSION"
    done
    for c in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet; do
      has "$c" || continue
      log "building $c $K8S_VERSION"
      go build -trimpath -ldflags "$ldflags" -o "$bin/$c.tmp" "k8s.io/kubernetes/cmd/$c" && mv "$bin/$c.tmp" "$bin/$c"
    done
  )
fi

if has etcd; then
  mod="$work/etcd-$ETCD_VERSION"
  rm -rf "$mod" && mkdir -p "$mod"
  log "building etcd $ETCD_VERSION"
  (
    cd "$mod"
    go mod init kubewatcher.local/etcd-binary >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1 || go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    go build -trimpath -ldflags "-s -w" -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3 && mv "$bin/etcd.tmp" "$bin/etcd"
  )
fi

install_tool() { # name module@version
  log "building $1 (${2})"
  local gobin="$work/gobin-$1"
  rm -rf "$gobin"
  GOBIN="$gobin" go install -trimpath -ldflags "-s -w" "$2"
  mv "$gobin/$1" "$bin/$1"
}
has kwok && install_tool kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
if has kwok-stages.yaml; then
  # The stages kwokctl uses by default (kustomize/stage/fast), from the same kwok version as the binary.
  log "writing kwok-stages.yaml (kwok $KWOK_VERSION)"
  kwok_dir=$(cd "$work" && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"
    cat "$kwok_dir/kustomize/stage/$f"
  done >"$bin/kwok-stages.yaml.tmp"
  mv "$bin/kwok-stages.yaml.tmp" "$bin/kwok-stages.yaml"
fi
has crane && install_tool crane "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"
has registry && install_tool registry "github.com/distribution/distribution/v3/cmd/registry@$REGISTRY_VERSION"

log "built ${missing[*]} in $(( $(date +%s) - start ))s into $bin"
echo "$bin"
