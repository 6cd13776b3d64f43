/* test_model_dense.c - end to end for the dense architectures: a synthetic
 * checkpoint in the exact Hugging Face layout is generated, converted to each
 * weight type, run through the engine, and every position's logits are
 * compared with the plain fp32 reference forward pass (test/support/ref_model.c),
 * which reads the same stored weights but shares no code with the engine. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deepc.h"
#include "testutil.h"
#include "hfgen.h"
#include "ref_model.h"

#define N_TOK 40

static char root[256];

static int setup(void **state) {
    (void)state;
    return tu_mkdtemp(root, sizeof root, "dense");
}

static int teardown(void **state) {
    (void)state;
    return tu_rmtree(root);
}

typedef struct {
    const char *preset, *dtype;
    int shards;
} ckpt;

static void make_ckpt(const ckpt *c, hfgen_spec *spec, char *dir, size_t cap) {
    assert_int_equal(hfgen_preset(c->preset, spec), 0);
    spec->dtype = c->dtype;
    spec->n_shards = c->shards;
    snprintf(dir, cap, "%s/%s-%s-%d", root, c->preset, c->dtype, c->shards);
    if (access(dir, F_OK) == 0) return;
    deepc_err err = { "" };
    if (hfgen_write(dir, spec, &err)) fail_msg("hfgen_write: %s", err.msg);
}

static void prompt_ids(const hfgen_spec *spec, int32_t *ids, int *ref_ids) {
    uint64_t x = 12345;
    for (int i = 0; i < N_TOK; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((x >> 33) % (uint64_t)spec->vocab);
        ref_ids[i] = ids[i];
    }
}

static deepc_model *convert_open(const char *dir, const char *type, char *out, size_t cap) {
    snprintf(out, cap, "%s/model-%s.dqf", dir, type);
    deepc_convert_params p = deepc_convert_default_params();
    p.type = type;
    if (access(out, F_OK) != 0 && deepc_convert(dir, out, &p)) fail_msg("convert: %s", deepc_open_error());
    deepc_model *m;
    if (deepc_model_open(out, &m)) fail_msg("open: %s", deepc_open_error());
    return m;
}

static float *run_engine(deepc_model *m, const int32_t *ids, int n, int threads, int batch, bool one_by_one) {
    deepc_model_info mi = { .struct_size = sizeof mi };
    deepc_model_get_info(m, &mi);
    deepc_session_params sp = deepc_session_default_params();
    sp.n_threads = threads;
    sp.n_batch = batch;
    sp.n_ctx = 128;
    deepc_session *s;
    assert_int_equal(deepc_session_create(m, &sp, &s), DEEPC_OK);
    float *lg = malloc((size_t)n * mi.n_vocab * sizeof *lg);
    assert_non_null(lg);
    if (one_by_one) {
        for (int i = 0; i < n; i++) assert_int_equal(deepc_session_eval(s, ids + i, 1, lg + (size_t)i * mi.n_vocab), DEEPC_OK);
    } else {
        assert_int_equal(deepc_session_eval(s, ids, n, lg), DEEPC_OK);
    }
    deepc_session_destroy(s);
    return lg;
}

/* Positions whose greedy choice agrees with the reference. */
static double top1_agreement(const float *got, const float *want, int n, int vocab) {
    int agree = 0;
    for (int p = 0; p < n; p++) {
        int a = 0, b = 0;
        for (int v = 1; v < vocab; v++) {
            if (got[(size_t)p * vocab + v] > got[(size_t)p * vocab + a]) a = v;
            if (want[(size_t)p * vocab + v] > want[(size_t)p * vocab + b]) b = v;
        }
        agree += a == b;
    }
    return (double)agree / n;
}

/* Tolerances. When the stored type holds the checkpoint's values exactly
 * (f32 always; bf16 from BF16; f16 from F16 or BF16), the reference sees the
 * very weights the engine uses and the only differences are the fp16 KV cache
 * (relative rounding 2^-11 per cached value) and fp32 summation order: we
 * measure max |diff| ~0.01 on logits spanning +-8 (std ~2) and allow 0.02.
 * When conversion rounds the weights (bf16 from F32, q8_0) the logits move by
 * quantization noise, so we bound its RMS relative to the logit std:
 *   bf16: each weight gets relative error ~U(+-2^-9) (std 0.11%); through the
 *         model that measures 1.1% of the logit std; allowed 2.5%.
 *   q8_0: block max / 127 steps on 32 Gaussian weights give ~0.5% error per
 *         weight (4.6x bf16's) plus as much again from quantized activations,
 *         predicting ~6.5%; measured 4.5%; allowed 8%.
 *   f16 from F32: rounding 4x finer than bf16: measured 0.14%; allowed 1%.
 * A wrong kernel or layout gives errors of order 100% of the std. */
typedef struct { double max_abs, rel_rms; } tol;

static tol tolerance(const char *type, const char *src_dtype) {
    bool exact = !strcmp(type, "f32") || !strcmp(type, src_dtype) ||
                 (!strcmp(type, "f16") && !strcmp(src_dtype, "bf16"));
    if (exact) return (tol){ 2e-2, 2e-3 };   /* rms measured 0.06-0.08%: 2.5x headroom for other summation orders */
    if (!strcmp(type, "bf16")) return (tol){ 0.5, 0.025 };
    if (!strcmp(type, "f16")) return (tol){ 0.2, 0.01 };   /* 2^-11 rounding: 4x finer than bf16 */
    return (tol){ 1.0, 0.08 };
}

static void lower(char *d, const char *s) {
    while ((*d++ = (char)((*s >= 'A' && *s <= 'Z') ? *s + 32 : *s))) s++;
}

static void check_arch(const ckpt *c) {
    static const char *types[] = { "f32", "bf16", "f16", "q8_0" };
    hfgen_spec spec;
    char dir[512], out[600];
    make_ckpt(c, &spec, dir, sizeof dir);
    int32_t ids[N_TOK];
    int rids[N_TOK];
    prompt_ids(&spec, ids, rids);
    ref_model *ref = ref_model_from_spec(&spec);
    assert_non_null(ref);
    float *want = malloc((size_t)N_TOK * spec.vocab * sizeof *want);
    assert_int_equal(ref_forward(ref, rids, N_TOK, want), 0);
    double lo = 1e30, hi = -1e30;
    for (size_t i = 0; i < (size_t)N_TOK * spec.vocab; i++) { lo = fmin(lo, want[i]); hi = fmax(hi, want[i]); }
    printf("  %s (%s, %d shard%s): reference logits span [%.2f, %.2f]\n", c->preset, c->dtype, c->shards, c->shards > 1 ? "s" : "", lo, hi);
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
        deepc_model *m = convert_open(dir, types[t], out, sizeof out);
        /* batches of 16 exercise chunking: 40 tokens = 16 + 16 + 8 */
        float *got = run_engine(m, ids, N_TOK, 1, 16, false);
        float *tok = run_engine(m, ids, N_TOK, 1, 16, true);
        double d_batch = tu_max_abs_diff(got, want, (size_t)N_TOK * spec.vocab);
        double d_tok = tu_max_abs_diff(tok, want, (size_t)N_TOK * spec.vocab);
        char src[8];
        lower(src, c->dtype);
        tol tl = tolerance(types[t], src);
        double r_batch = tu_rel_rms(got, want, (size_t)N_TOK * spec.vocab), r_tok = tu_rel_rms(tok, want, (size_t)N_TOK * spec.vocab);
        printf("  %-5s vs fp32 reference: max |diff| prefill %.3g, token-by-token %.3g (allowed %.3g); rms/std %.4f (allowed %.4f); top-1 agreement %.2f\n",
               types[t], d_batch, d_tok, tl.max_abs, r_batch, tl.rel_rms, top1_agreement(got, want, N_TOK, spec.vocab));
        assert_true(d_batch <= tl.max_abs && d_tok <= tl.max_abs);
        assert_true(r_batch <= tl.rel_rms && r_tok <= tl.rel_rms);
        free(got);
        free(tok);
        deepc_model_close(m);
    }
    free(want);
    ref_model_free(ref);
}

static void test_qwen2_matches_reference_all_types(void **state) {
    (void)state;
    ckpt c = { "tiny-qwen2", "BF16", 2 };   /* sharded, as the real checkpoints */
    check_arch(&c);
}

static void test_llama_matches_reference_all_types(void **state) {
    (void)state;
    ckpt c = { "tiny-llama", "F32", 1 };    /* untied head, llama3 rope scaling */
    check_arch(&c);
}

static void test_llama_f16_checkpoint_matches_reference(void **state) {
    (void)state;
    ckpt c = { "tiny-llama", "F16", 1 };
    hfgen_spec spec;
    char dir[512], out[600];
    make_ckpt(&c, &spec, dir, sizeof dir);
    int32_t ids[N_TOK];
    int rids[N_TOK];
    prompt_ids(&spec, ids, rids);
    ref_model *ref = ref_model_from_spec(&spec);
    float *want = malloc((size_t)N_TOK * spec.vocab * sizeof *want);
    assert_int_equal(ref_forward(ref, rids, N_TOK, want), 0);
    deepc_model *m = convert_open(dir, "f16", out, sizeof out);
    float *got = run_engine(m, ids, N_TOK, 2, 64, false);
    double d = tu_max_abs_diff(got, want, (size_t)N_TOK * spec.vocab);
    printf("  tiny-llama from F16 safetensors, f16: max |logit diff| %.3g\n", d);
    assert_true(d <= tolerance("f16", "f16").max_abs);
    free(got); free(want);
    deepc_model_close(m);
    ref_model_free(ref);
}

/* Rows are split across threads but each output value is computed by one
 * kernel call in a fixed order, so 1 and N threads must agree bit for bit. */
static void test_threads_give_identical_logits(void **state) {
    (void)state;
    ckpt c = { "tiny-qwen2", "BF16", 2 };
    hfgen_spec spec;
    char dir[512], out[600];
    make_ckpt(&c, &spec, dir, sizeof dir);
    int32_t ids[N_TOK];
    int rids[N_TOK];
    prompt_ids(&spec, ids, rids);
    const char *types[] = { "f32", "q8_0" };
    for (int t = 0; t < 2; t++) {
        deepc_model *m = convert_open(dir, types[t], out, sizeof out);
        float *a = run_engine(m, ids, N_TOK, 1, 16, false);
        float *b = run_engine(m, ids, N_TOK, 2, 16, false);
        float *d = run_engine(m, ids, N_TOK, 3, 16, false);
        assert_memory_equal(a, b, (size_t)N_TOK * spec.vocab * sizeof(float));
        assert_memory_equal(a, d, (size_t)N_TOK * spec.vocab * sizeof(float));
        free(a); free(b); free(d);
        deepc_model_close(m);
    }
}

/* Greedy generation is deterministic and stops at the requested count. */
static bool collect(void *user, int32_t tok, const char *piece, size_t len) {
    (void)piece; (void)len;
    int32_t *v = user;
    v[1 + v[0]++] = tok;
    return true;
}

static void test_greedy_generation_is_reproducible(void **state) {
    (void)state;
    ckpt c = { "tiny-llama", "F32", 1 };
    hfgen_spec spec;
    char dir[512], out[600];
    make_ckpt(&c, &spec, dir, sizeof dir);
    deepc_model *m = convert_open(dir, "q8_0", out, sizeof out);
    int32_t prompt[4] = { 5, 17, 42, 7 };
    int32_t r[2][40];
    for (int k = 0; k < 2; k++) {
        deepc_session *s;
        deepc_session_params sp = deepc_session_default_params();
        sp.n_threads = k + 1;
        assert_int_equal(deepc_session_create(m, &sp, &s), DEEPC_OK);
        deepc_sampling smp = deepc_sampling_default();
        smp.temperature = 0;
        r[k][0] = 0;
        deepc_gen_stats gs;
        assert_int_equal(deepc_generate(s, prompt, 4, 30, &smp, collect, r[k], &gs), DEEPC_OK);
        assert_true(gs.n_gen == r[k][0]);
        assert_true(gs.n_gen == 30 || gs.hit_eos);
        deepc_session_destroy(s);
    }
    assert_int_equal(r[0][0], r[1][0]);
    assert_memory_equal(r[0], r[1], sizeof(int32_t) * (size_t)(1 + r[0][0]));
    deepc_model_close(m);
}

/* The low-bit types need rows of 256 (fp8: 128), which the tiny presets'
 * 64-wide rows are not (they fall back to q8_0 / f16): tiny-qwen2 widened
 * to dim 256, ffn 512, head_dim 64, one layer, every matrix row a whole
 * super-block. On this random-weight model the logit error is linear in the
 * per-weight RMS error (test_quant_k: fp8 2.6%, q4_k 7.4%, q3_k 15%, q2_k
 * 30% of the weights' std): measured rms/std fp8 0.095, q4_k 0.27, q3_k
 * 0.52 (3.4-3.7x the weight error; q8_0 0.027 here), q2_k 0.89 (saturating
 * towards the 1.41 of unrelated logits, so q2_k is held only to "clearly
 * correlated"; its kernels are pinned by test_kernels). The recipes store
 * this dense model's attention and MLP as q4_k (each is over 10% of the
 * weights) and the tied embedding as q8_0: 0.21 for both (no routed
 * experts, so q2-experts equals q4). Allowed: measured x 1.3. A wrong
 * layout or kernel gives >= 1.0. */
static void test_qwen2_k_quants_match_reference(void **state) {
    (void)state;
    static const struct { const char *type; double rel_rms; } cases[] = {
        { "q4_k", 0.35 }, { "q3_k", 0.68 }, { "q2_k", 1.15 }, { "fp8", 0.13 }, { "q4", 0.28 }, { "q2-experts", 0.28 },
    };
    hfgen_spec spec;
    char dir[512], out[600];
    assert_int_equal(hfgen_preset("tiny-qwen2", &spec), 0);
    spec.dim = 256;
    spec.ffn = 512;
    spec.n_heads = 4;
    spec.n_kv_heads = 2;
    spec.n_layers = 1;
    snprintf(dir, sizeof dir, "%s/qwen2-256", root);
    deepc_err err = { "" };
    if (access(dir, F_OK) != 0 && hfgen_write(dir, &spec, &err)) fail_msg("hfgen_write: %s", err.msg);
    int32_t ids[N_TOK];
    int rids[N_TOK];
    prompt_ids(&spec, ids, rids);
    ref_model *ref = ref_model_from_spec(&spec);
    assert_non_null(ref);
    size_t nl = (size_t)N_TOK * spec.vocab;
    float *want = malloc(nl * sizeof *want);
    assert_int_equal(ref_forward(ref, rids, N_TOK, want), 0);
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        deepc_model *m = convert_open(dir, cases[t].type, out, sizeof out);
        float *got = run_engine(m, ids, N_TOK, 1, 16, false);
        float *tok = run_engine(m, ids, N_TOK, 2, 16, true);
        double r_batch = tu_rel_rms(got, want, nl), r_tok = tu_rel_rms(tok, want, nl);
        printf("  %-10s vs fp32 reference: max |diff| %.3g; rms/std prefill %.4f, token-by-token %.4f (allowed %.4f); top-1 agreement %.2f\n",
               cases[t].type, tu_max_abs_diff(got, want, nl), r_batch, r_tok, cases[t].rel_rms, top1_agreement(got, want, N_TOK, spec.vocab));
        assert_true(r_batch <= cases[t].rel_rms && r_tok <= cases[t].rel_rms);
        free(got);
        free(tok);
        deepc_model_close(m);
    }
    free(want);
    ref_model_free(ref);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qwen2_matches_reference_all_types),
        cmocka_unit_test(test_qwen2_k_quants_match_reference),
        cmocka_unit_test(test_llama_matches_reference_all_types),
        cmocka_unit_test(test_llama_f16_checkpoint_matches_reference),
        cmocka_unit_test(test_threads_give_identical_logits),
        cmocka_unit_test(test_greedy_generation_is_reproducible),
    };
    return cmocka_run_group_tests_name("model_dense", tests, setup, teardown);
}
