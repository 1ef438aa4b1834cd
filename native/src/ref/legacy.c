/* Scalar reference codecs for the 32-value block types Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0.
 * The arithmetic order matches ggml's reference row quantizers exactly: the file format is
 * only reproducible if every multiply, add and truncation happens in the same order. */
#include <float.h>

#include "../blocks.h"
#include "../internal.h"
#include "legacy.h"

#define QT_MIN(a, b) ((a) < (b) ? (a) : (b))

/* Signed value of the largest magnitude; the first one wins ties. */
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void min_max(const float *x, int n, float *lo, float *hi) {
    float mn = FLT_MAX, mx = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < mn) mn = x[j];
        if (x[j] > mx) mx = x[j];
    }
    *lo = mn;
    *hi = mx;
}

/* Level of one value: (int8_t)((x - mn) * id + bias) clamped to top, as ggml writes it; top 0
 * means Q5_1's unclamped direct conversion ((max - min) * id rounds to at most 31 there). */
static inline __attribute__((always_inline)) uint8_t level(float x, float mn, float id,
                                                           float bias, int top) {
    if (top == 0) {
        return (uint8_t)((x - mn) * id + bias);
    }
    return (uint8_t)QT_MIN(top, (int8_t)((x - mn) * id + bias));
}

/* Element j in the low nibble of qs[j], j+16 in the high one; with qh (the 5-bit types, else
 * NULL) bit 4 of element j goes to bit j of its 32 bits; nib masks the low nibble (0xFF where
 * levels fit 4 bits). Always inlined, so the constants fold away. The masks are chosen by
 * instruction count (callgrind, GCC 12): Q4_0 without them matches the code before the
 * refactor, Q4_1 with them runs 28% fewer instructions than before. */
static inline __attribute__((always_inline)) void pack_levels(const float *x, float mn, float id,
                                                              float bias, int top, uint8_t nib,
                                                              uint8_t *qs, uint8_t *qh_out) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        const uint8_t lo = level(x[j], mn, id, bias, top);
        const uint8_t hi = level(x[j + 16], mn, id, bias, top);
        qs[j] = (uint8_t)((lo & nib) | ((hi & nib) << 4));
        qh |= ((uint32_t)(lo >> 4) & 1u) << j;
        qh |= ((uint32_t)(hi >> 4) & 1u) << (j + 16);
    }
    if (qh_out) {
        memcpy(qh_out, &qh, sizeof qh);
    }
}

/* Q4_0 / Q5_0: d = -(signed peak) / half, levels nearest(x / d) + half in [0, 2*half). */
static inline __attribute__((always_inline)) void sym_block(const float *x, int half, int top,
                                                            uint16_t *d_out, uint8_t *qs,
                                                            uint8_t *qh) {
    const float d = signed_absmax(x, 32) / (float)-half;
    const float id = d ? 1.0f / d : 0.0f;
    *d_out = qt_fp32_to_fp16(d);
    pack_levels(x, 0.0f, id, (float)half + 0.5f, top, qh ? 0x0F : 0xFF, qs, qh);
}

/* Q4_1 / Q5_1: d = (max - min) / steps above the minimum m. */
static inline __attribute__((always_inline)) void asym_block(const float *x, int steps, int top,
                                                             uint16_t *d_out, uint16_t *m_out,
                                                             uint8_t *qs, uint8_t *qh) {
    float mn, mx;
    min_max(x, 32, &mn, &mx);
    const float d = (mx - mn) / (float)steps;
    const float id = d ? 1.0f / d : 0.0f;
    *d_out = qt_fp32_to_fp16(d);
    *m_out = qt_fp32_to_fp16(mn);
    pack_levels(x, mn, id, 0.5f, top, 0x0F, qs, qh);
}

/* One row of 32-value blocks, `encode` (using x and y[i]) writing each. */
#define PLAIN_ROW(name, encode)                                                           \
    void qt_ref_quantize_##name##_plain(const float *x, void *vy, int64_t n) {            \
        block_##name *y = vy;                                                             \
        for (int64_t i = 0; i < n / 32; i++, x += 32) {                                   \
            encode;                                                                       \
        }                                                                                 \
    }

PLAIN_ROW(q4_0, sym_block(x, 8, 15, &y[i].d, y[i].qs, NULL))
PLAIN_ROW(q5_0, sym_block(x, 16, 31, &y[i].d, y[i].qs, y[i].qh))
PLAIN_ROW(q4_1, asym_block(x, 15, 15, &y[i].d, &y[i].m, y[i].qs, NULL))
PLAIN_ROW(q5_1, asym_block(x, 31, 0, &y[i].d, &y[i].m, y[i].qs, y[i].qh))

void qt_ref_quantize_q8_0_plain(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++) {
            amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
        }
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = qt_fp32_to_fp16(d);
        for (int j = 0; j < QK8_0; j++) {
            y[i].qs[j] = (int8_t)roundf(x[j] * id);
        }
    }
}

/* With an importance matrix Q4_0, Q4_1, Q5_0 and Q5_1 take ggml's weighted search
 * (legacy_imatrix.c); Q8_0 ignores it, as ggml's does. */
#define LEGACY_QUANTIZE(name)                                                           \
    static void quantize_##name(const float *x, void *y, int64_t n, const float *qw) {  \
        if (qw) {                                                                       \
            qt_ref_quantize_##name##_imatrix(x, y, n, qw);                              \
        } else {                                                                        \
            qt_ref_quantize_##name##_plain(x, y, n);                                    \
        }                                                                               \
    }
LEGACY_QUANTIZE(q4_0)
LEGACY_QUANTIZE(q4_1)
LEGACY_QUANTIZE(q5_0)
LEGACY_QUANTIZE(q5_1)

static void quantize_q8_0(const float *x, void *y, int64_t n, const float *qw) {
    (void)qw;
    qt_ref_quantize_q8_0_plain(x, y, n);
}

/* Row decoders over a per-block decoder <name>_block(block, 32 floats). */
#define LEGACY_DEQUANTIZE(name)                                                         \
    static void dequantize_##name(const void *vx, float *y, int64_t n) {                \
        const block_##name *x = vx;                                                     \
        for (int64_t i = 0; i < n / 32; i++, y += 32) {                                 \
            name##_block(&x[i], y);                                                     \
        }                                                                               \
    }

/* Bit 4 of element j of a Q5 block: bit j of its 32-bit qh. */
static inline int fifth_bit(uint32_t qh, int j) {
    return (int)(((qh >> j) & 1u) << 4);
}

static inline void q4_0_block(const block_q4_0 *b, float *y) {
    const float d = qt_fp16_to_fp32(b->d);
    for (int j = 0; j < 16; j++) {
        y[j] = ((b->qs[j] & 0x0F) - 8) * d;
        y[j + 16] = ((b->qs[j] >> 4) - 8) * d;
    }
}

static inline void q4_1_block(const block_q4_1 *b, float *y) {
    const float d = qt_fp16_to_fp32(b->d), m = qt_fp16_to_fp32(b->m);
    for (int j = 0; j < 16; j++) {
        y[j] = (b->qs[j] & 0x0F) * d + m;
        y[j + 16] = (b->qs[j] >> 4) * d + m;
    }
}

static inline void q5_0_block(const block_q5_0 *b, float *y) {
    const float d = qt_fp16_to_fp32(b->d);
    uint32_t qh;
    memcpy(&qh, b->qh, sizeof qh);
    for (int j = 0; j < 16; j++) {
        y[j] = ((int)((b->qs[j] & 0x0F) | fifth_bit(qh, j)) - 16) * d;
        y[j + 16] = ((int)((b->qs[j] >> 4) | fifth_bit(qh, j + 16)) - 16) * d;
    }
}

static inline void q5_1_block(const block_q5_1 *b, float *y) {
    const float d = qt_fp16_to_fp32(b->d), m = qt_fp16_to_fp32(b->m);
    uint32_t qh;
    memcpy(&qh, b->qh, sizeof qh);
    for (int j = 0; j < 16; j++) {
        y[j] = (int)((b->qs[j] & 0x0F) | fifth_bit(qh, j)) * d + m;
        y[j + 16] = (int)((b->qs[j] >> 4) | fifth_bit(qh, j + 16)) * d + m;
    }
}

static inline void q8_0_block(const block_q8_0 *b, float *y) {
    const float d = qt_fp16_to_fp32(b->d);
    for (int j = 0; j < 32; j++) {
        y[j] = b->qs[j] * d;
    }
}

#define LEGACY_CODECS(X) X(Q4_0, q4_0) X(Q4_1, q4_1) X(Q5_0, q5_0) X(Q5_1, q5_1) X(Q8_0, q8_0)
#define LEGACY_DEQUANTIZE_ENTRY(ID, name) LEGACY_DEQUANTIZE(name)
LEGACY_CODECS(LEGACY_DEQUANTIZE_ENTRY)

void qt_ref_register_legacy(qt_kernel_table *t) {
    LEGACY_CODECS(QT_INSTALL_CODEC)
}
