#!/usr/bin/env bash
# Sourced by every entry script: makes Node.js 24 and the pinned pnpm available on PATH and installs
# the workspace's dependencies. Installs from the npm registry only, into a cache outside the tree.
#   KUBEWATCHER_CACHE   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/kubewatcher)
NODE_VERSION=24.21.0
PNPM_VERSION=10.34.8
KUBEWATCHER_CACHE=${KUBEWATCHER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubewatcher}
export KUBEWATCHER_CACHE

_kw_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_kw_log() { echo "bootstrap: $*" >&2; }

_kw_node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if [[ $(_kw_node_major) -lt 24 ]]; then
  _kw_tools="$KUBEWATCHER_CACHE/toolchain/node-$NODE_VERSION"
  if [[ ! -x "$_kw_tools/node_modules/.bin/node" ]]; then
    command -v npm >/dev/null || { _kw_log "npm is required to install Node.js $NODE_VERSION"; return 1 2>/dev/null || exit 1; }
    _kw_log "installing Node.js $NODE_VERSION from the npm registry into $_kw_tools"
    mkdir -p "$_kw_tools"
    npm install --no-audit --no-fund --loglevel=error --prefix "$_kw_tools" "node@$NODE_VERSION" >&2
  fi
  export PATH="$_kw_tools/node_modules/.bin:$PATH"
fi

if [[ "$(pnpm --version 2>/dev/null)" != "$PNPM_VERSION" ]]; then
  _kw_pnpm="$KUBEWATCHER_CACHE/toolchain/pnpm-$PNPM_VERSION"
  if [[ ! -x "$_kw_pnpm/node_modules/.bin/pnpm" ]]; then
    _kw_log "installing pnpm $PNPM_VERSION into $_kw_pnpm"
    mkdir -p "$_kw_pnpm"
    npm install --no-audit --no-fund --loglevel=error --prefix "$_kw_pnpm" "pnpm@$PNPM_VERSION" >&2
  fi
  export PATH="$_kw_pnpm/node_modules/.bin:$PATH"
fi

# Install workspace dependencies when the lockfile changed since the last install.
_kw_stamp="$_kw_root/node_modules/.kubewatcher-lock"
if [[ ! -f "$_kw_stamp" ]] || ! cmp -s "$_kw_root/pnpm-lock.yaml" "$_kw_stamp"; then
  _kw_log "installing workspace dependencies (pnpm install --frozen-lockfile)"
  (cd "$_kw_root" && CI=true pnpm install --frozen-lockfile --reporter=append-only >&2) || { return 1 2>/dev/null || exit 1; }
  cp "$_kw_root/pnpm-lock.yaml" "$_kw_stamp"
fi
unset -f _kw_log _kw_node_major
