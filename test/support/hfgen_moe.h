/* hfgen_moe.h - synthetic Hugging Face checkpoints of the DeepSeek MoE
 * architectures (DeepseekV2ForCausalLM, DeepseekV3ForCausalLM), for tests and
 * benchmarks: a directory laid out like the official releases
 * (DeepSeek-V2-Lite, DeepSeek-V3 / R1): config.json with the real keys,
 * generation_config.json, *.safetensors with the real tensor names and
 * PyTorch layouts (optionally FP8 E4M3 with 128x128 `weight_scale_inv` block
 * scales, exactly as the V3 release), model.safetensors.index.json when
 * sharded, the multi-token-prediction (MTP) layers of V3, and a small
 * byte-level BPE tokenizer with the DeepSeek-V3 pre-tokenizer, special tokens
 * and chat template.
 *
 * Weights are counter-based (hfgen_fill of hfgen.h): element i of a tensor is
 * a pure function of (seed, tensor name, i), so the fp32 reference
 * (ref_moe.h) regenerates exactly what the files store, and the writer
 * streams tensor by tensor through bounded buffers (a 128-row band for FP8).
 *
 * libc/libm/pthreads, hfgen.c and the file writing shared with it
 * (hfwrite.c) only: independent of the engine (core/), util.h is included
 * for the deepc_err message type alone. */
#ifndef DEEPC_TEST_HFGEN_MOE_H
#define DEEPC_TEST_HFGEN_MOE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "hfgen.h"
#include "util.h"

/* Fields are the config.json keys of the real models. Zero fields get the
 * defaults noted (hfgen_moe_write and ref_moe fill them the same way). */
typedef struct hfgen_moe_spec {
    const char *arch;             /* "deepseek_v2" | "deepseek_v3" (model_type) */
    int vocab;                    /* vocab_size: rows of embed / lm_head */
    int hidden;                   /* hidden_size */
    int n_layers;                 /* num_hidden_layers (MTP layers not included) */
    int n_heads;                  /* num_attention_heads (= num_key_value_heads) */
    int q_lora_rank;              /* 0 = null: self_attn.q_proj instead of q_a/q_b */
    int kv_lora_rank;
    int qk_nope_head_dim;
    int qk_rope_head_dim;         /* even */
    int v_head_dim;
    int intermediate_size;        /* dense MLP layers */
    int moe_intermediate_size;    /* per routed expert; shared: x n_shared_experts */
    int n_routed_experts;         /* 0 = null: every layer dense */
    int n_shared_experts;         /* 0 = null: no shared experts */
    int num_experts_per_tok;      /* top_k */
    int first_k_dense_replace;    /* layers l < this are dense */
    int moe_layer_freq;           /* 0 -> 1; MoE iff l >= first_k && l % freq == 0 */
    int n_group, topk_group;      /* 0 -> 1 */
    const char *topk_method;      /* "greedy" | "group_limited_greedy" | "noaux_tc"; NULL -> greedy */
    const char *scoring_func;     /* "softmax" | "sigmoid"; NULL -> softmax */
    bool norm_topk_prob;
    float routed_scaling_factor;  /* 0 -> 1.0 */
    float rope_theta;             /* 0 -> 10000 */
    bool yarn;                    /* rope_scaling {"type": "yarn", ...}; false: null */
    float rope_factor;            /* "factor" */
    int rope_orig_max_pos;        /* "original_max_position_embeddings" (0 -> 4096) */
    float beta_fast, beta_slow;   /* 0 -> 32, 1 */
    float mscale, mscale_all_dim; /* written as given (HF: 0 mscale_all_dim = unset) */
    float rms_norm_eps;           /* 0 -> 1e-6 */
    int max_pos;                  /* max_position_embeddings (0 -> 4096) */
    int num_nextn_predict_layers; /* MTP layers (V3 only), stored as model.layers.{n_layers + i} */
    const char *dtype;            /* "BF16" | "F32" | "FP8"; NULL -> BF16 */
    const char *chat_template;    /* "deepseek-v2" | "deepseek-v3" | "deepseek-r1"; NULL: by arch */
    int n_shards;                 /* 0 -> 1: model.safetensors; >1: model-0000K-of-00000N + index */
    uint64_t seed;
} hfgen_moe_spec;

/* ---- presets ------------------------------------------------------------- */

/* NULL-terminated: "tiny-deepseek2", "tiny-deepseek2-group", "tiny-deepseek3",
 * "deepseek-v3-fp8-4g" (about 4.7 GB), "deepseek-v2-lite" (the real shapes,
 * 31 GB of BF16). */
const char *const *hfgen_moe_preset_names(void);

/* Fills *spec with the named preset. Returns 0, or -1 for an unknown name. */
int hfgen_moe_preset(const char *name, hfgen_moe_spec *spec);

/* The spec with every defaulted field filled in. */
hfgen_moe_spec hfgen_moe_normalized(const hfgen_moe_spec *spec);

/* Checks a spec (sizes, routing parameters, dtype, vocab large enough for the
 * tokenizer). Returns 0 or -1 with a message in err (may be NULL). */
int hfgen_moe_validate(const hfgen_moe_spec *spec, deepc_err *err);

/* Whether decoder layer l (0 <= l < n_layers + num_nextn_predict_layers) has
 * a MoE MLP (else a dense one). */
bool hfgen_moe_layer_is_moe(const hfgen_moe_spec *spec, int l);

/* ---- tensors ------------------------------------------------------------- */

typedef enum {
    HFGEN_MOE_WEIGHT = 0,     /* N(0, std) */
    HFGEN_MOE_NORM,           /* 1 + N(0, std): RMSNorm gains */
    HFGEN_MOE_BIAS,           /* std * |N(0, 1)|: e_score_correction_bias (>= 0) */
    HFGEN_MOE_SCALE_INV,      /* F32 block scales of the FP8 tensor `name` minus "_scale_inv" */
} hfgen_moe_kind;

typedef struct hfgen_moe_tensor {
    char name[96];            /* e.g. "model.layers.3.mlp.experts.7.up_proj.weight" */
    char stream[96];          /* PRNG stream name (= name; the MTP embed/head copies
                               * use the main model's tensors, as in the V3 release) */
    int ndim;                 /* 1 or 2 */
    uint64_t shape[2];        /* PyTorch layout [out_features, in_features] */
    uint64_t n_elems;
    const char *dtype;        /* safetensors dtype: "BF16", "F32" or "F8_E4M3" */
    hfgen_moe_kind kind;
    float std;
    uint64_t pad_row;         /* embed/heads: rows >= pad_row (past the tokenizer) use
                               * std / 10, like untrained vocab padding; else shape[0] */
    int layer;                /* decoder layer, -1 for embed / norm / lm_head */
} hfgen_moe_tensor;

/* Number of tensors, FP8 scale tensors included. Model order: embed, layers
 * 0..n_layers-1, norm, lm_head, then the MTP layers; in a layer every FP8
 * weight is directly followed by its weight_scale_inv. */
int hfgen_moe_tensor_count(const hfgen_moe_spec *spec);

/* The i-th tensor in model order. Returns 0 or -1. */
int hfgen_moe_tensor_at(const hfgen_moe_spec *spec, int i, hfgen_moe_tensor *out);

/* By Hugging Face name. Returns 0 or -1 (not present). */
int hfgen_moe_tensor_find(const hfgen_moe_spec *spec, const char *name, hfgen_moe_tensor *out);

/* Elements [first, first + n) of a non-scale tensor as fp32, before any
 * storage rounding (the "master" weights). */
void hfgen_moe_fill(const hfgen_moe_spec *spec, const hfgen_moe_tensor *t, uint64_t first, float *dst,
                    size_t n);

/* Rows [row0, row0 + n_rows) of t (a 1-D tensor is one row) exactly as a
 * correct reader decodes the file: BF16-rounded, F32 as is, FP8 as
 * fp8_value * scale_inv of its 128x128 block (one fp32 multiply), and for a
 * scale tensor its F32 scales. Returns 0, or -1 on a bad range / no memory. */
int hfgen_moe_fill_stored(const hfgen_moe_spec *spec, const hfgen_moe_tensor *t, uint64_t row0,
                          uint64_t n_rows, float *dst);

/* Elements that are model parameters (scale tensors not counted; MTP layers
 * counted). */
uint64_t hfgen_moe_param_count(const hfgen_moe_spec *spec);

/* Bytes of tensor data (the index's total_size). */
uint64_t hfgen_moe_tensor_bytes(const hfgen_moe_spec *spec);

/* FP8 E4M3 (OCP "e4m3fn": bias 7, no infinities, max 448, 0x7F/0xFF NaN):
 * round to nearest even, saturating at +-448; NaN -> 0x7F. */
uint8_t hfgen_f32_to_fp8_e4m3(float f);
float hfgen_fp8_e4m3_to_f32(uint8_t b);

/* ---- tokenizer ----------------------------------------------------------- */

/* Layout of the generated tokenizer, like DeepSeek-V3's: ids 0, 1, 2 are
 * <｜begin▁of▁sentence｜>, <｜end▁of▁sentence｜>, <｜▁pad▁｜> (in the BPE vocab and
 * added tokens), then 256 byte tokens, then merges, then the added tokens
 * <think>, </think>, <｜fim▁hole｜>, <｜fim▁begin｜>, <｜fim▁end｜>, <｜User｜>,
 * <｜Assistant｜>, <|EOT|>, and the 9 tool-call markers. It covers
 * vocab - vocab/32 ids when the built-in corpus allows (tiny presets), else
 * fewer; the remaining rows are padding. */
int hfgen_moe_tokenizer_size(const hfgen_moe_spec *spec);
int hfgen_moe_bos_id(const hfgen_moe_spec *spec);   /* 0 */
int hfgen_moe_eos_id(const hfgen_moe_spec *spec);   /* 1 */
/* Id of an added token by content (e.g. "<｜User｜>"), or -1. */
int hfgen_moe_added_token_id(const hfgen_moe_spec *spec, const char *content);

/* ---- writing ------------------------------------------------------------- */

/* Called after each tensor with the tensor bytes written so far and in all. */
typedef void (*hfgen_moe_progress_fn)(void *user, uint64_t bytes_done, uint64_t bytes_total);

/* Writes the checkpoint into dir (created if missing; files of the same
 * names replaced, a stale model.safetensors or index of the other layout
 * removed). Streams tensor by tensor: memory stays at a few tens of MB
 * whatever the preset; values generated on up to 16 threads, bytes not
 * depending on the thread count. progress and stats may be NULL. Returns 0,
 * or -1 with a message in err (may be NULL). */
int hfgen_moe_write(const char *dir, const hfgen_moe_spec *spec, hfgen_moe_progress_fn progress,
                    void *user, hfgen_stats *stats, deepc_err *err);

#endif
