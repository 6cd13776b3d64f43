/* session.c - the public session API: creation (all scratch and the KV cache
 * sized once), evaluation in batches, sampling and streaming generation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expert_store.h"
#include "model.h"

deepc_session_params deepc_session_default_params(void) {
    deepc_session_params p = { .struct_size = sizeof p };
    return p;
}

deepc_sampling deepc_sampling_default(void) {
    deepc_sampling p = { sizeof p, 0.6f, 0, 0.95f, 0.0f, 1.0f, 64, 0 };
    return p;
}

/* Allocation of the session's buffers, with the bytes counted for max_ram. */
typedef struct { bool ok; uint64_t bytes; } alloc_acct;

static void *xcalloc(size_t n, size_t sz, alloc_acct *ac) {
    void *p = calloc(n ? n : 1, sz);
    if (!p) ac->ok = false;
    ac->bytes += (uint64_t)(n ? n : 1) * sz;
    return p;
}

/* Splits max_ram between what the session must hold (non-expert weights, KV
 * cache, scratch: `fixed`) and the expert cache. Returns 0 and sets *budget
 * (0 = every expert in place), or fails naming the least workable limit. */
static int ram_budget(const deepc_model *m, uint64_t max_ram, uint64_t fixed, uint64_t *budget) {
    deepc_model_info mi = { .struct_size = sizeof mi };
    deepc_model_get_info(m, &mi);
    uint64_t dense = mi.weight_bytes - mi.expert_bytes, need = dense + fixed;
    char a[32], b[32], c[32], d[32], e[32];
    deepc_fmt_bytes(a, sizeof a, max_ram);
    deepc_fmt_bytes(b, sizeof b, dense);
    deepc_fmt_bytes(c, sizeof c, fixed);
    if (!mi.expert_bytes) {
        if (need <= max_ram) return 0;
        deepc_fmt_bytes(d, sizeof d, need);
        char msg[320];
        snprintf(msg, sizeof msg, "session: a RAM limit of %s is too small: the weights take %s and the KV cache and "
                 "scratch %s (a dense model cannot stream its weights); it needs at least %s, or a smaller context",
                 a, b, c, d);
        deepc_set_open_error(msg);
        return DEEPC_ERR_NOMEM;
    }
    uint64_t min = deepc_expert_store_min_budget(m);
    if (need <= max_ram && max_ram - need >= min) {
        uint64_t left = max_ram - need;
        *budget = left >= mi.expert_bytes ? 0 : left;
        return 0;
    }
    deepc_fmt_bytes(d, sizeof d, min);
    deepc_fmt_bytes(e, sizeof e, need + min);
    char msg[400];
    snprintf(msg, sizeof msg, "session: a RAM limit of %s is too small: the non-expert weights take %s, the KV cache "
             "and scratch %s, and the expert cache needs at least %s (one layer's active experts); use at least %s, "
             "or a smaller context", a, b, c, d, e);
    deepc_set_open_error(msg);
    return DEEPC_ERR_NOMEM;
}

deepc_status deepc_session_create(deepc_model *m, const deepc_session_params *pp, deepc_session **out) {
    if (!m || !out) return DEEPC_ERR_INVALID_ARG;
    *out = NULL;
    deepc_session_params p = deepc_session_default_params();
    if (pp) memcpy(&p, pp, pp->struct_size && pp->struct_size < sizeof p ? pp->struct_size : sizeof p);
    const deepc_hparams *hp = &m->hp;
    if (p.n_ctx < 0 || p.n_threads < 0 || p.n_batch < 0 || p.n_threads > 1024) {
        deepc_set_open_error("session: n_ctx, n_threads and n_batch must be >= 0 (n_threads <= 1024)");
        return DEEPC_ERR_INVALID_ARG;
    }
    if (p.n_ctx == 0) p.n_ctx = hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
    if (p.n_ctx > hp->n_ctx_train) p.n_ctx = hp->n_ctx_train;
    /* MoE batches spread over the experts: at 64 tokens x top-6 of 64 experts
     * each expert's gemm sees ~6 tokens; 128 measured 6-10% faster prefill
     * on the V2-Lite shape (dense models gain nothing past 64) */
    if (p.n_batch == 0) p.n_batch = hp->route.n_experts > 0 ? 128 : 64;
    if (p.n_batch > p.n_ctx) p.n_batch = p.n_ctx;
    int nt = p.n_threads ? p.n_threads : deepc_default_threads();

    const deepc_kernels *k = deepc_kernels_select(p.isa);
    if (!k) {
        deepc_set_open_error("session: the requested instruction set is unknown or not supported by this CPU");
        return DEEPC_ERR_UNSUPPORTED;
    }
    deepc_session *s = calloc(1, sizeof *s);
    if (!s) return DEEPC_ERR_NOMEM;
    s->m = m;
    s->k = k;
    s->n_ctx = p.n_ctx;
    s->n_batch = p.n_batch;
    alloc_acct ok = { true, 0 };
    bool mla = deepc_arch_is_mla(hp->arch);
    size_t B = (size_t)p.n_batch, E = (size_t)hp->n_embd, hd = (size_t)hp->head_dim, H = (size_t)hp->n_heads;
    size_t Q = H * hd, KV = (size_t)hp->n_kv_heads * hd, F = (size_t)hp->n_ff;
    size_t C = (size_t)p.n_ctx, L = (size_t)hp->n_layers;
    size_t rope = mla ? (size_t)hp->qk_rope : hd;
    size_t R = (size_t)hp->kv_lora_rank, V = (size_t)hp->v_head, K = (size_t)hp->route.top_k;
    size_t FX = (size_t)hp->n_ff_exp, FS = FX * (size_t)hp->n_expert_shared, X = (size_t)hp->route.n_experts;
    /* widest row any product reads or writes per token */
    size_t wide = E > Q ? E : Q;
    if (F > wide) wide = F;
    if (FS > wide) wide = FS;
    if (mla && H * R > wide) wide = H * R;
    if (mla && H * V > wide) wide = H * V;
    s->mla_expanded = p.mla_expanded;
    if (mla) {
        s->kv_lat = xcalloc(L * C * (R + rope), sizeof(uint16_t), &ok);
        s->q_a = xcalloc(B * ((size_t)hp->q_lora_rank + 1), sizeof(float), &ok);
        s->ckv = xcalloc(B * (R + rope), sizeof(float), &ok);
        s->q_lat = xcalloc(B * H * R, sizeof(float), &ok);
        s->o_lat = xcalloc(B * H * R, sizeof(float), &ok);
        s->router_logits = xcalloc(B * X, sizeof(float), &ok);
        s->route_w = xcalloc(B * K, sizeof(float), &ok);
        s->route_ids = xcalloc(B * K, sizeof(int32_t), &ok);
        s->route_scratch = xcalloc(deepc_route_scratch_floats(&hp->route), sizeof(float), &ok);
        s->exp_count = xcalloc(X, sizeof(int32_t), &ok);
        s->exp_start = xcalloc(X + 1, sizeof(int32_t), &ok);
        s->exp_pairs = xcalloc(B * K, sizeof(int32_t), &ok);
        s->active = xcalloc(X, sizeof(int32_t), &ok);
        s->ex_g = xcalloc(B * K * FX, sizeof(float), &ok);
        s->ex_u = xcalloc(B * K * FX, sizeof(float), &ok);
        s->ex_y = xcalloc(B * K * E, sizeof(float), &ok);
        s->act2 = xcalloc(B * K * FX, sizeof(float), &ok);
        s->ex_w = xcalloc(3 * X, sizeof(deepc_wt), &ok);
        s->exp_usage = xcalloc(L * X, sizeof(uint64_t), &ok);
        if (p.mla_expanded) {
            s->mla_tmp_floats = R * hd + V * R + C * (hd + V) + C + R + rope;
            s->mla_tmp = xcalloc((size_t)nt * s->mla_tmp_floats, sizeof(float), &ok);
        }
    } else {
        s->k_cache = xcalloc(L * C * KV, sizeof(uint16_t), &ok);
        s->v_cache = xcalloc(L * C * KV, sizeof(uint16_t), &ok);
    }
    s->rope_cos = xcalloc(C * rope / 2, sizeof(float), &ok);
    s->rope_sin = xcalloc(C * rope / 2, sizeof(float), &ok);
    s->x = xcalloc(B * E, sizeof(float), &ok);
    s->xb = xcalloc(B * wide, sizeof(float), &ok);
    s->q = xcalloc(B * Q, sizeof(float), &ok);
    s->kv_k = xcalloc(B * KV, sizeof(float), &ok);
    s->kv_v = xcalloc(B * KV, sizeof(float), &ok);
    s->att = xcalloc(B * wide, sizeof(float), &ok);
    s->hb = xcalloc(B * wide, sizeof(float), &ok);
    s->hb2 = xcalloc(B * wide, sizeof(float), &ok);
    s->scores = xcalloc((size_t)nt * C, sizeof(float), &ok);
    s->act = xcalloc(B, wide * sizeof(float), &ok);   /* f32 is the widest act type */
    s->logits = xcalloc((size_t)hp->n_vocab, sizeof(float), &ok);
    s->history = xcalloc(C, sizeof(int32_t), &ok);
    s->sampler = deepc_sampler_create(hp->n_vocab);
    s->pool = deepc_pool_create(nt);
    if (!ok.ok || !s->sampler || !s->pool) {
        deepc_session_destroy(s);
        deepc_set_open_error("session: out of memory for the KV cache and scratch buffers (try a smaller --ctx)");
        return DEEPC_ERR_NOMEM;
    }
    if (p.max_ram_bytes) {
        uint64_t budget = 0;
        int rc = ram_budget(m, p.max_ram_bytes, ok.bytes, &budget);
        if (rc) { deepc_session_destroy(s); return (deepc_status)rc; }
        if (mla && !p.expert_cache_bytes) p.expert_cache_bytes = budget;
        else if (mla && budget && p.expert_cache_bytes > budget) {
            char x[32], y[32], msg[200];
            deepc_fmt_bytes(x, sizeof x, p.expert_cache_bytes);
            deepc_fmt_bytes(y, sizeof y, budget);
            snprintf(msg, sizeof msg, "session: an expert cache of %s does not fit in the RAM limit, which leaves %s for it", x, y);
            deepc_set_open_error(msg);
            deepc_session_destroy(s);
            return DEEPC_ERR_INVALID_ARG;
        }
    }
    s->exp_budget = p.expert_cache_bytes;
    if (mla) {
        deepc_expert_store_params ep = { p.expert_cache_bytes, p.expert_pin_profile, p.expert_io_threads,
                                         p.n_batch, !p.expert_no_prefetch, p.expert_buffered_io };
        deepc_err e = { "" };
        int rc = deepc_expert_store_create(m, &ep, &s->store, &e);
        if (rc) {
            deepc_session_destroy(s);
            char msg[sizeof e.msg + 16];
            snprintf(msg, sizeof msg, "session: %s", e.msg);
            deepc_set_open_error(msg);
            return (deepc_status)rc;
        }
    }
    /* angles in fp32 as HF computes them (position * inv_freq), trig in
     * double; YaRN's mscale multiplies cos and sin as in the HF code */
    for (size_t pos = 0; pos < C; pos++)
        for (size_t i = 0; i < rope / 2; i++) {
            float a = (float)pos * m->inv_freq[i];
            s->rope_cos[pos * rope / 2 + i] = (float)cos((double)a) * m->rope_mscale;
            s->rope_sin[pos * rope / 2 + i] = (float)sin((double)a) * m->rope_mscale;
        }
    *out = s;
    return DEEPC_OK;
}

void deepc_session_destroy(deepc_session *s) {
    if (!s) return;
    deepc_expert_store_destroy(s->store);
    deepc_pool_destroy(s->pool);
    deepc_sampler_destroy(s->sampler);
    free(s->k_cache); free(s->v_cache); free(s->rope_cos); free(s->rope_sin);
    free(s->x); free(s->xb); free(s->q); free(s->kv_k); free(s->kv_v); free(s->att);
    free(s->hb); free(s->hb2); free(s->scores); free(s->act); free(s->logits); free(s->history);
    free(s->kv_lat); free(s->q_a); free(s->ckv); free(s->q_lat); free(s->o_lat); free(s->mla_tmp);
    free(s->router_logits); free(s->route_w); free(s->route_ids); free(s->route_scratch);
    free(s->exp_count); free(s->exp_start); free(s->exp_pairs); free(s->active);
    free(s->ex_g); free(s->ex_u); free(s->ex_y); free(s->act2); free(s->ex_w); free(s->exp_usage);
    free(s);
}

const char *deepc_last_error(const deepc_session *s) { return s ? s->err.msg : deepc_open_error(); }
int deepc_session_pos(const deepc_session *s) { return s->pos; }
int deepc_session_n_ctx(const deepc_session *s) { return s->n_ctx; }
int deepc_session_n_batch(const deepc_session *s) { return s->n_batch; }

deepc_status deepc_session_rewind(deepc_session *s, int pos) {
    if (!s || pos < 0 || pos > s->pos) return DEEPC_ERR_INVALID_ARG;
    s->pos = pos;
    s->have_logits = false;
    memset(&s->detok, 0, sizeof s->detok);
    return DEEPC_OK;
}

deepc_status deepc_session_eval(deepc_session *s, const int32_t *tokens, int n, float *logits) {
    if (!s || (!tokens && n)) return DEEPC_ERR_INVALID_ARG;
    if (n < 0) return (deepc_status)deepc_errf(&s->err, DEEPC_ERR_INVALID_ARG, "negative token count");
    if (s->pos + n > s->n_ctx)
        return (deepc_status)deepc_errf(&s->err, DEEPC_ERR_CONTEXT_FULL, "context full: %d tokens in the cache + %d new exceed the context of %d", s->pos, n, s->n_ctx);
    size_t V = (size_t)s->m->hp.n_vocab;
    for (int i = 0; i < n; i += s->n_batch) {
        int c = n - i < s->n_batch ? n - i : s->n_batch, pos0 = s->pos;
        s->exp_status = 0;
        int rc = deepc_forward(s, tokens + i, c, logits ? logits + (size_t)i * V : NULL);
        if (rc) return (deepc_status)rc;
        if (s->exp_status) {
            /* an expert could not be read: forget the batch as if never fed */
            s->pos = pos0;
            s->have_logits = false;
            return (deepc_status)s->exp_status;
        }
        s->exp_tokens += (uint64_t)c;
        if (s->store) deepc_expert_store_tokens(s->store, c);
    }
    return DEEPC_OK;
}

const float *deepc_session_logits(const deepc_session *s) { return s && s->have_logits ? s->logits : NULL; }

deepc_status deepc_session_sample(deepc_session *s, const deepc_sampling *p, int32_t *token) {
    if (!s || !token) return DEEPC_ERR_INVALID_ARG;
    if (!s->have_logits) return (deepc_status)deepc_errf(&s->err, DEEPC_ERR_INVALID_ARG, "nothing evaluated yet: no logits to sample from");
    deepc_sampling d = deepc_sampling_default();
    if (!p) p = &d;
    if (!(p->temperature >= 0.0f) || p->top_k < 0 || !(p->top_p > 0.0f && p->top_p <= 1.0f) ||
        !(p->min_p >= 0.0f && p->min_p <= 1.0f) || !(p->repeat_penalty > 0.0f) || p->repeat_last_n < 0)
        return (deepc_status)deepc_errf(&s->err, DEEPC_ERR_INVALID_ARG,
                                        "sampling parameters out of range (temperature >= 0, top_k >= 0, 0 < top_p <= 1, 0 <= min_p <= 1, repeat_penalty > 0)");
    size_t nh = (size_t)s->pos, last = (size_t)p->repeat_last_n;
    size_t start = nh > last ? nh - last : 0;
    *token = deepc_sampler_sample(s->sampler, p, s->logits, s->history + start, nh - start);
    return DEEPC_OK;
}

deepc_status deepc_generate(deepc_session *s, const int32_t *prompt, int n_prompt, int n_max,
                            const deepc_sampling *p, deepc_token_fn cb, void *user, deepc_gen_stats *stats) {
    deepc_gen_stats st = {0};
    if (!s || n_prompt < 0 || n_max < 0 || (n_prompt && !prompt)) return DEEPC_ERR_INVALID_ARG;
    double t0 = deepc_now();
    deepc_status rc = DEEPC_OK;
    if (n_prompt) rc = deepc_session_eval(s, prompt, n_prompt, NULL);
    st.n_prompt = n_prompt;
    st.prompt_s = deepc_now() - t0;
    t0 = deepc_now();
    char piece[512];
    while (rc == DEEPC_OK && st.n_gen < n_max) {
        int32_t tok;
        rc = deepc_session_sample(s, p, &tok);
        if (rc) break;
        st.n_gen++;
        bool eog = deepc_token_is_eog(s->m, tok);
        size_t len = 0;
        /* control tokens (flagged special) are not text; <think> and the like
         * are added but not special, and stay visible */
        bool special = s->m->tok && (uint32_t)tok < s->m->td.n_vocab && (s->m->td.flags[tok] & DEEPC_TOKF_SPECIAL);
        if (s->m->tok && !eog && !special) len = deepc_tokenizer_decode_push(s->m->tok, &s->detok, tok, piece, sizeof piece);
        if (cb && !cb(user, tok, piece, len)) break;
        if (eog) { st.hit_eos = true; break; }
        if (st.n_gen == n_max) break;
        if (s->pos >= s->n_ctx) { st.hit_ctx = true; break; }
        rc = deepc_session_eval(s, &tok, 1, NULL);
    }
    st.gen_s = deepc_now() - t0;
    if (stats) *stats = st;
    return rc;
}

/* ---- expert store statistics and routing profiles ---------------------- */

deepc_status deepc_session_expert_stats(const deepc_session *s, deepc_expert_stats *out) {
    if (!s || !out) return DEEPC_ERR_INVALID_ARG;
    size_t sz = out->struct_size ? out->struct_size : sizeof *out;
    deepc_expert_stats r;
    memset(&r, 0, sizeof r);
    r.expert_bytes = deepc_expert_store_total_bytes(s->m);
    if (s->store) deepc_expert_store_stats(s->store, &r);
    else {
        r.hits = s->exp_lookups;          /* everything is mapped: every lookup hits */
        r.min_budget_bytes = deepc_expert_store_min_budget(s->m);
    }
    r.struct_size = sz;
    r.budget_bytes = s->exp_budget;
    r.tokens = s->exp_tokens;
    r.lookups = s->exp_lookups;
    memcpy(out, &r, sz < sizeof r ? sz : sizeof r);
    return DEEPC_OK;
}

deepc_status deepc_session_expert_stats_reset(deepc_session *s) {
    if (!s) return DEEPC_ERR_INVALID_ARG;
    s->exp_tokens = s->exp_lookups = 0;
    if (s->exp_usage) memset(s->exp_usage, 0, (size_t)s->m->hp.n_layers * s->m->hp.route.n_experts * sizeof *s->exp_usage);
    if (s->store) deepc_expert_store_reset_stats(s->store);
    return DEEPC_OK;
}

deepc_status deepc_session_expert_counts(const deepc_session *s, uint64_t *counts, size_t n) {
    if (!s || !counts) return DEEPC_ERR_INVALID_ARG;
    size_t want = s->exp_usage ? (size_t)s->m->hp.n_layers * s->m->hp.route.n_experts : 0;
    if (n != want) return DEEPC_ERR_INVALID_ARG;
    if (want) memcpy(counts, s->exp_usage, want * sizeof *counts);
    return DEEPC_OK;
}

deepc_status deepc_session_save_expert_profile(deepc_session *s, const char *path) {
    if (!s || !path) return DEEPC_ERR_INVALID_ARG;
    if (!s->exp_usage) return (deepc_status)deepc_errf(&s->err, DEEPC_ERR_INVALID_ARG, "this model has no routed experts to profile");
    return (deepc_status)deepc_expert_profile_save(s->m, s->exp_usage, s->exp_tokens, path, &s->err);
}
