/* Scalar K-quant and IQ/ternary/MXFP4 row codecs, shared with the SIMD levels that reuse the
 * paths they do not vectorize. qw is NULL (plain) or n importance weights. */
#ifndef QT_REF_KQUANTS_H
#define QT_REF_KQUANTS_H

#include <stdint.h>

#include "quant_search.h"

/* K-quant row quantizers with the group searches supplied by a level (scalar or SIMD). */
void qt_kq_quantize_q2_K(const qt_search_ops *ops, const float *x, void *y, int64_t n,
                         const float *qw);
void qt_kq_quantize_q3_K(const qt_search_ops *ops, const float *x, void *y, int64_t n,
                         const float *qw);
void qt_kq_quantize_q4_K(const qt_search_ops *ops, const float *x, void *y, int64_t n,
                         const float *qw);
void qt_kq_quantize_q5_K(const qt_search_ops *ops, const float *x, void *y, int64_t n,
                         const float *qw);
void qt_kq_quantize_q6_K(const qt_search_ops *ops, const float *x, void *y, int64_t n,
                         const float *qw);
void qt_iq_quantize_iq4_nl(const qt_search_ops *ops, const float *x, void *y, int64_t n,
                           const float *qw);
void qt_iq_quantize_iq4_xs(const qt_search_ops *ops, const float *x, void *y, int64_t n,
                           const float *qw);

void qt_ref_quantize_q2_K(const float *x, void *y, int64_t n, const float *qw);
void qt_ref_quantize_q3_K(const float *x, void *y, int64_t n, const float *qw);
void qt_ref_quantize_q4_K(const float *x, void *y, int64_t n, const float *qw);
void qt_ref_quantize_q5_K(const float *x, void *y, int64_t n, const float *qw);
void qt_ref_quantize_q6_K(const float *x, void *y, int64_t n, const float *qw);

void qt_ref_dequantize_q2_K(const void *x, float *y, int64_t n);
void qt_ref_dequantize_q3_K(const void *x, float *y, int64_t n);
void qt_ref_dequantize_q4_K(const void *x, float *y, int64_t n);
void qt_ref_dequantize_q5_K(const void *x, float *y, int64_t n);
void qt_ref_dequantize_q6_K(const void *x, float *y, int64_t n);

void qt_ref_quantize_iq4_nl(const float *x, void *y, int64_t n, const float *qw);
void qt_ref_quantize_iq4_xs(const float *x, void *y, int64_t n, const float *qw);
void qt_ref_quantize_tq1_0(const float *x, void *y, int64_t n, const float *qw);
void qt_ref_quantize_tq2_0(const float *x, void *y, int64_t n, const float *qw);
void qt_ref_quantize_mxfp4(const float *x, void *y, int64_t n, const float *qw);

void qt_ref_dequantize_iq4_nl(const void *x, float *y, int64_t n);
void qt_ref_dequantize_iq4_xs(const void *x, float *y, int64_t n);
void qt_ref_dequantize_tq1_0(const void *x, float *y, int64_t n);
void qt_ref_dequantize_tq2_0(const void *x, float *y, int64_t n);
void qt_ref_dequantize_mxfp4(const void *x, float *y, int64_t n);

#endif /* QT_REF_KQUANTS_H */
