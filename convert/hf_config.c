/* hf_config.c - reads a Hugging Face config.json into deepc_hparams for the
 * supported architectures (Qwen2, Llama 3, DeepSeek-V2, DeepSeek-V3) and
 * writes them as .dqf metadata. Anything the engine would compute wrongly is
 * refused here with the offending key named. */
#include <stdio.h>
#include <string.h>

#include "convert.h"

static int cfg_int(const deepc_json *cfg, const char *key, int64_t dflt, int64_t lo, int64_t hi, int *out, deepc_err *err) {
    const deepc_json *v = deepc_json_get(cfg, key);
    int64_t x = dflt;
    if (v && deepc_json_type_of(v) != DEEPC_JSON_NULL) {
        if (!deepc_json_int(v, &x)) return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: '%s' must be an integer", key);
    } else if (dflt < 0) {
        return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: missing '%s'", key);
    }
    if (x < lo || x > hi) return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: '%s' = %lld is out of range [%lld, %lld]", key, (long long)x, (long long)lo, (long long)hi);
    *out = (int)x;
    return 0;
}

static int cfg_float(const deepc_json *cfg, const char *key, double dflt, double lo, double hi, float *out, deepc_err *err) {
    const deepc_json *v = deepc_json_get(cfg, key);
    double x = dflt;
    if (v && deepc_json_type_of(v) != DEEPC_JSON_NULL) {
        if (deepc_json_type_of(v) != DEEPC_JSON_NUMBER) return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: '%s' must be a number", key);
        x = deepc_json_num(v, dflt);
    } else if (dflt < 0) {
        return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: missing '%s'", key);
    }
    if (!(x >= lo && x <= hi)) return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: '%s' = %g is out of range [%g, %g]", key, x, lo, hi);
    *out = (float)x;
    return 0;
}

static bool cfg_bool(const deepc_json *cfg, const char *key, bool dflt) {
    return deepc_json_bool(deepc_json_get(cfg, key), dflt);
}

static bool str_is(const deepc_json *v, const char *s) {
    size_t n;
    const char *t = deepc_json_str(v, &n);
    return t && n == strlen(s) && !memcmp(t, s, n);
}

static int bad_str(const deepc_json *v, const char *key, const char *allowed, deepc_err *err) {
    size_t n = 0;
    const char *t = deepc_json_str(v, &n);
    return deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "config.json: %s '%.*s' is not supported (supported: %s)", key,
                      (int)(n > 60 ? 60 : n), t ? t : "?", allowed);
}

static int parse_llama3_scaling(const deepc_json *rs, deepc_hparams *hp, deepc_err *err) {
    hp->rope_scaling = DEEPC_ROPE_SCALING_LLAMA3;
    int rc = cfg_float(rs, "factor", -1, 1.0, 1e6, &hp->rope_factor, err);
    if (!rc) rc = cfg_float(rs, "low_freq_factor", -1, 1e-6, 1e6, &hp->rope_low_freq_factor, err);
    if (!rc) rc = cfg_float(rs, "high_freq_factor", -1, 1e-6, 1e6, &hp->rope_high_freq_factor, err);
    if (!rc) rc = cfg_int(rs, "original_max_position_embeddings", -1, 1, 1 << 24, &hp->rope_orig_ctx, err);
    if (!rc && hp->rope_high_freq_factor <= hp->rope_low_freq_factor)
        rc = deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: rope_scaling high_freq_factor must exceed low_freq_factor");
    return rc;
}

static int parse_yarn(const deepc_json *rs, deepc_hparams *hp, deepc_err *err) {
    deepc_yarn_params *y = &hp->yarn;
    hp->rope_scaling = DEEPC_ROPE_SCALING_YARN;
    y->rope_theta = hp->rope_theta;
    int rc = cfg_float(rs, "factor", -1, 1.0, 1e6, &y->factor, err);
    if (!rc) rc = cfg_int(rs, "original_max_position_embeddings", -1, 1, 1 << 24, &y->original_max_position_embeddings, err);
    if (!rc) rc = cfg_float(rs, "beta_fast", 32, 0, 1e6, &y->beta_fast, err);
    if (!rc) rc = cfg_float(rs, "beta_slow", 1, 0, 1e6, &y->beta_slow, err);
    if (!rc) rc = cfg_float(rs, "mscale", 1, 0, 1e6, &y->mscale, err);
    if (!rc) rc = cfg_float(rs, "mscale_all_dim", 0, 0, 1e6, &y->mscale_all_dim, err);
    return rc;
}

static int parse_deepseek(const deepc_json *cfg, deepc_hparams *hp, deepc_err *err) {
    int rc = cfg_int(cfg, "q_lora_rank", 0, 0, 1 << 16, &hp->q_lora_rank, err);
    if (!rc) rc = cfg_int(cfg, "kv_lora_rank", -1, 1, 1 << 16, &hp->kv_lora_rank, err);
    if (!rc) rc = cfg_int(cfg, "qk_nope_head_dim", -1, 1, 4096, &hp->qk_nope, err);
    if (!rc) rc = cfg_int(cfg, "qk_rope_head_dim", -1, 2, 4096, &hp->qk_rope, err);
    if (!rc) rc = cfg_int(cfg, "v_head_dim", -1, 1, 4096, &hp->v_head, err);
    if (!rc) rc = cfg_int(cfg, "moe_intermediate_size", -1, 1, 1 << 20, &hp->n_ff_exp, err);
    if (!rc) rc = cfg_int(cfg, "n_routed_experts", -1, 1, 1 << 16, &hp->route.n_experts, err);
    if (!rc) rc = cfg_int(cfg, "n_shared_experts", 0, 0, 64, &hp->n_expert_shared, err);
    if (!rc) rc = cfg_int(cfg, "num_experts_per_tok", -1, 1, 1 << 16, &hp->route.top_k, err);
    if (!rc) rc = cfg_int(cfg, "first_k_dense_replace", 0, 0, hp->n_layers, &hp->first_k_dense, err);
    if (!rc) rc = cfg_int(cfg, "n_group", 1, 1, 1 << 16, &hp->route.n_group, err);
    if (!rc) rc = cfg_int(cfg, "topk_group", 1, 1, 1 << 16, &hp->route.topk_group, err);
    if (!rc) rc = cfg_int(cfg, "num_nextn_predict_layers", 0, 0, 64, &hp->n_mtp, err);
    if (!rc) rc = cfg_float(cfg, "routed_scaling_factor", 1.0, 1e-6, 1e6, &hp->route.routed_scaling_factor, err);
    if (rc) return rc;
    int freq = 1;
    if ((rc = cfg_int(cfg, "moe_layer_freq", 1, 1, 1024, &freq, err))) return rc;
    if (freq != 1) return deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "config.json: moe_layer_freq %d is not supported (only 1)", freq);
    if (hp->qk_rope % 2) return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: qk_rope_head_dim %d is odd", hp->qk_rope);
    hp->head_dim = hp->qk_nope + hp->qk_rope;
    hp->n_kv_heads = hp->n_heads;
    hp->route.version = hp->arch == DEEPC_ARCH_DEEPSEEK3 ? 3 : 2;
    hp->route.norm_topk_prob = cfg_bool(cfg, "norm_topk_prob", false);
    const deepc_json *sf = deepc_json_get(cfg, "scoring_func");
    if (!sf || str_is(sf, "softmax")) hp->route.score = DEEPC_SCORE_SOFTMAX;
    else if (str_is(sf, "sigmoid")) hp->route.score = DEEPC_SCORE_SIGMOID;
    else return bad_str(sf, "scoring_func", "softmax, sigmoid", err);
    const deepc_json *tm = deepc_json_get(cfg, "topk_method");
    if (!tm || str_is(tm, "greedy")) hp->route.method = DEEPC_TOPK_GREEDY;
    else if (str_is(tm, "group_limited_greedy")) hp->route.method = DEEPC_TOPK_GROUP_LIMITED_GREEDY;
    else if (str_is(tm, "noaux_tc")) hp->route.method = DEEPC_TOPK_NOAUX_TC;
    else return bad_str(tm, "topk_method", "greedy, group_limited_greedy, noaux_tc", err);
    hp->expert_bias = hp->route.method == DEEPC_TOPK_NOAUX_TC;
    char msg[256];
    if (deepc_route_validate(&hp->route, msg, sizeof msg))
        return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: inconsistent MoE routing settings: %s", msg);
    if (hp->tied_embeddings) return deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "config.json: tie_word_embeddings = true is not supported for DeepSeek models");
    const deepc_json *q = deepc_json_get(cfg, "quantization_config");
    if (q && deepc_json_type_of(q) != DEEPC_JSON_NULL) {
        const deepc_json *bs = deepc_json_get(q, "weight_block_size");
        int64_t b0 = 0, b1 = 0;
        if (!str_is(deepc_json_get(q, "quant_method"), "fp8") || (deepc_json_get(q, "fmt") && !str_is(deepc_json_get(q, "fmt"), "e4m3")) ||
            deepc_json_len(bs) != 2 || !deepc_json_int(deepc_json_at(bs, 0), &b0) || !deepc_json_int(deepc_json_at(bs, 1), &b1) || b0 != 128 || b1 != 128)
            return deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "config.json: quantization_config is not the FP8 E4M3 128x128 block scheme of the DeepSeek-V3 release");
    }
    return 0;
}

int deepc_hf_parse_config(const deepc_json *cfg, deepc_hparams *hp, deepc_err *err) {
    memset(hp, 0, sizeof *hp);
    if (deepc_json_type_of(cfg) != DEEPC_JSON_OBJECT) return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: not a JSON object");
    const deepc_json *a0 = deepc_json_at(deepc_json_get(cfg, "architectures"), 0);
    if (!deepc_json_str(a0, NULL)) return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: missing 'architectures'");
    if (str_is(a0, "Qwen2ForCausalLM")) hp->arch = DEEPC_ARCH_QWEN2;
    else if (str_is(a0, "LlamaForCausalLM")) hp->arch = DEEPC_ARCH_LLAMA;
    else if (str_is(a0, "DeepseekV2ForCausalLM")) hp->arch = DEEPC_ARCH_DEEPSEEK2;
    else if (str_is(a0, "DeepseekV3ForCausalLM")) hp->arch = DEEPC_ARCH_DEEPSEEK3;
    else return deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "config.json: architecture '%s' is not supported (supported: Qwen2ForCausalLM, LlamaForCausalLM, DeepseekV2ForCausalLM, DeepseekV3ForCausalLM)",
                           deepc_json_str(a0, NULL));
    bool mla = deepc_arch_is_mla(hp->arch);
    int rc = cfg_int(cfg, "num_hidden_layers", -1, 1, 1024, &hp->n_layers, err);
    if (!rc) rc = cfg_int(cfg, "hidden_size", -1, 1, 65536, &hp->n_embd, err);
    if (!rc) rc = cfg_int(cfg, "intermediate_size", -1, 1, 1 << 20, &hp->n_ff, err);
    if (!rc) rc = cfg_int(cfg, "num_attention_heads", -1, 1, 1024, &hp->n_heads, err);
    if (!rc) rc = cfg_int(cfg, "num_key_value_heads", hp->n_heads, 1, 1024, &hp->n_kv_heads, err);
    if (!rc) rc = cfg_int(cfg, "vocab_size", -1, 1, 1 << 24, &hp->n_vocab, err);
    if (!rc) rc = cfg_int(cfg, "max_position_embeddings", 4096, 1, 1 << 24, &hp->n_ctx_train, err);
    if (!rc) rc = cfg_float(cfg, "rope_theta", 10000.0, 1.0, 1e12, &hp->rope_theta, err);
    if (!rc) rc = cfg_float(cfg, "rms_norm_eps", 1e-6, 0.0, 1.0, &hp->norm_eps, err);
    if (rc) return rc;
    const deepc_json *act = deepc_json_get(cfg, "hidden_act");
    if (act && !str_is(act, "silu")) return bad_str(act, "hidden_act", "silu", err);
    hp->tied_embeddings = cfg_bool(cfg, "tie_word_embeddings", false);
    if (mla) {
        if ((rc = parse_deepseek(cfg, hp, err))) return rc;
    } else {
        if (hp->n_embd % hp->n_heads && !deepc_json_get(cfg, "head_dim"))
            return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: hidden_size %d is not divisible by num_attention_heads %d", hp->n_embd, hp->n_heads);
        if ((rc = cfg_int(cfg, "head_dim", hp->n_embd / hp->n_heads, 2, 1024, &hp->head_dim, err))) return rc;
        if (hp->head_dim % 2) return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: head_dim %d is odd", hp->head_dim);
        if (hp->n_heads % hp->n_kv_heads)
            return deepc_errf(err, DEEPC_ERR_FORMAT, "config.json: num_attention_heads %d is not a multiple of num_key_value_heads %d", hp->n_heads, hp->n_kv_heads);
        if (hp->arch == DEEPC_ARCH_QWEN2) {
            hp->attn_bias = true;   /* Qwen2 attention always has q/k/v biases */
            if (cfg_bool(cfg, "use_sliding_window", false))
                return deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "config.json: use_sliding_window = true is not supported");
        } else if (cfg_bool(cfg, "attention_bias", false) || cfg_bool(cfg, "mlp_bias", false)) {
            return deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "config.json: Llama attention_bias / mlp_bias = true is not supported");
        }
    }
    const deepc_json *rs = deepc_json_get(cfg, "rope_scaling");
    if (rs && deepc_json_type_of(rs) != DEEPC_JSON_NULL) {
        const deepc_json *ty = deepc_json_get(rs, "rope_type");
        if (!ty) ty = deepc_json_get(rs, "type");
        if (!mla && str_is(ty, "llama3")) rc = parse_llama3_scaling(rs, hp, err);
        else if (mla && str_is(ty, "yarn")) rc = parse_yarn(rs, hp, err);
        else rc = bad_str(ty, "rope_scaling type", mla ? "yarn" : "llama3", err);
    }
    return rc;
}

int deepc_hf_write_hparams(deepc_dqf_writer *w, const deepc_hparams *hp) {
    const char *a = deepc_arch_name(hp->arch);
    int rc = deepc_dqf_put_str(w, "general.architecture", a, strlen(a));
    if (!rc) rc = deepc_dqf_put_u32(w, "llm.n_layers", (uint32_t)hp->n_layers);
    if (!rc) rc = deepc_dqf_put_u32(w, "llm.n_embd", (uint32_t)hp->n_embd);
    if (!rc) rc = deepc_dqf_put_u32(w, "llm.n_ff", (uint32_t)hp->n_ff);
    if (!rc) rc = deepc_dqf_put_u32(w, "llm.n_heads", (uint32_t)hp->n_heads);
    if (!rc) rc = deepc_dqf_put_u32(w, "llm.n_kv_heads", (uint32_t)hp->n_kv_heads);
    if (!rc) rc = deepc_dqf_put_u32(w, "llm.head_dim", (uint32_t)hp->head_dim);
    if (!rc) rc = deepc_dqf_put_u32(w, "llm.n_vocab", (uint32_t)hp->n_vocab);
    if (!rc) rc = deepc_dqf_put_u32(w, "llm.n_ctx_train", (uint32_t)hp->n_ctx_train);
    if (!rc) rc = deepc_dqf_put_f32(w, "llm.rope_theta", hp->rope_theta);
    if (!rc) rc = deepc_dqf_put_f32(w, "llm.norm_eps", hp->norm_eps);
    if (!rc) rc = deepc_dqf_put_u32(w, "llm.rope_scaling", (uint32_t)hp->rope_scaling);
    if (!rc && hp->rope_scaling == DEEPC_ROPE_SCALING_LLAMA3) {
        rc = deepc_dqf_put_f32(w, "llm.rope_factor", hp->rope_factor);
        if (!rc) rc = deepc_dqf_put_f32(w, "llm.rope_low_freq_factor", hp->rope_low_freq_factor);
        if (!rc) rc = deepc_dqf_put_f32(w, "llm.rope_high_freq_factor", hp->rope_high_freq_factor);
        if (!rc) rc = deepc_dqf_put_u32(w, "llm.rope_orig_ctx", (uint32_t)hp->rope_orig_ctx);
    }
    if (!rc && hp->rope_scaling == DEEPC_ROPE_SCALING_YARN) {
        rc = deepc_dqf_put_f32(w, "llm.rope_factor", hp->yarn.factor);
        if (!rc) rc = deepc_dqf_put_u32(w, "llm.rope_orig_ctx", (uint32_t)hp->yarn.original_max_position_embeddings);
        if (!rc) rc = deepc_dqf_put_f32(w, "llm.yarn_beta_fast", hp->yarn.beta_fast);
        if (!rc) rc = deepc_dqf_put_f32(w, "llm.yarn_beta_slow", hp->yarn.beta_slow);
        if (!rc) rc = deepc_dqf_put_f32(w, "llm.yarn_mscale", hp->yarn.mscale);
        if (!rc) rc = deepc_dqf_put_f32(w, "llm.yarn_mscale_all_dim", hp->yarn.mscale_all_dim);
    }
    if (!rc) rc = deepc_dqf_put_bool(w, "llm.attn_bias", hp->attn_bias);
    if (!rc) rc = deepc_dqf_put_bool(w, "llm.tied_embeddings", hp->tied_embeddings);
    if (!rc && deepc_arch_is_mla(hp->arch)) {
        const deepc_route_params *r = &hp->route;
        rc = deepc_dqf_put_u32(w, "llm.q_lora_rank", (uint32_t)hp->q_lora_rank);
        if (!rc) rc = deepc_dqf_put_u32(w, "llm.kv_lora_rank", (uint32_t)hp->kv_lora_rank);
        if (!rc) rc = deepc_dqf_put_u32(w, "llm.qk_nope_head_dim", (uint32_t)hp->qk_nope);
        if (!rc) rc = deepc_dqf_put_u32(w, "llm.qk_rope_head_dim", (uint32_t)hp->qk_rope);
        if (!rc) rc = deepc_dqf_put_u32(w, "llm.v_head_dim", (uint32_t)hp->v_head);
        if (!rc) rc = deepc_dqf_put_u32(w, "llm.n_ff_exp", (uint32_t)hp->n_ff_exp);
        if (!rc) rc = deepc_dqf_put_u32(w, "llm.n_expert", (uint32_t)r->n_experts);
        if (!rc) rc = deepc_dqf_put_u32(w, "llm.n_expert_shared", (uint32_t)hp->n_expert_shared);
        if (!rc) rc = deepc_dqf_put_u32(w, "llm.n_expert_used", (uint32_t)r->top_k);
        if (!rc) rc = deepc_dqf_put_u32(w, "llm.first_k_dense", (uint32_t)hp->first_k_dense);
        if (!rc) rc = deepc_dqf_put_u32(w, "llm.n_group", (uint32_t)r->n_group);
        if (!rc) rc = deepc_dqf_put_u32(w, "llm.topk_group", (uint32_t)r->topk_group);
        if (!rc) rc = deepc_dqf_put_u32(w, "llm.score_func", (uint32_t)r->score);
        if (!rc) rc = deepc_dqf_put_u32(w, "llm.topk_method", (uint32_t)r->method);
        if (!rc) rc = deepc_dqf_put_u32(w, "llm.route_version", (uint32_t)r->version);
        if (!rc) rc = deepc_dqf_put_bool(w, "llm.norm_topk_prob", r->norm_topk_prob);
        if (!rc) rc = deepc_dqf_put_f32(w, "llm.routed_scaling_factor", r->routed_scaling_factor);
        if (!rc) rc = deepc_dqf_put_bool(w, "llm.expert_bias", hp->expert_bias);
        if (!rc) rc = deepc_dqf_put_u32(w, "llm.n_mtp", (uint32_t)hp->n_mtp);
    }
    return rc;
}
