/* qtnative: block quantization codecs and quantized matmul for qtstudio.
 *
 * Every function returns a qt_status. Encodings are identified by their ggml type id, so
 * bytes written here are bytes ggml reads. All buffers are caller-owned; the library never
 * allocates on behalf of the caller except transient per-call thread bookkeeping.
 */
#ifndef QTNATIVE_H
#define QTNATIVE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define QT_API __declspec(dllexport)
#else
#define QT_API __attribute__((visibility("default")))
#endif

typedef enum qt_status {
    QT_OK = 0,
    QT_ERR_ARGUMENT = 1,     /* null pointer, negative count, bad thread count */
    QT_ERR_TYPE = 2,         /* unknown or unsupported encoding id */
    QT_ERR_SHAPE = 3,        /* row length not a multiple of the block, shape mismatch */
    QT_ERR_ISA = 4,          /* requested ISA level not available on this CPU */
    QT_ERR_NONFINITE = 5,    /* NaN or Inf found where finite values are required */
    QT_ERR_NOMEM = 6,        /* transient allocation failed */
    QT_ERR_THREAD = 7        /* a worker thread could not be started */
} qt_status;

typedef enum qt_isa {
    QT_ISA_SCALAR = 0,
    QT_ISA_AVX2 = 1,    /* AVX2 + FMA + F16C */
    QT_ISA_AVX512 = 2,  /* AVX-512 F/BW/VL (+VNNI/BF16 where present) */
    QT_ISA_NEON = 3,
    QT_ISA_COUNT = 4
} qt_isa;

/* CPU feature bits reported by qt_cpu_features, grouped by the level that uses them. */
enum {
    /* x86; the AVX2 level needs AVX2, FMA and F16C */
    QT_CPU_SSE42 = 1u << 0, QT_CPU_AVX = 1u << 1, QT_CPU_AVX2 = 1u << 2, QT_CPU_FMA = 1u << 3,
    QT_CPU_F16C = 1u << 4,
    /* the AVX-512 level needs F, BW and VL; VNNI and BF16 select faster kernels */
    QT_CPU_AVX512F = 1u << 5, QT_CPU_AVX512BW = 1u << 6, QT_CPU_AVX512VL = 1u << 7,
    QT_CPU_AVX512VNNI = 1u << 8, QT_CPU_AVX512BF16 = 1u << 9,
    QT_CPU_AVXVNNI = 1u << 10, /* VNNI on 256-bit vectors */
    /* Arm */
    QT_CPU_NEON = 1u << 11, QT_CPU_NEON_DOTPROD = 1u << 12
};

typedef struct qt_type_traits {
    int32_t type_id;          /* ggml type id */
    int32_t block_elems;      /* values per block */
    int32_t block_bytes;      /* bytes per block */
    int32_t uses_imatrix;     /* 1 when the quantizer takes an importance matrix */
    int32_t can_quantize;     /* 1 when this library can produce the encoding */
    int32_t can_dequantize;   /* 1 when this library can read the encoding */
    const char *name;         /* ggml name, e.g. "Q4_K" */
} qt_type_traits;

/* Library version as "major.minor.patch". */
QT_API const char *qt_version(void);

/* Feature bits of the running CPU (probed once). */
QT_API uint32_t qt_cpu_features(void);

/* The ISA level the dispatch table uses: the best the CPU has, or the one forced by the
 * QTSTUDIO_ISA environment variable (scalar|avx2|avx512|neon) at load time. */
QT_API int32_t qt_active_isa(void);

/* QT_OK when level is compiled in and supported by this CPU, else QT_ERR_ISA. */
QT_API qt_status qt_isa_supported(int32_t level);

/* Set when QTSTUDIO_ISA named a level that cannot run here (the active level then stays the
 * best available); returns the rejected text or NULL. */
QT_API const char *qt_isa_env_error(void);

QT_API const char *qt_isa_name(int32_t level);

/* Traits for a ggml type id; QT_ERR_TYPE if unknown. */
QT_API qt_status qt_type_get_traits(int32_t type_id, qt_type_traits *out);

/* Bytes needed for one row of n values (0 when n is not a multiple of the block). */
QT_API size_t qt_row_size(int32_t type_id, int64_t n);

/* Quantize nrows rows of n_per_row float32 values (row-major, contiguous) into dst, which holds
 * nrows * qt_row_size(type_id, n_per_row) bytes. imatrix is NULL or n_per_row importance weights;
 * types that do not use one ignore it. nthreads <= 0 means one thread per core.
 * level < 0 uses the active dispatch level; otherwise that level (QT_ERR_ISA when unavailable). */
QT_API qt_status qt_quantize(int32_t type_id, const float *src, void *dst, int64_t nrows,
                             int64_t n_per_row, const float *imatrix, int32_t nthreads,
                             int32_t level);

/* Decode nrows rows written by qt_quantize (or by ggml) into float32. Any byte pattern is
 * accepted: garbage in gives garbage (possibly non-finite) floats out, never a fault. */
QT_API qt_status qt_dequantize(int32_t type_id, const void *src, float *dst, int64_t nrows,
                               int64_t n_per_row, int32_t nthreads, int32_t level);

/* Index of the first row holding a NaN or Inf, or -1 in *bad_row when every value is finite. */
QT_API qt_status qt_find_nonfinite(const float *src, int64_t nrows, int64_t n_per_row,
                                   int64_t *bad_row);

/* ---- qmatmul: quantized matrix multiply -------------------------------------------------
 * y[n, m] = x[n, k] * w[m, k]^T: x row-major float32, w m rows of k values in encoding
 * type_id (qt_row_size(type_id, k) bytes each, ggml's layout), y row-major float32.
 *
 * QT_QMATMUL_FAST quantizes activations to 8 bits with one float scale per group (256 values
 * for Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS, TQ1_0, TQ2_0, as ggml's Q8_K; 32 for the others, as
 * its Q8_0) and uses integer dot products; per output value the error against the float64 product of x and
 * the dequantized weights is at most sum over groups of max|x_group| / 254 * sum|w_group| (the
 * activation rounding) plus float32 summation rounding. F32 and F16 weights always take the
 * exact path; BF16 weights in FAST mode with n < 4 on CPUs with AVX512_BF16 round activations
 * to bf16 (each moves by at most 2^-9 |x|; below 2^-126 to 0) and multiply bf16 pairs exactly,
 * else they take the exact path too. QT_QMATMUL_EXACT decodes weights with the codec's dequantize and multiplies
 * in float32: only summation rounding (at most k * 2^-24 * sum|x w|) differs from float64.
 * k must be a multiple of the encoding's block and of 16. Any weight bytes are accepted
 * (garbage gives garbage, possibly non-finite, values). nthreads <= 0: one per core.
 * level < 0 uses the active dispatch level. Transient per-call scratch (quantized
 * activations, tiles) is allocated inside; QT_ERR_NOMEM when that fails. */
enum { QT_QMATMUL_FAST = 0, QT_QMATMUL_EXACT = 1 };

QT_API qt_status qt_qmatmul(int32_t type_id, const float *x, const void *w, float *y, int64_t n,
                            int64_t m, int64_t k, int32_t mode, int32_t nthreads, int32_t level);

#ifdef __cplusplus
}
#endif

#endif /* QTNATIVE_H */
