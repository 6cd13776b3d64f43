/* forward.h - pieces of the forward pass shared by the attention and FFN
 * modules (forward.c, forward_mla.c, forward_moe.c). Internal. */
#ifndef DEEPC_FORWARD_H
#define DEEPC_FORWARD_H

#include "model.h"

/* Batches of at least this many tokens go through the kernel's gemm (when it
 * has one for the weight type), in deepc_matmul and for the MoE experts:
 * below it, unpacking weight blocks for the tile costs more than it saves
 * (measured on Zen 4: Q8_0 0.7x vec_dot at 1 token, 1.3x at 2, ~3x at 64;
 * AVX-512 q4_k 0.7x at 1, 1.1-1.3x at 2; the AVX2 k-quant gemm, 0.94x at 2,
 * calls vec_dot itself below 3). Either path gives the same bits (kernels.h). */
#define DEEPC_GEMM_MIN_TOKENS 2

/* The smallest batch that takes the gemm for weight type t. q4_1's already
 * at one token: its vec_dot must fold every block's lane sums horizontally,
 * while the gemm's transposed blocks need no folding (Zen 4, 1408 columns:
 * 1.6-2x vec_dot at 1 token; test/tools/kernbench --gemm 2048,1408,1). */
static inline int deepc_gemm_min_tokens(deepc_type t) {
    return t == DEEPC_TYPE_Q4_1 ? 1 : DEEPC_GEMM_MIN_TOKENS;
}

/* y[b*y_stride + r] = W[r] . x[b] (+ bias[r]) for b < B; x rows are w->cols
 * floats apart. Rows are split across the pool. */
void deepc_matmul(deepc_session *s, const deepc_wt *w, const float *x, int B,
                  float *y, int y_stride, const deepc_wt *bias);
/* Per-head product: W's rows form n_heads equal groups and group h multiplies
 * its own activation x[b][h] (x is [B][n_heads][w->cols]); y is [B][w->rows]. */
void deepc_matmul_heads(deepc_session *s, const deepc_wt *w, int n_heads, const float *x, int B, float *y);
/* Converts n rows of `cols` floats into the kernel's activation type for
 * weight type wt; returns the bytes per converted row. */
size_t deepc_act_convert(const deepc_session *s, deepc_type wt, const float *x, int n, int cols, void *dst);

void deepc_rmsnorm(float *out, const float *x, const float *w, int n, float eps);

/* MLA attention of layer l for the n tokens in s->xb (already normed) at
 * positions pos0..; writes the o_proj output into s->hb2 rows of n_embd. */
void deepc_attn_mla(deepc_session *s, int l, int pos0, int n);
/* DeepSeekMoE FFN for the n tokens in s->xb (normed); adds into s->x. */
void deepc_ffn_moe(deepc_session *s, const deepc_layer *L, int n);
/* Two products of one input x (B rows), as one pool job when their
 * activation types agree: y1 = W1 x, y2 = W2 x. */
void deepc_matmul_pair(deepc_session *s, const float *x, int B, const deepc_wt *w1, float *y1, int y1_stride,
                       const deepc_wt *w2, float *y2, int y2_stride);
/* s->xb = down(silu(gate(xb)) * up(xb)) for n rows (dense MLP, shared
 * experts); uses s->hb, s->hb2 and s->att as scratch. */
void deepc_swiglu_mlp(deepc_session *s, const deepc_wt *gate, const deepc_wt *up, const deepc_wt *down, int n);

#endif
