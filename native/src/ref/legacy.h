/* Scalar legacy-block routines that the SIMD levels reuse for paths they do not vectorize. */
#ifndef QT_REF_LEGACY_H
#define QT_REF_LEGACY_H

#include <stdint.h>

void qt_ref_quantize_q4_0_plain(const float *x, void *y, int64_t n);
void qt_ref_quantize_q4_1_plain(const float *x, void *y, int64_t n);
void qt_ref_quantize_q5_0_plain(const float *x, void *y, int64_t n);
void qt_ref_quantize_q5_1_plain(const float *x, void *y, int64_t n);
void qt_ref_quantize_q8_0_plain(const float *x, void *y, int64_t n);

/* Importance-weighted variants (ggml's quantize_row_*_impl), in legacy_imatrix.c. */
void qt_ref_quantize_q4_0_imatrix(const float *x, void *y, int64_t n, const float *qw);
void qt_ref_quantize_q4_1_imatrix(const float *x, void *y, int64_t n, const float *qw);
void qt_ref_quantize_q5_0_imatrix(const float *x, void *y, int64_t n, const float *qw);
void qt_ref_quantize_q5_1_imatrix(const float *x, void *y, int64_t n, const float *qw);

void qt_ref_dequantize_q4_0(const void *x, float *y, int64_t n);
void qt_ref_dequantize_q4_1(const void *x, float *y, int64_t n);
void qt_ref_dequantize_q5_0(const void *x, float *y, int64_t n);
void qt_ref_dequantize_q5_1(const void *x, float *y, int64_t n);
void qt_ref_dequantize_q8_0(const void *x, float *y, int64_t n);

#endif /* QT_REF_LEGACY_H */
