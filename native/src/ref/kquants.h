/* The K-quant and IQ4 row quantizers, written once with the group searches as a parameter: the
 * scalar level passes qt_scalar_search_ops, the SIMD levels their lane-parallel searches. qw is
 * NULL (plain) or n importance weights. The scalar codecs themselves are registered through
 * qt_ref_register_kquants / qt_ref_register_iq (internal.h). */
#ifndef QT_REF_KQUANTS_H
#define QT_REF_KQUANTS_H

#include <stdint.h>

#include "quant_search.h"

/* One row with the group searches supplied by a level (scalar or SIMD). */
typedef void qt_level_quantize_fn(const qt_search_ops *ops, const float *x, void *y, int64_t n,
                                  const float *qw);

qt_level_quantize_fn qt_kq_quantize_q2_K, qt_kq_quantize_q3_K, qt_kq_quantize_q4_K,
    qt_kq_quantize_q5_K, qt_kq_quantize_q6_K, qt_iq_quantize_iq4_nl, qt_iq_quantize_iq4_xs;

#endif /* QT_REF_KQUANTS_H */
