/* Decoders for the 256-value K-quant blocks, the IQ4, ternary and MXFP4 types, shared by the AVX2 and AVX-512
 * translation units.
 *
 * The bit unpacking works on 16 bytes at a time in SSE registers (every x86 level here has
 * SSSE3), which leaves one byte per output value; the including file supplies the widening
 * step for its register width:
 *   qk_emit_u8(y, b, s)       y[0..15] = s * (float)b[i]          (b unsigned bytes)
 *   qk_emit_u8_min(y, b, s, m) y[0..15] = s * (float)b[i] - m
 *   qk_emit_i8(y, b, s)       y[0..15] = s * (float)b[i]          (b signed bytes)
 * Each expression is exactly the scalar reference's, one rounding per operation in the same
 * order, so the output is bit-identical for every byte pattern.
 */
#ifndef QT_SIMD_X86_KDEQUANT_H
#define QT_SIMD_X86_KDEQUANT_H

#include <immintrin.h>
#include <string.h>

#include "blocks.h"
#include "internal.h"

/* The IQ4 non-linear grid (a fact of the format). */
static const int8_t qk_iq4_grid[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                       1,    13,   25,  38,  53,  69,  89,  113};

static inline __m128i qk_load16(const uint8_t *p) {
    return _mm_loadu_si128((const __m128i *)p);
}

/* (b >> shift) & mask per byte; SSE has no byte shifts, so shift words and mask. */
static inline __m128i qk_bits(__m128i b, int shift, int mask) {
    return _mm_and_si128(_mm_srl_epi16(b, _mm_cvtsi32_si128(shift)), _mm_set1_epi8((char)mask));
}

static void qk_dequantize_q2_K(const void *vx, float *y, int64_t n) {
    const block_q2_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = _cvtsh_ss(x[i].d);
        const float dmin = _cvtsh_ss(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        for (int h = 0; h < QK_K; h += 128, q += 32) {
            const __m128i b0 = qk_load16(q), b1 = qk_load16(q + 16);
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; half++, y += 16) {
                    const uint8_t sc = x[i].scales[is++];
                    const float dl = d * (float)(sc & 0xF);
                    const float ml = dmin * (float)(sc >> 4);
                    qk_emit_u8_min(y, qk_bits(half ? b1 : b0, shift, 3), dl, ml);
                }
            }
        }
    }
}

/* Sixteen 6-bit scales stored +32: low nibbles in bytes 0..7, top bits in bytes 8..11. */
static inline int qk_q3_scale(const uint8_t *s, int j) {
    const int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

static void qk_dequantize_q3_K(const void *vx, float *y, int64_t n) {
    const block_q3_K *x = vx;
    const __m128i four = _mm_set1_epi8(4);
    const __m128i zero = _mm_setzero_si128();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d_all = _cvtsh_ss(x[i].d);
        const uint8_t *q = x[i].qs;
        const __m128i hm0 = qk_load16(x[i].hmask), hm1 = qk_load16(x[i].hmask + 16);
        int m = 1, is = 0;
        for (int h = 0; h < QK_K; h += 128, q += 32) {
            const __m128i b0 = qk_load16(q), b1 = qk_load16(q + 16);
            for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
                const __m128i mv = _mm_set1_epi8((char)m);
                for (int half = 0; half < 2; half++, y += 16) {
                    const float dl = d_all * (float)qk_q3_scale(x[i].scales, is++);
                    /* A clear hmask bit means the value sits 4 lower. */
                    const __m128i clear =
                        _mm_cmpeq_epi8(_mm_and_si128(half ? hm1 : hm0, mv), zero);
                    const __m128i v = _mm_sub_epi8(qk_bits(half ? b1 : b0, shift, 3),
                                                   _mm_and_si128(clear, four));
                    qk_emit_i8(y, v, dl);
                }
            }
        }
    }
}

/* Scale and min j of the eight 6-bit pairs packed in 12 bytes (Q4_K / Q5_K). */
static inline void qk_k4_scale_min(int j, const uint8_t *q, int *sc, int *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void qk_dequantize_q4_K(const void *vx, float *y, int64_t n) {
    const block_q4_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = _cvtsh_ss(x[i].d);
        const float dmin = _cvtsh_ss(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int c = 0; c < QK_K / 64; c++, q += 32, y += 64) {
            int sc, mn;
            qk_k4_scale_min(2 * c, x[i].scales, &sc, &mn);
            const float d1 = d * (float)sc, m1 = dmin * (float)mn;
            qk_k4_scale_min(2 * c + 1, x[i].scales, &sc, &mn);
            const float d2 = d * (float)sc, m2 = dmin * (float)mn;
            const __m128i b0 = qk_load16(q), b1 = qk_load16(q + 16);
            qk_emit_u8_min(y, qk_bits(b0, 0, 0xF), d1, m1);
            qk_emit_u8_min(y + 16, qk_bits(b1, 0, 0xF), d1, m1);
            qk_emit_u8_min(y + 32, qk_bits(b0, 4, 0xF), d2, m2);
            qk_emit_u8_min(y + 48, qk_bits(b1, 4, 0xF), d2, m2);
        }
    }
}

static void qk_dequantize_q5_K(const void *vx, float *y, int64_t n) {
    const block_q5_K *x = vx;
    const __m128i sixteen = _mm_set1_epi8(16);
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = _cvtsh_ss(x[i].d);
        const float dmin = _cvtsh_ss(x[i].dmin);
        const uint8_t *ql = x[i].qs;
        const __m128i qh0 = qk_load16(x[i].qh), qh1 = qk_load16(x[i].qh + 16);
        for (int c = 0; c < QK_K / 64; c++, ql += 32, y += 64) {
            int sc, mn;
            qk_k4_scale_min(2 * c, x[i].scales, &sc, &mn);
            const float d1 = d * (float)sc, m1 = dmin * (float)mn;
            qk_k4_scale_min(2 * c + 1, x[i].scales, &sc, &mn);
            const float d2 = d * (float)sc, m2 = dmin * (float)mn;
            const __m128i u1 = _mm_set1_epi8((char)(1 << (2 * c)));
            const __m128i u2 = _mm_set1_epi8((char)(2 << (2 * c)));
            const __m128i b0 = qk_load16(ql), b1 = qk_load16(ql + 16);
            /* Fifth bit: 16 where qh has the chunk's bit set. */
            const __m128i h10 = _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(qh0, u1), u1), sixteen);
            const __m128i h11 = _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(qh1, u1), u1), sixteen);
            const __m128i h20 = _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(qh0, u2), u2), sixteen);
            const __m128i h21 = _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(qh1, u2), u2), sixteen);
            qk_emit_u8_min(y, _mm_or_si128(qk_bits(b0, 0, 0xF), h10), d1, m1);
            qk_emit_u8_min(y + 16, _mm_or_si128(qk_bits(b1, 0, 0xF), h11), d1, m1);
            qk_emit_u8_min(y + 32, _mm_or_si128(qk_bits(b0, 4, 0xF), h20), d2, m2);
            qk_emit_u8_min(y + 48, _mm_or_si128(qk_bits(b1, 4, 0xF), h21), d2, m2);
        }
    }
}

static void qk_dequantize_q6_K(const void *vx, float *y, int64_t n) {
    const block_q6_K *x = vx;
    const __m128i bias = _mm_set1_epi8(32);
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = _cvtsh_ss(x[i].d);
        const uint8_t *ql = x[i].ql;
        const uint8_t *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int h = 0; h < QK_K; h += 128, ql += 64, qh += 32, sc += 8, y += 128) {
            for (int l0 = 0; l0 < 32; l0 += 16) {
                const int is = l0 / 16;
                const __m128i a = qk_load16(ql + l0), b = qk_load16(ql + 32 + l0);
                const __m128i hb = qk_load16(qh + l0);
                /* Low nibble | two high bits << 4, then the +32 storage offset removed. */
                const __m128i q1 = _mm_or_si128(qk_bits(a, 0, 0xF),
                                                _mm_slli_epi16(qk_bits(hb, 0, 3), 4));
                const __m128i q2 = _mm_or_si128(qk_bits(b, 0, 0xF),
                                                _mm_slli_epi16(qk_bits(hb, 2, 3), 4));
                const __m128i q3 = _mm_or_si128(qk_bits(a, 4, 0xF),
                                                _mm_slli_epi16(qk_bits(hb, 4, 3), 4));
                const __m128i q4 = _mm_or_si128(qk_bits(b, 4, 0xF),
                                                _mm_slli_epi16(qk_bits(hb, 6, 3), 4));
                qk_emit_i8(y + l0, _mm_sub_epi8(q1, bias), d * (float)sc[is]);
                qk_emit_i8(y + l0 + 32, _mm_sub_epi8(q2, bias), d * (float)sc[is + 2]);
                qk_emit_i8(y + l0 + 64, _mm_sub_epi8(q3, bias), d * (float)sc[is + 4]);
                qk_emit_i8(y + l0 + 96, _mm_sub_epi8(q4, bias), d * (float)sc[is + 6]);
            }
        }
    }
}

/* 32 values from 16 bytes of 4-bit indices (low nibbles first) into a 16-entry byte grid. */
static inline void qk_emit_grid32(float *y, const uint8_t *qs, __m128i grid, float d) {
    const __m128i b = qk_load16(qs);
    qk_emit_i8(y, _mm_shuffle_epi8(grid, qk_bits(b, 0, 0xF)), d);
    qk_emit_i8(y + 16, _mm_shuffle_epi8(grid, qk_bits(b, 4, 0xF)), d);
}

static void qk_dequantize_iq4_nl(const void *vx, float *y, int64_t n) {
    const block_iq4_nl *x = vx;
    const __m128i grid = _mm_loadu_si128((const __m128i *)qk_iq4_grid);
    for (int64_t i = 0; i < n / QK4_NL; i++, y += QK4_NL) {
        qk_emit_grid32(y, x[i].qs, grid, _cvtsh_ss(x[i].d));
    }
}

static void qk_dequantize_iq4_xs(const void *vx, float *y, int64_t n) {
    const block_iq4_xs *x = vx;
    const __m128i grid = _mm_loadu_si128((const __m128i *)qk_iq4_grid);
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = _cvtsh_ss(x[i].d);
        const uint8_t *qs = x[i].qs;
        for (int ib = 0; ib < QK_K / 32; ib++, y += 32, qs += 16) {
            const int ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) |
                           (((x[i].scales_h >> (2 * ib)) & 3) << 4);
            qk_emit_grid32(y, qs, grid, d * (float)(ls - 32));
        }
    }
}

/* MXFP4: E2M1 values times two (integers), and half the E8M0 block scale, 2^(e-128), built
 * from its bits (subnormal for e < 2) so the product equals the value times 2^(e-127). */
static const int8_t qk_e2m1_x2[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

static inline float qk_e8m0_half(uint8_t e) {
    const uint32_t bits = e < 2 ? (0x00200000u << e) : ((uint32_t)(e - 1) << 23);
    return qt_bits_f32(bits);
}

static void qk_dequantize_mxfp4(const void *vx, float *y, int64_t n) {
    const block_mxfp4 *x = vx;
    const __m128i grid = _mm_loadu_si128((const __m128i *)qk_e2m1_x2);
    for (int64_t i = 0; i < n / QK_MXFP4; i++, y += QK_MXFP4) {
        qk_emit_grid32(y, x[i].qs, grid, qk_e8m0_half(x[i].e));
    }
}

/* TQ1_0 stores five base-3 digits per byte, most significant first, scaled so that digit k of
 * byte b is the top trit of (uint8_t)(b * 3^k): 0 below 86, 1 below 171, else 2. Multiplying
 * by 3 mod 256 is two byte adds, and the trit is two unsigned compares, so a digit costs a few
 * byte ops instead of 16-bit multiplies. Returns the value (trit - 1) and steps b to b * 3. */
static inline __m128i qk_trit_step(__m128i *b) {
    const __m128i v = *b;
    const __m128i ge86 = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(86)), v);
    const __m128i ge171 = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8((char)171)), v);
    *b = _mm_add_epi8(v, _mm_add_epi8(v, v));
    /* compares give -1 for true: trit - 1 = -1 - ge86 - ge171 */
    return _mm_sub_epi8(_mm_sub_epi8(_mm_set1_epi8(-1), ge86), ge171);
}

static void qk_dequantize_tq1_0(const void *vx, float *y, int64_t n) {
    const block_tq1_0 *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = _cvtsh_ss(x[i].d);
        __m128i a0 = qk_load16(x[i].qs), a1 = qk_load16(x[i].qs + 16);
        __m128i b = qk_load16(x[i].qs + 32);
        for (int k = 0; k < 5; k++, y += 32) {
            qk_emit_i8(y, qk_trit_step(&a0), d);
            qk_emit_i8(y + 16, qk_trit_step(&a1), d);
        }
        for (int k = 0; k < 5; k++, y += 16) {
            qk_emit_i8(y, qk_trit_step(&b), d);
        }
        /* The last 16 values: four digits of each qh byte, digit-major (bytes 4k..4k+3 hold
         * qh * 3^k). */
        uint32_t qh4;
        memcpy(&qh4, x[i].qh, 4);
        const __m128i v0 = _mm_cvtsi32_si128((int)qh4);
        const __m128i v1 = _mm_add_epi8(v0, _mm_add_epi8(v0, v0));
        const __m128i v2 = _mm_add_epi8(v1, _mm_add_epi8(v1, v1));
        const __m128i v3 = _mm_add_epi8(v2, _mm_add_epi8(v2, v2));
        __m128i h = _mm_unpacklo_epi64(_mm_unpacklo_epi32(v0, v1), _mm_unpacklo_epi32(v2, v3));
        qk_emit_i8(y, qk_trit_step(&h), d);
        y += 16;
    }
}

static void qk_dequantize_tq2_0(const void *vx, float *y, int64_t n) {
    const block_tq2_0 *x = vx;
    const __m128i one = _mm_set1_epi8(1);
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = _cvtsh_ss(x[i].d);
        for (int h = 0; h < 2; h++) {
            const __m128i b0 = qk_load16(x[i].qs + 32 * h), b1 = qk_load16(x[i].qs + 32 * h + 16);
            for (int k = 0; k < 4; k++, y += 32) {
                qk_emit_i8(y, _mm_sub_epi8(qk_bits(b0, 2 * k, 3), one), d);
                qk_emit_i8(y + 16, _mm_sub_epi8(qk_bits(b1, 2 * k, 3), one), d);
            }
        }
    }
}

/* Decoders only: the quantize entries (scalar or another level's) are left as they are. */
static inline void qk_register_dequantizers(qt_kernel_table *t) {
    static const struct {
        int type;
        qt_dequantize_row_fn fn;
    } decoders[] = {
        {QT_T_Q2_K, qk_dequantize_q2_K},     {QT_T_Q3_K, qk_dequantize_q3_K},
        {QT_T_Q4_K, qk_dequantize_q4_K},     {QT_T_Q5_K, qk_dequantize_q5_K},
        {QT_T_Q6_K, qk_dequantize_q6_K},     {QT_T_IQ4_NL, qk_dequantize_iq4_nl},
        {QT_T_IQ4_XS, qk_dequantize_iq4_xs}, {QT_T_TQ1_0, qk_dequantize_tq1_0},
        {QT_T_TQ2_0, qk_dequantize_tq2_0},   {QT_T_MXFP4, qk_dequantize_mxfp4},
    };
    for (size_t i = 0; i < sizeof decoders / sizeof decoders[0]; i++) {
        t->codec[decoders[i].type].dequantize = decoders[i].fn;
    }
}

#endif /* QT_SIMD_X86_KDEQUANT_H */
