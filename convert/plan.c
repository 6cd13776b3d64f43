/* plan.c - the tensor plan of each architecture: every tensor the engine
 * needs, its checkpoint source and expected shape, in the order they are
 * written. Routed experts are written expert-major: gate, up and down of one
 * expert follow each other and the record starts on a page boundary, so the
 * expert store can fetch an expert with one aligned read. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"

void deepc_plan_free(plan_list *pl) {
    free(pl->v);
    memset(pl, 0, sizeof *pl);
}

static planned *add(plan_list *pl, uint64_t rows, uint64_t cols, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static planned *add(plan_list *pl, uint64_t rows, uint64_t cols, const char *fmt, ...) {
    if (pl->n == pl->cap) {
        size_t cap = pl->cap ? pl->cap * 2 : 256;
        planned *v = realloc(pl->v, cap * sizeof *v);
        if (!v) return NULL;
        pl->v = v;
        pl->cap = cap;
    }
    planned *p = &pl->v[pl->n++];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    memcpy(p->src, p->name, sizeof p->src);
    p->rows = p->src_rows = rows;
    p->cols = p->src_cols = cols;
    p->align = DEEPC_DQF_ALIGN;
    return p;
}

#define ADD(r, c, ...) do { if (!add(pl, (r), (c), __VA_ARGS__)) goto oom; } while (0)

static int plan_dense(const deepc_hparams *hp, plan_list *pl) {
    uint64_t E = hp->n_embd, Q = (uint64_t)hp->n_heads * hp->head_dim, KV = (uint64_t)hp->n_kv_heads * hp->head_dim, F = hp->n_ff;
    ADD((uint64_t)hp->n_vocab, E, "model.embed_tokens.weight");
    for (int l = 0; l < hp->n_layers; l++) {
        ADD(0, E, "model.layers.%d.input_layernorm.weight", l);
        ADD(Q, E, "model.layers.%d.self_attn.q_proj.weight", l);
        ADD(KV, E, "model.layers.%d.self_attn.k_proj.weight", l);
        ADD(KV, E, "model.layers.%d.self_attn.v_proj.weight", l);
        if (hp->attn_bias) {
            ADD(0, Q, "model.layers.%d.self_attn.q_proj.bias", l);
            ADD(0, KV, "model.layers.%d.self_attn.k_proj.bias", l);
            ADD(0, KV, "model.layers.%d.self_attn.v_proj.bias", l);
        }
        ADD(E, Q, "model.layers.%d.self_attn.o_proj.weight", l);
        ADD(0, E, "model.layers.%d.post_attention_layernorm.weight", l);
        ADD(F, E, "model.layers.%d.mlp.gate_proj.weight", l);
        ADD(F, E, "model.layers.%d.mlp.up_proj.weight", l);
        ADD(E, F, "model.layers.%d.mlp.down_proj.weight", l);
    }
    ADD(0, E, "model.norm.weight");
    if (!hp->tied_embeddings) ADD((uint64_t)hp->n_vocab, E, "lm_head.weight");
    return 0;
oom:
    return DEEPC_ERR_NOMEM;
}

/* kv_b_proj is split in two transformed tensors for the absorbed attention. */
static int plan_kv_b(const deepc_hparams *hp, plan_list *pl, int l) {
    uint64_t H = hp->n_heads, R = hp->kv_lora_rank;
    planned *k = add(pl, H * R, hp->qk_nope, "model.layers.%d.self_attn.k_b_proj.weight", l);
    if (!k) return DEEPC_ERR_NOMEM;
    snprintf(k->src, sizeof k->src, "model.layers.%d.self_attn.kv_b_proj.weight", l);
    k->kind = PLAN_K_B;
    k->src_rows = H * (uint64_t)(hp->qk_nope + hp->v_head);
    k->src_cols = R;
    planned *v = add(pl, H * hp->v_head, R, "model.layers.%d.self_attn.v_b_proj.weight", l);
    if (!v) return DEEPC_ERR_NOMEM;
    memcpy(v->src, k->src, sizeof v->src);
    v->kind = PLAN_V_B;
    v->src_rows = k->src_rows;
    v->src_cols = R;
    return 0;
}

static int plan_deepseek(const deepc_hparams *hp, const deepc_st *st, plan_list *pl, deepc_err *err) {
    uint64_t E = hp->n_embd, H = hp->n_heads, QH = (uint64_t)hp->qk_nope + hp->qk_rope;
    uint64_t FX = hp->n_ff_exp, FS = FX * hp->n_expert_shared;
    ADD((uint64_t)hp->n_vocab, E, "model.embed_tokens.weight");
    for (int l = 0; l < hp->n_layers; l++) {
        ADD(0, E, "model.layers.%d.input_layernorm.weight", l);
        if (hp->q_lora_rank) {
            ADD((uint64_t)hp->q_lora_rank, E, "model.layers.%d.self_attn.q_a_proj.weight", l);
            ADD(0, (uint64_t)hp->q_lora_rank, "model.layers.%d.self_attn.q_a_layernorm.weight", l);
            ADD(H * QH, (uint64_t)hp->q_lora_rank, "model.layers.%d.self_attn.q_b_proj.weight", l);
        } else {
            ADD(H * QH, E, "model.layers.%d.self_attn.q_proj.weight", l);
        }
        ADD((uint64_t)(hp->kv_lora_rank + hp->qk_rope), E, "model.layers.%d.self_attn.kv_a_proj_with_mqa.weight", l);
        ADD(0, (uint64_t)hp->kv_lora_rank, "model.layers.%d.self_attn.kv_a_layernorm.weight", l);
        if (plan_kv_b(hp, pl, l)) goto oom;
        ADD(E, H * hp->v_head, "model.layers.%d.self_attn.o_proj.weight", l);
        ADD(0, E, "model.layers.%d.post_attention_layernorm.weight", l);
        if (l < hp->first_k_dense) {
            ADD((uint64_t)hp->n_ff, E, "model.layers.%d.mlp.gate_proj.weight", l);
            ADD((uint64_t)hp->n_ff, E, "model.layers.%d.mlp.up_proj.weight", l);
            ADD(E, (uint64_t)hp->n_ff, "model.layers.%d.mlp.down_proj.weight", l);
            continue;
        }
        planned *g = add(pl, (uint64_t)hp->route.n_experts, E, "model.layers.%d.mlp.gate.weight", l);
        if (!g) goto oom;
        g->keep_f32 = true;
        if (hp->expert_bias) ADD(0, (uint64_t)hp->route.n_experts, "model.layers.%d.mlp.gate.e_score_correction_bias", l);
        if (hp->n_expert_shared) {
            ADD(FS, E, "model.layers.%d.mlp.shared_experts.gate_proj.weight", l);
            ADD(FS, E, "model.layers.%d.mlp.shared_experts.up_proj.weight", l);
            ADD(E, FS, "model.layers.%d.mlp.shared_experts.down_proj.weight", l);
        }
        for (int e = 0; e < hp->route.n_experts; e++) {
            planned *x = add(pl, FX, E, "model.layers.%d.mlp.experts.%d.gate_proj.weight", l, e);
            if (!x) goto oom;
            x->align = DEEPC_DQF_PAGE;
            ADD(FX, E, "model.layers.%d.mlp.experts.%d.up_proj.weight", l, e);
            ADD(E, FX, "model.layers.%d.mlp.experts.%d.down_proj.weight", l, e);
        }
    }
    ADD(0, E, "model.norm.weight");
    ADD((uint64_t)hp->n_vocab, E, "lm_head.weight");
    /* multi-token-prediction layers: kept as optional tensors, as found */
    for (int i = 0; i < hp->n_mtp; i++) {
        char prefix[48];
        int pn = snprintf(prefix, sizeof prefix, "model.layers.%d.", hp->n_layers + i);
        size_t found = 0;
        for (size_t k = 0; k < deepc_st_count(st); k++) {
            const deepc_st_tensor *t = deepc_st_at(st, k);
            size_t nl = strlen(t->name);
            if (strncmp(t->name, prefix, (size_t)pn) || (nl > 10 && !strcmp(t->name + nl - 10, "_scale_inv"))) continue;
            if (t->ndim < 1 || t->ndim > 2)
                return deepc_errf(err, DEEPC_ERR_FORMAT, "MTP tensor '%s' has %d dimensions", t->name, t->ndim);
            planned *p = add(pl, t->ndim == 2 ? t->shape[0] : 0, t->shape[t->ndim - 1], "%s", t->name);
            if (!p) goto oom;
            p->any_shape = true;
            p->flags = DEEPC_TENSOR_OPTIONAL;
            found++;
        }
        if (!found) return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json announces %d MTP layer(s) but the checkpoint has no '%s*' tensors", hp->n_mtp, prefix);
    }
    return 0;
oom:
    return deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory");
}

int deepc_plan_build(const deepc_hparams *hp, const deepc_st *st, plan_list *pl, deepc_err *err) {
    memset(pl, 0, sizeof *pl);
    if (deepc_arch_is_mla(hp->arch)) return plan_deepseek(hp, st, pl, err);
    int rc = plan_dense(hp, pl);
    if (rc) deepc_errf(err, rc, "out of memory");
    return rc;
}
