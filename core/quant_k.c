/* quant_k.c - the scalar ground truth of the k-quant weight types (q6_k, q4_k,
 * q3_k, q2_k), their activation type q8_k, and fp8_b128. Block layouts are in
 * quant.h and, byte by byte, in FORMAT.md.
 *
 * The weight quantizers do not round to nearest with a max-abs scale: for
 * each sub-block they search a handful of candidate scales (and mins) and
 * refit them by weighted least squares, minimizing
 *     E = sum_i w_i (x_i - xhat_i)^2,  w_i = imp[i], or x_i^2 without one,
 * then quantize the sub-block scales against the fp16 super-scale (itself
 * chosen by a weighted fit), try the stored sub-block scales (and mins) +-1,
 * and finally round every element against the scale and min exactly as
 * stored. Rounding each element to nearest is optimal for a fixed scale and
 * min, so the last step never undoes the search.
 *
 * Inputs are sanitized first: NaN becomes 0 and magnitudes are clamped to
 * 2^30 (far beyond what fp16 super-scales can express: q4_k saturates near
 * 65504 * 63 * 15 = 6.2e7), so the search never sees a non-finite value.
 *
 * The converter spends nearly all its time here, so the search is written
 * to be fast in plain C:
 *  - it runs in fp32 on a normalized copy of each sub-block: x times a power
 *    of two that brings max |x| into [0.5, 1), the weights times one that
 *    brings the largest into [0.25, 1). Power-of-two scaling is exact, so
 *    the search makes the same choices at any scale (pinned by
 *    test_k_quantizers_are_scale_equivariant), and x^2 weights of values up
 *    to 2^30 or down to 2^-60 cannot overflow or underflow the fp32 sums;
 *  - the candidates of one search step are scored side by side, CL at a
 *    time, with branchless rounding, so the inner loops vectorize at -O2;
 *    every lane sums over the elements in order, so nothing depends on
 *    whether or how wide the compiler vectorizes (no reassociation);
 *  - refits that land on a candidate already scored are skipped.
 * The quantizers are deterministic and allocate nothing; a super-block's
 * scratch lives on the stack. */
#include "quant.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "fp8.h"

_Static_assert(DEEPC_QK_K == 256, "k-quant kernels assume 256-element super-blocks");
_Static_assert(DEEPC_QK_FP8 == DEEPC_FP8_BLOCK, "fp8_b128 blocks match the checkpoint's 128-wide scale blocks");

#define X_LIMIT 0x1p30f

/* Lanes of the partial sums and candidate chunks below: the width of one
 * 128-bit vector of floats (SSE2, NEON). Results do not depend on whether
 * the compiler vectorizes them. */
#define CL 4

/* ---- shared helpers ------------------------------------------------------ */

/* Adding and subtracting 1.5 * 2^23 rounds a float of magnitude below 2^22
 * to the nearest integer, ties to even (the default rounding mode), with
 * plain additions that vectorize (lrintf is a library call where errno is
 * honoured). Compilers may not fold (v + C) - C without -ffast-math. */
#define RND_F 0x1.8p23f

/* v clamped to [lo, hi], then rounded to the nearest integer; NaN gives lo
 * (NaN never reaches here: inputs are sanitized and scales are finite). */
static inline float round_clamp(float v, float lo, float hi) {
    v = v > lo ? v : lo;
    v = v < hi ? v : hi;
    float t = v + RND_F;
    return t - RND_F;
}

/* 2^e as a float, e clamped to the normal range [-126, 127]. */
static float pow2f(int e) {
    e = e < -126 ? -126 : e > 127 ? 127 : e;
    uint32_t b = (uint32_t)(e + 127) << 23;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* 2^e as a double, for |e| < 1000. */
static double pow2d(int e) {
    uint64_t b = (uint64_t)(e + 1023) << 52;
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

/* The exponent e that brings v > 0 into [0.5, 1) when scaled by 2^-e (as
 * frexpf gives it), clamped so that 2^e and 2^-e are both normal floats;
 * a subnormal v gets -126 (it then stays below 0.5). */
static int norm_exp(float v) {
    uint32_t b;
    memcpy(&b, &v, sizeof b);
    int e = (int)((b >> 23) & 0xffu) - 126;
    return e < -126 ? -126 : e > 126 ? 126 : e;
}

/* The largest of four values (CL partial maxima). */
static float max4(const float *a) {
    float u = a[0] > a[1] ? a[0] : a[1], v = a[2] > a[3] ? a[2] : a[3];
    return u > v ? u : v;
}

static uint16_t fp16_finite(float v) {
    uint16_t h = deepc_fp32_to_fp16(v);
    if ((h & 0x7fffu) >= 0x7c00u) h = (uint16_t)((h & 0x8000u) | 0x7bffu); /* clamp to +-65504 */
    return h;
}

/* ---- candidate batches --------------------------------------------------- */

/* The search scores a few dozen (scale, min) candidates per sub-block, each
 * from one pass over the sub-block's 16 or 32 elements. The candidates of
 * one step are independent, so they run side by side: the inner loops go
 * across CL candidates for one element at a time, which compilers
 * vectorize at -O2 with no horizontal sums and no reassociation (each
 * lane's sums run over the elements in order, so the result does not depend
 * on the vector width). Candidate c rounds every element to
 *     q = round_clamp((x + m[c]) * is[c], lo, hi),   is[c] = 1 / s[c]
 * (the first roundings of the grid use a common offset instead of m[c]),
 * and the passes gather the weighted error of x against s[c] * q - m[c]
 * and the sums of the least-squares refit: sum w q, sum w q^2, sum w x q. */
#define MAXC 20                /* candidates per batch, a multiple of CL */

typedef struct {
    int nc;
    float s[MAXC], m[MAXC], is[MAXC];
    float e[MAXC], sq[MAXC], sqq[MAXC], sxq[MAXC];
} batch;

/* Lanes in use rounded up to whole chunks; the extra lanes repeat lane 0
 * (its is only where the caller set is, see batch_round_sums). */
static int batch_pad(batch *b, bool with_is) {
    int nl = (b->nc + CL - 1) / CL * CL;
    for (int c = b->nc; c < nl; c++) {
        b->s[c] = b->s[0];
        b->m[c] = b->m[0];
        if (with_is) b->is[c] = b->is[0];
    }
    return nl;
}

/* is = 1 / s for every lane (0 where s is 0: then every q is 0). The
 * refits compute is along with s; this is for the +-1 candidates. */
static void batch_inverses(batch *b) {
    int nl = batch_pad(b, false);
    for (int c0 = 0; c0 < nl; c0 += CL)
        for (int l = 0; l < CL; l++) {
            float s = b->s[c0 + l], nz = s != 0.0f ? 1.0f : 0.0f;
            b->is[c0 + l] = nz / (s + (1.0f - nz)); /* 1 / s, or 0 / 1 */
        }
}

/* One normalized sub-block as the passes read it: x and w, and each
 * element repeated CL times (xb[CL * i + l] = x[i]) so that the inner
 * loops load a whole vector per element instead of broadcasting a scalar. */
typedef struct {
    const float *x, *w, *xb, *wb;
    int n;
} sub_view;

/* The grid's first roundings: q = round_clamp((x + off) * is[c]), the refit
 * sums only. */
static void batch_round_sums(batch *b, const sub_view *v, float off, float lo, float hi) {
    int nl = batch_pad(b, true);
    for (int c0 = 0; c0 < nl; c0 += CL) {
        float is[CL], a[CL] = { 0 }, aa[CL] = { 0 }, ax[CL] = { 0 };
        memcpy(is, b->is + c0, sizeof is);
        for (int i = 0; i < v->n; i++) {
            const float *xi = v->xb + CL * i, *wi = v->wb + CL * i;
            for (int l = 0; l < CL; l++) {
                float q = round_clamp((xi[l] + off) * is[l], lo, hi);
                float wq = wi[l] * q;
                a[l] += wq;
                aa[l] += wq * q;
                ax[l] += wq * xi[l];
            }
        }
        memcpy(b->sq + c0, a, sizeof a);
        memcpy(b->sqq + c0, aa, sizeof aa);
        memcpy(b->sxq + c0, ax, sizeof ax);
    }
}

/* Scores every candidate (q rounded to the nearest level of s and m) and
 * keeps the refit sums of its rounding. */
static void batch_score_sums(batch *b, const sub_view *v, float lo, float hi) {
    int nl = batch_pad(b, true);
    for (int c0 = 0; c0 < nl; c0 += CL) {
        float s[CL], m[CL], is[CL], e[CL] = { 0 }, a[CL] = { 0 }, aa[CL] = { 0 }, ax[CL] = { 0 };
        memcpy(s, b->s + c0, sizeof s);
        memcpy(m, b->m + c0, sizeof m);
        memcpy(is, b->is + c0, sizeof is);
        for (int i = 0; i < v->n; i++) {
            const float *xi = v->xb + CL * i, *wi = v->wb + CL * i;
            for (int l = 0; l < CL; l++) {
                float t = xi[l] + m[l];
                float q = round_clamp(t * is[l], lo, hi);
                float r = s[l] * q - t, wq = wi[l] * q;
                e[l] += wi[l] * r * r;
                a[l] += wq;
                aa[l] += wq * q;
                ax[l] += wq * xi[l];
            }
        }
        memcpy(b->e + c0, e, sizeof e);
        memcpy(b->sq + c0, a, sizeof a);
        memcpy(b->sqq + c0, aa, sizeof aa);
        memcpy(b->sxq + c0, ax, sizeof ax);
    }
}

/* Scores every candidate, nothing else. */
static void batch_score(batch *b, const sub_view *v, float lo, float hi) {
    int nl = batch_pad(b, true);
    for (int c0 = 0; c0 < nl; c0 += CL) {
        float s[CL], m[CL], is[CL], e[CL] = { 0 };
        memcpy(s, b->s + c0, sizeof s);
        memcpy(m, b->m + c0, sizeof m);
        memcpy(is, b->is + c0, sizeof is);
        for (int i = 0; i < v->n; i++) {
            const float *xi = v->xb + CL * i, *wi = v->wb + CL * i;
            for (int l = 0; l < CL; l++) {
                float t = xi[l] + m[l];
                float q = round_clamp(t * is[l], lo, hi);
                float r = s[l] * q - t;
                e[l] += wi[l] * r * r;
            }
        }
        memcpy(b->e + c0, e, sizeof e);
    }
}

/* sum w q^2 of the nearest rounding for one s and m: the sensitivity of
 * the error to the scale, which the super-scale fit weighs by. */
static float sensitivity(const sub_view *v, float s, float m, float lo, float hi) {
    float is = s != 0.0f ? 1.0f / s : 0.0f, a[CL] = { 0 };
    for (int i = 0; i < v->n; i += CL)
        for (int l = 0; l < CL; l++) {
            float q = round_clamp((v->x[i + l] + m) * is, lo, hi);
            a[l] += v->w[i + l] * q * q;
        }
    return (a[0] + a[2]) + (a[1] + a[3]);
}

/* The lane of lowest error (the first on ties) if it is below *best. */
static int batch_best(const batch *b, float *best) {
    int bc = -1;
    for (int c = 0; c < b->nc; c++)
        if (b->e[c] < *best) { *best = b->e[c]; bc = c; }
    return bc;
}

/* Chains of refits from different grid candidates often meet, and the
 * same (s, m) scores the same, so each is scored once: a small hash set
 * of the candidates queued so far for one sub-block, keyed by the bits of
 * s and m (the low mantissa bits of a refit are as good as random). A
 * collision only forgets the older entry (it may then be scored twice), so
 * the search result does not depend on the table. Empty slots hold the
 * bits of a NaN s, which no queued candidate has. */
#define SEEN_SLOTS 32
typedef struct {
    uint64_t key[SEEN_SLOTS];
} seen_set;

static void seen_clear(seen_set *t) {
    memset(t, 0xff, sizeof *t);
}

/* Puts candidate (s, m) at lane nc of b if ok and not seen; returns the new
 * lane count. Written without branches on the outcome: whether a candidate
 * is new is close to a coin flip, so a branch would mispredict often. */
static inline int queue_one(batch *b, int nc, seen_set *t, float s, float m, float is, int ok) {
    uint32_t bs, bm;
    memcpy(&bs, &s, sizeof bs);
    memcpy(&bm, &m, sizeof bm);
    uint64_t key = (uint64_t)bs << 32 | bm;
    uint32_t h = (bs ^ (bm >> 7)) & (SEEN_SLOTS - 1);
    int dup = t->key[h] == key;
    if (ok) t->key[h] = key; /* nearly always: a predictable branch */
    b->s[nc] = s;
    b->m[nc] = m;
    b->is[nc] = is;
    return nc + (ok & !dup);
}

/* Starts b with the search's first candidate, the plain fit from the
 * sub-block's extremes, in lane 0 (always, even if seen). */
static void first_candidate(batch *b, seen_set *t, float s, float m, float is) {
    b->nc = queue_one(b, 0, t, s, m, is, 1);
    b->nc = 1;
}

/* The best of a search: the first candidate (lane 0 of r2), then r1, then
 * the rest of r2, each replacing the best so far only when strictly
 * better. The first candidate wins ties, as it did when the search kept it
 * as its starting point: whole sub-blocks can tie exactly (every element
 * but the largest rounding to 0, which both candidates hit exactly), and
 * the candidates' scales then still differ for the super-scale fit. */
static int pick_best(const batch *r1, const batch *r2, const batch **which) {
    float best = r2->e[0];
    int bc = 0;
    *which = r2;
    for (int c = 0; c < r1->nc; c++)
        if (r1->e[c] < best) { best = r1->e[c]; bc = c; *which = r1; }
    for (int c = 1; c < r2->nc; c++)
        if (r2->e[c] < best) { best = r2->e[c]; bc = c; *which = r2; }
    return bc;
}

/* sum w and sum w x of a sub-block (they do not depend on q). */
static void weight_sums(const float *x, const float *w, int n, float *sw, float *sx) {
    float a[CL] = { 0 }, b[CL] = { 0 };
    for (int i = 0; i < n; i += CL)
        for (int l = 0; l < CL; l++) {
            a[l] += w[i + l];
            b[l] += w[i + l] * x[i + l];
        }
    *sw = (a[0] + a[2]) + (a[1] + a[3]);
    *sx = (b[0] + b[2]) + (b[1] + b[3]);
}

/* ---- affine fit: x ~ s*q - m, q in [0, nmax], s >= 0, m >= 0 -------------- */

/* Least-squares s and m for each lane's rounding in src (the 2x2 normal
 * equations of sum w (s q - m - x)^2); m is held at 0 when the free fit
 * wants a negative min (the format subtracts a non-negative min). Queues
 * each new result in dst; skips lanes whose q do not determine s (all
 * equal) or whose s is outside what a normalized sub-block (|x| < 1) can
 * use. fp32 is enough here: the sums carry fp32 rounding anyway, and a
 * refit off by a rounding error is only a slightly different candidate,
 * scored exactly like every other. */
static void affine_refit(const batch *src, float sw, float sx, batch *dst, seen_set *seen) {
    /* the divisions run on every lane (a failed lane gives inf or NaN,
     * never a trap in the default environment) with no selects in the
     * loop, so it vectorizes */
    float fs[MAXC], fo[MAXC], s0[MAXC], fi[MAXC], i0[MAXC];
    int okf[MAXC], ok0[MAXC];
    int nl = (src->nc + CL - 1) / CL * CL;
    for (int c0 = 0; c0 < nl; c0 += CL)
        for (int c = c0; c < c0 + CL; c++) {
            float sq = src->sq[c], sqq = src->sqq[c], sxq = src->sxq[c];
            float det = sw * sqq - sq * sq, id = 1.0f / det, num = sw * sxq - sx * sq;
            float s = num * id, off = (sqq * sx - sq * sxq) * id, z = sxq / sqq;
            fs[c] = s;
            fo[c] = off;
            fi[c] = det / num; /* 1 / s */
            s0[c] = z; /* the fit with m held at 0 */
            i0[c] = sqq / sxq;
            okf[c] = (det > 0.0f) & (s > 0x1p-40f) & (s < 0x1p20f) & (off > -0x1p20f);
            ok0[c] = (det > 0.0f) & (z > 0x1p-40f) & (z < 0x1p20f); /* det > 0 implies sqq > 0 */
        }
    int nc = dst->nc;
    for (int c = 0; c < src->nc; c++) {
        bool pin = fo[c] > 0.0f;
        nc = queue_one(dst, nc, seen, pin ? s0[c] : fs[c], pin ? -0.0f : -fo[c], pin ? i0[c] : fi[c], pin ? ok0[c] : okf[c]);
    }
    dst->nc = nc;
}

/* Searches s and m for one normalized sub-block. The grid maps the range
 * onto nmax + delta levels for NGRID deltas in [-1, 1]; each such rounding
 * is refit by least squares twice (round, refit, round again, refit), and
 * each refit is scored. The plain min/max fit is scored too (and wins
 * ties), so the result is never worse than it. *wqq receives sum w q^2 of
 * the chosen rounding (the sensitivity of E to the scale). Measured on
 * Gaussian and Student-t data, with x^2 weights and with importance
 * vectors, against the first version of this search (11 deltas, all nine
 * +-1 pairs, double sums): 8 deltas and the 7 pairs of
 * quantize_affine_super stay within +0.2% of its weighted RMS error (see
 * test_k_weighted_error_does_not_regress), where 11 deltas would take a
 * fifth more time; 7 deltas cost up to 0.36%, 5 up to 1.3%, one refit
 * instead of two up to 1.4%. */
#define NGRID 8
_Static_assert(2 * NGRID + 1 <= MAXC, "a batch holds both ends of the grid and the min/max candidate");
static const float grid_delta[NGRID] = { -1.0f, -5.0f / 7, -3.0f / 7, -1.0f / 7, 1.0f / 7, 3.0f / 7, 5.0f / 7, 1.0f };

static void fit_affine(const sub_view *v, float nmax, float sw, float sx, float *s_out, float *m_out, float *wqq) {
    const float *x = v->x;
    int n = v->n;
    float l4[CL], h4[CL];
    memcpy(l4, x, sizeof l4);
    memcpy(h4, x, sizeof h4);
    for (int i = CL; i < n; i += CL)
        for (int l = 0; l < CL; l++) {
            l4[l] = x[i + l] < l4[l] ? x[i + l] : l4[l];
            h4[l] = x[i + l] > h4[l] ? x[i + l] : h4[l];
        }
    float lo = -max4((const float[CL]){ -l4[0], -l4[1], -l4[2], -l4[3] }), hi = max4(h4);
    if (lo > 0.0f) lo = 0.0f;
    if (!(hi > lo)) { /* constant block <= 0: exactly -m */
        *s_out = 0.0f;
        *m_out = -lo;
        *wqq = 0.0f;
        return;
    }
    batch g, r1, r2; /* the grid's first roundings, their refits, the refits of those */
    seen_set seen;
    seen_clear(&seen);
    g.nc = NGRID;
    float ir = 1.0f / (hi - lo);
    for (int k = 0; k < NGRID; k++) {
        g.is[k] = (nmax + grid_delta[k]) * ir;
        g.s[k] = g.m[k] = 0.0f; /* unused: the grid's roundings are not scored */
    }
    batch_round_sums(&g, v, -lo, 0.0f, nmax);
    r1.nc = 0;
    affine_refit(&g, sw, sx, &r1, &seen);
    batch_score_sums(&r1, v, 0.0f, nmax);
    /* the min/max fit (not refit itself) is scored with the second refits,
     * in lane 0, where a lane is usually free */
    first_candidate(&r2, &seen, (hi - lo) / nmax, -lo, nmax * ir);
    affine_refit(&r1, sw, sx, &r2, &seen);
    batch_score(&r2, v, 0.0f, nmax);
    const batch *bb;
    int bc = pick_best(&r1, &r2, &bb);
    *s_out = bb->s[bc];
    *m_out = bb->m[bc];
    *wqq = bb == &r1 ? r1.sqq[bc] : sensitivity(v, *s_out, *m_out, 0.0f, nmax);
}

/* ---- symmetric fit: x ~ s*q, q in [-nneg, npos], s of either sign -------- */

/* s = sum w x q / sum w q^2 for each lane's rounding in src, queued in dst
 * as in affine_refit. */
static void sym_refit(const batch *src, batch *dst, seen_set *seen) {
    float rs[MAXC], ri[MAXC];
    int ok[MAXC];
    int nl = (src->nc + CL - 1) / CL * CL;
    for (int c0 = 0; c0 < nl; c0 += CL)
        for (int c = c0; c < c0 + CL; c++) {
            float sqq = src->sqq[c], sxq = src->sxq[c], s = sxq / sqq, a = fabsf(s);
            ok[c] = (sqq > 0.0f) & (a > 0x1p-40f) & (a < 0x1p20f);
            rs[c] = s;
            ri[c] = sqq / sxq;
        }
    int nc = dst->nc;
    for (int c = 0; c < src->nc; c++) nc = queue_one(dst, nc, seen, rs[c], 0.0f, ri[c], ok[c]);
    dst->nc = nc;
}

/* The element of largest magnitude goes to either end of the range (the
 * negative end is one level longer), shifted by the same deltas as in
 * fit_affine; every rounding is refit by least squares twice, and the
 * plain fit that maps it onto -nneg is scored first. v is a normalized
 * sub-block. */
static float fit_sym(const sub_view *v, float nneg, float npos, float *wqq) {
    const float *x = v->x;
    int n = v->n;
    /* the first element of largest magnitude, with its sign */
    float am[CL] = { 0 };
    for (int i = 0; i < n; i += CL)
        for (int l = 0; l < CL; l++) am[l] = fabsf(x[i + l]) > am[l] ? fabsf(x[i + l]) : am[l];
    float amax = max4(am), vmax = 0.0f;
    *wqq = 0.0f;
    if (amax == 0.0f) return 0.0f;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) == amax) {
            vmax = x[i];
            break;
        }
    batch g, r1, r2;
    seen_set seen;
    seen_clear(&seen);
    g.nc = 2 * NGRID;
    float iv = 1.0f / vmax;
    for (int k = 0; k < NGRID; k++) {
        g.is[k] = -(nneg + grid_delta[k]) * iv;
        g.is[NGRID + k] = (npos + grid_delta[k]) * iv;
        g.s[k] = g.m[k] = g.s[NGRID + k] = g.m[NGRID + k] = 0.0f; /* unused */
    }
    batch_round_sums(&g, v, 0.0f, -nneg, npos);
    r1.nc = 0;
    sym_refit(&g, &r1, &seen);
    batch_score_sums(&r1, v, -nneg, npos);
    first_candidate(&r2, &seen, -vmax / nneg, 0.0f, -nneg * iv); /* as in fit_affine */
    sym_refit(&r1, &r2, &seen);
    batch_score(&r2, v, -nneg, npos);
    const batch *bb;
    int bc = pick_best(&r1, &r2, &bb);
    *wqq = bb == &r1 ? r1.sqq[bc] : sensitivity(v, bb->s[bc], 0.0f, -nneg, npos);
    return bb->s[bc];
}

/* ---- super-block preparation -------------------------------------------- */

/* One super-block, sanitized, and each sub-block normalized for the search:
 * xn = x * 2^-ex[j], wn = w * 2^-ew[j] (see the top of the file). */
typedef struct {
    float x[DEEPC_QK_K];    /* sanitized input */
    float xn[DEEPC_QK_K];
    float wn[DEEPC_QK_K];
    float xb[CL * DEEPC_QK_K], wb[CL * DEEPC_QK_K]; /* xn and wn, each element CL times */
    int ex[16], ew[16];
} super_block;

static sub_view sub_of(const super_block *b, int j, int n) {
    return (sub_view){ b->xn + j * n, b->wn + j * n, b->xb + CL * j * n, b->wb + CL * j * n, n };
}

/* A super-block whose weights are all zero (all-zero data, or an all-zero
 * importance slice) gets uniform weights so the fit still has something to
 * minimize. */
/* vb[CL * i + l] = v[i] for the whole super-block. */
static void broadcast(const float *restrict v, float *restrict vb) {
    for (int i = 0; i < DEEPC_QK_K; i++) {
        float t[CL];
        for (int l = 0; l < CL; l++) t[l] = v[i];
        memcpy(vb + CL * i, t, sizeof t);
    }
}

static void prepare(const float *restrict src, const float *restrict imp, int nsub, int n, super_block *restrict b) {
    int any_w = 0, any_x = 0;
    for (int i = 0; i < DEEPC_QK_K; i++) {
        float v = src[i];
        v = v == v ? v : 0.0f; /* NaN: 0 */
        v = v < X_LIMIT ? v : X_LIMIT;
        v = v > -X_LIMIT ? v : -X_LIMIT;
        b->x[i] = v;
        any_x |= v != 0.0f;
    }
    if (imp) {
        for (int i = 0; i < DEEPC_QK_K; i++) {
            float wi = imp[i];
            wi = ((wi >= 0.0f) & (wi <= FLT_MAX)) ? wi : 0.0f; /* NaN, negative, inf: 0 */
            b->wn[i] = wi;
            any_w |= wi != 0.0f;
        }
    } else {
        any_w = any_x;
    }
    for (int j = 0; j < nsub; j++) {
        const float *x = b->x + j * n;
        float *xn = b->xn + j * n, *wn = b->wn + j * n;
        float am[CL] = { 0 };
        for (int i = 0; i < n; i += CL)
            for (int l = 0; l < CL; l++) {
                float a = fabsf(x[i + l]);
                am[l] = a > am[l] ? a : am[l];
            }
        float amax = max4(am);
        int e = amax > 0.0f ? norm_exp(amax) : 0;
        float f = pow2f(-e);
        for (int i = 0; i < n; i++) xn[i] = x[i] * f;
        b->ex[j] = e;
        if (!any_w) {
            for (int i = 0; i < n; i++) wn[i] = 1.0f;
            b->ew[j] = 0;
        } else if (!imp) {
            for (int i = 0; i < n; i++) wn[i] = xn[i] * xn[i];
            b->ew[j] = 2 * e;
        } else {
            float wm[CL] = { 0 };
            for (int i = 0; i < n; i += CL)
                for (int l = 0; l < CL; l++) wm[l] = wn[i + l] > wm[l] ? wn[i + l] : wm[l];
            float wmax = max4(wm);
            int ew = wmax > 0.0f ? norm_exp(wmax) : 0;
            float g = pow2f(-ew);
            for (int i = 0; i < n; i++) wn[i] *= g;
            b->ew[j] = ew;
        }
    }
    broadcast(b->xn, b->xb);
    broadcast(b->wn, b->wb);
}

/* ---- super-block scales ------------------------------------------------- */

/* Quantizes per-sub-block values v[j] (sub-block scales or mins) to D * k[j]
 * with k in [kmin, kmax] and D an fp16, minimizing sum W[j] (v[j] - D k[j])^2:
 * D candidates map the value of largest magnitude onto either end of the
 * range, shrunk by up to 1.5 levels, each refit by least squares and rounded
 * to fp16 before it is scored. Returns D's fp16 bits; k is filled. */
static inline float bits_f32(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* v rounded to fp16 as fp16_finite does it, returned as a float; *h gets
 * the bits. The normal range is inline (round to nearest even on the 13
 * dropped mantissa bits, saturating at 65504); the rest goes through the
 * library conversion. */
static float fp16_round(float v, uint16_t *h) {
    uint32_t x;
    memcpy(&x, &v, sizeof x);
    uint32_t ax = x & 0x7fffffffu, sign = (x >> 16) & 0x8000u;
    if (ax >= 0x38800000u && ax < 0x47800000u) { /* [2^-14, 2^16) */
        uint32_t m = (ax - 0x38000000u + 0xfffu + ((ax >> 13) & 1u)) >> 13;
        m = m > 0x7bffu ? 0x7bffu : m;
        *h = (uint16_t)(sign | m);
        return bits_f32(sign << 16 | ((m << 13) + 0x38000000u));
    }
    *h = fp16_finite(v);
    return deepc_fp16_to_fp32(*h);
}

/* Quantizes per-sub-block values v[j] (sub-block scales or mins) to D * k[j]
 * with k in [kmin, kmax] and D an fp16, minimizing sum W[j] (v[j] - D k[j])^2:
 * D candidates map the value of largest magnitude onto either end of the
 * range, shrunk by up to 1.5 levels, each refit by least squares and rounded
 * to fp16 before it is scored. Returns D's fp16 bits; k is filled. nsub is
 * a multiple of CL. The scoring runs in fp32 on v scaled by a power of two
 * to |v| <= 1 and W divided by its largest value; D is rounded to fp16 in
 * the true units. */
/* Scores super-scale candidates Dh[c] (normalized units, 0 for none) side
 * by side, as the sub-block search does: e[c] = sum W (v - Dh k)^2 with k
 * the nearest level, and the sums of its least-squares refit. */
#define SS_MAXC 16
static void superscale_score(const float *vn, const float *wn, int nsub, float kmin, float kmax, const float *Dh, int nc,
                             float *e, float *svk, float *skk) {
    for (int c0 = 0; c0 < nc; c0 += CL) {
        float d[CL], id[CL], a[CL] = { 0 }, b[CL] = { 0 }, g[CL] = { 0 };
        for (int l = 0; l < CL; l++) {
            d[l] = Dh[c0 + l];
            float nz = d[l] != 0.0f ? 1.0f : 0.0f;
            id[l] = nz / (d[l] + (1.0f - nz));
        }
        for (int j = 0; j < nsub; j++)
            for (int l = 0; l < CL; l++) {
                float kj = round_clamp(vn[j] * id[l], kmin, kmax), r = vn[j] - d[l] * kj, wk = wn[j] * kj;
                a[l] += wn[j] * r * r;
                b[l] += wk * vn[j];
                g[l] += wk * kj;
            }
        memcpy(e + c0, a, sizeof a);
        memcpy(svk + c0, b, sizeof b);
        memcpy(skk + c0, g, sizeof g);
    }
}

static uint16_t quant_superscale(const float *v, const double *W, int nsub, int kmin, int kmax, int *k) {
    float vmax = 0.0f;
    double wmax = 0.0;
    for (int j = 0; j < nsub; j++) {
        if (fabsf(v[j]) > fabsf(vmax)) vmax = v[j];
        wmax = W[j] > wmax ? W[j] : wmax;
    }
    memset(k, 0, (size_t)nsub * sizeof *k);
    if (vmax == 0.0f) return 0;
    int ev = norm_exp(fabsf(vmax));
    float up = pow2f(ev), down = pow2f(-ev), vn[16], wn[16];
    for (int j = 0; j < nsub; j++) {
        vn[j] = v[j] * down;
        wn[j] = wmax > 0.0 ? (float)(W[j] / wmax) : 1.0f;
    }
    float fkmin = (float)kmin, fkmax = (float)kmax;
    /* first candidates: the largest value onto either end of the range,
     * shrunk by 0 .. 1.5 levels; then the refit of each; Dh 0: none */
    float D0[SS_MAXC] = { 0 }, D1[SS_MAXC] = { 0 }, e0[SS_MAXC], e1[SS_MAXC], svk[SS_MAXC], skk[SS_MAXC], unused[2][SS_MAXC];
    uint16_t h0[SS_MAXC], h1[SS_MAXC];
    int nc = 0;
    for (int end = 0; end < 2; end++) {
        int lim = end == 0 ? kmax : kmin;
        if (lim == 0) continue;
        for (int step = 0; step <= 6; step++, nc++) {
            float lv = (float)lim - (lim > 0 ? 0.25f : -0.25f) * (float)step;
            D0[nc] = fp16_round(vmax / lv, &h0[nc]) * down; /* exact: a power of two */
        }
    }
    int nl = (nc + CL - 1) / CL * CL;
    superscale_score(vn, wn, nsub, fkmin, fkmax, D0, nl, e0, svk, skk);
    for (int c = 0; c < nc; c++)
        D1[c] = D0[c] != 0.0f && skk[c] > 0.0f ? fp16_round(svk[c] / skk[c] * up, &h1[c]) * down : 0.0f;
    superscale_score(vn, wn, nsub, fkmin, fkmax, D1, nl, e1, unused[0], unused[1]);
    /* in the order the candidates come: each first one, then its refit */
    float best = INFINITY;
    uint16_t best_h = 0;
    for (int c = 0; c < nc; c++) {
        if (D0[c] == 0.0f) continue;
        if (e0[c] < best) { best = e0[c]; best_h = h0[c]; }
        if (D1[c] != 0.0f && e1[c] < best) { best = e1[c]; best_h = h1[c]; }
    }
    float Dh = deepc_fp16_to_fp32(best_h);
    if (Dh != 0.0f) {
        float iD = 1.0f / Dh;
        for (int j = 0; j < nsub; j++) k[j] = (int)round_clamp(v[j] * iD, fkmin, fkmax);
    }
    return best_h;
}

/* ---- q4_k / q2_k: affine sub-blocks ------------------------------------ */

/* One super-block of an affine type: nsub sub-blocks of n elements, q in
 * [0, nmax], sub-block scales and mins in [0, kmax]. Fills sc, mn, q and
 * the two fp16 super-scales. */
static void quantize_affine_super(const float *src, const float *imp, int nsub, int n, int nmax, int kmax,
                                  uint16_t *dh, uint16_t *mh, int *sc, int *mn, uint8_t *q) {
    super_block b;
    float s[16], m[16];
    double Ws[16], Wm[16];
    prepare(src, imp, nsub, n, &b);
    for (int j = 0; j < nsub; j++) {
        sub_view v = sub_of(&b, j, n);
        float sn, mnn, wqq, sw, sx;
        weight_sums(v.x, v.w, n, &sw, &sx);
        fit_affine(&v, (float)nmax, sw, sx, &sn, &mnn, &wqq);
        float f = pow2f(b.ex[j]);
        s[j] = sn * f;
        m[j] = mnn * f;
        /* sensitivity of E to the scale (sum w q^2) and to the min (sum w),
         * back in the super-block's units */
        Ws[j] = (double)wqq * pow2d(b.ew[j]);
        Wm[j] = (double)sw * pow2d(b.ew[j]);
    }
    *dh = quant_superscale(s, Ws, nsub, 0, kmax, sc);
    *mh = quant_superscale(m, Wm, nsub, 0, kmax, mn);
    float d = deepc_fp16_to_fp32(*dh), dmin = deepc_fp16_to_fp32(*mh);
    for (int j = 0; j < nsub; j++) {
        sub_view v = sub_of(&b, j, n);
        const float *xj = b.x + j * n;
        float f = pow2f(-b.ex[j]), fnmax = (float)nmax;
        /* the stored pair first (kept on ties), then its neighbours but for
         * the two that move scale and min in opposite directions (on
         * Gaussian data they win in under 0.5% of sub-blocks, by a hair, and
         * leaving them out saves a third of this step); d * a and dmin * c
         * are exact in fp32 (an 11-bit fp16 times a 6-bit integer), and so
         * is the power-of-two normalization */
        static const int8_t da[7] = { 0, -1, -1, 0, 0, 1, 1 }, dc[7] = { 0, -1, 0, -1, 1, 0, 1 };
        batch nb;
        int pa[7], pc[7];
        nb.nc = 0;
        for (int t = 0; t < 7; t++) {
            int a = sc[j] + da[t], c = mn[j] + dc[t];
            if (a < 0 || a > kmax || c < 0 || c > kmax) continue;
            pa[nb.nc] = a;
            pc[nb.nc] = c;
            nb.s[nb.nc] = d * (float)a * f;
            nb.m[nb.nc++] = dmin * (float)c * f;
        }
        batch_inverses(&nb);
        batch_score(&nb, &v, 0.0f, fnmax);
        float best = INFINITY;
        int bc = batch_best(&nb, &best);
        bc = bc < 0 ? 0 : bc; /* every error inf (a sub-block far below the others): keep the stored pair */
        int bs = pa[bc], bm = pc[bc];
        sc[j] = bs;
        mn[j] = bm;
        float S = d * (float)bs, M = dmin * (float)bm, is = S > 0.0f ? 1.0f / S : 0.0f;
        for (int i = 0; i < n; i++) q[j * n + i] = (uint8_t)round_clamp((xj[i] + M) * is, 0.0f, fnmax);
    }
}

void deepc_quantize_row_q4_k(const float *x, deepc_block_q4_k *y, size_t n, const float *imp) {
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++) {
        int sc[8], mn[8];
        uint8_t q[DEEPC_QK_K];
        deepc_block_q4_k *b = &y[ib];
        quantize_affine_super(x + ib * DEEPC_QK_K, imp ? imp + ib * DEEPC_QK_K : NULL, 8, 32, 15, 63, &b->d, &b->dmin, sc, mn, q);
        for (int j = 0; j < 4; j++) {
            b->scales[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
            b->scales[j + 4] = (uint8_t)(mn[j] | ((mn[j + 4] >> 4) << 6));
            b->scales[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
        }
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++) b->qs[32 * g + l] = (uint8_t)(q[64 * g + l] | (q[64 * g + 32 + l] << 4));
    }
}

void deepc_dequantize_row_q4_k(const deepc_block_q4_k *x, float *y, size_t n) {
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++, y += DEEPC_QK_K) {
        const deepc_block_q4_k *b = &x[ib];
        uint8_t sc[8], mn[8];
        deepc_q4_k_unpack_scales(b->scales, sc, mn);
        float d = deepc_fp16_to_fp32(b->d), dmin = deepc_fp16_to_fp32(b->dmin);
        for (int j = 0; j < 8; j++) {
            float S = d * (float)sc[j], M = dmin * (float)mn[j];
            const uint8_t *qs = b->qs + 32 * (j / 2);
            for (int l = 0; l < 32; l++) {
                int q = (j & 1) ? qs[l] >> 4 : qs[l] & 15;
                y[32 * j + l] = S * (float)q - M;
            }
        }
    }
}

/* Element i of a 2-bit plane of 64 bytes: bits 2s..2s+1 of byte 32h + l for
 * i = 128h + 32s + l (shared by q2_k and the low bits of q3_k). */
static void pack_2bit(const uint8_t *q, uint8_t qs[64]) {
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++)
            qs[32 * h + l] = (uint8_t)((q[128 * h + l] & 3) | (q[128 * h + 32 + l] & 3) << 2 | (q[128 * h + 64 + l] & 3) << 4 |
                                       (q[128 * h + 96 + l] & 3) << 6);
}

static int unpack_2bit(const uint8_t qs[64], int i) {
    return (qs[32 * (i / 128) + i % 32] >> (2 * ((i / 32) % 4))) & 3;
}

void deepc_quantize_row_q2_k(const float *x, deepc_block_q2_k *y, size_t n, const float *imp) {
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++) {
        int sc[16], mn[16];
        uint8_t q[DEEPC_QK_K];
        deepc_block_q2_k *b = &y[ib];
        quantize_affine_super(x + ib * DEEPC_QK_K, imp ? imp + ib * DEEPC_QK_K : NULL, 16, 16, 3, 15, &b->d, &b->dmin, sc, mn, q);
        for (int j = 0; j < 16; j++) b->scales[j] = (uint8_t)(sc[j] | (mn[j] << 4));
        pack_2bit(q, b->qs);
    }
}

void deepc_dequantize_row_q2_k(const deepc_block_q2_k *x, float *y, size_t n) {
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++, y += DEEPC_QK_K) {
        const deepc_block_q2_k *b = &x[ib];
        float d = deepc_fp16_to_fp32(b->d), dmin = deepc_fp16_to_fp32(b->dmin);
        for (int i = 0; i < DEEPC_QK_K; i++) {
            int j = i / 16;
            float S = d * (float)(b->scales[j] & 15), M = dmin * (float)(b->scales[j] >> 4);
            y[i] = S * (float)unpack_2bit(b->qs, i) - M;
        }
    }
}

/* ---- q3_k / q6_k: symmetric sub-blocks ------------------------------------ */

/* One super-block of a symmetric type: sixteen sub-blocks of 16, codes
 * q - qoff in [-qoff, qoff - 1], integer sub-block scales in [kmin, kmax]
 * against one fp16 super-scale (returned). Fills the scales k[] and the
 * codes q[] (offset, in [0, 2 qoff - 1]). */
static uint16_t quantize_sym_super(const float *src, const float *imp, int qoff, int kmin, int kmax, int k[16],
                                   uint8_t q[DEEPC_QK_K]) {
    super_block sb;
    float s[16];
    double W[16];
    float lo = -(float)qoff, hi = (float)(qoff - 1);
    prepare(src, imp, 16, 16, &sb);
    for (int j = 0; j < 16; j++) {
        float wqq;
        sub_view v = sub_of(&sb, j, 16);
        s[j] = fit_sym(&v, -lo, hi, &wqq) * pow2f(sb.ex[j]);
        W[j] = (double)wqq * pow2d(sb.ew[j]); /* sensitivity of E to the scale */
    }
    uint16_t dh = quant_superscale(s, W, 16, kmin, kmax, k);
    float d = deepc_fp16_to_fp32(dh);
    for (int j = 0; j < 16; j++) {
        sub_view v = sub_of(&sb, j, 16);
        const float *xj = sb.x + 16 * j;
        float f = pow2f(-sb.ex[j]);
        batch nb;
        int pk[3];
        nb.nc = 0;
        for (int t = 0; t < 3; t++) { /* k[j] first (kept on ties), then k[j] -+ 1 */
            int a = k[j] + (t == 0 ? 0 : t == 1 ? -1 : 1);
            if (a < kmin || a > kmax) continue;
            pk[nb.nc] = a;
            nb.s[nb.nc] = d * (float)a * f; /* exact: 11-bit fp16 times an 8-bit integer, times 2^-e */
            nb.m[nb.nc++] = 0.0f;
        }
        batch_inverses(&nb);
        batch_score(&nb, &v, lo, hi);
        float best = INFINITY;
        int bc = batch_best(&nb, &best);
        k[j] = pk[bc < 0 ? 0 : bc]; /* as in quantize_affine_super */
        float S = d * (float)k[j], is = S != 0.0f ? 1.0f / S : 0.0f;
        for (int i = 0; i < 16; i++) q[16 * j + i] = (uint8_t)(round_clamp(xj[i] * is, lo, hi) + (float)qoff);
    }
    return dh;
}

void deepc_quantize_row_q3_k(const float *src, deepc_block_q3_k *y, size_t n, const float *imp) {
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++) {
        int k[16];
        uint8_t q[DEEPC_QK_K];
        deepc_block_q3_k *b = &y[ib];
        b->d = quantize_sym_super(src + ib * DEEPC_QK_K, imp ? imp + ib * DEEPC_QK_K : NULL, 4, -32, 31, k, q);
        memset(b->scales, 0, sizeof b->scales);
        for (int j = 0; j < 16; j++) {
            int u = k[j] + 32;
            b->scales[j % 8] |= (uint8_t)((u & 15) << (4 * (j / 8)));
            b->scales[8 + j % 4] |= (uint8_t)((u >> 4) << (2 * (j / 4)));
        }
        pack_2bit(q, b->qs);
        memset(b->hmask, 0, sizeof b->hmask);
        for (int g = 0; g < 8; g++)
            for (int l = 0; l < 32; l++) b->hmask[l] |= (uint8_t)((q[32 * g + l] >> 2 & 1) << g);
    }
}

void deepc_dequantize_row_q3_k(const deepc_block_q3_k *x, float *y, size_t n) {
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++, y += DEEPC_QK_K) {
        const deepc_block_q3_k *b = &x[ib];
        int8_t sc[16];
        deepc_q3_k_unpack_scales(b->scales, sc);
        float d = deepc_fp16_to_fp32(b->d);
        for (int i = 0; i < DEEPC_QK_K; i++) {
            int q = unpack_2bit(b->qs, i) | (((b->hmask[i % 32] >> (i / 32)) & 1) << 2);
            y[i] = d * (float)sc[i / 16] * (float)(q - 4);
        }
    }
}

/* ---- q6_k: as q3_k with 64 levels and int8 sub-block scales ---------------- */

void deepc_quantize_row_q6_k(const float *src, deepc_block_q6_k *y, size_t n, const float *imp) {
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++) {
        int k[16];
        uint8_t q[DEEPC_QK_K];
        deepc_block_q6_k *b = &y[ib];
        b->d = quantize_sym_super(src + ib * DEEPC_QK_K, imp ? imp + ib * DEEPC_QK_K : NULL, 32, -128, 127, k, q);
        for (int j = 0; j < 16; j++) b->scales[j] = (int8_t)k[j];
        memset(b->ql, 0, sizeof b->ql);
        memset(b->qh, 0, sizeof b->qh);
        for (int i = 0; i < DEEPC_QK_K; i++) {
            int h = i / 128, r = i % 128;
            b->ql[64 * h + r % 64] |= (uint8_t)((q[i] & 15) << (4 * (r / 64)));
            b->qh[32 * h + r % 32] |= (uint8_t)((q[i] >> 4) << (2 * (r / 32)));
        }
    }
}

void deepc_dequantize_row_q6_k(const deepc_block_q6_k *x, float *y, size_t n) {
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++, y += DEEPC_QK_K) {
        const deepc_block_q6_k *b = &x[ib];
        float d = deepc_fp16_to_fp32(b->d);
        for (int i = 0; i < DEEPC_QK_K; i++) {
            int q = deepc_q6_k_code(b, i);
            y[i] = (d * (float)b->scales[i / 16]) * (float)(q - 32);
        }
    }
}

/* ---- q8_k: activations ------------------------------------------------- */

/* Like q8_0 with an fp32 scale: d = max|x| / 127 (NaN skipped), q =
 * round-to-nearest-even of x * (1/d) clamped to +-127, NaN -> 0; an all-zero
 * block has d = 0. bsums are exact int16 sums of 16 q (|sum| <= 2032). The
 * SIMD quantizers in arch/ reproduce this bit for bit. */
void deepc_quantize_row_q8_k(const float *x, deepc_block_q8_k *y, size_t n) {
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++, x += DEEPC_QK_K) {
        deepc_block_q8_k *b = &y[ib];
        float amax = 0.0f;
        for (int i = 0; i < DEEPC_QK_K; i++) {
            float a = fabsf(x[i]);
            if (a > amax) amax = a;
        }
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b->d = d;
        for (int i = 0; i < DEEPC_QK_K; i++) {
            float v = x[i] * id;
            long q;
            if (v >= 127.0f) q = 127;
            else if (v <= -127.0f) q = -127;
            else if (v == v) q = lrintf(v);
            else q = 0;
            b->qs[i] = (int8_t)q;
        }
        for (int j = 0; j < DEEPC_QK_K / 16; j++) {
            int s = 0;
            for (int i = 0; i < 16; i++) s += b->qs[16 * j + i];
            b->bsums[j] = (int16_t)s;
        }
    }
}

void deepc_dequantize_row_q8_k(const deepc_block_q8_k *x, float *y, size_t n) {
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++)
        for (int i = 0; i < DEEPC_QK_K; i++) y[ib * DEEPC_QK_K + i] = x[ib].d * (float)x[ib].qs[i];
}

/* ---- fp8_b128 ------------------------------------------------------------ */

/* d = max|x| / 448 over the finite elements (E4M3's largest finite value
 * maps to the block maximum), codes = E4M3 of x * (1/d), round to nearest
 * even, saturating at +-448 (so +-inf become +-448 * d). NaN elements and an
 * all-zero block store code 0. Lossless FP8 checkpoints do not come through
 * here: the converter copies their codes and block scales. */
void deepc_quantize_row_fp8_b128(const float *x, deepc_block_fp8_b128 *y, size_t n) {
    for (size_t ib = 0; ib < n / DEEPC_QK_FP8; ib++, x += DEEPC_QK_FP8) {
        float amax = 0.0f;
        for (int i = 0; i < DEEPC_QK_FP8; i++) {
            float a = fabsf(x[i]);
            if (a > amax && a <= FLT_MAX) amax = a;
        }
        float d = amax / DEEPC_FP8_E4M3_MAX;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[ib].d = d;
        for (int i = 0; i < DEEPC_QK_FP8; i++) {
            float v = x[i] * id;
            y[ib].qs[i] = v == v ? deepc_fp32_to_fp8_e4m3(v) : 0;
        }
    }
}

void deepc_dequantize_row_fp8_b128(const deepc_block_fp8_b128 *x, float *y, size_t n) {
    float lut[256];
    deepc_fp8_e4m3_table(lut);
    for (size_t ib = 0; ib < n / DEEPC_QK_FP8; ib++)
        for (int i = 0; i < DEEPC_QK_FP8; i++) y[ib * DEEPC_QK_FP8 + i] = lut[x[ib].qs[i]] * x[ib].d;
}
