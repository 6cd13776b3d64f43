/* yarn.h - rotary position embedding of DeepSeek-V2 / V3 / R1 with YaRN
 * context extension, as their configs set it up:
 *   "rope_theta": 10000, "qk_rope_head_dim": 64,
 *   "rope_scaling": {"type": "yarn", "factor": 40,
 *                    "original_max_position_embeddings": 4096,
 *                    "beta_fast": 32, "beta_slow": 1,
 *                    "mscale": 1.0 (V3) / 0.707 (V2), "mscale_all_dim": same}
 *
 * Reproduces Hugging Face DeepseekV2YarnRotaryEmbedding (identical in the V3
 * modeling file) and precompute_freqs_cis of DeepSeek's inference/model.py.
 * One deliberate choice: HF applies YaRN at every position whenever
 * rope_scaling is present; the inference code only does when its max_seq_len
 * exceeds original_max_position_embeddings (its default 16384 does). We follow
 * HF: the frequencies and the softmax scale never depend on the context
 * length the engine happens to allocate.
 *
 * ROPE LAYOUT (what the engine must do). The checkpoint's rope rows of
 * q_b_proj / q_proj and kv_a_proj_with_mqa are laid out for INTERLEAVED pairs:
 * pair i is (x[2i], x[2i+1]), rotated by angle pos * inv_freq[i]. DeepSeek's
 * inference code does exactly that (view_as_complex on adjacent pairs). HF's
 * apply_rotary_pos_emb first de-interleaves q and k,
 *     q = q.view(b, h, s, d/2, 2).transpose(4, 3).reshape(b, h, s, d)
 * giving [x0, x2, ..., x(d-2), x1, x3, ..., x(d-1)], then applies rotate_half
 * with cos/sin = cat(freqs, freqs): element i and i + d/2 of that vector,
 * i.e. x[2i] and x[2i+1], are rotated by pos * inv_freq[i] - the same rotation
 * as the interleaved form. HF leaves the result in the de-interleaved order,
 * but it does so for q and k alike, and a dot product does not change when
 * both vectors are permuted the same way, so the attention scores are equal.
 * Therefore: no weight permutation in the converter, and deepc_rope_interleaved
 * below on both q_pe and k_pe (test_yarn.c checks this against HF's formula). */
#ifndef DEEPC_YARN_H
#define DEEPC_YARN_H

#include <stdint.h>

typedef struct {
    float rope_theta;                  /* base, 10000 */
    float factor;                      /* rope_scaling.factor; <= 1 means plain rope */
    int original_max_position_embeddings;
    float beta_fast;                   /* 32 */
    float beta_slow;                   /* 1 */
    float mscale;                      /* rope_scaling.mscale (HF default 1) */
    float mscale_all_dim;              /* rope_scaling.mscale_all_dim (HF default 0) */
} deepc_yarn_params;

/* Low / high correction dims of YaRN for rope_dim (HF yarn_find_correction_range):
 * floor(corr(beta_fast)) clamped to >= 0, ceil(corr(beta_slow)) clamped to
 * <= rope_dim - 1, with corr(r) = rope_dim * ln(orig_max / (2 pi r)) / (2 ln theta).
 * For the V2/V3 configs: low = 10, high = 23. */
void deepc_yarn_correction_range(const deepc_yarn_params *p, int rope_dim, int *low, int *high);

/* inv_freq[i], i < rope_dim/2. extra = theta^(-2i/rope_dim), inter = extra/factor,
 * ramp = clamp((i - low) / (high - low), 0, 1) (high += 0.001 when equal),
 * inv_freq = inter * ramp + extra * (1 - ramp): pairs below `low` keep their
 * frequency, pairs above `high` are interpolated by 1/factor. With factor <= 1
 * it is plain rope (extra). Computed in double, stored as float. */
void deepc_yarn_inv_freq(const deepc_yarn_params *p, int rope_dim, float *inv_freq);

/* yarn_get_mscale: 0.1 * mscale * ln(scale) + 1 for scale > 1, else 1. */
float deepc_yarn_mscale(float scale, float mscale);

/* Factor HF multiplies into its cos/sin caches:
 * mscale(factor, mscale) / mscale(factor, mscale_all_dim). 1.0 for every
 * released V2/V3 config (mscale == mscale_all_dim). */
float deepc_yarn_cos_sin_scale(const deepc_yarn_params *p);

/* Attention softmax scale: qk_head_dim^-0.5 * mscale(factor, mscale_all_dim)^2
 * (qk_head_dim = qk_nope_head_dim + qk_rope_head_dim = 192). HF only applies
 * the mscale when mscale_all_dim != 0, which the formula gives anyway
 * (mscale(x, 0) = 1). DeepSeek-V3: 0.1352...; V2 / V2-Lite: 0.1147... */
float deepc_yarn_softmax_scale(int qk_head_dim, float factor, float mscale_all_dim);

/* cos/sin for one position: angle_i = (float)pos * inv_freq[i] rounded to
 * float as the reference's fp32 outer product does, then cos/sin of it times
 * `scale` (deepc_yarn_cos_sin_scale). half = rope_dim / 2 entries each. */
void deepc_rope_cos_sin(const float *inv_freq, int half, int64_t pos, float scale,
                        float *cos_out, float *sin_out);

/* Rotates the rope part of n_heads heads in place. Head h starts at
 * x + h * head_stride and holds rope_dim floats; pair i = (x[2i], x[2i+1]):
 *   x'[2i]   = x[2i] * cos[i] - x[2i+1] * sin[i]
 *   x'[2i+1] = x[2i] * sin[i] + x[2i+1] * cos[i]
 * cos/sin: rope_dim/2 values from deepc_rope_cos_sin. */
void deepc_rope_interleaved(float *x, int n_heads, int head_stride, int rope_dim,
                            const float *cos, const float *sin);

#endif
