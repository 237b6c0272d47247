#!/usr/bin/env bash
# Runs CPython's regression tests for the compiled-in modules under wazero
# and writes python-wasi/REGRTEST.md (see regrtest.py).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
cdir=$(cpython_dir)
[[ -f $cdir/Lib-test.tar.gz ]] || die "CPython stage not built; run: make python-wasi"
exec "$BUILD_PYTHON" "$PYWASI_DIR/regrtest.py" "${1:-bin/wsgi-wasm}" "$cdir/Lib-test.tar.gz" "$PYWASI_DIR/REGRTEST.md"
