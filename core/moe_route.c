/* moe_route.c - DeepSeek-V2 / V3 MoE routing; the semantics are described in
 * moe_route.h. Implementation notes:
 *
 * - Top-k is done by repeated selection (top_k passes over at most n_experts
 *   values; 8 x 256 for V3), which yields the torch.topk(sorted=True) order
 *   directly: descending value, the lower index first among equal values.
 *   Already-chosen and masked-out experts are skipped with a flag array, so
 *   no sentinel value can ever be picked twice.
 * - Masking: DeepSeek's inference/model.py fills the experts of dropped groups
 *   with -inf before the final top-k, so they can never be chosen. Some
 *   revisions of the Hugging Face modeling code fill them with 0.0 instead.
 *   The two agree whenever at least top_k experts of the kept groups have a
 *   selection score above 0 - always true for softmax scores (V2) and for
 *   sigmoid scores unless the correction bias pushes most of them below zero.
 *   We implement the -inf behaviour (a dropped group is never used).
 * - All arithmetic is fp32, as in the reference (softmax/sigmoid in fp32,
 *   the +1e-20 denominator, the scale multiply).
 *
 * Scratch layout (floats): score[n] | choice[n] | skip[n] | gscore[G] | gskip[G]. */
#include "moe_route.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

/* ---- validation -------------------------------------------------------- */

static int fail(char *msg, size_t cap, const char *fmt, ...) {
    if (msg && cap > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, cap, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static bool uses_groups(const deepc_route_params *p) {
    return p->method == DEEPC_TOPK_GROUP_LIMITED_GREEDY || p->method == DEEPC_TOPK_NOAUX_TC;
}

int deepc_route_validate(const deepc_route_params *p, char *msg, size_t cap) {
    if (msg && cap > 0) msg[0] = '\0';
    if (!p) return fail(msg, cap, "moe routing: no parameters");
    if (p->version != 2 && p->version != 3)
        return fail(msg, cap, "moe routing: version %d is not 2 (DeepSeek-V2) or 3 (DeepSeek-V3)",
                    p->version);
    if (p->n_experts < 1)
        return fail(msg, cap, "moe routing: n_routed_experts is %d, must be at least 1", p->n_experts);
    if (p->top_k < 1 || p->top_k > p->n_experts)
        return fail(msg, cap, "moe routing: num_experts_per_tok is %d, must be in 1..%d (n_routed_experts)",
                    p->top_k, p->n_experts);
    if (p->score != DEEPC_SCORE_SOFTMAX && p->score != DEEPC_SCORE_SIGMOID)
        return fail(msg, cap, "moe routing: unknown scoring_func id %d (0 = softmax, 1 = sigmoid)",
                    (int)p->score);
    if (p->method != DEEPC_TOPK_GREEDY && !uses_groups(p))
        return fail(msg, cap, "moe routing: unknown topk_method id %d "
                    "(0 = greedy, 1 = group_limited_greedy, 2 = noaux_tc)", (int)p->method);
    if (!isfinite(p->routed_scaling_factor) || p->routed_scaling_factor <= 0.0f)
        return fail(msg, cap, "moe routing: routed_scaling_factor %g must be a finite number above 0",
                    (double)p->routed_scaling_factor);
    if (!uses_groups(p)) return 0;

    const char *mname = p->method == DEEPC_TOPK_NOAUX_TC ? "noaux_tc" : "group_limited_greedy";
    if (p->n_group < 1)
        return fail(msg, cap, "moe routing: %s needs n_group >= 1, got %d", mname, p->n_group);
    if (p->n_experts % p->n_group != 0)
        return fail(msg, cap, "moe routing: n_routed_experts %d is not divisible by n_group %d",
                    p->n_experts, p->n_group);
    if (p->topk_group < 1 || p->topk_group > p->n_group)
        return fail(msg, cap, "moe routing: topk_group %d must be in 1..%d (n_group)",
                    p->topk_group, p->n_group);
    int per_group = p->n_experts / p->n_group;
    if (p->top_k > p->topk_group * per_group)
        return fail(msg, cap, "moe routing: num_experts_per_tok %d exceeds the %d experts in "
                    "topk_group %d groups of %d", p->top_k, p->topk_group * per_group,
                    p->topk_group, per_group);
    if (p->method == DEEPC_TOPK_NOAUX_TC) {
        if (p->score != DEEPC_SCORE_SIGMOID)
            return fail(msg, cap, "moe routing: noaux_tc requires scoring_func sigmoid");
        if (per_group < 2)
            return fail(msg, cap, "moe routing: noaux_tc sums the top-2 scores of each group, "
                        "but groups have %d expert(s)", per_group);
    }
    return 0;
}

size_t deepc_route_scratch_floats(const deepc_route_params *p) {
    if (!p || p->n_experts < 1) return 0;
    size_t n = (size_t)p->n_experts;
    size_t g = (uses_groups(p) && p->n_group > 0) ? (size_t)p->n_group : 0;
    return 3 * n + 2 * g;
}

/* ---- routing ------------------------------------------------------------ */

static void softmax_f32(const float *x, float *y, int n) {
    float mx = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        y[i] = expf(x[i] - mx);
        sum += y[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) y[i] *= inv;
}

/* Index of the largest v[i] with skip[i] == 0; the first such index wins ties.
 * -1 when every entry is skipped. */
static int argmax_unskipped(const float *v, const float *skip, int n) {
    int best = -1;
    for (int i = 0; i < n; i++) {
        if (skip[i] != 0.0f) continue;
        if (best < 0 || v[i] > v[best]) best = i;
    }
    return best;
}

void deepc_route(const deepc_route_params *p, const float *logits, const float *bias,
                 float *scratch, int32_t *ids, float *weights) {
    if (deepc_route_validate(p, NULL, 0) != 0) {
        if (p && p->top_k > 0)
            for (int j = 0; j < p->top_k; j++) { ids[j] = -1; weights[j] = 0.0f; }
        return;
    }
    const int n = p->n_experts;
    float *score = scratch;           /* (n) unbiased scores: the weights come from here */
    float *choice = score + n;        /* (n) score + bias: used to choose */
    float *skip = choice + n;         /* (n) 1 = masked out or already chosen */

    /* 1. scores */
    if (p->score == DEEPC_SCORE_SOFTMAX) {
        softmax_f32(logits, score, n);
    } else {
        for (int e = 0; e < n; e++) score[e] = 1.0f / (1.0f + expf(-logits[e]));
    }
    /* 2. selection scores */
    for (int e = 0; e < n; e++) {
        choice[e] = bias ? score[e] + bias[e] : score[e];
        skip[e] = 0.0f;
    }

    /* 3. group limiting */
    if (uses_groups(p) && p->n_group > 1) {
        const int G = p->n_group, per = n / G;
        float *gscore = skip + n;     /* (G) */
        float *gskip = gscore + G;    /* (G) 1 = already kept */
        for (int g = 0; g < G; g++) {
            const float *c = choice + (size_t)g * per;
            if (p->method == DEEPC_TOPK_GROUP_LIMITED_GREEDY) {
                float mx = c[0];
                for (int i = 1; i < per; i++)
                    if (c[i] > mx) mx = c[i];
                gscore[g] = mx;
            } else {
                /* sum of the two largest; equal values count twice */
                float m1 = -INFINITY, m2 = -INFINITY;
                for (int i = 0; i < per; i++) {
                    if (c[i] > m1) { m2 = m1; m1 = c[i]; }
                    else if (c[i] > m2) m2 = c[i];
                }
                gscore[g] = m1 + m2;
            }
            gskip[g] = 0.0f;
        }
        for (int t = 0; t < p->topk_group; t++) {
            int g = argmax_unskipped(gscore, gskip, G);
            gskip[g] = 1.0f;
        }
        /* experts of groups that were not kept are masked out */
        for (int g = 0; g < G; g++)
            if (gskip[g] == 0.0f)
                for (int i = 0; i < per; i++) skip[(size_t)g * per + i] = 1.0f;
    }

    /* 4. top-k experts, torch.topk(sorted=True) order */
    for (int j = 0; j < p->top_k; j++) {
        int e = argmax_unskipped(choice, skip, n);
        skip[e] = 1.0f;               /* validation guarantees e >= 0 */
        ids[j] = (int32_t)e;
        weights[j] = score[e];
    }

    /* 5. normalization and scaling */
    bool norm = p->top_k > 1 && p->norm_topk_prob;
    if (norm) {
        float sum = 0.0f;
        for (int j = 0; j < p->top_k; j++) sum += weights[j];
        float denom = sum + 1e-20f;
        for (int j = 0; j < p->top_k; j++) weights[j] = weights[j] / denom;
    }
    if (p->version == 3 || !norm)
        for (int j = 0; j < p->top_k; j++) weights[j] *= p->routed_scaling_factor;
}
