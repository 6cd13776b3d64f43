/* forward.c - the layer loop, the dense (Qwen2 / Llama 3) attention and MLP,
 * and the matrix products every architecture shares. Products are split by
 * output rows across the pool; every output value is produced by one vec_dot
 * call whatever the thread count, so results do not depend on it. */
#include <math.h>
#include <string.h>

#include "forward.h"

/* ---- matrix products ---------------------------------------------------- */

typedef struct {
    const deepc_kernels *k;
    const deepc_wt *w;
    const void *xq;        /* activation rows in the kernel's act type */
    size_t xq_stride;      /* bytes between activation rows */
    float *y;
    int y_stride;          /* floats between output rows */
    int B;
    const float *bias;
    int group_rows;        /* rows that share one activation row per token */
    int n_groups;          /* activation rows per token */
} matmul_task;

static void matmul_run(void *arg, int ith, int nth) {
    const matmul_task *t = arg;
    const deepc_wt *w = t->w;
    int r0 = (int)((int64_t)w->rows * ith / nth), r1 = (int)((int64_t)w->rows * (ith + 1) / nth);
    deepc_vec_dot_fn dot = t->k->vec_dot[w->type];
    const uint8_t *wrow = (const uint8_t *)w->data + (size_t)r0 * w->row_bytes;
    /* rows outer, batch inner: each weight row is read from memory once per batch */
    for (int r = r0; r < r1; r++, wrow += w->row_bytes) {
        float b = t->bias ? t->bias[r] : 0.0f;
        int g = r / t->group_rows;
        for (int i = 0; i < t->B; i++) {
            const uint8_t *x = (const uint8_t *)t->xq + ((size_t)i * t->n_groups + g) * t->xq_stride;
            t->y[(size_t)i * t->y_stride + r] = dot((size_t)w->cols, wrow, x) + b;
        }
    }
}

size_t deepc_act_convert(const deepc_session *s, deepc_type wt, const float *x, int n, int cols, void *dst) {
    deepc_type at = s->k->act_type[wt];
    size_t rb = deepc_type_row_bytes(at, (size_t)cols);
    for (int i = 0; i < n; i++)
        s->k->quantize_act[at](x + (size_t)i * cols, (uint8_t *)dst + (size_t)i * rb, (size_t)cols);
    return rb;
}

static void matmul_grouped(deepc_session *s, const deepc_wt *w, int n_groups, const float *x, int B,
                           float *y, int y_stride, const deepc_wt *bias) {
    matmul_task t = { s->k, w, x, (size_t)w->cols * sizeof(float), y, y_stride, B,
                      bias && bias->data ? bias->data : NULL, w->rows / n_groups, n_groups };
    if (s->k->act_type[w->type] != DEEPC_TYPE_F32) {
        t.xq = s->act;
        t.xq_stride = deepc_act_convert(s, w->type, x, B * n_groups, w->cols, s->act);
    }
    deepc_pool_run(s->pool, matmul_run, &t);
}

void deepc_matmul(deepc_session *s, const deepc_wt *w, const float *x, int B, float *y, int y_stride,
                  const deepc_wt *bias) {
    matmul_grouped(s, w, 1, x, B, y, y_stride, bias);
}

void deepc_matmul_heads(deepc_session *s, const deepc_wt *w, int n_heads, const float *x, int B, float *y) {
    matmul_grouped(s, w, n_heads, x, B, y, w->rows, NULL);
}

/* ---- elementwise pieces (fp32) ----------------------------------------- */

void deepc_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

void deepc_swiglu(float *hb, const float *hb2, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float g = hb[i];
        hb[i] = g / (1.0f + expf(-g)) * hb2[i];
    }
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
} attn_task;

static void attn_run(void *arg, int ith, int nth) {
    const attn_task *t = arg;
    deepc_session *s = t->s;
    const deepc_hparams *hp = &s->m->hp;
    int hd = hp->head_dim, nh = hp->n_heads, kvd = hp->n_kv_heads * hd, group = nh / hp->n_kv_heads;
    const uint16_t *kc = s->k_cache + (size_t)t->layer * s->n_ctx * kvd;
    const uint16_t *vc = s->v_cache + (size_t)t->layer * s->n_ctx * kvd;
    float *sc = s->scores + (size_t)ith * s->n_ctx;
    float scale = s->m->attn_scale;
    int total = t->B * nh;
    for (int job = total * ith / nth; job < total * (ith + 1) / nth; job++) {
        int b = job / nh, h = job % nh, kvh = h / group, n = t->pos0 + b + 1;
        const float *q = s->q + (size_t)b * nh * hd + (size_t)h * hd;
        float mx = -INFINITY;
        for (int p = 0; p < n; p++) {
            const uint16_t *kp = kc + (size_t)p * kvd + (size_t)kvh * hd;
            float d = 0.0f;
            for (int i = 0; i < hd; i++) d += q[i] * deepc_fp16_to_fp32(kp[i]);
            sc[p] = d * scale;
            if (sc[p] > mx) mx = sc[p];
        }
        float sum = 0.0f;
        for (int p = 0; p < n; p++) { sc[p] = expf(sc[p] - mx); sum += sc[p]; }
        float inv = 1.0f / sum;
        float *o = s->att + (size_t)b * nh * hd + (size_t)h * hd;
        memset(o, 0, (size_t)hd * sizeof *o);
        for (int p = 0; p < n; p++) {
            const uint16_t *vp = vc + (size_t)p * kvd + (size_t)kvh * hd;
            float w = sc[p] * inv;
            for (int i = 0; i < hd; i++) o[i] += w * deepc_fp16_to_fp32(vp[i]);
        }
    }
}

/* GQA attention of layer l; the o_proj output lands in s->hb2 (n_embd rows). */
static void attn_gqa(deepc_session *s, int l, int pos0, int n) {
    const deepc_hparams *hp = &s->m->hp;
    const deepc_layer *L = &s->m->layers[l];
    int E = hp->n_embd, hd = hp->head_dim, Q = hp->n_heads * hd, KV = hp->n_kv_heads * hd;
    deepc_matmul(s, &L->wq, s->xb, n, s->q, Q, &L->bq);
    deepc_matmul(s, &L->wk, s->xb, n, s->kv_k, KV, &L->bk);
    deepc_matmul(s, &L->wv, s->xb, n, s->kv_v, KV, &L->bv);
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
    attn_task at = { s, l, pos0, n };
    deepc_pool_run(s->pool, attn_run, &at);
    deepc_matmul(s, &L->wo, s->att, n, s->hb2, E, NULL);
}

/* ---- dense SwiGLU MLP --------------------------------------------------- */

static void ffn_dense(deepc_session *s, const deepc_layer *L, int n) {
    int E = s->m->hp.n_embd, F = L->w_gate.rows;
    deepc_matmul(s, &L->w_gate, s->xb, n, s->hb, F, NULL);
    deepc_matmul(s, &L->w_up, s->xb, n, s->hb2, F, NULL);
    deepc_swiglu(s->hb, s->hb2, (size_t)n * F);
    deepc_matmul(s, &L->w_down, s->hb, n, s->xb, E, NULL);
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
