/* forward_mla.c - multi-head latent attention (DeepSeek-V2/V3). Per token and
 * layer the cache holds only the normalized latent (kv_lora_rank) and the
 * roped shared key (qk_rope_head_dim). Attention runs in the absorbed form:
 * the query's no-rope part is folded into latent space through kv_b_proj's
 * key rows (k_b_proj), scores and the weighted sum are taken against the
 * latent directly, and the result leaves latent space through kv_b_proj's
 * value rows (v_b_proj); nothing is expanded per head. The expanded form
 * (per-head keys and values rebuilt from the latent, as the Hugging Face
 * code computes them) is kept for verification: both must agree. */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "forward.h"

/* q_a_layernorm and kv_a_layernorm are built with the default eps in both the
 * official and the Hugging Face code, whatever rms_norm_eps says. */
#define MLA_NORM_EPS 1e-6f

typedef struct {
    deepc_session *s;
    int layer, pos0, B;
    atomic_int next;       /* absorbed: next (token, head) job to claim */
} mla_task;

/* Cached row p of a layer: the normalized latent (kv_lora_rank), then the
 * roped shared key (qk_rope_head_dim). */
static const uint16_t *lat_row(const deepc_session *s, int layer, int p) {
    const deepc_hparams *hp = &s->m->hp;
    size_t C = (size_t)hp->kv_lora_rank + hp->qk_rope;
    return s->kv_lat + ((size_t)layer * s->n_ctx + p) * C;
}

static void softmax_inplace(float *sc, int n) {
    float mx = -INFINITY, sum = 0.0f;
    for (int p = 0; p < n; p++) if (sc[p] > mx) mx = sc[p];
    for (int p = 0; p < n; p++) { sc[p] = expf(sc[p] - mx); sum += sc[p]; }
    float inv = 1.0f / sum;
    for (int p = 0; p < n; p++) sc[p] *= inv;
}

/* The fp16 cache kernels of the table, or the scalar ones for a backend
 * without them. */
static deepc_dot_f16_f32_fn dot_f16(const deepc_kernels *k) {
    return k->dot_f16_f32 ? k->dot_f16_f32 : deepc_kernels_scalar()->dot_f16_f32;
}

/* Absorbed: jobs are (token, head) pairs, claimed one at a time (a causal
 * batch's late tokens attend to more positions); a job's result does not
 * depend on which thread runs it. */
static void absorbed_run(void *arg, int ith, int nth) {
    mla_task *t = arg;
    (void)nth;
    deepc_session *s = t->s;
    const deepc_hparams *hp = &s->m->hp;
    int H = hp->n_heads, R = hp->kv_lora_rank, NOPE = hp->qk_nope, ROPE = hp->qk_rope, QH = NOPE + ROPE;
    float *sc = s->scores + (size_t)ith * s->n_ctx;
    float scale = s->m->attn_scale;
    deepc_dot_f16_f32_fn dot = dot_f16(s->k);
    deepc_axpy_rows_f16_f32_fn axpy_rows =
        s->k->axpy_rows_f16_f32 ? s->k->axpy_rows_f16_f32 : deepc_kernels_scalar()->axpy_rows_f16_f32;
    int total = t->B * H;
    for (int job; (job = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed)) < total;) {
        int b = job / H, h = job % H, n = t->pos0 + b + 1;
        const float *ql = s->q_lat + ((size_t)b * H + h) * R;
        const float *qr = s->q + ((size_t)b * H + h) * QH + NOPE;
        for (int p = 0; p < n; p++) {
            const uint16_t *c = lat_row(s, t->layer, p);
            sc[p] = (dot((size_t)R, c, ql) + dot((size_t)ROPE, c + R, qr)) * scale;
        }
        softmax_inplace(sc, n);
        float *o = s->o_lat + ((size_t)b * H + h) * R;
        memset(o, 0, (size_t)R * sizeof *o);
        axpy_rows((size_t)R, (size_t)n, sc, lat_row(s, t->layer, 0), (size_t)R + (size_t)ROPE, o);
    }
}

/* Expanded: jobs are heads; each rebuilds its keys and values for every
 * cached position from the latent, then attends like ordinary MHA. */
static void expanded_run(void *arg, int ith, int nth) {
    const mla_task *t = arg;
    deepc_session *s = t->s;
    const deepc_model *m = s->m;
    const deepc_hparams *hp = &m->hp;
    const deepc_layer *L = &m->layers[t->layer];
    int H = hp->n_heads, R = hp->kv_lora_rank, NOPE = hp->qk_nope, ROPE = hp->qk_rope, QH = NOPE + ROPE, V = hp->v_head;
    int npos = t->pos0 + t->B;
    float *wkb = s->mla_tmp + (size_t)ith * s->mla_tmp_floats;   /* (R, NOPE) */
    float *wvb = wkb + (size_t)R * NOPE;                          /* (V, R) */
    float *K = wvb + (size_t)V * R;                               /* (npos, NOPE) */
    float *Vv = K + (size_t)s->n_ctx * NOPE;                      /* (npos, V) */
    float *sc = Vv + (size_t)s->n_ctx * V;                        /* (npos) */
    float *lat = sc + s->n_ctx;                                   /* (R + ROPE) */
    deepc_dot_f16_f32_fn dot = dot_f16(s->k);
    for (int h = H * ith / nth; h < H * (ith + 1) / nth; h++) {
        for (int j = 0; j < R; j++)
            deepc_dequantize_row(L->wk_b.type, (const uint8_t *)L->wk_b.data + ((size_t)h * R + j) * L->wk_b.row_bytes, wkb + (size_t)j * NOPE, (size_t)NOPE);
        for (int i = 0; i < V; i++)
            deepc_dequantize_row(L->wv_b.type, (const uint8_t *)L->wv_b.data + ((size_t)h * V + i) * L->wv_b.row_bytes, wvb + (size_t)i * R, (size_t)R);
        for (int p = 0; p < npos; p++) {
            const uint16_t *c = lat_row(s, t->layer, p);
            for (int j = 0; j < R + ROPE; j++) lat[j] = deepc_fp16_to_fp32(c[j]);
            float *k = K + (size_t)p * NOPE, *v = Vv + (size_t)p * V;
            memset(k, 0, (size_t)NOPE * sizeof *k);
            for (int j = 0; j < R; j++)              /* k_nope = W_uk[h] . latent */
                for (int i = 0; i < NOPE; i++) k[i] += wkb[(size_t)j * NOPE + i] * lat[j];
            for (int i = 0; i < V; i++) {            /* v = W_uv[h] . latent */
                float a = 0.0f;
                for (int j = 0; j < R; j++) a += wvb[(size_t)i * R + j] * lat[j];
                v[i] = a;
            }
        }
        for (int b = 0; b < t->B; b++) {
            int n = t->pos0 + b + 1;
            const float *q = s->q + ((size_t)b * H + h) * QH;
            for (int p = 0; p < n; p++) {
                const uint16_t *c = lat_row(s, t->layer, p);
                float d = 0.0f;
                for (int i = 0; i < NOPE; i++) d += q[i] * K[(size_t)p * NOPE + i];
                sc[p] = (d + dot((size_t)ROPE, c + R, q + NOPE)) * m->attn_scale;
            }
            softmax_inplace(sc, n);
            float *o = s->att + ((size_t)b * H + h) * V;
            memset(o, 0, (size_t)V * sizeof *o);
            for (int p = 0; p < n; p++)
                for (int i = 0; i < V; i++) o[i] += sc[p] * Vv[(size_t)p * V + i];
        }
    }
}

void deepc_attn_mla(deepc_session *s, int l, int pos0, int n) {
    const deepc_model *m = s->m;
    const deepc_hparams *hp = &m->hp;
    const deepc_layer *L = &m->layers[l];
    int E = hp->n_embd, H = hp->n_heads, R = hp->kv_lora_rank, NOPE = hp->qk_nope, ROPE = hp->qk_rope;
    int QH = NOPE + ROPE, C = R + ROPE, half = ROPE / 2;
    /* the query's first product and the latent KV share the input: one job */
    if (hp->q_lora_rank) {
        deepc_matmul_pair(s, s->xb, n, &L->wq_a, s->q_a, hp->q_lora_rank, &L->wkv_a, s->ckv, C);
        for (int b = 0; b < n; b++) {
            float *qa = s->q_a + (size_t)b * hp->q_lora_rank;
            deepc_rmsnorm(qa, qa, L->q_a_norm.data, hp->q_lora_rank, MLA_NORM_EPS);
        }
        deepc_matmul(s, &L->wq_b, s->q_a, n, s->q, H * QH, NULL);
    } else {
        deepc_matmul_pair(s, s->xb, n, &L->wq, s->q, H * QH, &L->wkv_a, s->ckv, C);
    }
    for (int b = 0; b < n; b++) {
        int p = pos0 + b;
        const float *cs = s->rope_cos + (size_t)p * half, *sn = s->rope_sin + (size_t)p * half;
        float *c = s->ckv + (size_t)b * C;
        deepc_rmsnorm(c, c, L->kv_a_norm.data, R, MLA_NORM_EPS);
        deepc_rope_interleaved(c + R, 1, ROPE, ROPE, cs, sn);
        deepc_rope_interleaved(s->q + (size_t)b * H * QH + NOPE, H, QH, ROPE, cs, sn);
        uint16_t *dst = s->kv_lat + ((size_t)l * s->n_ctx + p) * C;
        for (int j = 0; j < C; j++) dst[j] = deepc_fp32_to_fp16(c[j]);
    }
    mla_task t = { .s = s, .layer = l, .pos0 = pos0, .B = n };
    atomic_init(&t.next, 0);
    if (s->mla_expanded) {
        deepc_pool_run(s->pool, expanded_run, &t);
    } else {
        /* fold each head's no-rope query into latent space: q_lat[h] = W_uk[h]^T q_nope[h] */
        float *qn = s->att;   /* (n, H, NOPE) staging; att is free until the output */
        for (int b = 0; b < n; b++)
            for (int h = 0; h < H; h++)
                memcpy(qn + ((size_t)b * H + h) * NOPE, s->q + ((size_t)b * H + h) * QH, (size_t)NOPE * sizeof(float));
        deepc_matmul_heads(s, &L->wk_b, H, qn, n, s->q_lat);
        deepc_pool_run(s->pool, absorbed_run, &t);
        deepc_matmul_heads(s, &L->wv_b, H, s->o_lat, n, s->att);
    }
    deepc_matmul(s, &L->wo, s->att, n, s->hb2, E, NULL);
}
