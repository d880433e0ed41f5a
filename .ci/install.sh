#!/usr/bin/env bash
# Everything the tests need, idempotent and quiet: the jalkal package with its
# dev extras, and the pinned MicroPython WebAssembly build (Node).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
"$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  -c constraints.txt -e ".[dev]" 2>&1 | grep -v -e "^WARNING: Location" -e "^$" || true
"$PY" -c "import jalkal, jkproto" || { echo "install: jalkal did not install" >&2; exit 1; }
echo "install: jalkal $("$PY" -c 'import jalkal; print(jalkal.__version__)') (python deps ok)"
# MicroPython ESP32 stubs for type-checking the firmware against the board's API,
# in their own folder: they replace the standard library's stubs
STUBS="$ROOT/build/mpy-stubs"
STUB_PKGS="micropython-esp32-stubs==1.29.0.post1 micropython-stdlib-stubs==1.29.0.post2"
if [ "$(cat "$STUBS/.pins" 2>/dev/null)" != "$STUB_PKGS" ]; then
  rm -rf "$STUBS"
  # shellcheck disable=SC2086
  "$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --no-deps --target "$STUBS" $STUB_PKGS 2>&1 | grep -v -e "^WARNING: Location" || true
  echo "$STUB_PKGS" > "$STUBS/.pins"
fi
echo "install: MicroPython ESP32 stubs in build/mpy-stubs"
bash "$ROOT/.ci/install-wasm.sh"
bash "$ROOT/.ci/install-apt.sh"
