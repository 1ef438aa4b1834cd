/* Pieces shared by the x86 SIMD translation units. Everything here is static inline and
 * ISA-neutral, so each file compiles it with its own target flags. */
#ifndef QT_SIMD_X86_COMMON_H
#define QT_SIMD_X86_COMMON_H

#include <stdint.h>

#include "internal.h"
#include "ref/legacy.h"

/* Finite test on the bit image, independent of -ffinite-math-only style assumptions. */
static inline int qt_isfinite_f32(float f) {
    return (qt_f32_bits(f) & 0x7f800000u) != 0x7f800000u;
}

/* The table entry for a legacy type: with an importance matrix the scalar reference does the
 * weighted search (it is not vectorized here), without one the file's own plain kernel runs.
 * Expects quantize_<type>_plain(x, y, n) defined before the expansion. */
#define QT_SIMD_IMATRIX_WRAPPERS(sfx)                                                          \
    static void quantize_q4_0_##sfx(const float *x, void *y, int64_t n, const float *qw) {     \
        if (qw) qt_ref_quantize_q4_0_imatrix(x, y, n, qw);                                     \
        else quantize_q4_0_plain(x, y, n);                                                     \
    }                                                                                          \
    static void quantize_q4_1_##sfx(const float *x, void *y, int64_t n, const float *qw) {     \
        if (qw) qt_ref_quantize_q4_1_imatrix(x, y, n, qw);                                     \
        else quantize_q4_1_plain(x, y, n);                                                     \
    }                                                                                          \
    static void quantize_q5_0_##sfx(const float *x, void *y, int64_t n, const float *qw) {     \
        if (qw) qt_ref_quantize_q5_0_imatrix(x, y, n, qw);                                     \
        else quantize_q5_0_plain(x, y, n);                                                     \
    }                                                                                          \
    static void quantize_q5_1_##sfx(const float *x, void *y, int64_t n, const float *qw) {     \
        if (qw) qt_ref_quantize_q5_1_imatrix(x, y, n, qw);                                     \
        else quantize_q5_1_plain(x, y, n);                                                     \
    }                                                                                          \
    /* ggml's Q8_0 takes no importance matrix. */                                              \
    static void quantize_q8_0_##sfx(const float *x, void *y, int64_t n, const float *qw) {     \
        (void)qw;                                                                              \
        quantize_q8_0_plain(x, y, n);                                                          \
    }

#endif /* QT_SIMD_X86_COMMON_H */
