#!/usr/bin/env bash
# Cross-build the C library and its test program for aarch64 and run them under qemu, so the NEON
# kernels are checked against the scalar reference on an x86 machine. Needs gcc-aarch64-linux-gnu
# and qemu-user (Debian/Ubuntu package names); exits 0 with a notice when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  echo "skip: aarch64-linux-gnu-gcc and qemu-aarch64 are needed (apt-get install gcc-aarch64-linux-gnu qemu-user)"
  exit 0
fi
BUILD="${BUILD_DIR:-build/native-aarch64}"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
  -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc -DQT_BUILD_TESTS=ON >/dev/null
cmake --build "$BUILD" >/dev/null
for isa in scalar neon; do
  QTSTUDIO_ISA=$isa qemu-aarch64 -L /usr/aarch64-linux-gnu "$BUILD/native/test_codecs" || exit 1
  QTSTUDIO_ISA=$isa qemu-aarch64 -L /usr/aarch64-linux-gnu "$BUILD/native/test_qmatmul" --active \
    || exit 1
done
