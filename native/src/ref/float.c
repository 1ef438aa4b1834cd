/* Scalar reference codecs for the float storage types F32, F16 and BF16. */
#include "../internal.h"

static void quantize_f32(const float *x, void *y, int64_t n, const float *qw) {
    (void)qw;
    memcpy(y, x, (size_t)n * sizeof(float));
}

static void dequantize_f32(const void *x, float *y, int64_t n) {
    memcpy(y, x, (size_t)n * sizeof(float));
}

/* F16 and BF16: one 16-bit value per float through the shared converters. */
#define HALF_CODEC(name, to_half, from_half)                                           \
    static void quantize_##name(const float *x, void *y, int64_t n, const float *qw) { \
        (void)qw;                                                                      \
        uint16_t *out = y;                                                             \
        for (int64_t i = 0; i < n; i++) {                                              \
            out[i] = to_half(x[i]);                                                    \
        }                                                                              \
    }                                                                                  \
    static void dequantize_##name(const void *x, float *y, int64_t n) {                \
        const uint16_t *in = x;                                                        \
        for (int64_t i = 0; i < n; i++) {                                              \
            y[i] = from_half(in[i]);                                                   \
        }                                                                              \
    }

HALF_CODEC(f16, qt_fp32_to_fp16, qt_fp16_to_fp32)
HALF_CODEC(bf16, qt_fp32_to_bf16, qt_bf16_to_fp32)

#define FLOAT_CODECS(X) X(F32, f32) X(F16, f16) X(BF16, bf16)

void qt_ref_register_float(qt_kernel_table *t) {
    FLOAT_CODECS(QT_INSTALL_CODEC)
}
