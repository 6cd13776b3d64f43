/* json.h - a small DOM JSON parser for config.json, tokenizer.json and
 * safetensors headers. Input is treated as hostile: depth, size and number
 * limits are enforced and every error names the byte offset. */
#ifndef DEEPC_JSON_H
#define DEEPC_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "util.h"

typedef enum {
    DEEPC_JSON_NULL,
    DEEPC_JSON_BOOL,
    DEEPC_JSON_NUMBER,
    DEEPC_JSON_STRING,
    DEEPC_JSON_ARRAY,
    DEEPC_JSON_OBJECT
} deepc_json_type;

typedef struct deepc_json deepc_json;      /* a value; owned by its document */
typedef struct deepc_json_doc deepc_json_doc;

/* Parses len bytes (need not be NUL-terminated). Returns NULL and fills err
 * on malformed input (message includes the byte offset). Strings are decoded
 * to UTF-8 (\u escapes, surrogate pairs; a lone surrogate becomes U+FFFD) and
 * may contain NUL bytes, so always use the length. Object keys keep file order;
 * duplicate keys: the last one wins for lookup. Nesting deeper than 512 fails. */
deepc_json_doc *deepc_json_parse(const char *text, size_t len, deepc_err *err);
void deepc_json_free(deepc_json_doc *doc);               /* NULL is a no-op */
const deepc_json *deepc_json_root(const deepc_json_doc *doc);

deepc_json_type deepc_json_type_of(const deepc_json *v);  /* NULL -> DEEPC_JSON_NULL */
/* Object member by key (NULL if v is not an object or key absent). O(1) average. */
const deepc_json *deepc_json_get(const deepc_json *v, const char *key);
/* Number of elements of an array or members of an object, else 0. */
size_t deepc_json_len(const deepc_json *v);
const deepc_json *deepc_json_at(const deepc_json *arr, size_t i);      /* array element */
const char *deepc_json_key_at(const deepc_json *obj, size_t i, size_t *len); /* i-th key */
const deepc_json *deepc_json_val_at(const deepc_json *obj, size_t i);  /* i-th value */
/* String contents (NUL-terminated, also may hold NULs) or NULL if not a string. */
const char *deepc_json_str(const deepc_json *v, size_t *len);
bool deepc_json_bool(const deepc_json *v, bool dflt);
double deepc_json_num(const deepc_json *v, double dflt);
/* True and *out set when v is a number that is an exact integer in int64 range
 * (parsed from the literal text, so 2^53+1 stays exact). */
bool deepc_json_int(const deepc_json *v, int64_t *out);

#endif
