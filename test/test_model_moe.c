/* test_model_moe.c - end to end for DeepSeek-V2 and -V3: tiny synthetic
 * checkpoints in the exact Hugging Face layout (V3 stored as FP8 E4M3 with
 * 128x128 block scales and an MTP layer) are converted, run, and every
 * position's logits compared with the plain fp32 reference forward pass of
 * test/support/ref_moe.c, which follows the official modeling code (MLA
 * expanded per head, routing re-implemented) and shares no engine code. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "deepc.h"
#include "testutil.h"
#include "dqf.h"
#include "hfgen_moe.h"
#include "ref_moe.h"
#include "safetensors.h"

#define N_TOK 24

static char root[256];

static int setup(void **state) {
    (void)state;
    return tu_mkdtemp(root, sizeof root, "moe");
}

static int teardown(void **state) {
    (void)state;
    return tu_rmtree(root);
}

static void make_ckpt(const char *preset, hfgen_moe_spec *spec, char *dir, size_t cap) {
    assert_int_equal(hfgen_moe_preset(preset, spec), 0);
    snprintf(dir, cap, "%s/%s", root, preset);
    if (access(dir, F_OK) == 0) return;
    deepc_err err = { "" };
    if (hfgen_moe_write(dir, spec, NULL, NULL, NULL, &err)) fail_msg("hfgen_moe_write: %s", err.msg);
}

static deepc_model *convert_open(const char *dir, const char *type) {
    char out[600];
    snprintf(out, sizeof out, "%s/model-%s.dqf", dir, type);
    deepc_convert_params p = deepc_convert_default_params();
    p.type = type;
    if (access(out, F_OK) != 0 && deepc_convert(dir, out, &p)) fail_msg("convert: %s", deepc_open_error());
    deepc_model *m;
    if (deepc_model_open(out, &m)) fail_msg("open: %s", deepc_open_error());
    return m;
}

static void prompt(int vocab, int32_t *ids, int *rids) {
    uint64_t x = 777;
    for (int i = 0; i < N_TOK; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((x >> 33) % (uint64_t)vocab);
        rids[i] = ids[i];
    }
}

static float *run_engine(deepc_model *m, const int32_t *ids, int threads, int batch, bool one_by_one, bool expanded) {
    deepc_model_info mi = { .struct_size = sizeof mi };
    deepc_model_get_info(m, &mi);
    deepc_session_params sp = deepc_session_default_params();
    sp.n_threads = threads;
    sp.n_batch = batch;
    sp.n_ctx = 64;
    sp.mla_expanded = expanded;
    deepc_session *s;
    assert_int_equal(deepc_session_create(m, &sp, &s), DEEPC_OK);
    float *lg = malloc((size_t)N_TOK * mi.n_vocab * sizeof *lg);
    if (one_by_one) {
        for (int i = 0; i < N_TOK; i++) assert_int_equal(deepc_session_eval(s, ids + i, 1, lg + (size_t)i * mi.n_vocab), DEEPC_OK);
    } else {
        assert_int_equal(deepc_session_eval(s, ids, N_TOK, lg), DEEPC_OK);
    }
    deepc_session_destroy(s);
    return lg;
}

/* Tolerances, as for the dense models (test_model_dense.c):
 * f32 storage holds the checkpoint's effective weights exactly (BF16 values,
 * or FP8 x block scale), so only the fp16 latent cache (2^-11 relative) and
 * fp32 summation order differ from the reference: rms <= 0.5% of the logit
 * std and max <= 0.05 (measured 0.005-0.008; 0.028 for the V2-group preset
 * whose routed_scaling_factor of 16 multiplies expert outputs, and with them
 * the rounding, 16x). A routing decision flipped by such small differences
 * would move logits by whole units, so this also checks that routing matches.
 * q8_0 adds weight and activation quantization noise (~0.5% per product,
 * 4-5% of the logit std on the dense models). In these tiny random models the
 * router scores are close together, and that noise flips an expert choice at
 * some positions (V3: sigmoid scores near 0.5 plus bias); a flip moves that
 * position's logits by up to a few units and attention carries it onward. So
 * for q8_0 we bound position 0, which depends on its own token only (measured
 * 4.3% V2, 2.4% V3, as the dense models' 4-5%), at 8%, and the whole sequence
 * at 35% (measured 5% V2, 20% V3). */
static double pos_rel_rms(const float *got, const float *want, int pos, int vocab, const float *all, size_t n) {
    double se = 0, s = 0, s2 = 0;
    for (int v = 0; v < vocab; v++) {
        double d = (double)got[(size_t)pos * vocab + v] - want[(size_t)pos * vocab + v];
        se += d * d;
    }
    for (size_t i = 0; i < n; i++) { s += all[i]; s2 += (double)all[i] * all[i]; }
    return sqrt(se / vocab) / sqrt(s2 / n - (s / n) * (s / n));
}

static void check_preset(const char *preset, const char *const *types, int n_types) {
    hfgen_moe_spec spec;
    char dir[512];
    make_ckpt(preset, &spec, dir, sizeof dir);
    int32_t ids[N_TOK];
    int rids[N_TOK];
    prompt(hfgen_moe_tokenizer_size(&spec), ids, rids);
    ref_moe *ref = ref_moe_from_spec(&spec);
    assert_non_null(ref);
    size_t n = (size_t)N_TOK * spec.vocab;
    float *want = malloc(n * sizeof *want);
    assert_int_equal(ref_moe_forward(ref, rids, N_TOK, want), 0);
    for (int t = 0; t < n_types; t++) {
        deepc_model *m = convert_open(dir, types[t]);
        float *got = run_engine(m, ids, 1, 16, false, false);     /* 24 = 16 + 8: two batches */
        float *tok = run_engine(m, ids, 2, 16, true, false);
        double db = tu_max_abs_diff(got, want, n), dt = tu_max_abs_diff(tok, want, n);
        double rb = tu_rel_rms(got, want, n), rt = tu_rel_rms(tok, want, n);
        double p0 = pos_rel_rms(got, want, 0, spec.vocab, want, n);
        printf("  %s %-5s vs fp32 reference: max |diff| prefill %.3g, token-by-token %.3g; rms/std %.4f / %.4f; position 0 rms/std %.4f\n",
               preset, types[t], db, dt, rb, rt, p0);
        /* prefill (batches of 16 and 8: experts' pairs through the gemm,
         * 1 thread) and decode (one vec_dot per output, 2 threads) agree bit
         * for bit: the kernels' contract, so routing never flips between them */
        assert_memory_equal(got, tok, n * sizeof *got);
        if (!strcmp(types[t], "f32")) {
            assert_true(db <= 0.05 && dt <= 0.05);
            assert_true(rb <= 0.005 && rt <= 0.005);
        } else {
            assert_true(p0 <= 0.08);
            assert_true(rb <= 0.35 && rt <= 0.35);
        }
        free(got);
        free(tok);
        deepc_model_close(m);
    }
    free(want);
    ref_moe_free(ref);
}

static void test_deepseek2_lite_like_matches_reference(void **state) {
    (void)state;
    const char *types[] = { "f32", "q8_0" };
    check_preset("tiny-deepseek2", types, 2);
}

static void test_deepseek2_group_limited_matches_reference(void **state) {
    (void)state;
    const char *types[] = { "f32" };
    check_preset("tiny-deepseek2-group", types, 1);
}

static void test_deepseek3_fp8_matches_reference(void **state) {
    (void)state;
    const char *types[] = { "f32", "q8_0" };
    check_preset("tiny-deepseek3", types, 2);
}

/* The absorbed form (query folded into latent space) and the expanded form
 * (per-head K/V rebuilt from the latent, as HF computes) are the same math in
 * a different order; with f32 weights they differ by fp32 rounding only:
 * measured 2.5e-4 (avx512) to 1.3e-3 (avx2) on logits of std ~2, depending on
 * each backend's summation order. 5e-3 is 0.25% of the std: a wrong head
 * slice, transpose or scale gives errors of whole units. */
static void test_absorbed_and_expanded_mla_agree(void **state) {
    (void)state;
    const char *presets[] = { "tiny-deepseek2", "tiny-deepseek3" };
    for (int k = 0; k < 2; k++) {
        hfgen_moe_spec spec;
        char dir[512];
        make_ckpt(presets[k], &spec, dir, sizeof dir);
        int32_t ids[N_TOK];
        int rids[N_TOK];
        prompt(hfgen_moe_tokenizer_size(&spec), ids, rids);
        deepc_model *m = convert_open(dir, "f32");
        float *a = run_engine(m, ids, 2, 16, false, false);
        float *e = run_engine(m, ids, 2, 16, false, true);
        double d = tu_max_abs_diff(a, e, (size_t)N_TOK * spec.vocab);
        printf("  %s: absorbed vs expanded MLA max |diff| %.3g\n", presets[k], d);
        assert_true(d <= 5e-3);
        free(a); free(e);
        deepc_model_close(m);
    }
}

static void test_moe_threads_give_identical_logits(void **state) {
    (void)state;
    hfgen_moe_spec spec;
    char dir[512];
    make_ckpt("tiny-deepseek3", &spec, dir, sizeof dir);
    int32_t ids[N_TOK];
    int rids[N_TOK];
    prompt(hfgen_moe_tokenizer_size(&spec), ids, rids);
    deepc_model *m = convert_open(dir, "q8_0");
    float *a = run_engine(m, ids, 1, 16, false, false);
    float *b = run_engine(m, ids, 3, 16, false, false);
    assert_memory_equal(a, b, (size_t)N_TOK * spec.vocab * sizeof(float));
    free(a); free(b);
    deepc_model_close(m);
}

static void test_info_reports_mla_cache_and_mtp(void **state) {
    (void)state;
    hfgen_moe_spec spec;
    char dir[512];
    make_ckpt("tiny-deepseek3", &spec, dir, sizeof dir);
    deepc_model *m = convert_open(dir, "q8_0");
    deepc_model_info mi = { .struct_size = sizeof mi };
    deepc_model_get_info(m, &mi);
    /* only the latent and the rope key are cached, in fp16 */
    assert_int_equal(mi.kv_bytes_per_token, (uint64_t)(spec.kv_lora_rank + spec.qk_rope_head_dim) * spec.n_layers * 2);
    assert_int_equal(mi.n_mtp, spec.num_nextn_predict_layers);
    assert_true(mi.n_params_active < mi.n_params);
    /* the MTP layer is in the file, flagged optional */
    bool found = false;
    char prefix[64];
    snprintf(prefix, sizeof prefix, "model.layers.%d.", spec.n_layers);
    for (size_t i = 0; i < deepc_model_n_tensors(m); i++) {
        deepc_tensor_info ti;
        deepc_model_tensor(m, i, &ti);
        if (!strncmp(ti.name, prefix, strlen(prefix))) found = true;
    }
    assert_true(found);
    deepc_model_close(m);
}

/* ---- the low-bit types ---------------------------------------------------- */

/* tiny-deepseek3 (FP8 E4M3 with 128x128 scales) widened so every matrix row
 * is whole 256-element super-blocks or 128-element fp8 blocks: hidden,
 * q_lora, kv_lora and expert width 256, nope = v = 128 (each head's kv_b
 * rows start on a scale block, as in the release), dense MLP 512. */
static void make_wide_v3(hfgen_moe_spec *spec, char *dir, size_t cap) {
    assert_int_equal(hfgen_moe_preset("tiny-deepseek3", spec), 0);
    spec->hidden = 256;
    spec->q_lora_rank = 256;
    spec->kv_lora_rank = 256;
    spec->qk_nope_head_dim = 128;
    spec->v_head_dim = 128;
    spec->intermediate_size = 512;
    spec->moe_intermediate_size = 256;
    snprintf(dir, cap, "%s/wide-deepseek3", root);
    if (access(dir, F_OK) == 0) return;
    deepc_err err = { "" };
    if (hfgen_moe_write(dir, spec, NULL, NULL, NULL, &err)) fail_msg("hfgen_moe_write: %s", err.msg);
}

/* --type fp8 on an FP8 checkpoint copies codes and block scales: every
 * tensor that was F8_E4M3 in the checkpoint dequantizes bit for bit to what
 * the f32 conversion stores (code value x scale_inv, one fp32 multiply on
 * both sides), kv_b_proj's transposed key half included. BF16 tensors
 * (embedding, head) are quantized instead and are not compared. */
static void test_fp8_checkpoint_is_stored_losslessly(void **state) {
    (void)state;
    hfgen_moe_spec spec;
    char dir[512], p8[600], p32[600];
    make_wide_v3(&spec, dir, sizeof dir);
    deepc_model_close(convert_open(dir, "fp8"));
    deepc_model_close(convert_open(dir, "f32"));
    snprintf(p8, sizeof p8, "%s/model-fp8.dqf", dir);
    snprintf(p32, sizeof p32, "%s/model-f32.dqf", dir);
    deepc_err err;
    deepc_dqf *a = deepc_dqf_open(p8, &err), *b = deepc_dqf_open(p32, &err);
    deepc_st *st = deepc_st_open_dir(dir, &err);
    assert_non_null(a); assert_non_null(b); assert_non_null(st);
    size_t compared = 0, fp8_src = 0;
    for (size_t i = 0; i < deepc_dqf_n_tensors(a); i++) {
        const deepc_dqf_tensor *t = deepc_dqf_tensor_at(a, i);
        char src[200];
        snprintf(src, sizeof src, "%s", t->name);
        char *kb = strstr(src, "self_attn.k_b_proj"), *vb = strstr(src, "self_attn.v_b_proj");
        if (kb || vb) snprintf(kb ? kb : vb, sizeof src - (size_t)((kb ? kb : vb) - src), "self_attn.kv_b_proj.weight");
        const deepc_st_tensor *s = deepc_st_find(st, src);
        assert_non_null(s);
        if (s->dtype != DEEPC_ST_F8_E4M3) continue;
        fp8_src++;
        assert_int_equal(t->type, DEEPC_TYPE_FP8_B128);
        const deepc_dqf_tensor *r = deepc_dqf_find(b, t->name);
        assert_non_null(r);
        assert_int_equal(r->n_elems, t->n_elems);
        float *y = malloc(t->n_elems * sizeof *y);
        deepc_dequantize_row(DEEPC_TYPE_FP8_B128, t->data, y, t->n_elems);
        if (memcmp(y, r->data, t->n_elems * sizeof *y)) fail_msg("%s: fp8_b128 differs from the f32 conversion", t->name);
        free(y);
        compared++;
    }
    printf("  %zu tensors stored from FP8 without re-quantizing, all equal to the f32 conversion\n", compared);
    assert_true(compared == fp8_src && compared > 50);
    deepc_st_close(st);
    deepc_dqf_close(a);
    deepc_dqf_close(b);
}

/* The k-quants and fp8 end to end on the widened V3 (FP8 source, so the
 * weights the reference sees are the E4M3 values times their scales).
 * As for q8_0 (see pos_rel_rms above), routing flips make the whole
 * sequence noisy, so position 0 is bounded tightly and the sequence
 * loosely. Measured rms/std at position 0 / over the sequence: f32
 * 0.0003 / 0.0007, q8_0 0.024 / 0.17; fp8 0.045 / 0.23 (everything but the
 * BF16 embedding and head is copied exactly; those two are rounded to
 * E4M3); q6_k 0.058 / 0.23, q4_k 0.27 / 0.59, q3_k 0.52 / 0.89, q2_k
 * 0.82 / 1.17 (3.3-3.7x the per-weight error of test_quant_k at position
 * 0, as on the dense model; q6_k's sequence is as noisy as q8_0's and
 * fp8's: routing flips, not weight error, dominate it there);
 * recipes q4 0.21 / 0.57 and q2-experts 0.29 / 0.61 (q6_k head, q4_k
 * embedding, attention and MLPs with q6_k in the sensitive layers).
 * Allowed: 1.3x measured at position 0, 1.35x over the sequence; q2_k's
 * sequence is not bounded (1.17 is already near the 1.41 of unrelated
 * logits); its position 0 and its kernels (test_kernels) are. A wrong
 * layout or kernel gives >= 1 at position 0. The recipes must also put the
 * types where they promise. */
static void test_wide_deepseek3_low_bit_types(void **state) {
    (void)state;
    static const struct { const char *type; double p0, seq; } cases[] = {
        { "fp8", 0.06, 0.32 }, { "q6_k", 0.076, 0.31 }, { "q4_k", 0.36, 0.80 }, { "q3_k", 0.68, 1.2 }, { "q2_k", 1.07, INFINITY },
        { "q4", 0.28, 0.77 }, { "q2-experts", 0.38, 0.82 },
    };
    hfgen_moe_spec spec;
    char dir[512];
    make_wide_v3(&spec, dir, sizeof dir);
    int32_t ids[N_TOK];
    int rids[N_TOK];
    prompt(hfgen_moe_tokenizer_size(&spec), ids, rids);
    ref_moe *ref = ref_moe_from_spec(&spec);
    assert_non_null(ref);
    size_t n = (size_t)N_TOK * spec.vocab;
    float *want = malloc(n * sizeof *want);
    assert_int_equal(ref_moe_forward(ref, rids, N_TOK, want), 0);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        deepc_model *m = convert_open(dir, cases[c].type);
        float *got = run_engine(m, ids, 1, 16, false, false);
        float *tok = run_engine(m, ids, 2, 16, true, false);
        double rb = tu_rel_rms(got, want, n), rt = tu_rel_rms(tok, want, n);
        double p0 = pos_rel_rms(got, want, 0, spec.vocab, want, n);
        printf("  wide-deepseek3 %-10s vs fp32 reference: rms/std %.4f / %.4f (allowed %.2f); position 0 rms/std %.4f (allowed %.2f)\n",
               cases[c].type, rb, rt, cases[c].seq, p0, cases[c].p0);
        assert_true(p0 <= cases[c].p0);
        assert_true(rb <= cases[c].seq && rt <= cases[c].seq);
        assert_memory_equal(got, tok, n * sizeof *got); /* prefill = decode, bit for bit (see check_preset) */
        if (!strcmp(cases[c].type, "q2-experts") || !strcmp(cases[c].type, "q4")) {
            bool q2 = cases[c].type[1] == '2';
            for (size_t i = 0; i < deepc_model_n_tensors(m); i++) {
                deepc_tensor_info ti;
                deepc_model_tensor(m, i, &ti);
                const char *want_type = NULL;
                if (strstr(ti.name, ".mlp.experts.")) want_type = !q2 ? "q4_k" : strstr(ti.name, "down_proj") ? "q3_k" : "q2_k";
                else if (!strcmp(ti.name, "model.embed_tokens.weight")) want_type = "q4_k";
                else if (!strcmp(ti.name, "lm_head.weight") || strstr(ti.name, ".kv_a_proj_with_mqa.")) want_type = "q6_k";
                if (want_type && strcmp(ti.type, want_type)) fail_msg("%s: %s is %s, want %s", cases[c].type, ti.name, ti.type, want_type);
            }
        }
        free(got);
        free(tok);
        deepc_model_close(m);
    }
    free(want);
    ref_moe_free(ref);
}

/* q4_1, the converter's fallback for k-quants on rows that are not whole
 * 256-element super-blocks, end to end on tiny-deepseek2 (hidden 64, expert
 * width 32: no matrix row is a multiple of 256, so --type q4_k and the q4
 * recipe store every quantized matrix that would be q4_k as q4_1 - V2-Lite's
 * situation for its 1408-wide expert down_proj). The types must be where
 * promised, and the logits vs the fp32 reference within bounds set like
 * test_wide_deepseek3_low_bit_types': 1.3x the measured position-0 error,
 * 1.35x the sequence's. Measured rms/std at position 0 / over the sequence:
 * q8_0 0.043 / 0.051 (the contrast: no q4_1), q4_k (74 q4_1 tensors)
 * 0.201 / 0.326, q4 (67; q6_k head, kv_a_proj and sensitive layers' value and
 * down projections, rows of 32 for them become q8_0) 0.192 / 0.314 - the same
 * order as q4_k on the widened V3 (0.27 / 0.59), as a 4-bit type should
 * be. A broken q4_1 layout or kernel gives >= 1 at position 0. */
static void test_q4_1_fallback_matches_reference(void **state) {
    (void)state;
    static const char *const types[] = { "q8_0", "q4_k", "q4" };
    static const double p0_measured[] = { 0.043, 0.201, 0.192 }, seq_measured[] = { 0.051, 0.326, 0.314 };
    hfgen_moe_spec spec;
    char dir[512];
    make_ckpt("tiny-deepseek2", &spec, dir, sizeof dir);
    assert_true(spec.hidden % 256 != 0 && spec.moe_intermediate_size % 256 != 0);
    int32_t ids[N_TOK];
    int rids[N_TOK];
    prompt(hfgen_moe_tokenizer_size(&spec), ids, rids);
    ref_moe *ref = ref_moe_from_spec(&spec);
    assert_non_null(ref);
    size_t n = (size_t)N_TOK * spec.vocab;
    float *want = malloc(n * sizeof *want);
    assert_int_equal(ref_moe_forward(ref, rids, N_TOK, want), 0);
    for (size_t c = 0; c < sizeof types / sizeof types[0]; c++) {
        deepc_model *m = convert_open(dir, types[c]);
        size_t n_q41 = 0, n_expert_down = 0;
        for (size_t i = 0; i < deepc_model_n_tensors(m); i++) {
            deepc_tensor_info ti;
            deepc_model_tensor(m, i, &ti);
            bool q41 = !strcmp(ti.type, "q4_1");
            n_q41 += q41;
            if (strstr(ti.name, ".mlp.experts.") && strstr(ti.name, "down_proj")) {
                n_expert_down++;
                /* q8_0 keeps q8_0; the k-quant requests fall back to q4_1 */
                if (q41 != (c > 0)) fail_msg("%s: %s is %s", types[c], ti.name, ti.type);
            }
        }
        assert_true(n_expert_down > 0);
        if (c == 0) assert_int_equal(n_q41, 0);
        float *got = run_engine(m, ids, 1, 16, false, false);
        float *tok = run_engine(m, ids, 2, 16, true, false);
        double rb = tu_rel_rms(got, want, n), rt = tu_rel_rms(tok, want, n);
        double p0 = pos_rel_rms(got, want, 0, spec.vocab, want, n);
        printf("  tiny-deepseek2 %-5s (%zu q4_1 tensors) vs fp32 reference: rms/std %.4f / %.4f; position 0 rms/std %.4f\n",
               types[c], n_q41, rb, rt, p0);
        assert_true(p0 <= 1.3 * p0_measured[c]);
        assert_true(rb <= 1.35 * seq_measured[c] && rt <= 1.35 * seq_measured[c]);
        free(got);
        free(tok);
        deepc_model_close(m);
    }
    free(want);
    ref_moe_free(ref);
}

/* experts are page-aligned records: gate, up, down back to back */
static void test_experts_are_page_aligned_records(void **state) {
    (void)state;
    hfgen_moe_spec spec;
    char dir[512], out[600];
    make_ckpt("tiny-deepseek2", &spec, dir, sizeof dir);
    snprintf(out, sizeof out, "%s/model-q8_0.dqf", dir);
    deepc_model *m = convert_open(dir, "q8_0");
    deepc_model_close(m);
    deepc_err err;
    deepc_dqf *d = deepc_dqf_open(out, &err);
    assert_non_null(d);
    char nm[160];
    int l = spec.first_k_dense_replace;
    for (int e = 0; e < spec.n_routed_experts; e++) {
        snprintf(nm, sizeof nm, "model.layers.%d.mlp.experts.%d.gate_proj.weight", l, e);
        const deepc_dqf_tensor *g = deepc_dqf_find(d, nm);
        snprintf(nm, sizeof nm, "model.layers.%d.mlp.experts.%d.up_proj.weight", l, e);
        const deepc_dqf_tensor *u = deepc_dqf_find(d, nm);
        snprintf(nm, sizeof nm, "model.layers.%d.mlp.experts.%d.down_proj.weight", l, e);
        const deepc_dqf_tensor *dn = deepc_dqf_find(d, nm);
        assert_non_null(g); assert_non_null(u); assert_non_null(dn);
        assert_int_equal(g->offset % 4096, 0);
        assert_true(u->offset >= g->offset + g->size && u->offset < g->offset + g->size + DEEPC_DQF_ALIGN);
        assert_true(dn->offset >= u->offset + u->size && dn->offset < u->offset + u->size + DEEPC_DQF_ALIGN);
    }
    deepc_dqf_close(d);
}

/* A config whose routing settings contradict each other, or a checkpoint
 * whose FP8 scales are missing, is refused with the problem named. */
static void expect_refusal(const char *preset, const char *file, const char *from, const char *to, const char *needle) {
    hfgen_moe_spec spec;
    char dir[512], copy[600], cmd[3000], p[700], out[700];
    make_ckpt(preset, &spec, dir, sizeof dir);
    snprintf(copy, sizeof copy, "%s-bad", dir);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir '%s' && cp '%s'/*.json '%s'/*.safetensors '%s'/", copy, copy, dir, dir, copy);
    assert_int_equal(system(cmd), 0);
    snprintf(p, sizeof p, "%s/%s", copy, file);
    assert_int_equal(tu_patch_file(p, from, to), 0);
    snprintf(out, sizeof out, "%s/out.dqf", copy);
    deepc_convert_params cp = deepc_convert_default_params();
    assert_int_not_equal(deepc_convert(copy, out, &cp), DEEPC_OK);
    if (!strstr(deepc_open_error(), needle)) fail_msg("error '%s' does not mention '%s'", deepc_open_error(), needle);
    assert_int_not_equal(access(out, F_OK), 0);
}

static void test_inconsistent_moe_config_is_refused(void **state) {
    (void)state;
    /* 16 experts cannot form 3 equal groups */
    expect_refusal("tiny-deepseek3", "config.json", "\"n_group\": 4", "\"n_group\": 3", "inconsistent MoE routing settings");
    /* keeping 5 of 4 groups */
    expect_refusal("tiny-deepseek3", "config.json", "\"topk_group\": 2", "\"topk_group\": 5", "inconsistent MoE routing settings");
    expect_refusal("tiny-deepseek3", "config.json", "\"topk_method\": \"noaux_tc\"", "\"topk_method\": \"auxfree\"", "topk_method 'auxfree'");
    expect_refusal("tiny-deepseek3", "config.json", "\"scoring_func\": \"sigmoid\"", "\"scoring_func\": \"relu\"", "scoring_func 'relu'");
    /* an FP8 weight whose block scales are gone (renamed out of reach) */
    expect_refusal("tiny-deepseek3", "model.safetensors", "q_a_proj.weight_scale_inv", "q_a_proj.weight_scale_XXX", "q_a_proj.weight_scale_inv' block scales");
}

/* ---- where the weights live: owned copy (default) vs the file mapping ---- */

static deepc_model *open_mode(const char *path, bool use_mmap) {
    deepc_model_params p = deepc_model_default_params();
    p.use_mmap = use_mmap;
    deepc_model *m = NULL;
    if (deepc_model_open_ex(path, &p, &m)) fail_msg("open (mmap %d): %s", use_mmap, deepc_open_error());
    return m;
}

static void copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    assert_non_null(a);
    assert_non_null(b);
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) assert_int_equal(fwrite(buf, 1, n, b), n);
    fclose(a);
    assert_int_equal(fclose(b), 0);
}

/* Overwrites, in the file, the data of the routed experts (experts = true)
 * or of every other tensor. */
static void scribble(const char *path, bool experts) {
    deepc_err err;
    deepc_dqf *d = deepc_dqf_open(path, &err);
    assert_non_null(d);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    for (size_t i = 0; i < deepc_dqf_n_tensors(d); i++) {
        const deepc_dqf_tensor *t = deepc_dqf_tensor_at(d, i);
        if ((strstr(t->name, ".mlp.experts.") != NULL) != experts) continue;
        uint8_t *junk = malloc((size_t)t->size);
        memset(junk, 0x7f, (size_t)t->size);
        assert_int_equal(pwrite(fd, junk, (size_t)t->size, (off_t)t->offset), (ssize_t)t->size);
        free(junk);
    }
    close(fd);
    deepc_dqf_close(d);
}

/* Logits of the prompt (batches of 8) with an expert cache budget (0 = all
 * experts in place); *streamed says whether the store read experts. */
static float *run_budget(deepc_model *m, const int32_t *ids, uint64_t budget, bool *streamed) {
    deepc_model_info mi = { .struct_size = sizeof mi };
    deepc_model_get_info(m, &mi);
    deepc_session_params sp = deepc_session_default_params();
    sp.n_threads = 2;
    sp.n_batch = 8;
    sp.n_ctx = 64;
    sp.expert_cache_bytes = budget;
    deepc_session *s;
    if (deepc_session_create(m, &sp, &s)) fail_msg("session: %s", deepc_open_error());
    float *lg = malloc((size_t)N_TOK * mi.n_vocab * sizeof *lg);
    assert_int_equal(deepc_session_eval(s, ids, N_TOK, lg), DEEPC_OK);
    deepc_expert_stats st = { .struct_size = sizeof st };
    assert_int_equal(deepc_session_expert_stats(s, &st), DEEPC_OK);
    if (streamed) *streamed = st.streaming && st.misses > 0;
    deepc_session_destroy(s);
    return lg;
}

/* Dense weights in the owned copy, routed experts in the mapping: the same
 * bytes as the all-mapped model, so logits are bit-identical, with the
 * experts in place and with a small expert cache that streams them from the
 * file. Scribbling over every non-expert tensor in the file afterwards
 * changes nothing for the owned model (in place or streaming: the store
 * still finds the experts at their file offsets), while scribbling over the
 * experts does change it: they were not copied. */
static void test_owned_and_mapped_weights_give_identical_logits_moe(void **state) {
    (void)state;
    static const char *presets[] = { "tiny-deepseek2", "tiny-deepseek3" };
    for (int k = 0; k < 2; k++) {
        hfgen_moe_spec spec;
        char dir[512], copy[700];
        make_ckpt(presets[k], &spec, dir, sizeof dir);
        deepc_model_close(convert_open(dir, "q8_0"));
        char src[600];
        snprintf(src, sizeof src, "%s/model-q8_0.dqf", dir);
        snprintf(copy, sizeof copy, "%s/scribble.dqf", dir);
        copy_file(src, copy);
        int32_t ids[N_TOK];
        int rids[N_TOK];
        prompt(hfgen_moe_tokenizer_size(&spec), ids, rids);
        size_t nl = (size_t)N_TOK * spec.vocab;

        deepc_model *mm = open_mode(copy, true), *mo = open_mode(copy, false);
        deepc_model_info im = { .struct_size = sizeof im }, io = { .struct_size = sizeof io };
        deepc_model_get_info(mm, &im);
        deepc_model_get_info(mo, &io);
        assert_true(im.weights_mapped && im.owned_weight_bytes == 0);
        assert_true(!io.weights_mapped && io.expert_bytes > 0);
        assert_true(io.owned_weight_bytes >= io.weight_bytes - io.expert_bytes);
        uint64_t budget = io.expert_bytes / 4;
        printf("  %s: %llu weight bytes, %llu of them routed experts; owned buffer %llu; expert cache %llu\n", presets[k],
               (unsigned long long)io.weight_bytes, (unsigned long long)io.expert_bytes,
               (unsigned long long)io.owned_weight_bytes, (unsigned long long)budget);

        bool streamed = false;
        float *a = run_budget(mm, ids, 0, NULL), *b = run_budget(mo, ids, 0, NULL);
        assert_memory_equal(a, b, nl * sizeof *a);
        float *c = run_budget(mo, ids, budget, &streamed);
        assert_true(streamed);
        assert_memory_equal(a, c, nl * sizeof *a);
        float *d = run_budget(mm, ids, budget, &streamed);
        assert_memory_equal(a, d, nl * sizeof *a);

        scribble(copy, false);
        float *b2 = run_budget(mo, ids, 0, NULL), *c2 = run_budget(mo, ids, budget, NULL);
        assert_memory_equal(a, b2, nl * sizeof *a);
        assert_memory_equal(a, c2, nl * sizeof *a);
#ifdef __linux__   /* a private read-only mapping shows later writes to the file on Linux */
        scribble(copy, true);
        float *b3 = run_budget(mo, ids, 0, NULL);
        assert_true(memcmp(a, b3, nl * sizeof *a) != 0);
        free(b3);
#endif
        free(a); free(b); free(c); free(d); free(b2); free(c2);
        deepc_model_close(mm);
        deepc_model_close(mo);
        remove(copy);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deepseek2_lite_like_matches_reference),
        cmocka_unit_test(test_deepseek2_group_limited_matches_reference),
        cmocka_unit_test(test_deepseek3_fp8_matches_reference),
        cmocka_unit_test(test_absorbed_and_expanded_mla_agree),
        cmocka_unit_test(test_moe_threads_give_identical_logits),
        cmocka_unit_test(test_info_reports_mla_cache_and_mtp),
        cmocka_unit_test(test_experts_are_page_aligned_records),
        cmocka_unit_test(test_inconsistent_moe_config_is_refused),
        cmocka_unit_test(test_fp8_checkpoint_is_stored_losslessly),
        cmocka_unit_test(test_wide_deepseek3_low_bit_types),
        cmocka_unit_test(test_q4_1_fallback_matches_reference),
        cmocka_unit_test(test_owned_and_mapped_weights_give_identical_logits_moe),
    };
    return cmocka_run_group_tests_name("model_moe", tests, setup, teardown);
}
