/* Scalar legacy-block routines that the SIMD levels reuse for paths they do not vectorize. */
#ifndef QT_REF_LEGACY_H
#define QT_REF_LEGACY_H

#include <stdint.h>

/* One row of n values (a multiple of 32) into blocks: plain, or weighted by n importance values
 * qw (ggml's quantize_row_*_impl, in legacy_imatrix.c). Q8_0 has no weighted variant. */
typedef void qt_legacy_plain_fn(const float *x, void *y, int64_t n);
typedef void qt_legacy_imatrix_fn(const float *x, void *y, int64_t n, const float *qw);

qt_legacy_plain_fn qt_ref_quantize_q4_0_plain, qt_ref_quantize_q4_1_plain,
    qt_ref_quantize_q5_0_plain, qt_ref_quantize_q5_1_plain, qt_ref_quantize_q8_0_plain;
qt_legacy_imatrix_fn qt_ref_quantize_q4_0_imatrix, qt_ref_quantize_q4_1_imatrix,
    qt_ref_quantize_q5_0_imatrix, qt_ref_quantize_q5_1_imatrix;

#endif /* QT_REF_LEGACY_H */
