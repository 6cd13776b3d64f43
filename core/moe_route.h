/* moe_route.h - the MoE router of DeepSeek-V2 / V3 / R1: router logits in,
 * top-k expert ids and their combine weights out.
 *
 * What it reproduces (read from the official code, not copied):
 *   - Hugging Face modeling_deepseek.py of DeepSeek-V2 / V2-Lite (MoEGate:
 *     greedy and group_limited_greedy, softmax scores), the one used with
 *     those checkpoints;
 *   - Hugging Face modeling_deepseek.py of DeepSeek-V3 / R1 (MoEGate:
 *     noaux_tc, sigmoid scores, e_score_correction_bias) and DeepSeek's own
 *     inference/model.py (class Gate), which agree for V3 checkpoints.
 *
 * Steps (all fp32):
 *   1. score[e]  = softmax(logits)[e]  or  sigmoid(logits[e]).
 *   2. choice[e] = score[e] + bias[e]  (bias = e_score_correction_bias, or 0
 *      when NULL). The bias is used for choosing only, never as a weight.
 *   3. Groups (methods other than greedy): the n_experts are split into
 *      n_group contiguous groups. Group score:
 *        group_limited_greedy: max of choice[] in the group (V2);
 *        noaux_tc:             sum of the two largest choice[] in the group (V3).
 *      The topk_group best groups are kept; experts of the other groups can
 *      not be chosen (official inference code: -inf fill; see moe_route.c for
 *      the one corner where HF's 0.0 fill differs).
 *   4. ids = the top_k experts by choice[] among the allowed ones, in the
 *      order torch.topk(sorted=True) returns them: descending choice[], and
 *      among equal values the lower index first (also for groups). torch.topk
 *      documents no tie order; lowest-index-first is what its CPU kernel does
 *      in practice and what a stable sort gives.
 *   5. w[j] = score[ids[j]]  (unbiased), then
 *        version 2: if (top_k > 1 && norm_topk_prob) w /= (sum w + 1e-20)
 *                   else                          w *= routed_scaling_factor
 *                   (V2 never does both: normalized weights are NOT scaled);
 *        version 3: if (top_k > 1 && norm_topk_prob) w /= (sum w + 1e-20)
 *                   then always                   w *= routed_scaling_factor.
 *
 * Real configs: V2 (160 experts, 8 groups, topk_group 3, top_k 6, softmax,
 * group_limited_greedy, norm off, scale 16); V2-Lite (64 experts, greedy,
 * top_k 6, softmax, norm off, scale 1); V3 / R1 (256 experts, 8 groups,
 * topk_group 4, top_k 8, sigmoid, noaux_tc, norm on, scale 2.5). */
#ifndef DEEPC_MOE_ROUTE_H
#define DEEPC_MOE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Stored in files: never renumber. */
typedef enum {
    DEEPC_SCORE_SOFTMAX = 0,
    DEEPC_SCORE_SIGMOID = 1
} deepc_score_func;

/* Stored in files: never renumber. */
typedef enum {
    DEEPC_TOPK_GREEDY = 0,                /* plain top-k over all experts */
    DEEPC_TOPK_GROUP_LIMITED_GREEDY = 1,  /* V2: groups ranked by their max score */
    DEEPC_TOPK_NOAUX_TC = 2               /* V3: groups ranked by top-2 sum of biased scores */
} deepc_topk_method;

typedef struct {
    int n_experts;                 /* n_routed_experts */
    int top_k;                     /* num_experts_per_tok */
    int n_group;                   /* n_group (ignored by greedy) */
    int topk_group;                /* topk_group (ignored by greedy) */
    deepc_score_func score;        /* scoring_func */
    deepc_topk_method method;      /* topk_method */
    bool norm_topk_prob;
    float routed_scaling_factor;
    int version;                   /* 2 = DeepSeek-V2 semantics, 3 = V3 */
} deepc_route_params;

/* 0 when p is consistent; otherwise -1 and a sentence naming the problem is
 * written to msg (truncated to cap bytes, always NUL-terminated; msg may be
 * NULL when cap is 0). */
int deepc_route_validate(const deepc_route_params *p, char *msg, size_t cap);

/* Number of floats of scratch deepc_route needs for these params. */
size_t deepc_route_scratch_floats(const deepc_route_params *p);

/* Routes one token. logits: n_experts router logits (fp32). bias: n_experts
 * e_score_correction_bias values or NULL. scratch: deepc_route_scratch_floats(p)
 * floats, owned by the caller. Writes top_k ids (sorted by descending
 * selection score, ties to the lower index) and their weights. Allocates
 * nothing. p must pass deepc_route_validate; if it does not, ids are set to -1
 * and weights to 0 (nothing else is touched). */
void deepc_route(const deepc_route_params *p, const float *logits, const float *bias,
                 float *scratch, int32_t *ids, float *weights);

#endif
