/* hfread.c - see hfread.h. */
#include "hfread.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

/* The whole file dir/name, NUL-terminated, or NULL. */
static char *slurp(const char *dir, const char *name, size_t *len) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0)
        buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (!buf) return NULL;
    buf[n] = 0;
    if (len) *len = (size_t)n;
    return buf;
}

bool hfr_exists(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* The header of a safetensors file: u64 LE length, then that much JSON. */
static char *st_header(const char *data, size_t len, uint64_t *hl) {
    if (len < 8) return NULL;
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)(uint8_t)data[i] << (8 * i);
    if (n > len - 8) return NULL;
    char *h = malloc((size_t)n + 1);
    if (!h) return NULL;
    memcpy(h, data + 8, (size_t)n);
    h[n] = 0;
    *hl = n;
    return h;
}

void hfr_close(hfr_checkpoint *c) {
    free(c->config);
    free(c->generation_config);
    free(c->tokenizer);
    free(c->tokenizer_config);
    free(c->index);
    for (int k = 0; k < c->n_shards; k++) {
        free(c->shard[k].data);
        free(c->shard[k].header);
    }
    if (c->dir[0]) tu_rmtree(c->dir);
    memset(c, 0, sizeof *c);
}

static int load_failed(hfr_checkpoint *c, const char *what) {
    fprintf(stderr, "hfread: %s/%s: missing or malformed\n", c->dir, what);
    hfr_close(c);
    return -1;
}

/* Reads back what hfgen / hfgen_moe wrote into c->dir. */
static int load(hfr_checkpoint *c, int n_shards, int of_digits) {
    static const char *const json[] = {"config.json", "generation_config.json", "tokenizer.json",
                                       "tokenizer_config.json"};
    char **text[] = {&c->config, &c->generation_config, &c->tokenizer, &c->tokenizer_config};
    for (int i = 0; i < 4; i++)
        if (!(*text[i] = slurp(c->dir, json[i], NULL))) return load_failed(c, json[i]);
    if (n_shards < 1) n_shards = 1;
    if (n_shards > HFR_MAX_SHARDS) return load_failed(c, "(too many shards for hfread)");
    c->index = slurp(c->dir, "model.safetensors.index.json", NULL);
    if (n_shards > 1 && !c->index) return load_failed(c, "model.safetensors.index.json");
    for (int k = 0; k < n_shards; k++) {
        hfr_shard *s = &c->shard[k];
        if (n_shards == 1) snprintf(s->name, sizeof s->name, "model.safetensors");
        else snprintf(s->name, sizeof s->name, "model-%05d-of-%0*d.safetensors", k + 1, of_digits, n_shards);
        c->n_shards = k + 1;
        if (!(s->data = slurp(c->dir, s->name, &s->len))) return load_failed(c, s->name);
        if (!(s->header = st_header(s->data, s->len, &s->header_len))) return load_failed(c, s->name);
    }
    return 0;
}

static int make_dir(hfr_checkpoint *c) {
    memset(c, 0, sizeof *c);
    if (tu_mkdtemp(c->dir, sizeof c->dir, "hfgen") == 0) return 0;
    fprintf(stderr, "hfread: cannot make a scratch directory\n");
    c->dir[0] = 0;
    return -1;
}

static int write_failed(hfr_checkpoint *c, const deepc_err *err) {
    fprintf(stderr, "hfread: writing %s: %s\n", c->dir, err->msg);
    hfr_close(c);
    return -1;
}

int hfr_write_dense(hfr_checkpoint *c, const hfgen_spec *spec) {
    deepc_err err;
    err.msg[0] = 0;
    if (make_dir(c) != 0) return -1;
    if (hfgen_write(c->dir, spec, &err) != 0) return write_failed(c, &err);
    return load(c, spec->n_shards, 5);
}

int hfr_write_moe(hfr_checkpoint *c, const hfgen_moe_spec *spec) {
    deepc_err err;
    err.msg[0] = 0;
    if (make_dir(c) != 0) return -1;
    if (hfgen_moe_write(c->dir, spec, NULL, NULL, NULL, &err) != 0) return write_failed(c, &err);
    return load(c, spec->n_shards, 6);
}

bool hfr_st_find(const char *header, const char *name, hfr_entry *e) {
    char key[160];
    snprintf(key, sizeof key, "\"%s\":{", name);
    const char *p = strstr(header, key);
    if (!p) return false;
    p += strlen(key);
    memset(e, 0, sizeof *e);
    const char *d = strstr(p, "\"dtype\":\""), *sh = strstr(p, "\"shape\":["), *of = strstr(p, "\"data_offsets\":[");
    const char *close = strchr(p, '}');
    if (!d || !sh || !of || !close || d > close || sh > close || of > close) return false;
    sscanf(d + 9, "%15[^\"]", e->dtype);
    char *q;
    e->shape[0] = strtoull(sh + 9, &q, 10);
    e->ndim = 1;
    if (*q == ',') {
        e->shape[1] = strtoull(q + 1, &q, 10);
        e->ndim = 2;
    }
    e->begin = strtoull(of + 16, &q, 10);
    e->end = strtoull(q + 1, NULL, 10);
    return true;
}

int hfr_locate(const hfr_checkpoint *c, const char *name, hfr_entry *e) {
    int k = 0;
    if (c->n_shards > 1) {
        char key[160];
        snprintf(key, sizeof key, "\"%s\": \"", name);
        const char *p = c->index ? strstr(c->index, key) : NULL;
        if (!p) return -1;
        p += strlen(key);
        for (k = 0; k < c->n_shards; k++) {
            const size_t n = strlen(c->shard[k].name);
            if (strncmp(p, c->shard[k].name, n) == 0 && p[n] == '"') break;
        }
        if (k == c->n_shards) return -1;
    }
    hfr_entry other;
    for (int j = 0; j < c->n_shards; j++)
        if (j != k && hfr_st_find(c->shard[j].header, name, &other)) return -1;
    return hfr_st_find(c->shard[k].header, name, e) ? k : -1;
}

uint64_t hfr_data_bytes(const hfr_checkpoint *c, int k) { return c->shard[k].len - 8 - c->shard[k].header_len; }

const uint8_t *hfr_data(const hfr_checkpoint *c, int k, const hfr_entry *e) {
    if (e->begin > e->end || e->end > hfr_data_bytes(c, k)) return NULL;
    return (const uint8_t *)c->shard[k].data + 8 + c->shard[k].header_len + e->begin;
}

static bool same_text(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

bool hfr_same_files(const hfr_checkpoint *a, const hfr_checkpoint *b) {
    if (!same_text(a->config, b->config) || !same_text(a->generation_config, b->generation_config) ||
        !same_text(a->tokenizer, b->tokenizer) || !same_text(a->tokenizer_config, b->tokenizer_config) ||
        !same_text(a->index, b->index) || a->n_shards != b->n_shards)
        return false;
    for (int k = 0; k < a->n_shards; k++)
        if (a->shard[k].len != b->shard[k].len || memcmp(a->shard[k].data, b->shard[k].data, a->shard[k].len) != 0)
            return false;
    return true;
}

const char *hfr_first_missing(const char *text, const char *const *needles, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!text || !strstr(text, needles[i])) return needles[i];
    return NULL;
}

int hfr_count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

uint16_t hfr_le_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

float hfr_le_f32(const uint8_t *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

const char *hfr_json_str(const char *p, char *out, size_t cap) {
    size_t n = 0;
    while (*p && *p != '"') {
        char c = *p++;
        if (c == '\\') {
            c = *p++;
            if (c == 'n') c = '\n';
            else if (c == 'r') c = '\r';
            else if (c == 't') c = '\t';
            else if (c == 'u') {
                c = (char)strtol((char[5]){p[0], p[1], p[2], p[3], 0}, NULL, 16);
                p += 4;
            }
        }
        if (n + 1 < cap) out[n++] = c;
    }
    out[n] = 0;
    return *p ? p + 1 : p;
}
