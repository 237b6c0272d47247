#!/usr/bin/env bash
# Interpreter speed under wazero vs native python3.11 -> python-wasi/SPEED.md.
# With --trials, also builds and times each build variant -> TRIALS.md.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
exec "$BUILD_PYTHON" "$PYWASI_DIR/speed.py" "${BIN:-bin/wsgi-wasm}" "$PYWASI_DIR/SPEED.md" "$@"
