/* Pieces shared by the x86 SIMD translation units. Everything here is static inline and
 * ISA-neutral (SSE3 at most, which every x86 level here has), so each file compiles it with
 * its own target flags. */
#ifndef QT_SIMD_X86_COMMON_H
#define QT_SIMD_X86_COMMON_H

#include <immintrin.h>
#include <stdint.h>

#include "internal.h"

/* Finite test on the bit image, independent of -ffinite-math-only style assumptions. */
static inline int qt_isfinite_f32(float f) {
    return (qt_f32_bits(f) & 0x7f800000u) != 0x7f800000u;
}

/* Largest and smallest of four floats; the wider reductions fold down to these. */
static inline float qt_hmax_ps128(__m128 m) {
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline float qt_hmin_ps128(__m128 m) {
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    m = _mm_min_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

#endif /* QT_SIMD_X86_COMMON_H */
