/* safetensors.c - owns the safetensors reader: header validation for one
 * file or a sharded set (model.safetensors.index.json), the tensor table with
 * its name hash, and on-demand reads with pread plus F16/BF16/F8-E4M3 -> F32
 * decoding.
 *
 * Every header is hostile input: lengths, shapes and offsets are checked with
 * overflow-safe arithmetic before use. Each header's JSON DOM is freed as soon
 * as its tensors are copied out, so a 163-shard checkpoint costs only its
 * tensor table (~120 bytes a tensor) and one open descriptor per shard. */
#include "safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deepc.h"
#include "json.h"

/* Shards of big checkpoints are larger than 2 GiB. */
_Static_assert(sizeof(off_t) >= 8, "deepc needs 64-bit file offsets (-D_FILE_OFFSET_BITS=64)");

#define ST_MAX_HEADER ((uint64_t)100 << 20)   /* the safetensors library's own limit */
#define ST_MAX_INDEX ((size_t)256 << 20)      /* DeepSeek-V3's index is ~8 MB */
#define ST_INDEX_NAME "model.safetensors.index.json"
/* Names are cut to this many bytes in messages so they fit the error buffer. */
#define ST_NAME_SHOWN 160

typedef struct st_shard {
    char *path;                  /* as opened; every message names it */
    int fd;
    uint64_t file_size;
    uint64_t data_start;         /* 8 + header length */
    uint64_t data_size;
} st_shard;

typedef struct st_chunk {
    struct st_chunk *next;
    size_t cap, used;
    char data[];
} st_chunk;

struct deepc_st {
    st_shard *shards;
    int n_shards, cap_shards;
    deepc_st_tensor *tensors;
    size_t n_tensors, cap_tensors;
    uint32_t *slots;             /* name hash: tensor index + 1, 0 = empty */
    size_t n_slots;              /* power of two, >= 2 * n_tensors */
    st_chunk *strings;           /* tensor names and unknown dtype names */
};

/* Every dtype the safetensors format defines with a whole-byte size, so
 * tensors we do not decode are still checked for length. */
static const struct {
    const char *name;
    deepc_st_dtype dt;
    uint8_t size;
} st_dtypes[] = {
    {"F32", DEEPC_ST_F32, 4},     {"F16", DEEPC_ST_F16, 2},     {"BF16", DEEPC_ST_BF16, 2},
    {"F8_E4M3", DEEPC_ST_F8_E4M3, 1}, {"I32", DEEPC_ST_I32, 4}, {"I64", DEEPC_ST_I64, 8},
    {"F64", DEEPC_ST_OTHER, 8},   {"I8", DEEPC_ST_OTHER, 1},    {"U8", DEEPC_ST_OTHER, 1},
    {"I16", DEEPC_ST_OTHER, 2},   {"U16", DEEPC_ST_OTHER, 2},   {"U32", DEEPC_ST_OTHER, 4},
    {"U64", DEEPC_ST_OTHER, 8},   {"BOOL", DEEPC_ST_OTHER, 1},  {"F8_E5M2", DEEPC_ST_OTHER, 1},
    {"F8_E8M0", DEEPC_ST_OTHER, 1},
};

size_t deepc_st_dtype_size(deepc_st_dtype dt) {
    switch (dt) {
    case DEEPC_ST_F32: return 4;
    case DEEPC_ST_F16: return 2;
    case DEEPC_ST_BF16: return 2;
    case DEEPC_ST_F8_E4M3: return 1;
    case DEEPC_ST_I32: return 4;
    case DEEPC_ST_I64: return 8;
    default: return 0;
    }
}

/* ---- small helpers ----------------------------------------------------- */

static uint32_t st_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;                  /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static int shown(size_t len) {
    return (int)(len < ST_NAME_SHOWN ? len : ST_NAME_SHOWN);
}

/* Copies n bytes plus a NUL into the string arena (owned by st). */
static char *st_strdup(deepc_st *st, const char *s, size_t n) {
    st_chunk *c = st->strings;
    if (n > SIZE_MAX / 2) return NULL;
    if (!c || c->cap - c->used < n + 1) {
        size_t cap = n + 1 > ((size_t)256 << 10) ? n + 1 : ((size_t)256 << 10);
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = st->strings;
        st->strings = c;
    }
    char *p = c->data + c->used;
    memcpy(p, s, n);
    p[n] = 0;
    c->used += n + 1;
    return p;
}

/* pread that retries short reads and EINTR; large reads go in 1 GiB pieces
 * because some systems refuse single reads above INT_MAX. Returns 0 or errno
 * (-1 for an unexpected end of file). */
static int pread_full(int fd, void *dst, size_t n, uint64_t off) {
    unsigned char *p = dst;
    while (n > 0) {
        size_t want = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t got = pread(fd, p, want, (off_t)off);
        if (got < 0) {
            if (errno == EINTR) continue;
            return errno ? errno : EIO;
        }
        if (got == 0) return -1;
        p += got;
        n -= (size_t)got;
        off += (uint64_t)got;
    }
    return 0;
}

static const char *pread_error(int e) {
    return e == -1 ? "unexpected end of file" : strerror(e);
}

/* ---- tensor table ------------------------------------------------------ */

static int st_grow_slots(deepc_st *st, deepc_err *err) {
    size_t cap = st->n_slots ? st->n_slots * 2 : 1024;
    uint32_t *slots = calloc(cap, sizeof *slots);
    if (!slots) return deepc_errf(err, DEEPC_ERR_NOMEM, "safetensors: out of memory for the tensor index");
    for (size_t i = 0; i < st->n_tensors; i++) {
        const char *name = st->tensors[i].name;
        size_t h = st_hash(name, strlen(name)) & (cap - 1);
        while (slots[h]) h = (h + 1) & (cap - 1);
        slots[h] = (uint32_t)(i + 1);
    }
    free(st->slots);
    st->slots = slots;
    st->n_slots = cap;
    return DEEPC_OK;
}

/* Slot where name lives or would go. */
static size_t st_slot(const deepc_st *st, const char *name, size_t len) {
    size_t mask = st->n_slots - 1, h = st_hash(name, len) & mask;
    for (;; h = (h + 1) & mask) {
        uint32_t s = st->slots[h];
        if (!s) return h;
        const char *other = st->tensors[s - 1].name;
        if (strlen(other) == len && memcmp(other, name, len) == 0) return h;
    }
}

const deepc_st_tensor *deepc_st_find(const deepc_st *st, const char *name) {
    if (!st || !name || !st->n_slots) return NULL;
    uint32_t s = st->slots[st_slot(st, name, strlen(name))];
    return s ? &st->tensors[s - 1] : NULL;
}

size_t deepc_st_count(const deepc_st *st) {
    return st ? st->n_tensors : 0;
}

const deepc_st_tensor *deepc_st_at(const deepc_st *st, size_t i) {
    return st && i < st->n_tensors ? &st->tensors[i] : NULL;
}

/* Appends t (its name not yet copied) and indexes it; rejects duplicates. */
static int st_add_tensor(deepc_st *st, deepc_st_tensor *t, const char *name, size_t len, deepc_err *err) {
    const char *path = st->shards[t->shard].path;
    if (st->n_tensors >= UINT32_MAX - 1)
        return deepc_errf(err, DEEPC_ERR_FORMAT, "%s: too many tensors", path);
    if (2 * (st->n_tensors + 1) > st->n_slots) {
        int rc = st_grow_slots(st, err);
        if (rc) return rc;
    }
    size_t slot = st_slot(st, name, len);
    if (st->slots[slot]) {
        const deepc_st_tensor *o = &st->tensors[st->slots[slot] - 1];
        return deepc_errf(err, DEEPC_ERR_FORMAT, "%s: duplicate tensor '%.*s' (also in %s)", path,
                          shown(len), name, st->shards[o->shard].path);
    }
    if (st->n_tensors == st->cap_tensors) {
        size_t cap = st->cap_tensors ? st->cap_tensors * 2 : 256;
        deepc_st_tensor *nt = realloc(st->tensors, cap * sizeof *nt);
        if (!nt) return deepc_errf(err, DEEPC_ERR_NOMEM, "%s: out of memory for the tensor table", path);
        st->tensors = nt;
        st->cap_tensors = cap;
    }
    t->name = st_strdup(st, name, len);
    if (!t->name) return deepc_errf(err, DEEPC_ERR_NOMEM, "%s: out of memory for tensor names", path);
    st->tensors[st->n_tensors] = *t;
    st->slots[slot] = (uint32_t)(++st->n_tensors);
    return DEEPC_OK;
}

/* ---- one shard --------------------------------------------------------- */

/* Validates one header entry and adds the tensor. */
static int st_parse_entry(deepc_st *st, int shard, const char *name, size_t nlen, const deepc_json *v,
                          deepc_err *err) {
    const st_shard *sh = &st->shards[shard];
    const char *path = sh->path;
    int nl = shown(nlen);
    deepc_st_tensor t;
    memset(&t, 0, sizeof t);
    t.shard = shard;
    if (memchr(name, 0, nlen))
        return deepc_errf(err, DEEPC_ERR_FORMAT, "%s: tensor '%.*s': name contains a NUL byte", path, nl, name);
    if (deepc_json_type_of(v) != DEEPC_JSON_OBJECT)
        return deepc_errf(err, DEEPC_ERR_FORMAT, "%s: tensor '%.*s': entry is not an object", path, nl, name);

    size_t dlen;
    const char *dtype = deepc_json_str(deepc_json_get(v, "dtype"), &dlen);
    if (!dtype) return deepc_errf(err, DEEPC_ERR_FORMAT, "%s: tensor '%.*s': missing string \"dtype\"", path, nl, name);
    size_t esize = 0;
    t.dtype = DEEPC_ST_OTHER;
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++) {
        if (strlen(st_dtypes[i].name) == dlen && memcmp(st_dtypes[i].name, dtype, dlen) == 0) {
            t.dtype = st_dtypes[i].dt;
            t.dtype_name = st_dtypes[i].name;
            esize = st_dtypes[i].size;
            break;
        }
    }
    if (!t.dtype_name) {
        if (dlen > 32 || memchr(dtype, 0, dlen))
            return deepc_errf(err, DEEPC_ERR_FORMAT, "%s: tensor '%.*s': malformed dtype", path, nl, name);
        t.dtype_name = st_strdup(st, dtype, dlen);
        if (!t.dtype_name) return deepc_errf(err, DEEPC_ERR_NOMEM, "%s: out of memory", path);
    }

    const deepc_json *shape = deepc_json_get(v, "shape");
    if (deepc_json_type_of(shape) != DEEPC_JSON_ARRAY)
        return deepc_errf(err, DEEPC_ERR_FORMAT, "%s: tensor '%.*s': missing array \"shape\"", path, nl, name);
    size_t ndim = deepc_json_len(shape);
    if (ndim > DEEPC_ST_MAX_DIMS)
        return deepc_errf(err, DEEPC_ERR_FORMAT, "%s: tensor '%.*s': %zu dimensions (at most %d supported)", path,
                          nl, name, ndim, DEEPC_ST_MAX_DIMS);
    t.ndim = (int)ndim;
    t.n_elems = 1;
    for (size_t i = 0; i < ndim; i++) {
        int64_t d;
        if (!deepc_json_int(deepc_json_at(shape, i), &d) || d < 0)
            return deepc_errf(err, DEEPC_ERR_FORMAT, "%s: tensor '%.*s': shape[%zu] is not a non-negative integer",
                              path, nl, name, i);
        t.shape[i] = (uint64_t)d;
        if (deepc_mul_ovf(t.n_elems, t.shape[i], &t.n_elems))
            return deepc_errf(err, DEEPC_ERR_FORMAT, "%s: tensor '%.*s': element count overflows", path, nl, name);
    }

    const deepc_json *offs = deepc_json_get(v, "data_offsets");
    int64_t b, e;
    if (deepc_json_len(offs) != 2 || deepc_json_type_of(offs) != DEEPC_JSON_ARRAY ||
        !deepc_json_int(deepc_json_at(offs, 0), &b) || !deepc_json_int(deepc_json_at(offs, 1), &e) || b < 0 || e < 0)
        return deepc_errf(err, DEEPC_ERR_FORMAT,
                          "%s: tensor '%.*s': \"data_offsets\" must be two non-negative integers", path, nl, name);
    uint64_t begin = (uint64_t)b, end = (uint64_t)e;
    if (begin > end)
        return deepc_errf(err, DEEPC_ERR_FORMAT, "%s: tensor '%.*s': data_offsets [%llu, %llu] are reversed", path,
                          nl, name, (unsigned long long)begin, (unsigned long long)end);
    if (end > sh->data_size)
        return deepc_errf(err, DEEPC_ERR_FORMAT, "%s: tensor '%.*s': data_offsets [%llu, %llu] exceed data size %llu",
                          path, nl, name, (unsigned long long)begin, (unsigned long long)end,
                          (unsigned long long)sh->data_size);
    t.nbytes = end - begin;
    t.file_offset = sh->data_start + begin;     /* <= file size: cannot overflow */
    uint64_t need = 0;
    if (esize && (deepc_mul_ovf(t.n_elems, esize, &need) || need != t.nbytes))
        return deepc_errf(err, DEEPC_ERR_FORMAT,
                          "%s: tensor '%.*s': shape needs %llu elements of %s but data_offsets [%llu, %llu] "
                          "hold %llu bytes",
                          path, nl, name, (unsigned long long)t.n_elems, t.dtype_name, (unsigned long long)begin,
                          (unsigned long long)end, (unsigned long long)t.nbytes);
    return st_add_tensor(st, &t, name, nlen, err);
}

/* Opens path as a new shard and adds its tensors. */
static int st_add_shard(deepc_st *st, const char *path, deepc_err *err) {
    char *header = NULL;
    deepc_json_doc *doc = NULL;
    int rc;
    if (st->n_shards == st->cap_shards) {
        int cap = st->cap_shards ? st->cap_shards * 2 : 8;
        st_shard *ns = realloc(st->shards, (size_t)cap * sizeof *ns);
        if (!ns) return deepc_errf(err, DEEPC_ERR_NOMEM, "%s: out of memory", path);
        st->shards = ns;
        st->cap_shards = cap;
    }
    int idx = st->n_shards;
    st_shard *sh = &st->shards[idx];
    memset(sh, 0, sizeof *sh);
    sh->fd = -1;
    sh->path = malloc(strlen(path) + 1);
    if (!sh->path) return deepc_errf(err, DEEPC_ERR_NOMEM, "%s: out of memory", path);
    strcpy(sh->path, path);
    st->n_shards++;  /* counted now so deepc_st_close releases it on failure */

    sh->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (sh->fd < 0) {
        rc = deepc_errf(err, DEEPC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(sh->fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        rc = deepc_errf(err, DEEPC_ERR_IO, "%s: not a regular file", path);
        goto fail;
    }
    sh->file_size = (uint64_t)sb.st_size;
    if (sh->file_size < 8) {
        rc = deepc_errf(err, DEEPC_ERR_FORMAT, "%s: file is %llu bytes, too small for a safetensors header", path,
                        (unsigned long long)sh->file_size);
        goto fail;
    }
    unsigned char lenbuf[8];
    int e = pread_full(sh->fd, lenbuf, 8, 0);
    if (e) {
        rc = deepc_errf(err, DEEPC_ERR_IO, "%s: reading the header length: %s", path, pread_error(e));
        goto fail;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | lenbuf[i];
    if (hlen > ST_MAX_HEADER || hlen > sh->file_size - 8) {
        rc = deepc_errf(err, DEEPC_ERR_FORMAT,
                        "%s: header length %llu is larger than the file (%llu bytes) or the %llu-byte limit", path,
                        (unsigned long long)hlen, (unsigned long long)sh->file_size,
                        (unsigned long long)ST_MAX_HEADER);
        goto fail;
    }
    sh->data_start = 8 + hlen;
    sh->data_size = sh->file_size - sh->data_start;
    header = malloc((size_t)hlen + 1);
    if (!header) {
        rc = deepc_errf(err, DEEPC_ERR_NOMEM, "%s: out of memory for a %llu-byte header", path,
                        (unsigned long long)hlen);
        goto fail;
    }
    e = pread_full(sh->fd, header, (size_t)hlen, 8);
    if (e) {
        rc = deepc_errf(err, DEEPC_ERR_IO, "%s: reading the header: %s", path, pread_error(e));
        goto fail;
    }
    deepc_err jerr;
    doc = deepc_json_parse(header, (size_t)hlen, &jerr);
    if (!doc) {
        rc = deepc_errf(err, DEEPC_ERR_FORMAT, "%s: header is not valid JSON (offsets from byte 8): %s", path,
                        jerr.msg);
        goto fail;
    }
    const deepc_json *root = deepc_json_root(doc);
    if (deepc_json_type_of(root) != DEEPC_JSON_OBJECT) {
        rc = deepc_errf(err, DEEPC_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto fail;
    }
    for (size_t i = 0, n = deepc_json_len(root); i < n; i++) {
        size_t klen;
        const char *key = deepc_json_key_at(root, i, &klen);
        const deepc_json *v = deepc_json_val_at(root, i);
        if (klen == 12 && memcmp(key, "__metadata__", 12) == 0) {
            if (deepc_json_type_of(v) != DEEPC_JSON_OBJECT) {
                rc = deepc_errf(err, DEEPC_ERR_FORMAT, "%s: \"__metadata__\" is not an object", path);
                goto fail;
            }
            continue;
        }
        rc = st_parse_entry(st, idx, key, klen, v, err);
        if (rc) goto fail;
    }
    deepc_json_free(doc);
    free(header);
    return DEEPC_OK;
fail:
    deepc_json_free(doc);
    free(header);
    return rc;
}

/* ---- opening ----------------------------------------------------------- */

void deepc_st_close(deepc_st *st) {
    if (!st) return;
    for (int i = 0; i < st->n_shards; i++) {
        if (st->shards[i].fd >= 0) close(st->shards[i].fd);
        free(st->shards[i].path);
    }
    free(st->shards);
    free(st->tensors);
    free(st->slots);
    for (st_chunk *c = st->strings; c;) {
        st_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(st);
}

deepc_st *deepc_st_open_file(const char *path, deepc_err *err) {
    deepc_st *st = calloc(1, sizeof *st);
    if (!st) {
        deepc_errf(err, DEEPC_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    if (st_add_shard(st, path, err)) goto fail;
    return st;
fail:
    deepc_st_close(st);
    return NULL;
}

/* Hostile index files must not reach outside the checkpoint directory. */
static bool st_shard_name_ok(const char *s, size_t n) {
    return n > 0 && !memchr(s, 0, n) && !memchr(s, '/', n) && !memchr(s, '\\', n) &&
           !strstr(s, "..");
}

static deepc_st *st_open_index(const char *dir, const char *index_path, deepc_err *err) {
    deepc_st *st = NULL;
    char *text = NULL, *path = NULL;
    deepc_json_doc *doc = NULL;
    uint32_t *entry_shard = NULL;        /* weight_map member -> shard index */
    const char **names = NULL;           /* shard names in first-seen order */
    uint32_t *set = NULL;                /* hash set over names: index + 1 */
    size_t len;
    deepc_err jerr;

    if (deepc_read_file(index_path, ST_MAX_INDEX, &text, &len, err)) goto fail;
    doc = deepc_json_parse(text, len, &jerr);
    if (!doc) {
        deepc_errf(err, DEEPC_ERR_FORMAT, "%s: not valid JSON: %s", index_path, jerr.msg);
        goto fail;
    }
    const deepc_json *wm = deepc_json_get(deepc_json_root(doc), "weight_map");
    if (deepc_json_type_of(wm) != DEEPC_JSON_OBJECT) {
        deepc_errf(err, DEEPC_ERR_FORMAT, "%s: missing object \"weight_map\"", index_path);
        goto fail;
    }
    size_t n = deepc_json_len(wm), set_cap = 16, n_names = 0;
    while (set_cap < 2 * n) set_cap *= 2;
    entry_shard = malloc((n ? n : 1) * sizeof *entry_shard);
    names = malloc((n ? n : 1) * sizeof *names);
    set = calloc(set_cap, sizeof *set);
    st = calloc(1, sizeof *st);
    if (!entry_shard || !names || !set || !st) {
        deepc_errf(err, DEEPC_ERR_NOMEM, "%s: out of memory", index_path);
        goto fail;
    }
    /* Collect the distinct shard names so each file is opened once. */
    for (size_t i = 0; i < n; i++) {
        size_t klen, slen;
        const char *key = deepc_json_key_at(wm, i, &klen);
        const char *s = deepc_json_str(deepc_json_val_at(wm, i), &slen);
        if (!s) {
            deepc_errf(err, DEEPC_ERR_FORMAT, "%s: weight_map entry '%.*s' is not a string", index_path,
                       shown(klen), key);
            goto fail;
        }
        if (!st_shard_name_ok(s, slen)) {
            deepc_errf(err, DEEPC_ERR_FORMAT, "%s: tensor '%.*s': shard name '%.*s' is not a plain file name",
                       index_path, shown(klen), key, shown(slen), s);
            goto fail;
        }
        size_t h = st_hash(s, slen) & (set_cap - 1);
        while (set[h] && strcmp(names[set[h] - 1], s) != 0) h = (h + 1) & (set_cap - 1);
        if (!set[h]) {
            names[n_names++] = s;
            set[h] = (uint32_t)n_names;
        }
        entry_shard[i] = set[h] - 1;
    }
    for (size_t i = 0; i < n_names; i++) {
        path = deepc_path_join(dir, names[i]);
        if (!path) {
            deepc_errf(err, DEEPC_ERR_NOMEM, "%s: out of memory", index_path);
            goto fail;
        }
        if (st_add_shard(st, path, err)) {
            /* Say which index sent us there: the shard's own message is kept. */
            if (err) {
                size_t used = strlen(err->msg);
                if (used + 16 + strlen(index_path) < sizeof err->msg)
                    snprintf(err->msg + used, sizeof err->msg - used, " (listed in %s)", index_path);
            }
            goto fail;
        }
        free(path);
        path = NULL;
    }
    /* Every tensor the index promises must be in the shard it names. */
    for (size_t i = 0; i < n; i++) {
        size_t klen;
        const char *key = deepc_json_key_at(wm, i, &klen);
        const st_shard *want = &st->shards[entry_shard[i]];
        const deepc_st_tensor *t = memchr(key, 0, klen) ? NULL : deepc_st_find(st, key);
        if (!t || t->shard != (int)entry_shard[i]) {
            deepc_errf(err, DEEPC_ERR_FORMAT, "%s: tensor '%.*s' is listed for %s but not found there%s%s",
                       index_path, shown(klen), key, want->path, t ? "; it is in " : "",
                       t ? st->shards[t->shard].path : "");
            goto fail;
        }
    }
    deepc_json_free(doc);
    free(text);
    free(entry_shard);
    free(names);
    free(set);
    return st;
fail:
    deepc_json_free(doc);
    free(text);
    free(path);
    free(entry_shard);
    free(names);
    free(set);
    deepc_st_close(st);
    return NULL;
}

static bool st_is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static bool st_has_suffix(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a > b && strcmp(s + a - b, suffix) == 0;
}

deepc_st *deepc_st_open_dir(const char *dir, deepc_err *err) {
    deepc_st *st = NULL;
    char *path = deepc_path_join(dir, ST_INDEX_NAME), *only = NULL;
    DIR *d = NULL;
    if (!path) goto oom;
    if (st_is_file(path)) {
        st = st_open_index(dir, path, err);
        goto done;
    }
    free(path);
    path = deepc_path_join(dir, "model.safetensors");
    if (!path) goto oom;
    if (st_is_file(path)) {
        st = deepc_st_open_file(path, err);
        goto done;
    }
    /* Otherwise exactly one *.safetensors file: with several and no index we
     * cannot know they form one checkpoint. */
    d = opendir(dir);
    if (!d) {
        deepc_errf(err, DEEPC_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
        goto done;
    }
    int count = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        if (ent->d_name[0] == '.' || !st_has_suffix(ent->d_name, ".safetensors")) continue;
        if (++count == 1) {
            only = deepc_path_join(dir, ent->d_name);
            if (!only) goto oom;
        }
    }
    if (count == 0)
        deepc_errf(err, DEEPC_ERR_IO, "%s: no %s and no .safetensors file", dir, ST_INDEX_NAME);
    else if (count > 1)
        deepc_errf(err, DEEPC_ERR_FORMAT, "%s: %d .safetensors files but no %s to say how they fit together", dir,
                   count, ST_INDEX_NAME);
    else
        st = deepc_st_open_file(only, err);
    goto done;
oom:
    deepc_errf(err, DEEPC_ERR_NOMEM, "%s: out of memory", dir);
done:
    if (d) closedir(d);
    free(only);
    free(path);
    return st;
}

/* ---- reading ----------------------------------------------------------- */

int deepc_st_read_raw(deepc_st *st, const deepc_st_tensor *t, uint64_t byte_off, void *dst, size_t nbytes,
                      deepc_err *err) {
    if (!st || !t || (!dst && nbytes))
        return deepc_errf(err, DEEPC_ERR_INVALID_ARG, "safetensors: read with a NULL argument");
    if (t->shard < 0 || t->shard >= st->n_shards)
        return deepc_errf(err, DEEPC_ERR_INVALID_ARG, "safetensors: tensor '%s' is not from this checkpoint",
                          t->name ? t->name : "?");
    const st_shard *sh = &st->shards[t->shard];
    uint64_t end, pos, pos_end;
    /* The tensor may be a caller's copy, so recheck it against the file too. */
    if (deepc_add_ovf(byte_off, nbytes, &end) || end > t->nbytes || deepc_add_ovf(t->file_offset, byte_off, &pos) ||
        deepc_add_ovf(pos, nbytes, &pos_end) || pos_end > sh->file_size)
        return deepc_errf(err, DEEPC_ERR_INVALID_ARG,
                          "%s: tensor '%s': bytes [%llu, +%zu) are outside its %llu bytes", sh->path, t->name,
                          (unsigned long long)byte_off, nbytes, (unsigned long long)t->nbytes);
    int e = pread_full(sh->fd, dst, nbytes, pos);
    if (e)
        return deepc_errf(err, DEEPC_ERR_IO, "%s: tensor '%s': read of %zu bytes at offset %llu failed: %s", sh->path,
                          t->name, nbytes, (unsigned long long)pos, pread_error(e));
    return DEEPC_OK;
}

static float bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1F, m = h & 0x3FF;
    if (e == 0) {                          /* zero or subnormal: m * 2^-24, exact */
        float v = (float)m * 0x1p-24f;
        return sign ? -v : v;
    }
    if (e == 31) return bits_to_f32(sign | 0x7F800000u | m << 13);
    return bits_to_f32(sign | (e + 112) << 23 | m << 13);
}

/* E4M3 "FN": bias 7, subnormals, no infinities, S.1111.111 is NaN. */
static float f8e4m3_to_f32(uint8_t b) {
    uint32_t sign = (uint32_t)(b & 0x80) << 24, e = (b >> 3) & 0xF, m = b & 7;
    if (e == 15 && m == 7) return bits_to_f32(sign | 0x7FC00000u);
    if (e == 0) {                          /* m/8 * 2^-6 */
        float v = (float)m * 0x1p-9f;
        return sign ? -v : v;
    }
    return bits_to_f32(sign | (e + 120) << 23 | m << 20);
}

int deepc_st_read_f32(deepc_st *st, const deepc_st_tensor *t, uint64_t elem_off, float *dst, size_t n,
                      deepc_err *err) {
    if (!st || !t || (!dst && n))
        return deepc_errf(err, DEEPC_ERR_INVALID_ARG, "safetensors: read with a NULL argument");
    size_t es = deepc_st_dtype_size(t->dtype);
    const char *path = t->shard >= 0 && t->shard < st->n_shards ? st->shards[t->shard].path : "safetensors";
    if (t->dtype != DEEPC_ST_F32 && t->dtype != DEEPC_ST_F16 && t->dtype != DEEPC_ST_BF16 &&
        t->dtype != DEEPC_ST_F8_E4M3)
        return deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s cannot be read as floats", path,
                          t->name, t->dtype_name ? t->dtype_name : "?");
    uint64_t end, boff;
    if (n > SIZE_MAX / 4 || deepc_add_ovf(elem_off, n, &end) || end > t->n_elems ||
        deepc_mul_ovf(elem_off, es, &boff))
        return deepc_errf(err, DEEPC_ERR_INVALID_ARG, "%s: tensor '%s': elements [%llu, +%zu) are outside its %llu",
                          path, t->name, (unsigned long long)elem_off, n, (unsigned long long)t->n_elems);
    /* Decode in place instead of through a bounce buffer: the raw elements are
     * read into the tail of dst and converted front to back. Output element i
     * ends at byte 4(i+1) and raw element i+1 starts at 4n - es(n - i - 1),
     * which is never earlier, so no raw byte is overwritten before it is read. */
    if (n == 0) return DEEPC_OK;
    unsigned char *raw = (unsigned char *)dst + n * 4 - n * es;
    int rc = deepc_st_read_raw(st, t, boff, raw, n * es, err);
    if (rc) return rc;
    switch (t->dtype) {
    case DEEPC_ST_F32:
        for (size_t i = 0; i < n; i++) {
            const unsigned char *p = raw + 4 * i;
            dst[i] = bits_to_f32((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        }
        break;
    case DEEPC_ST_F16:
        for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32((uint16_t)(raw[2 * i] | raw[2 * i + 1] << 8));
        break;
    case DEEPC_ST_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = bits_to_f32((uint32_t)raw[2 * i] << 16 | (uint32_t)raw[2 * i + 1] << 24);
        break;
    default: /* DEEPC_ST_F8_E4M3 */
        for (size_t i = 0; i < n; i++) dst[i] = f8e4m3_to_f32(raw[i]);
        break;
    }
    return DEEPC_OK;
}
