/* forward.h - pieces of the forward pass shared by the attention and FFN
 * modules (forward.c, forward_mla.c, forward_moe.c). Internal. */
#ifndef DEEPC_FORWARD_H
#define DEEPC_FORWARD_H

#include "model.h"

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
/* hb[i] = silu(hb[i]) * hb2[i] */
void deepc_swiglu(float *hb, const float *hb2, size_t n);

/* MLA attention of layer l for the n tokens in s->xb (already normed) at
 * positions pos0..; writes the o_proj output into s->hb2 rows of n_embd. */
void deepc_attn_mla(deepc_session *s, int l, int pos0, int n);
/* DeepSeekMoE FFN for the n tokens in s->xb (normed); adds into s->x. */
void deepc_ffn_moe(deepc_session *s, const deepc_layer *L, int n);

#endif
