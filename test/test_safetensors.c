/* test_safetensors.c - the safetensors reader as a specification: single
 * files and sharded sets written at run time into a fresh temporary
 * directory, every decodable dtype read back exactly, and corrupt or hostile
 * checkpoints that must each fail with a message naming the file, the tensor
 * and the problem. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deepc.h"
#include "safetensors.h"

/* ---- fixture: one temporary directory per test ------------------------- */

typedef struct {
    char dir[256];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/deepc_st_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    DIR *d = opendir(f->dir);
    if (d) {
        struct dirent *e;
        char path[512];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            snprintf(path, sizeof path, "%s/%s", f->dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ---- writers ----------------------------------------------------------- */

static char *path_in(const fixture *f, const char *name) {
    static char buf[4][512];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, sizeof buf[0], "%s/%s", f->dir, name);
    return p;
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    if (n) assert_int_equal(fwrite(data, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

/* Writes a safetensors file: 8-byte little-endian header length, the header
 * text, then the data section. Returns the header length. */
static uint64_t write_st(const char *path, const char *header, const void *data, size_t n) {
    size_t hlen = strlen(header);
    unsigned char *buf = malloc(8 + hlen + n + 1);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, header, hlen);
    if (n) memcpy(buf + 8 + hlen, data, n);
    write_bytes(path, buf, 8 + hlen + n);
    free(buf);
    return hlen;
}

/* Opening must fail with a message that mentions every one of want[]. */
static void open_fails(const char *path, bool is_dir, const char *const *want) {
    deepc_err err = {{0}};
    deepc_st *st = is_dir ? deepc_st_open_dir(path, &err) : deepc_st_open_file(path, &err);
    if (st) {
        deepc_st_close(st);
        fail_msg("opened a corrupt checkpoint %s", path);
    }
    for (int i = 0; want[i]; i++)
        if (!strstr(err.msg, want[i])) fail_msg("message \"%s\" does not mention \"%s\"", err.msg, want[i]);
}

#define OPEN_FAILS(path, is_dir, ...) open_fails(path, is_dir, (const char *const[]){__VA_ARGS__, NULL})

static deepc_st *open_ok(const char *path) {
    deepc_err err = {{0}};
    deepc_st *st = deepc_st_open_file(path, &err);
    if (!st) fail_msg("open %s failed: %s", path, err.msg);
    return st;
}

static deepc_st *open_dir_ok(const char *dir) {
    deepc_err err = {{0}};
    deepc_st *st = deepc_st_open_dir(dir, &err);
    if (!st) fail_msg("open dir %s failed: %s", dir, err.msg);
    return st;
}

static uint32_t fbits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

/* ---- single files, each dtype ------------------------------------------ */

static void test_f32_tensor_reads_back_with_its_metadata(void **state) {
    fixture *f = *state;
    const float vals[6] = {1.0f, -2.5f, 3.25f, 0.0f, 1e-30f, 65536.0f};
    const char *path = path_in(f, "model.safetensors");
    uint64_t hlen = write_st(path,
                             "{\"__metadata__\": {\"format\": \"pt\"},"
                             " \"w\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 24]}}",
                             vals, sizeof vals);
    deepc_st *st = open_ok(path);
    assert_int_equal(deepc_st_count(st), 1);
    const deepc_st_tensor *t = deepc_st_find(st, "w");
    assert_non_null(t);
    assert_ptr_equal(t, deepc_st_at(st, 0));
    assert_null(deepc_st_at(st, 1));
    assert_string_equal(t->name, "w");
    assert_int_equal(t->dtype, DEEPC_ST_F32);
    assert_string_equal(t->dtype_name, "F32");
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[1], 3);
    assert_int_equal(t->n_elems, 6);
    assert_int_equal(t->nbytes, 24);
    assert_int_equal(t->file_offset, 8 + hlen);
    assert_int_equal(t->shard, 0);
    float out[6];
    assert_int_equal(deepc_st_read_f32(st, t, 0, out, 6, NULL), DEEPC_OK);
    assert_memory_equal(out, vals, sizeof vals);
    deepc_st_close(st);
}

static void test_read_f32_reads_a_subrange(void **state) {
    fixture *f = *state;
    const float vals[6] = {1, 2, 3, 4, 5, 6};
    const char *path = path_in(f, "a.safetensors");
    write_st(path, "{\"w\": {\"dtype\": \"F32\", \"shape\": [6], \"data_offsets\": [0, 24]}}", vals, sizeof vals);
    deepc_st *st = open_ok(path);
    float out[3] = {0};
    assert_int_equal(deepc_st_read_f32(st, deepc_st_find(st, "w"), 2, out, 3, NULL), DEEPC_OK);
    assert_true(out[0] == 3 && out[1] == 4 && out[2] == 5);
    deepc_st_close(st);
}

static void test_f16_decodes_exactly_including_subnormals_and_specials(void **state) {
    fixture *f = *state;
    const uint16_t h[8] = {0x3C00, 0xC000, 0x0001, 0x7BFF, 0x7C00, 0x8000, 0x3555, 0x7E00};
    const char *path = path_in(f, "a.safetensors");
    write_st(path, "{\"h\": {\"dtype\": \"F16\", \"shape\": [8], \"data_offsets\": [0, 16]}}", h, sizeof h);
    deepc_st *st = open_ok(path);
    float out[8];
    assert_int_equal(deepc_st_read_f32(st, deepc_st_find(st, "h"), 0, out, 8, NULL), DEEPC_OK);
    assert_true(out[0] == 1.0f);
    assert_true(out[1] == -2.0f);
    assert_true(out[2] == 0x1p-24f);             /* smallest subnormal */
    assert_true(out[3] == 65504.0f);             /* largest finite */
    assert_true(isinf(out[4]) && out[4] > 0);
    assert_true(fbits(out[5]) == 0x80000000u);   /* -0 keeps its sign */
    assert_true(out[6] == 0.333251953125f);
    assert_true(isnan(out[7]));
    deepc_st_close(st);
}

static void test_bf16_decodes_exactly(void **state) {
    fixture *f = *state;
    const uint16_t b[5] = {0x3F80, 0xC040, 0x7F80, 0x0001, 0x4049};
    const char *path = path_in(f, "a.safetensors");
    write_st(path, "{\"b\": {\"dtype\": \"BF16\", \"shape\": [5], \"data_offsets\": [0, 10]}}", b, sizeof b);
    deepc_st *st = open_ok(path);
    float out[5];
    assert_int_equal(deepc_st_read_f32(st, deepc_st_find(st, "b"), 0, out, 5, NULL), DEEPC_OK);
    assert_true(out[0] == 1.0f);
    assert_true(out[1] == -3.0f);
    assert_true(isinf(out[2]));
    assert_true(fbits(out[3]) == 0x00010000u);   /* bf16 is the top half of f32 */
    assert_true(out[4] == 3.140625f);
    deepc_st_close(st);
}

static void test_f8_e4m3_decodes_exactly_without_scale(void **state) {
    fixture *f = *state;
    /* 1.0, max 448, NaN both signs, smallest subnormal 2^-9, smallest normal
     * 2^-6, -1.0, +0, -0, largest subnormal 7 * 2^-9. */
    const uint8_t q[10] = {0x38, 0x7E, 0x7F, 0xFF, 0x01, 0x08, 0xB8, 0x00, 0x80, 0x07};
    const char *path = path_in(f, "a.safetensors");
    write_st(path, "{\"q\": {\"dtype\": \"F8_E4M3\", \"shape\": [2, 5], \"data_offsets\": [0, 10]}}", q, sizeof q);
    deepc_st *st = open_ok(path);
    const deepc_st_tensor *t = deepc_st_find(st, "q");
    assert_int_equal(t->dtype, DEEPC_ST_F8_E4M3);
    float out[10];
    assert_int_equal(deepc_st_read_f32(st, t, 0, out, 10, NULL), DEEPC_OK);
    assert_true(out[0] == 1.0f);
    assert_true(out[1] == 448.0f);
    assert_true(isnan(out[2]) && isnan(out[3]));
    assert_true(out[4] == 0x1p-9f);
    assert_true(out[5] == 0x1p-6f);
    assert_true(out[6] == -1.0f);
    assert_true(fbits(out[7]) == 0);
    assert_true(fbits(out[8]) == 0x80000000u);
    assert_true(out[9] == 7 * 0x1p-9f);
    deepc_st_close(st);
}

static void test_every_e4m3_code_matches_the_formula(void **state) {
    fixture *f = *state;
    uint8_t q[256];
    for (int i = 0; i < 256; i++) q[i] = (uint8_t)i;
    const char *path = path_in(f, "a.safetensors");
    write_st(path, "{\"q\": {\"dtype\": \"F8_E4M3\", \"shape\": [256], \"data_offsets\": [0, 256]}}", q, sizeof q);
    deepc_st *st = open_ok(path);
    float out[256];
    assert_int_equal(deepc_st_read_f32(st, deepc_st_find(st, "q"), 0, out, 256, NULL), DEEPC_OK);
    for (int i = 0; i < 256; i++) {
        int s = i >> 7, e = (i >> 3) & 15, m = i & 7;
        if (e == 15 && m == 7) {
            assert_true(isnan(out[i]));
            continue;
        }
        double want = e ? ldexp(1.0 + m / 8.0, e - 7) : ldexp(m / 8.0, -6);
        assert_true(out[i] == (float)(s ? -want : want));
    }
    deepc_st_close(st);
}

/* Exercises the in-place decode over a tensor far larger than any small
 * buffer, with a pattern that catches an overwritten raw element. */
static void test_large_bf16_tensor_decodes_in_place(void **state) {
    fixture *f = *state;
    const size_t n = (size_t)1 << 20;
    uint16_t *b = malloc(n * 2);
    float *out = malloc(n * 4);
    assert_non_null(b);
    assert_non_null(out);
    for (size_t i = 0; i < n; i++) b[i] = (uint16_t)(0x3F80 + (i % 128));   /* 1 + k/128 */
    char header[128];
    snprintf(header, sizeof header, "{\"big\": {\"dtype\": \"BF16\", \"shape\": [%zu], \"data_offsets\": [0, %zu]}}",
             n, n * 2);
    const char *path = path_in(f, "a.safetensors");
    write_st(path, header, b, n * 2);
    deepc_st *st = open_ok(path);
    assert_int_equal(deepc_st_read_f32(st, deepc_st_find(st, "big"), 0, out, n, NULL), DEEPC_OK);
    for (size_t i = 0; i < n; i++)
        if (out[i] != 1.0f + (float)(i % 128) / 128.0f) fail_msg("element %zu decoded to %g", i, out[i]);
    deepc_st_close(st);
    free(b);
    free(out);
}

static void test_integer_tensors_read_raw_but_not_as_floats(void **state) {
    fixture *f = *state;
    const int32_t i32[3] = {-1, 7, 1 << 30};
    const int64_t i64[2] = {INT64_MIN, 42};
    unsigned char data[28];
    memcpy(data, i32, 12);
    memcpy(data + 12, i64, 16);
    const char *path = path_in(f, "a.safetensors");
    write_st(path,
             "{\"i\": {\"dtype\": \"I32\", \"shape\": [3], \"data_offsets\": [0, 12]},"
             " \"l\": {\"dtype\": \"I64\", \"shape\": [2], \"data_offsets\": [12, 28]}}",
             data, sizeof data);
    deepc_st *st = open_ok(path);
    const deepc_st_tensor *ti = deepc_st_find(st, "i"), *tl = deepc_st_find(st, "l");
    assert_int_equal(ti->dtype, DEEPC_ST_I32);
    assert_int_equal(tl->dtype, DEEPC_ST_I64);
    int32_t got32[3];
    int64_t got64 = 0;
    assert_int_equal(deepc_st_read_raw(st, ti, 0, got32, 12, NULL), DEEPC_OK);
    assert_memory_equal(got32, i32, 12);
    assert_int_equal(deepc_st_read_raw(st, tl, 8, &got64, 8, NULL), DEEPC_OK);
    assert_true(got64 == 42);
    deepc_err err = {{0}};
    float out[2];
    assert_int_equal(deepc_st_read_f32(st, tl, 0, out, 2, &err), DEEPC_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "tensor 'l': dtype I64 cannot be read as floats"));
    deepc_st_close(st);
}

static void test_reads_outside_the_tensor_are_refused(void **state) {
    fixture *f = *state;
    const float vals[4] = {1, 2, 3, 4};
    const char *path = path_in(f, "a.safetensors");
    write_st(path,
             "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
             " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}",
             vals, sizeof vals);
    deepc_st *st = open_ok(path);
    const deepc_st_tensor *a = deepc_st_find(st, "a");
    float out[4];
    deepc_err err = {{0}};
    assert_int_equal(deepc_st_read_f32(st, a, 1, out, 2, &err), DEEPC_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "tensor 'a'"));
    assert_int_equal(deepc_st_read_raw(st, a, 4, out, 8, &err), DEEPC_ERR_INVALID_ARG);
    assert_int_equal(deepc_st_read_raw(st, a, UINT64_MAX, out, 2, &err), DEEPC_ERR_INVALID_ARG);
    assert_int_equal(deepc_st_read_f32(st, a, UINT64_MAX, out, 2, &err), DEEPC_ERR_INVALID_ARG);
    deepc_st_close(st);
}

static void test_other_dtypes_are_kept_and_size_checked(void **state) {
    fixture *f = *state;
    unsigned char data[16] = {0};
    const char *path = path_in(f, "a.safetensors");
    write_st(path,
             "{\"d\": {\"dtype\": \"F64\", \"shape\": [2], \"data_offsets\": [0, 16]},"
             " \"m\": {\"dtype\": \"BOOL\", \"shape\": [4, 4], \"data_offsets\": [0, 16]}}",
             data, sizeof data);
    deepc_st *st = open_ok(path);
    const deepc_st_tensor *d = deepc_st_find(st, "d");
    assert_int_equal(d->dtype, DEEPC_ST_OTHER);
    assert_string_equal(d->dtype_name, "F64");
    assert_int_equal(deepc_st_dtype_size(d->dtype), 0);
    deepc_st_close(st);
    write_st(path, "{\"d\": {\"dtype\": \"F64\", \"shape\": [2], \"data_offsets\": [0, 8]}}", data, sizeof data);
    OPEN_FAILS(path, false, "tensor 'd'", "2 elements of F64", "[0, 8]");
}

static void test_unknown_dtype_is_kept_as_other(void **state) {
    fixture *f = *state;
    unsigned char data[3] = {0};
    const char *path = path_in(f, "a.safetensors");
    write_st(path, "{\"x\": {\"dtype\": \"F4\", \"shape\": [6], \"data_offsets\": [0, 3]}}", data, sizeof data);
    deepc_st *st = open_ok(path);
    const deepc_st_tensor *x = deepc_st_find(st, "x");
    assert_int_equal(x->dtype, DEEPC_ST_OTHER);
    assert_string_equal(x->dtype_name, "F4");
    assert_int_equal(x->nbytes, 3);
    deepc_err err = {{0}};
    float out[6];
    assert_int_equal(deepc_st_read_f32(st, x, 0, out, 6, &err), DEEPC_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "dtype F4"));
    deepc_st_close(st);
}

static void test_overlapping_tensors_are_allowed(void **state) {
    fixture *f = *state;
    const float vals[3] = {1, 2, 3};
    const char *path = path_in(f, "a.safetensors");
    write_st(path,
             "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
             " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
             vals, sizeof vals);
    deepc_st *st = open_ok(path);
    float out[2];
    assert_int_equal(deepc_st_read_f32(st, deepc_st_find(st, "b"), 0, out, 2, NULL), DEEPC_OK);
    assert_true(out[0] == 2 && out[1] == 3);
    deepc_st_close(st);
}

static void test_scalars_and_empty_tensors_are_valid(void **state) {
    fixture *f = *state;
    const float one = 1.0f;
    const char *path = path_in(f, "a.safetensors");
    write_st(path,
             "{\"s\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [0, 4]},"
             " \"e\": {\"dtype\": \"F32\", \"shape\": [3, 0], \"data_offsets\": [4, 4]}}",
             &one, sizeof one);
    deepc_st *st = open_ok(path);
    const deepc_st_tensor *s = deepc_st_find(st, "s"), *e = deepc_st_find(st, "e");
    assert_int_equal(s->ndim, 0);
    assert_int_equal(s->n_elems, 1);
    assert_int_equal(e->n_elems, 0);
    assert_int_equal(e->nbytes, 0);
    float out = 0;
    assert_int_equal(deepc_st_read_f32(st, s, 0, &out, 1, NULL), DEEPC_OK);
    assert_true(out == 1.0f);
    assert_int_equal(deepc_st_read_f32(st, e, 0, NULL, 0, NULL), DEEPC_OK);
    deepc_st_close(st);
}

static void test_many_tensors_are_all_found_by_name(void **state) {
    fixture *f = *state;
    const int n = 5000;
    size_t cap = (size_t)n * 100, len = 0;
    char *h = malloc(cap);
    assert_non_null(h);
    len += (size_t)snprintf(h + len, cap - len, "{");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(h + len, cap - len,
                                "%s\"model.layers.%d.w\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [%d, %d]}",
                                i ? ", " : "", i, 2 * i, 2 * i + 2);
    snprintf(h + len, cap - len, "}");
    uint16_t *data = calloc((size_t)n, 2);
    assert_non_null(data);
    const char *path = path_in(f, "a.safetensors");
    write_st(path, h, data, (size_t)n * 2);
    deepc_st *st = open_ok(path);
    assert_int_equal(deepc_st_count(st), n);
    char name[64];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "model.layers.%d.w", i);
        const deepc_st_tensor *t = deepc_st_find(st, name);
        assert_non_null(t);
        assert_string_equal(t->name, name);
        assert_int_equal(t->file_offset - deepc_st_at(st, 0)->file_offset, 2 * i);
    }
    assert_null(deepc_st_find(st, "model.layers.5000.w"));
    deepc_st_close(st);
    free(h);
    free(data);
}

static void test_close_and_lookups_accept_null(void **state) {
    (void)state;
    deepc_st_close(NULL);
    assert_int_equal(deepc_st_count(NULL), 0);
    assert_null(deepc_st_at(NULL, 0));
    assert_null(deepc_st_find(NULL, "x"));
    assert_int_equal(deepc_st_dtype_size(DEEPC_ST_BF16), 2);
    assert_int_equal(deepc_st_dtype_size(DEEPC_ST_I64), 8);
}

/* ---- directories and shards -------------------------------------------- */

static void write_two_shards(const fixture *f) {
    const float a[2] = {1, 2}, b[3] = {3, 4, 5};
    write_st(path_in(f, "model-00001-of-00002.safetensors"),
             "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", a, sizeof a);
    write_st(path_in(f, "model-00002-of-00002.safetensors"),
             "{\"b\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 12]},"
             " \"c\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}}",
             b, sizeof b);
}

static void write_index(const fixture *f, const char *weight_map) {
    char text[1024];
    snprintf(text, sizeof text, "{\"metadata\": {\"total_size\": 20}, \"weight_map\": %s}", weight_map);
    write_bytes(path_in(f, "model.safetensors.index.json"), text, strlen(text));
}

static void test_sharded_checkpoint_opens_every_shard(void **state) {
    fixture *f = *state;
    write_two_shards(f);
    write_index(f, "{\"a\": \"model-00001-of-00002.safetensors\", \"b\": \"model-00002-of-00002.safetensors\","
                   " \"c\": \"model-00002-of-00002.safetensors\"}");
    deepc_st *st = open_dir_ok(f->dir);
    assert_int_equal(deepc_st_count(st), 3);
    const deepc_st_tensor *a = deepc_st_find(st, "a"), *b = deepc_st_find(st, "b"), *c = deepc_st_find(st, "c");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_int_equal(a->shard, 0);
    assert_int_equal(b->shard, 1);
    assert_int_equal(c->shard, 1);
    float out[3];
    assert_int_equal(deepc_st_read_f32(st, a, 0, out, 2, NULL), DEEPC_OK);
    assert_true(out[0] == 1 && out[1] == 2);
    assert_int_equal(deepc_st_read_f32(st, b, 0, out, 3, NULL), DEEPC_OK);
    assert_true(out[0] == 3 && out[2] == 5);
    assert_int_equal(deepc_st_read_f32(st, c, 0, out, 1, NULL), DEEPC_OK);
    assert_true(out[0] == 5);
    deepc_st_close(st);
}

static void test_dir_without_index_uses_model_safetensors(void **state) {
    fixture *f = *state;
    const float v = 9;
    write_st(path_in(f, "model.safetensors"), "{\"v\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
             &v, 4);
    write_st(path_in(f, "other.safetensors"), "{}", NULL, 0);   /* ignored: model.safetensors wins */
    deepc_st *st = open_dir_ok(f->dir);
    assert_non_null(deepc_st_find(st, "v"));
    deepc_st_close(st);
}

static void test_dir_with_one_safetensors_file_of_any_name_opens_it(void **state) {
    fixture *f = *state;
    const float v = 9;
    write_st(path_in(f, "weights.safetensors"), "{\"v\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
             &v, 4);
    deepc_st *st = open_dir_ok(f->dir);
    assert_non_null(deepc_st_find(st, "v"));
    deepc_st_close(st);
}

static void test_dir_with_several_files_and_no_index_is_rejected(void **state) {
    fixture *f = *state;
    write_two_shards(f);
    OPEN_FAILS(f->dir, true, "2 .safetensors files but no model.safetensors.index.json");
}

static void test_dir_without_checkpoint_is_rejected(void **state) {
    fixture *f = *state;
    OPEN_FAILS(f->dir, true, "no model.safetensors.index.json and no .safetensors file");
    OPEN_FAILS(path_in(f, "nope"), true, "cannot open directory");
}

static void test_missing_shard_is_reported_with_the_index(void **state) {
    fixture *f = *state;
    write_two_shards(f);
    write_index(f, "{\"a\": \"model-00001-of-00002.safetensors\", \"z\": \"model-00003-of-00002.safetensors\"}");
    OPEN_FAILS(f->dir, true, "model-00003-of-00002.safetensors: cannot open", "listed in",
               "model.safetensors.index.json");
}

static void test_tensor_missing_from_its_shard_is_reported(void **state) {
    fixture *f = *state;
    write_two_shards(f);
    write_index(f, "{\"a\": \"model-00001-of-00002.safetensors\", \"q\": \"model-00002-of-00002.safetensors\"}");
    OPEN_FAILS(f->dir, true, "tensor 'q' is listed for", "model-00002-of-00002.safetensors but not found there");
}

static void test_tensor_in_another_shard_than_listed_is_reported(void **state) {
    fixture *f = *state;
    write_two_shards(f);
    write_index(f, "{\"a\": \"model-00002-of-00002.safetensors\", \"b\": \"model-00001-of-00002.safetensors\"}");
    OPEN_FAILS(f->dir, true, "tensor 'a' is listed for", "it is in", "model-00001-of-00002.safetensors");
}

static void test_shard_names_reaching_outside_the_dir_are_rejected(void **state) {
    fixture *f = *state;
    write_two_shards(f);
    write_index(f, "{\"a\": \"../model-00001-of-00002.safetensors\"}");
    OPEN_FAILS(f->dir, true, "tensor 'a'", "shard name '../model-00001-of-00002.safetensors' is not a plain file name");
    write_index(f, "{\"a\": \"/etc/passwd\"}");
    OPEN_FAILS(f->dir, true, "not a plain file name");
    write_index(f, "{\"a\": \"..\"}");
    OPEN_FAILS(f->dir, true, "not a plain file name");
    write_index(f, "{\"a\": \"\"}");
    OPEN_FAILS(f->dir, true, "not a plain file name");
}

static void test_malformed_index_is_rejected(void **state) {
    fixture *f = *state;
    write_two_shards(f);
    write_bytes(path_in(f, "model.safetensors.index.json"), "{\"weight_map\": {", 16);
    OPEN_FAILS(f->dir, true, "model.safetensors.index.json: not valid JSON", "unexpected end of input");
    write_bytes(path_in(f, "model.safetensors.index.json"), "{\"metadata\": {}}", 16);
    OPEN_FAILS(f->dir, true, "missing object \"weight_map\"");
    write_index(f, "{\"a\": 7}");
    OPEN_FAILS(f->dir, true, "weight_map entry 'a' is not a string");
}

static void test_duplicate_tensor_across_shards_is_rejected(void **state) {
    fixture *f = *state;
    const float v[2] = {1, 2};
    write_st(path_in(f, "s1.safetensors"), "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", v, 8);
    write_st(path_in(f, "s2.safetensors"), "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", v, 8);
    write_index(f, "{\"a\": \"s1.safetensors\", \"b\": \"s2.safetensors\"}");
    OPEN_FAILS(f->dir, true, "s2.safetensors: duplicate tensor 'a' (also in", "s1.safetensors)");
}

/* ---- corrupt files ----------------------------------------------------- */

static void test_file_shorter_than_the_length_prefix_is_rejected(void **state) {
    fixture *f = *state;
    const char *path = path_in(f, "a.safetensors");
    write_bytes(path, "\x10\0\0", 3);
    OPEN_FAILS(path, false, "a.safetensors: file is 3 bytes, too small");
    OPEN_FAILS(path_in(f, "missing.safetensors"), false, "missing.safetensors: cannot open");
}

static void test_header_length_beyond_the_file_is_rejected(void **state) {
    fixture *f = *state;
    const char *path = path_in(f, "a.safetensors");
    unsigned char buf[8 + 10] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    write_bytes(path, buf, sizeof buf);
    OPEN_FAILS(path, false, "header length 200 is larger than the file (18 bytes)");
    unsigned char huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    write_bytes(path, huge, sizeof huge);
    OPEN_FAILS(path, false, "header length 18446744073709551615");
}

static void test_truncated_data_section_is_rejected(void **state) {
    fixture *f = *state;
    const float v[4] = {1, 2, 3, 4};
    const char *path = path_in(f, "model-00002-of-00003.safetensors");
    /* The header promises 16 bytes but only 15 follow. */
    write_st(path, "{\"model.layers.3.mlp.up_proj.weight\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}",
             v, 15);
    OPEN_FAILS(path, false,
               "model-00002-of-00003.safetensors: tensor 'model.layers.3.mlp.up_proj.weight': data_offsets [0, 16] "
               "exceed data size 15");
}

static void test_header_that_is_not_json_is_rejected(void **state) {
    fixture *f = *state;
    const char *path = path_in(f, "a.safetensors");
    write_st(path, "{\"a\": {\"dtype\": \"F32\",, }", NULL, 0);
    OPEN_FAILS(path, false, "a.safetensors: header is not valid JSON", "JSON: unexpected ','");
    write_st(path, "[1, 2]", NULL, 0);
    OPEN_FAILS(path, false, "header is not a JSON object");
    write_st(path, "{\"__metadata__\": 3}", NULL, 0);
    OPEN_FAILS(path, false, "\"__metadata__\" is not an object");
}

static void test_data_offsets_out_of_range_are_rejected(void **state) {
    fixture *f = *state;
    unsigned char data[15] = {0};
    const char *path = path_in(f, "a.safetensors");
    write_st(path, "{\"t\": {\"dtype\": \"U8\", \"shape\": [10], \"data_offsets\": [10, 20]}}", data, sizeof data);
    OPEN_FAILS(path, false, "tensor 't': data_offsets [10, 20] exceed data size 15");
    write_st(path, "{\"t\": {\"dtype\": \"U8\", \"shape\": [0], \"data_offsets\": [9, 4]}}", data, sizeof data);
    OPEN_FAILS(path, false, "tensor 't': data_offsets [9, 4] are reversed");
    write_st(path, "{\"t\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [-1, 0]}}", data, sizeof data);
    OPEN_FAILS(path, false, "tensor 't': \"data_offsets\" must be two non-negative integers");
    write_st(path, "{\"t\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0]}}", data, sizeof data);
    OPEN_FAILS(path, false, "\"data_offsets\" must be two");
    write_st(path, "{\"t\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1.5]}}", data, sizeof data);
    OPEN_FAILS(path, false, "\"data_offsets\" must be two");
    write_st(path, "{\"t\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 18446744073709551615]}}",
             data, sizeof data);
    OPEN_FAILS(path, false, "\"data_offsets\" must be two");
}

static void test_shape_and_size_mismatch_is_rejected(void **state) {
    fixture *f = *state;
    unsigned char data[24] = {0};
    const char *path = path_in(f, "a.safetensors");
    write_st(path, "{\"w\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 20]}}", data, sizeof data);
    OPEN_FAILS(path, false, "tensor 'w': shape needs 6 elements of F32 but data_offsets [0, 20] hold 20 bytes");
    write_st(path, "{\"w\": {\"dtype\": \"BF16\", \"shape\": [4294967296, 4294967296, 2], \"data_offsets\": [0, 24]}}",
             data, sizeof data);
    OPEN_FAILS(path, false, "tensor 'w': element count overflows");
    write_st(path, "{\"w\": {\"dtype\": \"BF16\", \"shape\": [2305843009213693952, 4], \"data_offsets\": [0, 24]}}",
             data, sizeof data);
    OPEN_FAILS(path, false, "tensor 'w': shape needs");  /* bytes overflow, elements do not */
}

static void test_bad_shapes_are_rejected(void **state) {
    fixture *f = *state;
    unsigned char data[4] = {0};
    const char *path = path_in(f, "a.safetensors");
    write_st(path, "{\"w\": {\"dtype\": \"U8\", \"shape\": [2, -2], \"data_offsets\": [0, 4]}}", data, sizeof data);
    OPEN_FAILS(path, false, "tensor 'w': shape[1] is not a non-negative integer");
    write_st(path, "{\"w\": {\"dtype\": \"U8\", \"shape\": [2, \"2\"], \"data_offsets\": [0, 4]}}", data, sizeof data);
    OPEN_FAILS(path, false, "shape[1] is not a non-negative integer");
    write_st(path, "{\"w\": {\"dtype\": \"U8\", \"shape\": [1,1,1,1,1,1,1,1,4], \"data_offsets\": [0, 4]}}", data,
             sizeof data);
    OPEN_FAILS(path, false, "tensor 'w': 9 dimensions (at most 8 supported)");
    write_st(path, "{\"w\": {\"dtype\": \"U8\", \"shape\": 4, \"data_offsets\": [0, 4]}}", data, sizeof data);
    OPEN_FAILS(path, false, "tensor 'w': missing array \"shape\"");
}

static void test_malformed_entries_are_rejected(void **state) {
    fixture *f = *state;
    unsigned char data[4] = {0};
    const char *path = path_in(f, "a.safetensors");
    write_st(path, "{\"w\": {\"shape\": [4], \"data_offsets\": [0, 4]}}", data, sizeof data);
    OPEN_FAILS(path, false, "tensor 'w': missing string \"dtype\"");
    write_st(path, "{\"w\": [1]}", data, sizeof data);
    OPEN_FAILS(path, false, "tensor 'w': entry is not an object");
    write_st(path, "{\"a\\u0000b\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]}}", data, sizeof data);
    OPEN_FAILS(path, false, "name contains a NUL byte");
}

static void test_duplicate_tensor_in_one_file_is_rejected(void **state) {
    fixture *f = *state;
    unsigned char data[4] = {0};
    const char *path = path_in(f, "a.safetensors");
    write_st(path,
             "{\"w\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]},"
             " \"w\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [0, 2]}}",
             data, sizeof data);
    OPEN_FAILS(path, false, "a.safetensors: duplicate tensor 'w'");
}

static void test_file_truncated_after_open_fails_the_read(void **state) {
    fixture *f = *state;
    const float v[4] = {1, 2, 3, 4};
    const char *path = path_in(f, "a.safetensors");
    uint64_t hlen = write_st(path, "{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", v, 16);
    deepc_st *st = open_ok(path);
    assert_int_equal(truncate(path, (off_t)(8 + hlen + 8)), 0);
    float out[4];
    deepc_err err = {{0}};
    assert_int_equal(deepc_st_read_f32(st, deepc_st_find(st, "w"), 0, out, 4, &err), DEEPC_ERR_IO);
    assert_non_null(strstr(err.msg, "tensor 'w'"));
    assert_non_null(strstr(err.msg, "unexpected end of file"));
    deepc_st_close(st);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_f32_tensor_reads_back_with_its_metadata),
        T(test_read_f32_reads_a_subrange),
        T(test_f16_decodes_exactly_including_subnormals_and_specials),
        T(test_bf16_decodes_exactly),
        T(test_f8_e4m3_decodes_exactly_without_scale),
        T(test_every_e4m3_code_matches_the_formula),
        T(test_large_bf16_tensor_decodes_in_place),
        T(test_integer_tensors_read_raw_but_not_as_floats),
        T(test_reads_outside_the_tensor_are_refused),
        T(test_other_dtypes_are_kept_and_size_checked),
        T(test_unknown_dtype_is_kept_as_other),
        T(test_overlapping_tensors_are_allowed),
        T(test_scalars_and_empty_tensors_are_valid),
        T(test_many_tensors_are_all_found_by_name),
        cmocka_unit_test(test_close_and_lookups_accept_null),
        T(test_sharded_checkpoint_opens_every_shard),
        T(test_dir_without_index_uses_model_safetensors),
        T(test_dir_with_one_safetensors_file_of_any_name_opens_it),
        T(test_dir_with_several_files_and_no_index_is_rejected),
        T(test_dir_without_checkpoint_is_rejected),
        T(test_missing_shard_is_reported_with_the_index),
        T(test_tensor_missing_from_its_shard_is_reported),
        T(test_tensor_in_another_shard_than_listed_is_reported),
        T(test_shard_names_reaching_outside_the_dir_are_rejected),
        T(test_malformed_index_is_rejected),
        T(test_duplicate_tensor_across_shards_is_rejected),
        T(test_file_shorter_than_the_length_prefix_is_rejected),
        T(test_header_length_beyond_the_file_is_rejected),
        T(test_truncated_data_section_is_rejected),
        T(test_header_that_is_not_json_is_rejected),
        T(test_data_offsets_out_of_range_are_rejected),
        T(test_shape_and_size_mismatch_is_rejected),
        T(test_bad_shapes_are_rejected),
        T(test_malformed_entries_are_rejected),
        T(test_duplicate_tensor_in_one_file_is_rejected),
        T(test_file_truncated_after_open_fails_the_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
