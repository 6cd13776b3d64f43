/* test_yarn.c - YaRN frequencies, mscale / softmax scale, and the rope layout
 * of DeepSeek-V2 / V3 (core/yarn.c).
 *
 * Expected values are computed here in double with straight-line versions of
 * the formulas of HF DeepseekV2YarnRotaryEmbedding / DeepSeek's
 * precompute_freqs_cis, and some are also pinned to hand-computed literals.
 * Tolerances: the library rounds a double result to float once, so 1e-6
 * relative (about 8 float ulps) is ample; literals written with 6 digits
 * are checked to 1e-5. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "yarn.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

static void assert_rel(double got, double want, double rel) {
    double tol = rel * fabs(want) + 1e-12;
    if (fabs(got - want) > tol) fail_msg("got %.10g want %.10g (rel %g)", got, want, rel);
}

/* DeepSeek-V3 / R1 config.json rope values */
static deepc_yarn_params v3_params(void) {
    deepc_yarn_params p;
    memset(&p, 0, sizeof p);
    p.rope_theta = 10000.0f;
    p.factor = 40.0f;
    p.original_max_position_embeddings = 4096;
    p.beta_fast = 32.0f;
    p.beta_slow = 1.0f;
    p.mscale = 1.0f;
    p.mscale_all_dim = 1.0f;
    return p;
}

/* DeepSeek-V2-Lite (and V2): same rope, mscale = mscale_all_dim = 0.707 */
static deepc_yarn_params v2lite_params(void) {
    deepc_yarn_params p = v3_params();
    p.mscale = 0.707f;
    p.mscale_all_dim = 0.707f;
    return p;
}

/* Straight-line YaRN inv_freq for pair i of a 64-dim rope with theta 1e4,
 * factor 40, original 4096, betas 32 / 1:
 *   corr(r)  = 64 * ln(4096 / (2 pi r)) / (2 ln 10000)
 *   low      = floor(corr(32)) = floor(10.47) = 10
 *   high     = ceil(corr(1))   = ceil(22.51)  = 23
 *   ramp(i)  = clamp((i - 10) / 13, 0, 1)
 *   inv(i)   = 10000^(-i/32) * (ramp / 40 + (1 - ramp)) */
static double expected_inv_freq_v3(int i) {
    double corr_fast = 64.0 * log(4096.0 / (2.0 * M_PI * 32.0)) / (2.0 * log(10000.0));
    double corr_slow = 64.0 * log(4096.0 / (2.0 * M_PI * 1.0)) / (2.0 * log(10000.0));
    double low = floor(corr_fast), high = ceil(corr_slow);
    double ramp = (i - low) / (high - low);
    ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
    double extra = pow(10000.0, -(2.0 * i) / 64.0);
    return extra / 40.0 * ramp + extra * (1.0 - ramp);
}

static void test_correction_range_v3(void **state) {
    (void)state;
    deepc_yarn_params p = v3_params();
    int low, high;
    deepc_yarn_correction_range(&p, 64, &low, &high);
    assert_int_equal(low, 10);
    assert_int_equal(high, 23);
}

/* floor for the low end and ceil for the high end, not rounding (a variant
 * seen in the wild that happens to agree for betas 32 / 1):
 * corr(16) = 64 ln(4096/(32 pi))/18.4207 = 12.88 -> 12 (round would give 13);
 * corr(2)  = 64 ln(4096/(4 pi))/18.4207  = 20.11 -> 21 (round would give 20). */
static void test_correction_range_floor_ceil(void **state) {
    (void)state;
    deepc_yarn_params p = v3_params();
    p.beta_fast = 16.0f;
    p.beta_slow = 2.0f;
    int low, high;
    deepc_yarn_correction_range(&p, 64, &low, &high);
    assert_int_equal(low, 12);
    assert_int_equal(high, 21);
}

/* Clamping: a huge beta_fast puts corr below 0 (-> 0), a tiny beta_slow puts
 * it above rope_dim - 1 (-> 63). corr(1e6) = 64 ln(4096/(2 pi 1e6))/18.42 < 0;
 * corr(1e-9) = 64 ln(6.5e11)/18.42 = 94 > 63. */
static void test_correction_range_clamps(void **state) {
    (void)state;
    deepc_yarn_params p = v3_params();
    p.beta_fast = 1e6f;
    p.beta_slow = 1e-9f;
    int low, high;
    deepc_yarn_correction_range(&p, 64, &low, &high);
    assert_int_equal(low, 0);
    assert_int_equal(high, 63);
}

static void test_inv_freq_v3_matches_formula(void **state) {
    (void)state;
    deepc_yarn_params p = v3_params();
    float inv[32];
    deepc_yarn_inv_freq(&p, 64, inv);
    for (int i = 0; i < 32; i++) assert_rel(inv[i], expected_inv_freq_v3(i), 1e-6);
    /* hand-checked points: pair 0 is never scaled (1.0); pairs <= low keep
     * 10000^(-i/32); pairs >= high are divided by 40; pair 16 is 6/13 of the
     * way: 10000^-0.5 * (6/13/40 + 7/13) = 0.01 * 0.5500 = 0.005500 */
    assert_rel(inv[0], 1.0, 1e-7);
    assert_rel(inv[10], pow(10000.0, -10.0 / 32.0), 1e-6);
    assert_rel(inv[23], pow(10000.0, -23.0 / 32.0) / 40.0, 1e-6);
    assert_rel(inv[31], pow(10000.0, -31.0 / 32.0) / 40.0, 1e-6);
    assert_rel(inv[16], 0.01 * (6.0 / 13.0 / 40.0 + 7.0 / 13.0), 1e-6);
}

/* V2-Lite has the same rope numbers; only the mscales differ. */
static void test_inv_freq_v2lite_matches_formula(void **state) {
    (void)state;
    deepc_yarn_params p = v2lite_params();
    float inv[32];
    deepc_yarn_inv_freq(&p, 64, inv);
    for (int i = 0; i < 32; i++) assert_rel(inv[i], expected_inv_freq_v3(i), 1e-6);
}

/* factor <= 1 (no rope_scaling) gives plain rope theta^(-2i/d). */
static void test_inv_freq_without_scaling_is_plain_rope(void **state) {
    (void)state;
    deepc_yarn_params p = v3_params();
    p.factor = 1.0f;
    float inv[32];
    deepc_yarn_inv_freq(&p, 64, inv);
    for (int i = 0; i < 32; i++) assert_rel(inv[i], pow(10000.0, -(2.0 * i) / 64.0), 1e-6);
}

/* low == high: the reference adds 0.001 to the ramp denominator, making the
 * ramp a step at i = low. beta_fast 1e6 -> corr < 0 -> low = 0;
 * beta_slow 700 -> corr = 64 ln(4096/(2 pi 700))/18.4207 = -0.25 -> ceil 0.
 * So pair 0 keeps 1.0 and every other pair is divided by 40. */
static void test_inv_freq_equal_low_high_is_a_step(void **state) {
    (void)state;
    deepc_yarn_params p = v3_params();
    p.beta_fast = 1e6f;
    p.beta_slow = 700.0f;
    int low, high;
    deepc_yarn_correction_range(&p, 64, &low, &high);
    assert_int_equal(low, 0);
    assert_int_equal(high, 0);
    float inv[32];
    deepc_yarn_inv_freq(&p, 64, inv);
    assert_rel(inv[0], 1.0, 1e-7);
    for (int i = 1; i < 32; i++) assert_rel(inv[i], pow(10000.0, -(2.0 * i) / 64.0) / 40.0, 1e-6);
}

/* yarn_get_mscale: 0.1 m ln(s) + 1 for s > 1, else 1.
 * ln 40 = 3.6888794541: mscale(40, 1) = 1.36888795, mscale(40, 0.707) = 1.26080378. */
static void test_mscale(void **state) {
    (void)state;
    assert_rel(deepc_yarn_mscale(40.0f, 1.0f), 1.36888795, 1e-6);
    assert_rel(deepc_yarn_mscale(40.0f, 0.707f), 1.26080378, 1e-6);
    assert_rel(deepc_yarn_mscale(1.0f, 1.0f), 1.0, 0);
    assert_rel(deepc_yarn_mscale(0.5f, 1.0f), 1.0, 0);
    assert_rel(deepc_yarn_mscale(40.0f, 0.0f), 1.0, 0);
}

/* softmax_scale = qk_head_dim^-0.5 * mscale(factor, mscale_all_dim)^2 with
 * qk_head_dim = 128 + 64 = 192 (sqrt 192 = 13.8564065):
 *   V3:      1.36888795^2 / 13.8564065 = 1.87385421 / 13.8564065 = 0.135234
 *   V2-Lite: 1.26080378^2 / 13.8564065 = 1.58962617 / 13.8564065 = 0.114721 */
static void test_softmax_scale(void **state) {
    (void)state;
    double m3 = 0.1 * 1.0 * log(40.0) + 1.0;
    double m2 = 0.1 * 0.707 * log(40.0) + 1.0;
    assert_rel(deepc_yarn_softmax_scale(192, 40.0f, 1.0f), m3 * m3 / sqrt(192.0), 1e-6);
    assert_rel(deepc_yarn_softmax_scale(192, 40.0f, 0.707f), m2 * m2 / sqrt(192.0), 1e-6);
    assert_rel(deepc_yarn_softmax_scale(192, 40.0f, 1.0f), 0.135234, 1e-5);
    assert_rel(deepc_yarn_softmax_scale(192, 40.0f, 0.707f), 0.114721, 1e-5);
    /* no scaling (factor 1) or mscale_all_dim 0: plain 1/sqrt(d) */
    assert_rel(deepc_yarn_softmax_scale(192, 1.0f, 1.0f), 1.0 / sqrt(192.0), 1e-6);
    assert_rel(deepc_yarn_softmax_scale(192, 40.0f, 0.0f), 1.0 / sqrt(192.0), 1e-6);
}

/* cos/sin factor = mscale(f, mscale) / mscale(f, mscale_all_dim): 1 for the
 * released configs; mscale 1, mscale_all_dim 0 (HF defaults) -> 1.36888795. */
static void test_cos_sin_scale(void **state) {
    (void)state;
    deepc_yarn_params p = v3_params();
    assert_rel(deepc_yarn_cos_sin_scale(&p), 1.0, 1e-7);
    p = v2lite_params();
    assert_rel(deepc_yarn_cos_sin_scale(&p), 1.0, 1e-7);
    p.mscale = 1.0f;
    p.mscale_all_dim = 0.0f;
    assert_rel(deepc_yarn_cos_sin_scale(&p), 1.36888795, 1e-6);
}

/* angle = fp32(pos * inv_freq); cos/sin scaled. pos 0 -> (scale, 0). */
static void test_rope_cos_sin(void **state) {
    (void)state;
    deepc_yarn_params p = v3_params();
    float inv[32], c[32], s[32];
    deepc_yarn_inv_freq(&p, 64, inv);
    deepc_rope_cos_sin(inv, 32, 0, 1.5f, c, s);
    for (int i = 0; i < 32; i++) {
        assert_rel(c[i], 1.5, 1e-7);
        assert_rel(s[i], 0.0, 0);
    }
    deepc_rope_cos_sin(inv, 32, 1000, 1.0f, c, s);
    for (int i = 0; i < 32; i++) {
        double a = (double)(1000.0f * inv[i]);
        assert_true(fabs(c[i] - cos(a)) < 1e-7);
        assert_true(fabs(s[i] - sin(a)) < 1e-7);
    }
}

/* ---- the rope layout: interleaved pairs == HF's permute + rotate_half ---- */

/* HF apply_rotary_pos_emb on one head's rope vector x (d values), straight
 * from its formula, in double:
 *   q  = x.view(d/2, 2).transpose -> q[j] = x[2j], q[j + d/2] = x[2j + 1]
 *   cos_full = cat(cos, cos), sin_full = cat(sin, sin)
 *   rotate_half(q) = cat(-q[d/2:], q[:d/2])
 *   out = q * cos_full + rotate_half(q) * sin_full
 * out stays in the de-interleaved order. */
static void hf_rope(const float *x, int d, const float *c, const float *s, double *out) {
    int h = d / 2;
    double q[256], rot[256];
    for (int j = 0; j < h; j++) { q[j] = x[2 * j]; q[j + h] = x[2 * j + 1]; }
    for (int j = 0; j < h; j++) { rot[j] = -q[j + h]; rot[j + h] = q[j]; }
    for (int j = 0; j < d; j++) out[j] = q[j] * c[j % h] + rot[j] * s[j % h];
}

static uint32_t rng = 2024;
static float frand(void) {
    rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5;
    return (float)((rng >> 8) * (1.0 / 8388608.0)) - 1.0f;
}

/* Our interleaved rotation equals HF's result up to the de-interleave
 * permutation: ours[2i] == hf[i], ours[2i+1] == hf[i + d/2]. 3 heads of
 * nope 128 + rope 64 (head stride 192), the V3 frequencies, position 12345.
 * Float vs double arithmetic of the same products: tolerance 1e-6 absolute
 * on values of magnitude <= 2. The nope part must stay untouched. */
static void test_interleaved_rope_equals_hf_permuted(void **state) {
    (void)state;
    enum { H = 3, NOPE = 128, D = 64, STRIDE = NOPE + D };
    deepc_yarn_params p = v3_params();
    float inv[D / 2], c[D / 2], s[D / 2];
    deepc_yarn_inv_freq(&p, D, inv);
    deepc_rope_cos_sin(inv, D / 2, 12345, deepc_yarn_cos_sin_scale(&p), c, s);

    float q[H * STRIDE], orig[H * STRIDE];
    for (int i = 0; i < H * STRIDE; i++) orig[i] = q[i] = frand();
    deepc_rope_interleaved(q + NOPE, H, STRIDE, D, c, s);

    for (int h = 0; h < H; h++) {
        double hf[D];
        hf_rope(orig + h * STRIDE + NOPE, D, c, s, hf);
        const float *ours = q + h * STRIDE + NOPE;
        for (int i = 0; i < D / 2; i++) {
            assert_true(fabs(ours[2 * i] - hf[i]) < 1e-6);
            assert_true(fabs(ours[2 * i + 1] - hf[i + D / 2]) < 1e-6);
        }
        assert_memory_equal(q + h * STRIDE, orig + h * STRIDE, NOPE * sizeof(float));
    }
}

/* What attention sees: q_pe . k_pe with q at position 700 and k at 3 gives
 * the same score with our layout as with HF's (both vectors permuted alike),
 * and it depends only on the position difference (rope's defining property),
 * i.e. equals the score for positions 697 and 0. */
static void test_rope_scores_match_hf_and_are_relative(void **state) {
    (void)state;
    enum { D = 64 };
    deepc_yarn_params p = v3_params();
    float inv[D / 2], cq[D / 2], sq[D / 2], ck[D / 2], sk[D / 2];
    deepc_yarn_inv_freq(&p, D, inv);
    float q0[D], k0[D];
    for (int i = 0; i < D; i++) { q0[i] = frand(); k0[i] = frand(); }

    deepc_rope_cos_sin(inv, D / 2, 700, 1.0f, cq, sq);
    deepc_rope_cos_sin(inv, D / 2, 3, 1.0f, ck, sk);
    float q[D], k[D];
    memcpy(q, q0, sizeof q); memcpy(k, k0, sizeof k);
    deepc_rope_interleaved(q, 1, D, D, cq, sq);
    deepc_rope_interleaved(k, 1, D, D, ck, sk);
    double ours = 0, hf = 0;
    double hq[D], hk[D];
    hf_rope(q0, D, cq, sq, hq);
    hf_rope(k0, D, ck, sk, hk);
    for (int i = 0; i < D; i++) { ours += (double)q[i] * k[i]; hf += hq[i] * hk[i]; }
    assert_true(fabs(ours - hf) < 1e-5);

    /* shift both positions by -3; fp32 angles at 700 carry ~3e-5 rad of
     * rounding, so allow 1e-3 on a score of magnitude ~ D/3 */
    deepc_rope_cos_sin(inv, D / 2, 697, 1.0f, cq, sq);
    deepc_rope_cos_sin(inv, D / 2, 0, 1.0f, ck, sk);
    memcpy(q, q0, sizeof q); memcpy(k, k0, sizeof k);
    deepc_rope_interleaved(q, 1, D, D, cq, sq);
    deepc_rope_interleaved(k, 1, D, D, ck, sk);
    double shifted = 0;
    for (int i = 0; i < D; i++) shifted += (double)q[i] * k[i];
    assert_true(fabs(shifted - ours) < 1e-3);
}

/* DeepSeek's inference code: view_as_complex on adjacent pairs times
 * exp(i angle). Pair (1, 0) rotated by 90 degrees becomes (0, 1); (0, 1)
 * becomes (-1, 0). */
static void test_rope_is_complex_multiply_on_pairs(void **state) {
    (void)state;
    float x[4] = {1, 0, 0, 1};
    float c[2] = {0, 0}, s[2] = {1, 1};
    deepc_rope_interleaved(x, 1, 4, 4, c, s);
    assert_true(x[0] == 0 && x[1] == 1);
    assert_true(x[2] == -1 && x[3] == 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_correction_range_v3),
        cmocka_unit_test(test_correction_range_floor_ceil),
        cmocka_unit_test(test_correction_range_clamps),
        cmocka_unit_test(test_inv_freq_v3_matches_formula),
        cmocka_unit_test(test_inv_freq_v2lite_matches_formula),
        cmocka_unit_test(test_inv_freq_without_scaling_is_plain_rope),
        cmocka_unit_test(test_inv_freq_equal_low_high_is_a_step),
        cmocka_unit_test(test_mscale),
        cmocka_unit_test(test_softmax_scale),
        cmocka_unit_test(test_cos_sin_scale),
        cmocka_unit_test(test_rope_cos_sin),
        cmocka_unit_test(test_interleaved_rope_equals_hf_permuted),
        cmocka_unit_test(test_rope_scores_match_hf_and_are_relative),
        cmocka_unit_test(test_rope_is_complex_multiply_on_pairs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
