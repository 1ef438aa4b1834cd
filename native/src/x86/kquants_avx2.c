/* AVX2 K-quant and IQ4 quantizers: eight groups searched at once, one per lane, bit-exact with
 * the scalar reference (see ../kquants_lanes.h). */
#include <immintrin.h>

#include "../blocks.h"
#include "../internal.h"
#include "../ref/kquants.h"
#include "../ref/quant_search.h"

#define W 8
#define LANE_FN(name) qt_avx2_kq_##name

typedef __m256 vf;
typedef __m256i vi;
typedef __m256 vm; /* all-ones / all-zeros lanes, as the compares produce */

/* 16-entry table lookup by per-lane index 0..15, from two 8-entry halves. */
static inline __m256 lookup16(const __m256 *t, __m256i idx) {
    const __m256 lo = _mm256_permutevar8x32_ps(t[0], idx);
    const __m256 hi = _mm256_permutevar8x32_ps(t[1], idx);
    const __m256 upper = _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(7)));
    return _mm256_blendv_ps(lo, hi, upper);
}

#define VF_SET1(a) _mm256_set1_ps(a)
#define VF_ZERO() _mm256_setzero_ps()
#define VF_LOAD(p) _mm256_load_ps(p)
#define VF_LOADU(p) _mm256_loadu_ps(p)
#define VF_STORE(p, v) _mm256_store_ps(p, v)
#define VF_ADD(a, b) _mm256_add_ps(a, b)
#define VF_SUB(a, b) _mm256_sub_ps(a, b)
#define VF_MUL(a, b) _mm256_mul_ps(a, b)
#define VF_DIV(a, b) _mm256_div_ps(a, b)
#define VF_MIN(a, b) _mm256_min_ps(a, b)
#define VF_MAX(a, b) _mm256_max_ps(a, b)
#define VF_ROUND(a) _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VF_ABS(a) _mm256_and_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)))
#define VF_XOR(a, b) _mm256_xor_ps(a, b)
#define VF_LT(a, b) _mm256_cmp_ps(a, b, _CMP_LT_OQ)
#define VF_GT(a, b) _mm256_cmp_ps(a, b, _CMP_GT_OQ)
#define VF_NLE(a, b) _mm256_cmp_ps(a, b, _CMP_NLE_UQ)
#define VF_NLT(a, b) _mm256_cmp_ps(a, b, _CMP_NLT_UQ)
#define VF_NEQ(a, b) _mm256_cmp_ps(a, b, _CMP_NEQ_UQ)
#define VF_BLEND(m, a, b) _mm256_blendv_ps(b, a, m)
#define VF_AS_VI(a) _mm256_castps_si256(a)
#define VF_LOOKUP16(t, idx) lookup16(t, idx)
#define VI_TO_VF(a) _mm256_cvtepi32_ps(a)
#define VI_SET1(a) _mm256_set1_epi32(a)
#define VI_ADD(a, b) _mm256_add_epi32(a, b)
#define VI_SUB(a, b) _mm256_sub_epi32(a, b)
#define VI_AND(a, b) _mm256_and_si256(a, b)
#define VI_MIN(a, b) _mm256_min_epi32(a, b)
#define VI_MAX(a, b) _mm256_max_epi32(a, b)
#define VI_BLEND(m, a, b) \
    _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(b), _mm256_castsi256_ps(a), m))
#define VI_KEEP(m, v) _mm256_and_si256(v, _mm256_castps_si256(m))
#define VM_AND(a, b) _mm256_and_ps(a, b)
#define VM_OR(a, b) _mm256_or_ps(a, b)
#define VM_NOT(a) _mm256_xor_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(-1)))
#define VM_ANY(a) (_mm256_movemask_ps(a) != 0)
#define VM_NONE() _mm256_setzero_ps()

/* r[g] (row g) becomes column g over an 8x8 tile: 32-bit and 64-bit shuffles within the
 * 128-bit halves, then a half swap. Data movement only, so bit-exact. */
static inline void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int k = 0; k < 8; k += 2) {
        t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
    }
    for (int k = 0; k < 8; k += 4) {
        u[k] = _mm256_shuffle_ps(t[k], t[k + 2], 0x44);
        u[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], 0xEE);
        u[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0x44);
        u[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {
        r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
        r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
}

/* Eight integral levels (|v| < 128) as int8 bytes. */
static inline void store_levels8(int8_t *dst, __m256 v) {
    const __m256i q = _mm256_cvttps_epi32(v);
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    _mm_storel_epi64((__m128i *)(void *)dst, _mm_packs_epi16(w, w));
}

#define LANE_TRANSPOSE(r) transpose8(r)
#define LANE_STORE_LEVELS(dst, v) store_levels8(dst, v)

#include "../kquants_lanes.h"

void qt_avx2_register_kquants(qt_kernel_table *t) {
    LANE_FN(install)(t);
}
