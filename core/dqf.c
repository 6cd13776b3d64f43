/* dqf.c - reader and writer of .dqf model files. The reader trusts nothing:
 * every count, offset and size is checked with overflow-safe arithmetic
 * before use. The writer streams tensor data straight to disk and keeps only
 * metadata and the directory in memory. Layout: FORMAT.md. */
#include "dqf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deepc.h"

/* ---- little-endian helpers --------------------------------------------- */

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

#define CK_P1 0x9E3779B97F4A7C15ull
#define CK_P2 0xBF58476D1CE4E5B9ull

uint64_t deepc_dqf_checksum(const void *data, uint64_t size) {
    const uint8_t *p = data;
    uint64_t h[4];
    for (int i = 0; i < 4; i++) h[i] = (CK_P1 * (uint64_t)(i + 1)) ^ size;
    uint64_t i = 0;
    for (; i + 32 <= size; i += 32)
        for (int l = 0; l < 4; l++) h[l] = rotl64(h[l] ^ rd64(p + i + 8 * l), 29) * CK_P2;
    for (; i < size; i++) h[0] = (h[0] ^ p[i]) * CK_P1;
    uint64_t r = h[0] ^ rotl64(h[1], 17) ^ rotl64(h[2], 31) ^ rotl64(h[3], 47);
    r ^= r >> 33;
    r *= CK_P2;
    r ^= r >> 29;
    return r;
}

static size_t meta_scalar_size(uint32_t t) {
    switch (t) {
    case DEEPC_META_U8: case DEEPC_META_BOOL: return 1;
    case DEEPC_META_U32: case DEEPC_META_I32: case DEEPC_META_F32: return 4;
    case DEEPC_META_U64: case DEEPC_META_F64: return 8;
    default: return 0;
    }
}

/* ====================================================================== */
/*                                 reader                                 */
/* ====================================================================== */

typedef struct {
    const char *key;        /* NUL-terminated copy */
    uint32_t type;
    uint32_t elem;          /* arrays */
    uint64_t count;         /* arrays and strings (bytes) */
    const uint8_t *val;     /* into the mapping */
} meta_entry;

struct deepc_dqf {
    int fd;
    const uint8_t *map;
    uint64_t size;
    meta_entry *meta;
    size_t n_meta;
    deepc_dqf_tensor *tensors;
    size_t n_tensors;
    char *names;            /* all names, NUL-terminated, one block */
    uint32_t *hash;         /* open addressing: index+1, 0 = empty */
    size_t hash_cap;
};

static uint64_t str_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* A cursor over a bounded region; every take checks the remaining length. */
typedef struct { const uint8_t *p; uint64_t left; uint64_t file_off; } cursor;

static bool take(cursor *c, uint64_t n, const uint8_t **out) {
    if (n > c->left) return false;
    *out = c->p;
    c->p += n; c->left -= n; c->file_off += n;
    return true;
}

static int parse_meta(deepc_dqf *d, uint64_t off, uint64_t size, uint64_t n, char **namebuf,
                      size_t *name_used, deepc_err *err) {
    cursor c = { d->map + off, size, off };
    if (n > size / 9) return deepc_errf(err, DEEPC_ERR_FORMAT, "metadata count %llu is impossible for a %llu-byte section", (unsigned long long)n, (unsigned long long)size);
    d->meta = calloc(n ? n : 1, sizeof *d->meta);
    if (!d->meta) return deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory");
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *p;
        if (!take(&c, 4, &p)) goto trunc;
        uint32_t klen = rd32(p);
        if (klen == 0 || klen > 256) return deepc_errf(err, DEEPC_ERR_FORMAT, "metadata entry %llu: key length %u out of range", (unsigned long long)i, klen);
        if (!take(&c, klen, &p)) goto trunc;
        char *k = *namebuf + *name_used;
        memcpy(k, p, klen);
        k[klen] = 0;
        if (memchr(k, 0, klen)) return deepc_errf(err, DEEPC_ERR_FORMAT, "metadata entry %llu: key contains NUL", (unsigned long long)i);
        *name_used += klen + 1;
        meta_entry *e = &d->meta[i];
        e->key = k;
        if (!take(&c, 4, &p)) goto trunc;
        e->type = rd32(p);
        size_t ss = meta_scalar_size(e->type);
        if (ss) {
            if (!take(&c, ss, &e->val)) goto trunc;
            if (e->type == DEEPC_META_BOOL && *e->val > 1) return deepc_errf(err, DEEPC_ERR_FORMAT, "metadata '%s': bool value %u", k, *e->val);
        } else if (e->type == DEEPC_META_STRING) {
            if (!take(&c, 8, &p)) goto trunc;
            e->count = rd64(p);
            if (!take(&c, e->count, &e->val)) goto trunc;
        } else if (e->type == DEEPC_META_ARRAY) {
            if (!take(&c, 12, &p)) goto trunc;
            e->elem = rd32(p);
            e->count = rd64(p + 4);
            size_t es = meta_scalar_size(e->elem);
            if (!es || e->elem == DEEPC_META_BOOL || e->elem == DEEPC_META_F64)
                return deepc_errf(err, DEEPC_ERR_FORMAT, "metadata '%s': unsupported array element type %u", k, e->elem);
            uint64_t pad = (8 - c.file_off % 8) % 8, bytes;
            if (!take(&c, pad, &p)) goto trunc;
            if (deepc_mul_ovf(e->count, es, &bytes) || !take(&c, bytes, &e->val)) goto trunc;
        } else {
            return deepc_errf(err, DEEPC_ERR_FORMAT, "metadata '%s': unknown value type %u", k, e->type);
        }
        for (uint64_t j = 0; j < i; j++)
            if (!strcmp(d->meta[j].key, k)) return deepc_errf(err, DEEPC_ERR_FORMAT, "metadata key '%s' appears twice", k);
    }
    d->n_meta = n;
    return DEEPC_OK;
trunc:
    return deepc_errf(err, DEEPC_ERR_FORMAT, "metadata section is truncated or corrupt (entry runs past its end)");
}

static int parse_dir(deepc_dqf *d, uint64_t off, uint64_t size, uint64_t n, uint64_t data_off,
                     uint64_t data_size, char **namebuf, size_t *name_used, deepc_err *err) {
    cursor c = { d->map + off, size, off };
    if (n > size / 40) return deepc_errf(err, DEEPC_ERR_FORMAT, "tensor count %llu is impossible for a %llu-byte directory", (unsigned long long)n, (unsigned long long)size);
    d->tensors = calloc(n ? n : 1, sizeof *d->tensors);
    d->hash_cap = 16;
    while (d->hash_cap < n * 2) d->hash_cap *= 2;
    d->hash = calloc(d->hash_cap, sizeof *d->hash);
    if (!d->tensors || !d->hash) return deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory");
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *p;
        deepc_dqf_tensor *t = &d->tensors[i];
        if (!take(&c, 4, &p)) goto trunc;
        uint32_t nlen = rd32(p);
        if (nlen == 0 || nlen > 512) return deepc_errf(err, DEEPC_ERR_FORMAT, "tensor %llu: name length %u out of range", (unsigned long long)i, nlen);
        if (!take(&c, nlen, &p)) goto trunc;
        char *name = *namebuf + *name_used;
        memcpy(name, p, nlen);
        name[nlen] = 0;
        if (memchr(name, 0, nlen)) return deepc_errf(err, DEEPC_ERR_FORMAT, "tensor %llu: name contains NUL", (unsigned long long)i);
        *name_used += nlen + 1;
        t->name = name;
        if (!take(&c, 8, &p)) goto trunc;
        uint32_t type = rd32(p), ndim = rd32(p + 4);
        const deepc_type_traits *tt = deepc_type_info((int)type);
        if (!tt) return deepc_errf(err, DEEPC_ERR_FORMAT, "tensor '%s': unknown type id %u (file written by a newer deepc?)", name, type);
        if (ndim < 1 || ndim > DEEPC_DQF_MAX_DIMS) return deepc_errf(err, DEEPC_ERR_FORMAT, "tensor '%s': %u dimensions (1..%d allowed)", name, ndim, DEEPC_DQF_MAX_DIMS);
        t->type = (deepc_type)type;
        t->ndim = (int)ndim;
        if (!take(&c, 8ull * ndim, &p)) goto trunc;
        uint64_t ne = 1;
        for (uint32_t k = 0; k < ndim; k++) {
            t->dims[k] = rd64(p + 8 * k);
            if (t->dims[k] == 0 || deepc_mul_ovf(ne, t->dims[k], &ne) || ne > (1ull << 48))
                return deepc_errf(err, DEEPC_ERR_FORMAT, "tensor '%s': bad shape (dimension %u is %llu)", name, k, (unsigned long long)t->dims[k]);
        }
        t->n_elems = ne;
        if (!take(&c, 28, &p)) goto trunc;
        t->offset = rd64(p);
        t->size = rd64(p + 8);
        t->flags = rd32(p + 16);
        t->checksum = rd64(p + 20);
        if (t->dims[ndim - 1] % tt->block_elems)
            return deepc_errf(err, DEEPC_ERR_FORMAT, "tensor '%s': row length %llu is not a multiple of the %s block size %zu", name, (unsigned long long)t->dims[ndim - 1], tt->name, tt->block_elems);
        uint64_t want = ne / tt->block_elems * tt->block_bytes, end;
        if (t->size != want)
            return deepc_errf(err, DEEPC_ERR_FORMAT, "tensor '%s': size %llu bytes, but its shape and type %s need %llu", name, (unsigned long long)t->size, tt->name, (unsigned long long)want);
        if (t->offset % DEEPC_DQF_ALIGN || t->offset < data_off || deepc_add_ovf(t->offset, t->size, &end) || end > data_off + data_size)
            return deepc_errf(err, DEEPC_ERR_FORMAT, "tensor '%s': data [%llu, +%llu) is misaligned or outside the data section [%llu, %llu)", name,
                              (unsigned long long)t->offset, (unsigned long long)t->size, (unsigned long long)data_off, (unsigned long long)(data_off + data_size));
        t->data = d->map + t->offset;
        size_t h = (size_t)(str_hash(name) & (d->hash_cap - 1));
        while (d->hash[h]) {
            if (!strcmp(d->tensors[d->hash[h] - 1].name, name)) return deepc_errf(err, DEEPC_ERR_FORMAT, "tensor '%s' appears twice", name);
            h = (h + 1) & (d->hash_cap - 1);
        }
        d->hash[h] = (uint32_t)(i + 1);
    }
    if (c.left) return deepc_errf(err, DEEPC_ERR_FORMAT, "tensor directory has %llu trailing bytes", (unsigned long long)c.left);
    d->n_tensors = n;
    return DEEPC_OK;
trunc:
    return deepc_errf(err, DEEPC_ERR_FORMAT, "tensor directory is truncated or corrupt (entry runs past its end)");
}

deepc_dqf *deepc_dqf_open(const char *path, deepc_err *err) {
    deepc_dqf *d = calloc(1, sizeof *d);
    if (!d) { deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory"); return NULL; }
    d->fd = -1;
    deepc_err e2;
    deepc_err *E = err ? err : &e2;
    d->fd = open(path, O_RDONLY);
    if (d->fd < 0) { deepc_errf(E, DEEPC_ERR_IO, "%s: cannot open: %s", path, strerror(errno)); goto fail; }
    struct stat sb;
    if (fstat(d->fd, &sb) != 0 || !S_ISREG(sb.st_mode)) { deepc_errf(E, DEEPC_ERR_IO, "%s: not a regular file", path); goto fail; }
    d->size = (uint64_t)sb.st_size;
    if (d->size < DEEPC_DQF_HEADER_SIZE) { deepc_errf(E, DEEPC_ERR_FORMAT, "%s: %llu bytes is too small for a .dqf file (truncated?)", path, (unsigned long long)d->size); goto fail; }
    void *m = mmap(NULL, (size_t)d->size, PROT_READ, MAP_PRIVATE, d->fd, 0);
    if (m == MAP_FAILED) { deepc_errf(E, DEEPC_ERR_IO, "%s: mmap failed: %s", path, strerror(errno)); goto fail; }
    d->map = m;
    const uint8_t *h = d->map;
    if (memcmp(h, DEEPC_DQF_MAGIC, 8)) { deepc_errf(E, DEEPC_ERR_FORMAT, "%s: not a .dqf file (bad magic)", path); goto fail; }
    uint32_t major = rd32(h + 8), minor = rd32(h + 12);
    if (major != DEEPC_DQF_VERSION_MAJOR) {
        deepc_errf(E, DEEPC_ERR_UNSUPPORTED, "%s: .dqf version %u.%u; this deepc reads version %d.x", path, major, minor, DEEPC_DQF_VERSION_MAJOR);
        goto fail;
    }
    uint64_t fsize = rd64(h + 16), moff = rd64(h + 24), msize = rd64(h + 32), nmeta = rd64(h + 40);
    uint64_t dir_off = rd64(h + 48), dir_size = rd64(h + 56), ntens = rd64(h + 64);
    uint64_t data_off = rd64(h + 72), data_size = rd64(h + 80), meta_ck = rd64(h + 88), dir_ck = rd64(h + 96);
    if (fsize != d->size) {
        deepc_errf(E, DEEPC_ERR_FORMAT, "%s: file is %llu bytes but its header says %llu (truncated or incomplete copy)", path,
                   (unsigned long long)d->size, (unsigned long long)fsize);
        goto fail;
    }
    /* order on disk: header, metadata, data (page-aligned), directory */
    uint64_t meta_end, data_end, dir_end;
    if (moff < DEEPC_DQF_HEADER_SIZE || deepc_add_ovf(moff, msize, &meta_end) || meta_end > fsize ||
        deepc_add_ovf(data_off, data_size, &data_end) || data_end > fsize || data_off < meta_end ||
        data_off % DEEPC_DQF_PAGE || deepc_add_ovf(dir_off, dir_size, &dir_end) || dir_end > fsize ||
        dir_off < data_end) {
        deepc_errf(E, DEEPC_ERR_FORMAT, "%s: section bounds in the header are inconsistent (corrupt header)", path);
        goto fail;
    }
    if (deepc_dqf_checksum(d->map + moff, msize) != meta_ck || deepc_dqf_checksum(d->map + dir_off, dir_size) != dir_ck) {
        deepc_errf(E, DEEPC_ERR_FORMAT, "%s: metadata or tensor directory checksum mismatch (corrupt file)", path);
        goto fail;
    }
    /* names of both sections fit in msize + dsize bytes including NULs */
    char *names = malloc((size_t)(msize + dir_size + 1));
    if (!names) { deepc_errf(E, DEEPC_ERR_NOMEM, "out of memory"); goto fail; }
    d->names = names;
    size_t used = 0;
    if (parse_meta(d, moff, msize, nmeta, &d->names, &used, E)) goto failmsg;
    if (parse_dir(d, dir_off, dir_size, ntens, data_off, data_size, &d->names, &used, E)) goto failmsg;
    return d;
failmsg: {
        char tmp[sizeof E->msg];
        snprintf(tmp, sizeof tmp, "%.200s: %.300s", path, E->msg);
        memcpy(E->msg, tmp, sizeof tmp);
    }
fail:
    deepc_dqf_close(d);
    return NULL;
}

void deepc_dqf_close(deepc_dqf *d) {
    if (!d) return;
    if (d->map) munmap((void *)d->map, (size_t)d->size);
    if (d->fd >= 0) close(d->fd);
    free(d->meta);
    free(d->tensors);
    free(d->names);
    free(d->hash);
    free(d);
}

uint64_t deepc_dqf_file_size(const deepc_dqf *d) { return d->size; }
int deepc_dqf_fd(const deepc_dqf *d) { return d->fd; }
const uint8_t *deepc_dqf_base(const deepc_dqf *d) { return d->map; }

int deepc_dqf_read(const deepc_dqf *d, uint64_t off, void *buf, uint64_t n, deepc_err *err) {
    /* Linux moves at most ~2 GiB per call; smaller pieces also keep signals responsive */
    const uint64_t piece = 64ull << 20;
    uint8_t *p = buf;
    uint64_t done = 0;
    while (done < n) {
        uint64_t want = n - done < piece ? n - done : piece;
        ssize_t r = pread(d->fd, p + done, (size_t)want, (off_t)(off + done));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return deepc_errf(err, DEEPC_ERR_IO, "reading %llu bytes at offset %llu failed: %s", (unsigned long long)want,
                                     (unsigned long long)(off + done), strerror(errno));
        if (r == 0) return deepc_errf(err, DEEPC_ERR_FORMAT, "file ends at offset %llu, inside tensor data (truncated after it was opened?)",
                                      (unsigned long long)(off + done));
        done += (uint64_t)r;
    }
    return DEEPC_OK;
}

void deepc_dqf_cache_snap_take(const deepc_dqf *d, uint64_t off, uint64_t n, deepc_dqf_cache_snap *s) {
    memset(s, 0, sizeof *s);
#if defined(POSIX_FADV_DONTNEED)
    long ps = sysconf(_SC_PAGESIZE);
    s->page = ps > 0 ? (size_t)ps : 4096;
    s->off = off / s->page * s->page;
    s->end = off + n > d->size ? d->size : off + n;
    s->end = (s->end + s->page - 1) / s->page * s->page;
    if (s->end <= s->off) return;
    size_t np = (size_t)((s->end - s->off) / s->page);
    s->vec = malloc(np);
    /* void *: the vector is unsigned char * on Linux, char * on the BSDs */
    if (s->vec && mincore((void *)(d->map + s->off), (size_t)(s->end - s->off), (void *)s->vec) != 0)
        memset(s->vec, 0, np);   /* unknown: count as not cached, so our copy does not linger */
#else
    (void)d; (void)off; (void)n;
#endif
}

void deepc_dqf_cache_drop_new(const deepc_dqf *d, const deepc_dqf_cache_snap *s, uint64_t off, uint64_t n) {
#if defined(POSIX_FADV_DONTNEED)
    if (!s->page) return;
    uint64_t lo = off / s->page * s->page, hi = (off + n + s->page - 1) / s->page * s->page;
    if (lo < s->off) lo = s->off;
    if (hi > s->end) hi = s->end;
    /* one call per stretch of pages that were not cached */
    for (uint64_t p = lo; p < hi;) {
        bool was = s->vec && (s->vec[(p - s->off) / s->page] & 1);
        uint64_t q = p + s->page;
        while (q < hi && (s->vec && (s->vec[(q - s->off) / s->page] & 1)) == was) q += s->page;
        if (!was) (void)posix_fadvise(d->fd, (off_t)p, (off_t)(q - p), POSIX_FADV_DONTNEED);
        p = q;
    }
#else
    (void)d; (void)s; (void)off; (void)n;
#endif
}

void deepc_dqf_cache_snap_free(deepc_dqf_cache_snap *s) {
    free(s->vec);
    s->vec = NULL;
}
size_t deepc_dqf_n_tensors(const deepc_dqf *d) { return d->n_tensors; }
const deepc_dqf_tensor *deepc_dqf_tensor_at(const deepc_dqf *d, size_t i) {
    return i < d->n_tensors ? &d->tensors[i] : NULL;
}

const deepc_dqf_tensor *deepc_dqf_find(const deepc_dqf *d, const char *name) {
    size_t h = (size_t)(str_hash(name) & (d->hash_cap - 1));
    while (d->hash[h]) {
        const deepc_dqf_tensor *t = &d->tensors[d->hash[h] - 1];
        if (!strcmp(t->name, name)) return t;
        h = (h + 1) & (d->hash_cap - 1);
    }
    return NULL;
}

int deepc_dqf_verify(const deepc_dqf *d, deepc_err *err) {
    for (size_t i = 0; i < d->n_tensors; i++) {
        const deepc_dqf_tensor *t = &d->tensors[i];
        if (!(t->flags & DEEPC_TENSOR_HAS_CHECKSUM)) continue;
        if (deepc_dqf_checksum(t->data, t->size) != t->checksum)
            return deepc_errf(err, DEEPC_ERR_FORMAT, "tensor '%s': checksum mismatch (data corrupt)", t->name);
    }
    return DEEPC_OK;
}

static const meta_entry *meta_find(const deepc_dqf *d, const char *key, uint32_t type) {
    for (size_t i = 0; i < d->n_meta; i++)
        if (!strcmp(d->meta[i].key, key)) return d->meta[i].type == type ? &d->meta[i] : NULL;
    return NULL;
}

bool deepc_dqf_get_u32(const deepc_dqf *d, const char *key, uint32_t *v) {
    const meta_entry *e = meta_find(d, key, DEEPC_META_U32);
    if (e) *v = rd32(e->val);
    return e != NULL;
}
bool deepc_dqf_get_i32(const deepc_dqf *d, const char *key, int32_t *v) {
    const meta_entry *e = meta_find(d, key, DEEPC_META_I32);
    if (e) memcpy(v, e->val, 4);
    return e != NULL;
}
bool deepc_dqf_get_u64(const deepc_dqf *d, const char *key, uint64_t *v) {
    const meta_entry *e = meta_find(d, key, DEEPC_META_U64);
    if (e) *v = rd64(e->val);
    return e != NULL;
}
bool deepc_dqf_get_f32(const deepc_dqf *d, const char *key, float *v) {
    const meta_entry *e = meta_find(d, key, DEEPC_META_F32);
    if (e) memcpy(v, e->val, 4);
    return e != NULL;
}
bool deepc_dqf_get_bool(const deepc_dqf *d, const char *key, bool *v) {
    const meta_entry *e = meta_find(d, key, DEEPC_META_BOOL);
    if (e) *v = *e->val != 0;
    return e != NULL;
}
bool deepc_dqf_get_str(const deepc_dqf *d, const char *key, const char **s, size_t *len) {
    const meta_entry *e = meta_find(d, key, DEEPC_META_STRING);
    if (e) { *s = (const char *)e->val; *len = (size_t)e->count; }
    return e != NULL;
}
bool deepc_dqf_get_array(const deepc_dqf *d, const char *key, deepc_meta_type elem,
                         const void **data, uint64_t *count) {
    const meta_entry *e = meta_find(d, key, DEEPC_META_ARRAY);
    if (!e || e->elem != (uint32_t)elem) return false;
    *data = e->val;
    *count = e->count;
    return true;
}
size_t deepc_dqf_n_meta(const deepc_dqf *d) { return d->n_meta; }
const char *deepc_dqf_meta_key(const deepc_dqf *d, size_t i, deepc_meta_type *type) {
    if (i >= d->n_meta) return NULL;
    if (type) *type = (deepc_meta_type)d->meta[i].type;
    return d->meta[i].key;
}

/* ====================================================================== */
/*                                 writer                                 */
/* ====================================================================== */

typedef struct { uint8_t *p; size_t n, cap; bool oom; } buf;

static void buf_put(buf *b, const void *src, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) { b->oom = true; return; }
        b->p = p; b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void buf_u32(buf *b, uint32_t v) { buf_put(b, &v, 4); }
static void buf_u64(buf *b, uint64_t v) { buf_put(b, &v, 8); }

struct deepc_dqf_writer {
    char *path, *tmp;
    FILE *f;
    buf meta, dir;
    uint64_t n_meta, n_tensors;
    uint64_t pos;             /* current file offset */
    uint64_t data_off;        /* 0 until the first tensor */
    bool in_tensor;
    uint64_t t_want, t_got;   /* current tensor's size and bytes written */
    uint64_t t_ck[4];         /* running checksum lanes */
    uint8_t t_tail[32];
    size_t t_tail_n;
    size_t dir_ck_at;         /* where the current entry's checksum goes */
    int failed;
    deepc_err err;
};

static int wfail(deepc_dqf_writer *w, int st, const char *fmt, const char *a) {
    if (!w->failed) {
        w->failed = st;
        snprintf(w->err.msg, sizeof w->err.msg, fmt, a ? a : "");
    }
    return w->failed;
}

deepc_dqf_writer *deepc_dqf_writer_create(const char *path, deepc_err *err) {
    deepc_dqf_writer *w = calloc(1, sizeof *w);
    if (!w) { deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory"); return NULL; }
    size_t n = strlen(path);
    w->path = malloc(n + 1);
    w->tmp = malloc(n + 5);
    if (!w->path || !w->tmp) { deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory"); goto fail; }
    memcpy(w->path, path, n + 1);
    memcpy(w->tmp, path, n);
    memcpy(w->tmp + n, ".tmp", 5);
    w->f = fopen(w->tmp, "wb");
    if (!w->f) { deepc_errf(err, DEEPC_ERR_IO, "%s: cannot create: %s", w->tmp, strerror(errno)); goto fail; }
    uint8_t zero[DEEPC_DQF_HEADER_SIZE] = {0};
    if (fwrite(zero, 1, sizeof zero, w->f) != sizeof zero) { deepc_errf(err, DEEPC_ERR_IO, "%s: write failed: %s", w->tmp, strerror(errno)); goto fail; }
    w->pos = DEEPC_DQF_HEADER_SIZE;
    return w;
fail:
    if (w->f) { fclose(w->f); remove(w->tmp); }
    free(w->path); free(w->tmp); free(w);
    return NULL;
}

static int put_key(deepc_dqf_writer *w, const char *key, uint32_t type) {
    if (w->failed) return w->failed;
    if (w->data_off) return wfail(w, DEEPC_ERR_INVALID_ARG, "metadata '%s' added after tensor data", key);
    size_t kl = strlen(key);
    if (kl == 0 || kl > 256) return wfail(w, DEEPC_ERR_INVALID_ARG, "bad metadata key '%s'", key);
    buf_u32(&w->meta, (uint32_t)kl);
    buf_put(&w->meta, key, kl);
    buf_u32(&w->meta, type);
    w->n_meta++;
    return 0;
}
static int meta_done(deepc_dqf_writer *w) {
    if (w->meta.oom) return wfail(w, DEEPC_ERR_NOMEM, "out of memory building metadata%s", "");
    return w->failed;
}

int deepc_dqf_put_u32(deepc_dqf_writer *w, const char *key, uint32_t v) {
    if (put_key(w, key, DEEPC_META_U32)) return w->failed;
    buf_u32(&w->meta, v);
    return meta_done(w);
}
int deepc_dqf_put_i32(deepc_dqf_writer *w, const char *key, int32_t v) {
    if (put_key(w, key, DEEPC_META_I32)) return w->failed;
    buf_put(&w->meta, &v, 4);
    return meta_done(w);
}
int deepc_dqf_put_u64(deepc_dqf_writer *w, const char *key, uint64_t v) {
    if (put_key(w, key, DEEPC_META_U64)) return w->failed;
    buf_u64(&w->meta, v);
    return meta_done(w);
}
int deepc_dqf_put_f32(deepc_dqf_writer *w, const char *key, float v) {
    if (put_key(w, key, DEEPC_META_F32)) return w->failed;
    buf_put(&w->meta, &v, 4);
    return meta_done(w);
}
int deepc_dqf_put_bool(deepc_dqf_writer *w, const char *key, bool v) {
    if (put_key(w, key, DEEPC_META_BOOL)) return w->failed;
    uint8_t b = v ? 1 : 0;
    buf_put(&w->meta, &b, 1);
    return meta_done(w);
}
int deepc_dqf_put_str(deepc_dqf_writer *w, const char *key, const char *s, size_t len) {
    if (put_key(w, key, DEEPC_META_STRING)) return w->failed;
    buf_u64(&w->meta, len);
    buf_put(&w->meta, s, len);
    return meta_done(w);
}
int deepc_dqf_put_array(deepc_dqf_writer *w, const char *key, deepc_meta_type elem,
                        const void *data, uint64_t count) {
    size_t es = meta_scalar_size(elem);
    if (!es || elem == DEEPC_META_BOOL || elem == DEEPC_META_F64) return wfail(w, DEEPC_ERR_INVALID_ARG, "metadata '%s': bad array element type", key);
    if (put_key(w, key, DEEPC_META_ARRAY)) return w->failed;
    buf_u32(&w->meta, elem);
    buf_u64(&w->meta, count);
    /* the meta section starts at an 8-aligned file offset */
    static const uint8_t zero[8] = {0};
    buf_put(&w->meta, zero, (8 - (DEEPC_DQF_HEADER_SIZE + w->meta.n) % 8) % 8);
    buf_put(&w->meta, data, (size_t)(count * es));
    return meta_done(w);
}

static int wpad(deepc_dqf_writer *w, uint64_t align) {
    static const uint8_t zero[DEEPC_DQF_PAGE] = {0};
    uint64_t pad = (align - w->pos % align) % align;
    if (pad && fwrite(zero, 1, (size_t)pad, w->f) != pad) return wfail(w, DEEPC_ERR_IO, "write failed: %s", strerror(errno));
    w->pos += pad;
    return 0;
}

/* Writes the metadata section and pads to the page-aligned data section. */
static int write_meta(deepc_dqf_writer *w) {
    if (w->meta.n && fwrite(w->meta.p, 1, w->meta.n, w->f) != w->meta.n) return wfail(w, DEEPC_ERR_IO, "write failed: %s", strerror(errno));
    w->pos += w->meta.n;
    if (wpad(w, DEEPC_DQF_PAGE)) return w->failed;
    w->data_off = w->pos;
    return 0;
}

int deepc_dqf_tensor_begin(deepc_dqf_writer *w, const char *name, deepc_type type, int ndim,
                           const uint64_t *dims, uint32_t flags, uint64_t align) {
    if (w->failed) return w->failed;
    if (w->in_tensor) return wfail(w, DEEPC_ERR_INVALID_ARG, "tensor '%s' begun inside another", name);
    const deepc_type_traits *tt = deepc_type_info(type);
    if (!tt || ndim < 1 || ndim > DEEPC_DQF_MAX_DIMS) return wfail(w, DEEPC_ERR_INVALID_ARG, "tensor '%s': bad type or rank", name);
    if (!w->data_off && write_meta(w)) return w->failed;
    if (align < DEEPC_DQF_ALIGN) align = DEEPC_DQF_ALIGN;
    if (wpad(w, align)) return w->failed;
    uint64_t ne = 1;
    for (int i = 0; i < ndim; i++) ne *= dims[i];
    if (dims[ndim - 1] % tt->block_elems) return wfail(w, DEEPC_ERR_INVALID_ARG, "tensor '%s': row length not a multiple of the block size", name);
    size_t nl = strlen(name);
    buf_u32(&w->dir, (uint32_t)nl);
    buf_put(&w->dir, name, nl);
    buf_u32(&w->dir, (uint32_t)type);
    buf_u32(&w->dir, (uint32_t)ndim);
    for (int i = 0; i < ndim; i++) buf_u64(&w->dir, dims[i]);
    w->t_want = ne / tt->block_elems * tt->block_bytes;
    buf_u64(&w->dir, w->pos);
    buf_u64(&w->dir, w->t_want);
    buf_u32(&w->dir, flags | DEEPC_TENSOR_HAS_CHECKSUM);
    w->dir_ck_at = w->dir.n;
    buf_u64(&w->dir, 0);
    if (w->dir.oom) return wfail(w, DEEPC_ERR_NOMEM, "out of memory%s", "");
    for (int i = 0; i < 4; i++) w->t_ck[i] = (CK_P1 * (uint64_t)(i + 1)) ^ w->t_want;
    w->t_tail_n = 0;
    w->t_got = 0;
    w->in_tensor = true;
    w->n_tensors++;
    return 0;
}

/* Streams bytes into the running checksum; same result as deepc_dqf_checksum
 * over the concatenation. */
static void ck_feed(deepc_dqf_writer *w, const uint8_t *p, size_t n) {
    if (w->t_tail_n) {
        size_t k = 32 - w->t_tail_n;
        if (k > n) k = n;
        memcpy(w->t_tail + w->t_tail_n, p, k);
        w->t_tail_n += k; p += k; n -= k;
        if (w->t_tail_n < 32) return;
        for (int l = 0; l < 4; l++) w->t_ck[l] = rotl64(w->t_ck[l] ^ rd64(w->t_tail + 8 * l), 29) * CK_P2;
        w->t_tail_n = 0;
    }
    for (; n >= 32; p += 32, n -= 32)
        for (int l = 0; l < 4; l++) w->t_ck[l] = rotl64(w->t_ck[l] ^ rd64(p + 8 * l), 29) * CK_P2;
    memcpy(w->t_tail, p, n);
    w->t_tail_n = n;
}

int deepc_dqf_tensor_write(deepc_dqf_writer *w, const void *data, size_t n) {
    if (w->failed) return w->failed;
    if (!w->in_tensor || w->t_got + n > w->t_want) return wfail(w, DEEPC_ERR_INVALID_ARG, "tensor data exceeds its declared size%s", "");
    if (n && fwrite(data, 1, n, w->f) != n) return wfail(w, DEEPC_ERR_IO, "write failed: %s", strerror(errno));
    ck_feed(w, data, n);
    w->t_got += n;
    w->pos += n;
    return 0;
}

int deepc_dqf_tensor_end(deepc_dqf_writer *w) {
    if (w->failed) return w->failed;
    if (!w->in_tensor || w->t_got != w->t_want) return wfail(w, DEEPC_ERR_INVALID_ARG, "tensor data shorter than its declared size%s", "");
    uint64_t *h = w->t_ck;
    for (size_t i = 0; i < w->t_tail_n; i++) h[0] = (h[0] ^ w->t_tail[i]) * CK_P1;
    uint64_t r = h[0] ^ rotl64(h[1], 17) ^ rotl64(h[2], 31) ^ rotl64(h[3], 47);
    r ^= r >> 33; r *= CK_P2; r ^= r >> 29;
    memcpy(w->dir.p + w->dir_ck_at, &r, 8);
    w->in_tensor = false;
    return 0;
}

const char *deepc_dqf_writer_error(const deepc_dqf_writer *w) { return w->err.msg; }

void deepc_dqf_writer_abort(deepc_dqf_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    remove(w->tmp);
    free(w->meta.p); free(w->dir.p);
    free(w->path); free(w->tmp);
    free(w);
}

int deepc_dqf_writer_finish(deepc_dqf_writer *w, deepc_err *err) {
    int st = w->failed;
    if (!st && w->in_tensor) st = wfail(w, DEEPC_ERR_INVALID_ARG, "finish inside a tensor%s", "");
    if (!st && !w->data_off) st = write_meta(w);   /* a file with no tensors */
    uint64_t data_end = w->pos, dir_off = 0;
    if (!st && !wpad(w, 8)) {
        dir_off = w->pos;
        if (w->dir.n && fwrite(w->dir.p, 1, w->dir.n, w->f) != w->dir.n) st = wfail(w, DEEPC_ERR_IO, "write failed: %s", strerror(errno));
        w->pos += w->dir.n;
    }
    st = st ? st : w->failed;
    if (!st) {
        uint8_t h[DEEPC_DQF_HEADER_SIZE] = {0};
        uint32_t v32;
        uint64_t v[11] = { w->pos, DEEPC_DQF_HEADER_SIZE, w->meta.n, w->n_meta, dir_off, w->dir.n, w->n_tensors,
                           w->data_off, data_end - w->data_off,
                           deepc_dqf_checksum(w->meta.p, w->meta.n), deepc_dqf_checksum(w->dir.p, w->dir.n) };
        memcpy(h, DEEPC_DQF_MAGIC, 8);
        v32 = DEEPC_DQF_VERSION_MAJOR; memcpy(h + 8, &v32, 4);
        v32 = DEEPC_DQF_VERSION_MINOR; memcpy(h + 12, &v32, 4);
        memcpy(h + 16, v, sizeof v);
        if (fseek(w->f, 0, SEEK_SET) != 0 || fwrite(h, 1, sizeof h, w->f) != sizeof h || fflush(w->f) != 0 || fsync(fileno(w->f)) != 0)
            st = wfail(w, DEEPC_ERR_IO, "writing the header failed: %s", strerror(errno));
    }
    if (!st) {
        int rc = fclose(w->f);
        w->f = NULL;
        if (rc != 0) st = wfail(w, DEEPC_ERR_IO, "close failed: %s", strerror(errno));
    }
    if (!st) {
        deepc_dqf *chk = deepc_dqf_open(w->tmp, &w->err);
        if (!chk) st = w->failed = DEEPC_ERR_FORMAT;
        deepc_dqf_close(chk);
    }
    if (!st && rename(w->tmp, w->path) != 0) st = wfail(w, DEEPC_ERR_IO, "rename failed: %s", strerror(errno));
    if (st) {
        deepc_errf(err, st, "%s: %s", w->tmp, w->err.msg);
        deepc_dqf_writer_abort(w);
        return st;
    }
    free(w->meta.p); free(w->dir.p);
    free(w->path); free(w->tmp);
    free(w);
    return DEEPC_OK;
}
