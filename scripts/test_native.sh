#!/usr/bin/env bash
# Build the C library and its test programs with AddressSanitizer and UBSan, run every ISA level;
# on a CPU without AVX-512, the AVX-512 level emulated (SIMDe); on x86-64, the NEON level
# emulated (SIMDe); then the qmatmul test once more under ThreadSanitizer (its worker threads).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${BUILD_DIR:-build/native-asan}"
cmake -S . -B "$BUILD" -G Ninja -DQT_SANITIZE=ON -DQT_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$BUILD" >/dev/null
for isa in scalar avx2 avx512; do
  QTSTUDIO_ISA=$isa "$BUILD/native/test_codecs" || exit 1
  QTSTUDIO_ISA=$isa "$BUILD/native/test_qmatmul" || exit 1
done
# Unless this CPU has every AVX-512 extension the kernels use, the loop above left all or part
# of that level untested (skipped, or no VNNI/BF16 paths), so the same sources are built once
# more against SIMDe's emulated intrinsics and tested at QTSTUDIO_ISA=avx512, same sanitizers.
if ! bash scripts/has_avx512.sh; then
  EMU_BUILD="${EMU_BUILD_DIR:-build/native-emu}"
  cmake -S . -B "$EMU_BUILD" -G Ninja -DQT_SANITIZE=ON -DQT_BUILD_TESTS=ON -DQT_EMULATE_AVX512=ON \
    -DPython3_EXECUTABLE="$(command -v "${PYTHON:-python3}")" \
    -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build "$EMU_BUILD" >/dev/null
  QTSTUDIO_ISA=avx512 "$EMU_BUILD/native/test_codecs" || exit 1
  QTSTUDIO_ISA=avx512 "$EMU_BUILD/native/test_qmatmul" || exit 1
fi
# On x86-64 the NEON sources are otherwise never compiled: build them against SIMDe's NEON and
# run the codec tests at QTSTUDIO_ISA=neon, same sanitizers. (The NEON level has no qmatmul
# kernels of its own: its qmatmul is the portable code test_qmatmul runs at the scalar level.)
if [ "$(uname -m)" = "x86_64" ]; then
  NEON_BUILD="${NEON_BUILD_DIR:-build/native-neon-emu}"
  cmake -S . -B "$NEON_BUILD" -G Ninja -DQT_SANITIZE=ON -DQT_BUILD_TESTS=ON -DQT_EMULATE_NEON=ON \
    -DPython3_EXECUTABLE="$(command -v "${PYTHON:-python3}")" \
    -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build "$NEON_BUILD" --target test_codecs >/dev/null
  QTSTUDIO_ISA=neon "$NEON_BUILD/native/test_codecs" || exit 1
fi
TSAN_BUILD="${TSAN_BUILD_DIR:-build/native-tsan}"
cmake -S . -B "$TSAN_BUILD" -G Ninja -DQT_TSAN=ON -DQT_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$TSAN_BUILD" --target test_qmatmul >/dev/null
# Any report fails the run (exit status 66) instead of scrolling past.
TSAN_OPTIONS="halt_on_error=1 exitcode=66" "$TSAN_BUILD/native/test_qmatmul" --active || exit 1
