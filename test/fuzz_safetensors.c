/* fuzz_safetensors.c - libFuzzer entry point for the safetensors reader,
 * built only with -DDEEPC_FUZZ (not matched by the Makefile's test wildcard):
 *
 *   clang -DDEEPC_FUZZ -g -O1 -fsanitize=fuzzer,address,undefined -Icore \
 *       -D_DEFAULT_SOURCE core/util.c core/json.c core/safetensors.c \
 *       test/fuzz_safetensors.c -lm -o fuzz_safetensors
 *   ./fuzz_safetensors -max_total_time=60 CORPUS_DIR
 *
 * The reader works on files, so each input is written to a private temporary
 * directory. The first byte picks the mode: even = the rest is one
 * .safetensors file, opened and every tensor read back; odd = the rest is a
 * model.safetensors.index.json next to two valid shards (a.safetensors with
 * tensors x, y; b.safetensors with z), opened as a directory. */
#ifdef DEEPC_FUZZ
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "safetensors.h"

static char fuzz_dir[64];
static char fuzz_file[128], fuzz_index[128];

static void fuzz_write(const char *path, const void *data, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) abort();
    if (n && write(fd, data, n) != (ssize_t)n) abort();
    close(fd);
}

static void fuzz_shard(const char *name, const char *header, const void *data, size_t n) {
    char path[160];
    unsigned char buf[512];
    size_t h = strlen(header);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, header, h);
    memcpy(buf + 8 + h, data, n);
    snprintf(path, sizeof path, "%s/%s", fuzz_dir, name);
    fuzz_write(path, buf, 8 + h + n);
}

static void fuzz_cleanup(void) {
    const char *names[] = {"a.safetensors", "b.safetensors", "input.bin", "model.safetensors.index.json"};
    char path[160];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", fuzz_dir, names[i]);
        unlink(path);
    }
    rmdir(fuzz_dir);
}

static void fuzz_init(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/deepc_fuzz_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fuzz_dir)) abort();
    atexit(fuzz_cleanup);
    snprintf(fuzz_file, sizeof fuzz_file, "%s/input.bin", fuzz_dir);
    snprintf(fuzz_index, sizeof fuzz_index, "%s/model.safetensors.index.json", fuzz_dir);
    const float v[4] = {1, 2, 3, 4};
    fuzz_shard("a.safetensors",
               "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"y\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[8,16]}}", v, 16);
    fuzz_shard("b.safetensors", "{\"z\":{\"dtype\":\"F8_E4M3\",\"shape\":[3],\"data_offsets\":[0,3]}}", v, 4);
}

static void fuzz_read_all(deepc_st *st) {
    for (size_t i = 0; i < deepc_st_count(st); i++) {
        const deepc_st_tensor *t = deepc_st_at(st, i);
        if (deepc_st_find(st, t->name) != t) abort();
        if (t->nbytes > ((uint64_t)1 << 24)) abort();   /* bounded by the input size */
        unsigned char *raw = malloc(t->nbytes ? (size_t)t->nbytes : 1);
        if (!raw) abort();
        if (deepc_st_read_raw(st, t, 0, raw, (size_t)t->nbytes, NULL) != 0) abort();
        free(raw);
        if (deepc_st_dtype_size(t->dtype) && t->dtype != DEEPC_ST_I32 && t->dtype != DEEPC_ST_I64) {
            float *f = malloc(t->n_elems ? (size_t)t->n_elems * sizeof *f : 1);
            if (!f) abort();
            if (deepc_st_read_f32(st, t, 0, f, (size_t)t->n_elems, NULL) != 0) abort();
            free(f);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!fuzz_dir[0]) fuzz_init();
    if (size == 0) return 0;
    deepc_err err;
    deepc_st *st;
    if (data[0] & 1) {
        fuzz_write(fuzz_index, data + 1, size - 1);
        st = deepc_st_open_dir(fuzz_dir, &err);
        unlink(fuzz_index);
    } else {
        fuzz_write(fuzz_file, data + 1, size - 1);
        st = deepc_st_open_file(fuzz_file, &err);
    }
    if (st) fuzz_read_all(st);
    else if (!err.msg[0]) abort();   /* every failure explains itself */
    deepc_st_close(st);
    return 0;
}
#else
typedef int deepc_fuzz_safetensors_disabled; /* ISO C forbids an empty file */
#endif
