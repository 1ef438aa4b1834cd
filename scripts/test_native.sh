#!/usr/bin/env bash
# Build the C library and its test programs with AddressSanitizer and UBSan, run every ISA level;
# then the qmatmul test once more under ThreadSanitizer (its worker threads).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${BUILD_DIR:-build/native-asan}"
cmake -S . -B "$BUILD" -G Ninja -DQT_SANITIZE=ON -DQT_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$BUILD" >/dev/null
for isa in scalar avx2 avx512; do
  QTSTUDIO_ISA=$isa "$BUILD/native/test_codecs" || exit 1
  QTSTUDIO_ISA=$isa "$BUILD/native/test_qmatmul" || exit 1
done
TSAN_BUILD="${TSAN_BUILD_DIR:-build/native-tsan}"
cmake -S . -B "$TSAN_BUILD" -G Ninja -DQT_TSAN=ON -DQT_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$TSAN_BUILD" --target test_qmatmul >/dev/null
# Any report fails the run (exit status 66) instead of scrolling past.
TSAN_OPTIONS="halt_on_error=1 exitcode=66" "$TSAN_BUILD/native/test_qmatmul" --active || exit 1
