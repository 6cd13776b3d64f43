/* hfwrite.c - see hfwrite.h: the parts of a Hugging Face checkpoint
 * directory that do not depend on the model family, shared by hfgen.c and
 * hfgen_moe.c.
 *
 * Sections: errors | text buffer | byte-level alphabet | BPE trainer |
 * tokenizer and generation files | output directory | safetensors writer |
 * parallel value generation. */
#include "hfwrite.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* ======================================================================== */
/* errors                                                                   */
/* ======================================================================== */

int hfw_fail(deepc_err *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ======================================================================== */
/* text buffer                                                              */
/* ======================================================================== */

static void reserve(hfw_buf *b, size_t extra) {
    if (b->oom || b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return;
    }
    b->p = p;
    b->cap = cap;
}

void hfw_put(hfw_buf *b, const char *s, size_t n) {
    reserve(b, n);
    if (b->oom) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void hfw_puts(hfw_buf *b, const char *s) { hfw_put(b, s, strlen(s)); }

void hfw_printf(hfw_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    reserve(b, (size_t)n);
    if (b->oom) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void hfw_json_str(hfw_buf *b, const char *s, size_t n) {
    hfw_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': hfw_put(b, "\\\"", 2); break;
        case '\\': hfw_put(b, "\\\\", 2); break;
        case '\n': hfw_put(b, "\\n", 2); break;
        case '\r': hfw_put(b, "\\r", 2); break;
        case '\t': hfw_put(b, "\\t", 2); break;
        default:
            if (c < 0x20) hfw_printf(b, "\\u%04x", c);
            else hfw_put(b, (const char *)&c, 1);
        }
    }
    hfw_put(b, "\"", 1);
}

void hfw_json_cstr(hfw_buf *b, const char *s) { hfw_json_str(b, s, strlen(s)); }

void hfw_float(hfw_buf *b, double v, int min_digits) {
    char tmp[64];
    for (int prec = min_digits; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if ((float)strtod(tmp, NULL) == (float)v) break;
    }
    /* JSON numbers need a digit after '.', and HF writes floats as 10000.0,
     * not 10000 (nan and inf are left as they are) */
    if (!strchr(tmp, '.') && !strchr(tmp, 'e') && !strchr(tmp, 'n') && !strchr(tmp, 'i')) strcat(tmp, ".0");
    hfw_puts(b, tmp);
}

/* ======================================================================== */
/* byte-level alphabet                                                      */
/* ======================================================================== */

/* GPT-2's: printable Latin-1 bytes stand for themselves, the other 68 map
 * to U+0100.. in byte order. Byte token r (0..255) is the r-th byte in
 * "printable first" order, as in the Qwen, Llama 3 and DeepSeek vocabs. */
typedef struct {
    uint8_t byte_of_rank[256];
    uint8_t rank_of_byte[256];
    uint16_t cp_of_byte[256];
} alphabet;

static void alphabet_init(alphabet *a) {
    int k = 0, extra = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int b = 0; b < 256; b++) {
            bool pr = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            if (pr != (pass == 0)) continue;
            a->rank_of_byte[b] = (uint8_t)k;
            a->byte_of_rank[k++] = (uint8_t)b;
            a->cp_of_byte[b] = (uint16_t)(pr ? b : 256 + extra++);
        }
}

/* Appends the byte-level form of raw bytes, escaped for a JSON string. */
static void put_bytelevel(hfw_buf *b, const alphabet *a, const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned cp = a->cp_of_byte[s[i]];
        char u[2];
        if (cp == '"') hfw_put(b, "\\\"", 2);
        else if (cp == '\\') hfw_put(b, "\\\\", 2);
        else if (cp < 0x80) { u[0] = (char)cp; hfw_put(b, u, 1); }
        else { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); hfw_put(b, u, 2); }
    }
}

/* ======================================================================== */
/* BPE trainer                                                              */
/* ======================================================================== */

void hfw_bpe_free(hfw_bpe *b) {
    free(b->off);
    free(b->bytes);
    free(b->merges);
    memset(b, 0, sizeof *b);
}

typedef struct {
    const char *s;
    size_t n;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    size_t m = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->s, y->s, m);
    if (c) return c;
    return (x->n > y->n) - (x->n < y->n);
}

/* A distinct pre-token of the corpus as token ids, and how often it occurs. */
typedef struct {
    int *sym;
    int len;
    int count;
} word;

#define PAIR_SLOTS 65536u  /* open addressing; the corpora have a few thousand distinct pairs */

/* The most frequent adjacent pair as left << 16 | right, ties to the
 * smallest key (the incremental update below ends there whatever the order
 * of the words: the winner's last increment leaves it the best), or
 * UINT32_MAX when every word is one token. */
static uint32_t best_pair(const word *w, int n_w, uint32_t *hkey, int64_t *hcnt) {
    memset(hkey, 0xff, PAIR_SLOTS * sizeof *hkey);
    uint32_t best = UINT32_MAX;
    int64_t best_cnt = 0;
    for (int i = 0; i < n_w; i++)
        for (int k = 0; k + 1 < w[i].len; k++) {
            const uint32_t key = (uint32_t)w[i].sym[k] << 16 | (uint32_t)w[i].sym[k + 1];
            uint32_t h = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 48) & (PAIR_SLOTS - 1);
            while (hkey[h] != UINT32_MAX && hkey[h] != key) h = (h + 1) & (PAIR_SLOTS - 1);
            if (hkey[h] == UINT32_MAX) {
                hkey[h] = key;
                hcnt[h] = 0;
            }
            hcnt[h] += w[i].count;
            if (hcnt[h] > best_cnt || (hcnt[h] == best_cnt && key < best)) {
                best_cnt = hcnt[h];
                best = key;
            }
        }
    return best_cnt > 0 ? best : UINT32_MAX;
}

/* Splits the texts into pre-tokens and collects the distinct ones (sorted,
 * with counts) as byte-token ids. Returns the number of words, -1 on OOM. */
static int corpus_words(const char *const *texts, int n_texts, hfw_pretok_fn pretok, int first, const alphabet *al,
                        size_t n_bytes, word **out) {
    span *sp = malloc((n_bytes + 1) * sizeof *sp);
    word *w = NULL;
    int n_sp = 0, n_w = 0;
    if (!sp) return -1;
    for (int t = 0; t < n_texts; t++) {
        const size_t len = strlen(texts[t]);
        for (size_t i = 0; i < len;) {
            const size_t m = pretok(texts[t], i, len);
            sp[n_sp++] = (span){texts[t] + i, m};
            i += m;
        }
    }
    qsort(sp, (size_t)n_sp, sizeof *sp, span_cmp);
    w = calloc((size_t)n_sp + 1, sizeof *w);
    for (int i = 0; w && i < n_sp;) {
        int j = i;
        while (j < n_sp && span_cmp(&sp[i], &sp[j]) == 0) j++;
        w[n_w] = (word){malloc(sp[i].n * sizeof(int)), (int)sp[i].n, j - i};
        if (!w[n_w].sym) {
            for (int k = 0; k < n_w; k++) free(w[k].sym);
            free(w);
            w = NULL;
            break;
        }
        for (size_t k = 0; k < sp[i].n; k++) w[n_w].sym[k] = first + al->rank_of_byte[(uint8_t)sp[i].s[k]];
        n_w++;
        i = j;
    }
    free(sp);
    *out = w;
    return w ? n_w : -1;
}

/* The token of the string bpe[a] + bpe[b]: an existing one (a merge can
 * reach a string another merge made) or a new one; -1 when out of room. */
static int merge_result(hfw_bpe *out, int a, int b, size_t cap_bytes) {
    const uint32_t la = out->off[a + 1] - out->off[a], lb = out->off[b + 1] - out->off[b];
    for (int t = out->first + 256; t < out->n_tok; t++)
        if (out->off[t + 1] - out->off[t] == la + lb &&
            memcmp(out->bytes + out->off[t], out->bytes + out->off[a], la) == 0 &&
            memcmp(out->bytes + out->off[t] + la, out->bytes + out->off[b], lb) == 0)
            return t;
    const uint32_t o = out->off[out->n_tok];
    if (o + la + lb > cap_bytes) return -1;
    memmove(out->bytes + o, out->bytes + out->off[a], la);
    memmove(out->bytes + o + la, out->bytes + out->off[b], lb);
    out->off[++out->n_tok] = o + la + lb;
    return out->n_tok - 1;
}

int hfw_bpe_train(const char *const *texts, int n_texts, hfw_pretok_fn pretok, int first, int max_new,
                  int max_merges, hfw_bpe *out) {
    alphabet al;
    alphabet_init(&al);
    memset(out, 0, sizeof *out);
    if (max_new < 0) max_new = 0;
    if (max_new > 65535 - 256 - first) max_new = 65535 - 256 - first;  /* pair keys pack two 16-bit ids */
    if (max_merges < 0) max_merges = 0;
    size_t n = 0;
    for (int t = 0; t < n_texts; t++) n += strlen(texts[t]);
    const size_t cap_bytes = 256 + n * 8;
    word *w = NULL;
    const int n_w = corpus_words(texts, n_texts, pretok, first, &al, n, &w);
    uint32_t *hkey = malloc(PAIR_SLOTS * sizeof *hkey);
    int64_t *hcnt = malloc(PAIR_SLOTS * sizeof *hcnt);
    out->off = malloc(((size_t)first + 256 + (size_t)max_new + 1) * sizeof *out->off);
    out->bytes = malloc(cap_bytes);
    out->merges = malloc((size_t)3 * (size_t)(max_merges > 0 ? max_merges : 1) * sizeof *out->merges);
    int rc = -1;
    if (n_w < 0 || !hkey || !hcnt || !out->off || !out->bytes || !out->merges) goto done;
    out->first = first;
    for (int t = 0; t < first; t++) out->off[t] = 0;
    for (int r = 0; r < 256; r++) {
        out->off[first + r] = (uint32_t)r;
        out->bytes[r] = al.byte_of_rank[r];
    }
    out->off[first + 256] = 256;
    out->n_tok = first + 256;
    while (out->n_tok < first + 256 + max_new && out->n_merges < max_merges) {
        const uint32_t best = best_pair(w, n_w, hkey, hcnt);
        if (best == UINT32_MAX) break;  /* every word is one token */
        const int a = (int)(best >> 16), b = (int)(best & 0xffff);
        const int res = merge_result(out, a, b, cap_bytes);
        if (res < 0) break;
        int *m = out->merges + 3 * out->n_merges++;
        m[0] = a;
        m[1] = b;
        m[2] = res;
        for (int i = 0; i < n_w; i++) {
            int r = 0;
            for (int k = 0; k < w[i].len; k++) {
                if (k + 1 < w[i].len && w[i].sym[k] == a && w[i].sym[k + 1] == b) {
                    w[i].sym[r++] = res;
                    k++;
                } else {
                    w[i].sym[r++] = w[i].sym[k];
                }
            }
            w[i].len = r;
        }
    }
    rc = 0;
done:
    for (int i = 0; i < n_w; i++) free(w[i].sym);
    free(w);
    free(hkey);
    free(hcnt);
    if (rc != 0) hfw_bpe_free(out);
    return rc;
}

/* ======================================================================== */
/* tokenizer and generation files                                           */
/* ======================================================================== */

void hfw_tokenizer_head(hfw_buf *b, const hfw_added_token *t, int n) {
    hfw_puts(b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [");
    for (int i = 0; i < n; i++) {
        hfw_printf(b, "%s\n    {\n      \"id\": %d,\n      \"content\": ", i ? "," : "", t[i].id);
        hfw_json_cstr(b, t[i].content);
        hfw_printf(b,
                   ",\n      \"single_word\": false,\n      \"lstrip\": false,\n      \"rstrip\": false,\n"
                   "      \"normalized\": %s,\n      \"special\": %s\n    }",
                   t[i].normalized ? "true" : "false", t[i].special ? "true" : "false");
    }
    hfw_puts(b, "\n  ],\n");
}

void hfw_bytelevel_json(hfw_buf *b, const char *indent, bool add_prefix_space, bool trim_offsets, bool use_regex) {
    hfw_printf(b,
               "{\n%s  \"type\": \"ByteLevel\",\n%s  \"add_prefix_space\": %s,\n%s  \"trim_offsets\": %s,\n"
               "%s  \"use_regex\": %s\n%s}",
               indent, indent, add_prefix_space ? "true" : "false", indent, trim_offsets ? "true" : "false", indent,
               use_regex ? "true" : "false", indent);
}

void hfw_tokenizer_model(hfw_buf *b, const hfw_bpe *bpe, const char *const *specials, const char *subword_affix,
                         const char *ignore_merges, bool merge_pairs) {
    alphabet al;
    alphabet_init(&al);
    hfw_printf(b,
               "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
               "    \"continuing_subword_prefix\": %s,\n    \"end_of_word_suffix\": %s,\n"
               "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n",
               subword_affix, subword_affix);
    if (ignore_merges) hfw_printf(b, "    \"ignore_merges\": %s,\n", ignore_merges);
    hfw_puts(b, "    \"vocab\": {");
    for (int i = 0; i < bpe->n_tok; i++) {
        hfw_puts(b, i ? ",\n      " : "\n      ");
        if (i < bpe->first) {
            hfw_json_cstr(b, specials[i]);
        } else {
            hfw_put(b, "\"", 1);
            put_bytelevel(b, &al, bpe->bytes + bpe->off[i], bpe->off[i + 1] - bpe->off[i]);
            hfw_put(b, "\"", 1);
        }
        hfw_printf(b, ": %d", i);
    }
    hfw_puts(b, "\n    },\n    \"merges\": [");
    for (int i = 0; i < bpe->n_merges; i++) {
        const int l = bpe->merges[3 * i], r = bpe->merges[3 * i + 1];
        hfw_puts(b, i ? ",\n      " : "\n      ");
        hfw_puts(b, merge_pairs ? "[\n        \"" : "\"");
        put_bytelevel(b, &al, bpe->bytes + bpe->off[l], bpe->off[l + 1] - bpe->off[l]);
        hfw_puts(b, merge_pairs ? "\",\n        \"" : " ");
        put_bytelevel(b, &al, bpe->bytes + bpe->off[r], bpe->off[r + 1] - bpe->off[r]);
        hfw_puts(b, merge_pairs ? "\"\n      ]" : "\"");
    }
    hfw_puts(b, "\n    ]\n  }\n}");
}

static void added_token_obj(hfw_buf *b, const char *key, const char *content) {
    hfw_printf(b, "  \"%s\": {\n    \"__type\": \"AddedToken\",\n    \"content\": ", key);
    hfw_json_cstr(b, content);
    hfw_puts(b,
             ",\n    \"lstrip\": false,\n    \"normalized\": true,\n    \"rstrip\": false,\n"
             "    \"single_word\": false\n  },\n");
}

void hfw_tokenizer_config_json(hfw_buf *b, const char *bos, const char *eos, int model_max_length,
                               const char *chat_template) {
    hfw_puts(b, "{\n  \"add_bos_token\": true,\n  \"add_eos_token\": false,\n");
    added_token_obj(b, "bos_token", bos);
    hfw_puts(b, "  \"clean_up_tokenization_spaces\": false,\n");
    added_token_obj(b, "eos_token", eos);
    hfw_printf(b, "  \"legacy\": true,\n  \"model_max_length\": %d,\n", model_max_length);
    added_token_obj(b, "pad_token", eos);
    hfw_puts(b,
             "  \"sp_model_kwargs\": {},\n  \"unk_token\": null,\n  \"tokenizer_class\": \"LlamaTokenizerFast\",\n"
             "  \"chat_template\": ");
    hfw_json_cstr(b, chat_template);
    hfw_puts(b, "\n}\n");
}

void hfw_generation_config_json(hfw_buf *b, int bos, int eos, const char *temperature,
                                const char *transformers_version) {
    hfw_printf(b,
               "{\n  \"_from_model_config\": true,\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n"
               "  \"do_sample\": true,\n  \"temperature\": %s,\n  \"top_p\": 0.95,\n"
               "  \"transformers_version\": \"%s\"\n}\n",
               bos, eos, temperature, transformers_version);
}

const char hfw_r1_chat_template[] =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% end"
    "if %}{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_pro"
    "mpt='') %}{%- for message in messages %}{%- if message['role'] == 'system' %}{% set ns.sys"
    "tem_prompt = message['content'] %}{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt"
    "}}{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = fa"
    "lse -%}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'] == 'assistant"
    "' and message['content'] is none %}{%- set ns.is_tool = false -%}{%- for tool in message['"
    "tool_calls']%}{%- if not ns.is_first %}{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁beg"
    "in｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n"
    "' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}{%- set ns.is_fir"
    "st = true -%}{%- else %}{{'\\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + "
    "tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n"
    "' + '```' + '<｜tool▁call▁end｜>'}}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%"
    "- endfor %}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is not"
    " none %}{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sent"
    "ence｜>'}}{%- set ns.is_tool = false -%}{%- else %}{% set content = message['content'] %}{%"
    " if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}{{"
    "'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}{%- if message["
    "'role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}{{'<｜tool▁out"
    "puts▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- set n"
    "s.is_output_first = false %}{%- else %}{{'\\n<｜tool▁output▁begin｜>' + message['content'] +"
    " '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool"
    "▁outputs▁end｜>'}}{% endif %}{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistan"
    "t｜><think>\\n'}}{% endif %}";

/* ======================================================================== */
/* output directory                                                         */
/* ======================================================================== */

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

/* Opens dir/name for writing, or fails with the reason in o->err. */
static FILE *create(hfw_out *o, const char *name) {
    char *path = path_join(o->dir, name);
    if (!path) {
        hfw_fail(o->err, "%s: out of memory", o->who);
        return NULL;
    }
    FILE *f = fopen(path, "wb");
    if (!f) hfw_fail(o->err, "%s: cannot create %s/%s: %s", o->who, o->dir, name, strerror(errno));
    free(path);
    return f;
}

static void remove_file(const hfw_out *o, const char *name) {
    char *path = path_join(o->dir, name);
    if (path) remove(path);
    free(path);
}

int hfw_open(hfw_out *o, const char *dir, const char *who, deepc_err *err) {
    *o = (hfw_out){.dir = dir, .who = who, .err = err};
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return hfw_fail(err, "%s: cannot create %s: %s", who, dir, strerror(errno));
    return 0;
}

int hfw_write_text(hfw_out *o, const char *name, hfw_buf *b) {
    if (b->oom) return hfw_fail(o->err, "%s: out of memory building %s", o->who, name);
    FILE *f = create(o, name);
    if (!f) return -1;
    const size_t w = fwrite(b->p, 1, b->len, f);
    if (fclose(f) != 0 || w != b->len) return hfw_fail(o->err, "%s: write failed for %s/%s", o->who, o->dir, name);
    o->file_bytes += b->len;
    o->n_files++;
    b->len = 0;
    return 0;
}

/* ======================================================================== */
/* safetensors writer                                                       */
/* ======================================================================== */

static int entry_name_cmp(const void *a, const void *b) {
    return strcmp(((const hfw_entry *)a)->name, ((const hfw_entry *)b)->name);
}

static void shard_name(char *out, size_t cap, int k, int n, int of_digits) {
    if (n == 1) snprintf(out, cap, "model.safetensors");
    else snprintf(out, cap, "model-%05d-of-%0*d.safetensors", k + 1, of_digits, n);
}

/* Cuts the model-order list into n_shards runs by cumulative bytes: a shard
 * is closed before a tensor that would carry it more than half that
 * tensor's size past total / n_shards, or when the tensors left that may
 * open a shard are just enough for the shards left. 0, or -1 when n_shards
 * cannot all be filled. */
static int assign_shards(hfw_entry *ts, int nt, int n_shards, uint64_t total) {
    const uint64_t target = total / (uint64_t)n_shards;
    int shard = 0;
    uint64_t in_shard = 0;
    for (int i = 0; i < nt; i++) {
        const int left = n_shards - 1 - shard;
        int openers = 0;
        for (int j = i; j < nt && openers <= left; j++) openers += ts[j].opens_shard;
        const bool must = openers <= left, full = in_shard + ts[i].nbytes / 2 > target;
        if (left > 0 && in_shard > 0 && ts[i].opens_shard && (must || full)) {
            shard++;
            in_shard = 0;
        }
        ts[i].shard = shard;
        in_shard += ts[i].nbytes;
    }
    return shard == n_shards - 1 ? 0 : -1;
}

/* One safetensors file holding ts[0..n) in that order. */
static int write_shard(hfw_out *o, const char *fname, const hfw_entry *ts, int n, hfw_data_fn data, void *user) {
    hfw_buf h = {0};
    uint64_t off = 0;
    hfw_puts(&h, "{");
    for (int i = 0; i < n; i++) {
        const hfw_entry *t = &ts[i];
        hfw_printf(&h, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "", t->name, t->dtype);
        if (t->ndim == 2) hfw_printf(&h, "%llu,%llu", (unsigned long long)t->shape[0], (unsigned long long)t->shape[1]);
        else hfw_printf(&h, "%llu", (unsigned long long)t->shape[0]);
        hfw_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                   (unsigned long long)(off + t->nbytes));
        off += t->nbytes;
    }
    hfw_puts(&h, ",\"__metadata__\":{\"format\":\"pt\"}}");
    while (h.len % 8 != 0) hfw_puts(&h, " ");
    FILE *f = h.oom ? NULL : create(o, fname);
    if (!f) {
        free(h.p);
        return h.oom ? hfw_fail(o->err, "%s: out of memory", o->who) : -1;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    bool ok = fwrite(len8, 1, 8, f) == 8 && fwrite(h.p, 1, h.len, f) == h.len;
    for (int i = 0; i < n && ok; i++) ok = data(user, f, &ts[i]);
    if (fclose(f) != 0) ok = false;
    const size_t hl = h.len;
    free(h.p);
    if (!ok) return hfw_fail(o->err, "%s: write failed (disk full or out of memory) for %s/%s", o->who, o->dir, fname);
    o->file_bytes += 8 + hl + off;
    o->tensor_bytes += off;
    o->n_files++;
    return 0;
}

int hfw_write_safetensors(hfw_out *o, hfw_entry *ts, int nt, int n_shards, int of_digits, hfw_data_fn data,
                          void *user) {
    uint64_t total = 0;
    for (int i = 0; i < nt; i++) total += ts[i].nbytes;
    if (assign_shards(ts, nt, n_shards, total) != 0) return hfw_fail(o->err, "%s: cannot fill %d shards", o->who, n_shards);
    /* Tensors are grouped by shard already; each group sorted by name. */
    for (int start = 0; start < nt;) {
        int end = start;
        while (end < nt && ts[end].shard == ts[start].shard) end++;
        qsort(ts + start, (size_t)(end - start), sizeof *ts, entry_name_cmp);
        char fname[64];
        shard_name(fname, sizeof fname, ts[start].shard, n_shards, of_digits);
        if (write_shard(o, fname, ts + start, end - start, data, user) != 0) return -1;
        start = end;
    }
    if (n_shards == 1) {
        remove_file(o, "model.safetensors.index.json");
        return 0;
    }
    /* weight_map sorted by tensor name, as transformers writes it. */
    qsort(ts, (size_t)nt, sizeof *ts, entry_name_cmp);
    hfw_buf b = {0};
    hfw_printf(&b, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n  \"weight_map\": {", (unsigned long long)total);
    for (int i = 0; i < nt; i++) {
        char fname[64];
        shard_name(fname, sizeof fname, ts[i].shard, n_shards, of_digits);
        hfw_printf(&b, "%s\n    \"%s\": \"%s\"", i ? "," : "", ts[i].name, fname);
    }
    hfw_puts(&b, "\n  }\n}\n");
    const int rc = hfw_write_text(o, "model.safetensors.index.json", &b);
    free(b.p);
    if (rc == 0) remove_file(o, "model.safetensors");
    return rc;
}

/* ======================================================================== */
/* parallel value generation                                                */
/* ======================================================================== */

static int cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > HFW_MAX_THREADS ? HFW_MAX_THREADS : (int)n;
}

typedef struct {
    hfw_range_fn fn;
    void *ctx;
    size_t a, b;
} range_job;

static void *range_run(void *p) {
    range_job *j = p;
    j->fn(j->ctx, j->a, j->b);
    return NULL;
}

void hfw_parallel_for(size_t n, size_t min_per, hfw_range_fn fn, void *ctx) {
    int nt = cpu_count();
    if (min_per < 1) min_per = 1;
    if ((size_t)nt > n / min_per) nt = (int)(n / min_per);
    if (nt <= 1) {
        fn(ctx, 0, n);
        return;
    }
    range_job jobs[HFW_MAX_THREADS];
    pthread_t th[HFW_MAX_THREADS];
    bool started[HFW_MAX_THREADS];
    const size_t per = (n + (size_t)nt - 1) / (size_t)nt;
    for (int i = 0; i < nt; i++) {
        size_t a = (size_t)i * per < n ? (size_t)i * per : n, b = a + per < n ? a + per : n;
        jobs[i] = (range_job){fn, ctx, a, b};
        started[i] = i > 0 && pthread_create(&th[i], NULL, range_run, &jobs[i]) == 0;
    }
    for (int i = 0; i < nt; i++)
        if (!started[i]) range_run(&jobs[i]);  /* slice 0, or a thread that failed to start */
    for (int i = 1; i < nt; i++)
        if (started[i]) pthread_join(th[i], NULL);
}

#define CHUNK_ELEMS ((size_t)1 << 20)

typedef struct {
    hfw_values_fn fn;
    void *ctx;
    uint64_t first;
    float *f;
    uint8_t *o;
    size_t esz;
} values_job;

static void values_range(void *p, size_t a, size_t b) {
    const values_job *j = p;
    j->fn(j->ctx, j->first + a, b - a, j->f + a, j->o + a * j->esz);
}

bool hfw_scratch_reserve(hfw_scratch *s, size_t n, size_t esz) {
    if (n > s->n_f) {
        float *f = realloc(s->f, n * sizeof *f);
        if (!f) return false;
        s->f = f;
        s->n_f = n;
    }
    if (n * esz > s->n_o) {
        uint8_t *o = realloc(s->o, n * esz);
        if (!o) return false;
        s->o = o;
        s->n_o = n * esz;
    }
    return true;
}

void hfw_scratch_free(hfw_scratch *s) {
    free(s->f);
    free(s->o);
    memset(s, 0, sizeof *s);
}

bool hfw_write_values(FILE *f, uint64_t n_elems, size_t esz, hfw_values_fn fn, void *ctx, hfw_scratch *s) {
    if (!hfw_scratch_reserve(s, n_elems < CHUNK_ELEMS ? (size_t)n_elems + 1 : CHUNK_ELEMS, esz)) return false;
    for (uint64_t e0 = 0; e0 < n_elems; e0 += CHUNK_ELEMS) {
        const size_t m = (size_t)(n_elems - e0 < CHUNK_ELEMS ? n_elems - e0 : CHUNK_ELEMS);
        values_job j = {fn, ctx, e0, s->f, s->o, esz};
        hfw_parallel_for(m, 65536, values_range, &j);
        if (fwrite(s->o, esz, m, f) != m) return false;
    }
    return true;
}
