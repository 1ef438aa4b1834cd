/* The 8-lane x86 vector vocabulary (AVX2 + FMA + F16C), written once for every AVX2 translation
 * unit: the K-quant lane searches (kquants_avx2.c, ../kquants_lanes.h) and the codecs (avx2.c,
 * codecs_x86.h). vec512.h is the same vocabulary at 16 lanes; code written against it is
 * width-generic. Masks are vectors of all-ones/all-zeros lanes, as the compares produce.
 *
 * Besides the VF_ (float), VI_ (int32) and VM_ (lane mask) operations, a few named primitives
 * below cover what really differs between the widths: the horizontal reductions, byte and
 * half-word widening and narrowing, and moving single bits between lanes and a scalar mask.
 * No FMA intrinsic appears: bit-exactness needs every product and sum rounded separately.
 */
#ifndef QT_X86_VEC256_H
#define QT_X86_VEC256_H

#include <immintrin.h>
#include <stdint.h>

#include "../simd_x86_common.h"

#define W 8

typedef __m256 vf;
typedef __m256i vi;
typedef __m256 vm;

#define VF_SET1(a) _mm256_set1_ps(a)
#define VF_ZERO() _mm256_setzero_ps()
#define VF_LOAD(p) _mm256_load_ps(p)
#define VF_LOADU(p) _mm256_loadu_ps(p)
#define VF_STORE(p, v) _mm256_store_ps(p, v)
#define VF_STOREU(p, v) _mm256_storeu_ps(p, v)
#define VF_STREAM(p, v) _mm256_stream_ps(p, v)
#define VF_ADD(a, b) _mm256_add_ps(a, b)
#define VF_SUB(a, b) _mm256_sub_ps(a, b)
#define VF_MUL(a, b) _mm256_mul_ps(a, b)
#define VF_DIV(a, b) _mm256_div_ps(a, b)
#define VF_MIN(a, b) _mm256_min_ps(a, b)
#define VF_MAX(a, b) _mm256_max_ps(a, b)
#define VF_ROUND(a) _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VF_TRUNC(a) _mm256_round_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC)
#define VF_ABS(a) _mm256_and_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)))
#define VF_AND(a, b) _mm256_and_ps(a, b)
#define VF_OR(a, b) _mm256_or_ps(a, b)
#define VF_XOR(a, b) _mm256_xor_ps(a, b)
#define VF_LT(a, b) _mm256_cmp_ps(a, b, _CMP_LT_OQ)
#define VF_GT(a, b) _mm256_cmp_ps(a, b, _CMP_GT_OQ)
#define VF_GE(a, b) _mm256_cmp_ps(a, b, _CMP_GE_OQ)
#define VF_EQ(a, b) _mm256_cmp_ps(a, b, _CMP_EQ_OQ)
#define VF_NLE(a, b) _mm256_cmp_ps(a, b, _CMP_NLE_UQ)
#define VF_NLT(a, b) _mm256_cmp_ps(a, b, _CMP_NLT_UQ)
#define VF_NEQ(a, b) _mm256_cmp_ps(a, b, _CMP_NEQ_UQ)
#define VF_UNORD(a, b) _mm256_cmp_ps(a, b, _CMP_UNORD_Q)
#define VF_BLEND(m, a, b) _mm256_blendv_ps(b, a, m)
/* a + b in the lanes of m, a elsewhere (there as a + 0, which only differs for a = -0). */
#define VF_ADD_IF(m, a, b) _mm256_add_ps(a, _mm256_and_ps(m, b))
#define VF_AS_VI(a) _mm256_castps_si256(a)
#define VF_LOOKUP16(t, idx) vec_lookup16(t, idx)
#define VF_TO_VI_TRUNC(a) _mm256_cvttps_epi32(a)
#define VI_TO_VF(a) _mm256_cvtepi32_ps(a)
#define VI_SET1(a) _mm256_set1_epi32(a)
#define VI_LOADU(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define VI_STOREU(p, v) _mm256_storeu_si256((__m256i *)(void *)(p), v)
#define VI_ADD(a, b) _mm256_add_epi32(a, b)
#define VI_SUB(a, b) _mm256_sub_epi32(a, b)
#define VI_AND(a, b) _mm256_and_si256(a, b)
#define VI_OR(a, b) _mm256_or_si256(a, b)
#define VI_SLLI(a, n) _mm256_slli_epi32(a, n)
#define VI_SRLI(a, n) _mm256_srli_epi32(a, n)
#define VI_MIN(a, b) _mm256_min_epi32(a, b)
#define VI_MAX(a, b) _mm256_max_epi32(a, b)
#define VI_GT(a, b) _mm256_castsi256_ps(_mm256_cmpgt_epi32(a, b))
#define VI_BLEND(m, a, b) \
    _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(b), _mm256_castsi256_ps(a), m))
#define VI_KEEP(m, v) _mm256_and_si256(v, _mm256_castps_si256(m))
#define VM_AND(a, b) _mm256_and_ps(a, b)
#define VM_OR(a, b) _mm256_or_ps(a, b)
#define VM_NOT(a) _mm256_xor_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(-1)))
#define VM_ANY(a) (_mm256_movemask_ps(a) != 0)
#define VM_NONE() _mm256_setzero_ps()
/* Lane k of the mask as bit k of an integer. */
#define VM_BITS(a) ((uint32_t)_mm256_movemask_ps(a))

/* 16-entry table lookup by per-lane index 0..15, from two 8-entry halves. */
static inline vf vec_lookup16(const vf *t, vi idx) {
    const vf lo = _mm256_permutevar8x32_ps(t[0], idx);
    const vf hi = _mm256_permutevar8x32_ps(t[1], idx);
    return _mm256_blendv_ps(lo, hi, VI_GT(idx, VI_SET1(7)));
}

static inline float vf_hmax(vf v) {
    return qt_hmax_ps128(_mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
}

static inline float vf_hmin(vf v) {
    return qt_hmin_ps128(_mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
}

/* Bytes W*part .. W*part+W-1 of b, zero- or sign-extended to int32 lanes. */
static inline vi vi_from_u8(__m128i b, int part) {
    return _mm256_cvtepu8_epi32(part ? _mm_unpackhi_epi64(b, b) : b);
}

static inline vi vi_from_i8(__m128i b, int part) {
    return _mm256_cvtepi8_epi32(part ? _mm_unpackhi_epi64(b, b) : b);
}

/* W signed bytes from memory as int32 lanes. */
static inline vi vi_load_i8(const int8_t *p) {
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p));
}

/* W unsigned half-words from memory as int32 lanes. */
static inline vi vi_load_u16(const uint16_t *p) {
    return _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
}

/* W IEEE half floats from memory, and back (round to nearest even; NaN payloads kept). */
static inline vf vf_load_f16(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
}

static inline void vf_store_f16(uint16_t *p, vf v) {
    _mm_storeu_si128((__m128i *)(void *)p,
                     _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* 16 int32 values 0..255 (c[0] then c[1]) as 16 bytes. The packs work per 128-bit half, so
 * the dwords come out as c0.lo c1.lo c0.hi c1.hi and a permute puts them in order. */
static inline __m128i vi_pack_u8x16(const vi c[2]) {
    const __m256i w = _mm256_packs_epi32(c[0], c[1]);
    const __m256i b = _mm256_packus_epi16(w, w);
    return _mm256_castsi256_si128(
        _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0)));
}

/* 32 int32 values -128..127 (q[0..3]) as 32 signed bytes at dst. */
static inline void vi_store_i8x32(int8_t *dst, const vi q[4]) {
    const __m256i w =
        _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    VI_STOREU(dst, _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

/* 16 int32 values 0..65535 (r[0] then r[1]) as 16 half-words at dst. */
static inline void vi_store_u16x16(uint16_t *dst, const vi r[2]) {
    VI_STOREU(dst, _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xD8));
}

/* Bit 4 of each lane as bit k of an integer (a shift puts it in the sign bit). */
static inline uint32_t vi_bit4_bits(vi q) {
    return (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_slli_epi32(q, 27)));
}

/* q | 16 in the lanes k whose bit k of `bits` is set. */
static inline vi vi_or16_where(vi q, uint32_t bits) {
    const __m256i lane = _mm256_srlv_epi32(_mm256_set1_epi32((int)bits),
                                           _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_or_si256(q, _mm256_and_si256(_mm256_slli_epi32(lane, 4), _mm256_set1_epi32(16)));
}

/* r[g] (row g) becomes column g over an 8x8 tile: 32-bit and 64-bit shuffles within the
 * 128-bit halves, then a half swap. Data movement only, so bit-exact. */
static inline void vec_transpose(vf r[8]) {
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
static inline void vec_store_levels(int8_t *dst, vf v) {
    const __m256i q = _mm256_cvttps_epi32(v);
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    _mm_storel_epi64((__m128i *)(void *)dst, _mm_packs_epi16(w, w));
}

#endif /* QT_X86_VEC256_H */
