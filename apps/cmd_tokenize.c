/* cmd_tokenize.c - `deepc tokenize` and `deepc detokenize` for scripts:
 * text on stdin to a JSON array of ids (or JSONL in, JSONL out), and back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json.h"

static char *read_all(FILE *f, size_t *n) {
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap);
    while (b) {
        size_t got = fread(b + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
        if (cap - len - 1 == 0) {
            char *nb = realloc(b, cap * 2);
            if (!nb) { free(b); return NULL; }
            b = nb;
            cap *= 2;
        }
    }
    if (b) b[len] = 0;
    *n = len;
    return b;
}

/* Offset of the first invalid UTF-8 sequence, or -1 when the text is valid. */
static long long utf8_invalid_at(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!k || i + k > n || (k == 2 && c < 0xC2) || (k == 4 && c > 0xF4)) return (long long)i;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return (long long)i;
        if (k == 3) {
            unsigned cp = ((c & 15u) << 12) | ((s[i + 1] & 63u) << 6);
            if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)) return (long long)i;
        }
        if (k == 4) {
            unsigned cp = ((c & 7u) << 18) | ((s[i + 1] & 63u) << 12);
            if (cp < 0x10000 || cp > 0x10FFFF) return (long long)i;
        }
        i += k;
    }
    return -1;
}

static int encode_print(const deepc_model *m, const char *text, size_t len, bool bos, bool special, bool obj) {
    size_t need = 0;
    if (deepc_tokenize(m, text, len, bos, special, NULL, 0, &need)) return cli_fail("tokenize", "%s", deepc_open_error());
    int32_t *ids = malloc((need ? need : 1) * sizeof *ids);
    if (!ids) return cli_fail("tokenize", "out of memory");
    if (deepc_tokenize(m, text, len, bos, special, ids, need, &need)) { free(ids); return cli_fail("tokenize", "%s", deepc_open_error()); }
    fputs(obj ? "{\"ids\": [" : "[", stdout);
    for (size_t i = 0; i < need; i++) printf("%s%d", i ? ", " : "", (int)ids[i]);
    fputs(obj ? "]}\n" : "]\n", stdout);
    free(ids);
    return CLI_OK;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL;
    bool jsonl = false, bos = false, plain = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: deepc tokenize -m <model.dqf> [--jsonl] [--bos] [--plain] < input\n"
                   "  Reads UTF-8 text from stdin and prints its token ids as a JSON array, like\n"
                   "  Hugging Face encode(text, add_special_tokens=False): special-token text is\n"
                   "  recognized and no BOS is added.\n"
                   "  --jsonl  one JSON object with a \"text\" field per input line; one\n"
                   "           {\"ids\": [...]} line out per line in, in order\n"
                   "  --bos    prepend the tokenizer's BOS token\n"
                   "  --plain  treat special-token text as ordinary text\n");
            return CLI_OK;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model = cli_value(argc, argv, &i))) return cli_usage_error("tokenize", "%s needs a file", a);
        } else if (!strcmp(a, "--jsonl")) jsonl = true;
        else if (!strcmp(a, "--bos")) bos = true;
        else if (!strcmp(a, "--plain")) plain = true;
        else return cli_usage_error("tokenize", "unknown option '%s'", a);
    }
    if (!model) return cli_usage_error("tokenize", "no model given (-m model.dqf)");
    deepc_model *m;
    if (cli_model_open_mapped("tokenize", model, &m)) return cli_fail("tokenize", "%s", deepc_open_error());
    size_t n;
    char *in = read_all(stdin, &n);
    int rc = CLI_OK;
    if (!in) { rc = cli_fail("tokenize", "cannot read standard input"); goto done; }
    if (!jsonl) {
        long long bad = utf8_invalid_at((const unsigned char *)in, n);
        if (bad >= 0) { rc = cli_fail("tokenize", "input is not valid UTF-8 (byte %lld)", bad); goto done; }
        rc = encode_print(m, in, n, bos, !plain, false);
        goto done;
    }
    size_t line = 0;
    for (char *p = in; p < in + n && rc == CLI_OK;) {
        char *e = memchr(p, '\n', (size_t)(in + n - p));
        size_t len = e ? (size_t)(e - p) : (size_t)(in + n - p);
        line++;
        if (len && p[len - 1] == '\r') len--;
        if (len) {
            deepc_err err = { "" };
            deepc_json_doc *doc = deepc_json_parse(p, len, &err);
            size_t tl;
            const char *t = doc ? deepc_json_str(deepc_json_get(deepc_json_root(doc), "text"), &tl) : NULL;
            if (!doc) rc = cli_fail("tokenize", "line %zu: %s", line, err.msg);
            else if (!t) rc = cli_fail("tokenize", "line %zu: no string field \"text\"", line);
            else rc = encode_print(m, t, tl, bos, !plain, true);
            deepc_json_free(doc);
        }
        p += (e ? (size_t)(e - p) + 1 : len);
        if (!e) break;
    }
done:
    free(in);
    deepc_model_close(m);
    return rc;
}

int cmd_detokenize(int argc, char **argv) {
    const char *model = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: deepc detokenize -m <model.dqf> < ids\n"
                   "  Reads token ids (a JSON array, or numbers separated by commas or spaces)\n"
                   "  from stdin and prints the text. Invalid UTF-8 is replaced by U+FFFD.\n");
            return CLI_OK;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model = cli_value(argc, argv, &i))) return cli_usage_error("detokenize", "%s needs a file", a);
        } else return cli_usage_error("detokenize", "unknown option '%s'", a);
    }
    if (!model) return cli_usage_error("detokenize", "no model given (-m model.dqf)");
    deepc_model *m;
    if (cli_model_open_mapped("detokenize", model, &m)) return cli_fail("detokenize", "%s", deepc_open_error());
    deepc_model_info mi = { .struct_size = sizeof mi };
    deepc_model_get_info(m, &mi);
    size_t n;
    char *in = read_all(stdin, &n);
    deepc_detok *d = deepc_detok_create(m);
    int rc = CLI_OK;
    if (!in || !d) { rc = cli_fail("detokenize", in ? "this model has no tokenizer" : "cannot read standard input"); goto done; }
    char out[1024];
    for (char *p = in; *p;) {
        if (*p == '[' || *p == ']' || *p == ',' || *p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') { p++; continue; }
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v >= mi.n_vocab) { rc = cli_fail("detokenize", "bad token id near '%.16s' (vocabulary 0..%d)", p, mi.n_vocab - 1); goto done; }
        fwrite(out, 1, deepc_detok_push(d, (int32_t)v, out, sizeof out), stdout);
        p = end;
    }
    fwrite(out, 1, deepc_detok_flush(d, out, sizeof out), stdout);
    putchar('\n');
done:
    deepc_detok_destroy(d);
    free(in);
    deepc_model_close(m);
    return rc;
}
