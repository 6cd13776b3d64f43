/* forward.c - the layer loop, the dense (Qwen2 / Llama 3) attention and MLP,
 * and the matrix products every architecture shares. Products are split by
 * output rows into chunks the pool's threads claim; every output value is
 * one vec_dot, or the kernel's gemm, which gives the same bits
 * (core/kernels.h), whoever computes it and whatever the batch size, so
 * results depend on neither the thread count nor the batching. Products of
 * one input share a pool job (q/k/v, gate/up), and SwiGLU runs inside the
 * gate/up job, so a dense layer costs five pool jobs. */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "forward.h"

/* ---- matrix products ---------------------------------------------------- */

/* Rows are handed out in chunks that start on multiples of this, so two
 * threads never write the same 64-byte line of an output row. */
#define ROW_ALIGN 16
/* Chunks per thread and per product: threads claim chunks from a counter, so
 * one that runs faster (or is not preempted, on a busy machine) takes more of
 * them instead of waiting at the barrier for the other. Which thread computes
 * an output never changes its value. */
#define CHUNKS_PER_THREAD 8
#define MIN_CHUNK_ROWS 64

/* One product of a fused run: y[b*y_stride + r] = W[r] . x[b] (+ bias[r]). */
typedef struct {
    const deepc_wt *w;
    float *y;
    int y_stride;
    const float *bias;
} matmul_part;

typedef struct matmul_task matmul_task;

/* Up to three products sharing one converted activation (q/k/v, gate/up),
 * run as one pool job. */
struct matmul_task {
    const deepc_kernels *k;
    matmul_part part[3];
    int n_parts;
    int rows;              /* rows to hand out: all parts' together, or one part's when paired */
    bool paired;           /* equal parts; a chunk covers the same rows of every part */
    int align;             /* chunks start on multiples of this (rows) */
    const void *xq;        /* activation rows in the kernels' act type */
    size_t xq_stride;      /* bytes between activation rows */
    int B;
    int n_groups;          /* activation rows per token: W's rows form n_groups
                            * equal groups, group g multiplying row g (per-head products) */
    /* paired runs: called on each chunk's rows [r0, r1) once its products are done */
    void (*epilogue)(const matmul_task *t, int r0, int r1);
    void *ctx;
    int chunk;             /* rows per chunk (a multiple of align) */
    atomic_int next;       /* next chunk to claim */
};

/* Rows [r0, r1) of one part, every token: the batched kernel when there is
 * one and the batch is large enough, else one vec_dot per output with the
 * tokens inner (each weight row is read from memory once per batch). */
static void matmul_rows(const matmul_task *t, const matmul_part *p, int r0, int r1) {
    const deepc_wt *w = p->w;
    const uint8_t *wd = w->data, *xq = t->xq;
    size_t cols = (size_t)w->cols, grp_rows = (size_t)(w->rows / t->n_groups);
    size_t xs = t->xq_stride * (size_t)t->n_groups;   /* between tokens */
    deepc_gemm_fn gemm = t->k->gemm[w->type];
    if (gemm && t->B >= deepc_gemm_min_tokens(w->type)) {
        for (int r = r0; r < r1;) {   /* one call per activation group */
            size_t g = (size_t)r / grp_rows;
            int e = (int)((g + 1) * grp_rows) < r1 ? (int)((g + 1) * grp_rows) : r1;
            gemm(e - r, t->B, cols, wd + (size_t)r * w->row_bytes, w->row_bytes, xq + g * t->xq_stride, xs,
                 p->y + r, (size_t)p->y_stride);
            r = e;
        }
    } else {
        deepc_vec_dot_fn dot = t->k->vec_dot[w->type];
        for (int r = r0; r < r1; r++) {
            const uint8_t *wrow = wd + (size_t)r * w->row_bytes, *x = xq + (size_t)r / grp_rows * t->xq_stride;
            for (int i = 0; i < t->B; i++) p->y[(size_t)i * p->y_stride + r] = dot(cols, wrow, x + (size_t)i * xs);
        }
    }
    if (p->bias)
        for (int i = 0; i < t->B; i++)
            for (int r = r0; r < r1; r++) p->y[(size_t)i * p->y_stride + r] += p->bias[r];
}

/* Each thread claims chunks of rows [lo, hi) until none is left. */
static void matmul_run(void *arg, int ith, int nth) {
    matmul_task *t = arg;
    (void)ith;
    (void)nth;
    int n_chunks = (t->rows + t->chunk - 1) / t->chunk;
    for (int c; (c = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed)) < n_chunks;) {
        int lo = c * t->chunk, hi = lo + t->chunk < t->rows ? lo + t->chunk : t->rows;
        if (t->paired) {
            for (int i = 0; i < t->n_parts; i++) matmul_rows(t, &t->part[i], lo, hi);
            if (t->epilogue) t->epilogue(t, lo, hi);
            continue;
        }
        for (int i = 0, base = 0; i < t->n_parts && base < hi; base += t->part[i].w->rows, i++) {
            int r0 = lo - base > 0 ? lo - base : 0, r1 = hi - base < t->part[i].w->rows ? hi - base : t->part[i].w->rows;
            if (r0 < r1) matmul_rows(t, &t->part[i], r0, r1);
        }
    }
}

/* Sizes the chunks for the pool and runs the task. */
static void matmul_go(deepc_session *s, matmul_task *t) {
    int nth = deepc_pool_size(s->pool);
    int chunk = t->rows;
    if (nth > 1) {
        chunk = (t->rows + nth * CHUNKS_PER_THREAD - 1) / (nth * CHUNKS_PER_THREAD);
        if (chunk < MIN_CHUNK_ROWS) chunk = MIN_CHUNK_ROWS;
        chunk += (t->align - chunk % t->align) % t->align;
    }
    t->chunk = chunk > 0 ? chunk : 1;
    atomic_init(&t->next, 0);
    deepc_pool_run(s->pool, matmul_run, t);
}

size_t deepc_act_convert(const deepc_session *s, deepc_type wt, const float *x, int n, int cols, void *dst) {
    deepc_type at = s->k->act_type[wt];
    size_t rb = deepc_type_row_bytes(at, (size_t)cols);
    for (int i = 0; i < n; i++)
        s->k->quantize_act[at](x + (size_t)i * cols, (uint8_t *)dst + (size_t)i * rb, (size_t)cols);
    return rb;
}

/* A task for parts of one input x ([B][n_groups][cols] floats), converted
 * into s->act unless the kernels take f32 activations. */
static matmul_task task_of(deepc_session *s, const matmul_part *parts, int n_parts, int n_groups, const float *x, int B) {
    const deepc_wt *w0 = parts[0].w;
    matmul_task t = { .k = s->k, .n_parts = n_parts, .align = ROW_ALIGN, .xq = x,
                      .xq_stride = (size_t)w0->cols * sizeof(float), .B = B, .n_groups = n_groups };
    for (int i = 0; i < n_parts; i++) {
        t.part[i] = parts[i];
        t.rows += parts[i].w->rows;
    }
    if (s->k->act_type[w0->type] != DEEPC_TYPE_F32) {
        t.xq = s->act;
        t.xq_stride = deepc_act_convert(s, w0->type, x, B * n_groups, w0->cols, s->act);
    }
    return t;
}

static matmul_part part_of(const deepc_wt *w, float *y, int y_stride, const deepc_wt *bias) {
    matmul_part p = { w, y, y_stride, bias && bias->data ? bias->data : NULL };
    return p;
}

void deepc_matmul(deepc_session *s, const deepc_wt *w, const float *x, int B, float *y, int y_stride,
                  const deepc_wt *bias) {
    matmul_part p = part_of(w, y, y_stride, bias);
    matmul_task t = task_of(s, &p, 1, 1, x, B);
    matmul_go(s, &t);
}

void deepc_matmul_heads(deepc_session *s, const deepc_wt *w, int n_heads, const float *x, int B, float *y) {
    matmul_part p = part_of(w, y, w->rows, NULL);
    matmul_task t = task_of(s, &p, 1, n_heads, x, B);
    matmul_go(s, &t);
}

/* Products of one input as one pool job when their activation types agree
 * (they do whenever the projections share a quantization type), else one by
 * one. */
static bool same_act_type(const deepc_session *s, const matmul_part *parts, int n_parts) {
    for (int i = 1; i < n_parts; i++)
        if (s->k->act_type[parts[i].w->type] != s->k->act_type[parts[0].w->type]) return false;
    return true;
}

static void matmul_fused(deepc_session *s, const matmul_part *parts, int n_parts, const float *x, int B) {
    bool same = same_act_type(s, parts, n_parts);
    for (int i = 0; i < n_parts; i += same ? n_parts : 1) {
        matmul_task t = task_of(s, parts + i, same ? n_parts : 1, 1, x, B);
        matmul_go(s, &t);
    }
}

void deepc_matmul_pair(deepc_session *s, const float *x, int B, const deepc_wt *w1, float *y1, int y1_stride,
                       const deepc_wt *w2, float *y2, int y2_stride) {
    const matmul_part parts[2] = { part_of(w1, y1, y1_stride, NULL), part_of(w2, y2, y2_stride, NULL) };
    matmul_fused(s, parts, 2, x, B);
}

/* ---- elementwise pieces (fp32) ----------------------------------------- */

void deepc_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

/* HF "rotate_half" rope: element i pairs with i + hd/2. */
static void rope_neox(float *v, int n_heads, int hd, const float *cs, const float *sn) {
    int half = hd / 2;
    for (int h = 0; h < n_heads; h++) {
        float *p = v + (size_t)h * hd;
        for (int i = 0; i < half; i++) {
            float a = p[i], b = p[i + half];
            p[i] = a * cs[i] - b * sn[i];
            p[i + half] = b * cs[i] + a * sn[i];
        }
    }
}

/* ---- dense (GQA) attention --------------------------------------------- */

typedef struct {
    deepc_session *s;
    int layer, pos0, B;
    atomic_int next;       /* next (token, head) job to claim */
} attn_task;

/* The fp16 cache kernels of the table, or the scalar ones for a backend
 * without them. */
static deepc_dot_rows_f16_f32_fn dot_rows_f16(const deepc_kernels *k) {
    return k->dot_rows_f16_f32 ? k->dot_rows_f16_f32 : deepc_kernels_scalar()->dot_rows_f16_f32;
}

static deepc_axpy_rows_f16_f32_fn axpy_rows_f16(const deepc_kernels *k) {
    return k->axpy_rows_f16_f32 ? k->axpy_rows_f16_f32 : deepc_kernels_scalar()->axpy_rows_f16_f32;
}

/* Jobs are (token, head) pairs, claimed one at a time: a causal batch's late
 * tokens attend to more positions, so fixed ranges would leave one thread
 * most of the work. A job's result does not depend on which thread runs it
 * (each thread has its own score row). */
static void attn_run(void *arg, int ith, int nth) {
    attn_task *t = arg;
    (void)nth;
    deepc_session *s = t->s;
    const deepc_hparams *hp = &s->m->hp;
    int hd = hp->head_dim, nh = hp->n_heads, kvd = hp->n_kv_heads * hd, group = nh / hp->n_kv_heads;
    const uint16_t *kc = s->k_cache + (size_t)t->layer * s->n_ctx * kvd;
    const uint16_t *vc = s->v_cache + (size_t)t->layer * s->n_ctx * kvd;
    float *sc = s->scores + (size_t)ith * s->n_ctx;
    float scale = s->m->attn_scale;
    deepc_dot_rows_f16_f32_fn dot_rows = dot_rows_f16(s->k);
    deepc_axpy_rows_f16_f32_fn axpy_rows = axpy_rows_f16(s->k);
    int total = t->B * nh;
    for (int job; (job = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed)) < total;) {
        int b = job / nh, h = job % nh, kvh = h / group, n = t->pos0 + b + 1;
        const float *q = s->q + (size_t)b * nh * hd + (size_t)h * hd;
        dot_rows((size_t)hd, (size_t)n, kc + (size_t)kvh * hd, (size_t)kvd, q, sc);
        float mx = -INFINITY;
        for (int p = 0; p < n; p++) {
            sc[p] *= scale;
            if (sc[p] > mx) mx = sc[p];
        }
        float sum = 0.0f;
        for (int p = 0; p < n; p++) { sc[p] = expf(sc[p] - mx); sum += sc[p]; }
        float inv = 1.0f / sum;
        for (int p = 0; p < n; p++) sc[p] *= inv;
        float *o = s->att + (size_t)b * nh * hd + (size_t)h * hd;
        memset(o, 0, (size_t)hd * sizeof *o);
        axpy_rows((size_t)hd, (size_t)n, sc, vc + (size_t)kvh * hd, (size_t)kvd, o);
    }
}

/* GQA attention of layer l; the o_proj output lands in s->hb2 (n_embd rows). */
static void attn_gqa(deepc_session *s, int l, int pos0, int n) {
    const deepc_hparams *hp = &s->m->hp;
    const deepc_layer *L = &s->m->layers[l];
    int E = hp->n_embd, hd = hp->head_dim, Q = hp->n_heads * hd, KV = hp->n_kv_heads * hd;
    const matmul_part qkv[3] = { part_of(&L->wq, s->q, Q, &L->bq), part_of(&L->wk, s->kv_k, KV, &L->bk),
                                 part_of(&L->wv, s->kv_v, KV, &L->bv) };
    matmul_fused(s, qkv, 3, s->xb, n);
    uint16_t *kc = s->k_cache + (size_t)l * s->n_ctx * KV;
    uint16_t *vc = s->v_cache + (size_t)l * s->n_ctx * KV;
    for (int b = 0; b < n; b++) {
        int p = pos0 + b;
        const float *cs = s->rope_cos + (size_t)p * (hd / 2), *sn = s->rope_sin + (size_t)p * (hd / 2);
        rope_neox(s->q + (size_t)b * Q, hp->n_heads, hd, cs, sn);
        rope_neox(s->kv_k + (size_t)b * KV, hp->n_kv_heads, hd, cs, sn);
        for (int i = 0; i < KV; i++) {
            kc[(size_t)p * KV + i] = deepc_fp32_to_fp16(s->kv_k[(size_t)b * KV + i]);
            vc[(size_t)p * KV + i] = deepc_fp32_to_fp16(s->kv_v[(size_t)b * KV + i]);
        }
    }
    attn_task at = { .s = s, .layer = l, .pos0 = pos0, .B = n };
    atomic_init(&at.next, 0);
    deepc_pool_run(s->pool, attn_run, &at);
    deepc_matmul(s, &L->wo, s->att, n, s->hb2, E, NULL);
}

/* ---- dense SwiGLU MLP --------------------------------------------------- */

/* SwiGLU, and the conversion of its result for the down projection, done on
 * each chunk of rows right after that chunk's gate and up products, by the
 * thread that computed them: no serial pass over (B, F) between the two pool
 * jobs. Both are elementwise or per block (chunks start on block
 * boundaries), so the split does not change a bit of the result. */
typedef struct {
    float *g;                    /* gate outputs (B, F), replaced by silu(g) * u */
    const float *u;              /* up outputs (B, F) */
    int F;
    deepc_quantize_fn quantize;  /* NULL: the down projection takes f32 */
    uint8_t *xq;                 /* converted rows for the down projection */
    size_t xq_stride, blk_elems, blk_bytes;
} swiglu_ctx;

static void swiglu_epilogue(const matmul_task *t, int r0, int r1) {
    const swiglu_ctx *c = t->ctx;
    for (int b = 0; b < t->B; b++) {
        float *g = c->g + (size_t)b * c->F + r0;
        t->k->swiglu(g, c->u + (size_t)b * c->F + r0, (size_t)(r1 - r0));
        if (c->quantize)
            c->quantize(g, c->xq + (size_t)b * c->xq_stride + (size_t)r0 / c->blk_elems * c->blk_bytes, (size_t)(r1 - r0));
    }
}

/* s->xb = down(silu(gate(xb)) * up(xb)) for n rows: the dense MLP and the
 * shared experts of a MoE layer. Gate and up run as one job with SwiGLU and
 * the conversion for down in its epilogue, so it costs two pool jobs. Uses
 * s->hb, s->hb2 and s->att. */
void deepc_swiglu_mlp(deepc_session *s, const deepc_wt *gate, const deepc_wt *up, const deepc_wt *down, int n) {
    int E = s->m->hp.n_embd, F = gate->rows;
    const matmul_part gate_up[2] = { part_of(gate, s->hb, F, NULL), part_of(up, s->hb2, F, NULL) };
    deepc_type dt = s->k->act_type[down->type];
    const deepc_type_traits *ti = deepc_type_info((int)dt);
    int blk = (int)ti->block_elems, align = blk > ROW_ALIGN ? blk : ROW_ALIGN;
    if (!same_act_type(s, gate_up, 2) || up->rows != F || align % blk != 0 || F % blk != 0) {
        matmul_fused(s, gate_up, 2, s->xb, n);
        s->k->swiglu(s->hb, s->hb2, (size_t)n * F);
        deepc_matmul(s, down, s->hb, n, s->xb, E, NULL);
    } else {
        /* s->att (B x widest row, floats) is free until the next attention */
        swiglu_ctx c = { s->hb, s->hb2, F, dt == DEEPC_TYPE_F32 ? NULL : s->k->quantize_act[dt], (uint8_t *)s->att,
                         deepc_type_row_bytes(dt, (size_t)F), ti->block_elems, ti->block_bytes };
        matmul_task t = task_of(s, gate_up, 2, 1, s->xb, n);
        t.paired = true;
        t.rows = F;
        t.align = align;
        t.epilogue = swiglu_epilogue;
        t.ctx = &c;
        matmul_go(s, &t);
        matmul_task d = { .k = s->k, .part = { part_of(down, s->xb, E, NULL) }, .n_parts = 1,
                          .rows = down->rows, .align = ROW_ALIGN, .B = n, .n_groups = 1,
                          .xq = c.quantize ? (const void *)c.xq : s->hb,
                          .xq_stride = c.quantize ? c.xq_stride : (size_t)F * sizeof(float) };
        matmul_go(s, &d);
    }
}

static void ffn_dense(deepc_session *s, const deepc_layer *L, int n) {
    int E = s->m->hp.n_embd;
    deepc_swiglu_mlp(s, &L->w_gate, &L->w_up, &L->w_down, n);
    for (size_t i = 0; i < (size_t)n * E; i++) s->x[i] += s->xb[i];
}

/* ---- the layer stack ---------------------------------------------------- */

int deepc_forward(deepc_session *s, const int32_t *tokens, int n, float *logits_out) {
    deepc_model *m = s->m;
    const deepc_hparams *hp = &m->hp;
    int E = hp->n_embd;
    int pos0 = s->pos;
    bool mla = deepc_arch_is_mla(hp->arch);
    if (n <= 0 || n > s->n_batch) return deepc_errf(&s->err, DEEPC_ERR_INVALID_ARG, "batch of %d tokens (1..%d allowed)", n, s->n_batch);
    if (pos0 + n > s->n_ctx) return deepc_errf(&s->err, DEEPC_ERR_CONTEXT_FULL, "context full: %d + %d tokens exceed n_ctx %d", pos0, n, s->n_ctx);
    for (int b = 0; b < n; b++) {
        if (tokens[b] < 0 || tokens[b] >= hp->n_vocab)
            return deepc_errf(&s->err, DEEPC_ERR_INVALID_ARG, "token id %d out of range [0, %d)", (int)tokens[b], hp->n_vocab);
        deepc_dequantize_row(m->tok_embd.type, (const uint8_t *)m->tok_embd.data + (size_t)tokens[b] * m->tok_embd.row_bytes,
                             s->x + (size_t)b * E, (size_t)E);
    }
    for (int l = 0; l < hp->n_layers; l++) {
        const deepc_layer *L = &m->layers[l];
        for (int b = 0; b < n; b++) deepc_rmsnorm(s->xb + (size_t)b * E, s->x + (size_t)b * E, L->attn_norm.data, E, hp->norm_eps);
        if (mla) deepc_attn_mla(s, l, pos0, n);
        else attn_gqa(s, l, pos0, n);
        for (size_t i = 0; i < (size_t)n * E; i++) s->x[i] += s->hb2[i];

        for (int b = 0; b < n; b++) deepc_rmsnorm(s->xb + (size_t)b * E, s->x + (size_t)b * E, L->ffn_norm.data, E, hp->norm_eps);
        if (L->is_moe) deepc_ffn_moe(s, L, n);
        else ffn_dense(s, L, n);
    }
    /* only the positions whose logits are wanted go through the head */
    int first = logits_out ? 0 : n - 1, cnt = n - first;
    for (int b = first; b < n; b++) deepc_rmsnorm(s->xb + (size_t)b * E, s->x + (size_t)b * E, m->out_norm.data, E, hp->norm_eps);
    if (logits_out) {
        deepc_matmul(s, &m->lm_head, s->xb, n, logits_out, hp->n_vocab, NULL);
        memcpy(s->logits, logits_out + (size_t)(n - 1) * hp->n_vocab, (size_t)hp->n_vocab * sizeof(float));
    } else {
        deepc_matmul(s, &m->lm_head, s->xb + (size_t)first * E, cnt, s->logits, hp->n_vocab, NULL);
    }
    for (int b = 0; b < n; b++) s->history[pos0 + b] = tokens[b];
    s->pos = pos0 + n;
    s->have_logits = true;
    return DEEPC_OK;
}
