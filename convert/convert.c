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

static void human(char *out, size_t cap, double b) {
    const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    int i = 0;
    while (b >= 1024.0 && i < 4) { b /= 1024.0; i++; }
    snprintf(out, cap, i ? "%.2f %s" : "%.0f %s", b, u[i]);
}

/* ---- reading checkpoint rows as f32 ---------------------------------- */

/* One source tensor being read: FP8 weights carry their block scales. */
typedef struct {
    deepc_st *st;
    const deepc_st_tensor *t;
    float *scale;            /* FP8: [ceil(R/128)][ceil(C/128)], else NULL */
    uint64_t scale_cols;
    uint8_t *raw;            /* FP8 bounce buffer */
} src_reader;

static int src_open(src_reader *r, deepc_st *st, const deepc_st_tensor *t, uint8_t *raw, deepc_err *err) {
    memset(r, 0, sizeof *r);
    r->st = st;
    r->t = t;
    r->raw = raw;
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
 * its block scales on the fly, never materializing a BF16 copy. */
static int src_rows(src_reader *r, uint64_t r0, uint64_t nr, uint64_t cols, float *dst, deepc_err *err) {
    if (!r->scale) return deepc_st_read_f32(r->st, r->t, r0 * cols, dst, (size_t)(nr * cols), err);
    int rc = deepc_st_read_raw(r->st, r->t, r0 * cols, r->raw, (size_t)(nr * cols), err);
    if (!rc) deepc_fp8_dequant_rows(r->raw, r0, nr, cols, r->scale, r->scale_cols, dst);
    return rc;
}

/* ---- streaming one tensor ---------------------------------------------- */

static int check_finite(const planned *pl, const float *x, size_t n, deepc_err *err) {
    for (size_t i = 0; i < n; i++)
        if (x[i] - x[i] != 0.0f) return deepc_errf(err, DEEPC_ERR_FORMAT, "tensor '%s': non-finite value", pl->src);
    return 0;
}

static int put_rows(deepc_dqf_writer *w, deepc_type type, const float *x, uint64_t nr, uint64_t cols, void *qbuf, deepc_err *err) {
    size_t rb = deepc_type_row_bytes(type, (size_t)cols);
    for (uint64_t i = 0; i < nr; i++) deepc_quantize_row(type, x + i * cols, (uint8_t *)qbuf + i * rb, (size_t)cols);
    if (deepc_dqf_tensor_write(w, qbuf, (size_t)(nr * rb))) return deepc_errf(err, DEEPC_ERR_IO, "%s", deepc_dqf_writer_error(w));
    return 0;
}

static int convert_tensor(deepc_st *st, const deepc_st_tensor *src, const planned *pl, deepc_type type, const deepc_hparams *hp,
                          deepc_dqf_writer *w, float *fbuf, void *qbuf, uint8_t *raw, deepc_err *err) {
    uint64_t rows = pl->rows ? pl->rows : 1, cols = pl->cols;
    uint64_t dims[2] = { pl->rows, pl->cols };
    int rc = pl->rows ? deepc_dqf_tensor_begin(w, pl->name, type, 2, dims, pl->flags, pl->align)
                      : deepc_dqf_tensor_begin(w, pl->name, type, 1, dims + 1, pl->flags, pl->align);
    if (rc) return deepc_errf(err, rc, "%s", deepc_dqf_writer_error(w));
    src_reader r;
    if ((rc = src_open(&r, st, src, raw, err))) goto done;
    if (pl->kind == PLAN_COPY) {
        uint64_t per = CHUNK_FLOATS / cols ? CHUNK_FLOATS / cols : 1;
        for (uint64_t r0 = 0; r0 < rows && !rc; r0 += per) {
            uint64_t nr = rows - r0 < per ? rows - r0 : per;
            rc = src_rows(&r, r0, nr, cols, fbuf, err);
            if (!rc) rc = check_finite(pl, fbuf, (size_t)(nr * cols), err);
            if (!rc) rc = put_rows(w, type, fbuf, nr, cols, qbuf, err);
        }
    } else {
        /* kv_b_proj rows per head: nope key rows, then v value rows, each kv_lora long */
        uint64_t R = hp->kv_lora_rank, NOPE = hp->qk_nope, V = hp->v_head;
        float *tr = fbuf + NOPE * R;
        for (int h = 0; h < hp->n_heads && !rc; h++) {
            uint64_t base = (uint64_t)h * (NOPE + V);
            if (pl->kind == PLAN_V_B) {
                rc = src_rows(&r, base + NOPE, V, R, fbuf, err);
                if (!rc) rc = check_finite(pl, fbuf, (size_t)(V * R), err);
                if (!rc) rc = put_rows(w, type, fbuf, V, R, qbuf, err);
            } else {
                rc = src_rows(&r, base, NOPE, R, fbuf, err);
                if (!rc) rc = check_finite(pl, fbuf, (size_t)(NOPE * R), err);
                for (uint64_t j = 0; !rc && j < R; j++)          /* (nope, R) -> (R, nope) */
                    for (uint64_t i = 0; i < NOPE; i++) tr[j * NOPE + i] = fbuf[i * R + j];
                if (!rc) rc = put_rows(w, type, tr, R, NOPE, qbuf, err);
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
    float *fbuf = NULL;
    void *qbuf = NULL;
    uint8_t *raw = NULL;
    deepc_hparams hp;

    int ti = deepc_type_from_name(p->type ? p->type : "q8_0");
    if (ti < 0) { rc = deepc_errf(err, DEEPC_ERR_INVALID_ARG, "unknown --type '%s' (use f32, f16, bf16 or q8_0)", p->type); goto done; }
    deepc_type wtype = (deepc_type)ti;
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
    fbuf = malloc(nf * sizeof(float));
    qbuf = malloc(nf * sizeof(float));
    raw = malloc(nf);
    if (!fbuf || !qbuf || !raw) { rc = deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory"); goto done; }
    if (!(w = deepc_dqf_writer_create(out, err))) { rc = DEEPC_ERR_IO; goto done; }
    rc = deepc_hf_write_hparams(w, &hp);
    const char *qn = deepc_type_info(wtype)->name;
    if (!rc) rc = deepc_dqf_put_str(w, "general.name", dir, strlen(dir));
    if (!rc) rc = deepc_dqf_put_str(w, "general.converter", "deepc " DEEPC_VERSION, strlen("deepc " DEEPC_VERSION));
    if (!rc) rc = deepc_dqf_put_str(w, "general.quantization", qn, strlen(qn));
    if (!rc && td.n_vocab) rc = write_tokdata(w, &td);
    if (rc) { rc = deepc_errf(err, rc, "%s", deepc_dqf_writer_error(w)); goto done; }

    char hb[32], tb[32];
    human(tb, sizeof tb, (double)total_src);
    static const char *const arch_names[] = { "qwen2", "llama", "deepseek2", "deepseek3" };
    progress(p, "converting %s: %s, %d layers, %zu tensors, %s of weights -> %s (%s)", dir,
             arch_names[hp.arch], hp.n_layers, n_plan, tb, out, qn);
    double t0 = deepc_now(), last = 0.0;
    uint64_t done_b = 0;
    for (size_t i = 0; i < n_plan; i++) {
        const deepc_st_tensor *t = deepc_st_find(st, plan[i].src);
        /* vectors and routers stay f32 (norms, biases, routing scores); matrices
         * whose rows do not fill whole blocks fall back to f16 */
        deepc_type ty = plan[i].rows && !plan[i].keep_f32 ? wtype : DEEPC_TYPE_F32;
        if (plan[i].cols % deepc_type_info(ty)->block_elems) ty = DEEPC_TYPE_F16;
        if ((rc = convert_tensor(st, t, &plan[i], ty, &hp, w, fbuf, qbuf, raw, err))) goto done;
        if (plan[i].kind != PLAN_V_B) done_b += t->nbytes;
        double now = deepc_now() - t0;
        if (now - last >= 0.5 || i + 1 == n_plan) {
            last = now;
            double rate = now > 0 ? (double)done_b / now : 0.0;
            human(hb, sizeof hb, (double)done_b);
            char rb[32];
            human(rb, sizeof rb, rate);
            progress(p, "[%zu/%zu] %s/%s  %s/s  ETA %.0fs  %s", i + 1, n_plan, hb, tb, rb,
                     rate > 0 ? (double)(total_src - done_b) / rate : 0.0, plan[i].name);
        }
    }
    rc = deepc_dqf_writer_finish(w, err);
    w = NULL;
    if (!rc) progress(p, "wrote %s in %.1fs", out, deepc_now() - t0);
done:
    deepc_dqf_writer_abort(w);
    free(fbuf); free(qbuf); free(raw);
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
