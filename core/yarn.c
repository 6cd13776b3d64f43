/* yarn.c - YaRN rotary embedding of DeepSeek-V2 / V3; semantics and the rope
 * layout finding are in yarn.h. Frequencies are computed in double and
 * rounded once to float, which is within an ulp or two of the reference's
 * float32 tensor arithmetic. */
#include "yarn.h"

#include <math.h>
#include <stddef.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* The rope dim at which a wavelength fits `rotations` times into the
 * original context: rope_dim * ln(orig / (2 pi rotations)) / (2 ln theta). */
static double correction_dim(double rotations, int rope_dim, double theta, double orig) {
    return (double)rope_dim * log(orig / (rotations * 2.0 * M_PI)) / (2.0 * log(theta));
}

void deepc_yarn_correction_range(const deepc_yarn_params *p, int rope_dim, int *low, int *high) {
    double orig = (double)p->original_max_position_embeddings;
    double lo = floor(correction_dim(p->beta_fast, rope_dim, p->rope_theta, orig));
    double hi = ceil(correction_dim(p->beta_slow, rope_dim, p->rope_theta, orig));
    if (lo < 0.0) lo = 0.0;
    if (hi > rope_dim - 1) hi = rope_dim - 1;
    *low = (int)lo;
    *high = (int)hi;
}

void deepc_yarn_inv_freq(const deepc_yarn_params *p, int rope_dim, float *inv_freq) {
    const int half = rope_dim / 2;
    const double theta = p->rope_theta;
    const int yarn = p->factor > 1.0f;
    int low = 0, high = 0;
    if (yarn) deepc_yarn_correction_range(p, rope_dim, &low, &high);
    /* ramp denominator; the reference nudges max by 0.001 when low == high */
    double span = high == low ? 0.001 : (double)(high - low);

    for (int i = 0; i < half; i++) {
        double extra = 1.0 / pow(theta, (double)(2 * i) / rope_dim);
        if (!yarn) {
            inv_freq[i] = (float)extra;
            continue;
        }
        double inter = extra / p->factor;
        double ramp = ((double)i - low) / span;
        if (ramp < 0.0) ramp = 0.0;
        if (ramp > 1.0) ramp = 1.0;
        /* ramp 0 (fast-rotating pairs) keeps extra, ramp 1 takes inter */
        inv_freq[i] = (float)(inter * ramp + extra * (1.0 - ramp));
    }
}

/* yarn_get_mscale in double, as the reference evaluates it in Python */
static double mscale_d(double scale, double mscale) {
    if (scale <= 1.0) return 1.0;
    return 0.1 * mscale * log(scale) + 1.0;
}

float deepc_yarn_mscale(float scale, float mscale) {
    return (float)mscale_d(scale, mscale);
}

float deepc_yarn_cos_sin_scale(const deepc_yarn_params *p) {
    return (float)(mscale_d(p->factor, p->mscale) / mscale_d(p->factor, p->mscale_all_dim));
}

float deepc_yarn_softmax_scale(int qk_head_dim, float factor, float mscale_all_dim) {
    double m = mscale_d(factor, mscale_all_dim);
    return (float)(m * m / sqrt((double)qk_head_dim));
}

void deepc_rope_cos_sin(const float *inv_freq, int half, int64_t pos, float scale,
                        float *cos_out, float *sin_out) {
    const float t = (float)pos;
    for (int i = 0; i < half; i++) {
        float angle = t * inv_freq[i];          /* fp32, like torch.outer(t, inv_freq) */
        cos_out[i] = (float)(cos((double)angle) * scale);
        sin_out[i] = (float)(sin((double)angle) * scale);
    }
}

void deepc_rope_interleaved(float *x, int n_heads, int head_stride, int rope_dim,
                            const float *cos, const float *sin) {
    const int half = rope_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * (size_t)head_stride;
        for (int i = 0; i < half; i++) {
            float a = v[2 * i], b = v[2 * i + 1];
            v[2 * i]     = a * cos[i] - b * sin[i];
            v[2 * i + 1] = a * sin[i] + b * cos[i];
        }
    }
}
