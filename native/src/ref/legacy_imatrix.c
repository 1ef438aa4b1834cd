/* Importance-weighted quantizers for Q4_0, Q4_1, Q5_0 and Q5_1 (what ggml does when
 * llama-quantize is given an imatrix).
 *
 * Each element's weight is qw[j] * sqrt(sigma2 + x[j]^2), where qw is the per-column importance
 * and sigma2 the mean square of the whole row: large values matter more, but small ones never
 * drop to zero weight. The scale search then minimises the weighted squared error per block. */
#include "../blocks.h"
#include "../internal.h"
#include "legacy.h"
#include "quant_search.h"

/* Mean of x^2 over the row, summed in element order. */
static float row_mean_square(const float *x, int64_t n) {
    float s = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        s += x[j] * x[j];
    }
    return s / (float)n;
}

static void block_weights(const float *x, const float *qw, float sigma2, float *w) {
    for (int j = 0; j < 32; j++) {
        w[j] = qw[j] * sqrtf(sigma2 + x[j] * x[j]);
    }
}

/* Low nibbles hold elements 0..15, high nibbles 16..31; bit 4 of each level goes to qh. */
static void pack_nibbles(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((L[j] & 0x0F) | ((L[j + 16] & 0x0F) << 4));
    }
}

static void pack_fifth_bits(const uint8_t *L, uint8_t qh_out[4]) {
    uint32_t qh = 0;
    for (int j = 0; j < 32; j++) {
        qh |= (uint32_t)((L[j] >> 4) & 1u) << j;
    }
    memcpy(qh_out, &qh, sizeof qh);
}

/* Q4_0 / Q5_0: symmetric levels in [-nmax, nmax) offset by nmax, one fp16 scale; qh (Q5_0,
 * else NULL) takes bit 4 of each level. */
static void sym_block(const float *xb, const float *w, int nmax, uint16_t *d, uint8_t *qs,
                      uint8_t *qh) {
    int8_t L[32];
    *d = qt_fp32_to_fp16(qt_make_qx_quants(32, nmax, xb, L, 1, w));
    pack_nibbles((const uint8_t *)L, qs);
    if (qh) {
        pack_fifth_bits((const uint8_t *)L, qh);
    }
}

/* Q4_1 / Q5_1: levels in [0, nmax] with an fp16 scale and minimum; qh as in sym_block. */
static void asym_block(const float *xb, const float *w, int nmax, uint16_t *d, uint16_t *m,
                       uint8_t *qs, uint8_t *qh) {
    uint8_t L[32], Laux[32];
    float neg_min;
    const float scale =
        qt_make_qkx3_quants(32, nmax, xb, w, L, &neg_min, Laux, -0.9f, 0.05f, 36, 0);
    *d = qt_fp32_to_fp16(scale);
    *m = qt_fp32_to_fp16(-neg_min);
    pack_nibbles(L, qs);
    if (qh) {
        pack_fifth_bits(L, qh);
    }
}

/* One row of 32-value blocks: each block's element weights, then `store` (using xb, w and
 * y[b]) searches and packs it. */
#define IMATRIX_ROW(name, store)                                                            \
    void qt_ref_quantize_##name##_imatrix(const float *x, void *vy, int64_t n,              \
                                          const float *qw) {                                \
        block_##name *y = vy;                                                               \
        const float sigma2 = row_mean_square(x, n);                                         \
        float w[32];                                                                        \
        for (int64_t b = 0; b < n / 32; b++) {                                              \
            const float *xb = x + b * 32;                                                   \
            block_weights(xb, qw + b * 32, sigma2, w);                                      \
            store;                                                                          \
        }                                                                                   \
    }

IMATRIX_ROW(q4_0, sym_block(xb, w, 8, &y[b].d, y[b].qs, NULL))
IMATRIX_ROW(q5_0, sym_block(xb, w, 16, &y[b].d, y[b].qs, y[b].qh))
IMATRIX_ROW(q4_1, asym_block(xb, w, 15, &y[b].d, &y[b].m, y[b].qs, NULL))
IMATRIX_ROW(q5_1, asym_block(xb, w, 31, &y[b].d, &y[b].m, y[b].qs, y[b].qh))
