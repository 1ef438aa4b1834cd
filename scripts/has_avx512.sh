#!/usr/bin/env bash
# Exit 0 when this CPU runs every AVX-512 extension the kernels use (F, BW, VL, VNNI, BF16), so
# the real AVX-512 level is tested; otherwise the test scripts also test the emulated one.
set -euo pipefail
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
for f in avx512f avx512bw avx512vl avx512_vnni avx512_bf16; do
  [[ " $flags " == *" $f "* ]] || exit 1
done
