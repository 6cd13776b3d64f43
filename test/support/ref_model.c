/* ref_model.c - the fp32 reference forward pass (see ref_model.h), in the
 * style of llama2.c: one weights struct with the shape of every field, one
 * forward function read top to bottom. libc/libm and hfgen.c only.
 *
 * Sections: weights | config and RoPE | building from a spec | loading a
 * Hugging Face directory | forward pass. */
#include "ref_model.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ======================================================================== */
/* weights                                                                  */
/* ======================================================================== */

/* All matrices in PyTorch layout [out_features, in_features], row-major;
 * qdim = n_heads * head_dim, kvdim = n_kv_heads * head_dim. */
typedef struct {
    float *embed;      /* (vocab, dim)                          model.embed_tokens.weight */
    float *attn_norm;  /* (layer, dim)                          input_layernorm.weight */
    float *wq;         /* (layer, qdim, dim)                    self_attn.q_proj.weight */
    float *bq;         /* (layer, qdim)       qwen2 only        self_attn.q_proj.bias */
    float *wk;         /* (layer, kvdim, dim)                   self_attn.k_proj.weight */
    float *bk;         /* (layer, kvdim)      qwen2 only        self_attn.k_proj.bias */
    float *wv;         /* (layer, kvdim, dim)                   self_attn.v_proj.weight */
    float *bv;         /* (layer, kvdim)      qwen2 only        self_attn.v_proj.bias */
    float *wo;         /* (layer, dim, qdim)                    self_attn.o_proj.weight */
    float *ffn_norm;   /* (layer, dim)                          post_attention_layernorm.weight */
    float *w_gate;     /* (layer, ffn, dim)                     mlp.gate_proj.weight */
    float *w_up;       /* (layer, ffn, dim)                     mlp.up_proj.weight */
    float *w_down;     /* (layer, dim, ffn)                     mlp.down_proj.weight */
    float *out_norm;   /* (dim)                                 model.norm.weight */
    float *lm_head;    /* (vocab, dim)  == embed when tied      lm_head.weight */
} ref_weights;

struct ref_model {
    ref_config c;
    ref_weights w;
};

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

void ref_model_free(ref_model *m) {
    if (!m) return;
    ref_weights *w = &m->w;
    if (w->lm_head != w->embed) free(w->lm_head);
    free(w->embed);
    free(w->attn_norm);
    free(w->wq);
    free(w->bq);
    free(w->wk);
    free(w->bk);
    free(w->wv);
    free(w->bv);
    free(w->wo);
    free(w->ffn_norm);
    free(w->w_gate);
    free(w->w_up);
    free(w->w_down);
    free(w->out_norm);
    free(m);
}

const ref_config *ref_model_config(const ref_model *m) { return m ? &m->c : NULL; }

static float *alloc_f(size_t n) { return n ? malloc(n * sizeof(float)) : NULL; }

/* Allocates every weight array for config c. Returns NULL on out of memory. */
static ref_model *model_alloc(const ref_config *c) {
    ref_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->c = *c;
    const size_t L = (size_t)c->n_layers, d = (size_t)c->dim, f = (size_t)c->ffn;
    const size_t qd = (size_t)c->n_heads * (size_t)c->head_dim, kvd = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    ref_weights *w = &m->w;
    w->embed = alloc_f((size_t)c->vocab * d);
    w->attn_norm = alloc_f(L * d);
    w->wq = alloc_f(L * qd * d);
    w->wk = alloc_f(L * kvd * d);
    w->wv = alloc_f(L * kvd * d);
    w->wo = alloc_f(L * d * qd);
    w->ffn_norm = alloc_f(L * d);
    w->w_gate = alloc_f(L * f * d);
    w->w_up = alloc_f(L * f * d);
    w->w_down = alloc_f(L * d * f);
    w->out_norm = alloc_f(d);
    bool ok = w->embed && w->attn_norm && w->wq && w->wk && w->wv && w->wo && w->ffn_norm &&
              w->w_gate && w->w_up && w->w_down && w->out_norm;
    if (c->attn_bias) {
        w->bq = alloc_f(L * qd);
        w->bk = alloc_f(L * kvd);
        w->bv = alloc_f(L * kvd);
        ok = ok && w->bq && w->bk && w->bv;
    }
    if (c->tie_embeddings) {
        w->lm_head = w->embed;
    } else {
        w->lm_head = alloc_f((size_t)c->vocab * d);
        ok = ok && w->lm_head;
    }
    if (!ok) {
        ref_model_free(m);
        return NULL;
    }
    return m;
}

/* Where the Hugging Face tensor `name` lives in m, and how many elements it
 * has; NULL when the name is not a weight of this config. */
static float *weight_slot(ref_model *m, const char *name, size_t *n_out) {
    const ref_config *c = &m->c;
    ref_weights *w = &m->w;
    const size_t d = (size_t)c->dim, f = (size_t)c->ffn;
    const size_t qd = (size_t)c->n_heads * (size_t)c->head_dim, kvd = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    if (strcmp(name, "model.embed_tokens.weight") == 0) { *n_out = (size_t)c->vocab * d; return w->embed; }
    if (strcmp(name, "model.norm.weight") == 0) { *n_out = d; return w->out_norm; }
    if (strcmp(name, "lm_head.weight") == 0) {
        if (c->tie_embeddings) return NULL;
        *n_out = (size_t)c->vocab * d;
        return w->lm_head;
    }
    int l, pos = 0;
    if (sscanf(name, "model.layers.%d.%n", &l, &pos) != 1 || pos == 0 || l < 0 || l >= c->n_layers) return NULL;
    const char *s = name + pos;
    const size_t L = (size_t)l;
    struct { const char *suffix; float *base; size_t n; } tab[] = {
        {"input_layernorm.weight", w->attn_norm, d},
        {"self_attn.q_proj.weight", w->wq, qd * d},
        {"self_attn.q_proj.bias", w->bq, qd},
        {"self_attn.k_proj.weight", w->wk, kvd * d},
        {"self_attn.k_proj.bias", w->bk, kvd},
        {"self_attn.v_proj.weight", w->wv, kvd * d},
        {"self_attn.v_proj.bias", w->bv, kvd},
        {"self_attn.o_proj.weight", w->wo, d * qd},
        {"post_attention_layernorm.weight", w->ffn_norm, d},
        {"mlp.gate_proj.weight", w->w_gate, f * d},
        {"mlp.up_proj.weight", w->w_up, f * d},
        {"mlp.down_proj.weight", w->w_down, d * f},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        if (strcmp(s, tab[i].suffix) == 0) {
            if (!tab[i].base) return NULL;  /* a bias without attn_bias */
            *n_out = tab[i].n;
            return tab[i].base + L * tab[i].n;
        }
    }
    return NULL;
}

/* ======================================================================== */
/* config and RoPE                                                          */
/* ======================================================================== */

ref_config ref_config_from_spec(const hfgen_spec *s) {
    ref_config c;
    memset(&c, 0, sizeof c);
    c.vocab = s->vocab;
    c.dim = s->dim;
    c.n_layers = s->n_layers;
    c.n_heads = s->n_heads;
    c.n_kv_heads = s->n_kv_heads;
    c.head_dim = s->n_heads > 0 ? s->dim / s->n_heads : 0;
    c.ffn = s->ffn;
    c.norm_eps = s->norm_eps > 0 ? s->norm_eps : 1e-6f;
    c.rope_theta = s->rope_theta > 0 ? s->rope_theta : 10000.0;
    c.attn_bias = s->attn_bias;
    c.tie_embeddings = s->tie_embeddings;
    c.rope_llama3 = s->llama3_rope_scaling;
    if (c.rope_llama3) {
        /* the same defaults hfgen_write fills in */
        c.rope_factor = s->rope_factor > 0 ? s->rope_factor : 8.0;
        c.rope_low_freq_factor = s->rope_low_freq_factor > 0 ? s->rope_low_freq_factor : 1.0;
        c.rope_high_freq_factor = s->rope_high_freq_factor > 0 ? s->rope_high_freq_factor : 4.0;
        int max_pos = s->max_pos > 0 ? s->max_pos : 4096;
        c.rope_orig_max_pos = s->rope_orig_max_pos > 0 ? s->rope_orig_max_pos : (int)(max_pos / c.rope_factor);
        if (c.rope_orig_max_pos < 1) c.rope_orig_max_pos = 1;
    }
    return c;
}

void ref_rope_inv_freq(const ref_config *c, double *inv_freq) {
    const int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        double f = 1.0 / pow(c->rope_theta, (2.0 * i) / c->head_dim);
        if (c->rope_llama3) {
            /* transformers _compute_llama3_parameters: wavelengths shorter than
             * old_context/high_freq_factor are kept, longer than
             * old_context/low_freq_factor are divided by factor, and the band
             * between is interpolated with
             * smooth = (old_context/wavelen - low) / (high - low). */
            const double factor = c->rope_factor, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
            const double old_ctx = c->rope_orig_max_pos;
            const double low_freq_wavelen = old_ctx / lo, high_freq_wavelen = old_ctx / hi;
            const double wavelen = 2.0 * M_PI / f;
            if (wavelen > low_freq_wavelen) {
                f = f / factor;
            } else if (wavelen >= high_freq_wavelen) {
                double smooth = (old_ctx / wavelen - lo) / (hi - lo);
                f = (1.0 - smooth) * f / factor + smooth * f;
            }
        }
        inv_freq[i] = f;
    }
}

void ref_rope_apply(const ref_config *c, float *x, int pos) {
    const int half = c->head_dim / 2;
    double inv_freq[512];
    if (half > 512) return;
    ref_rope_inv_freq(c, inv_freq);
    for (int i = 0; i < half; i++) {
        /* rotate_half: out = x * cos + cat(-x2, x1) * sin */
        double a = pos * inv_freq[i];
        double cs = cos(a), sn = sin(a);
        double x1 = x[i], x2 = x[i + half];
        x[i] = (float)(x1 * cs - x2 * sn);
        x[i + half] = (float)(x2 * cs + x1 * sn);
    }
}

static int config_check(const ref_config *c, deepc_err *err) {
    if (c->vocab <= 0 || c->dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 || c->ffn <= 0)
        return fail(err, "ref_model: sizes must be positive");
    if (c->head_dim <= 0 || c->head_dim % 2 != 0 || c->head_dim / 2 > 512)
        return fail(err, "ref_model: bad head_dim %d", c->head_dim);
    if (c->n_heads % c->n_kv_heads != 0)
        return fail(err, "ref_model: n_kv_heads %d does not divide n_heads %d", c->n_kv_heads, c->n_heads);
    return 0;
}

/* ======================================================================== */
/* building from a spec                                                     */
/* ======================================================================== */

ref_model *ref_model_from_spec(const hfgen_spec *spec) {
    if (!spec || hfgen_validate(spec, NULL) != 0) return NULL;
    ref_config c = ref_config_from_spec(spec);
    if (config_check(&c, NULL) != 0) return NULL;
    ref_model *m = model_alloc(&c);
    if (!m) return NULL;
    const int nt = hfgen_tensor_count(spec);
    for (int i = 0; i < nt; i++) {
        hfgen_tensor t;
        size_t n = 0;
        if (hfgen_tensor_at(spec, i, &t) != 0) goto fail;
        float *dst = weight_slot(m, t.name, &n);
        if (!dst || n != t.n_elems) goto fail;
        hfgen_fill_stored(spec, &t, 0, dst, n);
    }
    return m;
fail:
    ref_model_free(m);
    return NULL;
}

/* ======================================================================== */
/* loading a Hugging Face directory                                         */
/* ======================================================================== */

static char *join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

/* Reads a whole (small) file; NULL if missing. Owned by the caller. */
static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) != NULL) {
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        } else {
            buf[n] = 0;
            if (len) *len = (size_t)n;
        }
    }
    fclose(f);
    return buf;
}

/* Minimal JSON lookups, enough for config.json / index.json / safetensors
 * headers: finds "key" followed by ':' and returns the value text. Keys are
 * matched with their quotes, so "max_position_embeddings" does not match
 * "original_max_position_embeddings". */
static const char *json_value(const char *json, const char *end, const char *key) {
    size_t kl = strlen(key);
    for (const char *p = json; p && p + kl + 2 <= end; p++) {
        p = memchr(p, '"', (size_t)(end - p));
        if (!p || p + kl + 2 > end) return NULL;
        if (memcmp(p + 1, key, kl) == 0 && p[kl + 1] == '"') {
            const char *q = p + kl + 2;
            while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')) q++;
            if (q < end && *q == ':') {
                q++;
                while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')) q++;
                return q;
            }
        }
    }
    return NULL;
}

static bool json_num(const char *json, const char *key, double *out) {
    const char *v = json_value(json, json + strlen(json), key);
    if (!v) return false;
    char *e;
    double d = strtod(v, &e);
    if (e == v) return false;
    *out = d;
    return true;
}

static bool json_bool(const char *json, const char *key, bool dflt) {
    const char *v = json_value(json, json + strlen(json), key);
    if (!v) return dflt;
    if (strncmp(v, "true", 4) == 0) return true;
    if (strncmp(v, "false", 5) == 0) return false;
    return dflt;
}

/* Copies the JSON string value of key (unescaped only trivially) into out. */
static bool json_str(const char *json, const char *end, const char *key, char *out, size_t cap) {
    const char *v = json_value(json, end, key);
    if (!v || *v != '"') return false;
    v++;
    size_t n = 0;
    while (v < end && *v != '"' && n + 1 < cap) out[n++] = *v++;
    out[n] = 0;
    return v < end && *v == '"';
}

static int parse_config(const char *dir, ref_config *c, deepc_err *err) {
    char *path = join(dir, "config.json");
    char *js = path ? slurp(path, NULL) : NULL;
    free(path);
    if (!js) return fail(err, "ref_model: cannot read %s/config.json", dir);
    memset(c, 0, sizeof *c);
    double v;
    int rc = 0;
#define NUM(key, dst)                                                              \
    do {                                                                           \
        if (!json_num(js, key, &v)) { rc = fail(err, "ref_model: config.json has no %s", key); goto done; } \
        dst = v;                                                                   \
    } while (0)
    NUM("vocab_size", c->vocab);
    NUM("hidden_size", c->dim);
    NUM("num_hidden_layers", c->n_layers);
    NUM("num_attention_heads", c->n_heads);
    NUM("intermediate_size", c->ffn);
    NUM("rms_norm_eps", c->norm_eps);
#undef NUM
    c->n_kv_heads = json_num(js, "num_key_value_heads", &v) ? (int)v : c->n_heads;
    c->rope_theta = json_num(js, "rope_theta", &v) ? v : 10000.0;
    c->head_dim = c->n_heads > 0 ? c->dim / c->n_heads : 0;
    if (json_num(js, "head_dim", &v) && v > 0) c->head_dim = (int)v;  /* newer Llama configs */
    c->tie_embeddings = json_bool(js, "tie_word_embeddings", false);
    {
        char mt[32] = "";
        json_str(js, js + strlen(js), "model_type", mt, sizeof mt);
        if (strcmp(mt, "qwen2") == 0) c->attn_bias = true;  /* Qwen2Attention: bias=True */
        else if (strcmp(mt, "llama") == 0) c->attn_bias = json_bool(js, "attention_bias", false);
        else { rc = fail(err, "ref_model: model_type \"%s\" is not qwen2 or llama", mt); goto done; }
        if (json_bool(js, "use_sliding_window", false)) {
            rc = fail(err, "ref_model: use_sliding_window is not supported");
            goto done;
        }
    }
    {
        const char *rs = json_value(js, js + strlen(js), "rope_scaling");
        if (rs && *rs == '{') {
            const char *re = strchr(rs, '}');
            char type[32] = "";
            if (!re || (!json_str(rs, re, "rope_type", type, sizeof type) && !json_str(rs, re, "type", type, sizeof type))) {
                rc = fail(err, "ref_model: unreadable rope_scaling");
                goto done;
            }
            if (strcmp(type, "llama3") != 0) {
                rc = fail(err, "ref_model: rope_scaling type \"%s\" is not supported", type);
                goto done;
            }
            char num[64];
            const char *keys[4] = {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"};
            double vals[4];
            for (int i = 0; i < 4; i++) {
                const char *p = json_value(rs, re, keys[i]);
                size_t k = 0;
                while (p && p + k < re && k + 1 < sizeof num && p[k] != ',' && p[k] != '}') { num[k] = p[k]; k++; }
                num[k] = 0;
                if (!p || k == 0) { rc = fail(err, "ref_model: rope_scaling has no %s", keys[i]); goto done; }
                vals[i] = strtod(num, NULL);
            }
            c->rope_llama3 = true;
            c->rope_factor = vals[0];
            c->rope_low_freq_factor = vals[1];
            c->rope_high_freq_factor = vals[2];
            c->rope_orig_max_pos = (int)vals[3];
        }
    }
    rc = config_check(c, err);
done:
    free(js);
    return rc;
}

/* One open safetensors file with its header text. */
typedef struct {
    char name[256];
    FILE *f;
    char *header;       /* NUL-terminated JSON */
    uint64_t data_start;
    uint64_t file_size;
} st_file;

static int st_open(st_file *sf, const char *dir, const char *name, deepc_err *err) {
    memset(sf, 0, sizeof *sf);
    snprintf(sf->name, sizeof sf->name, "%s", name);
    char *path = join(dir, name);
    sf->f = path ? fopen(path, "rb") : NULL;
    free(path);
    if (!sf->f) return fail(err, "ref_model: cannot open %s/%s", dir, name);
    uint8_t b[8];
    if (fseeko(sf->f, 0, SEEK_END) != 0) return fail(err, "ref_model: cannot seek %s", name);
    sf->file_size = (uint64_t)ftello(sf->f);
    if (fseeko(sf->f, 0, SEEK_SET) != 0 || fread(b, 1, 8, sf->f) != 8) return fail(err, "ref_model: %s: truncated", name);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)b[i] << (8 * i);
    if (hl > sf->file_size - 8 || hl > (uint64_t)1 << 30) return fail(err, "ref_model: %s: bad header length", name);
    sf->header = malloc((size_t)hl + 1);
    if (!sf->header) return fail(err, "ref_model: out of memory");
    if (fread(sf->header, 1, (size_t)hl, sf->f) != (size_t)hl) return fail(err, "ref_model: %s: truncated header", name);
    sf->header[hl] = 0;
    sf->data_start = 8 + hl;
    return 0;
}

static void st_close(st_file *sf) {
    if (sf->f) fclose(sf->f);
    free(sf->header);
    memset(sf, 0, sizeof *sf);
}

/* Reads tensor `name` from sf into dst (n fp32 values), converting from
 * F32/F16/BF16. */
static int st_read(st_file *sf, const char *name, float *dst, size_t n, deepc_err *err) {
    const char *end = sf->header + strlen(sf->header);
    const char *obj = json_value(sf->header, end, name);
    if (!obj || *obj != '{') return fail(err, "ref_model: %s: no tensor %s", sf->name, name);
    const char *oe = strchr(obj, '}');
    if (!oe) return fail(err, "ref_model: %s: bad header", sf->name);
    char dtype[16];
    if (!json_str(obj, oe, "dtype", dtype, sizeof dtype)) return fail(err, "ref_model: %s: %s has no dtype", sf->name, name);
    size_t esz = strcmp(dtype, "F32") == 0 ? 4 : (strcmp(dtype, "F16") == 0 || strcmp(dtype, "BF16") == 0) ? 2 : 0;
    if (!esz) return fail(err, "ref_model: %s: dtype %s not supported", name, dtype);
    const char *sh = json_value(obj, oe, "shape");
    const char *of = json_value(obj, oe, "data_offsets");
    if (!sh || *sh != '[' || !of || *of != '[') return fail(err, "ref_model: %s: bad entry", name);
    uint64_t elems = 1;
    for (const char *p = sh + 1; *p && *p != ']';) {
        char *e;
        unsigned long long d = strtoull(p, &e, 10);
        if (e == p) break;
        elems *= d;
        p = e;
        while (*p == ',' || *p == ' ') p++;
    }
    char *e;
    unsigned long long b0 = strtoull(of + 1, &e, 10);
    while (*e == ',' || *e == ' ') e++;
    unsigned long long b1 = strtoull(e, NULL, 10);
    if (elems != n) return fail(err, "ref_model: %s has %llu elements, expected %zu", name, (unsigned long long)elems, n);
    if (b1 < b0 || b1 - b0 != (uint64_t)n * esz || sf->data_start + b1 > sf->file_size)
        return fail(err, "ref_model: %s: bad data_offsets", name);
    if (fseeko(sf->f, (off_t)(sf->data_start + b0), SEEK_SET) != 0)
        return fail(err, "ref_model: %s: seek failed", name);
    uint8_t buf[1 << 16];
    size_t done = 0;
    while (done < n) {
        size_t m = sizeof buf / esz;
        if (m > n - done) m = n - done;
        if (fread(buf, esz, m, sf->f) != m) return fail(err, "ref_model: %s: short read", name);
        for (size_t k = 0; k < m; k++) {
            if (esz == 4) {
                uint32_t u = (uint32_t)buf[4 * k] | (uint32_t)buf[4 * k + 1] << 8 | (uint32_t)buf[4 * k + 2] << 16 |
                             (uint32_t)buf[4 * k + 3] << 24;
                memcpy(&dst[done + k], &u, 4);
            } else {
                uint16_t h = (uint16_t)(buf[2 * k] | buf[2 * k + 1] << 8);
                dst[done + k] = dtype[0] == 'B' ? hfgen_bf16_to_f32(h) : hfgen_f16_to_f32(h);
            }
        }
        done += m;
    }
    return 0;
}

/* Every tensor name the config needs, in model order, through cb. */
static int for_each_name(const ref_config *c, int (*cb)(void *, const char *), void *ctx) {
    static const char *const layer_names[12] = {
        "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.q_proj.bias",
        "self_attn.k_proj.weight", "self_attn.k_proj.bias", "self_attn.v_proj.weight",
        "self_attn.v_proj.bias", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
        "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
    };
    char name[128];
    if (cb(ctx, "model.embed_tokens.weight") != 0) return -1;
    for (int l = 0; l < c->n_layers; l++) {
        for (int j = 0; j < 12; j++) {
            if (!c->attn_bias && (j == 2 || j == 4 || j == 6)) continue;
            snprintf(name, sizeof name, "model.layers.%d.%s", l, layer_names[j]);
            if (cb(ctx, name) != 0) return -1;
        }
    }
    if (cb(ctx, "model.norm.weight") != 0) return -1;
    if (!c->tie_embeddings && cb(ctx, "lm_head.weight") != 0) return -1;
    return 0;
}

typedef struct {
    ref_model *m;
    const char *dir;
    char *index;        /* model.safetensors.index.json text, or NULL */
    st_file files[64];
    int n_files;
    deepc_err *err;
} load_ctx;

static int load_one(void *vctx, const char *name) {
    load_ctx *lc = vctx;
    char fname[256] = "model.safetensors";
    if (lc->index) {
        const char *wm = json_value(lc->index, lc->index + strlen(lc->index), "weight_map");
        if (!wm || !json_str(wm, lc->index + strlen(lc->index), name, fname, sizeof fname))
            return fail(lc->err, "ref_model: index.json does not list %s", name);
    }
    st_file *sf = NULL;
    for (int i = 0; i < lc->n_files && !sf; i++)
        if (strcmp(lc->files[i].name, fname) == 0) sf = &lc->files[i];
    if (!sf) {
        if (lc->n_files == (int)(sizeof lc->files / sizeof lc->files[0]))
            return fail(lc->err, "ref_model: too many shards");
        sf = &lc->files[lc->n_files++];
        if (st_open(sf, lc->dir, fname, lc->err) != 0) return -1;
    }
    size_t n = 0;
    float *dst = weight_slot(lc->m, name, &n);
    if (!dst) return fail(lc->err, "ref_model: no slot for %s", name);
    return st_read(sf, name, dst, n, lc->err);
}

ref_model *ref_model_load(const char *hf_dir, deepc_err *err) {
    ref_config c;
    if (!hf_dir) {
        fail(err, "ref_model: no directory");
        return NULL;
    }
    if (parse_config(hf_dir, &c, err) != 0) return NULL;
    ref_model *m = model_alloc(&c);
    if (!m) {
        fail(err, "ref_model: out of memory for %d layers x %d", c.n_layers, c.dim);
        return NULL;
    }
    load_ctx lc;
    memset(&lc, 0, sizeof lc);
    lc.m = m;
    lc.dir = hf_dir;
    lc.err = err;
    char *ip = join(hf_dir, "model.safetensors.index.json");
    lc.index = ip ? slurp(ip, NULL) : NULL;
    free(ip);
    int rc = for_each_name(&c, load_one, &lc);
    for (int i = 0; i < lc.n_files; i++) st_close(&lc.files[i]);
    free(lc.index);
    if (rc != 0) {
        ref_model_free(m);
        return NULL;
    }
    return m;
}

/* ======================================================================== */
/* forward pass                                                             */
/* ======================================================================== */

/* out[t, o] = sum_i W[o, i] * in[t, i] (+ bias[o]) for n rows; W is [d_out, d_in]. */
static void matmul(float *out, const float *in, const float *W, const float *bias, int n, int d_in, int d_out) {
    for (int t = 0; t < n; t++) {
        const float *x = in + (size_t)t * (size_t)d_in;
        for (int o = 0; o < d_out; o++) {
            const float *w = W + (size_t)o * (size_t)d_in;
            double acc = 0.0;
            for (int i = 0; i < d_in; i++) acc += (double)w[i] * (double)x[i];
            if (bias) acc += bias[o];
            out[(size_t)t * (size_t)d_out + (size_t)o] = (float)acc;
        }
    }
}

/* out[t] = w * x[t] / sqrt(mean(x[t]^2) + eps) for n rows of dim. */
static void rmsnorm(float *out, const float *x, const float *w, int n, int dim, float eps) {
    for (int t = 0; t < n; t++) {
        const float *xt = x + (size_t)t * (size_t)dim;
        double ss = 0.0;
        for (int i = 0; i < dim; i++) ss += (double)xt[i] * (double)xt[i];
        double scale = 1.0 / sqrt(ss / dim + (double)eps);
        for (int i = 0; i < dim; i++) out[(size_t)t * (size_t)dim + (size_t)i] = (float)(w[i] * (xt[i] * scale));
    }
}

int ref_forward(ref_model *m, const int *tokens, int n, float *logits) {
    if (!m || !tokens || !logits || n < 1) return -1;
    const ref_config *c = &m->c;
    const ref_weights *w = &m->w;
    const int dim = c->dim, hd = c->head_dim, ffn = c->ffn, vocab = c->vocab;
    const int qdim = c->n_heads * hd, kvdim = c->n_kv_heads * hd;
    const int group = c->n_heads / c->n_kv_heads;  /* query heads per kv head */
    for (int t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= vocab) return -1;

    const size_t N = (size_t)n;
    float *x = malloc(N * (size_t)dim * sizeof(float));        /* (n, dim) residual stream */
    float *xb = malloc(N * (size_t)dim * sizeof(float));       /* (n, dim) normed / block output */
    float *q = malloc(N * (size_t)qdim * sizeof(float));       /* (n, qdim) */
    float *k = malloc(N * (size_t)kvdim * sizeof(float));      /* (n, kvdim) */
    float *v = malloc(N * (size_t)kvdim * sizeof(float));      /* (n, kvdim) */
    float *att = malloc(N * (size_t)qdim * sizeof(float));     /* (n, qdim) attention output */
    float *hg = malloc(N * (size_t)ffn * sizeof(float));       /* (n, ffn) gate, then silu(gate)*up */
    float *hu = malloc(N * (size_t)ffn * sizeof(float));       /* (n, ffn) up */
    double *p = malloc(N * sizeof(double));                    /* (n) softmax scores */
    int rc = -1;
    if (!x || !xb || !q || !k || !v || !att || !hg || !hu || !p) goto done;

    for (int t = 0; t < n; t++)
        memcpy(x + (size_t)t * (size_t)dim, w->embed + (size_t)tokens[t] * (size_t)dim, (size_t)dim * sizeof(float));

    for (int l = 0; l < c->n_layers; l++) {
        const size_t L = (size_t)l;
        /* ---- attention ---- */
        rmsnorm(xb, x, w->attn_norm + L * (size_t)dim, n, dim, c->norm_eps);
        matmul(q, xb, w->wq + L * (size_t)qdim * (size_t)dim, c->attn_bias ? w->bq + L * (size_t)qdim : NULL, n, dim, qdim);
        matmul(k, xb, w->wk + L * (size_t)kvdim * (size_t)dim, c->attn_bias ? w->bk + L * (size_t)kvdim : NULL, n, dim, kvdim);
        matmul(v, xb, w->wv + L * (size_t)kvdim * (size_t)dim, c->attn_bias ? w->bv + L * (size_t)kvdim : NULL, n, dim, kvdim);
        for (int t = 0; t < n; t++) {
            for (int h = 0; h < c->n_heads; h++) ref_rope_apply(c, q + (size_t)t * (size_t)qdim + (size_t)h * (size_t)hd, t);
            for (int h = 0; h < c->n_kv_heads; h++) ref_rope_apply(c, k + (size_t)t * (size_t)kvdim + (size_t)h * (size_t)hd, t);
        }
        const double scale = 1.0 / sqrt((double)hd);
        for (int t = 0; t < n; t++) {
            for (int h = 0; h < c->n_heads; h++) {
                const int kvh = h / group;
                const float *qh = q + (size_t)t * (size_t)qdim + (size_t)h * (size_t)hd;
                /* causal: position t attends to 0..t */
                double mx = -INFINITY;
                for (int j = 0; j <= t; j++) {
                    const float *kj = k + (size_t)j * (size_t)kvdim + (size_t)kvh * (size_t)hd;
                    double s = 0.0;
                    for (int i = 0; i < hd; i++) s += (double)qh[i] * (double)kj[i];
                    p[j] = s * scale;
                    if (p[j] > mx) mx = p[j];
                }
                double sum = 0.0;
                for (int j = 0; j <= t; j++) {
                    p[j] = exp(p[j] - mx);
                    sum += p[j];
                }
                float *oh = att + (size_t)t * (size_t)qdim + (size_t)h * (size_t)hd;
                for (int i = 0; i < hd; i++) {
                    double acc = 0.0;
                    for (int j = 0; j <= t; j++) acc += p[j] * (double)v[(size_t)j * (size_t)kvdim + (size_t)kvh * (size_t)hd + (size_t)i];
                    oh[i] = (float)(acc / sum);
                }
            }
        }
        matmul(xb, att, w->wo + L * (size_t)dim * (size_t)qdim, NULL, n, qdim, dim);
        for (size_t i = 0; i < N * (size_t)dim; i++) x[i] += xb[i];

        /* ---- SwiGLU MLP ---- */
        rmsnorm(xb, x, w->ffn_norm + L * (size_t)dim, n, dim, c->norm_eps);
        matmul(hg, xb, w->w_gate + L * (size_t)ffn * (size_t)dim, NULL, n, dim, ffn);
        matmul(hu, xb, w->w_up + L * (size_t)ffn * (size_t)dim, NULL, n, dim, ffn);
        for (size_t i = 0; i < N * (size_t)ffn; i++) {
            double g = hg[i];
            hg[i] = (float)(g / (1.0 + exp(-g)) * (double)hu[i]);
        }
        matmul(xb, hg, w->w_down + L * (size_t)dim * (size_t)ffn, NULL, n, ffn, dim);
        for (size_t i = 0; i < N * (size_t)dim; i++) x[i] += xb[i];
    }

    rmsnorm(xb, x, w->out_norm, n, dim, c->norm_eps);
    matmul(logits, xb, w->lm_head, NULL, n, dim, vocab);
    rc = 0;
done:
    free(x);
    free(xb);
    free(q);
    free(k);
    free(v);
    free(att);
    free(hg);
    free(hu);
    free(p);
    return rc;
}
