/* Scale searches shared by the K-quant, IQ4 and importance-weighted legacy quantizers.
 *
 * Each routine picks a scale (and for the asymmetric ones an offset) for one small group of
 * values and writes the integer levels it settled on. They reproduce ggml's choices bit for bit:
 * the candidate scales, the accumulation order of every sum and the tie-breaking comparisons are
 * the same, because a one-ulp difference in a running sum can flip which candidate wins. */
#ifndef QT_REF_QUANT_SEARCH_H
#define QT_REF_QUANT_SEARCH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Below this magnitude a group counts as all zeros. */
#define QT_GROUP_EPS 1e-15f

/* Round to nearest, ties to even, by adding 1.5 * 2^23 so the FPU's own rounding does the work
 * and the integer falls out of the low mantissa bits. Exact for |f| < 2^22; larger inputs give
 * the same (meaningless but deterministic) value that ggml computes. */
static inline int qt_nearest_int(float f) {
    const float biased = f + 12582912.0f;
    int32_t bits;
    memcpy(&bits, &biased, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

/* The value of largest magnitude (signed; the first one wins ties, NaNs never win) and that
 * magnitude in *amax: the symmetric searches scale their groups by it. */
static inline float qt_signed_peak(const float *x, int n, float *amax) {
    float a_best = 0.0f, peak = 0.0f;
    for (int i = 0; i < n; i++) {
        const float a = fabsf(x[i]);
        if (a > a_best) {
            a_best = a;
            peak = x[i];
        }
    }
    *amax = a_best;
    return peak;
}

/* Symmetric levels in [-nmax, nmax-1], stored offset by +nmax in L. Weight per element is qw[i]
 * when given, else a function of x chosen by rmse_type (1: x^2, 2: 1, 3: |x|, other: sqrt|x|).
 * rmse_type 0 skips the fit and returns 1/iscale. Returns the fitted scale. n <= 256. */
float qt_make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type,
                        const float *qw);

/* Q3_K's symmetric search with weights x^2 and a coordinate-descent refinement; L in [0, 2*nmax). */
float qt_make_q3_quants(int n, int nmax, const float *x, int8_t *L, int refine);

/* Asymmetric levels in [0, nmax] with offset: scans iscale = (rmin + rdelta*k + nmax)/(max-min)
 * for k = 0..nstep, fitting scale and min by weighted least squares and keeping the candidate with
 * the lowest weighted error (|e| if use_mad, else e^2). *neg_min receives -min (>= 0). */
float qt_make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                          float *neg_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                          int use_mad);

/* As qt_make_qkx2_quants, except that weights may be NULL (then x^2). Used by the
 * importance-matrix paths with their own search parameters. */
float qt_make_qkx3_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                          float *neg_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                          int use_mad);

/* Non-negative levels in [0, nmax] for non-negative x (the super-block scales of the K-quants),
 * weighted by qw: a scan of nine scales, then coordinate descent. */
float qt_make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *qw);

/* Index of the entry of the sorted 16-entry table closest to x; on an exact tie the larger
 * entry wins. Comparing 2x with the sum of neighbours keeps the decision exact. A NaN (which
 * ggml 0.25.3 meets when squared weights overflow) maps to the last entry, as its search does. */
static inline int qt_nearest_level16(const int8_t *table, float x) {
    const float x2 = x + x;
    int idx = 0;
    for (int step = 8; step > 0; step >>= 1) {
        const int probe = idx + step;
        if (!(x2 < (float)(table[probe - 1] + table[probe]))) {
            idx = probe;
        }
    }
    return idx;
}

/* Best scale for one 32-value group against the non-linear IQ4 table. The start is max/127 (or
 * -max/127 when ntry <= 0), refined by a weighted least-squares fit, then 2*ntry+1 more
 * candidates (k - 127)/max, k = -ntry..ntry, each refitted; the best fit wins. Returns 0 when the
 * group is all zeros. */
float qt_iq4_group_scale(const float *x, const float *weight, int ntry);

/* The 16 values of the non-linear 4-bit grid shared by IQ4_NL and IQ4_XS. */
extern const int8_t qt_iq4nl_values[16];


/* ---- batched searches: the same searches over many consecutive groups ----
 *
 * The per-group searches are chains of dependent float additions, so one group at a time leaves
 * the core waiting on latency. The quantizers hand whole runs of groups to these entry points;
 * the scalar table loops over groups, the SIMD levels give each vector lane its own group (each
 * lane keeps the scalar order of operations, so the bytes stay identical). Groups are
 * consecutive runs of n values of x (and of w when given); results are per group. */
typedef struct qt_search_ops {
    /* qt_make_qkx2_quants / qt_make_qkx3_quants asymmetric search; w is required. */
    void (*asym)(int ngroups, int n, int nmax, const float *x, const float *w, uint8_t *L,
                 float *scale, float *neg_min, float rmin, float rdelta, int nstep, int use_mad);
    /* qt_make_qx_quants with rmse_type 1; w NULL means x^2. L offset by +nmax. */
    void (*sym)(int ngroups, int n, int nmax, const float *x, const float *w, int8_t *L,
                float *scale);
    /* qt_make_q3_quants with refinement. L offset by +nmax. */
    void (*q3)(int ngroups, int n, int nmax, const float *x, int8_t *L, float *scale);
    /* qt_iq4_group_scale over 32-value groups with weights w. */
    void (*iq4)(int ngroups, const float *x, const float *w, int ntry, float *scale);
    /* Re-rounding against a decoded scale: L[i] = clamp(nearest_int(x[i] / d), lo, hi) + off
     * for n values; results must lie in 0..127. */
    void (*requant)(const float *x, int n, float d, int lo, int hi, int off, uint8_t *L);
} qt_search_ops;

/* One group at a time. */
extern const qt_search_ops qt_scalar_search_ops;

#endif /* QT_REF_QUANT_SEARCH_H */
