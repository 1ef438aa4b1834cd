/* AVX-512 matmul kernels: VNNI integer dots for the fast path, FMA for the exact path.
 * Registered only when the CPU has AVX-512 VNNI (vpdpbusd); other AVX-512 parts keep AVX2's. */
#include "../simd_x86_avx512_intrin.h"

#include "../blocks.h"
#include "../matmul.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

static inline int32_t load_i32(const void *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Per-lane correction for weights stored with an offset of 1 << shift: -offset times the sum
 * of the lane's 4 activations (lane l covers values j + 4l .. j + 4l + 3). */
static inline __m512i lane_bias(const qt_mm_act *act, int64_t j, int shift) {
    const __m256i ns = _mm256_loadu_si256((const __m256i *)(const void *)(act->nsum4 + j / 4));
    return _mm512_slli_epi32(_mm512_cvtepi16_epi32(ns), (unsigned)shift);
}

/* Per-lane activation scale: lane l holds da of group (j + 4l) / 16. */
static inline __m512 lane_da(const qt_mm_act *act, int64_t j) {
    const __m512i rep4 = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    return _mm512_permutexvar_ps(rep4, _mm512_castps128_ps512(_mm_loadu_ps(act->da + j / 16)));
}

/* ---------------------------------------------------------------- activations */

static void quantize_act(const float *x, int64_t k, int group, int8_t *a, float *da, float *sa,
                         int32_t *gbias, int16_t *nsum4, int16_t *sum16) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    const int per = group / QT_MM_GROUP;
    for (int64_t b = 0; b < k / group; b++) {
        __m512 mx = _mm512_andnot_ps(sign, _mm512_loadu_ps(x + b * group));
        for (int h = 1; h < per; h++) {
            mx = _mm512_max_ps(mx, _mm512_andnot_ps(sign, _mm512_loadu_ps(x + b * group + 16 * h)));
        }
        const float amax = _mm512_reduce_max_ps(mx);
        const float d = amax / 127.0f;
        const float id = d > 0.0f ? 127.0f / amax : 0.0f;
        for (int h = 0; h < per; h++) {
            const int64_t g = b * per + h;
            const __m512 v = _mm512_loadu_ps(x + g * QT_MM_GROUP);
            /* cvtps rounds to nearest even, as nearbyintf does in the scalar kernel. */
            const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(v, _mm512_set1_ps(id)));
            _mm_storeu_si128((__m128i *)(void *)(a + g * QT_MM_GROUP), _mm512_cvtepi32_epi8(q));
            const int32_t sum = _mm512_reduce_add_epi32(q);
            qt_mm_store_group(g, d, sum, da, sa, gbias, sum16);
            if (nsum4) {
                /* sums of 4 consecutive values: 4-lane dot with ones, then narrowed */
                const __m128i q8 = _mm512_cvtepi32_epi8(q);
                const __m128i s4 = _mm_dpbusd_epi32(_mm_setzero_si128(), _mm_set1_epi8(1), q8);
                _mm_storel_epi64((__m128i *)(void *)(nsum4 + 4 * g),
                                 _mm_packs_epi32(_mm_sub_epi32(_mm_setzero_si128(), s4),
                                                 _mm_setzero_si128()));
            }
        }
    }
}

/* ---------------------------------------------------------------- fast path: GEMV dot */

static float dot_vnni(const uint8_t *u, const float *s, const float *m, int has_min,
                      const qt_mm_act *act, int64_t k0, int64_t kc) {
    const int8_t *a = act->a + k0;
    /* Lane l of a 64-value step covers values 4l..4l+3, i.e. group l/4. */
    const __m512i rep4 = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 128 <= kc; j += 128) {
        const __m512i p0 = _mm512_dpbusd_epi32(lane_bias(act, k0 + j, 7),
                                               _mm512_loadu_si512(u + j), _mm512_loadu_si512(a + j));
        const __m512i p1 = _mm512_dpbusd_epi32(lane_bias(act, k0 + j + 64, 7),
                                               _mm512_loadu_si512(u + j + 64),
                                               _mm512_loadu_si512(a + j + 64));
        const __m512 s0 = _mm512_permutexvar_ps(rep4, _mm512_castps128_ps512(_mm_loadu_ps(s + j / 16)));
        const __m512 s1 =
            _mm512_permutexvar_ps(rep4, _mm512_castps128_ps512(_mm_loadu_ps(s + j / 16 + 4)));
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), _mm512_mul_ps(s0, lane_da(act, k0 + j)),
                               acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1),
                               _mm512_mul_ps(s1, lane_da(act, k0 + j + 64)), acc1);
    }
    float total = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    for (; j < kc; j += QT_MM_GROUP) {
        int32_t d = 0;
        for (int t = 0; t < QT_MM_GROUP; t++) d += ((int32_t)u[j + t] - 128) * a[j + t];
        total += (float)d * (s[j / 16] * act->da[(k0 + j) / 16]);
    }
    if (has_min) {
        const float *sa = act->sa + k0 / 16;
        const int64_t ng = kc / QT_MM_GROUP;
        __m512 mac = _mm512_setzero_ps();
        int64_t g = 0;
        for (; g + 16 <= ng; g += 16) {
            mac = _mm512_fmadd_ps(_mm512_loadu_ps(m + g), _mm512_loadu_ps(sa + g), mac);
        }
        total += _mm512_reduce_add_ps(mac);
        for (; g < ng; g++) total += m[g] * sa[g];
    }
    return total;
}

/* ---------------------------------------------------------------- fast path: GEMM tile */

/* rb activation rows against one 16-row tile; lane r of every vector is weight row r. */
ALWAYS_INLINE void tile_rows(const uint8_t *tu, const float *ts, const float *tm, int has_min,
                             int64_t ng, const qt_mm_act *acts, const int rb, int64_t k0,
                             float *out);

/* Scale group 32: groups 2h and 2h+1 share every scale, so their integer sums add first and
 * one conversion, multiply and add serve 32 values. */
ALWAYS_INLINE void tile_rows_pair(const uint8_t *tu, const float *ts, const float *tm,
                                  int has_min, int64_t ng, const qt_mm_act *acts, const int rb,
                                  int64_t k0, float *out) {
    const int8_t *ap[8];
    const int32_t *gb[8];
    const float *dp[8], *sp[8];
    __m512 f[8];
    for (int r = 0; r < rb; r++) {
        ap[r] = acts[r].a + k0;
        gb[r] = acts[r].gbias + k0 / 16;
        dp[r] = acts[r].da + k0 / 16;
        sp[r] = acts[r].sa + k0 / 16;
        f[r] = _mm512_setzero_ps();
        /* The partial sums live in a buffer far larger than L2 and are touched once per call,
         * too sparsely for the hardware prefetcher: fetch them while the dots run. */
        _mm_prefetch((const char *)(out + r * QT_MM_TILE_ROWS), _MM_HINT_T0);
    }
    for (int64_t g = 0; g < ng; g += 2) {
        const uint8_t *wg = tu + g * 256;
        const __m512 sc = _mm512_load_ps(ts + g * 16);
        __m512i w[8];
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) w[c] = _mm512_load_si512(wg + 64 * c);
#pragma GCC unroll 8
        for (int r = 0; r < rb; r++) {
            const int8_t *a = ap[r] + g * 16;
            /* two dependency chains */
            /* gbias[g] and sa[g] hold the sums of the whole pair (qt_mm_tile_fn) */
            __m512i acc = _mm512_set1_epi32(gb[r][g]);
            __m512i acc2 = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int c = 0; c < 8; c += 2) {
                acc = _mm512_dpbusd_epi32(acc, w[c], _mm512_set1_epi32(load_i32(a + 4 * c)));
                acc2 = _mm512_dpbusd_epi32(acc2, w[c + 1], _mm512_set1_epi32(load_i32(a + 4 * c + 4)));
            }
            acc = _mm512_add_epi32(acc, acc2);
            f[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc),
                                   _mm512_mul_ps(sc, _mm512_set1_ps(dp[r][g])), f[r]);
        }
        if (has_min) {
            const __m512 mn = _mm512_load_ps(tm + g * 16);
#pragma GCC unroll 8
            for (int r = 0; r < rb; r++) {
                f[r] = _mm512_fmadd_ps(mn, _mm512_set1_ps(sp[r][g]), f[r]);
            }
        }
    }
    for (int r = 0; r < rb; r++) {
        float *o = out + r * QT_MM_TILE_ROWS;
        _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o), f[r]));
    }
}

ALWAYS_INLINE void tile_rows(const uint8_t *tu, const float *ts, const float *tm, int has_min,
                             int64_t ng, const qt_mm_act *acts, const int rb, int64_t k0,
                             float *out) {
    const int8_t *ap[8];
    const int32_t *gb[8];
    const float *dp[8], *sp[8];
    __m512 f[8];
    for (int r = 0; r < rb; r++) {
        ap[r] = acts[r].a + k0;
        gb[r] = acts[r].gbias + k0 / 16;
        dp[r] = acts[r].da + k0 / 16;
        sp[r] = acts[r].sa + k0 / 16;
        f[r] = _mm512_setzero_ps();
        /* The partial sums live in a buffer far larger than L2 and are touched once per call,
         * too sparsely for the hardware prefetcher: fetch them while the dots run. */
        _mm_prefetch((const char *)(out + r * QT_MM_TILE_ROWS), _MM_HINT_T0);
    }
    for (int64_t g = 0; g < ng; g++) {
        const uint8_t *wg = tu + g * 256;
        const __m512i w0 = _mm512_load_si512(wg), w1 = _mm512_load_si512(wg + 64);
        const __m512i w2 = _mm512_load_si512(wg + 128), w3 = _mm512_load_si512(wg + 192);
        const __m512 sc = _mm512_load_ps(ts + g * 16);
#pragma GCC unroll 8
        for (int r = 0; r < rb; r++) {
            const int8_t *a = ap[r] + g * 16;
            __m512i acc = _mm512_set1_epi32(gb[r][g]);
            __m512i acc2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w1,
                                               _mm512_set1_epi32(load_i32(a + 4)));
            acc = _mm512_dpbusd_epi32(acc, w0, _mm512_set1_epi32(load_i32(a)));
            acc2 = _mm512_dpbusd_epi32(acc2, w3, _mm512_set1_epi32(load_i32(a + 12)));
            acc = _mm512_dpbusd_epi32(acc, w2, _mm512_set1_epi32(load_i32(a + 8)));
            acc = _mm512_add_epi32(acc, acc2);
            f[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc),
                                   _mm512_mul_ps(sc, _mm512_set1_ps(dp[r][g])), f[r]);
        }
        if (has_min) {
            const __m512 mn = _mm512_load_ps(tm + g * 16);
#pragma GCC unroll 8
            for (int r = 0; r < rb; r++) {
                f[r] = _mm512_fmadd_ps(mn, _mm512_set1_ps(sp[r][g]), f[r]);
            }
        }
    }
    for (int r = 0; r < rb; r++) {
        float *o = out + r * QT_MM_TILE_ROWS;
        _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o), f[r]));
    }
}

static void tile_vnni(const uint8_t *tu, const float *ts, const float *tm, int has_min,
                      int pair, int64_t kc, const qt_mm_act *acts, int64_t nrows, int64_t k0,
                      float *out) {
    const int64_t ng = kc / QT_MM_GROUP;
    int64_t i = 0;
    if (pair) {
        for (; i + 8 <= nrows; i += 8) {
            tile_rows_pair(tu, ts, tm, has_min, ng, acts + i, 8, k0, out + i * QT_MM_TILE_ROWS);
        }
        if (i + 4 <= nrows) {
            tile_rows_pair(tu, ts, tm, has_min, ng, acts + i, 4, k0, out + i * QT_MM_TILE_ROWS);
            i += 4;
        }
        for (; i < nrows; i++) {
            tile_rows_pair(tu, ts, tm, has_min, ng, acts + i, 1, k0, out + i * QT_MM_TILE_ROWS);
        }
        return;
    }
    for (; i + 8 <= nrows; i += 8) {
        tile_rows(tu, ts, tm, has_min, ng, acts + i, 8, k0, out + i * QT_MM_TILE_ROWS);
    }
    if (i + 4 <= nrows) {
        tile_rows(tu, ts, tm, has_min, ng, acts + i, 4, k0, out + i * QT_MM_TILE_ROWS);
        i += 4;
    }
    for (; i < nrows; i++) {
        tile_rows(tu, ts, tm, has_min, ng, acts + i, 1, k0, out + i * QT_MM_TILE_ROWS);
    }
}

/* ---------------------------------------------------------------- exact path (float) */

static float dot_f32(const float *w, const float *x, int64_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 64 <= n; j += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + j), _mm512_loadu_ps(x + j), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + j + 16), _mm512_loadu_ps(x + j + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + j + 32), _mm512_loadu_ps(x + j + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + j + 48), _mm512_loadu_ps(x + j + 48), a3);
    }
    for (; j < n; j += 16) {
        const __mmask16 mk = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, w + j), _mm512_maskz_loadu_ps(mk, x + j),
                             a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

ALWAYS_INLINE void tile_f32_rows(const float *tw, int64_t kc, const float *x, int64_t ldx,
                                 const int rb, float *out) {
    __m512 f[8];
    for (int r = 0; r < rb; r++) f[r] = _mm512_setzero_ps();
    for (int64_t j = 0; j < kc; j++) {
        const __m512 w = _mm512_load_ps(tw + j * QT_MM_TILE_ROWS);
        for (int r = 0; r < rb; r++) {
            f[r] = _mm512_fmadd_ps(w, _mm512_set1_ps(x[r * ldx + j]), f[r]);
        }
    }
    for (int r = 0; r < rb; r++) {
        float *o = out + r * QT_MM_TILE_ROWS;
        _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o), f[r]));
    }
}

static void tile_f32(const float *tw, int64_t kc, const float *x, int64_t ldx, int64_t nrows,
                     float *out) {
    int64_t i = 0;
    for (; i + 8 <= nrows; i += 8) {
        tile_f32_rows(tw, kc, x + i * ldx, ldx, 8, out + i * QT_MM_TILE_ROWS);
    }
    if (i + 4 <= nrows) {
        tile_f32_rows(tw, kc, x + i * ldx, ldx, 4, out + i * QT_MM_TILE_ROWS);
        i += 4;
    }
    for (; i < nrows; i++) {
        tile_f32_rows(tw, kc, x + i * ldx, ldx, 1, out + i * QT_MM_TILE_ROWS);
    }
}

/* Weights stream through once, in order. Asking for them PF_AHEAD bytes early keeps more
 * misses in flight than the hardware prefetcher does for one stream per core: measured on the
 * Q8_0 GEMV at 4096x14336, 22 -> 37 GB/s on one thread and 41 -> 54 GB/s on two (4 KiB ahead:
 * 30 GB/s; 12-16 KiB: no better on one thread, erratic on two). Prefetches never fault, so
 * running past the end of the weights is harmless. */
#define PF_AHEAD 8192

ALWAYS_INLINE void prefetch_ahead(const void *p, int bytes) {
    const char *c = (const char *)p + PF_AHEAD;
    for (int o = 0; o < bytes; o += 64) {
        _mm_prefetch(c + o, _MM_HINT_T0);
    }
    _mm_prefetch(c + bytes - 1, _MM_HINT_T0);
}

/* ---------------------------------------------------------------- fused GEMV dots
 * Decode ggml blocks straight into registers: lane l of a 64-value step covers values
 * 4l..4l+3, so per-lane activation scales (lane_da) and offset corrections (lane_bias) line up
 * with the integer sums without reordering the activations. */

static inline float h2f(uint16_t h) {
    return _cvtsh_ss(h);
}

/* [d0 x 8 lanes, d1 x 8 lanes] from two fp16 scales. */
static inline __m512 two_scales(uint16_t d0, uint16_t d1) {
    const __m256i h = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((short)d0)),
                                              _mm_set1_epi16((short)d1), 1);
    return _mm512_cvtph_ps(h);
}

/* Scalar tail for one 32-value block given as offset-free signed values. */
static inline float tail_block(const int8_t *w, float d, const qt_mm_act *act, int64_t j) {
    float total = 0.0f;
    for (int g = 0; g < 2; g++) {
        int32_t acc = 0;
        for (int t = 0; t < 16; t++) acc += (int32_t)w[16 * g + t] * act->a[j + 16 * g + t];
        total += (float)acc * (d * act->da[j / 16 + g]);
    }
    return total;
}

static float fdot_q4_0(const void *row, const qt_mm_act *act, int64_t k) {
    const block_q4_0 *x = row;
    const int64_t nb = k / 32;
    const __m512i mask = _mm512_set1_epi8(0x0F);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
#define Q4_0_PAIR(ACC, I)                                                                      \
    do {                                                                                       \
        const int64_t j = 32 * (I);                                                            \
        const __m256i q2 = _mm256_inserti128_si256(                                            \
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)x[I].qs)),   \
            _mm_loadu_si128((const __m128i *)(const void *)x[(I) + 1].qs), 1);                 \
        __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(q2), _mm256_srli_epi16(q2, 4), 1); \
        z = _mm512_shuffle_i64x2(_mm512_and_si512(z, mask), _mm512_and_si512(z, mask), 0xD8);  \
        const __m512i bias = lane_bias(act, j, 3);     \
        const __m512i p = _mm512_dpbusd_epi32(bias, z, _mm512_loadu_si512(act->a + j));        \
        const __m512 sc = _mm512_mul_ps(two_scales(x[I].d, x[(I) + 1].d),                      \
                                        lane_da(act, j));                    \
        ACC = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sc, ACC);                                 \
    } while (0)
    for (; i + 4 <= nb; i += 4) {
        prefetch_ahead(&x[i], 4 * (int)sizeof x[i]);
        Q4_0_PAIR(acc0, i);
        Q4_0_PAIR(acc1, i + 2);
    }
    for (; i + 2 <= nb; i += 2) {
        prefetch_ahead(&x[i], 2 * (int)sizeof x[i]);
        Q4_0_PAIR(acc0, i);
    }
#undef Q4_0_PAIR
    float total = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    if (i < nb) {
        int8_t w[32];
        for (int t = 0; t < 16; t++) {
            w[t] = (int8_t)((x[i].qs[t] & 0xF) - 8);
            w[t + 16] = (int8_t)((x[i].qs[t] >> 4) - 8);
        }
        total += tail_block(w, h2f(x[i].d), act, 32 * i);
    }
    return total;
}

static float fdot_q8_0(const void *row, const qt_mm_act *act, int64_t k) {
    const block_q8_0 *x = row;
    const int64_t nb = k / 32;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
#define Q8_0_PAIR(ACC, I)                                                                      \
    do {                                                                                       \
        const int64_t j = 32 * (I);                                                            \
        const __m512i z = _mm512_xor_si512(                                                    \
            _mm512_inserti64x4(                                                                \
                _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)x[I].qs)), \
                _mm256_loadu_si256((const __m256i *)(const void *)x[(I) + 1].qs), 1),          \
            flip);                                                                             \
        const __m512i p = _mm512_dpbusd_epi32(lane_bias(act, j, 7), z,       \
                                              _mm512_loadu_si512(act->a + j));                 \
        const __m512 sc = _mm512_mul_ps(two_scales(x[I].d, x[(I) + 1].d),                      \
                                        lane_da(act, j));                    \
        ACC = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sc, ACC);                                 \
    } while (0)
    for (; i + 4 <= nb; i += 4) {
        prefetch_ahead(&x[i], 4 * (int)sizeof x[i]);
        Q8_0_PAIR(acc0, i);
        Q8_0_PAIR(acc1, i + 2);
    }
    for (; i + 2 <= nb; i += 2) {
        prefetch_ahead(&x[i], 2 * (int)sizeof x[i]);
        Q8_0_PAIR(acc0, i);
    }
#undef Q8_0_PAIR
    float total = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    if (i < nb) {
        total += tail_block(x[i].qs, h2f(x[i].d), act, 32 * i);
    }
    return total;
}

static float fdot_q4_K(const void *row, const qt_mm_act *act, int64_t k) {
    const block_q4_K *x = row;
    const __m256i mask = _mm256_set1_epi8(0x0F);
    /* chunk c of 64 values: lanes 0-7 use scale 2c, lanes 8-15 scale 2c+1 */
    const __m512i pick0 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i two = _mm512_set1_epi32(2);
    /* minimum j (lanes 8-15 of sm) for groups 2j and 2j+1 */
    const __m512i mins2 = _mm512_set_epi32(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8);
    const __m512i evens = _mm512_set_epi32(14, 12, 10, 8, 6, 4, 2, 0, 14, 12, 10, 8, 6, 4, 2, 0);
    __m512 acc = _mm512_setzero_ps(), macc = _mm512_setzero_ps();
    for (int64_t i = 0; i < k / QK_K; i++) {
        prefetch_ahead(&x[i], (int)sizeof x[i]);
        const int64_t j0 = QK_K * i;
        uint32_t w[3];
        memcpy(w, x[i].scales, sizeof w);
        const uint32_t sc_lo = w[0] & 0x3f3f3f3fu, mn_lo = w[1] & 0x3f3f3f3fu;
        const uint32_t sc_hi = (w[2] & 0x0f0f0f0fu) | ((w[0] >> 2) & 0x30303030u);
        const uint32_t mn_hi = ((w[2] >> 4) & 0x0f0f0f0fu) | ((w[1] >> 2) & 0x30303030u);
        const __m128i b = _mm_setr_epi32((int)sc_lo, (int)sc_hi, (int)mn_lo, (int)mn_hi);
        const __m512 dd = _mm512_insertf32x8(_mm512_set1_ps(h2f(x[i].d)),
                                             _mm256_set1_ps(h2f(x[i].dmin)), 1);
        /* lanes 0-7: d * scale_j; lanes 8-15: dmin * min_j */
        const __m512 sm = _mm512_mul_ps(dd, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b)));
        macc = _mm512_fmadd_ps(_mm512_permutexvar_ps(mins2, sm),
                               _mm512_loadu_ps(act->sa + j0 / 16), macc);
        /* lanes 0-7: scale j times the activation scale of its 32 values (group 2j) */
        const __m512 sd = _mm512_mul_ps(
            sm, _mm512_permutexvar_ps(evens, _mm512_loadu_ps(act->da + j0 / 16)));
        __m512i pick = pick0;
        for (int c = 0; c < 4; c++) {
            const int64_t j = j0 + 64 * c;
            const __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(x[i].qs + 32 * c));
            const __m512i z = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_and_si256(q, mask)),
                _mm256_and_si256(_mm256_srli_epi16(q, 4), mask), 1);
            const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), z,
                                                  _mm512_loadu_si512(act->a + j));
            const __m512 sc = _mm512_permutexvar_ps(pick, sd);
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sc, acc);
            pick = _mm512_add_epi32(pick, two);
        }
    }
    return _mm512_reduce_add_ps(_mm512_sub_ps(acc, macc));
}

static float fdot_q6_K(const void *row, const qt_mm_act *act, int64_t k) {
    const block_q6_K *x = row;
    const __m512i mask = _mm512_set1_epi8(0x0F), top = _mm512_set1_epi8(0x30);
    /* fifth/sixth bits: values 0-31 take qh << 4, 32-63 qh << 2, 64-95 qh, 96-127 qh >> 2 */
    const __m512i shl_a = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i shr_b = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    /* 64 values = 4 groups of 16: lanes 4g..4g+3 take group g0 + g */
    const __m512i pick0 = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    const __m512i four = _mm512_set1_epi32(4);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (int64_t i = 0; i < k / QK_K; i++) {
        prefetch_ahead(&x[i], (int)sizeof x[i]);
        const __m512 s = _mm512_mul_ps(
            _mm512_set1_ps(h2f(x[i].d)),
            _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                _mm_loadu_si128((const __m128i *)(const void *)x[i].scales))));
        /* group scales times activation scales, once per super-block */
        const __m512 sd = _mm512_mul_ps(s, _mm512_loadu_ps(act->da + QK_K * i / 16));
        __m512i pick = pick0;
        for (int h = 0; h < 2; h++) {
            const int64_t j = QK_K * i + 128 * h;
            const __m512i ql = _mm512_loadu_si512(x[i].ql + 64 * h);
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(x[i].qh + 32 * h));
            const __m512i qh2 = _mm512_inserti64x4(_mm512_castsi256_si512(qh), qh, 1);
            const __m512i za = _mm512_or_si512(_mm512_and_si512(ql, mask),
                                               _mm512_and_si512(_mm512_sllv_epi16(qh2, shl_a), top));
            const __m512i zb = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), mask),
                                               _mm512_and_si512(_mm512_srlv_epi16(qh2, shr_b), top));
            /* stored values are q + 32 */
            const __m512i pa = _mm512_dpbusd_epi32(
                lane_bias(act, j, 5), za,
                _mm512_loadu_si512(act->a + j));
            const __m512i pb = _mm512_dpbusd_epi32(
                lane_bias(act, j + 64, 5), zb,
                _mm512_loadu_si512(act->a + j + 64));
            const __m512 sa = _mm512_permutexvar_ps(pick, sd);
            pick = _mm512_add_epi32(pick, four);
            const __m512 sb = _mm512_permutexvar_ps(pick, sd);
            pick = _mm512_add_epi32(pick, four);
            acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pa), sa, acc0);
            acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pb), sb, acc1);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

static float fdot_q5_K(const void *row, const qt_mm_act *act, int64_t k) {
    const block_q5_K *x = row;
    const __m256i mask = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10);
    const __m512i pick0 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i two = _mm512_set1_epi32(2);
    const __m512i mins2 = _mm512_set_epi32(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8);
    const __m512i evens = _mm512_set_epi32(14, 12, 10, 8, 6, 4, 2, 0, 14, 12, 10, 8, 6, 4, 2, 0);
    __m512 acc = _mm512_setzero_ps(), macc = _mm512_setzero_ps();
    for (int64_t i = 0; i < k / QK_K; i++) {
        prefetch_ahead(&x[i], (int)sizeof x[i]);
        const int64_t j0 = QK_K * i;
        uint32_t w[3];
        memcpy(w, x[i].scales, sizeof w);
        const uint32_t sc_lo = w[0] & 0x3f3f3f3fu, mn_lo = w[1] & 0x3f3f3f3fu;
        const uint32_t sc_hi = (w[2] & 0x0f0f0f0fu) | ((w[0] >> 2) & 0x30303030u);
        const uint32_t mn_hi = ((w[2] >> 4) & 0x0f0f0f0fu) | ((w[1] >> 2) & 0x30303030u);
        const __m128i b = _mm_setr_epi32((int)sc_lo, (int)sc_hi, (int)mn_lo, (int)mn_hi);
        const __m512 dd = _mm512_insertf32x8(_mm512_set1_ps(h2f(x[i].d)),
                                             _mm256_set1_ps(h2f(x[i].dmin)), 1);
        const __m512 sm = _mm512_mul_ps(dd, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b)));
        macc = _mm512_fmadd_ps(_mm512_permutexvar_ps(mins2, sm),
                               _mm512_loadu_ps(act->sa + j0 / 16), macc);
        /* lanes 0-7: scale j times the activation scale of its 32 values (group 2j) */
        const __m512 sd = _mm512_mul_ps(
            sm, _mm512_permutexvar_ps(evens, _mm512_loadu_ps(act->da + j0 / 16)));
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)x[i].qh);
        __m512i pick = pick0;
        for (int c = 0; c < 4; c++) {
            const int64_t j = j0 + 64 * c;
            const __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(x[i].qs + 32 * c));
            const __m256i h0 = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * c), 4), bit4);
            const __m256i h1 = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * c + 1), 4), bit4);
            const __m512i z = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_or_si256(_mm256_and_si256(q, mask), h0)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), mask), h1), 1);
            const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), z,
                                                  _mm512_loadu_si512(act->a + j));
            const __m512 sc = _mm512_permutexvar_ps(pick, sd);
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sc, acc);
            pick = _mm512_add_epi32(pick, two);
        }
    }
    return _mm512_reduce_add_ps(_mm512_sub_ps(acc, macc));
}

/* 32 nibble-packed values of blocks I and I+1 in natural order (block I in the low half). */
static inline __m512i nibble_pair(const uint8_t *q0, const uint8_t *q1) {
    const __m512i mask = _mm512_set1_epi8(0x0F);
    const __m256i q2 = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)q0)),
        _mm_loadu_si128((const __m128i *)(const void *)q1), 1);
    const __m512i z = _mm512_and_si512(
        _mm512_inserti64x4(_mm512_castsi256_si512(q2), _mm256_srli_epi16(q2, 4), 1), mask);
    return _mm512_shuffle_i64x2(z, z, 0xD8);
}

/* Fifth bits of two 32-value blocks (qh little-endian u32 each) as 0x10 bytes. */
static inline __m512i q5_bits_pair(const uint8_t *qh0, const uint8_t *qh1) {
    uint32_t a, b;
    memcpy(&a, qh0, sizeof a);
    memcpy(&b, qh1, sizeof b);
    const __mmask64 bits = (__mmask64)a | ((__mmask64)b << 32);
    return _mm512_maskz_mov_epi8(bits, _mm512_set1_epi8(0x10));
}

static float fdot_q5_0(const void *row, const qt_mm_act *act, int64_t k) {
    const block_q5_0 *x = row;
    const int64_t nb = k / 32;
    __m512 acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        prefetch_ahead(&x[i], 2 * (int)sizeof x[i]);
        const int64_t j = 32 * i;
        const __m512i z = _mm512_or_si512(nibble_pair(x[i].qs, x[i + 1].qs),
                                          q5_bits_pair(x[i].qh, x[i + 1].qh));
        /* stored values are q + 16 */
        const __m512i bias = lane_bias(act, j, 4);
        const __m512i p = _mm512_dpbusd_epi32(bias, z, _mm512_loadu_si512(act->a + j));
        const __m512 sc = _mm512_mul_ps(two_scales(x[i].d, x[i + 1].d),
                                        lane_da(act, j));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sc, acc);
    }
    float total = _mm512_reduce_add_ps(acc);
    if (i < nb) {
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        int8_t w[32];
        for (int t = 0; t < 16; t++) {
            w[t] = (int8_t)(((x[i].qs[t] & 0xF) | (((qh >> t) & 1u) << 4)) - 16);
            w[t + 16] = (int8_t)(((x[i].qs[t] >> 4) | (((qh >> (t + 16)) & 1u) << 4)) - 16);
        }
        total += tail_block(w, h2f(x[i].d), act, 32 * i);
    }
    return total;
}

static float fdot_q4_1(const void *row, const qt_mm_act *act, int64_t k) {
    const block_q4_1 *x = row;
    const int64_t nb = k / 32;
    __m512 acc = _mm512_setzero_ps();
    float mins = 0.0f;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        prefetch_ahead(&x[i], 2 * (int)sizeof x[i]);
        const int64_t j = 32 * i;
        const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(),
                                              nibble_pair(x[i].qs, x[i + 1].qs),
                                              _mm512_loadu_si512(act->a + j));
        const __m512 sc = _mm512_mul_ps(two_scales(x[i].d, x[i + 1].d),
                                        lane_da(act, j));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sc, acc);
        const float *sa = act->sa + j / 16;
        mins += h2f(x[i].m) * (sa[0] + sa[1]) + h2f(x[i + 1].m) * (sa[2] + sa[3]);
    }
    float total = _mm512_reduce_add_ps(acc) + mins;
    if (i < nb) {
        int8_t w[32];
        for (int t = 0; t < 16; t++) {
            w[t] = (int8_t)(x[i].qs[t] & 0xF);
            w[t + 16] = (int8_t)(x[i].qs[t] >> 4);
        }
        const float *sa = act->sa + 32 * i / 16;
        total += tail_block(w, h2f(x[i].d), act, 32 * i) + h2f(x[i].m) * (sa[0] + sa[1]);
    }
    return total;
}

static float fdot_iq4_xs(const void *row, const qt_mm_act *act, int64_t k) {
    const block_iq4_xs *x = row;
    const __m512i grid = _mm512_broadcast_i32x4(_mm_setr_epi8(
        1, 24, 45, 63, 79, 93, 106, 118, (char)129, (char)141, (char)153, (char)166, (char)181,
        (char)197, (char)217, (char)241));
    const __m512i pick0 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i two = _mm512_set1_epi32(2);
    const __m512i evens = _mm512_set_epi32(14, 12, 10, 8, 6, 4, 2, 0, 14, 12, 10, 8, 6, 4, 2, 0);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < k / QK_K; i++) {
        prefetch_ahead(&x[i], (int)sizeof x[i]);
        const float d = h2f(x[i].d);
        /* sub-block scales ls - 32 (6 bits: low nibble from scales_l, top two from scales_h),
         * built in registers: a store/reload here stalls on store forwarding */
        uint32_t l4;
        memcpy(&l4, x[i].scales_l, sizeof l4);
        const __m256i lo = _mm256_and_si256(
            _mm256_srlv_epi32(_mm256_set1_epi32((int)l4), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
            _mm256_set1_epi32(0xF));
        const __m256i hi = _mm256_and_si256(
            _mm256_srlv_epi32(_mm256_set1_epi32(x[i].scales_h), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
            _mm256_set1_epi32(3));
        const __m256i ls = _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)),
                                            _mm256_set1_epi32(32));
        const __m512 sv = _mm512_castps256_ps512(
            _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(ls)));
        const __m512 sd = _mm512_mul_ps(
            sv, _mm512_permutexvar_ps(evens, _mm512_loadu_ps(act->da + QK_K * i / 16)));
        __m512i pick = pick0;
        for (int c = 0; c < 4; c++) {
            const int64_t j = QK_K * i + 64 * c;
            const __m512i z = _mm512_shuffle_epi8(grid, nibble_pair(x[i].qs + 32 * c,
                                                                    x[i].qs + 32 * c + 16));
            const __m512i p = _mm512_dpbusd_epi32(lane_bias(act, j, 7), z,
                                                  _mm512_loadu_si512(act->a + j));
            const __m512 sc = _mm512_permutexvar_ps(pick, sd);
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sc, acc);
            pick = _mm512_add_epi32(pick, two);
        }
    }
    return _mm512_reduce_add_ps(acc);
}

static inline float e8m0_half(uint8_t e) {
    const uint32_t bits = e < 2 ? (0x00200000u << e) : ((uint32_t)(e - 1) << 23);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* 4-bit index blocks through a 16-entry table of offset-binary values (IQ4_NL, MXFP4). */
ALWAYS_INLINE float fdot_table4(const void *row, const qt_mm_act *act, int64_t k, int mx) {
    const int64_t nb = k / 32;
    const size_t bs = mx ? sizeof(block_mxfp4) : sizeof(block_iq4_nl);
    const size_t qoff = mx ? 1 : 2;
    const uint8_t *base = row;
    const __m512i grid = mx ? _mm512_broadcast_i32x4(_mm_setr_epi8(
                                  (char)128, (char)129, (char)130, (char)131, (char)132,
                                  (char)134, (char)136, (char)140, (char)128, 127, 126, 125, 124,
                                  122, 120, 116))
                            : _mm512_broadcast_i32x4(_mm_setr_epi8(
                                  1, 24, 45, 63, 79, 93, 106, 118, (char)129, (char)141,
                                  (char)153, (char)166, (char)181, (char)197, (char)217, (char)241));
    __m512 acc = _mm512_setzero_ps();
    float total = 0.0f;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const int64_t j = 32 * i;
        const uint8_t *b0 = base + (size_t)i * bs, *b1 = b0 + bs;
        prefetch_ahead(b0, 2 * (int)bs);
        const __m512i z = _mm512_shuffle_epi8(grid, nibble_pair(b0 + qoff, b1 + qoff));
        const __m512i p = _mm512_dpbusd_epi32(lane_bias(act, j, 7), z,
                                              _mm512_loadu_si512(act->a + j));
        __m512 d;
        if (mx) {
            d = _mm512_insertf32x8(_mm512_set1_ps(e8m0_half(b0[0])),
                                   _mm256_set1_ps(e8m0_half(b1[0])), 1);
        } else {
            uint16_t h0, h1;
            memcpy(&h0, b0, 2);
            memcpy(&h1, b1, 2);
            d = two_scales(h0, h1);
        }
        const __m512 sc = _mm512_mul_ps(d, lane_da(act, j));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sc, acc);
    }
    total = _mm512_reduce_add_ps(acc);
    if (i < nb) {
        const uint8_t *b0 = base + (size_t)i * bs;
        uint8_t table[64];
        _mm512_storeu_si512(table, grid);
        int8_t w[32];
        for (int t = 0; t < 16; t++) {
            w[t] = (int8_t)(table[b0[qoff + t] & 0xF] - 128);
            w[t + 16] = (int8_t)(table[b0[qoff + t] >> 4] - 128);
        }
        float d;
        if (mx) {
            d = e8m0_half(b0[0]);
        } else {
            uint16_t h0;
            memcpy(&h0, b0, 2);
            d = h2f(h0);
        }
        total += tail_block(w, d, act, 32 * i);
    }
    return total;
}

static float fdot_iq4_nl(const void *row, const qt_mm_act *act, int64_t k) {
    return fdot_table4(row, act, k, 0);
}

static float fdot_mxfp4(const void *row, const qt_mm_act *act, int64_t k) {
    return fdot_table4(row, act, k, 1);
}

static float fdot_q5_1(const void *row, const qt_mm_act *act, int64_t k) {
    const block_q5_1 *x = row;
    const int64_t nb = k / 32;
    __m512 acc = _mm512_setzero_ps();
    float mins = 0.0f;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        prefetch_ahead(&x[i], 2 * (int)sizeof x[i]);
        const int64_t j = 32 * i;
        const __m512i z = _mm512_or_si512(nibble_pair(x[i].qs, x[i + 1].qs),
                                          q5_bits_pair(x[i].qh, x[i + 1].qh));
        const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), z,
                                              _mm512_loadu_si512(act->a + j));
        const __m512 sc = _mm512_mul_ps(two_scales(x[i].d, x[i + 1].d),
                                        lane_da(act, j));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sc, acc);
        const float *sa = act->sa + j / 16;
        mins += h2f(x[i].m) * (sa[0] + sa[1]) + h2f(x[i + 1].m) * (sa[2] + sa[3]);
    }
    float total = _mm512_reduce_add_ps(acc) + mins;
    if (i < nb) {
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        int8_t w[32];
        for (int t = 0; t < 16; t++) {
            w[t] = (int8_t)((x[i].qs[t] & 0xF) | (((qh >> t) & 1u) << 4));
            w[t + 16] = (int8_t)((x[i].qs[t] >> 4) | (((qh >> (t + 16)) & 1u) << 4));
        }
        const float *sa = act->sa + 32 * i / 16;
        total += tail_block(w, h2f(x[i].d), act, 32 * i) + h2f(x[i].m) * (sa[0] + sa[1]);
    }
    return total;
}

/* Q2_K / Q3_K share the layout of their 2-bit planes: value 128h + 32j + l is bits 2j..2j+1
 * of qs[32h + l]. Lanes of a 64-value step span 4 scale groups (pick). */
static float fdot_q2_K(const void *row, const qt_mm_act *act, int64_t k) {
    const block_q2_K *x = row;
    const __m256i three = _mm256_set1_epi8(3);
    const __m512i pick0 = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    const __m512i four = _mm512_set1_epi32(4);
    __m512 acc = _mm512_setzero_ps(), macc = _mm512_setzero_ps();
    for (int64_t i = 0; i < k / QK_K; i++) {
        prefetch_ahead(&x[i], (int)sizeof x[i]);
        const __m512i sc = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)x[i].scales));
        const __m512 s = _mm512_mul_ps(_mm512_set1_ps(h2f(x[i].d)),
                                       _mm512_cvtepi32_ps(_mm512_and_si512(sc, _mm512_set1_epi32(0xF))));
        const __m512 mn = _mm512_mul_ps(_mm512_set1_ps(h2f(x[i].dmin)),
                                        _mm512_cvtepi32_ps(_mm512_srli_epi32(sc, 4)));
        macc = _mm512_fmadd_ps(mn, _mm512_loadu_ps(act->sa + QK_K * i / 16), macc);
        /* group scales times activation scales, once per super-block */
        const __m512 sd = _mm512_mul_ps(s, _mm512_loadu_ps(act->da + QK_K * i / 16));
        __m512i pick = pick0;
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(x[i].qs + 32 * h));
            for (int jj = 0; jj < 4; jj += 2) {
                const int64_t j = QK_K * i + 128 * h + 32 * jj;
                const __m512i z = _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm256_and_si256(_mm256_srli_epi16(q, 2 * jj), three)),
                    _mm256_and_si256(_mm256_srli_epi16(q, 2 * jj + 2), three), 1);
                const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), z,
                                                      _mm512_loadu_si512(act->a + j));
                const __m512 scl = _mm512_permutexvar_ps(pick, sd);
                acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), scl, acc);
                pick = _mm512_add_epi32(pick, four);
            }
        }
    }
    return _mm512_reduce_add_ps(_mm512_sub_ps(acc, macc));
}

static float fdot_q3_K(const void *row, const qt_mm_act *act, int64_t k) {
    const block_q3_K *x = row;
    const __m256i three = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    const __m512i pick0 = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    const __m512i four = _mm512_set1_epi32(4);
    /* top two bits of scale j: bits 2(j/4).. of byte 8 + j%4 */
    const __m512i hshift = _mm512_set_epi32(6, 6, 6, 6, 4, 4, 4, 4, 2, 2, 2, 2, 0, 0, 0, 0);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < k / QK_K; i++) {
        prefetch_ahead(&x[i], (int)sizeof x[i]);
        const uint8_t *b = x[i].scales;
        uint64_t lo8;
        uint32_t hi4;
        memcpy(&lo8, b, sizeof lo8);
        memcpy(&hi4, b + 8, sizeof hi4);
        const __m128i l = _mm_cvtsi64_si128((long long)lo8);
        const __m128i lows = _mm_unpacklo_epi64(_mm_and_si128(l, _mm_set1_epi8(0x0F)),
                                                _mm_and_si128(_mm_srli_epi16(l, 4), _mm_set1_epi8(0x0F)));
        const __m512i his = _mm512_and_si512(
            _mm512_srlv_epi32(_mm512_cvtepu8_epi32(_mm_set1_epi32((int)hi4)), hshift),
            _mm512_set1_epi32(3));
        const __m512i sc = _mm512_sub_epi32(
            _mm512_or_si512(_mm512_cvtepu8_epi32(lows), _mm512_slli_epi32(his, 4)),
            _mm512_set1_epi32(32));
        const __m512 s = _mm512_mul_ps(_mm512_set1_ps(h2f(x[i].d)), _mm512_cvtepi32_ps(sc));
        const __m256i hm = _mm256_loadu_si256((const __m256i *)(const void *)x[i].hmask);
        /* group scales times activation scales, once per super-block */
        const __m512 sd = _mm512_mul_ps(s, _mm512_loadu_ps(act->da + QK_K * i / 16));
        __m512i pick = pick0;
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(x[i].qs + 32 * h));
            for (int jj = 0; jj < 4; jj += 2) {
                const int64_t j = QK_K * i + 128 * h + 32 * jj;
                /* stored value (q & 3) + 4 * high bit: the real value minus -4 */
                const __m256i v0 = _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(q, 2 * jj), three),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + jj), one), 2));
                const __m256i v1 = _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(q, 2 * jj + 2), three),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + jj + 1), one), 2));
                const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(v0), v1, 1);
                const __m512i bias = lane_bias(act, j, 2);
                const __m512i p = _mm512_dpbusd_epi32(bias, z, _mm512_loadu_si512(act->a + j));
                const __m512 scl = _mm512_permutexvar_ps(pick, sd);
                acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), scl, acc);
                pick = _mm512_add_epi32(pick, four);
            }
        }
    }
    return _mm512_reduce_add_ps(acc);
}

/* ---------------------------------------------------------------- exact GEMV on float storage */

/* Weight vector v of 16 values at w + j (F32 / F16 / BF16; all conversions exact). */
ALWAYS_INLINE __m512 load_w16(const void *w, int64_t j, int kind, __mmask16 mk) {
    if (kind == 0) {
        return _mm512_maskz_loadu_ps(mk, (const float *)w + j);
    }
    const __m256i h = _mm256_maskz_loadu_epi16(mk, (const uint16_t *)w + j);
    if (kind == 1) {
        return _mm512_cvtph_ps(h);
    }
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

ALWAYS_INLINE float fdot_floats(const void *w, const float *x, int64_t k, int kind) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    const __mmask16 all = 0xFFFF;
    int64_t j = 0;
    const int esize = kind == 0 ? 4 : 2;
    for (; j + 64 <= k; j += 64) {
        prefetch_ahead((const char *)w + j * esize, 64 * esize);
        a0 = _mm512_fmadd_ps(load_w16(w, j, kind, all), _mm512_loadu_ps(x + j), a0);
        a1 = _mm512_fmadd_ps(load_w16(w, j + 16, kind, all), _mm512_loadu_ps(x + j + 16), a1);
        a2 = _mm512_fmadd_ps(load_w16(w, j + 32, kind, all), _mm512_loadu_ps(x + j + 32), a2);
        a3 = _mm512_fmadd_ps(load_w16(w, j + 48, kind, all), _mm512_loadu_ps(x + j + 48), a3);
    }
    for (; j < k; j += 16) {
        const __mmask16 mk = k - j >= 16 ? all : (__mmask16)((1u << (k - j)) - 1);
        a0 = _mm512_fmadd_ps(load_w16(w, j, kind, mk), _mm512_maskz_loadu_ps(mk, x + j), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* Four weight rows (stride bytes apart) against one x; needs k % 32 == 0 and k >= 256. Four
 * weight streams keep more memory requests in flight than one. Row r starts 64 r values into
 * its row and wraps around: row strides here are multiples of 4 KiB, and four streams at the
 * same offset would fight over the same L1 sets; staggered, they touch x within a 1 KiB window
 * that stays in L1 even when the whole of x (57 KiB at k = 14336) does not. */
ALWAYS_INLINE void fdot_floats4(const void *w, size_t stride, const float *x, int64_t k, int kind,
                                float *out) {
    const uint8_t *rows[4];
    int64_t pos[4];
    __m512 a[8];
    for (int r = 0; r < 4; r++) {
        rows[r] = (const uint8_t *)w + (size_t)r * stride;
        pos[r] = 64 * r;
        a[r] = a[r + 4] = _mm512_setzero_ps();
    }
    const __mmask16 all = 0xFFFF;
    for (int64_t j = 0; j < k; j += 32) {
        for (int r = 0; r < 4; r++) {
            const int64_t p = pos[r];
            prefetch_ahead(rows[r] + p * (kind == 0 ? 4 : 2), 32 * (kind == 0 ? 4 : 2));
            a[r] = _mm512_fmadd_ps(load_w16(rows[r], p, kind, all), _mm512_loadu_ps(x + p), a[r]);
            a[r + 4] = _mm512_fmadd_ps(load_w16(rows[r], p + 16, kind, all),
                                       _mm512_loadu_ps(x + p + 16), a[r + 4]);
            pos[r] = p + 32 == k ? 0 : p + 32;
        }
    }
    for (int r = 0; r < 4; r++) {
        out[r] = _mm512_reduce_add_ps(_mm512_add_ps(a[r], a[r + 4]));
    }
}

static void fdot4_f32w(const void *w, size_t stride, const float *x, int64_t k, float *out) {
    fdot_floats4(w, stride, x, k, 0, out);
}

static void fdot4_f16w(const void *w, size_t stride, const float *x, int64_t k, float *out) {
    fdot_floats4(w, stride, x, k, 1, out);
}

static void fdot4_bf16w(const void *w, size_t stride, const float *x, int64_t k, float *out) {
    fdot_floats4(w, stride, x, k, 2, out);
}

static float fdot_bf16w(const void *w, const float *x, int64_t k) {
    return fdot_floats(w, x, k, 2);
}

static float fdot_f32w(const void *w, const float *x, int64_t k) {
    return fdot_floats(w, x, k, 0);
}

static float fdot_f16w(const void *w, const float *x, int64_t k) {
    return fdot_floats(w, x, k, 1);
}

/* BF16 rows (each starting on a 64-byte boundary) against an x rearranged per 32 values as
 * [16 even-indexed, 16 odd-indexed]: one 64-byte load holds 32 weights, whose even ones become floats by a shift and odd ones by a
 * mask (bf16 is the top half of a float), so no widening step sits between load and FMA. */
static void xprep_bf16(const float *x, int64_t n, float *out) {
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2,
                                          0);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (int64_t j = 0; j < n; j += 32) {
        const __m512 lo = _mm512_loadu_ps(x + j), hi = _mm512_loadu_ps(x + j + 16);
        _mm512_storeu_ps(out + j, _mm512_permutex2var_ps(lo, even, hi));
        _mm512_storeu_ps(out + j + 16, _mm512_permutex2var_ps(lo, odd, hi));
    }
}

ALWAYS_INLINE __m512 bf16_even(__m512i v) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

ALWAYS_INLINE __m512 bf16_odd(__m512i v) {
    return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xFFFF0000u)));
}

static float fdot_bf16w_eo(const void *w, const float *xp, int64_t k) {
    const uint16_t *row = w;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 64 <= k; j += 64) {
        prefetch_ahead(row + j, 128);
        const __m512i v = _mm512_loadu_si512(row + j), u = _mm512_loadu_si512(row + j + 32);
        a0 = _mm512_fmadd_ps(bf16_even(v), _mm512_loadu_ps(xp + j), a0);
        a1 = _mm512_fmadd_ps(bf16_odd(v), _mm512_loadu_ps(xp + j + 16), a1);
        a2 = _mm512_fmadd_ps(bf16_even(u), _mm512_loadu_ps(xp + j + 32), a2);
        a3 = _mm512_fmadd_ps(bf16_odd(u), _mm512_loadu_ps(xp + j + 48), a3);
    }
    if (j < k) {
        const __m512i v = _mm512_loadu_si512(row + j);
        a0 = _mm512_fmadd_ps(bf16_even(v), _mm512_loadu_ps(xp + j), a0);
        a1 = _mm512_fmadd_ps(bf16_odd(v), _mm512_loadu_ps(xp + j + 16), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* Rows in pairs sharing each load of x. Measured at k = 14336: two rows at the same offset beat
 * one row and beat four (four streams 4 KiB-multiples apart collide in the L1 sets). */
static void fdot4_bf16w_eo(const void *w, size_t stride, const float *xp, int64_t k, float *out) {
    for (int pair = 0; pair < 2; pair++) {
        const uint16_t *r0 = (const uint16_t *)((const uint8_t *)w + 2 * (size_t)pair * stride);
        const uint16_t *r1 = (const uint16_t *)((const uint8_t *)r0 + stride);
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
        for (int64_t j = 0; j < k; j += 32) {
            prefetch_ahead(r0 + j, 64);
            prefetch_ahead(r1 + j, 64);
            const __m512 xe = _mm512_loadu_ps(xp + j), xo = _mm512_loadu_ps(xp + j + 16);
            const __m512i v = _mm512_loadu_si512(r0 + j), u = _mm512_loadu_si512(r1 + j);
            a0 = _mm512_fmadd_ps(bf16_even(v), xe, a0);
            a1 = _mm512_fmadd_ps(bf16_odd(v), xo, a1);
            b0 = _mm512_fmadd_ps(bf16_even(u), xe, b0);
            b1 = _mm512_fmadd_ps(bf16_odd(u), xo, b1);
        }
        out[2 * pair] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
        out[2 * pair + 1] = _mm512_reduce_add_ps(_mm512_add_ps(b0, b1));
    }
}

/* F16 rows on 64-byte boundaries: pairs of rows share each load of x (copied to an aligned
 * buffer by xprep_copy). Measured against the staggered four-row kernel at k = 14336: 2-5%
 * faster on one thread, 5-7% on two. */
static void xprep_copy(const float *x, int64_t n, float *out) {
    memcpy(out, x, sizeof(float) * (size_t)n);
}

ALWAYS_INLINE void fdot_floats_pairs(const void *w, size_t stride, const float *xp, int64_t k,
                                     int kind, float *out) {
    for (int pair = 0; pair < 2; pair++) {
        const uint8_t *r0 = (const uint8_t *)w + 2 * (size_t)pair * stride;
        const uint8_t *r1 = r0 + stride;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
        const __mmask16 all = 0xFFFF;
        for (int64_t j = 0; j < k; j += 32) {
            prefetch_ahead(r0 + j * (kind == 0 ? 4 : 2), 32 * (kind == 0 ? 4 : 2));
            prefetch_ahead(r1 + j * (kind == 0 ? 4 : 2), 32 * (kind == 0 ? 4 : 2));
            const __m512 x0 = _mm512_load_ps(xp + j), x1 = _mm512_load_ps(xp + j + 16);
            a0 = _mm512_fmadd_ps(load_w16(r0, j, kind, all), x0, a0);
            a1 = _mm512_fmadd_ps(load_w16(r0, j + 16, kind, all), x1, a1);
            b0 = _mm512_fmadd_ps(load_w16(r1, j, kind, all), x0, b0);
            b1 = _mm512_fmadd_ps(load_w16(r1, j + 16, kind, all), x1, b1);
        }
        out[2 * pair] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
        out[2 * pair + 1] = _mm512_reduce_add_ps(_mm512_add_ps(b0, b1));
    }
}

static void fdot4_f16w_pairs(const void *w, size_t stride, const float *xp, int64_t k,
                             float *out) {
    fdot_floats_pairs(w, stride, xp, k, 1, out);
}

/* ---------------------------------------------------------------- fast GEMV on BF16 storage */

/* Activations rounded to bf16, nearest-even (the instruction treats denormal inputs as zero). */
static void round_bf16(const float *x, int64_t n, uint16_t *out) {
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m256bh b = _mm512_cvtneps_pbh(_mm512_loadu_ps(x + j));
        _mm256_storeu_si256((__m256i *)(void *)(out + j), (__m256i)b);
    }
    if (j < n) {
        const __mmask16 mk = (__mmask16)((1u << (n - j)) - 1);
        const __m256bh b = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mk, x + j));
        _mm256_mask_storeu_epi16(out + j, mk, (__m256i)b);
    }
}

/* One BF16 row with bf16 activations: each instruction multiplies 32 pairs (products of two
 * bf16 values are exact in float32) and adds them into 16 float32 sums. */
static float fdot_bf16_bf16(const void *w, const uint16_t *xb, int64_t k) {
    const uint16_t *row = w;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 64 <= k; j += 64) {
        prefetch_ahead(row + j, 128);
        a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(row + j),
                              (__m512bh)_mm512_loadu_si512(xb + j));
        a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_loadu_si512(row + j + 32),
                              (__m512bh)_mm512_loadu_si512(xb + j + 32));
    }
    for (; j < k; j += 32) {
        /* zeros past the end add nothing */
        const __mmask32 mk = k - j >= 32 ? 0xFFFFFFFFu : (__mmask32)((1u << (k - j)) - 1);
        a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_maskz_loadu_epi16(mk, row + j),
                              (__m512bh)_mm512_maskz_loadu_epi16(mk, xb + j));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

static inline __m512i cat256(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

static float fdot_tq2_0(const void *row, const qt_mm_act *act, int64_t k) {
    const block_tq2_0 *x = row;
    const __m512i three = _mm512_set1_epi8(3);
    /* one 64-value step takes 2-bit fields jj and jj + 1 of 32 bytes: shifts per 256-bit half */
    const __m512i sh01 = cat256(_mm256_set1_epi16(0), _mm256_set1_epi16(2));
    const __m512i sh23 = cat256(_mm256_set1_epi16(4), _mm256_set1_epi16(6));
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < k / QK_K; i++) {
        prefetch_ahead(&x[i], (int)sizeof x[i]);
        /* the block's scale multiplies once, after the four steps */
        __m512 part0 = _mm512_setzero_ps(), part1 = _mm512_setzero_ps();
        for (int h = 0; h < 2; h++) {
            const __m512i q = _mm512_broadcast_i64x4(
                _mm256_loadu_si256((const __m256i *)(const void *)(x[i].qs + 32 * h)));
            const int64_t j = QK_K * i + 128 * h;
            /* stored values are trit + 1 */
            const __m512i z0 = _mm512_and_si512(_mm512_srlv_epi16(q, sh01), three);
            const __m512i z1 = _mm512_and_si512(_mm512_srlv_epi16(q, sh23), three);
            const __m512i p0 = _mm512_dpbusd_epi32(lane_bias(act, j, 0), z0,
                                                   _mm512_loadu_si512(act->a + j));
            const __m512i p1 = _mm512_dpbusd_epi32(lane_bias(act, j + 64, 0), z1,
                                                   _mm512_loadu_si512(act->a + j + 64));
            part0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), lane_da(act, j), part0);
            part1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), lane_da(act, j + 64), part1);
        }
        acc = _mm512_fmadd_ps(_mm512_add_ps(part0, part1), _mm512_set1_ps(h2f(x[i].d)), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* TQ1_0 packs 5 base-3 digits per byte: digit k of byte b is ((uint8_t)(b * 3^k) * 3) >> 8.
 * b * 3^k mod 256 is repeated tripling with wrapping byte adds, and for a byte q,
 * (q * 3) >> 8 is (q >= 86) + (q >= 171), so no multiply is needed. */
#define TQ1_TRIPLE(T, V) T##_add_epi8(T##_add_epi8(V, V), V)

static inline __m512i tq1_digits(__m512i q) {
    const __m512i one = _mm512_set1_epi8(1);
    const __m512i z = _mm512_maskz_mov_epi8(_mm512_cmpge_epu8_mask(q, _mm512_set1_epi8(86)), one);
    return _mm512_mask_add_epi8(z, _mm512_cmpge_epu8_mask(q, _mm512_set1_epi8((char)171)), z, one);
}

static inline __m256i cat128(__m128i lo, __m128i hi) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}

static float fdot_tq1_0(const void *row, const qt_mm_act *act, int64_t k) {
    const block_tq1_0 *x = row;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < k / QK_K; i++) {
        prefetch_ahead(&x[i], (int)sizeof x[i]);
        /* values 0-159: digits 0-4 of qs[0..31]; 160-239: digits 0-4 of qs[32..47];
         * 240-255: digits 0-3 of qh[0..3] */
        const __m256i a1 = _mm256_loadu_si256((const __m256i *)(const void *)x[i].qs);
        const __m256i a3 = TQ1_TRIPLE(_mm256, a1), a9 = TQ1_TRIPLE(_mm256, a3);
        const __m256i a27 = TQ1_TRIPLE(_mm256, a9), a81 = TQ1_TRIPLE(_mm256, a27);
        const __m128i b1 = _mm_loadu_si128((const __m128i *)(const void *)(x[i].qs + 32));
        const __m128i b3 = TQ1_TRIPLE(_mm, b1), b9 = TQ1_TRIPLE(_mm, b3);
        const __m128i b27 = TQ1_TRIPLE(_mm, b9), b81 = TQ1_TRIPLE(_mm, b27);
        const __m128i h1 = _mm_set1_epi32(load_i32(x[i].qh));
        const __m128i h3 = TQ1_TRIPLE(_mm, h1), h9 = TQ1_TRIPLE(_mm, h3);
        const __m128i h27 = TQ1_TRIPLE(_mm, h9);
        const __m128i hq = _mm_blend_epi32(_mm_blend_epi32(h1, h3, 0x2), _mm_blend_epi32(h9, h27, 0x8),
                                           0xC);
        const __m512i steps[4] = {cat256(a1, a3), cat256(a9, a27), cat256(a81, cat128(b1, b3)),
                                  cat256(cat128(b9, b27), cat128(b81, hq))};
        /* the block's scale multiplies once, after the four steps (two chains) */
        __m512 part[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
        for (int st = 0; st < 4; st++) {
            const int64_t j = QK_K * i + 64 * st;
            /* digits are trit + 1 */
            const __m512i p = _mm512_dpbusd_epi32(lane_bias(act, j, 0), tq1_digits(steps[st]),
                                                  _mm512_loadu_si512(act->a + j));
            part[st & 1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), lane_da(act, j), part[st & 1]);
        }
        acc = _mm512_fmadd_ps(_mm512_add_ps(part[0], part[1]), _mm512_set1_ps(h2f(x[i].d)), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

void qt_mm_avx512_register(qt_matmul_table *t) {
    t->dot_f32 = dot_f32;
    t->tile_f32 = tile_f32;
    t->fdot_float[QT_T_F32] = fdot_f32w;
    t->fdot_float[QT_T_F16] = fdot_f16w;
    t->fdot_float[QT_T_BF16] = fdot_bf16w;
    t->fdot_float_prepped[QT_T_BF16] =
        (qt_mm_prepped_gemv){xprep_bf16, fdot_bf16w_eo, fdot4_bf16w_eo};
    t->fdot_float_prepped[QT_T_F16] =
        (qt_mm_prepped_gemv){xprep_copy, fdot_f16w, fdot4_f16w_pairs};
    t->fdot_float4[QT_T_F32] = fdot4_f32w;
    t->fdot_float4[QT_T_F16] = fdot4_f16w;
    t->fdot_float4[QT_T_BF16] = fdot4_bf16w;
    if (qt_cpu_features() & QT_CPU_AVX512BF16) {
        t->round_bf16 = round_bf16;
        t->fdot_bf16_bf16 = fdot_bf16_bf16;
    }
    if (!(qt_cpu_features() & QT_CPU_AVX512VNNI)) {
        return;
    }
    t->quantize_act = quantize_act;
    t->dot = dot_vnni;
    t->tile = tile_vnni;
    t->fdot[QT_T_Q4_0] = fdot_q4_0;
    t->fdot[QT_T_Q8_0] = fdot_q8_0;
    t->fdot[QT_T_Q4_K] = fdot_q4_K;
    t->fdot[QT_T_Q6_K] = fdot_q6_K;
    t->fdot[QT_T_Q5_K] = fdot_q5_K;
    t->fdot[QT_T_Q5_0] = fdot_q5_0;
    t->fdot[QT_T_Q4_1] = fdot_q4_1;
    t->fdot[QT_T_IQ4_XS] = fdot_iq4_xs;
    t->fdot[QT_T_IQ4_NL] = fdot_iq4_nl;
    t->fdot[QT_T_MXFP4] = fdot_mxfp4;
    t->fdot[QT_T_Q5_1] = fdot_q5_1;
    t->fdot[QT_T_Q2_K] = fdot_q2_K;
    t->fdot[QT_T_Q3_K] = fdot_q3_K;
    t->fdot[QT_T_TQ2_0] = fdot_tq2_0;
    t->fdot[QT_T_TQ1_0] = fdot_tq1_0;
}
