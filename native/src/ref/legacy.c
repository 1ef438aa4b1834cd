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

void qt_ref_quantize_q4_0_plain(const float *x, void *vy, int64_t n) {
    block_q4_0 *y = vy;
    for (int64_t i = 0; i < n / QK4_0; i++, x += QK4_0) {
        const float d = signed_absmax(x, QK4_0) / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = qt_fp32_to_fp16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            const uint8_t lo = QT_MIN(15, (int8_t)(x[j] * id + 8.5f));
            const uint8_t hi = QT_MIN(15, (int8_t)(x[j + QK4_0 / 2] * id + 8.5f));
            y[i].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

void qt_ref_quantize_q4_1_plain(const float *x, void *vy, int64_t n) {
    block_q4_1 *y = vy;
    for (int64_t i = 0; i < n / QK4_1; i++, x += QK4_1) {
        float mn, mx;
        min_max(x, QK4_1, &mn, &mx);
        const float d = (mx - mn) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = qt_fp32_to_fp16(d);
        y[i].m = qt_fp32_to_fp16(mn);
        for (int j = 0; j < QK4_1 / 2; j++) {
            const uint8_t lo = QT_MIN(15, (int8_t)((x[j] - mn) * id + 0.5f));
            const uint8_t hi = QT_MIN(15, (int8_t)((x[j + QK4_1 / 2] - mn) * id + 0.5f));
            y[i].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

void qt_ref_quantize_q5_0_plain(const float *x, void *vy, int64_t n) {
    block_q5_0 *y = vy;
    for (int64_t i = 0; i < n / QK5_0; i++, x += QK5_0) {
        const float d = signed_absmax(x, QK5_0) / -16;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = qt_fp32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_0 / 2; j++) {
            const uint8_t lo = QT_MIN(31, (int8_t)(x[j] * id + 16.5f));
            const uint8_t hi = QT_MIN(31, (int8_t)(x[j + QK5_0 / 2] * id + 16.5f));
            y[i].qs[j] = (uint8_t)((lo & 0x0F) | ((hi & 0x0F) << 4));
            qh |= ((uint32_t)(lo >> 4) & 1u) << j;
            qh |= ((uint32_t)(hi >> 4) & 1u) << (j + QK5_0 / 2);
        }
        memcpy(y[i].qh, &qh, sizeof qh);
    }
}

void qt_ref_quantize_q5_1_plain(const float *x, void *vy, int64_t n) {
    block_q5_1 *y = vy;
    for (int64_t i = 0; i < n / QK5_1; i++, x += QK5_1) {
        float mn, mx;
        min_max(x, QK5_1, &mn, &mx);
        const float d = (mx - mn) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = qt_fp32_to_fp16(d);
        y[i].m = qt_fp32_to_fp16(mn);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_1 / 2; j++) {
            /* ggml applies no clamp here: (max - min) * id rounds to at most 31. */
            const uint8_t lo = (uint8_t)((x[j] - mn) * id + 0.5f);
            const uint8_t hi = (uint8_t)((x[j + QK5_1 / 2] - mn) * id + 0.5f);
            y[i].qs[j] = (uint8_t)((lo & 0x0F) | ((hi & 0x0F) << 4));
            qh |= ((uint32_t)(lo >> 4) & 1u) << j;
            qh |= ((uint32_t)(hi >> 4) & 1u) << (j + QK5_1 / 2);
        }
        memcpy(y[i].qh, &qh, sizeof qh);
    }
}

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

static void quantize_q4_0(const float *x, void *y, int64_t n, const float *qw) {
    if (qw) {
        qt_ref_quantize_q4_0_imatrix(x, y, n, qw);
    } else {
        qt_ref_quantize_q4_0_plain(x, y, n);
    }
}

static void quantize_q4_1(const float *x, void *y, int64_t n, const float *qw) {
    if (qw) {
        qt_ref_quantize_q4_1_imatrix(x, y, n, qw);
    } else {
        qt_ref_quantize_q4_1_plain(x, y, n);
    }
}

static void quantize_q5_0(const float *x, void *y, int64_t n, const float *qw) {
    if (qw) {
        qt_ref_quantize_q5_0_imatrix(x, y, n, qw);
    } else {
        qt_ref_quantize_q5_0_plain(x, y, n);
    }
}

static void quantize_q5_1(const float *x, void *y, int64_t n, const float *qw) {
    if (qw) {
        qt_ref_quantize_q5_1_imatrix(x, y, n, qw);
    } else {
        qt_ref_quantize_q5_1_plain(x, y, n);
    }
}

static void quantize_q8_0(const float *x, void *y, int64_t n, const float *qw) {
    (void)qw; /* ggml's Q8_0 ignores the importance matrix */
    qt_ref_quantize_q8_0_plain(x, y, n);
}

void qt_ref_dequantize_q4_0(const void *vx, float *y, int64_t n) {
    const block_q4_0 *x = vx;
    for (int64_t i = 0; i < n / QK4_0; i++, y += QK4_0) {
        const float d = qt_fp16_to_fp32(x[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[j] = ((x[i].qs[j] & 0x0F) - 8) * d;
            y[j + QK4_0 / 2] = ((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

void qt_ref_dequantize_q4_1(const void *vx, float *y, int64_t n) {
    const block_q4_1 *x = vx;
    for (int64_t i = 0; i < n / QK4_1; i++, y += QK4_1) {
        const float d = qt_fp16_to_fp32(x[i].d);
        const float m = qt_fp16_to_fp32(x[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            y[j] = (x[i].qs[j] & 0x0F) * d + m;
            y[j + QK4_1 / 2] = (x[i].qs[j] >> 4) * d + m;
        }
    }
}

void qt_ref_dequantize_q5_0(const void *vx, float *y, int64_t n) {
    const block_q5_0 *x = vx;
    for (int64_t i = 0; i < n / QK5_0; i++, y += QK5_0) {
        const float d = qt_fp16_to_fp32(x[i].d);
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        for (int j = 0; j < QK5_0 / 2; j++) {
            const int lo = (int)((x[i].qs[j] & 0x0F) | (((qh >> j) & 1u) << 4)) - 16;
            const int hi = (int)((x[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4)) - 16;
            y[j] = lo * d;
            y[j + QK5_0 / 2] = hi * d;
        }
    }
}

void qt_ref_dequantize_q5_1(const void *vx, float *y, int64_t n) {
    const block_q5_1 *x = vx;
    for (int64_t i = 0; i < n / QK5_1; i++, y += QK5_1) {
        const float d = qt_fp16_to_fp32(x[i].d);
        const float m = qt_fp16_to_fp32(x[i].m);
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        for (int j = 0; j < QK5_1 / 2; j++) {
            const int lo = (int)((x[i].qs[j] & 0x0F) | (((qh >> j) & 1u) << 4));
            const int hi = (int)((x[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4));
            y[j] = lo * d + m;
            y[j + QK5_1 / 2] = hi * d + m;
        }
    }
}

void qt_ref_dequantize_q8_0(const void *vx, float *y, int64_t n) {
    const block_q8_0 *x = vx;
    for (int64_t i = 0; i < n / QK8_0; i++, y += QK8_0) {
        const float d = qt_fp16_to_fp32(x[i].d);
        for (int j = 0; j < QK8_0; j++) {
            y[j] = x[i].qs[j] * d;
        }
    }
}

void qt_ref_register_legacy(qt_kernel_table *t) {
    t->codec[QT_T_Q4_0] = (qt_codec){quantize_q4_0, qt_ref_dequantize_q4_0};
    t->codec[QT_T_Q4_1] = (qt_codec){quantize_q4_1, qt_ref_dequantize_q4_1};
    t->codec[QT_T_Q5_0] = (qt_codec){quantize_q5_0, qt_ref_dequantize_q5_0};
    t->codec[QT_T_Q5_1] = (qt_codec){quantize_q5_1, qt_ref_dequantize_q5_1};
    t->codec[QT_T_Q8_0] = (qt_codec){quantize_q8_0, qt_ref_dequantize_q8_0};
}
