/* test_hfgen_moe.c - the DeepSeek-V2 / V3 checkpoint generator
 * (test/support/hfgen_moe.c) and its fp32 reference (test/support/ref_moe.c)
 * checked on their own, before the engine is compared against them. Files
 * are read back with the small local scan of test/support/hfread.h (not the
 * engine's readers), FP8 is
 * decoded with a table written here from the E4M3 definition, and the MLA
 * reference is checked against an absorbed-form attention written here with
 * the interleaved (complex-pair) RoPE of DeepSeek's inference/model.py. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hfgen_moe.h"
#include "hfread.h"
#include "ref_moe.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ---- helpers ------------------------------------------------------------ */

static hfgen_moe_spec preset(const char *name) {
    hfgen_moe_spec s;
    assert_int_equal(hfgen_moe_preset(name, &s), 0);
    return s;
}

/* The checkpoint of s, written to a scratch directory and read back
 * (hfr_close removes it). */
static hfr_checkpoint written(const hfgen_moe_spec *s) {
    hfr_checkpoint c;
    assert_int_equal(hfr_write_moe(&c, s), 0);
    return c;
}

static const char *const TINY[] = {"tiny-deepseek2", "tiny-deepseek2-group", "tiny-deepseek3"};

/* The fp32 reference of the k-th tiny preset (its spec in *s). */
static ref_moe *tiny_ref(size_t k, hfgen_moe_spec *s) {
    *s = preset(TINY[k]);
    ref_moe *m = ref_moe_from_spec(s);
    assert_non_null(m);
    return m;
}

/* E4M3 decoded from its definition (sign, 4-bit exponent with bias 7,
 * 3-bit mantissa, subnormals at exponent 0, 0x7F NaN), written here
 * independently of hfgen_moe.c. */
static float e4m3(uint8_t b) {
    int e = (b >> 3) & 15, m = b & 7;
    double v = e == 0 ? m / 8.0 * pow(2, -6) : (1.0 + m / 8.0) * pow(2, e - 7);
    if (e == 15 && m == 7) v = NAN;
    return (float)((b & 0x80) ? -v : v);
}

/* ---- presets and validation --------------------------------------------- */

/* Every preset validates; the tiny ones give the tokenizer every row but the
 * padding; deepseek-v2-lite has the published 15.7B parameters; the FP8
 * preset for memory tests holds 4-5 GB of tensor data. */
static void test_presets_are_valid_and_sized(void **state) {
    (void)state;
    for (const char *const *p = hfgen_moe_preset_names(); *p; p++) {
        hfgen_moe_spec s = preset(*p);
        deepc_err err;
        err.msg[0] = 0;
        assert_int_equal(hfgen_moe_validate(&s, &err), 0);
        assert_true(hfgen_moe_tokenizer_size(&s) <= s.vocab);
        if (s.vocab < 10000) assert_int_equal(hfgen_moe_tokenizer_size(&s), s.vocab - s.vocab / 32);
    }
    hfgen_moe_spec lite = preset("deepseek-v2-lite");
    uint64_t n = hfgen_moe_param_count(&lite);
    assert_true(n > 15600000000ull && n < 15800000000ull);
    hfgen_moe_spec big = preset("deepseek-v3-fp8-4g");
    assert_true(hfgen_moe_tensor_bytes(&big) > 4000000000ull && hfgen_moe_tensor_bytes(&big) < 5000000000ull);
    hfgen_moe_spec bad;
    assert_int_equal(hfgen_moe_preset("tiny-qwen2", &bad), -1);
}

static void test_validate_rejects_inconsistent_specs(void **state) {
    (void)state;
    deepc_err err;
    hfgen_moe_spec s = preset("tiny-deepseek3");
    s.num_experts_per_tok = 17;                 /* more than 16 experts */
    err.msg[0] = 0;
    assert_int_equal(hfgen_moe_validate(&s, &err), -1);
    assert_non_null(strstr(err.msg, "num_experts_per_tok"));
    s = preset("tiny-deepseek3");
    s.n_group = 3;                              /* does not divide 16 */
    assert_int_equal(hfgen_moe_validate(&s, &err), -1);
    s = preset("tiny-deepseek3");
    s.n_group = 16;                             /* noaux_tc needs 2 experts per group */
    s.topk_group = 8;
    assert_int_equal(hfgen_moe_validate(&s, &err), -1);
    s = preset("tiny-deepseek3");
    s.topk_group = 1;                           /* top-4 does not fit 1 group of 4 ... it does: */
    assert_int_equal(hfgen_moe_validate(&s, &err), 0);
    s.num_experts_per_tok = 5;                  /* ... but 5 do not */
    assert_int_equal(hfgen_moe_validate(&s, &err), -1);
    s = preset("tiny-deepseek2");
    s.dtype = "F8_E4M3";                        /* the spec says "FP8" */
    assert_int_equal(hfgen_moe_validate(&s, &err), -1);
    s = preset("tiny-deepseek2");
    s.arch = "qwen2";
    assert_int_equal(hfgen_moe_validate(&s, &err), -1);
    assert_null(ref_moe_from_spec(&s));
    s = preset("tiny-deepseek2");
    s.qk_rope_head_dim = 31;
    assert_int_equal(hfgen_moe_validate(&s, &err), -1);
    s = preset("tiny-deepseek2");
    s.vocab = 256;                              /* no room for bytes + added tokens */
    assert_int_equal(hfgen_moe_validate(&s, &err), -1);
    s = preset("tiny-deepseek2");
    s.topk_method = "sinkhorn";
    assert_int_equal(hfgen_moe_validate(&s, &err), -1);
}

/* ---- FP8 ---------------------------------------------------------------- */

static void test_fp8_e4m3_rounds_to_nearest_even(void **state) {
    (void)state;
    assert_int_equal(hfgen_f32_to_fp8_e4m3(0.0f), 0x00);
    assert_int_equal(hfgen_f32_to_fp8_e4m3(-0.0f), 0x80);
    assert_int_equal(hfgen_f32_to_fp8_e4m3(1.0f), 0x38);
    assert_int_equal(hfgen_f32_to_fp8_e4m3(-2.0f), 0xC0);
    assert_int_equal(hfgen_f32_to_fp8_e4m3(448.0f), 0x7E);       /* max finite */
    assert_int_equal(hfgen_f32_to_fp8_e4m3(-1000.0f), 0xFE);     /* saturates */
    assert_int_equal(hfgen_f32_to_fp8_e4m3(NAN), 0x7F);
    assert_int_equal(hfgen_f32_to_fp8_e4m3(1.0625f), 0x38);      /* tie between 1 and 1.125: even */
    assert_int_equal(hfgen_f32_to_fp8_e4m3(1.1875f), 0x3A);      /* tie between 1.125 and 1.25: even */
    assert_int_equal(hfgen_f32_to_fp8_e4m3(1.07f), 0x39);        /* above the tie */
    assert_int_equal(hfgen_f32_to_fp8_e4m3(ldexpf(1.0f, -9)), 0x01);   /* smallest subnormal */
    assert_int_equal(hfgen_f32_to_fp8_e4m3(ldexpf(1.0f, -10)), 0x00);  /* tie to even: 0 */
    assert_int_equal(hfgen_f32_to_fp8_e4m3(ldexpf(3.0f, -10)), 0x02);  /* 1.5 units: even 2 */
    assert_int_equal(hfgen_f32_to_fp8_e4m3(ldexpf(15.0f, -10)), 0x08); /* rounds up to 2^-6 */
    assert_int_equal(hfgen_f32_to_fp8_e4m3(ldexpf(1.0f, -6)), 0x08);   /* smallest normal */
    assert_int_equal(hfgen_f32_to_fp8_e4m3(15.5f), 0x58);        /* tie 15 (0x57) / 16 (0x58): even */
    /* every finite code decodes to the value of its definition and back */
    for (int b = 0; b < 256; b++) {
        if ((b & 0x7F) == 0x7F) {
            assert_true(isnan(hfgen_fp8_e4m3_to_f32((uint8_t)b)));
            continue;
        }
        float v = hfgen_fp8_e4m3_to_f32((uint8_t)b);
        assert_true(v == e4m3((uint8_t)b));
        assert_int_equal(hfgen_f32_to_fp8_e4m3(v), b);
    }
}

/* ---- tensor list -------------------------------------------------------- */

/* The V3 release layout: FP8 for every attention / MLP / expert projection
 * with an F32 [ceil(out/128), ceil(in/128)] weight_scale_inv right after it;
 * BF16 embed, lm_head, norms and router; F32 e_score_correction_bias; the
 * MTP layer model.layers.3 with its own embed / enorm / hnorm / eh_proj /
 * shared_head, whose embed and head repeat the main model's. */
static void test_v3_tensor_names_dtypes_and_shapes(void **state) {
    (void)state;
    hfgen_moe_spec s = preset("tiny-deepseek3");
    hfgen_moe_tensor t, u;
    static const struct {
        const char *name, *dtype;
        uint64_t d0, d1;
    } want[] = {
        {"model.embed_tokens.weight", "BF16", 512, 160},
        {"model.layers.0.input_layernorm.weight", "BF16", 160, 0},
        {"model.layers.0.self_attn.q_a_proj.weight", "F8_E4M3", 96, 160},
        {"model.layers.0.self_attn.q_a_proj.weight_scale_inv", "F32", 1, 2},
        {"model.layers.0.self_attn.q_a_layernorm.weight", "BF16", 96, 0},
        {"model.layers.0.self_attn.q_b_proj.weight", "F8_E4M3", 256, 96},
        {"model.layers.0.self_attn.q_b_proj.weight_scale_inv", "F32", 2, 1},
        {"model.layers.0.self_attn.kv_a_proj_with_mqa.weight", "F8_E4M3", 96, 160},
        {"model.layers.0.self_attn.kv_a_layernorm.weight", "BF16", 64, 0},
        {"model.layers.0.self_attn.kv_b_proj.weight", "F8_E4M3", 256, 64},
        {"model.layers.0.self_attn.o_proj.weight", "F8_E4M3", 160, 128},
        {"model.layers.0.self_attn.o_proj.weight_scale_inv", "F32", 2, 1},
        {"model.layers.0.mlp.gate_proj.weight", "F8_E4M3", 320, 160},
        {"model.layers.0.mlp.down_proj.weight_scale_inv", "F32", 2, 3},
        {"model.layers.1.mlp.gate.weight", "BF16", 16, 160},
        {"model.layers.1.mlp.gate.e_score_correction_bias", "F32", 16, 0},
        {"model.layers.1.mlp.experts.15.up_proj.weight", "F8_E4M3", 160, 160},
        {"model.layers.1.mlp.experts.15.up_proj.weight_scale_inv", "F32", 2, 2},
        {"model.layers.2.mlp.shared_experts.down_proj.weight", "F8_E4M3", 160, 160},
        {"model.norm.weight", "BF16", 160, 0},
        {"lm_head.weight", "BF16", 512, 160},
        {"model.layers.3.embed_tokens.weight", "BF16", 512, 160},
        {"model.layers.3.enorm.weight", "BF16", 160, 0},
        {"model.layers.3.hnorm.weight", "BF16", 160, 0},
        {"model.layers.3.eh_proj.weight", "BF16", 160, 320},
        {"model.layers.3.shared_head.norm.weight", "BF16", 160, 0},
        {"model.layers.3.shared_head.head.weight", "BF16", 512, 160},
        {"model.layers.3.self_attn.kv_b_proj.weight", "F8_E4M3", 256, 64},
        {"model.layers.3.mlp.experts.0.gate_proj.weight", "F8_E4M3", 160, 160},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (hfgen_moe_tensor_find(&s, want[i].name, &t) != 0) print_error("missing %s\n", want[i].name);
        assert_int_equal(hfgen_moe_tensor_find(&s, want[i].name, &t), 0);
        assert_string_equal(t.dtype, want[i].dtype);
        assert_true(t.shape[0] == want[i].d0 && t.shape[1] == want[i].d1);
        assert_int_equal(t.ndim, want[i].d1 ? 2 : 1);
    }
    assert_int_equal(hfgen_moe_tensor_find(&s, "model.layers.0.self_attn.q_proj.weight", &t), -1);
    assert_int_equal(hfgen_moe_tensor_find(&s, "model.layers.0.mlp.gate.weight", &t), -1);   /* dense layer */
    assert_int_equal(hfgen_moe_tensor_find(&s, "model.layers.1.mlp.gate_proj.weight", &t), -1);
    assert_int_equal(hfgen_moe_tensor_find(&s, "model.layers.1.mlp.gate.weight_scale_inv", &t), -1);
    assert_int_equal(hfgen_moe_tensor_find(&s, "model.layers.4.input_layernorm.weight", &t), -1);
    /* the MTP embedding and head repeat the main ones */
    assert_int_equal(hfgen_moe_tensor_find(&s, "model.layers.3.embed_tokens.weight", &t), 0);
    assert_int_equal(hfgen_moe_tensor_find(&s, "model.embed_tokens.weight", &u), 0);
    float a[64], b[64];
    hfgen_moe_fill(&s, &t, 5000, a, 64);
    hfgen_moe_fill(&s, &u, 5000, b, 64);
    assert_memory_equal(a, b, sizeof a);
    /* every FP8 weight is directly followed by its scale tensor */
    const int nt = hfgen_moe_tensor_count(&s);
    int n_fp8 = 0;
    for (int i = 0; i < nt; i++) {
        assert_int_equal(hfgen_moe_tensor_at(&s, i, &t), 0);
        if (strcmp(t.dtype, "F8_E4M3") != 0) continue;
        n_fp8++;
        assert_int_equal(hfgen_moe_tensor_at(&s, i + 1, &u), 0);
        char want_name[128];
        snprintf(want_name, sizeof want_name, "%s_scale_inv", t.name);
        assert_string_equal(u.name, want_name);
        assert_true(u.shape[0] == (t.shape[0] + 127) / 128 && u.shape[1] == (t.shape[1] + 127) / 128);
    }
    /* per layer: q_a, q_b, kv_a, kv_b, o + 3 MLP (dense) or 3 x (16 + 1 shared) */
    assert_int_equal(n_fp8, 5 * 4 + 3 + 3 * (3 * 17));
    assert_int_equal(hfgen_moe_tensor_at(&s, nt, &t), -1);
}

/* V2-Lite layout: q_proj (no q_lora), no bias, no MTP, everything BF16. */
static void test_v2_tensor_layout(void **state) {
    (void)state;
    hfgen_moe_spec s = preset("tiny-deepseek2");
    hfgen_moe_tensor t;
    assert_int_equal(hfgen_moe_tensor_find(&s, "model.layers.0.self_attn.q_proj.weight", &t), 0);
    assert_true(t.shape[0] == 4 * 64 && t.shape[1] == 64);
    assert_int_equal(hfgen_moe_tensor_find(&s, "model.layers.0.self_attn.q_a_proj.weight", &t), -1);
    assert_int_equal(hfgen_moe_tensor_find(&s, "model.layers.1.mlp.gate.e_score_correction_bias", &t), -1);
    assert_int_equal(hfgen_moe_tensor_find(&s, "model.layers.2.mlp.shared_experts.up_proj.weight", &t), 0);
    assert_true(t.shape[0] == 2 * 32 && t.shape[1] == 64);   /* moe_inter x n_shared */
    assert_int_equal(hfgen_moe_tensor_find(&s, "model.layers.3.input_layernorm.weight", &t), -1);
    const int nt = hfgen_moe_tensor_count(&s);
    for (int i = 0; i < nt; i++) {
        assert_int_equal(hfgen_moe_tensor_at(&s, i, &t), 0);
        assert_string_equal(t.dtype, "BF16");
    }
    /* embed, 3 x (2 norms + q + kv_a + kv_a_norm + kv_b + o), dense MLP 3,
     * 2 MoE layers x (router + 8 x 3 + 3 shared), norm, lm_head */
    assert_int_equal(nt, 1 + 3 * 7 + 3 + 2 * (1 + 24 + 3) + 2);
}

/* Values do not depend on how a tensor is read: element ranges of the
 * master values and row ranges of the stored values (FP8 bands included). */
static void test_values_are_independent_of_slicing(void **state) {
    (void)state;
    hfgen_moe_spec s = preset("tiny-deepseek3");
    hfgen_moe_tensor t;
    assert_int_equal(hfgen_moe_tensor_find(&s, "model.layers.0.mlp.gate_proj.weight", &t), 0);  /* 320 x 160 */
    const size_t n = (size_t)t.n_elems;
    float *whole = malloc(n * sizeof *whole), *parts = malloc(n * sizeof *parts);
    assert_non_null(whole);
    assert_non_null(parts);
    hfgen_moe_fill(&s, &t, 0, whole, n);
    size_t cuts[] = {0, 1, 2, 7, 1000, 30001, n};
    for (size_t i = 0; i + 1 < sizeof cuts / sizeof cuts[0]; i++)
        hfgen_moe_fill(&s, &t, cuts[i], parts + cuts[i], cuts[i + 1] - cuts[i]);
    assert_memory_equal(whole, parts, n * sizeof *whole);
    assert_int_equal(hfgen_moe_fill_stored(&s, &t, 0, 320, whole), 0);
    uint64_t rows[] = {0, 3, 127, 128, 129, 256, 300, 320};
    for (size_t i = 0; i + 1 < sizeof rows / sizeof rows[0]; i++)
        assert_int_equal(hfgen_moe_fill_stored(&s, &t, rows[i], rows[i + 1] - rows[i], parts + rows[i] * 160), 0);
    assert_memory_equal(whole, parts, n * sizeof *whole);
    assert_int_equal(hfgen_moe_fill_stored(&s, &t, 300, 21, parts), -1);   /* past the end */
    free(whole);
    free(parts);
}

/* The effective FP8 weight (code x block scale) is within E4M3 rounding of
 * the master weight: half a unit in the last place of a 3-bit mantissa is
 * 2^-4 of the value for normals, 2^-10 x scale for subnormals (plus fp32
 * rounding of w / s and q x s, ~2^-23 relative). Each block's largest
 * element maps to exactly +-448: scale = amax / 448. */
static void test_fp8_effective_weights_within_rounding(void **state) {
    (void)state;
    hfgen_moe_spec s = preset("tiny-deepseek3");
    static const char *const names[] = {"model.layers.1.mlp.experts.3.down_proj.weight",
                                        "model.layers.0.self_attn.kv_a_proj_with_mqa.weight",
                                        "model.layers.2.self_attn.q_b_proj.weight"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        hfgen_moe_tensor t, sc;
        char sname[128];
        snprintf(sname, sizeof sname, "%s_scale_inv", names[k]);
        assert_int_equal(hfgen_moe_tensor_find(&s, names[k], &t), 0);
        assert_int_equal(hfgen_moe_tensor_find(&s, sname, &sc), 0);
        const size_t R = (size_t)t.shape[0], C = (size_t)t.shape[1], n = R * C;
        float *w = malloc(n * sizeof *w), *eff = malloc(n * sizeof *eff);
        float *scales = malloc((size_t)sc.n_elems * sizeof *scales);
        assert_true(w && eff && scales);
        hfgen_moe_fill(&s, &t, 0, w, n);
        assert_int_equal(hfgen_moe_fill_stored(&s, &t, 0, R, eff), 0);
        assert_int_equal(hfgen_moe_fill_stored(&s, &sc, 0, sc.shape[0], scales), 0);
        const size_t nbc = (size_t)sc.shape[1];
        for (size_t br = 0; br < (size_t)sc.shape[0]; br++)
            for (size_t bc = 0; bc < nbc; bc++) {
                const float scale = scales[br * nbc + bc];
                float amax = 0.0f;
                for (size_t r = br * 128; r < R && r < br * 128 + 128; r++)
                    for (size_t c = bc * 128; c < C && c < bc * 128 + 128; c++) {
                        const float a = w[r * C + c], e = eff[r * C + c];
                        amax = fmaxf(amax, fabsf(a));
                        const double bound = fabs(a) * (0.0625 + 1e-6) + scale * ldexp(1.0, -10) * (1 + 1e-6);
                        assert_true(fabs((double)e - a) <= bound);
                    }
                assert_true(fabs(scale - amax / 448.0f) <= 1e-6 * amax);
            }
        free(w);
        free(eff);
        free(scales);
    }
}

/* ---- files -------------------------------------------------------------- */

/* Two shards of tiny-deepseek3: every tensor once, in the shard the index
 * names, with its dtype and shape, offsets contiguous and covering each
 * file; the index total_size is the sum; FP8 bytes times the stored scales
 * decode (with the table above) to exactly the reference's values. */
static void test_sharded_fp8_checkpoint_is_well_formed(void **state) {
    (void)state;
    hfgen_moe_spec s = preset("tiny-deepseek3");
    s.n_shards = 2;
    hfr_checkpoint c = written(&s);  /* model-0000K-of-000002.safetensors + index */
    assert_false(hfr_exists(c.dir, "model.safetensors"));
    uint64_t cover[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(c.shard[k].header_len % 8, 0);
        assert_non_null(strstr(c.shard[k].header, "\"__metadata__\":{\"format\":\"pt\"}"));
    }
    const int nt = hfgen_moe_tensor_count(&s);
    assert_int_equal(hfr_count(c.shard[0].header, "\"dtype\":") + hfr_count(c.shard[1].header, "\"dtype\":"), nt);
    assert_int_equal(hfr_count(c.index, ".safetensors\""), nt);
    uint64_t total = 0;
    for (int i = 0; i < nt; i++) {
        hfgen_moe_tensor t;
        assert_int_equal(hfgen_moe_tensor_at(&s, i, &t), 0);
        hfr_entry e;
        const int k = hfr_locate(&c, t.name, &e);   /* named by the index, in that shard only */
        assert_true(k == 0 || k == 1);
        assert_string_equal(e.dtype, t.dtype);
        assert_int_equal(e.ndim, t.ndim);
        assert_true(e.shape[0] == t.shape[0] && e.shape[1] == t.shape[1]);
        const uint64_t esz = strcmp(t.dtype, "F32") == 0 ? 4 : strcmp(t.dtype, "BF16") == 0 ? 2 : 1;
        assert_true(e.end - e.begin == t.n_elems * esz);
        cover[k] += e.end - e.begin;
        total += e.end - e.begin;
        if (t.kind == HFGEN_MOE_SCALE_INV) {        /* a scale lives in its weight's shard */
            char wname[128];
            snprintf(wname, sizeof wname, "%.*s", (int)(strlen(t.name) - strlen("_scale_inv")), t.name);
            assert_true(hfr_st_find(c.shard[k].header, wname, &e));
        }
    }
    for (int k = 0; k < 2; k++) assert_true(cover[k] == hfr_data_bytes(&c, k));
    char want[64];
    snprintf(want, sizeof want, "\"total_size\": %llu", (unsigned long long)total);
    assert_non_null(strstr(c.index, want));
    assert_true(total == hfgen_moe_tensor_bytes(&s));

    /* file bytes -> values, for each stored dtype */
    static const char *const check[] = {"model.layers.1.mlp.experts.9.gate_proj.weight",
                                        "model.layers.0.self_attn.o_proj.weight", "model.layers.2.mlp.gate.weight",
                                        "model.layers.2.mlp.gate.e_score_correction_bias",
                                        "model.layers.3.shared_head.head.weight"};
    for (size_t ci = 0; ci < sizeof check / sizeof check[0]; ci++) {
        hfgen_moe_tensor t;
        assert_int_equal(hfgen_moe_tensor_find(&s, check[ci], &t), 0);
        const size_t rows = t.ndim == 2 ? (size_t)t.shape[0] : 1, n = (size_t)t.n_elems;
        const size_t cols = n / rows;
        float *ref = malloc(n * sizeof *ref);
        assert_non_null(ref);
        assert_int_equal(hfgen_moe_fill_stored(&s, &t, 0, rows, ref), 0);
        hfr_entry e, es;
        const int k = hfr_locate(&c, t.name, &e);
        assert_true(k >= 0);
        const uint8_t *p = hfr_data(&c, k, &e);
        assert_non_null(p);
        if (strcmp(t.dtype, "F8_E4M3") == 0) {
            char sname[128];
            snprintf(sname, sizeof sname, "%s_scale_inv", t.name);
            assert_true(hfr_st_find(c.shard[k].header, sname, &es));
            const uint8_t *ps = hfr_data(&c, k, &es);
            assert_non_null(ps);
            for (size_t r = 0; r < rows; r++)
                for (size_t j = 0; j < cols; j++) {
                    const float scale = hfr_le_f32(ps + 4 * ((r / 128) * es.shape[1] + j / 128));
                    const float v = e4m3(p[r * cols + j]) * scale;
                    assert_true(v == ref[r * cols + j]);
                }
        } else if (strcmp(t.dtype, "BF16") == 0) {
            for (size_t i = 0; i < n; i++) {
                uint32_t u = (uint32_t)hfr_le_u16(p + 2 * i) << 16;
                float v;
                memcpy(&v, &u, 4);
                assert_true(v == ref[i]);
            }
        } else {
            for (size_t i = 0; i < n; i++) assert_true(hfr_le_f32(p + 4 * i) == ref[i]);
            for (size_t i = 0; i < n; i++) assert_true(ref[i] >= 0.0f);   /* the bias is >= 0 */
        }
        free(ref);
    }
    hfr_close(&c);
}

/* config.json carries the real keys and values of each family. */
static void test_config_json_has_the_release_keys(void **state) {
    (void)state;
    hfgen_moe_spec s = preset("tiny-deepseek3");
    hfr_checkpoint c = written(&s);
    static const char *const v3_keys[] = {
        "\"DeepseekV3ForCausalLM\"", "\"model_type\": \"deepseek_v3\"",
        "\"AutoModelForCausalLM\": \"modeling_deepseek.DeepseekV3ForCausalLM\"", "\"q_lora_rank\": 96",
        "\"kv_lora_rank\": 64", "\"qk_nope_head_dim\": 32", "\"qk_rope_head_dim\": 32", "\"v_head_dim\": 32",
        "\"n_routed_experts\": 16", "\"n_shared_experts\": 1", "\"num_experts_per_tok\": 4", "\"n_group\": 4",
        "\"topk_group\": 2", "\"topk_method\": \"noaux_tc\"", "\"scoring_func\": \"sigmoid\"",
        "\"norm_topk_prob\": true", "\"routed_scaling_factor\": 2.5", "\"first_k_dense_replace\": 1",
        "\"moe_layer_freq\": 1", "\"moe_intermediate_size\": 160", "\"intermediate_size\": 320",
        "\"num_nextn_predict_layers\": 1", "\"num_hidden_layers\": 3", "\"num_key_value_heads\": 4",
        "\"tie_word_embeddings\": false", "\"rms_norm_eps\": 1e-06", "\"rope_theta\": 10000",
        "\"factor\": 40", "\"original_max_position_embeddings\": 64", "\"mscale\": 1.0",
        "\"mscale_all_dim\": 1.0", "\"type\": \"yarn\"", "\"beta_fast\": 32", "\"beta_slow\": 1",
        "\"quant_method\": \"fp8\"", "\"fmt\": \"e4m3\"", "\"activation_scheme\": \"dynamic\"",
        "\"weight_block_size\": [\n      128,\n      128\n    ]", "\"hidden_act\": \"silu\"",
        "\"bos_token_id\": 0", "\"eos_token_id\": 1", "\"torch_dtype\": \"bfloat16\"", "\"aux_loss_alpha\"",
        "\"seq_aux\": true", "\"vocab_size\": 512", "\"max_position_embeddings\": 2560",
    };
    const char *missing = hfr_first_missing(c.config, v3_keys, sizeof v3_keys / sizeof v3_keys[0]);
    if (missing) print_error("config.json lacks %s\n", missing);
    assert_null(missing);
    hfr_close(&c);

    s = preset("tiny-deepseek2");
    c = written(&s);
    static const char *const v2_keys[] = {
        "\"DeepseekV2ForCausalLM\"", "\"model_type\": \"deepseek_v2\"", "\"q_lora_rank\": null",
        "\"topk_method\": \"greedy\"", "\"scoring_func\": \"softmax\"", "\"norm_topk_prob\": false",
        "\"routed_scaling_factor\": 1.0", "\"mscale\": 0.707", "\"mscale_all_dim\": 0.707",
        "\"n_shared_experts\": 2", "\"original_max_position_embeddings\": 128",
    };
    assert_null(hfr_first_missing(c.config, v2_keys, sizeof v2_keys / sizeof v2_keys[0]));
    assert_null(strstr(c.config, "quantization_config"));
    assert_null(strstr(c.config, "num_nextn_predict_layers"));
    hfr_close(&c);
}

/* The same spec writes the same bytes; another seed other weights. */
static void test_same_seed_gives_same_bytes(void **state) {
    (void)state;
    hfgen_moe_spec s = preset("tiny-deepseek3");
    hfr_checkpoint a = written(&s), b = written(&s);
    s.seed++;
    hfr_checkpoint c = written(&s);
    assert_true(hfr_same_files(&a, &b));
    assert_true(a.shard[0].len == c.shard[0].len);   /* same layout, new values */
    assert_true(memcmp(a.shard[0].data, c.shard[0].data, a.shard[0].len) != 0);
    hfr_close(&a);
    hfr_close(&b);
    hfr_close(&c);
}

/* tokenizer.json: ids 0..2 are the DeepSeek specials in both the vocab and
 * the added tokens; the vocab is dense 0..n-1; every merge joins two vocab
 * tokens into a vocab token; the added tokens follow the BPE ids, with
 * <｜User｜> / <｜Assistant｜> non-special as in the release; the DeepSeek-V3
 * pre-tokenizer; tokenizer_config.json carries the family's chat template. */
static void test_tokenizer_files_are_consistent(void **state) {
    (void)state;
    hfgen_moe_spec s = preset("tiny-deepseek3");
    hfr_checkpoint c = written(&s);
    const char *tj = c.tokenizer, *tc = c.tokenizer_config;
    const int n_tok = hfgen_moe_tokenizer_size(&s);
    assert_int_equal(n_tok, 496);
    const int n_added_after = 17, n_bpe = n_tok - n_added_after;
    /* vocab */
    const char *v = strstr(tj, "\"vocab\": {");
    const char *mg = strstr(tj, "\"merges\": [");
    assert_true(v && mg && v < mg);
    v += strlen("\"vocab\": {");
    char(*vocab)[64] = calloc((size_t)n_bpe, sizeof *vocab);
    assert_non_null(vocab);
    int count = 0;
    while (v < mg) {
        const char *q = strchr(v, '"');
        if (!q || q >= mg) break;
        char key[64];
        q = hfr_json_str(q + 1, key, sizeof key);
        int id = (int)strtol(strchr(q, ':') + 1, (char **)&v, 10);
        assert_true(id == count && id < n_bpe);   /* dense, in order */
        snprintf(vocab[id], sizeof vocab[id], "%s", key);
        count++;
    }
    assert_int_equal(count, n_bpe);
    assert_string_equal(vocab[0], "<｜begin▁of▁sentence｜>");
    assert_string_equal(vocab[1], "<｜end▁of▁sentence｜>");
    assert_string_equal(vocab[2], "<｜▁pad▁｜>");
    assert_string_equal(vocab[3], "!");             /* byte tokens in GPT-2 order */
    /* merges */
    const char *m = mg + strlen("\"merges\": [");
    int n_merges = 0;
    for (const char *q = strchr(m, '"'); q; q = strchr(q, '"')) {
        char pair[128], joined[128];
        q = hfr_json_str(q + 1, pair, sizeof pair);
        char *sp = strchr(pair, ' ');
        assert_non_null(sp);
        *sp = 0;
        snprintf(joined, sizeof joined, "%s%s", pair, sp + 1);
        bool l = false, r = false, j = false;
        for (int i = 3; i < n_bpe; i++) {
            l |= strcmp(vocab[i], pair) == 0;
            r |= strcmp(vocab[i], sp + 1) == 0;
            j |= strcmp(vocab[i], joined) == 0;
        }
        assert_true(l && r && j);
        n_merges++;
    }
    assert_int_equal(n_merges, n_bpe - 3 - 256);
    /* added tokens */
    char want[256];
    const int user_id = hfgen_moe_added_token_id(&s, "<｜User｜>");
    snprintf(want, sizeof want, "\"id\": %d,\n      \"content\": \"<｜User｜>\"", user_id);
    const char *u = strstr(tj, want);
    assert_non_null(u);
    assert_true(strstr(u, "\"special\": false") < strstr(u, "}"));
    assert_int_equal(hfgen_moe_added_token_id(&s, "<｜User｜>"), n_bpe + 5);
    assert_int_equal(hfgen_moe_added_token_id(&s, "<｜tool▁sep｜>"), n_tok - 1);
    assert_int_equal(hfgen_moe_added_token_id(&s, "<｜end▁of▁sentence｜>"), 1);
    assert_int_equal(hfgen_moe_added_token_id(&s, "<nope>"), -1);
    snprintf(want, sizeof want, "\"id\": 0,\n      \"content\": \"<｜begin▁of▁sentence｜>\"");
    assert_non_null(strstr(tj, want));
    assert_non_null(strstr(tj, "\"Regex\": \"\\\\p{N}{1,3}\""));
    assert_non_null(strstr(tj, "[一-龥぀-ゟ゠-ヿ]+"));
    assert_non_null(strstr(tj, "\"post_processor\": {\n    \"type\": \"ByteLevel\""));
    /* V3 template: ends with the bare assistant prompt, no <think> */
    assert_non_null(strstr(tc, "{{'<｜Assistant｜>'}}{% endif %}\""));
    assert_null(strstr(tc, "<think>"));
    assert_non_null(strstr(tc, "\"add_bos_token\": true"));
    free(vocab);
    hfr_close(&c);

    static const struct {
        const char *preset, *tmpl, *marker;
    } fam[] = {{"tiny-deepseek2", NULL, "'User: '"}, {"tiny-deepseek3", "deepseek-r1", "<｜Assistant｜><think>\\\\n"}};
    for (size_t i = 0; i < 2; i++) {
        s = preset(fam[i].preset);
        if (fam[i].tmpl) s.chat_template = fam[i].tmpl;
        c = written(&s);
        if (!strstr(c.tokenizer_config, fam[i].marker)) print_error("%s lacks %s\n", fam[i].preset, fam[i].marker);
        assert_non_null(strstr(c.tokenizer_config, fam[i].marker));
        hfr_close(&c);
    }
}

/* ---- reference: RoPE / YaRN --------------------------------------------- */

/* Hand-computed YaRN for tiny-deepseek3 (rope 32, theta 1e4, factor 40,
 * original 64, beta 32 / 1): correction dims -1.99 -> floor 0 and 4.03 ->
 * ceil 5, so dim 0 keeps theta^0, dims 1..4 blend (ramp i/5) and 5..15 are
 * divided by 40. softmax scale 64^-0.5 * (0.1 ln 40 + 1)^2; cos/sin factor
 * 1 (mscale = mscale_all_dim). tiny-deepseek2-group: mscale 1, all-dim
 * 0.707 -> cos/sin factor (0.1 ln 40 + 1) / (0.0707 ln 40 + 1). */
static void test_yarn_frequencies_and_scales_hand_checked(void **state) {
    (void)state;
    hfgen_moe_spec s = preset("tiny-deepseek3");
    double f[16];
    ref_moe_rope_inv_freq(&s, f);
    assert_true(fabs(f[0] - 1.0) < 1e-12);
    for (int i = 1; i < 16; i++) {
        const double base = pow(10000.0, -2.0 * i / 32.0), ramp = i >= 5 ? 1.0 : i / 5.0;
        assert_true(fabs(f[i] - (base / 40.0 * ramp + base * (1.0 - ramp))) < 1e-12 * base);
    }
    const double m = 0.1 * log(40.0) + 1.0;
    assert_true(fabs(ref_moe_softmax_scale(&s) - m * m / 8.0) < 1e-12);
    assert_true(fabs(ref_moe_rope_mscale(&s) - 1.0) < 1e-12);
    s = preset("tiny-deepseek2-group");
    assert_true(fabs(ref_moe_rope_mscale(&s) - m / (0.0707 * log(40.0) + 1.0)) < 1e-6);
    s.yarn = false;
    assert_true(fabs(ref_moe_softmax_scale(&s) - 0.125) < 1e-12);
    assert_true(fabs(ref_moe_rope_mscale(&s) - 1.0) < 1e-12);
    ref_moe_rope_inv_freq(&s, f);
    assert_true(fabs(f[3] - pow(10000.0, -6.0 / 32.0)) < 1e-15);
}

/* The HF convention (de-interleave, then rotate_half) and the interleaved
 * complex-pair rotation of inference/model.py give the same dot products
 * between a rotated query and key; position 0 only permutes. */
static void test_rope_conventions_agree_on_dot_products(void **state) {
    (void)state;
    hfgen_moe_spec s = preset("tiny-deepseek3");
    double f[16];
    ref_moe_rope_inv_freq(&s, f);
    float q[32], k[32], q0[32];
    for (int i = 0; i < 32; i++) {
        q[i] = (float)sin(1.3 * i + 0.2);
        k[i] = (float)cos(0.7 * i - 0.5);
    }
    memcpy(q0, q, sizeof q);
    ref_moe_rope_apply(&s, q0, 0);
    for (int i = 0; i < 16; i++) assert_true(q0[i] == q[2 * i] && q0[16 + i] == q[2 * i + 1]);
    for (int pq = 0; pq < 40; pq += 13)
        for (int pk = 0; pk <= pq; pk += 5) {
            float a[32], b[32];
            memcpy(a, q, sizeof a);
            memcpy(b, k, sizeof b);
            ref_moe_rope_apply(&s, a, pq);
            ref_moe_rope_apply(&s, b, pk);
            double hf = 0.0, ds = 0.0;
            for (int i = 0; i < 32; i++) hf += (double)a[i] * b[i];
            for (int i = 0; i < 16; i++) {   /* (x0 + i x1) * e^(i pos f) */
                const double ca = cos(pq * f[i]), sa = sin(pq * f[i]), cb = cos(pk * f[i]), sb = sin(pk * f[i]);
                const double ar = q[2 * i] * ca - q[2 * i + 1] * sa, ai = q[2 * i] * sa + q[2 * i + 1] * ca;
                const double br = k[2 * i] * cb - k[2 * i + 1] * sb, bi = k[2 * i] * sb + k[2 * i + 1] * cb;
                ds += ar * br + ai * bi;
            }
            assert_true(fabs(hf - ds) < 1e-5);
        }
}

/* ---- reference: MLA ----------------------------------------------------- */

static float *weight(const ref_moe *m, const char *fmt, int l) {
    char name[128];
    snprintf(name, sizeof name, fmt, l);
    const float *w = ref_moe_weight(m, name, NULL);
    if (!w) print_error("no weight %s\n", name);
    assert_non_null(w);
    return (float *)w;
}

static void mv(double *y, const float *w, const double *x, int n_out, int n_in) {
    for (int o = 0; o < n_out; o++) {
        double acc = 0.0;
        for (int i = 0; i < n_in; i++) acc += (double)w[(size_t)o * (size_t)n_in + (size_t)i] * x[i];
        y[o] = acc;
    }
}

static void rms(double *x, const float *w, int n, double eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    const double r = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) x[i] = x[i] * r * w[i];
}

/* MLA in the absorbed form of inference/model.py (attn_impl "absorb"): the
 * query's nope part folded through kv_b's key rows into the latent space,
 * scores against the normalized latents plus the rope part (interleaved
 * complex rotation, HF's cos/sin factor on both), values read in latent
 * space and expanded through kv_b's value rows. YaRN frequencies computed
 * here with precompute_freqs_cis's formulas. Everything in double. */
static void absorbed_mla(const ref_moe *m, int l, const float *x, int n, float *out) {
    const hfgen_moe_spec *s = ref_moe_spec(m);
    const size_t D = (size_t)s->hidden, H = (size_t)s->n_heads, nope = (size_t)s->qk_nope_head_dim;
    const size_t rope = (size_t)s->qk_rope_head_dim, qh = nope + rope, vh = (size_t)s->v_head_dim;
    const size_t kvl = (size_t)s->kv_lora_rank, ql = (size_t)s->q_lora_rank, N = (size_t)n;
    /* precompute_freqs_cis */
    double freqs[64];
    for (size_t i = 0; i < rope / 2; i++) freqs[i] = 1.0 / pow(s->rope_theta, 2.0 * (double)i / (double)rope);
    double rot_scale = 1.0, scale = 1.0 / sqrt((double)qh);
    if (s->yarn) {
        const double base = s->rope_theta, orig = s->rope_orig_max_pos, d = (double)rope;
        const double dlo = d * log(orig / (s->beta_fast * 2 * M_PI)) / (2 * log(base));
        const double dhi = d * log(orig / (s->beta_slow * 2 * M_PI)) / (2 * log(base));
        double lo = fmax(floor(dlo), 0), hi = fmin(ceil(dhi), d - 1);
        if (lo == hi) hi += 0.001;
        for (size_t i = 0; i < rope / 2; i++) {
            const double smooth = 1 - fmin(fmax(((double)i - lo) / (hi - lo), 0), 1);
            freqs[i] = freqs[i] / s->rope_factor * (1 - smooth) + freqs[i] * smooth;
        }
        const double ms = 0.1 * s->mscale * log(s->rope_factor) + 1;
        const double ma = 0.1 * s->mscale_all_dim * log(s->rope_factor) + 1;
        rot_scale = ms / ma;
        if (s->mscale_all_dim != 0.0f) scale *= ma * ma;
    }
    const float *wq = ql ? weight(m, "model.layers.%d.self_attn.q_b_proj.weight", l)
                         : weight(m, "model.layers.%d.self_attn.q_proj.weight", l);
    const float *wkv_a = weight(m, "model.layers.%d.self_attn.kv_a_proj_with_mqa.weight", l);
    const float *kv_norm = weight(m, "model.layers.%d.self_attn.kv_a_layernorm.weight", l);
    const float *wkv_b = weight(m, "model.layers.%d.self_attn.kv_b_proj.weight", l);   /* (H, nope + v, kvl) */
    const float *wo = weight(m, "model.layers.%d.self_attn.o_proj.weight", l);
    double *lat = calloc(N * kvl, sizeof *lat);          /* (n, kvl) normalized latents */
    double *pe = calloc(N * rope, sizeof *pe);           /* (n, rope) rotated k_pe */
    double *qlat = calloc(N * H * kvl, sizeof *qlat);    /* (n, H, kvl) absorbed queries */
    double *qpe = calloc(N * H * rope, sizeof *qpe);     /* (n, H, rope) rotated q_pe */
    double *xd = calloc(D, sizeof *xd), *tmp = calloc(H * qh + kvl + rope + D, sizeof *tmp);
    double *qa = calloc(ql + 1, sizeof *qa), *o = calloc(H * vh, sizeof *o);
    double *p = calloc(N, sizeof *p), *olat = calloc(kvl, sizeof *olat);
    assert_true(lat && pe && qlat && qpe && xd && tmp && qa && o && p && olat);
    for (size_t t = 0; t < N; t++) {
        for (size_t i = 0; i < D; i++) xd[i] = x[t * D + i];
        if (ql) {
            mv(qa, weight(m, "model.layers.%d.self_attn.q_a_proj.weight", l), xd, (int)ql, (int)D);
            rms(qa, weight(m, "model.layers.%d.self_attn.q_a_layernorm.weight", l), (int)ql, 1e-6f);
            mv(tmp, wq, qa, (int)(H * qh), (int)ql);
        } else {
            mv(tmp, wq, xd, (int)(H * qh), (int)D);
        }
        for (size_t h = 0; h < H; h++) {
            const double *qn = tmp + h * qh, *qr = tmp + h * qh + nope;
            double *ql_th = qlat + (t * H + h) * kvl, *qp_th = qpe + (t * H + h) * rope;
            const float *wk = wkv_b + h * (nope + vh) * kvl;   /* key rows of head h: (nope, kvl) */
            for (size_t c = 0; c < kvl; c++) {
                double acc = 0.0;
                for (size_t d = 0; d < nope; d++) acc += qn[d] * wk[d * kvl + c];
                ql_th[c] = acc;
            }
            for (size_t i = 0; i < rope / 2; i++) {   /* (x0 + i x1) e^(i t f) */
                const double c = cos((double)t * freqs[i]) * rot_scale, sn = sin((double)t * freqs[i]) * rot_scale;
                qp_th[2 * i] = qr[2 * i] * c - qr[2 * i + 1] * sn;
                qp_th[2 * i + 1] = qr[2 * i] * sn + qr[2 * i + 1] * c;
            }
        }
        mv(tmp, wkv_a, xd, (int)(kvl + rope), (int)D);
        rms(tmp, kv_norm, (int)kvl, 1e-6f);   /* latent norms: default eps */
        for (size_t c = 0; c < kvl; c++) lat[t * kvl + c] = tmp[c];
        const double *kr = tmp + kvl;
        for (size_t i = 0; i < rope / 2; i++) {
            const double c = cos((double)t * freqs[i]) * rot_scale, sn = sin((double)t * freqs[i]) * rot_scale;
            pe[t * rope + 2 * i] = kr[2 * i] * c - kr[2 * i + 1] * sn;
            pe[t * rope + 2 * i + 1] = kr[2 * i] * sn + kr[2 * i + 1] * c;
        }
    }
    for (size_t t = 0; t < N; t++) {
        for (size_t h = 0; h < H; h++) {
            const double *ql_th = qlat + (t * H + h) * kvl, *qp_th = qpe + (t * H + h) * rope;
            double mx = -INFINITY, sum = 0.0;
            for (size_t u = 0; u <= t; u++) {
                double acc = 0.0;
                for (size_t c = 0; c < kvl; c++) acc += ql_th[c] * lat[u * kvl + c];
                for (size_t r = 0; r < rope; r++) acc += qp_th[r] * pe[u * rope + r];
                p[u] = acc * scale;
                mx = fmax(mx, p[u]);
            }
            for (size_t u = 0; u <= t; u++) sum += (p[u] = exp(p[u] - mx));
            for (size_t c = 0; c < kvl; c++) {
                double acc = 0.0;
                for (size_t u = 0; u <= t; u++) acc += p[u] * lat[u * kvl + c];
                olat[c] = acc / sum;
            }
            const float *wv = wkv_b + (h * (nope + vh) + nope) * kvl;   /* value rows of head h: (v, kvl) */
            for (size_t d = 0; d < vh; d++) {
                double acc = 0.0;
                for (size_t c = 0; c < kvl; c++) acc += wv[d * kvl + c] * olat[c];
                o[h * vh + d] = acc;
            }
        }
        mv(tmp, wo, o, (int)D, (int)(H * vh));
        for (size_t i = 0; i < D; i++) out[t * D + i] = (float)tmp[i];
    }
    free(lat);
    free(pe);
    free(qlat);
    free(qpe);
    free(xd);
    free(tmp);
    free(qa);
    free(o);
    free(p);
    free(olat);
}

/* ref_moe's plain per-head MLA (HF DeepseekV2Attention) equals the absorbed
 * form above for every tiny preset and a layer with and without q_lora, to
 * fp32 rounding (activations are fp32 in the reference: ~1e-6 relative). */
static void test_mla_matches_absorbed_form(void **state) {
    (void)state;
    for (size_t k = 0; k < 3; k++) {
        hfgen_moe_spec s;
        ref_moe *m = tiny_ref(k, &s);
        const int n = 9, D = s.hidden;
        float *x = malloc((size_t)n * (size_t)D * sizeof *x), *a = malloc((size_t)n * (size_t)D * sizeof *a);
        float *b = malloc((size_t)n * (size_t)D * sizeof *b);
        assert_true(x && a && b);
        for (int i = 0; i < n * D; i++) x[i] = (float)sin(0.37 * i + 0.1 * (double)k) * 1.3f;
        for (int l = 0; l < 2; l++) {
            assert_int_equal(ref_moe_attention(m, l, x, n, a), 0);
            absorbed_mla(m, l, x, n, b);
            double num = 0.0, den = 0.0;
            for (int i = 0; i < n * D; i++) {
                num = fmax(num, fabs((double)a[i] - b[i]));
                den = fmax(den, fabs((double)b[i]));
            }
            if (num > 1e-5 * den) print_error("%s layer %d: max diff %g of %g\n", TINY[k], l, num, den);
            assert_true(num <= 1e-5 * den);
        }
        /* position 0 attends only to itself: out = o_proj(v(x0)) */
        const float *wkv_a = weight(m, "model.layers.%d.self_attn.kv_a_proj_with_mqa.weight", 0);
        const float *kvn = weight(m, "model.layers.%d.self_attn.kv_a_layernorm.weight", 0);
        const float *wkv_b = weight(m, "model.layers.%d.self_attn.kv_b_proj.weight", 0);
        const float *wo = weight(m, "model.layers.%d.self_attn.o_proj.weight", 0);
        const int kvl = s.kv_lora_rank, H = s.n_heads, nope = s.qk_nope_head_dim, vh = s.v_head_dim;
        double xd[256], c[256], v[1024], o[256];
        for (int i = 0; i < D; i++) xd[i] = x[i];
        mv(c, wkv_a, xd, kvl, D);
        rms(c, kvn, kvl, 1e-6f);
        for (int h = 0; h < H; h++) mv(v + h * vh, wkv_b + (size_t)(h * (nope + vh) + nope) * (size_t)kvl, c, vh, kvl);
        mv(o, wo, v, D, H * vh);
        assert_int_equal(ref_moe_attention(m, 0, x, 1, a), 0);
        for (int i = 0; i < D; i++) assert_true(fabs(o[i] - a[i]) <= 1e-5 * (fabs(o[i]) + 1e-3));
        free(x);
        free(a);
        free(b);
        ref_moe_free(m);
    }
}

/* ---- reference: routing ------------------------------------------------- */

static hfgen_moe_spec route_spec(const char *arch, const char *method, const char *scoring, int E, int k, int G,
                                 int TG, bool norm, float rsf) {
    hfgen_moe_spec s = preset(strcmp(arch, "deepseek_v3") == 0 ? "tiny-deepseek3" : "tiny-deepseek2");
    s.n_routed_experts = E;
    s.num_experts_per_tok = k;
    s.n_group = G;
    s.topk_group = TG;
    s.topk_method = method;
    s.scoring_func = scoring;
    s.norm_topk_prob = norm;
    s.routed_scaling_factor = rsf;
    return s;
}

/* Hand cases for each selection rule and each version's weight order. */
static void test_routing_rules_hand_cases(void **state) {
    (void)state;
    int ex[8];
    float w[8], margin;
    /* greedy softmax top-2, a tie between experts 1 and 3 goes to 1 */
    {
        hfgen_moe_spec s = route_spec("deepseek_v2", "greedy", "softmax", 4, 2, 1, 1, false, 1.0f);
        const float lg[4] = {0.0f, 2.0f, 1.0f, 2.0f};
        assert_int_equal(ref_moe_route(&s, lg, NULL, ex, w, &margin), 2);
        assert_int_equal(ex[0], 1);
        assert_int_equal(ex[1], 3);
        const double z = 2.0 + exp(-2.0) + exp(-1.0);   /* sum of e^(logit - 2) */
        assert_true(fabs(w[0] - 1.0 / z) < 1e-6 && fabs(w[1] - 1.0 / z) < 1e-6);
        assert_true(fabs(margin - (1.0 / z - exp(-1.0) / z)) < 1e-6);
        /* V2: norm_topk_prob false -> x routed_scaling_factor, unnormalized */
        s.routed_scaling_factor = 16.0f;
        ref_moe_route(&s, lg, NULL, ex, w, NULL);
        assert_true(fabs(w[0] - 16.0 / z) < 1e-5);
        /* V2: norm_topk_prob true -> normalized and NOT scaled */
        s.norm_topk_prob = true;
        ref_moe_route(&s, lg, NULL, ex, w, NULL);
        assert_true(fabs(w[0] - 0.5) < 1e-6 && fabs(w[1] - 0.5) < 1e-6);
        /* V3 order: normalized, then always scaled */
        s.arch = "deepseek_v3";
        ref_moe_route(&s, lg, NULL, ex, w, NULL);
        assert_true(fabs(w[0] - 8.0) < 1e-5 && fabs(w[1] - 8.0) < 1e-5);
        /* top-1: never normalized; V3 scales, V2 scales too (the else branch) */
        s.num_experts_per_tok = 1;
        ref_moe_route(&s, lg, NULL, ex, w, NULL);
        assert_true(fabs(w[0] - 16.0 / z) < 1e-5);
    }
    /* group_limited_greedy: 8 experts in 4 groups of 2, keep 2 groups by
     * their max; the global top-3 {0, 2, 4} loses expert 4 because group 2's
     * max (4.4) is below those of groups 0 and 1 (5, 4.5) */
    {
        hfgen_moe_spec s = route_spec("deepseek_v2", "group_limited_greedy", "softmax", 8, 3, 4, 2, false, 1.0f);
        const float lg[8] = {5.0f, 3.0f, 4.5f, 0.0f, 4.4f, 4.3f, 1.0f, 1.0f};
        assert_int_equal(ref_moe_route(&s, lg, NULL, ex, w, NULL), 3);
        assert_int_equal(ex[0], 0);
        assert_int_equal(ex[1], 2);
        assert_int_equal(ex[2], 1);
        s.topk_method = "greedy";   /* ungrouped: 0, 2, 4 */
        ref_moe_route(&s, lg, NULL, ex, w, NULL);
        assert_int_equal(ex[2], 4);
    }
    /* noaux_tc: groups by the sum of their two best (scores + bias); the
     * bias changes the choice but the weight is the unbiased sigmoid */
    {
        hfgen_moe_spec s = route_spec("deepseek_v3", "noaux_tc", "sigmoid", 8, 2, 4, 2, true, 2.5f);
        /* group 0 has the single best expert, but groups 1 and 2 have better pairs */
        const float lg[8] = {3.0f, -3.0f, 1.0f, 1.0f, 0.9f, 0.9f, -2.0f, -2.0f};
        float bias[8] = {0};
        assert_int_equal(ref_moe_route(&s, lg, bias, ex, w, NULL), 2);
        assert_int_equal(ex[0], 2);        /* group 0 (0.95 + 0.05) < group 1 (1.46) and group 2 (1.42) */
        assert_int_equal(ex[1], 3);
        assert_true(fabs(w[0] - 1.25f) < 1e-6 && fabs(w[1] - 1.25f) < 1e-6);
        s.topk_method = "group_limited_greedy";   /* by group max, group 0 wins */
        ref_moe_route(&s, lg, NULL, ex, w, NULL);
        assert_int_equal(ex[0], 0);
        s.topk_method = "noaux_tc";
        bias[5] = 0.1f;                    /* lifts expert 5 over 2 and 3 for the choice */
        ref_moe_route(&s, lg, bias, ex, w, NULL);
        assert_int_equal(ex[0], 5);
        const double s5 = 1 / (1 + exp(-0.9)), s2 = 1 / (1 + exp(-1.0));
        assert_int_equal(ex[1], 2);
        assert_true(fabs(w[0] - 2.5 * s5 / (s5 + s2)) < 1e-5);   /* unbiased weights */
        ref_moe_route(&s, lg, NULL, ex, w, NULL);   /* without the bias: back to 2, 3 */
        assert_int_equal(ex[0], 2);
    }
    hfgen_moe_spec bad = route_spec("deepseek_v3", "noaux_tc", "sigmoid", 8, 9, 4, 2, true, 2.5f);
    assert_int_equal(ref_moe_route(&bad, (const float[8]){0}, NULL, ex, w, NULL), -1);
}

/* On a 24-token prompt every MoE layer of every tiny preset uses several
 * different experts (and not one fixed set), V3 weights sum to
 * routed_scaling_factor, and in tiny-deepseek3 e_score_correction_bias
 * changes at least one selection: routing is worth checking. */
static void test_routing_is_non_trivial(void **state) {
    (void)state;
    int tokens[24];
    for (int i = 0; i < 24; i++) tokens[i] = (i * 53 + 7) % 470;
    for (size_t k = 0; k < 3; k++) {
        hfgen_moe_spec s;
        ref_moe *m = tiny_ref(k, &s);
        float *logits = malloc(24 * (size_t)s.vocab * sizeof *logits);
        assert_non_null(logits);
        assert_int_equal(ref_moe_forward(m, tokens, 24, logits), 0);
        int bias_changes = 0;
        for (int l = 0; l < s.n_layers; l++) {
            int counts[64];
            if (!hfgen_moe_layer_is_moe(&s, l)) {
                assert_int_equal(ref_moe_route_counts(m, l, counts), -1);
                continue;
            }
            assert_int_equal(ref_moe_route_counts(m, l, counts), 24);
            int used = 0, most = 0;
            for (int e = 0; e < s.n_routed_experts; e++) {
                used += counts[e] > 0;
                most = counts[e] > most ? counts[e] : most;
            }
            assert_true(used >= s.num_experts_per_tok + 3);
            assert_true(most < 24);
            for (int t = 0; t < 24; t++) {
                int ex[8], ex2[8];
                float w[8], sum = 0.0f;
                assert_int_equal(ref_moe_last_route(m, l, t, ex, w), s.num_experts_per_tok);
                for (int r = 0; r < s.num_experts_per_tok; r++) sum += w[r];
                if (strcmp(s.arch, "deepseek_v3") == 0) assert_true(fabsf(sum - s.routed_scaling_factor) < 1e-5f);
                else assert_true(sum > 0.0f && sum <= s.routed_scaling_factor * (1 + 1e-6f));
                const float *lg = ref_moe_last_router_logits(m, l, t);
                assert_non_null(lg);
                ref_moe_route(&s, lg, ref_moe_gate_bias(m, l), ex2, NULL, NULL);
                assert_memory_equal(ex, ex2, (size_t)s.num_experts_per_tok * sizeof *ex);
                if (ref_moe_gate_bias(m, l)) {
                    ref_moe_route(&s, lg, NULL, ex2, NULL, NULL);
                    bias_changes += memcmp(ex, ex2, (size_t)s.num_experts_per_tok * sizeof *ex) != 0;
                }
            }
        }
        if (strcmp(TINY[k], "tiny-deepseek3") == 0) assert_true(bias_changes >= 1);
        assert_int_equal(ref_moe_last_route(m, 0, 0, NULL, NULL), -1);   /* dense layer */
        assert_int_equal(ref_moe_last_route(m, 1, 24, NULL, NULL), -1);
        free(logits);
        ref_moe_free(m);
    }
}

/* ---- reference: forward ------------------------------------------------- */

/* Position t depends on tokens 0..t only; the same input gives the same
 * logits bit for bit; logits spread by a few units (useful for argmax
 * comparisons) and bad tokens are rejected. */
static void test_forward_is_causal_deterministic_and_spread(void **state) {
    (void)state;
    for (size_t k = 0; k < 3; k++) {
        hfgen_moe_spec s;
        ref_moe *m = tiny_ref(k, &s);
        const size_t V = (size_t)s.vocab;
        int a[12], b[12];
        for (int i = 0; i < 12; i++) a[i] = b[i] = (i * 31 + 5) % 480;
        for (int i = 6; i < 12; i++) b[i] = (a[i] + 100) % 480;
        float *la = malloc(12 * V * sizeof *la), *lb = malloc(12 * V * sizeof *lb), *lc = malloc(12 * V * sizeof *lc);
        assert_true(la && lb && lc);
        assert_int_equal(ref_moe_forward(m, a, 12, la), 0);
        assert_int_equal(ref_moe_forward(m, b, 12, lb), 0);
        assert_int_equal(ref_moe_forward(m, a, 12, lc), 0);
        assert_memory_equal(la, lb, 6 * V * sizeof *la);        /* causal */
        assert_memory_equal(la, lc, 12 * V * sizeof *la);       /* deterministic */
        assert_true(memcmp(la + 6 * V, lb + 6 * V, 6 * V * sizeof *la) != 0);
        for (int t = 0; t < 12; t++) {
            double sum = 0.0, sq = 0.0;
            for (size_t v = 0; v < V; v++) {
                sum += la[t * V + v];
                sq += (double)la[t * V + v] * la[t * V + v];
            }
            const double sd = sqrt(sq / (double)V - (sum / (double)V) * (sum / (double)V));
            assert_true(sd > 1.0 && sd < 4.0);
        }
        const int bad[2] = {0, s.vocab};
        assert_int_equal(ref_moe_forward(m, bad, 2, la), -1);
        assert_int_equal(ref_moe_forward(m, a, 0, la), -1);
        free(la);
        free(lb);
        free(lc);
        ref_moe_free(m);
    }
    assert_null(ref_moe_weight(NULL, "lm_head.weight", NULL));
    ref_moe_free(NULL);
}

/* Only the main model is loaded: MTP tensors are not weights of the
 * reference, and every weight it has is the stored value. */
static void test_reference_holds_the_stored_weights(void **state) {
    (void)state;
    hfgen_moe_spec s = preset("tiny-deepseek3");
    ref_moe *m = ref_moe_from_spec(&s);
    assert_non_null(m);
    assert_null(ref_moe_weight(m, "model.layers.3.eh_proj.weight", NULL));
    assert_null(ref_moe_weight(m, "model.layers.1.mlp.experts.0.up_proj.weight_scale_inv", NULL));
    size_t n;
    const float *w = ref_moe_weight(m, "model.layers.2.mlp.experts.11.down_proj.weight", &n);
    assert_non_null(w);
    assert_int_equal(n, 160 * 160);
    hfgen_moe_tensor t;
    assert_int_equal(hfgen_moe_tensor_find(&s, "model.layers.2.mlp.experts.11.down_proj.weight", &t), 0);
    float *v = malloc(n * sizeof *v);
    assert_non_null(v);
    assert_int_equal(hfgen_moe_fill_stored(&s, &t, 0, 160, v), 0);
    assert_memory_equal(v, w, n * sizeof *v);
    free(v);
    ref_moe_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets_are_valid_and_sized),
        cmocka_unit_test(test_validate_rejects_inconsistent_specs),
        cmocka_unit_test(test_fp8_e4m3_rounds_to_nearest_even),
        cmocka_unit_test(test_v3_tensor_names_dtypes_and_shapes),
        cmocka_unit_test(test_v2_tensor_layout),
        cmocka_unit_test(test_values_are_independent_of_slicing),
        cmocka_unit_test(test_fp8_effective_weights_within_rounding),
        cmocka_unit_test(test_sharded_fp8_checkpoint_is_well_formed),
        cmocka_unit_test(test_config_json_has_the_release_keys),
        cmocka_unit_test(test_same_seed_gives_same_bytes),
        cmocka_unit_test(test_tokenizer_files_are_consistent),
        cmocka_unit_test(test_yarn_frequencies_and_scales_hand_checked),
        cmocka_unit_test(test_rope_conventions_agree_on_dot_products),
        cmocka_unit_test(test_mla_matches_absorbed_form),
        cmocka_unit_test(test_routing_rules_hand_cases),
        cmocka_unit_test(test_routing_is_non_trivial),
        cmocka_unit_test(test_forward_is_causal_deterministic_and_spread),
        cmocka_unit_test(test_reference_holds_the_stored_weights),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
