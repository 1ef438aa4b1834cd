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

void qt_ref_quantize_q4_0_imatrix(const float *x, void *vy, int64_t n, const float *qw) {
    block_q4_0 *y = vy;
    const float sigma2 = row_mean_square(x, n);
    float w[32];
    int8_t L[32];
    for (int64_t b = 0; b < n / QK4_0; b++) {
        const float *xb = x + b * QK4_0;
        block_weights(xb, qw + b * QK4_0, sigma2, w);
        const float d = qt_make_qx_quants(QK4_0, 8, xb, L, 1, w);
        y[b].d = qt_fp32_to_fp16(d);
        pack_nibbles((const uint8_t *)L, y[b].qs);
    }
}

void qt_ref_quantize_q5_0_imatrix(const float *x, void *vy, int64_t n, const float *qw) {
    block_q5_0 *y = vy;
    const float sigma2 = row_mean_square(x, n);
    float w[32];
    int8_t L[32];
    for (int64_t b = 0; b < n / QK5_0; b++) {
        const float *xb = x + b * QK5_0;
        block_weights(xb, qw + b * QK5_0, sigma2, w);
        const float d = qt_make_qx_quants(QK5_0, 16, xb, L, 1, w);
        y[b].d = qt_fp32_to_fp16(d);
        pack_nibbles((const uint8_t *)L, y[b].qs);
        pack_fifth_bits((const uint8_t *)L, y[b].qh);
    }
}

void qt_ref_quantize_q4_1_imatrix(const float *x, void *vy, int64_t n, const float *qw) {
    block_q4_1 *y = vy;
    const float sigma2 = row_mean_square(x, n);
    float w[32];
    uint8_t L[32], Laux[32];
    for (int64_t b = 0; b < n / QK4_1; b++) {
        const float *xb = x + b * QK4_1;
        block_weights(xb, qw + b * QK4_1, sigma2, w);
        float neg_min;
        const float d =
            qt_make_qkx3_quants(QK4_1, 15, xb, w, L, &neg_min, Laux, -0.9f, 0.05f, 36, 0);
        y[b].d = qt_fp32_to_fp16(d);
        y[b].m = qt_fp32_to_fp16(-neg_min);
        pack_nibbles(L, y[b].qs);
    }
}

void qt_ref_quantize_q5_1_imatrix(const float *x, void *vy, int64_t n, const float *qw) {
    block_q5_1 *y = vy;
    const float sigma2 = row_mean_square(x, n);
    float w[32];
    uint8_t L[32], Laux[32];
    for (int64_t b = 0; b < n / QK5_1; b++) {
        const float *xb = x + b * QK5_1;
        block_weights(xb, qw + b * QK5_1, sigma2, w);
        float neg_min;
        const float d =
            qt_make_qkx3_quants(QK5_1, 31, xb, w, L, &neg_min, Laux, -0.9f, 0.05f, 36, 0);
        y[b].d = qt_fp32_to_fp16(d);
        y[b].m = qt_fp32_to_fp16(-neg_min);
        pack_nibbles(L, y[b].qs);
        pack_fifth_bits(L, y[b].qh);
    }
}
