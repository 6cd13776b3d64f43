/* api.c - the small public entry points that are not sessions: status names,
 * version, tokenization, detokenization and chat rendering on a model. */
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "model.h"

const char *deepc_status_name(deepc_status s) {
    switch (s) {
    case DEEPC_OK: return "ok";
    case DEEPC_ERR_INVALID_ARG: return "invalid argument";
    case DEEPC_ERR_IO: return "I/O error";
    case DEEPC_ERR_FORMAT: return "bad format";
    case DEEPC_ERR_UNSUPPORTED: return "unsupported";
    case DEEPC_ERR_NOMEM: return "out of memory";
    case DEEPC_ERR_CONTEXT_FULL: return "context full";
    case DEEPC_ERR_STOPPED: return "stopped";
    }
    return "unknown status";
}

const char *deepc_version_string(void) { return DEEPC_VERSION; }

const char *deepc_session_isa(const deepc_session *s) { return s ? s->k->name : NULL; }

deepc_status deepc_tokenize(const deepc_model *m, const char *text, size_t len, bool add_bos,
                            bool parse_special, int32_t *ids, size_t cap, size_t *n_out) {
    if (!m || (!text && len) || !n_out) return DEEPC_ERR_INVALID_ARG;
    if (!m->tok) { deepc_set_open_error("this model file has no tokenizer"); return DEEPC_ERR_UNSUPPORTED; }
    deepc_err err = { "" };
    int rc = deepc_tokenizer_encode(m->tok, text ? text : "", len, add_bos, parse_special, ids, cap, n_out, &err);
    if (rc) deepc_set_open_error(err.msg);
    return (deepc_status)rc;
}

const char *deepc_token_bytes(const deepc_model *m, int32_t id, size_t *len) {
    if (!m || !m->tok || id < 0 || (uint32_t)id >= m->td.n_vocab) { if (len) *len = 0; return NULL; }
    if (len) *len = m->td.offs[id + 1] - m->td.offs[id];
    return (const char *)m->td.text + m->td.offs[id];
}

bool deepc_token_is_eog(const deepc_model *m, int32_t id) {
    if (!m || !m->tok || id < 0 || (uint32_t)id >= m->td.n_vocab) return false;
    return (m->td.flags[id] & DEEPC_TOKF_EOG) || id == m->td.eos_id;
}

struct deepc_detok {
    const deepc_model *m;
    deepc_detok_state st;
};

deepc_detok *deepc_detok_create(const deepc_model *m) {
    if (!m || !m->tok) return NULL;
    deepc_detok *d = calloc(1, sizeof *d);
    if (d) d->m = m;
    return d;
}
void deepc_detok_destroy(deepc_detok *d) { free(d); }
size_t deepc_detok_push(deepc_detok *d, int32_t id, char *out, size_t cap) {
    return d ? deepc_tokenizer_decode_push(d->m->tok, &d->st, id, out, cap) : 0;
}
size_t deepc_detok_flush(deepc_detok *d, char *out, size_t cap) {
    return d ? deepc_tokenizer_decode_flush(&d->st, out, cap) : 0;
}

/* Template kind and BOS text for rendering; sets the open error on failure. */
static deepc_status tmpl_setup(const deepc_model *m, const char *override, deepc_tmpl_kind *k, char *bos, size_t bos_cap) {
    *k = m->tok ? (deepc_tmpl_kind)m->td.chat_template : DEEPC_TMPL_NONE;
    if (override) {
        *k = deepc_tmpl_from_name(override);
        if (*k == DEEPC_TMPL_NONE) { deepc_set_open_error("unknown chat template name (use deepseek-r1, deepseek-v3, deepseek-v2, chatml or llama3)"); return DEEPC_ERR_INVALID_ARG; }
    }
    if (*k == DEEPC_TMPL_NONE) { deepc_set_open_error("this model has no known chat template; pass one explicitly"); return DEEPC_ERR_UNSUPPORTED; }
    bos[0] = 0;
    if (m->tok && m->td.bos_id >= 0) {
        size_t bl;
        const char *b = deepc_token_bytes(m, m->td.bos_id, &bl);
        if (b && bl < bos_cap) { memcpy(bos, b, bl); bos[bl] = 0; }
    }
    return DEEPC_OK;
}

static const char bad_role[] = "chat message with an unknown role (use system, user, assistant or tool)";

deepc_status deepc_chat_render(const deepc_model *m, const char *template_override,
                               const deepc_chat_msg *msgs, size_t n_msgs, bool add_generation_prompt,
                               char *out, size_t cap, size_t *n_out) {
    if (!m || (!msgs && n_msgs) || !n_out) return DEEPC_ERR_INVALID_ARG;
    deepc_tmpl_kind k;
    char bos[256];
    deepc_status st = tmpl_setup(m, template_override, &k, bos, sizeof bos);
    if (st) return st;
    size_t need = deepc_tmpl_render(k, bos, msgs, n_msgs, add_generation_prompt, out, cap);
    if (need == (size_t)-1) { deepc_set_open_error(bad_role); return DEEPC_ERR_INVALID_ARG; }
    *n_out = need;
    return DEEPC_OK;
}

deepc_status deepc_chat_tokenize(const deepc_model *m, const char *template_override,
                                 const deepc_chat_msg *msgs, size_t n_msgs, bool add_generation_prompt,
                                 int32_t *ids, size_t cap, size_t *n_out) {
    if (!m || (!msgs && n_msgs) || !n_out || (!ids && cap)) return DEEPC_ERR_INVALID_ARG;
    if (!m->tok) { deepc_set_open_error("this model file has no tokenizer"); return DEEPC_ERR_UNSUPPORTED; }
    deepc_tmpl_kind k;
    char bos[256];
    deepc_status st = tmpl_setup(m, template_override, &k, bos, sizeof bos);
    if (st) return st;
    size_t max_spans = 3 * n_msgs + 1, n_spans = 0;
    size_t len = deepc_tmpl_render(k, bos, msgs, n_msgs, add_generation_prompt, NULL, 0);
    if (len == (size_t)-1) { deepc_set_open_error(bad_role); return DEEPC_ERR_INVALID_ARG; }
    char *text = malloc(len + 1);
    deepc_tmpl_span *spans = malloc(max_spans * sizeof *spans);
    if (!text || !spans) { free(text); free(spans); deepc_set_open_error("out of memory"); return DEEPC_ERR_NOMEM; }
    deepc_tmpl_render_spans(k, bos, msgs, n_msgs, add_generation_prompt, text, len + 1, spans, max_spans, &n_spans);
    /* template text may hold special tokens; message content never does.
     * One call over the whole rendering so pre-tokenization runs across the
     * seams exactly as HF's encode(apply_chat_template(...)) does. */
    size_t *plain = malloc((2 * n_spans + 1) * sizeof *plain);
    size_t total = 0;
    deepc_err err = { "" };
    int rc = DEEPC_ERR_NOMEM;
    if (plain) {
        for (size_t i = 0; i < n_spans; i++) {
            plain[2 * i] = spans[i].off;
            plain[2 * i + 1] = spans[i].off + spans[i].len;
        }
        rc = deepc_tokenizer_encode_spans(m->tok, text, len, false, plain, n_spans, ids, cap, &total, &err);
        free(plain);
    } else {
        deepc_errf(&err, DEEPC_ERR_NOMEM, "out of memory");
    }
    free(text);
    free(spans);
    if (rc) { deepc_set_open_error(err.msg); return (deepc_status)rc; }
    *n_out = total;
    return DEEPC_OK;
}

size_t deepc_model_n_tensors(const deepc_model *m) { return m ? deepc_dqf_n_tensors(m->dqf) : 0; }

deepc_status deepc_model_tensor(const deepc_model *m, size_t i, deepc_tensor_info *out) {
    if (!m || !out || i >= deepc_dqf_n_tensors(m->dqf)) return DEEPC_ERR_INVALID_ARG;
    const deepc_dqf_tensor *t = deepc_dqf_tensor_at(m->dqf, i);
    memset(out, 0, sizeof *out);
    out->name = t->name;
    out->type = deepc_type_info(t->type)->name;
    out->ndim = t->ndim;
    for (int k = 0; k < t->ndim; k++) out->dims[k] = t->dims[k];
    out->n_elems = t->n_elems;
    out->bytes = t->size;
    return DEEPC_OK;
}

const char *deepc_model_meta_str(const deepc_model *m, const char *key, size_t *len) {
    const char *s;
    size_t n;
    if (!m || !key || !deepc_dqf_get_str(m->dqf, key, &s, &n)) { if (len) *len = 0; return NULL; }
    if (len) *len = n;
    return s;
}

deepc_status deepc_model_verify(const deepc_model *m) {
    if (!m) return DEEPC_ERR_INVALID_ARG;
    deepc_err err = { "" };
    int rc = deepc_dqf_verify(m->dqf, &err);
    if (rc) deepc_set_open_error(err.msg);
    return (deepc_status)rc;
}
