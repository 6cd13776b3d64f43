/* hfgen.c - synthetic Hugging Face checkpoints in the exact layout of the
 * DeepSeek-R1-Distill releases (see hfgen.h). libc/libm/pthreads and the
 * family-independent file writing of hfwrite.c only: no engine code.
 *
 * Sections: spec and presets | counter-based PRNG | tensor list | dtype
 * conversion | tokenizer (added tokens, corpus, pre-tokenizer, BPE) | JSON
 * files | writing files. */
#include "hfgen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hfwrite.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#define N_ELEMS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ======================================================================== */
/* spec and presets                                                         */
/* ======================================================================== */

static const char *const PRESET_NAMES[] = {
    "tiny-qwen2", "tiny-llama", "small-qwen2", "small-llama", "qwen2-1.5b", "llama-8b", NULL,
};

/* The presets' shapes. The family traits are set by hfgen_preset: Qwen2
 * q/k/v biases and rms_norm_eps 1e-6; Llama 3 eps 1e-5 and llama3 rope
 * scaling with the real factors 8 / 1 / 4. */
static const struct {
    const char *name;
    hfgen_spec s;
} PRESETS[] = {
    /* Qwen2 block in miniature: GQA 4/2, q/k/v biases, tied embeddings
     * (like Qwen2.5-0.5B/1.5B base), head_dim 16. */
    {"tiny-qwen2", {.arch = "qwen2", .vocab = 512, .dim = 64, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                    .ffn = 160, .max_pos = 4096, .rope_theta = 10000.0f, .tie_embeddings = true}},
    /* Llama 3 block in miniature: GQA 4/2, untied, llama3 rope scaling with
     * original_max_position_embeddings 256 so that with head_dim 16 and
     * theta 1e4 the 8 frequencies fall in all three regimes: i = 0..2 kept
     * (wavelength < 64), i = 3 smoothed, i = 4..7 divided by 8 (> 256). */
    {"tiny-llama", {.arch = "llama", .vocab = 512, .dim = 64, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                    .ffn = 192, .max_pos = 2048, .rope_theta = 10000.0f, .rope_orig_max_pos = 256}},
    {"small-qwen2", {.arch = "qwen2", .vocab = 1472, .dim = 512, .n_layers = 4, .n_heads = 8, .n_kv_heads = 2,
                     .ffn = 1408, .max_pos = 4096, .rope_theta = 10000.0f}},
    /* head_dim 64, theta 5e5, original 2048: i <= 10 kept, 11..14
     * smoothed, i >= 15 divided by 8. */
    {"small-llama", {.arch = "llama", .vocab = 1472, .dim = 512, .n_layers = 4, .n_heads = 8, .n_kv_heads = 2,
                     .ffn = 1536, .max_pos = 16384, .rope_theta = 500000.0f, .rope_orig_max_pos = 2048}},
    /* deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B config.json */
    {"qwen2-1.5b", {.arch = "qwen2", .vocab = 151936, .dim = 1536, .n_layers = 28, .n_heads = 12, .n_kv_heads = 2,
                    .ffn = 8960, .max_pos = 131072, .rope_theta = 10000.0f}},
    /* deepseek-ai/DeepSeek-R1-Distill-Llama-8B config.json */
    {"llama-8b", {.arch = "llama", .vocab = 128256, .dim = 4096, .n_layers = 32, .n_heads = 32, .n_kv_heads = 8,
                  .ffn = 14336, .max_pos = 131072, .rope_theta = 500000.0f, .rope_orig_max_pos = 8192}},
};

const char *const *hfgen_preset_names(void) { return PRESET_NAMES; }

int hfgen_preset(const char *name, hfgen_spec *spec) {
    for (size_t i = 0; name && i < sizeof PRESETS / sizeof PRESETS[0]; i++) {
        if (strcmp(name, PRESETS[i].name) != 0) continue;
        hfgen_spec s = PRESETS[i].s;
        if (strcmp(s.arch, "qwen2") == 0) {
            s.attn_bias = true;
            s.norm_eps = 1e-6f;
        } else {
            s.norm_eps = 1e-5f;
            s.llama3_rope_scaling = true;
            s.rope_factor = 8.0f;
            s.rope_low_freq_factor = 1.0f;
            s.rope_high_freq_factor = 4.0f;
        }
        s.dtype = "BF16";
        s.n_shards = 1;
        s.seed = 1234;
        *spec = s;
        return 0;
    }
    return -1;
}

static bool is_qwen(const hfgen_spec *s) { return s->arch && strcmp(s->arch, "qwen2") == 0; }

/* Fills the defaults of fields a caller may leave zero. */
static hfgen_spec spec_norm(const hfgen_spec *in) {
    hfgen_spec s = *in;
    if (!s.dtype) s.dtype = "BF16";
    if (s.n_shards <= 0) s.n_shards = 1;
    if (s.max_pos <= 0) s.max_pos = 4096;
    if (!(s.rope_theta > 0)) s.rope_theta = 10000.0f;
    if (!(s.norm_eps > 0)) s.norm_eps = 1e-6f;
    if (s.llama3_rope_scaling) {
        if (!(s.rope_factor > 0)) s.rope_factor = 8.0f;
        if (!(s.rope_low_freq_factor > 0)) s.rope_low_freq_factor = 1.0f;
        if (!(s.rope_high_freq_factor > 0)) s.rope_high_freq_factor = 4.0f;
        if (s.rope_orig_max_pos <= 0) {
            s.rope_orig_max_pos = (int)(s.max_pos / s.rope_factor);
            if (s.rope_orig_max_pos < 1) s.rope_orig_max_pos = 1;
        }
    }
    return s;
}

size_t hfgen_dtype_size(const char *dtype) {
    if (!dtype) return 2;  /* default BF16 */
    if (strcmp(dtype, "F32") == 0) return 4;
    if (strcmp(dtype, "F16") == 0 || strcmp(dtype, "BF16") == 0) return 2;
    return 0;
}

static int n_added_tokens(const hfgen_spec *s);
static int bpe_budget(const hfgen_spec *s);

int hfgen_validate(const hfgen_spec *in, deepc_err *err) {
    if (!in) return hfw_fail(err, "hfgen: no spec");
    hfgen_spec s = spec_norm(in);
    if (!s.arch || (strcmp(s.arch, "qwen2") != 0 && strcmp(s.arch, "llama") != 0))
        return hfw_fail(err, "hfgen: arch must be \"qwen2\" or \"llama\" (got %s)", s.arch ? s.arch : "NULL");
    if (hfgen_dtype_size(s.dtype) == 0)
        return hfw_fail(err, "hfgen: dtype must be F32, F16 or BF16 (got %s)", s.dtype);
    if (s.dim <= 0 || s.n_layers <= 0 || s.n_heads <= 0 || s.n_kv_heads <= 0 || s.ffn <= 0 || s.vocab <= 0)
        return hfw_fail(err, "hfgen: sizes must be positive (dim %d layers %d heads %d kv %d ffn %d vocab %d)",
                        s.dim, s.n_layers, s.n_heads, s.n_kv_heads, s.ffn, s.vocab);
    if (s.dim % s.n_heads != 0) return hfw_fail(err, "hfgen: n_heads %d does not divide dim %d", s.n_heads, s.dim);
    if ((s.dim / s.n_heads) % 2 != 0) return hfw_fail(err, "hfgen: head_dim %d is odd", s.dim / s.n_heads);
    if (s.n_heads % s.n_kv_heads != 0)
        return hfw_fail(err, "hfgen: n_kv_heads %d does not divide n_heads %d", s.n_kv_heads, s.n_heads);
    if (bpe_budget(&s) < 256)
        return hfw_fail(err, "hfgen: vocab %d too small: need 256 byte tokens + %d added tokens + padding",
                        s.vocab, n_added_tokens(&s));
    if (s.llama3_rope_scaling && !(s.rope_high_freq_factor > s.rope_low_freq_factor))
        return hfw_fail(err, "hfgen: llama3 rope scaling needs high_freq_factor > low_freq_factor");
    if (s.n_shards > hfgen_tensor_count(&s))
        return hfw_fail(err, "hfgen: %d shards for %d tensors", s.n_shards, hfgen_tensor_count(&s));
    if (s.n_shards > 99999) return hfw_fail(err, "hfgen: too many shards");
    return 0;
}

/* ======================================================================== */
/* counter-based PRNG: element i of a tensor = f(seed, name, i)             */
/* ======================================================================== */

#define GOLDEN 0x9E3779B97F4A7C15ull

static uint64_t mix64(uint64_t z) {  /* splitmix64 finalizer */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a64(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

static uint64_t tensor_key(const hfgen_spec *s, const char *name) {
    return mix64(s->seed * GOLDEN + fnv1a64(name));
}

/* The standard normal pair p of stream key, by Marsaglia's polar method on
 * splitmix64 outputs: attempt a of pair p uses counters 64p + 2a + 1 and
 * 64p + 2a + 2, so the pair depends on (key, p) only. An attempt is accepted
 * with probability pi/4; 31 rejections in a row (p ~ 1e-21) fall back to
 * Box-Muller on the last draw. */
static void normal_pair(uint64_t key, uint64_t p, double *z0, double *z1) {
    double u = 0.0, v = 0.0, s = 0.0;
    for (uint64_t a = 0; a < 32; a++) {
        uint64_t h1 = mix64(key + ((p << 6) + 2 * a + 1) * GOLDEN);
        uint64_t h2 = mix64(key + ((p << 6) + 2 * a + 2) * GOLDEN);
        u = (double)(h1 >> 11) * 0x1p-52 - 1.0;   /* [-1, 1) */
        v = (double)(h2 >> 11) * 0x1p-52 - 1.0;
        s = u * u + v * v;
        if (s > 0.0 && s < 1.0) {
            double f = sqrt(-2.0 * log(s) / s);
            *z0 = u * f;
            *z1 = v * f;
            return;
        }
    }
    double r = sqrt(-2.0 * log((u + 1.0) * 0.5 + 0x1p-54)), t = M_PI * (v + 1.0);
    *z0 = r * cos(t);
    *z1 = r * sin(t);
}

void hfgen_fill(const hfgen_spec *spec, const hfgen_tensor *t, uint64_t first, float *dst, size_t n) {
    const uint64_t key = tensor_key(spec, t->name);
    const double base = t->init == HFGEN_INIT_NORM_WEIGHT ? 1.0 : 0.0;
    const double sd = t->std, sd_pad = t->std / 10.0;
    /* elements from pad_first on lie in vocab padding rows */
    const uint64_t pad_first = t->ndim == 2 && t->pad_row < t->shape[0] ? t->pad_row * t->shape[1] : UINT64_MAX;
    size_t k = 0;
    while (k < n) {
        uint64_t i = first + k;
        double z0, z1;
        normal_pair(key, i >> 1, &z0, &z1);
        if ((i & 1) == 0) {
            dst[k++] = (float)(base + (i < pad_first ? sd : sd_pad) * z0);
            i++;
            if (k < n) dst[k++] = (float)(base + (i < pad_first ? sd : sd_pad) * z1);
        } else {
            dst[k++] = (float)(base + (i < pad_first ? sd : sd_pad) * z1);
        }
    }
}

void hfgen_fill_stored(const hfgen_spec *spec, const hfgen_tensor *t, uint64_t first, float *dst, size_t n) {
    const char *dt = spec->dtype ? spec->dtype : "BF16";
    hfgen_fill(spec, t, first, dst, n);
    for (size_t i = 0; i < n; i++) dst[i] = hfgen_round_dtype(dt, dst[i]);
}

/* ======================================================================== */
/* tensor list                                                              */
/* ======================================================================== */

/* Tensors per layer: norm, q, k, v, o, norm, gate, up, down (+ 3 biases). */
static int per_layer(const hfgen_spec *s) { return s->attn_bias ? 12 : 9; }

int hfgen_tensor_count(const hfgen_spec *in) {
    return 1 + in->n_layers * per_layer(in) + 1 + (in->tie_embeddings ? 0 : 1);
}

static void set_t(hfgen_tensor *t, const char *name, int ndim, uint64_t d0, uint64_t d1,
                  hfgen_init_kind init, double std) {
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = ndim == 2 ? d1 : 0;
    t->n_elems = ndim == 2 ? d0 * d1 : d0;
    t->init = init;
    t->std = (float)std;
    t->pad_row = d0;
}

/* Scales. Linear layers use std 1/sqrt(in_features) so each projection keeps
 * the RMS of its input; with the RMSNorm before every block the residual
 * stream then grows like sqrt(layers), O(1). q/k use 1.5x that so attention
 * is not uniform (scores have std ~2). Embeddings: HF's 0.02 when untied;
 * when tied they are also the output head and use 2/sqrt(dim) like lm_head,
 * so logits (normed hidden . row) have std ~2: a spread of a few units. */
int hfgen_tensor_at(const hfgen_spec *in, int i, hfgen_tensor *t) {
    const hfgen_spec s = spec_norm(in);
    int n = hfgen_tensor_count(&s);
    if (i < 0 || i >= n) return -1;
    uint64_t dim = (uint64_t)s.dim, hd = (uint64_t)(s.dim / s.n_heads);
    uint64_t qdim = (uint64_t)s.n_heads * hd, kvdim = (uint64_t)s.n_kv_heads * hd, ffn = (uint64_t)s.ffn;
    double in_dim = 1.0 / sqrt((double)dim), in_ffn = 1.0 / sqrt((double)ffn);
    double head_std = 2.0 / sqrt((double)dim);
    char name[96];
    if (i == 0) {
        set_t(t, "model.embed_tokens.weight", 2, (uint64_t)s.vocab, dim, HFGEN_INIT_NORMAL,
              s.tie_embeddings ? head_std : 0.02);
        t->pad_row = (uint64_t)(s.vocab - s.vocab / 32);
        return 0;
    }
    if (i == n - 1 && !s.tie_embeddings) {
        set_t(t, "lm_head.weight", 2, (uint64_t)s.vocab, dim, HFGEN_INIT_NORMAL, head_std);
        t->pad_row = (uint64_t)(s.vocab - s.vocab / 32);
        return 0;
    }
    if (i == 1 + s.n_layers * per_layer(&s)) {
        set_t(t, "model.norm.weight", 1, dim, 0, HFGEN_INIT_NORM_WEIGHT, 0.1);
        return 0;
    }
    /* Slot j of the 12-tensor layer layout; without biases the 9 tensors map
     * onto the slots that are not biases. */
    static const int no_bias_slot[9] = {0, 1, 3, 5, 7, 8, 9, 10, 11};
    int l = (i - 1) / per_layer(&s), j = (i - 1) % per_layer(&s);
    if (!s.attn_bias) j = no_bias_slot[j];
    static const char *const suffix[12] = {
        "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.q_proj.bias",
        "self_attn.k_proj.weight", "self_attn.k_proj.bias", "self_attn.v_proj.weight",
        "self_attn.v_proj.bias", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
        "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
    };
    snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix[j]);
    switch (j) {
    case 0: case 8: set_t(t, name, 1, dim, 0, HFGEN_INIT_NORM_WEIGHT, 0.1); break;
    case 1: set_t(t, name, 2, qdim, dim, HFGEN_INIT_NORMAL, 1.5 * in_dim); break;
    case 2: set_t(t, name, 1, qdim, 0, HFGEN_INIT_NORMAL, 0.2); break;
    case 3: set_t(t, name, 2, kvdim, dim, HFGEN_INIT_NORMAL, 1.5 * in_dim); break;
    case 4: set_t(t, name, 1, kvdim, 0, HFGEN_INIT_NORMAL, 0.2); break;
    case 5: set_t(t, name, 2, kvdim, dim, HFGEN_INIT_NORMAL, in_dim); break;
    case 6: set_t(t, name, 1, kvdim, 0, HFGEN_INIT_NORMAL, 0.1); break;
    case 7: set_t(t, name, 2, dim, qdim, HFGEN_INIT_NORMAL, 1.0 / sqrt((double)qdim)); break;
    case 9: case 10: set_t(t, name, 2, ffn, dim, HFGEN_INIT_NORMAL, in_dim); break;
    default: set_t(t, name, 2, dim, ffn, HFGEN_INIT_NORMAL, in_ffn); break;
    }
    return 0;
}

int hfgen_tensor_find(const hfgen_spec *spec, const char *name, hfgen_tensor *out) {
    int n = hfgen_tensor_count(spec);
    for (int i = 0; i < n; i++) {
        hfgen_tensor t;
        if (hfgen_tensor_at(spec, i, &t) == 0 && strcmp(t.name, name) == 0) {
            *out = t;
            return 0;
        }
    }
    return -1;
}

uint64_t hfgen_param_count(const hfgen_spec *spec) {
    uint64_t total = 0;
    int n = hfgen_tensor_count(spec);
    for (int i = 0; i < n; i++) {
        hfgen_tensor t;
        if (hfgen_tensor_at(spec, i, &t) == 0) total += t.n_elems;
    }
    return total;
}

/* ======================================================================== */
/* dtype conversion (round to nearest even)                                 */
/* ======================================================================== */

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

uint16_t hfgen_f32_to_bf16(float f) {
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float hfgen_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t hfgen_f32_to_f16(float f) {
    uint32_t u = f2u(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  /* rounds to >= 65520: inf */
    if (a < 0x38800000u) {
        /* Result is subnormal (or zero): value / 2^-24 rounded to an integer,
         * nearest even. a < 2^-14 here, so m < 1024 after rounding or == 1024
         * which is exactly the smallest normal: the encoding carries over. */
        if (a < 0x33000000u) return (uint16_t)sign;  /* < 2^-25: rounds to 0 */
        uint32_t e = a >> 23;                  /* biased exponent, 102..112 */
        uint32_t mant = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e;             /* 24-bit mantissa -> units of 2^-24 */
        uint32_t q = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    /* normal: rebias exponent 127 -> 15, round 23 -> 10 mantissa bits */
    uint32_t r = a - 0x38000000u;              /* (e - 112) << 23 | mant */
    r += 0xfffu + ((r >> 13) & 1);
    return (uint16_t)(sign | (r >> 13));
}

float hfgen_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        float v = (float)m * 0x1p-24f;
        return sign ? -v : v;
    }
    if (e == 31) return u2f(sign | 0x7f800000u | (m << 13));
    return u2f(sign | ((e + 112) << 23) | (m << 13));
}

float hfgen_round_dtype(const char *dtype, float f) {
    if (!dtype || strcmp(dtype, "BF16") == 0) return hfgen_bf16_to_f32(hfgen_f32_to_bf16(f));
    if (strcmp(dtype, "F16") == 0) return hfgen_f16_to_f32(hfgen_f32_to_f16(f));
    return f;
}

void hfgen_encode(const char *dtype, const float *src, uint8_t *dst, size_t n) {
    if (dtype && strcmp(dtype, "F32") == 0) {
        for (size_t k = 0; k < n; k++) {
            const uint32_t u = f2u(src[k]);
            for (int q = 0; q < 4; q++) dst[4 * k + (size_t)q] = (uint8_t)(u >> (8 * q));
        }
        return;
    }
    const bool f16 = dtype && strcmp(dtype, "F16") == 0;
    for (size_t k = 0; k < n; k++) {
        const uint16_t v = f16 ? hfgen_f32_to_f16(src[k]) : hfgen_f32_to_bf16(src[k]);
        dst[2 * k] = (uint8_t)v;
        dst[2 * k + 1] = (uint8_t)(v >> 8);
    }
}

/* ======================================================================== */
/* tokenizer: added tokens, corpus                                          */
/* ======================================================================== */

typedef struct {
    const char *content;
    bool special;
} added_tok;

/* DeepSeek-R1-Distill-Qwen: ids 151643.. in the real file, here they follow
 * the BPE ids in the same order. */
static const added_tok QWEN_ADDED[] = {
    {"<｜end▁of▁sentence｜>", true},  {"<｜User｜>", false},
    {"<｜Assistant｜>", false},         {"<｜begin▁of▁sentence｜>", true},
    {"<|EOT|>", false},                 {"<think>", false},
    {"</think>", false},                {"<|quad_start|>", true},
    {"<|quad_end|>", true},             {"<|vision_start|>", true},
    {"<|vision_end|>", true},           {"<|vision_pad|>", true},
    {"<|image_pad|>", true},            {"<|video_pad|>", true},
    {"<tool_call>", false},             {"</tool_call>", false},
    {"<|fim_prefix|>", false},          {"<|fim_middle|>", false},
    {"<|fim_suffix|>", false},          {"<|fim_pad|>", false},
    {"<|repo_name|>", false},           {"<|file_sep|>", false},
};
enum { QWEN_BOS = 3, QWEN_EOS = 0 };

/* DeepSeek-R1-Distill-Llama: the first 16 of ids 128000.. in the real file. */
static const added_tok LLAMA_ADDED[] = {
    {"<｜begin▁of▁sentence｜>", true},  {"<｜end▁of▁sentence｜>", true},
    {"<|reserved_special_token_0|>", true}, {"<|reserved_special_token_1|>", true},
    {"<|finetune_right_pad_id|>", true},    {"<|reserved_special_token_2|>", true},
    {"<|start_header_id|>", true},      {"<|end_header_id|>", true},
    {"<|eom_id|>", true},               {"<|eot_id|>", true},
    {"<|python_tag|>", true},           {"<｜User｜>", false},
    {"<｜Assistant｜>", false},         {"<think>", false},
    {"</think>", false},                {"<｜▁pad▁｜>", true},
};
enum { LLAMA_BOS = 0, LLAMA_EOS = 1 };

static const added_tok *added_list(const hfgen_spec *s, int *n) {
    if (is_qwen(s)) { *n = N_ELEMS(QWEN_ADDED); return QWEN_ADDED; }
    *n = N_ELEMS(LLAMA_ADDED);
    return LLAMA_ADDED;
}

static int n_added_tokens(const hfgen_spec *s) {
    int n;
    added_list(s, &n);
    return n;
}

/* BPE tokens at most: what the vocab leaves after the added tokens and a
 * little padding (the real checkpoints pad vocab_size past the tokenizer). */
static int bpe_budget(const hfgen_spec *s) { return s->vocab - n_added_tokens(s) - s->vocab / 32; }

/* A small built-in English text (written for this generator) from which the
 * merges are learned, so English tokenizes into multi-byte tokens. */
static const char *const CORPUS[] = {
    "The old lighthouse stood at the edge of the harbor for more than a hundred years. Every "
    "night its keeper climbed the narrow stairs, trimmed the wick, and watched the light turn "
    "slowly over the water. Ships that passed in the dark could see it from far away, and they "
    "knew where the rocks were hidden.\n",
    "When the keeper retired, the town decided to keep the light running with a small electric "
    "motor. It was cheaper, and it never fell asleep. But the children still walked out to the "
    "point in the evening, because they liked to count the seconds between the flashes: one, two, "
    "three, four, five, and then the beam again.\n",
    "A good explanation starts with the question that the reader is actually asking. If you want "
    "to explain how a computer adds two numbers, you should not begin with the history of the "
    "transistor. Begin with the numbers themselves, show what happens to each digit, and only "
    "then describe the circuit that does the work.\n",
    "In 1969, the first people walked on the Moon. The mission took about eight days, and the "
    "spacecraft traveled roughly 384,400 kilometers each way. Today, a phone in your pocket has "
    "far more computing power than the guidance computer that flew on that mission, which had "
    "about 4 kilobytes of erasable memory.\n",
    "\"Can you help me with my homework?\" asked the girl. \"Of course,\" said her brother, \"but "
    "you'll have to tell me what the teacher said first.\" She opened her notebook and read the "
    "problem aloud: a train leaves the station at 3:15 and travels at 60 miles per hour; when "
    "will it reach a town that is 150 miles away?\n",
    "To solve it, we divide the distance by the speed. That gives 150 / 60 = 2.5 hours, which is "
    "two hours and thirty minutes. Adding that to 3:15, the train arrives at 5:45. It's a simple "
    "problem, but it teaches an important idea: the time of a trip depends on both how far you go "
    "and how fast you move.\n",
    "Let me think about this step by step. First, we need to understand what the question is "
    "asking. Then we can look at the information we have, decide which parts are important, and "
    "check whether the answer makes sense. If the result seems wrong, we go back and try another "
    "approach.\n",
    "The weather in the mountains changes quickly. In the morning the sky may be clear and blue, "
    "but by the afternoon heavy clouds can gather over the peaks, and the temperature can drop by "
    "ten degrees in less than an hour. Experienced hikers always carry a warm jacket, plenty of "
    "water, and a map, even on short walks.\n",
    "Bread is one of the oldest foods that people make. The basic recipe has only four "
    "ingredients: flour, water, salt, and yeast. The yeast eats the sugar in the flour and "
    "produces small bubbles of gas, which make the dough rise. When the bread is baked, the heat "
    "sets the structure, and the crust turns golden brown.\n",
    "Good software is written for people as much as for machines. A function should do one thing, "
    "and its name should say what that thing is. When you read the code a year later, you will be "
    "grateful for every clear comment, every test that explains what the program is supposed to "
    "do, and every error message that tells you what went wrong.\n",
    "The library was quiet in the afternoon. A few students were reading at the long wooden "
    "tables, and an old man was looking through a box of maps near the window. On the shelves "
    "there were books about history, science, music, and art, and the librarian knew where every "
    "one of them belonged.\n",
    "We're going to need a bigger boat, he said, and everyone laughed, because the boat was "
    "already the biggest one in the harbor. They'd been fishing since dawn and hadn't caught "
    "anything, but the sea was calm and the sun was warm, and nobody really wanted to go home.\n",
    "The answer is 42. Why? Because the question was never clearly stated, and when a question "
    "isn't clear, any answer can look correct. This is why scientists spend so much time defining "
    "their terms before they start an experiment: a precise question is often more valuable than "
    "a quick answer.\n",
    "Water boils at 100 degrees Celsius at sea level, but at the top of a high mountain it boils "
    "at a lower temperature, because the air pressure is lower. That is why cooking pasta takes "
    "longer in the mountains. The water is boiling, but it is not as hot as it would be at the "
    "beach.\n",
    "Music can change the way we feel in a few seconds. A slow song in a minor key can make a "
    "room feel sad and thoughtful, while a fast rhythm with bright chords makes people want to "
    "dance. Composers have known this for centuries, and they use it to tell stories without any "
    "words at all.\n",
    "The city council met on Tuesday to discuss the new bridge. Some members wanted to build it "
    "as soon as possible, while others thought the project was too expensive. After a long "
    "debate, they agreed to ask the engineers for a second plan and to vote again at the next "
    "meeting in two weeks.\n",
    "Every language has its own rules, but all of them let people share ideas, ask questions, and "
    "tell stories. Children learn to speak by listening, trying, making mistakes, and trying "
    "again. By the age of five, most children know thousands of words and can build sentences "
    "that they have never heard before.\n",
    "If a number is divisible by both 2 and 3, then it is also divisible by 6. For example, 12 "
    "and 18 are divisible by 6, but 9 is not, because it is odd. You can check a large number "
    "like 123456 quickly: it is even, and the sum of its digits is 21, which is divisible by 3, "
    "so the number is divisible by 6.\n",
    "The garden behind the house was small, but it was full of life. There were tomatoes and "
    "beans along the fence, roses near the door, and an apple tree in the corner that gave more "
    "fruit than the family could eat. In the summer, the neighbors came over with baskets, and "
    "nobody left empty-handed.\n",
    "Thank you for your question. I think the best way to answer it is to look at a simple "
    "example first, and then to see how the same idea works in a more general case. Let's start "
    "with the smallest possible input and make sure we understand exactly what the program does "
    "with it.\n",
};

/* ======================================================================== */
/* pre-tokenizer (ASCII subset of the Qwen2 / Llama 3 Split regex)          */
/* ======================================================================== */

static bool is_nl(int c) { return c == '\r' || c == '\n'; }

/* Length of the regex match at s[i] (ASCII text), alternatives in order:
 * (?i:'s|'t|'re|'ve|'m|'ll|'d) | [^\r\n\p{L}\p{N}]?\p{L}+ | \p{N}{1,max_digits}
 * | ?[^\s\p{L}\p{N}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+ */
static size_t pretok_match(const char *s, size_t i, size_t n, int max_digits) {
    int c = (unsigned char)s[i];
    if (c == '\'' && i + 1 < n) {
        int c1 = s[i + 1] | 0x20, c2 = i + 2 < n ? (s[i + 2] | 0x20) : 0;
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
        if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
    }
    if (hfw_is_letter(c) || (!hfw_is_digit(c) && !is_nl(c) && i + 1 < n && hfw_is_letter(s[i + 1]))) {
        size_t j = i + 1;
        while (j < n && hfw_is_letter(s[j])) j++;
        return j - i;
    }
    if (hfw_is_digit(c)) {
        size_t j = i;
        while (j < n && hfw_is_digit(s[j]) && (int)(j - i) < max_digits) j++;
        return j - i;
    }
    {
        size_t j = i;
        if (s[j] == ' ') j++;
        if (j < n && hfw_is_punct(s[j])) {
            while (j < n && hfw_is_punct(s[j])) j++;
            while (j < n && is_nl(s[j])) j++;
            return j - i;
        }
    }
    size_t k = i;
    while (k < n && hfw_is_space(s[k])) k++;
    size_t last_nl = n;
    for (size_t m = i; m < k; m++)
        if (is_nl(s[m])) last_nl = m;
    if (last_nl < n) return last_nl + 1 - i;
    if (k == n) return k - i;
    if (k - i >= 2) return k - 1 - i;
    return k > i ? k - i : 1;
}

static size_t pretok_qwen(const char *s, size_t i, size_t n) { return pretok_match(s, i, n, 1); }
static size_t pretok_llama(const char *s, size_t i, size_t n) { return pretok_match(s, i, n, 3); }

/* The BPE part of the tokenizer: merges learned from CORPUS until the vocab
 * reaches bpe_budget tokens or every word of the corpus is a single token
 * (about 1400 tokens). */
static int bpe_train(const hfgen_spec *s, hfw_bpe *out) {
    int max_tok = bpe_budget(s);
    if (max_tok > 65535) max_tok = 65535;
    return hfw_bpe_train(CORPUS, N_ELEMS(CORPUS), is_qwen(s) ? pretok_qwen : pretok_llama, 0, max_tok - 256,
                         (max_tok > 256 ? max_tok : 256) * 8, out);
}

static int tokenizer_bpe_size(const hfgen_spec *in) {
    hfgen_spec s = spec_norm(in);
    hfw_bpe b;
    if (bpe_train(&s, &b) != 0) return -1;
    int n = b.n_tok;
    hfw_bpe_free(&b);
    return n;
}

int hfgen_tokenizer_size(const hfgen_spec *spec) {
    int n = tokenizer_bpe_size(spec);
    return n < 0 ? -1 : n + n_added_tokens(spec);
}

int hfgen_bos_id(const hfgen_spec *spec) {
    int n = tokenizer_bpe_size(spec);
    return n < 0 ? -1 : n + (is_qwen(spec) ? QWEN_BOS : LLAMA_BOS);
}

int hfgen_eos_id(const hfgen_spec *spec) {
    int n = tokenizer_bpe_size(spec);
    return n < 0 ? -1 : n + (is_qwen(spec) ? QWEN_EOS : LLAMA_EOS);
}

/* ======================================================================== */
/* JSON files                                                               */
/* ======================================================================== */

static const char *torch_dtype_name(const char *dtype) {
    if (strcmp(dtype, "F32") == 0) return "float32";
    if (strcmp(dtype, "F16") == 0) return "float16";
    return "bfloat16";
}

static void rope_scaling_json(hfw_buf *b, const hfgen_spec *s) {
    hfw_puts(b, "{\n    \"factor\": ");
    hfw_float(b, s->rope_factor, 6);
    hfw_puts(b, ",\n    \"high_freq_factor\": ");
    hfw_float(b, s->rope_high_freq_factor, 6);
    hfw_puts(b, ",\n    \"low_freq_factor\": ");
    hfw_float(b, s->rope_low_freq_factor, 6);
    hfw_printf(b, ",\n    \"original_max_position_embeddings\": %d,\n    \"rope_type\": \"llama3\"\n  }",
               s->rope_orig_max_pos);
}

/* config.json with the keys (and key order) of the real R1-Distill files. */
static void config_json(hfw_buf *b, const hfgen_spec *s, int bos, int eos) {
    if (is_qwen(s)) {
        /* R1-Distill-Qwen: bos_token_id and eos_token_id are both the
         * <｜end▁of▁sentence｜> id (151643) in the real config. */
        hfw_printf(b,
                   "{\n  \"architectures\": [\n    \"Qwen2ForCausalLM\"\n  ],\n"
                   "  \"attention_dropout\": 0.0,\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n"
                   "  \"hidden_act\": \"silu\",\n  \"hidden_size\": %d,\n  \"initializer_range\": 0.02,\n"
                   "  \"intermediate_size\": %d,\n  \"max_position_embeddings\": %d,\n"
                   "  \"max_window_layers\": %d,\n  \"model_type\": \"qwen2\",\n"
                   "  \"num_attention_heads\": %d,\n  \"num_hidden_layers\": %d,\n"
                   "  \"num_key_value_heads\": %d,\n  \"rms_norm_eps\": ",
                   eos, eos, s->dim, s->ffn, s->max_pos, s->n_layers * 3 / 4, s->n_heads, s->n_layers,
                   s->n_kv_heads);
        hfw_float(b, s->norm_eps, 6);
        if (s->llama3_rope_scaling) {
            hfw_puts(b, ",\n  \"rope_scaling\": ");
            rope_scaling_json(b, s);
        }
        hfw_puts(b, ",\n  \"rope_theta\": ");
        if (s->rope_theta == floorf(s->rope_theta)) hfw_printf(b, "%.0f", (double)s->rope_theta);
        else hfw_float(b, s->rope_theta, 6);
        hfw_printf(b,
                   ",\n  \"sliding_window\": 4096,\n  \"tie_word_embeddings\": %s,\n"
                   "  \"torch_dtype\": \"%s\",\n  \"transformers_version\": \"4.44.0\",\n"
                   "  \"use_cache\": true,\n  \"use_mrope\": false,\n  \"use_sliding_window\": false,\n"
                   "  \"vocab_size\": %d\n}\n",
                   s->tie_embeddings ? "true" : "false", torch_dtype_name(s->dtype), s->vocab);
        return;
    }
    hfw_printf(b,
               "{\n  \"architectures\": [\n    \"LlamaForCausalLM\"\n  ],\n"
               "  \"attention_bias\": %s,\n  \"attention_dropout\": 0.0,\n"
               "  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n  \"hidden_act\": \"silu\",\n"
               "  \"hidden_size\": %d,\n  \"initializer_range\": 0.02,\n  \"intermediate_size\": %d,\n"
               "  \"max_position_embeddings\": %d,\n  \"mlp_bias\": false,\n  \"model_type\": \"llama\",\n"
               "  \"num_attention_heads\": %d,\n  \"num_hidden_layers\": %d,\n"
               "  \"num_key_value_heads\": %d,\n  \"pretraining_tp\": 1,\n  \"rms_norm_eps\": ",
               s->attn_bias ? "true" : "false", bos, eos, s->dim, s->ffn, s->max_pos, s->n_heads,
               s->n_layers, s->n_kv_heads);
    hfw_float(b, s->norm_eps, 6);
    hfw_puts(b, ",\n  \"rope_scaling\": ");
    if (s->llama3_rope_scaling) rope_scaling_json(b, s);
    else hfw_puts(b, "null");
    hfw_puts(b, ",\n  \"rope_theta\": ");
    hfw_float(b, s->rope_theta, 6);
    hfw_printf(b,
               ",\n  \"tie_word_embeddings\": %s,\n  \"torch_dtype\": \"%s\",\n"
               "  \"transformers_version\": \"4.43.0.dev0\",\n  \"use_cache\": true,\n"
               "  \"vocab_size\": %d\n}\n",
               s->tie_embeddings ? "true" : "false", torch_dtype_name(s->dtype), s->vocab);
}

/* The Qwen2 / Llama 3 Split regex (Qwen: single digits, Llama 3: up to 3),
 * then ByteLevel. */
static void pretok_json(hfw_buf *b, bool qwen) {
    hfw_printf(b,
               "{\n    \"type\": \"Sequence\",\n    \"pretokenizers\": [\n      {\n        \"type\": \"Split\",\n"
               "        \"pattern\": {\n          \"Regex\": \"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?"
               "\\\\p{L}+|\\\\p{N}%s| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"\n"
               "        },\n        \"behavior\": \"Isolated\",\n        \"invert\": false\n      },\n      ",
               qwen ? "" : "{1,3}");
    hfw_bytelevel_json(b, "      ", false, !qwen, false);
    hfw_puts(b, "\n    ]\n  }");
}

/* TemplateProcessing that prepends <｜begin▁of▁sentence｜>, as written by
 * LlamaTokenizerFast with add_bos_token (both R1-Distill tokenizers). */
static void bos_template_json(hfw_buf *b, int bos, const char *indent) {
    static const char BOS[] = "<｜begin▁of▁sentence｜>";
    hfw_printf(b,
               "{\n%s  \"type\": \"TemplateProcessing\",\n"
               "%s  \"single\": [\n%s    {\n%s      \"SpecialToken\": {\n%s        \"id\": \"%s\",\n"
               "%s        \"type_id\": 0\n%s      }\n%s    },\n%s    {\n%s      \"Sequence\": {\n"
               "%s        \"id\": \"A\",\n%s        \"type_id\": 0\n%s      }\n%s    }\n%s  ],\n",
               indent, indent, indent, indent, indent, BOS, indent, indent, indent, indent, indent,
               indent, indent, indent, indent, indent);
    hfw_printf(b,
               "%s  \"pair\": [\n"
               "%s    {\n%s      \"SpecialToken\": {\n%s        \"id\": \"%s\",\n%s        \"type_id\": 0\n%s      }\n%s    },\n"
               "%s    {\n%s      \"Sequence\": {\n%s        \"id\": \"A\",\n%s        \"type_id\": 0\n%s      }\n%s    },\n"
               "%s    {\n%s      \"SpecialToken\": {\n%s        \"id\": \"%s\",\n%s        \"type_id\": 1\n%s      }\n%s    },\n"
               "%s    {\n%s      \"Sequence\": {\n%s        \"id\": \"B\",\n%s        \"type_id\": 1\n%s      }\n%s    }\n"
               "%s  ],\n",
               indent, indent, indent, indent, BOS, indent, indent, indent, indent, indent, indent,
               indent, indent, indent, indent, indent, indent, BOS, indent, indent, indent, indent,
               indent, indent, indent, indent, indent, indent);
    hfw_printf(b,
               "%s  \"special_tokens\": {\n%s    \"%s\": {\n%s      \"id\": \"%s\",\n"
               "%s      \"ids\": [\n%s        %d\n%s      ],\n%s      \"tokens\": [\n%s        \"%s\"\n"
               "%s      ]\n%s    }\n%s  }\n%s}",
               indent, indent, BOS, indent, BOS, indent, indent, bos, indent, indent, indent, BOS,
               indent, indent, indent, indent);
}

static void tokenizer_json(hfw_buf *b, const hfgen_spec *s, const hfw_bpe *bpe) {
    int n_add;
    const added_tok *add = added_list(s, &n_add);
    const bool qwen = is_qwen(s);
    hfw_added_token t[N_ELEMS(QWEN_ADDED)];
    for (int i = 0; i < n_add; i++) t[i] = (hfw_added_token){bpe->n_tok + i, add[i].content, add[i].special, false};
    hfw_tokenizer_head(b, t, n_add);
    hfw_puts(b, qwen ? "  \"normalizer\": {\n    \"type\": \"NFC\"\n  },\n" : "  \"normalizer\": null,\n");
    hfw_puts(b, "  \"pre_tokenizer\": ");
    pretok_json(b, qwen);
    hfw_puts(b, ",\n  \"post_processor\": ");
    const int bos = bpe->n_tok + (qwen ? QWEN_BOS : LLAMA_BOS);
    if (qwen) {
        bos_template_json(b, bos, "  ");
    } else {
        hfw_puts(b, "{\n    \"type\": \"Sequence\",\n    \"processors\": [\n      ");
        hfw_bytelevel_json(b, "      ", true, false, true);
        hfw_puts(b, ",\n      ");
        bos_template_json(b, bos, "      ");
        hfw_puts(b, "\n    ]\n  }");
    }
    hfw_puts(b, ",\n  \"decoder\": ");
    hfw_bytelevel_json(b, "  ", !qwen, !qwen, !qwen);
    hfw_puts(b, ",\n");
    /* Qwen files (tokenizers >= 0.20) store merges as pairs; Llama 3 files
     * as strings. */
    hfw_tokenizer_model(b, bpe, NULL, qwen ? "\"\"" : "null", qwen ? "false" : "true", qwen);
}

/* ======================================================================== */
/* writing files                                                            */
/* ======================================================================== */

typedef struct {
    const hfgen_spec *s;
    const hfgen_tensor *ts;    /* model order */
    const hfgen_tensor *t;     /* the one being written */
    hfw_scratch scratch;
} dense_writer;

static void dense_values(void *ctx, uint64_t first, size_t n, float *scratch, uint8_t *out) {
    const dense_writer *w = ctx;
    hfgen_fill(w->s, w->t, first, scratch, n);
    hfgen_encode(w->s->dtype, scratch, out, n);
}

static bool dense_data(void *user, FILE *f, const hfw_entry *e) {
    dense_writer *w = user;
    w->t = &w->ts[e->index];
    return hfw_write_values(f, w->t->n_elems, hfgen_dtype_size(w->s->dtype), dense_values, w, &w->scratch);
}

int hfgen_write_ex(const char *dir, const hfgen_spec *in, hfgen_stats *stats, deepc_err *err) {
    hfw_out o;
    hfw_bpe bpe = {0};
    hfgen_tensor *ts = NULL;
    hfw_entry *es = NULL;
    hfw_buf b = {0};
    int rc = -1;

    if (!dir || !in) return hfw_fail(err, "hfgen: no directory or spec");
    if (hfgen_validate(in, err) != 0) return -1;
    const hfgen_spec s = spec_norm(in);
    if (hfw_open(&o, dir, "hfgen", err) != 0) return -1;

    if (bpe_train(&s, &bpe) != 0) { hfw_fail(err, "hfgen: out of memory (tokenizer)"); goto done; }
    const int bos = bpe.n_tok + (is_qwen(&s) ? QWEN_BOS : LLAMA_BOS);
    const int eos = bpe.n_tok + (is_qwen(&s) ? QWEN_EOS : LLAMA_EOS);
    config_json(&b, &s, bos, eos);
    if (hfw_write_text(&o, "config.json", &b) != 0) goto done;
    hfw_generation_config_json(&b, bos, eos, "0.6", is_qwen(&s) ? "4.39.3" : "4.43.0.dev0");
    if (hfw_write_text(&o, "generation_config.json", &b) != 0) goto done;
    tokenizer_json(&b, &s, &bpe);
    if (hfw_write_text(&o, "tokenizer.json", &b) != 0) goto done;
    hfw_tokenizer_config_json(&b, "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", 16384, hfw_r1_chat_template);
    if (hfw_write_text(&o, "tokenizer_config.json", &b) != 0) goto done;

    const int nt = hfgen_tensor_count(&s);
    ts = calloc((size_t)nt, sizeof *ts);
    es = calloc((size_t)nt, sizeof *es);
    if (!ts || !es) { hfw_fail(err, "hfgen: out of memory"); goto done; }
    for (int i = 0; i < nt; i++) {
        hfgen_tensor_at(&s, i, &ts[i]);
        es[i] = (hfw_entry){.dtype = s.dtype, .ndim = ts[i].ndim, .shape = {ts[i].shape[0], ts[i].shape[1]},
                            .nbytes = ts[i].n_elems * hfgen_dtype_size(s.dtype), .opens_shard = true, .index = i};
        memcpy(es[i].name, ts[i].name, sizeof es[i].name);
    }
    dense_writer w = {.s = &s, .ts = ts};
    rc = hfw_write_safetensors(&o, es, nt, s.n_shards, 5, dense_data, &w);
    hfw_scratch_free(&w.scratch);
done:
    hfw_bpe_free(&bpe);
    free(ts);
    free(es);
    free(b.p);
    if (stats) *stats = (hfgen_stats){o.tensor_bytes, o.file_bytes, o.n_files};
    return rc;
}

int hfgen_write(const char *dir, const hfgen_spec *spec, deepc_err *err) {
    return hfgen_write_ex(dir, spec, NULL, err);
}
