/* F16, BF16 and the 32-value legacy block codecs, written once over the x86 vector vocabulary
 * (vec256.h or vec512.h, included first) and compiled by avx2.c and avx512.c with their own
 * flags. A block of 32 values is NV = 32 / W vectors; the loops over them are fixed-count and
 * fully unrolled at -O3, so each width gets straight-line code.
 *
 * Every kernel reproduces the scalar reference bit for bit: products and sums happen in the
 * reference's order as separate roundings (-ffp-contract=off, no FMA intrinsic), block extrema
 * are resolved to the element the reference would pick, and any block whose scale or inverse
 * scale is not finite, or that holds NaN/Inf, is handed to the scalar routine, so the
 * float-to-int conversions here only ever see in-range values. AVX-512_BF16's conversion
 * instruction is not used for BF16: it flushes subnormals, which the reference (and ggml) keep.
 *
 * Defines the static codec functions quantize_<type> / dequantize_<type>, qt_stream_store and
 * codecs_register(t); the K-quant decoders come from ../simd_x86_kdequant.h.
 */
#ifndef QT_X86_CODECS_X86_H
#define QT_X86_CODECS_X86_H

#include <string.h>

#include "../blocks.h"
#include "../internal.h"
#include "../ref/legacy.h"

#define NV (32 / W)

/* For the shape-generic block workers: their shape arguments must be constants at the call. */
#define CODEC_INLINE static inline __attribute__((always_inline))

/* ---------------------------------------------------------------- block helpers */

static inline void load_block(const float *x, vf v[NV]) {
    for (int k = 0; k < NV; k++) {
        v[k] = VF_LOADU(x + W * k);
    }
}

/* The block's vectors folded pairwise into one, lane-wise max or min (order-free here: the
 * inputs are finite and a zero result is looked up again, so the sign of zero never leaks). */
CODEC_INLINE vf fold_block(const vf v[NV], int max) {
    vf t[NV];
    for (int k = 0; k < NV; k++) {
        t[k] = v[k];
    }
    for (int s = NV / 2; s > 0; s /= 2) {
        for (int k = 0; k < s; k++) {
            t[k] = max ? VF_MAX(t[k], t[k + s]) : VF_MIN(t[k], t[k + s]);
        }
    }
    return t[0];
}

/* Lanes whose exponent is all ones (NaN or Inf). */
static inline vm nonfinite(vf v) {
    return VF_NLE(VF_ABS(v), VF_SET1(3.4028235e38f));
}

static inline int block_finite(const vf v[NV]) {
    vm bad = VM_NONE();
    for (int k = 0; k < NV; k++) {
        bad = VM_OR(bad, nonfinite(v[k]));
    }
    return !VM_ANY(bad);
}

/* Bit mask over the 32 values of a block of lanes equal to s. */
static inline uint32_t eq_mask32(const vf v[NV], float s) {
    const vf sv = VF_SET1(s);
    uint32_t m = 0;
    for (int k = 0; k < NV; k++) {
        m |= VM_BITS(VF_EQ(v[k], sv)) << (W * k);
    }
    return m;
}

static inline float block_lane(const vf v[NV], int idx) {
    float tmp[32];
    for (int k = 0; k < NV; k++) {
        VF_STOREU(tmp + W * k, v[k]);
    }
    return tmp[idx];
}

/* Signed value of the first element of largest magnitude, as the reference picks it; returns 0
 * when the block is not entirely finite (the caller then falls back). */
static inline int signed_absmax_block(const vf v[NV], float *out) {
    if (!block_finite(v)) {
        return 0;
    }
    vf a[NV];
    for (int k = 0; k < NV; k++) {
        a[k] = VF_ABS(v[k]);
    }
    const float amax = vf_hmax(fold_block(a, 1));
    if (amax == 0.0f) {
        *out = 0.0f; /* the reference never moves off its +0 start */
        return 1;
    }
    *out = block_lane(v, __builtin_ctz(eq_mask32(a, amax)));
    return 1;
}

/* Block minimum and maximum with the reference's tie rule (first of equal values), which only
 * matters for the sign of zero. Returns 0 when the block holds NaN/Inf. */
static inline int min_max_block(const vf v[NV], float *lo, float *hi) {
    if (!block_finite(v)) {
        return 0;
    }
    float mn = vf_hmin(fold_block(v, 0));
    float mx = vf_hmax(fold_block(v, 1));
    if (mn == 0.0f || mx == 0.0f) {
        const float z = block_lane(v, __builtin_ctz(eq_mask32(v, 0.0f)));
        if (mn == 0.0f) mn = z;
        if (mx == 0.0f) mx = z;
    }
    *lo = mn;
    *hi = mx;
    return 1;
}

static inline int finite_scale(float d, float id) {
    return qt_isfinite_f32(d) && qt_isfinite_f32(id);
}

static inline uint16_t f16_bits(float f) {
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

/* ---------------------------------------------------------------- F16 / BF16 */

static void quantize_f16(const float *x, void *vy, int64_t n, const float *qw) {
    (void)qw;
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + W <= n; i += W) {
        const vf v = VF_LOADU(x + i);
        /* F16C keeps NaN payload bits; the reference writes a canonical quiet NaN. */
        if (VM_ANY(VF_UNORD(v, v))) {
            for (int j = 0; j < W; j++) {
                y[i + j] = qt_fp32_to_fp16(x[i + j]);
            }
            continue;
        }
        vf_store_f16(y + i, v);
    }
    for (; i < n; i++) {
        y[i] = qt_fp32_to_fp16(x[i]);
    }
}

static void dequantize_f16(const void *vx, float *y, int64_t n) {
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        VF_STOREU(y + i, vf_load_f16(x + i));
        VF_STOREU(y + i + W, vf_load_f16(x + i + W));
    }
#ifdef VEC_MASKED_TAILS
    for (; i < n; i += W) {
        const vm k = vm_first(n - i < W ? n - i : W);
        vf_mask_storeu(y + i, k, vf_maskz_load_f16(k, x + i));
    }
#else
    for (; i < n; i++) {
        y[i] = qt_fp16_to_fp32(x[i]);
    }
#endif
}

/* Round-to-nearest-even on the integer image; NaN lanes become (bits >> 16) | 0x40. */
static inline vi bf16_round(vi u) {
    const vi odd = VI_AND(VI_SRLI(u, 16), VI_SET1(1));
    const vi rounded = VI_SRLI(VI_ADD(u, VI_ADD(VI_SET1(0x7fff), odd)), 16);
    const vm nan = VI_GT(VI_AND(u, VI_SET1(0x7fffffff)), VI_SET1(0x7f800000));
    const vi quiet = VI_OR(VI_SRLI(u, 16), VI_SET1(64));
    return VI_BLEND(nan, quiet, rounded);
}

static void quantize_bf16(const float *x, void *vy, int64_t n, const float *qw) {
    (void)qw;
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        vi r[16 / W];
        for (int k = 0; k < 16 / W; k++) {
            r[k] = bf16_round(VI_LOADU(x + i + W * k));
        }
        vi_store_u16x16(y + i, r);
    }
#ifdef VEC_MASKED_TAILS
    if (i < n) {
        const vm k = vm_first(n - i);
        vi_mask_store_u16(y + i, k, bf16_round(vi_maskz_loadu(k, x + i)));
    }
#else
    for (; i < n; i++) {
        y[i] = qt_fp32_to_bf16(x[i]);
    }
#endif
}

static void dequantize_bf16(const void *vx, float *y, int64_t n) {
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        VI_STOREU(y + i, VI_SLLI(vi_load_u16(x + i), 16));
        VI_STOREU(y + i + W, VI_SLLI(vi_load_u16(x + i + W), 16));
    }
#ifdef VEC_MASKED_TAILS
    for (; i < n; i += W) {
        const vm k = vm_first(n - i < W ? n - i : W);
        vi_mask_storeu(y + i, k, VI_SLLI(vi_maskz_load_u16(k, x + i), 16));
    }
#else
    for (; i < n; i++) {
        y[i] = qt_bf16_to_fp32(x[i]);
    }
#endif
}

/* ---------------------------------------------------------------- 4/5-bit quantizers */

/* Q4_0 / Q5_0: d = signed absmax / div (div = -half), q = min(limit, trunc(x / d + bias))
 * (bias = half + 0.5). Both constants are passed as the reference writes them: GCC turns
 * max / -half with a still variable half into -max / half, one negation more per block. */
CODEC_INLINE int symmetric_levels(const vf v[NV], float div, float bias, int limit, float *d,
                                  vi q[NV]) {
    float max;
    if (!signed_absmax_block(v, &max)) {
        return 0;
    }
    const float dd = max / div;
    const float id = dd ? 1.0f / dd : 0.0f;
    if (!finite_scale(dd, id)) {
        return 0;
    }
    const vf idv = VF_SET1(id), bv = VF_SET1(bias);
    for (int k = 0; k < NV; k++) {
        q[k] = VI_MIN(VF_TO_VI_TRUNC(VF_ADD(VF_MUL(v[k], idv), bv)), VI_SET1(limit));
    }
    *d = dd;
    return 1;
}

/* Q4_1 / Q5_1: d = (max - min) / top, q = min(limit, trunc((x - min) / d + 0.5)). */
CODEC_INLINE int offset_levels(const vf v[NV], float top, int limit, float *d, float *m,
                                vi q[NV]) {
    float mn, mx;
    if (!min_max_block(v, &mn, &mx)) {
        return 0;
    }
    const float dd = (mx - mn) / top;
    const float id = dd ? 1.0f / dd : 0.0f;
    if (!finite_scale(dd, id)) {
        return 0;
    }
    const vf idv = VF_SET1(id), mv = VF_SET1(mn), half = VF_SET1(0.5f);
    for (int k = 0; k < NV; k++) {
        const vf t = VF_ADD(VF_MUL(VF_SUB(v[k], mv), idv), half);
        q[k] = VI_MIN(VF_TO_VI_TRUNC(t), VI_SET1(limit));
    }
    *d = dd;
    *m = mn;
    return 1;
}

/* One block of Q4_0 / Q4_1 / Q5_0 / Q5_1 (`offset`: a minimum m is stored; `bits`: 4 or 5;
 * both constant after inlining). Writes d, m, qh and qs, or nothing and returns 0 when the
 * reference must take the block. Byte j of qs holds elements j and j + 16 (low, high nibble),
 * which are lanes of vectors k and k + NV/2; qh bit j is bit 4 of element j. */
CODEC_INLINE int legacy_block(const float *x, int offset, int bits, uint16_t *d, uint16_t *m,
                               uint8_t *qh, uint8_t *qs) {
    const int top = (1 << bits) - 1;
    vf v[NV];
    vi q[NV];
    float dd, mm = 0.0f;
    load_block(x, v);
    /* The reference does not clamp Q5_1; finite in-range values stay <= 31 anyway, and 255
     * keeps the bit extraction below well defined. */
    if (offset ? !offset_levels(v, (float)top, bits == 5 ? 255 : top, &dd, &mm, q)
               : !symmetric_levels(v, bits == 5 ? -16.0f : -8.0f, bits == 5 ? 16.5f : 8.5f, top,
                                   &dd, q)) {
        return 0;
    }
    *d = f16_bits(dd);
    if (offset) {
        *m = f16_bits(mm);
    }
    if (bits == 5) {
        uint32_t h = 0;
        for (int k = 0; k < NV; k++) {
            h |= vi_bit4_bits(q[k]) << (W * k);
            q[k] = VI_AND(q[k], VI_SET1(0x0F));
        }
        memcpy(qh, &h, sizeof h);
    }
    vi c[NV / 2];
    for (int k = 0; k < NV / 2; k++) {
        c[k] = VI_OR(q[k], VI_SLLI(q[k + NV / 2], 4));
    }
    _mm_storeu_si128((__m128i *)(void *)qs, vi_pack_u8x16(c));
    return 1;
}

static void quantize_q4_0_plain(const float *x, void *vy, int64_t n) {
    block_q4_0 *y = vy;
    for (int64_t i = 0; i < n / QK4_0; i++, x += QK4_0) {
        if (!legacy_block(x, 0, 4, &y[i].d, NULL, NULL, y[i].qs)) {
            qt_ref_quantize_q4_0_plain(x, &y[i], QK4_0);
        }
    }
}

static void quantize_q4_1_plain(const float *x, void *vy, int64_t n) {
    block_q4_1 *y = vy;
    for (int64_t i = 0; i < n / QK4_1; i++, x += QK4_1) {
        if (!legacy_block(x, 1, 4, &y[i].d, &y[i].m, NULL, y[i].qs)) {
            qt_ref_quantize_q4_1_plain(x, &y[i], QK4_1);
        }
    }
}

static void quantize_q5_0_plain(const float *x, void *vy, int64_t n) {
    block_q5_0 *y = vy;
    for (int64_t i = 0; i < n / QK5_0; i++, x += QK5_0) {
        if (!legacy_block(x, 0, 5, &y[i].d, NULL, y[i].qh, y[i].qs)) {
            qt_ref_quantize_q5_0_plain(x, &y[i], QK5_0);
        }
    }
}

static void quantize_q5_1_plain(const float *x, void *vy, int64_t n) {
    block_q5_1 *y = vy;
    for (int64_t i = 0; i < n / QK5_1; i++, x += QK5_1) {
        if (!legacy_block(x, 1, 5, &y[i].d, &y[i].m, y[i].qh, y[i].qs)) {
            qt_ref_quantize_q5_1_plain(x, &y[i], QK5_1);
        }
    }
}

/* ---------------------------------------------------------------- Q8_0 quantizer */

/* roundf: round half away from zero. v - trunc(v) is exact, so the half test is exact too. */
static inline vf round_away(vf v) {
    const vf t = VF_TRUNC(v);
    const vm up = VF_GE(VF_ABS(VF_SUB(v, t)), VF_SET1(0.5f));
    const vf step = VF_OR(VF_SET1(1.0f), VF_AND(VF_SET1(-0.0f), v));
    return VF_ADD_IF(up, t, step);
}

static void quantize_q8_0_plain(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        vf v[NV], a[NV];
        load_block(x, v);
        for (int k = 0; k < NV; k++) {
            a[k] = VF_ABS(v[k]);
        }
        const float d = vf_hmax(fold_block(a, 1)) / 127;
        const float id = d ? 1.0f / d : 0.0f;
        if (!block_finite(v) || !finite_scale(d, id)) {
            qt_ref_quantize_q8_0_plain(x, &y[i], QK8_0);
            continue;
        }
        const vf idv = VF_SET1(id);
        vi q[NV];
        for (int k = 0; k < NV; k++) {
            q[k] = VF_TO_VI_TRUNC(round_away(VF_MUL(v[k], idv)));
        }
        y[i].d = f16_bits(d);
        vi_store_i8x32(y[i].qs, q);
    }
}

/* The table entries: with an importance matrix the scalar reference does the weighted search
 * (not vectorized here), without one the plain kernel above runs. */
#define QT_IMATRIX_ENTRY(type)                                                                \
    static void quantize_##type(const float *x, void *y, int64_t n, const float *qw) {        \
        if (qw) qt_ref_quantize_##type##_imatrix(x, y, n, qw);                                \
        else quantize_##type##_plain(x, y, n);                                                \
    }
QT_IMATRIX_ENTRY(q4_0)
QT_IMATRIX_ENTRY(q4_1)
QT_IMATRIX_ENTRY(q5_0)
QT_IMATRIX_ENTRY(q5_1)
#undef QT_IMATRIX_ENTRY

/* ggml's Q8_0 takes no importance matrix. */
static void quantize_q8_0(const float *x, void *y, int64_t n, const float *qw) {
    (void)qw;
    quantize_q8_0_plain(x, y, n);
}

/* ---------------------------------------------------------------- dequantizers */

/* One block of Q4_0 / Q4_1 / Q5_0 / Q5_1: the 16 nibble bytes (low nibbles are elements
 * 0..15), bit 4 from qh when `bits` is 5, then d * (q - 2^(bits-1)) without a minimum, or
 * d * q + m with one (m != NULL). */
CODEC_INLINE void legacy_decode(float *y, const uint8_t *qs, const uint8_t *qh, int bits,
                                 uint16_t dh, const uint16_t *mh) {
    const vf d = VF_SET1(_cvtsh_ss(dh));
    const __m128i b = _mm_loadu_si128((const __m128i *)(const void *)qs);
    const __m128i lo = _mm_and_si128(b, _mm_set1_epi8(0x0F));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0F));
    const vf m = mh ? VF_SET1(_cvtsh_ss(*mh)) : VF_ZERO();
    uint32_t h = 0;
    if (bits == 5) {
        memcpy(&h, qh, sizeof h);
    }
    for (int k = 0; k < NV; k++) {
        vi q = k < NV / 2 ? vi_from_u8(lo, k) : vi_from_u8(hi, k - NV / 2);
        if (bits == 5) {
            q = vi_or16_where(q, h >> (W * k));
        }
        const vf out = mh ? VF_ADD(VF_MUL(VI_TO_VF(q), d), m)
                          : VF_MUL(VI_TO_VF(VI_SUB(q, VI_SET1(1 << (bits - 1)))), d);
        VF_STOREU(y + W * k, out);
    }
}

static void dequantize_q4_0(const void *vx, float *y, int64_t n) {
    const block_q4_0 *x = vx;
    for (int64_t i = 0; i < n / QK4_0; i++, y += QK4_0) {
        legacy_decode(y, x[i].qs, NULL, 4, x[i].d, NULL);
    }
}

static void dequantize_q4_1(const void *vx, float *y, int64_t n) {
    const block_q4_1 *x = vx;
    for (int64_t i = 0; i < n / QK4_1; i++, y += QK4_1) {
        legacy_decode(y, x[i].qs, NULL, 4, x[i].d, &x[i].m);
    }
}

static void dequantize_q5_0(const void *vx, float *y, int64_t n) {
    const block_q5_0 *x = vx;
    for (int64_t i = 0; i < n / QK5_0; i++, y += QK5_0) {
        legacy_decode(y, x[i].qs, x[i].qh, 5, x[i].d, NULL);
    }
}

static void dequantize_q5_1(const void *vx, float *y, int64_t n) {
    const block_q5_1 *x = vx;
    for (int64_t i = 0; i < n / QK5_1; i++, y += QK5_1) {
        legacy_decode(y, x[i].qs, x[i].qh, 5, x[i].d, &x[i].m);
    }
}

static void dequantize_q8_0(const void *vx, float *y, int64_t n) {
    const block_q8_0 *x = vx;
    for (int64_t i = 0; i < n / QK8_0; i++, y += QK8_0) {
        const vf d = VF_SET1(_cvtsh_ss(x[i].d));
        for (int k = 0; k < NV; k++) {
            VF_STOREU(y + W * k, VF_MUL(VI_TO_VF(vi_load_i8(x[i].qs + W * k)), d));
        }
    }
}

/* ---------------------------------------------------------------- K-quant / IQ4 decoders */

/* Widening steps for simd_x86_kdequant.h: 16 bytes -> 16 floats, 16 / W vectors. */
static inline void qk_emit_u8(float *y, __m128i b, float s) {
    const vf sv = VF_SET1(s);
    for (int k = 0; k < 16 / W; k++) {
        VF_STOREU(y + W * k, VF_MUL(VI_TO_VF(vi_from_u8(b, k)), sv));
    }
}

static inline void qk_emit_u8_min(float *y, __m128i b, float s, float m) {
    const vf sv = VF_SET1(s), mv = VF_SET1(m);
    for (int k = 0; k < 16 / W; k++) {
        VF_STOREU(y + W * k, VF_SUB(VF_MUL(VI_TO_VF(vi_from_u8(b, k)), sv), mv));
    }
}

static inline void qk_emit_i8(float *y, __m128i b, float s) {
    const vf sv = VF_SET1(s);
    for (int k = 0; k < 16 / W; k++) {
        VF_STOREU(y + W * k, VF_MUL(VI_TO_VF(vi_from_i8(b, k)), sv));
    }
}

#include "../simd_x86_kdequant.h"

/* ---------------------------------------------------------------- streaming copy */

/* Large dequantize outputs leave through here (api.c): non-temporal stores of whole 64-byte
 * lines (64 / (4 W) stores back to back each), so a line is written without first being read
 * in; two lines per step, then one, then the unaligned ends as plain copies. */
static void qt_stream_store(float *dst, const float *src, int64_t n) {
    int64_t i = 0;
    while (i < n && ((uintptr_t)(dst + i) & 63u) != 0) {
        dst[i] = src[i];
        i++;
    }
    for (; i + 32 <= n; i += 32) {
        for (int k = 0; k < 32 / W; k++) {
            VF_STREAM(dst + i + W * k, VF_LOADU(src + i + W * k));
        }
    }
    for (; i + 16 <= n; i += 16) {
        for (int k = 0; k < 16 / W; k++) {
            VF_STREAM(dst + i + W * k, VF_LOADU(src + i + W * k));
        }
    }
    for (; i < n; i++) {
        dst[i] = src[i];
    }
}

/* Every codec of this file into t (the quantize entries of the K-quants are left as they
 * are: the scalar ones or the lane searches). */
static void codecs_register(qt_kernel_table *t) {
    t->stream_store = qt_stream_store;
    t->codec[QT_T_F16] = (qt_codec){quantize_f16, dequantize_f16};
    t->codec[QT_T_BF16] = (qt_codec){quantize_bf16, dequantize_bf16};
    t->codec[QT_T_Q4_0] = (qt_codec){quantize_q4_0, dequantize_q4_0};
    t->codec[QT_T_Q4_1] = (qt_codec){quantize_q4_1, dequantize_q4_1};
    t->codec[QT_T_Q5_0] = (qt_codec){quantize_q5_0, dequantize_q5_0};
    t->codec[QT_T_Q5_1] = (qt_codec){quantize_q5_1, dequantize_q5_1};
    t->codec[QT_T_Q8_0] = (qt_codec){quantize_q8_0, dequantize_q8_0};
    qk_register_dequantizers(t);
}

#endif /* QT_X86_CODECS_X86_H */
