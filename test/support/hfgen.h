/* hfgen.h - a synthetic Hugging Face checkpoint generator for tests and
 * benchmarks: writes a directory that looks exactly like a DeepSeek-R1-Distill
 * release (config.json, generation_config.json, *.safetensors with the real
 * tensor names and PyTorch layouts, model.safetensors.index.json when sharded,
 * tokenizer.json and tokenizer_config.json with a small but real byte-level BPE
 * tokenizer and the DeepSeek-R1 chat template).
 *
 * Weights are pseudo-random and counter-based: element i of a tensor is a pure
 * function of (spec->seed, tensor name, i), so any tensor or any slice of it
 * can be regenerated on demand (hfgen_fill) without holding the model in
 * memory. The fp32 reference model (ref_model.h) uses this to see exactly the
 * values the checkpoint stores.
 *
 * This file and hfgen.c use only libc/libm (and POSIX mkdir/pthreads) and
 * the file writing shared with hfgen_moe.c (hfwrite.h): they must stay
 * independent of the engine (core/) they are used to check. The only
 * project header included is util.h, for the deepc_err message buffer type
 * (filled with vsnprintf here, no util.c function is called). */
#ifndef DEEPC_TEST_HFGEN_H
#define DEEPC_TEST_HFGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "util.h"

/* Fields left zero get the defaults hfgen_write uses: dtype NULL -> "BF16",
 * n_shards 0 -> 1, max_pos 4096, rope_theta 1e4, norm_eps 1e-6, and for
 * llama3 scaling factor 8, low 1, high 4, original max_pos / factor. */
typedef struct hfgen_spec {
    const char *arch;          /* "qwen2" | "llama" */
    int vocab;                 /* config vocab_size: rows of embed/lm_head (>= tokenizer size) */
    int dim;                   /* hidden_size */
    int n_layers;              /* num_hidden_layers */
    int n_heads;               /* num_attention_heads; head_dim = dim / n_heads */
    int n_kv_heads;            /* num_key_value_heads */
    int ffn;                   /* intermediate_size */
    int max_pos;               /* max_position_embeddings */
    float rope_theta;
    float norm_eps;            /* rms_norm_eps */
    bool tie_embeddings;       /* no lm_head.weight; logits use embed_tokens */
    bool attn_bias;            /* qwen2: q/k/v_proj.bias */
    bool llama3_rope_scaling;  /* rope_scaling {"rope_type":"llama3", ...} below */
    float rope_factor;         /* llama3 "factor" (8.0 in the real models) */
    float rope_low_freq_factor;   /* 1.0 */
    float rope_high_freq_factor;  /* 4.0 */
    int rope_orig_max_pos;     /* "original_max_position_embeddings" (8192 real) */
    const char *dtype;         /* "F32" | "F16" | "BF16": safetensors dtype */
    int n_shards;              /* 1 = model.safetensors; >1 = model-0000K-of-0000N + index */
    uint64_t seed;
} hfgen_spec;

/* ---- presets ------------------------------------------------------------- */

/* NULL-terminated list of preset names: "tiny-qwen2", "tiny-llama",
 * "small-qwen2", "small-llama", "qwen2-1.5b", "llama-8b". The last two have
 * the real R1-Distill-Qwen-1.5B / R1-Distill-Llama-8B shapes (GBs on disk). */
const char *const *hfgen_preset_names(void);

/* Fills *spec with the named preset (dtype "BF16", 1 shard, seed 1234).
 * Returns 0, or -1 for an unknown name (spec untouched). */
int hfgen_preset(const char *name, hfgen_spec *spec);

/* Checks a spec for consistency (positive sizes, heads dividing dim, kv heads
 * dividing heads, even head_dim, known arch and dtype, vocab large enough for
 * the tokenizer). Returns 0 or -1 with a message in err. */
int hfgen_validate(const hfgen_spec *spec, deepc_err *err);

/* ---- tensors ------------------------------------------------------------- */

typedef enum {
    HFGEN_INIT_NORMAL = 0,     /* N(mean, std) */
    HFGEN_INIT_NORM_WEIGHT,    /* 1 + N(0, std): RMSNorm gains */
} hfgen_init_kind;

typedef struct hfgen_tensor {
    char name[96];             /* e.g. "model.layers.3.self_attn.q_proj.weight" */
    int ndim;                  /* 1 or 2 */
    uint64_t shape[2];         /* PyTorch layout: [out_features, in_features] */
    uint64_t n_elems;
    hfgen_init_kind init;
    float std;
    uint64_t pad_row;          /* embed/lm_head: rows >= pad_row are vocab padding
                                * (past the tokenizer) and use std / 10, like the
                                * untrained rows of real checkpoints, so they are
                                * never the argmax; = shape[0] for other tensors */
} hfgen_tensor;

/* Number of tensors of the checkpoint, in model order (embed, layers 0..L-1,
 * norm, lm_head). */
int hfgen_tensor_count(const hfgen_spec *spec);

/* The i-th tensor in model order (0 <= i < count). Returns 0 or -1. */
int hfgen_tensor_at(const hfgen_spec *spec, int i, hfgen_tensor *out);

/* Looks a tensor up by its Hugging Face name. Returns 0 or -1 (not present). */
int hfgen_tensor_find(const hfgen_spec *spec, const char *name, hfgen_tensor *out);

/* Writes elements [first, first + n) of tensor t as fp32, before dtype
 * rounding: the same values whatever the slicing. */
void hfgen_fill(const hfgen_spec *spec, const hfgen_tensor *t, uint64_t first,
                float *dst, size_t n);

/* Same, then rounded through the spec's storage dtype (what a reader decodes
 * from the written file). */
void hfgen_fill_stored(const hfgen_spec *spec, const hfgen_tensor *t, uint64_t first,
                       float *dst, size_t n);

/* Total number of parameters (elements of all tensors). */
uint64_t hfgen_param_count(const hfgen_spec *spec);

/* Bytes per element of a dtype name ("F32" 4, "F16"/"BF16" 2; 0 if unknown). */
size_t hfgen_dtype_size(const char *dtype);

/* fp32 <-> half conversions, round-to-nearest-even, NaN kept quiet. */
uint16_t hfgen_f32_to_bf16(float f);
uint16_t hfgen_f32_to_f16(float f);
float hfgen_bf16_to_f32(uint16_t h);
float hfgen_f16_to_f32(uint16_t h);
/* f rounded through dtype and back ("F32" returns f). */
float hfgen_round_dtype(const char *dtype, float f);
/* n values little-endian in dtype "F32", "F16" or "BF16" (NULL: BF16), as
 * safetensors stores them: dst receives n * hfgen_dtype_size(dtype) bytes. */
void hfgen_encode(const char *dtype, const float *src, uint8_t *dst, size_t n);

/* ---- tokenizer ----------------------------------------------------------- */

/* Size of the generated tokenizer: byte-level BPE tokens (256 bytes + merges)
 * followed by the added tokens. Added-token ids follow the BPE ids directly,
 * as in Qwen; rows from hfgen_tokenizer_size() to vocab-1 are padding. The
 * tokenizer takes vocab - vocab/32 ids when the built-in corpus allows it
 * (tiny and small presets: exactly pad_row), else fewer (big presets:
 * about 1450 tokens). */
int hfgen_tokenizer_size(const hfgen_spec *spec);
int hfgen_bos_id(const hfgen_spec *spec);   /* <｜begin▁of▁sentence｜> */
int hfgen_eos_id(const hfgen_spec *spec);   /* <｜end▁of▁sentence｜> */

/* ---- writing ------------------------------------------------------------- */

typedef struct hfgen_stats {
    uint64_t tensor_bytes;     /* sum of tensor data bytes (index total_size) */
    uint64_t file_bytes;       /* all files written */
    int n_files;
} hfgen_stats;

/* Writes the checkpoint into dir (created if missing, its parent must exist;
 * files of the same names are replaced, and a stale model.safetensors or
 * index of the other layout is removed). Streams tensor by tensor through a
 * bounded buffer (about 8 MB; values generated on up to 16 threads), so the
 * 1.5B/8B presets need no more memory than the tiny ones. Output bytes do
 * not depend on the thread count. Returns 0, or -1 with a message in err
 * (which may be NULL). */
int hfgen_write(const char *dir, const hfgen_spec *spec, deepc_err *err);

/* Same, also reporting what was written (stats may be NULL). */
int hfgen_write_ex(const char *dir, const hfgen_spec *spec, hfgen_stats *stats, deepc_err *err);

#endif
