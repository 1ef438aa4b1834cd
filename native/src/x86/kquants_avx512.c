/* AVX-512 K-quant and IQ4 quantizers: sixteen groups searched at once, one per lane, bit-exact
 * with the scalar reference (see ../kquants_lanes.h). Uses AVX-512F only. */
#include "../simd_x86_avx512_intrin.h"

#include "../blocks.h"
#include "../internal.h"
#include "../ref/kquants.h"
#include "../ref/quant_search.h"

#define W 16
#define LANE_FN(name) qt_avx512_kq_##name

typedef __m512 vf;
typedef __m512i vi;
typedef __mmask16 vm;

#define VF_SET1(a) _mm512_set1_ps(a)
#define VF_ZERO() _mm512_setzero_ps()
#define VF_LOAD(p) _mm512_load_ps(p)
#define VF_LOADU(p) _mm512_loadu_ps(p)
#define VF_STORE(p, v) _mm512_store_ps(p, v)
#define VF_ADD(a, b) _mm512_add_ps(a, b)
#define VF_SUB(a, b) _mm512_sub_ps(a, b)
#define VF_MUL(a, b) _mm512_mul_ps(a, b)
#define VF_DIV(a, b) _mm512_div_ps(a, b)
#define VF_MIN(a, b) _mm512_min_ps(a, b)
#define VF_MAX(a, b) _mm512_max_ps(a, b)
#define VF_ROUND(a) _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VF_ABS(a) _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a), _mm512_set1_epi32(0x7fffffff)))
#define VF_XOR(a, b) _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)))
#define VF_LT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ)
#define VF_GT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)
#define VF_NLE(a, b) _mm512_cmp_ps_mask(a, b, _CMP_NLE_UQ)
#define VF_NLT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_NLT_UQ)
#define VF_NEQ(a, b) _mm512_cmp_ps_mask(a, b, _CMP_NEQ_UQ)
#define VF_BLEND(m, a, b) _mm512_mask_blend_ps(m, b, a)
#define VF_AS_VI(a) _mm512_castps_si512(a)
#define VF_LOOKUP16(t, idx) _mm512_permutexvar_ps(idx, (t)[0])
#define VI_TO_VF(a) _mm512_cvtepi32_ps(a)
#define VI_SET1(a) _mm512_set1_epi32(a)
#define VI_ADD(a, b) _mm512_add_epi32(a, b)
#define VI_SUB(a, b) _mm512_sub_epi32(a, b)
#define VI_AND(a, b) _mm512_and_si512(a, b)
#define VI_MIN(a, b) _mm512_min_epi32(a, b)
#define VI_MAX(a, b) _mm512_max_epi32(a, b)
#define VI_BLEND(m, a, b) _mm512_mask_blend_epi32(m, b, a)
#define VI_KEEP(m, v) _mm512_maskz_mov_epi32(m, v)
#define VM_AND(a, b) ((vm)((a) & (b)))
#define VM_OR(a, b) ((vm)((a) | (b)))
#define VM_NOT(a) ((vm)~(a))
#define VM_ANY(a) ((a) != 0)
#define VM_NONE() ((vm)0)

/* r[g] (row g) becomes column g: r[i][g] <- r[g][i] over a 16x16 tile. Four shuffle stages
 * (32-bit, 64-bit, then two 128-bit lane steps); data movement only, so bit-exact. */
static inline void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int k = 0; k < 16; k += 2) {
        t[k] = _mm512_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm512_unpackhi_ps(r[k], r[k + 1]);
    }
    for (int k = 0; k < 16; k += 4) {
        u[k] = _mm512_shuffle_ps(t[k], t[k + 2], 0x44);
        u[k + 1] = _mm512_shuffle_ps(t[k], t[k + 2], 0xEE);
        u[k + 2] = _mm512_shuffle_ps(t[k + 1], t[k + 3], 0x44);
        u[k + 3] = _mm512_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
    }
    /* u[4q + c], 128-bit lane l: rows 4q..4q+3 of column 4l + c. */
    for (int k = 0; k < 16; k += 8) {
        for (int c = 0; c < 4; c++) {
            t[k + c] = _mm512_shuffle_f32x4(u[k + c], u[k + 4 + c], 0x88);
            t[k + 4 + c] = _mm512_shuffle_f32x4(u[k + c], u[k + 4 + c], 0xDD);
        }
    }
    for (int c = 0; c < 8; c++) {
        r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xDD);
    }
}

/* Sixteen integral levels (|v| < 128) as int8 bytes. */
static inline void store_levels16(int8_t *dst, __m512 v) {
    _mm_storeu_si128((__m128i *)(void *)dst, _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(v)));
}

#define LANE_TRANSPOSE(r) transpose16(r)
#define LANE_STORE_LEVELS(dst, v) store_levels16(dst, v)

#include "../kquants_lanes.h"

void qt_avx512_register_kquants(qt_kernel_table *t) {
    LANE_FN(install)(t);
}
