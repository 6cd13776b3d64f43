/* fuzz_json.c - libFuzzer entry point for the JSON parser, built only with
 * -DDEEPC_FUZZ (the Makefile's test/test_*.c wildcard does not pick it up):
 *
 *   clang -DDEEPC_FUZZ -g -O1 -fsanitize=fuzzer,address,undefined -Icore \
 *       -D_DEFAULT_SOURCE core/util.c core/json.c test/fuzz_json.c -lm -o fuzz_json
 *   ./fuzz_json -max_total_time=60 CORPUS_DIR
 *
 * Besides "no crash", it checks invariants on every accepted document: each
 * decoded string is valid UTF-8, every key is found by lookup, integers agree
 * with their double value, and a root number equals strtod's (correctly
 * rounded in the "C" locale the fuzzer runs in). Violations abort(). */
#ifdef DEEPC_FUZZ
#include <stdlib.h>
#include <string.h>

#include "json.h"

static int fuzz_utf8_ok(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { k = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { k = 2; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { k = 3; cp = c & 0x07; }
        else return 0;
        if (i + k >= n) return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

static void fuzz_walk(const deepc_json *v, int depth) {
    if (depth > 513) abort();
    size_t len;
    const char *s;
    int64_t iv;
    switch (deepc_json_type_of(v)) {
    case DEEPC_JSON_STRING:
        s = deepc_json_str(v, &len);
        if (!s || s[len] != 0 || !fuzz_utf8_ok((const unsigned char *)s, len)) abort();
        break;
    case DEEPC_JSON_NUMBER:
        if (deepc_json_int(v, &iv) && deepc_json_num(v, 0) != (double)iv) abort();
        break;
    case DEEPC_JSON_ARRAY:
        for (size_t i = 0; i < deepc_json_len(v); i++) fuzz_walk(deepc_json_at(v, i), depth + 1);
        if (deepc_json_at(v, deepc_json_len(v))) abort();
        break;
    case DEEPC_JSON_OBJECT:
        for (size_t i = 0; i < deepc_json_len(v); i++) {
            const char *key = deepc_json_key_at(v, i, &len);
            if (!key || !fuzz_utf8_ok((const unsigned char *)key, len)) abort();
            const deepc_json *found = deepc_json_get(v, key);
            /* Keys with NUL bytes cannot be looked up by a C string. */
            if (!found && strlen(key) == len) abort();
            fuzz_walk(deepc_json_val_at(v, i), depth + 1);
        }
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    deepc_err err;
    deepc_json_doc *doc = deepc_json_parse((const char *)data, size, &err);
    if (!doc) {
        if (strncmp(err.msg, "JSON: ", 6) != 0) abort();
        return 0;
    }
    const deepc_json *root = deepc_json_root(doc);
    fuzz_walk(root, 0);
    if (deepc_json_type_of(root) == DEEPC_JSON_NUMBER) {
        char *copy = malloc(size + 1);
        if (copy) {
            memcpy(copy, data, size);
            copy[size] = 0;
            double want = strtod(copy, NULL), got = deepc_json_num(root, 0);
            if (memcmp(&want, &got, sizeof got) != 0) abort();
            free(copy);
        }
    }
    deepc_json_free(doc);
    return 0;
}
#else
typedef int deepc_fuzz_json_disabled; /* ISO C forbids an empty file */
#endif
