/* ref_moe.h - a plain fp32 reference forward pass for DeepSeek-V2 / V3
 * (DeepseekV2ForCausalLM, DeepseekV3ForCausalLM), written for clarity and
 * used to check the engine position by position. It follows the Hugging Face
 * remote code (modeling_deepseek.py of DeepSeek-V2 and DeepSeek-V3):
 *
 *   x = embed[token]
 *   per layer:  x += o_proj(MLA(input_layernorm(x)))
 *               x += (dense ? SwiGLU MLP : MoE)(post_attention_layernorm(x))
 *   logits = lm_head(norm(x))                   (MTP layers are not run)
 *
 * MLA, non-absorbed as in DeepseekV2Attention: q = q_proj(x), or
 * q_b_proj(q_a_layernorm(q_a_proj(x))), split per head into q_nope | q_pe;
 * kv_a_proj_with_mqa(x) = compressed_kv | k_pe (one k_pe shared by all
 * heads); kv_b_proj(kv_a_layernorm(compressed_kv)) = per head k_nope | v.
 * q_a_layernorm and kv_a_layernorm use eps 1e-6 whatever rms_norm_eps (HF
 * builds them with the default eps).
 * RoPE on q_pe and k_pe in HF's convention: the vector is de-interleaved
 * (view(d/2, 2).transpose: even elements first, then odd) and then rotated
 * with rotate_half, cos/sin multiplied by yarn_get_mscale(factor, mscale) /
 * yarn_get_mscale(factor, mscale_all_dim); YaRN inv_freq with
 * yarn_find_correction_range (floor / ceil, clamped to [0, d - 1]) and a
 * linear ramp between extrapolated and interpolated (/ factor) frequencies.
 * Scores (q_nope.k_nope + q_pe.k_pe) * softmax_scale, softmax_scale =
 * (nope + rope)^-0.5 * yarn_get_mscale(factor, mscale_all_dim)^2 (when
 * mscale_all_dim is non-zero), causal softmax, sum of v.
 *
 * MoE as MoEGate + DeepseekV2MoE / DeepseekV3MoE: router logits =
 * x . gate.weight^T in fp32, scores softmax or sigmoid; selection greedy
 * (top-k of scores), group_limited_greedy (top topk_group groups by their
 * max score, then top-k inside them) or noaux_tc (choice scores = scores +
 * e_score_correction_bias; groups by the sum of their two best choice
 * scores); the weights are the unbiased scores of the chosen experts. V2:
 * normalized (sum + 1e-20) if top_k > 1 and norm_topk_prob, else multiplied
 * by routed_scaling_factor. V3: normalized if top_k > 1 and norm_topk_prob,
 * then always multiplied. Output = sum of weight * SwiGLU expert + shared
 * experts (one SwiGLU of width moe_intermediate_size * n_shared_experts).
 * Top-k ties go to the lowest index.
 *
 * Weights are the effective fp32 values the checkpoint stores (BF16-rounded,
 * or FP8 value x block scale). Activations are fp32; dot products, norms and
 * softmax accumulate in double. Independent of the engine: libc/libm and the
 * generator (hfgen_moe.c) only. */
#ifndef DEEPC_TEST_REF_MOE_H
#define DEEPC_TEST_REF_MOE_H

#include <stdbool.h>
#include <stddef.h>
#include "hfgen_moe.h"

typedef struct ref_moe ref_moe;

/* Builds the reference from a spec by regenerating every tensor the forward
 * pass uses (MTP layers are skipped) exactly as hfgen_moe_write stores it.
 * Holds all weights as fp32: meant for the tiny presets. Returns NULL on an
 * invalid spec or out of memory. Free with ref_moe_free. */
ref_moe *ref_moe_from_spec(const hfgen_moe_spec *spec);

void ref_moe_free(ref_moe *m);   /* NULL is a no-op */

/* The normalized spec the model was built from. */
const hfgen_moe_spec *ref_moe_spec(const ref_moe *m);

/* Runs tokens at positions 0..n-1 (full recompute, no cache) and writes the
 * logits of every position: logits[t * vocab + v]. Records the routing of
 * every MoE layer (see below). Returns 0, or -1 on a bad argument (token out
 * of range, n < 1) or out of memory. */
int ref_moe_forward(ref_moe *m, const int *tokens, int n, float *logits);

/* ---- routing of the last forward -------------------------------------- */

/* counts[e] = positions of the last forward that chose expert e in layer l
 * (counts has n_routed_experts entries). Returns the number of positions,
 * or -1 when l is not a MoE layer or no forward ran. */
int ref_moe_route_counts(const ref_moe *m, int layer, int *counts);

/* The experts chosen at position pos of layer l in the last forward, in
 * selection order (best choice score first), and their final weights
 * (after normalization / scaling). experts and weights hold top_k entries;
 * either may be NULL. Returns top_k, or -1. */
int ref_moe_last_route(const ref_moe *m, int layer, int pos, int *experts, float *weights);

/* The router logits (n_routed_experts) of position pos of layer l in the
 * last forward, or NULL. */
const float *ref_moe_last_router_logits(const ref_moe *m, int layer, int pos);

/* The routing rule on its own: from router logits (n_routed_experts), with
 * bias (e_score_correction_bias, n_routed_experts; NULL for none), fills
 * experts / weights (top_k entries, selection order; weights may be NULL).
 * Optional margin: the gap between the k-th and (k+1)-th choice scores among
 * the experts of the kept groups, and between the kept and the best dropped
 * group score when groups are used (the smaller of the two; how far the
 * selection is from flipping). Returns top_k, or -1 on a bad spec. */
int ref_moe_route(const hfgen_moe_spec *spec, const float *logits, const float *bias, int *experts, float *weights,
                  float *margin);

/* e_score_correction_bias of layer l as the model uses it, or NULL. */
const float *ref_moe_gate_bias(const ref_moe *m, int layer);

/* ---- pieces, for tests --------------------------------------------------- */

/* The effective fp32 weight of a Hugging Face tensor name used by the forward
 * pass (MTP tensors are not loaded), with its element count; NULL if absent. */
const float *ref_moe_weight(const ref_moe *m, const char *name, size_t *n_elems);

/* MLA of layer l alone: x [n x hidden] is the input_layernorm output of
 * positions 0..n-1; out [n x hidden] receives o_proj(attention). Returns 0
 * or -1. */
int ref_moe_attention(ref_moe *m, int layer, const float *x, int n, float *out);

/* The rope inverse frequencies (qk_rope_head_dim / 2 entries), YaRN-blended
 * when rope_scaling is set. */
void ref_moe_rope_inv_freq(const hfgen_moe_spec *spec, double *inv_freq);

/* yarn_get_mscale(factor, mscale) / yarn_get_mscale(factor, mscale_all_dim):
 * the factor on cos and sin (1 without YaRN). */
double ref_moe_rope_mscale(const hfgen_moe_spec *spec);

/* The attention softmax scale. */
double ref_moe_softmax_scale(const hfgen_moe_spec *spec);

/* Rotates one rope vector x[qk_rope_head_dim] in place for position pos, HF
 * convention: the result is in de-interleaved order (the rotated even
 * elements, then the rotated odd ones). */
void ref_moe_rope_apply(const hfgen_moe_spec *spec, float *x, int pos);

#endif
