#!/usr/bin/env bash
# Install everything the project needs, then run the whole test suite:
# lint, the architecture contract, the C library under sanitizers, and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
PY="${PYTHON:-python3}"
# Console scripts (lint-imports, qtstudio-cli) must come from the same environment as $PY.
PATH="$("$PY" -c 'import os, sys; print(os.path.dirname(sys.executable))'):$PATH"
export PATH

echo "== install"
# torch first and pinned: any other spelling pulls a multi-GB CUDA build.
"$PY" -m pip install -q "torch==2.13.0"
"$PY" -m pip install -q -e ".[dev,ray]" "torch==2.13.0"
if [ "${QTSTUDIO_SKIP_LLAMA:-0}" != "1" ]; then
  # llama.cpp (built from source by this package) is the independent oracle for GGUF interop.
  "$PY" -m pip install -q "llama-cpp-python==0.3.36" "torch==2.13.0"
fi

echo "== ruff"
"$PY" -m ruff check .

echo "== import contract"
lint-imports

echo "== native library under ASan/UBSan"
bash scripts/test_native.sh

echo "== pytest"
"$PY" -m pytest "$@"
