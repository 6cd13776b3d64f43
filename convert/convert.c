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
#include "deepc.h"
#include "dqf.h"
#include "json.h"
#include "model.h"
#include "safetensors.h"
#include "tokdata.h"

#define CHUNK_FLOATS (1u << 20)   /* 4 MiB of f32 per read */

deepc_convert_params deepc_convert_default_params(void) {
    deepc_convert_params p = { sizeof p, NULL, NULL, NULL, NULL };
    return p;
}

/* ---- config.json -------------------------------------------------------- */

static int cfg_int(const deepc_json *cfg, const char *key, int64_t dflt, int64_t lo, int64_t hi, int *out, deepc_err *err) {
    const deepc_json *v = deepc_json_get(cfg, key);
    int64_t x = dflt;
    if (v && deepc_json_type_of(v) != DEEPC_JSON_NULL) {
        if (!deepc_json_int(v, &x)) return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: '%s' must be an integer", key);
    } else if (dflt < 0) {
        return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: missing '%s'", key);
    }
    if (x < lo || x > hi) return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: '%s' = %lld is out of range [%lld, %lld]", key, (long long)x, (long long)lo, (long long)hi);
    *out = (int)x;
    return 0;
}

static int cfg_float(const deepc_json *cfg, const char *key, double dflt, double lo, double hi, float *out, deepc_err *err) {
    const deepc_json *v = deepc_json_get(cfg, key);
    double x = dflt;
    if (v && deepc_json_type_of(v) != DEEPC_JSON_NULL) {
        if (deepc_json_type_of(v) != DEEPC_JSON_NUMBER) return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: '%s' must be a number", key);
        x = deepc_json_num(v, dflt);
    } else if (dflt < 0) {
        return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: missing '%s'", key);
    }
    if (!(x >= lo && x <= hi)) return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: '%s' = %g is out of range [%g, %g]", key, x, lo, hi);
    *out = (float)x;
    return 0;
}

static bool cfg_bool(const deepc_json *cfg, const char *key, bool dflt) {
    return deepc_json_bool(deepc_json_get(cfg, key), dflt);
}

static bool str_is(const deepc_json *v, const char *s) {
    size_t n;
    const char *t = deepc_json_str(v, &n);
    return t && n == strlen(s) && !memcmp(t, s, n);
}

static int parse_config(const deepc_json *cfg, deepc_hparams *hp, deepc_err *err) {
    memset(hp, 0, sizeof *hp);
    if (deepc_json_type_of(cfg) != DEEPC_JSON_OBJECT) return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: not a JSON object");
    const deepc_json *archs = deepc_json_get(cfg, "architectures");
    const deepc_json *a0 = deepc_json_at(archs, 0);
    size_t an = 0;
    const char *as = deepc_json_str(a0, &an);
    if (!as) return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: missing 'architectures'");
    if (str_is(a0, "Qwen2ForCausalLM")) hp->arch = DEEPC_ARCH_QWEN2;
    else if (str_is(a0, "LlamaForCausalLM")) hp->arch = DEEPC_ARCH_LLAMA;
    else return deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "config.json: architecture '%.*s' is not supported (supported: Qwen2ForCausalLM, LlamaForCausalLM)", (int)(an > 80 ? 80 : an), as);
    int rc = cfg_int(cfg, "num_hidden_layers", -1, 1, 1024, &hp->n_layers, err);
    if (!rc) rc = cfg_int(cfg, "hidden_size", -1, 1, 65536, &hp->n_embd, err);
    if (!rc) rc = cfg_int(cfg, "intermediate_size", -1, 1, 1 << 20, &hp->n_ff, err);
    if (!rc) rc = cfg_int(cfg, "num_attention_heads", -1, 1, 1024, &hp->n_heads, err);
    if (!rc) rc = cfg_int(cfg, "num_key_value_heads", hp->n_heads, 1, 1024, &hp->n_kv_heads, err);
    if (!rc) rc = cfg_int(cfg, "vocab_size", -1, 1, 1 << 24, &hp->n_vocab, err);
    if (!rc) rc = cfg_int(cfg, "max_position_embeddings", 4096, 1, 1 << 24, &hp->n_ctx_train, err);
    if (!rc) rc = cfg_float(cfg, "rope_theta", 10000.0, 1.0, 1e12, &hp->rope_theta, err);
    if (!rc) rc = cfg_float(cfg, "rms_norm_eps", 1e-6, 0.0, 1.0, &hp->norm_eps, err);
    if (rc) return rc;
    if (hp->n_embd % hp->n_heads && !deepc_json_get(cfg, "head_dim"))
        return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: hidden_size %d is not divisible by num_attention_heads %d", hp->n_embd, hp->n_heads);
    rc = cfg_int(cfg, "head_dim", hp->n_embd / hp->n_heads, 2, 1024, &hp->head_dim, err);
    if (rc) return rc;
    if (hp->head_dim % 2) return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: head_dim %d is odd", hp->head_dim);
    if (hp->n_heads % hp->n_kv_heads)
        return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: num_attention_heads %d is not a multiple of num_key_value_heads %d", hp->n_heads, hp->n_kv_heads);
    const deepc_json *act = deepc_json_get(cfg, "hidden_act");
    if (act && !str_is(act, "silu")) return deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "config.json: hidden_act must be \"silu\"");
    hp->tied_embeddings = cfg_bool(cfg, "tie_word_embeddings", false);
    if (hp->arch == DEEPC_ARCH_QWEN2) {
        hp->attn_bias = true;   /* Qwen2 attention always has q/k/v biases */
        if (cfg_bool(cfg, "use_sliding_window", false))
            return deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "config.json: use_sliding_window = true is not supported");
    } else {
        if (cfg_bool(cfg, "attention_bias", false) || cfg_bool(cfg, "mlp_bias", false))
            return deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "config.json: Llama attention_bias / mlp_bias = true is not supported");
    }
    const deepc_json *rs = deepc_json_get(cfg, "rope_scaling");
    if (rs && deepc_json_type_of(rs) != DEEPC_JSON_NULL) {
        const deepc_json *ty = deepc_json_get(rs, "rope_type");
        if (!ty) ty = deepc_json_get(rs, "type");
        if (!str_is(ty, "llama3")) {
            size_t tn = 0;
            const char *ts = deepc_json_str(ty, &tn);
            return deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "config.json: rope_scaling type '%.*s' is not supported for this architecture (supported: llama3)",
                              (int)(tn > 40 ? 40 : tn), ts ? ts : "?");
        }
        hp->rope_scaling = DEEPC_ROPE_SCALING_LLAMA3;
        rc = cfg_float(rs, "factor", -1, 1.0, 1e6, &hp->rope_factor, err);
        if (!rc) rc = cfg_float(rs, "low_freq_factor", -1, 1e-6, 1e6, &hp->rope_low_freq_factor, err);
        if (!rc) rc = cfg_float(rs, "high_freq_factor", -1, 1e-6, 1e6, &hp->rope_high_freq_factor, err);
        if (!rc) rc = cfg_int(rs, "original_max_position_embeddings", -1, 1, 1 << 24, &hp->rope_orig_ctx, err);
        if (rc) return rc;
        if (hp->rope_high_freq_factor <= hp->rope_low_freq_factor)
            return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: rope_scaling high_freq_factor must exceed low_freq_factor");
    }
    return 0;
}

/* ---- the tensor plan ---------------------------------------------------- */

typedef struct {
    char name[96];
    uint64_t rows, cols;    /* rows == 0: a 1-D vector of cols */
} planned;

static int plan_tensors(const deepc_hparams *hp, planned **out, size_t *n_out) {
    size_t cap = 3 + (size_t)hp->n_layers * 12, n = 0;
    planned *p = calloc(cap, sizeof *p);
    if (!p) return DEEPC_ERR_NOMEM;
    uint64_t E = hp->n_embd, Q = (uint64_t)hp->n_heads * hp->head_dim, KV = (uint64_t)hp->n_kv_heads * hp->head_dim, F = hp->n_ff;
#define ADD(r, c, ...) do { snprintf(p[n].name, sizeof p[n].name, __VA_ARGS__); p[n].rows = (r); p[n].cols = (c); n++; } while (0)
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
#undef ADD
    *out = p;
    *n_out = n;
    return 0;
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

static int write_hparams(deepc_dqf_writer *w, const deepc_hparams *hp) {
    static const char *const names[] = { "qwen2", "llama" };
    const char *a = names[hp->arch];
    int rc = deepc_dqf_put_str(w, "general.architecture", a, strlen(a));
    if (!rc) rc = deepc_dqf_put_u32(w, "llm.n_layers", (uint32_t)hp->n_layers);
    if (!rc) rc = deepc_dqf_put_u32(w, "llm.n_embd", (uint32_t)hp->n_embd);
    if (!rc) rc = deepc_dqf_put_u32(w, "llm.n_ff", (uint32_t)hp->n_ff);
    if (!rc) rc = deepc_dqf_put_u32(w, "llm.n_heads", (uint32_t)hp->n_heads);
    if (!rc) rc = deepc_dqf_put_u32(w, "llm.n_kv_heads", (uint32_t)hp->n_kv_heads);
    if (!rc) rc = deepc_dqf_put_u32(w, "llm.head_dim", (uint32_t)hp->head_dim);
    if (!rc) rc = deepc_dqf_put_u32(w, "llm.n_vocab", (uint32_t)hp->n_vocab);
    if (!rc) rc = deepc_dqf_put_u32(w, "llm.n_ctx_train", (uint32_t)hp->n_ctx_train);
    if (!rc) rc = deepc_dqf_put_f32(w, "llm.rope_theta", hp->rope_theta);
    if (!rc) rc = deepc_dqf_put_f32(w, "llm.norm_eps", hp->norm_eps);
    if (!rc) rc = deepc_dqf_put_u32(w, "llm.rope_scaling", (uint32_t)hp->rope_scaling);
    if (!rc && hp->rope_scaling == DEEPC_ROPE_SCALING_LLAMA3) {
        rc = deepc_dqf_put_f32(w, "llm.rope_factor", hp->rope_factor);
        if (!rc) rc = deepc_dqf_put_f32(w, "llm.rope_low_freq_factor", hp->rope_low_freq_factor);
        if (!rc) rc = deepc_dqf_put_f32(w, "llm.rope_high_freq_factor", hp->rope_high_freq_factor);
        if (!rc) rc = deepc_dqf_put_u32(w, "llm.rope_orig_ctx", (uint32_t)hp->rope_orig_ctx);
    }
    if (!rc) rc = deepc_dqf_put_bool(w, "llm.attn_bias", hp->attn_bias);
    if (!rc) rc = deepc_dqf_put_bool(w, "llm.tied_embeddings", hp->tied_embeddings);
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

/* ---- streaming one tensor ---------------------------------------------- */

static int convert_tensor(deepc_st *st, const deepc_st_tensor *src, const planned *pl, deepc_type type,
                          deepc_dqf_writer *w, float *fbuf, void *qbuf, deepc_err *err) {
    uint64_t rows = pl->rows ? pl->rows : 1, cols = pl->cols;
    uint64_t dims[2] = { pl->rows, pl->cols };
    int rc = pl->rows ? deepc_dqf_tensor_begin(w, pl->name, type, 2, dims, 0, DEEPC_DQF_ALIGN)
                      : deepc_dqf_tensor_begin(w, pl->name, type, 1, dims + 1, 0, DEEPC_DQF_ALIGN);
    if (rc) return deepc_errf(err, rc, "%s", deepc_dqf_writer_error(w));
    size_t rb = deepc_type_row_bytes(type, (size_t)cols);
    uint64_t per = CHUNK_FLOATS / cols ? CHUNK_FLOATS / cols : 1;
    for (uint64_t r = 0; r < rows; r += per) {
        uint64_t nr = rows - r < per ? rows - r : per;
        rc = deepc_st_read_f32(st, src, r * cols, fbuf, (size_t)(nr * cols), err);
        if (rc) return rc;
        for (uint64_t i = 0; i < nr * cols; i++)
            if (fbuf[i] != fbuf[i] || fbuf[i] - fbuf[i] != 0.0f)
                return deepc_errf(err, DEEPC_ERR_FORMAT, "tensor '%s': non-finite value at element %llu", pl->name, (unsigned long long)(r * cols + i));
        for (uint64_t i = 0; i < nr; i++)
            deepc_quantize_row(type, fbuf + i * cols, (uint8_t *)qbuf + i * rb, (size_t)cols);
        if (deepc_dqf_tensor_write(w, qbuf, (size_t)(nr * rb))) return deepc_errf(err, DEEPC_ERR_IO, "%s", deepc_dqf_writer_error(w));
    }
    if (deepc_dqf_tensor_end(w)) return deepc_errf(err, DEEPC_ERR_IO, "%s", deepc_dqf_writer_error(w));
    return 0;
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
    planned *plan = NULL;
    size_t n_plan = 0;
    float *fbuf = NULL;
    void *qbuf = NULL;
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
    if ((rc = parse_config(deepc_json_root(cfg), &hp, err))) goto done;
    if ((rc = load_tokenizer(dir, &td, err))) goto done;
    if (p->chat_template) {
        deepc_tmpl_kind k = deepc_tmpl_from_name(p->chat_template);
        if (k == DEEPC_TMPL_NONE) { rc = deepc_errf(err, DEEPC_ERR_INVALID_ARG, "unknown chat template '%s' (use deepseek-r1, deepseek-v3, deepseek-v2, chatml or llama3)", p->chat_template); goto done; }
        td.chat_template = (uint32_t)k;
    }
    if (td.n_vocab > (uint32_t)hp.n_vocab) { rc = deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer has %u tokens but config.json vocab_size is %d", td.n_vocab, hp.n_vocab); goto done; }
    if (!(st = deepc_st_open_dir(dir, err))) { rc = DEEPC_ERR_FORMAT; goto done; }
    if ((rc = plan_tensors(&hp, &plan, &n_plan))) { deepc_errf(err, rc, "out of memory"); goto done; }

    /* check everything before writing a byte */
    uint64_t total_src = 0;
    for (size_t i = 0; i < n_plan; i++) {
        const deepc_st_tensor *t = deepc_st_find(st, plan[i].name);
        if (!t) { rc = deepc_errf(err, DEEPC_ERR_FORMAT, "checkpoint is missing tensor '%s'", plan[i].name); goto done; }
        bool ok = plan[i].rows ? (t->ndim == 2 && t->shape[0] == plan[i].rows && t->shape[1] == plan[i].cols)
                               : (t->ndim == 1 && t->shape[0] == plan[i].cols);
        if (!ok) {
            rc = deepc_errf(err, DEEPC_ERR_FORMAT, "tensor '%s' has shape [%llu%s%llu], config.json implies [%llu%s%llu]", plan[i].name,
                            (unsigned long long)t->shape[0], t->ndim > 1 ? ", " : "", t->ndim > 1 ? (unsigned long long)t->shape[1] : 0ull,
                            (unsigned long long)(plan[i].rows ? plan[i].rows : plan[i].cols), plan[i].rows ? ", " : "",
                            plan[i].rows ? (unsigned long long)plan[i].cols : 0ull);
            goto done;
        }
        if (t->dtype != DEEPC_ST_F32 && t->dtype != DEEPC_ST_F16 && t->dtype != DEEPC_ST_BF16) {
            rc = deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "tensor '%s' has dtype %s; this converter reads F32, F16 and BF16 for %s models",
                            plan[i].name, t->dtype_name, hp.arch == DEEPC_ARCH_QWEN2 ? "Qwen2" : "Llama");
            goto done;
        }
        total_src += t->nbytes;
    }
    for (size_t i = 0; i < deepc_st_count(st); i++) {
        const char *nm = deepc_st_at(st, i)->name;
        bool known = ignorable(nm);
        for (size_t j = 0; j < n_plan && !known; j++) known = !strcmp(plan[j].name, nm);
        if (!known) { rc = deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "checkpoint has tensor '%s' that this architecture does not use (an unsupported variant?)", nm); goto done; }
    }

    fbuf = malloc(CHUNK_FLOATS * sizeof(float) + 65536 * sizeof(float));
    qbuf = malloc(CHUNK_FLOATS * sizeof(float) + 65536 * sizeof(float));
    if (!fbuf || !qbuf) { rc = deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory"); goto done; }
    if (!(w = deepc_dqf_writer_create(out, err))) { rc = DEEPC_ERR_IO; goto done; }
    rc = write_hparams(w, &hp);
    const char *qn = deepc_type_info(wtype)->name;
    if (!rc) rc = deepc_dqf_put_str(w, "general.name", dir, strlen(dir));
    if (!rc) rc = deepc_dqf_put_str(w, "general.converter", "deepc " DEEPC_VERSION, strlen("deepc " DEEPC_VERSION));
    if (!rc) rc = deepc_dqf_put_str(w, "general.quantization", qn, strlen(qn));
    if (!rc) rc = write_tokdata(w, &td);
    if (rc) { rc = deepc_errf(err, rc, "%s", deepc_dqf_writer_error(w)); goto done; }

    char hb[32], tb[32];
    human(tb, sizeof tb, (double)total_src);
    progress(p, "converting %s: %s, %d layers, %zu tensors, %s of weights -> %s (%s)", dir,
             hp.arch == DEEPC_ARCH_QWEN2 ? "qwen2" : "llama", hp.n_layers, n_plan, tb, out, qn);
    double t0 = deepc_now(), last = 0.0;
    uint64_t done_b = 0;
    for (size_t i = 0; i < n_plan; i++) {
        const deepc_st_tensor *t = deepc_st_find(st, plan[i].name);
        /* vectors stay f32 (norms, biases); matrices whose rows do not fill whole blocks fall back to f16 */
        deepc_type ty = plan[i].rows ? wtype : DEEPC_TYPE_F32;
        if (plan[i].cols % deepc_type_info(ty)->block_elems) ty = DEEPC_TYPE_F16;
        if ((rc = convert_tensor(st, t, &plan[i], ty, w, fbuf, qbuf, err))) goto done;
        done_b += t->nbytes;
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
    free(fbuf); free(qbuf); free(plan);
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
