/* Scalar reference codecs for the 256-value super-block types Q2_K, Q3_K, Q4_K, Q5_K and Q6_K.
 *
 * Every super-block is quantized in three steps: a scale (and for Q2_K/Q4_K/Q5_K an offset) is
 * searched per sub-block, those are quantized themselves against one fp16 super-scale, and then
 * every value is re-rounded against the scale that will actually be decoded. Without an
 * importance matrix this is ggml's quantize_row_*_ref; with one it is ggml's quantize_*
 * library entry, which weights the searches and fits the super-scales by least squares. */
#include <stddef.h>

#include "../blocks.h"
#include "../internal.h"
#include "kquants.h"
#include "quant_search.h"

#define QT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define QT_MAX(a, b) ((a) > (b) ? (a) : (b))

static float sum_squares(const float *x, int n) {
    float s = 0.0f;
    for (int j = 0; j < n; j++) {
        s += x[j] * x[j];
    }
    return s;
}

/* Re-rounding of one group against its decoded scale d (and offset m): levels
 * clamp(nearest((x + m) / d), lo, hi) + off. Written as flat loops over restrict pointers so the
 * compiler vectorizes them; each element's arithmetic is unchanged. */
static void requant_offset(const float *restrict x, int n, float d, float m, int lo, int hi,
                           int off, uint8_t *restrict L) {
    for (int i = 0; i < n; i++) {
        int l = qt_nearest_int((x[i] + m) / d);
        l = l < lo ? lo : l;
        l = l > hi ? hi : l;
        L[i] = (uint8_t)(l + off);
    }
}

/* As requant_offset without an offset term: clamp(nearest(x / d), lo, hi) + off. */
static void requant_plain(const float *restrict x, int n, float d, int lo, int hi, int off,
                          uint8_t *restrict L) {
    for (int i = 0; i < n; i++) {
        int l = qt_nearest_int(x[i] / d);
        l = l < lo ? lo : l;
        l = l > hi ? hi : l;
        L[i] = (uint8_t)(l + off);
    }
}

/* Four 2-bit levels per byte: byte l of each 32-byte group holds elements l, l+32, l+64, l+96
 * of its 128-element half. */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int h = 0; h < QK_K; h += 128) {
        for (int l = 0; l < 32; l++) {
            qs[h / 4 + l] = (uint8_t)(L[h + l] | (L[h + l + 32] << 2) | (L[h + l + 64] << 4) |
                                      (L[h + l + 96] << 6));
        }
    }
}

/* Rows are processed in chunks of up to KQ_CHUNK super-blocks so that the batched searches
 * see many groups at once while every buffer stays on the stack. */
#define KQ_CHUNK 16
#define KQ_CHUNK_VALUES (KQ_CHUNK * QK_K)

/* ---------------------------------------------------------------- Q2_K */

/* Re-round every value against the decoded (fp16 d, dmin times 4-bit) scale and offset. */
static void q2k_requantize(const float *x, const block_q2_K *b, uint8_t *L) {
    const float d_all = qt_fp16_to_fp32(b->d);
    const float m_all = qt_fp16_to_fp32(b->dmin);
    for (int j = 0; j < QK_K / 16; j++) {
        const float d = d_all * (float)(b->scales[j] & 0xF);
        if (!d) {
            continue;
        }
        const float m = m_all * (float)(b->scales[j] >> 4);
        requant_offset(x + 16 * j, 16, d, m, 0, 3, 0, L + 16 * j);
    }
}

/* Plain path: 4-bit scales and mins, each a linear multiple of its maximum. */
static void q2k_finish_plain(const float *x, block_q2_K *b, uint8_t *L, const float *scales,
                             const float *mins) {
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < QK_K / 16; j++) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
        const float iscale = 15.0f / max_scale;
        for (int j = 0; j < QK_K / 16; j++) {
            b->scales[j] = (uint8_t)qt_nearest_int(iscale * scales[j]);
        }
        b->d = qt_fp32_to_fp16(max_scale / 15.0f);
    } else {
        memset(b->scales, 0, sizeof b->scales);
        b->d = qt_fp32_to_fp16(0.0f);
    }
    if (max_min > 0) {
        const float iscale = 15.0f / max_min;
        for (int j = 0; j < QK_K / 16; j++) {
            /* Shifted as unsigned: an overflowed min gives a negative level, whose low bits
             * ggml keeps the same way. */
            b->scales[j] |= (uint8_t)((unsigned)qt_nearest_int(iscale * mins[j]) << 4);
        }
        b->dmin = qt_fp32_to_fp16(max_min / 15.0f);
    } else {
        b->dmin = qt_fp32_to_fp16(0.0f);
    }
    q2k_requantize(x, b, L);
    pack_2bit(L, b->qs);
}

/* Importance path: scales and mins fitted to 4 bits by weighted least squares. */
static void q2k_finish_weighted(const float *x, block_q2_K *b, uint8_t *L, const float *scales,
                                const float *mins, const float *w) {
    uint8_t Ls[QK_K / 16], Lm[QK_K / 16];
    float sw[QK_K / 16];
    for (int j = 0; j < QK_K / 16; j++) {
        float s = 0.0f;
        for (int i = 0; i < 16; i++) {
            s += w[16 * j + i];
        }
        sw[j] = s;
    }
    const float dm = qt_make_qp_quants(QK_K / 16, 15, scales, Ls, sw);
    const float mm = qt_make_qp_quants(QK_K / 16, 15, mins, Lm, sw);
    b->d = qt_fp32_to_fp16(dm);
    b->dmin = qt_fp32_to_fp16(mm);
    for (int j = 0; j < QK_K / 16; j++) {
        b->scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
    }
    q2k_requantize(x, b, L);
    pack_2bit(L, b->qs);
}

/* Importance weights qw * sqrt(sigma2 + x^2) with sigma2 = scale_num * mean(x^2) per
 * super-block (Q2_K uses 1, the other K types 2). */
static void kq_importance(const float *x, const float *qw, int nsb, float scale_num, float *w) {
    for (int s = 0; s < nsb; s++) {
        const float *xs = x + s * QK_K;
        const float sigma2 = scale_num * sum_squares(xs, QK_K) / QK_K;
        for (int i = 0; i < QK_K; i++) {
            w[s * QK_K + i] = qw[s * QK_K + i] * sqrtf(sigma2 + xs[i] * xs[i]);
        }
    }
}

void qt_kq_quantize_q2_K(const qt_search_ops *ops, const float *x, void *vy, int64_t n,
                         const float *qw) {
    block_q2_K *y = vy;
    float w[KQ_CHUNK_VALUES], scales[KQ_CHUNK_VALUES / 16], mins[KQ_CHUNK_VALUES / 16];
    uint8_t L[KQ_CHUNK_VALUES];
    const int64_t nb = n / QK_K;
    for (int64_t c = 0; c < nb; c += KQ_CHUNK) {
        const int nsb = (int)(nb - c < KQ_CHUNK ? nb - c : KQ_CHUNK);
        const float *xc = x + c * QK_K;
        if (qw) {
            /* ggml's Q2_K uses sigma2 = mean(x^2), not twice it as the other K types do. */
            kq_importance(xc, qw + c * QK_K, nsb, 1.0f, w);
            ops->asym(nsb * 16, 16, 3, xc, w, L, scales, mins, -0.9f, 0.05f, 36, 0);
        } else {
            for (int i = 0; i < nsb * QK_K; i++) {
                w[i] = fabsf(xc[i]);
            }
            ops->asym(nsb * 16, 16, 3, xc, w, L, scales, mins, -0.5f, 0.1f, 15, 1);
        }
        for (int s = 0; s < nsb; s++) {
            const int o = s * QK_K;
            if (qw) {
                q2k_finish_weighted(xc + o, &y[c + s], L + o, scales + 16 * s, mins + 16 * s,
                                    w + o);
            } else {
                q2k_finish_plain(xc + o, &y[c + s], L + o, scales + 16 * s, mins + 16 * s);
            }
        }
    }
}

void qt_ref_quantize_q2_K(const float *x, void *y, int64_t n, const float *qw) {
    qt_kq_quantize_q2_K(&qt_scalar_search_ops, x, y, n, qw);
}

void qt_ref_dequantize_q2_K(const void *vx, float *y, int64_t n) {
    const block_q2_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = qt_fp16_to_fp32(x[i].d);
        const float dmin = qt_fp16_to_fp32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        for (int h = 0; h < QK_K; h += 128) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; half++) {
                    const uint8_t sc = x[i].scales[is++];
                    const float dl = d * (float)(sc & 0xF);
                    const float ml = dmin * (float)(sc >> 4);
                    for (int l = 0; l < 16; l++) {
                        *y++ = dl * (float)((q[16 * half + l] >> shift) & 3) - ml;
                    }
                }
            }
            q += 32;
        }
    }
}

/* ---------------------------------------------------------------- Q3_K */

/* 16 six-bit scales (stored +32): low nibbles in bytes 0..7 (two per byte), the top two bits of
 * scale j in byte 8 + j%4 at bit 2*(j/4). */
static void q3k_pack_scales(const int *ls, uint8_t *out) {
    memset(out, 0, 12);
    for (int j = 0; j < QK_K / 16; j++) {
        const int l = ls[j];
        if (j < 8) {
            out[j] = (uint8_t)(l & 0xF);
        } else {
            out[j - 8] |= (uint8_t)((l & 0xF) << 4);
        }
        out[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
    }
}

static int q3k_scale(const uint8_t *s, int j) {
    const int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* Re-round against the decoded scales, then split levels into 2 low bits and the hmask bit. */
static void q3k_finish(const qt_search_ops *ops, const float *x, block_q3_K *b, int8_t *L) {
    const float d_all = qt_fp16_to_fp32(b->d);
    for (int j = 0; j < QK_K / 16; j++) {
        const float d = d_all * (float)(int8_t)q3k_scale(b->scales, j);
        if (!d) {
            continue;
        }
        ops->requant(x + 16 * j, 16, d, -4, 3, 4, (uint8_t *)L + 16 * j);
    }
    /* hmask byte m, bit k carries bit 2 of element 32*k + m; the low two bits go to qs. */
    uint8_t Lu[QK_K];
    memset(b->hmask, 0, sizeof b->hmask);
    for (int k = 0; k < QK_K / 32; k++) {
        for (int m = 0; m < 32; m++) {
            const uint8_t l = (uint8_t)L[32 * k + m];
            b->hmask[m] |= (uint8_t)(((l >> 2) & 1u) << k);
            Lu[32 * k + m] = (uint8_t)(l & 3u);
        }
    }
    pack_2bit(Lu, b->qs);
}

static void q3k_finish_plain(const qt_search_ops *ops, const float *x, block_q3_K *b, int8_t *L,
                             const float *scales) {
    float max_scale = 0.0f, amax = 0.0f;
    for (int j = 0; j < QK_K / 16; j++) {
        const float a = fabsf(scales[j]);
        if (a > amax) {
            amax = a;
            max_scale = scales[j];
        }
    }
    if (max_scale) {
        const float iscale = -32.0f / max_scale;
        int ls[QK_K / 16];
        for (int j = 0; j < QK_K / 16; j++) {
            const int8_t l = (int8_t)qt_nearest_int(iscale * scales[j]);
            ls[j] = QT_MAX(-32, QT_MIN(31, (int)l)) + 32;
        }
        q3k_pack_scales(ls, b->scales);
        b->d = qt_fp32_to_fp16(1 / iscale);
    } else {
        memset(b->scales, 0, sizeof b->scales);
        b->d = qt_fp32_to_fp16(0.0f);
    }
    q3k_finish(ops, x, b, L);
}

static void q3k_finish_weighted(const qt_search_ops *ops, const float *x, block_q3_K *b,
                                int8_t *L, const float *scales, const float *w) {
    int8_t Ls[QK_K / 16];
    float sw[QK_K / 16];
    for (int j = 0; j < QK_K / 16; j++) {
        float s = 0.0f;
        for (int i = 0; i < 16; i++) {
            s += w[16 * j + i];
        }
        sw[j] = s;
    }
    const float d_block = qt_make_qx_quants(QK_K / 16, 32, scales, Ls, 1, sw);
    int ls[QK_K / 16];
    for (int j = 0; j < QK_K / 16; j++) {
        ls[j] = Ls[j];
    }
    q3k_pack_scales(ls, b->scales);
    b->d = qt_fp32_to_fp16(d_block);
    q3k_finish(ops, x, b, L);
}

void qt_kq_quantize_q3_K(const qt_search_ops *ops, const float *x, void *vy, int64_t n,
                         const float *qw) {
    block_q3_K *y = vy;
    float w[KQ_CHUNK_VALUES], scales[KQ_CHUNK_VALUES / 16];
    int8_t L[KQ_CHUNK_VALUES];
    const int64_t nb = n / QK_K;
    for (int64_t c = 0; c < nb; c += KQ_CHUNK) {
        const int nsb = (int)(nb - c < KQ_CHUNK ? nb - c : KQ_CHUNK);
        const float *xc = x + c * QK_K;
        if (qw) {
            kq_importance(xc, qw + c * QK_K, nsb, 2.0f, w);
            ops->sym(nsb * 16, 16, 4, xc, w, L, scales);
        } else {
            ops->q3(nsb * 16, 16, 4, xc, L, scales);
        }
        for (int s = 0; s < nsb; s++) {
            const int o = s * QK_K;
            if (qw) {
                q3k_finish_weighted(ops, xc + o, &y[c + s], L + o, scales + 16 * s, w + o);
            } else {
                q3k_finish_plain(ops, xc + o, &y[c + s], L + o, scales + 16 * s);
            }
        }
    }
}

void qt_ref_quantize_q3_K(const float *x, void *y, int64_t n, const float *qw) {
    qt_kq_quantize_q3_K(&qt_scalar_search_ops, x, y, n, qw);
}

void qt_ref_dequantize_q3_K(const void *vx, float *y, int64_t n) {
    const block_q3_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d_all = qt_fp16_to_fp32(x[i].d);
        const uint8_t *q = x[i].qs;
        const uint8_t *hm = x[i].hmask;
        uint8_t m = 1;
        int is = 0;
        for (int h = 0; h < QK_K; h += 128) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; half++) {
                    const float dl = d_all * (float)q3k_scale(x[i].scales, is++);
                    for (int l = 0; l < 16; l++) {
                        const int k = 16 * half + l;
                        const int v = ((q[k] >> shift) & 3) - ((hm[k] & m) ? 0 : 4);
                        *y++ = dl * (float)v;
                    }
                }
                m = (uint8_t)(m << 1);
            }
            q += 32;
        }
    }
}

/* ---------------------------------------------------------------- Q4_K / Q5_K */

/* Eight 6-bit scales and mins in 12 bytes (ggml's get_scale_min_k4 layout). */
static void k4_pack_scales(const uint8_t *ls, const uint8_t *lm, uint8_t *out) {
    for (int j = 0; j < QK_K / 32; j++) {
        if (j < 4) {
            out[j] = ls[j];
            out[j + 4] = lm[j];
        } else {
            out[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            out[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            out[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

static inline void k4_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *mn = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Re-round every value against the decoded 6-bit scale and min; levels in [0, nmax]. */
static void k4_requantize(const float *x, uint16_t dh, uint16_t mh, const uint8_t *scales,
                          int nmax, uint8_t *L) {
    const float d_all = qt_fp16_to_fp32(dh);
    const float m_all = qt_fp16_to_fp32(mh);
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, mn;
        k4_scale_min(j, scales, &sc, &mn);
        const float d = d_all * (float)sc;
        if (!d) {
            continue;
        }
        const float dm = m_all * (float)mn;
        requant_offset(x + 32 * j, 32, d, dm, 0, nmax, 0, L + 32 * j);
    }
}

/* Plain path shared by Q4_K and Q5_K: both scales and mins quantized linearly to 6 bits. */
static void k4_finish_plain(const float *x, int nmax, const float *scales, const float *mins,
                            uint16_t *dh, uint16_t *mh, uint8_t *scales_out, uint8_t *L) {
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < QK_K / 32; j++) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    uint8_t ls[QK_K / 32], lm[QK_K / 32];
    for (int j = 0; j < QK_K / 32; j++) {
        ls[j] = (uint8_t)QT_MIN(63, (uint8_t)qt_nearest_int(inv_scale * scales[j]));
        lm[j] = (uint8_t)QT_MIN(63, (uint8_t)qt_nearest_int(inv_min * mins[j]));
    }
    k4_pack_scales(ls, lm, scales_out);
    *dh = qt_fp32_to_fp16(max_scale / 63.0f);
    *mh = qt_fp32_to_fp16(max_min / 63.0f);
    k4_requantize(x, *dh, *mh, scales_out, nmax, L);
}

/* Importance path shared by Q4_K and Q5_K: 6-bit scales and mins fitted by weighted least
 * squares; Q5_K additionally clamps the packed levels to 63. */
static void k4_finish_weighted(const float *x, const float *w, int nmax, int clamp63,
                               const float *scales, const float *mins, uint16_t *dh,
                               uint16_t *mh, uint8_t *scales_out, uint8_t *L) {
    uint8_t Ls[QK_K / 32], Lm[QK_K / 32];
    float sw[QK_K / 32];
    for (int j = 0; j < QK_K / 32; j++) {
        float s = 0.0f;
        for (int i = 0; i < 32; i++) {
            s += w[32 * j + i];
        }
        sw[j] = s;
    }
    const float d_block = qt_make_qp_quants(QK_K / 32, 63, scales, Ls, sw);
    const float m_block = qt_make_qp_quants(QK_K / 32, 63, mins, Lm, sw);
    if (clamp63) {
        for (int j = 0; j < QK_K / 32; j++) {
            Ls[j] = QT_MIN(63, Ls[j]);
            Lm[j] = QT_MIN(63, Lm[j]);
        }
    }
    k4_pack_scales(Ls, Lm, scales_out);
    *dh = qt_fp32_to_fp16(d_block);
    *mh = qt_fp32_to_fp16(m_block);
    k4_requantize(x, *dh, *mh, scales_out, nmax, L);
}

/* Searches for one chunk of Q4_K/Q5_K super-blocks: plain weights are rms(sub-block) + |x|. */
static void k4_search(const qt_search_ops *ops, const float *xc, const float *qwc, int nsb,
                      int nmax, float rmin, int nstep, float *w, uint8_t *L, float *scales,
                      float *mins) {
    if (qwc) {
        kq_importance(xc, qwc, nsb, 2.0f, w);
        ops->asym(nsb * 8, 32, nmax, xc, w, L, scales, mins, -0.9f, 0.05f, 36, 0);
        return;
    }
    for (int g = 0; g < nsb * 8; g++) {
        const float *xs = xc + 32 * g;
        const float av_x = sqrtf(sum_squares(xs, 32) / 32);
        for (int i = 0; i < 32; i++) {
            w[32 * g + i] = av_x + fabsf(xs[i]);
        }
    }
    ops->asym(nsb * 8, 32, nmax, xc, w, L, scales, mins, rmin, 0.1f, nstep, 0);
}

/* Q4_K and Q5_K share their header (d, dmin, 12 bytes of 6-bit scales and mins) and the whole
 * search; they differ only in the level range and in how the levels are packed after it. */
static_assert(offsetof(block_q4_K, d) == offsetof(block_q5_K, d), "shared K header");
static_assert(offsetof(block_q4_K, dmin) == offsetof(block_q5_K, dmin), "shared K header");
static_assert(offsetof(block_q4_K, scales) == offsetof(block_q5_K, scales), "shared K header");

typedef void (*k4_pack_fn)(const uint8_t *L, uint8_t *block);

/* Two 4-bit levels per byte: each 64-value chunk uses 32 bytes, element l low, l+32 high. */
static void pack_q4_K(const uint8_t *L, uint8_t *block) {
    uint8_t *qs = block + offsetof(block_q4_K, qs);
    for (int c = 0; c < QK_K; c += 64) {
        for (int l = 0; l < 32; l++) {
            qs[c / 2 + l] = (uint8_t)((L[c + l] & 0xF) | ((L[c + l + 32] & 0xF) << 4));
        }
    }
}

/* Q5_K: as Q4_K's nibbles, plus qh byte l carrying bit 4 of element 64*c + l at bit 2c and of
 * element 64*c + 32 + l at bit 2c+1. */
static void pack_q5_K(const uint8_t *L, uint8_t *block) {
    uint8_t *qs = block + offsetof(block_q5_K, qs), *qh = block + offsetof(block_q5_K, qh);
    memset(qh, 0, QK_K / 8);
    for (int c = 0; c < QK_K / 64; c++) {
        for (int l = 0; l < 32; l++) {
            const uint8_t lo = L[64 * c + l], hi = L[64 * c + 32 + l];
            qh[l] |= (uint8_t)((((lo >> 4) & 1u) << (2 * c)) | (((hi >> 4) & 1u) << (2 * c + 1)));
            qs[32 * c + l] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
        }
    }
}

static void quantize_scale_min_k(const qt_search_ops *ops, const float *x, uint8_t *y,
                                 size_t block_bytes, int64_t n, const float *qw, int nmax,
                                 float rmin, int nstep, int clamp63, k4_pack_fn pack) {
    float w[KQ_CHUNK_VALUES], scales[KQ_CHUNK_VALUES / 32], mins[KQ_CHUNK_VALUES / 32];
    uint8_t L[KQ_CHUNK_VALUES];
    const int64_t nb = n / QK_K;
    for (int64_t c = 0; c < nb; c += KQ_CHUNK) {
        const int nsb = (int)(nb - c < KQ_CHUNK ? nb - c : KQ_CHUNK);
        const float *xc = x + c * QK_K;
        k4_search(ops, xc, qw ? qw + c * QK_K : NULL, nsb, nmax, rmin, nstep, w, L, scales,
                  mins);
        for (int s = 0; s < nsb; s++) {
            uint8_t *b = y + (size_t)(c + s) * block_bytes;
            uint16_t *dh = (uint16_t *)(void *)(b + offsetof(block_q4_K, d));
            uint16_t *mh = (uint16_t *)(void *)(b + offsetof(block_q4_K, dmin));
            uint8_t *sc = b + offsetof(block_q4_K, scales);
            const int o = s * QK_K;
            if (qw) {
                k4_finish_weighted(xc + o, w + o, nmax, clamp63, scales + 8 * s, mins + 8 * s,
                                   dh, mh, sc, L + o);
            } else {
                k4_finish_plain(xc + o, nmax, scales + 8 * s, mins + 8 * s, dh, mh, sc, L + o);
            }
            pack(L + o, b);
        }
    }
}

void qt_kq_quantize_q4_K(const qt_search_ops *ops, const float *x, void *vy, int64_t n,
                         const float *qw) {
    quantize_scale_min_k(ops, x, vy, sizeof(block_q4_K), n, qw, 15, -1.0f, 20, 0, pack_q4_K);
}

void qt_ref_quantize_q4_K(const float *x, void *y, int64_t n, const float *qw) {
    qt_kq_quantize_q4_K(&qt_scalar_search_ops, x, y, n, qw);
}

void qt_ref_dequantize_q4_K(const void *vx, float *y, int64_t n) {
    const block_q4_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = qt_fp16_to_fp32(x[i].d);
        const float dmin = qt_fp16_to_fp32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int c = 0; c < QK_K / 64; c++) {
            uint8_t sc, mn;
            k4_scale_min(2 * c, x[i].scales, &sc, &mn);
            const float d1 = d * (float)sc, m1 = dmin * (float)mn;
            k4_scale_min(2 * c + 1, x[i].scales, &sc, &mn);
            const float d2 = d * (float)sc, m2 = dmin * (float)mn;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
            q += 32;
        }
    }
}

void qt_kq_quantize_q5_K(const qt_search_ops *ops, const float *x, void *vy, int64_t n,
                         const float *qw) {
    quantize_scale_min_k(ops, x, vy, sizeof(block_q5_K), n, qw, 31, -0.5f, 15, 1, pack_q5_K);
}

void qt_ref_quantize_q5_K(const float *x, void *y, int64_t n, const float *qw) {
    qt_kq_quantize_q5_K(&qt_scalar_search_ops, x, y, n, qw);
}

void qt_ref_dequantize_q5_K(const void *vx, float *y, int64_t n) {
    const block_q5_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = qt_fp16_to_fp32(x[i].d);
        const float dmin = qt_fp16_to_fp32(x[i].dmin);
        const uint8_t *ql = x[i].qs;
        const uint8_t *qh = x[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int c = 0; c < QK_K / 64; c++) {
            uint8_t sc, mn;
            k4_scale_min(2 * c, x[i].scales, &sc, &mn);
            const float d1 = d * (float)sc, m1 = dmin * (float)mn;
            k4_scale_min(2 * c + 1, x[i].scales, &sc, &mn);
            const float d2 = d * (float)sc, m2 = dmin * (float)mn;
            for (int l = 0; l < 32; l++) {
                *y++ = d1 * (float)((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            }
            for (int l = 0; l < 32; l++) {
                *y++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            }
            ql += 32;
            u1 = (uint8_t)(u1 << 2);
            u2 = (uint8_t)(u2 << 2);
        }
    }
}

/* ---------------------------------------------------------------- Q6_K */

static void q6k_finish(const float *x, block_q6_K *b, int8_t *L, const float *scales) {
    float max_scale = 0.0f, max_abs = 0.0f;
    for (int j = 0; j < QK_K / 16; j++) {
        const float a = fabsf(scales[j]);
        if (a > max_abs) {
            max_abs = a;
            max_scale = scales[j];
        }
    }
    if (max_abs < QT_GROUP_EPS) {
        memset(b, 0, sizeof *b);
        return;
    }
    const float iscale = -128.0f / max_scale;
    b->d = qt_fp32_to_fp16(1 / iscale);
    for (int j = 0; j < QK_K / 16; j++) {
        b->scales[j] = (int8_t)QT_MIN(127, qt_nearest_int(iscale * scales[j]));
    }
    const float d_all = qt_fp16_to_fp32(b->d);
    for (int j = 0; j < QK_K / 16; j++) {
        const float d = d_all * (float)b->scales[j];
        if (!d) {
            continue;
        }
        requant_plain(x + 16 * j, 16, d, -32, 31, 32, (uint8_t *)L + 16 * j);
    }
    /* Per 128-value half: ql byte l has element l (low) and l+64 (high), byte l+32 has l+32 and
     * l+96; qh byte l has the top two bits of l, l+32, l+64, l+96. */
    uint8_t *ql = b->ql, *qh = b->qh;
    const uint8_t *Lu = (const uint8_t *)L;
    for (int h = 0; h < QK_K; h += 128) {
        for (int l = 0; l < 32; l++) {
            const uint8_t a = Lu[h + l], c = Lu[h + l + 32], e = Lu[h + l + 64],
                          g = Lu[h + l + 96];
            ql[l] = (uint8_t)((a & 0xF) | ((e & 0xF) << 4));
            ql[l + 32] = (uint8_t)((c & 0xF) | ((g & 0xF) << 4));
            qh[l] = (uint8_t)((a >> 4) | ((c >> 4) << 2) | ((e >> 4) << 4) | ((g >> 4) << 6));
        }
        ql += 64;
        qh += 32;
    }
}

/* With an importance matrix ggml passes the raw per-column weights to the sub-block search. */
void qt_kq_quantize_q6_K(const qt_search_ops *ops, const float *x, void *vy, int64_t n,
                         const float *qw) {
    block_q6_K *y = vy;
    float scales[KQ_CHUNK_VALUES / 16];
    int8_t L[KQ_CHUNK_VALUES];
    const int64_t nb = n / QK_K;
    for (int64_t c = 0; c < nb; c += KQ_CHUNK) {
        const int nsb = (int)(nb - c < KQ_CHUNK ? nb - c : KQ_CHUNK);
        const float *xc = x + c * QK_K;
        ops->sym(nsb * 16, 16, 32, xc, qw ? qw + c * QK_K : NULL, L, scales);
        for (int s = 0; s < nsb; s++) {
            q6k_finish(xc + s * QK_K, &y[c + s], L + s * QK_K, scales + 16 * s);
        }
    }
}

void qt_ref_quantize_q6_K(const float *x, void *y, int64_t n, const float *qw) {
    qt_kq_quantize_q6_K(&qt_scalar_search_ops, x, y, n, qw);
}

void qt_ref_dequantize_q6_K(const void *vx, float *y, int64_t n) {
    const block_q6_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = qt_fp16_to_fp32(x[i].d);
        const uint8_t *ql = x[i].ql;
        const uint8_t *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int h = 0; h < QK_K; h += 128) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = (int8_t)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = (int8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * (float)sc[is] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

void qt_ref_register_kquants(qt_kernel_table *t) {
    t->codec[QT_T_Q2_K] = (qt_codec){qt_ref_quantize_q2_K, qt_ref_dequantize_q2_K};
    t->codec[QT_T_Q3_K] = (qt_codec){qt_ref_quantize_q3_K, qt_ref_dequantize_q3_K};
    t->codec[QT_T_Q4_K] = (qt_codec){qt_ref_quantize_q4_K, qt_ref_dequantize_q4_K};
    t->codec[QT_T_Q5_K] = (qt_codec){qt_ref_quantize_q5_K, qt_ref_dequantize_q5_K};
    t->codec[QT_T_Q6_K] = (qt_codec){qt_ref_quantize_q6_K, qt_ref_dequantize_q6_K};
}
