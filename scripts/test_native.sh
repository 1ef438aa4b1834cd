#!/usr/bin/env bash
# Build the C library and its test program with AddressSanitizer and UBSan, run every ISA level.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${BUILD_DIR:-build/native-asan}"
cmake -S . -B "$BUILD" -G Ninja -DQT_SANITIZE=ON -DQT_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$BUILD" >/dev/null
for isa in scalar avx2 avx512; do
  QTSTUDIO_ISA=$isa "$BUILD/native/test_codecs" || exit 1
done
