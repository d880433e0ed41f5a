#!/usr/bin/env bash
# Install the pinned MicroPython WebAssembly package into sim/wasm/node_modules.
# Idempotent and quiet: does nothing when the install matches package.json and
# package-lock.json; prints one line; exits non-zero with a message on failure.
set -euo pipefail

WASM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../sim/wasm" && pwd)"
PKG="@micropython/micropython-webassembly-pyscript"
STAMP="$WASM_DIR/node_modules/.jalkal-install-stamp"

die() { echo "install-wasm: $*" >&2; exit 1; }

command -v node >/dev/null 2>&1 || die "node not found on PATH (install Node.js >= 18)"
command -v npm >/dev/null 2>&1 || die "npm not found on PATH (install npm with Node.js)"
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null)" \
  || die "cannot run node"
[ "$NODE_MAJOR" -ge 18 ] || die "node v$NODE_MAJOR is too old (need >= 18)"

cd "$WASM_DIR"
# Stamp = checksum of the manifest (+ lock), recorded after a successful install.
stamp() { cat package.json $([ -f package-lock.json ] && echo package-lock.json) | cksum; }

# Serialise concurrent installs (e.g. parallel CI jobs on one checkout).
if command -v flock >/dev/null 2>&1; then
  exec 9>"${TMPDIR:-/tmp}/jalkal-install-wasm.$(id -u).lock"
  flock 9
fi

version() { node -p "require('./node_modules/$PKG/package.json').version" 2>/dev/null; }

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp)" ] \
  && [ -f "node_modules/$PKG/micropython.mjs" ] && [ -f "node_modules/$PKG/micropython.wasm" ]; then
  echo "install-wasm: $PKG@$(version) already installed in sim/wasm/node_modules"
  exit 0
fi

if [ -f package-lock.json ]; then cmd=(npm ci); else cmd=(npm install); fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! "${cmd[@]}" --no-audit --no-fund --loglevel=error >"$log" 2>&1; then
  cat "$log" >&2
  die "'${cmd[*]}' failed in sim/wasm (see npm output above)"
fi
[ -f "node_modules/$PKG/micropython.mjs" ] || die "$PKG missing after '${cmd[*]}'"
stamp >"$STAMP"
echo "install-wasm: installed $PKG@$(version) into sim/wasm/node_modules (${cmd[*]})"
