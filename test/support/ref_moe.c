/* ref_moe.c - the fp32 reference forward pass for DeepSeek-V2 / V3 (see
 * ref_moe.h), in the style of llama2.c: one weights struct with the shape of
 * every field, the forward pass read top to bottom. libc/libm and
 * hfgen_moe.c only.
 *
 * Sections: weights | building from a spec | RoPE / YaRN | MoE routing |
 * forward pass | routing record. */
#include "ref_moe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ======================================================================== */
/* weights                                                                  */
/* ======================================================================== */

/* Matrices in PyTorch layout [out_features, in_features], row-major. D =
 * hidden, H = heads, qh = nope + rope, ql = q_lora_rank, kvl = kv_lora_rank,
 * F = intermediate_size, E = routed experts, M = moe_intermediate_size,
 * S = M * n_shared_experts. */
typedef struct {
    float *attn_norm;   /* (D)                   input_layernorm.weight */
    float *wq;          /* (H*qh, D)   ql == 0   self_attn.q_proj.weight */
    float *wq_a;        /* (ql, D)     ql > 0    self_attn.q_a_proj.weight */
    float *q_a_norm;    /* (ql)                  self_attn.q_a_layernorm.weight */
    float *wq_b;        /* (H*qh, ql)            self_attn.q_b_proj.weight */
    float *wkv_a;       /* (kvl + rope, D)       self_attn.kv_a_proj_with_mqa.weight */
    float *kv_a_norm;   /* (kvl)                 self_attn.kv_a_layernorm.weight */
    float *wkv_b;       /* (H*(nope + v), kvl)   self_attn.kv_b_proj.weight */
    float *wo;          /* (D, H*v)              self_attn.o_proj.weight */
    float *ffn_norm;    /* (D)                   post_attention_layernorm.weight */
    bool moe;
    float *w_gate;      /* (F, D)      dense     mlp.gate_proj.weight */
    float *w_up;        /* (F, D)                mlp.up_proj.weight */
    float *w_down;      /* (D, F)                mlp.down_proj.weight */
    float *router;      /* (E, D)      MoE       mlp.gate.weight */
    float *bias;        /* (E)         noaux_tc  mlp.gate.e_score_correction_bias */
    float *e_gate;      /* (E, M, D)             mlp.experts.e.gate_proj.weight */
    float *e_up;        /* (E, M, D)             mlp.experts.e.up_proj.weight */
    float *e_down;      /* (E, D, M)             mlp.experts.e.down_proj.weight */
    float *s_gate;      /* (S, D)      shared    mlp.shared_experts.gate_proj.weight */
    float *s_up;        /* (S, D)                mlp.shared_experts.up_proj.weight */
    float *s_down;      /* (D, S)                mlp.shared_experts.down_proj.weight */
} ref_layer;

typedef struct {
    char name[96];
    float *p;
    size_t n;
    bool loaded;
} slot;

struct ref_moe {
    hfgen_moe_spec s;      /* normalized */
    float *embed;          /* (V, D)  model.embed_tokens.weight */
    ref_layer *layers;     /* n_layers */
    float *norm;           /* (D)     model.norm.weight */
    float *lm_head;        /* (V, D)  lm_head.weight */
    slot *slots;           /* every HF tensor the forward pass uses */
    int n_slots, cap_slots;
    float **owned;         /* allocations to free */
    int n_owned, cap_owned;
    /* routing of the last forward, per layer and position */
    int rec_n;
    int *rec_idx;          /* (L, n, top_k) */
    float *rec_w;          /* (L, n, top_k) */
    float *rec_logits;     /* (L, n, E) */
};

void ref_moe_free(ref_moe *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->slots);
    free(m->layers);
    free(m->rec_idx);
    free(m->rec_w);
    free(m->rec_logits);
    free(m);
}

const hfgen_moe_spec *ref_moe_spec(const ref_moe *m) { return m ? &m->s : NULL; }

/* ======================================================================== */
/* building from a spec                                                     */
/* ======================================================================== */

/* Allocates n floats owned by m (NULL on failure or n == 0). */
static float *own(ref_moe *m, size_t n) {
    if (n == 0) return NULL;
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 64;
        float **p = realloc(m->owned, (size_t)cap * sizeof *p);
        if (!p) return NULL;
        m->owned = p;
        m->cap_owned = cap;
    }
    float *p = malloc(n * sizeof *p);
    if (p) m->owned[m->n_owned++] = p;
    return p;
}

/* Registers that HF tensor `name` (n elements) is read into p. */
static bool reg(ref_moe *m, float *p, size_t n, const char *fmt, int a, int b) {
    if (!p) return false;
    if (m->n_slots == m->cap_slots) {
        int cap = m->cap_slots ? 2 * m->cap_slots : 128;
        slot *q = realloc(m->slots, (size_t)cap * sizeof *q);
        if (!q) return false;
        m->slots = q;
        m->cap_slots = cap;
    }
    slot *sl = &m->slots[m->n_slots++];
    snprintf(sl->name, sizeof sl->name, fmt, a, b);
    sl->p = p;
    sl->n = n;
    sl->loaded = false;
    return true;
}

static float *own_reg(ref_moe *m, size_t n, const char *fmt, int a) {
    float *p = own(m, n);
    return reg(m, p, n, fmt, a, 0) ? p : NULL;
}

/* Allocates every weight of the (normalized) spec s and registers its name. */
static bool alloc_weights(ref_moe *m) {
    const hfgen_moe_spec *s = &m->s;
    const size_t D = (size_t)s->hidden, V = (size_t)s->vocab, H = (size_t)s->n_heads;
    const size_t qh = (size_t)(s->qk_nope_head_dim + s->qk_rope_head_dim), ql = (size_t)s->q_lora_rank;
    const size_t kvl = (size_t)s->kv_lora_rank, rope = (size_t)s->qk_rope_head_dim;
    const size_t nope = (size_t)s->qk_nope_head_dim, vh = (size_t)s->v_head_dim;
    const size_t F = (size_t)s->intermediate_size, E = (size_t)s->n_routed_experts;
    const size_t M = (size_t)s->moe_intermediate_size, S = M * (size_t)s->n_shared_experts;
    bool ok = (m->embed = own_reg(m, V * D, "model.embed_tokens.weight", 0)) &&
              (m->norm = own_reg(m, D, "model.norm.weight", 0)) &&
              (m->lm_head = own_reg(m, V * D, "lm_head.weight", 0));
    m->layers = calloc((size_t)s->n_layers, sizeof *m->layers);
    ok = ok && m->layers;
    for (int l = 0; ok && l < s->n_layers; l++) {
        ref_layer *L = &m->layers[l];
        ok = (L->attn_norm = own_reg(m, D, "model.layers.%d.input_layernorm.weight", l)) &&
             (L->ffn_norm = own_reg(m, D, "model.layers.%d.post_attention_layernorm.weight", l)) &&
             (L->wkv_a = own_reg(m, (kvl + rope) * D, "model.layers.%d.self_attn.kv_a_proj_with_mqa.weight", l)) &&
             (L->kv_a_norm = own_reg(m, kvl, "model.layers.%d.self_attn.kv_a_layernorm.weight", l)) &&
             (L->wkv_b = own_reg(m, H * (nope + vh) * kvl, "model.layers.%d.self_attn.kv_b_proj.weight", l)) &&
             (L->wo = own_reg(m, D * H * vh, "model.layers.%d.self_attn.o_proj.weight", l));
        if (ok && ql == 0) {
            ok = (L->wq = own_reg(m, H * qh * D, "model.layers.%d.self_attn.q_proj.weight", l)) != NULL;
        } else if (ok) {
            ok = (L->wq_a = own_reg(m, ql * D, "model.layers.%d.self_attn.q_a_proj.weight", l)) &&
                 (L->q_a_norm = own_reg(m, ql, "model.layers.%d.self_attn.q_a_layernorm.weight", l)) &&
                 (L->wq_b = own_reg(m, H * qh * ql, "model.layers.%d.self_attn.q_b_proj.weight", l));
        }
        L->moe = hfgen_moe_layer_is_moe(s, l);
        if (ok && !L->moe) {
            ok = (L->w_gate = own_reg(m, F * D, "model.layers.%d.mlp.gate_proj.weight", l)) &&
                 (L->w_up = own_reg(m, F * D, "model.layers.%d.mlp.up_proj.weight", l)) &&
                 (L->w_down = own_reg(m, D * F, "model.layers.%d.mlp.down_proj.weight", l));
            continue;
        }
        ok = ok && (L->router = own_reg(m, E * D, "model.layers.%d.mlp.gate.weight", l)) &&
             (L->e_gate = own(m, E * M * D)) && (L->e_up = own(m, E * M * D)) && (L->e_down = own(m, E * D * M));
        if (ok && strcmp(s->topk_method, "noaux_tc") == 0)
            ok = (L->bias = own_reg(m, E, "model.layers.%d.mlp.gate.e_score_correction_bias", l)) != NULL;
        for (int e = 0; ok && e < (int)E; e++)
            ok = reg(m, L->e_gate + (size_t)e * M * D, M * D, "model.layers.%d.mlp.experts.%d.gate_proj.weight", l, e) &&
                 reg(m, L->e_up + (size_t)e * M * D, M * D, "model.layers.%d.mlp.experts.%d.up_proj.weight", l, e) &&
                 reg(m, L->e_down + (size_t)e * D * M, D * M, "model.layers.%d.mlp.experts.%d.down_proj.weight", l, e);
        if (ok && S > 0)
            ok = (L->s_gate = own_reg(m, S * D, "model.layers.%d.mlp.shared_experts.gate_proj.weight", l)) &&
                 (L->s_up = own_reg(m, S * D, "model.layers.%d.mlp.shared_experts.up_proj.weight", l)) &&
                 (L->s_down = own_reg(m, D * S, "model.layers.%d.mlp.shared_experts.down_proj.weight", l));
    }
    return ok;
}

static slot *find_slot(const ref_moe *m, const char *name) {
    for (int i = 0; i < m->n_slots; i++)
        if (strcmp(m->slots[i].name, name) == 0) return &m->slots[i];
    return NULL;
}

ref_moe *ref_moe_from_spec(const hfgen_moe_spec *spec) {
    if (!spec || hfgen_moe_validate(spec, NULL) != 0) return NULL;
    ref_moe *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->s = hfgen_moe_normalized(spec);
    if (!alloc_weights(m)) goto fail;
    /* Every checkpoint tensor of the main model goes to its slot; MTP layers
     * and FP8 scale tensors (folded into the effective values) are skipped. */
    const int nt = hfgen_moe_tensor_count(&m->s);
    for (int i = 0; i < nt; i++) {
        hfgen_moe_tensor t;
        if (hfgen_moe_tensor_at(&m->s, i, &t) != 0) goto fail;
        if (t.kind == HFGEN_MOE_SCALE_INV || t.layer >= m->s.n_layers) continue;
        slot *sl = find_slot(m, t.name);
        if (!sl || sl->n != t.n_elems || sl->loaded) goto fail;
        if (hfgen_moe_fill_stored(&m->s, &t, 0, t.ndim == 2 ? t.shape[0] : 1, sl->p) != 0) goto fail;
        sl->loaded = true;
    }
    for (int i = 0; i < m->n_slots; i++)
        if (!m->slots[i].loaded) goto fail;
    return m;
fail:
    ref_moe_free(m);
    return NULL;
}

const float *ref_moe_weight(const ref_moe *m, const char *name, size_t *n_elems) {
    if (!m || !name) return NULL;
    const slot *sl = find_slot(m, name);
    if (!sl) return NULL;
    if (n_elems) *n_elems = sl->n;
    return sl->p;
}

/* ======================================================================== */
/* RoPE / YaRN (DeepseekV2YarnRotaryEmbedding)                              */
/* ======================================================================== */

/* yarn_get_mscale: 1 for scale <= 1, else 0.1 * mscale * ln(scale) + 1. */
static double yarn_get_mscale(double scale, double mscale) {
    return scale <= 1.0 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

/* yarn_find_correction_dim: the dimension whose wavelength makes
 * num_rotations turns over the original context. */
static double yarn_correction_dim(double num_rotations, double dim, double base, double max_pos) {
    return dim * log(max_pos / (num_rotations * 2.0 * M_PI)) / (2.0 * log(base));
}

void ref_moe_rope_inv_freq(const hfgen_moe_spec *in, double *inv_freq) {
    const hfgen_moe_spec s = hfgen_moe_normalized(in);
    const int d = s.qk_rope_head_dim;
    const double base = s.rope_theta;
    if (!s.yarn) {
        for (int i = 0; i < d / 2; i++) inv_freq[i] = 1.0 / pow(base, (2.0 * i) / d);
        return;
    }
    const double factor = s.rope_factor, orig = s.rope_orig_max_pos;
    /* yarn_find_correction_range: floor / ceil, clamped to [0, d - 1] */
    double low = floor(yarn_correction_dim(s.beta_fast, d, base, orig));
    double high = ceil(yarn_correction_dim(s.beta_slow, d, base, orig));
    if (low < 0) low = 0;
    if (high > d - 1) high = d - 1;
    if (low == high) high += 0.001;   /* yarn_linear_ramp_mask: prevent singularity */
    for (int i = 0; i < d / 2; i++) {
        const double extra = 1.0 / pow(base, (2.0 * i) / d);   /* freq_extra */
        const double inter = extra / factor;                  /* freq_inter */
        double ramp = (i - low) / (high - low);
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        const double mask = 1.0 - ramp;                       /* inv_freq_mask */
        inv_freq[i] = inter * (1.0 - mask) + extra * mask;
    }
}

double ref_moe_rope_mscale(const hfgen_moe_spec *in) {
    const hfgen_moe_spec s = hfgen_moe_normalized(in);
    if (!s.yarn) return 1.0;
    return yarn_get_mscale(s.rope_factor, s.mscale) / yarn_get_mscale(s.rope_factor, s.mscale_all_dim);
}

double ref_moe_softmax_scale(const hfgen_moe_spec *in) {
    const hfgen_moe_spec s = hfgen_moe_normalized(in);
    double scale = 1.0 / sqrt((double)(s.qk_nope_head_dim + s.qk_rope_head_dim));
    if (s.yarn && s.mscale_all_dim != 0.0f) {
        const double ms = yarn_get_mscale(s.rope_factor, s.mscale_all_dim);
        scale *= ms * ms;
    }
    return scale;
}

/* apply_rotary_pos_emb of modeling_deepseek.py for one vector:
 * y = x.view(d/2, 2).transpose -> [x0, x2, .., x1, x3, ..];
 * out = y * cos + rotate_half(y) * sin, cos = cat(c, c) * mscale. */
static void rope_apply(const double *inv_freq, double mscale, int d, float *x, int pos) {
    const int h = d / 2;
    float y[512];
    for (int i = 0; i < h; i++) {
        y[i] = x[2 * i];
        y[i + h] = x[2 * i + 1];
    }
    for (int i = 0; i < h; i++) {
        const double ang = (double)pos * inv_freq[i];
        const double c = cos(ang) * mscale, sn = sin(ang) * mscale;
        x[i] = (float)(y[i] * c - y[i + h] * sn);
        x[i + h] = (float)(y[i + h] * c + y[i] * sn);
    }
}

void ref_moe_rope_apply(const hfgen_moe_spec *spec, float *x, int pos) {
    double inv_freq[256];
    if (spec->qk_rope_head_dim > 512) return;
    ref_moe_rope_inv_freq(spec, inv_freq);
    rope_apply(inv_freq, ref_moe_rope_mscale(spec), spec->qk_rope_head_dim, x, pos);
}

/* ======================================================================== */
/* MoE routing (MoEGate.forward)                                            */
/* ======================================================================== */

/* The index of the largest v[i] among i in [0, n) with allowed[i], ties to
 * the lowest index; -1 when none is allowed. */
static int argmax_allowed(const float *v, const bool *allowed, int n) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (allowed[i] && (best < 0 || v[i] > v[best])) best = i;
    return best;
}

int ref_moe_route(const hfgen_moe_spec *in, const float *logits, const float *bias, int *experts, float *weights,
                  float *margin) {
    const hfgen_moe_spec s = hfgen_moe_normalized(in);
    const int E = s.n_routed_experts, k = s.num_experts_per_tok, G = s.n_group, per = G > 0 ? E / G : 0;
    if (E <= 0 || E > 4096 || k < 1 || k > E || G < 1 || E % G != 0 || s.topk_group > G) return -1;
    const bool noaux = strcmp(s.topk_method, "noaux_tc") == 0;
    const bool grouped = noaux || strcmp(s.topk_method, "group_limited_greedy") == 0;
    float scores[4096], choice[4096], gscore[4096];
    bool allowed[4096], gpick[4096];

    /* scores = softmax(logits) or sigmoid(logits), fp32 */
    if (strcmp(s.scoring_func, "sigmoid") == 0) {
        for (int e = 0; e < E; e++) scores[e] = (float)(1.0 / (1.0 + exp(-(double)logits[e])));
    } else {
        double mx = logits[0], sum = 0.0;
        for (int e = 1; e < E; e++) mx = logits[e] > mx ? logits[e] : mx;
        for (int e = 0; e < E; e++) sum += exp((double)logits[e] - mx);
        for (int e = 0; e < E; e++) scores[e] = (float)(exp((double)logits[e] - mx) / sum);
    }
    /* noaux_tc chooses by scores + e_score_correction_bias */
    for (int e = 0; e < E; e++) choice[e] = noaux && bias ? scores[e] + bias[e] : scores[e];

    /* groups: keep the topk_group best, by max score (group_limited_greedy)
     * or by the sum of the two best choice scores (noaux_tc) */
    float gmargin = INFINITY;
    for (int e = 0; e < E; e++) allowed[e] = true;
    if (grouped) {
        for (int g = 0; g < G; g++) {
            float a = -INFINITY, b = -INFINITY;   /* best and second best in group g */
            for (int j = 0; j < per; j++) {
                const float v = choice[g * per + j];
                if (v > a) { b = a; a = v; }
                else if (v > b) b = v;
            }
            gscore[g] = noaux ? a + b : a;
            gpick[g] = false;
        }
        bool gall[4096];
        for (int g = 0; g < G; g++) gall[g] = true;
        float last_kept = INFINITY;
        for (int r = 0; r < s.topk_group; r++) {
            const int g = argmax_allowed(gscore, gall, G);
            gpick[g] = true;
            gall[g] = false;
            last_kept = gscore[g];
        }
        const int dropped = argmax_allowed(gscore, gall, G);
        if (dropped >= 0) gmargin = last_kept - gscore[dropped];
        for (int e = 0; e < E; e++) allowed[e] = gpick[e / per];
    }

    /* top-k of the choice scores among the allowed experts */
    float last = INFINITY;
    for (int r = 0; r < k; r++) {
        const int e = argmax_allowed(choice, allowed, E);
        experts[r] = e;
        allowed[e] = false;
        last = choice[e];
    }
    const int next = argmax_allowed(choice, allowed, E);
    if (margin) {
        const float emargin = next >= 0 ? last - choice[next] : INFINITY;
        *margin = emargin < gmargin ? emargin : gmargin;
    }
    if (!weights) return k;

    /* weights: the unbiased scores, then each version's normalization */
    float sum = 0.0f;
    for (int r = 0; r < k; r++) {
        weights[r] = scores[experts[r]];
        sum += weights[r];
    }
    const bool normalize = k > 1 && s.norm_topk_prob;
    const bool v3 = strcmp(s.arch, "deepseek_v3") == 0;
    for (int r = 0; r < k; r++) {
        if (normalize) weights[r] = weights[r] / (sum + 1e-20f);
        if (v3 || !normalize) weights[r] = weights[r] * s.routed_scaling_factor;
    }
    return k;
}

const float *ref_moe_gate_bias(const ref_moe *m, int layer) {
    if (!m || layer < 0 || layer >= m->s.n_layers) return NULL;
    return m->layers[layer].bias;
}

/* ======================================================================== */
/* forward pass                                                             */
/* ======================================================================== */

/* y[o] = sum_i w[o, i] x[i] for o < n_out (w is [n_out, n_in]). */
static void matvec(float *y, const float *w, const float *x, size_t n_out, size_t n_in) {
    for (size_t o = 0; o < n_out; o++) {
        double acc = 0.0;
        const float *row = w + o * n_in;
        for (size_t i = 0; i < n_in; i++) acc += (double)row[i] * x[i];
        y[o] = (float)acc;
    }
}

/* DeepseekV2RMSNorm: y = w * x / sqrt(mean(x^2) + eps). In place allowed. */
static void rmsnorm(float *y, const float *x, const float *w, size_t n, float eps) {
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const double r = 1.0 / sqrt(ss / (double)n + (double)eps);
    for (size_t i = 0; i < n; i++) y[i] = (float)((double)w[i] * (x[i] * r));
}

static float silu(float x) { return (float)((double)x / (1.0 + exp(-(double)x))); }

/* DeepseekV2MLP: y = down(silu(gate(x)) * up(x)); act holds width floats. */
static void swiglu(float *y, const float *w_gate, const float *w_up, const float *w_down, const float *x, size_t d,
                   size_t width, float *act, float *tmp) {
    matvec(act, w_gate, x, width, d);
    matvec(tmp, w_up, x, width, d);
    for (size_t i = 0; i < width; i++) act[i] = silu(act[i]) * tmp[i];
    matvec(y, w_down, act, d, width);
}

int ref_moe_attention(ref_moe *m, int layer, const float *x, int n, float *out) {
    if (!m || !x || !out || n < 1 || layer < 0 || layer >= m->s.n_layers) return -1;
    const hfgen_moe_spec *s = &m->s;
    const ref_layer *L = &m->layers[layer];
    const size_t D = (size_t)s->hidden, H = (size_t)s->n_heads, nope = (size_t)s->qk_nope_head_dim;
    const size_t rope = (size_t)s->qk_rope_head_dim, qh = nope + rope, vh = (size_t)s->v_head_dim;
    const size_t kvl = (size_t)s->kv_lora_rank, ql = (size_t)s->q_lora_rank, N = (size_t)n;
    if (rope > 512) return -1;
    float *q = malloc(N * H * qh * sizeof *q);              /* (n, H, nope | rope) */
    float *ckv = malloc(N * (kvl + rope) * sizeof *ckv);    /* (n, kvl | rope): latent, k_pe */
    float *kv = malloc(N * H * (nope + vh) * sizeof *kv);   /* (n, H, k_nope | v) */
    float *qa = malloc((ql ? ql : 1) * sizeof *qa);         /* (ql) */
    float *o = malloc(H * vh * sizeof *o);                  /* (H, v) one position */
    double *p = malloc(N * sizeof *p);                      /* attention row */
    double inv_freq[256];
    int rc = -1;
    if (!q || !ckv || !kv || !qa || !o || !p) goto done;
    ref_moe_rope_inv_freq(s, inv_freq);
    const double mscale = ref_moe_rope_mscale(s), scale = ref_moe_softmax_scale(s);
    /* q_a_layernorm and kv_a_layernorm are built as DeepseekV2RMSNorm(rank):
     * the default eps 1e-6, not rms_norm_eps (also in inference/model.py) */
    const float latent_eps = 1e-6f;

    for (size_t t = 0; t < N; t++) {
        const float *xt = x + t * D;
        float *qt = q + t * H * qh, *ct = ckv + t * (kvl + rope);
        if (ql == 0) {
            matvec(qt, L->wq, xt, H * qh, D);
        } else {
            matvec(qa, L->wq_a, xt, ql, D);
            rmsnorm(qa, qa, L->q_a_norm, ql, latent_eps);
            matvec(qt, L->wq_b, qa, H * qh, ql);
        }
        matvec(ct, L->wkv_a, xt, kvl + rope, D);
        rmsnorm(ct, ct, L->kv_a_norm, kvl, latent_eps);     /* compressed_kv only */
        matvec(kv + t * H * (nope + vh), L->wkv_b, ct, H * (nope + vh), kvl);
        for (size_t h = 0; h < H; h++) rope_apply(inv_freq, mscale, (int)rope, qt + h * qh + nope, (int)t);
        rope_apply(inv_freq, mscale, (int)rope, ct + kvl, (int)t);   /* k_pe, shared by the heads */
    }
    for (size_t t = 0; t < N; t++) {
        for (size_t h = 0; h < H; h++) {
            const float *qt = q + t * H * qh + h * qh;
            double mx = -INFINITY, sum = 0.0;
            for (size_t u = 0; u <= t; u++) {                  /* causal: keys 0..t */
                const float *kn = kv + u * H * (nope + vh) + h * (nope + vh), *kp = ckv + u * (kvl + rope) + kvl;
                double dot = 0.0;
                for (size_t i = 0; i < nope; i++) dot += (double)qt[i] * kn[i];
                for (size_t i = 0; i < rope; i++) dot += (double)qt[nope + i] * kp[i];
                p[u] = dot * scale;
                mx = p[u] > mx ? p[u] : mx;
            }
            for (size_t u = 0; u <= t; u++) sum += (p[u] = exp(p[u] - mx));
            for (size_t i = 0; i < vh; i++) {
                double acc = 0.0;
                for (size_t u = 0; u <= t; u++) acc += p[u] * kv[u * H * (nope + vh) + h * (nope + vh) + nope + i];
                o[h * vh + i] = (float)(acc / sum);
            }
        }
        matvec(out + t * D, L->wo, o, D, H * vh);
    }
    rc = 0;
done:
    free(q);
    free(ckv);
    free(kv);
    free(qa);
    free(o);
    free(p);
    return rc;
}

/* DeepseekV2MoE / DeepseekV3MoE for one position: routed experts weighted
 * and summed, plus the shared experts. Records the routing of (layer, pos). */
static void moe_forward(ref_moe *m, int layer, int pos, const float *x, float *y, float *act, float *tmp, float *eo) {
    const hfgen_moe_spec *s = &m->s;
    const ref_layer *L = &m->layers[layer];
    const size_t D = (size_t)s->hidden, E = (size_t)s->n_routed_experts, M = (size_t)s->moe_intermediate_size;
    const size_t k = (size_t)s->num_experts_per_tok, S = M * (size_t)s->n_shared_experts;
    float *logits = m->rec_logits + ((size_t)layer * (size_t)m->rec_n + (size_t)pos) * E;
    int *idx = m->rec_idx + ((size_t)layer * (size_t)m->rec_n + (size_t)pos) * k;
    float *w = m->rec_w + ((size_t)layer * (size_t)m->rec_n + (size_t)pos) * k;
    matvec(logits, L->router, x, E, D);                      /* F.linear in fp32 */
    ref_moe_route(s, logits, L->bias, idx, w, NULL);
    for (size_t i = 0; i < D; i++) y[i] = 0.0f;
    for (size_t r = 0; r < k; r++) {
        const size_t e = (size_t)idx[r];
        swiglu(eo, L->e_gate + e * M * D, L->e_up + e * M * D, L->e_down + e * D * M, x, D, M, act, tmp);
        for (size_t i = 0; i < D; i++) y[i] += eo[i] * w[r];
    }
    if (S > 0) {
        swiglu(eo, L->s_gate, L->s_up, L->s_down, x, D, S, act, tmp);
        for (size_t i = 0; i < D; i++) y[i] += eo[i];
    }
}

int ref_moe_forward(ref_moe *m, const int *tokens, int n, float *logits) {
    if (!m || !tokens || !logits || n < 1) return -1;
    const hfgen_moe_spec *s = &m->s;
    for (int t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= s->vocab) return -1;
    const size_t D = (size_t)s->hidden, V = (size_t)s->vocab, N = (size_t)n, Lc = (size_t)s->n_layers;
    const size_t E = (size_t)s->n_routed_experts, k = (size_t)s->num_experts_per_tok;
    size_t W = (size_t)s->intermediate_size;                 /* widest MLP */
    const size_t S = (size_t)s->moe_intermediate_size * (size_t)(s->n_shared_experts > 1 ? s->n_shared_experts : 1);
    if (S > W) W = S;
    float *x = malloc(N * D * sizeof *x);        /* residual stream (n, D) */
    float *h = malloc(N * D * sizeof *h);        /* normed (n, D) */
    float *a = malloc(N * D * sizeof *a);        /* block output (n, D) */
    float *act = malloc(W * sizeof *act), *tmp = malloc(W * sizeof *tmp), *eo = malloc(D * sizeof *eo);
    free(m->rec_idx);
    free(m->rec_w);
    free(m->rec_logits);
    m->rec_n = 0;
    m->rec_idx = malloc((Lc * N * k + 1) * sizeof *m->rec_idx);
    m->rec_w = malloc((Lc * N * k + 1) * sizeof *m->rec_w);
    m->rec_logits = malloc((Lc * N * E + 1) * sizeof *m->rec_logits);
    int rc = -1;
    if (!x || !h || !a || !act || !tmp || !eo || !m->rec_idx || !m->rec_w || !m->rec_logits) goto done;
    m->rec_n = n;

    for (size_t t = 0; t < N; t++) memcpy(x + t * D, m->embed + (size_t)tokens[t] * D, D * sizeof *x);
    for (size_t l = 0; l < Lc; l++) {
        const ref_layer *L = &m->layers[l];
        for (size_t t = 0; t < N; t++) rmsnorm(h + t * D, x + t * D, L->attn_norm, D, s->rms_norm_eps);
        if (ref_moe_attention(m, (int)l, h, n, a) != 0) goto done;
        for (size_t i = 0; i < N * D; i++) x[i] += a[i];
        for (size_t t = 0; t < N; t++) {
            rmsnorm(h + t * D, x + t * D, L->ffn_norm, D, s->rms_norm_eps);
            if (L->moe)
                moe_forward(m, (int)l, (int)t, h + t * D, a + t * D, act, tmp, eo);
            else
                swiglu(a + t * D, L->w_gate, L->w_up, L->w_down, h + t * D, D, (size_t)s->intermediate_size, act, tmp);
        }
        for (size_t i = 0; i < N * D; i++) x[i] += a[i];
    }
    for (size_t t = 0; t < N; t++) {
        rmsnorm(h + t * D, x + t * D, m->norm, D, s->rms_norm_eps);
        matvec(logits + t * V, m->lm_head, h + t * D, V, D);
    }
    rc = 0;
done:
    if (rc != 0) m->rec_n = 0;
    free(x);
    free(h);
    free(a);
    free(act);
    free(tmp);
    free(eo);
    return rc;
}

/* ======================================================================== */
/* routing record                                                           */
/* ======================================================================== */

static bool rec_ok(const ref_moe *m, int layer, int pos) {
    return m && m->rec_n > 0 && layer >= 0 && layer < m->s.n_layers && m->layers[layer].moe && pos >= 0 &&
           pos < m->rec_n;
}

int ref_moe_route_counts(const ref_moe *m, int layer, int *counts) {
    if (!rec_ok(m, layer, 0) || !counts) return -1;
    const int E = m->s.n_routed_experts, k = m->s.num_experts_per_tok;
    for (int e = 0; e < E; e++) counts[e] = 0;
    const int *idx = m->rec_idx + (size_t)layer * (size_t)m->rec_n * (size_t)k;   /* (n, k) of this layer */
    for (int t = 0; t < m->rec_n * k; t++) counts[idx[t]]++;
    return m->rec_n;
}

int ref_moe_last_route(const ref_moe *m, int layer, int pos, int *experts, float *weights) {
    if (!rec_ok(m, layer, pos)) return -1;
    const size_t k = (size_t)m->s.num_experts_per_tok;
    const size_t base = ((size_t)layer * (size_t)m->rec_n + (size_t)pos) * k;
    for (size_t r = 0; r < k; r++) {
        if (experts) experts[r] = m->rec_idx[base + r];
        if (weights) weights[r] = m->rec_w[base + r];
    }
    return (int)k;
}

const float *ref_moe_last_router_logits(const ref_moe *m, int layer, int pos) {
    if (!rec_ok(m, layer, pos)) return NULL;
    return m->rec_logits + ((size_t)layer * (size_t)m->rec_n + (size_t)pos) * (size_t)m->s.n_routed_experts;
}
