/* model.c - opens a .dqf file as a model: reads and validates the
 * hyperparameters, binds every weight to its view with its expected shape,
 * builds the tokenizer from the embedded data, and decides where the weights
 * live: read into one owned huge-page buffer (default) or used in place from
 * the file mapping, optionally locked in RAM. */
#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const char *const arch_names[DEEPC_ARCH_COUNT] = { "qwen2", "llama", "deepseek2", "deepseek3" };

const char *deepc_arch_name(deepc_arch a) {
    return (unsigned)a < DEEPC_ARCH_COUNT ? arch_names[a] : "unknown";
}

/* Binds tensor `name` of shape [rows, cols] (cols only when rows == 0 means a
 * 1-D vector). Vectors must be F32. */
static int bind(const deepc_dqf *d, const char *name, int rows, int cols, deepc_wt *w, deepc_err *err) {
    const deepc_dqf_tensor *t = deepc_dqf_find(d, name);
    if (!t) return deepc_errf(err, DEEPC_ERR_FORMAT, "missing tensor '%s'", name);
    bool vec = rows == 0;
    if (vec ? (t->ndim != 1 || t->dims[0] != (uint64_t)cols)
            : (t->ndim != 2 || t->dims[0] != (uint64_t)rows || t->dims[1] != (uint64_t)cols))
        return deepc_errf(err, DEEPC_ERR_FORMAT, "tensor '%s' has shape [%llu%s%llu], expected [%d%s%d]", name,
                          (unsigned long long)t->dims[0], t->ndim > 1 ? ", " : "",
                          t->ndim > 1 ? (unsigned long long)t->dims[1] : 0ull,
                          vec ? cols : rows, vec ? "" : ", ", vec ? 0 : cols);
    if (vec && t->type != DEEPC_TYPE_F32)
        return deepc_errf(err, DEEPC_ERR_FORMAT, "tensor '%s' must be f32, is %s", name, deepc_type_info(t->type)->name);
    w->data = t->data;
    w->type = t->type;
    w->rows = vec ? 1 : rows;
    w->cols = cols;
    w->row_bytes = deepc_type_row_bytes(t->type, (size_t)cols);
    return 0;
}

static int get_u32(const deepc_dqf *d, const char *key, int lo, int hi, int *out, deepc_err *err) {
    uint32_t v;
    if (!deepc_dqf_get_u32(d, key, &v)) return deepc_errf(err, DEEPC_ERR_FORMAT, "missing metadata '%s'", key);
    if ((int64_t)v < lo || (int64_t)v > hi) return deepc_errf(err, DEEPC_ERR_FORMAT, "metadata '%s' = %u is out of range [%d, %d]", key, v, lo, hi);
    *out = (int)v;
    return 0;
}

static int get_f32(const deepc_dqf *d, const char *key, float lo, float hi, float *out, deepc_err *err) {
    float v;
    if (!deepc_dqf_get_f32(d, key, &v)) return deepc_errf(err, DEEPC_ERR_FORMAT, "missing metadata '%s'", key);
    if (!(v >= lo && v <= hi)) return deepc_errf(err, DEEPC_ERR_FORMAT, "metadata '%s' = %g is out of range [%g, %g]", key, v, lo, hi);
    *out = v;
    return 0;
}

static int read_hparams(const deepc_dqf *d, deepc_hparams *hp, char *arch_name, deepc_err *err) {
    const char *s;
    size_t n;
    if (!deepc_dqf_get_str(d, "general.architecture", &s, &n)) return deepc_errf(err, DEEPC_ERR_FORMAT, "missing metadata 'general.architecture'");
    int a = -1;
    for (int i = 0; i < DEEPC_ARCH_COUNT; i++)
        if (strlen(arch_names[i]) == n && !memcmp(arch_names[i], s, n)) a = i;
    if (a < 0) return deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "architecture '%.*s' is not supported by this build (supported: qwen2, llama, deepseek2, deepseek3)", (int)(n > 64 ? 64 : n), s);
    hp->arch = (deepc_arch)a;
    snprintf(arch_name, 16, "%s", arch_names[a]);
    int rc = get_u32(d, "llm.n_layers", 1, 1024, &hp->n_layers, err);
    if (!rc) rc = get_u32(d, "llm.n_embd", 1, 1 << 16, &hp->n_embd, err);
    if (!rc) rc = get_u32(d, "llm.n_ff", 1, 1 << 20, &hp->n_ff, err);
    if (!rc) rc = get_u32(d, "llm.n_heads", 1, 1024, &hp->n_heads, err);
    if (!rc) rc = get_u32(d, "llm.n_kv_heads", 1, 1024, &hp->n_kv_heads, err);
    if (!rc) rc = get_u32(d, "llm.head_dim", 2, 1024, &hp->head_dim, err);
    if (!rc) rc = get_u32(d, "llm.n_vocab", 1, 1 << 24, &hp->n_vocab, err);
    if (!rc) rc = get_u32(d, "llm.n_ctx_train", 1, 1 << 24, &hp->n_ctx_train, err);
    if (!rc) rc = get_f32(d, "llm.rope_theta", 1.0f, 1e12f, &hp->rope_theta, err);
    if (!rc) rc = get_f32(d, "llm.norm_eps", 0.0f, 1.0f, &hp->norm_eps, err);
    if (!rc) rc = get_u32(d, "llm.rope_scaling", 0, 2, &hp->rope_scaling, err);
    if (rc) return rc;
    if (hp->rope_scaling == DEEPC_ROPE_SCALING_LLAMA3) {
        rc = get_f32(d, "llm.rope_factor", 1.0f, 1e6f, &hp->rope_factor, err);
        if (!rc) rc = get_f32(d, "llm.rope_low_freq_factor", 1e-6f, 1e6f, &hp->rope_low_freq_factor, err);
        if (!rc) rc = get_f32(d, "llm.rope_high_freq_factor", 1e-6f, 1e6f, &hp->rope_high_freq_factor, err);
        if (!rc) rc = get_u32(d, "llm.rope_orig_ctx", 1, 1 << 24, &hp->rope_orig_ctx, err);
        if (rc) return rc;
        if (hp->rope_high_freq_factor <= hp->rope_low_freq_factor)
            return deepc_errf(err, DEEPC_ERR_FORMAT, "rope scaling: high_freq_factor must exceed low_freq_factor");
    }
    if (hp->rope_scaling == DEEPC_ROPE_SCALING_YARN) {
        hp->yarn.rope_theta = hp->rope_theta;
        rc = get_f32(d, "llm.rope_factor", 1.0f, 1e6f, &hp->yarn.factor, err);
        if (!rc) rc = get_u32(d, "llm.rope_orig_ctx", 1, 1 << 24, &hp->yarn.original_max_position_embeddings, err);
        if (!rc) rc = get_f32(d, "llm.yarn_beta_fast", 0.0f, 1e6f, &hp->yarn.beta_fast, err);
        if (!rc) rc = get_f32(d, "llm.yarn_beta_slow", 0.0f, 1e6f, &hp->yarn.beta_slow, err);
        if (!rc) rc = get_f32(d, "llm.yarn_mscale", 0.0f, 1e6f, &hp->yarn.mscale, err);
        if (!rc) rc = get_f32(d, "llm.yarn_mscale_all_dim", 0.0f, 1e6f, &hp->yarn.mscale_all_dim, err);
        if (rc) return rc;
    }
    if (deepc_arch_is_mla(hp->arch)) {
        if (hp->rope_scaling == DEEPC_ROPE_SCALING_LLAMA3) return deepc_errf(err, DEEPC_ERR_FORMAT, "llama3 rope scaling on a DeepSeek model");
        int tk = 0, ng = 0, tg = 0, sf = 0, tm = 0, ver = 0, ne = 0;
        bool norm = false;
        rc = get_u32(d, "llm.q_lora_rank", 0, 1 << 16, &hp->q_lora_rank, err);
        if (!rc) rc = get_u32(d, "llm.kv_lora_rank", 1, 1 << 16, &hp->kv_lora_rank, err);
        if (!rc) rc = get_u32(d, "llm.qk_nope_head_dim", 1, 4096, &hp->qk_nope, err);
        if (!rc) rc = get_u32(d, "llm.qk_rope_head_dim", 2, 4096, &hp->qk_rope, err);
        if (!rc) rc = get_u32(d, "llm.v_head_dim", 1, 4096, &hp->v_head, err);
        if (!rc) rc = get_u32(d, "llm.n_ff_exp", 1, 1 << 20, &hp->n_ff_exp, err);
        if (!rc) rc = get_u32(d, "llm.n_expert", 1, 1 << 16, &ne, err);
        if (!rc) rc = get_u32(d, "llm.n_expert_shared", 0, 64, &hp->n_expert_shared, err);
        if (!rc) rc = get_u32(d, "llm.n_expert_used", 1, 1 << 16, &tk, err);
        if (!rc) rc = get_u32(d, "llm.first_k_dense", 0, hp->n_layers, &hp->first_k_dense, err);
        if (!rc) rc = get_u32(d, "llm.n_group", 1, 1 << 16, &ng, err);
        if (!rc) rc = get_u32(d, "llm.topk_group", 1, 1 << 16, &tg, err);
        if (!rc) rc = get_u32(d, "llm.score_func", 0, 1, &sf, err);
        if (!rc) rc = get_u32(d, "llm.topk_method", 0, 2, &tm, err);
        if (!rc) rc = get_u32(d, "llm.route_version", 2, 3, &ver, err);
        if (!rc) rc = get_u32(d, "llm.n_mtp", 0, 64, &hp->n_mtp, err);
        if (!rc) rc = get_f32(d, "llm.routed_scaling_factor", 1e-6f, 1e6f, &hp->route.routed_scaling_factor, err);
        if (rc) return rc;
        if (!deepc_dqf_get_bool(d, "llm.norm_topk_prob", &norm) || !deepc_dqf_get_bool(d, "llm.expert_bias", &hp->expert_bias))
            return deepc_errf(err, DEEPC_ERR_FORMAT, "missing metadata 'llm.norm_topk_prob' or 'llm.expert_bias'");
        hp->route.n_experts = ne; hp->route.top_k = tk; hp->route.n_group = ng; hp->route.topk_group = tg;
        hp->route.score = (deepc_score_func)sf; hp->route.method = (deepc_topk_method)tm;
        hp->route.norm_topk_prob = norm; hp->route.version = ver;
        char msg[256];
        if (deepc_route_validate(&hp->route, msg, sizeof msg)) return deepc_errf(err, DEEPC_ERR_FORMAT, "MoE routing: %s", msg);
        if (hp->qk_rope % 2) return deepc_errf(err, DEEPC_ERR_FORMAT, "qk_rope_head_dim %d is odd", hp->qk_rope);
        if (hp->head_dim != hp->qk_nope + hp->qk_rope) return deepc_errf(err, DEEPC_ERR_FORMAT, "head_dim %d != qk_nope + qk_rope", hp->head_dim);
    }
    if (hp->head_dim % 2) return deepc_errf(err, DEEPC_ERR_FORMAT, "head_dim %d is odd", hp->head_dim);
    if (hp->n_heads % hp->n_kv_heads) return deepc_errf(err, DEEPC_ERR_FORMAT, "n_heads %d is not a multiple of n_kv_heads %d", hp->n_heads, hp->n_kv_heads);
    if (!deepc_dqf_get_bool(d, "llm.attn_bias", &hp->attn_bias) || !deepc_dqf_get_bool(d, "llm.tied_embeddings", &hp->tied_embeddings))
        return deepc_errf(err, DEEPC_ERR_FORMAT, "missing metadata 'llm.attn_bias' or 'llm.tied_embeddings'");
    return 0;
}

void deepc_rope_inv_freq(const deepc_hparams *hp, float *inv_freq) {
    int half = hp->head_dim / 2;
    for (int i = 0; i < half; i++) {
        /* HF computes base ** (2i/d) in float32; the double here rounds to the same float for all practical d */
        float f = (float)(1.0 / pow((double)hp->rope_theta, (double)(2 * i) / (double)hp->head_dim));
        if (hp->rope_scaling == DEEPC_ROPE_SCALING_LLAMA3) {
            /* transformers _compute_llama3_parameters: long wavelengths are divided by the factor,
             * short ones kept, and the band between is interpolated */
            float factor = hp->rope_factor, lo = hp->rope_low_freq_factor, hi = hp->rope_high_freq_factor;
            float old_ctx = (float)hp->rope_orig_ctx;
            float low_wavelen = old_ctx / lo, high_wavelen = old_ctx / hi;
            float wavelen = 2.0f * (float)M_PI / f;
            float g = wavelen > low_wavelen ? f / factor : f;
            if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
                float smooth = (old_ctx / wavelen - lo) / (hi - lo);
                g = (1.0f - smooth) * g / factor + smooth * g;
            }
            f = g;
        }
        inv_freq[i] = f;
    }
}

static int read_tokdata(const deepc_dqf *d, deepc_tokdata *td, deepc_err *err) {
    uint32_t nv;
    if (!deepc_dqf_get_u32(d, "tokenizer.n_vocab", &nv)) return 1; /* no tokenizer: fine */
    const void *p;
    uint64_t n_offs, n_text, n_flags, n_merges;
    if (!deepc_dqf_get_array(d, "tokenizer.offs", DEEPC_META_U32, &p, &n_offs) || n_offs != (uint64_t)nv + 1)
        return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer: token offsets missing or of the wrong length");
    td->offs = (uint32_t *)p;
    if (!deepc_dqf_get_array(d, "tokenizer.text", DEEPC_META_U8, &p, &n_text))
        return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer: token text missing");
    td->text = (uint8_t *)p;
    if (!deepc_dqf_get_array(d, "tokenizer.flags", DEEPC_META_U32, &p, &n_flags) || n_flags != nv)
        return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer: token flags missing or of the wrong length");
    td->flags = (uint32_t *)p;
    if (!deepc_dqf_get_array(d, "tokenizer.merges", DEEPC_META_U32, &p, &n_merges) || n_merges % 2)
        return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer: merges missing or of odd length");
    td->merges = (uint32_t *)p;
    td->n_vocab = nv;
    td->n_merges = (uint32_t)(n_merges / 2);
    if (td->offs[0] != 0 || td->offs[nv] != n_text) return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer: token offsets do not cover the text");
    for (uint32_t i = 0; i < nv; i++)
        if (td->offs[i + 1] < td->offs[i]) return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer: token offsets decrease at id %u", i);
    for (uint64_t i = 0; i < n_merges; i++)
        if (td->merges[i] >= nv) return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer: merge %llu names id %u >= vocab %u", (unsigned long long)(i / 2), td->merges[i], nv);
    if (!deepc_dqf_get_u32(d, "tokenizer.pretok", &td->pretok) || td->pretok >= DEEPC_PRETOK_COUNT ||
        !deepc_dqf_get_u32(d, "tokenizer.normalizer", &td->normalizer) || td->normalizer >= DEEPC_NORM_COUNT ||
        !deepc_dqf_get_u32(d, "tokenizer.gflags", &td->gflags) ||
        !deepc_dqf_get_u32(d, "tokenizer.chat_template", &td->chat_template) || td->chat_template >= DEEPC_TMPL_COUNT ||
        !deepc_dqf_get_i32(d, "tokenizer.bos_id", &td->bos_id) || td->bos_id < -1 || td->bos_id >= (int32_t)nv ||
        !deepc_dqf_get_i32(d, "tokenizer.eos_id", &td->eos_id) || td->eos_id < -1 || td->eos_id >= (int32_t)nv ||
        !deepc_dqf_get_i32(d, "tokenizer.pad_id", &td->pad_id) || td->pad_id < -1 || td->pad_id >= (int32_t)nv)
        return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer: kind, flags or special ids missing or out of range");
    return 0;
}

static int bind_mla(deepc_model *m, deepc_err *err) {
    const deepc_hparams *hp = &m->hp;
    const deepc_dqf *d = m->dqf;
    int E = hp->n_embd, H = hp->n_heads, QH = hp->qk_nope + hp->qk_rope, R = hp->kv_lora_rank;
    int X = hp->route.n_experts, FX = hp->n_ff_exp, FS = hp->n_ff_exp * hp->n_expert_shared;
    char nm[160];
    int rc = 0;
    m->expert_block = calloc((size_t)hp->n_layers * X * 3, sizeof *m->expert_block);
    if (!m->expert_block) return deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory");
    for (int l = 0; l < hp->n_layers && !rc; l++) {
        deepc_layer *L = &m->layers[l];
#define B(field, suffix, r, c) \
        if (!rc) { snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix); rc = bind(d, nm, r, c, &L->field, err); }
        B(attn_norm, "input_layernorm.weight", 0, E)
        if (hp->q_lora_rank) {
            B(wq_a, "self_attn.q_a_proj.weight", hp->q_lora_rank, E)
            B(q_a_norm, "self_attn.q_a_layernorm.weight", 0, hp->q_lora_rank)
            B(wq_b, "self_attn.q_b_proj.weight", H * QH, hp->q_lora_rank)
        } else {
            B(wq, "self_attn.q_proj.weight", H * QH, E)
        }
        B(wkv_a, "self_attn.kv_a_proj_with_mqa.weight", R + hp->qk_rope, E)
        B(kv_a_norm, "self_attn.kv_a_layernorm.weight", 0, R)
        B(wk_b, "self_attn.k_b_proj.weight", H * R, hp->qk_nope)
        B(wv_b, "self_attn.v_b_proj.weight", H * hp->v_head, R)
        B(wo, "self_attn.o_proj.weight", E, H * hp->v_head)
        B(ffn_norm, "post_attention_layernorm.weight", 0, E)
        L->is_moe = l >= hp->first_k_dense;
        if (!L->is_moe) {
            B(w_gate, "mlp.gate_proj.weight", hp->n_ff, E)
            B(w_up, "mlp.up_proj.weight", hp->n_ff, E)
            B(w_down, "mlp.down_proj.weight", E, hp->n_ff)
            continue;
        }
        B(router, "mlp.gate.weight", X, E)
        if (!rc && L->router.type != DEEPC_TYPE_F32) rc = deepc_errf(err, DEEPC_ERR_FORMAT, "layer %d: router weights must be f32", l);
        if (hp->expert_bias) B(router_bias, "mlp.gate.e_score_correction_bias", 0, X)
        if (hp->n_expert_shared) {
            B(sh_gate, "mlp.shared_experts.gate_proj.weight", FS, E)
            B(sh_up, "mlp.shared_experts.up_proj.weight", FS, E)
            B(sh_down, "mlp.shared_experts.down_proj.weight", E, FS)
        }
#undef B
        L->x_gate = m->expert_block + (size_t)l * X * 3;
        L->x_up = L->x_gate + X;
        L->x_down = L->x_up + X;
        for (int e = 0; e < X && !rc; e++) {
            snprintf(nm, sizeof nm, "model.layers.%d.mlp.experts.%d.gate_proj.weight", l, e);
            rc = bind(d, nm, FX, E, &L->x_gate[e], err);
            if (!rc) { snprintf(nm, sizeof nm, "model.layers.%d.mlp.experts.%d.up_proj.weight", l, e); rc = bind(d, nm, FX, E, &L->x_up[e], err); }
            if (!rc) { snprintf(nm, sizeof nm, "model.layers.%d.mlp.experts.%d.down_proj.weight", l, e); rc = bind(d, nm, E, FX, &L->x_down[e], err); }
        }
    }
    return rc;
}

static int bind_all(deepc_model *m, deepc_err *err) {
    const deepc_hparams *hp = &m->hp;
    const deepc_dqf *d = m->dqf;
    int E = hp->n_embd, Q = hp->n_heads * hp->head_dim, KV = hp->n_kv_heads * hp->head_dim, F = hp->n_ff;
    char nm[128];
    int rc = bind(d, "model.embed_tokens.weight", hp->n_vocab, E, &m->tok_embd, err);
    if (!rc) rc = bind(d, "model.norm.weight", 0, E, &m->out_norm, err);
    if (!rc) {
        if (hp->tied_embeddings) m->lm_head = m->tok_embd;
        else rc = bind(d, "lm_head.weight", hp->n_vocab, E, &m->lm_head, err);
    }
    if (!rc && deepc_arch_is_mla(hp->arch)) return bind_mla(m, err);
    for (int l = 0; l < hp->n_layers && !rc; l++) {
        deepc_layer *L = &m->layers[l];
#define B(field, suffix, r, c) \
        if (!rc) { snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix); rc = bind(d, nm, r, c, &L->field, err); }
        B(attn_norm, "input_layernorm.weight", 0, E)
        B(wq, "self_attn.q_proj.weight", Q, E)
        B(wk, "self_attn.k_proj.weight", KV, E)
        B(wv, "self_attn.v_proj.weight", KV, E)
        B(wo, "self_attn.o_proj.weight", E, Q)
        if (hp->attn_bias) {
            B(bq, "self_attn.q_proj.bias", 0, Q)
            B(bk, "self_attn.k_proj.bias", 0, KV)
            B(bv, "self_attn.v_proj.bias", 0, KV)
        }
        B(ffn_norm, "post_attention_layernorm.weight", 0, E)
        B(w_gate, "mlp.gate_proj.weight", F, E)
        B(w_up, "mlp.up_proj.weight", F, E)
        B(w_down, "mlp.down_proj.weight", E, F)
#undef B
    }
    return rc;
}

/* ---- where the weights live ------------------------------------------------ */

/* Decode reads every non-expert weight once per token, so it runs at memory
 * bandwidth, and page-cache pages are mostly 4 KiB: the TLB misses of walking
 * GBs of them cost measurably (R1-Distill-Qwen-1.5B shape, q8_0, 2 threads:
 * +18-20% tokens/s owned vs mapped, paired A/B). An owned anonymous buffer
 * can sit on 2 MiB transparent huge pages, and the page cache cannot evict it
 * while experts stream. The copy is one sequential read; the routed experts
 * stay in the mapping (the expert store uses them in place or reads their
 * records at their file offsets). The price is the load: the kernel zeroes
 * each fresh huge page before the copy lands in it, and the embedding table
 * is held whole (the mapping only faults in the rows that are used). */

#define HUGE_ALIGN (2ull << 20)   /* a 2 MiB huge page: the owned buffer's alignment and size unit */
#define RUN_GAP (64ull << 10)     /* tensors closer than this in the file are read (with the gap) in one go */
#define READ_PIECE (32ull << 20)  /* read, then drop from the page cache, this much at a time */

typedef struct { deepc_wt *w; uint64_t off, len; } view_ref;
typedef struct { uint64_t off, end, owned_off; } load_run;

/* The bound weight views that the owned buffer holds: all but the routed
 * experts. Writes them to v (when not NULL) and returns their count. A field
 * missing here would only stay in the mapping (correct, not owned); the
 * tests check that owned_weight_bytes covers every non-expert tensor. */
static size_t dense_views(deepc_model *m, deepc_wt **v) {
    size_t n = 0;
#define V(x) do { if ((x).data) { if (v) v[n] = &(x); n++; } } while (0)
    V(m->tok_embd); V(m->out_norm); V(m->lm_head);
    for (int l = 0; l < m->hp.n_layers; l++) {
        deepc_layer *L = &m->layers[l];
        V(L->attn_norm); V(L->wq); V(L->wk); V(L->wv); V(L->wo); V(L->bq); V(L->bk); V(L->bv);
        V(L->ffn_norm); V(L->w_gate); V(L->w_up); V(L->w_down);
        V(L->wq_a); V(L->q_a_norm); V(L->wq_b); V(L->wkv_a); V(L->kv_a_norm); V(L->wk_b); V(L->wv_b);
        V(L->router); V(L->router_bias); V(L->sh_gate); V(L->sh_up); V(L->sh_down);
    }
#undef V
    return n;
}

static int cmp_view(const void *a, const void *b) {
    const view_ref *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

static void logmsg(const deepc_model_params *p, int level, const char *fmt, ...) {
    if (!p->log) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    p->log(p->log_user, level, buf);
}

/* An anonymous read-write buffer of `bytes` (a multiple of HUGE_ALIGN),
 * aligned to HUGE_ALIGN and marked for transparent huge pages before anything
 * touches it (so the first faults already get huge pages). */
static uint8_t *owned_alloc(size_t bytes) {
    size_t sz = bytes + (size_t)HUGE_ALIGN;
    void *p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)HUGE_ALIGN - 1) & ~(uintptr_t)(HUGE_ALIGN - 1);
    size_t head = (size_t)(a - (uintptr_t)p), tail = sz - head - bytes;
    if (head) munmap(p, head);
    if (tail) munmap((uint8_t *)a + bytes, tail);
#ifdef MADV_HUGEPAGE
    (void)madvise((void *)a, bytes, MADV_HUGEPAGE);   /* a hint: without THP we get 4 KiB pages */
#endif
    return (uint8_t *)a;
}

/* Locks (or unlocks) [p, p+n) rounded out to whole pages; returns 0 or errno. */
static int lock_range(const uint8_t *p, uint64_t n, bool lock) {
    long ps = sysconf(_SC_PAGESIZE);
    uintptr_t pg = ps > 0 ? (uintptr_t)ps : 4096;
    uintptr_t lo = (uintptr_t)p & ~(pg - 1), hi = ((uintptr_t)p + (uintptr_t)n + pg - 1) & ~(pg - 1);
    int r = lock ? mlock((const void *)lo, (size_t)(hi - lo)) : munlock((const void *)lo, (size_t)(hi - lo));
    return r == 0 ? 0 : errno;
}

/* Puts the non-expert weights where p says: read into the owned buffer
 * (views re-pointed there, buffer made read-only like the mapping) unless
 * use_mmap, then locks them if use_mlock. */
static int load_weights(deepc_model *m, const deepc_model_params *p, deepc_err *err) {
    size_t nv = dense_views(m, NULL);
    deepc_wt **ws = malloc((nv ? nv : 1) * sizeof *ws);
    view_ref *vr = malloc((nv ? nv : 1) * sizeof *vr);
    load_run *runs = malloc((nv ? nv : 1) * sizeof *runs);
    int rc = DEEPC_OK;
    if (!ws || !vr || !runs) { rc = deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory"); goto done; }
    dense_views(m, ws);
    const uint8_t *base = deepc_dqf_base(m->dqf);
    for (size_t i = 0; i < nv; i++)
        vr[i] = (view_ref){ ws[i], (uint64_t)((const uint8_t *)ws[i]->data - base), (uint64_t)ws[i]->row_bytes * (uint64_t)ws[i]->rows };
    qsort(vr, nv, sizeof *vr, cmp_view);
    /* runs of nearby tensors in file order (tied embeddings: one tensor, two views) */
    size_t nr = 0;
    uint64_t total = 0, dense = 0;
    for (size_t i = 0; i < nv; i++) {
        uint64_t end = vr[i].off + vr[i].len;
        if (nr && vr[i].off <= runs[nr - 1].end + RUN_GAP) {
            if (vr[i].off >= runs[nr - 1].end) dense += vr[i].len;
            if (end > runs[nr - 1].end) runs[nr - 1].end = end;
            continue;
        }
        /* each run starts page-aligned; tensor offsets are 64-aligned, so views inside stay so */
        if (nr) total += (runs[nr - 1].end - runs[nr - 1].off + 4095) / 4096 * 4096;
        runs[nr++] = (load_run){ vr[i].off, end, total };
        dense += vr[i].len;
    }
    if (nr) total += runs[nr - 1].end - runs[nr - 1].off;
    char hb[32];
    deepc_fmt_bytes(hb, sizeof hb, (double)dense);

    if (!p->use_mmap) {
        size_t bytes = (size_t)((total + HUGE_ALIGN - 1) / HUGE_ALIGN * HUGE_ALIGN);
        if (!bytes) bytes = (size_t)HUGE_ALIGN;
        m->owned = owned_alloc(bytes);
        if (!m->owned) { rc = deepc_errf(err, DEEPC_ERR_NOMEM, "cannot allocate %s for the weights", hb); goto done; }
        m->owned_bytes = bytes;
        /* The copy is ours, so the page cache need not keep a second one: each
         * piece read is dropped again, except pages that were cached before
         * (someone else's). Page-cache folios can be up to 2 MiB and a drop
         * that splits one frees none of it, so pieces end on multiples of
         * READ_PIECE in the file and a run's drop range is rounded out to 2 MiB. */
        for (size_t r = 0; r < nr && !rc; r++) {
            uint64_t lo = runs[r].off / HUGE_ALIGN * HUGE_ALIGN, hi = (runs[r].end + HUGE_ALIGN - 1) / HUGE_ALIGN * HUGE_ALIGN;
            deepc_dqf_cache_snap snap;
            deepc_dqf_cache_snap_take(m->dqf, lo, hi - lo, &snap);
            for (uint64_t o = runs[r].off; o < runs[r].end && !rc;) {
                uint64_t e = (o / READ_PIECE + 1) * READ_PIECE;
                if (e > runs[r].end) e = runs[r].end;
                rc = deepc_dqf_read(m->dqf, o, m->owned + runs[r].owned_off + (o - runs[r].off), e - o, err);
                uint64_t dlo = o == runs[r].off ? lo : o, dhi = e == runs[r].end ? hi : e;
                deepc_dqf_cache_drop_new(m->dqf, &snap, dlo, dhi - dlo);
                o = e;
            }
            deepc_dqf_cache_snap_free(&snap);
        }
        if (rc) goto done;
        size_t r = 0;
        for (size_t i = 0; i < nv; i++) {
            while (vr[i].off >= runs[r].end) r++;
            vr[i].w->data = m->owned + runs[r].owned_off + (vr[i].off - runs[r].off);
        }
        (void)mprotect(m->owned, m->owned_bytes, PROT_READ);   /* weights are read-only, as in the mapping */
    }

    if (p->use_mlock) {
        int e = 0;
        if (m->owned) {
            e = lock_range(m->owned, m->owned_bytes, true);
        } else {
            size_t r = 0;
            while (r < nr && !(e = lock_range(base + runs[r].off, runs[r].end - runs[r].off, true))) r++;
            /* all or nothing, as mlock is for the owned buffer */
            if (e) for (size_t k = 0; k < r; k++) lock_range(base + runs[k].off, runs[k].end - runs[k].off, false);
        }
        m->weights_locked = e == 0;
        if (e) {
            logmsg(p, DEEPC_LOG_WARN, "cannot lock the %s of weights in RAM: %s (the limit is RLIMIT_MEMLOCK, `ulimit -l`); "
                   "continuing unlocked", hb, strerror(e));
        }
    }
    logmsg(p, DEEPC_LOG_INFO, "weights: %s %s%s%s", hb, m->owned ? "read into owned memory" : "used from the file mapping",
           m->weights_locked ? ", locked" : "", m->hp.route.n_experts && deepc_arch_is_mla(m->hp.arch) ? "; routed experts mapped" : "");
done:
    free(ws);
    free(vr);
    free(runs);
    return rc;
}

static _Thread_local char open_error[512];

const char *deepc_open_error(void) { return open_error; }

void deepc_set_open_error(const char *msg) { snprintf(open_error, sizeof open_error, "%s", msg); }

deepc_model_params deepc_model_default_params(void) {
    deepc_model_params p = { .struct_size = sizeof p };
    return p;
}

deepc_status deepc_model_open(const char *path, deepc_model **out) {
    return deepc_model_open_ex(path, NULL, out);
}

deepc_status deepc_model_open_ex(const char *path, const deepc_model_params *pp, deepc_model **out) {
    deepc_err err = { "" };
    int rc = DEEPC_OK;
    if (!out || !path) { deepc_set_open_error("deepc_model_open: NULL argument"); return DEEPC_ERR_INVALID_ARG; }
    *out = NULL;
    deepc_model_params p = deepc_model_default_params();
    if (pp) memcpy(&p, pp, pp->struct_size && pp->struct_size < sizeof p ? pp->struct_size : sizeof p);
    deepc_model *m = calloc(1, sizeof *m);
    if (!m) { deepc_set_open_error("out of memory"); return DEEPC_ERR_NOMEM; }
    m->dqf = deepc_dqf_open(path, &err);
    if (!m->dqf) { rc = DEEPC_ERR_FORMAT; if (strstr(err.msg, "cannot open")) rc = DEEPC_ERR_IO; else if (strstr(err.msg, "version")) rc = DEEPC_ERR_UNSUPPORTED; goto fail; }
    rc = read_hparams(m->dqf, &m->hp, m->arch_name, &err);
    if (rc) goto failpath;
    m->layers = calloc((size_t)m->hp.n_layers, sizeof *m->layers);
    int rope_dims = deepc_arch_is_mla(m->hp.arch) ? m->hp.qk_rope : m->hp.head_dim;
    m->inv_freq = calloc((size_t)rope_dims / 2, sizeof *m->inv_freq);
    if (!m->layers || !m->inv_freq) { rc = deepc_errf(&err, DEEPC_ERR_NOMEM, "out of memory"); goto fail; }
    rc = bind_all(m, &err);
    if (rc) goto failpath;
    m->rope_mscale = 1.0f;
    m->attn_scale = 1.0f / sqrtf((float)m->hp.head_dim);
    if (m->hp.rope_scaling == DEEPC_ROPE_SCALING_YARN) {
        deepc_yarn_inv_freq(&m->hp.yarn, rope_dims, m->inv_freq);
        m->rope_mscale = deepc_yarn_cos_sin_scale(&m->hp.yarn);
        m->attn_scale = deepc_yarn_softmax_scale(m->hp.head_dim, m->hp.yarn.factor, m->hp.yarn.mscale_all_dim);
    } else {
        deepc_rope_inv_freq(&m->hp, m->inv_freq);
    }
    rc = read_tokdata(m->dqf, &m->td, &err);
    if (rc == 1) {
        rc = 0;
    } else if (rc) {
        goto failpath;
    } else {
        if (m->td.n_vocab > (uint32_t)m->hp.n_vocab) {
            rc = deepc_errf(&err, DEEPC_ERR_FORMAT, "tokenizer has %u tokens but the model only %d logits", m->td.n_vocab, m->hp.n_vocab);
            goto failpath;
        }
        m->tok = deepc_tokenizer_create(&m->td, &err);
        if (!m->tok) { rc = DEEPC_ERR_FORMAT; goto failpath; }
    }
    const char *s;
    size_t n;
    if (!deepc_dqf_get_str(m->dqf, "general.name", &s, &n)) { s = path; n = strlen(path); }
    m->name = malloc(n + 1);
    if (!m->name) { rc = deepc_errf(&err, DEEPC_ERR_NOMEM, "out of memory"); goto fail; }
    memcpy(m->name, s, n);
    m->name[n] = 0;
    for (size_t i = 0; i < deepc_dqf_n_tensors(m->dqf); i++) {
        const deepc_dqf_tensor *t = deepc_dqf_tensor_at(m->dqf, i);
        if (t->flags & DEEPC_TENSOR_OPTIONAL) continue;
        m->n_params += t->n_elems;
        m->weight_bytes += t->size;
    }
    /* last: a file that fails any check above costs no weight reading */
    rc = load_weights(m, &p, &err);
    if (rc) goto failpath;
    *out = m;
    return DEEPC_OK;
failpath: {
        char tmp[sizeof err.msg];
        snprintf(tmp, sizeof tmp, "%.200s: %.300s", path, err.msg);
        memcpy(err.msg, tmp, sizeof tmp);
    }
fail:
    deepc_set_open_error(err.msg);
    deepc_model_close(m);
    return (deepc_status)rc;
}

void deepc_model_close(deepc_model *m) {
    if (!m) return;
    deepc_tokenizer_destroy(m->tok);
    deepc_dqf_close(m->dqf);
    if (m->owned) munmap(m->owned, m->owned_bytes);
    free(m->layers);
    free(m->expert_block);
    free(m->inv_freq);
    free(m->name);
    free(m);
}

deepc_status deepc_model_get_info(const deepc_model *m, deepc_model_info *info) {
    if (!m || !info) return DEEPC_ERR_INVALID_ARG;
    size_t sz = info->struct_size ? info->struct_size : sizeof *info;
    deepc_model_info r = {0};
    r.struct_size = sz;
    r.arch = m->arch_name;
    r.name = m->name;
    const deepc_hparams *hp = &m->hp;
    r.n_layers = hp->n_layers; r.n_embd = hp->n_embd; r.n_ff = hp->n_ff;
    r.n_heads = hp->n_heads; r.n_kv_heads = hp->n_kv_heads; r.head_dim = hp->head_dim;
    r.n_vocab = hp->n_vocab; r.n_ctx_train = hp->n_ctx_train;
    r.rope_theta = hp->rope_theta; r.norm_eps = hp->norm_eps;
    r.n_params = m->n_params;
    /* the embedding table is read one row per token, not wholesale */
    r.n_params_active = m->n_params - (hp->tied_embeddings ? 0 : (uint64_t)hp->n_vocab * hp->n_embd);
    r.weight_bytes = m->weight_bytes;
    r.kv_bytes_per_token = 2ull * hp->n_layers * hp->n_kv_heads * hp->head_dim * sizeof(uint16_t);
    r.active_weight_bytes = m->weight_bytes - (hp->tied_embeddings ? 0 : (uint64_t)m->tok_embd.row_bytes * hp->n_vocab);
    if (deepc_arch_is_mla(hp->arch)) {
        for (int l = hp->first_k_dense; l < hp->n_layers; l++) {
            const deepc_layer *L = &m->layers[l];
            uint64_t one = 0;
            for (int e = 0; e < hp->route.n_experts; e++) {
                uint64_t b = (uint64_t)L->x_gate[e].row_bytes * L->x_gate[e].rows + (uint64_t)L->x_up[e].row_bytes * L->x_up[e].rows +
                             (uint64_t)L->x_down[e].row_bytes * L->x_down[e].rows;
                r.expert_bytes += b;
                one = b;
            }
            r.active_weight_bytes -= one * (uint64_t)(hp->route.n_experts - hp->route.top_k);
        }
        /* only the normalized latent and the rope key are cached */
        r.kv_bytes_per_token = (uint64_t)(hp->kv_lora_rank + hp->qk_rope) * hp->n_layers * sizeof(uint16_t);
        /* routed experts: only top_k of n_experts are read per token */
        uint64_t per_expert = 3ull * hp->n_ff_exp * hp->n_embd;
        int moe_layers = hp->n_layers - hp->first_k_dense;
        r.n_params_active -= (uint64_t)moe_layers * (hp->route.n_experts - hp->route.top_k) * per_expert;
        r.kv_lora_rank = hp->kv_lora_rank; r.q_lora_rank = hp->q_lora_rank;
        r.qk_nope_head_dim = hp->qk_nope; r.qk_rope_head_dim = hp->qk_rope; r.v_head_dim = hp->v_head;
        r.n_expert = hp->route.n_experts; r.n_expert_used = hp->route.top_k; r.n_expert_shared = hp->n_expert_shared;
        r.n_ff_exp = hp->n_ff_exp; r.first_k_dense = hp->first_k_dense; r.n_mtp = hp->n_mtp;
        r.kv_bytes_per_token_mha = (uint64_t)hp->n_heads * (hp->qk_nope + hp->qk_rope + hp->v_head) * hp->n_layers * sizeof(uint16_t);
    } else {
        r.kv_bytes_per_token_mha = r.kv_bytes_per_token;
    }
    r.bos_id = m->tok ? m->td.bos_id : -1;
    r.eos_id = m->tok ? m->td.eos_id : -1;
    r.add_bos = m->tok && m->td.bos_id >= 0 && (m->td.gflags & (DEEPC_TOKDATA_ADD_BOS | DEEPC_TOKDATA_CFG_ADD_BOS));
    r.weights_mapped = m->owned == NULL;
    r.weights_locked = m->weights_locked;
    r.owned_weight_bytes = m->owned_bytes;
    memcpy(info, &r, sz < sizeof r ? sz : sizeof r);
    return DEEPC_OK;
}
