/* What the C test programs share: a counting CHECK, a small deterministic random generator,
 * the library's header-only float bit helpers (src/float_bits.h), an allocator that exits on failure and the QTSTUDIO_ISA contract (a forced level the CPU lacks is reported by the library, and the
 * test then skips). Each program includes this once; TEST_SEED picks its generator's start. */
#ifndef QT_TEST_SUPPORT_H
#define QT_TEST_SUPPORT_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "float_bits.h" /* header-only, from src/ */
#include "qtnative.h"

static int g_passed;
static int g_failed;

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (cond) {                                                                            \
            g_passed++;                                                                        \
        } else {                                                                               \
            g_failed++;                                                                        \
            if (g_failed <= 40) {                                                              \
                fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                           \
                fprintf(stderr, __VA_ARGS__);                                                  \
                fputc('\n', stderr);                                                           \
            }                                                                                  \
        }                                                                                      \
    } while (0)

#ifndef TEST_SEED
#define TEST_SEED 0x9E3779B97F4A7C15ull
#endif

static uint64_t g_rng = TEST_SEED;

static inline uint64_t next_u64(void) {
    /* xorshift64*: small, deterministic, good enough to spread test values. */
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545F4914F6CDD1Dull;
}

static inline float uniform01(void) {
    return (float)(next_u64() >> 40) / (float)(1u << 24);
}

static inline float normal01(void) {
    /* Box-Muller; 1 - u keeps the log argument away from zero. */
    const float u = 1.0f - uniform01(), v = uniform01();
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static inline void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

/* Index of the first float whose bits differ (NaN vs NaN counts as equal only when
 * nan_equal), or -1. */
static inline int64_t first_float_diff(const float *a, const float *b, int64_t count, int nan_equal) {
    for (int64_t i = 0; i < count; i++) {
        if (qt_f32_bits(a[i]) == qt_f32_bits(b[i])) continue;
        if (nan_equal && isnan(a[i]) && isnan(b[i])) continue;
        return i;
    }
    return -1;
}

/* -1: QTSTUDIO_ISA names no known level (the caller exits 2); 1: it names a level this CPU
 * lacks, which the library refused as it must (the caller skips); 0: go on. */
static inline int test_isa_env(void) {
    const char *rejected = qt_isa_env_error();
    if (rejected == NULL) {
        return 0;
    }
    const int known = strcmp(rejected, "scalar") == 0 || strcmp(rejected, "avx2") == 0 ||
                      strcmp(rejected, "avx512") == 0 || strcmp(rejected, "neon") == 0;
    if (!known) {
        /* a misspelt level in a test script must not pass silently as a skip */
        fprintf(stderr, "QTSTUDIO_ISA=%s is not a known level (scalar|avx2|avx512|neon)\n",
                rejected);
        return -1;
    }
    printf("skip: QTSTUDIO_ISA=%s is not available on this CPU; the library reported it and "
           "kept %s\n", rejected, qt_isa_name(qt_active_isa()));
    return 1;
}

#endif /* QT_TEST_SUPPORT_H */
