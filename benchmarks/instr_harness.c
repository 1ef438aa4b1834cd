/* One call into a build of libqtnative, for bench_instr_ab.py to count under callgrind.
 *
 *   instr_harness LIB OP TYPE_ID ROWS COLS [N]
 *
 * OP is quantize, quantize-imatrix, dequantize or qmatmul (N activation rows, FAST mode). The
 * library is opened with dlopen so one binary serves every build; inputs are the same for every
 * build (a fixed linear congruential sequence, uniform in [-1.5, 1.5)). Preparatory calls (the
 * quantize before a dequantize or qmatmul) run outside the counted function: callgrind is started
 * with --toggle-collect on the one entry point OP names. One thread, the active ISA level
 * (QTSTUDIO_ISA picks it). Exit status 0 on success, 2 on bad arguments, 1 on a library error. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int32_t (*quantize_fn)(int32_t, const float *, void *, int64_t, int64_t, const float *,
                               int32_t, int32_t);
typedef int32_t (*dequantize_fn)(int32_t, const void *, float *, int64_t, int64_t, int32_t,
                                 int32_t);
typedef int32_t (*qmatmul_fn)(int32_t, const float *, const void *, float *, int64_t, int64_t,
                              int64_t, int32_t, int32_t, int32_t);
typedef size_t (*row_size_fn)(int32_t, int64_t);

static float *uniform(int64_t count, uint32_t seed) {
    float *v = malloc((size_t)count * sizeof(float));
    if (!v) return NULL;
    uint32_t s = seed;
    for (int64_t i = 0; i < count; i++) {
        s = s * 1664525u + 1013904223u;
        v[i] = ((float)(s >> 8) / 16777216.0f) * 3.0f - 1.5f;
    }
    return v;
}

static void *symbol(void *lib, const char *name) {
    void *p = dlsym(lib, name);
    if (!p) fprintf(stderr, "instr_harness: %s not in the library\n", name);
    return p;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: instr_harness LIB OP TYPE_ID ROWS COLS [N]\n");
        return 2;
    }
    const char *op = argv[2];
    const int32_t type_id = (int32_t)atoi(argv[3]);
    const int64_t rows = atoll(argv[4]), cols = atoll(argv[5]);
    const int64_t n = argc > 6 ? atoll(argv[6]) : 1;
    if (rows <= 0 || cols <= 0 || n <= 0) return 2;
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "instr_harness: %s\n", dlerror());
        return 1;
    }
    quantize_fn quantize = (quantize_fn)symbol(lib, "qt_quantize");
    dequantize_fn dequantize = (dequantize_fn)symbol(lib, "qt_dequantize");
    qmatmul_fn qmatmul = (qmatmul_fn)symbol(lib, "qt_qmatmul");
    row_size_fn row_size = (row_size_fn)symbol(lib, "qt_row_size");
    if (!quantize || !dequantize || !qmatmul || !row_size) return 1;
    const size_t rb = row_size(type_id, cols);
    if (rb == 0) {
        fprintf(stderr, "instr_harness: %lld values are not a whole row of type %d\n",
                (long long)cols, (int)type_id);
        return 2;
    }
    float *x = uniform(rows * cols, 12345u);
    float *imatrix = malloc((size_t)cols * sizeof(float));
    uint8_t *q = malloc(rb * (size_t)rows);
    const int64_t ny = rows * cols > n * rows ? rows * cols : n * rows;
    float *y = malloc((size_t)ny * sizeof(float));
    float *act = uniform(n * cols, 777u);
    if (!x || !imatrix || !q || !y || !act) return 1;
    for (int64_t i = 0; i < cols; i++) imatrix[i] = 0.5f + (float)(i % 7);

    int32_t st;
    if (strcmp(op, "quantize") == 0) {
        st = quantize(type_id, x, q, rows, cols, NULL, 1, -1);
    } else if (strcmp(op, "quantize-imatrix") == 0) {
        st = quantize(type_id, x, q, rows, cols, imatrix, 1, -1);
    } else if (strcmp(op, "dequantize") == 0) {
        st = quantize(type_id, x, q, rows, cols, NULL, 1, -1);
        if (st == 0) st = dequantize(type_id, q, y, rows, cols, 1, -1);
    } else if (strcmp(op, "qmatmul") == 0) {
        st = quantize(type_id, x, q, rows, cols, NULL, 1, -1);
        if (st == 0) st = qmatmul(type_id, act, q, y, n, rows, cols, 0, 1, -1);
    } else {
        fprintf(stderr, "instr_harness: unknown op %s\n", op);
        return 2;
    }
    if (st != 0) {
        fprintf(stderr, "instr_harness: %s of type %d failed with status %d\n", op, (int)type_id,
                (int)st);
        return 1;
    }
    /* Keep the outputs observable so nothing is optimized away, and let the caller compare. */
    uint32_t h = 2166136261u;
    const uint8_t *bytes = strcmp(op, "dequantize") == 0 || strcmp(op, "qmatmul") == 0
                               ? (const uint8_t *)y
                               : q;
    const size_t len = strcmp(op, "dequantize") == 0 ? (size_t)(rows * cols) * sizeof(float)
                       : strcmp(op, "qmatmul") == 0  ? (size_t)(n * rows) * sizeof(float)
                                                     : rb * (size_t)rows;
    for (size_t i = 0; i < len; i++) h = (h ^ bytes[i]) * 16777619u;
    printf("%08x\n", h);
    return 0;
}
