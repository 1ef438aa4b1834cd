/* Private declarations of the quantized matmul (qt_qmatmul): the per-level kernel table and
 * the two intermediate layouts every weight encoding is decoded into.
 *
 * Fast path. A span of one weight row is "unpacked" into groups of 16 values, each value
 *   w_j = s_g * q_j + m_g     with q_j a signed 8-bit integer stored offset-binary (q + 128),
 * so one integer dot kernel serves every encoding. Activations are quantized to
 *   x_j ~ da_g * a_j,  a_j in [-127, 127],
 * and a group contributes s_g * da_g * sum(q a) + m_g * da_g * sum(a). The 128 offset of the
 * stored weights is removed in integer arithmetic (exactly) before any float conversion.
 * The activation scale da covers qt_mm_act_group values, the block of the encoding's ggml
 * vec_dot partner: 32 for the 32-value block encodings (Q8_0 / Q8_1 in ggml), 256 for the
 * K-quants, IQ4_XS and TQ1_0 / TQ2_0 (Q8_K). da, sa and gbias are still stored per 16 values
 * (equal da across an activation group), so per-16 kernels need not know the group, while
 * fused kernels scale a whole super-block's integer sum once. Encodings whose weight scales
 * cover 32 values (qt_mm_scale_group) let the GEMM kernel sum two 16-value groups in integers.
 *
 * Exact path. Weights are decoded to float32 with the codec's own dequantize function and
 * multiplied in float32; only summation rounding differs from a float64 product.
 */
#ifndef QT_MATMUL_H
#define QT_MATMUL_H

#include <stdint.h>

#include "internal.h"

#define QT_MM_GROUP 16        /* values per scale group of the unpacked layout */
#define QT_MM_TILE_ROWS 16    /* weight rows per GEMM tile (one 512-bit lane per row) */

/* One quantized activation row (k values), all arrays owned by the caller. */
typedef struct qt_mm_act {
    const int8_t *a;        /* [k] quantized values */
    const float *da;        /* [k/16] scale per group */
    const float *sa;        /* [k/16] da * sum(a) per group (for the weight minimums) */
    const int32_t *gbias;   /* [k/16] -128 * sum(a) per group (removes the weight offset) */
    const int16_t *nsum4;   /* [k/4] minus the sum of each 4 values; GEMV only, else NULL.
                             * Kept at 2 bytes per 4 values so a whole row's activation data
                             * stays in L1 while weight rows stream past. */
    const int16_t *sum16;   /* [k/16] sum of each 16 values; GEMV only, else NULL */
} qt_mm_act;

/* Decode n values (a whole number of blocks) starting at blocks into the unpacked layout:
 * u[n] offset-binary integers, s[n/16] and m[n/16] group scales and minimums. */
typedef void (*qt_mm_unpack_fn)(const void *blocks, int64_t n, uint8_t *u, float *s, float *m);

/* Quantize k floats (k a multiple of group, a multiple of 16) into an activation row with one
 * scale per group; da/sa/gbias stay per 16 values (equal da across a group). nsum4 and sum16
 * may be NULL. */
typedef void (*qt_mm_quantize_act_fn)(const float *x, int64_t k, int group, int8_t *a, float *da,
                                      float *sa, int32_t *gbias, int16_t *nsum4, int16_t *sum16);

/* The per-16 entries of activation group g (every level's quantize_act): scale d, the
 * group's integer sum. */
static inline void qt_mm_store_group(int64_t g, float d, int32_t sum, float *da, float *sa,
                                     int32_t *gbias, int16_t *sum16) {
    da[g] = d;
    sa[g] = d * (float)sum;
    gbias[g] = -128 * sum;
    if (sum16) {
        sum16[g] = (int16_t)sum;
    }
}

/* Dot of an unpacked span (kc values) with activation values [k0, k0+kc). */
typedef float (*qt_mm_dot_fn)(const uint8_t *u, const float *s, const float *m, int has_min,
                              const qt_mm_act *act, int64_t k0, int64_t kc);

/* GEMM tile: 16 weight rows, kc values, interleaved as described in matmul.c (tile_u: group g,
 * quad c, row r at [g*256 + c*64 + r*4]; tile_s/tile_m: [g*16 + r]). For every activation row i
 * < nrows: out[i*16 + r] += dot(weight row r, activation row i over [k0, k0+kc)). pair: weight
 * and activation scales are equal for groups 2h and 2h+1 (scale group 32), and the activation
 * rows carry the whole 32-value sums in sa[2h] and gbias[2h], zero in sa[2h+1] and gbias[2h+1]
 * (so a kernel may read only the even entries; one that adds both stays right). */
typedef void (*qt_mm_tile_fn)(const uint8_t *tile_u, const float *tile_s, const float *tile_m,
                              int has_min, int pair, int64_t kc, const qt_mm_act *acts,
                              int64_t nrows, int64_t k0, float *out);

/* Float dot of n values. */
typedef float (*qt_mm_dot_f32_fn)(const float *w, const float *x, int64_t n);

/* Float GEMM tile: tile_w[j*16 + r] holds weight row r, column j (j < kc). For i < nrows:
 * out[i*16 + r] += sum_j tile_w[j*16 + r] * x[i*ldx + j]. */
typedef void (*qt_mm_tile_f32_fn)(const float *tile_w, int64_t kc, const float *x, int64_t ldx,
                                  int64_t nrows, float *out);

/* Fused GEMV dot: one whole weight row (k values, ggml blocks) with one activation row, without
 * the unpacked intermediate. Needs the GEMV activation array nsum4. */
typedef float (*qt_mm_fdot_fn)(const void *row, const qt_mm_act *act, int64_t k);

typedef void (*qt_mm_fdot_float4_fn)(const void *rows, size_t stride, const float *x, int64_t k,
                                     float *out);

typedef struct qt_mm_prepped_gemv {
    void (*xprep)(const float *x, int64_t n, float *out); /* n % 32 == 0, out holds n floats */
    float (*row)(const void *row, const float *xp, int64_t k);
    qt_mm_fdot_float4_fn rows4; /* four rows stride bytes apart, like fdot_float4 */
} qt_mm_prepped_gemv;

typedef struct qt_matmul_table {
    qt_mm_unpack_fn unpack[QT_TYPE_MAX];
    qt_mm_fdot_fn fdot[QT_TYPE_MAX]; /* NULL: GEMV unpacks then uses dot */
    /* Exact GEMV straight from float storage (F32/F16/BF16): float dot of a whole row with x,
     * converting each weight exactly; NULL: decode spans with the codec, then dot_f32. */
    float (*fdot_float[QT_TYPE_MAX])(const void *row, const float *x, int64_t k);
    /* The same without software prefetch, for weights the last-level cache holds (where the
     * prefetches only cost issue slots); NULL: fdot_float. */
    float (*fdot_float_cached[QT_TYPE_MAX])(const void *row, const float *x, int64_t k);
    /* The same for four rows stride bytes apart: out[r] = dot(row r, x), for k % 32 == 0 and
     * k >= 256 only; NULL: one row at a time. */
    qt_mm_fdot_float4_fn fdot_float4[QT_TYPE_MAX];
    /* Optional faster exact GEMV kernels that read x rearranged by their xprep; used when
     * k % 32 == 0 and every weight row starts on a 64-byte boundary. */
    qt_mm_prepped_gemv fdot_float_prepped[QT_TYPE_MAX];
    /* Fast GEMV on BF16 weights: activations rounded to bf16 (round_bf16, any n) and a bf16 dot
     * product accumulating in float32; NULL where the CPU has no such instruction. */
    void (*round_bf16)(const float *x, int64_t n, uint16_t *out);
    float (*fdot_bf16_bf16)(const void *row, const uint16_t *xb, int64_t k);
    qt_mm_quantize_act_fn quantize_act;
    qt_mm_dot_fn dot;
    qt_mm_tile_fn tile;
    /* Optional tile for encodings whose unpacked values q - 128 stay within +-32
     * (qt_mm_small_values), whose sums a kernel may keep in 16 bits longer; NULL: tile. */
    qt_mm_tile_fn tile_small;
    qt_mm_dot_f32_fn dot_f32;
    qt_mm_tile_f32_fn tile_f32;
} qt_matmul_table;

/* 1 for encodings whose unpacked groups carry a minimum (m_g != 0 in general); their unpacked
 * values u - 128 are never negative, whatever the bytes (kernels may rely on it). */
int qt_mm_has_min(int32_t type_id);

/* 1 for encodings whose unpacked values (u - 128) never leave [-32, 32], whatever the bytes. */
int qt_mm_small_values(int32_t type_id);

/* 32 for encodings whose scales (and minimums) cover 32 values, else 16. */
int qt_mm_scale_group(int32_t type_id);

/* Values per activation scale: 256 for the 256-value super-block encodings, else 32. */
int qt_mm_act_group(int32_t type_id);

void qt_mm_ref_register(qt_matmul_table *t);
#if defined(__x86_64__) || defined(_M_X64)
void qt_mm_avx2_register(qt_matmul_table *t);
void qt_mm_avx512_register(qt_matmul_table *t);
#endif

#endif /* QT_MATMUL_H */
