/* Self-test of the codec library through its public header only.
 *
 * For every encoding the library can write and every ISA level this CPU runs, rows drawn from
 * several awkward distributions are quantized by the scalar reference and by that level; the
 * bytes must be identical and so must the decoded floats, bit for bit. Random bytes go into
 * every decoder (under AddressSanitizer that proves no read or write leaves the buffers), and
 * argument errors must come back as the documented status codes.
 *
 * QTSTUDIO_ISA selects the dispatch level exactly as it does for Python; when it names a level
 * this CPU lacks, the library must report that through qt_isa_env_error and the test skips.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_support.h"

/* ---------------------------------------------------------------- input distributions */

enum {
    DIST_NORMAL,
    DIST_UNIFORM,
    DIST_ZEROS,      /* +0 and -0 mixed with the odd small value */
    DIST_TINY,       /* subnormal and near-subnormal magnitudes */
    DIST_HUGE,       /* magnitudes near FLT_MAX, where ranges overflow */
    DIST_TIES,       /* halves and integers that land exactly on rounding boundaries */
    DIST_EQUAL_MAX,  /* +a and -a as the block's largest magnitude: the first must win */
    DIST_CONSTANT,
    DIST_OUTLIER,
    DIST_NONFINITE,  /* NaN and Inf sprinkled in: levels must still agree */
    DIST_COUNT
};

static const char *const k_dist_names[DIST_COUNT] = {
    "normal", "uniform", "zeros", "tiny", "huge", "ties", "equal-max", "constant", "outlier",
    "nonfinite",
};

static void fill(float *x, int64_t count, int dist) {
    const float c = normal01() * 3.0f;
    for (int64_t i = 0; i < count; i++) {
        const uint64_t r = next_u64();
        float v;
        switch (dist) {
        case DIST_NORMAL:
            v = normal01();
            break;
        case DIST_UNIFORM:
            v = uniform01() * 2.0f - 1.0f;
            break;
        case DIST_ZEROS:
            v = (r & 7) == 0 ? normal01() * 1e-3f : ((r >> 3) & 1 ? -0.0f : 0.0f);
            if ((r >> 8) % 5 == 0) v = 0.0f; /* some blocks come out all zero */
            break;
        case DIST_TINY:
            v = qt_bits_f32((uint32_t)(r >> 40) & 0x00ffffffu) * ((r >> 33) & 1 ? -1.0f : 1.0f);
            if ((r & 3) == 0) v *= 1e7f; /* just above the subnormal range */
            break;
        case DIST_HUGE:
            v = (uniform01() * 2.0f - 1.0f) * 3.4e38f;
            break;
        case DIST_TIES:
            /* Integers and half-integers: with a block maximum of 8, 16 or 127 the scale is 1
             * and x*id lands exactly on .5, exercising round-half-away and truncation. */
            v = (float)((int)(r % 33) - 16) * 0.5f;
            if (i % 32 == 0) v = (r >> 20) & 1 ? 8.0f : ((r >> 21) & 1 ? 127.0f : -16.0f);
            break;
        case DIST_EQUAL_MAX:
            v = normal01();
            if (i % 32 == 5 || i % 32 == 20) v = (i % 32 == 5) == ((r >> 7) & 1) ? 7.5f : -7.5f;
            break;
        case DIST_CONSTANT:
            v = c;
            break;
        case DIST_OUTLIER:
            v = normal01() * ((r % 97) == 0 ? 1000.0f : 0.01f);
            break;
        default: /* DIST_NONFINITE */
            v = normal01();
            if (r % 41 == 0) v = NAN;
            if (r % 53 == 0) v = (r >> 9) & 1 ? INFINITY : -INFINITY;
            if (r % 59 == 0) v = qt_bits_f32(0x7f800001u | (uint32_t)(r >> 44)); /* signalling */
            break;
        }
        x[i] = v;
    }
}

/* ---------------------------------------------------------------- helpers */

static int64_t first_byte_diff(const uint8_t *a, const uint8_t *b, size_t count) {
    for (size_t i = 0; i < count; i++) {
        if (a[i] != b[i]) return (int64_t)i;
    }
    return -1;
}

static int g_levels[QT_ISA_COUNT + 1];
static int g_nlevels;

/* Level -1 means "whatever the dispatch table is using"; name it that way in messages. */
static const char *level_name(int lvl) {
    return lvl < 0 ? "active" : qt_isa_name(lvl);
}

/* ---------------------------------------------------------------- codec checks */

static int64_t pick_row_len(const qt_type_traits *t) {
    if (t->block_elems == 1) {
        return 1 + (int64_t)(next_u64() % 300); /* any length: tails must be handled */
    }
    return (int64_t)t->block_elems * (1 + (int64_t)(next_u64() % 6));
}

static void check_quantize_type(const qt_type_traits *t) {
    for (int dist = 0; dist < DIST_COUNT; dist++) {
        for (int rep = 0; rep < 3; rep++) {
            const int64_t n = pick_row_len(t);
            const int64_t rows = 1 + (int64_t)(next_u64() % 5);
            const size_t rs = qt_row_size(t->type_id, n);
            float *x = xmalloc((size_t)(rows * n) * sizeof(float));
            float *qw = xmalloc((size_t)n * sizeof(float));
            uint8_t *ref = xmalloc(rs * (size_t)rows);
            uint8_t *got = xmalloc(rs * (size_t)rows);
            float *dref = xmalloc((size_t)(rows * n) * sizeof(float));
            float *dgot = xmalloc((size_t)(rows * n) * sizeof(float));
            fill(x, rows * n, dist);
            for (int64_t i = 0; i < n; i++) {
                qw[i] = uniform01() * 4.0f + ((i % 7) == 0 ? 0.0f : 0.01f);
            }
            for (int with_qw = 0; with_qw <= (t->uses_imatrix ? 1 : 0); with_qw++) {
                const float *w = with_qw ? qw : NULL;
                qt_status st = qt_quantize(t->type_id, x, ref, rows, n, w, 1, QT_ISA_SCALAR);
                CHECK(st == QT_OK, "%s scalar quantize status %d", t->name, st);
                st = qt_dequantize(t->type_id, ref, dref, rows, n, 1, QT_ISA_SCALAR);
                CHECK(st == QT_OK, "%s scalar dequantize status %d", t->name, st);
                for (int li = 0; li < g_nlevels; li++) {
                    const int lvl = g_levels[li];
                    const int threads = 1 + (int)(next_u64() % 2);
                    memset(got, 0xA5, rs * (size_t)rows);
                    st = qt_quantize(t->type_id, x, got, rows, n, w, threads, lvl);
                    CHECK(st == QT_OK, "%s %s quantize status %d", t->name, level_name(lvl), st);
                    const int64_t bd = first_byte_diff(ref, got, rs * (size_t)rows);
                    CHECK(bd < 0, "%s %s %s%s n=%lld: quantized byte %lld differs (%u vs %u)",
                          t->name, level_name(lvl), k_dist_names[dist], w ? " imatrix" : "",
                          (long long)n, (long long)bd, bd < 0 ? 0u : ref[bd],
                          bd < 0 ? 0u : got[bd]);
                    st = qt_dequantize(t->type_id, ref, dgot, rows, n, threads, lvl);
                    CHECK(st == QT_OK, "%s %s dequantize status %d", t->name, level_name(lvl),
                          st);
                    /* Our own encoder never writes NaN scales, so every bit must agree. */
                    const int64_t fd = first_float_diff(dref, dgot, rows * n, dist == DIST_NONFINITE);
                    CHECK(fd < 0, "%s %s %s n=%lld: dequantized value %lld differs (%08x vs %08x)",
                          t->name, level_name(lvl), k_dist_names[dist], (long long)n,
                          (long long)fd, fd < 0 ? 0u : qt_f32_bits(dref[fd]),
                          fd < 0 ? 0u : qt_f32_bits(dgot[fd]));
                }
            }
            free(x);
            free(qw);
            free(ref);
            free(got);
            free(dref);
            free(dgot);
        }
    }
}

/* Random bytes must decode without faulting, identically on every level (NaN payloads from
 * arithmetic on two NaNs may legitimately differ, so NaN matches NaN). */
static void check_dequantize_garbage(const qt_type_traits *t) {
    for (int rep = 0; rep < 8; rep++) {
        const int64_t n = pick_row_len(t);
        const int64_t rows = 1 + (int64_t)(next_u64() % 4);
        const size_t bytes = qt_row_size(t->type_id, n) * (size_t)rows;
        uint8_t *src = xmalloc(bytes);
        float *ref = xmalloc((size_t)(rows * n) * sizeof(float));
        float *got = xmalloc((size_t)(rows * n) * sizeof(float));
        for (size_t i = 0; i < bytes; i++) {
            src[i] = (uint8_t)(next_u64() >> 56);
        }
        if (rep == 0) memset(src, 0xFF, bytes); /* all-ones: NaN scales everywhere */
        if (rep == 1) memset(src, 0x00, bytes);
        qt_status st = qt_dequantize(t->type_id, src, ref, rows, n, 1, QT_ISA_SCALAR);
        CHECK(st == QT_OK, "%s garbage dequantize status %d", t->name, st);
        for (int li = 0; li < g_nlevels; li++) {
            const int lvl = g_levels[li];
            st = qt_dequantize(t->type_id, src, got, rows, n, 2, lvl);
            CHECK(st == QT_OK, "%s %s garbage dequantize status %d", t->name, level_name(lvl),
                  st);
            const int64_t fd = first_float_diff(ref, got, rows * n, 1);
            CHECK(fd < 0, "%s %s garbage n=%lld: value %lld differs (%08x vs %08x)", t->name,
                  level_name(lvl), (long long)n, (long long)fd, fd < 0 ? 0u : qt_f32_bits(ref[fd]),
                  fd < 0 ? 0u : qt_f32_bits(got[fd]));
        }
        free(src);
        free(ref);
        free(got);
    }
}

/* Outputs above the last-level-cache size take the streaming path (decode into a small buffer,
 * non-temporal copy out). The destination is offset by one float so row starts are not aligned,
 * and the row length is not a whole number of streaming steps, so the plain head and tail
 * stores run too. Random source bytes; NaN matches NaN as in the garbage check. */
static void check_dequantize_streaming(const qt_type_traits *t) {
    const int64_t n = t->block_elems == 1 ? 1031 : 1280;
    const int64_t rows = (int64_t)((((size_t)33) << 20) / (sizeof(float) * (size_t)n)) + 1;
    const size_t bytes = qt_row_size(t->type_id, n) * (size_t)rows;
    const size_t count = (size_t)(rows * n);
    uint8_t *src = xmalloc(bytes);
    float *ref = xmalloc(count * sizeof(float));
    float *got_buf = xmalloc((count + 1) * sizeof(float));
    float *got = got_buf + 1;
    for (size_t i = 0; i < bytes; i++) {
        src[i] = (uint8_t)(next_u64() >> 56);
    }
    qt_status st = qt_dequantize(t->type_id, src, ref, rows, n, 1, QT_ISA_SCALAR);
    CHECK(st == QT_OK, "%s streaming scalar dequantize status %d", t->name, st);
    for (int li = 0; li < g_nlevels; li++) {
        const int lvl = g_levels[li];
        memset(got_buf, 0xA5, (count + 1) * sizeof(float));
        st = qt_dequantize(t->type_id, src, got, rows, n, 1 + li % 2, lvl);
        CHECK(st == QT_OK, "%s %s streaming dequantize status %d", t->name, level_name(lvl), st);
        const int64_t fd = first_float_diff(ref, got, (int64_t)count, 1);
        CHECK(fd < 0, "%s %s streaming %lldx%lld: value %lld differs (%08x vs %08x)", t->name,
              level_name(lvl), (long long)rows, (long long)n, (long long)fd,
              fd < 0 ? 0u : qt_f32_bits(ref[fd]), fd < 0 ? 0u : qt_f32_bits(got[fd]));
        CHECK(qt_f32_bits(got_buf[0]) == 0xA5A5A5A5u, "%s %s streaming wrote before dst", t->name,
              level_name(lvl));
    }
    free(src);
    free(ref);
    free(got_buf);
}

/* ---------------------------------------------------------------- argument errors */

static void check_argument_errors(void) {
    float x[64] = {0};
    uint8_t q[256];
    float y[64];
    qt_type_traits tr;

    CHECK(qt_type_get_traits(QT_ISA_COUNT + 1000, &tr) == QT_ERR_TYPE, "unknown type traits");
    CHECK(qt_type_get_traits(-1, &tr) == QT_ERR_TYPE, "negative type traits");
    CHECK(qt_type_get_traits(2, NULL) == QT_ERR_ARGUMENT, "traits NULL out");
    CHECK(qt_type_get_traits(2, &tr) == QT_OK && tr.block_elems == 32 && tr.block_bytes == 18,
          "Q4_0 traits");
    CHECK(qt_row_size(2, 33) == 0, "row size of a partial block");
    CHECK(qt_row_size(2, 64) == 36, "row size of two Q4_0 blocks");
    CHECK(qt_row_size(2, -32) == 0, "row size of a negative count");
    CHECK(qt_row_size(4, 32) == 0, "row size of an unused id");

    CHECK(qt_quantize(4, x, q, 1, 32, NULL, 1, -1) == QT_ERR_TYPE, "quantize unused id 4");
    CHECK(qt_quantize(999, x, q, 1, 32, NULL, 1, -1) == QT_ERR_TYPE, "quantize id 999");
    CHECK(qt_quantize(2, x, q, -1, 32, NULL, 1, -1) == QT_ERR_ARGUMENT, "negative rows");
    CHECK(qt_quantize(2, x, q, 1, -32, NULL, 1, -1) == QT_ERR_ARGUMENT, "negative row length");
    CHECK(qt_quantize(2, x, q, 1, 48, NULL, 1, -1) == QT_ERR_SHAPE, "partial block");
    CHECK(qt_quantize(2, NULL, q, 1, 32, NULL, 1, -1) == QT_ERR_ARGUMENT, "NULL src");
    CHECK(qt_quantize(2, x, NULL, 1, 32, NULL, 1, -1) == QT_ERR_ARGUMENT, "NULL dst");
    CHECK(qt_quantize(2, x, q, 0, 32, NULL, 1, -1) == QT_OK, "zero rows is a no-op");
    CHECK(qt_quantize(2, x, q, 1, 32, NULL, 1, 99) == QT_ERR_ISA, "level 99");
    CHECK(qt_quantize(2, x, q, 1, 32, NULL, 1, QT_ISA_COUNT) == QT_ERR_ISA, "level count");
    CHECK(qt_dequantize(2, q, y, 1, 48, 1, -1) == QT_ERR_SHAPE, "dequantize partial block");
    CHECK(qt_dequantize(2, NULL, y, 1, 32, 1, -1) == QT_ERR_ARGUMENT, "dequantize NULL src");
    CHECK(qt_dequantize(2, q, NULL, 1, 32, 1, -1) == QT_ERR_ARGUMENT, "dequantize NULL dst");
    CHECK(qt_dequantize(-5, q, y, 1, 32, 1, -1) == QT_ERR_TYPE, "dequantize id -5");
    CHECK(qt_isa_supported(-1) == QT_ERR_ISA, "isa -1");
    CHECK(qt_isa_supported(QT_ISA_COUNT) == QT_ERR_ISA, "isa past the end");
    CHECK(qt_isa_supported(QT_ISA_SCALAR) == QT_OK, "scalar always runs");
#if (defined(__x86_64__) || defined(__i386__)) && !defined(QT_EMULATE_NEON)
    CHECK(qt_isa_supported(QT_ISA_NEON) == QT_ERR_ISA, "no NEON on x86");
    CHECK(qt_quantize(2, x, q, 1, 32, NULL, 1, QT_ISA_NEON) == QT_ERR_ISA, "NEON level on x86");
#endif
#ifdef QT_EMULATE_NEON
    CHECK(qt_isa_supported(QT_ISA_NEON) == QT_OK, "emulated NEON level registered");
    CHECK(qt_active_isa() != QT_ISA_NEON || getenv("QTSTUDIO_ISA") != NULL,
          "emulated NEON is never the default level");
#endif
    CHECK(strcmp(qt_isa_name(99), "unknown") == 0, "name of level 99");

    /* A quantize-only or decode-only gap must report QT_ERR_TYPE, never crash. */
    for (int32_t id = 0; id < 64; id++) {
        if (qt_type_get_traits(id, &tr) != QT_OK) continue;
        const int64_t n = tr.block_elems;
        uint8_t *buf = xmalloc((size_t)tr.block_bytes);
        float *v = xmalloc((size_t)n * sizeof(float));
        memset(buf, 0, (size_t)tr.block_bytes);
        memset(v, 0, (size_t)n * sizeof(float));
        const qt_status qs = qt_quantize(id, v, buf, 1, n, NULL, 1, QT_ISA_SCALAR);
        const qt_status ds = qt_dequantize(id, buf, v, 1, n, 1, QT_ISA_SCALAR);
        CHECK(qs == (tr.can_quantize ? QT_OK : QT_ERR_TYPE), "%s quantize capability %d",
              tr.name, qs);
        CHECK(ds == (tr.can_dequantize ? QT_OK : QT_ERR_TYPE), "%s dequantize capability %d",
              tr.name, ds);
        free(buf);
        free(v);
    }

    int64_t bad = 7;
    CHECK(qt_find_nonfinite(x, 1, 64, NULL) == QT_ERR_ARGUMENT, "nonfinite NULL out");
    CHECK(qt_find_nonfinite(NULL, 1, 64, &bad) == QT_ERR_ARGUMENT, "nonfinite NULL src");
    CHECK(qt_find_nonfinite(x, 2, 32, &bad) == QT_OK && bad == -1, "all finite");
    x[40] = -INFINITY;
    CHECK(qt_find_nonfinite(x, 2, 32, &bad) == QT_OK && bad == 1, "Inf in row 1");
    x[3] = NAN;
    CHECK(qt_find_nonfinite(x, 2, 32, &bad) == QT_OK && bad == 0, "NaN in row 0");
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv) {
    if (argc > 1) {
        g_rng = strtoull(argv[1], NULL, 0) | 1u;
    }
    const char *env = getenv("QTSTUDIO_ISA");
    const int isa_env = test_isa_env();
    if (isa_env != 0) {
        return isa_env < 0 ? 2 : 0;
    }
    if (env != NULL && env[0] != '\0') {
        CHECK(strcmp(qt_isa_name(qt_active_isa()), env) == 0,
              "QTSTUDIO_ISA=%s but the active level is %s", env, qt_isa_name(qt_active_isa()));
    }
    for (int32_t l = 0; l < QT_ISA_COUNT; l++) {
        if (qt_isa_supported(l) == QT_OK && l != QT_ISA_SCALAR) {
            g_levels[g_nlevels++] = l;
        }
    }
    g_levels[g_nlevels++] = -1; /* the active level, as QTSTUDIO_ISA left it */
    printf("library %s, active level %s, cpu features 0x%x\n", qt_version(),
           qt_isa_name(qt_active_isa()), qt_cpu_features());

    check_argument_errors();
    int ntypes = 0;
    for (int32_t id = 0; id < 64; id++) {
        qt_type_traits tr;
        if (qt_type_get_traits(id, &tr) != QT_OK) continue;
        if (tr.can_quantize) {
            check_quantize_type(&tr);
            ntypes++;
        }
        if (tr.can_dequantize) {
            check_dequantize_garbage(&tr);
            check_dequantize_streaming(&tr);
        }
    }
    printf("%d quantizable types checked on %d levels against scalar\n", ntypes, g_nlevels);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
