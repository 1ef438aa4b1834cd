/* Lane-parallel group searches for the K-quant and IQ4 quantizers, written once against a small
 * vector vocabulary that x86/kquants_avx2.c (8 lanes), x86/kquants_avx512.c (16 lanes) and
 * arm/kquants_neon.c (4 lanes) define before including this file.
 *
 * Each lane runs one group's search from quant_search.c: the same candidates, the same
 * products grouped the same way, every running sum accumulated in the same element order. The
 * only thing that changes is that W groups advance together, so the long chains of dependent
 * additions of W groups overlap instead of running one after another. Branches of the scalar
 * code become per-lane masks; work a lane would have skipped is computed and then discarded,
 * which cannot change the lanes that keep it. No fused multiply-add is used anywhere (the build
 * passes -ffp-contract=off), so every rounding matches the scalar code.
 *
 * Required before inclusion: W, LANE_FN(name), types vf/vi/vm, and the VF_ / VI_ / VM_ macros
 * used below. */

#define LANE_MAXN 32 /* longest group handled here (Q4_K/Q5_K/IQ4 sub-blocks) */

/* ggml's round-half-even via the 1.5 * 2^23 bias, lane by lane. */
static inline vi LANE_FN(nint)(vf v) {
    const vi bits = VF_AS_VI(VF_ADD(v, VF_SET1(12582912.0f)));
    return VI_SUB(VI_AND(bits, VI_SET1(0x007fffff)), VI_SET1(0x00400000));
}

/* The same rounding for |v| < 2^22, where the bias trick is exact: round to nearest even (fixed
 * by the instruction, not the MXCSR mode) and clamp, all in float. Only used where the inputs
 * are known to be in range; the bias trick's wrap-around for larger inputs is kept elsewhere. */
static inline vf LANE_FN(levels)(vf v, float lo, float hi) {
    return VF_MAX(VF_MIN(VF_ROUND(v), VF_SET1(hi)), VF_SET1(lo));
}

static inline vi LANE_FN(clampi)(vi v, int lo, int hi) {
    return VI_MIN(VI_MAX(v, VI_SET1(lo)), VI_SET1(hi));
}

/* Clamped levels of v: float rounding when `exact` (v known finite and in range), else the bias
 * trick exactly as the reference computes it. */
static inline vf LANE_FN(levels_if)(vf v, int exact, int lo, int hi) {
    return exact ? LANE_FN(levels)(v, (float)lo, (float)hi)
                 : VI_TO_VF(LANE_FN(clampi)(LANE_FN(nint)(v), lo, hi));
}

static inline vf LANE_FN(neg)(vf v) {
    return VF_XOR(v, VF_SET1(-0.0f));
}

/* Copy W groups of n values (group g at src + g*n; only `count` exist, the rest read as 0) into
 * element-major order dst[i*W + g]. */
static void LANE_FN(gather)(const float *src, int n, int count, float *dst) {
#ifdef LANE_TRANSPOSE
    /* Optional per-level hook: W x W tiles transposed in registers. */
    if (n % W == 0) {
        for (int b = 0; b < n; b += W) {
            vf r[W];
            for (int g = 0; g < W; g++) {
                r[g] = g < count ? VF_LOADU(src + (size_t)g * (size_t)n + b) : VF_ZERO();
            }
            LANE_TRANSPOSE(r);
            for (int i = 0; i < W; i++) VF_STORE(dst + (size_t)(b + i) * W, r[i]);
        }
        return;
    }
#endif
    for (int g = 0; g < W; g++) {
        if (g < count) {
            const float *s = src + (size_t)g * (size_t)n;
            for (int i = 0; i < n; i++) dst[i * W + g] = s[i];
        } else {
            for (int i = 0; i < n; i++) dst[i * W + g] = 0.0f;
        }
    }
}

/* Signed value of the largest magnitude per lane (first one on ties) and that magnitude. */
static inline void LANE_FN(peak)(const float *xt, int n, vf *amax_out, vf *peak_out) {
    vf amax = VF_ZERO(), peak = VF_ZERO();
    for (int i = 0; i < n; i++) {
        const vf xi = VF_LOAD(xt + i * W);
        const vf a = VF_ABS(xi);
        const vm gt = VF_GT(a, amax);
        amax = VF_BLEND(gt, a, amax);
        peak = VF_BLEND(gt, xi, peak);
    }
    *amax_out = amax;
    *peak_out = peak;
}

/* True when every value of the transposed batch is finite. Rounding in float only matches the
 * bias trick on finite inputs (a NaN or infinite value makes the trick return payload bits), so
 * batches holding anything else take the trick path throughout. */
static inline int LANE_FN(all_finite)(const float *xt, int n) {
    vm bad = VM_NONE(); /* |x| not below infinity: infinite or NaN */
    for (int i = 0; i < n; i++) {
        bad = VM_OR(bad, VF_NLT(VF_ABS(VF_LOAD(xt + i * W)), VF_SET1(INFINITY)));
    }
    return !VM_ANY(bad);
}

/* ------------------------------------------------------------ asymmetric (qkx2 / qkx3) */

/* True when iscale*(x - lo) stays inside (-2^22, 2^22) for every x in [xmin, hi] of every live
 * lane (NaN fails), so that float rounding equals the bias trick. The product is monotone in x,
 * so the two ends decide. */
static inline int LANE_FN(in_range)(vf iscale, vf xmin, vf lo, vf hi, vm live) {
    const vf vmin = VF_MUL(iscale, VF_SUB(xmin, lo));
    const vf vmax = VF_MUL(iscale, VF_SUB(hi, lo));
    const vm ok = VM_AND(VF_GT(vmin, VF_SET1(-4194303.0f)), VF_LT(vmax, VF_SET1(4194303.0f)));
    return !VM_ANY(VM_AND(live, VM_NOT(ok)));
}

/* ASYM_U independent batches advance together: each candidate is a chain of dependent steps
 * (sums, solve, error sum, then the next scale depends on the offset just chosen), so a second
 * batch's chain fills the gaps. xt/wt hold ASYM_U transposed batches one after another. */
#ifndef ASYM_U
#define ASYM_U 2
#endif
static void LANE_FN(asym_core)(const float *xt0, const float *wt0, int n, int nmax, float rmin,
                               float rdelta, int nstep, int use_mad, vf (*Lf)[LANE_MAXN],
                               vf *scale_out, vf *negmin_out) {
    vf Laux[ASYM_U][LANE_MAXN];
    const vf zero = VF_ZERO();
    const vf fmax = VF_SET1((float)nmax);
    const float *xt[ASYM_U], *wt[ASYM_U];
    vf lo[ASYM_U], hi[ASYM_U], xmin[ASYM_U], sum_w[ASYM_U], sum_x[ASYM_U];
    vf scale[ASYM_U], best[ASYM_U];
    vm live[ASYM_U];
    int finite[ASYM_U];
    for (int u = 0; u < ASYM_U; u++) {
        xt[u] = xt0 + (size_t)u * (size_t)n * W;
        wt[u] = wt0 + (size_t)u * (size_t)n * W;
        finite[u] = LANE_FN(all_finite)(xt[u], n);
        lo[u] = hi[u] = VF_LOAD(xt[u]);
        sum_w[u] = VF_LOAD(wt[u]);
        sum_x[u] = VF_MUL(sum_w[u], lo[u]);
        for (int i = 1; i < n; i++) {
            const vf xi = VF_LOAD(xt[u] + i * W), wi = VF_LOAD(wt[u] + i * W);
            lo[u] = VF_BLEND(VF_LT(xi, lo[u]), xi, lo[u]);
            hi[u] = VF_BLEND(VF_GT(xi, hi[u]), xi, hi[u]);
            sum_w[u] = VF_ADD(sum_w[u], wi);
            sum_x[u] = VF_ADD(sum_x[u], VF_MUL(wi, xi));
        }
        /* The data minimum bounds iscale*(x - lo) from below for the range guard. */
        xmin[u] = lo[u];
        lo[u] = VF_BLEND(VF_GT(lo[u], zero), zero, lo[u]);
        /* Lanes whose group is not flat; NaN groups are searched too, as in the reference. */
        live[u] = VF_NLE(hi[u], lo[u]);
        const vf iscale = VF_DIV(fmax, VF_SUB(hi[u], lo[u]));
        scale[u] = VF_DIV(VF_SET1(1.0f), iscale);
        best[u] = zero;
        /* lo <= x <= hi here, so iscale*(x - lo) lies in [0, nmax] unless hi - lo is so small
         * that iscale overflowed. */
        const int exact0 =
            finite[u] && LANE_FN(in_range)(iscale, xmin[u], lo[u], hi[u], live[u]);
        for (int i = 0; i < n; i++) {
            const vf xi = VF_LOAD(xt[u] + i * W), wi = VF_LOAD(wt[u] + i * W);
            const vf v = VF_MUL(iscale, VF_SUB(xi, lo[u]));
            const vf fl = exact0 ? LANE_FN(levels)(v, 0.0f, (float)nmax)
                                 : VI_TO_VF(LANE_FN(clampi)(LANE_FN(nint)(v), 0, nmax));
            Lf[u][i] = fl;
            vf diff = VF_SUB(VF_ADD(VF_MUL(scale[u], fl), lo[u]), xi);
            diff = use_mad ? VF_ABS(diff) : VF_MUL(diff, diff);
            best[u] = VF_ADD(best[u], VF_MUL(wi, diff));
        }
    }
    for (int k = 0; nstep >= 1 && k <= nstep; k++) {
        const float num = rmin + rdelta * (float)k + (float)nmax;
        vf iscale[ASYM_U], sl[ASYM_U], sl2[ASYM_U], sxl[ASYM_U];
        int exact_range[ASYM_U];
        for (int u = 0; u < ASYM_U; u++) {
            iscale[u] = VF_DIV(VF_SET1(num), VF_SUB(hi[u], lo[u]));
            sl[u] = sl2[u] = sxl[u] = zero;
            /* Once lo has moved to a fitted offset, x - lo can be negative and, if lo sits close
             * to hi, iscale*(x - lo) can leave the range where rounding in float equals ggml's
             * bias trick. The products are monotone in x, so the lane's extremes decide. */
            exact_range[u] =
                finite[u] && LANE_FN(in_range)(iscale[u], xmin[u], lo[u], hi[u], live[u]);
        }
        for (int i = 0; i < n; i++) {
            for (int u = 0; u < ASYM_U; u++) {
                const vf xi = VF_LOAD(xt[u] + i * W), wi = VF_LOAD(wt[u] + i * W);
                const vf v = VF_MUL(iscale[u], VF_SUB(xi, lo[u]));
                const vf fl = exact_range[u]
                                  ? LANE_FN(levels)(v, 0.0f, (float)nmax)
                                  : VI_TO_VF(LANE_FN(clampi)(LANE_FN(nint)(v), 0, nmax));
                Laux[u][i] = fl;
                const vf wl = VF_MUL(wi, fl);
                sl[u] = VF_ADD(sl[u], wl);
                sl2[u] = VF_ADD(sl2[u], VF_MUL(wl, fl));
                sxl[u] = VF_ADD(sxl[u], VF_MUL(wl, xi));
            }
        }
        vm okD[ASYM_U];
        vf ts[ASYM_U], tm[ASYM_U], err[ASYM_U];
        int any = 0;
        for (int u = 0; u < ASYM_U; u++) {
            const vf D = VF_SUB(VF_MUL(sum_w[u], sl2[u]), VF_MUL(sl[u], sl[u]));
            okD[u] = VM_AND(VF_GT(D, zero), live[u]);
            any |= VM_ANY(okD[u]);
            ts[u] = VF_DIV(VF_SUB(VF_MUL(sum_w[u], sxl[u]), VF_MUL(sum_x[u], sl[u])), D);
            tm[u] = VF_DIV(VF_SUB(VF_MUL(sl2[u], sum_x[u]), VF_MUL(sl[u], sxl[u])), D);
            const vm pos = VF_GT(tm[u], zero);
            tm[u] = VF_BLEND(pos, zero, tm[u]);
            ts[u] = VF_BLEND(pos, VF_DIV(sxl[u], sl2[u]), ts[u]);
            err[u] = zero;
        }
        if (!any) {
            continue;
        }
        for (int i = 0; i < n; i++) {
            for (int u = 0; u < ASYM_U; u++) {
                const vf xi = VF_LOAD(xt[u] + i * W), wi = VF_LOAD(wt[u] + i * W);
                vf diff = VF_SUB(VF_ADD(VF_MUL(ts[u], Laux[u][i]), tm[u]), xi);
                diff = use_mad ? VF_ABS(diff) : VF_MUL(diff, diff);
                err[u] = VF_ADD(err[u], VF_MUL(wi, diff));
            }
        }
        for (int u = 0; u < ASYM_U; u++) {
            const vm better = VM_AND(okD[u], VF_LT(err[u], best[u]));
            if (!VM_ANY(better)) {
                continue;
            }
            for (int i = 0; i < n; i++) {
                Lf[u][i] = VF_BLEND(better, Laux[u][i], Lf[u][i]);
            }
            best[u] = VF_BLEND(better, err[u], best[u]);
            scale[u] = VF_BLEND(better, ts[u], scale[u]);
            lo[u] = VF_BLEND(better, tm[u], lo[u]);
        }
    }
    for (int u = 0; u < ASYM_U; u++) {
        for (int i = 0; i < n; i++) {
            Lf[u][i] = VF_BLEND(live[u], Lf[u][i], zero);
        }
        scale_out[u] = VF_BLEND(live[u], scale[u], zero);
        negmin_out[u] = LANE_FN(neg)(lo[u]);
    }
}

static void LANE_FN(asym)(int ngroups, int n, int nmax, const float *x, const float *w,
                          uint8_t *L, float *scale, float *neg_min, float rmin, float rdelta,
                          int nstep, int use_mad) {
    if (n > LANE_MAXN) {
        qt_scalar_search_ops.asym(ngroups, n, nmax, x, w, L, scale, neg_min, rmin, rdelta, nstep,
                                  use_mad);
        return;
    }
    float xt[ASYM_U * LANE_MAXN * W] __attribute__((aligned(64)));
    float wt[ASYM_U * LANE_MAXN * W] __attribute__((aligned(64)));
    float lt[LANE_MAXN * W] __attribute__((aligned(64)));
    float st[W] __attribute__((aligned(64))), mt[W] __attribute__((aligned(64)));
    vf Lf[ASYM_U][LANE_MAXN], s[ASYM_U], m[ASYM_U];
    for (int g0 = 0; g0 < ngroups; g0 += ASYM_U * W) {
        const int count = ngroups - g0 < ASYM_U * W ? ngroups - g0 : ASYM_U * W;
        for (int u = 0; u < ASYM_U; u++) {
            const int cu = count - u * W;
            const int cnt = cu < 0 ? 0 : (cu > W ? W : cu);
            const size_t off = (size_t)(g0 + u * W) * (size_t)n;
            LANE_FN(gather)(x + (cnt ? off : 0), n, cnt, xt + (size_t)u * (size_t)n * W);
            LANE_FN(gather)(w + (cnt ? off : 0), n, cnt, wt + (size_t)u * (size_t)n * W);
        }
        LANE_FN(asym_core)(xt, wt, n, nmax, rmin, rdelta, nstep, use_mad, Lf, s, m);
        for (int u = 0; u * W < count; u++) {
            VF_STORE(st, s[u]);
            VF_STORE(mt, m[u]);
            for (int i = 0; i < n; i++) VF_STORE(lt + i * W, Lf[u][i]);
            for (int g = 0; g < W && u * W + g < count; g++) {
                const int gg = g0 + u * W + g;
                scale[gg] = st[g];
                neg_min[gg] = mt[g];
                uint8_t *Lg = L + (size_t)gg * (size_t)n;
                for (int i = 0; i < n; i++) Lg[i] = (uint8_t)(int)lt[i * W + g];
            }
        }
    }
}

/* ------------------------------------------------------------ symmetric (qx, rmse_type 1) */

#define SYM_P 3 /* divides the 18 candidates */
static void LANE_FN(sym_core)(const float *xt, const float *wt, int n, int nmax, vf *Lf,
                              vf *scale_out) {
    const vf zero = VF_ZERO();
    vf amax, peak;
    LANE_FN(peak)(xt, n, &amax, &peak);
    const vm live = VM_NOT(VF_LT(amax, VF_SET1(QT_GROUP_EPS)));
    /* |iscale * x| <= nmax + 1 for every candidate (peak has the largest magnitude), so the
     * levels can be rounded in float when the batch is finite. w and w*x do not depend on the
     * candidate. */
    const int fin = LANE_FN(all_finite)(xt, n);
    vf wv[LANE_MAXN], wxv[LANE_MAXN];
    for (int i = 0; i < n; i++) {
        const vf xi = VF_LOAD(xt + i * W);
        wv[i] = wt ? VF_LOAD(wt + i * W) : VF_MUL(xi, xi);
        wxv[i] = VF_MUL(wv[i], xi);
    }
    const vf iscale = VF_DIV(VF_SET1((float)(-nmax)), peak);
    vf sumlx = zero, suml2 = zero;
    for (int i = 0; i < n; i++) {
        const vf xi = VF_LOAD(xt + i * W);
        const vf fl = LANE_FN(levels_if)(VF_MUL(iscale, xi), fin, -nmax, nmax - 1);
        Lf[i] = fl;
        sumlx = VF_ADD(sumlx, VF_MUL(wxv[i], fl));
        suml2 = VF_ADD(suml2, VF_MUL(VF_MUL(wv[i], fl), fl));
    }
    vf scale = VF_BLEND(VF_NEQ(suml2, zero), VF_DIV(sumlx, suml2), zero);
    vf best = VF_MUL(scale, sumlx);
    /* The 18 candidate scales only depend on each other through the running best, so their
     * sums are computed SYM_P at a time (independent chains for the core to overlap) and the
     * comparisons are then applied in the reference's order. */
    static const int ks[18] = {-9, -8, -7, -6, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    vf cands[SYM_P][LANE_MAXN];
    for (int p = 0; p < 18; p += SYM_P) {
        vf is[SYM_P], slx[SYM_P], sl2[SYM_P];
        for (int h = 0; h < SYM_P; h++) {
            is[h] = VF_DIV(VF_SET1(-((float)nmax + 0.1f * (float)ks[p + h])), peak);
            slx[h] = sl2[h] = zero;
        }
        for (int i = 0; i < n; i++) {
            const vf xi = VF_LOAD(xt + i * W);
            for (int h = 0; h < SYM_P; h++) {
                const vf f = LANE_FN(levels_if)(VF_MUL(is[h], xi), fin, -nmax, nmax - 1);
                cands[h][i] = f;
                slx[h] = VF_ADD(slx[h], VF_MUL(wxv[i], f));
                sl2[h] = VF_ADD(sl2[h], VF_MUL(VF_MUL(wv[i], f), f));
            }
        }
        for (int h = 0; h < SYM_P; h++) {
            const vm better = VM_AND(VM_AND(VF_GT(sl2[h], zero),
                                            VF_GT(VF_MUL(slx[h], slx[h]), VF_MUL(best, sl2[h]))),
                                     live);
            if (!VM_ANY(better)) {
                continue;
            }
            for (int i = 0; i < n; i++) {
                Lf[i] = VF_BLEND(better, cands[h][i], Lf[i]);
            }
            scale = VF_BLEND(better, VF_DIV(slx[h], sl2[h]), scale);
            best = VF_BLEND(better, VF_MUL(scale, slx[h]), best);
        }
    }
    const vf off = VF_SET1((float)nmax);
    for (int i = 0; i < n; i++) {
        Lf[i] = VF_BLEND(live, VF_ADD(Lf[i], off), zero);
    }
    *scale_out = VF_BLEND(live, scale, zero);
}

/* Q3_K's search: weights x^2, then up to five sweeps of single-level moves. Each move depends
 * on the sums left by the previous element, a long chain of dependent operations, so two
 * independent batches (Q3_U of them) are interleaved to keep the core busy. xt holds U transposed
 * batches of n values one after another; Lf[u*LANE_MAXN + i] receives batch u's levels. */
#ifndef Q3_U
#define Q3_U 4
#endif
static void LANE_FN(q3_core)(const float *xt, int n, int nmax, vf *Lf, vf *scale_out) {
    const vf zero = VF_ZERO();
    vm live[Q3_U];
    vf sumlx[Q3_U], suml2[Q3_U];
    vf wv[Q3_U][LANE_MAXN], wxv[Q3_U][LANE_MAXN];
    for (int u = 0; u < Q3_U; u++) {
        const float *xu = xt + (size_t)u * (size_t)n * W;
        vf *Lu = Lf + u * LANE_MAXN;
        vf amax, peak;
        LANE_FN(peak)(xu, n, &amax, &peak);
        live[u] = VM_NOT(VF_LT(amax, VF_SET1(QT_GROUP_EPS)));
        const vf iscale = VF_DIV(VF_SET1((float)(-nmax)), peak);
        const int fin = LANE_FN(all_finite)(xu, n);
        sumlx[u] = suml2[u] = zero;
        for (int i = 0; i < n; i++) {
            const vf xi = VF_LOAD(xu + i * W);
            const vf fl = LANE_FN(levels_if)(VF_MUL(iscale, xi), fin, -nmax, nmax - 1);
            Lu[i] = fl;
            wv[u][i] = VF_MUL(xi, xi);
            wxv[u][i] = VF_MUL(wv[u][i], xi);
            sumlx[u] = VF_ADD(sumlx[u], VF_MUL(wxv[u][i], fl));
            suml2[u] = VF_ADD(suml2[u], VF_MUL(VF_MUL(wv[u][i], fl), fl));
        }
    }
    /* A lane whose sweep changes nothing would change nothing in any later sweep either, so
     * sweeping on while other lanes still move leaves it exactly as the scalar code does; and
     * a batch none of whose live lanes moved in a sweep can sit out the remaining ones. */
    int active[Q3_U];
    for (int u = 0; u < Q3_U; u++) active[u] = 1;
    for (int sweep = 0; sweep < 5; sweep++) {
        vm moved[Q3_U];
        for (int u = 0; u < Q3_U; u++) moved[u] = VM_NONE();
        for (int i = 0; i < n; i++) {
            for (int u = 0; u < Q3_U; u++) {
                if (!active[u]) continue;
                vf *Lu = Lf + u * LANE_MAXN;
                const vf xi = VF_LOAD(xt + (size_t)u * (size_t)n * W + i * W);
                const vf wi = wv[u][i], wx = wxv[u][i];
                const vf slx = VF_SUB(sumlx[u], VF_MUL(wx, Lu[i]));
                const vf sl2 = VF_SUB(suml2[u], VF_MUL(VF_MUL(wi, Lu[i]), Lu[i]));
                const vf fnl = VI_TO_VF(LANE_FN(clampi)(
                    LANE_FN(nint)(VF_DIV(VF_MUL(xi, sl2), slx)), -nmax, nmax - 1));
                const vf slx2 = VF_ADD(slx, VF_MUL(wx, fnl));
                const vf sl22 = VF_ADD(sl2, VF_MUL(VF_MUL(wi, fnl), fnl));
                vm acc = VM_AND(VF_GT(slx, zero), VF_NEQ(fnl, Lu[i]));
                acc = VM_AND(acc, VF_GT(sl22, zero));
                acc = VM_AND(acc, VF_GT(VF_MUL(VF_MUL(slx2, slx2), suml2[u]),
                                        VF_MUL(VF_MUL(sumlx[u], sumlx[u]), sl22)));
                Lu[i] = VF_BLEND(acc, fnl, Lu[i]);
                sumlx[u] = VF_BLEND(acc, slx2, sumlx[u]);
                suml2[u] = VF_BLEND(acc, sl22, suml2[u]);
                moved[u] = VM_OR(moved[u], VM_AND(acc, live[u]));
            }
        }
        int any = 0;
        for (int u = 0; u < Q3_U; u++) {
            active[u] = active[u] && VM_ANY(moved[u]);
            any |= active[u];
        }
        if (!any) {
            break;
        }
    }
    const vf off = VF_SET1((float)nmax);
    for (int u = 0; u < Q3_U; u++) {
        vf *Lu = Lf + u * LANE_MAXN;
        for (int i = 0; i < n; i++) {
            Lu[i] = VF_BLEND(live[u], VF_ADD(Lu[i], off), zero);
        }
        scale_out[u] = VF_BLEND(VM_AND(live[u], VF_GT(suml2[u], zero)),
                                VF_DIV(sumlx[u], suml2[u]), zero);
    }
}

/* Drives sym_core (w may be NULL) or q3_core over batches of W groups (q3_core takes Q3_U
 * batches per call; missing groups are zeros and their results are dropped). */
static void LANE_FN(sym_batches)(int ngroups, int n, int nmax, const float *x, const float *w,
                                 int8_t *L, float *scale, int q3) {
    float xt[Q3_U * LANE_MAXN * W] __attribute__((aligned(64)));
    float wt[LANE_MAXN * W] __attribute__((aligned(64)));
    float lt[LANE_MAXN * W] __attribute__((aligned(64)));
    float st[W] __attribute__((aligned(64)));
    vf Lf[Q3_U * LANE_MAXN], s[Q3_U];
    const int per_call = q3 ? Q3_U * W : W;
    for (int g0 = 0; g0 < ngroups; g0 += per_call) {
        const int count = ngroups - g0 < per_call ? ngroups - g0 : per_call;
        if (q3) {
            for (int u = 0; u < Q3_U; u++) {
                const int cu = count - u * W;
                LANE_FN(gather)(x + (size_t)(g0 + u * W) * (size_t)n, n,
                                cu < 0 ? 0 : (cu > W ? W : cu), xt + (size_t)u * (size_t)n * W);
            }
            LANE_FN(q3_core)(xt, n, nmax, Lf, s);
        } else {
            LANE_FN(gather)(x + (size_t)g0 * (size_t)n, n, count, xt);
            if (w) {
                LANE_FN(gather)(w + (size_t)g0 * (size_t)n, n, count, wt);
            }
            LANE_FN(sym_core)(xt, w ? wt : NULL, n, nmax, Lf, &s[0]);
        }
        for (int u = 0; u * W < count; u++) {
            const int cu = count - u * W < W ? count - u * W : W;
#ifdef LANE_TRANSPOSE
            if (n % W == 0) {
                VF_STORE(st, s[u]);
                for (int g = 0; g < cu; g++) scale[g0 + u * W + g] = st[g];
                for (int b = 0; b < n; b += W) {
                    vf r[W];
                    for (int i = 0; i < W; i++) r[i] = Lf[u * LANE_MAXN + b + i];
                    LANE_TRANSPOSE(r);
                    for (int g = 0; g < cu; g++) {
                        LANE_STORE_LEVELS(L + (size_t)(g0 + u * W + g) * (size_t)n + b, r[g]);
                    }
                }
                continue;
            }
#endif
            VF_STORE(st, s[u]);
            for (int i = 0; i < n; i++) VF_STORE(lt + i * W, Lf[u * LANE_MAXN + i]);
            for (int g = 0; g < cu; g++) {
                const int gg = g0 + u * W + g;
                scale[gg] = st[g];
                int8_t *Lg = L + (size_t)gg * (size_t)n;
                for (int i = 0; i < n; i++) Lg[i] = (int8_t)(int)lt[i * W + g];
            }
        }
    }
}

/* Any NaN or infinity among count values. */
static int LANE_FN(any_nonfinite)(const float *x, int64_t count) {
    for (int64_t i = 0; i < count; i++) {
        if ((qt_f32_bits(x[i]) & 0x7f800000u) == 0x7f800000u) return 1;
    }
    return 0;
}

static void LANE_FN(sym)(int ngroups, int n, int nmax, const float *x, const float *w, int8_t *L,
                         float *scale) {
    /* Non-finite input goes to the reference: where two NaNs with different payloads meet in
     * one group's sums, which payload survives a commutative add or multiply is the compiler's
     * choice (GCC commutes them freely), and Q6_K turns that payload into scale bytes. The
     * emulated AVX-512 level showed it (12 Q6_K rows of test_codecs at -O3, none at -O0). */
    if (n > LANE_MAXN || LANE_FN(any_nonfinite)(x, (int64_t)ngroups * n)) {
        qt_scalar_search_ops.sym(ngroups, n, nmax, x, w, L, scale);
        return;
    }
    LANE_FN(sym_batches)(ngroups, n, nmax, x, w, L, scale, 0);
}

static void LANE_FN(q3)(int ngroups, int n, int nmax, const float *x, int8_t *L, float *scale) {
    if (n > LANE_MAXN) {
        qt_scalar_search_ops.q3(ngroups, n, nmax, x, L, scale);
        return;
    }
    LANE_FN(sym_batches)(ngroups, n, nmax, x, NULL, L, scale, 1);
}

/* ------------------------------------------------------------ IQ4 non-linear grid */

/* Per lane: the IQ4 table entry nearest to v (ties to the larger), as its value. */
static inline vf LANE_FN(iq4_level)(vf v, const vf *thr, const vf *val) {
    const vf v2 = VF_ADD(v, v);
    vi idx = VI_SET1(0);
    for (int step = 8; step > 0; step >>= 1) {
        const vi probe = VI_ADD(idx, VI_SET1(step));
        const vm ge = VF_NLT(v2, VF_LOOKUP16(thr, probe)); /* NaN moves up, as in scalar */
        idx = VI_BLEND(ge, probe, idx);
    }
    return VF_LOOKUP16(val, idx);
}

/* Per lane, over a 32-value group at inverse scale id: sum w q x and sum w q q, q its levels. */
static inline void LANE_FN(iq4_sums)(const float *xt, const float *wt, vf id, const vf *thr,
                                     const vf *val, vf *sumqx_out, vf *sumq2_out) {
    vf sumqx = VF_ZERO(), sumq2 = VF_ZERO();
    for (int j = 0; j < 32; j++) {
        const vf xj = VF_LOAD(xt + j * W), wj = VF_LOAD(wt + j * W);
        const vf q = LANE_FN(iq4_level)(VF_MUL(id, xj), thr, val);
        const vf wq = VF_MUL(wj, q);
        sumqx = VF_ADD(sumqx, VF_MUL(wq, xj));
        sumq2 = VF_ADD(sumq2, VF_MUL(wq, q));
    }
    *sumqx_out = sumqx;
    *sumq2_out = sumq2;
}

static void LANE_FN(iq4)(int ngroups, const float *x, const float *w, int ntry, float *scale) {
    float xt[32 * W] __attribute__((aligned(64)));
    float wt[32 * W] __attribute__((aligned(64)));
    float st[W] __attribute__((aligned(64)));
    float thr_s[16] __attribute__((aligned(64))), val_s[16] __attribute__((aligned(64)));
    const int8_t *tab = qt_iq4nl_values;
    for (int p = 0; p < 16; p++) {
        val_s[p] = (float)tab[p];
        thr_s[p] = p ? (float)(tab[p - 1] + tab[p]) : 0.0f;
    }
    vf thr[16 / W + (16 % W != 0)], val[16 / W + (16 % W != 0)];
    for (int h = 0; h * W < 16; h++) {
        thr[h] = VF_LOADU(thr_s + h * W);
        val[h] = VF_LOADU(val_s + h * W);
    }
    const vf zero = VF_ZERO();
    for (int g0 = 0; g0 < ngroups; g0 += W) {
        const int count = ngroups - g0 < W ? ngroups - g0 : W;
        LANE_FN(gather)(x + (size_t)g0 * 32, 32, count, xt);
        LANE_FN(gather)(w + (size_t)g0 * 32, 32, count, wt);
        vf amax, peak;
        LANE_FN(peak)(xt, 32, &amax, &peak);
        const vm live = VM_NOT(VF_LT(amax, VF_SET1(QT_GROUP_EPS)));
        vf d = ntry > 0 ? VF_DIV(LANE_FN(neg)(peak), VF_SET1((float)tab[0]))
                        : VF_DIV(peak, VF_SET1((float)tab[0]));
        vf id = VF_DIV(VF_SET1(1.0f), d);
        vf sumqx, sumq2;
        LANE_FN(iq4_sums)(xt, wt, id, thr, val, &sumqx, &sumq2);
        d = VF_BLEND(VF_GT(sumq2, zero), VF_DIV(sumqx, sumq2), zero);
        vf best = VF_MUL(d, sumqx);
        for (int k = -ntry; k <= ntry; k++) {
            id = VF_DIV(VF_SET1((float)(k + tab[0])), peak);
            LANE_FN(iq4_sums)(xt, wt, id, thr, val, &sumqx, &sumq2);
            const vm better = VM_AND(VF_GT(sumq2, zero),
                                     VF_GT(VF_MUL(sumqx, sumqx), VF_MUL(best, sumq2)));
            d = VF_BLEND(better, VF_DIV(sumqx, sumq2), d);
            best = VF_BLEND(better, VF_MUL(d, sumqx), best);
        }
        VF_STORE(st, VF_BLEND(live, d, zero));
        for (int g = 0; g < count; g++) {
            scale[g0 + g] = st[g];
        }
    }
}

/* ------------------------------------------------------------ re-rounding */

/* The scalar expression W values at a time (division, bias-trick rounding, clamp); levels that
 * have a byte-store hook on this level, the scalar loop otherwise. */
static void LANE_FN(requant)(const float *x, int n, float d, int lo, int hi, int off,
                             uint8_t *L) {
#ifdef LANE_STORE_LEVELS
    if (n % W == 0) {
        const vf dv = VF_SET1(d);
        for (int i = 0; i < n; i += W) {
            const vi l = LANE_FN(clampi)(LANE_FN(nint)(VF_DIV(VF_LOADU(x + i), dv)), lo, hi);
            LANE_STORE_LEVELS((int8_t *)(L + i), VI_TO_VF(VI_ADD(l, VI_SET1(off))));
        }
        return;
    }
#endif
    qt_scalar_search_ops.requant(x, n, d, lo, hi, off, L);
}

static const qt_search_ops LANE_FN(search_ops) = {LANE_FN(asym), LANE_FN(sym), LANE_FN(q3),
                                                  LANE_FN(iq4), LANE_FN(requant)};

/* Row quantizers of this level: the shared drivers with this level's searches. */
#define LANE_ROW_QUANTIZER(type, driver)                                                    \
    static void LANE_FN(quantize_##type)(const float *x, void *y, int64_t n, const float *qw) { \
        driver(&LANE_FN(search_ops), x, y, n, qw);                                          \
    }
LANE_ROW_QUANTIZER(q2_K, qt_kq_quantize_q2_K)
LANE_ROW_QUANTIZER(q3_K, qt_kq_quantize_q3_K)
LANE_ROW_QUANTIZER(q4_K, qt_kq_quantize_q4_K)
LANE_ROW_QUANTIZER(q5_K, qt_kq_quantize_q5_K)
LANE_ROW_QUANTIZER(q6_K, qt_kq_quantize_q6_K)
LANE_ROW_QUANTIZER(iq4_nl, qt_iq_quantize_iq4_nl)
LANE_ROW_QUANTIZER(iq4_xs, qt_iq_quantize_iq4_xs)
#undef LANE_ROW_QUANTIZER

/* Installs this level's quantizers; dequantizers already in the table are left alone. */
static void LANE_FN(install)(qt_kernel_table *t) {
    t->codec[QT_T_Q2_K].quantize = LANE_FN(quantize_q2_K);
    t->codec[QT_T_Q3_K].quantize = LANE_FN(quantize_q3_K);
    t->codec[QT_T_Q4_K].quantize = LANE_FN(quantize_q4_K);
    t->codec[QT_T_Q5_K].quantize = LANE_FN(quantize_q5_K);
    t->codec[QT_T_Q6_K].quantize = LANE_FN(quantize_q6_K);
    t->codec[QT_T_IQ4_NL].quantize = LANE_FN(quantize_iq4_nl);
    t->codec[QT_T_IQ4_XS].quantize = LANE_FN(quantize_iq4_xs);
}
