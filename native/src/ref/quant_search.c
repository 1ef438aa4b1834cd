/* Scale searches for the block quantizers (see quant_search.h for the contracts).
 *
 * The arithmetic is written out one operation at a time on purpose: ggml's files are only
 * reproducible when every product and running sum rounds exactly as it does there, so products
 * keep their left-to-right grouping ((w*x)*l, not w*(x*l)) and sums their element order. */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "quant_search.h"

#define QT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define QT_MAX(a, b) ((a) > (b) ? (a) : (b))

const int8_t qt_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                    1,    13,   25,  38,  53,  69,  89,  113};

/* Element weight for make_qx_quants when no importance weights are given. */
static inline float qx_weight(int rmse_type, float v) {
    switch (rmse_type) {
    case 1:
        return v * v;
    case 2:
        return 1.0f;
    case 3:
        return fabsf(v);
    default:
        return sqrtf(fabsf(v));
    }
}

/* Symmetric levels l = clamp(nearest(iscale * x), -nmax, nmax - 1), stored as l + off, and when
 * sumlx is given the fit's weighted sums sum(w*x*l) and sum(w*l*l) (w NULL: x^2), in element
 * order. Inlined into each search, so the NULL cases cost nothing. */
static inline __attribute__((always_inline)) void sym_levels(int n, int nmax, float iscale,
                                                             const float *x, const float *w,
                                                             int off, int8_t *L, float *sumlx,
                                                             float *suml2) {
    float slx = 0.0f, sl2 = 0.0f;
    for (int i = 0; i < n; i++) {
        const int l = QT_MAX(-nmax, QT_MIN(nmax - 1, qt_nearest_int(iscale * x[i])));
        L[i] = (int8_t)(l + off);
        if (sumlx) {
            const float wi = w ? w[i] : x[i] * x[i];
            slx += wi * x[i] * (float)l;
            sl2 += wi * (float)l * (float)l;
        }
    }
    if (sumlx) {
        *sumlx = slx;
        *suml2 = sl2;
    }
}

/* Coordinate descent on a fitted scale, at most 5 sweeps: each level in turn moves to the value
 * that best fits with the others fixed, clamped to [lo, hi], and the move stays when
 * sum(w*x*l)^2 / sum(w*l^2) grows. w NULL means x^2; L holds int8_t (is_signed) or uint8_t
 * levels. ggml's two searches differ in one test: qp skips an element whose remaining sum(w*l^2)
 * is not positive, Q3's instead requires the sum after the move to be positive. Always inlined,
 * so the flags fold away. */
static inline __attribute__((always_inline)) void refine_levels(int n, const float *x,
                                                                const float *w, int lo, int hi,
                                                                int qp_test, int is_signed,
                                                                void *L, float *sumlx,
                                                                float *suml2) {
    int8_t *Ls = L;
    uint8_t *Lu = L;
    float sx = *sumlx, s2 = *suml2;
    for (int sweep = 0; sweep < 5; sweep++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            const float wi = w ? w[i] : x[i] * x[i];
            const int li = is_signed ? Ls[i] : Lu[i];
            float slx = sx - wi * x[i] * (float)li;
            /* Q3's search only forms the remaining sum(w*l^2) for a positive slx */
            float sl2 = qp_test ? s2 - wi * (float)li * (float)li : 0.0f;
            if (slx > 0 && (!qp_test || sl2 > 0)) {
                if (!qp_test) {
                    sl2 = s2 - wi * (float)li * (float)li;
                }
                const int nl = QT_MAX(lo, QT_MIN(hi, qt_nearest_int(x[i] * sl2 / slx)));
                if (nl != li) {
                    slx += wi * x[i] * (float)nl;
                    sl2 += wi * (float)nl * (float)nl;
                    if ((qp_test || sl2 > 0) && slx * slx * s2 > sx * sx * sl2) {
                        if (is_signed) {
                            Ls[i] = (int8_t)nl;
                        } else {
                            Lu[i] = (uint8_t)nl;
                        }
                        sx = slx;
                        s2 = sl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed) {
            break;
        }
    }
    *sumlx = sx;
    *suml2 = s2;
}

float qt_make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type,
                        const float *qw) {
    float amax;
    const float peak = qt_signed_peak(x, n, &amax);
    if (amax < QT_GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = (float)(-nmax) / peak;
    if (rmse_type == 0) {
        sym_levels(n, nmax, iscale, x, NULL, nmax, L, NULL, NULL);
        return 1 / iscale;
    }
    const int early = rmse_type < 0;
    if (early) {
        rmse_type = -rmse_type;
    }
    /* Weights do not depend on the candidate scale: compute them once. */
    float w[256];
    for (int i = 0; i < n; i++) {
        w[i] = qw ? qw[i] : qx_weight(rmse_type, x[i]);
    }
    float sumlx, suml2;
    sym_levels(n, nmax, iscale, x, w, nmax, L, &sumlx, &suml2);
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    if (early) {
        return suml2 > 0 ? 0.5f * (scale + 1 / iscale) : 1 / iscale;
    }
    float best = scale * sumlx;
    int8_t cand[256];
    for (int k = -9; k <= 9; k++) {
        if (k == 0) {
            continue;
        }
        iscale = -((float)nmax + 0.1f * (float)k) / peak;
        sym_levels(n, nmax, iscale, x, w, 0, cand, &sumlx, &suml2);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                L[i] = (int8_t)(nmax + cand[i]);
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

float qt_make_q3_quants(int n, int nmax, const float *x, int8_t *L, int refine) {
    float amax;
    const float peak = qt_signed_peak(x, n, &amax);
    if (amax < QT_GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    const float iscale = (float)(-nmax) / peak;
    if (!refine) {
        sym_levels(n, nmax, iscale, x, NULL, nmax, L, NULL, NULL);
        return 1 / iscale;
    }
    float sumlx, suml2;
    sym_levels(n, nmax, iscale, x, NULL, 0, L, &sumlx, &suml2);
    refine_levels(n, x, NULL, -nmax, nmax - 1, 0, 1, L, &sumlx, &suml2);
    for (int i = 0; i < n; i++) {
        L[i] = (int8_t)(L[i] + nmax);
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Shared body of the two asymmetric searches. ggml 0.25.3 rounds the candidate levels before
 * clamping them in both (later ggml versions clamp first in qkx3; the two orders differ only
 * when a non-finite value reaches the rounding, and the golden vectors follow 0.25.3). */
static float asym_search(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                         float *neg_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                         int use_mad) {
    if (n < 1) {
        *neg_min = 0.0f;
        return 0.0f;
    }
    float own[256];
    const float *w = weights;
    if (w == NULL) {
        for (int i = 0; i < n; i++) {
            own[i] = x[i] * x[i];
        }
        w = own;
    }
    float lo = x[0], hi = x[0];
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (lo > 0) {
        lo = 0;
    }
    /* Never true for finite data (lo <= min <= max); false as well when a NaN is involved, in
     * which case ggml carries on with the search and so do we. */
    if (hi <= lo) {
        memset(L, 0, (size_t)n);
        *neg_min = -lo;
        return 0.0f;
    }
    float iscale = (float)nmax / (hi - lo);
    float scale = 1 / iscale;
    float best_err = 0.0f;
    for (int i = 0; i < n; i++) {
        const int l = qt_nearest_int(iscale * (x[i] - lo));
        L[i] = (uint8_t)QT_MAX(0, QT_MIN(nmax, l));
        float diff = scale * (float)L[i] + lo - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_err += w[i] * diff;
    }
    if (nstep < 1) {
        *neg_min = -lo;
        return scale;
    }
    for (int k = 0; k <= nstep; k++) {
        /* `lo` is the best offset so far, so the candidate grid moves as the search improves. */
        iscale = (rmin + rdelta * (float)k + (float)nmax) / (hi - lo);
        float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
        for (int i = 0; i < n; i++) {
            int l = qt_nearest_int(iscale * (x[i] - lo));
            l = QT_MAX(0, QT_MIN(nmax, l));
            Laux[i] = (uint8_t)l;
            const float fl = (float)l;
            sum_l += w[i] * fl;
            sum_l2 += w[i] * fl * fl;
            sum_xl += w[i] * fl * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0.0f;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                err += w[i] * diff;
            }
            if (err < best_err) {
                memcpy(L, Laux, (size_t)n);
                best_err = err;
                scale = this_scale;
                lo = this_min;
            }
        }
    }
    *neg_min = -lo;
    return scale;
}

float qt_make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                          float *neg_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                          int use_mad) {
    return asym_search(n, nmax, x, weights, L, neg_min, Laux, rmin, rdelta, nstep, use_mad);
}

float qt_make_qkx3_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                          float *neg_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                          int use_mad) {
    return asym_search(n, nmax, x, weights, L, neg_min, Laux, rmin, rdelta, nstep, use_mad);
}

float qt_make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *qw) {
    float peak = 0.0f;
    for (int i = 0; i < n; i++) {
        peak = QT_MAX(peak, x[i]);
    }
    if (peak < QT_GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = (float)nmax / peak;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)qt_nearest_int(iscale * x[i]);
    }
    const float scale0 = 1 / iscale;
    float best_mse = 0.0f;
    for (int i = 0; i < n; i++) {
        const float diff = x[i] - scale0 * (float)L[i];
        best_mse += qw[i] * diff * diff;
    }
    for (int k = -4; k <= 4; k++) {
        if (k == 0) {
            continue;
        }
        const float iscale_k = (0.1f * (float)k + (float)nmax) / peak;
        const float scale_k = 1 / iscale_k;
        float mse = 0.0f;
        for (int i = 0; i < n; i++) {
            const int l = QT_MIN(nmax, qt_nearest_int(iscale_k * x[i]));
            const float diff = x[i] - scale_k * (float)l;
            mse += qw[i] * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_k;
        }
    }
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        const int l = QT_MIN(nmax, qt_nearest_int(iscale * x[i]));
        L[i] = (uint8_t)l;
        sumlx += qw[i] * x[i] * (float)l;
        suml2 += qw[i] * (float)l * (float)l;
    }
    refine_levels(n, x, qw, INT_MIN, nmax, 1, 0, L, &sumlx, &suml2);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

float qt_iq4_group_scale(const float *x, const float *weight, int ntry) {
    const int8_t *tab = qt_iq4nl_values;
    float amax;
    const float peak = qt_signed_peak(x, 32, &amax);
    if (amax < QT_GROUP_EPS) {
        return 0.0f;
    }
    float d = ntry > 0 ? -peak / (float)tab[0] : peak / (float)tab[0];
    float id = 1 / d;
    float sumqx = 0.0f, sumq2 = 0.0f;
    for (int j = 0; j < 32; j++) {
        const float q = (float)tab[qt_nearest_level16(tab, id * x[j])];
        sumqx += weight[j] * q * x[j];
        sumq2 += weight[j] * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.0f;
    float best = d * sumqx;
    for (int k = -ntry; k <= ntry; k++) {
        id = (float)(k + tab[0]) / peak;
        sumqx = sumq2 = 0.0f;
        for (int j = 0; j < 32; j++) {
            const float q = (float)tab[qt_nearest_level16(tab, id * x[j])];
            sumqx += weight[j] * q * x[j];
            sumq2 += weight[j] * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

/* ---- scalar batched entry points ---- */

static void scalar_asym(int ngroups, int n, int nmax, const float *x, const float *w, uint8_t *L,
                        float *scale, float *neg_min, float rmin, float rdelta, int nstep,
                        int use_mad) {
    uint8_t Laux[256];
    for (int g = 0; g < ngroups; g++) {
        const size_t o = (size_t)g * (size_t)n;
        scale[g] = asym_search(n, nmax, x + o, w + o, L + o, &neg_min[g], Laux, rmin, rdelta,
                               nstep, use_mad);
    }
}

static void scalar_sym(int ngroups, int n, int nmax, const float *x, const float *w, int8_t *L,
                       float *scale) {
    for (int g = 0; g < ngroups; g++) {
        const size_t o = (size_t)g * (size_t)n;
        scale[g] = qt_make_qx_quants(n, nmax, x + o, L + o, 1, w ? w + o : NULL);
    }
}

static void scalar_q3(int ngroups, int n, int nmax, const float *x, int8_t *L, float *scale) {
    for (int g = 0; g < ngroups; g++) {
        const size_t o = (size_t)g * (size_t)n;
        scale[g] = qt_make_q3_quants(n, nmax, x + o, L + o, 1);
    }
}

static void scalar_iq4(int ngroups, const float *x, const float *w, int ntry, float *scale) {
    for (int g = 0; g < ngroups; g++) {
        scale[g] = qt_iq4_group_scale(x + 32 * g, w + 32 * g, ntry);
    }
}

static void scalar_requant(const float *x, int n, float d, int lo, int hi, int off, uint8_t *L) {
    for (int i = 0; i < n; i++) {
        int l = qt_nearest_int(x[i] / d);
        l = l < lo ? lo : l;
        l = l > hi ? hi : l;
        L[i] = (uint8_t)(l + off);
    }
}

const qt_search_ops qt_scalar_search_ops = {scalar_asym, scalar_sym, scalar_q3, scalar_iq4,
                                            scalar_requant};
