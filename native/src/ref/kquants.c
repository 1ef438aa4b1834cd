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
#include "kblock_fields.h"
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

/* Per-group sums of n consecutive weights, in element order (the K types' scale weights). */
static void group_sums(const float *w, int ngroups, int n, float *sums) {
    for (int g = 0; g < ngroups; g++) {
        float s = 0.0f;
        for (int i = 0; i < n; i++) {
            s += w[n * g + i];
        }
        sums[g] = s;
    }
}

/* Largest of n values and 0 (a NaN never wins). */
static float max_or_zero(const float *x, int n) {
    float m = 0.0f;
    for (int j = 0; j < n; j++) {
        if (x[j] > m) m = x[j];
    }
    return m;
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

/* Rows are processed in chunks of up to KQ_CHUNK super-blocks so that the batched searches
 * see many groups at once while every buffer stays on the stack. A type's chunk function
 * quantizes nsb consecutive super-blocks xc (importance qwc or NULL) into yc. */
#define KQ_CHUNK 16
#define KQ_CHUNK_VALUES (KQ_CHUNK * QK_K)

typedef void (*kq_chunk_fn)(const qt_search_ops *ops, const float *xc, const float *qwc, int nsb,
                            uint8_t *yc);

static void kq_quantize_rows(const qt_search_ops *ops, const float *x, void *vy,
                             size_t block_bytes, int64_t n, const float *qw, kq_chunk_fn chunk) {
    uint8_t *y = vy;
    const int64_t nb = n / QK_K;
    for (int64_t c = 0; c < nb; c += KQ_CHUNK) {
        const int nsb = (int)(nb - c < KQ_CHUNK ? nb - c : KQ_CHUNK);
        chunk(ops, x + c * QK_K, qw ? qw + c * QK_K : NULL, nsb, y + (size_t)c * block_bytes);
    }
}

/* Each type's public row quantizer (search ops from the calling level), its scalar codec entry
 * and its row decoder over a per-block decoder <T>_block. */
#define KQ_ROW_CODEC(T)                                                                      \
    void qt_kq_quantize_##T(const qt_search_ops *ops, const float *x, void *y, int64_t n,     \
                            const float *qw) {                                               \
        kq_quantize_rows(ops, x, y, sizeof(block_##T), n, qw, T##_chunk);                    \
    }                                                                                        \
    static void quantize_##T(const float *x, void *y, int64_t n, const float *qw) {          \
        qt_kq_quantize_##T(&qt_scalar_search_ops, x, y, n, qw);                              \
    }                                                                                        \
    static void dequantize_##T(const void *vx, float *y, int64_t n) {                        \
        const block_##T *x = vx;                                                             \
        for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {                                  \
            T##_block(&x[i], y);                                                             \
        }                                                                                    \
    }

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
static void q2k_scales_plain(block_q2_K *b, const float *scales, const float *mins) {
    const float max_scale = max_or_zero(scales, QK_K / 16);
    const float max_min = max_or_zero(mins, QK_K / 16);
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
}

/* Importance path: scales and mins fitted to 4 bits by weighted least squares. */
static void q2k_scales_weighted(block_q2_K *b, const float *scales, const float *mins,
                                const float *w) {
    uint8_t Ls[QK_K / 16], Lm[QK_K / 16];
    float sw[QK_K / 16];
    group_sums(w, QK_K / 16, 16, sw);
    b->d = qt_fp32_to_fp16(qt_make_qp_quants(QK_K / 16, 15, scales, Ls, sw));
    b->dmin = qt_fp32_to_fp16(qt_make_qp_quants(QK_K / 16, 15, mins, Lm, sw));
    for (int j = 0; j < QK_K / 16; j++) {
        b->scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
    }
}

static void q2_K_chunk(const qt_search_ops *ops, const float *xc, const float *qwc, int nsb,
                       uint8_t *yc) {
    block_q2_K *y = (block_q2_K *)(void *)yc;
    float w[KQ_CHUNK_VALUES], scales[KQ_CHUNK_VALUES / 16], mins[KQ_CHUNK_VALUES / 16];
    uint8_t L[KQ_CHUNK_VALUES];
    if (qwc) {
        /* ggml's Q2_K uses sigma2 = mean(x^2), not twice it as the other K types do. */
        kq_importance(xc, qwc, nsb, 1.0f, w);
        ops->asym(nsb * 16, 16, 3, xc, w, L, scales, mins, -0.9f, 0.05f, 36, 0);
    } else {
        for (int i = 0; i < nsb * QK_K; i++) {
            w[i] = fabsf(xc[i]);
        }
        ops->asym(nsb * 16, 16, 3, xc, w, L, scales, mins, -0.5f, 0.1f, 15, 1);
    }
    for (int s = 0; s < nsb; s++) {
        const int o = s * QK_K;
        if (qwc) {
            q2k_scales_weighted(&y[s], scales + 16 * s, mins + 16 * s, w + o);
        } else {
            q2k_scales_plain(&y[s], scales + 16 * s, mins + 16 * s);
        }
        q2k_requantize(xc + o, &y[s], L + o);
        pack_2bit(L + o, y[s].qs);
    }
}

static void q2_K_block(const block_q2_K *b, float *y) {
    const float d = qt_fp16_to_fp32(b->d);
    const float dmin = qt_fp16_to_fp32(b->dmin);
    const uint8_t *q = b->qs;
    int is = 0;
    for (int h = 0; h < QK_K; h += 128, q += 32) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; half++) {
                const uint8_t sc = b->scales[is++];
                const float dl = d * (float)(sc & 0xF);
                const float ml = dmin * (float)(sc >> 4);
                for (int l = 0; l < 16; l++) {
                    *y++ = dl * (float)((q[16 * half + l] >> shift) & 3) - ml;
                }
            }
        }
    }
}


/* ---------------------------------------------------------------- Q3_K */

/* 16 six-bit scales (stored +32), in the layout qt_q3k_scale reads. */
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

/* Re-round against the decoded scales, then split levels into 2 low bits and the hmask bit.
 * Kept out of line: inlined into q3_K_chunk, GCC 12 vectorized the hmask loop worse (the whole
 * Q3_K quantize measured +8% instructions under callgrind). */
static __attribute__((noinline)) void q3k_finish(const qt_search_ops *ops, const float *x, block_q3_K *b, int8_t *L) {
    const float d_all = qt_fp16_to_fp32(b->d);
    for (int j = 0; j < QK_K / 16; j++) {
        const float d = d_all * (float)(int8_t)qt_q3k_scale(b->scales, j);
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

static void q3k_scales_plain(block_q3_K *b, const float *scales) {
    float amax;
    const float max_scale = qt_signed_peak(scales, QK_K / 16, &amax);
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
}

static void q3k_scales_weighted(block_q3_K *b, const float *scales, const float *w) {
    int8_t Ls[QK_K / 16];
    float sw[QK_K / 16];
    group_sums(w, QK_K / 16, 16, sw);
    const float d_block = qt_make_qx_quants(QK_K / 16, 32, scales, Ls, 1, sw);
    int ls[QK_K / 16];
    for (int j = 0; j < QK_K / 16; j++) {
        ls[j] = Ls[j];
    }
    q3k_pack_scales(ls, b->scales);
    b->d = qt_fp32_to_fp16(d_block);
}

static void q3_K_chunk(const qt_search_ops *ops, const float *xc, const float *qwc, int nsb,
                       uint8_t *yc) {
    block_q3_K *y = (block_q3_K *)(void *)yc;
    float w[KQ_CHUNK_VALUES], scales[KQ_CHUNK_VALUES / 16];
    int8_t L[KQ_CHUNK_VALUES];
    if (qwc) {
        kq_importance(xc, qwc, nsb, 2.0f, w);
        ops->sym(nsb * 16, 16, 4, xc, w, L, scales);
    } else {
        ops->q3(nsb * 16, 16, 4, xc, L, scales);
    }
    for (int s = 0; s < nsb; s++) {
        if (qwc) {
            q3k_scales_weighted(&y[s], scales + 16 * s, w + s * QK_K);
        } else {
            q3k_scales_plain(&y[s], scales + 16 * s);
        }
        q3k_finish(ops, xc + s * QK_K, &y[s], L + s * QK_K);
    }
}

static void q3_K_block(const block_q3_K *b, float *y) {
    const float d_all = qt_fp16_to_fp32(b->d);
    const uint8_t *q = b->qs;
    uint8_t m = 1;
    int is = 0;
    for (int h = 0; h < QK_K; h += 128, q += 32) {
        for (int shift = 0; shift < 8; shift += 2, m = (uint8_t)(m << 1)) {
            for (int half = 0; half < 2; half++) {
                const float dl = d_all * (float)qt_q3k_scale(b->scales, is++);
                for (int l = 0; l < 16; l++) {
                    const int k = 16 * half + l;
                    const int v = ((q[k] >> shift) & 3) - ((b->hmask[k] & m) ? 0 : 4);
                    *y++ = dl * (float)v;
                }
            }
        }
    }
}


/* ---------------------------------------------------------------- Q4_K / Q5_K */

/* Eight 6-bit scales and mins in 12 bytes, in the layout qt_k4_scale_min reads. */
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

/* Re-round every value against the decoded 6-bit scale and min; levels in [0, nmax]. */
static void k4_requantize(const float *x, uint16_t dh, uint16_t mh, const uint8_t *scales,
                          int nmax, uint8_t *L) {
    const float d_all = qt_fp16_to_fp32(dh);
    const float m_all = qt_fp16_to_fp32(mh);
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, mn;
        qt_k4_scale_min(j, scales, &sc, &mn);
        const float d = d_all * (float)sc;
        if (!d) {
            continue;
        }
        const float dm = m_all * (float)mn;
        requant_offset(x + 32 * j, 32, d, dm, 0, nmax, 0, L + 32 * j);
    }
}

/* Plain path shared by Q4_K and Q5_K: both scales and mins quantized linearly to 6 bits. */
static void k4_scales_plain(const float *scales, const float *mins, uint16_t *dh, uint16_t *mh,
                            uint8_t *scales_out) {
    const float max_scale = max_or_zero(scales, QK_K / 32);
    const float max_min = max_or_zero(mins, QK_K / 32);
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
}

/* Importance path shared by Q4_K and Q5_K: 6-bit scales and mins fitted by weighted least
 * squares; Q5_K additionally clamps the packed levels to 63. */
static void k4_scales_weighted(const float *w, int clamp63, const float *scales,
                               const float *mins, uint16_t *dh, uint16_t *mh,
                               uint8_t *scales_out) {
    uint8_t Ls[QK_K / 32], Lm[QK_K / 32];
    float sw[QK_K / 32];
    group_sums(w, QK_K / 32, 32, sw);
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

static void scale_min_k_chunk(const qt_search_ops *ops, const float *xc, const float *qwc,
                              int nsb, uint8_t *y, size_t block_bytes, int nmax, float rmin,
                              int nstep, int clamp63, k4_pack_fn pack) {
    float w[KQ_CHUNK_VALUES], scales[KQ_CHUNK_VALUES / 32], mins[KQ_CHUNK_VALUES / 32];
    uint8_t L[KQ_CHUNK_VALUES];
    k4_search(ops, xc, qwc, nsb, nmax, rmin, nstep, w, L, scales, mins);
    for (int s = 0; s < nsb; s++) {
        uint8_t *b = y + (size_t)s * block_bytes;
        uint16_t *dh = (uint16_t *)(void *)(b + offsetof(block_q4_K, d));
        uint16_t *mh = (uint16_t *)(void *)(b + offsetof(block_q4_K, dmin));
        uint8_t *sc = b + offsetof(block_q4_K, scales);
        const int o = s * QK_K;
        if (qwc) {
            k4_scales_weighted(w + o, clamp63, scales + 8 * s, mins + 8 * s, dh, mh, sc);
        } else {
            k4_scales_plain(scales + 8 * s, mins + 8 * s, dh, mh, sc);
        }
        k4_requantize(xc + o, *dh, *mh, sc, nmax, L + o);
        pack(L + o, b);
    }
}

static void q4_K_chunk(const qt_search_ops *ops, const float *xc, const float *qwc, int nsb,
                       uint8_t *yc) {
    scale_min_k_chunk(ops, xc, qwc, nsb, yc, sizeof(block_q4_K), 15, -1.0f, 20, 0, pack_q4_K);
}

static void q5_K_chunk(const qt_search_ops *ops, const float *xc, const float *qwc, int nsb,
                       uint8_t *yc) {
    scale_min_k_chunk(ops, xc, qwc, nsb, yc, sizeof(block_q5_K), 31, -0.5f, 15, 1, pack_q5_K);
}

/* Decoder shared by Q4_K and Q5_K: 64-value chunks of two 32-value groups, element l of the
 * first in the low nibble of byte l, of the second in the high one; qh (Q5_K, else NULL) adds
 * 16 where bit 2c (first group) or 2c+1 (second) of byte l is set. Always inlined, so Q4_K's
 * NULL qh costs nothing. */
static inline __attribute__((always_inline)) void k4_block(const uint8_t *scales, uint16_t dh,
                                                           uint16_t mh, const uint8_t *ql,
                                                           const uint8_t *qh, float *y) {
    const float d = qt_fp16_to_fp32(dh);
    const float dmin = qt_fp16_to_fp32(mh);
    for (int c = 0; c < QK_K / 64; c++, ql += 32) {
        const uint8_t u1 = (uint8_t)(1u << (2 * c)), u2 = (uint8_t)(2u << (2 * c));
        uint8_t sc, mn;
        qt_k4_scale_min(2 * c, scales, &sc, &mn);
        const float d1 = d * (float)sc, m1 = dmin * (float)mn;
        qt_k4_scale_min(2 * c + 1, scales, &sc, &mn);
        const float d2 = d * (float)sc, m2 = dmin * (float)mn;
        for (int l = 0; l < 32; l++) {
            *y++ = d1 * (float)((ql[l] & 0xF) + (qh && (qh[l] & u1) ? 16 : 0)) - m1;
        }
        for (int l = 0; l < 32; l++) {
            *y++ = d2 * (float)((ql[l] >> 4) + (qh && (qh[l] & u2) ? 16 : 0)) - m2;
        }
    }
}

static void q4_K_block(const block_q4_K *b, float *y) {
    k4_block(b->scales, b->d, b->dmin, b->qs, NULL, y);
}

static void q5_K_block(const block_q5_K *b, float *y) {
    k4_block(b->scales, b->d, b->dmin, b->qs, b->qh, y);
}


/* ---------------------------------------------------------------- Q6_K */

static void q6k_finish(const float *x, block_q6_K *b, int8_t *L, const float *scales) {
    float max_abs;
    const float max_scale = qt_signed_peak(scales, QK_K / 16, &max_abs);
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
static void q6_K_chunk(const qt_search_ops *ops, const float *xc, const float *qwc, int nsb,
                       uint8_t *yc) {
    block_q6_K *y = (block_q6_K *)(void *)yc;
    float scales[KQ_CHUNK_VALUES / 16];
    int8_t L[KQ_CHUNK_VALUES];
    ops->sym(nsb * 16, 16, 32, xc, qwc, L, scales);
    for (int s = 0; s < nsb; s++) {
        q6k_finish(xc + s * QK_K, &y[s], L + s * QK_K, scales + 16 * s);
    }
}

static void q6_K_block(const block_q6_K *b, float *y) {
    const float d = qt_fp16_to_fp32(b->d);
    const uint8_t *ql = b->ql;
    const uint8_t *qh = b->qh;
    const int8_t *sc = b->scales;
    for (int h = 0; h < QK_K; h += 128, y += 128, ql += 64, qh += 32, sc += 8) {
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
    }
}


#define KQ_TYPES(X) X(Q2_K, q2_K) X(Q3_K, q3_K) X(Q4_K, q4_K) X(Q5_K, q5_K) X(Q6_K, q6_K)
#define KQ_ROW_CODEC_ENTRY(ID, T) KQ_ROW_CODEC(T)
KQ_TYPES(KQ_ROW_CODEC_ENTRY)

void qt_ref_register_kquants(qt_kernel_table *t) {
    KQ_TYPES(QT_INSTALL_CODEC)
}
