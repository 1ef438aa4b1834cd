/* qt_qmatmul: y[n, m] = x[n, k] * w[m, k]^T with w's rows stored in any encoding.
 *
 * Work is split over output rows (m) in tiles of 16 rows, one contiguous share per thread.
 * GEMV (few activation rows) decodes each weight row span into an L1 buffer and dots it with
 * every activation row. GEMM decodes 16 weight rows x KC values into an interleaved tile that
 * stays in L1 and runs a register-blocked kernel over all activation rows, so each weight byte
 * is decoded once per call whatever n is.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "matmul.h"
#include "pool.h"

#define MM_MAX_THREADS 256
#define MM_GEMM_MIN_ROWS 4     /* below this many activation rows the GEMV loop wins */
#define MM_KC_Q 512            /* values per quantized tile chunk: 8 KiB of unpacked weights */
#define MM_KC_F 512            /* values per float tile chunk: 32 KiB of weights */
#define MM_KC_GEMV 2048        /* values per decoded GEMV span */
#define MM_GEMV_X_L1 8192      /* float activations beyond this many values do not stay in L1 */
#define MM_GEMV_CLAIM 64       /* GEMV rows a worker claims at a time */
#define MM_ROW_GROUP 4         /* GEMV rows some kernels take at once (fdot_float4) */
_Static_assert(MM_GEMV_CLAIM % MM_ROW_GROUP == 0 && QT_MM_TILE_ROWS % MM_ROW_GROUP == 0,
               "GEMV claims and shares must cut rows on the group grid");
#define MM_NBLOCK 1024         /* activation rows quantized per pass (bounds scratch memory) */
/* Below this many multiply-adds per thread, another thread costs more than it saves. */
#define MM_MIN_MACS_PER_THREAD (1 << 20)

static qt_matmul_table g_mm[QT_ISA_COUNT];
static int g_mm_ok[QT_ISA_COUNT];
/* Level-3 cache bytes (0: unknown; weights are then always treated as streamed from memory). */
static uint64_t g_l3_bytes;
static pthread_once_t g_mm_once = PTHREAD_ONCE_INIT;

/* Bytes of this CPU's level-3 cache from Linux sysfs, 0 where it does not say. (glibc's
 * sysconf(_SC_LEVEL3_CACHE_SIZE) was measured returning ten times the real size in a VM.) */
static long read_l3_bytes(void) {
    long best = 0;
    for (int i = 0; i < 8; i++) {
        char path[64], text[32];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        FILE *f = fopen(path, "r");
        if (!f) {
            break;
        }
        const int level = fgets(text, sizeof text, f) ? atoi(text) : 0;
        fclose(f);
        if (level != 3) {
            continue;
        }
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        f = fopen(path, "r");
        if (!f) {
            continue;
        }
        char *end = NULL;
        long v = fgets(text, sizeof text, f) ? strtol(text, &end, 10) : 0;
        fclose(f);
        if (end && *end == 'K') {
            v *= 1024;
        } else if (end && *end == 'M') {
            v *= 1024 * 1024;
        }
        best = v > best ? v : best;
    }
    return best;
}

static void build_mm_tables(void) {
    g_l3_bytes = (uint64_t)read_l3_bytes();
    qt_matmul_table base;
    memset(&base, 0, sizeof base);
    qt_mm_ref_register(&base);
    g_mm[QT_ISA_SCALAR] = base;
    g_mm_ok[QT_ISA_SCALAR] = 1;
#if defined(__x86_64__) || defined(_M_X64)
    if (qt_isa_supported(QT_ISA_AVX2) == QT_OK) {
        g_mm[QT_ISA_AVX2] = base;
        qt_mm_avx2_register(&g_mm[QT_ISA_AVX2]);
        g_mm_ok[QT_ISA_AVX2] = 1;
    }
    if (qt_isa_supported(QT_ISA_AVX512) == QT_OK) {
        g_mm[QT_ISA_AVX512] = g_mm[QT_ISA_AVX2];
        g_mm[QT_ISA_AVX512].tile_small = NULL; /* its own tile, unless it registers one */
        qt_mm_avx512_register(&g_mm[QT_ISA_AVX512]);
        g_mm_ok[QT_ISA_AVX512] = 1;
    }
#endif
#ifdef QT_NEON_LEVEL
    /* No NEON matmul kernels yet: the NEON level runs the portable ones. */
    g_mm[QT_ISA_NEON] = base;
    g_mm_ok[QT_ISA_NEON] = 1;
#endif
}

int qt_mm_small_values(int32_t type_id) {
    switch (type_id) {
    case QT_T_Q4_0: case QT_T_Q4_1: case QT_T_Q5_0: case QT_T_Q5_1: case QT_T_MXFP4:
    case QT_T_Q2_K: case QT_T_Q3_K: case QT_T_Q4_K: case QT_T_Q5_K: case QT_T_Q6_K:
    case QT_T_TQ1_0: case QT_T_TQ2_0:
        return 1;
    default:
        return 0;
    }
}

static const qt_matmul_table *mm_table(int32_t level) {
    pthread_once(&g_mm_once, build_mm_tables);
    if (level < 0) {
        level = qt_active_isa();
    }
    if (level >= QT_ISA_COUNT || !g_mm_ok[level]) {
        return NULL;
    }
    return &g_mm[level];
}

typedef struct mm_job {
    const qt_matmul_table *mt;
    qt_dequantize_row_fn dequantize; /* exact path decoder */
    int32_t type_id;
    int exact;
    int has_min;
    int pair;
    const uint8_t *w;
    size_t w_stride;
    int32_t block_elems;
    int32_t block_bytes;
    const float *x;        /* exact path activations, n rows of k */
    int x_prepped;         /* x went through the type's fdot_float_prepped xprep */
    const uint16_t *xb;    /* BF16 fast GEMV: activations rounded to bf16, n rows of k */
    const qt_mm_act *acts; /* fast path activations, n rows */
    float *y;
    int64_t n, m, k;
    int64_t row_begin, row_end;
    /* GEMV: every worker's unclaimed rows (see mm_share); NULL: static share only. */
    struct mm_share *shares;
    int nshares, self;
    qt_status status;
} mm_job;

/* A GEMV worker's unclaimed rows [lo, hi), packed as lo | hi << 32 so that one compare-exchange
 * moves either end. The owner claims from the front, so each thread streams one contiguous
 * stretch of the weights (measured faster than handing out interleaved chunks from a shared
 * counter); a worker that runs out claims from the back of another's share, so a thread that
 * starts late on a busy machine delays the call by one claim, not by its whole share. One
 * cache line each: the owners' updates do not contend. */
typedef struct mm_share {
    _Alignas(64) _Atomic uint64_t span;
} mm_share;

/* Claim up to rows rows (a multiple of MM_ROW_GROUP) from the front (back = 0) or back of s
 * into [*r0, *r1); 0: none left. Shares start on tile boundaries and every cut falls on a
 * multiple of MM_ROW_GROUP, so a kernel that takes rows in groups sees the same groups however
 * the rows were split over threads (the float GEMV's four-row kernel sums in another order
 * than its one-row kernel: results must not depend on the split). */
static int claim_rows(mm_share *s, int back, int64_t rows, int64_t *r0, int64_t *r1) {
    uint64_t cur = atomic_load_explicit(&s->span, memory_order_relaxed);
    for (;;) {
        const uint64_t lo = cur & 0xffffffffu, hi = cur >> 32;
        if (lo >= hi) {
            return 0;
        }
        uint64_t take = hi - lo < (uint64_t)rows ? hi - lo : (uint64_t)rows;
        if (back && take < hi - lo) {
            /* hi may be m, off the grid: cut at the grid line below hi - take */
            take = hi - ((hi - take) & ~(uint64_t)(MM_ROW_GROUP - 1));
        }
        const uint64_t next = back ? lo | (hi - take) << 32 : (lo + take) | hi << 32;
        if (atomic_compare_exchange_weak_explicit(&s->span, &cur, next, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *r0 = (int64_t)(back ? hi - take : lo);
            *r1 = (int64_t)(back ? hi : lo + take);
            return 1;
        }
    }
}

static const uint8_t *span_ptr(const mm_job *j, int64_t row, int64_t k0) {
    return j->w + (size_t)row * j->w_stride + (size_t)(k0 / j->block_elems) * j->block_bytes;
}

/* Ask for the weights MM_PREFETCH_AHEAD bytes past the span about to be decoded: one core
 * streaming a single row at a time otherwise has too few misses in flight to reach the memory
 * bandwidth (the AVX-512 fused kernels prefetch inside their loops; this serves the portable
 * unpack-then-dot path of the other levels). Prefetches never fault past the end. */
#define MM_PREFETCH_AHEAD 8192

static inline void prefetch_span(const uint8_t *p, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) {
        __builtin_prefetch(p + MM_PREFETCH_AHEAD + o, 0, 3);
    }
}

/* ---------------------------------------------------------------- fast path */

static void gemv_fast(mm_job *j) {
    const qt_mm_fdot_fn fdot = j->mt->fdot[j->type_id];
    if (fdot) {
        /* fused kernel: decodes the blocks in registers, no scratch */
        for (int64_t row = j->row_begin; row < j->row_end; row++) {
            for (int64_t i = 0; i < j->n; i++) {
                j->y[i * j->m + row] = fdot(span_ptr(j, row, 0), &j->acts[i], j->k);
            }
        }
        return;
    }
    const int64_t kcap = j->k < MM_KC_GEMV ? j->k : MM_KC_GEMV;
    uint8_t *u = malloc((size_t)kcap);
    float *sm = malloc(sizeof(float) * 2 * (size_t)(kcap / QT_MM_GROUP));
    if (!u || !sm) {
        free(u);
        free(sm);
        j->status = QT_ERR_NOMEM;
        return;
    }
    float *s = sm, *mn = sm + kcap / QT_MM_GROUP;
    const qt_mm_unpack_fn unpack = j->mt->unpack[j->type_id];
    for (int64_t row = j->row_begin; row < j->row_end; row++) {
        float acc[MM_GEMM_MIN_ROWS] = {0};
        for (int64_t k0 = 0; k0 < j->k; k0 += MM_KC_GEMV) {
            const int64_t kc = j->k - k0 < MM_KC_GEMV ? j->k - k0 : MM_KC_GEMV;
            prefetch_span(span_ptr(j, row, k0), (size_t)(kc / j->block_elems) * j->block_bytes);
            unpack(span_ptr(j, row, k0), kc, u, s, mn);
            for (int64_t i = 0; i < j->n; i++) {
                acc[i] += j->mt->dot(u, s, mn, j->has_min, &j->acts[i], k0, kc);
            }
        }
        for (int64_t i = 0; i < j->n; i++) {
            j->y[i * j->m + row] = acc[i];
        }
    }
    free(u);
    free(sm);
}

/* Interleave 16 unpacked rows (row-major, stride kc) into the tile layout of matmul.h. */
static void interleave_q(const uint8_t *rows_u, const float *rows_s, const float *rows_m,
                         int64_t kc, uint8_t *tu, float *ts, float *tm) {
    const int64_t ng = kc / QT_MM_GROUP;
    for (int r = 0; r < QT_MM_TILE_ROWS; r++) {
        const uint8_t *src = rows_u + r * kc;
        for (int64_t q = 0; q < kc / 4; q++) {
            memcpy(tu + q * 64 + r * 4, src + q * 4, 4);
        }
        for (int64_t g = 0; g < ng; g++) {
            ts[g * 16 + r] = rows_s[r * ng + g];
            tm[g * 16 + r] = rows_m[r * ng + g];
        }
    }
}

/* Chunks of k are the outer loop: one chunk of every activation row (n x MM_KC_Q bytes plus
 * scales) stays in L2 while all of this thread's weight tiles pass over it; partial sums wait
 * in a per-thread buffer [tile][n][16]. */
static void gemm_fast(mm_job *j) {
    const int64_t kcap = j->k < MM_KC_Q ? j->k : MM_KC_Q;
    const int64_t ng = kcap / QT_MM_GROUP;
    const size_t T = QT_MM_TILE_ROWS;
    const int64_t ntiles = (j->row_end - j->row_begin + QT_MM_TILE_ROWS - 1) / QT_MM_TILE_ROWS;
    uint8_t *rows_u = malloc(T * (size_t)kcap);
    uint8_t *tu = aligned_alloc(64, T * (size_t)kcap);
    float *fl = aligned_alloc(64, sizeof(float) * 4 * T * (size_t)ng);
    float *acc = calloc((size_t)ntiles * T * (size_t)j->n, sizeof(float));
    if (!rows_u || !tu || !fl || !acc) {
        free(rows_u);
        free(tu);
        free(fl);
        free(acc);
        j->status = QT_ERR_NOMEM;
        return;
    }
    float *rows_s = fl, *rows_m = fl + T * ng, *ts = fl + 2 * T * ng, *tm = fl + 3 * T * ng;
    const qt_mm_unpack_fn unpack = j->mt->unpack[j->type_id];
    const qt_mm_tile_fn tile =
        j->mt->tile_small && qt_mm_small_values(j->type_id) ? j->mt->tile_small : j->mt->tile;
    for (int64_t k0 = 0; k0 < j->k; k0 += MM_KC_Q) {
        const int64_t kc = j->k - k0 < MM_KC_Q ? j->k - k0 : MM_KC_Q;
        const int64_t g = kc / QT_MM_GROUP;
        for (int64_t t = 0; t < ntiles; t++) {
            const int64_t r0 = j->row_begin + t * QT_MM_TILE_ROWS;
            const int64_t nr = j->row_end - r0 < QT_MM_TILE_ROWS ? j->row_end - r0 : QT_MM_TILE_ROWS;
            for (int64_t r = 0; r < QT_MM_TILE_ROWS; r++) {
                if (r < nr) {
                    unpack(span_ptr(j, r0 + r, k0), kc, rows_u + r * kc, rows_s + r * g,
                           rows_m + r * g);
                } else {
                    /* Rows past the end: zero weights, results dropped below. */
                    memset(rows_u + r * kc, 128, (size_t)kc);
                    memset(rows_s + r * g, 0, sizeof(float) * (size_t)g);
                    memset(rows_m + r * g, 0, sizeof(float) * (size_t)g);
                }
            }
            interleave_q(rows_u, rows_s, rows_m, kc, tu, ts, tm);
            tile(tu, ts, tm, j->has_min, j->pair, kc, j->acts, j->n, k0,
                 acc + (size_t)t * T * (size_t)j->n);
        }
    }
    for (int64_t t = 0; t < ntiles; t++) {
        const int64_t r0 = j->row_begin + t * QT_MM_TILE_ROWS;
        const int64_t nr = j->row_end - r0 < QT_MM_TILE_ROWS ? j->row_end - r0 : QT_MM_TILE_ROWS;
        const float *out = acc + (size_t)t * T * (size_t)j->n;
        for (int64_t i = 0; i < j->n; i++) {
            memcpy(j->y + i * j->m + r0, out + i * T, sizeof(float) * (size_t)nr);
        }
    }
    free(rows_u);
    free(tu);
    free(fl);
    free(acc);
}

/* ---------------------------------------------------------------- exact path */

static void gemv_exact(mm_job *j) {
    const qt_mm_prepped_gemv *pk = &j->mt->fdot_float_prepped[j->type_id];
    /* qt_qmatmul rearranged x for the prepped kernels when their conditions held */
    float (*direct)(const void *, const float *, int64_t) =
        j->x_prepped ? pk->row : j->mt->fdot_float[j->type_id];
    if (!j->x_prepped && j->mt->fdot_float_cached[j->type_id] &&
        (uint64_t)j->m * j->w_stride <= g_l3_bytes) {
        direct = j->mt->fdot_float_cached[j->type_id];
    }
    if (direct) {
        const qt_mm_fdot_float4_fn direct4 =
            j->x_prepped ? pk->rows4 : j->mt->fdot_float4[j->type_id];
        int64_t row = j->row_begin;
        /* Measured: four rows at a time win once x outgrows L1 (1.2-1.4x at k = 14336) but lose
         * while it fits (0.7-0.9x at k = 4096), where one stream already runs at full speed. */
        if (direct4 && j->k % 32 == 0 && j->k > MM_GEMV_X_L1) {
            float out[4];
            for (; row + 4 <= j->row_end; row += 4) {
                for (int64_t i = 0; i < j->n; i++) {
                    direct4(span_ptr(j, row, 0), j->w_stride, j->x + i * j->k, j->k, out);
                    for (int r = 0; r < 4; r++) {
                        j->y[i * j->m + row + r] = out[r];
                    }
                }
            }
        }
        for (; row < j->row_end; row++) {
            for (int64_t i = 0; i < j->n; i++) {
                j->y[i * j->m + row] = direct(span_ptr(j, row, 0), j->x + i * j->k, j->k);
            }
        }
        return;
    }
    const int64_t kcap = j->k < MM_KC_GEMV ? j->k : MM_KC_GEMV;
    float *buf = j->type_id == QT_T_F32 ? NULL : malloc(sizeof(float) * (size_t)kcap);
    if (j->type_id != QT_T_F32 && !buf) {
        j->status = QT_ERR_NOMEM;
        return;
    }
    for (int64_t row = j->row_begin; row < j->row_end; row++) {
        float acc[MM_GEMM_MIN_ROWS] = {0};
        for (int64_t k0 = 0; k0 < j->k; k0 += MM_KC_GEMV) {
            const int64_t kc = j->k - k0 < MM_KC_GEMV ? j->k - k0 : MM_KC_GEMV;
            const float *wv;
            prefetch_span(span_ptr(j, row, k0), (size_t)(kc / j->block_elems) * j->block_bytes);
            if (buf) {
                j->dequantize(span_ptr(j, row, k0), buf, kc);
                wv = buf;
            } else {
                wv = (const float *)(const void *)span_ptr(j, row, k0);
            }
            for (int64_t i = 0; i < j->n; i++) {
                acc[i] += j->mt->dot_f32(wv, j->x + i * j->k + k0, kc);
            }
        }
        for (int64_t i = 0; i < j->n; i++) {
            j->y[i * j->m + row] = acc[i];
        }
    }
    free(buf);
}

static void gemm_exact(mm_job *j) {
    const int64_t kcap = j->k < MM_KC_F ? j->k : MM_KC_F;
    const size_t T = QT_MM_TILE_ROWS;
    float *rows = malloc(sizeof(float) * T * (size_t)kcap);
    float *tw = aligned_alloc(64, sizeof(float) * (T * (size_t)kcap + T * (size_t)j->n));
    if (!rows || !tw) {
        free(rows);
        free(tw);
        j->status = QT_ERR_NOMEM;
        return;
    }
    float *out = tw + T * kcap;
    for (int64_t r0 = j->row_begin; r0 < j->row_end; r0 += QT_MM_TILE_ROWS) {
        const int64_t nr = j->row_end - r0 < QT_MM_TILE_ROWS ? j->row_end - r0 : QT_MM_TILE_ROWS;
        memset(out, 0, sizeof(float) * T * (size_t)j->n);
        for (int64_t k0 = 0; k0 < j->k; k0 += MM_KC_F) {
            const int64_t kc = j->k - k0 < MM_KC_F ? j->k - k0 : MM_KC_F;
            for (int64_t r = 0; r < QT_MM_TILE_ROWS; r++) {
                if (r < nr) {
                    j->dequantize(span_ptr(j, r0 + r, k0), rows + r * kc, kc);
                } else {
                    memset(rows + r * kc, 0, sizeof(float) * (size_t)kc);
                }
            }
            for (int64_t c = 0; c < kc; c++) {
                for (int64_t r = 0; r < QT_MM_TILE_ROWS; r++) {
                    tw[c * T + r] = rows[r * kc + c];
                }
            }
            j->mt->tile_f32(tw, kc, j->x + k0, j->k, j->n, out);
        }
        for (int64_t i = 0; i < j->n; i++) {
            memcpy(j->y + i * j->m + r0, out + i * T, sizeof(float) * (size_t)nr);
        }
    }
    free(rows);
    free(tw);
}

/* BF16 weights, fast mode: bf16 x bf16 products (exact in float32), float32 sums. */
static void gemv_bf16(mm_job *j) {
    for (int64_t row = j->row_begin; row < j->row_end; row++) {
        for (int64_t i = 0; i < j->n; i++) {
            j->y[i * j->m + row] = j->mt->fdot_bf16_bf16(span_ptr(j, row, 0), j->xb + i * j->k,
                                                         j->k);
        }
    }
}

static void *run_job(void *arg) {
    mm_job *j = arg;
    const int gemm = j->n >= MM_GEMM_MIN_ROWS;
    if (!gemm && j->shares != NULL) {
        void (*const gemv)(mm_job *) =
            j->xb != NULL ? gemv_bf16 : (j->exact ? gemv_exact : gemv_fast);
        for (int v = 0; v < j->nshares;) {
            /* own share first, then the others' in turn */
            const int victim = (j->self + v) % j->nshares;
            mm_job part = *j;
            if (!claim_rows(&j->shares[victim], v != 0, MM_GEMV_CLAIM, &part.row_begin,
                            &part.row_end)) {
                v++;
                continue;
            }
            gemv(&part);
            if (part.status != QT_OK) {
                j->status = part.status;
            }
        }
        return NULL;
    }
    if (j->row_begin >= j->row_end) {
        return NULL;
    }
    if (j->xb != NULL) {
        gemv_bf16(j);
    } else if (j->exact) {
        (gemm ? gemm_exact : gemv_exact)(j);
    } else {
        (gemm ? gemm_fast : gemv_fast)(j);
    }
    return NULL;
}

/* A worker thread's start handshake: the worker moves state from MM_PENDING to MM_RUNNING before
 * it touches its job (which lives on the caller's stack); the caller may instead move it to
 * MM_CANCELLED and return without waiting, and the worker then only frees this heap block. */
enum { MM_PENDING, MM_RUNNING, MM_CANCELLED };
typedef struct mm_launch {
    _Atomic int state;
    mm_job *job;
} mm_launch;

static void *run_launch(void *arg) {
    mm_launch *l = arg;
    int expected = MM_PENDING;
    if (atomic_compare_exchange_strong(&l->state, &expected, MM_RUNNING)) {
        run_job(l->job); /* the caller joins this thread and frees l */
    } else {
        free(l);
    }
    return NULL;
}

static void pool_task(void *arg, int index) {
    run_job(&((mm_job *)arg)[index]);
}

static int cpu_count(void) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c < 1 ? 1 : (c > MM_MAX_THREADS ? MM_MAX_THREADS : (int)c);
}

/* Run proto over rows [0, m) with nthreads workers, shares rounded to whole tiles. */
static qt_status run_threads(const mm_job *proto, int nthreads) {
    mm_job jobs[MM_MAX_THREADS];
    const int64_t tiles = (proto->m + QT_MM_TILE_ROWS - 1) / QT_MM_TILE_ROWS;
    if ((int64_t)nthreads > tiles) {
        nthreads = (int)tiles;
    }
    if (nthreads < 1) {
        nthreads = 1;
    }
    mm_share shares[MM_MAX_THREADS];
    /* the packed spans hold row numbers below 2^32 */
    const int dynamic = proto->n < MM_GEMM_MIN_ROWS && nthreads > 1 && proto->m <= UINT32_MAX;
    int64_t t0 = 0;
    for (int i = 0; i < nthreads; i++) {
        const int64_t t1 = t0 + tiles / nthreads + (i < tiles % nthreads ? 1 : 0);
        jobs[i] = *proto;
        jobs[i].row_begin = t0 * QT_MM_TILE_ROWS;
        jobs[i].row_end = t1 * QT_MM_TILE_ROWS < proto->m ? t1 * QT_MM_TILE_ROWS : proto->m;
        jobs[i].status = QT_OK;
        atomic_init(&shares[i].span,
                    (uint64_t)jobs[i].row_begin | (uint64_t)jobs[i].row_end << 32);
        jobs[i].shares = dynamic ? shares : NULL;
        jobs[i].nshares = nthreads;
        jobs[i].self = i;
        t0 = t1;
    }
    if (nthreads > 1 && qt_pool_run(pool_task, jobs, nthreads) == 0) {
        qt_status st = QT_OK;
        for (int i = 0; i < nthreads; i++) {
            if (jobs[i].status != QT_OK) {
                st = jobs[i].status;
            }
        }
        return st;
    }
    /* The pool is busy with another caller's job: threads of our own for this one. */
    pthread_t threads[MM_MAX_THREADS];
    mm_launch *launch[MM_MAX_THREADS] = {0};
    for (int i = 1; i < nthreads; i++) {
        launch[i] = malloc(sizeof(mm_launch));
        if (launch[i] == NULL) {
            continue;
        }
        atomic_init(&launch[i]->state, MM_PENDING);
        launch[i]->job = &jobs[i];
        if (pthread_create(&threads[i], NULL, run_launch, launch[i]) != 0) {
            free(launch[i]);
            launch[i] = NULL;
        }
    }
    run_job(&jobs[0]);
    qt_status st = jobs[0].status;
    for (int i = 1; i < nthreads; i++) {
        if (launch[i] == NULL) {
            run_job(&jobs[i]); /* a thread that could not start: do its share here */
        } else {
            int expected = MM_PENDING;
            /* GEMV: every row is claimed by now, so a worker the scheduler has not started
             * yet has nothing left to do; waiting for it to start only to exit cost up to a
             * millisecond on a busy machine (measured). It frees its launch block itself. */
            if (dynamic && atomic_compare_exchange_strong(&launch[i]->state, &expected,
                                                          MM_CANCELLED)) {
                pthread_detach(threads[i]);
                continue;
            }
            pthread_join(threads[i], NULL);
            free(launch[i]);
        }
        if (jobs[i].status != QT_OK) {
            st = jobs[i].status;
        }
    }
    return st;
}

static int pick_threads(int32_t requested, int64_t n, int64_t m, int64_t k) {
    int t = requested <= 0 ? cpu_count() : (requested > MM_MAX_THREADS ? MM_MAX_THREADS : requested);
    const double macs = (double)n * (double)m * (double)k;
    const double by_size = macs / MM_MIN_MACS_PER_THREAD;
    if ((double)t > by_size) {
        t = by_size < 1.0 ? 1 : (int)by_size;
    }
    return t < 1 ? 1 : t;
}

/* Quantize activation rows [i0, i0+nb) into one scratch allocation and point acts at it: one
 * scale per `group` values (qt_mm_act_group); pair: the weights' scales cover 32 values. */
static qt_status quantize_acts(const qt_matmul_table *mt, const float *x, int64_t i0, int64_t nb,
                               int64_t k, int group, int pair, int gemv, void **scratch,
                               qt_mm_act *acts) {
    const size_t ng = (size_t)(k / QT_MM_GROUP), nq = (size_t)(k / 4);
    const size_t per_row = (size_t)k + ng * 12 + (gemv ? nq * 2 + ng * 2 : 0);
    uint8_t *buf = malloc(per_row * (size_t)nb + 64);
    if (!buf) {
        return QT_ERR_NOMEM;
    }
    *scratch = buf;
    /* 4-byte arrays first, then the 2-byte sums, the int8 values last. */
    float *da = (float *)(void *)buf;
    float *sa = da + ng * (size_t)nb;
    int32_t *gbias = (int32_t *)(void *)(sa + ng * (size_t)nb);
    int16_t *nsum4 = gemv ? (int16_t *)(void *)(gbias + ng * (size_t)nb) : NULL;
    int16_t *sum16 = gemv ? nsum4 + nq * (size_t)nb : NULL;
    int8_t *a = gemv ? (int8_t *)(void *)(sum16 + ng * (size_t)nb)
                     : (int8_t *)(void *)(gbias + ng * (size_t)nb);
    for (int64_t i = 0; i < nb; i++) {
        qt_mm_act *ac = &acts[i];
        int16_t *ns = gemv ? nsum4 + (size_t)i * nq : NULL;
        int16_t *s16 = gemv ? sum16 + (size_t)i * ng : NULL;
        mt->quantize_act(x + (i0 + i) * k, k, group, a + (size_t)i * (size_t)k,
                         da + (size_t)i * ng, sa + (size_t)i * ng, gbias + (size_t)i * ng, ns,
                         s16);
        if (!gemv && pair) {
            /* GEMM tiles of scale-group-32 encodings want one sum per 32 values (see
             * qt_mm_tile_fn): fold each odd group's sums into the even one. */
            float *s2 = sa + (size_t)i * ng;
            int32_t *b2 = gbias + (size_t)i * ng;
            for (size_t g = 0; g + 1 < ng; g += 2) {
                s2[g] += s2[g + 1];
                s2[g + 1] = 0.0f;
                b2[g] += b2[g + 1];
                b2[g + 1] = 0;
            }
        }
        ac->a = a + (size_t)i * (size_t)k;
        ac->da = da + (size_t)i * ng;
        ac->sa = sa + (size_t)i * ng;
        ac->gbias = gbias + (size_t)i * ng;
        ac->nsum4 = ns;
        ac->sum16 = s16;
    }
    return QT_OK;
}

/* Exact GEMV kernels that read x in their own order (see fdot_float_prepped) get a rearranged
 * copy of the job's nb activation rows in *scratch. They load whole 64-byte lines of weights:
 * rows off that boundary (numpy's buffers are 16-byte aligned, GGUF's 32) split every load
 * and ran 1.2-1.6x slower than the plain kernels (measured), so those keep the plain ones.
 * Only for x beyond L1: while x fits, the plain one-row kernels were 5-10% faster. */
static qt_status prep_float_x(const qt_matmul_table *mt, int32_t type_id, mm_job *job, int64_t nb,
                              int64_t k, void **scratch) {
    void (*const prep)(const float *, int64_t, float *) = mt->fdot_float_prepped[type_id].xprep;
    if (prep == NULL || nb >= MM_GEMM_MIN_ROWS || k % 32 != 0 || k <= MM_GEMV_X_L1 ||
        job->w_stride % 64 != 0 || (uintptr_t)job->w % 64 != 0) {
        return QT_OK;
    }
    /* whole cache lines: every 64-byte load of x would otherwise straddle two */
    float *xp = aligned_alloc(64, sizeof(float) * (size_t)nb * (size_t)k);
    if (xp == NULL) {
        return QT_ERR_NOMEM;
    }
    for (int64_t i = 0; i < nb; i++) {
        prep(job->x + i * k, k, xp + i * k);
    }
    *scratch = xp;
    job->x = xp;
    job->x_prepped = 1;
    return QT_OK;
}

qt_status qt_qmatmul(int32_t type_id, const float *x, const void *w, float *y, int64_t n,
                     int64_t m, int64_t k, int32_t mode, int32_t nthreads, int32_t level) {
    const qt_type_desc *desc = qt_type_desc_get(type_id);
    if (desc == NULL) {
        return QT_ERR_TYPE;
    }
    if (n < 0 || m < 0 || k < 0 || (mode != QT_QMATMUL_FAST && mode != QT_QMATMUL_EXACT)) {
        return QT_ERR_ARGUMENT;
    }
    if (k % desc->block_elems != 0) {
        return QT_ERR_SHAPE;
    }
    if (n > 0 && m > 0 && (x == NULL || y == NULL || (k > 0 && w == NULL))) {
        return QT_ERR_ARGUMENT;
    }
    const qt_matmul_table *mt = mm_table(level);
    const qt_kernel_table *ct = qt_dispatch_table(level);
    if (mt == NULL || ct == NULL) {
        return QT_ERR_ISA;
    }
    const int is_float = type_id == QT_T_F32 || type_id == QT_T_F16 || type_id == QT_T_BF16;
    /* Float storage has nothing to gain from 8-bit activations: it runs exact, except that a
     * BF16 GEMV in fast mode rounds activations to bf16 where the CPU multiplies bf16 pairs. */
    const int bf16_acts = type_id == QT_T_BF16 && mode == QT_QMATMUL_FAST &&
                          n < MM_GEMM_MIN_ROWS && mt->fdot_bf16_bf16 != NULL;
    const int exact = !bf16_acts && (mode == QT_QMATMUL_EXACT || is_float);
    if (bf16_acts ? 0
                  : (exact ? ct->codec[type_id].dequantize == NULL
                           : mt->unpack[type_id] == NULL)) {
        return QT_ERR_TYPE;
    }
    if (!exact && !bf16_acts && k % qt_mm_act_group(type_id) != 0) {
        return QT_ERR_SHAPE;
    }
    if (n == 0 || m == 0) {
        return QT_OK;
    }
    if (k == 0) {
        memset(y, 0, sizeof(float) * (size_t)n * (size_t)m);
        return QT_OK;
    }
    mm_job proto = {
        .mt = mt,
        .dequantize = ct->codec[type_id].dequantize,
        .type_id = type_id,
        .exact = exact,
        .has_min = qt_mm_has_min(type_id),
        .pair = qt_mm_scale_group(type_id) == 32,
        .w = (const uint8_t *)w,
        .w_stride = qt_row_size(type_id, k),
        .block_elems = desc->block_elems,
        .block_bytes = desc->block_bytes,
        .m = m,
        .k = k,
    };
    const int nt = pick_threads(nthreads, n, m, k);
    /* GEMV handles up to MM_GEMM_MIN_ROWS - 1 activation rows per pass over the weights. */
    const int64_t step = n < MM_GEMM_MIN_ROWS ? n : MM_NBLOCK;
    const int int8_acts = !exact && !bf16_acts;
    qt_mm_act *acts = int8_acts ? malloc(sizeof(qt_mm_act) * (size_t)step) : NULL;
    if (int8_acts && !acts) {
        return QT_ERR_NOMEM;
    }
    qt_status st = QT_OK;
    for (int64_t i0 = 0; i0 < n && st == QT_OK; i0 += step) {
        const int64_t nb = n - i0 < step ? n - i0 : step;
        mm_job job = proto;
        job.n = nb;
        job.y = y + i0 * m;
        void *scratch = NULL;
        if (bf16_acts) {
            uint16_t *xb = aligned_alloc(64, ((size_t)nb * (size_t)k * 2 + 63) / 64 * 64);
            if (xb == NULL) {
                st = QT_ERR_NOMEM;
                break;
            }
            for (int64_t i = 0; i < nb; i++) {
                mt->round_bf16(x + (i0 + i) * k, k, xb + i * k);
            }
            scratch = xb;
            job.xb = xb;
        } else if (exact) {
            job.x = x + i0 * k;
            st = prep_float_x(mt, type_id, &job, nb, k, &scratch);
            if (st != QT_OK) {
                break;
            }
        } else {
            st = quantize_acts(mt, x, i0, nb, k, qt_mm_act_group(type_id), proto.pair,
                               nb < MM_GEMM_MIN_ROWS, &scratch, acts);
            if (st != QT_OK) {
                break;
            }
            job.acts = acts;
        }
        st = run_threads(&job, nt);
        free(scratch);
    }
    free(acts);
    return st;
}
