/* AVX-512 matmul kernels: VNNI integer dots for the fast path, FMA for the exact path.
 * Registered only when the CPU has AVX-512 VNNI (vpdpbusd); other AVX-512 parts keep AVX2's. */
#include "../simd_x86_avx512_intrin.h"

#define MM_W 16
#define MM_VF __m512
#define MM_VF_ZERO() _mm512_setzero_ps()
#define MM_VF_LOADU(p) _mm512_loadu_ps(p)
#define MM_VF_ADD(a, b) _mm512_add_ps(a, b)
#define MM_VF_FMADD(a, b, c) _mm512_fmadd_ps(a, b, c)
#define MM_VF_HSUM(v) _mm512_reduce_add_ps(v)
#include "matmul_x86_common.h"

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
                store_nsum4(nsum4, g, _mm_dpbusd_epi32(_mm_setzero_si128(), _mm_set1_epi8(1), q8));
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
    const float total = dot_tail_groups(_mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)), u, s, a,
                                        act->da + k0 / 16, j, kc);
    return has_min ? add_min_terms(total, m, act->sa + k0 / 16, kc / QT_MM_GROUP) : total;
}

/* ---------------------------------------------------------------- fast path: GEMM tile */

/* out[r * 16 + 0..15] += f[r] for the rb activation rows of a tile. */
ALWAYS_INLINE void add_tile_rows(float *out, const __m512 *f, const int rb) {
    for (int r = 0; r < rb; r++) {
        float *o = out + r * QT_MM_TILE_ROWS;
        _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o), f[r]));
    }
}

/* rb activation rows against one 16-row tile; lane r of every vector is weight row r. pair
 * (scale group 32): groups 2h and 2h+1 share every scale, so their integer sums add first and
 * one conversion, multiply and add serve 32 values. */
ALWAYS_INLINE void tile_rows(const uint8_t *tu, const float *ts, const float *tm, int has_min,
                             int64_t ng, const qt_mm_act *acts, const int rb, int64_t k0,
                             const int pair, float *out) {
    const int step = pair ? 2 : 1;
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
    for (int64_t g = 0; g < ng; g += step) {
        const uint8_t *wg = tu + g * 256;
        const __m512 sc = _mm512_load_ps(ts + g * 16);
        __m512i w[8];
#pragma GCC unroll 8
        for (int c = 0; c < 4 * step; c++) w[c] = _mm512_load_si512(wg + 64 * c);
#pragma GCC unroll 8
        for (int r = 0; r < rb; r++) {
            const int8_t *a = ap[r] + g * 16;
            /* two dependency chains; pair: gbias[g] and sa[g] hold the sums of the whole pair
             * (qt_mm_tile_fn) */
            __m512i acc = _mm512_set1_epi32(gb[r][g]);
            __m512i acc2 = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int c = 0; c < 4 * step; c += 2) {
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
    add_tile_rows(out, f, rb);
}

ALWAYS_INLINE void tile_all(const uint8_t *tu, const float *ts, const float *tm, int has_min,
                            int64_t ng, const qt_mm_act *acts, int64_t nrows, int64_t k0,
                            const int pair, float *out) {
    int64_t i = 0;
    for (; i + 8 <= nrows; i += 8) {
        tile_rows(tu, ts, tm, has_min, ng, acts + i, 8, k0, pair, out + i * QT_MM_TILE_ROWS);
    }
    if (i + 4 <= nrows) {
        tile_rows(tu, ts, tm, has_min, ng, acts + i, 4, k0, pair, out + i * QT_MM_TILE_ROWS);
        i += 4;
    }
    for (; i < nrows; i++) {
        tile_rows(tu, ts, tm, has_min, ng, acts + i, 1, k0, pair, out + i * QT_MM_TILE_ROWS);
    }
}

static void tile_vnni(const uint8_t *tu, const float *ts, const float *tm, int has_min,
                      int pair, int64_t kc, const qt_mm_act *acts, int64_t nrows, int64_t k0,
                      float *out) {
    const int64_t ng = kc / QT_MM_GROUP;
    if (pair) {
        tile_all(tu, ts, tm, has_min, ng, acts, nrows, k0, 1, out);
    } else {
        tile_all(tu, ts, tm, has_min, ng, acts, nrows, k0, 0, out);
    }
}

/* ---------------------------------------------------------------- exact path (float) */

static float dot_f32(const float *w, const float *x, int64_t n) {
    __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                   _mm512_setzero_ps()};
    for (int64_t j = dot_f32_steps(w, x, n, a); j < n; j += 16) {
        /* the rest 16 at a time, the last one masked, into the first chain */
        const __mmask16 mk = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
        a[0] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, w + j), _mm512_maskz_loadu_ps(mk, x + j),
                               a[0]);
    }
    return dot_f32_sum(a);
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
    add_tile_rows(out, f, rb);
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

/* ---------------------------------------------------------------- fused GEMV dots
 * Decode ggml blocks straight into registers: lane l of a 64-value step covers values
 * 4l..4l+3, so per-lane activation scales (lane_da) and offset corrections (lane_bias) line up
 * with the integer sums without reordering the activations. */

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

/* The IQ4 grid offset by 128 (offset-binary), in every 128-bit lane for a byte shuffle. */
ALWAYS_INLINE __m512i iq4_grid_u(void) {
    return _mm512_broadcast_i32x4(_mm_setr_epi8(1, 24, 45, 63, 79, 93, 106, 118, (char)129,
                                                (char)141, (char)153, (char)166, (char)181,
                                                (char)197, (char)217, (char)241));
}

/* ---------------------------------------------------------------- 32-value blocks
 * Q5_0, Q5_1 and IQ4_NL, the three types whose VNNI dot beats the AVX2 level's on the
 * project's CPU (the others keep AVX2's, see the register function). Two blocks per 64-value
 * step: values as dpbusd's unsigned operand, the offset they are stored with taken off through
 * lane_bias, the two fp16 scales times the activation scales per lane; Q5_1's minimums meet
 * the activation sums sa in float. */

/* The offset the values of a kind are stored with, as the lane_bias shift; -1: none (Q5_1
 * stores q >= 0). */
ALWAYS_INLINE int leg_offset_shift(int kind) {
    switch (kind) {
    case LEG_Q5_0: return 4;
    case LEG_Q5_1: return -1;
    default: return 7; /* IQ4_NL: the grid offset-binary */
    }
}

/* acc plus blocks b and b + bs (values from j on) times their activations; Q5_1 adds its
 * minimum terms to *mins. */
ALWAYS_INLINE __m512 leg_pair(__m512 acc, const uint8_t *b, size_t bs, const qt_mm_act *act,
                              int64_t j, int kind, float *mins) {
    const uint8_t *c = b + bs;
    const size_t qs = LEG_QS(kind);
    __m512i z = nibble_pair(b + qs, c + qs);
    if (kind == LEG_IQ4_NL) {
        z = _mm512_shuffle_epi8(iq4_grid_u(), z);
    } else {
        z = _mm512_or_si512(z, q5_bits_pair(b + LEG_QH(kind), c + LEG_QH(kind)));
    }
    const int shift = leg_offset_shift(kind);
    const __m512i bias = shift < 0 ? _mm512_setzero_si512() : lane_bias(act, j, shift);
    const __m512i p = _mm512_dpbusd_epi32(bias, z, _mm512_loadu_si512(act->a + j));
    const __m512 d = two_scales(leg_u16(b), leg_u16(c));
    if (leg_has_min(kind)) {
        const float *sa = act->sa + j / 16;
        *mins += leg_min(b) * (sa[0] + sa[1]) + leg_min(c) * (sa[2] + sa[3]);
    }
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(d, lane_da(act, j)), acc);
}

/* Value t of block b without its offset (the scalar tail). */
ALWAYS_INLINE int8_t leg_signed(const uint8_t *b, int t, int kind, const uint8_t *grid) {
    const int v = leg_nibble5(b, t, kind);
    switch (kind) {
    case LEG_Q5_0: return (int8_t)(v - 16);
    case LEG_IQ4_NL: return (int8_t)(grid[v] - 128);
    default: return (int8_t)v;
    }
}

ALWAYS_INLINE float fdot_legacy(const void *row, const qt_mm_act *act, int64_t k, int kind) {
    const size_t bs = LEG_SIZE(kind);
    const int64_t nb = k / 32;
    const uint8_t *x = row;
    __m512 acc = _mm512_setzero_ps();
    float mins = 0.0f;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const uint8_t *b = x + (size_t)i * bs;
        prefetch_ahead(b, 2 * (int)bs);
        acc = leg_pair(acc, b, bs, act, 32 * i, kind, &mins);
    }
    float total = _mm512_reduce_add_ps(acc);
    if (leg_has_min(kind)) {
        total += mins;
    }
    if (i < nb) {
        const uint8_t *b = x + (size_t)i * bs;
        uint8_t grid[64];
        if (kind == LEG_IQ4_NL) {
            _mm512_storeu_si512(grid, iq4_grid_u());
        }
        int8_t w[32];
        for (int t = 0; t < 32; t++) w[t] = leg_signed(b, t, kind, grid);
        float last = tail_block(w, leg_scale(b, kind), act, 32 * i);
        if (leg_has_min(kind)) {
            const float *sa = act->sa + 32 * i / 16;
            last += leg_min(b) * (sa[0] + sa[1]);
        }
        total += last;
    }
    return total;
}

FDOT_OF_KIND(fdot_q5_0, fdot_legacy, LEG_Q5_0)
FDOT_OF_KIND(fdot_q5_1, fdot_legacy, LEG_Q5_1)
FDOT_OF_KIND(fdot_iq4_nl, fdot_legacy, LEG_IQ4_NL)

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

/* pf: prefetch the weights ahead; off for weights the L3 holds (see fdot_float_cached). */
ALWAYS_INLINE float fdot_floats(const void *w, const float *x, int64_t k, int kind, int pf) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    const __mmask16 all = 0xFFFF;
    int64_t j = 0;
    const int esize = kind == 0 ? 4 : 2;
    for (; j + 64 <= k; j += 64) {
        if (pf) {
            prefetch_ahead((const char *)w + j * esize, 64 * esize);
        }
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
                                int pf, float *out) {
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
            if (pf) {
                prefetch_ahead(rows[r] + p * (kind == 0 ? 4 : 2), 32 * (kind == 0 ? 4 : 2));
            }
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

FLOAT_FDOT_ENTRIES

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

/* Four rows (stride bytes apart, each on a 64-byte boundary) in pairs sharing each load of the
 * prepped x: BF16 (kind 2) against xprep_bf16's even/odd order, F16 (kind 1) against
 * xprep_copy's aligned copy. Measured at k = 14336: two BF16 rows at the same offset beat one
 * row and beat four (four streams 4 KiB-multiples apart collide in the L1 sets); the F16 pairs
 * beat the staggered four-row kernel by 2-5% on one thread, 5-7% on two. */
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
            if (kind == 2) {
                const __m512 xe = _mm512_loadu_ps(xp + j), xo = _mm512_loadu_ps(xp + j + 16);
                const __m512i v = _mm512_loadu_si512(r0 + 2 * j), u = _mm512_loadu_si512(r1 + 2 * j);
                a0 = _mm512_fmadd_ps(bf16_even(v), xe, a0);
                a1 = _mm512_fmadd_ps(bf16_odd(v), xo, a1);
                b0 = _mm512_fmadd_ps(bf16_even(u), xe, b0);
                b1 = _mm512_fmadd_ps(bf16_odd(u), xo, b1);
            } else {
                const __m512 x0 = _mm512_load_ps(xp + j), x1 = _mm512_load_ps(xp + j + 16);
                a0 = _mm512_fmadd_ps(load_w16(r0, j, kind, all), x0, a0);
                a1 = _mm512_fmadd_ps(load_w16(r0, j + 16, kind, all), x1, a1);
                b0 = _mm512_fmadd_ps(load_w16(r1, j, kind, all), x0, b0);
                b1 = _mm512_fmadd_ps(load_w16(r1, j + 16, kind, all), x1, b1);
            }
        }
        out[2 * pair] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
        out[2 * pair + 1] = _mm512_reduce_add_ps(_mm512_add_ps(b0, b1));
    }
}

static void fdot4_bf16w_eo(const void *w, size_t stride, const float *xp, int64_t k, float *out) {
    fdot_floats_pairs(w, stride, xp, k, 2, out);
}

static void xprep_copy(const float *x, int64_t n, float *out) {
    memcpy(out, x, sizeof(float) * (size_t)n);
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

void qt_mm_avx512_register(qt_matmul_table *t) {
    t->dot_f32 = dot_f32;
    t->tile_f32 = tile_f32;
    register_float_fdots(t);
    t->fdot_float_prepped[QT_T_BF16] =
        (qt_mm_prepped_gemv){xprep_bf16, fdot_bf16w_eo, fdot4_bf16w_eo};
    t->fdot_float_prepped[QT_T_F16] =
        (qt_mm_prepped_gemv){xprep_copy, fdot_f16w, fdot4_f16w_pairs};
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
    /* Fused GEMV: the AVX2 level's kernels (inherited with the table) for every type but these
     * three. Measured on the project's AMD EPYC (Zen 4: 512-bit operations issue as two 256-bit
     * halves), same process, 4096x4096 and 4096x14336, one and two threads: the AVX2 dots beat
     * this file's VNNI ones by 1.06-1.81x for Q2_K, Q3_K, Q4_0, Q4_1, Q5_K, Q8_0, IQ4_XS, MXFP4,
     * TQ1_0 and TQ2_0, and 0.96-1.23x for Q4_K and Q6_K (faster on the large shape); these three
     * stay: Q5_0 (AVX2 0.79-0.87x), Q5_1 and IQ4_NL (0.96-1.01x). */
    t->fdot[QT_T_Q5_0] = fdot_q5_0;
    t->fdot[QT_T_Q5_1] = fdot_q5_1;
    t->fdot[QT_T_IQ4_NL] = fdot_iq4_nl;
}
