/* test_tokenizer.c - the tokenizer against Hugging Face `tokenizers`.
 *
 * Ground truth: test/data/tokenizers/<family>/vectors.jsonl, produced with
 * the HF library: "ids" is encode(text, add_special_tokens=False) and
 * "ids_bos" encode(text, add_special_tokens=True). Every line must match
 * exactly. The synthetic family is a small byte-level tokenizer.json made for
 * the added-token options the real families do not use (lstrip, rstrip,
 * single_word, normalized tokens under NFC); its vectors were produced the
 * same way with tokenizers 0.23.2 (see test/data/tokenizers/README.md).
 * The long "aaa..." / "abab..." lines exercise the heap path of the BPE
 * (words longer than the short-word limit).
 *
 * The other tests pin one behaviour each: decoding round trips, streaming
 * decode of characters split across tokens, U+FFFD for invalid UTF-8,
 * parse_special=false, buffer sizing, and the import refusing
 * tokenizer.json files we do not reproduce, with a message naming the part. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deepc.h"
#include "json.h"
#include "tokdata.h"
#include "tokenizer.h"
#include "unicode.h"
#include "util.h"

#define TOKDIR "test/data/tokenizers/"

enum { F_DEEPSEEK, F_QWEN, F_LLAMA, F_SYNTH, F_COUNT };
static const char *const fam_names[F_COUNT] = {"deepseek-v3", "qwen3", "llama-3.1", "synthetic"};

typedef struct {
    deepc_tokdata td;
    deepc_tokenizer *tok;
} family;

typedef struct {
    family fam[F_COUNT];
} fixture;

/* ---- helpers ------------------------------------------------------------ */

static char *slurp(const char *path, size_t *len) {
    char *buf = NULL;
    deepc_err err;
    if (deepc_read_file(path, 64u << 20, &buf, len, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    return buf;
}

static int load_family(family *f, const char *name) {
    char p1[256], p2[256];
    snprintf(p1, sizeof p1, TOKDIR "%s/tokenizer.json", name);
    snprintf(p2, sizeof p2, TOKDIR "%s/tokenizer_config.json", name);
    size_t n1, n2;
    char *tj = slurp(p1, &n1), *tc = slurp(p2, &n2);
    if (!tj || !tc) { free(tj); free(tc); return -1; }
    deepc_err err;
    double t0 = deepc_now();
    int rc = deepc_tokdata_from_hf(tj, n1, tc, n2, &f->td, &err);
    if (rc == 0) f->tok = deepc_tokenizer_create(&f->td, &err);
    double dt = deepc_now() - t0;
    free(tj);
    free(tc);
    if (rc != 0 || !f->tok) {
        fprintf(stderr, "%s: %s\n", name, err.msg);
        return -1;
    }
    /* Informational only (tests never fail on time): import + create of a
     * ~10 MB tokenizer.json should take well under a second in -O2 builds. */
    printf("%s: loaded %zu-byte tokenizer.json in %.3f s\n", name, n1, dt);
    return 0;
}

static int setup(void **state) {
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx) return -1;
    *state = fx;
    for (int i = 0; i < F_COUNT; i++)
        if (load_family(&fx->fam[i], fam_names[i]) != 0) return -1;
    return 0;
}

static int teardown(void **state) {
    fixture *fx = *state;
    for (int i = 0; fx && i < F_COUNT; i++) {
        deepc_tokenizer_destroy(fx->fam[i].tok);
        deepc_tokdata_clear(&fx->fam[i].td);
    }
    free(fx);
    return 0;
}

static family *fam(void **state, int i) { return &((fixture *)*state)->fam[i]; }

/* Encodes with a sizing call first; returns a heap array (caller frees). */
static int32_t *encode(const family *f, const char *s, size_t len, bool bos, bool special,
                       size_t *n) {
    deepc_err err;
    assert_int_equal(deepc_tokenizer_encode(f->tok, s, len, bos, special, NULL, 0, n, &err), DEEPC_OK);
    int32_t *ids = malloc((*n + 1) * sizeof *ids);
    assert_non_null(ids);
    size_t n2;
    assert_int_equal(deepc_tokenizer_encode(f->tok, s, len, bos, special, ids, *n, &n2, &err), DEEPC_OK);
    assert_int_equal(n2, *n);
    return ids;
}

/* Streams ids through decode_push/flush; returns a NUL-terminated heap string. */
static char *decode(const family *f, const int32_t *ids, size_t n, size_t *len) {
    size_t cap = deepc_tokenizer_max_piece(f->tok);
    char *out = malloc(n * cap + 8), *p = out;
    assert_non_null(out);
    deepc_detok_state st = {0};
    for (size_t i = 0; i < n; i++) p += deepc_tokenizer_decode_push(f->tok, &st, ids[i], p, cap);
    p += deepc_tokenizer_decode_flush(&st, p, 8);
    *p = 0;
    *len = (size_t)(p - out);
    return out;
}

static bool ids_equal(const int32_t *a, size_t na, const deepc_json *want) {
    if (deepc_json_len(want) != na) return false;
    for (size_t i = 0; i < na; i++) {
        int64_t v;
        if (!deepc_json_int(deepc_json_at(want, i), &v) || v != a[i]) return false;
    }
    return true;
}

/* Id of the single-byte vocabulary token for byte b. */
static int32_t byte_token(const family *f, uint8_t b) {
    for (uint32_t id = 0; id < f->td.n_vocab; id++)
        if (!(f->td.flags[id] & DEEPC_TOKF_ADDED) && f->td.offs[id + 1] - f->td.offs[id] == 1 &&
            f->td.text[f->td.offs[id]] == b)
            return (int32_t)id;
    fail_msg("no token for byte 0x%02x", b);
    return -1;
}

/* Calls fn on every vectors.jsonl line of a family; returns the line count. */
typedef void (*line_fn)(const family *f, const deepc_json *line, int *ok);
static int for_each_vector(const family *f, const char *name, line_fn fn, int *ok) {
    char path[256];
    snprintf(path, sizeof path, TOKDIR "%s/vectors.jsonl", name);
    size_t len;
    char *text = slurp(path, &len);
    assert_non_null(text);
    int lines = 0;
    for (char *p = text, *nl; p < text + len; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(text + len - p));
        if (!nl) nl = text + len;
        if (nl == p) continue;
        deepc_err err;
        deepc_json_doc *d = deepc_json_parse(p, (size_t)(nl - p), &err);
        if (!d) fail_msg("%s line %d: %s", name, lines + 1, err.msg);
        fn(f, deepc_json_root(d), ok);
        deepc_json_free(d);
        lines++;
    }
    free(text);
    return lines;
}

/* ---- parity with the HF vectors ----------------------------------------- */

static void check_line(const family *f, const deepc_json *line, int *ok) {
    size_t len, n, nb;
    const char *text = deepc_json_str(deepc_json_get(line, "text"), &len);
    assert_non_null(text);
    int32_t *ids = encode(f, text, len, false, true, &n);
    /* add_special_tokens=True is exactly the post-processor's BOS. */
    int32_t *idb = encode(f, text, len, (f->td.gflags & DEEPC_TOKDATA_ADD_BOS) != 0, true, &nb);
    bool good = ids_equal(ids, n, deepc_json_get(line, "ids")) &&
                ids_equal(idb, nb, deepc_json_get(line, "ids_bos"));
    if (good) (*ok)++;
    else fprintf(stderr, "MISMATCH: %.*s\n", (int)(len > 200 ? 200 : len), text);
    free(ids);
    free(idb);
}

static void check_vectors(void **state, int i) {
    int ok = 0;
    int lines = for_each_vector(fam(state, i), fam_names[i], check_line, &ok);
    printf("%s: %d/%d exact\n", fam_names[i], ok, lines);
    assert_true(lines > 0);
    assert_int_equal(ok, lines);
}

static void test_vectors_deepseek_v3(void **state) { check_vectors(state, F_DEEPSEEK); }
static void test_vectors_qwen3(void **state) { check_vectors(state, F_QWEN); }
static void test_vectors_llama3(void **state) { check_vectors(state, F_LLAMA); }
static void test_vectors_synthetic_added_token_options(void **state) { check_vectors(state, F_SYNTH); }

/* ---- decoding ----------------------------------------------------------- */

/* decode(encode(x)) gives back x, except that NFC families give back NFC(x):
 * the ok count is the lines where the text itself comes back. */
static void roundtrip_line(const family *f, const deepc_json *line, int *ok) {
    size_t len, n, dl;
    const char *text = deepc_json_str(deepc_json_get(line, "text"), &len);
    int32_t *ids = encode(f, text, len, false, true, &n);
    char *back = decode(f, ids, n, &dl);
    const char *want = text;
    size_t wl = len;
    uint8_t *norm = NULL;
    if (f->td.normalizer == DEEPC_NORM_NFC) {
        norm = malloc(3 * len + 1);
        assert_non_null(norm);
        wl = deepc_uc_nfc((const uint8_t *)text, len, norm);
        want = (const char *)norm;
    }
    assert_int_equal(dl, wl);
    assert_memory_equal(back, want, wl);
    if (dl == len && memcmp(back, text, len) == 0) (*ok)++;
    free(norm);
    free(back);
    free(ids);
}

static void check_roundtrip(void **state, int i) {
    int ok = 0;
    int lines = for_each_vector(fam(state, i), fam_names[i], roundtrip_line, &ok);
    printf("%s: round-trip %d/%d (the others differ only by NFC)\n", fam_names[i], ok, lines);
    if (fam(state, i)->td.normalizer != DEEPC_NORM_NFC) assert_int_equal(ok, lines);
}

static void test_roundtrip_deepseek_v3(void **state) { check_roundtrip(state, F_DEEPSEEK); }
static void test_roundtrip_qwen3(void **state) { check_roundtrip(state, F_QWEN); }
static void test_roundtrip_llama3(void **state) { check_roundtrip(state, F_LLAMA); }

/* A character whose bytes come in separate tokens is held back until its
 * last byte arrives, then written whole. */
static void test_stream_decode_holds_back_split_character(void **state) {
    const family *f = fam(state, F_LLAMA);
    static const uint8_t euro[3] = {0xe2, 0x82, 0xac};   /* U+20AC */
    deepc_detok_state st = {0};
    char out[1024];
    assert_int_equal(deepc_tokenizer_decode_push(f->tok, &st, byte_token(f, euro[0]), out, sizeof out), 0);
    assert_int_equal(deepc_tokenizer_decode_push(f->tok, &st, byte_token(f, euro[1]), out, sizeof out), 0);
    assert_int_equal(deepc_tokenizer_decode_push(f->tok, &st, byte_token(f, euro[2]), out, sizeof out), 3);
    assert_memory_equal(out, euro, 3);
    assert_int_equal(deepc_tokenizer_decode_flush(&st, out, sizeof out), 0);

    /* The same through real encoder output: an emoji the vocabulary splits. */
    const char *text = "x\xf0\x9f\xab\xa0y";   /* x U+1FAE0 y */
    size_t n;
    int32_t *ids = encode(f, text, strlen(text), false, true, &n);
    assert_true(n >= 3);
    size_t total = 0;
    int held = 0;
    for (size_t i = 0; i < n; i++) {
        size_t w = deepc_tokenizer_decode_push(f->tok, &st, ids[i], out + total, sizeof out - total);
        if (w == 0) held++;
        total += w;
    }
    total += deepc_tokenizer_decode_flush(&st, out + total, sizeof out - total);
    assert_true(held > 0);
    assert_int_equal(total, strlen(text));
    assert_memory_equal(out, text, total);
    free(ids);
}

/* Invalid UTF-8 becomes U+FFFD, one per maximal invalid subpart, like
 * Rust's String::from_utf8_lossy (what HF decode uses). */
static void test_stream_decode_replaces_invalid_utf8(void **state) {
    const family *f = fam(state, F_QWEN);
    char out[1024];
    deepc_detok_state st = {0};
    /* A lone continuation byte. */
    assert_int_equal(deepc_tokenizer_decode_push(f->tok, &st, byte_token(f, 0x80), out, sizeof out), 3);
    assert_memory_equal(out, "\xef\xbf\xbd", 3);
    /* A truncated sequence followed by ASCII: one U+FFFD, then the ASCII. */
    assert_int_equal(deepc_tokenizer_decode_push(f->tok, &st, byte_token(f, 0xe2), out, sizeof out), 0);
    assert_int_equal(deepc_tokenizer_decode_push(f->tok, &st, byte_token(f, 0x82), out, sizeof out), 0);
    assert_int_equal(deepc_tokenizer_decode_push(f->tok, &st, byte_token(f, 'A'), out, sizeof out), 4);
    assert_memory_equal(out, "\xef\xbf\xbd" "A", 4);
    /* An overlong lead (E0 80): two subparts, two replacements. */
    size_t w = deepc_tokenizer_decode_push(f->tok, &st, byte_token(f, 0xe0), out, sizeof out);
    w += deepc_tokenizer_decode_push(f->tok, &st, byte_token(f, 0x80), out + w, sizeof out - w);
    assert_int_equal(w, 6);
    assert_memory_equal(out, "\xef\xbf\xbd\xef\xbf\xbd", 6);
    /* An incomplete character at the end of the stream. */
    assert_int_equal(deepc_tokenizer_decode_push(f->tok, &st, byte_token(f, 0xf0), out, sizeof out), 0);
    assert_int_equal(deepc_tokenizer_decode_flush(&st, out, sizeof out), 3);
    assert_memory_equal(out, "\xef\xbf\xbd", 3);
    assert_int_equal(st.n_pend, 0);
    /* Unknown ids write nothing. */
    assert_int_equal(deepc_tokenizer_decode_push(f->tok, &st, -1, out, sizeof out), 0);
    assert_int_equal(deepc_tokenizer_decode_push(f->tok, &st, (int32_t)f->td.n_vocab, out, sizeof out), 0);
}

/* ---- encoding behaviours ------------------------------------------------ */

static bool contains_id(const int32_t *ids, size_t n, int32_t id) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id) return true;
    return false;
}

/* parse_special=false: added-token text is plain text (no added id at all,
 * special or not), and still decodes back to the same text. */
static void expect_plain(const family *f, const char *text, int32_t added_id) {
    size_t n, dl;
    int32_t *ids = encode(f, text, strlen(text), false, true, &n);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], added_id);
    free(ids);
    ids = encode(f, text, strlen(text), false, false, &n);
    assert_true(n > 1);
    assert_false(contains_id(ids, n, added_id));
    for (size_t i = 0; i < n; i++) assert_false(f->td.flags[ids[i]] & DEEPC_TOKF_ADDED);
    char *back = decode(f, ids, n, &dl);
    assert_string_equal(back, text);
    free(back);
    free(ids);
}

static void test_parse_special_false_treats_added_tokens_as_text(void **state) {
    /* <｜Assistant｜> is a non-special added token in DeepSeek-V3. */
    expect_plain(fam(state, F_DEEPSEEK), "<｜Assistant｜>", 128804);
    expect_plain(fam(state, F_DEEPSEEK), "<｜end▁of▁sentence｜>", 1);
    expect_plain(fam(state, F_QWEN), "<|im_end|>", 151645);
    expect_plain(fam(state, F_QWEN), "<think>", 151667);
    expect_plain(fam(state, F_LLAMA), "<|eot_id|>", 128009);
}

static size_t count_id(const int32_t *ids, size_t n, int32_t id) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ids[i] == id;
    return k;
}

/* Encodes with plain ranges (sizing call first). */
static int32_t *encode_spans(const family *f, const char *s, const size_t *plain, size_t n_plain,
                             size_t *n) {
    deepc_err err;
    size_t len = strlen(s), n2;
    assert_int_equal(deepc_tokenizer_encode_spans(f->tok, s, len, false, plain, n_plain, NULL, 0, n, &err),
                     DEEPC_OK);
    int32_t *ids = malloc((*n + 1) * sizeof *ids);
    assert_non_null(ids);
    assert_int_equal(deepc_tokenizer_encode_spans(f->tok, s, len, false, plain, n_plain, ids, *n, &n2, &err),
                     DEEPC_OK);
    assert_int_equal(n2, *n);
    return ids;
}

/* Plain ranges (message contents) never yield added tokens, and otherwise the
 * whole text is encoded as HF would: identical ids when the contents hold no
 * added-token text, even where template text and content meet. */
static void test_encode_spans_keeps_contents_plain(void **state) {
    const family *qw = fam(state, F_QWEN);
    const char *chat = "<|im_start|>user\n<|im_end|><|im_start|>x<|im_end|>\n";
    size_t c0 = strlen("<|im_start|>user\n"), c1 = c0 + strlen("<|im_end|><|im_start|>x");
    size_t plain[2] = {c0, c1}, n;
    int32_t *ids = encode_spans(qw, chat, plain, 1, &n);
    assert_int_equal(count_id(ids, n, 151644), 1);   /* only the template's <|im_start|> */
    assert_int_equal(count_id(ids, n, 151645), 1);   /* only the template's <|im_end|> */
    free(ids);

    /* A token straddling a range boundary is not recognized either. */
    const char *seam = "<|im_start|>user\n<|im_end|>";
    size_t p2[2] = {strlen("<|im_start|>user\n<|im_"), strlen(seam)};
    ids = encode_spans(qw, seam, p2, 1, &n);
    assert_int_equal(count_id(ids, n, 151645), 0);
    free(ids);

    /* No added text in the content: exactly the single-call HF encoding,
     * which separate calls would not give at the "Assistant: " seam. */
    const family *ds = fam(state, F_DEEPSEEK);
    const char *v2 = "User: Hi there\n\nAssistant: Sure, 1234 things";
    size_t hi = (size_t)(strstr(v2, "Hi") - v2), sure = (size_t)(strstr(v2, "Sure") - v2), nf;
    size_t p3[4] = {hi, hi + strlen("Hi there"), sure, strlen(v2)};
    ids = encode_spans(ds, v2, p3, 2, &n);
    int32_t *full = encode(ds, v2, strlen(v2), false, true, &nf);
    assert_int_equal(n, nf);
    assert_memory_equal(ids, full, n * sizeof *ids);
    free(full);
    free(ids);

    /* Unsorted ranges are a caller error. */
    size_t bad[4] = {5, 9, 2, 3};
    deepc_err err;
    assert_int_equal(deepc_tokenizer_encode_spans(ds->tok, v2, strlen(v2), false, bad, 2, NULL, 0, &n, &err),
                     DEEPC_ERR_INVALID_ARG);
}

/* The first call sizes; a short buffer gets the prefix and the full count. */
static void test_encode_reports_needed_size(void **state) {
    const family *f = fam(state, F_LLAMA);
    const char *text = "Hello, world! How's it going?";
    size_t n, n2;
    int32_t *all = encode(f, text, strlen(text), true, true, &n);
    assert_true(n > 4);
    int32_t part[4] = {-7, -7, -7, -7};
    deepc_err err;
    assert_int_equal(deepc_tokenizer_encode(f->tok, text, strlen(text), true, true, part, 3, &n2, &err),
                     DEEPC_OK);
    assert_int_equal(n2, n);
    assert_memory_equal(part, all, 3 * sizeof *part);
    assert_int_equal(part[3], -7);
    assert_int_equal(all[0], 128000);
    free(all);
    /* Empty text: nothing, or just BOS. */
    assert_int_equal(deepc_tokenizer_encode(f->tok, "", 0, false, true, part, 4, &n2, &err), DEEPC_OK);
    assert_int_equal(n2, 0);
    assert_int_equal(deepc_tokenizer_encode(f->tok, NULL, 0, true, true, part, 4, &n2, &err), DEEPC_OK);
    assert_int_equal(n2, 1);
}

/* HF only takes valid UTF-8; invalid input bytes are kept as their byte
 * tokens (so nothing is lost) and decode to U+FFFD. */
static void test_invalid_utf8_input_encodes_raw_bytes(void **state) {
    const family *f = fam(state, F_DEEPSEEK);
    size_t n, dl;
    int32_t *ids = encode(f, "a\xff" "b", 3, false, true, &n);
    assert_true(contains_id(ids, n, byte_token(f, 0xff)));
    char *back = decode(f, ids, n, &dl);
    assert_string_equal(back, "a\xef\xbf\xbd" "b");
    free(back);
    free(ids);
}

/* Import details: BOS from the post-processor, EOS from the config, end of
 * generation on end-of-turn tokens, chat template family. */
static void test_import_reads_special_tokens(void **state) {
    const deepc_tokdata *ds = &fam(state, F_DEEPSEEK)->td, *qw = &fam(state, F_QWEN)->td,
                        *ll = &fam(state, F_LLAMA)->td;
    assert_int_equal(ds->pretok, DEEPC_PRETOK_DEEPSEEK3);
    assert_int_equal(qw->pretok, DEEPC_PRETOK_QWEN2);
    assert_int_equal(ll->pretok, DEEPC_PRETOK_LLAMA3);
    assert_int_equal(qw->normalizer, DEEPC_NORM_NFC);
    assert_int_equal(ds->normalizer, DEEPC_NORM_NONE);
    assert_true(ll->gflags & DEEPC_TOKDATA_IGNORE_MERGES);
    /* DeepSeek's tokenizer.json post-processor adds no BOS (HF's encode does
     * not); transformers does, per add_bos_token. */
    assert_false(ds->gflags & DEEPC_TOKDATA_ADD_BOS);
    assert_true(ds->gflags & DEEPC_TOKDATA_CFG_ADD_BOS);
    assert_int_equal(ds->bos_id, 0);
    assert_int_equal(ds->eos_id, 1);
    assert_true(ll->gflags & DEEPC_TOKDATA_ADD_BOS);
    assert_int_equal(ll->bos_id, 128000);
    assert_int_equal(ll->eos_id, 128009);
    assert_int_equal(qw->bos_id, -1);
    assert_int_equal(qw->eos_id, 151645);
    assert_int_equal(qw->pad_id, 151643);
    assert_true(ll->flags[128001] & DEEPC_TOKF_EOG);   /* <|end_of_text|> */
    assert_true(qw->flags[151643] & DEEPC_TOKF_EOG);   /* <|endoftext|> */
    assert_true(ds->flags[1] & DEEPC_TOKF_EOG);
    assert_false(qw->flags[151644] & DEEPC_TOKF_EOG);  /* <|im_start|> */
    assert_true(qw->flags[151644] & DEEPC_TOKF_SPECIAL);
    assert_false(qw->flags[151667] & DEEPC_TOKF_SPECIAL);  /* <think> */
    assert_int_equal(qw->chat_template, DEEPC_TMPL_CHATML);
    assert_int_equal(ll->chat_template, DEEPC_TMPL_LLAMA3);
}

/* NFC as HF applies it: Unicode 9.0 data (the unicode-normalization-
 * alignments crate), so later compositions do not happen. */
static void test_nfc_matches_hf(void **state) {
    (void)state;
    static const struct { const char *in, *out; } cases[] = {
        {"e\xcc\x81", "\xc3\xa9"},                                    /* e + U+0301 -> é */
        {"\xe2\x84\xab", "\xc3\x85"},                                 /* U+212B -> U+00C5 */
        {"\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8", "\xea\xb0\x81"},     /* L V T -> 각 */
        {"a\xcc\x81\xcc\x96", "\xc3\xa1\xcc\x96"},                    /* reorder, then compose */
        {"\xf0\x91\xa4\xb5\xf0\x91\xa4\xb0", "\xf0\x91\xa4\xb5\xf0\x91\xa4\xb0"},  /* 13.0 pair stays */
        {"x\xcc\x81\xe1\xb7\xba", "x\xcc\x81\xe1\xb7\xba"},           /* U+1DFA (14.0) not reordered */
        {"\xff\xcc\x81", "\xff\xcc\x81"},                             /* invalid byte passes */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t out[64];
        size_t n = deepc_uc_nfc((const uint8_t *)cases[i].in, strlen(cases[i].in), out);
        assert_int_equal(n, strlen(cases[i].out));
        assert_memory_equal(out, cases[i].out, n);
    }
    assert_true(deepc_uc_nfc_quick((const uint8_t *)"plain ascii \xc3\xa9", 14));
    assert_false(deepc_uc_nfc_quick((const uint8_t *)"e\xcc\x81", 3));
}

/* ---- refusals ----------------------------------------------------------- */

/* Imports the synthetic tokenizer.json with one substring replaced and
 * expects refusal with a message containing want. */
static void expect_refused(const char *old, const char *new_, int status, const char *want) {
    size_t len;
    char *src = slurp(TOKDIR "synthetic/tokenizer.json", &len);
    assert_non_null(src);
    char *at = strstr(src, old);
    if (!at) fail_msg("fixture lacks '%s'", old);
    size_t ol = strlen(old), nl = strlen(new_);
    char *mod = malloc(len - ol + nl + 1);
    assert_non_null(mod);
    memcpy(mod, src, (size_t)(at - src));
    memcpy(mod + (at - src), new_, nl);
    memcpy(mod + (at - src) + nl, at + ol, len - (size_t)(at - src) - ol + 1);
    deepc_tokdata td;
    deepc_err err = {{0}};
    assert_int_equal(deepc_tokdata_from_hf(mod, len - ol + nl, NULL, 0, &td, &err), status);
    if (!strstr(err.msg, want)) fail_msg("message '%s' lacks '%s'", err.msg, want);
    assert_null(td.offs);   /* nothing left allocated */
    deepc_tokdata_clear(&td);
    free(mod);
    free(src);
}

static void test_refuses_other_model_types(void **state) {
    (void)state;
    expect_refused("\"type\": \"BPE\"", "\"type\": \"WordPiece\"", DEEPC_ERR_UNSUPPORTED,
                   "model type 'WordPiece' is not supported");
    expect_refused("\"byte_fallback\": false", "\"byte_fallback\": true", DEEPC_ERR_UNSUPPORTED,
                   "byte_fallback");
}

static void test_refuses_unknown_pre_tokenizer(void **state) {
    (void)state;
    expect_refused("\\\\p{N}| ?", "\\\\p{N}+| ?", DEEPC_ERR_UNSUPPORTED,
                   "Split pattern '(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+|");
    expect_refused("\\\\p{N}| ?", "\\\\p{N}+| ?", DEEPC_ERR_UNSUPPORTED,
                   "is not one deepc reproduces (supported: DeepSeek-V3, Qwen2, Llama 3)");
    expect_refused("\"behavior\": \"Isolated\"", "\"behavior\": \"Removed\"", DEEPC_ERR_UNSUPPORTED,
                   "Isolated");
    expect_refused("\"use_regex\": false", "\"use_regex\": true", DEEPC_ERR_UNSUPPORTED, "use_regex");
    expect_refused("\"type\": \"Split\"", "\"type\": \"Whitespace\"", DEEPC_ERR_UNSUPPORTED,
                   "pre_tokenizer 'Whitespace'");
}

static void test_refuses_other_normalizers_and_decoders(void **state) {
    (void)state;
    expect_refused("\"type\": \"NFC\"", "\"type\": \"NFKC\"", DEEPC_ERR_UNSUPPORTED,
                   "normalizer 'NFKC' is not supported");
    expect_refused("\"decoder\": {\n  \"type\": \"ByteLevel\"", "\"decoder\": {\n  \"type\": \"Metaspace\"",
                   DEEPC_ERR_UNSUPPORTED, "decoder 'Metaspace'");
}

static void test_refuses_inconsistent_files(void **state) {
    (void)state;
    /* HF would give the last added token id 267 whatever the file says. */
    expect_refused("\"id\": 267", "\"id\": 300", DEEPC_ERR_FORMAT, "Hugging Face gives it id 267");
    expect_refused("\"a b\"", "\"a q\"", DEEPC_ERR_FORMAT, "not in the vocab");
    expect_refused("\"version\"", "\"version\" 1", DEEPC_ERR_FORMAT, "tokenizer.json:");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_deepseek_v3),
        cmocka_unit_test(test_vectors_qwen3),
        cmocka_unit_test(test_vectors_llama3),
        cmocka_unit_test(test_vectors_synthetic_added_token_options),
        cmocka_unit_test(test_roundtrip_deepseek_v3),
        cmocka_unit_test(test_roundtrip_qwen3),
        cmocka_unit_test(test_roundtrip_llama3),
        cmocka_unit_test(test_stream_decode_holds_back_split_character),
        cmocka_unit_test(test_stream_decode_replaces_invalid_utf8),
        cmocka_unit_test(test_parse_special_false_treats_added_tokens_as_text),
        cmocka_unit_test(test_encode_spans_keeps_contents_plain),
        cmocka_unit_test(test_encode_reports_needed_size),
        cmocka_unit_test(test_invalid_utf8_input_encodes_raw_bytes),
        cmocka_unit_test(test_import_reads_special_tokens),
        cmocka_unit_test(test_nfc_matches_hf),
        cmocka_unit_test(test_refuses_other_model_types),
        cmocka_unit_test(test_refuses_unknown_pre_tokenizer),
        cmocka_unit_test(test_refuses_other_normalizers_and_decoders),
        cmocka_unit_test(test_refuses_inconsistent_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
