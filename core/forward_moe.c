/* forward_moe.c - DeepSeekMoE feed-forward: a router picks top_k routed
 * experts per token (core/moe_route.c follows the official selection rules),
 * tokens are grouped per expert so each selected expert's weights are read
 * once per batch, and the shared experts run on every token. Only the
 * selected experts' bytes are touched. */
#include <math.h>
#include <string.h>

#include "expert_store.h"
#include "forward.h"

typedef struct {
    deepc_session *s;
    const deepc_wt *w;    /* gate, up, down views of active expert a at w[3a..3a+2] */
    int a0, a1;           /* the chunk of s->active computed by this run */
    size_t xq_stride;     /* bytes per converted activation row */
    const void *xq;       /* gate/up: one row per token; down: one row per (token, slot) pair */
} moe_task;

/* gate and up of every active expert; each thread owns a slice of rows of
 * every expert, so the split is fixed and results do not depend on timing */
static void gate_up_run(void *arg, int ith, int nth) {
    const moe_task *t = arg;
    deepc_session *s = t->s;
    const deepc_hparams *hp = &s->m->hp;
    int K = hp->route.top_k, FX = hp->n_ff_exp;
    int r0 = FX * ith / nth, r1 = FX * (ith + 1) / nth;
    for (int a = t->a0; a < t->a1; a++) {
        int e = s->active[a];
        const deepc_wt *g = &t->w[3 * a], *u = &t->w[3 * a + 1];
        deepc_vec_dot_fn dg = s->k->vec_dot[g->type], du = s->k->vec_dot[u->type];
        for (int r = r0; r < r1; r++) {
            const uint8_t *gr = (const uint8_t *)g->data + (size_t)r * g->row_bytes;
            const uint8_t *ur = (const uint8_t *)u->data + (size_t)r * u->row_bytes;
            for (int i = s->exp_start[e]; i < s->exp_start[e + 1]; i++) {
                int p = s->exp_pairs[i], b = p / K;
                const uint8_t *x = (const uint8_t *)t->xq + (size_t)b * t->xq_stride;
                s->ex_g[(size_t)p * FX + r] = dg((size_t)g->cols, gr, x);
                s->ex_u[(size_t)p * FX + r] = du((size_t)u->cols, ur, x);
            }
        }
    }
}

static void down_run(void *arg, int ith, int nth) {
    const moe_task *t = arg;
    deepc_session *s = t->s;
    int E = s->m->hp.n_embd;
    int r0 = E * ith / nth, r1 = E * (ith + 1) / nth;
    for (int a = t->a0; a < t->a1; a++) {
        int e = s->active[a];
        const deepc_wt *d = &t->w[3 * a + 2];
        deepc_vec_dot_fn dot = s->k->vec_dot[d->type];
        for (int r = r0; r < r1; r++) {
            const uint8_t *dr = (const uint8_t *)d->data + (size_t)r * d->row_bytes;
            for (int i = s->exp_start[e]; i < s->exp_start[e + 1]; i++) {
                int p = s->exp_pairs[i];
                s->ex_y[(size_t)p * E + r] = dot((size_t)d->cols, dr, (const uint8_t *)t->xq + (size_t)p * t->xq_stride);
            }
        }
    }
}

void deepc_ffn_moe(deepc_session *s, const deepc_layer *L, int n) {
    const deepc_hparams *hp = &s->m->hp;
    int E = hp->n_embd, X = hp->route.n_experts, K = hp->route.top_k, FX = hp->n_ff_exp;

    /* route: router logits in fp32, then the official selection rules */
    deepc_matmul(s, &L->router, s->xb, n, s->router_logits, X, NULL);
    const float *bias = hp->expert_bias ? L->router_bias.data : NULL;
    for (int b = 0; b < n; b++)
        deepc_route(&hp->route, s->router_logits + (size_t)b * X, bias, s->route_scratch,
                    s->route_ids + (size_t)b * K, s->route_w + (size_t)b * K);
    /* a non-finite hidden state can leave a slot unfilled: give it no weight */
    for (int p = 0; p < n * K; p++)
        if (s->route_ids[p] < 0 || s->route_ids[p] >= X) { s->route_ids[p] = 0; s->route_w[p] = 0.0f; }

    /* group (token, slot) pairs by expert, in token order */
    memset(s->exp_count, 0, (size_t)X * sizeof *s->exp_count);
    for (int p = 0; p < n * K; p++) s->exp_count[s->route_ids[p]]++;
    s->n_active = 0;
    s->exp_start[0] = 0;
    for (int e = 0; e < X; e++) {
        s->exp_start[e + 1] = s->exp_start[e] + s->exp_count[e];
        if (s->exp_count[e]) s->active[s->n_active++] = e;
        s->exp_count[e] = 0;
    }
    for (int p = 0; p < n * K; p++) {
        int e = s->route_ids[p];
        s->exp_pairs[s->exp_start[e] + s->exp_count[e]++] = p;
    }

    /* selections per expert (routing profiles) */
    int l = (int)(L - s->m->layers);
    for (int a = 0; a < s->n_active; a++)
        s->exp_usage[(size_t)l * X + s->active[a]] += (uint64_t)s->exp_count[s->active[a]];
    s->exp_lookups += (uint64_t)s->n_active;
    if (s->exp_status) return;   /* an expert read failed earlier in this batch */

    /* routed experts: gate/up on each token's input, SwiGLU, down per pair;
     * a chunk of experts at a time when the expert store cannot hold all */
    deepc_type wt = L->x_gate[s->active[0]].type, dt = L->x_down[s->active[0]].type;
    const void *xin = s->xb;
    size_t in_stride = (size_t)E * sizeof(float);
    if (s->k->act_type[wt] != DEEPC_TYPE_F32) {
        in_stride = deepc_act_convert(s, wt, s->xb, n, E, s->act);
        xin = s->act;
    }
    bool conv = s->k->act_type[dt] != DEEPC_TYPE_F32;
    size_t mid_stride = conv ? deepc_type_row_bytes(s->k->act_type[dt], (size_t)FX) : (size_t)FX * sizeof(float);
    const void *mid = conv ? s->act2 : (const void *)s->ex_g;
    moe_task t = { s, s->ex_w, 0, 0, 0, NULL };
    for (int a0 = 0; a0 < s->n_active; a0 = t.a1) {
        int cnt = s->n_active - a0;
        if (s->store) {
            cnt = deepc_expert_store_acquire(s->store, l, s->active + a0, cnt, a0 ? NULL : s->x, n, s->ex_w + 3 * (size_t)a0, &s->err);
            if (cnt < 0) { s->exp_status = -cnt; return; }
        } else {
            for (int a = a0; a < s->n_active; a++) {
                s->ex_w[3 * a] = L->x_gate[s->active[a]];
                s->ex_w[3 * a + 1] = L->x_up[s->active[a]];
                s->ex_w[3 * a + 2] = L->x_down[s->active[a]];
            }
        }
        t.a0 = a0;
        t.a1 = a0 + cnt;
        t.xq = xin;
        t.xq_stride = in_stride;
        deepc_pool_run(s->pool, gate_up_run, &t);
        if (cnt == s->n_active) {
            deepc_swiglu(s->ex_g, s->ex_u, (size_t)n * K * FX);
            if (conv) deepc_act_convert(s, dt, s->ex_g, n * K, FX, s->act2);
        } else {   /* the same per-row operations on this chunk's pairs only */
            for (int a = t.a0; a < t.a1; a++)
                for (int i = s->exp_start[s->active[a]]; i < s->exp_start[s->active[a] + 1]; i++) {
                    size_t p = (size_t)s->exp_pairs[i];
                    deepc_swiglu(s->ex_g + p * FX, s->ex_u + p * FX, (size_t)FX);
                    if (conv) deepc_act_convert(s, dt, s->ex_g + p * FX, 1, FX, (uint8_t *)s->act2 + p * mid_stride);
                }
        }
        t.xq = mid;
        t.xq_stride = mid_stride;
        deepc_pool_run(s->pool, down_run, &t);
        if (s->store) deepc_expert_store_release(s->store);
    }

    /* shared experts on every token (xb is no longer needed after this) */
    float *shared = NULL;
    if (hp->n_expert_shared) {
        int FS = L->sh_gate.rows;
        deepc_matmul(s, &L->sh_gate, s->xb, n, s->hb, FS, NULL);
        deepc_matmul(s, &L->sh_up, s->xb, n, s->hb2, FS, NULL);
        deepc_swiglu(s->hb, s->hb2, (size_t)n * FS);
        deepc_matmul(s, &L->sh_down, s->hb, n, s->xb, E, NULL);
        shared = s->xb;
    }
    /* out = sum_k w_k * expert_k(x) in top-k order, then + shared(x) */
    for (int b = 0; b < n; b++) {
        float *x = s->x + (size_t)b * E;
        for (int i = 0; i < E; i++) {
            float acc = 0.0f;
            for (int k = 0; k < K; k++) acc += s->route_w[(size_t)b * K + k] * s->ex_y[((size_t)b * K + k) * E + i];
            if (shared) acc += shared[(size_t)b * E + i];
            x[i] += acc;
        }
    }
}
