/* AVX-512 (F/BW/VL) codecs for F16, BF16 and the 32-value legacy block types.
 *
 * A 32-value block is exactly two zmm registers: elements 0..15 and 16..31, which is also how
 * the nibble formats pair them (byte j = element j | element j+16 << 4), so packing is an OR
 * and a truncating narrow. The same bit-exactness rules as the AVX2 file apply: separate
 * multiply and add, the reference's choice among equal extrema, and the scalar routine for any
 * block whose inputs or scales are not finite. AVX512_BF16's conversion instruction is not
 * used for BF16: it flushes subnormals, which the reference (and ggml) keep.
 */
#include <string.h>

#include "../simd_x86_avx512_intrin.h"

#include "../blocks.h"
#include "../internal.h"
#include "../ref/legacy.h"
#include "../simd_x86_common.h"

/* ---------------------------------------------------------------- helpers */

static inline __mmask16 nonfinite16(__m512 v) {
    const __m512 absv = _mm512_abs_ps(v);
    return _mm512_cmp_ps_mask(absv, _mm512_set1_ps(3.4028235e38f), _CMP_NLE_UQ);
}

static inline uint32_t eq_mask32(__m512 v0, __m512 v1, float s) {
    const __m512 sv = _mm512_set1_ps(s);
    return (uint32_t)_mm512_cmp_ps_mask(v0, sv, _CMP_EQ_OQ) |
           ((uint32_t)_mm512_cmp_ps_mask(v1, sv, _CMP_EQ_OQ) << 16);
}

static inline float lane_of(__m512 v0, __m512 v1, int idx) {
    float tmp[32];
    _mm512_storeu_ps(tmp, v0);
    _mm512_storeu_ps(tmp + 16, v1);
    return tmp[idx];
}

static inline float hmax16(__m512 v) {
    __m256 m = _mm256_max_ps(_mm512_castps512_ps256(v),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hmin16(__m512 v) {
    __m256 m = _mm256_min_ps(_mm512_castps512_ps256(v),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 s = _mm_min_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    s = _mm_min_ps(s, _mm_movehl_ps(s, s));
    s = _mm_min_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Signed value of the first element of largest magnitude; 0 when the block is not finite. */
static inline int signed_absmax_block(__m512 v0, __m512 v1, float *out) {
    if (nonfinite16(v0) | nonfinite16(v1)) {
        return 0;
    }
    const __m512 a0 = _mm512_abs_ps(v0), a1 = _mm512_abs_ps(v1);
    const float amax = hmax16(_mm512_max_ps(a0, a1));
    if (amax == 0.0f) {
        *out = 0.0f; /* the reference never moves off its +0 start */
        return 1;
    }
    *out = lane_of(v0, v1, __builtin_ctz(eq_mask32(a0, a1, amax)));
    return 1;
}

/* Minimum and maximum, first-of-equals for the sign of zero; 0 when the block is not finite. */
static inline int min_max_block(__m512 v0, __m512 v1, float *lo, float *hi) {
    if (nonfinite16(v0) | nonfinite16(v1)) {
        return 0;
    }
    float mn = hmin16(_mm512_min_ps(v0, v1));
    float mx = hmax16(_mm512_max_ps(v0, v1));
    if (mn == 0.0f || mx == 0.0f) {
        const float z = lane_of(v0, v1, __builtin_ctz(eq_mask32(v0, v1, 0.0f)));
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

/* 32 values < 16 (elements 0..15 in q0, 16..31 in q1) into 16 nibble bytes. */
static inline void store_nibbles(uint8_t *qs, __m512i q0, __m512i q1) {
    const __m512i c = _mm512_or_si512(q0, _mm512_slli_epi32(q1, 4));
    _mm_storeu_si128((__m128i *)qs, _mm512_cvtepi32_epi8(c));
}

/* ---------------------------------------------------------------- F16 / BF16 */

static void quantize_f16(const float *x, void *vy, int64_t n, const float *qw) {
    (void)qw;
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        /* F16C keeps NaN payload bits; the reference writes a canonical quiet NaN. */
        if (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q)) {
            for (int j = 0; j < 16; j++) {
                y[i + j] = qt_fp32_to_fp16(x[i + j]);
            }
            continue;
        }
        const __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_storeu_si256((__m256i *)(y + i), h);
    }
    for (; i < n; i++) {
        y[i] = qt_fp32_to_fp16(x[i]);
    }
}

static void dequantize_f16(const void *vx, float *y, int64_t n) {
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i a = _mm256_loadu_si256((const __m256i *)(x + i));
        const __m256i b = _mm256_loadu_si256((const __m256i *)(x + i + 16));
        _mm512_storeu_ps(y + i, _mm512_cvtph_ps(a));
        _mm512_storeu_ps(y + i + 16, _mm512_cvtph_ps(b));
    }
    if (i < n) {
        /* Masked tail: loads and stores only touch the remaining elements. */
        for (; i < n; i += 16) {
            const int64_t left = n - i < 16 ? n - i : 16;
            const __mmask16 k = (__mmask16)((1u << left) - 1u);
            const __m256i a = _mm256_maskz_loadu_epi16(k, x + i);
            _mm512_mask_storeu_ps(y + i, k, _mm512_cvtph_ps(a));
        }
    }
}

/* Round-to-nearest-even on the integer image; NaN lanes become (bits >> 16) | 0x40. */
static inline __m256i bf16_round16(__m512i u) {
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_srli_epi32(
        _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd)), 16);
    const __m512i absu = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
    const __mmask16 nan = _mm512_cmpgt_epi32_mask(absu, _mm512_set1_epi32(0x7f800000));
    const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(64));
    return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, rounded, quiet));
}

static void quantize_bf16(const float *x, void *vy, int64_t n, const float *qw) {
    (void)qw;
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm256_storeu_si256((__m256i *)(y + i),
                            bf16_round16(_mm512_loadu_si512((const void *)(x + i))));
    }
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        const __m256i r = bf16_round16(_mm512_maskz_loadu_epi32(k, x + i));
        _mm256_mask_storeu_epi16(y + i, k, r);
    }
}

static void dequantize_bf16(const void *vx, float *y, int64_t n) {
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512i a = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(x + i)));
        const __m512i b =
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(x + i + 16)));
        _mm512_storeu_si512((void *)(y + i), _mm512_slli_epi32(a, 16));
        _mm512_storeu_si512((void *)(y + i + 16), _mm512_slli_epi32(b, 16));
    }
    for (; i < n; i += 16) {
        const int64_t left = n - i < 16 ? n - i : 16;
        const __mmask16 k = (__mmask16)((1u << left) - 1u);
        const __m512i a = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, x + i));
        _mm512_mask_storeu_epi32(y + i, k, _mm512_slli_epi32(a, 16));
    }
}

/* ---------------------------------------------------------------- quantizers */

static inline __m512i scale_trunc(__m512 v, __m512 id, __m512 bias, __m512i lim) {
    return _mm512_min_epi32(_mm512_cvttps_epi32(_mm512_add_ps(_mm512_mul_ps(v, id), bias)), lim);
}

static inline __m512i offset_trunc(__m512 v, __m512 mn, __m512 id, __m512i lim) {
    const __m512 t = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(v, mn), id), _mm512_set1_ps(0.5f));
    return _mm512_min_epi32(_mm512_cvttps_epi32(t), lim);
}

static void quantize_q4_0_plain(const float *x, void *vy, int64_t n) {
    block_q4_0 *y = vy;
    const __m512 bias = _mm512_set1_ps(8.5f);
    const __m512i lim = _mm512_set1_epi32(15);
    for (int64_t i = 0; i < n / QK4_0; i++, x += QK4_0) {
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        float max;
        if (!signed_absmax_block(v0, v1, &max)) {
            qt_ref_quantize_q4_0_plain(x, &y[i], QK4_0);
            continue;
        }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        if (!finite_scale(d, id)) {
            qt_ref_quantize_q4_0_plain(x, &y[i], QK4_0);
            continue;
        }
        const __m512 idv = _mm512_set1_ps(id);
        y[i].d = f16_bits(d);
        store_nibbles(y[i].qs, scale_trunc(v0, idv, bias, lim), scale_trunc(v1, idv, bias, lim));
    }
}

static void quantize_q4_1_plain(const float *x, void *vy, int64_t n) {
    block_q4_1 *y = vy;
    const __m512i lim = _mm512_set1_epi32(15);
    for (int64_t i = 0; i < n / QK4_1; i++, x += QK4_1) {
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        float mn, mx;
        if (!min_max_block(v0, v1, &mn, &mx)) {
            qt_ref_quantize_q4_1_plain(x, &y[i], QK4_1);
            continue;
        }
        const float d = (mx - mn) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        if (!finite_scale(d, id)) {
            qt_ref_quantize_q4_1_plain(x, &y[i], QK4_1);
            continue;
        }
        const __m512 idv = _mm512_set1_ps(id), mv = _mm512_set1_ps(mn);
        y[i].d = f16_bits(d);
        y[i].m = f16_bits(mn);
        store_nibbles(y[i].qs, offset_trunc(v0, mv, idv, lim), offset_trunc(v1, mv, idv, lim));
    }
}

static void quantize_q5_0_plain(const float *x, void *vy, int64_t n) {
    block_q5_0 *y = vy;
    const __m512 bias = _mm512_set1_ps(16.5f);
    const __m512i lim = _mm512_set1_epi32(31);
    const __m512i low4 = _mm512_set1_epi32(0x0F), bit4 = _mm512_set1_epi32(0x10);
    for (int64_t i = 0; i < n / QK5_0; i++, x += QK5_0) {
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        float max;
        if (!signed_absmax_block(v0, v1, &max)) {
            qt_ref_quantize_q5_0_plain(x, &y[i], QK5_0);
            continue;
        }
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;
        if (!finite_scale(d, id)) {
            qt_ref_quantize_q5_0_plain(x, &y[i], QK5_0);
            continue;
        }
        const __m512 idv = _mm512_set1_ps(id);
        const __m512i q0 = scale_trunc(v0, idv, bias, lim), q1 = scale_trunc(v1, idv, bias, lim);
        const uint32_t qh = (uint32_t)_mm512_test_epi32_mask(q0, bit4) |
                            ((uint32_t)_mm512_test_epi32_mask(q1, bit4) << 16);
        y[i].d = f16_bits(d);
        memcpy(y[i].qh, &qh, sizeof qh);
        store_nibbles(y[i].qs, _mm512_and_si512(q0, low4), _mm512_and_si512(q1, low4));
    }
}

static void quantize_q5_1_plain(const float *x, void *vy, int64_t n) {
    block_q5_1 *y = vy;
    /* No clamp in the reference; in-range values stay <= 31 and this one only bounds lanes. */
    const __m512i lim = _mm512_set1_epi32(255);
    const __m512i low4 = _mm512_set1_epi32(0x0F), bit4 = _mm512_set1_epi32(0x10);
    for (int64_t i = 0; i < n / QK5_1; i++, x += QK5_1) {
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        float mn, mx;
        if (!min_max_block(v0, v1, &mn, &mx)) {
            qt_ref_quantize_q5_1_plain(x, &y[i], QK5_1);
            continue;
        }
        const float d = (mx - mn) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        if (!finite_scale(d, id)) {
            qt_ref_quantize_q5_1_plain(x, &y[i], QK5_1);
            continue;
        }
        const __m512 idv = _mm512_set1_ps(id), mv = _mm512_set1_ps(mn);
        const __m512i q0 = offset_trunc(v0, mv, idv, lim), q1 = offset_trunc(v1, mv, idv, lim);
        const uint32_t qh = (uint32_t)_mm512_test_epi32_mask(q0, bit4) |
                            ((uint32_t)_mm512_test_epi32_mask(q1, bit4) << 16);
        y[i].d = f16_bits(d);
        y[i].m = f16_bits(mn);
        memcpy(y[i].qh, &qh, sizeof qh);
        store_nibbles(y[i].qs, _mm512_and_si512(q0, low4), _mm512_and_si512(q1, low4));
    }
}

/* roundf: half away from zero; v - trunc(v) is exact, so the half test is exact too. */
static inline __m512i round_away16(__m512 v) {
    const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __mmask16 up =
        _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(v, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __m512 step = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_castps_si512(_mm512_set1_ps(1.0f)),
        _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u))));
    return _mm512_cvttps_epi32(_mm512_mask_add_ps(t, up, t, step));
}

static void quantize_q8_0_plain(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        const float amax = hmax16(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        if ((nonfinite16(v0) | nonfinite16(v1)) || !finite_scale(d, id)) {
            qt_ref_quantize_q8_0_plain(x, &y[i], QK8_0);
            continue;
        }
        const __m512 idv = _mm512_set1_ps(id);
        const __m128i q0 = _mm512_cvtepi32_epi8(round_away16(_mm512_mul_ps(v0, idv)));
        const __m128i q1 = _mm512_cvtepi32_epi8(round_away16(_mm512_mul_ps(v1, idv)));
        y[i].d = f16_bits(d);
        _mm256_storeu_si256((__m256i *)y[i].qs, _mm256_set_m128i(q1, q0));
    }
}

QT_SIMD_IMATRIX_WRAPPERS(avx512)

/* ---------------------------------------------------------------- dequantizers */

/* 16 nibble bytes -> elements 0..15 (low nibbles) and 16..31 (high nibbles) as int32. */
static inline void unpack_nibbles(const uint8_t *qs, __m512i *q0, __m512i *q1) {
    const __m128i b = _mm_loadu_si128((const __m128i *)qs);
    const __m128i m = _mm_set1_epi8(0x0F);
    *q0 = _mm512_cvtepu8_epi32(_mm_and_si128(b, m));
    *q1 = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(b, 4), m));
}

static void dequantize_q4_0(const void *vx, float *y, int64_t n) {
    const block_q4_0 *x = vx;
    const __m512i eight = _mm512_set1_epi32(8);
    for (int64_t i = 0; i < n / QK4_0; i++, y += QK4_0) {
        const __m512 d = _mm512_set1_ps(_cvtsh_ss(x[i].d));
        __m512i q0, q1;
        unpack_nibbles(x[i].qs, &q0, &q1);
        _mm512_storeu_ps(y, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q0, eight)), d));
        _mm512_storeu_ps(y + 16,
                         _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q1, eight)), d));
    }
}

static void dequantize_q4_1(const void *vx, float *y, int64_t n) {
    const block_q4_1 *x = vx;
    for (int64_t i = 0; i < n / QK4_1; i++, y += QK4_1) {
        const __m512 d = _mm512_set1_ps(_cvtsh_ss(x[i].d));
        const __m512 m = _mm512_set1_ps(_cvtsh_ss(x[i].m));
        __m512i q0, q1;
        unpack_nibbles(x[i].qs, &q0, &q1);
        _mm512_storeu_ps(y, _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(q0), d), m));
        _mm512_storeu_ps(y + 16, _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(q1), d), m));
    }
}

static void dequantize_q5_0(const void *vx, float *y, int64_t n) {
    const block_q5_0 *x = vx;
    const __m512i sixteen = _mm512_set1_epi32(16);
    for (int64_t i = 0; i < n / QK5_0; i++, y += QK5_0) {
        const __m512 d = _mm512_set1_ps(_cvtsh_ss(x[i].d));
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        __m512i q0, q1;
        unpack_nibbles(x[i].qs, &q0, &q1);
        q0 = _mm512_mask_or_epi32(q0, (__mmask16)qh, q0, sixteen);
        q1 = _mm512_mask_or_epi32(q1, (__mmask16)(qh >> 16), q1, sixteen);
        _mm512_storeu_ps(y, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q0, sixteen)), d));
        _mm512_storeu_ps(y + 16,
                         _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q1, sixteen)), d));
    }
}

static void dequantize_q5_1(const void *vx, float *y, int64_t n) {
    const block_q5_1 *x = vx;
    const __m512i sixteen = _mm512_set1_epi32(16);
    for (int64_t i = 0; i < n / QK5_1; i++, y += QK5_1) {
        const __m512 d = _mm512_set1_ps(_cvtsh_ss(x[i].d));
        const __m512 m = _mm512_set1_ps(_cvtsh_ss(x[i].m));
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        __m512i q0, q1;
        unpack_nibbles(x[i].qs, &q0, &q1);
        q0 = _mm512_mask_or_epi32(q0, (__mmask16)qh, q0, sixteen);
        q1 = _mm512_mask_or_epi32(q1, (__mmask16)(qh >> 16), q1, sixteen);
        _mm512_storeu_ps(y, _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(q0), d), m));
        _mm512_storeu_ps(y + 16, _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(q1), d), m));
    }
}

static void dequantize_q8_0(const void *vx, float *y, int64_t n) {
    const block_q8_0 *x = vx;
    for (int64_t i = 0; i < n / QK8_0; i++, y += QK8_0) {
        const __m512 d = _mm512_set1_ps(_cvtsh_ss(x[i].d));
        const __m512i q0 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)x[i].qs));
        const __m512i q1 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(x[i].qs + 16)));
        _mm512_storeu_ps(y, _mm512_mul_ps(_mm512_cvtepi32_ps(q0), d));
        _mm512_storeu_ps(y + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(q1), d));
    }
}

/* ---------------------------------------------------------------- K-quant / IQ4 decoders */

/* Widening steps for simd_x86_kdequant.h: 16 bytes -> 16 floats in one zmm. */
static inline void qk_emit_u8(float *y, __m128i b, float s) {
    _mm512_storeu_ps(y, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b)),
                                      _mm512_set1_ps(s)));
}

static inline void qk_emit_u8_min(float *y, __m128i b, float s, float m) {
    const __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b));
    _mm512_storeu_ps(y, _mm512_sub_ps(_mm512_mul_ps(f, _mm512_set1_ps(s)), _mm512_set1_ps(m)));
}

static inline void qk_emit_i8(float *y, __m128i b, float s) {
    _mm512_storeu_ps(y, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)),
                                      _mm512_set1_ps(s)));
}

#include "../simd_x86_kdequant.h"

/* ---------------------------------------------------------------- streaming copy */

/* As the AVX2 version, with 64-byte (one cache line) non-temporal stores. */
static void stream_store_avx512(float *dst, const float *src, int64_t n) {
    int64_t i = 0;
    while (i < n && ((uintptr_t)(dst + i) & 63u) != 0) {
        dst[i] = src[i];
        i++;
    }
    for (; i + 32 <= n; i += 32) {
        _mm512_stream_ps(dst + i, _mm512_loadu_ps(src + i));
        _mm512_stream_ps(dst + i + 16, _mm512_loadu_ps(src + i + 16));
    }
    for (; i + 16 <= n; i += 16) {
        _mm512_stream_ps(dst + i, _mm512_loadu_ps(src + i));
    }
    for (; i < n; i++) {
        dst[i] = src[i];
    }
}

void qt_avx512_register(qt_kernel_table *t) {
    t->stream_store = stream_store_avx512;
    /* every type streams at this level (its measurements predate the AVX2 list) */
    memset(t->decode_bound, 0, sizeof t->decode_bound);
    t->codec[QT_T_F16] = (qt_codec){quantize_f16, dequantize_f16};
    t->codec[QT_T_BF16] = (qt_codec){quantize_bf16, dequantize_bf16};
    t->codec[QT_T_Q4_0] = (qt_codec){quantize_q4_0_avx512, dequantize_q4_0};
    t->codec[QT_T_Q4_1] = (qt_codec){quantize_q4_1_avx512, dequantize_q4_1};
    t->codec[QT_T_Q5_0] = (qt_codec){quantize_q5_0_avx512, dequantize_q5_0};
    t->codec[QT_T_Q5_1] = (qt_codec){quantize_q5_1_avx512, dequantize_q5_1};
    t->codec[QT_T_Q8_0] = (qt_codec){quantize_q8_0_avx512, dequantize_q8_0};
    qk_register_dequantizers(t);
}
