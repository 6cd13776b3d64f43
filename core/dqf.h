/* dqf.h - the .dqf model file: a validating reader that maps the file and a
 * streaming writer used by the converter. Layout is documented in FORMAT.md. */
#ifndef DEEPC_DQF_H
#define DEEPC_DQF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "quant.h"
#include "util.h"

#define DEEPC_DQF_MAGIC "DEEPCDQF"
#define DEEPC_DQF_VERSION_MAJOR 1
#define DEEPC_DQF_VERSION_MINOR 0
#define DEEPC_DQF_HEADER_SIZE 128
#define DEEPC_DQF_ALIGN 64          /* minimum tensor data alignment */
#define DEEPC_DQF_PAGE 4096         /* data section and expert records */
#define DEEPC_DQF_MAX_DIMS 4

/* Metadata value types. Stored in files: never renumber. */
typedef enum {
    DEEPC_META_U8 = 0,
    DEEPC_META_U32 = 1,
    DEEPC_META_I32 = 2,
    DEEPC_META_U64 = 3,
    DEEPC_META_F32 = 4,
    DEEPC_META_F64 = 5,
    DEEPC_META_BOOL = 6,
    DEEPC_META_STRING = 7,
    DEEPC_META_ARRAY = 8,
    DEEPC_META_COUNT
} deepc_meta_type;

/* Tensor flags. */
#define DEEPC_TENSOR_HAS_CHECKSUM (1u << 0)
#define DEEPC_TENSOR_OPTIONAL     (1u << 1)  /* e.g. MTP layers: skipped by the forward pass */

typedef struct deepc_dqf_tensor {
    const char *name;
    deepc_type type;
    int ndim;
    uint64_t dims[DEEPC_DQF_MAX_DIMS];   /* outermost first; dims[ndim-1] is the row length */
    uint64_t n_elems;
    uint64_t offset;                     /* absolute file offset */
    uint64_t size;                       /* bytes */
    uint64_t checksum;
    uint32_t flags;
    const void *data;                    /* into the mapping */
} deepc_dqf_tensor;

typedef struct deepc_dqf deepc_dqf;

/* Opens, maps and validates path: magic, version, every section bound, every
 * tensor's type, shape, size, alignment and bounds, metadata encoding, unique
 * names. Checksums are not checked here (see deepc_dqf_verify). */
deepc_dqf *deepc_dqf_open(const char *path, deepc_err *err);
void deepc_dqf_close(deepc_dqf *d);                      /* NULL is a no-op */

uint64_t deepc_dqf_file_size(const deepc_dqf *d);
/* The read-only descriptor behind the mapping (owned by d: do not close);
 * the expert store reads expert records through it. */
int deepc_dqf_fd(const deepc_dqf *d);
/* Start of the mapping: a tensor's data is base + offset. */
const uint8_t *deepc_dqf_base(const deepc_dqf *d);
/* Reads n bytes at file offset off into buf with pread (not through the
 * mapping), in large pieces; fails with DEEPC_ERR_IO, or DEEPC_ERR_FORMAT when
 * the file ends early (it shrank after it was validated). */
int deepc_dqf_read(const deepc_dqf *d, uint64_t off, void *buf, uint64_t n, deepc_err *err);
/* Leaving the page cache as it was found: a snapshot of which pages of a
 * file range the page cache holds (mincore of the mapping), taken before
 * reading the range; afterwards drop_new tells the OS that the pages our reads
 * brought in are not needed (POSIX_FADV_DONTNEED), and keeps those that were
 * cached before (someone else's). Where the OS has no such hint both are
 * no-ops; where it hides residency, pages count as cached and stay. */
typedef struct deepc_dqf_cache_snap {
    uint64_t off, end;      /* page-aligned span */
    size_t page;
    unsigned char *vec;     /* one byte per page, bit 0 = was cached; NULL = none known */
} deepc_dqf_cache_snap;
void deepc_dqf_cache_snap_take(const deepc_dqf *d, uint64_t off, uint64_t n, deepc_dqf_cache_snap *s);
void deepc_dqf_cache_drop_new(const deepc_dqf *d, const deepc_dqf_cache_snap *s, uint64_t off, uint64_t n);
void deepc_dqf_cache_snap_free(deepc_dqf_cache_snap *s);
size_t deepc_dqf_n_tensors(const deepc_dqf *d);
const deepc_dqf_tensor *deepc_dqf_tensor_at(const deepc_dqf *d, size_t i);
const deepc_dqf_tensor *deepc_dqf_find(const deepc_dqf *d, const char *name);
/* Recomputes every stored checksum; reports the first mismatch by name. */
int deepc_dqf_verify(const deepc_dqf *d, deepc_err *err);

/* Metadata lookups: false when the key is absent or of another type. */
bool deepc_dqf_get_u32(const deepc_dqf *d, const char *key, uint32_t *v);
bool deepc_dqf_get_i32(const deepc_dqf *d, const char *key, int32_t *v);
bool deepc_dqf_get_u64(const deepc_dqf *d, const char *key, uint64_t *v);
bool deepc_dqf_get_f32(const deepc_dqf *d, const char *key, float *v);
bool deepc_dqf_get_bool(const deepc_dqf *d, const char *key, bool *v);
/* Pointer into the mapping; not NUL-terminated, use len. */
bool deepc_dqf_get_str(const deepc_dqf *d, const char *key, const char **s, size_t *len);
/* Arrays of fixed-size elements (U8, U32, I32, U64, F32); the payload is
 * 8-byte aligned in the file, so the pointer can be used directly. */
bool deepc_dqf_get_array(const deepc_dqf *d, const char *key, deepc_meta_type elem,
                         const void **data, uint64_t *count);
size_t deepc_dqf_n_meta(const deepc_dqf *d);
/* i-th key and its type (for `deepc info`). */
const char *deepc_dqf_meta_key(const deepc_dqf *d, size_t i, deepc_meta_type *type);

/* The checksum stored per tensor: a 4-lane multiplicative 64-bit hash
 * (FORMAT.md gives the exact definition). */
uint64_t deepc_dqf_checksum(const void *data, uint64_t size);

/* ---- writer ---------------------------------------------------------- */

typedef struct deepc_dqf_writer deepc_dqf_writer;

/* Creates path.tmp; nothing appears at path until finish succeeds. */
deepc_dqf_writer *deepc_dqf_writer_create(const char *path, deepc_err *err);
/* Metadata: all of it must be added before the first tensor. */
int deepc_dqf_put_u32(deepc_dqf_writer *w, const char *key, uint32_t v);
int deepc_dqf_put_i32(deepc_dqf_writer *w, const char *key, int32_t v);
int deepc_dqf_put_u64(deepc_dqf_writer *w, const char *key, uint64_t v);
int deepc_dqf_put_f32(deepc_dqf_writer *w, const char *key, float v);
int deepc_dqf_put_bool(deepc_dqf_writer *w, const char *key, bool v);
int deepc_dqf_put_str(deepc_dqf_writer *w, const char *key, const char *s, size_t len);
int deepc_dqf_put_array(deepc_dqf_writer *w, const char *key, deepc_meta_type elem,
                        const void *data, uint64_t count);
/* Streams one tensor: begin, any number of write calls totalling exactly the
 * tensor's byte size, end. align is DEEPC_DQF_ALIGN or DEEPC_DQF_PAGE. */
int deepc_dqf_tensor_begin(deepc_dqf_writer *w, const char *name, deepc_type type, int ndim,
                           const uint64_t *dims, uint32_t flags, uint64_t align);
int deepc_dqf_tensor_write(deepc_dqf_writer *w, const void *data, size_t n);
int deepc_dqf_tensor_end(deepc_dqf_writer *w);
/* Writes the directory and header, syncs, re-opens and validates the
 * temporary file, then renames it to path. Frees w in all cases. */
int deepc_dqf_writer_finish(deepc_dqf_writer *w, deepc_err *err);
/* Removes the temporary file and frees w. NULL is a no-op. */
void deepc_dqf_writer_abort(deepc_dqf_writer *w);
/* Message of the writer's first error. */
const char *deepc_dqf_writer_error(const deepc_dqf_writer *w);

#endif
