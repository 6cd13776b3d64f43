/* test_convert.c - the converter refuses what it does not support with a
 * message naming the problem, and never leaves a partial output behind. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deepc.h"
#include "hfgen.h"
#include "testutil.h"

static char root[256], good[300];

static int setup(void **state) {
    (void)state;
    const char *t = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/deepc-conv-XXXXXX", t ? t : "/tmp");
    if (!mkdtemp(root)) return -1;
    snprintf(good, sizeof good, "%s/good", root);
    hfgen_spec spec;
    if (hfgen_preset("tiny-qwen2", &spec)) return -1;
    spec.dtype = "F32";
    deepc_err err;
    return hfgen_write(good, &spec, &err);
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

/* A fresh copy of the good checkpoint to damage. */
static void copy_good(const char *name, char *dir, size_t cap) {
    snprintf(dir, cap, "%s/%s", root, name);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", dir, good, dir);
    assert_int_equal(system(cmd), 0);
}

/* Replaces the first occurrence of `from` by `to` in dir/file. */
static void patch(const char *dir, const char *file, const char *from, const char *to) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    assert_int_equal(tu_patch_file(p, from, to), 0);
}

static void expect_refusal(const char *dir, const char *type, const char *needle) {
    char out[600], tmp[620];
    snprintf(out, sizeof out, "%s/out.dqf", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    deepc_convert_params p = deepc_convert_default_params();
    p.type = type;
    deepc_status st = deepc_convert(dir, out, &p);
    assert_int_not_equal(st, DEEPC_OK);
    if (!strstr(deepc_open_error(), needle)) fail_msg("error '%s' does not mention '%s'", deepc_open_error(), needle);
    assert_int_not_equal(access(out, F_OK), 0);     /* nothing at the destination */
    assert_int_not_equal(access(tmp, F_OK), 0);     /* and no temporary left over */
}

static void test_good_checkpoint_converts(void **state) {
    (void)state;
    char out[600];
    snprintf(out, sizeof out, "%s/good.dqf", root);
    deepc_convert_params p = deepc_convert_default_params();
    assert_int_equal(deepc_convert(good, out, &p), DEEPC_OK);
    deepc_model *m;
    assert_int_equal(deepc_model_open(out, &m), DEEPC_OK);
    assert_int_equal(deepc_model_verify(m), DEEPC_OK);
    deepc_model_close(m);
}

/* Rows that are not whole 256-element k-quant blocks (tiny-qwen2: rows of
 * 64 and 160, both multiples of 32) fall back to q4_1 under --type q4_k,
 * q3_k and q2_k, and to q8_0 under q6_k (a 6-bit request: q4_1 would lose
 * what it asked for), fp8 (rows of 128) and q8_0 itself; the file verifies
 * and `deepc info` lists the q4_1 tensors. */
static void test_k_quant_rows_fall_back_to_q4_1(void **state) {
    (void)state;
    static const struct { const char *type, *fallback; } cases[] = {
        { "q4_k", "q4_1" }, { "q3_k", "q4_1" }, { "q2_k", "q4_1" }, { "q6_k", "q8_0" }, { "fp8", "q8_0" }, { "q8_0", "q8_0" },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char out[600];
        snprintf(out, sizeof out, "%s/fallback-%s.dqf", root, cases[c].type);
        deepc_convert_params p = deepc_convert_default_params();
        p.type = cases[c].type;
        assert_int_equal(deepc_convert(good, out, &p), DEEPC_OK);
        deepc_model *m;
        assert_int_equal(deepc_model_open(out, &m), DEEPC_OK);
        assert_int_equal(deepc_model_verify(m), DEEPC_OK);
        size_t matrices = 0;
        for (size_t i = 0; i < deepc_model_n_tensors(m); i++) {
            deepc_tensor_info ti;
            deepc_model_tensor(m, i, &ti);
            if (!strcmp(ti.type, "f32")) continue; /* norms, biases */
            matrices++;
            if (strcmp(ti.type, cases[c].fallback)) fail_msg("--type %s: %s is %s, want %s", cases[c].type, ti.name, ti.type, cases[c].fallback);
        }
        assert_true(matrices >= 14); /* embedding + 2 layers x 7 */
        deepc_model_close(m);
        if (c == 0) {
            const char *b = getenv("BUILD");
            char cmd[800];
            snprintf(cmd, sizeof cmd, "'%s/deepc' info '%s' | grep -q 'q4_1'", b ? b : "build", out);
            assert_int_equal(system(cmd), 0);
        }
    }
}

/* --type q6_k on tiny-qwen2 widened to dim 256 and ffn 384: every matrix
 * whose rows are whole 256-element super-blocks is stored as q6_k, the MLP
 * down_proj (rows of 384 = 1.5 x 256) as q8_0; `deepc info` shows q6_k at
 * 6.56 bits/weight (210 bytes per 256). */
static void test_q6_k_converts_and_falls_back_to_q8_0(void **state) {
    (void)state;
    char dir[400], out[600];
    hfgen_spec spec;
    assert_int_equal(hfgen_preset("tiny-qwen2", &spec), 0);
    spec.dtype = "F32";
    spec.dim = 256;
    spec.ffn = 384;
    spec.n_heads = 4;
    spec.n_kv_heads = 2;
    spec.n_layers = 1;
    snprintf(dir, sizeof dir, "%s/qwen2-256", root);
    deepc_err err = { "" };
    if (hfgen_write(dir, &spec, &err)) fail_msg("hfgen_write: %s", err.msg);
    snprintf(out, sizeof out, "%s/q6_k.dqf", root);
    deepc_convert_params p = deepc_convert_default_params();
    p.type = "q6_k";
    assert_int_equal(deepc_convert(dir, out, &p), DEEPC_OK);
    deepc_model *m;
    assert_int_equal(deepc_model_open(out, &m), DEEPC_OK);
    assert_int_equal(deepc_model_verify(m), DEEPC_OK);
    size_t q6 = 0;
    for (size_t i = 0; i < deepc_model_n_tensors(m); i++) {
        deepc_tensor_info ti;
        deepc_model_tensor(m, i, &ti);
        if (!strcmp(ti.type, "f32")) continue;
        const char *want = strstr(ti.name, "down_proj") ? "q8_0" : "q6_k";
        if (strcmp(ti.type, want)) fail_msg("%s is %s, want %s", ti.name, ti.type, want);
        q6 += !strcmp(ti.type, "q6_k");
        if (!strcmp(ti.type, "q6_k")) assert_int_equal(ti.bytes * 256, ti.n_elems * 210);
    }
    assert_true(q6 >= 7); /* embedding, q k v o, gate, up */
    deepc_model_close(m);
    const char *b = getenv("BUILD");
    char cmd[900];
    snprintf(cmd, sizeof cmd, "'%s/deepc' info '%s' | grep -q '^  q6_k .* 6\\.56 bits/weight'", b ? b : "build", out);
    assert_int_equal(system(cmd), 0);
}

static void test_unknown_architecture_is_refused(void **state) {
    (void)state;
    char d[400];
    copy_good("arch", d, sizeof d);
    patch(d, "config.json", "Qwen2ForCausalLM", "MambaForCausalLM");
    expect_refusal(d, "q8_0", "architecture 'MambaForCausalLM' is not supported");
}

static void test_missing_config_is_refused(void **state) {
    (void)state;
    char d[400], p[500];
    copy_good("noconfig", d, sizeof d);
    snprintf(p, sizeof p, "%s/config.json", d);
    remove(p);
    expect_refusal(d, "q8_0", "config.json: cannot open");
}

static void test_malformed_config_is_refused(void **state) {
    (void)state;
    char d[400];
    copy_good("badjson", d, sizeof d);
    patch(d, "config.json", "{", "{{");
    expect_refusal(d, "q8_0", "config.json");
}

static void test_missing_tensor_is_refused(void **state) {
    (void)state;
    char d[400];
    copy_good("layers", d, sizeof d);
    /* one more layer in the config than tensors in the checkpoint */
    patch(d, "config.json", "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3");
    expect_refusal(d, "q8_0", "missing tensor 'model.layers.2.");
}

static void test_shape_mismatch_is_refused(void **state) {
    (void)state;
    char d[400];
    copy_good("shape", d, sizeof d);
    patch(d, "config.json", "\"intermediate_size\": 160", "\"intermediate_size\": 192");
    expect_refusal(d, "q8_0", "has shape");
}

static void test_unreadable_dtype_is_refused(void **state) {
    (void)state;
    char d[400];
    copy_good("dtype", d, sizeof d);
    patch(d, "model.safetensors", "\"F32\"", "\"I32\"");   /* same size, wrong kind */
    expect_refusal(d, "q8_0", "dtype I32");
}

static void test_unsupported_rope_scaling_is_refused(void **state) {
    (void)state;
    char d[400];
    copy_good("rope", d, sizeof d);
    patch(d, "config.json", "\"rope_theta\"", "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0}, \"rope_theta\"");
    expect_refusal(d, "q8_0", "rope_scaling type 'yarn'");
}

static void test_unknown_type_flag_is_refused(void **state) {
    (void)state;
    expect_refusal(good, "q3_x", "unknown --type 'q3_x'");
}

static void test_truncated_shard_is_refused(void **state) {
    (void)state;
    char d[400], p[500];
    copy_good("trunc", d, sizeof d);
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    FILE *f = fopen(p, "rb+");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    assert_int_equal(truncate(p, n - 1000), 0);
    expect_refusal(d, "q8_0", "model.safetensors");
}

static void test_missing_tokenizer_is_refused(void **state) {
    (void)state;
    char d[400], p[500];
    copy_good("notok", d, sizeof d);
    snprintf(p, sizeof p, "%s/tokenizer.json", d);
    remove(p);
    expect_refusal(d, "q8_0", "tokenizer.json");
    /* ... unless the user asks for the weights only */
    char out[600];
    snprintf(out, sizeof out, "%s/weights-only.dqf", d);
    deepc_convert_params cp = deepc_convert_default_params();
    cp.no_tokenizer = true;
    assert_int_equal(deepc_convert(d, out, &cp), DEEPC_OK);
    deepc_model *m;
    assert_int_equal(deepc_model_open(out, &m), DEEPC_OK);
    size_t n;
    assert_int_equal(deepc_tokenize(m, "hi", 2, false, false, NULL, 0, &n), DEEPC_ERR_UNSUPPORTED);
    deepc_model_close(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_checkpoint_converts),
        cmocka_unit_test(test_k_quant_rows_fall_back_to_q4_1),
        cmocka_unit_test(test_q6_k_converts_and_falls_back_to_q8_0),
        cmocka_unit_test(test_unknown_architecture_is_refused),
        cmocka_unit_test(test_missing_config_is_refused),
        cmocka_unit_test(test_malformed_config_is_refused),
        cmocka_unit_test(test_missing_tensor_is_refused),
        cmocka_unit_test(test_shape_mismatch_is_refused),
        cmocka_unit_test(test_unreadable_dtype_is_refused),
        cmocka_unit_test(test_unsupported_rope_scaling_is_refused),
        cmocka_unit_test(test_unknown_type_flag_is_refused),
        cmocka_unit_test(test_truncated_shard_is_refused),
        cmocka_unit_test(test_missing_tokenizer_is_refused),
    };
    return cmocka_run_group_tests_name("convert", tests, setup, teardown);
}
