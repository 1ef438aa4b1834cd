/* What the AVX2 and AVX-512 matmul kernels (matmul_avx2.c, matmul_avx512.c) share: scalar
 * helpers, the weight prefetch, the layout of the 32-value ggml blocks, and the width-generic
 * ends of the plain unpacked-row dot. Included once by each file, after its intrinsics header
 * and after defining its float vector vocabulary:
 *   MM_VF          the float vector type (8 or 16 lanes), MM_W its lane count;
 *   MM_VF_ZERO()   MM_VF_LOADU(p)   MM_VF_ADD(a, b)   MM_VF_FMADD(a, b, c)   MM_VF_HSUM(v).
 * Everything is static inline: each file compiles it with its own ISA flags. */
#ifndef QT_MATMUL_X86_COMMON_H
#define QT_MATMUL_X86_COMMON_H

#include <stddef.h>
#include <string.h>

#include "../blocks.h"
#include "../matmul.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

static inline int32_t load_i32(const void *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* F16C converts half to float exactly as the scalar helper does. */
static inline float h2f(uint16_t h) {
    return _cvtsh_ss(h);
}

/* MXFP4's E8M0 block exponent as 2^(e - 128): half the scale, the grids holding doubled values. */
static inline float e8m0_half(uint8_t e) {
    const uint32_t bits = e < 2 ? (0x00200000u << e) : ((uint32_t)(e - 1) << 23);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Weights stream through once, in order. Asking for them PF_AHEAD bytes early keeps more
 * misses in flight than the hardware prefetcher does for one stream per core (first measured
 * on the old AVX-512 Q8_0 GEMV at 4096x14336: none 22, 8 KiB 37 GB/s). With the fused GEMV of
 * 2026-12-04 on the project's Zen 4 EPYC, same process against 8 KiB, one thread: 2 KiB was
 * 1.10-1.21x faster at 4096x14336 for Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K (both levels), 1.0-1.06x
 * at 4096x4096; two threads at 4096x14336 within +-6% either way, run to run. Prefetches never
 * fault, so running past the end of the weights is harmless. */
#define PF_AHEAD 2048

ALWAYS_INLINE void prefetch_ahead(const void *p, int bytes) {
    const char *c = (const char *)p + PF_AHEAD;
    for (int o = 0; o < bytes; o += 64) {
        _mm_prefetch(c + o, _MM_HINT_T0);
    }
    _mm_prefetch(c + bytes - 1, _MM_HINT_T0);
}

/* quantize_act's nsum4 entries of group g: minus s4, the sums of its four runs of 4 values. */
ALWAYS_INLINE void store_nsum4(int16_t *nsum4, int64_t g, __m128i s4) {
    _mm_storel_epi64((__m128i *)(void *)(nsum4 + 4 * g),
                     _mm_packs_epi32(_mm_sub_epi32(_mm_setzero_si128(), s4), _mm_setzero_si128()));
}

/* ---------------------------------------------------------------- 32-value ggml blocks
 * Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL and MXFP4: one scale (Q4_1/Q5_1 also one minimum) per
 * 32 values, the kernels written once over a compile-time constant kind. */
enum { LEG_Q4_0, LEG_Q4_1, LEG_Q5_0, LEG_Q5_1, LEG_Q8_0, LEG_IQ4_NL, LEG_MXFP4 };

/* Block size, offset of the values, and (Q5) of the fifth bits, per kind. */
#define LEG_SIZE(kind)                                                                         \
    ((kind) == LEG_Q4_0 ? sizeof(block_q4_0) : (kind) == LEG_Q4_1 ? sizeof(block_q4_1)         \
     : (kind) == LEG_Q5_0 ? sizeof(block_q5_0) : (kind) == LEG_Q5_1 ? sizeof(block_q5_1)       \
     : (kind) == LEG_Q8_0 ? sizeof(block_q8_0) : (kind) == LEG_IQ4_NL ? sizeof(block_iq4_nl)   \
                          : sizeof(block_mxfp4))
#define LEG_QS(kind)                                                                           \
    ((kind) == LEG_Q4_1 ? offsetof(block_q4_1, qs) : (kind) == LEG_Q5_0 ? offsetof(block_q5_0, qs) \
     : (kind) == LEG_Q5_1 ? offsetof(block_q5_1, qs) : (kind) == LEG_MXFP4 ? offsetof(block_mxfp4, qs) \
                          : (size_t)2)
#define LEG_QH(kind) ((kind) == LEG_Q5_0 ? offsetof(block_q5_0, qh) : offsetof(block_q5_1, qh))
_Static_assert(offsetof(block_q4_0, qs) == 2 && offsetof(block_q8_0, qs) == 2 &&
                   offsetof(block_iq4_nl, qs) == 2 && offsetof(block_q4_1, m) == 2 &&
                   offsetof(block_q5_1, m) == 2 && offsetof(block_mxfp4, e) == 0,
               "legacy blocks start with the fp16 scale (MXFP4: its exponent byte), then the "
               "fp16 minimum where there is one");

ALWAYS_INLINE uint16_t leg_u16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* 1 for the kinds with a stored minimum (Q4_1, Q5_1). */
ALWAYS_INLINE int leg_has_min(int kind) {
    return kind == LEG_Q4_1 || kind == LEG_Q5_1;
}

/* The scale of block b (MXFP4: halved, for its doubled grid) and the minimum of a Q4_1/Q5_1 b. */
ALWAYS_INLINE float leg_scale(const uint8_t *b, int kind) {
    return kind == LEG_MXFP4 ? e8m0_half(b[0]) : h2f(leg_u16(b));
}

ALWAYS_INLINE float leg_min(const uint8_t *b) {
    return h2f(leg_u16(b + 2));
}

/* The nibble (0-15) and, for Q5, the fifth bit as 16, of value t of block b. */
ALWAYS_INLINE int leg_nibble5(const uint8_t *b, int t, int kind) {
    const uint8_t q = b[LEG_QS(kind) + (t & 15)];
    int v = t < 16 ? (q & 0xF) : (q >> 4);
    if (kind == LEG_Q5_0 || kind == LEG_Q5_1) {
        v |= (int)((((uint32_t)load_i32(b + LEG_QH(kind)) >> t) & 1u) << 4);
    }
    return v;
}

/* One table entry per kind of a shared kernel, and the seven entries of the 32-value types. */
#define FDOT_OF_KIND(name, impl, kind)                                                         \
    static float name(const void *row, const qt_mm_act *act, int64_t k) {                     \
        return impl(row, act, k, kind);                                                        \
    }
#define LEG_FDOT_ENTRIES(impl)                                                                 \
    FDOT_OF_KIND(fdot_q4_0, impl, LEG_Q4_0) FDOT_OF_KIND(fdot_q4_1, impl, LEG_Q4_1)            \
    FDOT_OF_KIND(fdot_q5_0, impl, LEG_Q5_0) FDOT_OF_KIND(fdot_q5_1, impl, LEG_Q5_1)            \
    FDOT_OF_KIND(fdot_q8_0, impl, LEG_Q8_0) FDOT_OF_KIND(fdot_iq4_nl, impl, LEG_IQ4_NL)        \
    FDOT_OF_KIND(fdot_mxfp4, impl, LEG_MXFP4)

/* Exact GEMV entries on float storage over the including file's fdot_floats(w, x, k, kind, pf)
 * and fdot_floats4(w, stride, x, k, kind, pf, out) (kind 0 F32, 1 F16, 2 BF16; pf: prefetch
 * the weights ahead), and register_float_fdots, which installs them: the prefetching ones, the
 * _cached ones for weights the L3 holds, and the four-row ones. */
#define FLOAT_FDOT_KIND(name, kind)                                                            \
    static float name(const void *w, const float *x, int64_t k) {                              \
        return fdot_floats(w, x, k, kind, 1);                                                  \
    }                                                                                          \
    static float name##_cached(const void *w, const float *x, int64_t k) {                     \
        return fdot_floats(w, x, k, kind, 0);                                                  \
    }                                                                                          \
    static void name##4(const void *w, size_t stride, const float *x, int64_t k, float *out) { \
        fdot_floats4(w, stride, x, k, kind, 1, out);                                           \
    }
#define FLOAT_FDOT_ENTRIES                                                                     \
    FLOAT_FDOT_KIND(fdot_f32w, 0) FLOAT_FDOT_KIND(fdot_f16w, 1) FLOAT_FDOT_KIND(fdot_bf16w, 2) \
    static void register_float_fdots(qt_matmul_table *t) {                                     \
        t->fdot_float[QT_T_F32] = fdot_f32w;                                                   \
        t->fdot_float[QT_T_F16] = fdot_f16w;                                                   \
        t->fdot_float[QT_T_BF16] = fdot_bf16w;                                                 \
        t->fdot_float_cached[QT_T_F32] = fdot_f32w_cached;                                     \
        t->fdot_float_cached[QT_T_F16] = fdot_f16w_cached;                                     \
        t->fdot_float_cached[QT_T_BF16] = fdot_bf16w_cached;                                   \
        t->fdot_float4[QT_T_F32] = fdot_f32w4;                                                 \
        t->fdot_float4[QT_T_F16] = fdot_f16w4;                                                 \
        t->fdot_float4[QT_T_BF16] = fdot_bf16w4;                                               \
    }

/* The 8 six-bit scales and minimums of a Q4_K/Q5_K super-block as bytes [scales 0-7, minimums
 * 0-7] (scales[0..3]: scales 0-3 and top bits of scales 4-7; [4..7]: minimums 0-3 and top bits
 * of minimums 4-7; [8..11]: low nibbles of scales/minimums 4-7). */
ALWAYS_INLINE __m128i k4_scale_bytes(const uint8_t *scales) {
    uint32_t w[3];
    memcpy(w, scales, sizeof w);
    const uint32_t sc_lo = w[0] & 0x3f3f3f3fu, mn_lo = w[1] & 0x3f3f3f3fu;
    const uint32_t sc_hi = (w[2] & 0x0f0f0f0fu) | ((w[0] >> 2) & 0x30303030u);
    const uint32_t mn_hi = ((w[2] >> 4) & 0x0f0f0f0fu) | ((w[1] >> 2) & 0x30303030u);
    return _mm_setr_epi32((int)sc_lo, (int)sc_hi, (int)mn_lo, (int)mn_hi);
}

/* ---------------------------------------------------------------- plain dot, width-generic
 * The groups of a plain dot (qt_mm_dot_fn) past its last whole vector step, one at a time:
 * u offset-binary values and s scales from index j on, a and da the activations at the same
 * place (da per 16 values). */
ALWAYS_INLINE float dot_tail_groups(float total, const uint8_t *u, const float *s, const int8_t *a,
                                    const float *da, int64_t j, int64_t kc) {
    for (; j < kc; j += QT_MM_GROUP) {
        int32_t d = 0;
        for (int t = 0; t < QT_MM_GROUP; t++) d += ((int32_t)u[j + t] - 128) * a[j + t];
        total += (float)d * (s[j / 16] * da[j / 16]);
    }
    return total;
}

/* Plus sum_g m[g] * sa[g] over ng groups: MM_W at a time, then one by one. */
ALWAYS_INLINE float add_min_terms(float total, const float *m, const float *sa, int64_t ng) {
    MM_VF mac = MM_VF_ZERO();
    int64_t g = 0;
    for (; g + MM_W <= ng; g += MM_W) {
        mac = MM_VF_FMADD(MM_VF_LOADU(m + g), MM_VF_LOADU(sa + g), mac);
    }
    total += MM_VF_HSUM(mac);
    for (; g < ng; g++) total += m[g] * sa[g];
    return total;
}

/* ---------------------------------------------------------------- float dot, width-generic
 * The exact path's dot: four chains of MM_W lanes over whole steps of 4 * MM_W values; each
 * level adds the rest its own way (dot_f32_tail) before the sum of the chains. */
ALWAYS_INLINE int64_t dot_f32_steps(const float *w, const float *x, int64_t n, MM_VF a[4]) {
    int64_t j = 0;
    for (; j + 4 * MM_W <= n; j += 4 * MM_W) {
        for (int q = 0; q < 4; q++) {
            a[q] = MM_VF_FMADD(MM_VF_LOADU(w + j + q * MM_W), MM_VF_LOADU(x + j + q * MM_W), a[q]);
        }
    }
    return j;
}

ALWAYS_INLINE float dot_f32_sum(const MM_VF a[4]) {
    return MM_VF_HSUM(MM_VF_ADD(MM_VF_ADD(a[0], a[1]), MM_VF_ADD(a[2], a[3])));
}

#endif /* QT_MATMUL_X86_COMMON_H */
