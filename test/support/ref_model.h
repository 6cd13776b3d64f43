/* ref_model.h - a plain fp32 reference forward pass for the dense
 * Qwen2 / Llama (DeepSeek-R1-Distill) architectures, written for clarity and
 * used to check the engine. It follows Hugging Face transformers
 * (modeling_qwen2.py / modeling_llama.py / modeling_rope_utils.py):
 *
 *   x = embed[token]
 *   per layer:  h = x + o_proj(attn(rope(q_proj(n1(x))), rope(k_proj(n1(x))), v_proj(n1(x))))
 *               x = h + down(silu(gate(n2(h))) * up(n2(h)))
 *   logits = lm_head(norm(x))            (lm_head = embed when tied)
 *
 * RMSNorm n(x) = w * x / sqrt(mean(x^2) + eps); RoPE in the "rotate_half"
 * convention (dims i and i + head_dim/2 form a pair) with
 * inv_freq[i] = theta^(-2i/head_dim), adjusted by llama3 rope_scaling as in
 * _compute_llama3_parameters; GQA maps query head h to kv head
 * h / (n_heads / n_kv_heads); causal softmax attention scaled by
 * 1/sqrt(head_dim). Activations are fp32; every dot product, norm and
 * softmax accumulates in double.
 *
 * Independent of the engine: libc/libm and hfgen.c only. */
#ifndef DEEPC_TEST_REF_MODEL_H
#define DEEPC_TEST_REF_MODEL_H

#include <stdbool.h>
#include "hfgen.h"

typedef struct ref_config {
    int vocab;          /* rows of embed / lm_head */
    int dim;            /* hidden_size */
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;       /* dim / n_heads */
    int ffn;            /* intermediate_size */
    float norm_eps;     /* rms_norm_eps, as the fp32 value HF adds */
    double rope_theta;
    bool attn_bias;     /* q/k/v biases (qwen2) */
    bool tie_embeddings;
    bool rope_llama3;   /* rope_scaling.rope_type == "llama3" */
    double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_orig_max_pos;
} ref_config;

typedef struct ref_model ref_model;

/* The config a spec describes (defaults filled as hfgen_write does). */
ref_config ref_config_from_spec(const hfgen_spec *spec);

/* Builds the reference from a spec by regenerating every tensor from its
 * per-tensor seed and rounding it through the spec's dtype, so it holds
 * exactly the values hfgen_write stores. Returns NULL on an invalid spec or
 * out of memory. Free with ref_model_free. */
ref_model *ref_model_from_spec(const hfgen_spec *spec);

/* Loads a Hugging Face checkpoint directory (config.json plus
 * model.safetensors or model.safetensors.index.json with its shards;
 * F32/F16/BF16 tensors) with its own small parsers. Works for generated and
 * real R1-Distill-Qwen / -Llama checkpoints (fp32 in memory: 4 bytes per
 * parameter). Returns NULL with a message in err on failure. */
ref_model *ref_model_load(const char *hf_dir, deepc_err *err);

void ref_model_free(ref_model *m);  /* NULL is a no-op */

const ref_config *ref_model_config(const ref_model *m);

/* Runs the n tokens at positions 0..n-1 (full recompute, no cache) and
 * writes logits for every position: logits[t * vocab + v]. Allocates its own
 * scratch. Returns 0, or -1 on a bad argument (token out of range, n < 1) or
 * out of memory. */
int ref_forward(ref_model *m, const int *tokens, int n, float *logits);

/* RoPE pieces, exposed for tests. inv_freq has head_dim/2 entries:
 * theta^(-2i/head_dim), then the llama3 adjustment when enabled. */
void ref_rope_inv_freq(const ref_config *c, double *inv_freq);
/* Rotates one head vector x[head_dim] in place for position pos. */
void ref_rope_apply(const ref_config *c, float *x, int pos);

#endif
