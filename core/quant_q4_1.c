/* quant_q4_1.c - scalar reference quantize/dequantize of q4_1 (blocks of 32:
 * fp16 d, fp16 m, 16 bytes of nibbles; x = d*q - m, q in [0, 15]), the
 * converter's 4-bit fallback for rows that are not whole k-quant
 * super-blocks. Layout in core/quant.h and FORMAT.md.
 *
 * The quantizer minimizes the weighted error E = sum_i w_i (x_i - xhat_i)^2,
 * w_i = imp[i] (the importance vector of deepc_quantize_row_imp) or x_i^2
 * without one (all weights zero: every element weighs 1). It runs on
 * billions of weights per conversion, so it is a cheap search rather than an
 * exhaustive one: the plain min/max fit (d = (max - min)/15, m = -min) and
 * GRID_N rescaled roundings of it, each refit by weighted least squares in
 * closed form. Every candidate's error comes from five weighted sums
 * (E = Sxx - 2 d Sqx + 2 b (d Sq - Sx) + d^2 Sqq + b^2 Sw with b = -m), so
 * one pass over the block per candidate. The best (d, m) is then rounded to
 * fp16 - m first, d refit to the rounded m - and the codes chosen by nearest
 * rounding against the stored values, which is what dequantization uses.
 * m is signed (a block of all-positive values has m < 0), so the 16 levels
 * always span the block's own range.
 *
 * Non-finite inputs quantize as 0 (as q8_0 treats NaN); scales beyond the
 * fp16 range are clamped to +-65504. */
#include "quant.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define QK DEEPC_QK4_1
#define NMAX 15
/* candidates: iscale = (15 + k / GRID_STEP) / (max - min), |k| <= GRID_HALF */
#define GRID_HALF 6
#define GRID_STEP 6.0f

static uint16_t to_fp16_clamped(float v) {
    uint16_t h = deepc_fp32_to_fp16(v);
    if ((h & 0x7fffu) >= 0x7c00u) h = (uint16_t)((h & 0x8000u) | 0x7bffu); /* inf: +-65504 */
    return h;
}

/* Round v to [0, 15], nearest with halves up; v is never NaN here. */
static inline int code(float v) {
    v = v > 0.0f ? v : 0.0f;
    v = v < (float)NMAX ? v : (float)NMAX;
    return (int)(v + 0.5f);
}

static void quantize_block(const float *xin, deepc_block_q4_1 *b, const float *imp) {
    float x[QK], w[QK];
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int i = 0; i < QK; i++) {
        float v = xin[i];
        if (!(fabsf(v) <= FLT_MAX)) v = 0.0f; /* NaN, inf */
        x[i] = v;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    float sw = 0.0f;
    for (int i = 0; i < QK; i++) {
        float wi = imp ? imp[i] : x[i] * x[i];
        w[i] = wi >= 0.0f && wi <= FLT_MAX ? wi : 0.0f;
        sw += w[i];
    }
    if (!(sw > 0.0f)) {
        for (int i = 0; i < QK; i++) w[i] = 1.0f;
        sw = (float)QK;
    }

    float best_d = 0.0f, best_b = lo; /* x ~ d*q + b, b = -m */
    if (hi > lo) {
        float sx = 0.0f, sxx = 0.0f;
        for (int i = 0; i < QK; i++) {
            sx += w[i] * x[i];
            sxx += w[i] * x[i] * x[i];
        }
        float range = hi - lo;
        best_d = range / (float)NMAX;
        float best_e = FLT_MAX;
        /* k = GRID_HALF + 1 stands for the plain min/max fit, taken as is */
        for (int k = -GRID_HALF; k <= GRID_HALF + 1; k++) {
            bool plain = k > GRID_HALF;
            float is = plain ? (float)NMAX / range : ((float)NMAX + (float)k / GRID_STEP) / range;
            /* four partial sums per quantity, so the loop is not one long
             * dependency chain (and vectorizes) */
            float aq[4] = { 0 }, aqq[4] = { 0 }, aqx[4] = { 0 };
            for (int i = 0; i < QK; i += 4)
                for (int l = 0; l < 4; l++) {
                    /* v >= 0 (x >= lo); min(v, 15) without a branch, so
                     * the loop vectorizes (rounding of the clamp is
                     * harmless: this only ranks candidates) */
                    float v = (x[i + l] - lo) * is;
                    v = 0.5f * (v + (float)NMAX - fabsf(v - (float)NMAX));
                    float q = (float)(int)(v + 0.5f);
                    float wq = w[i + l] * q;
                    aq[l] += wq;
                    aqq[l] += wq * q;
                    aqx[l] += wq * x[i + l];
                }
            float sq = (aq[0] + aq[1]) + (aq[2] + aq[3]);
            float sqq = (aqq[0] + aqq[1]) + (aqq[2] + aqq[3]);
            float sqx = (aqx[0] + aqx[1]) + (aqx[2] + aqx[3]);
            float d, bb;
            if (plain) {
                d = range / (float)NMAX;
                bb = lo;
            } else {
                float det = sw * sqq - sq * sq;
                if (!(det > 0.0f)) continue;
                d = (sw * sqx - sq * sx) / det;
                bb = (sqq * sx - sq * sqx) / det;
                if (!(d > 0.0f)) continue;
            }
            float e = sxx - 2.0f * d * sqx + 2.0f * bb * (d * sq - sx) + d * d * sqq + bb * bb * sw;
            if (e < best_e) {
                best_e = e;
                best_d = d;
                best_b = bb;
            }
        }
    }

    /* Store: m rounded first, then d refit by least squares to the rounded
     * m (x + m ~ d*q), then the codes against the stored pair. */
    uint16_t mh = to_fp16_clamped(-best_b);
    float m = deepc_fp16_to_fp32(mh);
    if (best_d > 0.0f) {
        float id = 1.0f / best_d, sqy = 0.0f, sqq = 0.0f;
        for (int i = 0; i < QK; i++) {
            float q = (float)code((x[i] + m) * id);
            sqy += w[i] * q * (x[i] + m);
            sqq += w[i] * q * q;
        }
        if (sqq > 0.0f && sqy > 0.0f) best_d = sqy / sqq;
    }
    uint16_t dh = to_fp16_clamped(best_d > 0.0f ? best_d : 0.0f);
    float d = deepc_fp16_to_fp32(dh);
    float id = d > 0.0f ? 1.0f / d : 0.0f;
    b->d = dh;
    b->m = mh;
    for (int l = 0; l < QK / 2; l++) {
        int q0 = code((x[l] + m) * id), q1 = code((x[l + QK / 2] + m) * id);
        b->qs[l] = (uint8_t)(q0 | (q1 << 4));
    }
}

void deepc_quantize_row_q4_1(const float *x, deepc_block_q4_1 *y, size_t n, const float *imp) {
    for (size_t ib = 0; ib < n / QK; ib++)
        quantize_block(x + ib * QK, &y[ib], imp ? imp + ib * QK : NULL);
}

void deepc_dequantize_row_q4_1(const deepc_block_q4_1 *x, float *y, size_t n) {
    for (size_t ib = 0; ib < n / QK; ib++, y += QK) {
        float d = deepc_fp16_to_fp32(x[ib].d), m = deepc_fp16_to_fp32(x[ib].m);
        for (int l = 0; l < QK / 2; l++) {
            y[l] = d * (float)(x[ib].qs[l] & 15) - m;
            y[l + QK / 2] = d * (float)(x[ib].qs[l] >> 4) - m;
        }
    }
}
