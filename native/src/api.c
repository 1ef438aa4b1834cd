/* Public entry points: argument checks, then rows split across worker threads. */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <xmmintrin.h>
#define QT_STREAM_FENCE() _mm_sfence()
#else
#define QT_STREAM_FENCE() ((void)0)
#endif

#define QT_VERSION_STRING "0.1.0"
#define QT_MAX_THREADS 256
/* Below this many values per thread, starting a thread costs more than it saves. */
#define QT_MIN_VALUES_PER_THREAD (1 << 16)
/* Outputs larger than the last-level cache (32 MiB covers the machines measured) are
 * write-bandwidth bound: plain stores first read every destination line in (read-for-ownership)
 * only to overwrite it. Above this size dequantize decodes into a small cache-resident buffer
 * and streams it out instead, which keeps the row kernels unchanged (qmatmul calls them into
 * cache-resident buffers) and the values bit-identical. Levels register a streaming copy, and
 * mark the types whose decoders are too slow to gain from it (decode_bound), by measurement:
 * see x86/avx2.c and x86/avx512.c. */
#define QT_STREAM_MIN_BYTES ((size_t)32 << 20)
/* Values decoded per step on the streaming path: 4 KiB, which stays in L1 between the decode
 * and the copy (measured faster than 16 KiB steps). */
#define QT_STREAM_CHUNK 1024

const char *qt_version(void) {
    return QT_VERSION_STRING;
}

qt_status qt_type_get_traits(int32_t type_id, qt_type_traits *out) {
    const qt_type_desc *desc = qt_type_desc_get(type_id);
    if (desc == NULL) {
        return QT_ERR_TYPE;
    }
    if (out == NULL) {
        return QT_ERR_ARGUMENT;
    }
    const qt_kernel_table *t = qt_dispatch_table(QT_ISA_SCALAR);
    out->type_id = type_id;
    out->block_elems = desc->block_elems;
    out->block_bytes = desc->block_bytes;
    out->uses_imatrix = desc->uses_imatrix;
    out->can_quantize = t->codec[type_id].quantize != NULL;
    out->can_dequantize = t->codec[type_id].dequantize != NULL;
    out->name = desc->name;
    return QT_OK;
}

size_t qt_row_size(int32_t type_id, int64_t n) {
    const qt_type_desc *desc = qt_type_desc_get(type_id);
    if (desc == NULL || n < 0 || n % desc->block_elems != 0) {
        return 0;
    }
    return (size_t)(n / desc->block_elems) * (size_t)desc->block_bytes;
}

static int cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (n > QT_MAX_THREADS ? QT_MAX_THREADS : (int)n);
}

static int pick_threads(int32_t requested, int64_t nrows, int64_t n_per_row) {
    int n = requested <= 0 ? cpu_count() : (requested > QT_MAX_THREADS ? QT_MAX_THREADS : requested);
    const int64_t by_size = (nrows * n_per_row) / QT_MIN_VALUES_PER_THREAD;
    if ((int64_t)n > by_size) n = by_size < 1 ? 1 : (int)by_size;
    if ((int64_t)n > nrows) n = (int)nrows;
    return n < 1 ? 1 : n;
}

typedef struct row_job {
    const qt_type_desc *desc;
    const qt_kernel_table *table;
    const qt_codec *codec;
    int quantize;
    const uint8_t *src;
    uint8_t *dst;
    size_t src_stride;
    size_t dst_stride;
    int64_t n_per_row;
    const float *imatrix;
    int64_t row_begin;
    int64_t row_end;
    /* Dequantize only: non-NULL to decode through the bounce buffer and stream the result. */
    qt_stream_store_fn stream;
    int64_t chunk_values;  /* a whole number of blocks, at most QT_STREAM_CHUNK */
    size_t chunk_src_bytes;
} row_job;

static void stream_rows(const row_job *job) {
    _Alignas(64) float buf[QT_STREAM_CHUNK];
    for (int64_t r = job->row_begin; r < job->row_end; r++) {
        const uint8_t *s = job->src + (size_t)r * job->src_stride;
        float *d = (float *)(void *)(job->dst + (size_t)r * job->dst_stride);
        for (int64_t i = 0; i < job->n_per_row; i += job->chunk_values) {
            const int64_t m = job->n_per_row - i < job->chunk_values ? job->n_per_row - i
                                                                     : job->chunk_values;
            job->codec->dequantize(s, buf, m);
            job->stream(d + i, buf, m);
            s += job->chunk_src_bytes;
        }
    }
    /* Streaming stores are weakly ordered: drain them before this thread reports done. */
    QT_STREAM_FENCE();
}

static void *run_rows(void *arg) {
    const row_job *job = arg;
    if (job->stream != NULL) {
        stream_rows(job);
        return NULL;
    }
    for (int64_t r = job->row_begin; r < job->row_end; r++) {
        const uint8_t *s = job->src + (size_t)r * job->src_stride;
        uint8_t *d = job->dst + (size_t)r * job->dst_stride;
        if (job->quantize) {
            job->codec->quantize((const float *)s, d, job->n_per_row, job->imatrix);
        } else {
            job->codec->dequantize(s, (float *)d, job->n_per_row);
        }
    }
    return NULL;
}

static qt_status run_parallel(const row_job *proto, int64_t nrows, int nthreads) {
    if (nthreads <= 1) {
        row_job job = *proto;
        job.row_begin = 0;
        job.row_end = nrows;
        run_rows(&job);
        return QT_OK;
    }
    row_job jobs[QT_MAX_THREADS];
    pthread_t threads[QT_MAX_THREADS];
    int started[QT_MAX_THREADS] = {0};
    const int64_t per = nrows / nthreads, extra = nrows % nthreads;
    int64_t begin = 0;
    for (int i = 0; i < nthreads; i++) {
        jobs[i] = *proto;
        jobs[i].row_begin = begin;
        begin += per + (i < extra ? 1 : 0);
        jobs[i].row_end = begin;
    }
    /* Thread 0's share runs on the caller; if a start fails, the caller does that share too. */
    for (int i = 1; i < nthreads; i++) {
        started[i] = pthread_create(&threads[i], NULL, run_rows, &jobs[i]) == 0;
    }
    run_rows(&jobs[0]);
    for (int i = 1; i < nthreads; i++) {
        if (started[i]) {
            pthread_join(threads[i], NULL);
        } else {
            run_rows(&jobs[i]);
        }
    }
    return QT_OK;
}

/* The checks qt_quantize and qt_dequantize share, and the row job both start from: float rows
 * on one side, encoded rows on the other. */
static qt_status prepare_rows(int32_t type_id, const void *src, void *dst, int64_t nrows,
                              int64_t n_per_row, int32_t level, int quantize, row_job *job) {
    const qt_type_desc *desc = qt_type_desc_get(type_id);
    if (desc == NULL) {
        return QT_ERR_TYPE;
    }
    if (nrows < 0 || n_per_row < 0) {
        return QT_ERR_ARGUMENT;
    }
    if (n_per_row % desc->block_elems != 0) {
        return QT_ERR_SHAPE;
    }
    if (nrows > 0 && n_per_row > 0 && (src == NULL || dst == NULL)) {
        return QT_ERR_ARGUMENT;
    }
    const qt_kernel_table *table = qt_dispatch_table(level);
    if (table == NULL) {
        return QT_ERR_ISA;
    }
    const qt_codec *codec = &table->codec[type_id];
    if (quantize ? codec->quantize == NULL : codec->dequantize == NULL) {
        return QT_ERR_TYPE;
    }
    const size_t float_stride = (size_t)n_per_row * sizeof(float);
    const size_t block_stride = qt_row_size(type_id, n_per_row);
    *job = (row_job){
        .desc = desc,
        .table = table,
        .codec = codec,
        .quantize = quantize,
        .src = (const uint8_t *)src,
        .dst = (uint8_t *)dst,
        .src_stride = quantize ? float_stride : block_stride,
        .dst_stride = quantize ? block_stride : float_stride,
        .n_per_row = n_per_row,
    };
    return QT_OK;
}

qt_status qt_quantize(int32_t type_id, const float *src, void *dst, int64_t nrows,
                      int64_t n_per_row, const float *imatrix, int32_t nthreads, int32_t level) {
    row_job job;
    const qt_status st = prepare_rows(type_id, src, dst, nrows, n_per_row, level, 1, &job);
    if (st != QT_OK || nrows == 0 || n_per_row == 0) {
        return st;
    }
    job.imatrix = job.desc->uses_imatrix ? imatrix : NULL;
    return run_parallel(&job, nrows, pick_threads(nthreads, nrows, n_per_row));
}

qt_status qt_dequantize(int32_t type_id, const void *src, float *dst, int64_t nrows,
                        int64_t n_per_row, int32_t nthreads, int32_t level) {
    row_job job;
    const qt_status st = prepare_rows(type_id, src, dst, nrows, n_per_row, level, 0, &job);
    if (st != QT_OK || nrows == 0 || n_per_row == 0) {
        return st;
    }
    const qt_type_desc *desc = job.desc;
    if (job.table->stream_store != NULL && !job.table->decode_bound[type_id] &&
        desc->block_elems <= QT_STREAM_CHUNK &&
        (size_t)nrows * job.dst_stride > QT_STREAM_MIN_BYTES) {
        job.stream = job.table->stream_store;
        job.chunk_values = (QT_STREAM_CHUNK / desc->block_elems) * desc->block_elems;
        job.chunk_src_bytes = (size_t)(job.chunk_values / desc->block_elems) *
                              (size_t)desc->block_bytes;
    }
    return run_parallel(&job, nrows, pick_threads(nthreads, nrows, n_per_row));
}

qt_status qt_find_nonfinite(const float *src, int64_t nrows, int64_t n_per_row, int64_t *bad_row) {
    if (bad_row == NULL || nrows < 0 || n_per_row < 0 || (nrows > 0 && n_per_row > 0 && !src)) {
        return QT_ERR_ARGUMENT;
    }
    *bad_row = -1;
    for (int64_t r = 0; r < nrows; r++) {
        const uint32_t *row = (const uint32_t *)(const void *)(src + r * n_per_row);
        uint32_t bad = 0;
        /* An exponent of all ones marks both Inf and NaN; OR-reduce so the loop vectorizes. */
        for (int64_t i = 0; i < n_per_row; i++) {
            bad |= ((row[i] & 0x7f800000u) == 0x7f800000u);
        }
        if (bad) {
            *bad_row = r;
            return QT_OK;
        }
    }
    return QT_OK;
}
