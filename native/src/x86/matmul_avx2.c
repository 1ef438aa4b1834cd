/* AVX2 matmul kernels. Without VNNI the 8-bit products go through maddubs, which takes an
 * unsigned and a signed operand and saturates pairs at 16 bits: feeding it |w| and a*sign(w)
 * keeps every pair within 2 * 128 * 127 < 32768, so the sums stay exact. */
#include <immintrin.h>

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#define MM_W 8
#define MM_VF __m256
#define MM_VF_ZERO() _mm256_setzero_ps()
#define MM_VF_LOADU(p) _mm256_loadu_ps(p)
#define MM_VF_ADD(a, b) _mm256_add_ps(a, b)
#define MM_VF_FMADD(a, b, c) _mm256_fmadd_ps(a, b, c)
#define MM_VF_HSUM(v) hsum8(v)
#include "matmul_x86_common.h"

/* Eight int32 lanes, lane l = sum of the four products of values 4l..4l+3. */
ALWAYS_INLINE __m256i dot4(__m256i u, __m256i a) {
    const __m256i w = _mm256_xor_si256(u, _mm256_set1_epi8((char)0x80));
    const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(a, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* Same values as the scalar quantize_act: x * (127 / amax) rounded to nearest even (the
 * default MXCSR mode, as nearbyintf), then the per-16 and per-4 sums. */
static void quantize_act_avx2(const float *x, int64_t k, int group, int8_t *a, float *da,
                              float *sa, int32_t *gbias, int16_t *nsum4, int16_t *sum16) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m128i ones8 = _mm_set1_epi8(1), ones16 = _mm_set1_epi16(1);
    for (int64_t b = 0; b < k / group; b++) {
        const float *xb = x + b * group;
        __m256 mx = _mm256_setzero_ps();
        for (int j = 0; j < group; j += 8) {
            mx = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(xb + j)), mx); /* NaN: skipped */
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float d = amax / 127.0f;
        const __m256 id = _mm256_set1_ps(d > 0.0f ? 127.0f / amax : 0.0f);
        for (int64_t g = b * group / 16; g < (b + 1) * group / 16; g++) {
            const __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16 * g), id));
            const __m256i q1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16 * g + 8), id));
            const __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xD8);
            const __m128i q8 = _mm_packs_epi16(_mm256_castsi256_si128(w16),
                                               _mm256_extracti128_si256(w16, 1));
            _mm_storeu_si128((__m128i *)(void *)(a + 16 * g), q8);
            /* sums of each 4 values, then of all 16 */
            const __m128i s4 = _mm_madd_epi16(_mm_maddubs_epi16(ones8, q8), ones16);
            __m128i t = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
            t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
            const int32_t sum = _mm_cvtsi128_si32(t);
            qt_mm_store_group(g, d, sum, da, sa, gbias, sum16);
            if (nsum4) {
                store_nsum4(nsum4, g, s4);
            }
        }
    }
}

static float dot_avx2(const uint8_t *u, const float *s, const float *m, int has_min,
                      const qt_mm_act *act, int64_t k0, int64_t kc) {
    const int8_t *a = act->a + k0;
    const float *da = act->da + k0 / 16;
    /* Lane l of a 32-value step is group l/4 of the two groups it covers. */
    const __m256i rep4 = _mm256_set_epi32(1, 1, 1, 1, 0, 0, 0, 0);
    __m256 acc = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 32 <= kc; j += 32) {
        const __m256i p = dot4(_mm256_loadu_si256((const __m256i *)(const void *)(u + j)),
                               _mm256_loadu_si256((const __m256i *)(const void *)(a + j)));
        const __m128 sd = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(const void *)(s + j / 16)));
        const __m128 dd = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(const void *)(da + j / 16)));
        const __m256 sc = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_mul_ps(sd, dd)), rep4);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sc, acc);
    }
    const float total = dot_tail_groups(hsum8(acc), u, s, a, da, j, kc);
    return has_min ? add_min_terms(total, m, act->sa + k0 / 16, kc / QT_MM_GROUP) : total;
}

/* out[r * 16 + 0..15] += [lo[r], hi[r]] for the rb activation rows of a tile. */
ALWAYS_INLINE void add_tile_rows(float *out, const __m256 *lo, const __m256 *hi, const int rb) {
    for (int r = 0; r < rb; r++) {
        float *o = out + r * QT_MM_TILE_ROWS;
        _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), lo[r]));
        _mm256_storeu_ps(o + 8, _mm256_add_ps(_mm256_loadu_ps(o + 8), hi[r]));
    }
}

/* One 16-value group g of the tile against rb activation rows: the integer sums per weight row
 * (lanes of lo[r]: rows 0-7, hi[r]: rows 8-15), added to lo/hi. */
ALWAYS_INLINE void tile_group(const uint8_t *tu, int64_t g, const qt_mm_act *acts, const int rb,
                              int64_t k0, const int small, const int nonneg, __m256i *lo,
                              __m256i *hi) {
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    const __m256i ones = _mm256_set1_epi16(1);
    const uint8_t *wg = tu + g * 256;
    __m256i wabs[8], wsgn[8];
    for (int q = 0; q < 8; q++) {
        wsgn[q] = _mm256_xor_si256(_mm256_load_si256((const __m256i *)(const void *)(wg + 32 * q)), flip);
        wabs[q] = nonneg ? wsgn[q] : _mm256_abs_epi8(wsgn[q]);
    }
    for (int r = 0; r < rb; r++) {
        const int8_t *a = acts[r].a + k0 + g * 16;
        __m256i l = _mm256_setzero_si256(), h = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            const __m256i av = _mm256_set1_epi32(load_i32(a + 4 * c));
            const __m256i plo = _mm256_maddubs_epi16(
                wabs[2 * c], nonneg ? av : _mm256_sign_epi8(av, wsgn[2 * c]));
            const __m256i phi = _mm256_maddubs_epi16(
                wabs[2 * c + 1], nonneg ? av : _mm256_sign_epi8(av, wsgn[2 * c + 1]));
            if (small) {
                /* |w| <= 32: the group's four pair sums stay below 8 * 32 * 127 < 2^15 */
                l = _mm256_add_epi16(l, plo);
                h = _mm256_add_epi16(h, phi);
            } else {
                l = _mm256_add_epi32(l, _mm256_madd_epi16(plo, ones));
                h = _mm256_add_epi32(h, _mm256_madd_epi16(phi, ones));
            }
        }
        if (small) {
            l = _mm256_madd_epi16(l, ones);
            h = _mm256_madd_epi16(h, ones);
        }
        lo[r] = _mm256_add_epi32(lo[r], l);
        hi[r] = _mm256_add_epi32(hi[r], h);
    }
}

/* rb activation rows against one 16-row tile: lanes of flo are weight rows 0-7, fhi 8-15.
 * pair: groups 2h and 2h + 1 share their scales (qt_mm_tile_fn), so their integer sums are
 * added first and converted, scaled and added once per 32 values. */
ALWAYS_INLINE void tile_rows(const uint8_t *tu, const float *ts, const float *tm, int has_min,
                             int64_t ng, const qt_mm_act *acts, const int rb, int64_t k0,
                             const int small, const int pair, const int nonneg, float *out) {
    __m256 flo[4], fhi[4];
    for (int r = 0; r < rb; r++) {
        flo[r] = _mm256_setzero_ps();
        fhi[r] = _mm256_setzero_ps();
    }
    const int step = pair ? 2 : 1;
    for (int64_t g = 0; g < ng; g += step) {
        __m256i lo[4], hi[4];
        for (int r = 0; r < rb; r++) {
            lo[r] = _mm256_setzero_si256();
            hi[r] = _mm256_setzero_si256();
        }
        for (int e = 0; e < step; e++) {
            tile_group(tu, g + e, acts, rb, k0, small, nonneg, lo, hi);
        }
        const __m256 slo = _mm256_load_ps(ts + g * 16), shi = _mm256_load_ps(ts + g * 16 + 8);
        for (int r = 0; r < rb; r++) {
            const __m256 d = _mm256_set1_ps(acts[r].da[k0 / 16 + g]);
            flo[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo[r]), _mm256_mul_ps(slo, d), flo[r]);
            fhi[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi[r]), _mm256_mul_ps(shi, d), fhi[r]);
        }
        if (has_min) {
            /* pair: sa[g] holds the sums of both groups */
            const __m256 mlo = _mm256_load_ps(tm + g * 16), mhi = _mm256_load_ps(tm + g * 16 + 8);
            for (int r = 0; r < rb; r++) {
                const __m256 sa = _mm256_set1_ps(acts[r].sa[k0 / 16 + g]);
                flo[r] = _mm256_fmadd_ps(mlo, sa, flo[r]);
                fhi[r] = _mm256_fmadd_ps(mhi, sa, fhi[r]);
            }
        }
    }
    add_tile_rows(out, flo, fhi, rb);
}

ALWAYS_INLINE void tile_all(const uint8_t *tu, const float *ts, const float *tm, int has_min,
                            int64_t kc, const qt_mm_act *acts, int64_t nrows, int64_t k0,
                            const int small, const int pair, const int nonneg, float *out) {
    const int64_t ng = kc / QT_MM_GROUP;
    int64_t i = 0;
    for (; i + 4 <= nrows; i += 4) {
        tile_rows(tu, ts, tm, has_min, ng, acts + i, 4, k0, small, pair, nonneg,
                  out + i * QT_MM_TILE_ROWS);
    }
    for (; i < nrows; i++) {
        tile_rows(tu, ts, tm, has_min, ng, acts + i, 1, k0, small, pair, nonneg,
                  out + i * QT_MM_TILE_ROWS);
    }
}

static void tile_avx2(const uint8_t *tu, const float *ts, const float *tm, int has_min,
                      int pair, int64_t kc, const qt_mm_act *acts, int64_t nrows, int64_t k0, float *out) {
    (void)pair;
    tile_all(tu, ts, tm, has_min, kc, acts, nrows, k0, 0, 0, 0, out);
}

/* Encodings whose unpacked values stay within +-32 (qt_mm_small_values): a group's products
 * are summed in 16-bit lanes and widened once, a quarter of the widening multiplies (the
 * multiply pipe is what the tile kernel waits on). Those with minimums (has_min: Q4_1, Q5_1,
 * Q2_K, Q4_K, Q5_K) store q >= 0 whatever the bytes, so maddubs takes the weights as they are,
 * without the sign transfer to the activations (a 16 x 512 tile against 128 rows: 60.8 -> 47.5
 * us; adding two groups' sums before scaling where the scales cover 32 values: 46.1 us). */
static void tile_avx2_small(const uint8_t *tu, const float *ts, const float *tm, int has_min,
                            int pair, int64_t kc, const qt_mm_act *acts, int64_t nrows, int64_t k0,
                            float *out) {
    if (has_min && pair) {
        tile_all(tu, ts, tm, has_min, kc, acts, nrows, k0, 1, 1, 1, out);
    } else if (has_min) {
        tile_all(tu, ts, tm, has_min, kc, acts, nrows, k0, 1, 0, 1, out);
    } else {
        tile_all(tu, ts, tm, has_min, kc, acts, nrows, k0, 1, 0, 0, out);
    }
}

static float dot_f32(const float *w, const float *x, int64_t n) {
    __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
    int64_t j = dot_f32_steps(w, x, n, a);
    float total = dot_f32_sum(a);
    for (; j < n; j++) total += w[j] * x[j];
    return total;
}

ALWAYS_INLINE void tile_f32_rows(const float *tw, int64_t kc, const float *x, int64_t ldx,
                                 const int rb, float *out) {
    __m256 lo[4], hi[4];
    for (int r = 0; r < rb; r++) {
        lo[r] = _mm256_setzero_ps();
        hi[r] = _mm256_setzero_ps();
    }
    for (int64_t j = 0; j < kc; j++) {
        const __m256 wl = _mm256_load_ps(tw + j * QT_MM_TILE_ROWS);
        const __m256 wh = _mm256_load_ps(tw + j * QT_MM_TILE_ROWS + 8);
        for (int r = 0; r < rb; r++) {
            const __m256 xv = _mm256_broadcast_ss(x + r * ldx + j);
            lo[r] = _mm256_fmadd_ps(wl, xv, lo[r]);
            hi[r] = _mm256_fmadd_ps(wh, xv, hi[r]);
        }
    }
    add_tile_rows(out, lo, hi, rb);
}

static void tile_f32(const float *tw, int64_t kc, const float *x, int64_t ldx, int64_t nrows,
                     float *out) {
    int64_t i = 0;
    for (; i + 4 <= nrows; i += 4) {
        tile_f32_rows(tw, kc, x + i * ldx, ldx, 4, out + i * QT_MM_TILE_ROWS);
    }
    for (; i < nrows; i++) {
        tile_f32_rows(tw, kc, x + i * ldx, ldx, 1, out + i * QT_MM_TILE_ROWS);
    }
}

/* ---------------------------------------------------------------- unpackers
 * Same output as the scalar ones in ref/matmul_ref.c. */

static inline __m256i load256(const void *p) {
    return _mm256_loadu_si256((const __m256i *)p);
}

static inline void store256(void *p, __m256i v) {
    _mm256_storeu_si256((__m256i *)p, v);
}

/* A super-block's 16 group scales all d (ternary) and its 16 minimums zero. */
ALWAYS_INLINE void store_d16(float *s, float d) {
    _mm256_storeu_ps(s, _mm256_set1_ps(d));
    _mm256_storeu_ps(s + 8, _mm256_set1_ps(d));
}

ALWAYS_INLINE void store_zero16(float *m) {
    _mm256_storeu_ps(m, _mm256_setzero_ps());
    _mm256_storeu_ps(m + 8, _mm256_setzero_ps());
}

/* 32 nibble-packed values (byte j: value j low, value j+16 high) of two blocks: a holds block
 * 0's 16 bytes in its low lane and block 1's in its high lane. */
static inline void nibbles_2blocks(__m256i a, __m256i *b0, __m256i *b1) {
    const __m256i mask = _mm256_set1_epi8(0x0F);
    const __m256i lo = _mm256_and_si256(a, mask);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(a, 4), mask);
    *b0 = _mm256_permute2x128_si256(lo, hi, 0x20);
    *b1 = _mm256_permute2x128_si256(lo, hi, 0x31);
}

static inline __m256i two_qs(const uint8_t *q0, const uint8_t *q1) {
    return _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)q0)),
        _mm_loadu_si128((const __m128i *)(const void *)q1), 1);
}

static inline __m256i or80(__m256i v) {
    return _mm256_or_si256(v, _mm256_set1_epi8((char)0x80));
}

/* The IQ4 grid offset by 128 (offset-binary), in both 128-bit lanes for a byte shuffle. */
ALWAYS_INLINE __m256i iq4_grid_u(void) {
    return _mm256_setr_epi8(
        1, 24, 45, 63, 79, 93, 106, 118, (char)129, (char)141, (char)153, (char)166, (char)181,
        (char)197, (char)217, (char)241, 1, 24, 45, 63, 79, 93, 106, 118, (char)129, (char)141,
        (char)153, (char)166, (char)181, (char)197, (char)217, (char)241);
}

/* E2M1 values doubled, offset by 128. */
ALWAYS_INLINE __m256i e2m1_grid_u(void) {
    return _mm256_setr_epi8((char)128, (char)129, (char)130, (char)131, (char)132, (char)134,
                            (char)136, (char)140, (char)128, 127, 126, 125, 124, 122, 120, 116,
                            (char)128, (char)129, (char)130, (char)131, (char)132, (char)134,
                            (char)136, (char)140, (char)128, 127, 126, 125, 124, 122, 120, 116);
}

/* Bit t of the 32-bit qh (value t's fifth bit) as 16 in byte t, else 0. */
ALWAYS_INLINE __m256i fifth_bits(const uint8_t *qh) {
    uint32_t h;
    memcpy(&h, qh, sizeof h);
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32((int)h),
        _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3,
                         3, 3, 3, 3, 3, 3, 3));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit),
                            _mm256_set1_epi8(16));
}

/* The 32 unpacked values of nibble-packed block b (kind LEG_*, not Q8_0) from its nibbles in
 * value order: grid lookup, fifth bit, then the offset to offset-binary. */
ALWAYS_INLINE __m256i leg_unpacked(__m256i nib, const uint8_t *b, int kind) {
    switch (kind) {
    case LEG_IQ4_NL:
        return _mm256_shuffle_epi8(iq4_grid_u(), nib);
    case LEG_MXFP4:
        return _mm256_shuffle_epi8(e2m1_grid_u(), nib);
    case LEG_Q4_0:
        return _mm256_add_epi8(nib, _mm256_set1_epi8(120)); /* q - 8 + 128 */
    case LEG_Q5_0:
        return _mm256_add_epi8(_mm256_or_si256(nib, fifth_bits(b + LEG_QH(kind))),
                               _mm256_set1_epi8(112)); /* q - 16 + 128 */
    case LEG_Q5_1:
        return or80(_mm256_or_si256(nib, fifth_bits(b + LEG_QH(kind))));
    default: /* Q4_1 */
        return or80(nib);
    }
}

/* Every nibble-packed 32-value type, two blocks per step; an odd last block goes through the
 * same step with its 16 bytes loaded twice, keeping the first half. */
ALWAYS_INLINE void unpack_legacy(const void *vx, int64_t n, uint8_t *u, float *s, float *m,
                                 int kind) {
    const size_t bs = LEG_SIZE(kind), qs = LEG_QS(kind);
    const uint8_t *b = vx;
    const int64_t nb = n / 32;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2, u += 64, b += 2 * bs) {
        __m256i v0, v1;
        nibbles_2blocks(two_qs(b + qs, b + bs + qs), &v0, &v1);
        store256(u, leg_unpacked(v0, b, kind));
        store256(u + 32, leg_unpacked(v1, b + bs, kind));
        const float s0 = leg_scale(b, kind), s1 = leg_scale(b + bs, kind);
        const float m0 = leg_has_min(kind) ? leg_min(b) : 0.0f;
        const float m1 = leg_has_min(kind) ? leg_min(b + bs) : 0.0f;
        _mm_storeu_ps(s + 2 * i, _mm_setr_ps(s0, s0, s1, s1));
        _mm_storeu_ps(m + 2 * i, _mm_setr_ps(m0, m0, m1, m1));
    }
    if (i < nb) {
        __m256i v0, v1;
        nibbles_2blocks(two_qs(b + qs, b + qs), &v0, &v1);
        store256(u, leg_unpacked(v0, b, kind));
        s[2 * i] = s[2 * i + 1] = leg_scale(b, kind);
        m[2 * i] = m[2 * i + 1] = leg_has_min(kind) ? leg_min(b) : 0.0f;
    }
}

/* One table entry per kind of a shared kernel. */
#define UNPACK_OF_KIND(name, impl, kind)                                                       \
    static void name(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {              \
        impl(vx, n, u, s, m, kind);                                                            \
    }

UNPACK_OF_KIND(unpack_q4_0, unpack_legacy, LEG_Q4_0) UNPACK_OF_KIND(unpack_q4_1, unpack_legacy, LEG_Q4_1)
UNPACK_OF_KIND(unpack_q5_0, unpack_legacy, LEG_Q5_0) UNPACK_OF_KIND(unpack_q5_1, unpack_legacy, LEG_Q5_1)
UNPACK_OF_KIND(unpack_iq4_nl, unpack_legacy, LEG_IQ4_NL) UNPACK_OF_KIND(unpack_mxfp4, unpack_legacy, LEG_MXFP4)

static void unpack_q8_0(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_q8_0 *x = vx;
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int64_t i = 0; i < n / 32; i++, u += 32) {
        store256(u, _mm256_xor_si256(load256(x[i].qs), flip));
        s[2 * i] = s[2 * i + 1] = h2f(x[i].d);
        m[2 * i] = m[2 * i + 1] = 0.0f;
    }
}

/* The 8 scales and minimums of a Q4_K/Q5_K super-block (k4_scale_bytes) times d and dmin,
 * each written twice, once per 16-value group. */
static inline void k4_scales(const uint8_t *scales, float d, float dmin, float *s, float *m) {
    const __m128i b = k4_scale_bytes(scales);
    const __m256i twice = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    const __m256 scf = _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)));
    const __m256 mnf = _mm256_mul_ps(_mm256_set1_ps(dmin),
                                     _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(b, 8))));
    const __m256 neg = _mm256_set1_ps(-0.0f);
    _mm256_storeu_ps(s, _mm256_permutevar8x32_ps(scf, twice));
    _mm256_storeu_ps(s + 8, _mm256_permutevar8x32_ps(scf, _mm256_add_epi32(twice, _mm256_set1_epi32(4))));
    _mm256_storeu_ps(m, _mm256_xor_ps(neg, _mm256_permutevar8x32_ps(mnf, twice)));
    _mm256_storeu_ps(m + 8, _mm256_xor_ps(neg, _mm256_permutevar8x32_ps(
                                               mnf, _mm256_add_epi32(twice, _mm256_set1_epi32(4)))));
}

/* Q4_K / Q5_K (five: the fifth bits from qh): both blocks start d, dmin, scales[12]. */
ALWAYS_INLINE void unpack_q45_K(const void *vx, int64_t n, uint8_t *u, float *s, float *m,
                                int five) {
    const size_t bs = five ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const size_t qs = five ? offsetof(block_q5_K, qs) : offsetof(block_q4_K, qs);
    const __m256i mask = _mm256_set1_epi8(0x0F), bit = _mm256_set1_epi8(0x10);
    const uint8_t *b = vx;
    for (int64_t i = 0; i < n / QK_K; i++, s += 16, m += 16, b += bs) {
        k4_scales(b + 4, h2f(leg_u16(b)), h2f(leg_u16(b + 2)), s, m);
        const __m256i qh = five ? load256(b + offsetof(block_q5_K, qh)) : _mm256_setzero_si256();
        for (int c = 0; c < 4; c++, u += 64) {
            const __m256i q = load256(b + qs + 32 * c);
            __m256i lo = _mm256_and_si256(q, mask);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask);
            if (five) {
                /* fifth bits: bit 2c (low nibbles) and 2c+1 (high) of qh, moved to bit 4 */
                lo = _mm256_or_si256(
                    lo, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * c), 4), bit));
                hi = _mm256_or_si256(
                    hi, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * c + 1), 4), bit));
            }
            store256(u, or80(lo));
            store256(u + 32, or80(hi));
        }
    }
}

UNPACK_OF_KIND(unpack_q4_K, unpack_q45_K, 0)
UNPACK_OF_KIND(unpack_q5_K, unpack_q45_K, 1)

static void unpack_q6_K(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_q6_K *x = vx;
    const __m256i mask = _mm256_set1_epi8(0x0F), three = _mm256_set1_epi8(0x30);
    const __m256i off = _mm256_set1_epi8(96); /* q - 32 + 128 */
    for (int64_t i = 0; i < n / QK_K; i++, s += 16, m += 16) {
        const __m256 d = _mm256_set1_ps(h2f(x[i].d));
        const __m128i sc = _mm_loadu_si128((const __m128i *)(const void *)x[i].scales);
        _mm256_storeu_ps(s, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc))));
        _mm256_storeu_ps(s + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(
                                                     _mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8)))));
        store_zero16(m);
        for (int h = 0; h < 2; h++, u += 128) {
            const __m256i l0 = load256(x[i].ql + 64 * h), l1 = load256(x[i].ql + 64 * h + 32);
            const __m256i qh = load256(x[i].qh + 32 * h);
            const __m256i h0 = _mm256_and_si256(_mm256_slli_epi16(qh, 4), three);
            const __m256i h1 = _mm256_and_si256(_mm256_slli_epi16(qh, 2), three);
            const __m256i h2 = _mm256_and_si256(qh, three);
            const __m256i h3 = _mm256_and_si256(_mm256_srli_epi16(qh, 2), three);
            const __m256i l0h = _mm256_and_si256(_mm256_srli_epi16(l0, 4), mask);
            const __m256i l1h = _mm256_and_si256(_mm256_srli_epi16(l1, 4), mask);
            store256(u, _mm256_add_epi8(_mm256_or_si256(_mm256_and_si256(l0, mask), h0), off));
            store256(u + 32, _mm256_add_epi8(_mm256_or_si256(_mm256_and_si256(l1, mask), h1), off));
            store256(u + 64, _mm256_add_epi8(_mm256_or_si256(l0h, h2), off));
            store256(u + 96, _mm256_add_epi8(_mm256_or_si256(l1h, h3), off));
        }
    }
}

static void unpack_iq4_xs(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_iq4_xs *x = vx;
    const __m256i grid = iq4_grid_u();
    for (int64_t i = 0; i < n / QK_K; i++, s += 16, m += 16) {
        const float d = h2f(x[i].d);
        for (int ib = 0; ib < 8; ib += 2, u += 64) {
            __m256i b0, b1;
            nibbles_2blocks(two_qs(x[i].qs + 16 * ib, x[i].qs + 16 * ib + 16), &b0, &b1);
            store256(u, _mm256_shuffle_epi8(grid, b0));
            store256(u + 32, _mm256_shuffle_epi8(grid, b1));
        }
        for (int ib = 0; ib < 8; ib++) {
            const int ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) |
                           (((x[i].scales_h >> (2 * ib)) & 3) << 4);
            s[2 * ib] = s[2 * ib + 1] = d * (float)(ls - 32);
        }
        store_zero16(m);
    }
}

/* The eight 2-bit planes of a Q2_K / Q3_K / TQ2_0 super-block (value 128h + 32j + l is bits
 * 2j..2j+1 of qs[32h + l]) to u, each plus the byte off and, Q3_K (hm not NULL), minus 4 where
 * its bit 4h + j of hmask[l] is clear. */
ALWAYS_INLINE void unpack_planes2(const uint8_t *qs, const uint8_t *hm, __m256i off, uint8_t *u) {
    const __m256i three = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
    for (int h = 0; h < 2; h++) {
        const __m256i q = load256(qs + 32 * h);
        for (int j = 0; j < 4; j++, u += 32) {
            __m256i v = _mm256_add_epi8(_mm256_and_si256(_mm256_srli_epi16(q, 2 * j), three), off);
            if (hm) {
                const __m256i bit = _mm256_set1_epi8((char)(1 << (4 * h + j)));
                v = _mm256_sub_epi8(v, _mm256_and_si256(_mm256_cmpeq_epi8(
                                        _mm256_and_si256(load256(hm), bit), _mm256_setzero_si256()),
                                    four));
            }
            store256(u, v);
        }
    }
}

static void unpack_q2_K(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_q2_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++, s += 16, m += 16, u += QK_K) {
        const float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        unpack_planes2(x[i].qs, NULL, _mm256_set1_epi8((char)0x80), u);
        for (int g = 0; g < 16; g++) {
            s[g] = d * (float)(x[i].scales[g] & 0xF);
            m[g] = -(dmin * (float)(x[i].scales[g] >> 4));
        }
    }
}

static void unpack_q3_K(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_q3_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++, s += 16, m += 16, u += QK_K) {
        const float d = h2f(x[i].d);
        unpack_planes2(x[i].qs, x[i].hmask, _mm256_set1_epi8((char)0x80), u);
        const uint8_t *b = x[i].scales;
        for (int g = 0; g < 16; g++) {
            const int lo = g < 8 ? (b[g] & 0xF) : (b[g - 8] >> 4);
            const int hi = (b[8 + (g & 3)] >> (2 * (g >> 2))) & 3;
            s[g] = d * (float)((lo | (hi << 4)) - 32);
        }
        store_zero16(m);
    }
}

static void unpack_tq2_0(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    const block_tq2_0 *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++, s += 16, m += 16, u += QK_K) {
        unpack_planes2(x[i].qs, NULL, _mm256_set1_epi8(127), u); /* q - 1 + 128 */
        store_d16(s, h2f(x[i].d));
        store_zero16(m);
    }
}

/* Base-3 digit extraction for TQ1_0: digit k of byte b is ((uint8_t)(b * 3^k) * 3) >> 8.
 * Bytes have no multiply, so even and odd bytes go through 16-bit lanes separately. */
static inline __m256i mul_bytes(__m256i b, short p) {
    const __m256i lo = _mm256_mullo_epi16(b, _mm256_set1_epi16(p));
    const __m256i hi = _mm256_mullo_epi16(_mm256_srli_epi16(b, 8), _mm256_set1_epi16(p));
    return _mm256_or_si256(_mm256_and_si256(lo, _mm256_set1_epi16(0x00FF)), _mm256_slli_epi16(hi, 8));
}

static inline __m256i trit_plane(__m256i b, short p) {
    const __m256i q = mul_bytes(b, p);
    const __m256i three = _mm256_set1_epi16(3);
    const __m256i lo = _mm256_srli_epi16(
        _mm256_mullo_epi16(_mm256_and_si256(q, _mm256_set1_epi16(0x00FF)), three), 8);
    const __m256i hi = _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_srli_epi16(q, 8), three), 8);
    /* digit + 127 = value - 1 + 128, offset-binary */
    return _mm256_add_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 8)), _mm256_set1_epi8(127));
}

static void unpack_tq1_0(const void *vx, int64_t n, uint8_t *u, float *s, float *m) {
    static const short pow3[5] = {1, 3, 9, 27, 81};
    const block_tq1_0 *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++, s += 16, m += 16) {
        const __m256i b32 = load256(x[i].qs);
        for (int k = 0; k < 5; k++, u += 32) {
            store256(u, trit_plane(b32, pow3[k]));
        }
        const __m256i b16 = _mm256_castsi128_si256(
            _mm_loadu_si128((const __m128i *)(const void *)(x[i].qs + 32)));
        for (int k = 0; k < 5; k++, u += 16) {
            _mm_storeu_si128((__m128i *)(void *)u, _mm256_castsi256_si128(trit_plane(b16, pow3[k])));
        }
        for (int k = 0; k < 4; k++) {
            for (int l = 0; l < 4; l++) {
                const uint8_t q = (uint8_t)(x[i].qh[l] * pow3[k]);
                *u++ = (uint8_t)((((unsigned)q * 3u) >> 8) + 127u);
            }
        }
        store_d16(s, h2f(x[i].d));
        store_zero16(m);
    }
}

/* ---------------------------------------------------------------- fused GEMV dots
 * Rows straight from their blocks, weights prefetched PF_AHEAD bytes early (prefetch_ahead). */

/* Eight int32 lanes of signed w times signed a (|w|, |a| <= 127 keeps maddubs exact). */
ALWAYS_INLINE __m256i dot_signed(__m256i w, __m256i a) {
    const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(a, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* 32 nibbles of a legacy block in value order: byte t holds value t low, value t + 16 high. */
ALWAYS_INLINE __m256i nibbles32(const uint8_t *qs) {
    const __m128i q = _mm_loadu_si128((const __m128i *)(const void *)qs);
    const __m128i mask = _mm_set1_epi8(0x0F);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(q, mask)),
                                   _mm_and_si128(_mm_srli_epi16(q, 4), mask), 1);
}

/* The IQ4 grid of signed values, in both 128-bit lanes for a byte shuffle. */
ALWAYS_INLINE __m256i iq4_grid(void) {
    return _mm256_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89,
                            113, -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69,
                            89, 113);
}

/* The magnitudes of the IQ4 grid. */
ALWAYS_INLINE __m256i iq4_grid_abs(void) {
    return _mm256_setr_epi8(127, 104, 83, 65, 49, 35, 22, 10, 1, 13, 25, 38, 53, 69, 89, 113, 127,
                            104, 83, 65, 49, 35, 22, 10, 1, 13, 25, 38, 53, 69, 89, 113);
}

/* The MXFP4 grid: E2M1 values doubled (the block scale is halved to match), plus 16 so that
 * every value is a non-negative byte below 32 (4 .. 28) for maddubs' unsigned operand, and
 * the shift comes off like Q5_0's. */
ALWAYS_INLINE __m256i mxfp4_grid_plus16(void) {
    return _mm256_setr_epi8(16, 17, 18, 19, 20, 22, 24, 28, 16, 15, 14, 13, 12, 10, 8, 4, 16, 17,
                            18, 19, 20, 22, 24, 28, 16, 15, 14, 13, 12, 10, 8, 4);
}

/* Eight int32 lanes of unsigned w (< 64) times signed a: maddubs pairs stay far from
 * saturation (2 * 63 * 127). */
ALWAYS_INLINE __m256i dot_unsigned(__m256i w, __m256i a) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1));
}

ALWAYS_INLINE __m256i act_bytes(const qt_mm_act *act, int64_t j) {
    return _mm256_loadu_si256((const __m256i *)(const void *)(act->a + j));
}

/* ---------------------------------------------------------------- legacy 32-value blocks
 * Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL and MXFP4: one scale (and Q4_1/Q5_1 one minimum) per
 * 32 values. Zen 1 runs every 256-bit op as two 128-bit micro-ops and was found limited by
 * their total count, so each block is kept to the fewest:
 * - values go to maddubs as they are stored where they are non-negative (nibbles, five-bit
 *   values, MXFP4 through a grid shifted by 16): no abs/sign pair. The shift (8 or 16)
 *   times the activation sum comes off each block's integer sum, from the activation row's
 *   gbias (-128 times each 16 values' sum), so the block's dot stays exact in integers (zero
 *   weights give exactly zero); Q4_1/Q5_1's minimum meets the activations through their group
 *   sums sa, in float: m_b * sa_b;
 * - the scales of eight blocks are converted at once: the eight fp16 (or E8M0) fields are
 *   gathered in a general-purpose register pair, which costs no vector micro-ops, and
 *   multiplied with the activation scales in one step; each block then broadcasts its own.
 * Q8_0 and IQ4_NL (values up to +-127, whose shifted form would overflow maddubs' 16-bit pair
 * sums) keep the signed product. */
/* 1 for the kinds whose values go to maddubs unsigned (below 32, see leg_values). */
ALWAYS_INLINE int leg_unsigned(int kind) {
    return kind != LEG_Q8_0 && kind != LEG_IQ4_NL;
}

/* Minus the shift times each 16 values' activation sum S (lane l), from g = -128 S: -8 S for
 * Q4_0, -16 S for Q5_0 and MXFP4. */
ALWAYS_INLINE __m256i leg_unshift(__m256i g, int kind) {
    return _mm256_srai_epi32(g, kind == LEG_Q4_0 ? 4 : 3);
}

ALWAYS_INLINE int leg_shifted(int kind) {
    return kind == LEG_Q4_0 || kind == LEG_Q5_0 || kind == LEG_MXFP4;
}

/* The fifth bits of eight values (one qh byte x) as eight bytes, 16 where the bit is set: a
 * table read per qh byte costs four loads and no vector micro-ops, where spreading the bits
 * with byte shuffles and compares (fifth_bits) cost about ten per block on Zen 1. */
#define FIFTH8(x)                                                                              \
    (((uint64_t)((x) & 1) << 4) | ((uint64_t)((x) >> 1 & 1) << 12) |                           \
     ((uint64_t)((x) >> 2 & 1) << 20) | ((uint64_t)((x) >> 3 & 1) << 28) |                     \
     ((uint64_t)((x) >> 4 & 1) << 36) | ((uint64_t)((x) >> 5 & 1) << 44) |                     \
     ((uint64_t)((x) >> 6 & 1) << 52) | ((uint64_t)((x) >> 7 & 1) << 60))
#define FIFTH8_4(n) FIFTH8(n), FIFTH8((n) + 1), FIFTH8((n) + 2), FIFTH8((n) + 3)
#define FIFTH8_16(n) FIFTH8_4(n), FIFTH8_4((n) + 4), FIFTH8_4((n) + 8), FIFTH8_4((n) + 12)
#define FIFTH8_64(n) FIFTH8_16(n), FIFTH8_16((n) + 16), FIFTH8_16((n) + 32), FIFTH8_16((n) + 48)
static const uint64_t k_fifth8[256] = {FIFTH8_64(0), FIFTH8_64(64), FIFTH8_64(128),
                                       FIFTH8_64(192)};

ALWAYS_INLINE __m256i fifth_bits_table(const uint8_t *qh) {
    uint32_t h;
    memcpy(&h, qh, sizeof h);
    return _mm256_setr_epi64x((long long)k_fifth8[h & 0xff], (long long)k_fifth8[(h >> 8) & 0xff],
                              (long long)k_fifth8[(h >> 16) & 0xff], (long long)k_fifth8[h >> 24]);
}

/* The 32 values of block b in value order, as maddubs takes them: unsigned for the shifted
 * kinds, signed for Q8_0 (IQ4_NL: see leg_products). */
ALWAYS_INLINE __m256i leg_values(const uint8_t *b, int kind) {
    if (kind == LEG_Q8_0) {
        return load256(b + LEG_QS(kind));
    }
    const __m256i n = nibbles32(b + LEG_QS(kind));
    switch (kind) {
    case LEG_Q5_0: case LEG_Q5_1:
        return _mm256_or_si256(n, fifth_bits_table(b + LEG_QH(kind)));
    case LEG_MXFP4:
        return _mm256_shuffle_epi8(mxfp4_grid_plus16(), n);
    default:
        return n;
    }
}

/* Eight int32 lanes of block b's 32 products with the activations at a. */
ALWAYS_INLINE __m256i leg_products(const uint8_t *b, const int8_t *a, int kind) {
    const __m256i av = _mm256_loadu_si256((const __m256i *)(const void *)a);
    if (kind == LEG_IQ4_NL) {
        /* |w| from a second table instead of abs: measured a little faster on Zen 1 */
        const __m256i n = nibbles32(b + LEG_QS(kind));
        const __m256i p = _mm256_maddubs_epi16(_mm256_shuffle_epi8(iq4_grid_abs(), n),
                                               _mm256_sign_epi8(av, _mm256_shuffle_epi8(iq4_grid(), n)));
        return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
    }
    const __m256i w = leg_values(b, kind);
    return leg_unsigned(kind) ? dot_unsigned(w, av) : dot_signed(w, av);
}

/* Eight fp16 fields at p, p + bs, ... as floats, in the lane order of lanes8. */
ALWAYS_INLINE __m256 leg_halfs8(const uint8_t *p, size_t bs) {
#define H(t) ((uint64_t)leg_u16(p + (t) * bs))
    const uint64_t lo = H(0) | H(1) << 16 | H(4) << 32 | H(5) << 48;
    const uint64_t hi = H(2) | H(3) << 16 | H(6) << 32 | H(7) << 48;
#undef H
    return _mm256_cvtph_ps(_mm_unpacklo_epi64(_mm_cvtsi64_si128((long long)lo),
                                              _mm_cvtsi64_si128((long long)hi)));
}

/* The fp16 scale and minimum pairs starting eight Q4_1 / Q5_1 blocks, as floats in the lane
 * order of lanes8: one 32-bit field per block, split by _mm256_shuffle_ps. */
ALWAYS_INLINE void leg_scale_min8(const uint8_t *p, size_t bs, __m256 *d8, __m256 *m8) {
#define DM(t) ((uint64_t)load_i32(p + (t) * bs) & 0xffffffffu)
    const __m128i lo = _mm_unpacklo_epi64(_mm_cvtsi64_si128((long long)(DM(0) | DM(1) << 32)),
                                          _mm_cvtsi64_si128((long long)(DM(2) | DM(3) << 32)));
    const __m128i hi = _mm_unpacklo_epi64(_mm_cvtsi64_si128((long long)(DM(4) | DM(5) << 32)),
                                          _mm_cvtsi64_si128((long long)(DM(6) | DM(7) << 32)));
#undef DM
    /* [d0 m0 d1 m1 | d2 m2 d3 m3] and the same for blocks 4-7 */
    const __m256 a = _mm256_cvtph_ps(lo), c = _mm256_cvtph_ps(hi);
    *d8 = _mm256_shuffle_ps(a, c, 0x88);
    *m8 = _mm256_shuffle_ps(a, c, 0xDD);
}

/* Eight MXFP4 exponents as e8m0_half floats, in the lane order of lanes8. */
ALWAYS_INLINE __m256 leg_e8m0_8(const uint8_t *p, size_t bs) {
#define E(t) ((uint64_t)p[(t) * bs])
    const uint64_t e8 = E(0) | E(1) << 8 | E(4) << 16 | E(5) << 24 | E(2) << 32 | E(3) << 40 |
                        E(6) << 48 | E(7) << 56;
#undef E
    const __m256i e = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)e8));
    /* 2^(e - 128): exponent field e - 1, or below e = 2 the subnormals 2^-128 and 2^-127 */
    const __m256i normal = _mm256_slli_epi32(_mm256_sub_epi32(e, _mm256_set1_epi32(1)), 23);
    const __m256i sub = _mm256_sllv_epi32(_mm256_set1_epi32(0x00200000), e);
    const __m256i small = _mm256_cmpgt_epi32(_mm256_set1_epi32(2), e);
    return _mm256_castsi256_ps(_mm256_blendv_epi8(normal, sub, small));
}

/* Per-16 activation arrays of eight blocks (16 entries at v) to one value per block, in the
 * lane order [0 1 4 5 | 2 3 6 7] that _mm256_shuffle_ps leaves (lanes8): the first half's
 * entry (da: both halves are equal) or the sum of both (sa). */
ALWAYS_INLINE __m256 lanes8_first(const float *v) {
    return _mm256_shuffle_ps(_mm256_loadu_ps(v), _mm256_loadu_ps(v + 8), 0x88);
}

ALWAYS_INLINE __m256 lanes8_sum(const float *v) {
    const __m256 lo = _mm256_loadu_ps(v), hi = _mm256_loadu_ps(v + 8);
    return _mm256_add_ps(_mm256_shuffle_ps(lo, hi, 0x88), _mm256_shuffle_ps(lo, hi, 0xDD));
}

/* Four blocks' per-lane sums p[0..3] (p[t] lane l: values of block t's half l / 4) to one sum
 * per block and half: lanes 0-3 the four blocks' first halves, lanes 4-7 their second halves,
 * in 32-bit lanes (wide) or, for 16-bit lanes, in adjacent pairs [A A B B C C D D] per 128
 * bits. Unpacks and adds only, no multiply. */
ALWAYS_INLINE __m256i by_block4(const __m256i p[4], int wide) {
    __m256i (*const add)(__m256i, __m256i) = wide ? _mm256_add_epi32 : _mm256_add_epi16;
    /* 16 bit: [A0 A1 B0 B1 A2 A3 B2 B3] + [A4 A5 B4 B5 A6 A7 B6 B7]; 32 bit: [A B A B] */
    const __m256i ab = add(_mm256_unpacklo_epi32(p[0], p[1]), _mm256_unpackhi_epi32(p[0], p[1]));
    const __m256i cd = add(_mm256_unpacklo_epi32(p[2], p[3]), _mm256_unpackhi_epi32(p[2], p[3]));
    return add(_mm256_unpacklo_epi64(ab, cd), _mm256_unpackhi_epi64(ab, cd));
}

/* Four blocks times their activations at a, one int32 per block and half (by_block4). The
 * unsigned kinds add maddubs' pair sums in 16 bits (eight products of values below 32: at most
 * 8 * 31 * 127), which leaves one widening madd per four blocks on Zen 1's single vector
 * multiply pipe instead of one per block; the signed kinds' pair sums (up to 2 * 127 * 127)
 * are widened first. */
ALWAYS_INLINE __m256i leg_products4(const uint8_t *b, size_t bs, const qt_mm_act *act,
                                    int64_t j, int kind) {
    const int8_t *a = act->a + j;
    __m256i p[4];
    for (int t = 0; t < 4; t++) {
        if (leg_unsigned(kind)) {
            p[t] = _mm256_maddubs_epi16(leg_values(b + t * bs, kind),
                                        _mm256_loadu_si256((const __m256i *)(const void *)(a + 32 * t)));
        } else {
            p[t] = leg_products(b + t * bs, a + 32 * t, kind);
        }
    }
    if (!leg_unsigned(kind)) {
        return by_block4(p, 1);
    }
    const __m256i sums = _mm256_madd_epi16(by_block4(p, 0), _mm256_set1_epi16(1));
    if (!leg_shifted(kind)) {
        return sums;
    }
    /* gbias of the eight 16-value groups, from block order to the lanes of sums */
    const __m256i g = _mm256_permutevar8x32_epi32(
        _mm256_loadu_si256((const __m256i *)(const void *)(act->gbias + j / 16)),
        _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
    return _mm256_add_epi32(sums, leg_unshift(g, kind));
}

ALWAYS_INLINE float fdot_legacy(const void *row, const qt_mm_act *act, int64_t k, int kind) {
    const size_t bs = LEG_SIZE(kind);
    const int64_t nb = k / 32;
    const uint8_t *b = row;
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    __m256 mins = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8, b += 8 * bs) {
        prefetch_ahead(b, 8 * (int)bs);
        __m256 d8;
        if (leg_has_min(kind)) {
            __m256 m8;
            leg_scale_min8(b, bs, &d8, &m8);
            mins = _mm256_fmadd_ps(m8, lanes8_sum(act->sa + 2 * i), mins);
        } else {
            d8 = kind == LEG_MXFP4 ? leg_e8m0_8(b, bs) : leg_halfs8(b, bs);
        }
        /* block scales times activation scales, back in block order */
        float sc[8];
        const __m256 s8 = _mm256_mul_ps(d8, lanes8_first(act->da + 2 * i));
        _mm256_storeu_ps(sc, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(s8), 0xD8)));
        for (int h = 0; h < 2; h++) {
            const __m256i p = leg_products4(b + 4 * h * bs, bs, act, 32 * (i + 4 * h), kind);
            acc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p),
                                     _mm256_broadcast_ps((const __m128 *)(const void *)(sc + 4 * h)),
                                     acc[h]);
        }
    }
    float tail_mins = 0.0f;
    for (; i < nb; i++, b += bs) {
        __m256i p = leg_products(b, act->a + 32 * i, kind);
        if (leg_shifted(kind)) {
            /* lane l holds values 4l .. 4l + 3: minus the shift times their sum, from nsum4 */
            const __m256i ns = _mm256_cvtepi16_epi32(
                _mm_loadu_si128((const __m128i *)(const void *)(act->nsum4 + 8 * i)));
            p = _mm256_add_epi32(p, _mm256_slli_epi32(ns, kind == LEG_Q4_0 ? 3 : 4));
        }
        acc[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p),
                                 _mm256_set1_ps(leg_scale(b, kind) * act->da[2 * i]), acc[0]);
        if (leg_has_min(kind)) {
            tail_mins += leg_min(b) * (act->sa[2 * i] + act->sa[2 * i + 1]);
        }
    }
    const float dots = hsum8(_mm256_add_ps(acc[0], acc[1]));
    return leg_has_min(kind) ? dots + hsum8(mins) + tail_mins : dots;
}

LEG_FDOT_ENTRIES(fdot_legacy)

/* ---------------------------------------------------------------- super-block GEMV dots
 * Q2_K .. Q6_K, IQ4_XS, TQ1_0 and TQ2_0 take one activation scale per 256 values
 * (qt_mm_act_group), so a super-block's products are summed in integers, its weight scales
 * applied there with madd (scale times a pair of 16-bit sums), and the block converted and
 * scaled once: d * da. Offsets and minimums meet the activations through the integer sums of
 * each 16 values (sum16), with one madd per block. On cores where 256-bit multiplies share one
 * pipe (AMD Zen 1), per-group float conversions and multiplies cost more than the integer dot
 * itself. */

/* The activation scale of the super-block starting at value j0. */
ALWAYS_INLINE float block_da(const qt_mm_act *act, int64_t j0) {
    return act->da[j0 / 16];
}

ALWAYS_INLINE __m256i block_sums16(const qt_mm_act *act, int64_t j0) {
    return load256(act->sum16 + j0 / 16);
}

/* 16 int16 scales, lanes 0-7 groups 0-7 and lanes 8-15 groups 8-15, from 16 bytes. */
ALWAYS_INLINE __m256i scales16_i8(__m128i b) {
    return _mm256_cvtepi8_epi16(b);
}

/* Eight int16 scales in both 128-bit lanes, from the low (h = 0) or high half of 16 bytes. */
ALWAYS_INLINE __m256i half_scales(__m128i b, int h, int is_signed) {
    const __m128i v = h ? _mm_srli_si128(b, 8) : b;
    const __m128i s = is_signed ? _mm_cvtepi8_epi16(v) : _mm_cvtepu8_epi16(v);
    return _mm256_set_m128i(s, s);
}

/* From eight int16 scales in both lanes: scale 2t in the low lane and 2t + 1 in the high one,
 * the groups of a 32-value step whose 16-value halves have their own scales. */
ALWAYS_INLINE __m256i step_scales16(__m256i sc, int t) {
    const char lo = (char)(4 * t), hi = (char)(4 * t + 2);
    return _mm256_shuffle_epi8(
        sc, _mm256_setr_epi8(lo, lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1,
                             lo, lo + 1, lo, lo + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1,
                             hi, hi + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1));
}

/* Scale g of eight int16 scales in both lanes, in every lane: a 32-value group's own scale. */
ALWAYS_INLINE __m256i step_scales32(__m256i sc, int g) {
    const char b = (char)(2 * g);
    return _mm256_shuffle_epi8(sc, _mm256_setr_epi8(b, b + 1, b, b + 1, b, b + 1, b, b + 1, b,
                                                    b + 1, b, b + 1, b, b + 1, b, b + 1, b, b + 1,
                                                    b, b + 1, b, b + 1, b, b + 1, b, b + 1, b,
                                                    b + 1, b, b + 1, b, b + 1));
}

/* Unsigned values v of one 32-value step times its activations: 16 int16 pair sums. */
ALWAYS_INLINE __m256i digit_products(__m256i v, const qt_mm_act *act, int64_t j) {
    return _mm256_maddubs_epi16(v, act_bytes(act, j));
}

/* Unsigned values v (< 64) of one 32-value step times its activations, times int16 scales. */
ALWAYS_INLINE __m256i scaled_step(__m256i v, const qt_mm_act *act, int64_t j, __m256i sc) {
    return _mm256_madd_epi16(digit_products(v, act, j), sc);
}

ALWAYS_INLINE __m256 block_scaled(__m256 acc, __m256i sumi, float d) {
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(d), acc);
}

/* Word t of each 128-bit lane copied to every word of that lane (fdot_q2_K's step scales). */
ALWAYS_INLINE __m256i word_in_lanes(__m256i w, int t) {
    const char b = (char)(2 * t), c = (char)(2 * t + 1);
    return _mm256_shuffle_epi8(w, _mm256_setr_epi8(b, c, b, c, b, c, b, c, b, c, b, c, b, c, b, c,
                                                   b, c, b, c, b, c, b, c, b, c, b, c, b, c, b, c));
}

/* Q2_K: 2-bit values, a 4-bit scale and a 4-bit minimum per 16 values; value 128h + 32j + l is
 * bits 2j..2j+1 of qs[32h + l]. Step t = 4h + j takes groups 2t (its low 128-bit lane) and
 * 2t + 1 (high lane), so the scales are split once per block, even groups to the low lane's
 * words and odd ones to the high lane's (one shuffle and one widening), and each step picks word
 * t in-lane. d and dmin (adjacent halves) are converted and multiplied by da together; the
 * accumulator of the 4x digits is scaled by 1/4 once per row (exact: a power of two). */
static float fdot_q2_K(const void *row, const qt_mm_act *act, int64_t k) {
    const block_q2_K *x = row;
    const __m256i three = _mm256_set1_epi8(3), twelve = _mm256_set1_epi8(12);
    const __m128i low4 = _mm_set1_epi8(0x0F);
    const __m128i split = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    __m256 acc = _mm256_setzero_ps(), macc = _mm256_setzero_ps();
    for (int64_t i = 0; i < k / QK_K; i++) {
        prefetch_ahead(&x[i], (int)sizeof x[i]);
        const int64_t j0 = QK_K * i;
        const __m128i sc = _mm_loadu_si128((const __m128i *)(const void *)x[i].scales);
        const __m128i scl = _mm_and_si128(sc, low4), mnl = _mm_and_si128(_mm_srli_epi16(sc, 4), low4);
        const __m256i mins = _mm256_madd_epi16(_mm256_cvtepu8_epi16(mnl), block_sums16(act, j0));
        const __m256i s1 = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(scl, split));
        const __m256i s4 = _mm256_slli_epi16(s1, 2);
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i q = load256(x[i].qs + 32 * h), q4 = _mm256_srli_epi16(q, 4);
            /* digits of odd j in place (4x), those of even j with their scales times 4 */
            const __m256i v[4] = {_mm256_and_si256(q, three), _mm256_and_si256(q, twelve),
                                  _mm256_and_si256(q4, three), _mm256_and_si256(q4, twelve)};
            for (int j = 0; j < 4; j++) {
                sumi = _mm256_add_epi32(sumi, scaled_step(v[j], act, j0 + 128 * h + 32 * j,
                                                          word_in_lanes(j & 1 ? s1 : s4, 4 * h + j)));
            }
        }
        /* [d da, dmin da] in every pair of lanes; d and dmin by one broadcast load */
        const __m128i ddmin = _mm_castps_si128(_mm_broadcast_ss((const float *)(const void *)&x[i].d));
        const __m256 dm = _mm256_mul_ps(_mm256_cvtph_ps(ddmin), _mm256_broadcast_ss(act->da + j0 / 16));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_permute_ps(dm, 0x00), acc);
        macc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_permute_ps(dm, 0x55), macc);
    }
    return hsum8(_mm256_sub_ps(_mm256_mul_ps(acc, _mm256_set1_ps(0.25f)), macc));
}
_Static_assert(offsetof(block_q2_K, dmin) == offsetof(block_q2_K, d) + 2, "q2_K d, dmin adjacent");

/* Q3_K: value 128h + 32j + l is bits 2j..2j+1 of qs[32h + l] plus 4 times bit 4h + j of
 * hmask[l], minus 4; one 6-bit scale (stored + 32) per 16 values, low nibbles in scales[0..7]
 * (groups 0-7 low, 8-15 high), top two bits of group g at bit 2(g / 4) of scales[8 + g % 4].
 * The stored values (below 8) are dotted; the -4 comes back through the group sums:
 * 4 * sum_g scale_g * sum16_g. */
static float fdot_q3_K(const void *row, const qt_mm_act *act, int64_t k) {
    const block_q3_K *x = row;
    const __m256i three = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
    const __m128i low4 = _mm_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < k / QK_K; i++) {
        prefetch_ahead(&x[i], (int)sizeof x[i]);
        const int64_t j0 = QK_K * i;
        uint64_t lo8;
        uint32_t hi4;
        memcpy(&lo8, x[i].scales, sizeof lo8);
        memcpy(&hi4, x[i].scales + 8, sizeof hi4);
        const __m128i l = _mm_cvtsi64_si128((long long)lo8);
        const __m128i lows = _mm_unpacklo_epi64(_mm_and_si128(l, low4),
                                                _mm_and_si128(_mm_srli_epi16(l, 4), low4));
        /* byte g: scales[8 + g % 4] >> 2 (g / 4), its low two bits the top of scale g */
        const __m128i his = _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32((int)hi4),
                                                         _mm_setr_epi32(0, 2, 4, 6)),
                                          _mm_set1_epi8(3));
        const __m128i sc = _mm_sub_epi8(_mm_or_si128(lows, _mm_slli_epi16(his, 4)),
                                        _mm_set1_epi8(32));
        const __m256i offs = _mm256_madd_epi16(scales16_i8(sc), block_sums16(act, j0));
        const __m256i hm = load256(x[i].hmask);
        __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(offs, 2));
        for (int h = 0; h < 2; h++) {
            const __m256i q = load256(x[i].qs + 32 * h);
            const __m256i s8 = half_scales(sc, h, 1);
            for (int j = 0; j < 4; j++) {
                /* stored value (q & 3) + 4 * high bit: the real value plus 4 */
                const int b = 4 * h + j; /* hmask bit, shifted to bit 2 */
                const __m256i hb = _mm256_and_si256(b <= 2 ? _mm256_slli_epi16(hm, 2 - b)
                                                           : _mm256_srli_epi16(hm, b - 2),
                                                    four);
                const __m256i v = _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), three), hb);
                sumi = _mm256_add_epi32(
                    sumi, scaled_step(v, act, j0 + 128 * h + 32 * j, step_scales16(s8, j)));
            }
        }
        acc = block_scaled(acc, sumi, h2f(x[i].d) * block_da(act, j0));
    }
    return hsum8(acc);
}

/* Q4_K / Q5_K: eight 32-value groups per block, value = d * scale_g * q - dmin * min_g with
 * 6-bit scales and minimums (Q5_K adds a fifth bit from qh). Both blocks start d, dmin,
 * scales[12]; then Q5_K has qh[32] before qs[128]. */
ALWAYS_INLINE float fdot_q45_K(const void *row, const qt_mm_act *act, int64_t k, int five) {
    const size_t bs = five ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const size_t qs_off = five ? offsetof(block_q5_K, qs) : offsetof(block_q4_K, qs);
    const __m256i mask = _mm256_set1_epi8(0x0F), sixteen = _mm256_set1_epi8(16);
    __m256 acc = _mm256_setzero_ps();
    __m128 macc = _mm_setzero_ps();
    for (int64_t i = 0; i < k / QK_K; i++) {
        const uint8_t *b = (const uint8_t *)row + (size_t)i * bs;
        prefetch_ahead(b, (int)bs);
        const int64_t j0 = QK_K * i;
        const float da = block_da(act, j0);
        uint16_t d16, dmin16;
        uint32_t w[3];
        memcpy(&d16, b, 2);
        memcpy(&dmin16, b + 2, 2);
        memcpy(w, b + 4, sizeof w);
        const __m128i sm = _mm_setr_epi32((int)(w[0] & 0x3f3f3f3fu),
                                          (int)((w[2] & 0x0f0f0f0fu) | ((w[0] >> 2) & 0x30303030u)),
                                          (int)(w[1] & 0x3f3f3f3fu),
                                          (int)(((w[2] >> 4) & 0x0f0f0f0fu) | ((w[1] >> 2) & 0x30303030u)));
        /* minimums times the activation sums of each 32 values */
        const __m256i s16 = block_sums16(act, j0);
        const __m128i s32 = _mm_hadd_epi16(_mm256_castsi256_si128(s16), _mm256_extracti128_si256(s16, 1));
        const __m128i mins = _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_srli_si128(sm, 8)), s32);
        macc = _mm_fmadd_ps(_mm_cvtepi32_ps(mins), _mm_set1_ps(h2f(dmin16) * da), macc);
        const __m256i sc = half_scales(sm, 0, 0);
        const __m256i qh = five ? load256(b + offsetof(block_q5_K, qh)) : _mm256_setzero_si256();
        __m256i sumi = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            /* 32 bytes: low nibbles are group 2c, high nibbles group 2c + 1; Q5_K's fifth bit
             * of group g is bit g of qh, moved to bit 4 */
            const __m256i q = load256(b + qs_off + 32 * c);
            __m256i half[2] = {_mm256_and_si256(q, mask),
                               _mm256_and_si256(_mm256_srli_epi16(q, 4), mask)};
            for (int h = 0; h < 2; h++) {
                const int g = 2 * c + h;
                if (five) {
                    half[h] = _mm256_or_si256(
                        half[h], _mm256_and_si256(g <= 4 ? _mm256_slli_epi16(qh, 4 - g)
                                                         : _mm256_srli_epi16(qh, g - 4),
                                                  sixteen));
                }
                sumi = _mm256_add_epi32(
                    sumi, scaled_step(half[h], act, j0 + 32 * g, step_scales32(sc, g)));
            }
        }
        acc = block_scaled(acc, sumi, h2f(d16) * da);
    }
    __m128 m = _mm_add_ps(macc, _mm_movehl_ps(macc, macc));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    return hsum8(acc) - _mm_cvtss_f32(m);
}

FDOT_OF_KIND(fdot_q4_K, fdot_q45_K, 0)

FDOT_OF_KIND(fdot_q5_K, fdot_q45_K, 1)

/* Q6_K: values (ql nibble | two qh bits << 4) - 32, one int8 scale per 16 values. Each half
 * block of 128 values reads 64 ql bytes and 32 qh bytes; the -32 comes back through the group
 * sums: 32 * sum_g scale_g * sum16_g. */
static float fdot_q6_K(const void *row, const qt_mm_act *act, int64_t k) {
    const block_q6_K *x = row;
    const __m256i mask = _mm256_set1_epi8(0x0F), three = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < k / QK_K; i++) {
        prefetch_ahead(&x[i], (int)sizeof x[i]);
        const int64_t j0 = QK_K * i;
        const __m128i sc = _mm_loadu_si128((const __m128i *)(const void *)x[i].scales);
        const __m256i offs = _mm256_madd_epi16(scales16_i8(sc), block_sums16(act, j0));
        __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(offs, 5));
        for (int h = 0; h < 2; h++) {
            const __m256i s8 = half_scales(sc, h, 1);
            const __m256i ql0 = load256(x[i].ql + 64 * h), ql1 = load256(x[i].ql + 64 * h + 32);
            const __m256i qh = load256(x[i].qh + 32 * h);
            const __m256i lows[4] = {_mm256_and_si256(ql0, mask), _mm256_and_si256(ql1, mask),
                                     _mm256_and_si256(_mm256_srli_epi16(ql0, 4), mask),
                                     _mm256_and_si256(_mm256_srli_epi16(ql1, 4), mask)};
            for (int t = 0; t < 4; t++) {
                const __m256i hi2 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * t), three);
                const __m256i v = _mm256_or_si256(lows[t], _mm256_slli_epi16(hi2, 4));
                sumi = _mm256_add_epi32(
                    sumi, scaled_step(v, act, j0 + 128 * h + 32 * t, step_scales16(s8, t)));
            }
        }
        acc = block_scaled(acc, sumi, h2f(x[i].d) * block_da(act, j0));
    }
    return hsum8(acc);
}

/* IQ4_XS: eight 32-value groups per block, each laid out like an IQ4_NL block, with a 6-bit
 * scale (low 4 bits in scales_l, high 2 in scales_h) stored + 32. */
static float fdot_iq4_xs(const void *row, const qt_mm_act *act, int64_t k) {
    const block_iq4_xs *x = row;
    const __m256i grid = iq4_grid();
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < k / QK_K; i++) {
        prefetch_ahead(&x[i], (int)sizeof x[i]);
        const int64_t j0 = QK_K * i;
        /* the eight scales as int16: nibble g % 2 of scales_l[g / 2], then bits 2g..2g+1 of
         * scales_h moved to the top of a lane (times 2^(14 - 2g)) and back down */
        const __m128i l = _mm_cvtsi32_si128(load_i32(x[i].scales_l));
        const __m128i nib = _mm_cvtepu8_epi16(_mm_unpacklo_epi8(
            _mm_and_si128(l, _mm_set1_epi8(0x0F)), _mm_and_si128(_mm_srli_epi16(l, 4), _mm_set1_epi8(0x0F))));
        const __m128i top = _mm_srli_epi16(
            _mm_mullo_epi16(_mm_set1_epi16((short)x[i].scales_h),
                            _mm_setr_epi16(1 << 14, 1 << 12, 1 << 10, 1 << 8, 1 << 6, 1 << 4, 1 << 2, 1)),
            14);
        const __m128i ls = _mm_sub_epi16(_mm_or_si128(nib, _mm_slli_epi16(top, 4)), _mm_set1_epi16(32));
        const __m256i sc = _mm256_set_m128i(ls, ls);
        __m256i sumi = _mm256_setzero_si256();
        for (int t = 0; t < 4; t++) {
            /* groups 2t (low lane) and 2t + 1 (high lane) from one load: low nibbles are
             * their values 0-15, high nibbles 16-31; the activations are gathered to match */
            const __m256i q = load256(x[i].qs + 32 * t);
            const __m256i sct = step_scales16(sc, t);
            const int8_t *a = act->a + j0 + 64 * t;
            for (int e = 0; e < 2; e++) {
                const __m256i w = _mm256_shuffle_epi8(
                    grid, _mm256_and_si256(e ? _mm256_srli_epi16(q, 4) : q, _mm256_set1_epi8(0x0F)));
                const __m256i av = _mm256_loadu2_m128i((const __m128i *)(const void *)(a + 32 + 16 * e),
                                                       (const __m128i *)(const void *)(a + 16 * e));
                const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(av, w));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, sct));
            }
        }
        acc = block_scaled(acc, sumi, h2f(x[i].d) * block_da(act, j0));
    }
    return hsum8(acc);
}

/* ---------------------------------------------------------------- ternary GEMV dots
 * TQ1_0 / TQ2_0 store digits q in {0, 1, 2} for the values q - 1 and one fp16 scale per 256
 * values: a whole block's products stay within 16 bits (8 steps * 2 * 2 * 127 per lane), and
 * the -1 comes back as the block's activation sums (sum16). */

/* d * da of the block at j0 in all lanes (the fp16 d converted by the vector unit). */
ALWAYS_INLINE __m256 ternary_scale(uint16_t d, const qt_mm_act *act, int64_t j0) {
    return _mm256_mul_ps(_mm256_cvtph_ps(_mm_set1_epi16((short)d)),
                         _mm256_broadcast_ss(act->da + j0 / 16));
}

ALWAYS_INLINE __m256 ternary_block(__m256 acc, __m256i sum16, uint16_t d, const qt_mm_act *act,
                                   int64_t j0) {
    const __m256i s = _mm256_madd_epi16(_mm256_sub_epi16(sum16, block_sums16(act, j0)),
                                        _mm256_set1_epi16(1));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), ternary_scale(d, act, j0), acc);
}

/* TQ2_0: value 128h + 32j + l is bits 2j..2j+1 of qs[32h + l]. Digits of odd j are taken in
 * place (bits 2-3 of q or q >> 4: 4x the digit, their sums still within 16 bits), so each 32
 * bytes need one shift; the block's sums then come back as 4 * even + odd, scaled by d / 4. */
static float fdot_tq2_0(const void *row, const qt_mm_act *act, int64_t k) {
    const block_tq2_0 *x = row;
    const __m256i low = _mm256_set1_epi8(3), high = _mm256_set1_epi8(12);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < k / QK_K; i++) {
        prefetch_ahead(&x[i], (int)sizeof x[i]);
        const int64_t j0 = QK_K * i;
        __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i q = load256(x[i].qs + 32 * h), q4 = _mm256_srli_epi16(q, 4);
            const int64_t j = j0 + 128 * h;
            s0 = _mm256_add_epi16(s0, digit_products(_mm256_and_si256(q, low), act, j));
            s1 = _mm256_add_epi16(s1, digit_products(_mm256_and_si256(q, high), act, j + 32));
            s0 = _mm256_add_epi16(s0, digit_products(_mm256_and_si256(q4, low), act, j + 64));
            s1 = _mm256_add_epi16(s1, digit_products(_mm256_and_si256(q4, high), act, j + 96));
        }
        const __m256i even = _mm256_sub_epi16(s0, block_sums16(act, j0));
        const __m256i sumi = _mm256_add_epi32(_mm256_madd_epi16(even, _mm256_set1_epi16(4)),
                                              _mm256_madd_epi16(s1, _mm256_set1_epi16(1)));
        acc = block_scaled(acc, sumi, 0.25f * h2f(x[i].d) * block_da(act, j0));
    }
    return hsum8(acc);
}

/* The base-3 digit (3 * b) >> 8 of each byte b (1 from b = 86 on, 2 from b = 171 on), from
 * s = b ^ 0x80 (b - 128 as a signed byte). The flip survives the digit planes' multiplies by 3:
 * 3 (b + 128) = 3 b + 128 (mod 256), so it is applied once per loaded byte (and, by the same
 * token, before the qh multiply by 3^k). */
ALWAYS_INLINE __m256i top_trits(__m256i s, __m256i t1, __m256i t2) {
    const __m256i c = _mm256_add_epi8(_mm256_cmpgt_epi8(s, t1), _mm256_cmpgt_epi8(s, t2));
    return _mm256_sub_epi8(_mm256_setzero_si256(), c);
}

ALWAYS_INLINE __m256i times3_256(__m256i b) {
    return _mm256_add_epi8(b, _mm256_add_epi8(b, b));
}

ALWAYS_INLINE __m128i times3_128(__m128i b) {
    return _mm_add_epi8(b, _mm_add_epi8(b, b));
}

/* TQ1_0 (layout as in unpack_tq1_0): digit k of byte b is the top trit of b * 3^k (mod 256).
 * qs[0..31] give values 32k + l, qs[32..47] values 160 + 16k + l and qh values 240 + 4k + l,
 * so the last 96 values are three 32-byte steps: planes 0|1, 2|3 and 4|qh. The 16 qh bytes
 * qh[l] * 3^k come from one 16-bit multiply of the four bytes zero-extended (in both lanes), their
 * low bytes gathered by one in-lane shuffle and one qword permute into the last step's high lane
 * (before: mask, extract, pack and insert). The qs[32..47] planes stay 128 bits wide: as fast as
 * a 256-bit chain here (Zen 4), half the micro-ops where 256-bit operations split (Zen 1). */
static float fdot_tq1_0(const void *row, const qt_mm_act *act, int64_t k) {
    const block_tq1_0 *x = row;
    const __m256i qh_pow3 = _mm256_setr_epi16(1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27);
    /* each lane's word low bytes to bytes 0-7 (low lane) and 8-15 (high lane) */
    const __m256i qh_pick = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, -1, -1, -1, -1, -1, -1,
                                             -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 2, 4, 6,
                                             8, 10, 12, 14);
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    /* the thresholds 85 and 170 (flipped), hidden from the compiler: it turns s > 85 - 128
     * into min + compare-equal, an instruction more on the busiest pipes (measured 8% on Zen 1) */
    __m256i t1 = _mm256_set1_epi8(85 - 128), t2 = _mm256_set1_epi8(170 - 128);
    __asm__("" : "+x"(t1), "+x"(t2));
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < k / QK_K; i++) {
        prefetch_ahead(&x[i], (int)sizeof x[i]);
        const int64_t j0 = QK_K * i;
        __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
        __m256i b = _mm256_xor_si256(load256(x[i].qs), flip);
        for (int s = 0; s < 5; s++, b = times3_256(b)) {
            const __m256i p = digit_products(top_trits(b, t1, t2), act, j0 + 32 * s);
            if (s & 1) {
                s1 = _mm256_add_epi16(s1, p);
            } else {
                s0 = _mm256_add_epi16(s0, p);
            }
        }
        __m128i t[5];
        t[0] = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(const void *)(x[i].qs + 32)),
                             _mm256_castsi256_si128(flip));
        for (int e = 1; e < 5; e++) {
            t[e] = times3_128(t[e - 1]);
        }
        /* qh in all four dwords by a broadcast load (GCC makes load + shuffle of set1_epi32) */
        const __m256i qhw = _mm256_mullo_epi16(
            _mm256_cvtepu8_epi16(_mm_xor_si128(
                _mm_castps_si128(_mm_broadcast_ss((const float *)(const void *)x[i].qh)),
                _mm256_castsi256_si128(flip))),
            qh_pow3);
        const __m256i qhb = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(qhw, qh_pick), 0xC0);
        const __m256i tail[3] = {_mm256_set_m128i(t[1], t[0]), _mm256_set_m128i(t[3], t[2]),
                                 _mm256_blend_epi32(_mm256_castsi128_si256(t[4]), qhb, 0xF0)};
        for (int s = 5; s < 8; s++) {
            const __m256i p = digit_products(top_trits(tail[s - 5], t1, t2), act, j0 + 32 * s);
            if (s & 1) {
                s1 = _mm256_add_epi16(s1, p);
            } else {
                s0 = _mm256_add_epi16(s0, p);
            }
        }
        acc = ternary_block(acc, _mm256_add_epi16(s0, s1), x[i].d, act, j0);
    }
    return hsum8(acc);
}

/* ---------------------------------------------------------------- float-storage GEMV
 * Exact path on F32 / F16 / BF16 rows: each weight converted exactly to float32 as it is
 * loaded (F16C for F16, a shift for BF16) and multiplied with x in float32, no decoded copy. */
enum { WF32, WF16, WBF16 };

ALWAYS_INLINE __m256 load_w8(const void *w, int64_t j, int kind) {
    if (kind == WF32) {
        return _mm256_loadu_ps((const float *)w + j);
    }
    const __m128i h = _mm_loadu_si128((const __m128i *)(const void *)((const uint16_t *)w + j));
    return kind == WF16 ? _mm256_cvtph_ps(h)
                        : _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

ALWAYS_INLINE float load_w1(const void *w, int64_t j, int kind) {
    if (kind == WF32) {
        return ((const float *)w)[j];
    }
    const uint16_t h = ((const uint16_t *)w)[j];
    if (kind == WF16) {
        return h2f(h);
    }
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* pf: prefetch weights PF_AHEAD bytes early. Measured on an AVX-512 EPYC at this level
 * (4096x4096 F16/BF16, one thread): with the 32 MiB of weights held by its 32 MiB L3 between
 * calls, the prefetches cost 9-20% (only issue slots, nothing to hide); streamed from memory
 * (4096x14336) they gain 8%. matmul.c picks the variant by weight size (fdot_float_cached). */
ALWAYS_INLINE float fdot_floats(const void *w, const float *x, int64_t k, int kind, int pf) {
    const int esize = kind == WF32 ? 4 : 2;
    __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
    int64_t j = 0;
    for (; j + 32 <= k; j += 32) {
        if (pf) {
            prefetch_ahead((const char *)w + j * esize, 32 * esize);
        }
        for (int q = 0; q < 4; q++) {
            a[q] = _mm256_fmadd_ps(load_w8(w, j + 8 * q, kind), _mm256_loadu_ps(x + j + 8 * q), a[q]);
        }
    }
    for (; j + 8 <= k; j += 8) {
        a[0] = _mm256_fmadd_ps(load_w8(w, j, kind), _mm256_loadu_ps(x + j), a[0]);
    }
    float total = hsum8(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])));
    for (; j < k; j++) {
        total += load_w1(w, j, kind) * x[j];
    }
    return total;
}

/* Four weight rows (stride bytes apart) against one x, k % 32 == 0: used once x outgrows L1
 * (matmul.c), where one row at a time reads x from L2 for every row. Row r starts 64 r values
 * in and wraps around, so the four streams (row strides are multiples of 4 KiB) do not meet in
 * the same L1 sets and touch x within a 1 KiB window that stays in L1. Each row's sum uses two
 * accumulators, eight chains in all, so the FMA latency is covered. */
ALWAYS_INLINE void fdot_floats4(const void *w, size_t stride, const float *x, int64_t k, int kind,
                                int pf, float *out) {
    const int esize = kind == WF32 ? 4 : 2;
    const uint8_t *rows[4];
    int64_t pos[4];
    __m256 a[8];
    for (int r = 0; r < 4; r++) {
        rows[r] = (const uint8_t *)w + (size_t)r * stride;
        pos[r] = (64 * r) % k;
        a[2 * r] = a[2 * r + 1] = _mm256_setzero_ps();
    }
    for (int64_t j = 0; j < k; j += 32) {
        for (int r = 0; r < 4; r++) {
            const int64_t p = pos[r];
            if (pf) {
                prefetch_ahead(rows[r] + p * esize, 32 * esize);
            }
            for (int q = 0; q < 4; q++) {
                a[2 * r + (q & 1)] = _mm256_fmadd_ps(load_w8(rows[r], p + 8 * q, kind),
                                                     _mm256_loadu_ps(x + p + 8 * q),
                                                     a[2 * r + (q & 1)]);
            }
            pos[r] = p + 32 == k ? 0 : p + 32;
        }
    }
    for (int r = 0; r < 4; r++) {
        out[r] = hsum8(_mm256_add_ps(a[2 * r], a[2 * r + 1]));
    }
}

FLOAT_FDOT_ENTRIES

void qt_mm_avx2_register(qt_matmul_table *t) {
    t->unpack[QT_T_TQ1_0] = unpack_tq1_0;
    t->unpack[QT_T_Q4_1] = unpack_q4_1;
    t->unpack[QT_T_Q5_0] = unpack_q5_0;
    t->unpack[QT_T_Q5_1] = unpack_q5_1;
    t->unpack[QT_T_MXFP4] = unpack_mxfp4;
    t->unpack[QT_T_IQ4_XS] = unpack_iq4_xs;
    t->unpack[QT_T_Q2_K] = unpack_q2_K;
    t->unpack[QT_T_Q3_K] = unpack_q3_K;
    t->unpack[QT_T_TQ2_0] = unpack_tq2_0;
    t->unpack[QT_T_Q4_0] = unpack_q4_0;
    t->unpack[QT_T_IQ4_NL] = unpack_iq4_nl;
    t->unpack[QT_T_Q8_0] = unpack_q8_0;
    t->unpack[QT_T_Q4_K] = unpack_q4_K;
    t->unpack[QT_T_Q5_K] = unpack_q5_K;
    t->unpack[QT_T_Q6_K] = unpack_q6_K;
    t->fdot[QT_T_Q4_0] = fdot_q4_0;
    t->fdot[QT_T_Q8_0] = fdot_q8_0;
    t->fdot[QT_T_Q4_K] = fdot_q4_K;
    t->fdot[QT_T_Q5_K] = fdot_q5_K;
    t->fdot[QT_T_Q2_K] = fdot_q2_K;
    t->fdot[QT_T_Q5_0] = fdot_q5_0;
    t->fdot[QT_T_Q4_1] = fdot_q4_1;
    t->fdot[QT_T_Q5_1] = fdot_q5_1;
    t->fdot[QT_T_IQ4_NL] = fdot_iq4_nl;
    t->fdot[QT_T_MXFP4] = fdot_mxfp4;
    t->fdot[QT_T_Q3_K] = fdot_q3_K;
    t->fdot[QT_T_IQ4_XS] = fdot_iq4_xs;
    t->fdot[QT_T_Q6_K] = fdot_q6_K;
    t->fdot[QT_T_TQ1_0] = fdot_tq1_0;
    t->fdot[QT_T_TQ2_0] = fdot_tq2_0;
    register_float_fdots(t);
    t->quantize_act = quantize_act_avx2;
    t->dot = dot_avx2;
    t->tile = tile_avx2;
    t->tile_small = tile_avx2_small;
    t->dot_f32 = dot_f32;
    t->tile_f32 = tile_f32;
}
