/* Self-test of qt_qmatmul through the public header only.
 *
 * For every encoding the library can write and qt_qmatmul accepts, on every ISA level under
 * test and in both modes:
 *  - threads: results with 2, 3, 4 and 8 threads (and "one per core") must equal one thread bit
 *    for bit, repeated so that different interleavings are seen. Rows of y are independent, so
 *    any difference is a race, a share/claim bookkeeping error or a kernel whose result depends
 *    on where a thread's rows begin. The shapes are sized so that
 *    the library really starts that many workers (qt_qmatmul gives each thread at least 2^20
 *    multiply-adds) and cover both the GEMV loop (n below 4) and the GEMM tiles, with a
 *    ragged last 16-row tile;
 *  - accuracy: against a float64 product of x and the weights as qt_dequantize decodes them,
 *    within the bounds qtnative.h states (the same ones tests/test_qmatmul.py asserts): EXACT
 *    |err| <= (k + 2) 2^-24 sum|x w|, FAST additionally sum_g max|x_g| / 254 sum_g |w|;
 *  - three application threads calling at once (one gets the worker pool, the others fall
 *    back to threads of their own) each still get the one-thread result;
 *  - random bytes as weights never fault (under AddressSanitizer: no access leaves the buffers)
 *    and still give the same bits with 1 and 4 threads;
 *  - argument errors come back as the documented status codes, and y is never written past
 *    its n * m values.
 *
 * Levels: with QTSTUDIO_ISA set, that level (passed explicitly) and the active dispatch level
 * (level -1, which must agree with it); unset, every level this CPU supports. --active tests
 * only level -1 (the ThreadSanitizer run uses it). A numeric argument reseeds the generator.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_SEED 0x2545F4914F6CDD1Dull
#include "test_support.h"

/* Normal values drawn from a table: Box-Muller's logf/cosf for every one of the ~10^8 test
 * values took a tenth of the run under AddressSanitizer. */
#define NORMAL_TABLE (1 << 16)
static float g_normals[NORMAL_TABLE];

static void init_normals(void) {
    for (int i = 0; i < NORMAL_TABLE; i++) g_normals[i] = normal01();
}

static float normal_fast(void) {
    return g_normals[next_u64() >> 48];
}

/* ---------------------------------------------------------------- helpers */

/* y buffers carry guard values on both sides: qmatmul must write exactly n * m floats. */
#define GUARD 16
static const uint32_t k_guard_bits = 0x7fc0beefu; /* a NaN no arithmetic produces */

typedef struct ybuf {
    float *base;
    float *y;
    int64_t count;
} ybuf;

static ybuf ybuf_new(int64_t count) {
    ybuf b;
    b.count = count;
    b.base = xmalloc(sizeof(float) * (size_t)(count + 2 * GUARD));
    b.y = b.base + GUARD;
    for (int64_t i = 0; i < count + 2 * GUARD; i++) {
        memcpy(&b.base[i], &k_guard_bits, sizeof(float));
    }
    return b;
}

static int guards_intact(const ybuf *b) {
    for (int i = 0; i < GUARD; i++) {
        if (qt_f32_bits(b->base[i]) != k_guard_bits ||
            qt_f32_bits(b->y[b->count + i]) != k_guard_bits) {
            return 0;
        }
    }
    return 1;
}

static int g_levels[QT_ISA_COUNT + 1];
static int g_nlevels;
/* Test weights are quantized on the fastest level: codec bytes are the same on every level
 * (test_codecs checks that), and under AddressSanitizer the scalar quantizers would take most
 * of the run. */
static int g_codec_level = QT_ISA_SCALAR;

static const char *level_name(int lvl) {
    return lvl < 0 ? "active" : qt_isa_name(lvl);
}

static const char *mode_name(int mode) {
    return mode == QT_QMATMUL_EXACT ? "exact" : "fast";
}

/* ---------------------------------------------------------------- encodings */

typedef struct enc {
    qt_type_traits tr;
    int is_float; /* F32/F16/BF16: both modes take the exact path, except BF16 (below) */
    int bf16_fast; /* BF16: FAST GEMV may round activations to bf16 (AVX512_BF16 CPUs) */
    int group;    /* FAST-mode activation group (qtnative.h lists the 256-value ones) */
    int64_t kmin; /* smallest k every mode accepts */
} enc;

static int act_group(const char *name) {
    static const char *const k256[] = {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
                                       "IQ4_XS", "TQ1_0", "TQ2_0"};
    for (size_t i = 0; i < sizeof k256 / sizeof k256[0]; i++) {
        if (strcmp(name, k256[i]) == 0) return 256;
    }
    return 32;
}

/* qt_qmatmul accepts the type in both modes: a one-row call on all-zero weights. */
static int qmatmul_accepts(const enc *e) {
    const int64_t k = e->kmin;
    uint8_t *w = xmalloc(qt_row_size(e->tr.type_id, k));
    float *x = xmalloc(sizeof(float) * (size_t)k);
    float y = 1.0f;
    memset(w, 0, qt_row_size(e->tr.type_id, k));
    for (int64_t i = 0; i < k; i++) x[i] = 1.0f;
    int ok = 1;
    for (int mode = QT_QMATMUL_FAST; mode <= QT_QMATMUL_EXACT; mode++) {
        const qt_status st = qt_qmatmul(e->tr.type_id, x, w, &y, 1, 1, k, mode, 1, -1);
        if (st != QT_OK) {
            /* only "not this encoding" is an acceptable refusal */
            CHECK(st == QT_ERR_TYPE, "%s probe (%s) status %d", e->tr.name, mode_name(mode), st);
            ok = 0;
        } else {
            CHECK(y == 0.0f, "%s probe (%s): zero weights gave %g", e->tr.name, mode_name(mode),
                  (double)y);
        }
    }
    free(w);
    free(x);
    return ok;
}

/* ---------------------------------------------------------------- test data */

/* m weight rows of k values: quantized normal rows, their decoded values (floats, so exact
 * in float64 too; kept single to halve the largest buffer) and the per-group sums of |w| the
 * FAST bound needs. */
typedef struct weights {
    int64_t m, k;
    uint8_t *q;     /* base + the shape's byte offset from a 64-byte boundary */
    uint8_t *base;
    float *wd;    /* [m][k] */
    double *gsum; /* [m][k / group] */
} weights;

static void fill_normal(float *v, size_t count) {
    for (size_t i = 0; i < count; i++) v[i] = normal_fast();
}

/* sum |w| over each group of `group` values of every row */
static double *group_sums(const float *wd, int64_t m, int64_t k, int group) {
    const int64_t ng = k / group;
    double *gsum = xmalloc(sizeof(double) * (size_t)(m * ng));
    for (int64_t r = 0; r < m; r++) {
        for (int64_t g = 0; g < ng; g++) {
            double sum = 0.0;
            for (int64_t j = g * group; j < (g + 1) * group; j++) {
                sum += fabs((double)wd[r * k + j]);
            }
            gsum[r * ng + g] = sum;
        }
    }
    return gsum;
}

static weights make_weights(const enc *e, int64_t m, int64_t k, int offset) {
    weights w;
    w.m = m;
    w.k = k;
    const size_t count = (size_t)(m * k);
    float *src = xmalloc(sizeof(float) * count);
    fill_normal(src, count);
    const size_t bytes = qt_row_size(e->tr.type_id, k) * (size_t)m + 64;
    w.base = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (w.base == NULL) {
        fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
        exit(2);
    }
    w.q = w.base + offset;
    qt_status st = qt_quantize(e->tr.type_id, src, w.q, m, k, NULL, 1, g_codec_level);
    CHECK(st == QT_OK, "%s quantize %lldx%lld status %d", e->tr.name, (long long)m, (long long)k,
          st);
    free(src);
    w.wd = xmalloc(sizeof(float) * count);
    st = qt_dequantize(e->tr.type_id, w.q, w.wd, m, k, 1, g_codec_level);
    CHECK(st == QT_OK, "%s dequantize status %d", e->tr.name, st);
    w.gsum = group_sums(w.wd, m, k, e->group);
    return w;
}

static void free_weights(weights *w) {
    free(w->base);
    free(w->wd);
    free(w->gsum);
}

static float *make_acts(int64_t n, int64_t k) {
    float *x = xmalloc(sizeof(float) * (size_t)(n * k));
    for (int64_t i = 0; i < n * k; i++) {
        /* a few larger values make the per-group activation scales differ */
        x[i] = normal_fast() * ((next_u64() & 31) == 0 ? 4.0f : 1.0f);
    }
    return x;
}

/* Reference y, the EXACT bound and the FAST bound for every output value. */
typedef struct oracle {
    double *ref, *bexact, *bfast;
} oracle;

static oracle make_oracle(const enc *e, const weights *w, const float *x, int64_t n) {
    const int64_t m = w->m, k = w->k, ng = k / e->group;
    oracle o;
    o.ref = xmalloc(sizeof(double) * (size_t)(n * m));
    o.bexact = xmalloc(sizeof(double) * (size_t)(n * m));
    o.bfast = xmalloc(sizeof(double) * (size_t)(n * m));
    double *amax = xmalloc(sizeof(double) * (size_t)ng);
    const double u = ldexp(1.0, -24);
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + i * k;
        for (int64_t g = 0; g < ng; g++) {
            double a = 0.0;
            for (int64_t j = g * e->group; j < (g + 1) * e->group; j++) {
                a = fmax(a, fabs((double)xi[j]));
            }
            amax[g] = a;
        }
        for (int64_t r = 0; r < m; r++) {
            const float *wr = w->wd + r * k;
            double s = 0.0, sabs = 0.0, act = 0.0, wabs = 0.0;
            for (int64_t j = 0; j < k; j++) {
                s += (double)xi[j] * wr[j];
                sabs += fabs((double)xi[j] * wr[j]);
                wabs += fabs((double)wr[j]);
            }
            for (int64_t g = 0; g < ng; g++) act += amax[g] / 254.0 * w->gsum[r * ng + g];
            const double be = (double)(k + 2) * u * sabs + 1e-35;
            o.ref[i * m + r] = s;
            o.bexact[i * m + r] = be;
            /* BF16 activations: each moves by at most 2^-9 |x|, below 2^-126 to zero */
            const double bb = be + 1.0001 * ldexp(sabs, -9) + ldexp(wabs + (double)k, -126);
            o.bfast[i * m + r] = e->bf16_fast ? bb : e->is_float ? be : 1.0001 * act + 4.0 * be;
        }
    }
    free(amax);
    return o;
}

static void free_oracle(oracle *o) {
    free(o->ref);
    free(o->bexact);
    free(o->bfast);
}

/* ---------------------------------------------------------------- checks */

/* One output within its bound; reports the worst violation (or nothing). */
static void check_accuracy(const enc *e, const oracle *o, const float *y, int64_t n, int64_t m,
                           int64_t k, int mode, int lvl) {
    const double *bound = mode == QT_QMATMUL_EXACT ? o->bexact : o->bfast;
    int64_t bad = -1;
    double worst = 0.0;
    for (int64_t i = 0; i < n * m; i++) {
        const double err = fabs((double)y[i] - o->ref[i]);
        /* !(err <= bound) also catches NaN */
        if (!(err <= bound[i])) {
            const double ratio = isnan(err) ? INFINITY : err / bound[i];
            if (bad < 0 || ratio > worst) {
                bad = i;
                worst = ratio;
            }
        }
    }
    if (mode == QT_QMATMUL_FAST && !e->is_float) {
        /* the 8-bit activation error is real: FAST is not secretly the exact path, and its
         * bound is not met only because it is loose */
        int above = 0;
        for (int64_t i = 0; i < n * m && !above; i++) {
            above = fabs((double)y[i] - o->ref[i]) > o->bexact[i];
        }
        CHECK(above, "%s %s fast n=%lld m=%lld k=%lld: every error within the exact bound",
              e->tr.name, level_name(lvl), (long long)n, (long long)m, (long long)k);
    }
    CHECK(bad < 0, "%s %s %s n=%lld m=%lld k=%lld: y[%lld] = %.9g, reference %.9g, error %.3g "
          "exceeds the bound %.3g (x%.3g)", e->tr.name, level_name(lvl), mode_name(mode),
          (long long)n, (long long)m, (long long)k, (long long)bad,
          bad < 0 ? 0.0 : (double)y[bad], bad < 0 ? 0.0 : o->ref[bad],
          bad < 0 ? 0.0 : fabs((double)y[bad] - o->ref[bad]), bad < 0 ? 0.0 : bound[bad], worst);
}

/* Run one qmatmul into a fresh guarded buffer; NULL (after a failed check) on error. */
static float *run(const enc *e, const float *x, const void *w, int64_t n, int64_t m, int64_t k,
                  int mode, int threads, int lvl, int *ok) {
    ybuf b = ybuf_new(n * m);
    const qt_status st = qt_qmatmul(e->tr.type_id, x, w, b.y, n, m, k, mode, threads, lvl);
    CHECK(st == QT_OK, "%s %s %s n=%lld m=%lld k=%lld threads=%d: status %d", e->tr.name,
          level_name(lvl), mode_name(mode), (long long)n, (long long)m, (long long)k, threads,
          st);
    CHECK(guards_intact(&b), "%s %s %s n=%lld m=%lld k=%lld threads=%d: wrote outside y",
          e->tr.name, level_name(lvl), mode_name(mode), (long long)n, (long long)m, (long long)k,
          threads);
    *ok = st == QT_OK;
    /* callers free with free_run */
    return b.y;
}

static void free_run(float *y) {
    free(y - GUARD);
}

/* Thread counts compared with one thread, each run reps times: 3 (uneven shares) and 8 (more
 * workers than cores, so the scheduler interleaves them most) twice; 0 asks for one per core.
 * ThreadSanitizer reports a race from a single run whatever its outcome, and its run is the
 * slowest: once each there. */
#if defined(__SANITIZE_THREAD__)
#define REPEAT_ODD 1
#else
#define REPEAT_ODD 2
#endif
static const struct {
    int threads, reps;
} k_threads[] = {{2, 1}, {3, REPEAT_ODD}, {4, 1}, {8, REPEAT_ODD}, {0, 1}};

/* Threads agree with one thread, bit for bit. */
static void check_threads(const enc *e, const weights *w, const float *x, int64_t n, int mode,
                          int lvl, const float *one) {
    for (size_t ti = 0; ti < sizeof k_threads / sizeof k_threads[0]; ti++) {
        const int threads = k_threads[ti].threads, reps = k_threads[ti].reps;
        for (int rep = 0; rep < reps; rep++) {
            int ok;
            float *y = run(e, x, w->q, n, w->m, w->k, mode, threads, lvl, &ok);
            const int64_t d = ok ? first_float_diff(one, y, n * w->m, 0) : -1;
            CHECK(d < 0, "%s %s %s n=%lld m=%lld k=%lld: %d threads (repeat %d) differ from one "
                  "thread at y[%lld] (%08x vs %08x)", e->tr.name, level_name(lvl),
                  mode_name(mode), (long long)n, (long long)w->m, (long long)w->k, threads,
                  rep, (long long)d, d < 0 ? 0u : qt_f32_bits(one[d]), d < 0 ? 0u : qt_f32_bits(y[d]));
            free_run(y);
        }
    }
}

typedef struct shape {
    int64_t m, k;
    int64_t n;
    int threaded; /* large enough that 8 threads all get work: run the thread sweep */
    int offset;   /* weight bytes start this far past a 64-byte boundary */
} shape;

/* Every shape for one encoding. The small ones (m = 37: two full 16-row tiles and a ragged one)
 * check accuracy for n = 1, 3 (GEMV) and 17, 70 (GEMM) with k at the smallest block, across
 * two GEMM chunks (768 = 512 + 256) and two GEMV spans (2304 = 2048 + 256). The threaded ones
 * give every worker at least 2^20 multiply-adds: n = 1 with 1025 rows (4 workers, each share
 * several 64-row claims), n = 3 with 8 workers, GEMM with 8 workers, and for float storage
 * n = 1 at k = 8224 with 4 workers. */
static int shapes_for(const enc *e, shape *out) {
    int ns = 0;
    static const int64_t small_n[] = {1, 3, 17, 70};
    const int64_t ks[] = {e->kmin, 768, 2304};
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
        if (ki > 0 && ks[ki] == ks[0]) continue;
        for (size_t ni = 0; ni < sizeof small_n / sizeof small_n[0]; ni++) {
            out[ns++] = (shape){37, ks[ki], small_n[ni], 0, 0};
        }
    }
    if (e->is_float) {
        /* AVX-512 float GEMV takes four rows at a time once x outgrows L1 (k > 8192), with
         * kernels of their own for rows on 64-byte boundaries (F16, BF16) and plain ones for
         * rows off them (16: numpy's alignment) */
        for (int off = 0; off <= 16; off += 16) {
            out[ns++] = (shape){7, 8224, 1, 0, off};
            out[ns++] = (shape){7, 8224, 2, 0, off};
            out[ns++] = (shape){521, 8224, 1, 1, off};
        }
    }
    out[ns++] = (shape){1025, 4096, 1, 1, 0};
    out[ns++] = (shape){1001, 2816, 3, 1, 0};
    out[ns++] = (shape){1001, 512, 17, 1, 0};
    return ns;
}

/* FAST at a SIMD level against the scalar reference kernels: both quantize the activations
 * the same way and sum the same integer products per group, so only float rounding may differ,
 * and the difference must stay within a few times the exact path's float32 bound (the scale
 * products d * da and the minimums' sums round on their own). A fused kernel that picked a
 * wrong group scale or offset stays inside the loose FAST bound but not this one. */
static void check_against_scalar(const enc *e, const oracle *o, const float *y,
                                 const float *y_scalar, int64_t n, int64_t m, int64_t k, int lvl) {
    int64_t bad = -1;
    for (int64_t i = 0; i < n * m && bad < 0; i++) {
        const double d = fabs((double)y[i] - (double)y_scalar[i]);
        if (!(d <= 8.0 * o->bexact[i])) bad = i;
    }
    CHECK(bad < 0, "%s %s fast n=%lld m=%lld k=%lld: y[%lld] = %.9g, the scalar kernels give "
          "%.9g (more than float rounding apart, bound %.3g)", e->tr.name, level_name(lvl),
          (long long)n, (long long)m, (long long)k, (long long)bad,
          bad < 0 ? 0.0 : (double)y[bad], bad < 0 ? 0.0 : (double)y_scalar[bad],
          bad < 0 ? 0.0 : 8.0 * o->bexact[bad]);
}

static void check_encoding(const enc *e) {
    shape shapes[32];
    const int ns = shapes_for(e, shapes);
    for (int si = 0; si < ns; si++) {
        const shape *s = &shapes[si];
        weights w = make_weights(e, s->m, s->k, s->offset);
        float *x = make_acts(s->n, s->k);
        oracle o = make_oracle(e, &w, x, s->n);
        int scalar_ok = 0;
        float *y_scalar = e->is_float ? NULL
                                      : run(e, x, w.q, s->n, s->m, s->k, QT_QMATMUL_FAST, 1,
                                            QT_ISA_SCALAR, &scalar_ok);
        for (int mode = QT_QMATMUL_FAST; mode <= QT_QMATMUL_EXACT; mode++) {
            for (int li = 0; li < g_nlevels; li++) {
                const int lvl = g_levels[li];
                int ok;
                float *one = run(e, x, w.q, s->n, s->m, s->k, mode, 1, lvl, &ok);
                if (ok) {
                    check_accuracy(e, &o, one, s->n, s->m, s->k, mode, lvl);
                    if (mode == QT_QMATMUL_FAST && scalar_ok) {
                        check_against_scalar(e, &o, one, y_scalar, s->n, s->m, s->k, lvl);
                    }
                    /* F32/F16/BF16 run the same exact path in both modes: sweep once */
                    if (s->threaded &&
                        !(e->is_float && !e->bf16_fast && mode == QT_QMATMUL_FAST)) {
                        check_threads(e, &w, x, s->n, mode, lvl, one);
                    }
                }
                free_run(one);
            }
        }
        if (y_scalar != NULL) {
            free_run(y_scalar);
        }
        free_oracle(&o);
        free(x);
        free_weights(&w);
    }
}

/* Random bytes as weights: must not fault, and 1 and 4 threads must still agree (NaN matches
 * NaN: the payload of a NaN from two NaN operands is not specified). */
static void check_garbage(const enc *e) {
    static const shape garbage_shapes[] = {
        {37, 0, 1, 0, 0}, {37, 0, 3, 0, 0}, {37, 0, 17, 0, 0}, /* k = the smallest block */
        {1025, 4096, 1, 1, 0},                                /* GEMV, 4 workers */
        {1001, 1024, 5, 1, 0},                                /* GEMM, 4 workers */
    };
    for (size_t si = 0; si < sizeof garbage_shapes / sizeof garbage_shapes[0]; si++) {
        shape s = garbage_shapes[si];
        if (s.k == 0) s.k = e->kmin;
        const size_t bytes = qt_row_size(e->tr.type_id, s.k) * (size_t)s.m;
        uint8_t *q = xmalloc(bytes);
        for (size_t i = 0; i < bytes; i++) q[i] = (uint8_t)(next_u64() >> 56);
        if (si == 0) memset(q, 0xFF, bytes); /* all-ones: NaN scales everywhere */
        float *x = make_acts(s.n, s.k);
        for (int mode = QT_QMATMUL_FAST; mode <= QT_QMATMUL_EXACT; mode++) {
            for (int li = 0; li < g_nlevels; li++) {
                const int lvl = g_levels[li];
                int ok1, ok4;
                float *y1 = run(e, x, q, s.n, s.m, s.k, mode, 1, lvl, &ok1);
                float *y4 = run(e, x, q, s.n, s.m, s.k, mode, 4, lvl, &ok4);
                const int64_t d = ok1 && ok4 ? first_float_diff(y1, y4, s.n * s.m, 1) : -1;
                CHECK(d < 0, "%s %s %s garbage n=%lld m=%lld k=%lld: 4 threads differ from one "
                      "at y[%lld]", e->tr.name, level_name(lvl), mode_name(mode), (long long)s.n,
                      (long long)s.m, (long long)s.k, (long long)d);
                free_run(y1);
                free_run(y4);
            }
        }
        free(q);
        free(x);
    }
}

/* Several application threads calling qt_qmatmul at once: one gets the library's worker pool,
 * the others run on threads of their own, and none may disturb another's result. */
typedef struct caller {
    const enc *e;
    const weights *w;
    const float *x;
    int64_t n;
    int mode, lvl, threads;
    const float *want;
    int errors, mismatches;
} caller;

#define CALLER_REPEATS 3

static void *caller_main(void *arg) {
    caller *c = arg;
    const int64_t count = c->n * c->w->m;
    float *y = xmalloc(sizeof(float) * (size_t)count);
    for (int rep = 0; rep < CALLER_REPEATS; rep++) {
        const qt_status st = qt_qmatmul(c->e->tr.type_id, c->x, c->w->q, y, c->n, c->w->m,
                                        c->w->k, c->mode, c->threads, c->lvl);
        if (st != QT_OK) {
            c->errors++;
        } else if (first_float_diff(c->want, y, count, 0) >= 0) {
            c->mismatches++;
        }
    }
    free(y);
    return NULL;
}

static void check_concurrent_callers(const enc *e) {
    /* a GEMV and a GEMM shape, each big enough for 4 and 8 workers */
    static const shape call_shapes[] = {{1025, 4096, 1, 1, 0}, {1001, 512, 17, 1, 0}};
    enum { NSHAPES = 2, NCALLERS = 3 };
    weights w[NSHAPES];
    float *x[NSHAPES];
    for (int si = 0; si < NSHAPES; si++) {
        w[si] = make_weights(e, call_shapes[si].m, call_shapes[si].k, 0);
        x[si] = make_acts(call_shapes[si].n, call_shapes[si].k);
    }
    for (int mode = QT_QMATMUL_FAST; mode <= QT_QMATMUL_EXACT; mode++) {
        for (int li = 0; li < g_nlevels; li++) {
            const int lvl = g_levels[li];
            float *want[NSHAPES];
            int ok = 1;
            for (int si = 0; si < NSHAPES; si++) {
                int ok1;
                want[si] = run(e, x[si], w[si].q, call_shapes[si].n, w[si].m, w[si].k, mode, 1,
                               lvl, &ok1);
                ok &= ok1;
            }
            caller c[NCALLERS];
            pthread_t t[NCALLERS];
            int started[NCALLERS];
            for (int ci = 0; ok && ci < NCALLERS; ci++) {
                const int si = ci % NSHAPES;
                c[ci] = (caller){e, &w[si], x[si], call_shapes[si].n, mode, lvl,
                                 ci == 0 ? 8 : 4, want[si], 0, 0};
                started[ci] = pthread_create(&t[ci], NULL, caller_main, &c[ci]) == 0;
                CHECK(started[ci], "could not start caller thread %d", ci);
            }
            for (int ci = 0; ok && ci < NCALLERS; ci++) {
                if (!started[ci]) continue;
                pthread_join(t[ci], NULL);
                CHECK(c[ci].errors == 0 && c[ci].mismatches == 0,
                      "%s %s %s: concurrent caller %d (n=%lld, %d threads): %d errors, %d of %d "
                      "results differ from one thread", e->tr.name, level_name(lvl),
                      mode_name(mode), ci, (long long)c[ci].n, c[ci].threads, c[ci].errors,
                      c[ci].mismatches, CALLER_REPEATS);
            }
            for (int si = 0; si < NSHAPES; si++) free_run(want[si]);
        }
    }
    for (int si = 0; si < NSHAPES; si++) {
        free_weights(&w[si]);
        free(x[si]);
    }
}

/* ---------------------------------------------------------------- argument errors */

static void check_argument_errors(void) {
    enum { K = 256, N = 2, M = 3 };
    static float x[N * K];
    static uint8_t w[M * 512]; /* >= 3 rows of any 256-value encoding */
    ybuf b = ybuf_new(N * M);
    const int32_t q4_0 = 2, q4_k = 12, f32 = 0;
    qt_status st;

    CHECK(qt_row_size(q4_0, K) * M <= sizeof w && qt_row_size(q4_k, K) * M <= sizeof w,
          "argument-test buffer sizes");
    CHECK(qt_qmatmul(q4_0, x, w, b.y, N, M, K, QT_QMATMUL_FAST, 1, -1) == QT_OK, "valid call");
    /* unknown encodings */
    CHECK(qt_qmatmul(999, x, w, b.y, N, M, K, 0, 1, -1) == QT_ERR_TYPE, "type 999");
    CHECK(qt_qmatmul(-1, x, w, b.y, N, M, K, 0, 1, -1) == QT_ERR_TYPE, "type -1");
    CHECK(qt_qmatmul(4, x, w, b.y, N, M, K, 0, 1, -1) == QT_ERR_TYPE, "unused type id 4");
    /* k not a whole number of blocks */
    CHECK(qt_qmatmul(q4_0, x, w, b.y, N, M, 48, 0, 1, -1) == QT_ERR_SHAPE, "Q4_0 k=48");
    CHECK(qt_qmatmul(q4_0, x, w, b.y, N, M, 16, 1, 1, -1) == QT_ERR_SHAPE, "Q4_0 exact k=16");
    CHECK(qt_qmatmul(q4_k, x, w, b.y, N, M, 128, 0, 1, -1) == QT_ERR_SHAPE, "Q4_K k=128");
    CHECK(qt_qmatmul(q4_k, x, w, b.y, N, M, 288, 1, 1, -1) == QT_ERR_SHAPE, "Q4_K exact k=288");
    /* NULL pointers with work to do */
    CHECK(qt_qmatmul(q4_0, NULL, w, b.y, N, M, K, 0, 1, -1) == QT_ERR_ARGUMENT, "NULL x");
    CHECK(qt_qmatmul(q4_0, x, NULL, b.y, N, M, K, 0, 1, -1) == QT_ERR_ARGUMENT, "NULL w");
    CHECK(qt_qmatmul(q4_0, x, w, NULL, N, M, K, 0, 1, -1) == QT_ERR_ARGUMENT, "NULL y");
    CHECK(qt_qmatmul(f32, NULL, w, b.y, N, M, K, 1, 1, -1) == QT_ERR_ARGUMENT, "F32 NULL x");
    CHECK(qt_qmatmul(f32, x, w, NULL, N, M, K, 1, 1, -1) == QT_ERR_ARGUMENT, "F32 NULL y");
    /* negative sizes */
    CHECK(qt_qmatmul(q4_0, x, w, b.y, -1, M, K, 0, 1, -1) == QT_ERR_ARGUMENT, "n=-1");
    CHECK(qt_qmatmul(q4_0, x, w, b.y, N, -1, K, 0, 1, -1) == QT_ERR_ARGUMENT, "m=-1");
    CHECK(qt_qmatmul(q4_0, x, w, b.y, N, M, -32, 0, 1, -1) == QT_ERR_ARGUMENT, "k=-32");
    /* modes */
    CHECK(qt_qmatmul(q4_0, x, w, b.y, N, M, K, 2, 1, -1) == QT_ERR_ARGUMENT, "mode 2");
    CHECK(qt_qmatmul(q4_0, x, w, b.y, N, M, K, -1, 1, -1) == QT_ERR_ARGUMENT, "mode -1");
    /* levels */
    CHECK(qt_qmatmul(q4_0, x, w, b.y, N, M, K, 0, 1, 99) == QT_ERR_ISA, "level 99");
    CHECK(qt_qmatmul(q4_0, x, w, b.y, N, M, K, 0, 1, QT_ISA_COUNT) == QT_ERR_ISA, "level count");
    for (int32_t l = 0; l < QT_ISA_COUNT; l++) {
        if (qt_isa_supported(l) != QT_OK) {
            CHECK(qt_qmatmul(q4_0, x, w, b.y, N, M, K, 0, 1, l) == QT_ERR_ISA,
                  "unsupported level %s", qt_isa_name(l));
            CHECK(qt_qmatmul(f32, x, w, b.y, N, M, K, 1, 1, l) == QT_ERR_ISA,
                  "F32 unsupported level %s", qt_isa_name(l));
        }
    }
    CHECK(qt_qmatmul(q4_0, x, w, b.y, N, M, K, 0, 1, -2) == QT_OK, "level -2 means active");
    /* thread counts <= 0 mean one per core; huge ones are capped */
    CHECK(qt_qmatmul(q4_0, x, w, b.y, N, M, K, 0, 0, -1) == QT_OK, "threads 0");
    CHECK(qt_qmatmul(q4_0, x, w, b.y, N, M, K, 0, -3, -1) == QT_OK, "threads -3");
    CHECK(qt_qmatmul(q4_0, x, w, b.y, N, M, K, 0, 100000, -1) == QT_OK, "threads 100000");
    CHECK(guards_intact(&b), "argument checks wrote outside y");

    /* Empty products: nothing to read, nothing (n or m = 0) or zeros (k = 0) to write. */
    for (int64_t i = 0; i < N * M; i++) b.y[i] = 5.0f;
    st = qt_qmatmul(q4_0, NULL, NULL, NULL, 0, M, K, 0, 1, -1);
    CHECK(st == QT_OK, "n=0 with NULL buffers: status %d", st);
    st = qt_qmatmul(q4_0, x, w, b.y, N, 0, K, 0, 1, -1);
    CHECK(st == QT_OK && b.y[0] == 5.0f, "m=0 leaves y alone: status %d", st);
    st = qt_qmatmul(q4_0, x, NULL, b.y, N, M, 0, 0, 1, -1);
    int zeros = 1;
    for (int64_t i = 0; i < N * M; i++) zeros &= b.y[i] == 0.0f;
    CHECK(st == QT_OK && zeros, "k=0 writes zeros: status %d", st);
    CHECK(guards_intact(&b), "empty products wrote outside y");
    free(b.base);
}

/* The explicit level and level -1 (which QTSTUDIO_ISA set to it) run the same kernels. */
static void check_active_matches(const enc *e, int lvl) {
    const int64_t m = 37, k = e->kmin * 2, n = 5;
    weights w = make_weights(e, m, k, 0);
    float *x = make_acts(n, k);
    for (int mode = QT_QMATMUL_FAST; mode <= QT_QMATMUL_EXACT; mode++) {
        int ok1, ok2;
        float *a = run(e, x, w.q, n, m, k, mode, 1, lvl, &ok1);
        float *b = run(e, x, w.q, n, m, k, mode, 1, -1, &ok2);
        const int64_t d = ok1 && ok2 ? first_float_diff(a, b, n * m, 0) : -1;
        CHECK(d < 0, "%s %s: level %s and the active level differ at y[%lld]", e->tr.name,
              mode_name(mode), level_name(lvl), (long long)d);
        free_run(a);
        free_run(b);
    }
    free(x);
    free_weights(&w);
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv) {
    int active_only = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--active") == 0) {
            active_only = 1;
        } else {
            g_rng = strtoull(argv[i], NULL, 0) | 1u;
        }
    }
    init_normals();
    const char *env = getenv("QTSTUDIO_ISA");
    const int isa_env = test_isa_env();
    if (isa_env != 0) {
        return isa_env < 0 ? 2 : 0;
    }
    const int forced = env != NULL && env[0] != '\0';
    for (int32_t l = 0; l < QT_ISA_COUNT; l++) {
        if (qt_isa_supported(l) == QT_OK) g_codec_level = l;
    }
    if (active_only) {
        g_levels[g_nlevels++] = -1;
    } else if (forced) {
        CHECK(strcmp(qt_isa_name(qt_active_isa()), env) == 0,
              "QTSTUDIO_ISA=%s but the active level is %s", env, qt_isa_name(qt_active_isa()));
        g_levels[g_nlevels++] = qt_active_isa();
    } else {
        for (int32_t l = 0; l < QT_ISA_COUNT; l++) {
            if (qt_isa_supported(l) == QT_OK) g_levels[g_nlevels++] = l;
        }
    }
    printf("library %s, active level %s, levels under test:", qt_version(),
           qt_isa_name(qt_active_isa()));
    for (int i = 0; i < g_nlevels; i++) printf(" %s", level_name(g_levels[i]));
    printf("\n");

    check_argument_errors();
    int ntypes = 0;
    char names[512] = "";
    for (int32_t id = 0; id < 64; id++) {
        enc e;
        if (qt_type_get_traits(id, &e.tr) != QT_OK || !e.tr.can_quantize) continue;
        e.is_float = e.tr.block_elems == 1;
        e.bf16_fast = strcmp(e.tr.name, "BF16") == 0;
        e.group = e.is_float ? 16 : act_group(e.tr.name);
        e.kmin = e.tr.block_elems > 32 ? e.tr.block_elems : 32;
        if (!qmatmul_accepts(&e)) continue;
        check_encoding(&e);
        check_garbage(&e);
        /* one encoding with a fused GEMV kernel and one float storage suffice: the pool and
         * its fallback do not depend on the encoding */
        if (strcmp(e.tr.name, "Q4_K") == 0 || strcmp(e.tr.name, "BF16") == 0) {
            check_concurrent_callers(&e);
        }
        if (forced && !active_only) check_active_matches(&e, g_levels[0]);
        ntypes++;
        if (strlen(names) + strlen(e.tr.name) + 2 < sizeof names) {
            strcat(names, " ");
            strcat(names, e.tr.name);
        }
        fflush(stdout);
    }
    printf("%d encodings checked:%s\n", ntypes, names);
    CHECK(ntypes >= 18, "only %d encodings accepted by qt_qmatmul", ntypes);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
