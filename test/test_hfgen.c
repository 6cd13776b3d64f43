/* test_hfgen.c - the synthetic checkpoint generator (test/support/hfgen.c) and
 * the fp32 reference model (test/support/ref_model.c) checked on their own,
 * before anything is compared against them. The files are read back with
 * the small local scan of test/support/hfread.h, not the engine's readers,
 * so a bug in one cannot hide a bug in the other. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hfgen.h"
#include "hfread.h"
#include "ref_model.h"

/* ---- helpers ------------------------------------------------------------ */

static hfgen_spec preset(const char *name) {
    hfgen_spec s;
    assert_int_equal(hfgen_preset(name, &s), 0);
    return s;
}

/* The checkpoint of s, written to a scratch directory and read back
 * (hfr_close removes it). */
static hfr_checkpoint written(const hfgen_spec *s) {
    hfr_checkpoint c;
    assert_int_equal(hfr_write_dense(&c, s), 0);
    return c;
}

/* ---- presets ------------------------------------------------------------ */

/* The big presets carry the published parameter counts of the real models:
 * R1-Distill-Qwen-1.5B 1,777,088,000 and R1-Distill-Llama-8B 8,030,261,248. */
static void test_presets_are_valid_and_real_sized(void **state) {
    (void)state;
    for (const char *const *p = hfgen_preset_names(); *p; p++) {
        hfgen_spec s = preset(*p);
        deepc_err err;
        err.msg[0] = 0;
        assert_int_equal(hfgen_validate(&s, &err), 0);
        assert_true(hfgen_tokenizer_size(&s) <= s.vocab);
        hfgen_tensor emb;
        assert_int_equal(hfgen_tensor_at(&s, 0, &emb), 0);
        /* tiny and small: the tokenizer covers every row but the padding */
        if (s.vocab < 10000) assert_int_equal(hfgen_tokenizer_size(&s), (int)emb.pad_row);
    }
    hfgen_spec q = preset("qwen2-1.5b");
    assert_true(hfgen_param_count(&q) == 1777088000ull);
    hfgen_spec l = preset("llama-8b");
    assert_true(hfgen_param_count(&l) == 8030261248ull);
    hfgen_spec bad;
    assert_int_equal(hfgen_preset("no-such-preset", &bad), -1);
}

static void test_validate_rejects_inconsistent_specs(void **state) {
    (void)state;
    deepc_err err;
    hfgen_spec s = preset("tiny-qwen2");
    s.n_heads = 5;  /* does not divide dim 64 */
    err.msg[0] = 0;
    assert_int_equal(hfgen_validate(&s, &err), -1);
    assert_non_null(strstr(err.msg, "n_heads"));
    s = preset("tiny-qwen2");
    s.n_kv_heads = 3;
    assert_int_equal(hfgen_validate(&s, &err), -1);
    s = preset("tiny-qwen2");
    s.vocab = 200;  /* cannot hold the 256 byte tokens */
    assert_int_equal(hfgen_validate(&s, &err), -1);
    s = preset("tiny-qwen2");
    s.dtype = "F8_E4M3";
    assert_int_equal(hfgen_validate(&s, &err), -1);
    s = preset("tiny-qwen2");
    s.arch = "mistral";
    assert_int_equal(hfgen_validate(&s, &err), -1);
    assert_null(ref_model_from_spec(&s));
}

/* ---- numbers ------------------------------------------------------------ */

static float bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round-to-nearest-even at the exact halfway points, overflow and subnormals. */
static void test_half_conversions_round_to_nearest_even(void **state) {
    (void)state;
    assert_int_equal(hfgen_f32_to_bf16(1.0f), 0x3F80);
    assert_int_equal(hfgen_f32_to_bf16(bits(0x3F808000u)), 0x3F80);  /* tie, even stays */
    assert_int_equal(hfgen_f32_to_bf16(bits(0x3F818000u)), 0x3F82);  /* tie, odd rounds up */
    assert_int_equal(hfgen_f32_to_bf16(bits(0x3F808001u)), 0x3F81);  /* above tie */
    assert_int_equal(hfgen_f32_to_bf16(-2.0f), 0xC000);
    assert_true(isnan(hfgen_bf16_to_f32(hfgen_f32_to_bf16(NAN))));

    assert_int_equal(hfgen_f32_to_f16(1.0f), 0x3C00);
    assert_int_equal(hfgen_f32_to_f16(-2.0f), 0xC000);
    assert_int_equal(hfgen_f32_to_f16(65504.0f), 0x7BFF);          /* max finite */
    assert_int_equal(hfgen_f32_to_f16(65519.0f), 0x7BFF);          /* below the 65520 tie */
    assert_int_equal(hfgen_f32_to_f16(65520.0f), 0x7C00);          /* tie rounds to inf */
    assert_int_equal(hfgen_f32_to_f16(ldexpf(1.0f, -24)), 0x0001); /* smallest subnormal */
    assert_int_equal(hfgen_f32_to_f16(ldexpf(1.0f, -25)), 0x0000); /* tie to even: 0 */
    assert_int_equal(hfgen_f32_to_f16(ldexpf(3.0f, -25)), 0x0002); /* 1.5 ulp: tie to even 2 */
    assert_int_equal(hfgen_f32_to_f16(ldexpf(1.0f, -14)), 0x0400); /* smallest normal */
    assert_int_equal(hfgen_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3C00); /* tie, even */
    assert_int_equal(hfgen_f32_to_f16(1.0f + ldexpf(3.0f, -11)), 0x3C02); /* tie, odd up */
    /* every f16 value survives f16 -> f32 -> f16 */
    for (uint32_t h = 0; h < 0x7C00; h++) {
        assert_int_equal(hfgen_f32_to_f16(hfgen_f16_to_f32((uint16_t)h)), h);
        assert_int_equal(hfgen_f32_to_f16(hfgen_f16_to_f32((uint16_t)(h | 0x8000))), h | 0x8000);
    }
}

/* Element i of a tensor does not depend on how the tensor is sliced. */
static void test_fill_is_independent_of_slicing(void **state) {
    (void)state;
    hfgen_spec s = preset("tiny-llama");
    hfgen_tensor t;
    assert_int_equal(hfgen_tensor_find(&s, "model.layers.1.mlp.up_proj.weight", &t), 0);
    float whole[1001], parts[1001];
    hfgen_fill(&s, &t, 0, whole, 1001);
    size_t cuts[] = {0, 1, 2, 7, 100, 333, 334, 1001};
    for (size_t i = 0; i + 1 < sizeof cuts / sizeof cuts[0]; i++)
        hfgen_fill(&s, &t, cuts[i], parts + cuts[i], cuts[i + 1] - cuts[i]);
    assert_memory_equal(whole, parts, sizeof whole);
    /* and the scale is what the tensor says: std 1/sqrt(dim) */
    double ss = 0.0;
    for (int i = 0; i < 1001; i++) ss += (double)whole[i] * whole[i];
    double sd = sqrt(ss / 1001);
    assert_true(fabs(sd - t.std) < 0.1 * t.std);
}

/* ---- files -------------------------------------------------------------- */

/* One safetensors file: 8-byte length, header padded to 8 with spaces,
 * every tensor with its dtype and PyTorch shape, data offsets contiguous and
 * covering the data exactly, bytes equal to the BF16 of hfgen_fill. */
static void test_single_file_checkpoint_is_well_formed(void **state) {
    (void)state;
    hfgen_spec s = preset("tiny-qwen2");
    hfr_checkpoint c = written(&s);
    const char *h = c.shard[0].header;
    assert_int_equal(c.shard[0].header_len % 8, 0);
    assert_int_equal(h[0], '{');
    assert_non_null(strstr(h, "\"__metadata__\":{\"format\":\"pt\"}"));

    const int nt = hfgen_tensor_count(&s);
    assert_int_equal(nt, 1 + 2 * 12 + 1);  /* embed, 2 layers with biases, norm; tied: no lm_head */
    uint64_t covered = 0;
    for (int i = 0; i < nt; i++) {
        hfgen_tensor t;
        hfr_entry e;
        assert_int_equal(hfgen_tensor_at(&s, i, &t), 0);
        assert_int_equal(hfr_locate(&c, t.name, &e), 0);
        assert_string_equal(e.dtype, "BF16");
        assert_int_equal(e.ndim, t.ndim);
        assert_true(e.shape[0] == t.shape[0] && e.shape[1] == t.shape[1]);
        assert_true(e.end - e.begin == t.n_elems * 2);
        covered += e.end - e.begin;
    }
    assert_true(covered == hfr_data_bytes(&c, 0));
    assert_null(strstr(h, "lm_head.weight"));

    /* q_proj is [n_heads*head_dim, dim] = [64, 64]; k_proj [2*16, 64] */
    hfr_entry e;
    assert_true(hfr_st_find(h, "model.layers.0.self_attn.k_proj.weight", &e));
    assert_true(e.shape[0] == 32 && e.shape[1] == 64);
    assert_true(hfr_st_find(h, "model.layers.1.self_attn.v_proj.bias", &e));
    assert_true(e.shape[0] == 32 && e.ndim == 1);

    /* bytes of one tensor */
    hfgen_tensor t;
    assert_int_equal(hfgen_tensor_find(&s, "model.layers.1.mlp.down_proj.weight", &t), 0);
    assert_true(hfr_st_find(h, t.name, &e));
    float *v = malloc(t.n_elems * sizeof(float));
    assert_non_null(v);
    hfgen_fill(&s, &t, 0, v, t.n_elems);
    const uint8_t *p = hfr_data(&c, 0, &e);
    assert_non_null(p);
    for (uint64_t i = 0; i < t.n_elems; i++) assert_int_equal(hfr_le_u16(p + 2 * i), hfgen_f32_to_bf16(v[i]));
    free(v);
    hfr_close(&c);
}

/* Sharded: the index names every tensor once, in a shard that has it;
 * total_size is the sum of tensor bytes; no model.safetensors is left. */
static void test_sharded_index_names_every_tensor(void **state) {
    (void)state;
    hfgen_spec s = preset("tiny-llama");
    s.n_shards = 3;
    s.dtype = "F16";
    hfr_checkpoint c = written(&s);  /* model-0000K-of-00003.safetensors + index */
    assert_false(hfr_exists(c.dir, "model.safetensors"));
    uint64_t total = 0, cover[3] = {0, 0, 0};
    const int nt = hfgen_tensor_count(&s);
    assert_int_equal(nt, 1 + 2 * 9 + 2);  /* untied: lm_head present, no biases */
    for (int i = 0; i < nt; i++) {
        hfgen_tensor t;
        hfr_entry e;
        assert_int_equal(hfgen_tensor_at(&s, i, &t), 0);
        const int k = hfr_locate(&c, t.name, &e);   /* named by the index, in that shard only */
        assert_true(k >= 0 && k < 3);
        assert_string_equal(e.dtype, "F16");
        cover[k] += e.end - e.begin;
        total += t.n_elems * 2;
    }
    for (int k = 0; k < 3; k++) {
        assert_true(cover[k] > 0);
        assert_true(cover[k] == hfr_data_bytes(&c, k));
    }
    char want[64];
    snprintf(want, sizeof want, "\"total_size\": %llu", (unsigned long long)total);
    assert_non_null(strstr(c.index, want));
    hfr_close(&c);
}

/* Same spec and seed: the same bytes in every file; another seed: other weights. */
static void test_same_seed_gives_same_bytes(void **state) {
    (void)state;
    hfgen_spec s = preset("tiny-qwen2");
    hfr_checkpoint a = written(&s), b = written(&s);
    s.seed = 99;
    hfr_checkpoint c = written(&s);
    assert_true(hfr_same_files(&a, &b));
    assert_true(a.shard[0].len == c.shard[0].len);
    assert_true(memcmp(a.shard[0].data, c.shard[0].data, a.shard[0].len) != 0);
    hfr_close(&a);
    hfr_close(&b);
    hfr_close(&c);
}

/* config.json carries the real keys; ids agree with the tokenizer files. */
static void test_config_and_tokenizer_agree(void **state) {
    (void)state;
    hfgen_spec s = preset("tiny-qwen2");
    hfr_checkpoint c = written(&s);
    const char *cfg = c.config, *tok = c.tokenizer, *tcfg = c.tokenizer_config;
    static const char *const keys[] = {
        "\"Qwen2ForCausalLM\"", "\"model_type\": \"qwen2\"", "\"hidden_size\": 64", "\"intermediate_size\": 160",
        "\"num_hidden_layers\": 2", "\"num_attention_heads\": 4", "\"num_key_value_heads\": 2",
        "\"vocab_size\": 512", "\"rms_norm_eps\": 1e-06", "\"rope_theta\": 10000,",
        "\"tie_word_embeddings\": true", "\"hidden_act\": \"silu\"", "\"torch_dtype\": \"bfloat16\"",
        "\"use_sliding_window\": false", "\"max_position_embeddings\": 4096",
    };
    const char *missing = hfr_first_missing(cfg, keys, sizeof keys / sizeof keys[0]);
    if (missing) print_error("config.json lacks %s\n", missing);
    assert_null(missing);
    const int bos = hfgen_bos_id(&s), eos = hfgen_eos_id(&s), ntok = hfgen_tokenizer_size(&s);
    char want[128];
    /* R1-Distill-Qwen's config.json names <｜end▁of▁sentence｜> as both ids */
    snprintf(want, sizeof want, "\"bos_token_id\": %d,\n  \"eos_token_id\": %d,", eos, eos);
    assert_non_null(strstr(cfg, want));
    snprintf(want, sizeof want, "\"bos_token_id\": %d,\n  \"eos_token_id\": %d,", bos, eos);
    assert_non_null(strstr(c.generation_config, want));
    snprintf(want, sizeof want, "\"id\": %d,\n      \"content\": \"<｜begin▁of▁sentence｜>\"", bos);
    assert_non_null(strstr(tok, want));
    snprintf(want, sizeof want, "\"id\": %d,\n      \"content\": \"<｜end▁of▁sentence｜>\"", eos);
    assert_non_null(strstr(tok, want));
    snprintf(want, sizeof want, "\"id\": %d,\n      \"content\": \"<|file_sep|>\"", ntok - 1);
    assert_non_null(strstr(tok, want));
    snprintf(want, sizeof want, "\"ids\": [\n          %d\n", bos);
    assert_non_null(strstr(tok, want));  /* TemplateProcessing prepends BOS */
    assert_non_null(strstr(tok, "\"type\": \"NFC\""));
    assert_non_null(strstr(tok, "\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+"));  /* Qwen: single digits */
    /* the byte-level alphabet: id 0 is "!", the first merge makes "Ġt"-like tokens */
    assert_non_null(strstr(tok, "\"vocab\": {\n      \"!\": 0,"));
    assert_non_null(strstr(tok, "\"Ġthe\": "));
    assert_non_null(strstr(tcfg, "<｜Assistant｜><think>\\\\n"));
    assert_non_null(strstr(tcfg, "\"add_bos_token\": true"));
    assert_true(ntok <= s.vocab);
    hfr_close(&c);
}

/* The Llama flavour: llama3 rope_scaling, Llama 3 digit grouping, merges as
 * "a b" strings, BOS through a Sequence post-processor. */
static void test_llama_files_carry_llama3_fields(void **state) {
    (void)state;
    hfgen_spec s = preset("tiny-llama");
    hfr_checkpoint c = written(&s);
    static const char *const cfg_keys[] = {
        "\"LlamaForCausalLM\"", "\"rope_type\": \"llama3\"", "\"original_max_position_embeddings\": 256",
        "\"factor\": 8.0", "\"tie_word_embeddings\": false",
    };
    static const char *const tok_keys[] = {
        "\\\\p{N}{1,3}", "\"ignore_merges\": true", "\"merges\": [\n      \"Ġ t\"",
        "\"type\": \"Sequence\",\n    \"processors\"",
    };
    assert_null(hfr_first_missing(c.config, cfg_keys, sizeof cfg_keys / sizeof cfg_keys[0]));
    assert_null(hfr_first_missing(c.tokenizer, tok_keys, sizeof tok_keys / sizeof tok_keys[0]));
    hfr_close(&c);
}

/* ---- reference model ---------------------------------------------------- */

static const char *const TINY[] = {"tiny-qwen2", "tiny-llama"};

/* The fp32 reference of the k-th tiny preset (its spec in *s). */
static ref_model *tiny_ref(int k, hfgen_spec *s) {
    *s = preset(TINY[k]);
    ref_model *m = ref_model_from_spec(s);
    assert_non_null(m);
    return m;
}

static float *run_ref(ref_model *m, const int *tok, int n) {
    const int V = ref_model_config(m)->vocab;
    float *lg = malloc((size_t)n * (size_t)V * sizeof(float));
    assert_non_null(lg);
    assert_int_equal(ref_forward(m, tok, n, lg), 0);
    return lg;
}

/* Logits at position i depend on tokens 0..i only (exactly: nothing of a
 * later row enters an earlier one). */
static void test_ref_forward_is_causal(void **state) {
    (void)state;
    for (int p = 0; p < 2; p++) {
        hfgen_spec s;
        ref_model *m = tiny_ref(p, &s);
        const int V = s.vocab, n = 12, k = 7;
        int a[12], b[12];
        for (int i = 0; i < n; i++) a[i] = b[i] = (i * 53 + 5) % 400;
        for (int i = k; i < n; i++) b[i] = (a[i] + 101) % 400;
        float *la = run_ref(m, a, n), *lb = run_ref(m, b, n);
        assert_memory_equal(la, lb, (size_t)k * (size_t)V * sizeof(float));
        assert_true(memcmp(la + (size_t)k * V, lb + (size_t)k * V, (size_t)V * sizeof(float)) != 0);
        /* the prefix run alone gives the same rows */
        float *lp = run_ref(m, a, k);
        assert_memory_equal(la, lp, (size_t)k * (size_t)V * sizeof(float));
        free(la);
        free(lb);
        free(lp);
        ref_model_free(m);
    }
}

/* RoPE at position 0 is the identity (cos 0 = 1, sin 0 = 0, exactly); at
 * position p it rotates pair (i, i + head_dim/2) by p * inv_freq[i]. */
static void test_rope_position_zero_is_identity(void **state) {
    (void)state;
    hfgen_spec s = preset("tiny-llama");
    ref_config c = ref_config_from_spec(&s);
    float x[16], y[16];
    for (int i = 0; i < 16; i++) x[i] = y[i] = (float)(i - 7) * 0.37f;
    ref_rope_apply(&c, y, 0);
    assert_memory_equal(x, y, sizeof x);
    double inv[8];
    ref_rope_inv_freq(&c, inv);
    ref_rope_apply(&c, y, 5);
    for (int i = 0; i < 8; i++) {
        double a = 5 * inv[i];
        double want0 = x[i] * cos(a) - x[i + 8] * sin(a), want1 = x[i + 8] * cos(a) + x[i] * sin(a);
        assert_true(fabs(y[i] - want0) < 1e-6 && fabs(y[i + 8] - want1) < 1e-6);
    }
}

/* llama3 scaling, tiny-llama config: head_dim 16, theta 1e4, factor 8,
 * low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings
 * 256. Derivation (transformers _compute_llama3_parameters, in double):
 * inv_freq[i] = 1e4^(-i/8); wavelen = 2*pi/inv_freq;
 * high_freq_wavelen = 256/4 = 64, low_freq_wavelen = 256/1 = 256.
 *   i=0,1,2: wavelen 6.28, 19.87, 62.83 < 64        -> kept: 1, 0.316227..., 0.1
 *   i=3:     wavelen 198.69 in [64, 256]            -> smooth = (256/198.69 - 1)/3
 *            = 0.0961426099582894; f = 0.0316227766 * ((1 - smooth)/8 + smooth)
 *            = 0.0066131063172475526
 *   i=4..7:  wavelen 628, 1987, 6283, 19869 > 256   -> divided by 8 */
static void test_llama3_scaling_changes_only_low_frequencies(void **state) {
    (void)state;
    hfgen_spec s = preset("tiny-llama");
    ref_config c = ref_config_from_spec(&s);
    static const double want[8] = {
        1.0, 0.31622776601683794, 0.1, 0.0066131063172475526,
        0.00125, 0.00039528470752104737, 0.000125, 3.952847075210474e-05,
    };
    double got[8], plain[8];
    ref_rope_inv_freq(&c, got);
    c.rope_llama3 = false;
    ref_rope_inv_freq(&c, plain);
    for (int i = 0; i < 8; i++) {
        assert_true(fabs(got[i] - want[i]) <= 1e-14 * want[i]);
        assert_true(fabs(plain[i] - pow(10000.0, -i / 8.0)) <= 1e-15 * plain[i]);
    }
    for (int i = 0; i < 3; i++) assert_true(got[i] == plain[i]);          /* high: untouched */
    for (int i = 4; i < 8; i++) assert_true(got[i] == plain[i] / 8.0);    /* low: / factor */
    assert_true(got[3] > plain[3] / 8.0 && got[3] < plain[3]);            /* between */
}

/* Loading the written directory with the reference's own reader gives
 * bit-identical logits to regenerating from the spec: the reference sees
 * exactly the stored (dtype-rounded) values, for single-file and sharded,
 * BF16 and F16 checkpoints. */
static void test_ref_load_matches_ref_from_spec(void **state) {
    (void)state;
    struct { const char *preset; const char *dtype; int shards; } cases[] = {
        {"tiny-qwen2", "BF16", 1}, {"tiny-llama", "F16", 3}, {"tiny-llama", "F32", 2},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        hfgen_spec s = preset(cases[ci].preset);
        s.dtype = cases[ci].dtype;
        s.n_shards = cases[ci].shards;
        hfr_checkpoint c = written(&s);
        deepc_err err;
        err.msg[0] = 0;
        ref_model *a = ref_model_from_spec(&s);
        ref_model *b = ref_model_load(c.dir, &err);
        if (!b) print_error("ref_model_load: %s\n", err.msg);
        assert_non_null(a);
        assert_non_null(b);
        const ref_config *ca = ref_model_config(a), *cb = ref_model_config(b);
        assert_int_equal(ca->vocab, cb->vocab);
        assert_int_equal(ca->attn_bias, cb->attn_bias);
        assert_int_equal(ca->rope_llama3, cb->rope_llama3);
        assert_true(ca->rope_orig_max_pos == cb->rope_orig_max_pos);
        int tok[9] = {1, 300, 42, 17, 255, 256, 400, 3, 99};
        float *la = run_ref(a, tok, 9), *lb = run_ref(b, tok, 9);
        assert_memory_equal(la, lb, (size_t)9 * (size_t)s.vocab * sizeof(float));
        free(la);
        free(lb);
        ref_model_free(a);
        ref_model_free(b);
        hfr_close(&c);
    }
    deepc_err err;
    err.msg[0] = 0;
    assert_null(ref_model_load("/nonexistent/deepc/dir", &err));
    assert_true(err.msg[0] != 0);
}

/* The tiny models are useful for parity tests: finite logits with a spread
 * of a few units (std ~2), not flat, not saturated. */
static void test_ref_logits_have_a_useful_spread(void **state) {
    (void)state;
    for (int p = 0; p < 2; p++) {
        hfgen_spec s;
        ref_model *m = tiny_ref(p, &s);
        int tok[16];
        for (int i = 0; i < 16; i++) tok[i] = (i * 29 + 3) % hfgen_tokenizer_size(&s);
        float *lg = run_ref(m, tok, 16);
        double sum = 0, sq = 0;
        const size_t n = (size_t)16 * (size_t)s.vocab;
        for (size_t i = 0; i < n; i++) {
            assert_true(isfinite(lg[i]));
            sum += lg[i];
            sq += (double)lg[i] * lg[i];
        }
        double mean = sum / (double)n, sd = sqrt(sq / (double)n - mean * mean);
        assert_true(sd > 1.0 && sd < 4.0);
        assert_true(fabs(mean) < 0.5);
        /* vocab padding rows (std / 10) are never the most likely token */
        const int ntok = hfgen_tokenizer_size(&s);
        for (int t = 0; t < 16; t++) {
            const float *row = lg + (size_t)t * (size_t)s.vocab;
            int best = 0;
            for (int v = 1; v < s.vocab; v++)
                if (row[v] > row[best]) best = v;
            assert_true(best < ntok);
        }
        free(lg);
        ref_model_free(m);
    }
}

static void test_ref_forward_rejects_bad_tokens(void **state) {
    (void)state;
    hfgen_spec s = preset("tiny-qwen2");
    ref_model *m = ref_model_from_spec(&s);
    assert_non_null(m);
    float lg[512];
    int bad = 512, neg = -1, ok = 0;
    assert_int_equal(ref_forward(m, &bad, 1, lg), -1);
    assert_int_equal(ref_forward(m, &neg, 1, lg), -1);
    assert_int_equal(ref_forward(m, &ok, 0, lg), -1);
    assert_int_equal(ref_forward(m, &ok, 1, lg), 0);
    ref_model_free(m);
    ref_model_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets_are_valid_and_real_sized),
        cmocka_unit_test(test_validate_rejects_inconsistent_specs),
        cmocka_unit_test(test_half_conversions_round_to_nearest_even),
        cmocka_unit_test(test_fill_is_independent_of_slicing),
        cmocka_unit_test(test_single_file_checkpoint_is_well_formed),
        cmocka_unit_test(test_sharded_index_names_every_tensor),
        cmocka_unit_test(test_same_seed_gives_same_bytes),
        cmocka_unit_test(test_config_and_tokenizer_agree),
        cmocka_unit_test(test_llama_files_carry_llama3_fields),
        cmocka_unit_test(test_ref_forward_is_causal),
        cmocka_unit_test(test_rope_position_zero_is_identity),
        cmocka_unit_test(test_llama3_scaling_changes_only_low_frequencies),
        cmocka_unit_test(test_ref_load_matches_ref_from_spec),
        cmocka_unit_test(test_ref_logits_have_a_useful_spread),
        cmocka_unit_test(test_ref_forward_rejects_bad_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
