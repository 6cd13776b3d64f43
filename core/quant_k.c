/* quant_k.c - the scalar ground truth of the low-bit weight types (q4_k,
 * q3_k, q2_k), their activation type q8_k, and fp8_b128. Block layouts are in
 * quant.h and, byte by byte, in FORMAT.md.
 *
 * The weight quantizers do not round to nearest with a max-abs scale: for
 * each sub-block they search a handful of candidate scales (and mins) and
 * refit the best by weighted least squares, minimizing
 *     E = sum_i w_i (x_i - xhat_i)^2,  w_i = imp[i], or x_i^2 without one,
 * then quantize the sub-block scales against the fp16 super-scale (itself
 * chosen by a weighted fit), try each stored sub-block scale +-1, and finally
 * round every element against the scale and min exactly as stored. Rounding
 * each element to nearest is optimal for a fixed scale and min, so the last
 * step never undoes the search.
 *
 * Inputs are sanitized first: NaN becomes 0 and magnitudes are clamped to
 * 2^30 (far beyond what fp16 super-scales can express: q4_k saturates near
 * 65504 * 63 * 15 = 6.2e7), so the search never sees a non-finite value.
 * Sums use double: x^2 weights of values up to 2^30 would overflow fp32 in
 * the normal equations. The quantizers allocate nothing; a 256-element
 * super-block's scratch lives on the stack. */
#include "quant.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "fp8.h"

_Static_assert(DEEPC_QK_K == 256, "k-quant kernels assume 256-element super-blocks");
_Static_assert(DEEPC_QK_FP8 == DEEPC_FP8_BLOCK, "fp8_b128 blocks match the checkpoint's 128-wide scale blocks");

#define X_LIMIT 0x1p30f

/* ---- shared helpers ------------------------------------------------------ */

/* Nearest integer (ties to even, as lrintf in the default environment),
 * clamped to [lo, hi]; NaN gives the value in [lo, hi] closest to 0. The
 * clamp comes first so the conversion never sees an out-of-range value. */
static int qround(float v, int lo, int hi) {
    if (v != v) return lo > 0 ? lo : hi < 0 ? hi : 0;
    if (v <= (float)lo) return lo;
    if (v >= (float)hi) return hi;
    return (int)lrintf(v);
}

/* Copies one block, sanitized, and its per-element weights. A block whose
 * weights are all zero (all-zero data, or an all-zero importance slice) gets
 * uniform weights so the fit still has something to minimize. */
static void prepare(const float *src, const float *imp, int n, float *x, double *w) {
    double sw = 0.0;
    for (int i = 0; i < n; i++) {
        float v = src[i];
        if (v != v) v = 0.0f;
        else if (v > X_LIMIT) v = X_LIMIT;
        else if (v < -X_LIMIT) v = -X_LIMIT;
        x[i] = v;
        double wi = imp ? (imp[i] >= 0.0f && imp[i] <= FLT_MAX ? (double)imp[i] : 0.0) : (double)v * v;
        w[i] = wi;
        sw += wi;
    }
    if (!(sw > 0.0))
        for (int i = 0; i < n; i++) w[i] = 1.0;
}

static uint16_t fp16_finite(float v) {
    uint16_t h = deepc_fp32_to_fp16(v);
    if ((h & 0x7fffu) >= 0x7c00u) h = (uint16_t)((h & 0x8000u) | 0x7bffu); /* clamp to +-65504 */
    return h;
}

/* ---- affine fit: x ~ s*q - m, q in [0, nmax], s >= 0, m >= 0 -------------- */

/* Weighted error of x against s*q - m with each q rounded to nearest; the
 * q are stored in q_out when it is not NULL. */
static double affine_err(const float *x, const double *w, int n, int nmax, float s, float m, int *q_out) {
    float is = s > 0.0f ? 1.0f / s : 0.0f;
    double e = 0.0;
    for (int i = 0; i < n; i++) {
        int q = s > 0.0f ? qround((x[i] + m) * is, 0, nmax) : 0;
        double r = (double)(s * (float)q - m) - (double)x[i];
        e += w[i] * r * r;
        if (q_out) q_out[i] = q;
    }
    return e;
}

/* Least-squares s and m for the given q (the 2x2 normal equations of
 * sum w (s q - m - x)^2); m is held at 0 when the free fit wants a negative
 * min (the format subtracts a non-negative min). Returns false when q does
 * not determine s (all equal). */
static bool affine_refit(const float *x, const double *w, const int *q, int n, float *s, float *m) {
    double sw = 0, sq = 0, sqq = 0, sx = 0, sxq = 0;
    for (int i = 0; i < n; i++) {
        sw += w[i];
        sq += w[i] * q[i];
        sqq += w[i] * q[i] * q[i];
        sx += w[i] * x[i];
        sxq += w[i] * x[i] * q[i];
    }
    double det = sw * sqq - sq * sq;
    if (!(det > 0.0)) return false;
    double ss = (sw * sxq - sx * sq) / det, off = (sqq * sx - sq * sxq) / det;
    if (off > 0.0) { off = 0.0; ss = sxq / sqq; }
    if (!(ss > 0.0)) return false;
    *s = (float)ss;
    *m = (float)-off;
    return true;
}

/* Searches s and m for one sub-block: the range mapped onto nmax + delta
 * levels for 11 deltas in [-1, 1], each rounding refit by least squares
 * twice (round, refit, round again, refit). The plain min/max fit is the
 * first candidate, so the result is never worse than it. On Gaussian data
 * 21 deltas lowered the RMS error by under 0.1% for about twice the time;
 * 5 raised it by up to 0.4% (q2_k). */
#define GRID_HALF 5            /* deltas k / GRID_HALF, k = -GRID_HALF .. GRID_HALF */
static void fit_affine(const float *x, const double *w, int n, int nmax, float *s_out, float *m_out) {
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    if (lo > 0.0f) lo = 0.0f;
    if (!(hi > lo)) { /* constant block <= 0: exactly -m */
        *s_out = 0.0f;
        *m_out = -lo;
        return;
    }
    float best_s = (hi - lo) / (float)nmax, best_m = -lo;
    double best = affine_err(x, w, n, nmax, best_s, best_m, NULL);
    int q[32];
    for (int k = -GRID_HALF; k <= GRID_HALF; k++) {
        float is = ((float)nmax + (float)k / GRID_HALF) / (hi - lo);
        for (int i = 0; i < n; i++) q[i] = qround((x[i] - lo) * is, 0, nmax);
        for (int it = 0; it < 2; it++) {
            float s, m;
            if (!affine_refit(x, w, q, n, &s, &m)) break;
            double e = affine_err(x, w, n, nmax, s, m, it == 0 ? q : NULL);
            if (e < best) { best = e; best_s = s; best_m = m; }
        }
    }
    *s_out = best_s;
    *m_out = best_m;
}

/* ---- symmetric fit: x ~ s*q, q in [-nneg, npos], s of either sign -------- */

static double sym_err(const float *x, const double *w, int n, int nneg, int npos, float s, int *q_out) {
    float is = s != 0.0f ? 1.0f / s : 0.0f;
    double e = 0.0;
    for (int i = 0; i < n; i++) {
        int q = qround(x[i] * is, -nneg, npos);
        double r = (double)(s * (float)q) - (double)x[i];
        e += w[i] * r * r;
        if (q_out) q_out[i] = q;
    }
    return e;
}

/* The element of largest magnitude goes to either end of the range (the
 * negative end is one level longer), for the same deltas as fit_affine;
 * every rounding is refit by least squares (s = sum w x q / sum w q^2)
 * twice. */
static float fit_sym(const float *x, const double *w, int n, int nneg, int npos) {
    float vmax = 0.0f;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > fabsf(vmax)) vmax = x[i];
    if (vmax == 0.0f) return 0.0f;
    float best_s = -vmax / (float)nneg;
    double best = sym_err(x, w, n, nneg, npos, best_s, NULL);
    int q[32];
    for (int end = 0; end < 2; end++) {
        for (int k = -GRID_HALF; k <= GRID_HALF; k++) {
            float lv = end == 0 ? -((float)nneg + (float)k / GRID_HALF) : (float)npos + (float)k / GRID_HALF;
            float is = lv / vmax;
            for (int i = 0; i < n; i++) q[i] = qround(x[i] * is, -nneg, npos);
            for (int it = 0; it < 2; it++) {
                double sxq = 0, sqq = 0;
                for (int i = 0; i < n; i++) {
                    sxq += w[i] * x[i] * q[i];
                    sqq += w[i] * q[i] * q[i];
                }
                if (!(sqq > 0.0) || sxq == 0.0) break;
                float s = (float)(sxq / sqq);
                double e = sym_err(x, w, n, nneg, npos, s, it == 0 ? q : NULL);
                if (e < best) { best = e; best_s = s; }
            }
        }
    }
    return best_s;
}

/* ---- super-block scales ------------------------------------------------- */

/* Quantizes per-sub-block values v[j] (sub-block scales or mins) to D * k[j]
 * with k in [kmin, kmax] and D an fp16, minimizing sum W[j] (v[j] - D k[j])^2:
 * D candidates map the value of largest magnitude onto either end of the
 * range, shrunk by up to 1.5 levels, each refit by least squares and rounded
 * to fp16 before it is scored. Returns D's fp16 bits; k is filled. */
static uint16_t quant_superscale(const float *v, const double *W, int nsub, int kmin, int kmax, int *k) {
    float vmax = 0.0f;
    for (int j = 0; j < nsub; j++)
        if (fabsf(v[j]) > fabsf(vmax)) vmax = v[j];
    memset(k, 0, (size_t)nsub * sizeof *k);
    if (vmax == 0.0f) return 0;
    double best = INFINITY;
    uint16_t best_h = 0;
    for (int end = 0; end < 2; end++) {
        int lim = end == 0 ? kmax : kmin;
        if (lim == 0) continue;
        for (int step = 0; step <= 6; step++) {
            float lv = (float)lim - (lim > 0 ? 0.25f : -0.25f) * (float)step;
            float D = vmax / lv;
            for (int it = 0; it < 2; it++) {
                uint16_t h = fp16_finite(D);
                float Dh = deepc_fp16_to_fp32(h);
                if (Dh == 0.0f) break;
                double e = 0.0, svk = 0.0, skk = 0.0;
                for (int j = 0; j < nsub; j++) {
                    int kj = qround(v[j] / Dh, kmin, kmax);
                    double r = (double)v[j] - (double)Dh * kj;
                    e += W[j] * r * r;
                    svk += W[j] * v[j] * kj;
                    skk += W[j] * (double)kj * kj;
                }
                if (e < best) { best = e; best_h = h; }
                if (!(skk > 0.0)) break;
                D = (float)(svk / skk);
            }
        }
    }
    float Dh = deepc_fp16_to_fp32(best_h);
    if (Dh != 0.0f)
        for (int j = 0; j < nsub; j++) k[j] = qround(v[j] / Dh, kmin, kmax);
    return best_h;
}

/* ---- q4_k / q2_k: affine sub-blocks ------------------------------------ */

/* One super-block of an affine type: nsub sub-blocks of n elements, q in
 * [0, nmax], sub-block scales and mins in [0, kmax]. Fills sc, mn, q and
 * the two fp16 super-scales. */
static void quantize_affine_super(const float *src, const float *imp, int nsub, int n, int nmax, int kmax,
                                  uint16_t *dh, uint16_t *mh, int *sc, int *mn, uint8_t *q) {
    float x[DEEPC_QK_K];
    double w[DEEPC_QK_K];
    float s[16], m[16];
    double Ws[16], Wm[16];
    prepare(src, imp, nsub * n, x, w);
    for (int j = 0; j < nsub; j++) {
        const float *xj = x + j * n;
        const double *wj = w + j * n;
        fit_affine(xj, wj, n, nmax, &s[j], &m[j]);
        /* sensitivity of E to the scale (sum w q^2) and to the min (sum w) */
        float is = s[j] > 0.0f ? 1.0f / s[j] : 0.0f;
        Ws[j] = Wm[j] = 0.0;
        for (int i = 0; i < n; i++) {
            int qi = qround((xj[i] + m[j]) * is, 0, nmax);
            Ws[j] += wj[i] * qi * qi;
            Wm[j] += wj[i];
        }
    }
    *dh = quant_superscale(s, Ws, nsub, 0, kmax, sc);
    *mh = quant_superscale(m, Wm, nsub, 0, kmax, mn);
    float d = deepc_fp16_to_fp32(*dh), dmin = deepc_fp16_to_fp32(*mh);
    for (int j = 0; j < nsub; j++) {
        const float *xj = x + j * n;
        const double *wj = w + j * n;
        int bs = sc[j], bm = mn[j];
        double best = affine_err(xj, wj, n, nmax, d * (float)bs, dmin * (float)bm, NULL);
        for (int a = sc[j] - 1; a <= sc[j] + 1; a++) {
            for (int b = mn[j] - 1; b <= mn[j] + 1; b++) {
                if (a < 0 || a > kmax || b < 0 || b > kmax || (a == sc[j] && b == mn[j])) continue;
                double e = affine_err(xj, wj, n, nmax, d * (float)a, dmin * (float)b, NULL);
                if (e < best) { best = e; bs = a; bm = b; }
            }
        }
        sc[j] = bs;
        mn[j] = bm;
        float S = d * (float)bs, M = dmin * (float)bm, is = S > 0.0f ? 1.0f / S : 0.0f;
        for (int i = 0; i < n; i++) q[j * n + i] = (uint8_t)(S > 0.0f ? qround((xj[i] + M) * is, 0, nmax) : 0);
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
    memset(qs, 0, 64);
    for (int i = 0; i < DEEPC_QK_K; i++) qs[32 * (i / 128) + i % 32] |= (uint8_t)((q[i] & 3) << (2 * ((i / 32) % 4)));
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

/* ---- q3_k: symmetric sub-blocks ---------------------------------------- */

void deepc_quantize_row_q3_k(const float *src, deepc_block_q3_k *y, size_t n, const float *imp) {
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++) {
        float x[DEEPC_QK_K], s[16];
        double w[DEEPC_QK_K], W[16];
        int k[16];
        uint8_t q[DEEPC_QK_K];
        deepc_block_q3_k *b = &y[ib];
        prepare(src + ib * DEEPC_QK_K, imp ? imp + ib * DEEPC_QK_K : NULL, DEEPC_QK_K, x, w);
        for (int j = 0; j < 16; j++) {
            s[j] = fit_sym(x + 16 * j, w + 16 * j, 16, 4, 3);
            float is = s[j] != 0.0f ? 1.0f / s[j] : 0.0f;
            W[j] = 0.0;
            for (int i = 0; i < 16; i++) {
                int qi = qround(x[16 * j + i] * is, -4, 3);
                W[j] += w[16 * j + i] * qi * qi;
            }
        }
        b->d = quant_superscale(s, W, 16, -32, 31, k);
        float d = deepc_fp16_to_fp32(b->d);
        memset(b->scales, 0, sizeof b->scales);
        for (int j = 0; j < 16; j++) {
            const float *xj = x + 16 * j;
            const double *wj = w + 16 * j;
            int bk = k[j];
            double best = sym_err(xj, wj, 16, 4, 3, d * (float)bk, NULL);
            for (int a = k[j] - 1; a <= k[j] + 1; a += 2) {
                if (a < -32 || a > 31) continue;
                double e = sym_err(xj, wj, 16, 4, 3, d * (float)a, NULL);
                if (e < best) { best = e; bk = a; }
            }
            float S = d * (float)bk, is = S != 0.0f ? 1.0f / S : 0.0f;
            for (int i = 0; i < 16; i++) q[16 * j + i] = (uint8_t)(qround(xj[i] * is, -4, 3) + 4);
            int u = bk + 32;
            b->scales[j % 8] |= (uint8_t)((u & 15) << (4 * (j / 8)));
            b->scales[8 + j % 4] |= (uint8_t)((u >> 4) << (2 * (j / 4)));
        }
        pack_2bit(q, b->qs);
        memset(b->hmask, 0, sizeof b->hmask);
        for (int i = 0; i < DEEPC_QK_K; i++) b->hmask[i % 32] |= (uint8_t)(((q[i] >> 2) & 1) << (i / 32));
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
