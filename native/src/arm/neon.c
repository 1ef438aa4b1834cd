/* NEON (AArch64 Advanced SIMD) codecs: F16/BF16 in both directions and the decoders of the
 * 32-value legacy block types. The legacy quantizers stay on the scalar reference here.
 *
 * Bit-exactness follows the x86 files: block scales are converted with the scalar fp16 helper,
 * products and sums are separate vmulq/vaddq (never vfmaq; the library builds with
 * -ffp-contract=off), and F16 conversion relies on the default FPCR (round to nearest even,
 * no flush to zero), which is what Linux and macOS give every thread.
 */
#include "../internal.h"
#ifdef QT_NEON_LEVEL
#include "../simd_arm_neon_intrin.h"

#include "../blocks.h"

/* ---------------------------------------------------------------- F16 / BF16 */

static void quantize_f16(const float *x, void *vy, int64_t n, const float *qw) {
    (void)qw;
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float32x4_t a = vld1q_f32(x + i), b = vld1q_f32(x + i + 4);
        /* NaN lanes: the hardware keeps payload bits, the reference writes a canonical NaN. */
        const uint32x4_t nan = vorrq_u32(vmvnq_u32(vceqq_f32(a, a)), vmvnq_u32(vceqq_f32(b, b)));
        if (vmaxvq_u32(nan) != 0) {
            for (int j = 0; j < 8; j++) {
                y[i + j] = qt_fp32_to_fp16(x[i + j]);
            }
            continue;
        }
        const float16x8_t h = vcombine_f16(vcvt_f16_f32(a), vcvt_f16_f32(b));
        vst1q_u16(y + i, vreinterpretq_u16_f16(h));
    }
    for (; i < n; i++) {
        y[i] = qt_fp32_to_fp16(x[i]);
    }
}

static void dequantize_f16(const void *vx, float *y, int64_t n) {
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint16x8_t h = vld1q_u16(x + i);
        vst1q_f32(y + i, vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h))));
        vst1q_f32(y + i + 4, vcvt_f32_f16(vreinterpret_f16_u16(vget_high_u16(h))));
    }
    for (; i < n; i++) {
        y[i] = qt_fp16_to_fp32(x[i]);
    }
}

/* Round to nearest even on the bit image; NaN lanes become (bits >> 16) | 0x40. */
static inline uint16x4_t bf16_round4(uint32x4_t u) {
    const uint32x4_t odd = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
    const uint32x4_t rounded = vshrq_n_u32(vaddq_u32(u, vaddq_u32(vdupq_n_u32(0x7fff), odd)), 16);
    const uint32x4_t nan = vcgtq_u32(vandq_u32(u, vdupq_n_u32(0x7fffffff)), vdupq_n_u32(0x7f800000));
    const uint32x4_t quiet = vorrq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(64));
    return vmovn_u32(vbslq_u32(nan, quiet, rounded));
}

static void quantize_bf16(const float *x, void *vy, int64_t n, const float *qw) {
    (void)qw;
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint32x4_t a = vreinterpretq_u32_f32(vld1q_f32(x + i));
        const uint32x4_t b = vreinterpretq_u32_f32(vld1q_f32(x + i + 4));
        vst1q_u16(y + i, vcombine_u16(bf16_round4(a), bf16_round4(b)));
    }
    for (; i < n; i++) {
        y[i] = qt_fp32_to_bf16(x[i]);
    }
}

static void dequantize_bf16(const void *vx, float *y, int64_t n) {
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint16x8_t h = vld1q_u16(x + i);
        vst1q_f32(y + i, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16)));
        vst1q_f32(y + i + 4, vreinterpretq_f32_u32(vshll_n_u16(vget_high_u16(h), 16)));
    }
    for (; i < n; i++) {
        y[i] = qt_bf16_to_fp32(x[i]);
    }
}

/* ---------------------------------------------------------------- legacy block decoders */

/* 16 signed 16-bit integers (two halves) times d, stored as 16 floats. */
static inline void store16_scaled(float *y, int16x8_t lo, int16x8_t hi, float32x4_t d) {
    vst1q_f32(y, vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), d));
    vst1q_f32(y + 4, vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_high_s16(lo))), d));
    vst1q_f32(y + 8, vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), d));
    vst1q_f32(y + 12, vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_high_s16(hi))), d));
}

/* 16 unsigned bytes q as q * d + m. */
static inline void store16_affine(float *y, uint8x16_t q, float32x4_t d, float32x4_t m) {
    const uint16x8_t lo = vmovl_u8(vget_low_u8(q)), hi = vmovl_u8(vget_high_u8(q));
    const uint32x4_t w[4] = {vmovl_u16(vget_low_u16(lo)), vmovl_u16(vget_high_u16(lo)),
                             vmovl_u16(vget_low_u16(hi)), vmovl_u16(vget_high_u16(hi))};
    for (int k = 0; k < 4; k++) {
        vst1q_f32(y + 4 * k, vaddq_f32(vmulq_f32(vcvtq_f32_u32(w[k]), d), m));
    }
}

/* Unsigned bytes minus a bias, widened to 16 bits. */
static inline int16x8_t widen_minus(uint8x8_t q, int16x8_t bias) {
    return vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(q)), bias);
}

/* Bits 0..15 of qh as 0x10 per byte (lane j for bit j). */
static inline uint8x16_t fifth_bit16(uint32_t bits) {
    static const uint8_t k_bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t spread = vcombine_u8(vdup_n_u8((uint8_t)bits), vdup_n_u8((uint8_t)(bits >> 8)));
    return vandq_u8(vtstq_u8(spread, vld1q_u8(k_bit)), vdupq_n_u8(0x10));
}

static void dequantize_q4_0(const void *vx, float *y, int64_t n) {
    const block_q4_0 *x = vx;
    const int16x8_t eight = vdupq_n_s16(8);
    for (int64_t i = 0; i < n / QK4_0; i++, y += QK4_0) {
        const float32x4_t d = vdupq_n_f32(qt_fp16_to_fp32(x[i].d));
        const uint8x16_t qs = vld1q_u8(x[i].qs);
        const uint8x16_t lo = vandq_u8(qs, vdupq_n_u8(0x0F)), hi = vshrq_n_u8(qs, 4);
        store16_scaled(y, widen_minus(vget_low_u8(lo), eight), widen_minus(vget_high_u8(lo), eight),
                       d);
        store16_scaled(y + 16, widen_minus(vget_low_u8(hi), eight),
                       widen_minus(vget_high_u8(hi), eight), d);
    }
}

static void dequantize_q4_1(const void *vx, float *y, int64_t n) {
    const block_q4_1 *x = vx;
    for (int64_t i = 0; i < n / QK4_1; i++, y += QK4_1) {
        const float32x4_t d = vdupq_n_f32(qt_fp16_to_fp32(x[i].d));
        const float32x4_t m = vdupq_n_f32(qt_fp16_to_fp32(x[i].m));
        const uint8x16_t qs = vld1q_u8(x[i].qs);
        store16_affine(y, vandq_u8(qs, vdupq_n_u8(0x0F)), d, m);
        store16_affine(y + 16, vshrq_n_u8(qs, 4), d, m);
    }
}

static void dequantize_q5_0(const void *vx, float *y, int64_t n) {
    const block_q5_0 *x = vx;
    const int16x8_t sixteen = vdupq_n_s16(16);
    for (int64_t i = 0; i < n / QK5_0; i++, y += QK5_0) {
        const float32x4_t d = vdupq_n_f32(qt_fp16_to_fp32(x[i].d));
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        const uint8x16_t qs = vld1q_u8(x[i].qs);
        const uint8x16_t lo = vorrq_u8(vandq_u8(qs, vdupq_n_u8(0x0F)), fifth_bit16(qh));
        const uint8x16_t hi = vorrq_u8(vshrq_n_u8(qs, 4), fifth_bit16(qh >> 16));
        store16_scaled(y, widen_minus(vget_low_u8(lo), sixteen),
                       widen_minus(vget_high_u8(lo), sixteen), d);
        store16_scaled(y + 16, widen_minus(vget_low_u8(hi), sixteen),
                       widen_minus(vget_high_u8(hi), sixteen), d);
    }
}

static void dequantize_q5_1(const void *vx, float *y, int64_t n) {
    const block_q5_1 *x = vx;
    for (int64_t i = 0; i < n / QK5_1; i++, y += QK5_1) {
        const float32x4_t d = vdupq_n_f32(qt_fp16_to_fp32(x[i].d));
        const float32x4_t m = vdupq_n_f32(qt_fp16_to_fp32(x[i].m));
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        const uint8x16_t qs = vld1q_u8(x[i].qs);
        store16_affine(y, vorrq_u8(vandq_u8(qs, vdupq_n_u8(0x0F)), fifth_bit16(qh)), d, m);
        store16_affine(y + 16, vorrq_u8(vshrq_n_u8(qs, 4), fifth_bit16(qh >> 16)), d, m);
    }
}

static void dequantize_q8_0(const void *vx, float *y, int64_t n) {
    const block_q8_0 *x = vx;
    for (int64_t i = 0; i < n / QK8_0; i++, y += QK8_0) {
        const float32x4_t d = vdupq_n_f32(qt_fp16_to_fp32(x[i].d));
        const int8x16_t a = vld1q_s8(x[i].qs), b = vld1q_s8(x[i].qs + 16);
        store16_scaled(y, vmovl_s8(vget_low_s8(a)), vmovl_s8(vget_high_s8(a)), d);
        store16_scaled(y + 16, vmovl_s8(vget_low_s8(b)), vmovl_s8(vget_high_s8(b)), d);
    }
}

void qt_neon_register(qt_kernel_table *t) {
    t->codec[QT_T_F16] = (qt_codec){quantize_f16, dequantize_f16};
    t->codec[QT_T_BF16] = (qt_codec){quantize_bf16, dequantize_bf16};
    t->codec[QT_T_Q4_0].dequantize = dequantize_q4_0;
    t->codec[QT_T_Q4_1].dequantize = dequantize_q4_1;
    t->codec[QT_T_Q5_0].dequantize = dequantize_q5_0;
    t->codec[QT_T_Q5_1].dequantize = dequantize_q5_1;
    t->codec[QT_T_Q8_0].dequantize = dequantize_q8_0;
}

#endif /* QT_NEON_LEVEL */
