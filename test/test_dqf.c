/* test_dqf.c - the .dqf reader and writer: round trip of metadata and
 * tensors, atomic writing, and a clear error for each kind of damage. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dqf.h"

static char dir[256], path[300];

static int setup(void **state) {
    (void)state;
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/deepc-dqf-XXXXXX", t ? t : "/tmp");
    if (!mkdtemp(dir)) return -1;
    snprintf(path, sizeof path, "%s/m.dqf", dir);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char p[320];
    snprintf(p, sizeof p, "%s/m.dqf", dir); remove(p);
    snprintf(p, sizeof p, "%s/m.dqf.tmp", dir); remove(p);
    rmdir(dir);
    return 0;
}

static const float vec[5] = { 1.0f, -2.5f, 3.25f, 0.0f, 1e-3f };

/* Writes a small valid file: every metadata kind and three tensors. */
static void write_sample(void) {
    deepc_err err = { "" };
    deepc_dqf_writer *w = deepc_dqf_writer_create(path, &err);
    assert_non_null(w);
    uint32_t arr[3] = { 7, 8, 9 };
    uint8_t bytes[5] = { 1, 2, 3, 4, 5 };
    assert_int_equal(deepc_dqf_put_str(w, "general.architecture", "qwen2", 5), 0);
    assert_int_equal(deepc_dqf_put_u32(w, "a.u32", 42), 0);
    assert_int_equal(deepc_dqf_put_i32(w, "a.i32", -5), 0);
    assert_int_equal(deepc_dqf_put_u64(w, "a.u64", 1ull << 40), 0);
    assert_int_equal(deepc_dqf_put_f32(w, "a.f32", 0.5f), 0);
    assert_int_equal(deepc_dqf_put_bool(w, "a.bool", true), 0);
    assert_int_equal(deepc_dqf_put_array(w, "a.bytes", DEEPC_META_U8, bytes, 5), 0);
    assert_int_equal(deepc_dqf_put_array(w, "a.arr", DEEPC_META_U32, arr, 3), 0);
    uint64_t d1[1] = { 5 };
    assert_int_equal(deepc_dqf_tensor_begin(w, "vec", DEEPC_TYPE_F32, 1, d1, 0, DEEPC_DQF_ALIGN), 0);
    assert_int_equal(deepc_dqf_tensor_write(w, vec, 2 * sizeof(float)), 0);   /* in two pieces */
    assert_int_equal(deepc_dqf_tensor_write(w, vec + 2, 3 * sizeof(float)), 0);
    assert_int_equal(deepc_dqf_tensor_end(w), 0);
    uint64_t d2[2] = { 2, 64 };
    uint8_t q[2 * 2 * 34];
    for (size_t i = 0; i < sizeof q; i++) q[i] = (uint8_t)(i * 7);
    assert_int_equal(deepc_dqf_tensor_begin(w, "mat", DEEPC_TYPE_Q8_0, 2, d2, 0, DEEPC_DQF_ALIGN), 0);
    assert_int_equal(deepc_dqf_tensor_write(w, q, sizeof q), 0);
    assert_int_equal(deepc_dqf_tensor_end(w), 0);
    uint64_t d3[1] = { 4 };
    uint16_t h[4] = { 0x3C00, 0, 0xBC00, 0x7BFF };
    assert_int_equal(deepc_dqf_tensor_begin(w, "expert", DEEPC_TYPE_F16, 1, d3, DEEPC_TENSOR_OPTIONAL, DEEPC_DQF_PAGE), 0);
    assert_int_equal(deepc_dqf_tensor_write(w, h, sizeof h), 0);
    assert_int_equal(deepc_dqf_tensor_end(w), 0);
    assert_int_equal(deepc_dqf_writer_finish(w, &err), 0);
}

static void test_round_trip_metadata_and_tensors(void **state) {
    (void)state;
    write_sample();
    deepc_err err = { "" };
    deepc_dqf *d = deepc_dqf_open(path, &err);
    assert_non_null(d);
    uint32_t u; int32_t i; uint64_t u64; float f; bool b;
    const char *s; size_t n;
    assert_true(deepc_dqf_get_u32(d, "a.u32", &u)); assert_int_equal(u, 42);
    assert_true(deepc_dqf_get_i32(d, "a.i32", &i)); assert_int_equal(i, -5);
    assert_true(deepc_dqf_get_u64(d, "a.u64", &u64)); assert_true(u64 == 1ull << 40);
    assert_true(deepc_dqf_get_f32(d, "a.f32", &f)); assert_true(f == 0.5f);
    assert_true(deepc_dqf_get_bool(d, "a.bool", &b)); assert_true(b);
    assert_true(deepc_dqf_get_str(d, "general.architecture", &s, &n));
    assert_int_equal(n, 5); assert_memory_equal(s, "qwen2", 5);
    assert_false(deepc_dqf_get_u32(d, "a.i32", &u));          /* wrong type is "absent" */
    assert_false(deepc_dqf_get_u32(d, "missing", &u));
    const void *p; uint64_t cnt;
    assert_true(deepc_dqf_get_array(d, "a.arr", DEEPC_META_U32, &p, &cnt));
    assert_int_equal(cnt, 3);
    assert_int_equal(((uintptr_t)p) % 8, 0);                  /* arrays are usable in place */
    assert_int_equal(((const uint32_t *)p)[2], 9);
    assert_int_equal(deepc_dqf_n_tensors(d), 3);
    const deepc_dqf_tensor *t = deepc_dqf_find(d, "vec");
    assert_non_null(t);
    assert_memory_equal(t->data, vec, sizeof vec);
    t = deepc_dqf_find(d, "mat");
    assert_non_null(t);
    assert_int_equal(t->size, 2 * 2 * 34);
    assert_int_equal(t->offset % DEEPC_DQF_ALIGN, 0);
    t = deepc_dqf_find(d, "expert");
    assert_int_equal(t->offset % DEEPC_DQF_PAGE, 0);
    assert_true(t->flags & DEEPC_TENSOR_OPTIONAL);
    assert_null(deepc_dqf_find(d, "nope"));
    assert_int_equal(deepc_dqf_verify(d, &err), 0);
    deepc_dqf_close(d);
    assert_int_equal(access(path, F_OK), 0);
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_not_equal(access(tmp, F_OK), 0);               /* renamed away */
}

static void test_abort_leaves_no_file(void **state) {
    (void)state;
    remove(path);
    deepc_err err;
    deepc_dqf_writer *w = deepc_dqf_writer_create(path, &err);
    assert_non_null(w);
    deepc_dqf_put_u32(w, "k", 1);
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(access(tmp, F_OK), 0);                   /* work happens in NAME.tmp */
    assert_int_not_equal(access(path, F_OK), 0);
    deepc_dqf_writer_abort(w);
    assert_int_not_equal(access(tmp, F_OK), 0);
    assert_int_not_equal(access(path, F_OK), 0);
}

static void test_short_tensor_write_fails_finish(void **state) {
    (void)state;
    remove(path);
    deepc_err err = { "" };
    deepc_dqf_writer *w = deepc_dqf_writer_create(path, &err);
    uint64_t d1[1] = { 4 };
    deepc_dqf_tensor_begin(w, "v", DEEPC_TYPE_F32, 1, d1, 0, DEEPC_DQF_ALIGN);
    deepc_dqf_tensor_write(w, vec, 8);
    assert_int_not_equal(deepc_dqf_tensor_end(w), 0);
    assert_int_not_equal(deepc_dqf_writer_finish(w, &err), 0);
    assert_non_null(strstr(err.msg, "shorter"));
    assert_int_not_equal(access(path, F_OK), 0);
}

/* ---- damage ------------------------------------------------------------- */

static uint8_t *load(size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n);
    assert_int_equal(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void store(const uint8_t *b, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

static void expect_open_error(const char *needle) {
    deepc_err err = { "" };
    deepc_dqf *d = deepc_dqf_open(path, &err);
    if (d) deepc_dqf_close(d);
    assert_null(d);
    if (!strstr(err.msg, needle)) fail_msg("error '%s' does not mention '%s'", err.msg, needle);
}

static uint64_t h64(const uint8_t *b, size_t off) { uint64_t v; memcpy(&v, b + off, 8); return v; }

static void test_truncated_file_is_rejected(void **state) {
    (void)state;
    write_sample();
    size_t n;
    uint8_t *b = load(&n);
    store(b, n - 10);
    expect_open_error("truncated");
    store(b, 100);
    expect_open_error("too small");
    free(b);
}

static void test_bad_magic_is_rejected(void **state) {
    (void)state;
    write_sample();
    size_t n;
    uint8_t *b = load(&n);
    b[0] = 'X';
    store(b, n);
    expect_open_error("not a .dqf file");
    free(b);
}

static void test_newer_major_version_is_rejected(void **state) {
    (void)state;
    write_sample();
    size_t n;
    uint8_t *b = load(&n);
    b[8] = 2;
    store(b, n);
    expect_open_error("reads version 1");
    free(b);
}

static void test_corrupt_directory_fails_checksum(void **state) {
    (void)state;
    write_sample();
    size_t n;
    uint8_t *b = load(&n);
    b[h64(b, 48) + 5] ^= 0x40;            /* a byte inside the tensor directory */
    store(b, n);
    expect_open_error("checksum mismatch");
    free(b);
}

static void test_inconsistent_section_bounds_are_rejected(void **state) {
    (void)state;
    write_sample();
    size_t n;
    uint8_t *b = load(&n);
    uint64_t big = n + 4096;
    memcpy(b + 48, &big, 8);              /* directory offset past the end */
    store(b, n);
    expect_open_error("inconsistent");
    free(b);
}

/* Rewrites one field of the first directory entry ("vec") and fixes the
 * directory checksum, so only the semantic validation can catch it. */
static void damage_first_entry(size_t field_off, const void *val, size_t len) {
    size_t n;
    uint8_t *b = load(&n);
    uint64_t doff = h64(b, 48), dsize = h64(b, 56);
    memcpy(b + doff + field_off, val, len);
    uint64_t ck = deepc_dqf_checksum(b + doff, dsize);
    memcpy(b + 96, &ck, 8);
    store(b, n);
    free(b);
}

/* entry layout: u32 name_len, name "vec"(3), u32 type, u32 ndim, u64 dim, u64 off, u64 size, ... */
enum { E_TYPE = 7, E_DIM0 = 15, E_OFF = 23, E_SIZE = 31 };

static void test_unknown_tensor_type_is_rejected(void **state) {
    (void)state;
    write_sample();
    uint32_t t = 99;
    damage_first_entry(E_TYPE, &t, 4);
    expect_open_error("unknown type id 99");
}

static void test_size_shape_mismatch_is_rejected(void **state) {
    (void)state;
    write_sample();
    uint64_t dim = 6;
    damage_first_entry(E_DIM0, &dim, 8);
    expect_open_error("need");
}

static void test_out_of_bounds_offset_is_rejected(void **state) {
    (void)state;
    write_sample();
    uint64_t off = 1ull << 50;
    damage_first_entry(E_OFF, &off, 8);
    expect_open_error("outside the data section");
}

static void test_misaligned_offset_is_rejected(void **state) {
    (void)state;
    write_sample();
    size_t n;
    uint8_t *b = load(&n);
    uint64_t off = h64(b, h64(b, 48) + E_OFF) + 4;
    free(b);
    damage_first_entry(E_OFF, &off, 8);
    expect_open_error("misaligned");
}

static void test_overflowing_size_is_rejected(void **state) {
    (void)state;
    write_sample();
    uint64_t dim = UINT64_MAX / 2;
    damage_first_entry(E_DIM0, &dim, 8);
    expect_open_error("bad shape");
}

static void test_corrupt_tensor_data_fails_verify(void **state) {
    (void)state;
    write_sample();
    size_t n;
    uint8_t *b = load(&n);
    b[h64(b, 72)] ^= 1;                    /* first byte of tensor data */
    store(b, n);
    free(b);
    deepc_err err = { "" };
    deepc_dqf *d = deepc_dqf_open(path, &err);
    assert_non_null(d);                    /* open does not read all data ... */
    assert_int_not_equal(deepc_dqf_verify(d, &err), 0);   /* ... verify does */
    assert_non_null(strstr(err.msg, "'vec': checksum mismatch"));
    deepc_dqf_close(d);
}

static void test_checksum_streams_like_one_shot(void **state) {
    (void)state;
    /* the writer's incremental checksum must equal the one-shot function for
     * every split point and tail length, or verify would fail on good files */
    write_sample();
    deepc_err err;
    deepc_dqf *d = deepc_dqf_open(path, &err);
    const deepc_dqf_tensor *t = deepc_dqf_find(d, "mat");
    assert_true(t->checksum == deepc_dqf_checksum(t->data, t->size));
    deepc_dqf_close(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_metadata_and_tensors),
        cmocka_unit_test(test_abort_leaves_no_file),
        cmocka_unit_test(test_short_tensor_write_fails_finish),
        cmocka_unit_test(test_truncated_file_is_rejected),
        cmocka_unit_test(test_bad_magic_is_rejected),
        cmocka_unit_test(test_newer_major_version_is_rejected),
        cmocka_unit_test(test_corrupt_directory_fails_checksum),
        cmocka_unit_test(test_inconsistent_section_bounds_are_rejected),
        cmocka_unit_test(test_unknown_tensor_type_is_rejected),
        cmocka_unit_test(test_size_shape_mismatch_is_rejected),
        cmocka_unit_test(test_out_of_bounds_offset_is_rejected),
        cmocka_unit_test(test_misaligned_offset_is_rejected),
        cmocka_unit_test(test_overflowing_size_is_rejected),
        cmocka_unit_test(test_corrupt_tensor_data_fails_verify),
        cmocka_unit_test(test_checksum_streams_like_one_shot),
    };
    return cmocka_run_group_tests_name("dqf", tests, setup, teardown);
}
