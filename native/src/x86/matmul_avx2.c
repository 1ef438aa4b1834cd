/* AVX2 matmul kernels. Without VNNI the 8-bit products go through maddubs, which takes an
 * unsigned and a signed operand and saturates pairs at 16 bits: feeding it |w| and a*sign(w)
 * keeps every pair within 2 * 128 * 127 < 32768, so the sums stay exact. */
#include <immintrin.h>

#include "../matmul.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

static inline int32_t load_i32(const void *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Eight int32 lanes, lane l = sum of the four products of values 4l..4l+3. */
ALWAYS_INLINE __m256i dot4(__m256i u, __m256i a) {
    const __m256i w = _mm256_xor_si256(u, _mm256_set1_epi8((char)0x80));
    const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(a, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

static float dot_avx2(const uint8_t *u, const float *s, const float *m, int has_min,
                      const qt_mm_act *act, int64_t k0, int64_t kc) {
    const int8_t *a = act->a + k0;
    const float *d4 = act->da4 + k0 / 4;
    /* Lane l of a 32-value step is group l/4 of the two groups it covers. */
    const __m256i rep4 = _mm256_set_epi32(1, 1, 1, 1, 0, 0, 0, 0);
    __m256 acc = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 32 <= kc; j += 32) {
        const __m256i p = dot4(_mm256_loadu_si256((const __m256i *)(const void *)(u + j)),
                               _mm256_loadu_si256((const __m256i *)(const void *)(a + j)));
        const __m256 sc = _mm256_permutevar8x32_ps(
            _mm256_castps128_ps256(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(const void *)(s + j / 16))))
            , rep4);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(sc, _mm256_loadu_ps(d4 + j / 4)),
                              acc);
    }
    float total = hsum8(acc);
    for (; j < kc; j += QT_MM_GROUP) {
        int32_t d = 0;
        for (int t = 0; t < QT_MM_GROUP; t++) d += ((int32_t)u[j + t] - 128) * a[j + t];
        total += (float)d * (s[j / 16] * d4[j / 4]);
    }
    if (has_min) {
        const float *sa = act->sa + k0 / 16;
        const int64_t ng = kc / QT_MM_GROUP;
        __m256 mac = _mm256_setzero_ps();
        int64_t g = 0;
        for (; g + 8 <= ng; g += 8) {
            mac = _mm256_fmadd_ps(_mm256_loadu_ps(m + g), _mm256_loadu_ps(sa + g), mac);
        }
        total += hsum8(mac);
        for (; g < ng; g++) total += m[g] * sa[g];
    }
    return total;
}

/* rb activation rows against one 16-row tile: lanes of lo are weight rows 0-7, hi 8-15. */
ALWAYS_INLINE void tile_rows(const uint8_t *tu, const float *ts, const float *tm, int has_min,
                             int64_t ng, const qt_mm_act *acts, const int rb, int64_t k0,
                             float *out) {
    __m256 flo[4], fhi[4];
    for (int r = 0; r < rb; r++) {
        flo[r] = _mm256_setzero_ps();
        fhi[r] = _mm256_setzero_ps();
    }
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t g = 0; g < ng; g++) {
        const uint8_t *wg = tu + g * 256;
        __m256i wabs[8], wsgn[8];
        for (int q = 0; q < 8; q++) {
            wsgn[q] = _mm256_xor_si256(_mm256_load_si256((const __m256i *)(const void *)(wg + 32 * q)), flip);
            wabs[q] = _mm256_abs_epi8(wsgn[q]);
        }
        const __m256 slo = _mm256_load_ps(ts + g * 16), shi = _mm256_load_ps(ts + g * 16 + 8);
        for (int r = 0; r < rb; r++) {
            const int8_t *a = acts[r].a + k0 + g * 16;
            __m256i lo = _mm256_set1_epi32(0), hi = _mm256_set1_epi32(0);
            for (int c = 0; c < 4; c++) {
                const __m256i av = _mm256_set1_epi32(load_i32(a + 4 * c));
                lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_maddubs_epi16(
                                              wabs[2 * c], _mm256_sign_epi8(av, wsgn[2 * c])), ones));
                hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_maddubs_epi16(
                                              wabs[2 * c + 1], _mm256_sign_epi8(av, wsgn[2 * c + 1])),
                                          ones));
            }
            const __m256 d = _mm256_set1_ps(acts[r].da[k0 / 16 + g]);
            flo[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo), _mm256_mul_ps(slo, d), flo[r]);
            fhi[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi), _mm256_mul_ps(shi, d), fhi[r]);
        }
        if (has_min) {
            const __m256 mlo = _mm256_load_ps(tm + g * 16), mhi = _mm256_load_ps(tm + g * 16 + 8);
            for (int r = 0; r < rb; r++) {
                const __m256 sa = _mm256_set1_ps(acts[r].sa[k0 / 16 + g]);
                flo[r] = _mm256_fmadd_ps(mlo, sa, flo[r]);
                fhi[r] = _mm256_fmadd_ps(mhi, sa, fhi[r]);
            }
        }
    }
    for (int r = 0; r < rb; r++) {
        float *o = out + r * QT_MM_TILE_ROWS;
        _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), flo[r]));
        _mm256_storeu_ps(o + 8, _mm256_add_ps(_mm256_loadu_ps(o + 8), fhi[r]));
    }
}

static void tile_avx2(const uint8_t *tu, const float *ts, const float *tm, int has_min,
                      int64_t kc, const qt_mm_act *acts, int64_t nrows, int64_t k0, float *out) {
    const int64_t ng = kc / QT_MM_GROUP;
    int64_t i = 0;
    for (; i + 4 <= nrows; i += 4) {
        tile_rows(tu, ts, tm, has_min, ng, acts + i, 4, k0, out + i * QT_MM_TILE_ROWS);
    }
    for (; i < nrows; i++) {
        tile_rows(tu, ts, tm, has_min, ng, acts + i, 1, k0, out + i * QT_MM_TILE_ROWS);
    }
}

static float dot_f32(const float *w, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 32 <= n; j += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j), _mm256_loadu_ps(x + j), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j + 8), _mm256_loadu_ps(x + j + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j + 16), _mm256_loadu_ps(x + j + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j + 24), _mm256_loadu_ps(x + j + 24), a3);
    }
    float total = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
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
    for (int r = 0; r < rb; r++) {
        float *o = out + r * QT_MM_TILE_ROWS;
        _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), lo[r]));
        _mm256_storeu_ps(o + 8, _mm256_add_ps(_mm256_loadu_ps(o + 8), hi[r]));
    }
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

void qt_mm_avx2_register(qt_matmul_table *t) {
    t->dot = dot_avx2;
    t->tile = tile_avx2;
    t->dot_f32 = dot_f32;
    t->tile_f32 = tile_f32;
}
