/* convert.c - Hugging Face checkpoint -> .dqf. Reads config.json and the
 * tokenizer files, checks that every tensor the architecture needs is present
 * with the right shape, then streams tensors a few megabytes at a time:
 * read as f32, quantize, write. Peak memory is the chunk buffers plus
 * metadata, independent of model size. Output goes to NAME.tmp and is
 * renamed only after the writer has re-validated it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "convert.h"
#include "fp8.h"
#include "deepc.h"
#include "dqf.h"
#include "json.h"
#include "model.h"
#include "safetensors.h"
#include "threadpool.h"
#include "tokdata.h"

#define CHUNK_FLOATS (1u << 20)   /* 4 MiB of f32 per read */

deepc_convert_params deepc_convert_default_params(void) {
    deepc_convert_params p = { sizeof p, NULL, NULL, NULL, NULL, false };
    return p;
}

/* Tensors a checkpoint may carry that the forward pass derives itself. */
static bool ignorable(const char *name) {
    return strstr(name, "rotary_emb.inv_freq") != NULL;
}

/* ---- tokenizer ---------------------------------------------------------- */

static int load_tokenizer(const char *dir, deepc_tokdata *td, deepc_err *err) {
    char *tj = NULL, *tc = NULL;
    size_t tjn = 0, tcn = 0;
    char *pj = deepc_path_join(dir, "tokenizer.json"), *pc = deepc_path_join(dir, "tokenizer_config.json");
    int rc = 0;
    if (!pj || !pc) { rc = deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory"); goto done; }
    rc = deepc_read_file(pj, 512u << 20, &tj, &tjn, err);
    if (rc) goto done;
    deepc_err e2;
    if (deepc_read_file(pc, 64u << 20, &tc, &tcn, &e2)) { tc = NULL; tcn = 0; }
    rc = deepc_tokdata_from_hf(tj, tjn, tc, tcn, td, err);
done:
    free(tj); free(tc); free(pj); free(pc);
    return rc;
}

static int write_tokdata(deepc_dqf_writer *w, const deepc_tokdata *td) {
    int rc = deepc_dqf_put_u32(w, "tokenizer.n_vocab", td->n_vocab);
    if (!rc) rc = deepc_dqf_put_array(w, "tokenizer.offs", DEEPC_META_U32, td->offs, (uint64_t)td->n_vocab + 1);
    if (!rc) rc = deepc_dqf_put_array(w, "tokenizer.text", DEEPC_META_U8, td->text, td->offs[td->n_vocab]);
    if (!rc) rc = deepc_dqf_put_array(w, "tokenizer.flags", DEEPC_META_U32, td->flags, td->n_vocab);
    if (!rc) rc = deepc_dqf_put_array(w, "tokenizer.merges", DEEPC_META_U32, td->merges, 2ull * td->n_merges);
    if (!rc) rc = deepc_dqf_put_u32(w, "tokenizer.pretok", td->pretok);
    if (!rc) rc = deepc_dqf_put_u32(w, "tokenizer.normalizer", td->normalizer);
    if (!rc) rc = deepc_dqf_put_u32(w, "tokenizer.gflags", td->gflags);
    if (!rc) rc = deepc_dqf_put_u32(w, "tokenizer.chat_template", td->chat_template);
    if (!rc) rc = deepc_dqf_put_i32(w, "tokenizer.bos_id", td->bos_id);
    if (!rc) rc = deepc_dqf_put_i32(w, "tokenizer.eos_id", td->eos_id);
    if (!rc) rc = deepc_dqf_put_i32(w, "tokenizer.pad_id", td->pad_id);
    return rc;
}

/* ---- progress ----------------------------------------------------------- */

static void progress(const deepc_convert_params *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void progress(const deepc_convert_params *p, const char *fmt, ...) {
    if (!p->progress) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    p->progress(p->progress_user, 0, line);
}

/* ---- quantization policy ------------------------------------------------ */

/* --type is one weight type for every matrix, or a recipe that picks a type
 * per tensor class (classified by name). Vectors and the MoE router stay
 * f32 either way, and a matrix whose rows are not whole blocks of its type
 * falls back to q4_1 (a k-quant type of 4 bits or fewer, rows of 32), q8_0
 * (q6_k and the other types, rows of 32) or f16 (see tensor_type). */
typedef enum {
    CLS_EMBED, CLS_ATTN, CLS_DENSE_MLP, CLS_SHARED, CLS_EXPERT, CLS_OUTPUT, CLS_OTHER, CLS_COUNT
} tensor_class;

static tensor_class classify(const char *name) {
    if (!strcmp(name, "model.embed_tokens.weight")) return CLS_EMBED;
    if (!strcmp(name, "lm_head.weight")) return CLS_OUTPUT;
    if (strstr(name, ".mlp.experts.")) return CLS_EXPERT;
    if (strstr(name, ".mlp.shared_experts.")) return CLS_SHARED;
    if (strstr(name, ".self_attn.")) return CLS_ATTN;
    if (strstr(name, ".mlp.gate_proj.") || strstr(name, ".mlp.up_proj.") || strstr(name, ".mlp.down_proj.")) return CLS_DENSE_MLP;
    return CLS_OTHER; /* MTP-only matrices (eh_proj, shared_head, ...) */
}

typedef struct {
    const char *label;                 /* general.quantization */
    deepc_type type[CLS_COUNT];
    deepc_type expert_down;            /* routed experts' down_proj */
    bool recipe;                       /* q4 / q2-experts: per-tensor choices (recipe_type) */
    int n_layers;                      /* the main stack's layers, for sensitive_layer */
    bool tied;                         /* the embedding is also the output head */
} quant_policy;

/* Recipes:
 *   q4          routed experts, attention and MLPs q4_k, with q6_k where 4
 *               bits hurt most: the output head (and the embedding when it
 *               is the head), the value path (v_proj; MLA: kv_a_proj_with_mqa
 *               always, k_b/v_b_proj) and the down projections of dense MLPs
 *               and shared experts in the sensitive layers; the embedding
 *               otherwise q4_k (one row is read per token), MTP extras q8_0.
 *               Sizes and speed are those of llama.cpp's Q4_K_M, whose layer
 *               choice this follows.
 *   q2-experts  as q4, but routed experts q2_k with down_proj q3_k (the
 *               down projection is the most sensitive of the three). */
static int parse_policy(const char *name, quant_policy *qp, deepc_err *err) {
    memset(qp, 0, sizeof *qp);
    bool q4 = !strcmp(name, "q4"), q2x = !strcmp(name, "q2-experts");
    if (q4 || q2x) {
        qp->label = name;
        for (int c = 0; c < CLS_COUNT; c++) qp->type[c] = DEEPC_TYPE_Q4_K;
        qp->type[CLS_OUTPUT] = DEEPC_TYPE_Q6_K;
        qp->type[CLS_OTHER] = DEEPC_TYPE_Q8_0;
        qp->type[CLS_EXPERT] = q4 ? DEEPC_TYPE_Q4_K : DEEPC_TYPE_Q2_K;
        qp->expert_down = q4 ? DEEPC_TYPE_Q4_K : DEEPC_TYPE_Q3_K;
        qp->recipe = true;
        return 0;
    }
    int t = deepc_type_from_name(!strcmp(name, "fp8") ? "fp8_b128" : name);
    if (t < 0 || t == DEEPC_TYPE_Q8_K)
        return deepc_errf(err, DEEPC_ERR_INVALID_ARG, "unknown --type '%s' (use f32, f16, bf16, q8_0, q6_k, q4_k, q3_k, q2_k, fp8, "
                          "or a recipe: q4, q2-experts)", name);
    qp->label = deepc_type_info(t)->name;
    for (int c = 0; c < CLS_COUNT; c++) qp->type[c] = (deepc_type)t;
    qp->expert_down = (deepc_type)t;
    return 0;
}

static void policy_resolve(quant_policy *qp, const deepc_hparams *hp) {
    qp->n_layers = hp->n_layers;
    qp->tied = hp->tied_embeddings;
}

/* The layers whose value and down projections a recipe keeps at 6 bits:
 * the first and last eighth and every third layer between (llama.cpp's
 * Q4_K_M choice; the ends of the stack are the most sensitive). */
static bool sensitive_layer(int l, int n) {
    return l < n / 8 || l >= 7 * n / 8 || (l - n / 8) % 3 == 2;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* A recipe's choice for one matrix of class c. */
static deepc_type recipe_type(const quant_policy *qp, const char *name, tensor_class c) {
    int l = -1;
    if (sscanf(name, "model.layers.%d.", &l) != 1) l = -1;
    bool sens = l >= 0 && sensitive_layer(l, qp->n_layers);
    switch (c) {
    case CLS_EMBED: return qp->tied ? qp->type[CLS_OUTPUT] : qp->type[CLS_EMBED];
    case CLS_ATTN:
        if (strstr(name, ".kv_a_proj_with_mqa.")) return DEEPC_TYPE_Q6_K;
        if (sens && (strstr(name, ".v_proj.") || strstr(name, ".v_b_proj.") || strstr(name, ".k_b_proj."))) return DEEPC_TYPE_Q6_K;
        return qp->type[c];
    case CLS_DENSE_MLP:
    case CLS_SHARED: return sens && ends_with(name, ".down_proj.weight") ? DEEPC_TYPE_Q6_K : qp->type[c];
    case CLS_EXPERT: return ends_with(name, ".down_proj.weight") ? qp->expert_down : qp->type[c];
    default: return qp->type[c];
    }
}

/* The stored type of one planned tensor. */
static deepc_type tensor_type(const quant_policy *qp, const planned *pl) {
    if (!pl->rows || pl->keep_f32) return DEEPC_TYPE_F32;
    tensor_class c = classify(pl->name);
    deepc_type t = qp->recipe ? recipe_type(qp, pl->name, c) : c == CLS_EXPERT && ends_with(pl->name, ".down_proj.weight") ? qp->expert_down : qp->type[c];
    size_t blk = deepc_type_info((int)t)->block_elems;
    if (pl->cols % blk == 0) return t;
    /* A k-quant asked for 4 bits or fewer: q4_1 (5.0 bits/weight) keeps the
     * file near the intended size where q8_0 (8.5) would not (V2-Lite's
     * expert down_proj rows are 1408 = 5.5 x 256). q6_k (6.56) and fp8
     * (8.25) keep q8_0: q4_1 would drop the precision they were asked for
     * (1.7% per-weight RMS error for q6_k, 6-7% for a 4-bit type), q8_0
     * keeps it for 2-2.6 bits more per weight. */
    bool kq = t == DEEPC_TYPE_Q4_K || t == DEEPC_TYPE_Q3_K || t == DEEPC_TYPE_Q2_K;
    if (blk > DEEPC_QK8_0 && pl->cols % DEEPC_QK8_0 == 0) return kq ? DEEPC_TYPE_Q4_1 : DEEPC_TYPE_Q8_0;
    return DEEPC_TYPE_F16;
}

/* ---- reading checkpoint rows as f32 ---------------------------------- */

/* One source tensor being read: FP8 weights carry their block scales. */
typedef struct {
    deepc_st *st;
    const deepc_st_tensor *t;
    float *scale;            /* FP8: [ceil(R/128)][ceil(C/128)], else NULL */
    uint64_t scale_cols;
} src_reader;

static int src_open(src_reader *r, deepc_st *st, const deepc_st_tensor *t, deepc_err *err) {
    memset(r, 0, sizeof *r);
    r->st = st;
    r->t = t;
    if (t->dtype != DEEPC_ST_F8_E4M3) return 0;
    char nm[300];
    snprintf(nm, sizeof nm, "%s_scale_inv", t->name);
    const deepc_st_tensor *s = deepc_st_find(st, nm);
    if (!s) return deepc_errf(err, DEEPC_ERR_FORMAT, "FP8 tensor '%s' has no '%s' block scales", t->name, nm);
    uint64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = t->shape[t->ndim - 1];
    uint64_t sr = (rows + DEEPC_FP8_BLOCK - 1) / DEEPC_FP8_BLOCK, sc = (cols + DEEPC_FP8_BLOCK - 1) / DEEPC_FP8_BLOCK;
    if (s->ndim != 2 || s->shape[0] != sr || s->shape[1] != sc)
        return deepc_errf(err, DEEPC_ERR_FORMAT, "'%s' has shape [%llu, %llu]; 128x128 blocks of [%llu, %llu] need [%llu, %llu]", nm,
                          (unsigned long long)s->shape[0], (unsigned long long)(s->ndim > 1 ? s->shape[1] : 0),
                          (unsigned long long)rows, (unsigned long long)cols, (unsigned long long)sr, (unsigned long long)sc);
    r->scale = malloc((size_t)(sr * sc) * sizeof(float));
    if (!r->scale) return deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory");
    r->scale_cols = sc;
    int rc = deepc_st_read_f32(st, s, 0, r->scale, (size_t)(sr * sc), err);
    for (uint64_t i = 0; !rc && i < sr * sc; i++)
        if (!(r->scale[i] > 0.0f) || r->scale[i] - r->scale[i] != 0.0f)
            rc = deepc_errf(err, DEEPC_ERR_FORMAT, "'%s': block scale %llu is not a positive finite number", nm, (unsigned long long)i);
    return rc;
}

static void src_close(src_reader *r) {
    free(r->scale);
    r->scale = NULL;
}

/* Rows [r0, r0+nr) of the source (cols each) as f32; FP8 is dequantized with
 * its block scales on the fly through raw (nr * cols bytes), never
 * materializing a BF16 copy. Reads with pread and keeps no state, so
 * threads may read disjoint rows at once. */
static int src_rows(const src_reader *r, uint64_t r0, uint64_t nr, uint64_t cols, float *dst, uint8_t *raw, deepc_err *err) {
    if (!r->scale) return deepc_st_read_f32(r->st, r->t, r0 * cols, dst, (size_t)(nr * cols), err);
    int rc = deepc_st_read_raw(r->st, r->t, r0 * cols, raw, (size_t)(nr * cols), err);
    if (!rc) deepc_fp8_dequant_rows(raw, r0, nr, cols, r->scale, r->scale_cols, dst);
    return rc;
}

/* ---- streaming one tensor ---------------------------------------------- */

static int check_finite(const planned *pl, const float *x, size_t n, deepc_err *err) {
    for (size_t i = 0; i < n; i++)
        if (x[i] - x[i] != 0.0f) return deepc_errf(err, DEEPC_ERR_FORMAT, "tensor '%s': non-finite value", pl->src);
    return 0;
}

/* The pool and the chunk buffers of one conversion, with a result slot per
 * thread for the jobs below. */
typedef struct {
    deepc_pool *pool;
    int nth;
    float *fbuf;
    void *qbuf;
    uint8_t *raw;
    int *trc;
    deepc_err *terr;
} conv_bufs;

/* The first failure of a pool job, by thread index (not by time), so the
 * message does not depend on scheduling. */
static int job_result(const conv_bufs *b, deepc_err *err) {
    for (int i = 0; i < b->nth; i++)
        if (b->trc[i]) {
            if (err) *err = b->terr[i];
            return b->trc[i];
        }
    return 0;
}

/* Quantizing is the converter's CPU work, so rows are split across the
 * pool; each row is quantized independently, so the bytes do not depend on
 * the thread count. Rows straight from the source are also read, converted
 * to f32 and checked by the thread that quantizes them (src_chunk), which
 * leaves only the write to the calling thread: with the quantizers at tens
 * of ns per weight, a serial read and scan would otherwise take a
 * quarter of the time. */
typedef struct {
    const conv_bufs *b;
    const src_reader *r;     /* NULL: x already holds the rows */
    const planned *pl;
    deepc_type type;
    const float *x;
    uint64_t r0, nr, cols;   /* source rows [r0, r0 + nr) when r is set */
    size_t rb;
} quant_task;

static void quant_rows_run(void *arg, int ith, int nth) {
    const quant_task *t = arg;
    uint64_t a = t->nr * (uint64_t)ith / (uint64_t)nth, e = t->nr * (uint64_t)(ith + 1) / (uint64_t)nth;
    int rc = 0;
    if (t->r && e > a) {
        float *x = t->b->fbuf + a * t->cols;
        rc = src_rows(t->r, t->r0 + a, e - a, t->cols, x, t->b->raw + a * t->cols, &t->b->terr[ith]);
        if (!rc) rc = check_finite(t->pl, x, (size_t)((e - a) * t->cols), &t->b->terr[ith]);
    }
    for (uint64_t i = a; !rc && i < e; i++)
        deepc_quantize_row(t->type, t->x + i * t->cols, (uint8_t *)t->b->qbuf + i * t->rb, (size_t)t->cols);
    t->b->trc[ith] = rc;
}

static int run_and_write(deepc_dqf_writer *w, const conv_bufs *b, quant_task *t, deepc_err *err) {
    t->rb = deepc_type_row_bytes(t->type, (size_t)t->cols);
    deepc_pool_run(b->pool, quant_rows_run, t);
    int rc = job_result(b, err);
    if (rc) return rc;
    if (deepc_dqf_tensor_write(w, b->qbuf, (size_t)(t->nr * t->rb))) return deepc_errf(err, DEEPC_ERR_IO, "%s", deepc_dqf_writer_error(w));
    return 0;
}

/* nr rows of x (already checked), quantized and written. */
static int put_rows(deepc_dqf_writer *w, const conv_bufs *b, deepc_type type, const float *x, uint64_t nr, uint64_t cols,
                    deepc_err *err) {
    quant_task t = { b, NULL, NULL, type, x, 0, nr, cols, 0 };
    return run_and_write(w, b, &t, err);
}

/* Source rows [r0, r0 + nr) read, checked, quantized and written. */
static int put_src_rows(deepc_dqf_writer *w, const conv_bufs *b, const src_reader *r, const planned *pl, deepc_type type,
                        uint64_t r0, uint64_t nr, uint64_t cols, deepc_err *err) {
    quant_task t = { b, r, pl, type, b->fbuf, r0, nr, cols, 0 };
    return run_and_write(w, b, &t, err);
}

/* FP8 E4M3 source rows to fp8_b128 without re-quantizing: the codes are
 * copied and each 128-element block takes its checkpoint block scale. The
 * 128-wide blocks of a row line up with the checkpoint's 128-column scale
 * blocks, so block b of source row r has scale_inv[r / 128][b] exactly.
 * codes: nr rows of cols codes, the first being source row src_r0. */
static int put_fp8_rows(deepc_dqf_writer *w, const src_reader *r, const planned *pl, const uint8_t *codes, uint64_t src_r0,
                        uint64_t nr, uint64_t cols, void *qbuf, deepc_err *err) {
    deepc_block_fp8_b128 *out = qbuf;
    uint64_t nb = cols / DEEPC_QK_FP8;
    for (uint64_t i = 0; i < nr; i++) {
        const float *srow = r->scale + ((src_r0 + i) / DEEPC_FP8_BLOCK) * r->scale_cols;
        for (uint64_t b = 0; b < nb; b++) {
            const uint8_t *c = codes + i * cols + b * DEEPC_QK_FP8;
            for (int k = 0; k < DEEPC_QK_FP8; k++)
                if ((c[k] & 0x7f) == 0x7f) return deepc_errf(err, DEEPC_ERR_FORMAT, "tensor '%s': non-finite value", pl->src);
            out[i * nb + b].d = srow[b];
            memcpy(out[i * nb + b].qs, c, DEEPC_QK_FP8);
        }
    }
    if (deepc_dqf_tensor_write(w, qbuf, (size_t)(nr * nb * sizeof *out))) return deepc_errf(err, DEEPC_ERR_IO, "%s", deepc_dqf_writer_error(w));
    return 0;
}

static int convert_tensor(deepc_st *st, const deepc_st_tensor *src, const planned *pl, deepc_type type, const deepc_hparams *hp,
                          deepc_dqf_writer *w, const conv_bufs *b, deepc_err *err) {
    float *fbuf = b->fbuf;
    void *qbuf = b->qbuf;
    uint8_t *raw = b->raw;
    uint64_t rows = pl->rows ? pl->rows : 1, cols = pl->cols;
    uint64_t dims[2] = { pl->rows, pl->cols };
    int rc = pl->rows ? deepc_dqf_tensor_begin(w, pl->name, type, 2, dims, pl->flags, pl->align)
                      : deepc_dqf_tensor_begin(w, pl->name, type, 1, dims + 1, pl->flags, pl->align);
    if (rc) return deepc_errf(err, rc, "%s", deepc_dqf_writer_error(w));
    src_reader r;
    if ((rc = src_open(&r, st, src, err))) goto done;
    /* FP8 checkpoint -> fp8_b128: lossless copy (see put_fp8_rows) */
    bool fp8_copy = type == DEEPC_TYPE_FP8_B128 && r.scale;
    if (pl->kind == PLAN_COPY) {
        uint64_t per = CHUNK_FLOATS / cols ? CHUNK_FLOATS / cols : 1;
        for (uint64_t r0 = 0; r0 < rows && !rc; r0 += per) {
            uint64_t nr = rows - r0 < per ? rows - r0 : per;
            if (fp8_copy) {
                rc = deepc_st_read_raw(st, src, r0 * cols, raw, (size_t)(nr * cols), err);
                if (!rc) rc = put_fp8_rows(w, &r, pl, raw, r0, nr, cols, qbuf, err);
                continue;
            }
            rc = put_src_rows(w, b, &r, pl, type, r0, nr, cols, err);
        }
    } else {
        /* kv_b_proj rows per head: nope key rows, then v value rows, each kv_lora long */
        uint64_t R = hp->kv_lora_rank, NOPE = hp->qk_nope, V = hp->v_head;
        float *tr = fbuf + NOPE * R;
        for (int h = 0; h < hp->n_heads && !rc; h++) {
            uint64_t base = (uint64_t)h * (NOPE + V);
            if (pl->kind == PLAN_V_B) {
                if (fp8_copy) {
                    rc = deepc_st_read_raw(st, src, (base + NOPE) * R, raw, (size_t)(V * R), err);
                    if (!rc) rc = put_fp8_rows(w, &r, pl, raw, base + NOPE, V, R, qbuf, err);
                    continue;
                }
                rc = put_src_rows(w, b, &r, pl, type, base + NOPE, V, R, err);
            } else if (fp8_copy && base % DEEPC_FP8_BLOCK == 0) {
                /* transposed, each output row's 128-blocks come from 128
                 * source rows of one scale block (base is a multiple of 128),
                 * column j's scale column j / 128: one scale per block */
                uint8_t *t8 = (uint8_t *)fbuf;
                rc = deepc_st_read_raw(st, src, base * R, raw, (size_t)(NOPE * R), err);
                for (uint64_t j = 0; !rc && j < R; j++)
                    for (uint64_t i = 0; i < NOPE; i++) t8[j * NOPE + i] = raw[i * R + j];
                deepc_block_fp8_b128 *out = qbuf;
                uint64_t nb = NOPE / DEEPC_QK_FP8;
                for (uint64_t j = 0; !rc && j < R; j++)
                    for (uint64_t b = 0; b < nb && !rc; b++) {
                        const uint8_t *c = t8 + j * NOPE + b * DEEPC_QK_FP8;
                        for (int k = 0; k < DEEPC_QK_FP8; k++)
                            if ((c[k] & 0x7f) == 0x7f) rc = deepc_errf(err, DEEPC_ERR_FORMAT, "tensor '%s': non-finite value", pl->src);
                        out[j * nb + b].d = r.scale[((base + b * DEEPC_QK_FP8) / DEEPC_FP8_BLOCK) * r.scale_cols + j / DEEPC_FP8_BLOCK];
                        memcpy(out[j * nb + b].qs, c, DEEPC_QK_FP8);
                    }
                if (!rc && deepc_dqf_tensor_write(w, qbuf, (size_t)(R * nb * sizeof *out)))
                    rc = deepc_errf(err, DEEPC_ERR_IO, "%s", deepc_dqf_writer_error(w));
            } else {
                rc = src_rows(&r, base, NOPE, R, fbuf, raw, err);
                if (!rc) rc = check_finite(pl, fbuf, (size_t)(NOPE * R), err);
                for (uint64_t j = 0; !rc && j < R; j++)          /* (nope, R) -> (R, nope) */
                    for (uint64_t i = 0; i < NOPE; i++) tr[j * NOPE + i] = fbuf[i * R + j];
                if (!rc) rc = put_rows(w, b, type, tr, R, NOPE, err);
            }
        }
    }
    if (!rc && deepc_dqf_tensor_end(w)) rc = deepc_errf(err, DEEPC_ERR_IO, "%s", deepc_dqf_writer_error(w));
done:
    src_close(&r);
    return rc;
}

/* ---- the whole conversion ---------------------------------------------- */

static int convert(const char *dir, const char *out, const deepc_convert_params *p, deepc_err *err) {
    int rc = 0;
    char *cfg_text = NULL, *cfg_path = deepc_path_join(dir, "config.json");
    deepc_json_doc *cfg = NULL;
    deepc_st *st = NULL;
    deepc_dqf_writer *w = NULL;
    deepc_tokdata td;
    memset(&td, 0, sizeof td);
    plan_list pl = { 0 };
    conv_bufs bufs = { 0 };
    deepc_hparams hp;
    quant_policy qp;

    if ((rc = parse_policy(p->type ? p->type : "q8_0", &qp, err))) goto done;
    if (!cfg_path) { rc = deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory"); goto done; }
    size_t cfg_len;
    if ((rc = deepc_read_file(cfg_path, 16u << 20, &cfg_text, &cfg_len, err))) goto done;
    if (!(cfg = deepc_json_parse(cfg_text, cfg_len, err))) {
        char tmp[sizeof err->msg];
        snprintf(tmp, sizeof tmp, "config.json: %.450s", err->msg);
        memcpy(err->msg, tmp, sizeof tmp);
        rc = DEEPC_ERR_FORMAT;
        goto done;
    }
    if ((rc = deepc_hf_parse_config(deepc_json_root(cfg), &hp, err))) goto done;
    if (!p->no_tokenizer && (rc = load_tokenizer(dir, &td, err))) {
        size_t l = strlen(err->msg);
        snprintf(err->msg + l, sizeof err->msg - l, " (convert with --no-tokenizer to keep the weights only; the model then takes token ids)");
        goto done;
    }
    if (p->chat_template) {
        deepc_tmpl_kind k = deepc_tmpl_from_name(p->chat_template);
        if (k == DEEPC_TMPL_NONE) { rc = deepc_errf(err, DEEPC_ERR_INVALID_ARG, "unknown chat template '%s' (use deepseek-r1, deepseek-v3, deepseek-v2, chatml or llama3)", p->chat_template); goto done; }
        td.chat_template = (uint32_t)k;
    }
    if (td.n_vocab > (uint32_t)hp.n_vocab) { rc = deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer has %u tokens but config.json vocab_size is %d", td.n_vocab, hp.n_vocab); goto done; }
    if (!(st = deepc_st_open_dir(dir, err))) { rc = DEEPC_ERR_FORMAT; goto done; }
    if ((rc = deepc_plan_build(&hp, st, &pl, err))) goto done;
    planned *plan = pl.v;
    size_t n_plan = pl.n;
    policy_resolve(&qp, &hp);

    /* check everything before writing a byte */
    uint64_t total_src = 0;
    for (size_t i = 0; i < n_plan; i++) {
        const deepc_st_tensor *t = deepc_st_find(st, plan[i].src);
        if (!t) { rc = deepc_errf(err, DEEPC_ERR_FORMAT, "checkpoint is missing tensor '%s'", plan[i].src); goto done; }
        bool ok = plan[i].any_shape ||
                  (plan[i].src_rows ? (t->ndim == 2 && t->shape[0] == plan[i].src_rows && t->shape[1] == plan[i].src_cols)
                                    : (t->ndim == 1 && t->shape[0] == plan[i].src_cols));
        if (!ok) {
            rc = deepc_errf(err, DEEPC_ERR_FORMAT, "tensor '%s' has shape [%llu%s%llu], config.json implies [%llu%s%llu]", plan[i].src,
                            (unsigned long long)t->shape[0], t->ndim > 1 ? ", " : "", t->ndim > 1 ? (unsigned long long)t->shape[1] : 0ull,
                            (unsigned long long)(plan[i].src_rows ? plan[i].src_rows : plan[i].src_cols), plan[i].src_rows ? ", " : "",
                            plan[i].src_rows ? (unsigned long long)plan[i].src_cols : 0ull);
            goto done;
        }
        bool fp8_ok = t->dtype == DEEPC_ST_F8_E4M3 && deepc_arch_is_mla(hp.arch);
        if (t->dtype != DEEPC_ST_F32 && t->dtype != DEEPC_ST_F16 && t->dtype != DEEPC_ST_BF16 && !fp8_ok) {
            rc = deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "tensor '%s' has dtype %s; this converter reads F32, F16 and BF16%s",
                            plan[i].src, t->dtype_name, deepc_arch_is_mla(hp.arch) ? " and F8_E4M3 with block scales" : " for dense models");
            goto done;
        }
        if (fp8_ok) {
            char sn[300];
            snprintf(sn, sizeof sn, "%s_scale_inv", t->name);
            if (!deepc_st_find(st, sn)) { rc = deepc_errf(err, DEEPC_ERR_FORMAT, "FP8 tensor '%s' has no '%s' block scales", t->name, sn); goto done; }
        }
        if (plan[i].kind != PLAN_V_B) total_src += t->nbytes;
    }
    for (size_t i = 0; i < deepc_st_count(st); i++) {
        const char *nm = deepc_st_at(st, i)->name;
        size_t nl = strlen(nm);
        bool known = ignorable(nm) || (nl > 10 && !strcmp(nm + nl - 10, "_scale_inv") && deepc_arch_is_mla(hp.arch));
        for (size_t j = 0; j < n_plan && !known; j++) known = !strcmp(plan[j].src, nm);
        if (!known) { rc = deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "checkpoint has tensor '%s' that this architecture does not use (an unsupported variant?)", nm); goto done; }
    }

    /* buffers: a chunk of rows, or (for kv_b) one head's block and its transpose */
    uint64_t maxrow = 65536, headblk = 0;
    for (size_t i = 0; i < n_plan; i++) if (plan[i].cols > maxrow) maxrow = plan[i].cols;
    if (deepc_arch_is_mla(hp.arch)) headblk = 2ull * (hp.qk_nope > hp.v_head ? hp.qk_nope : hp.v_head) * hp.kv_lora_rank;
    size_t nf = (size_t)(CHUNK_FLOATS + maxrow > headblk ? CHUNK_FLOATS + maxrow : headblk);
    bufs.fbuf = malloc(nf * sizeof(float));
    bufs.qbuf = malloc(nf * sizeof(float));
    bufs.raw = malloc(nf);
    bufs.pool = deepc_pool_create(deepc_default_threads());
    bufs.nth = bufs.pool ? deepc_pool_size(bufs.pool) : 0;
    bufs.trc = calloc((size_t)bufs.nth + 1, sizeof *bufs.trc);
    bufs.terr = calloc((size_t)bufs.nth + 1, sizeof *bufs.terr);
    if (!bufs.fbuf || !bufs.qbuf || !bufs.raw || !bufs.pool || !bufs.trc || !bufs.terr) { rc = deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory"); goto done; }
    if (!(w = deepc_dqf_writer_create(out, err))) { rc = DEEPC_ERR_IO; goto done; }
    rc = deepc_hf_write_hparams(w, &hp);
    const char *qn = qp.label;
    if (!rc) rc = deepc_dqf_put_str(w, "general.name", dir, strlen(dir));
    if (!rc) rc = deepc_dqf_put_str(w, "general.converter", "deepc " DEEPC_VERSION, strlen("deepc " DEEPC_VERSION));
    if (!rc) rc = deepc_dqf_put_str(w, "general.quantization", qn, strlen(qn));
    if (!rc && td.n_vocab) rc = write_tokdata(w, &td);
    if (rc) { rc = deepc_errf(err, rc, "%s", deepc_dqf_writer_error(w)); goto done; }

    char hb[32], tb[32];
    deepc_fmt_bytes(tb, sizeof tb, (double)total_src);
    progress(p, "converting %s: %s, %d layers, %zu tensors, %s of weights -> %s (%s)", dir,
             deepc_arch_name(hp.arch), hp.n_layers, n_plan, tb, out, qn);
    double t0 = deepc_now(), last = 0.0;
    uint64_t done_b = 0;
    for (size_t i = 0; i < n_plan; i++) {
        const deepc_st_tensor *t = deepc_st_find(st, plan[i].src);
        /* vectors and routers stay f32 (norms, biases, routing scores); matrices
         * take the policy's type, or q4_1 / q8_0 / f16 when their rows are not whole blocks */
        deepc_type ty = tensor_type(&qp, &plan[i]);
        if ((rc = convert_tensor(st, t, &plan[i], ty, &hp, w, &bufs, err))) goto done;
        if (plan[i].kind != PLAN_V_B) done_b += t->nbytes;
        double now = deepc_now() - t0;
        if (now - last >= 0.5 || i + 1 == n_plan) {
            last = now;
            double rate = now > 0 ? (double)done_b / now : 0.0;
            deepc_fmt_bytes(hb, sizeof hb, (double)done_b);
            char rb[32];
            deepc_fmt_bytes(rb, sizeof rb, rate);
            progress(p, "[%zu/%zu] %s/%s  %s/s  ETA %.0fs  %s", i + 1, n_plan, hb, tb, rb,
                     rate > 0 ? (double)(total_src - done_b) / rate : 0.0, plan[i].name);
        }
    }
    rc = deepc_dqf_writer_finish(w, err);
    w = NULL;
    if (!rc) progress(p, "wrote %s in %.1fs", out, deepc_now() - t0);
done:
    deepc_dqf_writer_abort(w);
    deepc_pool_destroy(bufs.pool);
    free(bufs.fbuf); free(bufs.qbuf); free(bufs.raw); free(bufs.trc); free(bufs.terr);
    deepc_plan_free(&pl);
    deepc_st_close(st);
    deepc_tokdata_clear(&td);
    deepc_json_free(cfg);
    free(cfg_text); free(cfg_path);
    return rc;
}

deepc_status deepc_convert(const char *hf_dir, const char *out_path, const deepc_convert_params *pp) {
    deepc_convert_params p = deepc_convert_default_params();
    if (pp) memcpy(&p, pp, pp->struct_size && pp->struct_size < sizeof p ? pp->struct_size : sizeof p);
    if (!hf_dir || !out_path) { deepc_set_open_error("deepc_convert: NULL argument"); return DEEPC_ERR_INVALID_ARG; }
    deepc_err err = { "" };
    int rc = convert(hf_dir, out_path, &p, &err);
    if (rc) deepc_set_open_error(err.msg);
    return (deepc_status)rc;
}
