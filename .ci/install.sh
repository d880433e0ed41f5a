#!/usr/bin/env bash
# Everything the tests need, idempotent and quiet: the jalkal package with its
# dev extras, and the pinned MicroPython WebAssembly build (Node).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
"$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  -e ".[dev]" 2>&1 | grep -v -e "^WARNING: Location" -e "^$" || true
"$PY" -c "import jalkal, jkproto" || { echo "install: jalkal did not install" >&2; exit 1; }
echo "install: jalkal $("$PY" -c 'import jalkal; print(jalkal.__version__)') (python deps ok)"
bash "$ROOT/.ci/install-wasm.sh"
