/* Scalar matmul kernels and the unpackers of every quantized encoding into the common
 * "16-value groups of 8-bit integers with a float scale and minimum" layout (see matmul.h).
 * The unpacked value s*q + m is the same float the codec's dequantize produces, so the fast
 * path's only extra error is the 8-bit rounding of the activations. */
#include "../blocks.h"
#include "../matmul.h"
#include "kblock_fields.h"

static const int8_t k_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                   1,    13,   25,  38,  53,  69,  89,  113};
static const int8_t k_e2m1_x2[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

static inline uint8_t off(int q) {
    return (uint8_t)(q + 128);
}

/* 16 bytes of nibbles into 32 offset levels, element j low, j+16 high: value + bias, or
 * table[value] (the non-linear grids). */
static inline void nibbles_biased(const uint8_t *qs, int bias, uint8_t *u) {
    for (int j = 0; j < 16; j++) {
        u[j] = off((qs[j] & 0xF) + bias);
        u[j + 16] = off((qs[j] >> 4) + bias);
    }
}

static inline void nibbles_table(const uint8_t *qs, const int8_t *table, uint8_t *u) {
    for (int j = 0; j < 16; j++) {
        u[j] = off(table[qs[j] & 0xF]);
        u[j + 16] = off(table[qs[j] >> 4]);
    }
}

/* Q5_0/Q5_1: the nibbles plus bit 4 of element j from bit j of the 32-bit qh. */
static inline void nibbles_fifth_bit(const uint8_t *qs, const uint8_t *qh_bytes, int bias,
                                     uint8_t *u) {
    uint32_t qh;
    memcpy(&qh, qh_bytes, sizeof qh);
    for (int j = 0; j < 16; j++) {
        const int lo = (qs[j] & 0xF) | (int)(((qh >> j) & 1u) << 4);
        const int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
        u[j] = off(lo + bias);
        u[j + 16] = off(hi + bias);
    }
}

/* --------------------------------------------------------------- 32-value blocks */

/* A 32-value block's decoder: its 32 offset levels into u; returns the scale, the minimum
 * (0 for the symmetric types) in *min. */
typedef float (*unpack_block32_fn)(const void *block, uint8_t *u, float *min);

/* The loop every 32-value type shares: one scale and minimum per block, given to both of its
 * 16-value groups. Always inlined, so each type's decoder inlines into its own loop. */
static inline __attribute__((always_inline)) void unpack_blocks32(const void *vx, int64_t n,
                                                                  size_t block_bytes,
                                                                  unpack_block32_fn decode,
                                                                  uint8_t *u, float *s,
                                                                  float *m) {
    const uint8_t *b = vx;
    for (int64_t i = 0; i < n / 32; i++, b += block_bytes, u += 32) {
        float mn = 0.0f;
        const float d = decode(b, u, &mn);
        s[2 * i] = s[2 * i + 1] = d;
        m[2 * i] = m[2 * i + 1] = mn;
    }
}

#define UNPACK32(T)                                                                      \
    static void unpack_##T(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {  \
        unpack_blocks32(vx, n, sizeof(block_##T), T##_levels, u, s, m);                  \
    }

static inline float q4_0_levels(const void *vb, uint8_t *u, float *min) {
    const block_q4_0 *b = vb;
    nibbles_biased(b->qs, -8, u);
    return qt_fp16_to_fp32(b->d);
}

static inline float q4_1_levels(const void *vb, uint8_t *u, float *min) {
    const block_q4_1 *b = vb;
    nibbles_biased(b->qs, 0, u);
    *min = qt_fp16_to_fp32(b->m);
    return qt_fp16_to_fp32(b->d);
}

static inline float q5_0_levels(const void *vb, uint8_t *u, float *min) {
    const block_q5_0 *b = vb;
    nibbles_fifth_bit(b->qs, b->qh, -16, u);
    return qt_fp16_to_fp32(b->d);
}

static inline float q5_1_levels(const void *vb, uint8_t *u, float *min) {
    const block_q5_1 *b = vb;
    nibbles_fifth_bit(b->qs, b->qh, 0, u);
    *min = qt_fp16_to_fp32(b->m);
    return qt_fp16_to_fp32(b->d);
}

static inline float q8_0_levels(const void *vb, uint8_t *u, float *min) {
    const block_q8_0 *b = vb;
    for (int j = 0; j < 32; j++) {
        u[j] = off(b->qs[j]);
    }
    return qt_fp16_to_fp32(b->d);
}

static inline float iq4_nl_levels(const void *vb, uint8_t *u, float *min) {
    const block_iq4_nl *b = vb;
    nibbles_table(b->qs, k_iq4nl, u);
    return qt_fp16_to_fp32(b->d);
}

/* E8M0 scale halved (the table holds E2M1 values doubled), as the codec computes it. */
static inline float mxfp4_levels(const void *vb, uint8_t *u, float *min) {
    const block_mxfp4 *b = vb;
    nibbles_table(b->qs, k_e2m1_x2, u);
    return qt_bits_f32(b->e < 2 ? (0x00200000u << b->e) : ((uint32_t)(b->e - 1) << 23));
}

UNPACK32(q4_0)
UNPACK32(q4_1)
UNPACK32(q5_0)
UNPACK32(q5_1)
UNPACK32(q8_0)
UNPACK32(iq4_nl)
UNPACK32(mxfp4)

/* --------------------------------------------------------------- 256-value K blocks */

/* Q4_K and Q5_K: 64-value chunks of two 32-value groups (low then high nibbles), each with a
 * 6-bit scale and minimum; Q5_K's qh (NULL for Q4_K) adds bit 4 from bits 2c and 2c+1 of
 * byte l. Always inlined, so Q4_K's NULL costs nothing. */
static inline __attribute__((always_inline)) void unpack_k4(const uint8_t *scales, uint16_t dh,
                                                            uint16_t mh, const uint8_t *q,
                                                            const uint8_t *qh, uint8_t *u,
                                                            float *s, float *m) {
    const float d = qt_fp16_to_fp32(dh);
    const float dmin = qt_fp16_to_fp32(mh);
    for (int c = 0; c < 4; c++, q += 32, u += 64, s += 4, m += 4) {
        uint8_t sc, mn;
        qt_k4_scale_min(2 * c, scales, &sc, &mn);
        s[0] = s[1] = d * (float)sc;
        m[0] = m[1] = -(dmin * (float)mn);
        qt_k4_scale_min(2 * c + 1, scales, &sc, &mn);
        s[2] = s[3] = d * (float)sc;
        m[2] = m[3] = -(dmin * (float)mn);
        for (int l = 0; l < 32; l++) {
            const int h = qh ? qh[l] >> (2 * c) : 0;
            u[l] = off((q[l] & 0xF) | ((h & 1) << 4));
            u[l + 32] = off((q[l] >> 4) | ((h & 2) << 3));
        }
    }
}

static void unpack_q4_K(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_q4_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++, u += QK_K, s += 16, m += 16) {
        unpack_k4(x[i].scales, x[i].d, x[i].dmin, x[i].qs, NULL, u, s, m);
    }
}

static void unpack_q5_K(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_q5_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++, u += QK_K, s += 16, m += 16) {
        unpack_k4(x[i].scales, x[i].d, x[i].dmin, x[i].qs, x[i].qh, u, s, m);
    }
}

static void unpack_q6_K(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_q6_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = qt_fp16_to_fp32(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int h = 0; h < 2; h++, ql += 64, qh += 32, sc += 8, u += 128, s += 8, m += 8) {
            for (int l = 0; l < 32; l++) {
                u[l] = off(((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32);
                u[l + 32] = off(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                u[l + 64] = off(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                u[l + 96] = off(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
            for (int g = 0; g < 8; g++) {
                s[g] = d * (float)sc[g];
                m[g] = 0.0f;
            }
        }
    }
}

/* The 2-bit planes of Q2_K and TQ2_0: 32-value group 4*half + j is bits 2j of bytes
 * 32*half .. 32*half + 31, plus bias. */
static inline void plane_2bit(const uint8_t *q, int j, int bias, uint8_t *u) {
    for (int l = 0; l < 32; l++) {
        u[l] = off(((q[l] >> (2 * j)) & 3) + bias);
    }
}

/* Q3_K's planes carry a third bit in hmask: clear means -4. Scales and planes interleave as in
 * the codec's decoder (measured faster than two passes). */
static void unpack_q3_K(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_q3_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++, s += 16, m += 16) {
        const float d = qt_fp16_to_fp32(x[i].d);
        /* all 16 scales first: read inside the plane loop they cost 5% more instructions */
        int8_t sc[16];
        for (int g = 0; g < 16; g++) {
            sc[g] = (int8_t)qt_q3k_scale(x[i].scales, g);
        }
        const uint8_t *q = x[i].qs;
        int g = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int j = 0; j < 4; j++, g += 2, u += 32) {
                const uint8_t bit = (uint8_t)(1u << (4 * half + j));
                for (int l = 0; l < 32; l++) {
                    const int v = (q[l] >> (2 * j)) & 3;
                    u[l] = off(v - ((x[i].hmask[l] & bit) ? 0 : 4));
                }
                s[g] = d * (float)sc[g];
                s[g + 1] = d * (float)sc[g + 1];
                m[g] = m[g + 1] = 0.0f;
            }
        }
    }
}

static void unpack_q2_K(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_q2_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++, s += 16, m += 16) {
        const float d = qt_fp16_to_fp32(x[i].d);
        const float dmin = qt_fp16_to_fp32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int g = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int j = 0; j < 4; j++, u += 32) {
                plane_2bit(q, j, 0, u);
                for (int e = 0; e < 2; e++, g++) {
                    s[g] = d * (float)(x[i].scales[g] & 0xF);
                    m[g] = -(dmin * (float)(x[i].scales[g] >> 4));
                }
            }
        }
    }
}

static void unpack_iq4_xs(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_iq4_xs *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = qt_fp16_to_fp32(x[i].d);
        for (int ib = 0; ib < 8; ib++, u += 32, s += 2, m += 2) {
            nibbles_table(x[i].qs + 16 * ib, k_iq4nl, u);
            s[0] = s[1] = d * (float)qt_iq4xs_scale(&x[i], ib);
            m[0] = m[1] = 0.0f;
        }
    }
}

/* TQ1_0 and TQ2_0: one fp16 scale for all 16 groups of the block, no minimum. */
static void one_scale_k(uint16_t dh, float *s, float *m) {
    const float d = qt_fp16_to_fp32(dh);
    for (int g = 0; g < 16; g++) {
        s[g] = d;
        m[g] = 0.0f;
    }
}

static void unpack_tq2_0(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_tq2_0 *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++, s += 16, m += 16) {
        for (int p = 0; p < 8; p++, u += 32) {
            plane_2bit(x[i].qs + 32 * (p / 4), p % 4, -1, u);
        }
        one_scale_k(x[i].d, s, m);
    }
}

/* Trit j (0-based, most significant first) of a base-3 fixed-point byte. */
static inline int trit(uint8_t b, uint8_t pow3) {
    const uint8_t q = (uint8_t)(b * pow3);
    return (int)(((unsigned)q * 3u) >> 8) - 1;
}

static void unpack_tq1_0(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    const block_tq1_0 *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++, s += 16, m += 16) {
        for (int k = 0; k < 5; k++) {
            for (int l = 0; l < 32; l++) *u++ = off(trit(x[i].qs[l], pow3[k]));
        }
        for (int k = 0; k < 5; k++) {
            for (int l = 0; l < 16; l++) *u++ = off(trit(x[i].qs[32 + l], pow3[k]));
        }
        for (int k = 0; k < 4; k++) {
            for (int l = 0; l < 4; l++) *u++ = off(trit(x[i].qh[l], pow3[k]));
        }
        one_scale_k(x[i].d, s, m);
    }
}

int qt_mm_has_min(int32_t type_id) {
    return type_id == QT_T_Q4_1 || type_id == QT_T_Q5_1 || type_id == QT_T_Q4_K ||
           type_id == QT_T_Q5_K || type_id == QT_T_Q2_K;
}

int qt_mm_scale_group(int32_t type_id) {
    switch (type_id) {
    case QT_T_Q4_0: case QT_T_Q4_1: case QT_T_Q5_0: case QT_T_Q5_1: case QT_T_Q8_0:
    case QT_T_IQ4_NL: case QT_T_MXFP4: case QT_T_Q4_K: case QT_T_Q5_K: case QT_T_IQ4_XS:
        return 32;
    default:
        return 16;
    }
}

int qt_mm_act_group(int32_t type_id) {
    const qt_type_desc *desc = qt_type_desc_get(type_id);
    return desc != NULL && desc->block_elems == QK_K ? QK_K : 32;
}

/* --------------------------------------------------------------- scalar kernels */

static void quantize_act(const float *x, int64_t k, int group, int8_t *a, float *da, float *sa,
                         int32_t *gbias, int16_t *nsum4, int16_t *sum16) {
    for (int64_t b = 0; b < k / group; b++) {
        const float *xb = x + b * group;
        float amax = 0.0f;
        for (int j = 0; j < group; j++) {
            const float v = fabsf(xb[j]);
            amax = v > amax ? v : amax;
        }
        const float d = amax / 127.0f;
        const float id = d > 0.0f ? 127.0f / amax : 0.0f;
        for (int h = 0; h < group / QT_MM_GROUP; h++) {
            const int64_t g = b * (group / QT_MM_GROUP) + h;
            const float *xg = x + g * QT_MM_GROUP;
            int8_t *ag = a + g * QT_MM_GROUP;
            int32_t sum = 0;
            for (int j = 0; j < QT_MM_GROUP; j++) {
                const int q = (int)nearbyintf(xg[j] * id);
                ag[j] = (int8_t)q;
                sum += q;
            }
            qt_mm_store_group(g, d, sum, da, sa, gbias, sum16);
            if (nsum4) {
                for (int l = 0; l < 4; l++) {
                    nsum4[4 * g + l] =
                        (int16_t)-(ag[4 * l] + ag[4 * l + 1] + ag[4 * l + 2] + ag[4 * l + 3]);
                }
            }
        }
    }
}

static int32_t group_dot(const uint8_t *u, const int8_t *a) {
    int32_t acc = 0;
    for (int j = 0; j < QT_MM_GROUP; j++) {
        acc += ((int32_t)u[j] - 128) * a[j];
    }
    return acc;
}

static float dot_ref(const uint8_t *u, const float *s, const float *m, int has_min,
                     const qt_mm_act *act, int64_t k0, int64_t kc) {
    const int64_t g0 = k0 / QT_MM_GROUP;
    float acc = 0.0f;
    for (int64_t g = 0; g < kc / QT_MM_GROUP; g++) {
        const int32_t d = group_dot(u + g * QT_MM_GROUP, act->a + k0 + g * QT_MM_GROUP);
        acc += (float)d * (s[g] * act->da[g0 + g]);
        if (has_min) {
            acc += m[g] * act->sa[g0 + g];
        }
    }
    return acc;
}

static void tile_ref(const uint8_t *tu, const float *ts, const float *tm, int has_min,
                     int pair, int64_t kc, const qt_mm_act *acts, int64_t nrows, int64_t k0, float *out) {
    (void)pair; /* per-16 sums are exact whatever the grouping */
    const int64_t g0 = k0 / QT_MM_GROUP;
    for (int64_t i = 0; i < nrows; i++) {
        const qt_mm_act *act = &acts[i];
        for (int r = 0; r < QT_MM_TILE_ROWS; r++) {
            float acc = 0.0f;
            for (int64_t g = 0; g < kc / QT_MM_GROUP; g++) {
                const int8_t *a = act->a + k0 + g * QT_MM_GROUP;
                int32_t d = act->gbias[g0 + g];
                for (int c = 0; c < 4; c++) {
                    const uint8_t *w = tu + g * 256 + c * 64 + r * 4;
                    for (int b = 0; b < 4; b++) d += (int32_t)w[b] * a[4 * c + b];
                }
                acc += (float)d * (ts[g * 16 + r] * act->da[g0 + g]);
                if (has_min) {
                    acc += tm[g * 16 + r] * act->sa[g0 + g];
                }
            }
            out[i * QT_MM_TILE_ROWS + r] += acc;
        }
    }
}

static float dot_f32_ref(const float *w, const float *x, int64_t n) {
    float acc = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        acc += w[j] * x[j];
    }
    return acc;
}

static void tile_f32_ref(const float *tw, int64_t kc, const float *x, int64_t ldx, int64_t nrows,
                         float *out) {
    for (int64_t i = 0; i < nrows; i++) {
        for (int r = 0; r < QT_MM_TILE_ROWS; r++) {
            float acc = 0.0f;
            for (int64_t j = 0; j < kc; j++) {
                acc += tw[j * QT_MM_TILE_ROWS + r] * x[i * ldx + j];
            }
            out[i * QT_MM_TILE_ROWS + r] += acc;
        }
    }
}

/* Every quantized encoding qmatmul takes, as X(ID, name) for unpack_<name>. */
#define MM_REF_TYPES(X)                                                                     \
    X(Q4_0, q4_0) X(Q4_1, q4_1) X(Q5_0, q5_0) X(Q5_1, q5_1) X(Q8_0, q8_0) X(IQ4_NL, iq4_nl)   \
    X(MXFP4, mxfp4) X(Q2_K, q2_K) X(Q3_K, q3_K) X(Q4_K, q4_K) X(Q5_K, q5_K) X(Q6_K, q6_K)    \
    X(IQ4_XS, iq4_xs) X(TQ1_0, tq1_0) X(TQ2_0, tq2_0)
#define MM_SET_UNPACK(ID, name) t->unpack[QT_T_##ID] = unpack_##name;

void qt_mm_ref_register(qt_matmul_table *t) {
    MM_REF_TYPES(MM_SET_UNPACK)
    t->quantize_act = quantize_act;
    t->dot = dot_ref;
    t->tile = tile_ref;
    t->dot_f32 = dot_f32_ref;
    t->tile_f32 = tile_f32_ref;
}
