/* hfgen.c - synthetic Hugging Face checkpoints in the exact layout of the
 * DeepSeek-R1-Distill releases (see hfgen.h). libc/libm/pthreads only: no
 * engine code.
 *
 * Sections: spec and presets | counter-based PRNG | tensor list | dtype
 * conversion | text buffer | byte-level BPE tokenizer (added tokens,
 * alphabet, corpus, pre-tokenizer, trainer) | JSON files | safetensors
 * writer. */
#include "hfgen.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ======================================================================== */
/* errors                                                                   */
/* ======================================================================== */

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int fail(deepc_err *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ======================================================================== */
/* spec and presets                                                         */
/* ======================================================================== */

static const char *const PRESET_NAMES[] = {
    "tiny-qwen2", "tiny-llama", "small-qwen2", "small-llama", "qwen2-1.5b", "llama-8b", NULL,
};

const char *const *hfgen_preset_names(void) { return PRESET_NAMES; }

int hfgen_preset(const char *name, hfgen_spec *spec) {
    hfgen_spec s;
    memset(&s, 0, sizeof s);
    s.dtype = "BF16";
    s.n_shards = 1;
    s.seed = 1234;
    if (!name) return -1;
    if (strcmp(name, "tiny-qwen2") == 0) {
        /* Qwen2 block in miniature: GQA 4/2, q/k/v biases, tied embeddings
         * (like Qwen2.5-0.5B/1.5B base), head_dim 16. */
        s.arch = "qwen2"; s.vocab = 512; s.dim = 64; s.n_layers = 2; s.n_heads = 4;
        s.n_kv_heads = 2; s.ffn = 160; s.max_pos = 4096; s.rope_theta = 10000.0f;
        s.norm_eps = 1e-6f; s.tie_embeddings = true; s.attn_bias = true;
    } else if (strcmp(name, "tiny-llama") == 0) {
        /* Llama 3 block in miniature: GQA 4/2, untied, llama3 rope scaling with
         * original_max_position_embeddings 256 so that with head_dim 16 and
         * theta 1e4 the 8 frequencies fall in all three regimes: i = 0..2 kept
         * (wavelength < 64), i = 3 smoothed, i = 4..7 divided by 8 (> 256). */
        s.arch = "llama"; s.vocab = 512; s.dim = 64; s.n_layers = 2; s.n_heads = 4;
        s.n_kv_heads = 2; s.ffn = 192; s.max_pos = 2048; s.rope_theta = 10000.0f;
        s.norm_eps = 1e-5f; s.llama3_rope_scaling = true; s.rope_factor = 8.0f;
        s.rope_low_freq_factor = 1.0f; s.rope_high_freq_factor = 4.0f; s.rope_orig_max_pos = 256;
    } else if (strcmp(name, "small-qwen2") == 0) {
        s.arch = "qwen2"; s.vocab = 1472; s.dim = 512; s.n_layers = 4; s.n_heads = 8;
        s.n_kv_heads = 2; s.ffn = 1408; s.max_pos = 4096; s.rope_theta = 10000.0f;
        s.norm_eps = 1e-6f; s.attn_bias = true;
    } else if (strcmp(name, "small-llama") == 0) {
        /* head_dim 64, theta 5e5, original 2048: i <= 10 kept, 11..14
         * smoothed, i >= 15 divided by 8. */
        s.arch = "llama"; s.vocab = 1472; s.dim = 512; s.n_layers = 4; s.n_heads = 8;
        s.n_kv_heads = 2; s.ffn = 1536; s.max_pos = 16384; s.rope_theta = 500000.0f;
        s.norm_eps = 1e-5f; s.llama3_rope_scaling = true; s.rope_factor = 8.0f;
        s.rope_low_freq_factor = 1.0f; s.rope_high_freq_factor = 4.0f; s.rope_orig_max_pos = 2048;
    } else if (strcmp(name, "qwen2-1.5b") == 0) {
        /* deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B config.json */
        s.arch = "qwen2"; s.vocab = 151936; s.dim = 1536; s.n_layers = 28; s.n_heads = 12;
        s.n_kv_heads = 2; s.ffn = 8960; s.max_pos = 131072; s.rope_theta = 10000.0f;
        s.norm_eps = 1e-6f; s.attn_bias = true;
    } else if (strcmp(name, "llama-8b") == 0) {
        /* deepseek-ai/DeepSeek-R1-Distill-Llama-8B config.json */
        s.arch = "llama"; s.vocab = 128256; s.dim = 4096; s.n_layers = 32; s.n_heads = 32;
        s.n_kv_heads = 8; s.ffn = 14336; s.max_pos = 131072; s.rope_theta = 500000.0f;
        s.norm_eps = 1e-5f; s.llama3_rope_scaling = true; s.rope_factor = 8.0f;
        s.rope_low_freq_factor = 1.0f; s.rope_high_freq_factor = 4.0f; s.rope_orig_max_pos = 8192;
    } else {
        return -1;
    }
    *spec = s;
    return 0;
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
    if (!in) return fail(err, "hfgen: no spec");
    hfgen_spec s = spec_norm(in);
    if (!s.arch || (strcmp(s.arch, "qwen2") != 0 && strcmp(s.arch, "llama") != 0))
        return fail(err, "hfgen: arch must be \"qwen2\" or \"llama\" (got %s)", s.arch ? s.arch : "NULL");
    if (hfgen_dtype_size(s.dtype) == 0)
        return fail(err, "hfgen: dtype must be F32, F16 or BF16 (got %s)", s.dtype);
    if (s.dim <= 0 || s.n_layers <= 0 || s.n_heads <= 0 || s.n_kv_heads <= 0 || s.ffn <= 0 || s.vocab <= 0)
        return fail(err, "hfgen: sizes must be positive (dim %d layers %d heads %d kv %d ffn %d vocab %d)",
                    s.dim, s.n_layers, s.n_heads, s.n_kv_heads, s.ffn, s.vocab);
    if (s.dim % s.n_heads != 0) return fail(err, "hfgen: n_heads %d does not divide dim %d", s.n_heads, s.dim);
    if ((s.dim / s.n_heads) % 2 != 0) return fail(err, "hfgen: head_dim %d is odd", s.dim / s.n_heads);
    if (s.n_heads % s.n_kv_heads != 0)
        return fail(err, "hfgen: n_kv_heads %d does not divide n_heads %d", s.n_kv_heads, s.n_heads);
    if (bpe_budget(&s) < 256)
        return fail(err, "hfgen: vocab %d too small: need 256 byte tokens + %d added tokens + padding",
                    s.vocab, n_added_tokens(&s));
    if (s.llama3_rope_scaling && !(s.rope_high_freq_factor > s.rope_low_freq_factor))
        return fail(err, "hfgen: llama3 rope scaling needs high_freq_factor > low_freq_factor");
    if (s.n_shards > hfgen_tensor_count(&s))
        return fail(err, "hfgen: %d shards for %d tensors", s.n_shards, hfgen_tensor_count(&s));
    if (s.n_shards > 99999) return fail(err, "hfgen: too many shards");
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

/* ======================================================================== */
/* growable text buffer                                                     */
/* ======================================================================== */

typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_reserve(sbuf *b, size_t extra) {
    if (b->oom) return;
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) { b->oom = true; return; }
    b->p = p;
    b->cap = cap;
}

static void sb_put(sbuf *b, const char *s, size_t n) {
    sb_reserve(b, n);
    if (b->oom) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void sb_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) { b->oom = true; return; }
    sb_reserve(b, (size_t)n);
    if (b->oom) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Appends s (n bytes of UTF-8) as a JSON string literal with quotes. */
static void sb_json_str(sbuf *b, const char *s, size_t n) {
    sb_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': sb_put(b, "\\\"", 2); break;
        case '\\': sb_put(b, "\\\\", 2); break;
        case '\n': sb_put(b, "\\n", 2); break;
        case '\r': sb_put(b, "\\r", 2); break;
        case '\t': sb_put(b, "\\t", 2); break;
        default:
            if (c < 0x20) sb_printf(b, "\\u%04x", c);
            else sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static void sb_json_cstr(sbuf *b, const char *s) { sb_json_str(b, s, strlen(s)); }

/* ======================================================================== */
/* tokenizer: added tokens, byte-level alphabet, corpus                     */
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

#define N_ELEMS(a) ((int)(sizeof(a) / sizeof((a)[0])))

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

/* GPT-2 byte-level alphabet: printable Latin-1 bytes map to themselves, the
 * other 68 to U+0100.. in byte order. Token id i < 256 is the i-th byte in
 * "printable first" order, as in the Qwen and Llama 3 vocabularies. */
typedef struct {
    uint8_t byte_of_id[256];
    uint8_t id_of_byte[256];
    uint16_t cp_of_byte[256];
} byte_alphabet;

static void alphabet_init(byte_alphabet *a) {
    int k = 0, extra = 0;
    bool printable[256];
    for (int b = 0; b < 256; b++)
        printable[b] = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    for (int b = 0; b < 256; b++)
        if (printable[b]) { a->byte_of_id[k++] = (uint8_t)b; a->cp_of_byte[b] = (uint16_t)b; }
    for (int b = 0; b < 256; b++)
        if (!printable[b]) { a->byte_of_id[k++] = (uint8_t)b; a->cp_of_byte[b] = (uint16_t)(256 + extra++); }
    for (int i = 0; i < 256; i++) a->id_of_byte[a->byte_of_id[i]] = (uint8_t)i;
}

/* Appends the byte-level (JSON-escaped where needed) form of raw bytes. */
static void sb_bytelevel(sbuf *b, const byte_alphabet *a, const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned cp = a->cp_of_byte[s[i]];
        char u[3];
        if (cp == '"') sb_put(b, "\\\"", 2);
        else if (cp == '\\') sb_put(b, "\\\\", 2);
        else if (cp < 0x80) { u[0] = (char)cp; sb_put(b, u, 1); }
        else { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); sb_put(b, u, 2); }
    }
}

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

static bool is_letter(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_nl(int c) { return c == '\r' || c == '\n'; }
static bool is_space(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
static bool is_punct(int c) { return !is_letter(c) && !is_digit(c) && !is_space(c); }

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
    if (is_letter(c) || (!is_digit(c) && !is_nl(c) && i + 1 < n && is_letter(s[i + 1]))) {
        size_t j = i + 1;
        while (j < n && is_letter(s[j])) j++;
        return j - i;
    }
    if (is_digit(c)) {
        size_t j = i;
        while (j < n && is_digit(s[j]) && (int)(j - i) < max_digits) j++;
        return j - i;
    }
    {
        size_t j = i;
        if (s[j] == ' ') j++;
        if (j < n && is_punct(s[j])) {
            while (j < n && is_punct(s[j])) j++;
            while (j < n && is_nl(s[j])) j++;
            return j - i;
        }
    }
    size_t k = i;
    while (k < n && is_space(s[k])) k++;
    size_t last_nl = n;
    for (size_t m = i; m < k; m++)
        if (is_nl(s[m])) last_nl = m;
    if (last_nl < n) return last_nl + 1 - i;
    if (k == n) return k - i;
    if (k - i >= 2) return k - 1 - i;
    return k > i ? k - i : 1;
}

/* ======================================================================== */
/* BPE trainer                                                              */
/* ======================================================================== */

typedef struct {
    int n_tok;              /* 256 + distinct merge results */
    uint32_t *off;          /* token i = bytes[off[i] .. off[i+1]) */
    uint8_t *bytes;
    int n_merges;
    int *merges;            /* n_merges x (left, right, result) in rank order */
} bpe_t;

static void bpe_free(bpe_t *b) {
    free(b->off);
    free(b->bytes);
    free(b->merges);
    memset(b, 0, sizeof *b);
}

typedef struct {
    int *sym;
    int len;
    int count;
} tword;

typedef struct {
    const char *s;
    size_t n;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    size_t m = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->s, y->s, m);
    if (c) return c;
    return (x->n > y->n) - (x->n < y->n);
}

#define PAIR_SLOTS 65536u  /* open addressing; far more than distinct pairs */

/* Learns merges from CORPUS, most frequent pair first, until the vocab
 * reaches max_tok tokens or every word of the corpus is a single token (about
 * 1400 tokens). Deterministic: ties go to the smallest (left, right) ids. */
static int bpe_train(const hfgen_spec *s, int max_tok, bpe_t *out) {
    byte_alphabet al;
    alphabet_init(&al);
    memset(out, 0, sizeof *out);
    const int max_digits = is_qwen(s) ? 1 : 3;
    size_t n = 0;
    for (size_t i = 0; i < sizeof CORPUS / sizeof CORPUS[0]; i++) n += strlen(CORPUS[i]);
    span *sp = NULL;
    tword *w = NULL;
    uint32_t *hkey = NULL;
    int64_t *hcnt = NULL;
    int n_sp = 0, n_w = 0, rc = -1;
    size_t cap_bytes;

    sp = malloc(n * sizeof *sp);
    if (!sp) goto done;
    /* Paragraphs end in '\n' and no regex match crosses a paragraph end, so
     * splitting them one by one is the same as splitting the whole text. */
    for (size_t pi = 0; pi < sizeof CORPUS / sizeof CORPUS[0]; pi++) {
        const char *text = CORPUS[pi];
        const size_t len = strlen(text);
        for (size_t i = 0; i < len;) {
            size_t m = pretok_match(text, i, len, max_digits);
            sp[n_sp].s = text + i;
            sp[n_sp].n = m;
            n_sp++;
            i += m;
        }
    }
    qsort(sp, (size_t)n_sp, sizeof *sp, span_cmp);
    w = calloc((size_t)n_sp, sizeof *w);
    if (!w) goto done;
    for (int i = 0; i < n_sp;) {
        int j = i;
        while (j < n_sp && span_cmp(&sp[i], &sp[j]) == 0) j++;
        w[n_w].len = (int)sp[i].n;
        w[n_w].count = j - i;
        w[n_w].sym = malloc(sp[i].n * sizeof(int));
        if (!w[n_w].sym) goto done;
        for (size_t k = 0; k < sp[i].n; k++) w[n_w].sym[k] = al.id_of_byte[(uint8_t)sp[i].s[k]];
        n_w++;
        i = j;
    }

    if (max_tok > 65535) max_tok = 65535;  /* pair keys pack two 16-bit ids */
    cap_bytes = 256 + n * 8;
    out->off = malloc((size_t)(max_tok + 1) * sizeof *out->off);
    out->bytes = malloc(cap_bytes);
    out->merges = malloc((size_t)3 * (size_t)(max_tok > 256 ? max_tok : 1) * 8 * sizeof(int));
    hkey = malloc(PAIR_SLOTS * sizeof *hkey);
    hcnt = malloc(PAIR_SLOTS * sizeof *hcnt);
    if (!out->off || !out->bytes || !out->merges || !hkey || !hcnt) goto done;
    for (int i = 0; i < 256; i++) {
        out->off[i] = (uint32_t)i;
        out->bytes[i] = al.byte_of_id[i];
    }
    out->off[256] = 256;
    out->n_tok = 256;
    int max_merges = (max_tok > 256 ? max_tok : 256) * 8;

    while (out->n_tok < max_tok && out->n_merges < max_merges) {
        memset(hkey, 0xff, PAIR_SLOTS * sizeof *hkey);
        uint32_t best = UINT32_MAX;
        int64_t best_cnt = 0;
        for (int i = 0; i < n_w; i++) {
            for (int k = 0; k + 1 < w[i].len; k++) {
                uint32_t key = (uint32_t)w[i].sym[k] << 16 | (uint32_t)w[i].sym[k + 1];
                uint32_t h = (uint32_t)(mix64(key) & (PAIR_SLOTS - 1));
                while (hkey[h] != UINT32_MAX && hkey[h] != key) h = (h + 1) & (PAIR_SLOTS - 1);
                if (hkey[h] == UINT32_MAX) { hkey[h] = key; hcnt[h] = 0; }
                hcnt[h] += w[i].count;
                if (hcnt[h] > best_cnt || (hcnt[h] == best_cnt && key < best)) {
                    best_cnt = hcnt[h];
                    best = key;
                }
            }
        }
        if (best_cnt < 1) break;  /* every word is one token */
        int a = (int)(best >> 16), b = (int)(best & 0xffff);
        uint32_t la = out->off[a + 1] - out->off[a], lb = out->off[b + 1] - out->off[b];
        /* The merged string may already exist (reached by another pair). */
        int res = -1;
        for (int t = 256; t < out->n_tok && res < 0; t++) {
            if (out->off[t + 1] - out->off[t] == la + lb &&
                memcmp(out->bytes + out->off[t], out->bytes + out->off[a], la) == 0 &&
                memcmp(out->bytes + out->off[t] + la, out->bytes + out->off[b], lb) == 0)
                res = t;
        }
        if (res < 0) {
            uint32_t o = out->off[out->n_tok];
            if (o + la + lb > cap_bytes) break;
            memmove(out->bytes + o, out->bytes + out->off[a], la);
            memmove(out->bytes + o + la, out->bytes + out->off[b], lb);
            res = out->n_tok++;
            out->off[out->n_tok] = o + la + lb;
        }
        int *m = out->merges + 3 * out->n_merges++;
        m[0] = a; m[1] = b; m[2] = res;
        for (int i = 0; i < n_w; i++) {
            int r = 0;
            for (int k = 0; k < w[i].len; k++) {
                if (k + 1 < w[i].len && w[i].sym[k] == a && w[i].sym[k + 1] == b) {
                    w[i].sym[r++] = res;
                    k++;
                } else {
                    w[i].sym[r++] = w[i].sym[k];
                }
            }
            w[i].len = r;
        }
    }
    rc = 0;
done:
    if (w)
        for (int i = 0; i < n_w; i++) free(w[i].sym);
    free(w);
    free(sp);
    free(hkey);
    free(hcnt);
    if (rc != 0) bpe_free(out);
    return rc;
}

static int tokenizer_bpe_size(const hfgen_spec *in) {
    hfgen_spec s = spec_norm(in);
    bpe_t b;
    if (bpe_train(&s, bpe_budget(&s), &b) != 0) return -1;
    int n = b.n_tok;
    bpe_free(&b);
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

/* The DeepSeek-R1 chat template as shipped in the R1-Distill
 * tokenizer_config.json (generation prompt "<｜Assistant｜><think>\n"). */
static const char R1_CHAT_TEMPLATE[] =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% end"
    "if %}{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_pro"
    "mpt='') %}{%- for message in messages %}{%- if message['role'] == 'system' %}{% set ns.sys"
    "tem_prompt = message['content'] %}{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt"
    "}}{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = fa"
    "lse -%}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'] == 'assistant"
    "' and message['content'] is none %}{%- set ns.is_tool = false -%}{%- for tool in message['"
    "tool_calls']%}{%- if not ns.is_first %}{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁beg"
    "in｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n"
    "' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}{%- set ns.is_fir"
    "st = true -%}{%- else %}{{'\\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + "
    "tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n"
    "' + '```' + '<｜tool▁call▁end｜>'}}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%"
    "- endfor %}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is not"
    " none %}{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sent"
    "ence｜>'}}{%- set ns.is_tool = false -%}{%- else %}{% set content = message['content'] %}{%"
    " if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}{{"
    "'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}{%- if message["
    "'role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}{{'<｜tool▁out"
    "puts▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- set n"
    "s.is_output_first = false %}{%- else %}{{'\\n<｜tool▁output▁begin｜>' + message['content'] +"
    " '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool"
    "▁outputs▁end｜>'}}{% endif %}{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistan"
    "t｜><think>\\n'}}{% endif %}";

static const char *torch_dtype_name(const char *dtype) {
    if (strcmp(dtype, "F32") == 0) return "float32";
    if (strcmp(dtype, "F16") == 0) return "float16";
    return "bfloat16";
}

/* Shortest "%g" form that reads back as the same float, JSON-valid. */
static void sb_float(sbuf *b, double v) {
    char tmp[64];
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if ((float)strtod(tmp, NULL) == (float)v) break;
    }
    /* JSON numbers need a digit after '.', and HF writes 10000.0 not 10000
     * for floats; keep integers written as floats with ".0". */
    if (!strchr(tmp, '.') && !strchr(tmp, 'e') && !strchr(tmp, 'n') && !strchr(tmp, 'i'))
        strcat(tmp, ".0");
    sb_puts(b, tmp);
}

static void rope_scaling_json(sbuf *b, const hfgen_spec *s) {
    sb_puts(b, "{\n    \"factor\": ");
    sb_float(b, s->rope_factor);
    sb_puts(b, ",\n    \"high_freq_factor\": ");
    sb_float(b, s->rope_high_freq_factor);
    sb_puts(b, ",\n    \"low_freq_factor\": ");
    sb_float(b, s->rope_low_freq_factor);
    sb_printf(b, ",\n    \"original_max_position_embeddings\": %d,\n    \"rope_type\": \"llama3\"\n  }",
              s->rope_orig_max_pos);
}

/* config.json with the keys (and key order) of the real R1-Distill files. */
static void config_json(sbuf *b, const hfgen_spec *s, int bos, int eos) {
    if (is_qwen(s)) {
        /* R1-Distill-Qwen: bos_token_id and eos_token_id are both the
         * <｜end▁of▁sentence｜> id (151643) in the real config. */
        sb_printf(b,
                  "{\n  \"architectures\": [\n    \"Qwen2ForCausalLM\"\n  ],\n"
                  "  \"attention_dropout\": 0.0,\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n"
                  "  \"hidden_act\": \"silu\",\n  \"hidden_size\": %d,\n  \"initializer_range\": 0.02,\n"
                  "  \"intermediate_size\": %d,\n  \"max_position_embeddings\": %d,\n"
                  "  \"max_window_layers\": %d,\n  \"model_type\": \"qwen2\",\n"
                  "  \"num_attention_heads\": %d,\n  \"num_hidden_layers\": %d,\n"
                  "  \"num_key_value_heads\": %d,\n  \"rms_norm_eps\": ",
                  eos, eos, s->dim, s->ffn, s->max_pos, s->n_layers * 3 / 4, s->n_heads, s->n_layers,
                  s->n_kv_heads);
        sb_float(b, s->norm_eps);
        if (s->llama3_rope_scaling) {
            sb_puts(b, ",\n  \"rope_scaling\": ");
            rope_scaling_json(b, s);
        }
        sb_puts(b, ",\n  \"rope_theta\": ");
        if (s->rope_theta == floorf(s->rope_theta)) sb_printf(b, "%.0f", (double)s->rope_theta);
        else sb_float(b, s->rope_theta);
        sb_printf(b,
                  ",\n  \"sliding_window\": 4096,\n  \"tie_word_embeddings\": %s,\n"
                  "  \"torch_dtype\": \"%s\",\n  \"transformers_version\": \"4.44.0\",\n"
                  "  \"use_cache\": true,\n  \"use_mrope\": false,\n  \"use_sliding_window\": false,\n"
                  "  \"vocab_size\": %d\n}\n",
                  s->tie_embeddings ? "true" : "false", torch_dtype_name(s->dtype), s->vocab);
        return;
    }
    sb_printf(b,
              "{\n  \"architectures\": [\n    \"LlamaForCausalLM\"\n  ],\n"
              "  \"attention_bias\": %s,\n  \"attention_dropout\": 0.0,\n"
              "  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n  \"hidden_act\": \"silu\",\n"
              "  \"hidden_size\": %d,\n  \"initializer_range\": 0.02,\n  \"intermediate_size\": %d,\n"
              "  \"max_position_embeddings\": %d,\n  \"mlp_bias\": false,\n  \"model_type\": \"llama\",\n"
              "  \"num_attention_heads\": %d,\n  \"num_hidden_layers\": %d,\n"
              "  \"num_key_value_heads\": %d,\n  \"pretraining_tp\": 1,\n  \"rms_norm_eps\": ",
              s->attn_bias ? "true" : "false", bos, eos, s->dim, s->ffn, s->max_pos, s->n_heads,
              s->n_layers, s->n_kv_heads);
    sb_float(b, s->norm_eps);
    sb_puts(b, ",\n  \"rope_scaling\": ");
    if (s->llama3_rope_scaling) rope_scaling_json(b, s);
    else sb_puts(b, "null");
    sb_puts(b, ",\n  \"rope_theta\": ");
    sb_float(b, s->rope_theta);
    sb_printf(b,
              ",\n  \"tie_word_embeddings\": %s,\n  \"torch_dtype\": \"%s\",\n"
              "  \"transformers_version\": \"4.43.0.dev0\",\n  \"use_cache\": true,\n"
              "  \"vocab_size\": %d\n}\n",
              s->tie_embeddings ? "true" : "false", torch_dtype_name(s->dtype), s->vocab);
}

static void generation_config_json(sbuf *b, const hfgen_spec *s, int bos, int eos) {
    sb_printf(b,
              "{\n  \"_from_model_config\": true,\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n"
              "  \"do_sample\": true,\n  \"temperature\": 0.6,\n  \"top_p\": 0.95,\n"
              "  \"transformers_version\": \"%s\"\n}\n",
              bos, eos, is_qwen(s) ? "4.39.3" : "4.43.0.dev0");
}

static const char QWEN_PRETOK[] =
    "{\n    \"type\": \"Sequence\",\n    \"pretokenizers\": [\n      {\n        \"type\": \"Split\",\n"
    "        \"pattern\": {\n          \"Regex\": \"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?"
    "\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"\n"
    "        },\n        \"behavior\": \"Isolated\",\n        \"invert\": false\n      },\n"
    "      {\n        \"type\": \"ByteLevel\",\n        \"add_prefix_space\": false,\n"
    "        \"trim_offsets\": false,\n        \"use_regex\": false\n      }\n    ]\n  }";

static const char LLAMA_PRETOK[] =
    "{\n    \"type\": \"Sequence\",\n    \"pretokenizers\": [\n      {\n        \"type\": \"Split\",\n"
    "        \"pattern\": {\n          \"Regex\": \"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?"
    "\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"\n"
    "        },\n        \"behavior\": \"Isolated\",\n        \"invert\": false\n      },\n"
    "      {\n        \"type\": \"ByteLevel\",\n        \"add_prefix_space\": false,\n"
    "        \"trim_offsets\": true,\n        \"use_regex\": false\n      }\n    ]\n  }";

/* TemplateProcessing that prepends <｜begin▁of▁sentence｜>, as written by
 * LlamaTokenizerFast with add_bos_token (both R1-Distill tokenizers). */
static void bos_template_json(sbuf *b, int bos, const char *indent) {
    static const char BOS[] = "<｜begin▁of▁sentence｜>";
    sb_printf(b,
              "{\n%s  \"type\": \"TemplateProcessing\",\n"
              "%s  \"single\": [\n%s    {\n%s      \"SpecialToken\": {\n%s        \"id\": \"%s\",\n"
              "%s        \"type_id\": 0\n%s      }\n%s    },\n%s    {\n%s      \"Sequence\": {\n"
              "%s        \"id\": \"A\",\n%s        \"type_id\": 0\n%s      }\n%s    }\n%s  ],\n",
              indent, indent, indent, indent, indent, BOS, indent, indent, indent, indent, indent,
              indent, indent, indent, indent, indent);
    sb_printf(b,
              "%s  \"pair\": [\n"
              "%s    {\n%s      \"SpecialToken\": {\n%s        \"id\": \"%s\",\n%s        \"type_id\": 0\n%s      }\n%s    },\n"
              "%s    {\n%s      \"Sequence\": {\n%s        \"id\": \"A\",\n%s        \"type_id\": 0\n%s      }\n%s    },\n"
              "%s    {\n%s      \"SpecialToken\": {\n%s        \"id\": \"%s\",\n%s        \"type_id\": 1\n%s      }\n%s    },\n"
              "%s    {\n%s      \"Sequence\": {\n%s        \"id\": \"B\",\n%s        \"type_id\": 1\n%s      }\n%s    }\n"
              "%s  ],\n",
              indent, indent, indent, indent, BOS, indent, indent, indent, indent, indent, indent,
              indent, indent, indent, indent, indent, indent, BOS, indent, indent, indent, indent,
              indent, indent, indent, indent, indent, indent);
    sb_printf(b,
              "%s  \"special_tokens\": {\n%s    \"%s\": {\n%s      \"id\": \"%s\",\n"
              "%s      \"ids\": [\n%s        %d\n%s      ],\n%s      \"tokens\": [\n%s        \"%s\"\n"
              "%s      ]\n%s    }\n%s  }\n%s}",
              indent, indent, BOS, indent, BOS, indent, indent, bos, indent, indent, indent, BOS,
              indent, indent, indent, indent);
}

static void tokenizer_json(sbuf *b, const hfgen_spec *s, const bpe_t *bpe) {
    byte_alphabet al;
    alphabet_init(&al);
    int n_add;
    const added_tok *add = added_list(s, &n_add);
    const bool qwen = is_qwen(s);
    sb_puts(b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [");
    for (int i = 0; i < n_add; i++) {
        sb_printf(b, "%s\n    {\n      \"id\": %d,\n      \"content\": ", i ? "," : "", bpe->n_tok + i);
        sb_json_cstr(b, add[i].content);
        sb_printf(b,
                  ",\n      \"single_word\": false,\n      \"lstrip\": false,\n      \"rstrip\": false,\n"
                  "      \"normalized\": false,\n      \"special\": %s\n    }",
                  add[i].special ? "true" : "false");
    }
    sb_puts(b, "\n  ],\n");
    sb_puts(b, qwen ? "  \"normalizer\": {\n    \"type\": \"NFC\"\n  },\n" : "  \"normalizer\": null,\n");
    sb_puts(b, "  \"pre_tokenizer\": ");
    sb_puts(b, qwen ? QWEN_PRETOK : LLAMA_PRETOK);
    sb_puts(b, ",\n  \"post_processor\": ");
    int bos = bpe->n_tok + (qwen ? QWEN_BOS : LLAMA_BOS);
    if (qwen) {
        bos_template_json(b, bos, "  ");
    } else {
        sb_puts(b,
                "{\n    \"type\": \"Sequence\",\n    \"processors\": [\n      {\n"
                "        \"type\": \"ByteLevel\",\n        \"add_prefix_space\": true,\n"
                "        \"trim_offsets\": false,\n        \"use_regex\": true\n      },\n      ");
        bos_template_json(b, bos, "      ");
        sb_puts(b, "\n    ]\n  }");
    }
    if (qwen)
        sb_puts(b,
                ",\n  \"decoder\": {\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": false,\n"
                "    \"trim_offsets\": false,\n    \"use_regex\": false\n  },\n");
    else
        sb_puts(b,
                ",\n  \"decoder\": {\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": true,\n"
                "    \"trim_offsets\": true,\n    \"use_regex\": true\n  },\n");
    sb_printf(b,
              "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
              "    \"continuing_subword_prefix\": %s,\n    \"end_of_word_suffix\": %s,\n"
              "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": %s,\n"
              "    \"vocab\": {",
              qwen ? "\"\"" : "null", qwen ? "\"\"" : "null", qwen ? "false" : "true");
    for (int i = 0; i < bpe->n_tok; i++) {
        sb_puts(b, i ? ",\n      \"" : "\n      \"");
        sb_bytelevel(b, &al, bpe->bytes + bpe->off[i], bpe->off[i + 1] - bpe->off[i]);
        sb_printf(b, "\": %d", i);
    }
    sb_puts(b, "\n    },\n    \"merges\": [");
    for (int i = 0; i < bpe->n_merges; i++) {
        int l = bpe->merges[3 * i], r = bpe->merges[3 * i + 1];
        sb_puts(b, i ? ",\n      " : "\n      ");
        /* Qwen files (tokenizers >= 0.20) store pairs; Llama 3 files strings. */
        sb_puts(b, qwen ? "[\n        \"" : "\"");
        sb_bytelevel(b, &al, bpe->bytes + bpe->off[l], bpe->off[l + 1] - bpe->off[l]);
        sb_puts(b, qwen ? "\",\n        \"" : " ");
        sb_bytelevel(b, &al, bpe->bytes + bpe->off[r], bpe->off[r + 1] - bpe->off[r]);
        sb_puts(b, qwen ? "\"\n      ]" : "\"");
    }
    sb_puts(b, "\n    ]\n  }\n}");
}

static void added_token_obj(sbuf *b, const char *content) {
    sb_puts(b, "{\n    \"__type\": \"AddedToken\",\n    \"content\": ");
    sb_json_cstr(b, content);
    sb_puts(b,
            ",\n    \"lstrip\": false,\n    \"normalized\": true,\n    \"rstrip\": false,\n"
            "    \"single_word\": false\n  }");
}

static void tokenizer_config_json(sbuf *b, const hfgen_spec *s) {
    sb_puts(b, "{\n  \"add_bos_token\": true,\n  \"add_eos_token\": false,\n  \"bos_token\": ");
    added_token_obj(b, "<｜begin▁of▁sentence｜>");
    sb_puts(b, ",\n  \"clean_up_tokenization_spaces\": false,\n  \"eos_token\": ");
    added_token_obj(b, "<｜end▁of▁sentence｜>");
    sb_puts(b, ",\n  \"legacy\": true,\n  \"model_max_length\": 16384,\n  \"pad_token\": ");
    added_token_obj(b, "<｜end▁of▁sentence｜>");
    sb_puts(b,
            ",\n  \"sp_model_kwargs\": {},\n  \"unk_token\": null,\n"
            "  \"tokenizer_class\": \"LlamaTokenizerFast\",\n  \"chat_template\": ");
    sb_json_cstr(b, R1_CHAT_TEMPLATE);
    sb_puts(b, "\n}\n");
    (void)s;
}

/* ======================================================================== */
/* writing files                                                            */
/* ======================================================================== */

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static int write_text(const char *dir, const char *name, const sbuf *b, hfgen_stats *st, deepc_err *err) {
    if (b->oom) return fail(err, "hfgen: out of memory building %s", name);
    char *path = path_join(dir, name);
    if (!path) return fail(err, "hfgen: out of memory");
    FILE *f = fopen(path, "wb");
    if (!f) {
        int e = errno;
        free(path);
        return fail(err, "hfgen: cannot create %s/%s: %s", dir, name, strerror(e));
    }
    size_t w = fwrite(b->p, 1, b->len, f);
    int rc = fclose(f);
    free(path);
    if (w != b->len || rc != 0) return fail(err, "hfgen: write failed for %s/%s", dir, name);
    st->file_bytes += b->len;
    st->n_files++;
    return 0;
}

static void remove_file(const char *dir, const char *name) {
    char *path = path_join(dir, name);
    if (path) {
        remove(path);
        free(path);
    }
}

typedef struct {
    hfgen_tensor t;
    int shard;
    uint64_t nbytes;
} wtensor;

static int wt_name_cmp(const void *a, const void *b) {
    return strcmp(((const wtensor *)a)->t.name, ((const wtensor *)b)->t.name);
}

static void shard_name(char *out, size_t cap, int k, int n) {
    if (n == 1) snprintf(out, cap, "model.safetensors");
    else snprintf(out, cap, "model-%05d-of-%05d.safetensors", k + 1, n);
}

#define CHUNK_ELEMS ((size_t)1 << 20)
#define MAX_THREADS 16

/* One slice of a chunk: generate n values from element `first` of t and
 * encode them little-endian in the spec's dtype. */
typedef struct {
    const hfgen_spec *s;
    const hfgen_tensor *t;
    uint64_t first;
    float *f;
    uint8_t *o;
    size_t n;
} fill_job;

static void *fill_encode(void *arg) {
    const fill_job *j = arg;
    hfgen_fill(j->s, j->t, j->first, j->f, j->n);
    if (strcmp(j->s->dtype, "F32") == 0) {
        for (size_t k = 0; k < j->n; k++) {
            uint32_t u = f2u(j->f[k]);
            for (int q = 0; q < 4; q++) j->o[4 * k + (size_t)q] = (uint8_t)(u >> (8 * q));
        }
    } else {
        bool bf = strcmp(j->s->dtype, "BF16") == 0;
        for (size_t k = 0; k < j->n; k++) {
            uint16_t v = bf ? hfgen_f32_to_bf16(j->f[k]) : hfgen_f32_to_f16(j->f[k]);
            j->o[2 * k] = (uint8_t)v;
            j->o[2 * k + 1] = (uint8_t)(v >> 8);
        }
    }
    return NULL;
}

/* Fills and encodes m elements, split over up to n_threads threads (values
 * do not depend on the split: hfgen_fill is counter-based). */
static void fill_chunk(const hfgen_spec *s, const hfgen_tensor *t, uint64_t first, float *f, uint8_t *o,
                       size_t m, int n_threads) {
    size_t esz = hfgen_dtype_size(s->dtype);
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    if (n_threads < 2 || m < 65536) {
        fill_job j = {s, t, first, f, o, m};
        fill_encode(&j);
        return;
    }
    fill_job jobs[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    bool started[MAX_THREADS];
    size_t per = (m / (size_t)n_threads + 1) & ~(size_t)1;  /* even: keeps pairs together */
    for (int i = 0; i < n_threads; i++) {
        size_t a = (size_t)i * per < m ? (size_t)i * per : m;
        size_t b = a + per < m ? a + per : m;
        jobs[i] = (fill_job){s, t, first + a, f + a, o + a * esz, b - a};
        started[i] = i > 0 && pthread_create(&th[i], NULL, fill_encode, &jobs[i]) == 0;
    }
    for (int i = 0; i < n_threads; i++)
        if (!started[i]) fill_encode(&jobs[i]);  /* slice 0, or a thread that failed to start */
    for (int i = 1; i < n_threads; i++)
        if (started[i]) pthread_join(th[i], NULL);
}

static int cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
}

/* Writes one safetensors file holding tensors ts[0..n) (sorted by name, like
 * the files safetensors writes): u64 LE header length, JSON header padded with
 * spaces to a multiple of 8, then the data in header order. */
static int write_shard(const char *dir, const char *fname, const hfgen_spec *s, wtensor *ts, int n,
                       float *fbuf, uint8_t *obuf, int n_threads, hfgen_stats *st, deepc_err *err) {
    sbuf h = {0};
    uint64_t off = 0;
    size_t esz = hfgen_dtype_size(s->dtype);
    sb_puts(&h, "{");
    for (int i = 0; i < n; i++) {
        const hfgen_tensor *t = &ts[i].t;
        sb_printf(&h, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "", t->name, s->dtype);
        if (t->ndim == 2) sb_printf(&h, "%llu,%llu", (unsigned long long)t->shape[0], (unsigned long long)t->shape[1]);
        else sb_printf(&h, "%llu", (unsigned long long)t->shape[0]);
        sb_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                  (unsigned long long)(off + ts[i].nbytes));
        off += ts[i].nbytes;
    }
    sb_puts(&h, ",\"__metadata__\":{\"format\":\"pt\"}}");
    while (h.len % 8 != 0) sb_puts(&h, " ");
    if (h.oom) {
        free(h.p);
        return fail(err, "hfgen: out of memory");
    }
    char *path = path_join(dir, fname);
    FILE *f = path ? fopen(path, "wb") : NULL;
    if (!f) {
        int e = errno;
        free(path);
        free(h.p);
        return fail(err, "hfgen: cannot create %s/%s: %s", dir, fname, strerror(e));
    }
    free(path);
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    bool ok = fwrite(len8, 1, 8, f) == 8 && fwrite(h.p, 1, h.len, f) == h.len;
    free(h.p);
    for (int i = 0; i < n && ok; i++) {
        const hfgen_tensor *t = &ts[i].t;
        for (uint64_t e0 = 0; e0 < t->n_elems && ok; e0 += CHUNK_ELEMS) {
            size_t m = (size_t)(t->n_elems - e0 < CHUNK_ELEMS ? t->n_elems - e0 : CHUNK_ELEMS);
            fill_chunk(s, t, e0, fbuf, obuf, m, n_threads);
            ok = fwrite(obuf, esz, m, f) == m;
        }
    }
    if (fclose(f) != 0) ok = false;
    if (!ok) return fail(err, "hfgen: write failed for %s/%s", dir, fname);
    st->file_bytes += 8 + h.len + off;
    st->tensor_bytes += off;
    st->n_files++;
    return 0;
}

int hfgen_write_ex(const char *dir, const hfgen_spec *in, hfgen_stats *stats, deepc_err *err) {
    hfgen_stats st = {0};
    bpe_t bpe = {0};
    wtensor *ts = NULL;
    float *fbuf = NULL;
    uint8_t *obuf = NULL;
    sbuf b = {0};
    int rc = -1;

    if (!dir || !in) return fail(err, "hfgen: no directory or spec");
    if (hfgen_validate(in, err) != 0) return -1;
    const hfgen_spec s = spec_norm(in);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return fail(err, "hfgen: cannot create %s: %s", dir, strerror(errno));

    if (bpe_train(&s, bpe_budget(&s), &bpe) != 0) { fail(err, "hfgen: out of memory (tokenizer)"); goto done; }
    const int bos = bpe.n_tok + (is_qwen(&s) ? QWEN_BOS : LLAMA_BOS);
    const int eos = bpe.n_tok + (is_qwen(&s) ? QWEN_EOS : LLAMA_EOS);

    config_json(&b, &s, bos, eos);
    if (write_text(dir, "config.json", &b, &st, err) != 0) goto done;
    b.len = 0;
    generation_config_json(&b, &s, bos, eos);
    if (write_text(dir, "generation_config.json", &b, &st, err) != 0) goto done;
    b.len = 0;
    tokenizer_json(&b, &s, &bpe);
    if (write_text(dir, "tokenizer.json", &b, &st, err) != 0) goto done;
    b.len = 0;
    tokenizer_config_json(&b, &s);
    if (write_text(dir, "tokenizer_config.json", &b, &st, err) != 0) goto done;

    /* Tensors in model order, assigned to shards by cumulative bytes (like
     * save_pretrained's max_shard_size), every shard non-empty. */
    const int nt = hfgen_tensor_count(&s);
    const size_t esz = hfgen_dtype_size(s.dtype);
    ts = calloc((size_t)nt, sizeof *ts);
    fbuf = malloc(CHUNK_ELEMS * sizeof *fbuf);
    obuf = malloc(CHUNK_ELEMS * 4);
    if (!ts || !fbuf || !obuf) { fail(err, "hfgen: out of memory"); goto done; }
    uint64_t total = 0;
    for (int i = 0; i < nt; i++) {
        hfgen_tensor_at(&s, i, &ts[i].t);
        ts[i].nbytes = ts[i].t.n_elems * esz;
        total += ts[i].nbytes;
    }
    {
        const uint64_t target = total / (uint64_t)s.n_shards;
        int shard = 0;
        uint64_t in_shard = 0;
        for (int i = 0; i < nt; i++) {
            int shards_left = s.n_shards - 1 - shard;
            bool must = (nt - i) == shards_left;          /* one tensor per remaining shard */
            bool full = in_shard > 0 && in_shard + ts[i].nbytes / 2 > target;
            if (shards_left > 0 && in_shard > 0 && (must || full)) {
                shard++;
                in_shard = 0;
            }
            ts[i].shard = shard;
            in_shard += ts[i].nbytes;
        }
    }
    /* Group by shard (stable: shard-major), then sort each group by name. */
    {
        int start = 0;
        while (start < nt) {
            int end = start;
            while (end < nt && ts[end].shard == ts[start].shard) end++;
            qsort(ts + start, (size_t)(end - start), sizeof *ts, wt_name_cmp);
            char fname[64];
            shard_name(fname, sizeof fname, ts[start].shard, s.n_shards);
            if (write_shard(dir, fname, &s, ts + start, end - start, fbuf, obuf, cpu_count(), &st, err) != 0)
                goto done;
            start = end;
        }
    }
    if (s.n_shards > 1) {
        /* weight_map sorted by tensor name, as transformers writes it. */
        qsort(ts, (size_t)nt, sizeof *ts, wt_name_cmp);
        b.len = 0;
        sb_printf(&b, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n  \"weight_map\": {",
                  (unsigned long long)total);
        for (int i = 0; i < nt; i++) {
            char fname[64];
            shard_name(fname, sizeof fname, ts[i].shard, s.n_shards);
            sb_printf(&b, "%s\n    \"%s\": \"%s\"", i ? "," : "", ts[i].t.name, fname);
        }
        sb_puts(&b, "\n  }\n}\n");
        if (write_text(dir, "model.safetensors.index.json", &b, &st, err) != 0) goto done;
        remove_file(dir, "model.safetensors");
    } else {
        remove_file(dir, "model.safetensors.index.json");
    }
    rc = 0;
done:
    bpe_free(&bpe);
    free(ts);
    free(fbuf);
    free(obuf);
    free(b.p);
    if (stats) *stats = st;
    return rc;
}

int hfgen_write(const char *dir, const hfgen_spec *spec, deepc_err *err) {
    return hfgen_write_ex(dir, spec, NULL, err);
}
