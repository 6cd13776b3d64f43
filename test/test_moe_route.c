/* test_moe_route.c - DeepSeek-V2 / V3 router semantics (core/moe_route.c).
 *
 * Expected values are hand-computed. Logits are chosen so the scores are
 * simple numbers: softmax of log(r_i) is r_i / sum(r), and sigmoid(log(p/(1-p)))
 * is p. The float rounding of logf/expf makes the computed scores differ from
 * those exact values by a few ulp, hence the 1e-5 relative tolerance on
 * weights; ids must match exactly. Ties are built from bit-identical logits
 * so they are exact ties in float too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "moe_route.h"

#define MAXE 512

/* logit whose sigmoid is p */
static float logit_of(double p) { return (float)log(p / (1.0 - p)); }

static deepc_route_params params(int n, int k, int ng, int kg, deepc_score_func s,
                                 deepc_topk_method m, bool norm, float scale, int ver) {
    deepc_route_params p;
    memset(&p, 0, sizeof p);
    p.n_experts = n; p.top_k = k; p.n_group = ng; p.topk_group = kg;
    p.score = s; p.method = m; p.norm_topk_prob = norm;
    p.routed_scaling_factor = scale; p.version = ver;
    return p;
}

static void route(const deepc_route_params *p, const float *logits, const float *bias,
                  int32_t *ids, float *w) {
    static float scratch[4 * MAXE];
    assert_int_equal(deepc_route_validate(p, NULL, 0), 0);
    assert_true(deepc_route_scratch_floats(p) <= 4 * MAXE);
    deepc_route(p, logits, bias, scratch, ids, w);
}

static void assert_rel(double got, double want) {
    double tol = 1e-5 * fabs(want) + 1e-7;
    if (fabs(got - want) > tol) fail_msg("got %.9g want %.9g", got, want);
}

/* ---- selection ---------------------------------------------------------- */

/* Softmax scores r/sum(r) with r = {1,4,2,1}: {0.125,0.5,0.25,0.125}.
 * Top-2 = experts 1 (0.5) and 2 (0.25), descending. V2, norm off, scale 1:
 * weights are the raw probabilities. */
static void test_greedy_softmax_top2(void **state) {
    (void)state;
    float logits[4] = {logf(1), logf(4), logf(2), logf(1)};
    deepc_route_params p = params(4, 2, 1, 1, DEEPC_SCORE_SOFTMAX, DEEPC_TOPK_GREEDY, false, 1.0f, 2);
    int32_t ids[2]; float w[2];
    route(&p, logits, NULL, ids, w);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 2);
    assert_rel(w[0], 0.5);
    assert_rel(w[1], 0.25);
}

/* Greedy ignores n_group/topk_group entirely (V2-Lite ships n_group=1 but the
 * values must not matter). Same case as above with junk group fields. */
static void test_greedy_ignores_group_fields(void **state) {
    (void)state;
    float logits[4] = {logf(1), logf(4), logf(2), logf(1)};
    deepc_route_params p = params(4, 2, 3, 7, DEEPC_SCORE_SOFTMAX, DEEPC_TOPK_GREEDY, false, 1.0f, 2);
    int32_t ids[2]; float w[2];
    route(&p, logits, NULL, ids, w);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 2);
}

/* V2 group_limited_greedy, 4 groups of 2, keep 2 groups, top-3, scale 16
 * (the full V2 value), norm off. Softmax of log(r):
 *   r = g0{10, 1} g1{9, 8.5} g2{9.5, 0.1} g3{0.2, 0.3}, sum(r) = 38.6
 * group max: 10, 9, 9.5, 0.3 -> keep g0 and g2.
 * Top-3 among {e0:10, e1:1, e4:9.5, e5:0.1} = e0, e4, e1. Experts e2 (9) and
 * e3 (8.5), the 3rd and 4th best overall, are dropped because g1 lost.
 * weights = r / 38.6 * 16. */
static void test_group_limited_drops_strong_expert_of_losing_group(void **state) {
    (void)state;
    const double r[8] = {10, 1, 9, 8.5, 9.5, 0.1, 0.2, 0.3};
    float logits[8];
    for (int i = 0; i < 8; i++) logits[i] = (float)log(r[i]);
    deepc_route_params p = params(8, 3, 4, 2, DEEPC_SCORE_SOFTMAX,
                                  DEEPC_TOPK_GROUP_LIMITED_GREEDY, false, 16.0f, 2);
    int32_t ids[3]; float w[3];
    route(&p, logits, NULL, ids, w);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[1], 4);
    assert_int_equal(ids[2], 1);
    assert_rel(w[0], 10.0 / 38.6 * 16.0);
    assert_rel(w[1], 9.5 / 38.6 * 16.0);
    assert_rel(w[2], 1.0 / 38.6 * 16.0);

    /* Plain greedy on the same logits would take e0, e4, e2. */
    p.method = DEEPC_TOPK_GREEDY;
    route(&p, logits, NULL, ids, w);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[1], 4);
    assert_int_equal(ids[2], 2);
}

/* V3 noaux_tc ranks groups by the sum of their two best scores, so the group
 * holding the single best expert can lose. Sigmoid scores, 4 groups of 2:
 *   g0{0.9, 0.2}=1.1  g1{0.75, 0.75}=1.5  g2{0.5, 0.8}=1.3  g3{0.25, 0.25}=0.5
 * keep 2 -> g1, g2. Top-2 of {e2:.75, e3:.75, e4:.5, e5:.8} = e5, then e2
 * (tie with e3, lower index first). e0 (0.9, best overall) is not chosen.
 * Weights (norm on, scale 2.5): 0.8/1.55*2.5, 0.75/1.55*2.5.
 * The V2 rule (group max) on the same scores keeps g0 (0.9) and g2 (0.8)
 * and picks e0, e5. */
static void test_noaux_tc_top2_sum_beats_single_best(void **state) {
    (void)state;
    const double s[8] = {0.9, 0.2, 0.75, 0.75, 0.5, 0.8, 0.25, 0.25};
    float logits[8];
    for (int i = 0; i < 8; i++) logits[i] = logit_of(s[i]);
    deepc_route_params p = params(8, 2, 4, 2, DEEPC_SCORE_SIGMOID, DEEPC_TOPK_NOAUX_TC, true, 2.5f, 3);
    int32_t ids[2]; float w[2];
    route(&p, logits, NULL, ids, w);
    assert_int_equal(ids[0], 5);
    assert_int_equal(ids[1], 2);
    assert_rel(w[0], 0.8 / 1.55 * 2.5);
    assert_rel(w[1], 0.75 / 1.55 * 2.5);

    p.method = DEEPC_TOPK_GROUP_LIMITED_GREEDY;
    route(&p, logits, NULL, ids, w);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[1], 5);
}

/* The correction bias changes the choice but not the weights.
 * Sigmoid scores {0.9, 0.8, 0.75, 0.2}, one group (n_group 1), top-2.
 * No bias: e0 (0.9), e1 (0.8).
 * bias {0, -0.1, +0.1, +0.8}: choice {0.9, 0.7, 0.85, 1.0} -> e3, e0.
 * Weights use the UNBIASED scores 0.2 and 0.9: normalized over 1.1 then
 * x2.5 -> 0.2/1.1*2.5 = 0.454545..., 0.9/1.1*2.5 = 2.045454... */
static void test_noaux_tc_bias_selects_but_does_not_weight(void **state) {
    (void)state;
    const double s[4] = {0.9, 0.8, 0.75, 0.2};
    float logits[4];
    for (int i = 0; i < 4; i++) logits[i] = logit_of(s[i]);
    const float bias[4] = {0.0f, -0.1f, 0.1f, 0.8f};
    deepc_route_params p = params(4, 2, 1, 1, DEEPC_SCORE_SIGMOID, DEEPC_TOPK_NOAUX_TC, true, 2.5f, 3);
    int32_t ids[2]; float w[2];

    route(&p, logits, NULL, ids, w);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[1], 1);
    assert_rel(w[0], 0.9 / 1.7 * 2.5);
    assert_rel(w[1], 0.8 / 1.7 * 2.5);

    route(&p, logits, bias, ids, w);
    assert_int_equal(ids[0], 3);
    assert_int_equal(ids[1], 0);
    assert_rel(w[0], 0.2 / 1.1 * 2.5);
    assert_rel(w[1], 0.9 / 1.1 * 2.5);
}

/* The bias also decides which groups are kept. Scores g0{0.9,0.8}=1.7,
 * g1{0.5,0.5}=1.0; keep 1 group, top-2. No bias: g0 -> e0, e1.
 * bias +0.5 on g1: g1 sums to 2.0 > 1.7 -> e2, e3 with weights from the
 * unbiased 0.5, 0.5 -> 0.5/1.0*2.5 = 1.25 each. */
static void test_noaux_tc_bias_moves_group_choice(void **state) {
    (void)state;
    const double s[4] = {0.9, 0.8, 0.5, 0.5};
    float logits[4];
    for (int i = 0; i < 4; i++) logits[i] = logit_of(s[i]);
    const float bias[4] = {0.0f, 0.0f, 0.5f, 0.5f};
    deepc_route_params p = params(4, 2, 2, 1, DEEPC_SCORE_SIGMOID, DEEPC_TOPK_NOAUX_TC, true, 2.5f, 3);
    int32_t ids[2]; float w[2];
    route(&p, logits, NULL, ids, w);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[1], 1);
    route(&p, logits, bias, ids, w);
    assert_int_equal(ids[0], 2);
    assert_int_equal(ids[1], 3);
    assert_rel(w[0], 1.25);
    assert_rel(w[1], 1.25);
}

/* Two groups with bit-identical group scores: the lower group index is kept.
 * Softmax logits g0{1, 0} g1{1, 0.5}: both group maxima come from logit 1.
 * topk_group 1 -> g0 -> e0, e1 (g1 would have given e2, e3). */
static void test_tie_between_groups_keeps_lower_group(void **state) {
    (void)state;
    float logits[4] = {1.0f, 0.0f, 1.0f, 0.5f};
    deepc_route_params p = params(4, 2, 2, 1, DEEPC_SCORE_SOFTMAX,
                                  DEEPC_TOPK_GROUP_LIMITED_GREEDY, false, 1.0f, 2);
    int32_t ids[2]; float w[2];
    route(&p, logits, NULL, ids, w);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[1], 1);

    /* Same for noaux_tc: g0{0.75,0.25} g1{0.25,0.75} have equal top-2 sums. */
    float l2[4] = {logit_of(0.75), logit_of(0.25), logit_of(0.25), logit_of(0.75)};
    p = params(4, 2, 2, 1, DEEPC_SCORE_SIGMOID, DEEPC_TOPK_NOAUX_TC, true, 1.0f, 3);
    route(&p, l2, NULL, ids, w);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[1], 1);
}

/* Equal expert scores come out lower index first (torch.topk order on CPU). */
static void test_tie_between_experts_lower_index_first(void **state) {
    (void)state;
    float logits[5] = {0.5f, 2.0f, 0.5f, 2.0f, 2.0f};
    deepc_route_params p = params(5, 4, 1, 1, DEEPC_SCORE_SOFTMAX, DEEPC_TOPK_GREEDY, false, 1.0f, 2);
    int32_t ids[4]; float w[4];
    route(&p, logits, NULL, ids, w);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 3);
    assert_int_equal(ids[2], 4);
    assert_int_equal(ids[3], 0);
}

/* ---- normalization and scaling ------------------------------------------ */

/* Softmax scores {0.125, 0.5, 0.25, 0.125}, top-2 = {0.5, 0.25}, sum 0.75,
 * scale 4:
 *   V2 norm on : normalized only  -> 2/3, 1/3          (scale NOT applied)
 *   V3 norm on : normalized x 4   -> 8/3, 4/3
 *   V2 norm off: scaled           -> 2.0, 1.0
 *   V3 norm off: scaled           -> 2.0, 1.0 */
static void test_v2_v3_scaling_order(void **state) {
    (void)state;
    float logits[4] = {logf(1), logf(4), logf(2), logf(1)};
    int32_t ids[2]; float w[2];
    deepc_route_params p = params(4, 2, 1, 1, DEEPC_SCORE_SOFTMAX, DEEPC_TOPK_GREEDY, true, 4.0f, 2);
    route(&p, logits, NULL, ids, w);
    assert_rel(w[0], 2.0 / 3.0);
    assert_rel(w[1], 1.0 / 3.0);

    p.version = 3;
    route(&p, logits, NULL, ids, w);
    assert_rel(w[0], 8.0 / 3.0);
    assert_rel(w[1], 4.0 / 3.0);

    p.norm_topk_prob = false;
    route(&p, logits, NULL, ids, w);
    assert_rel(w[0], 2.0);
    assert_rel(w[1], 1.0);

    p.version = 2;
    route(&p, logits, NULL, ids, w);
    assert_rel(w[0], 2.0);
    assert_rel(w[1], 1.0);
}

/* With top_k == 1 neither version normalizes, even with norm_topk_prob set:
 * both scale. Scores as above, top-1 = 0.5, scale 4 -> 2.0. */
static void test_top1_never_normalizes(void **state) {
    (void)state;
    float logits[4] = {logf(1), logf(4), logf(2), logf(1)};
    int32_t ids[1]; float w[1];
    for (int ver = 2; ver <= 3; ver++) {
        deepc_route_params p = params(4, 1, 1, 1, DEEPC_SCORE_SOFTMAX, DEEPC_TOPK_GREEDY, true, 4.0f, ver);
        route(&p, logits, NULL, ids, w);
        assert_int_equal(ids[0], 1);
        assert_rel(w[0], 2.0);
    }
}

/* ---- against a sort-based reference on the real V2 / V3 shapes ----------- */

typedef struct { float v; int i; } vi;

/* descending value, ascending index: the tie rule, via a total order */
static int cmp_vi(const void *a, const void *b) {
    const vi *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->i - y->i;
}

/* Written from the formulas with sorting instead of repeated selection, in
 * double for the scores; only used with well-separated random values. */
static void reference_route(const deepc_route_params *p, const float *logits,
                            const float *bias, int32_t *ids, double *w) {
    int n = p->n_experts;
    double s[MAXE];
    if (p->score == DEEPC_SCORE_SOFTMAX) {
        double mx = logits[0], sum = 0;
        for (int e = 1; e < n; e++) mx = fmax(mx, logits[e]);
        for (int e = 0; e < n; e++) sum += exp(logits[e] - mx);
        for (int e = 0; e < n; e++) s[e] = exp(logits[e] - mx) / sum;
    } else {
        for (int e = 0; e < n; e++) s[e] = 1.0 / (1.0 + exp(-(double)logits[e]));
    }
    vi c[MAXE];
    for (int e = 0; e < n; e++) { c[e].v = (float)(s[e] + (bias ? bias[e] : 0.0)); c[e].i = e; }
    int allowed[MAXE];
    for (int e = 0; e < n; e++) allowed[e] = 1;
    if (p->method != DEEPC_TOPK_GREEDY) {
        int G = p->n_group, per = n / G;
        vi gs[64];
        for (int g = 0; g < G; g++) {
            vi tmp[MAXE];
            memcpy(tmp, c + g * per, (size_t)per * sizeof *tmp);
            qsort(tmp, (size_t)per, sizeof *tmp, cmp_vi);
            gs[g].v = p->method == DEEPC_TOPK_NOAUX_TC ? tmp[0].v + tmp[1].v : tmp[0].v;
            gs[g].i = g;
        }
        qsort(gs, (size_t)G, sizeof *gs, cmp_vi);
        for (int e = 0; e < n; e++) allowed[e] = 0;
        for (int t = 0; t < p->topk_group; t++)
            for (int i = 0; i < per; i++) allowed[gs[t].i * per + i] = 1;
    }
    vi cand[MAXE];
    int m = 0;
    for (int e = 0; e < n; e++) if (allowed[e]) cand[m++] = c[e];
    qsort(cand, (size_t)m, sizeof *cand, cmp_vi);
    double sum = 0;
    for (int j = 0; j < p->top_k; j++) { ids[j] = cand[j].i; w[j] = s[cand[j].i]; sum += w[j]; }
    bool norm = p->top_k > 1 && p->norm_topk_prob;
    for (int j = 0; j < p->top_k; j++) {
        if (norm) w[j] /= sum;
        if (p->version == 3 || !norm) w[j] *= p->routed_scaling_factor;
    }
}

static uint32_t rng_state = 12345;
static float frand(void) {                 /* xorshift32, uniform in [-1, 1) */
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 17; rng_state ^= rng_state << 5;
    return (float)((rng_state >> 8) * (1.0 / 8388608.0)) - 1.0f;
}

static void check_against_reference(const deepc_route_params *p, int use_bias, int trials) {
    float logits[MAXE], bias[MAXE];
    for (int t = 0; t < trials; t++) {
        for (int e = 0; e < p->n_experts; e++) {
            logits[e] = 4.0f * frand();
            bias[e] = 0.05f * frand();
        }
        int32_t ids[16], rids[16];
        float w[16];
        double rw[16];
        route(p, logits, use_bias ? bias : NULL, ids, w);
        reference_route(p, logits, use_bias ? bias : NULL, rids, rw);
        for (int j = 0; j < p->top_k; j++) {
            assert_int_equal(ids[j], rids[j]);
            assert_rel(w[j], rw[j]);
        }
    }
}

/* Real shapes: V3/R1 (256, top 8, 8 groups keep 4, sigmoid, noaux_tc, norm,
 * 2.5), V2 (160, top 6, 8 groups keep 3, softmax, group_limited, no norm, 16),
 * V2-Lite (64, top 6, greedy, softmax, no norm, 1). 200 random tokens each. */
static void test_matches_sort_reference_on_real_shapes(void **state) {
    (void)state;
    deepc_route_params v3 = params(256, 8, 8, 4, DEEPC_SCORE_SIGMOID, DEEPC_TOPK_NOAUX_TC, true, 2.5f, 3);
    deepc_route_params v2 = params(160, 6, 8, 3, DEEPC_SCORE_SOFTMAX,
                                   DEEPC_TOPK_GROUP_LIMITED_GREEDY, false, 16.0f, 2);
    deepc_route_params lite = params(64, 6, 1, 1, DEEPC_SCORE_SOFTMAX, DEEPC_TOPK_GREEDY, false, 1.0f, 2);
    check_against_reference(&v3, 1, 200);
    check_against_reference(&v3, 0, 50);
    check_against_reference(&v2, 0, 200);
    check_against_reference(&lite, 0, 200);
}

/* ---- validation --------------------------------------------------------- */

static void expect_invalid(deepc_route_params p, const char *needle) {
    char msg[256];
    assert_int_equal(deepc_route_validate(&p, msg, sizeof msg), -1);
    if (!strstr(msg, needle)) fail_msg("message '%s' lacks '%s'", msg, needle);
}

static void test_invalid_configs_give_messages(void **state) {
    (void)state;
    deepc_route_params ok = params(256, 8, 8, 4, DEEPC_SCORE_SIGMOID, DEEPC_TOPK_NOAUX_TC, true, 2.5f, 3);
    char msg[256];
    assert_int_equal(deepc_route_validate(&ok, msg, sizeof msg), 0);
    assert_string_equal(msg, "");

    deepc_route_params p = ok; p.n_experts = 250;
    expect_invalid(p, "not divisible by n_group");
    p = ok; p.topk_group = 9;
    expect_invalid(p, "topk_group 9");
    p = ok; p.topk_group = 0;
    expect_invalid(p, "topk_group 0");
    p = ok; p.topk_group = 1; p.top_k = 33;       /* one group of 32 */
    expect_invalid(p, "exceeds the 32 experts");
    p = ok; p.score = DEEPC_SCORE_SOFTMAX;
    expect_invalid(p, "noaux_tc requires scoring_func sigmoid");
    p = params(8, 2, 8, 4, DEEPC_SCORE_SIGMOID, DEEPC_TOPK_NOAUX_TC, true, 1.0f, 3);
    expect_invalid(p, "top-2");
    p = ok; p.top_k = 0;
    expect_invalid(p, "num_experts_per_tok");
    p = ok; p.top_k = 300;
    expect_invalid(p, "num_experts_per_tok");
    p = ok; p.n_experts = 0;
    expect_invalid(p, "n_routed_experts");
    p = ok; p.version = 4;
    expect_invalid(p, "version 4");
    p = ok; p.method = (deepc_topk_method)7;
    expect_invalid(p, "topk_method");
    p = ok; p.score = (deepc_score_func)5;
    expect_invalid(p, "scoring_func");
    p = ok; p.routed_scaling_factor = NAN;
    expect_invalid(p, "routed_scaling_factor");
    p = ok; p.n_group = 0;
    expect_invalid(p, "n_group");
    assert_int_equal(deepc_route_validate(NULL, NULL, 0), -1);

    /* a tiny buffer still gets a terminated (truncated) message */
    p = ok; p.n_experts = 250;
    char small[8];
    assert_int_equal(deepc_route_validate(&p, small, sizeof small), -1);
    assert_int_equal(strlen(small), 7);
}

/* deepc_route on invalid params writes the -1 sentinel and touches nothing else. */
static void test_route_with_invalid_params_writes_sentinel(void **state) {
    (void)state;
    deepc_route_params p = params(250, 2, 8, 4, DEEPC_SCORE_SIGMOID, DEEPC_TOPK_NOAUX_TC, true, 2.5f, 3);
    float logits[250] = {0}, scratch[1] = {0};
    int32_t ids[2] = {5, 5}; float w[2] = {1, 1};
    deepc_route(&p, logits, NULL, scratch, ids, w);
    assert_int_equal(ids[0], -1);
    assert_int_equal(ids[1], -1);
    assert_true(w[0] == 0.0f && w[1] == 0.0f);
}

/* 3 x n_experts plus 2 x n_group for the grouped methods. */
static void test_scratch_size(void **state) {
    (void)state;
    deepc_route_params v3 = params(256, 8, 8, 4, DEEPC_SCORE_SIGMOID, DEEPC_TOPK_NOAUX_TC, true, 2.5f, 3);
    assert_int_equal(deepc_route_scratch_floats(&v3), 3 * 256 + 2 * 8);
    deepc_route_params lite = params(64, 6, 1, 1, DEEPC_SCORE_SOFTMAX, DEEPC_TOPK_GREEDY, false, 1.0f, 2);
    assert_int_equal(deepc_route_scratch_floats(&lite), 3 * 64);
    assert_int_equal(deepc_route_scratch_floats(NULL), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_softmax_top2),
        cmocka_unit_test(test_greedy_ignores_group_fields),
        cmocka_unit_test(test_group_limited_drops_strong_expert_of_losing_group),
        cmocka_unit_test(test_noaux_tc_top2_sum_beats_single_best),
        cmocka_unit_test(test_noaux_tc_bias_selects_but_does_not_weight),
        cmocka_unit_test(test_noaux_tc_bias_moves_group_choice),
        cmocka_unit_test(test_tie_between_groups_keeps_lower_group),
        cmocka_unit_test(test_tie_between_experts_lower_index_first),
        cmocka_unit_test(test_v2_v3_scaling_order),
        cmocka_unit_test(test_top1_never_normalizes),
        cmocka_unit_test(test_matches_sort_reference_on_real_shapes),
        cmocka_unit_test(test_invalid_configs_give_messages),
        cmocka_unit_test(test_route_with_invalid_params_writes_sentinel),
        cmocka_unit_test(test_scratch_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
