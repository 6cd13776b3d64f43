/* model.h - the in-memory model: hyperparameters read from .dqf metadata and
 * weight views (into the owned weight buffer, or the mapping), plus the
 * internal session layout shared by the forward pass and the public API. */
#ifndef DEEPC_MODEL_H
#define DEEPC_MODEL_H

#include <stdbool.h>
#include <stdint.h>
#include "deepc.h"
#include "dqf.h"
#include "kernels.h"
#include "moe_route.h"
#include "yarn.h"
#include "sampler.h"
#include "threadpool.h"
#include "tokdata.h"
#include "tokenizer.h"
#include "util.h"

typedef enum {
    DEEPC_ARCH_QWEN2 = 0,
    DEEPC_ARCH_LLAMA = 1,
    DEEPC_ARCH_DEEPSEEK2 = 2,      /* DeepseekV2ForCausalLM: MLA + DeepSeekMoE */
    DEEPC_ARCH_DEEPSEEK3 = 3,      /* DeepseekV3ForCausalLM: + sigmoid/noaux_tc routing, MTP */
    DEEPC_ARCH_COUNT
} deepc_arch;

/* The name stored in general.architecture ("qwen2", "llama", "deepseek2",
 * "deepseek3"). */
const char *deepc_arch_name(deepc_arch a);

static inline bool deepc_arch_is_mla(deepc_arch a) {
    return a == DEEPC_ARCH_DEEPSEEK2 || a == DEEPC_ARCH_DEEPSEEK3;
}

typedef enum {
    DEEPC_ROPE_SCALING_NONE = 0,
    DEEPC_ROPE_SCALING_LLAMA3 = 1,
    DEEPC_ROPE_SCALING_YARN = 2
} deepc_rope_scaling;

typedef struct deepc_hparams {
    deepc_arch arch;
    int n_layers, n_embd, n_ff, n_heads, n_kv_heads, head_dim, n_vocab, n_ctx_train;
    float rope_theta, norm_eps;
    int rope_scaling;                 /* deepc_rope_scaling */
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_orig_ctx;
    bool attn_bias, tied_embeddings;
    /* MLA (DeepSeek): head_dim above is qk_nope + qk_rope */
    int q_lora_rank;                  /* 0: a plain q_proj */
    int kv_lora_rank, qk_nope, qk_rope, v_head;
    deepc_yarn_params yarn;           /* rope_scaling "yarn" (factor <= 1: plain rope) */
    /* DeepSeekMoE */
    int n_ff_exp;                     /* moe_intermediate_size */
    int n_expert_shared;
    int first_k_dense;                /* layers [0, first_k_dense) use a dense MLP */
    bool expert_bias;                 /* e_score_correction_bias present (V3) */
    deepc_route_params route;         /* n_experts, top_k, groups, scoring ... */
    int n_mtp;                        /* multi-token-prediction layers kept in the file */
} deepc_hparams;

/* A weight matrix [rows x cols] (PyTorch [out, in]) of any type, or a 1-D
 * F32 vector (rows == 1). */
typedef struct deepc_wt {
    const void *data;
    deepc_type type;
    int rows, cols;
    size_t row_bytes;
} deepc_wt;

typedef struct deepc_layer {
    deepc_wt attn_norm;               /* (n_embd) */
    deepc_wt wq, wk, wv, wo;          /* (n_heads*hd, n_embd) (n_kv*hd, n_embd) x2 (n_embd, n_heads*hd) */
    deepc_wt bq, bk, bv;              /* qwen2 only: (n_heads*hd) (n_kv*hd) (n_kv*hd) */
    deepc_wt ffn_norm;                /* (n_embd) */
    deepc_wt w_gate, w_up, w_down;    /* (n_ff, n_embd) x2, (n_embd, n_ff); dense layers */
    /* MLA; wq above is q_proj (H*(nope+rope), n_embd) when q_lora_rank == 0 */
    deepc_wt wq_a, q_a_norm, wq_b;    /* (q_lora, n_embd) (q_lora) (H*(nope+rope), q_lora) */
    deepc_wt wkv_a, kv_a_norm;        /* (kv_lora+rope, n_embd) (kv_lora) */
    deepc_wt wk_b;                    /* (H*kv_lora, nope): per head, kv_b_proj's k rows transposed */
    deepc_wt wv_b;                    /* (H*v, kv_lora): kv_b_proj's v rows */
    /* MoE (layers >= first_k_dense) */
    bool is_moe;
    deepc_wt router;                  /* (n_expert, n_embd) f32 */
    deepc_wt router_bias;             /* (n_expert) f32, V3 only */
    deepc_wt sh_gate, sh_up, sh_down; /* (n_shared*n_ff_exp, n_embd) x2, (n_embd, n_shared*n_ff_exp) */
    deepc_wt *x_gate, *x_up, *x_down; /* [n_expert] routed experts: (n_ff_exp, n_embd) x2, (n_embd, n_ff_exp) */
} deepc_layer;

struct deepc_model {
    deepc_dqf *dqf;
    deepc_hparams hp;
    deepc_layer *layers;
    deepc_wt tok_embd;                /* (n_vocab, n_embd) */
    deepc_wt out_norm;                /* (n_embd) */
    deepc_wt lm_head;                 /* (n_vocab, n_embd); == tok_embd when tied */
    float *inv_freq;                  /* (rope dims/2) rope frequencies, scaling applied */
    float rope_mscale;                /* YaRN factor on cos/sin (1 otherwise) */
    float attn_scale;                 /* softmax scale: 1/sqrt(head_dim), YaRN-corrected for MLA */
    deepc_wt *expert_block;           /* one allocation behind the layers' x_gate/x_up/x_down */
    deepc_tokdata td;                 /* views into the mapping (not owned) */
    deepc_tokenizer *tok;             /* NULL when the file has no tokenizer */
    char arch_name[16];
    char *name;
    uint64_t n_params, weight_bytes;
    /* Where the views point: all weights but the routed experts live in the
     * owned buffer `owned` (NULL with use_mmap: everything in the mapping);
     * routed experts always stay in the mapping, where the expert store finds
     * their file offsets. */
    uint8_t *owned;
    size_t owned_bytes;
    bool weights_locked;
};

struct deepc_session {
    deepc_model *m;
    const deepc_kernels *k;
    deepc_pool *pool;
    int n_ctx, n_batch, pos;
    /* KV cache: fp16 [layer][pos][n_kv*hd] */
    uint16_t *k_cache, *v_cache;
    /* MLA cache: fp16 [layer][pos][kv_lora + rope]: normalized latent, then roped k_pe */
    uint16_t *kv_lat;
    bool mla_expanded;                /* attention by per-head expansion (verification) */
    float *rope_cos, *rope_sin;       /* (n_ctx, head_dim/2) */
    /* scratch for a batch of up to n_batch tokens */
    float *x, *xb, *q, *kv_k, *kv_v, *att, *hb, *hb2;
    float *scores;                    /* (n_threads, n_ctx) */
    /* MLA / MoE scratch (NULL for dense models) */
    float *q_a, *ckv, *q_lat, *o_lat; /* (B, q_lora) (B, kv_lora+rope) (B, H*kv_lora) x2 */
    float *mla_tmp;                   /* expanded mode, per thread */
    size_t mla_tmp_floats;
    float *router_logits, *route_w, *route_scratch;  /* (B, n_expert) (B, top_k) */
    int32_t *route_ids;               /* (B, top_k) */
    int32_t *exp_count, *exp_start, *exp_pairs;      /* (n_expert) (n_expert+1) (B*top_k) */
    int32_t *active;                  /* active expert ids, ascending */
    int n_active;
    float *ex_g, *ex_u, *ex_y;        /* (B*top_k, n_ff_exp) x2, (B*top_k, n_embd) */
    /* expert streaming (core/expert_store.h); store NULL = experts used in place */
    struct deepc_expert_store *store;
    deepc_wt *ex_w;                   /* (n_expert, 3) gate/up/down views of the active experts */
    uint64_t *exp_usage;              /* (n_layers, n_expert) selections, for profiles */
    uint64_t exp_budget, exp_tokens, exp_lookups;
    int exp_status;                   /* nonzero: an expert read failed in this forward */
    void *act2;                       /* second activation buffer (per-pair inputs) */
    void *act;                        /* activations converted for vec_dot */
    float *logits;                    /* (n_vocab) last position */
    bool have_logits;
    int32_t *history;                 /* (n_ctx) tokens in the cache */
    deepc_sampler *sampler;
    deepc_detok_state detok;
    deepc_err err;
};

/* Runs the forward pass for n (<= n_batch) tokens at the session position and
 * advances it. logits_out: NULL (only the last position into s->logits) or
 * [n x n_vocab]. */
int deepc_forward(deepc_session *s, const int32_t *tokens, int n, float *logits_out);

/* Fills inv_freq[head_dim/2] from the hyperparameters (rope scaling applied). */
void deepc_rope_inv_freq(const deepc_hparams *hp, float *inv_freq);

/* Sets the thread-local message behind deepc_open_error() (like errno: the
 * one piece of per-thread state, because no handle exists yet to hold it). */
void deepc_set_open_error(const char *msg);

#endif
