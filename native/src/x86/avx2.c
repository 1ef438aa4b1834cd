/* AVX2 + FMA + F16C codecs for F16, BF16 and the 32-value legacy block types.
 *
 * Every kernel reproduces the scalar reference bit for bit: products and sums happen in the
 * reference's order as separate roundings (this file builds with -ffp-contract=off, and no FMA
 * intrinsic is used), block extrema are resolved to the element the reference would pick, and
 * any block whose scale or inverse scale is not finite, or that holds NaN/Inf, is handed to the
 * scalar routine so the float-to-int conversions here only ever see in-range values.
 */
#include <immintrin.h>

#include "../blocks.h"
#include "../internal.h"
#include "../ref/legacy.h"
#include "../simd_x86_common.h"

/* ---------------------------------------------------------------- helpers */

static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline float hmin8(__m256 v) {
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    m = _mm_min_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* Lanes whose exponent is all ones (NaN or Inf). */
static inline __m256 nonfinite8(__m256 v) {
    const __m256 absv = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
    return _mm256_cmp_ps(absv, _mm256_set1_ps(3.4028235e38f), _CMP_NLE_UQ);
}

/* Bit mask over the 32 values of a block (4 vectors) of lanes equal to s. */
static inline uint32_t eq_mask32(const __m256 v[4], float s) {
    const __m256 sv = _mm256_set1_ps(s);
    uint32_t m = 0;
    for (int k = 0; k < 4; k++) {
        m |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(v[k], sv, _CMP_EQ_OQ)) << (8 * k);
    }
    return m;
}

static inline void load_block(const float *x, __m256 v[4]) {
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
    }
}

/* Signed value of the first element of largest magnitude, as the reference picks it; returns 0
 * when the block is not entirely finite (the caller then falls back). */
static inline int signed_absmax_block(const __m256 v[4], float *out) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 a[4];
    __m256 bad = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        a[k] = _mm256_andnot_ps(sign, v[k]);
        bad = _mm256_or_ps(bad, nonfinite8(v[k]));
    }
    if (_mm256_movemask_ps(bad)) {
        return 0;
    }
    const float amax = hmax8(_mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3])));
    if (amax == 0.0f) {
        *out = 0.0f; /* the reference never moves off its +0 start */
        return 1;
    }
    const uint32_t hit = eq_mask32(a, amax);
    const int idx = __builtin_ctz(hit);
    float tmp[8];
    _mm256_storeu_ps(tmp, v[idx >> 3]);
    *out = tmp[idx & 7];
    return 1;
}

/* Block minimum and maximum with the reference's tie rule (first of equal values), which only
 * matters for the sign of zero. Returns 0 when the block holds NaN/Inf. */
static inline int min_max_block(const __m256 v[4], float *lo, float *hi) {
    __m256 bad = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        bad = _mm256_or_ps(bad, nonfinite8(v[k]));
    }
    if (_mm256_movemask_ps(bad)) {
        return 0;
    }
    float mn = hmin8(_mm256_min_ps(_mm256_min_ps(v[0], v[1]), _mm256_min_ps(v[2], v[3])));
    float mx = hmax8(_mm256_max_ps(_mm256_max_ps(v[0], v[1]), _mm256_max_ps(v[2], v[3])));
    if (mn == 0.0f || mx == 0.0f) {
        float tmp[32];
        for (int k = 0; k < 4; k++) {
            _mm256_storeu_ps(tmp + 8 * k, v[k]);
        }
        if (mn == 0.0f) {
            mn = tmp[__builtin_ctz(eq_mask32(v, 0.0f))];
        }
        if (mx == 0.0f) {
            mx = tmp[__builtin_ctz(eq_mask32(v, 0.0f))];
        }
    }
    *lo = mn;
    *hi = mx;
    return 1;
}

/* 32 int32 values (elements 0..31 in v[0..3], each < 16 after masking) into the 16 nibble
 * bytes of a block: byte j = element j | element j+16 << 4. */
static inline __m128i pack_nibbles(const __m256i q[4]) {
    const __m256i c0 = _mm256_or_si256(q[0], _mm256_slli_epi32(q[2], 4));
    const __m256i c1 = _mm256_or_si256(q[1], _mm256_slli_epi32(q[3], 4));
    const __m256i w = _mm256_packs_epi32(c0, c1);          /* per lane: c0[4], c1[4] */
    const __m256i b = _mm256_packus_epi16(w, w);            /* per lane: c0[4] c1[4] c0 c1 */
    const __m256i r = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0));
    return _mm256_castsi256_si128(r);
}

/* Bit 4 of 32 int32 values, element j at bit j. */
static inline uint32_t fifth_bits(const __m256i q[4]) {
    uint32_t m = 0;
    for (int k = 0; k < 4; k++) {
        m |= (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_slli_epi32(q[k], 27)))
             << (8 * k);
    }
    return m;
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
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        /* F16C keeps NaN payload bits; the reference writes a canonical quiet NaN. */
        if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) {
            for (int j = 0; j < 8; j++) {
                y[i + j] = qt_fp32_to_fp16(x[i + j]);
            }
            continue;
        }
        const __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128((__m128i *)(y + i), h);
    }
    for (; i < n; i++) {
        y[i] = qt_fp32_to_fp16(x[i]);
    }
}

static void dequantize_f16(const void *vx, float *y, int64_t n) {
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m128i a = _mm_loadu_si128((const __m128i *)(x + i));
        const __m128i b = _mm_loadu_si128((const __m128i *)(x + i + 8));
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(a));
        _mm256_storeu_ps(y + i + 8, _mm256_cvtph_ps(b));
    }
    for (; i < n; i++) {
        y[i] = qt_fp16_to_fp32(x[i]);
    }
}

/* Round-to-nearest-even on the integer image; NaN lanes become (bits >> 16) | 0x40. */
static inline __m256i bf16_round8(__m256i u) {
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
    const __m256i rounded =
        _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), odd)), 16);
    const __m256i absu = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
    const __m256i nan = _mm256_cmpgt_epi32(absu, _mm256_set1_epi32(0x7f800000));
    const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
    return _mm256_blendv_epi8(rounded, quiet, nan);
}

static void quantize_bf16(const float *x, void *vy, int64_t n, const float *qw) {
    (void)qw;
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i a = bf16_round8(_mm256_loadu_si256((const __m256i *)(x + i)));
        const __m256i b = bf16_round8(_mm256_loadu_si256((const __m256i *)(x + i + 8)));
        const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8);
        _mm256_storeu_si256((__m256i *)(y + i), p);
    }
    for (; i < n; i++) {
        y[i] = qt_fp32_to_bf16(x[i]);
    }
}

static void dequantize_bf16(const void *vx, float *y, int64_t n) {
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i a = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(x + i)));
        const __m256i b = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(x + i + 8)));
        _mm256_storeu_si256((__m256i *)(y + i), _mm256_slli_epi32(a, 16));
        _mm256_storeu_si256((__m256i *)(y + i + 8), _mm256_slli_epi32(b, 16));
    }
    for (; i < n; i++) {
        y[i] = qt_bf16_to_fp32(x[i]);
    }
}

/* ---------------------------------------------------------------- quantizers */

/* q = min(limit, trunc(x * id + bias)) for the four vectors of a block. */
static inline void scale_trunc_block(const __m256 v[4], float id, float bias, int limit,
                                     __m256i q[4]) {
    const __m256 idv = _mm256_set1_ps(id);
    const __m256 bv = _mm256_set1_ps(bias);
    const __m256i lim = _mm256_set1_epi32(limit);
    for (int k = 0; k < 4; k++) {
        const __m256 t = _mm256_add_ps(_mm256_mul_ps(v[k], idv), bv);
        q[k] = _mm256_min_epi32(_mm256_cvttps_epi32(t), lim);
    }
}

/* q = trunc((x - mn) * id + 0.5), optionally clamped. */
static inline void offset_trunc_block(const __m256 v[4], float mn, float id, int limit,
                                      __m256i q[4]) {
    const __m256 mv = _mm256_set1_ps(mn);
    const __m256 idv = _mm256_set1_ps(id);
    const __m256 half = _mm256_set1_ps(0.5f);
    const __m256i lim = _mm256_set1_epi32(limit);
    for (int k = 0; k < 4; k++) {
        const __m256 t = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v[k], mv), idv), half);
        q[k] = _mm256_min_epi32(_mm256_cvttps_epi32(t), lim);
    }
}

static void quantize_q4_0_plain(const float *x, void *vy, int64_t n) {
    block_q4_0 *y = vy;
    for (int64_t i = 0; i < n / QK4_0; i++, x += QK4_0) {
        __m256 v[4];
        load_block(x, v);
        float max;
        if (!signed_absmax_block(v, &max)) {
            qt_ref_quantize_q4_0_plain(x, &y[i], QK4_0);
            continue;
        }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        if (!finite_scale(d, id)) {
            qt_ref_quantize_q4_0_plain(x, &y[i], QK4_0);
            continue;
        }
        __m256i q[4];
        scale_trunc_block(v, id, 8.5f, 15, q);
        y[i].d = f16_bits(d);
        _mm_storeu_si128((__m128i *)y[i].qs, pack_nibbles(q));
    }
}

static void quantize_q4_1_plain(const float *x, void *vy, int64_t n) {
    block_q4_1 *y = vy;
    for (int64_t i = 0; i < n / QK4_1; i++, x += QK4_1) {
        __m256 v[4];
        load_block(x, v);
        float mn, mx;
        if (!min_max_block(v, &mn, &mx)) {
            qt_ref_quantize_q4_1_plain(x, &y[i], QK4_1);
            continue;
        }
        const float d = (mx - mn) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        if (!finite_scale(d, id)) {
            qt_ref_quantize_q4_1_plain(x, &y[i], QK4_1);
            continue;
        }
        __m256i q[4];
        offset_trunc_block(v, mn, id, 15, q);
        y[i].d = f16_bits(d);
        y[i].m = f16_bits(mn);
        _mm_storeu_si128((__m128i *)y[i].qs, pack_nibbles(q));
    }
}

static void quantize_q5_0_plain(const float *x, void *vy, int64_t n) {
    block_q5_0 *y = vy;
    const __m256i low4 = _mm256_set1_epi32(0x0F);
    for (int64_t i = 0; i < n / QK5_0; i++, x += QK5_0) {
        __m256 v[4];
        load_block(x, v);
        float max;
        if (!signed_absmax_block(v, &max)) {
            qt_ref_quantize_q5_0_plain(x, &y[i], QK5_0);
            continue;
        }
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;
        if (!finite_scale(d, id)) {
            qt_ref_quantize_q5_0_plain(x, &y[i], QK5_0);
            continue;
        }
        __m256i q[4];
        scale_trunc_block(v, id, 16.5f, 31, q);
        const uint32_t qh = fifth_bits(q);
        for (int k = 0; k < 4; k++) {
            q[k] = _mm256_and_si256(q[k], low4);
        }
        y[i].d = f16_bits(d);
        memcpy(y[i].qh, &qh, sizeof qh);
        _mm_storeu_si128((__m128i *)y[i].qs, pack_nibbles(q));
    }
}

static void quantize_q5_1_plain(const float *x, void *vy, int64_t n) {
    block_q5_1 *y = vy;
    const __m256i low4 = _mm256_set1_epi32(0x0F);
    for (int64_t i = 0; i < n / QK5_1; i++, x += QK5_1) {
        __m256 v[4];
        load_block(x, v);
        float mn, mx;
        if (!min_max_block(v, &mn, &mx)) {
            qt_ref_quantize_q5_1_plain(x, &y[i], QK5_1);
            continue;
        }
        const float d = (mx - mn) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        if (!finite_scale(d, id)) {
            qt_ref_quantize_q5_1_plain(x, &y[i], QK5_1);
            continue;
        }
        __m256i q[4];
        /* The reference does not clamp; finite in-range values stay <= 31 anyway, and the
         * clamp keeps the bit extraction below well defined. */
        offset_trunc_block(v, mn, id, 255, q);
        const uint32_t qh = fifth_bits(q);
        for (int k = 0; k < 4; k++) {
            q[k] = _mm256_and_si256(q[k], low4);
        }
        y[i].d = f16_bits(d);
        y[i].m = f16_bits(mn);
        memcpy(y[i].qh, &qh, sizeof qh);
        _mm_storeu_si128((__m128i *)y[i].qs, pack_nibbles(q));
    }
}

/* roundf: round half away from zero. v - trunc(v) is exact, so the half test is exact too. */
static inline __m256 round_away8(__m256 v) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    const __m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    const __m256 step = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(sign, v));
    return _mm256_add_ps(t, _mm256_and_ps(up, step));
}

static void quantize_q8_0_plain(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        __m256 v[4];
        load_block(x, v);
        __m256 amaxv = _mm256_setzero_ps();
        __m256 bad = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            amaxv = _mm256_max_ps(_mm256_andnot_ps(sign, v[k]), amaxv);
            bad = _mm256_or_ps(bad, nonfinite8(v[k]));
        }
        const float amax = hmax8(amaxv);
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        if (_mm256_movemask_ps(bad) || !finite_scale(d, id)) {
            qt_ref_quantize_q8_0_plain(x, &y[i], QK8_0);
            continue;
        }
        const __m256 idv = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++) {
            q[k] = _mm256_cvttps_epi32(round_away8(_mm256_mul_ps(v[k], idv)));
        }
        const __m256i w = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]),
                                             _mm256_packs_epi32(q[2], q[3]));
        y[i].d = f16_bits(d);
        _mm256_storeu_si256((__m256i *)y[i].qs, _mm256_permutevar8x32_epi32(w, order));
    }
}

QT_SIMD_IMATRIX_WRAPPERS(avx2)

/* ---------------------------------------------------------------- dequantizers */

/* 16 bytes of nibbles -> 32 int32 in element order (low nibbles are elements 0..15). */
static inline void unpack_nibbles(const uint8_t *qs, __m256i q[4]) {
    const __m128i b = _mm_loadu_si128((const __m128i *)qs);
    const __m128i m = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_and_si128(b, m);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
    q[0] = _mm256_cvtepu8_epi32(lo);
    q[1] = _mm256_cvtepu8_epi32(_mm_unpackhi_epi64(lo, lo));
    q[2] = _mm256_cvtepu8_epi32(hi);
    q[3] = _mm256_cvtepu8_epi32(_mm_unpackhi_epi64(hi, hi));
}

/* Bit j of qh as 0 or 16 in int32 lane j (32 lanes over q[4]). */
static inline void unpack_fifth(uint32_t qh, __m256i h[4]) {
    const __m256i shifts = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i sixteen = _mm256_set1_epi32(16);
    for (int k = 0; k < 4; k++) {
        const __m256i bits = _mm256_srlv_epi32(_mm256_set1_epi32((int)(qh >> (8 * k))), shifts);
        h[k] = _mm256_and_si256(_mm256_slli_epi32(bits, 4), sixteen);
    }
}

static void dequantize_q4_0(const void *vx, float *y, int64_t n) {
    const block_q4_0 *x = vx;
    const __m256i eight = _mm256_set1_epi32(8);
    for (int64_t i = 0; i < n / QK4_0; i++, y += QK4_0) {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(x[i].d));
        __m256i q[4];
        unpack_nibbles(x[i].qs, q);
        for (int k = 0; k < 4; k++) {
            const __m256 f = _mm256_cvtepi32_ps(_mm256_sub_epi32(q[k], eight));
            _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(f, d));
        }
    }
}

static void dequantize_q4_1(const void *vx, float *y, int64_t n) {
    const block_q4_1 *x = vx;
    for (int64_t i = 0; i < n / QK4_1; i++, y += QK4_1) {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(x[i].d));
        const __m256 m = _mm256_set1_ps(_cvtsh_ss(x[i].m));
        __m256i q[4];
        unpack_nibbles(x[i].qs, q);
        for (int k = 0; k < 4; k++) {
            const __m256 f = _mm256_cvtepi32_ps(q[k]);
            _mm256_storeu_ps(y + 8 * k, _mm256_add_ps(_mm256_mul_ps(f, d), m));
        }
    }
}

static void dequantize_q5_0(const void *vx, float *y, int64_t n) {
    const block_q5_0 *x = vx;
    const __m256i sixteen = _mm256_set1_epi32(16);
    for (int64_t i = 0; i < n / QK5_0; i++, y += QK5_0) {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(x[i].d));
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        __m256i q[4], h[4];
        unpack_nibbles(x[i].qs, q);
        unpack_fifth(qh, h);
        for (int k = 0; k < 4; k++) {
            const __m256i v = _mm256_sub_epi32(_mm256_or_si256(q[k], h[k]), sixteen);
            _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(v), d));
        }
    }
}

static void dequantize_q5_1(const void *vx, float *y, int64_t n) {
    const block_q5_1 *x = vx;
    for (int64_t i = 0; i < n / QK5_1; i++, y += QK5_1) {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(x[i].d));
        const __m256 m = _mm256_set1_ps(_cvtsh_ss(x[i].m));
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        __m256i q[4], h[4];
        unpack_nibbles(x[i].qs, q);
        unpack_fifth(qh, h);
        for (int k = 0; k < 4; k++) {
            const __m256 f = _mm256_cvtepi32_ps(_mm256_or_si256(q[k], h[k]));
            _mm256_storeu_ps(y + 8 * k, _mm256_add_ps(_mm256_mul_ps(f, d), m));
        }
    }
}

static void dequantize_q8_0(const void *vx, float *y, int64_t n) {
    const block_q8_0 *x = vx;
    for (int64_t i = 0; i < n / QK8_0; i++, y += QK8_0) {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(x[i].d));
        for (int k = 0; k < 4; k++) {
            const __m128i b = _mm_loadl_epi64((const __m128i *)(x[i].qs + 8 * k));
            const __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
            _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(f, d));
        }
    }
}

/* ---------------------------------------------------------------- K-quant / IQ4 decoders */

/* Widening steps for simd_x86_kdequant.h: 16 bytes -> 16 floats, two ymm at a time. */
static inline void qk_emit_u8(float *y, __m128i b, float s) {
    const __m256 sv = _mm256_set1_ps(s);
    _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)), sv));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(b, b))), sv));
}

static inline void qk_emit_u8_min(float *y, __m128i b, float s, float m) {
    const __m256 sv = _mm256_set1_ps(s), mv = _mm256_set1_ps(m);
    const __m256 f0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
    const __m256 f1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(b, b)));
    _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(f0, sv), mv));
    _mm256_storeu_ps(y + 8, _mm256_sub_ps(_mm256_mul_ps(f1, sv), mv));
}

static inline void qk_emit_i8(float *y, __m128i b, float s) {
    const __m256 sv = _mm256_set1_ps(s);
    _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)), sv));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(b, b))), sv));
}

#include "../simd_x86_kdequant.h"

/* ---------------------------------------------------------------- streaming copy */

/* Large dequantize outputs leave through here (api.c): two 32-byte non-temporal stores per
 * 64-byte line, back to back, so each line is written whole without first being read in.
 * Measured on the AVX2-only EPYC (Zen 1), 4096x14336 -> float32, one thread, same process,
 * streaming / plain stores: F16 1.32, BF16 1.31, Q4_0 1.30, Q4_1 1.24, Q8_0 1.34, Q2_K 1.19,
 * Q3_K 1.15, Q4_K 1.32, Q5_K 1.19, Q6_K 1.24, IQ4_NL 1.35, IQ4_XS 1.47, TQ2_0 1.39, MXFP4 1.32,
 * TQ1_0 1.09 (0.96 before its decoder lost the 16-bit multiplies); Q5_0 0.87 and Q5_1 0.91,
 * whose decoders run below the write bandwidth, keep plain stores (decode_bound). On an
 * AVX-512 EPYC forced to AVX2, 32-byte streams measured 2.5-8x slower than plain stores (Q8_0
 * 4096x14336: 2.2 vs 5.4 GiB/s), so dispatch.c drops this copy from the AVX2 table there. */
static void stream_store_avx2(float *dst, const float *src, int64_t n) {
    int64_t i = 0;
    while (i < n && ((uintptr_t)(dst + i) & 63u) != 0) {
        dst[i] = src[i];
        i++;
    }
    for (; i + 16 <= n; i += 16) {
        _mm256_stream_ps(dst + i, _mm256_loadu_ps(src + i));
        _mm256_stream_ps(dst + i + 8, _mm256_loadu_ps(src + i + 8));
    }
    for (; i < n; i++) {
        dst[i] = src[i];
    }
}

void qt_avx2_register(qt_kernel_table *t) {
    t->stream_store = stream_store_avx2;
    /* see stream_store_avx2 */
    t->decode_bound[QT_T_Q5_0] = 1;
    t->decode_bound[QT_T_Q5_1] = 1;
    t->codec[QT_T_F16] = (qt_codec){quantize_f16, dequantize_f16};
    t->codec[QT_T_BF16] = (qt_codec){quantize_bf16, dequantize_bf16};
    t->codec[QT_T_Q4_0] = (qt_codec){quantize_q4_0_avx2, dequantize_q4_0};
    t->codec[QT_T_Q4_1] = (qt_codec){quantize_q4_1_avx2, dequantize_q4_1};
    t->codec[QT_T_Q5_0] = (qt_codec){quantize_q5_0_avx2, dequantize_q5_0};
    t->codec[QT_T_Q5_1] = (qt_codec){quantize_q5_1_avx2, dequantize_q5_1};
    t->codec[QT_T_Q8_0] = (qt_codec){quantize_q8_0_avx2, dequantize_q8_0};
    qk_register_dequantizers(t);
}
