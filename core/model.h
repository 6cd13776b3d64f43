/* model.h - the in-memory model: hyperparameters read from .dqf metadata and
 * weight views into the mapping, plus the internal session layout shared by
 * the forward pass and the public API. */
#ifndef DEEPC_MODEL_H
#define DEEPC_MODEL_H

#include <stdbool.h>
#include <stdint.h>
#include "deepc.h"
#include "dqf.h"
#include "kernels.h"
#include "sampler.h"
#include "threadpool.h"
#include "tokdata.h"
#include "tokenizer.h"
#include "util.h"

typedef enum {
    DEEPC_ARCH_QWEN2 = 0,
    DEEPC_ARCH_LLAMA = 1,
    DEEPC_ARCH_COUNT
} deepc_arch;

typedef enum {
    DEEPC_ROPE_SCALING_NONE = 0,
    DEEPC_ROPE_SCALING_LLAMA3 = 1
} deepc_rope_scaling;

typedef struct deepc_hparams {
    deepc_arch arch;
    int n_layers, n_embd, n_ff, n_heads, n_kv_heads, head_dim, n_vocab, n_ctx_train;
    float rope_theta, norm_eps;
    int rope_scaling;                 /* deepc_rope_scaling */
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_orig_ctx;
    bool attn_bias, tied_embeddings;
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
    deepc_wt w_gate, w_up, w_down;    /* (n_ff, n_embd) x2, (n_embd, n_ff) */
} deepc_layer;

struct deepc_model {
    deepc_dqf *dqf;
    deepc_hparams hp;
    deepc_layer *layers;
    deepc_wt tok_embd;                /* (n_vocab, n_embd) */
    deepc_wt out_norm;                /* (n_embd) */
    deepc_wt lm_head;                 /* (n_vocab, n_embd); == tok_embd when tied */
    float *inv_freq;                  /* (head_dim/2) rope frequencies, scaling applied */
    deepc_tokdata td;                 /* views into the mapping (not owned) */
    deepc_tokenizer *tok;             /* NULL when the file has no tokenizer */
    char arch_name[16];
    char *name;
    uint64_t n_params, weight_bytes;
};

struct deepc_session {
    deepc_model *m;
    const deepc_kernels *k;
    deepc_pool *pool;
    int n_ctx, n_batch, pos;
    /* KV cache: fp16 [layer][pos][n_kv*hd] */
    uint16_t *k_cache, *v_cache;
    float *rope_cos, *rope_sin;       /* (n_ctx, head_dim/2) */
    /* scratch for a batch of up to n_batch tokens */
    float *x, *xb, *q, *kv_k, *kv_v, *att, *hb, *hb2;
    float *scores;                    /* (n_threads, n_ctx) */
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
