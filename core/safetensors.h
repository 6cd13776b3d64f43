/* safetensors.h - reader for Hugging Face safetensors checkpoints: one file or
 * a sharded set described by model.safetensors.index.json. Headers are parsed
 * as hostile input; tensor data is read on demand with pread, one tensor or
 * one range at a time, so memory stays bounded. */
#ifndef DEEPC_SAFETENSORS_H
#define DEEPC_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "util.h"

typedef enum {
    DEEPC_ST_F32,
    DEEPC_ST_F16,
    DEEPC_ST_BF16,
    DEEPC_ST_F8_E4M3,   /* "F8_E4M3": DeepSeek-V3/R1 release weights */
    DEEPC_ST_I32,
    DEEPC_ST_I64,
    DEEPC_ST_OTHER      /* present in the header but not decodable by us */
} deepc_st_dtype;

#define DEEPC_ST_MAX_DIMS 8

typedef struct deepc_st_tensor {
    const char *name;
    deepc_st_dtype dtype;
    const char *dtype_name;          /* as written in the header, e.g. "BF16" */
    int ndim;
    uint64_t shape[DEEPC_ST_MAX_DIMS];
    uint64_t n_elems;
    uint64_t file_offset;            /* absolute offset of the data in its shard */
    uint64_t nbytes;
    int shard;                       /* index into the shard list */
} deepc_st_tensor;

typedef struct deepc_st deepc_st;

/* Opens a checkpoint directory: uses model.safetensors.index.json if present,
 * else model.safetensors, else the single *.safetensors file in dir. */
deepc_st *deepc_st_open_dir(const char *dir, deepc_err *err);
/* Opens one .safetensors file. */
deepc_st *deepc_st_open_file(const char *path, deepc_err *err);
void deepc_st_close(deepc_st *st);                     /* NULL is a no-op */

size_t deepc_st_count(const deepc_st *st);
const deepc_st_tensor *deepc_st_at(const deepc_st *st, size_t i);
const deepc_st_tensor *deepc_st_find(const deepc_st *st, const char *name); /* O(1) avg */

/* Bytes per element of a dtype (0 for OTHER). */
size_t deepc_st_dtype_size(deepc_st_dtype dt);

/* Reads raw bytes [byte_off, byte_off+nbytes) of tensor t into dst. */
int deepc_st_read_raw(deepc_st *st, const deepc_st_tensor *t, uint64_t byte_off,
                      void *dst, size_t nbytes, deepc_err *err);
/* Reads elements [elem_off, elem_off+n) of an F32/F16/BF16/F8_E4M3 tensor and
 * converts them to float (F8 without its scale). Uses at most a fixed-size
 * internal bounce buffer, so any n works with bounded memory. */
int deepc_st_read_f32(deepc_st *st, const deepc_st_tensor *t, uint64_t elem_off,
                      float *dst, size_t n, deepc_err *err);

#endif
