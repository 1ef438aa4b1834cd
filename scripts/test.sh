#!/usr/bin/env bash
# Install everything the project needs, then run the whole test suite:
# lint, the architecture contract, the C library under sanitizers, pytest, and the level tests
# on an emulated AVX-512 level where the CPU lacks it and on an emulated NEON level on x86-64.
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
# the ray extra: tests/test_ray.py starts a real local cluster
"$PY" -m pip install -q -e ".[dev,ray]" "torch==2.13.0"
LLAMA="llama-cpp-python==0.3.36"
if [ "${QTSTUDIO_SKIP_LLAMA:-0}" = "1" ]; then
  echo "   llama.cpp interop left out (QTSTUDIO_SKIP_LLAMA=1)"
elif "$PY" -c 'import importlib.metadata as m, sys; sys.exit(m.version("llama-cpp-python") != "0.3.36")' 2> /dev/null; then
  echo "   $LLAMA already installed"
else
  # llama.cpp (built from source by this package) is the independent oracle for GGUF interop.
  # A cold build takes 15-30 min on 2 cores; pip keeps the wheel in its cache (never pass
  # --no-cache-dir or --force-reinstall here), so it is built once per machine. Its compiler
  # progress is shown as one line per percent; the whole log goes to build/llama-cpp-build.log.
  echo "   $LLAMA: building llama.cpp from source unless pip's cache has the wheel (first time:"
  echo "   15-30 min on a 2-core machine); progress below"
  mkdir -p build
  LOG=build/llama-cpp-build.log
  start=$SECONDS
  show_progress() {
    local line last=""
    while IFS= read -r line; do
      printf '%s\n' "$line" >> "$LOG"
      if [[ $line =~ \[\ *([0-9]+)%\] ]]; then
        if [[ ${BASH_REMATCH[1]} != "$last" ]]; then
          last=${BASH_REMATCH[1]}
          printf '   llama.cpp build %3s%% (%dm%02ds)\n' "$last" $(((SECONDS - start) / 60)) \
            $(((SECONDS - start) % 60))
        fi
      elif [[ $line =~ ^[[:space:]]*(Collecting|Building\ wheel|Created\ wheel|Successfully|ERROR|error:)|Using\ cached ]]; then
        printf '   %s\n' "$line"
      fi
    done
  }
  : > "$LOG"
  if ! "$PY" -m pip install -v "$LLAMA" "torch==2.13.0" 2>&1 | show_progress; then
    tail -40 "$LOG" >&2
    echo "llama-cpp-python failed to build; full log: $LOG" >&2
    exit 1
  fi
  echo "   $LLAMA ready after $(((SECONDS - start) / 60))m$(((SECONDS - start) % 60))s"
fi

echo "== ruff"
"$PY" -m ruff check .

echo "== import contract"
lint-imports

echo "== native library under ASan/UBSan"
bash scripts/test_native.sh

echo "== pytest"
"$PY" -m pytest "$@"

# emulated_level OPTION LEVEL BUILD_DIR TEST_FILE...: build the library with a test-only SIMDe
# emulation (-DOPTION=ON) and run the given level tests on that level alone.
emulated_level() {
  local option=$1 level=$2 dir=$3
  shift 3
  cmake -S . -B "$dir" -G Ninja "-D$option=ON" -DCMAKE_BUILD_TYPE=Release \
    -DPython3_EXECUTABLE="$(command -v "$PY")" >/dev/null
  cmake --build "$dir" --target qtnative >/dev/null
  QTSTUDIO_NATIVE_LIB="$PWD/$dir/native/libqtnative.so" QTSTUDIO_TEST_LEVELS=$level \
    "$PY" -m pytest -q -m "not slow" "$@"
}

if ! bash scripts/has_avx512.sh; then
  # The level tests once more, on the AVX-512 level emulated with SIMDe (this CPU lacks it, or
  # some of its extensions): golden vectors, SIMD == scalar, the K-quant searches, qmatmul.
  echo "== AVX-512 level emulated (SIMDe): golden and level tests"
  emulated_level QT_EMULATE_AVX512 avx512 "${EMU_LIB_BUILD_DIR:-build/native-emu-release}" \
    tests/test_golden.py tests/test_native_levels.py tests/test_kquant_levels.py \
    tests/test_qmatmul.py
fi

if [ "$(uname -m)" = "x86_64" ]; then
  # The NEON level's codecs once more on x86-64, built against SIMDe's NEON: golden vectors,
  # SIMD == scalar, the K-quant searches (its qmatmul is the portable code tested above).
  echo "== NEON level emulated (SIMDe): golden and level tests"
  emulated_level QT_EMULATE_NEON neon "${NEON_LIB_BUILD_DIR:-build/native-neon-emu-release}" \
    tests/test_golden.py tests/test_native_levels.py tests/test_kquant_levels.py
fi

if [ "${QTSTUDIO_SKIP_FRESH:-0}" != "1" ]; then
  echo "== fresh install (plain wheel in a new venv: README examples, window under Xvfb)"
  PYTHON="$PY" bash scripts/ci_fresh_install.sh
fi
