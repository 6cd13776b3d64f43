/* tok_import.c - builds deepc_tokdata from a Hugging Face tokenizer.json and
 * tokenizer_config.json. It accepts only what core/tokenizer.c reproduces
 * exactly: a byte-level BPE model, one of three known pre-tokenizer
 * structures (DeepSeek-V3, Qwen2, Llama 3) compared string for string, no or
 * NFC normalization, a ByteLevel decoder. Anything else is refused with a
 * message naming the part, because a tokenizer that is merely close gives
 * silently wrong ids.
 *
 * Vocabulary strings and merges are stored in the ByteLevel alphabet (each
 * byte shown as a printable character); they are decoded to raw bytes here,
 * so the runtime never sees that alphabet. */
#include <stdlib.h>
#include <string.h>

#include "deepc.h"
#include "json.h"
#include "tokdata.h"
#include "unicode.h"

/* The pre-tokenizer Split regexes we reproduce, as JSON-decoded strings with
 * CR/LF written as the escapes \r \n (see canon_regex). */
static const char RE_DIGITS3[] = "\\p{N}{1,3}";
static const char RE_DS_CJK[] = "[一-龥぀-ゟ゠-ヿ]+";
static const char RE_DS_MAIN[] =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
    "| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

#define SUPPORTED "(supported: DeepSeek-V3, Qwen2, Llama 3)"
#define MAX_ID (1u << 28)

/* End-of-turn tokens of the supported families: generation stops on them. */
static const char *const eog_names[] = {
    "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<｜end▁of▁sentence｜>",
    "<|endoftext|>", "<|end_of_text|>", "<|EOT|>",
};

/* ------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------ */

static bool str_is(const deepc_json *v, const char *s) {
    size_t n;
    const char *p = deepc_json_str(v, &n);
    return p && n == strlen(s) && memcmp(p, s, n) == 0;
}

static const char *type_of(const deepc_json *v) {
    const char *t = deepc_json_str(deepc_json_get(v, "type"), NULL);
    return t ? t : "(no type)";
}

/* HF's bytes_to_unicode(): printable bytes stand for themselves, the other
 * 68 are shifted to U+0100.. in byte order. Fills map[cp] = byte or -1. */
static void byte_level_alphabet(int16_t map[0x144]) {
    for (int i = 0; i < 0x144; i++) map[i] = -1;
    int shifted = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        if (printable) map[b] = (int16_t)b;
        else map[256 + shifted++] = (int16_t)b;
    }
}

/* Decodes a vocabulary string from the ByteLevel alphabet into out (room
 * for n bytes). A string with a character outside the alphabet is kept as
 * its UTF-8 bytes, which is what HF's ByteLevel decoder does with it. */
static size_t byte_level_decode(const int16_t map[0x144], const char *s, size_t n, uint8_t *out) {
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        size_t len;
        uint32_t cp = deepc_utf8_decode((const uint8_t *)s + i, n - i, &len);
        if (cp >= 0x144 || map[cp] < 0) {
            memcpy(out, s, n);
            return n;
        }
        out[w++] = (uint8_t)map[cp];
        i += len;
    }
    return w;
}

/* Regex source with literal CR/LF written as \r \n, so files that spell the
 * class either way compare equal. Returns a heap string (caller frees). */
static char *canon_regex(const char *s, size_t n) {
    char *o = malloc(2 * n + 1);
    if (!o) return NULL;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r') { o[w++] = '\\'; o[w++] = 'r'; }
        else if (s[i] == '\n') { o[w++] = '\\'; o[w++] = 'n'; }
        else o[w++] = s[i];
    }
    o[w] = 0;
    return o;
}

/* String -> id map over the vocabulary keys (pointers into the JSON doc). */
typedef struct {
    const char **key;
    uint32_t *klen, *id;
    uint32_t mask;
} str_map;

static uint64_t hash_str(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h ^ (h >> 31);
}

static int64_t map_get(const str_map *m, const char *s, size_t n) {
    for (uint32_t i = (uint32_t)hash_str(s, n) & m->mask;; i = (i + 1) & m->mask) {
        if (!m->key[i]) return -1;
        if (m->klen[i] == n && memcmp(m->key[i], s, n) == 0) return m->id[i];
    }
}

/* Inserts; returns false if the key is already present. */
static bool map_put(str_map *m, const char *s, size_t n, uint32_t id) {
    uint32_t i = (uint32_t)hash_str(s, n) & m->mask;
    for (; m->key[i]; i = (i + 1) & m->mask)
        if (m->klen[i] == n && memcmp(m->key[i], s, n) == 0) return false;
    m->key[i] = s;
    m->klen[i] = (uint32_t)n;
    m->id[i] = id;
    return true;
}

static void map_free(str_map *m) {
    free(m->key);
    free(m->klen);
    free(m->id);
}

/* ------------------------------------------------------------------------
 * The parts of tokenizer.json
 * ------------------------------------------------------------------------ */

static int check_model(const deepc_json *model, deepc_err *err) {
    if (deepc_json_type_of(model) != DEEPC_JSON_OBJECT)
        return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer.json: no model section");
    const deepc_json *type = deepc_json_get(model, "type");
    if (type ? !str_is(type, "BPE") : !deepc_json_get(model, "merges"))
        return deepc_errf(err, DEEPC_ERR_UNSUPPORTED,
                          "tokenizer.json: model type '%s' is not supported (only byte-level BPE)",
                          type_of(model));
    if (deepc_json_bool(deepc_json_get(model, "byte_fallback"), false))
        return deepc_errf(err, DEEPC_ERR_UNSUPPORTED,
                          "tokenizer.json: BPE byte_fallback is not supported (SentencePiece-style "
                          "models are not one of " SUPPORTED ")");
    const deepc_json *dropout = deepc_json_get(model, "dropout");
    if (deepc_json_type_of(dropout) != DEEPC_JSON_NULL && deepc_json_num(dropout, 0) != 0)
        return deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "tokenizer.json: BPE dropout is not supported");
    static const char *const empty_ok[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 2; k++) {
        const deepc_json *v = deepc_json_get(model, empty_ok[k]);
        size_t n = 0;
        if (deepc_json_type_of(v) != DEEPC_JSON_NULL && (!deepc_json_str(v, &n) || n != 0))
            return deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "tokenizer.json: BPE %s is not supported",
                              empty_ok[k]);
    }
    return DEEPC_OK;
}

static int read_normalizer(const deepc_json *nz, uint32_t *kind, deepc_err *err) {
    *kind = DEEPC_NORM_NONE;
    if (deepc_json_type_of(nz) == DEEPC_JSON_NULL) return DEEPC_OK;
    if (str_is(deepc_json_get(nz, "type"), "NFC")) {
        *kind = DEEPC_NORM_NFC;
        return DEEPC_OK;
    }
    if (str_is(deepc_json_get(nz, "type"), "Sequence")) {
        const deepc_json *list = deepc_json_get(nz, "normalizers");
        size_t n = deepc_json_len(list);
        if (n == 0) return DEEPC_OK;
        if (n == 1 && str_is(deepc_json_get(deepc_json_at(list, 0), "type"), "NFC")) {
            *kind = DEEPC_NORM_NFC;
            return DEEPC_OK;
        }
        return deepc_errf(err, DEEPC_ERR_UNSUPPORTED,
                          "tokenizer.json: normalizer Sequence starting with '%s' is not supported "
                          "(only none or NFC)", type_of(deepc_json_at(list, 0)));
    }
    return deepc_errf(err, DEEPC_ERR_UNSUPPORTED,
                      "tokenizer.json: normalizer '%s' is not supported (only none or NFC)",
                      type_of(nz));
}

/* Matches the pre_tokenizer against the three known structures. */
static int read_pretok(const deepc_json *pt, uint32_t *kind, deepc_err *err) {
    if (deepc_json_type_of(pt) != DEEPC_JSON_OBJECT)
        return deepc_errf(err, DEEPC_ERR_UNSUPPORTED,
                          "tokenizer.json: no pre_tokenizer; only the byte-level ones " SUPPORTED
                          " are reproduced");
    const deepc_json *single[1] = {pt};
    const deepc_json *list = NULL;
    size_t n = 1;
    if (str_is(deepc_json_get(pt, "type"), "Sequence")) {
        list = deepc_json_get(pt, "pretokenizers");
        n = deepc_json_len(list);
    }
    /* Expected: one to three Splits, then ByteLevel without its own regex. */
    const char *which[3] = {0};
    size_t n_split = 0;
    for (size_t i = 0; i < n; i++) {
        const deepc_json *p = list ? deepc_json_at(list, i) : single[0];
        const char *type = type_of(p);
        if (strcmp(type, "ByteLevel") == 0) {
            if (i != n - 1)
                return deepc_errf(err, DEEPC_ERR_UNSUPPORTED,
                                  "tokenizer.json: pre_tokenizer ByteLevel must come last " SUPPORTED);
            if (deepc_json_bool(deepc_json_get(p, "use_regex"), true))
                return deepc_errf(err, DEEPC_ERR_UNSUPPORTED,
                                  "tokenizer.json: pre_tokenizer ByteLevel with use_regex (GPT-2 "
                                  "regex) is not one deepc reproduces " SUPPORTED);
            if (deepc_json_bool(deepc_json_get(p, "add_prefix_space"), true))
                return deepc_errf(err, DEEPC_ERR_UNSUPPORTED,
                                  "tokenizer.json: pre_tokenizer ByteLevel add_prefix_space is not "
                                  "supported " SUPPORTED);
            continue;
        }
        if (strcmp(type, "Split") != 0)
            return deepc_errf(err, DEEPC_ERR_UNSUPPORTED,
                              "tokenizer.json: pre_tokenizer '%s' is not one deepc reproduces " SUPPORTED,
                              type);
        size_t rn;
        const char *re = deepc_json_str(deepc_json_get(deepc_json_get(p, "pattern"), "Regex"), &rn);
        if (!re)
            return deepc_errf(err, DEEPC_ERR_UNSUPPORTED,
                              "tokenizer.json: pre_tokenizer Split without a Regex pattern is not "
                              "supported " SUPPORTED);
        if (!str_is(deepc_json_get(p, "behavior"), "Isolated") ||
            deepc_json_bool(deepc_json_get(p, "invert"), false))
            return deepc_errf(err, DEEPC_ERR_UNSUPPORTED,
                              "tokenizer.json: pre_tokenizer Split behavior must be Isolated without "
                              "invert " SUPPORTED);
        char *c = canon_regex(re, rn);
        if (!c) return deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory");
        const char *known = strcmp(c, RE_DIGITS3) == 0  ? RE_DIGITS3
                          : strcmp(c, RE_DS_CJK) == 0   ? RE_DS_CJK
                          : strcmp(c, RE_DS_MAIN) == 0  ? RE_DS_MAIN
                          : strcmp(c, RE_QWEN2) == 0    ? RE_QWEN2
                          : strcmp(c, RE_LLAMA3) == 0   ? RE_LLAMA3
                                                        : NULL;
        if (!known) {
            int rc = deepc_errf(err, DEEPC_ERR_UNSUPPORTED,
                                "tokenizer.json: pre_tokenizer Split pattern '%.240s%s' is not one "
                                "deepc reproduces " SUPPORTED, c, strlen(c) > 240 ? "..." : "");
            free(c);
            return rc;
        }
        free(c);
        if (n_split == 3)
            return deepc_errf(err, DEEPC_ERR_UNSUPPORTED,
                              "tokenizer.json: too many pre_tokenizer Splits " SUPPORTED);
        which[n_split++] = known;
    }
    if (n == 0 || !str_is(deepc_json_get(list ? deepc_json_at(list, n - 1) : pt, "type"), "ByteLevel"))
        return deepc_errf(err, DEEPC_ERR_UNSUPPORTED,
                          "tokenizer.json: pre_tokenizer does not end with ByteLevel; only byte-level "
                          "tokenizers " SUPPORTED " are reproduced");
    if (n_split == 3 && which[0] == RE_DIGITS3 && which[1] == RE_DS_CJK && which[2] == RE_DS_MAIN)
        *kind = DEEPC_PRETOK_DEEPSEEK3;
    else if (n_split == 1 && which[0] == RE_QWEN2)
        *kind = DEEPC_PRETOK_QWEN2;
    else if (n_split == 1 && which[0] == RE_LLAMA3)
        *kind = DEEPC_PRETOK_LLAMA3;
    else
        return deepc_errf(err, DEEPC_ERR_UNSUPPORTED,
                          "tokenizer.json: pre_tokenizer is a combination of %zu Split patterns that "
                          "is not one deepc reproduces " SUPPORTED, n_split);
    return DEEPC_OK;
}

/* post_processor: BOS from a TemplateProcessing "single" of
 * [SpecialToken X, Sequence A]; ByteLevel parts only adjust offsets. */
static int read_post(const deepc_json *pp, int32_t *bos, deepc_err *err) {
    *bos = -1;
    if (deepc_json_type_of(pp) == DEEPC_JSON_NULL) return DEEPC_OK;
    const deepc_json *list = NULL;
    size_t n = 1;
    if (str_is(deepc_json_get(pp, "type"), "Sequence")) {
        list = deepc_json_get(pp, "processors");
        n = deepc_json_len(list);
    }
    for (size_t i = 0; i < n; i++) {
        const deepc_json *p = list ? deepc_json_at(list, i) : pp;
        const char *type = type_of(p);
        if (strcmp(type, "ByteLevel") == 0) continue;
        if (strcmp(type, "TemplateProcessing") != 0)
            return deepc_errf(err, DEEPC_ERR_UNSUPPORTED,
                              "tokenizer.json: post_processor '%s' is not supported", type);
        const deepc_json *single = deepc_json_get(p, "single");
        size_t ns = deepc_json_len(single);
        const deepc_json *first = deepc_json_at(single, 0);
        bool seq_last = ns > 0 && deepc_json_get(deepc_json_at(single, ns - 1), "Sequence");
        if (ns == 1 && seq_last) continue;
        const deepc_json *st = deepc_json_get(first, "SpecialToken");
        if (ns != 2 || !seq_last || !st)
            return deepc_errf(err, DEEPC_ERR_UNSUPPORTED,
                              "tokenizer.json: post_processor TemplateProcessing 'single' template is "
                              "not [BOS, $A]; only a prepended BOS is supported");
        size_t nl;
        const char *name = deepc_json_str(deepc_json_get(st, "id"), &nl);
        const deepc_json *spec = NULL, *sts = deepc_json_get(p, "special_tokens");
        for (size_t k = 0; name && k < deepc_json_len(sts); k++) {
            size_t kl;
            const char *key = deepc_json_key_at(sts, k, &kl);
            if (kl == nl && memcmp(key, name, nl) == 0) spec = deepc_json_val_at(sts, k);
        }
        const deepc_json *ids = deepc_json_get(spec, "ids");
        int64_t id;
        if (deepc_json_len(ids) != 1 || !deepc_json_int(deepc_json_at(ids, 0), &id) || id < 0 ||
            id >= MAX_ID)
            return deepc_errf(err, DEEPC_ERR_FORMAT,
                              "tokenizer.json: post_processor special token '%s' has no single id",
                              name ? name : "?");
        *bos = (int32_t)id;
    }
    return DEEPC_OK;
}

static int check_decoder(const deepc_json *dec, deepc_err *err) {
    if (str_is(deepc_json_get(dec, "type"), "ByteLevel")) return DEEPC_OK;
    return deepc_errf(err, DEEPC_ERR_UNSUPPORTED,
                      "tokenizer.json: decoder '%s' is not supported (only ByteLevel)",
                      deepc_json_type_of(dec) == DEEPC_JSON_NULL ? "null" : type_of(dec));
}

/* Token text named by a tokenizer_config entry: a string or an AddedToken
 * object with "content". */
static const char *config_token(const deepc_json *cfg, const char *key, size_t *len) {
    const deepc_json *v = deepc_json_get(cfg, key);
    if (deepc_json_type_of(v) == DEEPC_JSON_OBJECT) v = deepc_json_get(v, "content");
    return deepc_json_str(v, len);
}

/* Id of the token whose bytes are s[0..n): added tokens first (their text is
 * the config's spelling), else -1. */
static int32_t find_token(const deepc_tokdata *td, const char *s, size_t n) {
    if (!s) return -1;
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t id = 0; id < td->n_vocab; id++) {
            if (pass == 0 && !(td->flags[id] & DEEPC_TOKF_ADDED)) continue;
            if (td->offs[id + 1] - td->offs[id] == n && memcmp(td->text + td->offs[id], s, n) == 0)
                return (int32_t)id;
        }
    return -1;
}

/* ------------------------------------------------------------------------
 * Assembly
 * ------------------------------------------------------------------------ */

/* Scratch used while importing. */
typedef struct {
    str_map map;               /* vocab key -> id */
    str_map added;             /* added token content -> id */
    uint32_t *tok_off, *tok_len;   /* (n_vocab) into buf, tok_len UINT32_MAX: absent */
    uint8_t *buf;
    size_t buf_n, buf_cap;
} import_tmp;

static int tmp_append(import_tmp *t, size_t need) {
    if (t->buf_n + need <= t->buf_cap) return 0;
    size_t cap = t->buf_cap ? t->buf_cap : 1u << 20;
    while (cap < t->buf_n + need) cap *= 2;
    uint8_t *b = realloc(t->buf, cap);
    if (!b) return -1;
    t->buf = b;
    t->buf_cap = cap;
    return 0;
}

static int read_vocab_and_added(const deepc_json *root, deepc_tokdata *td, import_tmp *tmp,
                                deepc_err *err) {
    const deepc_json *vocab = deepc_json_get(deepc_json_get(root, "model"), "vocab");
    const deepc_json *added = deepc_json_get(root, "added_tokens");
    if (deepc_json_type_of(vocab) != DEEPC_JSON_OBJECT || deepc_json_len(vocab) == 0)
        return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer.json: model.vocab missing or empty");
    size_t nv = deepc_json_len(vocab), na = deepc_json_len(added);
    /* Ids: the maximum over vocab and added tokens decides the array size. */
    uint32_t n_vocab = 0;
    for (size_t i = 0; i < nv + na; i++) {
        const deepc_json *v = i < nv ? deepc_json_val_at(vocab, i)
                                     : deepc_json_get(deepc_json_at(added, i - nv), "id");
        int64_t id;
        if (!deepc_json_int(v, &id) || id < 0 || id >= MAX_ID)
            return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer.json: %s %zu has an invalid id",
                              i < nv ? "vocab entry" : "added token", i < nv ? i : i - nv);
        if ((uint32_t)id + 1 > n_vocab) n_vocab = (uint32_t)id + 1;
    }
    uint32_t size = 16;
    while (size < 2 * nv) size <<= 1;
    tmp->map.key = calloc(size, sizeof *tmp->map.key);
    tmp->map.klen = malloc(size * sizeof *tmp->map.klen);
    tmp->map.id = malloc(size * sizeof *tmp->map.id);
    tmp->map.mask = size - 1;
    tmp->tok_off = malloc(n_vocab * sizeof *tmp->tok_off);
    tmp->tok_len = malloc(n_vocab * sizeof *tmp->tok_len);
    td->flags = calloc(n_vocab, sizeof *td->flags);
    if (!tmp->map.key || !tmp->map.klen || !tmp->map.id || !tmp->tok_off || !tmp->tok_len ||
        !td->flags)
        return deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory");
    memset(tmp->tok_len, 0xff, n_vocab * sizeof *tmp->tok_len);
    td->n_vocab = n_vocab;

    int16_t alpha[0x144];
    byte_level_alphabet(alpha);
    for (size_t i = 0; i < nv; i++) {
        size_t kl;
        const char *key = deepc_json_key_at(vocab, i, &kl);
        int64_t id;
        deepc_json_int(deepc_json_val_at(vocab, i), &id);
        if (tmp->tok_len[id] != UINT32_MAX)
            return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer.json: vocab id %lld used twice",
                              (long long)id);
        if (!map_put(&tmp->map, key, kl, (uint32_t)id))
            return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer.json: vocab entry %zu repeated", i);
        if (tmp_append(tmp, kl) != 0) return deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory");
        size_t bl = byte_level_decode(alpha, key, kl, tmp->buf + tmp->buf_n);
        tmp->tok_off[id] = (uint32_t)tmp->buf_n;
        tmp->tok_len[id] = (uint32_t)bl;
        tmp->buf_n += bl;
        td->flags[id] = DEEPC_TOKF_PRESENT;
    }
    /* HF ignores the ids written in added_tokens: it re-adds the tokens in
     * file order, giving each the id its text has (added or model vocab) or
     * the next free id after the model vocabulary. A file whose ids disagree
     * would be tokenized differently by HF than its ids say, so refuse it. */
    uint32_t asize = 16;
    while (asize < 2 * na) asize <<= 1;
    tmp->added.key = calloc(asize, sizeof *tmp->added.key);
    tmp->added.klen = malloc(asize * sizeof *tmp->added.klen);
    tmp->added.id = malloc(asize * sizeof *tmp->added.id);
    tmp->added.mask = asize - 1;
    if (!tmp->added.key || !tmp->added.klen || !tmp->added.id)
        return deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory");
    int64_t max_added = -1;
    for (size_t i = 0; i < na; i++) {
        const deepc_json *a = deepc_json_at(added, i);
        int64_t id;
        deepc_json_int(deepc_json_get(a, "id"), &id);
        size_t cl;
        const char *content = deepc_json_str(deepc_json_get(a, "content"), &cl);
        if (!content)
            return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer.json: added token %lld has no content",
                              (long long)id);
        if (cl == 0) continue;   /* HF skips empty added tokens */
        int64_t hf = map_get(&tmp->added, content, cl);
        if (hf < 0) hf = map_get(&tmp->map, content, cl);
        if (hf < 0) hf = max_added < (int64_t)nv ? (int64_t)nv : max_added + 1;
        if (hf != id)
            return deepc_errf(err, DEEPC_ERR_FORMAT,
                              "tokenizer.json: added token '%.64s' has id %lld but Hugging Face gives "
                              "it id %lld (added ids must follow the vocabulary); inconsistent file",
                              content, (long long)id, (long long)hf);
        map_put(&tmp->added, content, cl, (uint32_t)id);
        if (id > max_added) max_added = id;
        /* The added content is the token's text (HF's id_to_token prefers it). */
        if (tmp_append(tmp, cl) != 0) return deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory");
        memcpy(tmp->buf + tmp->buf_n, content, cl);
        tmp->tok_off[id] = (uint32_t)tmp->buf_n;
        tmp->tok_len[id] = (uint32_t)cl;
        tmp->buf_n += cl;
        bool special = deepc_json_bool(deepc_json_get(a, "special"), false);
        uint32_t f = DEEPC_TOKF_PRESENT | DEEPC_TOKF_ADDED;
        if (special) f |= DEEPC_TOKF_SPECIAL;
        if (deepc_json_bool(deepc_json_get(a, "lstrip"), false)) f |= DEEPC_TOKF_LSTRIP;
        if (deepc_json_bool(deepc_json_get(a, "rstrip"), false)) f |= DEEPC_TOKF_RSTRIP;
        if (deepc_json_bool(deepc_json_get(a, "single_word"), false)) f |= DEEPC_TOKF_SINGLE_WORD;
        if (deepc_json_bool(deepc_json_get(a, "normalized"), !special)) f |= DEEPC_TOKF_NORMALIZED;
        td->flags[id] = f;
        for (size_t k = 0; k < sizeof eog_names / sizeof eog_names[0]; k++)
            if (strlen(eog_names[k]) == cl && memcmp(eog_names[k], content, cl) == 0)
                td->flags[id] |= DEEPC_TOKF_EOG;
    }
    /* Lay the token texts out in id order. */
    if (tmp->buf_n > UINT32_MAX)
        return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer.json: token text too large");
    td->offs = malloc(((size_t)n_vocab + 1) * sizeof *td->offs);
    td->text = malloc(tmp->buf_n ? tmp->buf_n : 1);
    if (!td->offs || !td->text) return deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory");
    uint32_t w = 0;
    for (uint32_t id = 0; id < n_vocab; id++) {
        td->offs[id] = w;
        if (tmp->tok_len[id] == UINT32_MAX) continue;
        memcpy(td->text + w, tmp->buf + tmp->tok_off[id], tmp->tok_len[id]);
        w += tmp->tok_len[id];
    }
    td->offs[n_vocab] = w;
    return DEEPC_OK;
}

static int read_merges(const deepc_json *model, deepc_tokdata *td, const import_tmp *tmp,
                       deepc_err *err) {
    const deepc_json *merges = deepc_json_get(model, "merges");
    size_t n = deepc_json_len(merges);
    if (deepc_json_type_of(merges) != DEEPC_JSON_ARRAY)
        return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer.json: model.merges missing");
    if (n >= MAX_ID) return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer.json: too many merges");
    td->merges = malloc((2 * n + 1) * sizeof *td->merges);
    char *cat = NULL;
    size_t cat_cap = 0;
    if (!td->merges) return deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory");
    int rc = DEEPC_OK;
    for (size_t r = 0; r < n && rc == DEEPC_OK; r++) {
        const deepc_json *m = deepc_json_at(merges, r);
        const char *part[2];
        size_t plen[2];
        size_t ml;
        const char *s = deepc_json_str(m, &ml);
        if (s) {   /* "left right" */
            const char *sp = memchr(s, ' ', ml);
            if (!sp || memchr(sp + 1, ' ', ml - (size_t)(sp + 1 - s))) {
                rc = deepc_errf(err, DEEPC_ERR_FORMAT,
                                "tokenizer.json: merge %zu is not two tokens separated by a space", r);
                break;
            }
            part[0] = s; plen[0] = (size_t)(sp - s);
            part[1] = sp + 1; plen[1] = ml - plen[0] - 1;
        } else {   /* ["left", "right"] */
            part[0] = deepc_json_str(deepc_json_at(m, 0), &plen[0]);
            part[1] = deepc_json_str(deepc_json_at(m, 1), &plen[1]);
            if (deepc_json_len(m) != 2 || !part[0] || !part[1]) {
                rc = deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer.json: merge %zu is malformed", r);
                break;
            }
        }
        for (int k = 0; k < 2; k++) {
            int64_t id = map_get(&tmp->map, part[k], plen[k]);
            if (id < 0) {
                rc = deepc_errf(err, DEEPC_ERR_FORMAT,
                                "tokenizer.json: merge %zu uses '%.*s', which is not in the vocab", r,
                                (int)(plen[k] > 64 ? 64 : plen[k]), part[k]);
                break;
            }
            td->merges[2 * r + (size_t)k] = (uint32_t)id;
        }
        if (rc != DEEPC_OK) break;
        /* HF refuses a merge whose result is not a token; so do we. */
        if (plen[0] + plen[1] > cat_cap) {
            cat_cap = 2 * (plen[0] + plen[1]);
            char *c2 = realloc(cat, cat_cap);
            if (!c2) { rc = deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory"); break; }
            cat = c2;
        }
        memcpy(cat, part[0], plen[0]);
        memcpy(cat + plen[0], part[1], plen[1]);
        if (map_get(&tmp->map, cat, plen[0] + plen[1]) < 0)
            rc = deepc_errf(err, DEEPC_ERR_FORMAT,
                            "tokenizer.json: merge %zu makes a token that is not in the vocab", r);
    }
    free(cat);
    td->n_merges = (uint32_t)n;
    return rc;
}

int deepc_tokdata_from_hf(const char *tokenizer_json, size_t tj_len,
                          const char *tokenizer_config_json, size_t tc_len,
                          deepc_tokdata *td, deepc_err *err) {
    if (!td) return deepc_errf(err, DEEPC_ERR_INVALID_ARG, "tokdata_from_hf: NULL output");
    memset(td, 0, sizeof *td);
    td->bos_id = td->eos_id = td->pad_id = -1;
    if (!tokenizer_json) return deepc_errf(err, DEEPC_ERR_INVALID_ARG, "tokdata_from_hf: no tokenizer.json");
    deepc_json_doc *doc = NULL, *cdoc = NULL;
    import_tmp tmp = {0};
    deepc_err jerr;
    int rc;
    doc = deepc_json_parse(tokenizer_json, tj_len, &jerr);
    if (!doc) {
        rc = deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer.json: %s", jerr.msg);
        goto fail;
    }
    const deepc_json *root = deepc_json_root(doc), *model = deepc_json_get(root, "model");
    if ((rc = check_model(model, err))) goto fail;
    if ((rc = read_normalizer(deepc_json_get(root, "normalizer"), &td->normalizer, err))) goto fail;
    if ((rc = read_pretok(deepc_json_get(root, "pre_tokenizer"), &td->pretok, err))) goto fail;
    if ((rc = read_post(deepc_json_get(root, "post_processor"), &td->bos_id, err))) goto fail;
    if ((rc = check_decoder(deepc_json_get(root, "decoder"), err))) goto fail;
    if ((rc = read_vocab_and_added(root, td, &tmp, err))) goto fail;
    if ((rc = read_merges(model, td, &tmp, err))) goto fail;
    if (deepc_json_bool(deepc_json_get(model, "ignore_merges"), false))
        td->gflags |= DEEPC_TOKDATA_IGNORE_MERGES;
    if (td->bos_id >= 0) {
        if ((uint32_t)td->bos_id >= td->n_vocab || !(td->flags[td->bos_id] & DEEPC_TOKF_PRESENT)) {
            rc = deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer.json: post_processor BOS id %d unknown",
                            (int)td->bos_id);
            goto fail;
        }
        td->gflags |= DEEPC_TOKDATA_ADD_BOS;
    }
    /* A model with an unk token would emit it for a byte missing from the
     * vocabulary; we only drop such bytes (like HF without unk), so insist
     * that every byte has a token when unk is set. */
    if (deepc_json_type_of(deepc_json_get(model, "unk_token")) != DEEPC_JSON_NULL) {
        bool have[256] = {false};
        for (uint32_t id = 0; id < td->n_vocab; id++)
            if (td->offs[id + 1] - td->offs[id] == 1 && !(td->flags[id] & DEEPC_TOKF_ADDED))
                have[td->text[td->offs[id]]] = true;
        for (int b = 0; b < 256; b++)
            if (!have[b]) {
                rc = deepc_errf(err, DEEPC_ERR_UNSUPPORTED,
                                "tokenizer.json: BPE unk_token with byte 0x%02x missing from the vocab "
                                "is not supported", b);
                goto fail;
            }
    }

    if (tokenizer_config_json) {
        cdoc = deepc_json_parse(tokenizer_config_json, tc_len, &jerr);
        if (!cdoc) {
            rc = deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer_config.json: %s", jerr.msg);
            goto fail;
        }
        const deepc_json *cfg = deepc_json_root(cdoc);
        size_t n;
        const char *s;
        if (td->bos_id < 0 && (s = config_token(cfg, "bos_token", &n))) td->bos_id = find_token(td, s, n);
        if ((s = config_token(cfg, "eos_token", &n))) td->eos_id = find_token(td, s, n);
        if ((s = config_token(cfg, "pad_token", &n))) td->pad_id = find_token(td, s, n);
        if (deepc_json_bool(deepc_json_get(cfg, "add_bos_token"), false))
            td->gflags |= DEEPC_TOKDATA_CFG_ADD_BOS;
        const deepc_json *ct = deepc_json_get(cfg, "chat_template");
        if (deepc_json_type_of(ct) == DEEPC_JSON_ARRAY) {   /* [{name, template}, ...] */
            const deepc_json *pick = deepc_json_at(ct, 0);
            for (size_t k = 0; k < deepc_json_len(ct); k++)
                if (str_is(deepc_json_get(deepc_json_at(ct, k), "name"), "default"))
                    pick = deepc_json_at(ct, k);
            ct = deepc_json_get(pick, "template");
        }
        const char *src = deepc_json_str(ct, NULL);
        td->chat_template = src ? (uint32_t)deepc_tmpl_detect(src) : DEEPC_TMPL_NONE;
    }
    if (td->eos_id >= 0) td->flags[td->eos_id] |= DEEPC_TOKF_EOG;
    rc = DEEPC_OK;
    goto done;
fail:
    deepc_tokdata_clear(td);
done:
    map_free(&tmp.map);
    map_free(&tmp.added);
    free(tmp.tok_off);
    free(tmp.tok_len);
    free(tmp.buf);
    deepc_json_free(doc);
    deepc_json_free(cdoc);
    return rc;
}
