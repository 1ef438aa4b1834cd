/* Scalar reference codecs for the float storage types F32, F16 and BF16. */
#include "../internal.h"

static void quantize_f32(const float *x, void *y, int64_t n, const float *qw) {
    (void)qw;
    memcpy(y, x, (size_t)n * sizeof(float));
}

static void dequantize_f32(const void *x, float *y, int64_t n) {
    memcpy(y, x, (size_t)n * sizeof(float));
}

static void quantize_f16(const float *x, void *y, int64_t n, const float *qw) {
    (void)qw;
    uint16_t *out = y;
    for (int64_t i = 0; i < n; i++) {
        out[i] = qt_fp32_to_fp16(x[i]);
    }
}

static void dequantize_f16(const void *x, float *y, int64_t n) {
    const uint16_t *in = x;
    for (int64_t i = 0; i < n; i++) {
        y[i] = qt_fp16_to_fp32(in[i]);
    }
}

static void quantize_bf16(const float *x, void *y, int64_t n, const float *qw) {
    (void)qw;
    uint16_t *out = y;
    for (int64_t i = 0; i < n; i++) {
        out[i] = qt_fp32_to_bf16(x[i]);
    }
}

static void dequantize_bf16(const void *x, float *y, int64_t n) {
    const uint16_t *in = x;
    for (int64_t i = 0; i < n; i++) {
        y[i] = qt_bf16_to_fp32(in[i]);
    }
}

void qt_ref_register_float(qt_kernel_table *t) {
    t->codec[QT_T_F32] = (qt_codec){quantize_f32, dequantize_f32};
    t->codec[QT_T_F16] = (qt_codec){quantize_f16, dequantize_f16};
    t->codec[QT_T_BF16] = (qt_codec){quantize_bf16, dequantize_bf16};
}
