#!/usr/bin/env bash
# Builds Keel (keel-hq/keel) from Go modules into the binary cache, for the side-by-side benchmark
# (bench/keel-vs-kubewatcher.ts). Nothing of Keel is committed or kept in the tree: its module is
# fetched through the Go module proxy and built in a wrapper module under the cache.
#
# Keel's go.mod carries replace directives (which `go install pkg@version` refuses) and its tags have
# no leading `v`, so the wrapper module requires the commit's pseudo-version and copies Keel's replace
# directives; go-sqlite3 needs cgo (gcc).
#
# Usage: scripts/build-keel.sh [--print-path]
#   prints the path of the keel binary (building it first when missing); --print-path only prints it.
#   KEEL_COMMIT  commit to build (default ffd5e05f8e23 = Keel 0.22.1)
#   KEEL_VERSION version string reported by the binary (default 0.22.1)
set -euo pipefail

KEEL_COMMIT=${KEEL_COMMIT:-ffd5e05f8e23}
KEEL_VERSION=${KEEL_VERSION:-0.22.1}
KEEL_MODULE=github.com/keel-hq/keel

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin_root=$(dirname "$(bash "$here/build-binaries.sh" --print-dir)")
out="$bin_root/keel-$KEEL_COMMIT"
if [[ "${1:-}" == "--print-path" ]]; then echo "$out/keel"; exit 0; fi
if [[ -x "$out/keel" ]]; then echo "$out/keel"; exit 0; fi

log() { echo "build-keel: $*" >&2; }
die() { log "$*"; exit 1; }
command -v go >/dev/null || die "Go is required to build Keel"
command -v gcc >/dev/null || die "gcc is required: Keel's SQLite driver (mattn/go-sqlite3) needs cgo"

cache=${KUBEWATCHER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubewatcher}
mod="$cache/build/keel-$KEEL_COMMIT"
rm -rf "$mod" && mkdir -p "$mod"
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
start=$(date +%s)

log "fetching $KEEL_MODULE@$KEEL_COMMIT"
cd "$mod"
go mod init kubewatcher.local/keel-binary >/dev/null 2>&1
# `go mod download -json` exits non-zero on failure but still prints the JSON with an "Error" field.
meta=$(go mod download -json "$KEEL_MODULE@$KEEL_COMMIT" 2>&1 || true)
error=$(sed -n 's/^[[:space:]]*"Error": "\(.*\)",*$/\1/p' <<<"$meta")
[[ -z "$error" ]] || die "cannot fetch $KEEL_MODULE@$KEEL_COMMIT from the Go module proxy: $(printf '%b' "$error")"
version=$(sed -n 's/^[[:space:]]*"Version": "\(.*\)",*$/\1/p' <<<"$meta")
upstream=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p' <<<"$meta")
[[ -n "$version" && -f "$upstream" ]] || die "unexpected answer from go mod download: $meta"
log "$KEEL_MODULE@$KEEL_COMMIT is $version"

{
  echo "module kubewatcher.local/keel-binary"
  echo
  grep -E '^go [0-9]' "$upstream"
  echo
  echo "require $KEEL_MODULE $version"
  echo
  # Keel's replace directives, single-line and block form. A replacement by a local path (./x)
  # cannot work outside Keel's own tree: stop with a clear message rather than build something else.
  awk '
    /^replace[[:space:]]*\(/ { block = 1; print; next }
    block && /^\)/ { block = 0; print; next }
    block { print; next }
    /^replace[[:space:]]/ { print }
  ' "$upstream"
} >"$mod/go.mod"
if grep -Eq '=>[[:space:]]*\.{1,2}/' "$mod/go.mod"; then
  die "Keel's go.mod replaces a module by a local path; this wrapper cannot reproduce that: $(grep -E '=>[[:space:]]*\.{1,2}/' "$mod/go.mod")"
fi

log "resolving Keel's dependencies"
go get "$KEEL_MODULE/cmd/keel@$version" >/dev/null 2>&1 || go get "$KEEL_MODULE/cmd/keel@$version"
log "building keel $KEEL_VERSION ($KEEL_COMMIT) with cgo"
mkdir -p "$out"
ldflags="-s -w -X $KEEL_MODULE/version.Version=$KEEL_VERSION -X $KEEL_MODULE/version.Revision=$KEEL_COMMIT"
CGO_ENABLED=1 go build -trimpath -ldflags "$ldflags" -o "$out/keel.tmp" "$KEEL_MODULE/cmd/keel"
mv "$out/keel.tmp" "$out/keel"
log "built keel in $(($(date +%s) - start))s into $out"
echo "$out/keel"
