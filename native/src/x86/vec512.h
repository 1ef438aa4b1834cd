/* The 16-lane x86 vector vocabulary (AVX-512), the same operations as vec256.h at twice the
 * width, for kquants_avx512.c and avx512.c. Masks are __mmask16 registers, so the mask
 * operations are integer operations and the mask-taking forms (blend, masked add, masked or)
 * replace the and/or sequences of the 8-lane vocabulary.
 *
 * Everything outside the VEC_MASKED_TAILS section needs AVX-512F only: kquants_avx512.c is
 * built with -mavx512f alone (and with AVX2 flags over SIMDe in the emulated test build). */
#ifndef QT_X86_VEC512_H
#define QT_X86_VEC512_H

#include <stdint.h>

#include "../simd_x86_avx512_intrin.h"
#include "../simd_x86_common.h"

#define W 16

typedef __m512 vf;
typedef __m512i vi;
typedef __mmask16 vm;

#define VF_SET1(a) _mm512_set1_ps(a)
#define VF_ZERO() _mm512_setzero_ps()
#define VF_LOAD(p) _mm512_load_ps(p)
#define VF_LOADU(p) _mm512_loadu_ps(p)
#define VF_STORE(p, v) _mm512_store_ps(p, v)
#define VF_STOREU(p, v) _mm512_storeu_ps(p, v)
#define VF_STREAM(p, v) _mm512_stream_ps(p, v)
#define VF_ADD(a, b) _mm512_add_ps(a, b)
#define VF_SUB(a, b) _mm512_sub_ps(a, b)
#define VF_MUL(a, b) _mm512_mul_ps(a, b)
#define VF_DIV(a, b) _mm512_div_ps(a, b)
#define VF_MIN(a, b) _mm512_min_ps(a, b)
#define VF_MAX(a, b) _mm512_max_ps(a, b)
#define VF_ROUND(a) _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VF_TRUNC(a) _mm512_roundscale_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC)
/* Float bitwise operations through the integer forms: the _ps ones need AVX-512DQ. */
#define VF_BITS_(op, a, b) \
    _mm512_castsi512_ps(op(_mm512_castps_si512(a), _mm512_castps_si512(b)))
#define VF_ABS(a) \
    _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a), _mm512_set1_epi32(0x7fffffff)))
#define VF_AND(a, b) VF_BITS_(_mm512_and_si512, a, b)
#define VF_OR(a, b) VF_BITS_(_mm512_or_si512, a, b)
#define VF_XOR(a, b) VF_BITS_(_mm512_xor_si512, a, b)
#define VF_LT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ)
#define VF_GT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)
#define VF_GE(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ)
#define VF_EQ(a, b) _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ)
#define VF_NLE(a, b) _mm512_cmp_ps_mask(a, b, _CMP_NLE_UQ)
#define VF_NLT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_NLT_UQ)
#define VF_NEQ(a, b) _mm512_cmp_ps_mask(a, b, _CMP_NEQ_UQ)
#define VF_UNORD(a, b) _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q)
#define VF_BLEND(m, a, b) _mm512_mask_blend_ps(m, b, a)
/* a + b in the lanes of m, a elsewhere. */
#define VF_ADD_IF(m, a, b) _mm512_mask_add_ps(a, m, a, b)
#define VF_AS_VI(a) _mm512_castps_si512(a)
#define VF_LOOKUP16(t, idx) _mm512_permutexvar_ps(idx, (t)[0])
#define VF_TO_VI_TRUNC(a) _mm512_cvttps_epi32(a)
#define VI_TO_VF(a) _mm512_cvtepi32_ps(a)
#define VI_SET1(a) _mm512_set1_epi32(a)
#define VI_LOADU(p) _mm512_loadu_si512((const void *)(p))
#define VI_STOREU(p, v) _mm512_storeu_si512((void *)(p), v)
#define VI_ADD(a, b) _mm512_add_epi32(a, b)
#define VI_SUB(a, b) _mm512_sub_epi32(a, b)
#define VI_AND(a, b) _mm512_and_si512(a, b)
#define VI_OR(a, b) _mm512_or_si512(a, b)
#define VI_SLLI(a, n) _mm512_slli_epi32(a, n)
#define VI_SRLI(a, n) _mm512_srli_epi32(a, n)
#define VI_MIN(a, b) _mm512_min_epi32(a, b)
#define VI_MAX(a, b) _mm512_max_epi32(a, b)
#define VI_GT(a, b) _mm512_cmpgt_epi32_mask(a, b)
#define VI_BLEND(m, a, b) _mm512_mask_blend_epi32(m, b, a)
#define VI_KEEP(m, v) _mm512_maskz_mov_epi32(m, v)
#define VM_AND(a, b) ((vm)((a) & (b)))
#define VM_OR(a, b) ((vm)((a) | (b)))
#define VM_NOT(a) ((vm)~(a))
#define VM_ANY(a) ((a) != 0)
#define VM_NONE() ((vm)0)
#define VM_BITS(a) ((uint32_t)(a))

static inline float vf_hmax(vf v) {
    const __m256 m = _mm256_max_ps(_mm512_castps512_ps256(v),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    return qt_hmax_ps128(_mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1)));
}

static inline float vf_hmin(vf v) {
    const __m256 m = _mm256_min_ps(_mm512_castps512_ps256(v),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    return qt_hmin_ps128(_mm_min_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1)));
}

/* All 16 bytes of b (there is only part 0 at this width) as int32 lanes. */
static inline vi vi_from_u8(__m128i b, int part) {
    (void)part;
    return _mm512_cvtepu8_epi32(b);
}

static inline vi vi_from_i8(__m128i b, int part) {
    (void)part;
    return _mm512_cvtepi8_epi32(b);
}

static inline vi vi_load_i8(const int8_t *p) {
    return _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
}

static inline vi vi_load_u16(const uint16_t *p) {
    return _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)p));
}

static inline vf vf_load_f16(const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)p));
}

static inline void vf_store_f16(uint16_t *p, vf v) {
    _mm256_storeu_si256((__m256i *)(void *)p,
                        _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* Narrowing is one truncating move per register here (values already in range). */
static inline __m128i vi_pack_u8x16(const vi c[1]) {
    return _mm512_cvtepi32_epi8(c[0]);
}

static inline void vi_store_i8x32(int8_t *dst, const vi q[2]) {
    _mm256_storeu_si256((__m256i *)(void *)dst,
                        _mm256_set_m128i(_mm512_cvtepi32_epi8(q[1]), _mm512_cvtepi32_epi8(q[0])));
}

static inline void vi_store_u16x16(uint16_t *dst, const vi r[1]) {
    _mm256_storeu_si256((__m256i *)(void *)dst, _mm512_cvtepi32_epi16(r[0]));
}

static inline uint32_t vi_bit4_bits(vi q) {
    return (uint32_t)_mm512_test_epi32_mask(q, _mm512_set1_epi32(0x10));
}

static inline vi vi_or16_where(vi q, uint32_t bits) {
    return _mm512_mask_or_epi32(q, (__mmask16)bits, q, _mm512_set1_epi32(16));
}

/* r[g] (row g) becomes column g: r[i][g] <- r[g][i] over a 16x16 tile. Four shuffle stages
 * (32-bit, 64-bit, then two 128-bit lane steps); data movement only, so bit-exact. */
static inline void vec_transpose(vf r[16]) {
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
static inline void vec_store_levels(int8_t *dst, vf v) {
    _mm_storeu_si128((__m128i *)(void *)dst, _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(v)));
}

/* Masked loads and stores for the F16/BF16 tails (the first n < 16 + 1 lanes), which need
 * AVX-512BW/VL for the half-word forms. */
#if (defined(__AVX512BW__) && defined(__AVX512VL__)) || defined(QT_EMULATE_AVX512)
#define VEC_MASKED_TAILS 1

static inline vm vm_first(int64_t n) {
    return (vm)((1u << n) - 1u);
}

static inline vf vf_maskz_load_f16(vm k, const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, p));
}

static inline vi vi_maskz_load_u16(vm k, const uint16_t *p) {
    return _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, p));
}

static inline vi vi_maskz_loadu(vm k, const void *p) {
    return _mm512_maskz_loadu_epi32(k, p);
}

static inline void vf_mask_storeu(float *p, vm k, vf v) {
    _mm512_mask_storeu_ps(p, k, v);
}

static inline void vi_mask_storeu(void *p, vm k, vi v) {
    _mm512_mask_storeu_epi32(p, k, v);
}

static inline void vi_mask_store_u16(uint16_t *p, vm k, vi v) {
    _mm256_mask_storeu_epi16(p, k, _mm512_cvtepi32_epi16(v));
}
#endif

#endif /* QT_X86_VEC512_H */
