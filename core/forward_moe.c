/* forward_moe.c - DeepSeekMoE feed-forward: a router picks top_k routed
 * experts per token (core/moe_route.c follows the official selection rules),
 * tokens are grouped per expert so each selected expert's weights are read
 * once per batch, and the shared experts run on every token. Only the
 * selected experts' bytes are touched. */
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "expert_store.h"
#include "forward.h"

#define MOE_ROW_ALIGN 16 /* slices of rows start on 64-byte lines of the outputs */

/* Expert products go through the kernels' gemm (core/kernels.h), which gives
 * every output the bits of vec_dot. The pairs of an expert are made
 * contiguous for it: the buffers below are indexed by a pair's row in the
 * expert-sorted order (exp_pairs), not by the pair itself:
 *   ex_y   first the gathered inputs (row i: the converted input of pair
 *          exp_pairs[i]'s token, in_stride bytes at i * n_embd floats), then,
 *          once that chunk's gate/up job is done, its down outputs;
 *   ex_g, ex_u, act2  gate and up outputs, SwiGLU and its conversion.
 * route_ids[p] is rewritten to p's row once the pairs are grouped, for the
 * final weighted sum. The work is cut into (expert, slice of rows) units
 * that threads claim from a counter, so a thread that is preempted (or
 * starts late) leaves its share to the other; no output depends on who
 * computes it. */
typedef struct {
    deepc_session *s;
    const deepc_wt *w;    /* gate, up, down views of active expert a at w[3a..3a+2] */
    int a0, a1;           /* the chunk of s->active computed by this run */
    size_t xq_stride;     /* bytes between input rows */
    const uint8_t *xq;    /* gate/up: the gathered inputs; down: the converted SwiGLU rows */
    int align;            /* row slices start on multiples of this */
    /* gate/up: SwiGLU and its conversion for down on each slice right after
     * its products (fuse), as in forward.c's dense MLP */
    bool fuse;
    deepc_quantize_fn quantize; /* NULL: down takes f32 (reads ex_g) */
    size_t mid_stride, blk_elems, blk_bytes;
    int rows, slice;      /* rows of each expert matrix; rows per unit (a multiple of align) */
    atomic_int next;      /* next unit to claim: (a - a0) * slices + k */
} moe_task;

/* Units per thread and per job: enough that one preempted thread costs
 * little, few enough that each is a long run of rows. */
#define MOE_UNITS_PER_THREAD 4

static void moe_slicing(moe_task *t, int rows, int nth) {
    int sl = (rows + nth * MOE_UNITS_PER_THREAD - 1) / (nth * MOE_UNITS_PER_THREAD);
    sl = (sl + t->align - 1) / t->align * t->align;
    t->rows = rows;
    t->slice = sl > 0 ? sl : t->align;
}

/* Claims the next unit of the chunk [a0, a1): its expert and rows. */
static bool moe_claim(moe_task *t, int *a, int *r0, int *r1) {
    int per = (t->rows + t->slice - 1) / t->slice;
    int u = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed);
    if (u >= per * (t->a1 - t->a0)) return false;
    *a = t->a0 + u / per;
    *r0 = u % per * t->slice;
    *r1 = *r0 + t->slice < t->rows ? *r0 + t->slice : t->rows;
    return true;
}

/* y[i * ys + r] = W[r] . x[i] for rows [r0, r1) and sorted pairs [i0, i1):
 * the gemm when there is one and enough pairs, else vec_dot per output (the
 * same bits either way). */
static void expert_rows(const deepc_kernels *k, const deepc_wt *w, int r0, int r1, const uint8_t *x, size_t xs,
                        int i0, int i1, float *y, size_t ys) {
    const uint8_t *wd = w->data;
    deepc_gemm_fn gemm = k->gemm[w->type];
    if (gemm && i1 - i0 >= deepc_gemm_min_tokens(w->type)) {
        gemm(r1 - r0, i1 - i0, (size_t)w->cols, wd + (size_t)r0 * w->row_bytes, w->row_bytes, x + (size_t)i0 * xs, xs,
             y + (size_t)i0 * ys + (size_t)r0, ys);
        return;
    }
    deepc_vec_dot_fn dot = k->vec_dot[w->type];
    for (int r = r0; r < r1; r++) {
        const uint8_t *wr = wd + (size_t)r * w->row_bytes;
        for (int i = i0; i < i1; i++) y[(size_t)i * ys + (size_t)r] = dot((size_t)w->cols, wr, x + (size_t)i * xs);
    }
}

/* gate and up of each claimed unit (an active expert's slice of rows), then
 * (fuse) SwiGLU and the conversion of those columns of each of its pairs */
static void gate_up_run(void *arg, int ith, int nth) {
    moe_task *t = arg;
    deepc_session *s = t->s;
    int FX = s->m->hp.n_ff_exp, a, r0, r1;
    (void)ith;
    (void)nth;
    while (moe_claim(t, &a, &r0, &r1)) {
        int e = s->active[a], i0 = s->exp_start[e], i1 = s->exp_start[e + 1];
        expert_rows(s->k, &t->w[3 * a], r0, r1, t->xq, t->xq_stride, i0, i1, s->ex_g, (size_t)FX);
        expert_rows(s->k, &t->w[3 * a + 1], r0, r1, t->xq, t->xq_stride, i0, i1, s->ex_u, (size_t)FX);
        if (!t->fuse) continue;
        for (int i = i0; i < i1; i++) {
            float *g = s->ex_g + (size_t)i * FX + r0;
            s->k->swiglu(g, s->ex_u + (size_t)i * FX + r0, (size_t)(r1 - r0));
            if (t->quantize)
                t->quantize(g, (uint8_t *)s->act2 + (size_t)i * t->mid_stride + (size_t)r0 / t->blk_elems * t->blk_bytes,
                            (size_t)(r1 - r0));
        }
    }
}

static void down_run(void *arg, int ith, int nth) {
    moe_task *t = arg;
    deepc_session *s = t->s;
    int E = s->m->hp.n_embd, a, r0, r1;
    (void)ith;
    (void)nth;
    while (moe_claim(t, &a, &r0, &r1)) {
        int e = s->active[a];
        expert_rows(s->k, &t->w[3 * a + 2], r0, r1, t->xq, t->xq_stride, s->exp_start[e], s->exp_start[e + 1], s->ex_y,
                    (size_t)E);
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
        int e = s->route_ids[p], i = s->exp_start[e] + s->exp_count[e]++;
        s->exp_pairs[i] = p;
        s->route_ids[p] = i;   /* from here on: p's row in the sorted buffers */
    }

    /* selections per expert (routing profiles) */
    int l = (int)(L - s->m->layers);
    for (int a = 0; a < s->n_active; a++)
        s->exp_usage[(size_t)l * X + s->active[a]] += (uint64_t)s->exp_count[s->active[a]];
    s->exp_lookups += (uint64_t)s->n_active;
    if (s->exp_status) return;   /* an expert read failed earlier in this batch */

    /* routed experts: gate/up on each pair's input, SwiGLU, down; a chunk
     * of experts at a time when the expert store cannot hold all */
    deepc_type wt = L->x_gate[s->active[0]].type, dt = L->x_down[s->active[0]].type;
    const uint8_t *xin = (const uint8_t *)s->xb;
    size_t in_stride = (size_t)E * sizeof(float);
    if (s->k->act_type[wt] != DEEPC_TYPE_F32) {
        in_stride = deepc_act_convert(s, wt, s->xb, n, E, s->act);
        xin = s->act;
    }
    deepc_type at = s->k->act_type[dt];
    const deepc_type_traits *ti = deepc_type_info((int)at);
    bool conv = at != DEEPC_TYPE_F32;
    size_t mid_stride = conv ? deepc_type_row_bytes(at, (size_t)FX) : (size_t)FX * sizeof(float);
    int blk = (int)ti->block_elems, align = blk > MOE_ROW_ALIGN ? blk : MOE_ROW_ALIGN;
    /* SwiGLU in the gate/up job needs slices on conversion-block boundaries */
    bool fuse = FX % blk == 0 && align % MOE_ROW_ALIGN == 0;
    moe_task gu = { .s = s, .w = s->ex_w, .xq = (const uint8_t *)s->ex_y, .xq_stride = (size_t)E * sizeof(float),
                    .align = fuse ? align : MOE_ROW_ALIGN, .fuse = fuse,
                    .quantize = conv ? s->k->quantize_act[at] : NULL, .mid_stride = mid_stride,
                    .blk_elems = ti->block_elems, .blk_bytes = ti->block_bytes };
    moe_task dn = { .s = s, .w = s->ex_w, .xq = conv ? (const uint8_t *)s->act2 : (const uint8_t *)s->ex_g,
                    .xq_stride = mid_stride, .align = MOE_ROW_ALIGN };
    int nth = deepc_pool_size(s->pool);
    moe_slicing(&gu, FX, nth);
    moe_slicing(&dn, E, nth);
    for (int a0 = 0; a0 < s->n_active; a0 = gu.a1) {
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
        gu.a0 = dn.a0 = a0;
        gu.a1 = dn.a1 = a0 + cnt;
        /* the chunk's pairs are one run of sorted rows; gather their inputs */
        int i0 = s->exp_start[s->active[a0]], i1 = s->exp_start[s->active[a0 + cnt - 1] + 1];
        for (int i = i0; i < i1; i++)
            memcpy((uint8_t *)s->ex_y + (size_t)i * gu.xq_stride, xin + (size_t)(s->exp_pairs[i] / K) * in_stride, in_stride);
        atomic_init(&gu.next, 0);
        deepc_pool_run(s->pool, gate_up_run, &gu);
        if (!fuse) {
            s->k->swiglu(s->ex_g + (size_t)i0 * FX, s->ex_u + (size_t)i0 * FX, (size_t)(i1 - i0) * FX);
            if (conv) deepc_act_convert(s, dt, s->ex_g + (size_t)i0 * FX, i1 - i0, FX, (uint8_t *)s->act2 + (size_t)i0 * mid_stride);
        }
        atomic_init(&dn.next, 0);
        deepc_pool_run(s->pool, down_run, &dn);
        if (s->store) deepc_expert_store_release(s->store);
    }

    /* shared experts on every token (xb is no longer needed after this) */
    float *shared = NULL;
    if (hp->n_expert_shared) {
        deepc_swiglu_mlp(s, &L->sh_gate, &L->sh_up, &L->sh_down, n);
        shared = s->xb;
    }
    /* out = sum_k w_k * expert_k(x) in top-k order, then + shared(x) */
    for (int b = 0; b < n; b++) {
        float *x = s->x + (size_t)b * E;
        for (int i = 0; i < E; i++) {
            float acc = 0.0f;
            for (int k = 0; k < K; k++) acc += s->route_w[(size_t)b * K + k] * s->ex_y[(size_t)s->route_ids[(size_t)b * K + k] * E + i];
            if (shared) acc += shared[(size_t)b * E + i];
            x[i] += acc;
        }
    }
}
