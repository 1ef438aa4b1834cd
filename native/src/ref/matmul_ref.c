/* Scalar matmul kernels and the unpackers of every quantized encoding into the common
 * "16-value groups of 8-bit integers with a float scale and minimum" layout (see matmul.h).
 * The unpacked value s*q + m is the same float the codec's dequantize produces, so the fast
 * path's only extra error is the 8-bit rounding of the activations. */
#include "../blocks.h"
#include "../matmul.h"

static const int8_t k_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                   1,    13,   25,  38,  53,  69,  89,  113};
static const int8_t k_e2m1_x2[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

static inline uint8_t off(int q) {
    return (uint8_t)(q + 128);
}

/* --------------------------------------------------------------- 32-value legacy blocks */

static void unpack_q4_0(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_q4_0 *x = vx;
    for (int64_t i = 0; i < n / 32; i++, u += 32) {
        const float d = qt_fp16_to_fp32(x[i].d);
        for (int j = 0; j < 16; j++) {
            u[j] = off((x[i].qs[j] & 0xF) - 8);
            u[j + 16] = off((x[i].qs[j] >> 4) - 8);
        }
        s[2 * i] = s[2 * i + 1] = d;
        m[2 * i] = m[2 * i + 1] = 0.0f;
    }
}

static void unpack_q4_1(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_q4_1 *x = vx;
    for (int64_t i = 0; i < n / 32; i++, u += 32) {
        for (int j = 0; j < 16; j++) {
            u[j] = off(x[i].qs[j] & 0xF);
            u[j + 16] = off(x[i].qs[j] >> 4);
        }
        s[2 * i] = s[2 * i + 1] = qt_fp16_to_fp32(x[i].d);
        m[2 * i] = m[2 * i + 1] = qt_fp16_to_fp32(x[i].m);
    }
}

static void unpack_q5_0(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_q5_0 *x = vx;
    for (int64_t i = 0; i < n / 32; i++, u += 32) {
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        for (int j = 0; j < 16; j++) {
            const int lo = (x[i].qs[j] & 0xF) | (int)(((qh >> j) & 1u) << 4);
            const int hi = (x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            u[j] = off(lo - 16);
            u[j + 16] = off(hi - 16);
        }
        s[2 * i] = s[2 * i + 1] = qt_fp16_to_fp32(x[i].d);
        m[2 * i] = m[2 * i + 1] = 0.0f;
    }
}

static void unpack_q5_1(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_q5_1 *x = vx;
    for (int64_t i = 0; i < n / 32; i++, u += 32) {
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        for (int j = 0; j < 16; j++) {
            u[j] = off((x[i].qs[j] & 0xF) | (int)(((qh >> j) & 1u) << 4));
            u[j + 16] = off((x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4));
        }
        s[2 * i] = s[2 * i + 1] = qt_fp16_to_fp32(x[i].d);
        m[2 * i] = m[2 * i + 1] = qt_fp16_to_fp32(x[i].m);
    }
}

static void unpack_q8_0(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_q8_0 *x = vx;
    for (int64_t i = 0; i < n / 32; i++, u += 32) {
        for (int j = 0; j < 32; j++) {
            u[j] = off(x[i].qs[j]);
        }
        s[2 * i] = s[2 * i + 1] = qt_fp16_to_fp32(x[i].d);
        m[2 * i] = m[2 * i + 1] = 0.0f;
    }
}

static void unpack_iq4_nl(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_iq4_nl *x = vx;
    for (int64_t i = 0; i < n / 32; i++, u += 32) {
        for (int j = 0; j < 16; j++) {
            u[j] = off(k_iq4nl[x[i].qs[j] & 0xF]);
            u[j + 16] = off(k_iq4nl[x[i].qs[j] >> 4]);
        }
        s[2 * i] = s[2 * i + 1] = qt_fp16_to_fp32(x[i].d);
        m[2 * i] = m[2 * i + 1] = 0.0f;
    }
}

/* E8M0 scale halved (the table holds E2M1 values doubled), as the codec computes it. */
static inline float e8m0_half(uint8_t e) {
    return qt_bits_f32(e < 2 ? (0x00200000u << e) : ((uint32_t)(e - 1) << 23));
}

static void unpack_mxfp4(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_mxfp4 *x = vx;
    for (int64_t i = 0; i < n / 32; i++, u += 32) {
        for (int j = 0; j < 16; j++) {
            u[j] = off(k_e2m1_x2[x[i].qs[j] & 0xF]);
            u[j + 16] = off(k_e2m1_x2[x[i].qs[j] >> 4]);
        }
        s[2 * i] = s[2 * i + 1] = e8m0_half(x[i].e);
        m[2 * i] = m[2 * i + 1] = 0.0f;
    }
}

/* --------------------------------------------------------------- 256-value K blocks */

/* The j-th 6-bit scale and minimum of a Q4_K/Q5_K super-block. */
static inline void scale_min_k4(int j, const uint8_t *q, int *sc, int *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void unpack_q4_K(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_q4_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = qt_fp16_to_fp32(x[i].d);
        const float dmin = qt_fp16_to_fp32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int c = 0; c < 4; c++, q += 32, u += 64, s += 4, m += 4) {
            int sc, mn;
            scale_min_k4(2 * c, x[i].scales, &sc, &mn);
            s[0] = s[1] = d * (float)sc;
            m[0] = m[1] = -(dmin * (float)mn);
            scale_min_k4(2 * c + 1, x[i].scales, &sc, &mn);
            s[2] = s[3] = d * (float)sc;
            m[2] = m[3] = -(dmin * (float)mn);
            for (int l = 0; l < 32; l++) {
                u[l] = off(q[l] & 0xF);
                u[l + 32] = off(q[l] >> 4);
            }
        }
    }
}

static void unpack_q5_K(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_q5_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = qt_fp16_to_fp32(x[i].d);
        const float dmin = qt_fp16_to_fp32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int c = 0; c < 4; c++, q += 32, u += 64, s += 4, m += 4) {
            int sc, mn;
            scale_min_k4(2 * c, x[i].scales, &sc, &mn);
            s[0] = s[1] = d * (float)sc;
            m[0] = m[1] = -(dmin * (float)mn);
            scale_min_k4(2 * c + 1, x[i].scales, &sc, &mn);
            s[2] = s[3] = d * (float)sc;
            m[2] = m[3] = -(dmin * (float)mn);
            for (int l = 0; l < 32; l++) {
                const int h = x[i].qh[l] >> (2 * c);
                u[l] = off((q[l] & 0xF) | ((h & 1) << 4));
                u[l + 32] = off((q[l] >> 4) | ((h & 2) << 3));
            }
        }
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

static void unpack_q3_K(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_q3_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = qt_fp16_to_fp32(x[i].d);
        /* 16 scales of 6 bits: low nibbles in bytes 0-7, top two bits in bytes 8-11. */
        const uint8_t *b = x[i].scales;
        int8_t sc[16];
        for (int j = 0; j < 16; j++) {
            const int lo = j < 8 ? (b[j] & 0xF) : (b[j - 8] >> 4);
            const int hi = (b[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
            sc[j] = (int8_t)((lo | (hi << 4)) - 32);
        }
        const uint8_t *q = x[i].qs;
        int g = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int j = 0; j < 4; j++) {
                const int shift = 2 * j;
                const uint8_t bit = (uint8_t)(1u << (4 * half + j));
                for (int l = 0; l < 32; l++) {
                    const int v = (q[l] >> shift) & 3;
                    u[l] = off(v - ((x[i].hmask[l] & bit) ? 0 : 4));
                }
                s[g] = d * (float)sc[g];
                s[g + 1] = d * (float)sc[g + 1];
                m[g] = m[g + 1] = 0.0f;
                g += 2;
                u += 32;
            }
        }
        s += 16;
        m += 16;
    }
}

static void unpack_q2_K(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_q2_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = qt_fp16_to_fp32(x[i].d);
        const float dmin = qt_fp16_to_fp32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int g = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int j = 0; j < 4; j++) {
                for (int l = 0; l < 32; l++) {
                    u[l] = off((q[l] >> (2 * j)) & 3);
                }
                for (int e = 0; e < 2; e++, g++) {
                    const uint8_t sc = x[i].scales[g];
                    s[g] = d * (float)(sc & 0xF);
                    m[g] = -(dmin * (float)(sc >> 4));
                }
                u += 32;
            }
        }
        s += 16;
        m += 16;
    }
}

static void unpack_iq4_xs(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_iq4_xs *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = qt_fp16_to_fp32(x[i].d);
        const uint8_t *qs = x[i].qs;
        for (int ib = 0; ib < 8; ib++, qs += 16, u += 32, s += 2, m += 2) {
            const int ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) |
                           (((x[i].scales_h >> (2 * ib)) & 3) << 4);
            for (int j = 0; j < 16; j++) {
                u[j] = off(k_iq4nl[qs[j] & 0xF]);
                u[j + 16] = off(k_iq4nl[qs[j] >> 4]);
            }
            s[0] = s[1] = d * (float)(ls - 32);
            m[0] = m[1] = 0.0f;
        }
    }
}

static void unpack_tq2_0(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_tq2_0 *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = qt_fp16_to_fp32(x[i].d);
        for (int h = 0; h < 2; h++) {
            for (int k = 0; k < 4; k++, u += 32) {
                for (int l = 0; l < 32; l++) {
                    u[l] = off(((x[i].qs[32 * h + l] >> (2 * k)) & 3) - 1);
                }
            }
        }
        for (int g = 0; g < 16; g++) {
            s[g] = d;
            m[g] = 0.0f;
        }
        s += 16;
        m += 16;
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
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = qt_fp16_to_fp32(x[i].d);
        for (int k = 0; k < 5; k++) {
            for (int l = 0; l < 32; l++) *u++ = off(trit(x[i].qs[l], pow3[k]));
        }
        for (int k = 0; k < 5; k++) {
            for (int l = 0; l < 16; l++) *u++ = off(trit(x[i].qs[32 + l], pow3[k]));
        }
        for (int k = 0; k < 4; k++) {
            for (int l = 0; l < 4; l++) *u++ = off(trit(x[i].qh[l], pow3[k]));
        }
        for (int g = 0; g < 16; g++) {
            s[g] = d;
            m[g] = 0.0f;
        }
        s += 16;
        m += 16;
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

/* --------------------------------------------------------------- scalar kernels */

static void quantize_act(const float *x, int64_t k, int group, int8_t *a, float *da, float *sa,
                         int32_t *gbias, int16_t *nsum4) {
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
            da[g] = d;
            sa[g] = d * (float)sum;
            gbias[g] = -128 * sum;
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

void qt_mm_ref_register(qt_matmul_table *t) {
    t->unpack[QT_T_Q4_0] = unpack_q4_0;
    t->unpack[QT_T_Q4_1] = unpack_q4_1;
    t->unpack[QT_T_Q5_0] = unpack_q5_0;
    t->unpack[QT_T_Q5_1] = unpack_q5_1;
    t->unpack[QT_T_Q8_0] = unpack_q8_0;
    t->unpack[QT_T_IQ4_NL] = unpack_iq4_nl;
    t->unpack[QT_T_MXFP4] = unpack_mxfp4;
    t->unpack[QT_T_Q2_K] = unpack_q2_K;
    t->unpack[QT_T_Q3_K] = unpack_q3_K;
    t->unpack[QT_T_Q4_K] = unpack_q4_K;
    t->unpack[QT_T_Q5_K] = unpack_q5_K;
    t->unpack[QT_T_Q6_K] = unpack_q6_K;
    t->unpack[QT_T_IQ4_XS] = unpack_iq4_xs;
    t->unpack[QT_T_TQ1_0] = unpack_tq1_0;
    t->unpack[QT_T_TQ2_0] = unpack_tq2_0;
    t->quantize_act = quantize_act;
    t->dot = dot_ref;
    t->tile = tile_ref;
    t->dot_f32 = dot_f32_ref;
    t->tile_f32 = tile_f32_ref;
}
