/* Private declarations shared by the library's translation units. */
#ifndef QT_INTERNAL_H
#define QT_INTERNAL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "float_bits.h"
#include "qtnative.h"

/* ggml type ids we know about; the table is indexed by id. */
enum {
    QT_T_F32 = 0, QT_T_F16 = 1, QT_T_Q4_0 = 2, QT_T_Q4_1 = 3, QT_T_Q5_0 = 6, QT_T_Q5_1 = 7,
    QT_T_Q8_0 = 8, QT_T_Q8_1 = 9, QT_T_Q2_K = 10, QT_T_Q3_K = 11, QT_T_Q4_K = 12,
    QT_T_Q5_K = 13, QT_T_Q6_K = 14, QT_T_Q8_K = 15, QT_T_IQ4_NL = 20, QT_T_IQ4_XS = 23,
    QT_T_BF16 = 30, QT_T_TQ1_0 = 34, QT_T_TQ2_0 = 35, QT_T_MXFP4 = 39,
    QT_TYPE_MAX = 40
};

/* One row: x has n values (a multiple of the block); qw is NULL or n importance weights. */
typedef void (*qt_quantize_row_fn)(const float *x, void *y, int64_t n, const float *qw);
typedef void (*qt_dequantize_row_fn)(const void *x, float *y, int64_t n);

typedef struct qt_codec {
    qt_quantize_row_fn quantize;
    qt_dequantize_row_fn dequantize;
} qt_codec;

/* Copy n floats to dst with non-temporal stores (no read-for-ownership of dst's lines; the data
 * goes around the caches). Any dst alignment; the caller issues qt_stream_fence before another
 * thread may read dst. */
typedef void (*qt_stream_store_fn)(float *dst, const float *src, int64_t n);

typedef struct qt_kernel_table {
    qt_codec codec[QT_TYPE_MAX];
    /* NULL on levels without streaming stores: dequantize then writes in place. */
    qt_stream_store_fn stream_store;
    /* 1 for types whose decoder is slower than plain stores can drain (compute-bound): the
     * bounce buffer's extra pass costs them more than the saved reads, so they write in place. */
    uint8_t decode_bound[QT_TYPE_MAX];
} qt_kernel_table;

typedef struct qt_type_desc {
    const char *name;
    int32_t block_elems;
    int32_t block_bytes;
    int32_t uses_imatrix;
} qt_type_desc;

/* Static description of a type id, or NULL when the id is not one we know. */
const qt_type_desc *qt_type_desc_get(int32_t type_id);

/* Each kernel file fills the entries it implements; later levels override earlier ones. A file
 * that names its codecs quantize_<name> / dequantize_<name> lists them as X(ID, name) entries
 * of a list macro and expands that list with QT_INSTALL_CODEC inside its register function,
 * whose table parameter is t. */
#define QT_INSTALL_CODEC(ID, name) \
    t->codec[QT_T_##ID] = (qt_codec){quantize_##name, dequantize_##name};

void qt_ref_register_float(qt_kernel_table *t);
void qt_ref_register_legacy(qt_kernel_table *t);
void qt_ref_register_kquants(qt_kernel_table *t);
void qt_ref_register_iq(qt_kernel_table *t);
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
void qt_avx2_register(qt_kernel_table *t);
void qt_avx512_register(qt_kernel_table *t);
/* Lane-parallel K-quant/IQ4 quantizers (kquants_avx2.c / kquants_avx512.c). */
void qt_avx2_register_kquants(qt_kernel_table *t);
void qt_avx512_register_kquants(qt_kernel_table *t);
#endif
/* The NEON level: AArch64, or emulated over SIMDe on x86-64 for tests (QT_EMULATE_NEON). */
#if defined(__aarch64__) || defined(QT_EMULATE_NEON)
#define QT_NEON_LEVEL 1
void qt_neon_register(qt_kernel_table *t);
void qt_neon_register_kquants(qt_kernel_table *t);
#endif

/* Kernel table for a level, or NULL when that level cannot run here. */
const qt_kernel_table *qt_dispatch_table(int32_t level);

/* ---- scalar conversions shared by every level (bit-exact with ggml) ---- */

/* IEEE half to float, exact for every input including NaN payloads and subnormals. */
static inline float qt_fp16_to_fp32(uint16_t h) {
    const uint32_t w = (uint32_t)h << 16;
    const uint32_t sign = w & 0x80000000u;
    const uint32_t two_w = w + w;
    const uint32_t exp_offset = 0xE0u << 23;
    const float exp_scale = 0x1.0p-112f;
    const float normalized = qt_bits_f32((two_w >> 4) + exp_offset) * exp_scale;
    const uint32_t magic_mask = 126u << 23;
    const float magic_bias = 0.5f;
    const float denormalized = qt_bits_f32((two_w >> 17) | magic_mask) - magic_bias;
    const uint32_t denormalized_cutoff = 1u << 27;
    const uint32_t result = sign | (two_w < denormalized_cutoff ? qt_f32_bits(denormalized)
                                                                : qt_f32_bits(normalized));
    return qt_bits_f32(result);
}

/* Float to IEEE half, round to nearest even (what F16C and numpy do). */
static inline uint16_t qt_fp32_to_fp16(float f) {
    const float scale_to_inf = 0x1.0p+112f;
    const float scale_to_zero = 0x1.0p-110f;
    float base = (fabsf(f) * scale_to_inf) * scale_to_zero;
    const uint32_t w = qt_f32_bits(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) {
        bias = 0x71000000u;
    }
    base = qt_bits_f32((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = qt_f32_bits(base);
    const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
    const uint32_t mantissa_bits = bits & 0x00000FFFu;
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return (uint16_t)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

static inline float qt_bf16_to_fp32(uint16_t h) {
    return qt_bits_f32((uint32_t)h << 16);
}

/* Round to nearest even; NaN stays a quiet NaN (as ggml does). */
static inline uint16_t qt_fp32_to_bf16(float f) {
    const uint32_t u = qt_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (uint16_t)((u >> 16) | 64u);
    }
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

#endif /* QT_INTERNAL_H */
