/* Scalar reference codecs for the non-linear and ternary types: IQ4_NL, IQ4_XS, TQ1_0, TQ2_0
 * and MXFP4, bit-exact with ggml's library quantizers (quantize_iq4_nl / quantize_iq4_xs, which
 * try 7 scale offsets each side of the start; the ternary and MXFP4 ones take no importance
 * matrix). */
#include "../blocks.h"
#include "../internal.h"
#include "kblock_fields.h"
#include "kquants.h"
#include "quant_search.h"

#define QT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define QT_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Scale offsets the library entry points try on each side of the starting scale. */
#define IQ4_NTRY 7

/* Element weights for the IQ4 scale search: importance times sqrt(sigma2 + x^2), or x^2. */
static void iq4_weights(const float *x, const float *qw, float sigma2, float *w) {
    if (qw) {
        for (int j = 0; j < 32; j++) {
            w[j] = qw[j] * sqrtf(sigma2 + x[j] * x[j]);
        }
    } else {
        for (int j = 0; j < 32; j++) {
            w[j] = x[j] * x[j];
        }
    }
}

/* sigma2 is twice the mean square of the (super-)block, summed in element order. */
static float iq4_sigma2(const float *x, int n) {
    float s = 0.0f;
    for (int j = 0; j < n; j++) {
        s += x[j] * x[j];
    }
    return s * (2.0f / (float)n);
}

/* Map 32 values to table indices with one reciprocal scale and pack them as nibbles
 * (element j low, j+16 high). */
static void iq4_pack_group(const float *x, float inv, uint8_t *qs) {
    for (int j = 0; j < 16; j++) {
        const int lo = qt_nearest_level16(qt_iq4nl_values, inv * x[j]);
        const int hi = qt_nearest_level16(qt_iq4nl_values, inv * x[j + 16]);
        qs[j] = (uint8_t)(lo | (hi << 4));
    }
}

/* Rows go through the group searches in chunks of this many values (stack buffers). */
#define IQ_CHUNK_VALUES 4096

void qt_iq_quantize_iq4_nl(const qt_search_ops *ops, const float *x, void *vy, int64_t n,
                           const float *qw) {
    block_iq4_nl *y = vy;
    float w[IQ_CHUNK_VALUES], scales[IQ_CHUNK_VALUES / 32];
    const int64_t nb = n / QK4_NL;
    for (int64_t c = 0; c < nb; c += IQ_CHUNK_VALUES / 32) {
        const int nblk = (int)(nb - c < IQ_CHUNK_VALUES / 32 ? nb - c : IQ_CHUNK_VALUES / 32);
        const float *xc = x + c * QK4_NL;
        for (int b = 0; b < nblk; b++) {
            const float *xb = xc + 32 * b;
            iq4_weights(xb, qw ? qw + (c + b) * QK4_NL : NULL, iq4_sigma2(xb, QK4_NL), w + 32 * b);
        }
        ops->iq4(nblk, xc, w, IQ4_NTRY, scales);
        for (int b = 0; b < nblk; b++) {
            const float d = scales[b];
            y[c + b].d = qt_fp32_to_fp16(d);
            iq4_pack_group(xc + 32 * b, d ? 1 / d : 0.0f, y[c + b].qs);
        }
    }
}

static void quantize_iq4_nl(const float *x, void *vy, int64_t n, const float *qw) {
    qt_iq_quantize_iq4_nl(&qt_scalar_search_ops, x, vy, n, qw);
}

/* Sub-scales are 6-bit signed multiples of d = -max/32; values are re-mapped with the unrounded
 * f32 multiple, as ggml does. */
static void iq4xs_finish(const float *x, const float *scales, block_iq4_xs *b) {
    float amax_scale;
    const float max_scale = qt_signed_peak(scales, QK_K / 32, &amax_scale);
    const float d = -max_scale / 32;
    b->d = qt_fp32_to_fp16(d);
    const float id = d ? 1 / d : 0.0f;
    uint16_t sh = 0;
    memset(b->scales_l, 0, sizeof b->scales_l);
    for (int ib = 0; ib < QK_K / 32; ib++) {
        int l = qt_nearest_int(id * scales[ib]);
        l = QT_MAX(-32, QT_MIN(31, l));
        const float dl = d * (float)l;
        iq4_pack_group(x + 32 * ib, dl ? 1 / dl : 0.0f, b->qs + 16 * ib);
        l += 32;
        b->scales_l[ib / 2] |= (uint8_t)((l & 0xF) << (4 * (ib % 2)));
        sh |= (uint16_t)((l >> 4) << (2 * ib));
    }
    b->scales_h = sh;
}

void qt_iq_quantize_iq4_xs(const qt_search_ops *ops, const float *x, void *vy, int64_t n,
                           const float *qw) {
    block_iq4_xs *y = vy;
    float w[IQ_CHUNK_VALUES], scales[IQ_CHUNK_VALUES / 32];
    const int64_t nb = n / QK_K;
    for (int64_t c = 0; c < nb; c += IQ_CHUNK_VALUES / QK_K) {
        const int nsb = (int)(nb - c < IQ_CHUNK_VALUES / QK_K ? nb - c : IQ_CHUNK_VALUES / QK_K);
        const float *xc = x + c * QK_K;
        for (int s = 0; s < nsb; s++) {
            const float sigma2 = iq4_sigma2(xc + s * QK_K, QK_K);
            for (int ib = 0; ib < QK_K / 32; ib++) {
                const int o = s * QK_K + 32 * ib;
                iq4_weights(xc + o, qw ? qw + c * QK_K + o : NULL, sigma2, w + o);
            }
        }
        ops->iq4(nsb * (QK_K / 32), xc, w, IQ4_NTRY, scales);
        for (int s = 0; s < nsb; s++) {
            iq4xs_finish(xc + s * QK_K, scales + (QK_K / 32) * s, &y[c + s]);
        }
    }
}

static void quantize_iq4_xs(const float *x, void *vy, int64_t n, const float *qw) {
    qt_iq_quantize_iq4_xs(&qt_scalar_search_ops, x, vy, n, qw);
}

static void dequantize_iq4_nl(const void *vx, float *y, int64_t n) {
    const block_iq4_nl *x = vx;
    for (int64_t i = 0; i < n / QK4_NL; i++, y += QK4_NL) {
        const float d = qt_fp16_to_fp32(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)qt_iq4nl_values[x[i].qs[j] & 0xF];
            y[j + 16] = d * (float)qt_iq4nl_values[x[i].qs[j] >> 4];
        }
    }
}

static void dequantize_iq4_xs(const void *vx, float *y, int64_t n) {
    const block_iq4_xs *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = qt_fp16_to_fp32(x[i].d);
        const uint8_t *qs = x[i].qs;
        for (int ib = 0; ib < QK_K / 32; ib++, y += 32, qs += 16) {
            const float dl = d * (float)qt_iq4xs_scale(&x[i], ib);
            for (int j = 0; j < 16; j++) {
                y[j] = dl * (float)qt_iq4nl_values[qs[j] & 0xF];
                y[j + 16] = dl * (float)qt_iq4nl_values[qs[j] >> 4];
            }
        }
    }
}

/* ---------------------------------------------------------------- ternary */

static float absmax(const float *x, int n) {
    float m = 0.0f;
    for (int j = 0; j < n; j++) {
        m = QT_MAX(m, fabsf(x[j]));
    }
    return m;
}

/* A ternary block's scale is its largest magnitude d (stored as fp16); returns 1/d, or 0. */
static float ternary_scale(const float *x, uint16_t *dh) {
    const float d = absmax(x, QK_K);
    *dh = qt_fp32_to_fp16(d);
    return d ? 1.0f / d : 0.0f;
}

/* Ternary digit of x/d: 0, 1, 2 for -1, 0, +1 (lroundf: halves away from zero). */
static inline int trit(float v, float id) {
    return (int)lroundf(v * id) + 1;
}

/* Five trits t0..t4 (t0 most significant) as a byte b with b/256 just above the base-3 fraction
 * 0.t0t1t2t3t4, so that multiplying by 3^k and taking the top bits recovers digit k. */
static inline uint8_t trits_to_byte(unsigned value243) {
    return (uint8_t)((value243 * 256u + 242u) / 243u);
}

static void quantize_tq1_0(const float *x, void *vy, int64_t n, const float *qw) {
    (void)qw; /* ggml's ternary quantizers take no importance matrix */
    block_tq1_0 *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        const float id = ternary_scale(x, &y[i].d);
        /* bytes 0..31: elements m + 32k (k = 0..4) of the first 160 */
        for (int m = 0; m < 32; m++) {
            unsigned v = 0;
            for (int k = 0; k < 5; k++) v = (uint8_t)(v * 3 + (unsigned)trit(x[m + 32 * k], id));
            y[i].qs[m] = trits_to_byte(v);
        }
        /* bytes 32..47: elements 160 + m + 16k of the next 80 */
        for (int m = 0; m < 16; m++) {
            unsigned v = 0;
            for (int k = 0; k < 5; k++) {
                v = (uint8_t)(v * 3 + (unsigned)trit(x[160 + m + 16 * k], id));
            }
            y[i].qs[32 + m] = trits_to_byte(v);
        }
        /* qh: elements 240 + j + 4k (k = 0..3), shifted up one trit */
        for (int j = 0; j < 4; j++) {
            unsigned v = 0;
            for (int k = 0; k < 4; k++) v = (uint8_t)(v * 3 + (unsigned)trit(x[240 + j + 4 * k], id));
            v = (uint8_t)(v * 3);
            y[i].qh[j] = trits_to_byte(v);
        }
    }
}

static void dequantize_tq1_0(const void *vx, float *y, int64_t n) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    const block_tq1_0 *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = qt_fp16_to_fp32(x[i].d);
        for (int k = 0; k < 5; k++) {
            for (int m = 0; m < 32; m++) {
                const uint8_t q = (uint8_t)(x[i].qs[m] * pow3[k]);
                *y++ = (float)((int)(((unsigned)q * 3u) >> 8) - 1) * d;
            }
        }
        for (int k = 0; k < 5; k++) {
            for (int m = 0; m < 16; m++) {
                const uint8_t q = (uint8_t)(x[i].qs[32 + m] * pow3[k]);
                *y++ = (float)((int)(((unsigned)q * 3u) >> 8) - 1) * d;
            }
        }
        for (int k = 0; k < 4; k++) {
            for (int j = 0; j < 4; j++) {
                const uint8_t q = (uint8_t)(x[i].qh[j] * pow3[k]);
                *y++ = (float)((int)(((unsigned)q * 3u) >> 8) - 1) * d;
            }
        }
    }
}

static void quantize_tq2_0(const float *x, void *vy, int64_t n, const float *qw) {
    (void)qw;
    block_tq2_0 *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        const float id = ternary_scale(x, &y[i].d);
        /* byte 32h + m holds elements 128h + m + 32k at bits 2k. */
        for (int h = 0; h < 2; h++) {
            for (int m = 0; m < 32; m++) {
                unsigned v = 0;
                for (int k = 0; k < 4; k++) {
                    v += ((unsigned)trit(x[128 * h + m + 32 * k], id) & 3u) << (2 * k);
                }
                y[i].qs[32 * h + m] = (uint8_t)v;
            }
        }
    }
}

static void dequantize_tq2_0(const void *vx, float *y, int64_t n) {
    const block_tq2_0 *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = qt_fp16_to_fp32(x[i].d);
        for (int h = 0; h < 2; h++) {
            for (int k = 0; k < 4; k++) {
                for (int m = 0; m < 32; m++) {
                    const int q = (x[i].qs[32 * h + m] >> (2 * k)) & 3;
                    *y++ = (float)(q - 1) * d;
                }
            }
        }
    }
}

/* ---------------------------------------------------------------- MXFP4 */

/* E2M1 values times two (so they are integers); index 8 is negative zero. */
static const int8_t k_e2m1_x2[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* Half of the E8M0 scale 2^(e-127), i.e. 2^(e-128), built from bits (subnormal for e < 2). */
static inline float e8m0_half(uint8_t e) {
    const uint32_t bits = e < 2 ? (0x00200000u << e) : ((uint32_t)(e - 1) << 23);
    return qt_bits_f32(bits);
}

/* First index of the smallest |value*d - x|. */
static inline int e2m1_nearest(float x, float d) {
    int best = 0;
    float best_err = fabsf((float)k_e2m1_x2[0] * d - x);
    for (int i = 1; i < 16; i++) {
        const float err = fabsf((float)k_e2m1_x2[i] * d - x);
        if (err < best_err) {
            best = i;
            best_err = err;
        }
    }
    return best;
}

static void quantize_mxfp4(const float *x, void *vy, int64_t n, const float *qw) {
    (void)qw;
    block_mxfp4 *y = vy;
    for (int64_t i = 0; i < n / QK_MXFP4; i++, x += QK_MXFP4) {
        float amax = 0.0f;
        for (int j = 0; j < QK_MXFP4; j++) {
            if (amax < fabsf(x[j])) amax = fabsf(x[j]);
        }
        /* Exponent so that the largest value lands in E2M1's top binade [4, 6]; ggml converts
         * the float through a 32-bit integer, which wraps for tiny magnitudes. */
        const uint8_t e =
            amax > 0.0f ? (uint8_t)(int32_t)(floorf(log2f(amax)) - 2 + 127) : 0;
        const float d = e8m0_half(e);
        y[i].e = e;
        for (int j = 0; j < 16; j++) {
            const int lo = e2m1_nearest(x[j], d);
            const int hi = e2m1_nearest(x[j + 16], d);
            y[i].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

static void dequantize_mxfp4(const void *vx, float *y, int64_t n) {
    const block_mxfp4 *x = vx;
    for (int64_t i = 0; i < n / QK_MXFP4; i++, y += QK_MXFP4) {
        const float d = e8m0_half(x[i].e);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)k_e2m1_x2[x[i].qs[j] & 0xF] * d;
            y[j + 16] = (float)k_e2m1_x2[x[i].qs[j] >> 4] * d;
        }
    }
}

#define IQ_CODECS(X) \
    X(IQ4_NL, iq4_nl) X(IQ4_XS, iq4_xs) X(TQ1_0, tq1_0) X(TQ2_0, tq2_0) X(MXFP4, mxfp4)

void qt_ref_register_iq(qt_kernel_table *t) {
    IQ_CODECS(QT_INSTALL_CODEC)
}
