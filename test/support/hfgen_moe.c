/* hfgen_moe.c - synthetic DeepSeek-V2 / V3 checkpoints in the exact layout of
 * the official releases (see hfgen_moe.h). libc/libm/pthreads, the
 * counter-based PRNG and number formats of hfgen.c and the file writing of
 * hfwrite.c only: no engine code.
 *
 * Sections: spec and presets | tensor list | FP8 E4M3 | values (master,
 * stored, FP8 bands) | tokenizer | JSON files | safetensors data. */
#include "hfgen_moe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hfwrite.h"

#define FP8_BLOCK 128u        /* weight_block_size [128, 128] */
#define FP8_MAX 448.0f        /* largest finite E4M3 value */

/* ======================================================================== */
/* spec and presets                                                         */
/* ======================================================================== */

static const char *const PRESET_NAMES[] = {
    "tiny-deepseek2", "tiny-deepseek2-group", "tiny-deepseek3", "deepseek-v3-fp8-4g", "deepseek-v2-lite", NULL,
};

const char *const *hfgen_moe_preset_names(void) { return PRESET_NAMES; }

/* Shared by the tiny presets: 4 heads, kv_lora 64, nope = rope = v = 32,
 * vocab 512 (496 tokenizer ids + 16 padding rows), 3 layers of which the
 * first is dense. Every matrix dimension is a multiple of 32. */
static void tiny_base(hfgen_moe_spec *s) {
    s->vocab = 512; s->hidden = 64; s->n_layers = 3; s->n_heads = 4;
    s->kv_lora_rank = 64; s->qk_nope_head_dim = 32; s->qk_rope_head_dim = 32; s->v_head_dim = 32;
    s->intermediate_size = 128; s->moe_intermediate_size = 32; s->first_k_dense_replace = 1;
    s->moe_layer_freq = 1; s->rope_theta = 10000.0f; s->rms_norm_eps = 1e-6f; s->yarn = true;
    s->rope_factor = 40.0f; s->beta_fast = 32.0f; s->beta_slow = 1.0f;
}

int hfgen_moe_preset(const char *name, hfgen_moe_spec *spec) {
    hfgen_moe_spec s;
    memset(&s, 0, sizeof s);
    s.dtype = "BF16";
    s.n_shards = 1;
    s.seed = 4242;
    if (!name) return -1;
    if (strcmp(name, "tiny-deepseek2") == 0) {
        /* DeepSeek-V2-Lite in miniature: q_proj (no q_lora), softmax greedy
         * top-2 of 8, norm_topk_prob false, routed_scaling_factor 1, 2 shared
         * experts, YaRN with mscale = mscale_all_dim = 0.707 (cos/sin scale
         * 1, softmax scale x 1.261^2). original 128: rope dims 0..5 ramp. */
        tiny_base(&s);
        s.arch = "deepseek_v2";
        s.n_routed_experts = 8; s.n_shared_experts = 2; s.num_experts_per_tok = 2;
        s.n_group = 1; s.topk_group = 1; s.topk_method = "greedy"; s.scoring_func = "softmax";
        s.norm_topk_prob = false; s.routed_scaling_factor = 1.0f;
        s.rope_orig_max_pos = 128; s.mscale = 0.707f; s.mscale_all_dim = 0.707f; s.max_pos = 128 * 40;
    } else if (strcmp(name, "tiny-deepseek2-group") == 0) {
        /* DeepSeek-V2 (236B) in miniature: q_lora, softmax
         * group_limited_greedy (group max) over 4 groups of 4, 2 groups kept,
         * top-3, norm_topk_prob false so weights x 16. mscale 1.0 with
         * mscale_all_dim 0.707 so cos/sin carry a factor 1.0926 (unlike the
         * real V2 configs, to exercise that term). */
        tiny_base(&s);
        s.arch = "deepseek_v2";
        s.q_lora_rank = 96;
        s.n_routed_experts = 16; s.n_shared_experts = 2; s.num_experts_per_tok = 3;
        s.n_group = 4; s.topk_group = 2; s.topk_method = "group_limited_greedy"; s.scoring_func = "softmax";
        s.norm_topk_prob = false; s.routed_scaling_factor = 16.0f;
        s.rope_orig_max_pos = 128; s.mscale = 1.0f; s.mscale_all_dim = 0.707f; s.max_pos = 128 * 40;
        s.seed = 4243;
    } else if (strcmp(name, "tiny-deepseek3") == 0) {
        /* DeepSeek-V3 in miniature, stored like the release: FP8 E4M3 with
         * 128x128 scale_inv. hidden 160 and moe_inter 160 make partial edge
         * blocks (128 + 32). sigmoid noaux_tc with e_score_correction_bias,
         * 4 groups of 4, 2 kept (group score = sum of top-2), top-4, normalized
         * then x 2.5, 1 shared expert, 1 MTP layer. YaRN factor 40 with
         * original 64: rope dim 0 kept, 1..4 ramp, 5..15 divided by 40. */
        tiny_base(&s);
        s.arch = "deepseek_v3";
        s.hidden = 160; s.q_lora_rank = 96; s.intermediate_size = 320; s.moe_intermediate_size = 160;
        s.n_routed_experts = 16; s.n_shared_experts = 1; s.num_experts_per_tok = 4;
        s.n_group = 4; s.topk_group = 2; s.topk_method = "noaux_tc"; s.scoring_func = "sigmoid";
        s.norm_topk_prob = true; s.routed_scaling_factor = 2.5f;
        s.rope_orig_max_pos = 64; s.mscale = 1.0f; s.mscale_all_dim = 1.0f; s.max_pos = 64 * 40;
        s.num_nextn_predict_layers = 1; s.dtype = "FP8"; s.seed = 4244;
    } else if (strcmp(name, "deepseek-v3-fp8-4g") == 0) {
        /* DeepSeek-V3 attention dims (128 heads, q_lora 1536, kv_lora 512,
         * nope 128, rope 64, v 128), real vocab and routing; hidden, layers
         * and experts scaled down to about 4.7 GB of FP8/BF16 tensor data. */
        s.arch = "deepseek_v3";
        s.vocab = 129280; s.hidden = 2048; s.n_layers = 6; s.n_heads = 128;
        s.q_lora_rank = 1536; s.kv_lora_rank = 512; s.qk_nope_head_dim = 128; s.qk_rope_head_dim = 64;
        s.v_head_dim = 128; s.intermediate_size = 8192; s.moe_intermediate_size = 1024;
        s.n_routed_experts = 48; s.n_shared_experts = 1; s.num_experts_per_tok = 8;
        s.first_k_dense_replace = 1; s.moe_layer_freq = 1; s.n_group = 8; s.topk_group = 4;
        s.topk_method = "noaux_tc"; s.scoring_func = "sigmoid"; s.norm_topk_prob = true;
        s.routed_scaling_factor = 2.5f; s.rope_theta = 10000.0f; s.yarn = true; s.rope_factor = 40.0f;
        s.rope_orig_max_pos = 4096; s.beta_fast = 32.0f; s.beta_slow = 1.0f; s.mscale = 1.0f;
        s.mscale_all_dim = 1.0f; s.rms_norm_eps = 1e-6f; s.max_pos = 163840;
        s.num_nextn_predict_layers = 1; s.dtype = "FP8"; s.chat_template = "deepseek-r1"; s.n_shards = 5;
    } else if (strcmp(name, "deepseek-v2-lite") == 0) {
        /* deepseek-ai/DeepSeek-V2-Lite config.json */
        s.arch = "deepseek_v2";
        s.vocab = 102400; s.hidden = 2048; s.n_layers = 27; s.n_heads = 16;
        s.q_lora_rank = 0; s.kv_lora_rank = 512; s.qk_nope_head_dim = 128; s.qk_rope_head_dim = 64;
        s.v_head_dim = 128; s.intermediate_size = 10944; s.moe_intermediate_size = 1408;
        s.n_routed_experts = 64; s.n_shared_experts = 2; s.num_experts_per_tok = 6;
        s.first_k_dense_replace = 1; s.moe_layer_freq = 1; s.n_group = 1; s.topk_group = 1;
        s.topk_method = "greedy"; s.scoring_func = "softmax"; s.norm_topk_prob = false;
        s.routed_scaling_factor = 1.0f; s.rope_theta = 10000.0f; s.yarn = true; s.rope_factor = 40.0f;
        s.rope_orig_max_pos = 4096; s.beta_fast = 32.0f; s.beta_slow = 1.0f; s.mscale = 0.707f;
        s.mscale_all_dim = 0.707f; s.rms_norm_eps = 1e-6f; s.max_pos = 163840; s.n_shards = 4;
    } else {
        return -1;
    }
    *spec = s;
    return 0;
}

static bool streq(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }
static bool is_v3(const hfgen_moe_spec *s) { return streq(s->arch, "deepseek_v3"); }

hfgen_moe_spec hfgen_moe_normalized(const hfgen_moe_spec *in) {
    hfgen_moe_spec s = *in;
    if (!s.dtype) s.dtype = "BF16";
    if (s.n_shards <= 0) s.n_shards = 1;
    if (s.moe_layer_freq <= 0) s.moe_layer_freq = 1;
    if (s.n_group <= 0) s.n_group = 1;
    if (s.topk_group <= 0) s.topk_group = 1;
    if (!s.topk_method) s.topk_method = "greedy";
    if (!s.scoring_func) s.scoring_func = "softmax";
    if (!(s.routed_scaling_factor > 0)) s.routed_scaling_factor = 1.0f;
    if (!(s.rope_theta > 0)) s.rope_theta = 10000.0f;
    if (!(s.rms_norm_eps > 0)) s.rms_norm_eps = 1e-6f;
    if (s.max_pos <= 0) s.max_pos = 4096;
    if (s.yarn) {
        if (s.rope_orig_max_pos <= 0) s.rope_orig_max_pos = 4096;
        if (!(s.beta_fast > 0)) s.beta_fast = 32.0f;
        if (!(s.beta_slow > 0)) s.beta_slow = 1.0f;
    }
    if (!s.chat_template) s.chat_template = is_v3(&s) ? "deepseek-v3" : "deepseek-v2";
    return s;
}

bool hfgen_moe_layer_is_moe(const hfgen_moe_spec *in, int l) {
    const int freq = in->moe_layer_freq > 0 ? in->moe_layer_freq : 1;
    return in->n_routed_experts > 0 && l >= in->first_k_dense_replace && l % freq == 0;
}

static int n_mtp(const hfgen_moe_spec *s) { return is_v3(s) ? s->num_nextn_predict_layers : 0; }

enum { N_SPECIAL = 3, N_ADDED_AFTER = 17 };   /* tokenizer layout, see hfgen_moe.h */

static hfgen_moe_tensor *tensor_list(const hfgen_moe_spec *s, int *n);

int hfgen_moe_validate(const hfgen_moe_spec *in, deepc_err *err) {
    if (!in) return hfw_fail(err, "hfgen_moe: no spec");
    const hfgen_moe_spec s = hfgen_moe_normalized(in);
    if (!streq(s.arch, "deepseek_v2") && !streq(s.arch, "deepseek_v3"))
        return hfw_fail(err, "hfgen_moe: arch must be deepseek_v2 or deepseek_v3 (got %s)", s.arch ? s.arch : "NULL");
    if (!streq(s.dtype, "BF16") && !streq(s.dtype, "F32") && !streq(s.dtype, "FP8"))
        return hfw_fail(err, "hfgen_moe: dtype must be BF16, F32 or FP8 (got %s)", s.dtype);
    if (s.vocab <= 0 || s.hidden <= 0 || s.n_layers <= 0 || s.n_heads <= 0 || s.kv_lora_rank <= 0 ||
        s.qk_nope_head_dim <= 0 || s.qk_rope_head_dim <= 0 || s.v_head_dim <= 0 || s.q_lora_rank < 0 ||
        s.n_routed_experts < 0 || s.n_shared_experts < 0 || s.first_k_dense_replace < 0 ||
        s.num_nextn_predict_layers < 0)
        return hfw_fail(err, "hfgen_moe: sizes must be positive (q_lora_rank, experts, first_k_dense_replace and "
                             "num_nextn_predict_layers may be 0)");
    if (s.qk_rope_head_dim % 2 != 0) return hfw_fail(err, "hfgen_moe: qk_rope_head_dim %d is odd", s.qk_rope_head_dim);
    bool any_dense = false, any_moe = false;
    for (int l = 0; l < s.n_layers + n_mtp(&s); l++) {
        if (hfgen_moe_layer_is_moe(&s, l)) any_moe = true;
        else any_dense = true;
    }
    if (any_dense && s.intermediate_size <= 0) return hfw_fail(err, "hfgen_moe: dense layers need intermediate_size");
    if (any_moe) {
        const int E = s.n_routed_experts, k = s.num_experts_per_tok;
        if (s.moe_intermediate_size <= 0) return hfw_fail(err, "hfgen_moe: MoE layers need moe_intermediate_size");
        if (k < 1 || k > E) return hfw_fail(err, "hfgen_moe: num_experts_per_tok %d not in 1..%d", k, E);
        if (E % s.n_group != 0) return hfw_fail(err, "hfgen_moe: n_group %d does not divide %d experts", s.n_group, E);
        if (s.topk_group > s.n_group) return hfw_fail(err, "hfgen_moe: topk_group %d > n_group %d", s.topk_group, s.n_group);
        if (!streq(s.topk_method, "greedy") && !streq(s.topk_method, "group_limited_greedy") &&
            !streq(s.topk_method, "noaux_tc"))
            return hfw_fail(err, "hfgen_moe: unknown topk_method %s", s.topk_method);
        if (!streq(s.scoring_func, "softmax") && !streq(s.scoring_func, "sigmoid"))
            return hfw_fail(err, "hfgen_moe: unknown scoring_func %s", s.scoring_func);
        if (!streq(s.topk_method, "greedy") && k > s.topk_group * (E / s.n_group))
            return hfw_fail(err, "hfgen_moe: top-%d does not fit in %d groups of %d experts", k, s.topk_group,
                            E / s.n_group);
        if (streq(s.topk_method, "noaux_tc") && E / s.n_group < 2)
            return hfw_fail(err, "hfgen_moe: noaux_tc needs at least 2 experts per group (top-2 group score)");
    }
    if (s.yarn && !(s.rope_factor > 0)) return hfw_fail(err, "hfgen_moe: yarn rope_scaling needs a factor");
    if (s.vocab - s.vocab / 32 < N_SPECIAL + 256 + N_ADDED_AFTER)
        return hfw_fail(err, "hfgen_moe: vocab %d too small for 256 byte tokens, %d special/added tokens and padding",
                        s.vocab, N_SPECIAL + N_ADDED_AFTER);
    if (s.n_shards > 99999) return hfw_fail(err, "hfgen_moe: too many shards");
    if (s.n_shards > 1) {   /* every shard opens with a weight (scales stay with theirs) */
        int n = 0, n_open = 0;
        hfgen_moe_tensor *all = tensor_list(&s, &n);
        if (!all) return hfw_fail(err, "hfgen_moe: out of memory");
        for (int i = 0; i < n; i++) n_open += all[i].kind != HFGEN_MOE_SCALE_INV;
        free(all);
        if (s.n_shards > n_open) return hfw_fail(err, "hfgen_moe: %d shards for %d weight tensors", s.n_shards, n_open);
    }
    return 0;
}

/* ======================================================================== */
/* tensor list                                                              */
/* ======================================================================== */

/* Walks the tensors of the checkpoint in model order and either counts them,
 * copies the `want`-th into *one, or copies all into all[]. Names are only
 * formatted for the tensors copied, so counting a big model is cheap. */
typedef struct {
    const hfgen_moe_spec *s;   /* normalized */
    int k;                     /* tensors seen */
    int want;                  /* index to copy into *one, or -1 */
    hfgen_moe_tensor *one, *all;
    char prefix[48];           /* "model.layers.N." or "" */
    int layer;
} walker;

static bool fp8_on(const hfgen_moe_spec *s) { return streq(s->dtype, "FP8"); }

static void set_tensor(hfgen_moe_tensor *t, const walker *w, const char *suffix, int idx, int ndim, uint64_t d0,
                       uint64_t d1, hfgen_moe_kind kind, double std, const char *dtype) {
    char sfx[80], full[sizeof sfx + sizeof w->prefix];
    snprintf(sfx, sizeof sfx, suffix, idx);
    snprintf(full, sizeof full, "%s%s", w->prefix, sfx);
    size_t len = strlen(full) < sizeof t->name - 1 ? strlen(full) : sizeof t->name - 1;  /* names are < 70 chars */
    memcpy(t->name, full, len);
    t->name[len] = 0;
    snprintf(t->stream, sizeof t->stream, "%s", t->name);
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = ndim == 2 ? d1 : 0;
    t->n_elems = ndim == 2 ? d0 * d1 : d0;
    t->dtype = dtype;
    t->kind = kind;
    t->std = (float)std;
    t->pad_row = d0;
    t->layer = w->layer;
}

static hfgen_moe_tensor *walk_slot(walker *w) {
    hfgen_moe_tensor *t = w->all ? &w->all[w->k] : (w->k == w->want ? w->one : NULL);
    w->k++;
    return t;
}

/* One tensor; suffix may hold one %d (expert index idx). `linear` tensors
 * are stored FP8 (plus a weight_scale_inv) when the spec's dtype is FP8. */
static void emit(walker *w, const char *suffix, int idx, int ndim, uint64_t d0, uint64_t d1, hfgen_moe_kind kind,
                 double std, bool linear) {
    const hfgen_moe_spec *s = w->s;
    const bool f32 = streq(s->dtype, "F32");
    const char *dt = f32 || kind == HFGEN_MOE_BIAS ? "F32" : linear && fp8_on(s) ? "F8_E4M3" : "BF16";
    hfgen_moe_tensor *t = walk_slot(w);
    if (t) set_tensor(t, w, suffix, idx, ndim, d0, d1, kind, std, dt);
    if (linear && fp8_on(s)) {
        t = walk_slot(w);
        if (t) {
            set_tensor(t, w, suffix, idx, 2, (d0 + FP8_BLOCK - 1) / FP8_BLOCK, (d1 + FP8_BLOCK - 1) / FP8_BLOCK,
                       HFGEN_MOE_SCALE_INV, 0.0, "F32");
            strncat(t->name, "_scale_inv", sizeof t->name - strlen(t->name) - 1);
            snprintf(t->stream, sizeof t->stream, "%s", t->name);
        }
    }
}

static uint64_t pad_row_of(const hfgen_moe_spec *s) { return (uint64_t)(s->vocab - s->vocab / 32); }

/* Scales (see hfgen.c for the reasoning): projections keep the RMS of their
 * normalized input (std 1/sqrt(in)); q and the per-head k/v up-projection use
 * 1.2x so attention scores have std ~2 after the softmax scale; the router
 * uses 2/sqrt(hidden) so router logits have std ~2 and the chosen experts
 * change from token to token; heads 2/sqrt(hidden) give logits of std ~2. */
static void walk_layer(walker *w, int l) {
    const hfgen_moe_spec *s = w->s;
    const uint64_t D = (uint64_t)s->hidden, H = (uint64_t)s->n_heads;
    const uint64_t qh = (uint64_t)(s->qk_nope_head_dim + s->qk_rope_head_dim);
    const uint64_t kvl = (uint64_t)s->kv_lora_rank, ql = (uint64_t)s->q_lora_rank;
    const uint64_t rope = (uint64_t)s->qk_rope_head_dim, nope = (uint64_t)s->qk_nope_head_dim;
    const uint64_t vh = (uint64_t)s->v_head_dim;
    const double inD = 1.0 / sqrt((double)D);
    snprintf(w->prefix, sizeof w->prefix, "model.layers.%d.", l);
    w->layer = l;
    if (l >= s->n_layers) {   /* MTP module: its own embedding, norms, projection and head */
        const uint64_t V = (uint64_t)s->vocab;
        hfgen_moe_tensor *t = walk_slot(w);
        if (t) {
            set_tensor(t, w, "embed_tokens.weight", 0, 2, V, D, HFGEN_MOE_WEIGHT, 0.5, streq(s->dtype, "F32") ? "F32" : "BF16");
            snprintf(t->stream, sizeof t->stream, "model.embed_tokens.weight");
            t->pad_row = pad_row_of(s);
        }
        emit(w, "enorm.weight", 0, 1, D, 0, HFGEN_MOE_NORM, 0.1, false);
        emit(w, "hnorm.weight", 0, 1, D, 0, HFGEN_MOE_NORM, 0.1, false);
        emit(w, "eh_proj.weight", 0, 2, D, 2 * D, HFGEN_MOE_WEIGHT, 1.0 / sqrt(2.0 * (double)D), false);
        emit(w, "shared_head.norm.weight", 0, 1, D, 0, HFGEN_MOE_NORM, 0.1, false);
        t = walk_slot(w);
        if (t) {
            set_tensor(t, w, "shared_head.head.weight", 0, 2, V, D, HFGEN_MOE_WEIGHT, 2.0 * inD,
                       streq(s->dtype, "F32") ? "F32" : "BF16");
            snprintf(t->stream, sizeof t->stream, "lm_head.weight");
            t->pad_row = pad_row_of(s);
        }
    }
    emit(w, "input_layernorm.weight", 0, 1, D, 0, HFGEN_MOE_NORM, 0.1, false);
    if (ql == 0) {
        emit(w, "self_attn.q_proj.weight", 0, 2, H * qh, D, HFGEN_MOE_WEIGHT, 1.2 * inD, true);
    } else {
        emit(w, "self_attn.q_a_proj.weight", 0, 2, ql, D, HFGEN_MOE_WEIGHT, inD, true);
        emit(w, "self_attn.q_a_layernorm.weight", 0, 1, ql, 0, HFGEN_MOE_NORM, 0.1, false);
        emit(w, "self_attn.q_b_proj.weight", 0, 2, H * qh, ql, HFGEN_MOE_WEIGHT, 1.2 / sqrt((double)ql), true);
    }
    emit(w, "self_attn.kv_a_proj_with_mqa.weight", 0, 2, kvl + rope, D, HFGEN_MOE_WEIGHT, inD, true);
    emit(w, "self_attn.kv_a_layernorm.weight", 0, 1, kvl, 0, HFGEN_MOE_NORM, 0.1, false);
    emit(w, "self_attn.kv_b_proj.weight", 0, 2, H * (nope + vh), kvl, HFGEN_MOE_WEIGHT, 1.2 / sqrt((double)kvl), true);
    emit(w, "self_attn.o_proj.weight", 0, 2, D, H * vh, HFGEN_MOE_WEIGHT, 1.0 / sqrt((double)(H * vh)), true);
    emit(w, "post_attention_layernorm.weight", 0, 1, D, 0, HFGEN_MOE_NORM, 0.1, false);
    if (!hfgen_moe_layer_is_moe(s, l)) {
        const uint64_t F = (uint64_t)s->intermediate_size;
        emit(w, "mlp.gate_proj.weight", 0, 2, F, D, HFGEN_MOE_WEIGHT, inD, true);
        emit(w, "mlp.up_proj.weight", 0, 2, F, D, HFGEN_MOE_WEIGHT, inD, true);
        emit(w, "mlp.down_proj.weight", 0, 2, D, F, HFGEN_MOE_WEIGHT, 1.0 / sqrt((double)F), true);
        return;
    }
    const uint64_t E = (uint64_t)s->n_routed_experts, M = (uint64_t)s->moe_intermediate_size;
    emit(w, "mlp.gate.weight", 0, 2, E, D, HFGEN_MOE_WEIGHT, 2.0 * inD, false);
    if (streq(s->topk_method, "noaux_tc"))
        emit(w, "mlp.gate.e_score_correction_bias", 0, 1, E, 0, HFGEN_MOE_BIAS, 0.05, false);
    for (int e = 0; e < (int)E; e++) {
        emit(w, "mlp.experts.%d.gate_proj.weight", e, 2, M, D, HFGEN_MOE_WEIGHT, inD, true);
        emit(w, "mlp.experts.%d.up_proj.weight", e, 2, M, D, HFGEN_MOE_WEIGHT, inD, true);
        emit(w, "mlp.experts.%d.down_proj.weight", e, 2, D, M, HFGEN_MOE_WEIGHT, 1.0 / sqrt((double)M), true);
    }
    if (s->n_shared_experts > 0) {
        const uint64_t S = M * (uint64_t)s->n_shared_experts;
        emit(w, "mlp.shared_experts.gate_proj.weight", 0, 2, S, D, HFGEN_MOE_WEIGHT, inD, true);
        emit(w, "mlp.shared_experts.up_proj.weight", 0, 2, S, D, HFGEN_MOE_WEIGHT, inD, true);
        emit(w, "mlp.shared_experts.down_proj.weight", 0, 2, D, S, HFGEN_MOE_WEIGHT, 1.0 / sqrt((double)S), true);
    }
}

/* The whole model in order; *w collects per its mode. */
static void walk_model(walker *w) {
    const hfgen_moe_spec *s = w->s;
    const uint64_t D = (uint64_t)s->hidden, V = (uint64_t)s->vocab;
    const char *dt = streq(s->dtype, "F32") ? "F32" : "BF16";
    w->prefix[0] = 0;
    w->layer = -1;
    hfgen_moe_tensor *t = walk_slot(w);
    if (t) {
        set_tensor(t, w, "model.embed_tokens.weight", 0, 2, V, D, HFGEN_MOE_WEIGHT, 0.5, dt);
        t->pad_row = pad_row_of(s);
    }
    for (int l = 0; l < s->n_layers; l++) walk_layer(w, l);
    w->prefix[0] = 0;
    w->layer = -1;
    emit(w, "model.norm.weight", 0, 1, D, 0, HFGEN_MOE_NORM, 0.1, false);
    t = walk_slot(w);
    if (t) {
        set_tensor(t, w, "lm_head.weight", 0, 2, V, D, HFGEN_MOE_WEIGHT, 2.0 / sqrt((double)D), dt);
        t->pad_row = pad_row_of(s);
    }
    for (int i = 0; i < n_mtp(s); i++) walk_layer(w, s->n_layers + i);
}

int hfgen_moe_tensor_count(const hfgen_moe_spec *in) {
    const hfgen_moe_spec s = hfgen_moe_normalized(in);
    walker w = {.s = &s, .want = -1};
    walk_model(&w);
    return w.k;
}

int hfgen_moe_tensor_at(const hfgen_moe_spec *in, int i, hfgen_moe_tensor *out) {
    const hfgen_moe_spec s = hfgen_moe_normalized(in);
    if (i < 0) return -1;
    walker w = {.s = &s, .want = i, .one = out};
    walk_model(&w);
    return i < w.k ? 0 : -1;
}

/* All tensors in model order (malloc'd, *n set), or NULL. */
static hfgen_moe_tensor *tensor_list(const hfgen_moe_spec *s, int *n) {
    *n = hfgen_moe_tensor_count(s);
    hfgen_moe_tensor *all = calloc((size_t)*n, sizeof *all);
    if (!all) return NULL;
    walker w = {.s = s, .want = -1, .all = all};
    walk_model(&w);
    return all;
}

int hfgen_moe_tensor_find(const hfgen_moe_spec *in, const char *name, hfgen_moe_tensor *out) {
    const hfgen_moe_spec s = hfgen_moe_normalized(in);
    int n;
    hfgen_moe_tensor *all = tensor_list(&s, &n);
    int rc = -1;
    for (int i = 0; all && i < n && rc != 0; i++)
        if (strcmp(all[i].name, name) == 0) {
            *out = all[i];
            rc = 0;
        }
    free(all);
    return rc;
}

static size_t dtype_size(const char *dt) { return streq(dt, "F32") ? 4 : streq(dt, "BF16") ? 2 : 1; }

uint64_t hfgen_moe_param_count(const hfgen_moe_spec *in) {
    const hfgen_moe_spec s = hfgen_moe_normalized(in);
    int n;
    hfgen_moe_tensor *all = tensor_list(&s, &n);
    uint64_t total = 0;
    for (int i = 0; all && i < n; i++)
        if (all[i].kind != HFGEN_MOE_SCALE_INV) total += all[i].n_elems;
    free(all);
    return total;
}

uint64_t hfgen_moe_tensor_bytes(const hfgen_moe_spec *in) {
    const hfgen_moe_spec s = hfgen_moe_normalized(in);
    int n;
    hfgen_moe_tensor *all = tensor_list(&s, &n);
    uint64_t total = 0;
    for (int i = 0; all && i < n; i++) total += all[i].n_elems * dtype_size(all[i].dtype);
    free(all);
    return total;
}

/* ======================================================================== */
/* FP8 E4M3                                                                 */
/* ======================================================================== */

uint8_t hfgen_f32_to_fp8_e4m3(float f) {
    if (isnan(f)) return 0x7F;
    const uint8_t sign = signbit(f) ? 0x80 : 0x00;
    float a = fabsf(f);
    if (a >= FP8_MAX) return sign | 0x7E;               /* saturate at 448 */
    if (a < 0x1p-6f) {                                  /* subnormal: units of 2^-9 */
        int q = (int)rintf(a * 0x1p9f);                 /* 0..8; 8 = smallest normal 0x08 */
        return sign | (uint8_t)q;
    }
    int ex;
    frexpf(a, &ex);                                     /* a = m * 2^ex, m in [0.5, 1) */
    int e = ex - 1;                                     /* a in [2^e, 2^(e+1)) */
    int q = (int)rintf(ldexpf(a, 3 - e));               /* 8..16, nearest even */
    if (q == 16) { q = 8; e++; }
    int code = ((e + 7) << 3) | (q - 8);
    if (code > 0x7E) code = 0x7E;                       /* 464 and above rounded up past 448 */
    return sign | (uint8_t)code;
}

float hfgen_fp8_e4m3_to_f32(uint8_t b) {
    const int e = (b >> 3) & 15, m = b & 7;
    float v;
    if (e == 15 && m == 7) return NAN;
    if (e == 0) v = ldexpf((float)m, -9);
    else v = ldexpf((float)(8 + m), e - 10);
    return (b & 0x80) ? -v : v;
}

/* ======================================================================== */
/* values                                                                   */
/* ======================================================================== */

void hfgen_moe_fill(const hfgen_moe_spec *spec, const hfgen_moe_tensor *t, uint64_t first, float *dst, size_t n) {
    hfgen_spec ps;                       /* hfgen_fill reads only the seed */
    memset(&ps, 0, sizeof ps);
    ps.seed = spec->seed;
    hfgen_tensor ht;
    memset(&ht, 0, sizeof ht);
    snprintf(ht.name, sizeof ht.name, "%s", t->stream);
    ht.ndim = t->ndim;
    ht.shape[0] = t->shape[0];
    ht.shape[1] = t->shape[1];
    ht.n_elems = t->n_elems;
    ht.init = t->kind == HFGEN_MOE_NORM ? HFGEN_INIT_NORM_WEIGHT : HFGEN_INIT_NORMAL;
    ht.std = t->kind == HFGEN_MOE_BIAS ? 1.0f : t->std;
    ht.pad_row = t->pad_row;
    hfgen_fill(&ps, &ht, first, dst, n);
    if (t->kind == HFGEN_MOE_BIAS)
        for (size_t i = 0; i < n; i++) dst[i] = t->std * fabsf(dst[i]);
}

typedef struct {
    const hfgen_moe_spec *s;
    const hfgen_moe_tensor *t;
    uint64_t first;
    float *f;
} fill_ctx;

static void fill_range(void *p, size_t a, size_t b) {
    fill_ctx *c = p;
    hfgen_moe_fill(c->s, c->t, c->first + a, c->f + a, b - a);
}

static void fill_par(const hfgen_moe_spec *s, const hfgen_moe_tensor *t, uint64_t first, float *f, size_t n) {
    fill_ctx c = {s, t, first, f};
    hfw_parallel_for(n, 65536, fill_range, &c);
}

/* One 128-row band of an FP8 tensor: master values f[nr x in], E4M3 codes
 * q[nr x in], block scales sc[ceil(in/128)] (scale = amax / 448 of the
 * block, 1 for an all-zero block). */
typedef struct {
    const float *f;
    uint8_t *q;
    const float *sc;
    size_t in;
} quant_ctx;

static void quant_rows(void *p, size_t r0, size_t r1) {
    quant_ctx *c = p;
    for (size_t r = r0; r < r1; r++)
        for (size_t j = 0; j < c->in; j++)
            c->q[r * c->in + j] = hfgen_f32_to_fp8_e4m3(c->f[r * c->in + j] / c->sc[j / FP8_BLOCK]);
}

static void fp8_band(const hfgen_moe_spec *s, const hfgen_moe_tensor *t, uint64_t band, float *f, uint8_t *q,
                     float *sc) {
    const size_t in = (size_t)t->shape[1], r0 = (size_t)(band * FP8_BLOCK);
    const size_t nr = t->shape[0] - r0 < FP8_BLOCK ? (size_t)(t->shape[0] - r0) : FP8_BLOCK;
    const size_t nbc = (in + FP8_BLOCK - 1) / FP8_BLOCK;
    fill_par(s, t, (uint64_t)r0 * in, f, nr * in);
    for (size_t bc = 0; bc < nbc; bc++) {
        float amax = 0.0f;
        const size_t c0 = bc * FP8_BLOCK, c1 = c0 + FP8_BLOCK < in ? c0 + FP8_BLOCK : in;
        for (size_t r = 0; r < nr; r++)
            for (size_t j = c0; j < c1; j++) amax = fmaxf(amax, fabsf(f[r * in + j]));
        sc[bc] = amax > 0.0f ? amax / FP8_MAX : 1.0f;
    }
    quant_ctx qc = {f, q, sc, in};
    hfw_parallel_for(nr, 16, quant_rows, &qc);
}

/* The FP8 parent of a scale tensor. */
static int scale_parent(const hfgen_moe_spec *s, const hfgen_moe_tensor *t, hfgen_moe_tensor *parent) {
    char pname[96];
    size_t n = strlen(t->name), sfx = strlen("_scale_inv");
    if (n <= sfx) return -1;
    memcpy(pname, t->name, n - sfx);
    pname[n - sfx] = 0;
    return hfgen_moe_tensor_find(s, pname, parent);
}

int hfgen_moe_fill_stored(const hfgen_moe_spec *in, const hfgen_moe_tensor *t, uint64_t row0, uint64_t n_rows,
                          float *dst) {
    const hfgen_moe_spec s = hfgen_moe_normalized(in);
    const uint64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
    if (row0 > rows || n_rows > rows - row0) return -1;
    if (n_rows == 0) return 0;
    const bool is_fp8 = streq(t->dtype, "F8_E4M3");
    if (!is_fp8 && t->kind != HFGEN_MOE_SCALE_INV) {
        const size_t n = (size_t)(n_rows * cols);
        fill_par(&s, t, row0 * cols, dst, n);
        if (streq(t->dtype, "BF16"))
            for (size_t i = 0; i < n; i++) dst[i] = hfgen_bf16_to_f32(hfgen_f32_to_bf16(dst[i]));
        return 0;
    }
    hfgen_moe_tensor parent;
    const hfgen_moe_tensor *w = t;
    if (!is_fp8) {
        if (scale_parent(&s, t, &parent) != 0) return -1;
        w = &parent;
    }
    const size_t win = (size_t)w->shape[1], nbc = (win + FP8_BLOCK - 1) / FP8_BLOCK;
    float *f = malloc(FP8_BLOCK * win * sizeof *f), *sc = malloc(nbc * sizeof *sc);
    uint8_t *q = malloc(FP8_BLOCK * win);
    if (!f || !sc || !q) {
        free(f);
        free(sc);
        free(q);
        return -1;
    }
    if (!is_fp8) {   /* scale tensor: row b = the scales of band b */
        for (uint64_t b = row0; b < row0 + n_rows; b++) {
            fp8_band(&s, w, b, f, q, sc);
            memcpy(dst + (b - row0) * nbc, sc, nbc * sizeof *sc);
        }
    } else {
        for (uint64_t b = row0 / FP8_BLOCK; b * FP8_BLOCK < row0 + n_rows; b++) {
            fp8_band(&s, w, b, f, q, sc);
            uint64_t r_lo = b * FP8_BLOCK > row0 ? b * FP8_BLOCK : row0;
            uint64_t r_hi = (b + 1) * FP8_BLOCK < row0 + n_rows ? (b + 1) * FP8_BLOCK : row0 + n_rows;
            for (uint64_t r = r_lo; r < r_hi; r++)
                for (size_t j = 0; j < win; j++) {
                    const size_t k = (size_t)(r - b * FP8_BLOCK) * win + j;
                    dst[(size_t)(r - row0) * win + j] = hfgen_fp8_e4m3_to_f32(q[k]) * sc[j / FP8_BLOCK];
                }
        }
    }
    free(f);
    free(sc);
    free(q);
    return 0;
}

/* Integral values as integers (rope_theta 10000, factor 40), else a float. */
static void put_num(hfw_buf *b, double v) {
    if (v == floor(v) && fabs(v) < 1e15) hfw_printf(b, "%.0f", v);
    else hfw_float(b, v, 1);
}

/* ======================================================================== */
/* tokenizer                                                                */
/* ======================================================================== */

static const char *const SPECIAL[N_SPECIAL] = {"<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"};

/* After the BPE ids, in the order of the V3 / R1 files; special and
 * normalized flags as there. */
static const struct {
    const char *content;
    bool special;
} ADDED_AFTER[N_ADDED_AFTER] = {
    {"<think>", false},                 {"</think>", false},
    {"<｜fim▁hole｜>", false},          {"<｜fim▁begin｜>", false},
    {"<｜fim▁end｜>", false},           {"<｜User｜>", false},
    {"<｜Assistant｜>", false},         {"<|EOT|>", true},
    {"<｜tool▁calls▁begin｜>", false},  {"<｜tool▁calls▁end｜>", false},
    {"<｜tool▁call▁begin｜>", false},   {"<｜tool▁call▁end｜>", false},
    {"<｜tool▁outputs▁begin｜>", false}, {"<｜tool▁outputs▁end｜>", false},
    {"<｜tool▁output▁begin｜>", false}, {"<｜tool▁output▁end｜>", false},
    {"<｜tool▁sep｜>", false},
};

/* Text the merges are learned from (written for this generator). */
static const char *const CORPUS[] = {
    "A river begins as a few drops of rain on a mountain. The drops find each other, become a "
    "stream, and the stream finds the valley. By the time the water reaches the sea it has "
    "carried sand, leaves and stories from a thousand places along the way.\n"
    "When you read a long proof, keep a sheet of paper next to you. Write down each claim in "
    "your own words, and check that every step follows from the ones before it. If a step "
    "looks like magic, that is where the real idea of the proof is hiding.\n"
    "The market opened at eight o'clock. Farmers set out baskets of apples, pears, onions and "
    "potatoes, and the baker from the corner brought bread that was still warm. By noon most "
    "of the tables were empty, and the square was quiet again.\n"
    "In 2024 the team measured the speed of the new engine on 12 different machines. The "
    "fastest one produced 48 tokens per second, the slowest about 7. Memory bandwidth, not "
    "the number of cores, explained most of the difference between them.\n"
    "\"Where are we going?\" she asked. \"To the old station,\" he answered, \"because the "
    "last train still stops there on Sundays.\" They walked in silence for a while, listening "
    "to the wind in the tall grass beside the road.\n"
    "Think about the problem first, then write the program. A clear plan saves more time "
    "than a fast keyboard, and a small test that fails early is worth more than a large one "
    "that nobody runs. Good tools help, but good habits help more.\n"
    "The experts in a mixture of experts model are small networks. For every token a router "
    "chooses a few of them, and only those experts run. The model can therefore be very large "
    "while each token still needs only a small part of the computation.\n"
    "Our cat sleeps on the windowsill in the morning and on the sofa in the afternoon. At "
    "night she walks through the house, checks every room, and then comes back to sleep at "
    "the foot of the bed as if nothing had happened.\n"
    "To convert a temperature from Celsius to Fahrenheit, multiply by 9, divide by 5 and add "
    "32. So 20 degrees Celsius is 68 degrees Fahrenheit, and 100 degrees Celsius, where water "
    "boils at sea level, is 212 degrees Fahrenheit.\n"
    "Let me check the answer again. If the result does not make sense, we look at the input, "
    "then at each step of the method, and we try a simpler example where we already know what "
    "the correct answer should be.\n"
    "The library keeps its oldest maps in a cool room behind the reading hall. Visitors may "
    "look at them on Thursdays, wearing white gloves, while a librarian explains how sailors "
    "drew the coast long before anyone could see it from the air.\n"
    "Write the story in short sentences. Give each character something they want, and put "
    "something in their way. The reader will follow them to find out whether they get it, "
    "and what it costs them in the end.\n",
};

/* Length of the pre-token at s[i] (ASCII approximation of the DeepSeek-V3
 * splits, good enough to learn merges from): 1-3 digits | punct + letters |
 * optional space + letters | optional space + punct run + newlines |
 * whitespace. */
static size_t pretok_len(const char *s, size_t i, size_t n) {
    int c = (unsigned char)s[i];
    size_t j = i;
    if (hfw_is_digit(c)) {
        while (j < n && hfw_is_digit(s[j]) && j - i < 3) j++;
        return j - i;
    }
    if (hfw_is_punct(c) && i + 1 < n && hfw_is_letter(s[i + 1])) {
        for (j = i + 1; j < n && hfw_is_letter(s[j]); j++) {}
        return j - i;
    }
    if (hfw_is_letter(c) || (c == ' ' && i + 1 < n && hfw_is_letter(s[i + 1]))) {
        for (j = i + 1; j < n && hfw_is_letter(s[j]); j++) {}
        return j - i;
    }
    if (hfw_is_punct(c) || (c == ' ' && i + 1 < n && hfw_is_punct(s[i + 1]))) {
        for (j = i + 1; j < n && hfw_is_punct(s[j]); j++) {}
        while (j < n && s[j] == '\n') j++;
        return j - i;
    }
    for (j = i; j < n && hfw_is_space(s[j]); j++) {}
    if (j < n && j - i >= 2 && s[j - 1] == ' ') j--;   /* \s+(?!\S): leave one space for the word */
    return j > i ? j - i : 1;
}

/* New BPE tokens the vocab budget allows: vocab - vocab/32 ids in all. */
static int merge_budget(const hfgen_moe_spec *s) { return s->vocab - s->vocab / 32 - N_SPECIAL - 256 - N_ADDED_AFTER; }

/* Merges learned from CORPUS after the N_SPECIAL reserved ids and the byte
 * tokens, until the budget is spent or every word is one token. */
static int bpe_train(const hfgen_moe_spec *s, hfw_bpe *out) {
    int max_new = merge_budget(s);
    if (max_new < 0) max_new = 0;
    return hfw_bpe_train(CORPUS, 1, pretok_len, N_SPECIAL, max_new, 2 * max_new + 16, out);
}

static int bpe_size(const hfgen_moe_spec *in) {
    const hfgen_moe_spec s = hfgen_moe_normalized(in);
    hfw_bpe b;
    if (bpe_train(&s, &b) != 0) return -1;
    int n = b.n_tok;
    hfw_bpe_free(&b);
    return n;
}

int hfgen_moe_tokenizer_size(const hfgen_moe_spec *spec) {
    int n = bpe_size(spec);
    return n < 0 ? -1 : n + N_ADDED_AFTER;
}

int hfgen_moe_bos_id(const hfgen_moe_spec *spec) { (void)spec; return 0; }
int hfgen_moe_eos_id(const hfgen_moe_spec *spec) { (void)spec; return 1; }

int hfgen_moe_added_token_id(const hfgen_moe_spec *spec, const char *content) {
    for (int i = 0; i < N_SPECIAL; i++)
        if (streq(content, SPECIAL[i])) return i;
    for (int i = 0; i < N_ADDED_AFTER; i++)
        if (streq(content, ADDED_AFTER[i].content)) {
            int n = bpe_size(spec);
            return n < 0 ? -1 : n + i;
        }
    return -1;
}

/* The DeepSeek-V3 pre_tokenizer, as in the release's tokenizer.json. */
static const char DS_PRETOK[] =
    "{\n  \"type\": \"Sequence\",\n  \"pretokenizers\": [\n    {\n      \"type\": \"Split\",\n   "
    "   \"pattern\": {\n        \"Regex\": \"\\\\p{N}{1,3}\"\n      },\n      \"behavior\": \"Iso"
    "lated\",\n      \"invert\": false\n    },\n    {\n      \"type\": \"Split\",\n      \"patter"
    "n\": {\n        \"Regex\": \"[一-龥぀-ゟ゠-ヿ]+\"\n      },\n      \"behavior\": \"Isolated\",\n  "
    "    \"invert\": false\n    },\n    {\n      \"type\": \"Split\",\n      \"pattern\": {\n    "
    "    \"Regex\": \"[!\\\"#$%&'()*+,\\\\-./:;<=>?@\\\\[\\\\\\\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n"
    "\\\\p{L}\\\\p{P}\\\\p{S}]?[\\\\p{L}\\\\p{M}]+| ?[\\\\p{P}\\\\p{S}]+[\\r\\n]*|\\\\s*[\\r\\n]+"
    "|\\\\s+(?!\\\\S)|\\\\s+\"\n      },\n      \"behavior\": \"Isolated\",\n      \"invert\": fa"
    "lse\n    },\n    {\n      \"type\": \"ByteLevel\",\n      \"add_prefix_space\": false,\n    "
    "  \"trim_offsets\": true,\n      \"use_regex\": false\n    }\n  ]\n}";

static void tokenizer_json(hfw_buf *b, const hfw_bpe *t) {
    hfw_added_token add[N_SPECIAL + N_ADDED_AFTER];
    for (int i = 0; i < N_SPECIAL; i++) add[i] = (hfw_added_token){i, SPECIAL[i], true, false};
    for (int i = 0; i < N_ADDED_AFTER; i++)
        add[N_SPECIAL + i] = (hfw_added_token){t->n_tok + i, ADDED_AFTER[i].content, ADDED_AFTER[i].special,
                                               !ADDED_AFTER[i].special};
    hfw_tokenizer_head(b, add, N_SPECIAL + N_ADDED_AFTER);
    hfw_puts(b, "  \"normalizer\": {\n    \"type\": \"Sequence\",\n    \"normalizers\": []\n  },\n");
    hfw_puts(b, "  \"pre_tokenizer\": ");
    hfw_puts(b, DS_PRETOK);
    hfw_puts(b, ",\n  \"post_processor\": ");
    hfw_bytelevel_json(b, "  ", true, false, true);
    hfw_puts(b, ",\n  \"decoder\": ");
    hfw_bytelevel_json(b, "  ", true, true, true);
    hfw_puts(b, ",\n");
    hfw_tokenizer_model(b, t, SPECIAL, "null", NULL, false);
    hfw_puts(b, "\n");
}

/* ======================================================================== */
/* JSON files                                                               */
/* ======================================================================== */

/* The chat_template strings of the releases: DeepSeek-V2(-Lite)-Chat,
 * DeepSeek-V3, DeepSeek-R1 (the same texts as test/data/templates). */
static const char TMPL_V2[] =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif"
    " %}{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ 'User: '"
    " + message['content'] + '\\n\\n' }}{% elif message['role'] == 'assistant' %}{{ 'Assistant: '"
    " + message['content'] + eos_token }}{% elif message['role'] == 'system' %}{{ message['conten"
    "t'] + '\\n\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% e"
    "ndif %}";

static const char TMPL_V3[] =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif"
    " %}{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt="
    "'', is_first_sp=true) %}{%- for message in messages %}{%- if message['role'] == 'system' %}{"
    "%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %}{% "
    "set ns.is_first_sp = false %}{%- else %}{% set ns.system_prompt = ns.system_prompt + '\n\n' "
    "+ message['content'] %}{%- endif %}{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt}"
    "}{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false"
    " -%}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'] == 'assistant' and"
    " message['content'] is none %}{%- set ns.is_tool = false -%}{%- for tool in message['tool_ca"
    "lls']%}{%- if not ns.is_first %}{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + t"
    "ool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['fu"
    "nction']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{%- set ns.is_first = true -%}{%"
    "- else %}{{'\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['"
    "name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁ca"
    "ll▁end｜>'}}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}{"
    "%- if message['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool "
    "%}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool "
    "= false -%}{%- else %}{{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- en"
    "dif %}{%- endif %}{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns."
    "is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜"
    "tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}{%- else %}{{'\n<｜tool▁output▁begin"
    "｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}{% i"
    "f ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}{% if add_generation_prompt and not ns.i"
    "s_tool %}{{'<｜Assistant｜>'}}{% endif %}";

static const char *chat_template_text(const hfgen_moe_spec *s) {
    if (streq(s->chat_template, "deepseek-v2")) return TMPL_V2;
    if (streq(s->chat_template, "deepseek-r1")) return hfw_r1_chat_template;
    return TMPL_V3;
}

/* config.json with the keys (alphabetical, as transformers writes them) of
 * the DeepSeek-V2-Lite and DeepSeek-V3 releases. */
static void config_json(hfw_buf *b, const hfgen_moe_spec *s) {
    const bool v3 = is_v3(s);
    const char *cls = v3 ? "DeepseekV3" : "DeepseekV2";
    hfw_printf(b, "{\n  \"architectures\": [\n    \"%sForCausalLM\"\n  ],\n", cls);
    hfw_printf(b,
               "  \"attention_bias\": false,\n  \"attention_dropout\": 0.0,\n  \"auto_map\": {\n"
               "    \"AutoConfig\": \"configuration_deepseek.%sConfig\",\n"
               "    \"AutoModel\": \"modeling_deepseek.%sModel\",\n"
               "    \"AutoModelForCausalLM\": \"modeling_deepseek.%sForCausalLM\"\n  },\n",
               cls, cls, cls);
    hfw_printf(b, "  \"aux_loss_alpha\": 0.001,\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n",
               hfgen_moe_bos_id(s), hfgen_moe_eos_id(s));
    if (v3) hfw_puts(b, "  \"ep_size\": 1,\n");
    hfw_printf(b,
               "  \"first_k_dense_replace\": %d,\n  \"hidden_act\": \"silu\",\n  \"hidden_size\": %d,\n"
               "  \"initializer_range\": 0.02,\n  \"intermediate_size\": %d,\n  \"kv_lora_rank\": %d,\n"
               "  \"max_position_embeddings\": %d,\n  \"model_type\": \"%s\",\n"
               "  \"moe_intermediate_size\": %d,\n  \"moe_layer_freq\": %d,\n  \"n_group\": %d,\n",
               s->first_k_dense_replace, s->hidden, s->intermediate_size, s->kv_lora_rank, s->max_pos, s->arch,
               s->moe_intermediate_size, s->moe_layer_freq, s->n_group);
    if (s->n_routed_experts > 0) hfw_printf(b, "  \"n_routed_experts\": %d,\n", s->n_routed_experts);
    else hfw_puts(b, "  \"n_routed_experts\": null,\n");
    if (s->n_shared_experts > 0) hfw_printf(b, "  \"n_shared_experts\": %d,\n", s->n_shared_experts);
    else hfw_puts(b, "  \"n_shared_experts\": null,\n");
    hfw_printf(b,
               "  \"norm_topk_prob\": %s,\n  \"num_attention_heads\": %d,\n  \"num_experts_per_tok\": %d,\n"
               "  \"num_hidden_layers\": %d,\n  \"num_key_value_heads\": %d,\n",
               s->norm_topk_prob ? "true" : "false", s->n_heads, s->num_experts_per_tok, s->n_layers, s->n_heads);
    if (v3) hfw_printf(b, "  \"num_nextn_predict_layers\": %d,\n", s->num_nextn_predict_layers);
    hfw_puts(b, "  \"pretraining_tp\": 1,\n");
    if (s->q_lora_rank > 0) hfw_printf(b, "  \"q_lora_rank\": %d,\n", s->q_lora_rank);
    else hfw_puts(b, "  \"q_lora_rank\": null,\n");
    hfw_printf(b, "  \"qk_nope_head_dim\": %d,\n  \"qk_rope_head_dim\": %d,\n", s->qk_nope_head_dim, s->qk_rope_head_dim);
    if (fp8_on(s))
        hfw_puts(b,
                "  \"quantization_config\": {\n    \"activation_scheme\": \"dynamic\",\n    \"fmt\": \"e4m3\",\n"
                "    \"quant_method\": \"fp8\",\n    \"weight_block_size\": [\n      128,\n      128\n    ]\n  },\n");
    hfw_puts(b, "  \"rms_norm_eps\": ");
    hfw_float(b, s->rms_norm_eps, 1);
    hfw_puts(b, ",\n  \"rope_scaling\": ");
    if (s->yarn) {
        hfw_puts(b, "{\n    \"beta_fast\": ");
        put_num(b, s->beta_fast);
        hfw_puts(b, ",\n    \"beta_slow\": ");
        put_num(b, s->beta_slow);
        hfw_puts(b, ",\n    \"factor\": ");
        put_num(b, s->rope_factor);
        hfw_puts(b, ",\n    \"mscale\": ");
        hfw_float(b, s->mscale, 1);
        hfw_puts(b, ",\n    \"mscale_all_dim\": ");
        hfw_float(b, s->mscale_all_dim, 1);
        hfw_printf(b, ",\n    \"original_max_position_embeddings\": %d,\n    \"type\": \"yarn\"\n  }",
                   s->rope_orig_max_pos);
    } else {
        hfw_puts(b, "null");
    }
    hfw_puts(b, ",\n  \"rope_theta\": ");
    put_num(b, s->rope_theta);
    hfw_puts(b, ",\n  \"routed_scaling_factor\": ");
    hfw_float(b, s->routed_scaling_factor, 1);
    hfw_printf(b,
               ",\n  \"scoring_func\": \"%s\",\n  \"seq_aux\": true,\n  \"tie_word_embeddings\": false,\n"
               "  \"topk_group\": %d,\n  \"topk_method\": \"%s\",\n  \"torch_dtype\": \"%s\",\n"
               "  \"transformers_version\": \"%s\",\n  \"use_cache\": true,\n  \"v_head_dim\": %d,\n"
               "  \"vocab_size\": %d\n}\n",
               s->scoring_func, s->topk_group, s->topk_method, streq(s->dtype, "F32") ? "float32" : "bfloat16",
               v3 ? "4.46.3" : "4.33.1", s->v_head_dim, s->vocab);
}

/* ======================================================================== */
/* safetensors data                                                         */
/* ======================================================================== */

/* Streaming state: the tensor list, buffers (a chunk of values or one FP8
 * band), the block scales of the last FP8 tensor written (its
 * weight_scale_inv follows it), progress. */
typedef struct {
    const hfgen_moe_spec *s;
    const hfgen_moe_tensor *list;  /* model order */
    const hfgen_moe_tensor *t;     /* the BF16 / F32 tensor being written */
    hfw_scratch scratch;
    char scales_of[96 + 16];   /* a tensor name (96) + "_scale_inv" */
    float *scales;
    size_t n_scales, cap_scales;
    uint64_t done, total;
    hfgen_moe_progress_fn progress;
    void *user;
} writer;

static void moe_values(void *ctx, uint64_t first, size_t n, float *scratch, uint8_t *out) {
    const writer *w = ctx;
    hfgen_moe_fill(w->s, w->t, first, scratch, n);
    hfgen_encode(w->t->dtype, scratch, out, n);
}

static bool write_f32s(FILE *f, const float *v, size_t n) {
    uint8_t buf[4 * 256];
    for (size_t i = 0; i < n; i += 256) {
        const size_t m = n - i < 256 ? n - i : 256;
        hfgen_encode("F32", v + i, buf, m);
        if (fwrite(buf, 4, m, f) != m) return false;
    }
    return true;
}

/* Writes the data of one tensor. */
static bool write_tensor_data(writer *w, FILE *f, const hfgen_moe_tensor *t) {
    const hfgen_moe_spec *s = w->s;
    if (streq(t->dtype, "F8_E4M3")) {
        const size_t in = (size_t)t->shape[1], nbc = (in + FP8_BLOCK - 1) / FP8_BLOCK;
        const uint64_t nb = (t->shape[0] + FP8_BLOCK - 1) / FP8_BLOCK;
        if (!hfw_scratch_reserve(&w->scratch, FP8_BLOCK * in, 1)) return false;
        if (nb * nbc > w->cap_scales) {
            float *p = realloc(w->scales, (size_t)(nb * nbc) * sizeof *p);
            if (!p) return false;
            w->scales = p;
            w->cap_scales = (size_t)(nb * nbc);
        }
        for (uint64_t b = 0; b < nb; b++) {
            const size_t nr = t->shape[0] - b * FP8_BLOCK < FP8_BLOCK ? (size_t)(t->shape[0] - b * FP8_BLOCK) : FP8_BLOCK;
            fp8_band(s, t, b, w->scratch.f, w->scratch.o, w->scales + b * nbc);
            if (fwrite(w->scratch.o, 1, nr * in, f) != nr * in) return false;
        }
        snprintf(w->scales_of, sizeof w->scales_of, "%s_scale_inv", t->name);
        w->n_scales = (size_t)(nb * nbc);
        return true;
    }
    if (t->kind == HFGEN_MOE_SCALE_INV) {
        if (strcmp(w->scales_of, t->name) == 0 && w->n_scales == t->n_elems)
            return write_f32s(f, w->scales, w->n_scales);
        float *sc = malloc((size_t)t->n_elems * sizeof *sc);   /* parent not just written: regenerate */
        bool ok = sc && hfgen_moe_fill_stored(s, t, 0, t->shape[0], sc) == 0 && write_f32s(f, sc, (size_t)t->n_elems);
        free(sc);
        return ok;
    }
    w->t = t;
    return hfw_write_values(f, t->n_elems, dtype_size(t->dtype), moe_values, w, &w->scratch);
}

static bool moe_data(void *user, FILE *f, const hfw_entry *e) {
    writer *w = user;
    const bool ok = write_tensor_data(w, f, &w->list[e->index]);
    w->done += e->nbytes;
    if (ok && w->progress) w->progress(w->user, w->done, w->total);
    return ok;
}

int hfgen_moe_write(const char *dir, const hfgen_moe_spec *in, hfgen_moe_progress_fn progress, void *user,
                    hfgen_stats *stats, deepc_err *err) {
    hfw_out o;
    hfw_bpe tok = {0};
    hfw_entry *es = NULL;
    hfgen_moe_tensor *list = NULL;
    hfw_buf b = {0};
    int rc = -1;
    if (!dir || !in) return hfw_fail(err, "hfgen_moe: no directory or spec");
    if (hfgen_moe_validate(in, err) != 0) return -1;
    const hfgen_moe_spec s = hfgen_moe_normalized(in);
    writer w = {.s = &s, .progress = progress, .user = user};
    if (hfw_open(&o, dir, "hfgen_moe", err) != 0) return -1;

    if (bpe_train(&s, &tok) != 0) { hfw_fail(err, "hfgen_moe: out of memory (tokenizer)"); goto done; }
    config_json(&b, &s);
    if (hfw_write_text(&o, "config.json", &b) != 0) goto done;
    hfw_generation_config_json(&b, hfgen_moe_bos_id(&s), hfgen_moe_eos_id(&s), is_v3(&s) ? "0.6" : "0.3",
                               is_v3(&s) ? "4.46.3" : "4.33.1");
    if (hfw_write_text(&o, "generation_config.json", &b) != 0) goto done;
    tokenizer_json(&b, &tok);
    if (hfw_write_text(&o, "tokenizer.json", &b) != 0) goto done;
    hfw_tokenizer_config_json(&b, SPECIAL[0], SPECIAL[1], streq(s.chat_template, "deepseek-v3") ? 131072 : 16384,
                              chat_template_text(&s));
    if (hfw_write_text(&o, "tokenizer_config.json", &b) != 0) goto done;

    int nt;
    list = tensor_list(&s, &nt);
    es = calloc((size_t)nt, sizeof *es);
    if (!list || !es) { hfw_fail(err, "hfgen_moe: out of memory"); goto done; }
    for (int i = 0; i < nt; i++) {
        const hfgen_moe_tensor *t = &list[i];
        es[i] = (hfw_entry){.dtype = t->dtype, .ndim = t->ndim, .shape = {t->shape[0], t->shape[1]},
                            .nbytes = t->n_elems * dtype_size(t->dtype), .opens_shard = t->kind != HFGEN_MOE_SCALE_INV,
                            .index = i};
        memcpy(es[i].name, t->name, sizeof es[i].name);
        w.total += es[i].nbytes;
    }
    w.list = list;
    /* a scale tensor stays in its weight's shard; DeepSeek's shard names
     * are model-00001-of-000163.safetensors */
    rc = hfw_write_safetensors(&o, es, nt, s.n_shards, 6, moe_data, &w);
done:
    hfw_bpe_free(&tok);
    free(list);
    free(es);
    free(b.p);
    hfw_scratch_free(&w.scratch);
    free(w.scales);
    if (stats) *stats = (hfgen_stats){o.tensor_bytes, o.file_bytes, o.n_files};
    return rc;
}
