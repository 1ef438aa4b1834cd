/* AVX2 K-quant and IQ4 quantizers: eight groups searched at once, one per lane, bit-exact with
 * the scalar reference (see ../kquants_lanes.h; the vocabulary is vec256.h). */
#include "../blocks.h"
#include "../internal.h"
#include "../ref/kquants.h"
#include "../ref/quant_search.h"
#include "vec256.h"

#define LANE_FN(name) qt_avx2_kq_##name
#define LANE_TRANSPOSE(r) vec_transpose(r)
#define LANE_STORE_LEVELS(dst, v) vec_store_levels(dst, v)

#include "../kquants_lanes.h"

void qt_avx2_register_kquants(qt_kernel_table *t) {
    LANE_FN(install)(t);
}
