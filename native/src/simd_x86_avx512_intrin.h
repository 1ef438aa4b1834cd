/* The one place AVX-512 translation units get their intrinsics from (instead of <immintrin.h>).
 *
 * A normal build gets the compiler's real intrinsics. The test-only CMake option
 * QT_EMULATE_AVX512 compiles the same sources with AVX2 flags against SIMDe's portable
 * implementations (native names aliased to SIMDe's), plus simd_x86_avx512_emu.h for the few
 * intrinsics SIMDe 0.8.2 lacks, so the AVX-512 level runs and is tested on a CPU without it.
 */
#ifndef QT_SIMD_X86_AVX512_INTRIN_H
#define QT_SIMD_X86_AVX512_INTRIN_H

#ifdef QT_EMULATE_AVX512
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include "simd_x86_avx512_emu.h"
#else
#include <immintrin.h>
#endif

#endif /* QT_SIMD_X86_AVX512_INTRIN_H */
