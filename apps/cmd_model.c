/* cmd_model.c - the subcommands that work on model files as a whole:
 * convert, info and verify. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

static void print_progress(void *user, int level, const char *msg) {
    (void)level;
    bool tty = *(bool *)user;
    /* rewrite one status line on a terminal; plain lines in logs */
    if (tty && msg[0] == '[') fprintf(stderr, "\r\033[K%s", msg);
    else fprintf(stderr, "%s%s\n", tty ? "\r\033[K" : "", msg);
    fflush(stderr);
}

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    deepc_convert_params p = deepc_convert_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: deepc convert <hf_dir> <out.dqf> [--type TYPE|RECIPE] [--chat-template NAME] [--no-tokenizer]\n"
                   "  Converts a Hugging Face checkpoint directory (config.json, *.safetensors,\n"
                   "  tokenizer.json) into one .dqf file. Chat template names:\n"
                   "  deepseek-r1, deepseek-v3, deepseek-v2, chatml, llama3 (default: detected).\n"
                   "  --type: one type for every matrix (vectors and the MoE router stay f32):\n"
                   "    f32, f16, bf16, q8_0 (default, 8.5 bits/weight), q6_k (6.56), q4_k (4.5),\n"
                   "    q3_k (3.44), q2_k (2.63), fp8 (E4M3 + a scale per 128, 8.25; an FP8\n"
                   "    checkpoint is copied losslessly);\n"
                   "  or a recipe:\n"
                   "    q4          q4_k, with q6_k for the output head, MLA's kv_a_proj, and\n"
                   "                the value and down projections of the sensitive layers (the\n"
                   "                first and last eighth, every third between); the sizes of\n"
                   "                llama.cpp's Q4_K_M\n"
                   "    q2-experts  as q4 with routed experts q2_k (down_proj q3_k)\n"
                   "  Rows that are not whole blocks of the type (256 for q*_k, 128 for fp8) fall\n"
                   "  back, when a multiple of 32, to q4_1 (5.0 bits/weight) from q4_k, q3_k and\n"
                   "  q2_k and to q8_0 from q6_k and fp8; otherwise to f16.\n"
                   "  --no-tokenizer keeps the weights only (for tokenizers deepc cannot reproduce).\n"
                   "  Architectures: Qwen2ForCausalLM, LlamaForCausalLM, DeepseekV2ForCausalLM,\n"
                   "  DeepseekV3ForCausalLM (BF16/F16/F32, and FP8 E4M3 with 128x128 block scales).\n");
            return CLI_OK;
        } else if (!strcmp(a, "--type") || !strcmp(a, "-t")) {
            if (!(p.type = cli_value(argc, argv, &i))) return cli_usage_error("convert", "--type needs a value");
        } else if (!strcmp(a, "--no-tokenizer")) {
            p.no_tokenizer = true;
        } else if (!strcmp(a, "--chat-template")) {
            if (!(p.chat_template = cli_value(argc, argv, &i))) return cli_usage_error("convert", "--chat-template needs a value");
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("convert", "unknown option '%s'", a);
        } else if (!in) in = a;
        else if (!out) out = a;
        else return cli_usage_error("convert", "unexpected argument '%s'", a);
    }
    if (!in || !out) return cli_usage_error("convert", "expected <hf_dir> <out.dqf>");
    bool tty = isatty(2);
    p.progress = print_progress;
    p.progress_user = &tty;
    deepc_status st = deepc_convert(in, out, &p);
    if (st) {
        if (tty) fputc('\n', stderr);
        return cli_fail("convert", "%s", deepc_open_error());
    }
    return CLI_OK;
}

/* Tensor classes for the bits/weight summary, by .dqf tensor name (the
 * converter's recipes choose types by the same classes). */
enum { CLS_EMBED, CLS_ATTN, CLS_DENSE, CLS_SHARED, CLS_EXPERT, CLS_OUTPUT, CLS_VECTOR, CLS_MTP, CLS_OTHER, CLS_N };
static const char *const class_names[CLS_N] = {
    "embedding", "attention", "dense MLP", "shared experts", "routed experts", "output head",
    "norms, router", "MTP (optional)", "other",
};

static int tensor_class(const char *name, int ndim, int n_layers) {
    int layer;
    if (sscanf(name, "model.layers.%d.", &layer) == 1 && layer >= n_layers) return CLS_MTP;
    if (ndim == 1 || strstr(name, ".mlp.gate.weight")) return CLS_VECTOR;
    if (!strcmp(name, "model.embed_tokens.weight")) return CLS_EMBED;
    if (!strcmp(name, "lm_head.weight")) return CLS_OUTPUT;
    if (strstr(name, ".mlp.experts.")) return CLS_EXPERT;
    if (strstr(name, ".mlp.shared_experts.")) return CLS_SHARED;
    if (strstr(name, ".self_attn.")) return CLS_ATTN;
    if (strstr(name, ".mlp.")) return CLS_DENSE;
    return CLS_OTHER;
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    long long ctx = 4096;
    bool tensors = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: deepc info <model.dqf> [--ctx N] [--tensors]\n"
                   "  Prints the architecture, hyperparameters, tensor types and sizes, and the\n"
                   "  memory needed for the weights and for a KV cache of N tokens (default 4096).\n"
                   "  --tensors lists every tensor.\n");
            return CLI_OK;
        } else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) {
            if (!cli_parse_int(cli_value(argc, argv, &i), 1, 1 << 24, &ctx)) return cli_usage_error("info", "--ctx needs a number in [1, 16777216]");
        } else if (!strcmp(a, "--tensors")) {
            tensors = true;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("info", "unknown option '%s'", a);
        } else if (!path) path = a;
        else return cli_usage_error("info", "unexpected argument '%s'", a);
    }
    if (!path) return cli_usage_error("info", "expected <model.dqf>");
    deepc_model *m;
    if (cli_model_open_mapped("info", path, &m)) return cli_fail("info", "%s", deepc_open_error());
    deepc_model_info mi = { .struct_size = sizeof mi };
    deepc_model_get_info(m, &mi);
    size_t ql, cl;
    const char *q = deepc_model_meta_str(m, "general.quantization", &ql);
    const char *cv = deepc_model_meta_str(m, "general.converter", &cl);
    char b1[32], b2[32];
    printf("file:            %s\n", path);
    printf("source:          %s\n", mi.name);
    printf("converter:       %.*s, quantization %.*s\n", (int)cl, cv ? cv : "?", (int)ql, q ? q : "?");
    printf("architecture:    %s\n", mi.arch);
    printf("layers:          %d\n", mi.n_layers);
    printf("hidden size:     %d\n", mi.n_embd);
    printf("ffn size:        %d\n", mi.n_ff);
    if (mi.kv_lora_rank) {
        printf("attention:       MLA, %d heads, q_lora_rank %d, kv_lora_rank %d, qk dims %d nope + %d rope, v dim %d\n",
               mi.n_heads, mi.q_lora_rank, mi.kv_lora_rank, mi.qk_nope_head_dim, mi.qk_rope_head_dim, mi.v_head_dim);
        printf("experts:         %d routed (%d per token), %d shared, width %d; first %d layer(s) dense\n",
               mi.n_expert, mi.n_expert_used, mi.n_expert_shared, mi.n_ff_exp, mi.first_k_dense);
        if (mi.n_mtp) printf("MTP layers:      %d (kept in the file, skipped by the forward pass)\n", mi.n_mtp);
    } else {
        printf("heads:           %d (kv heads %d, head dim %d)\n", mi.n_heads, mi.n_kv_heads, mi.head_dim);
    }
    printf("vocabulary:      %d\n", mi.n_vocab);
    printf("trained context: %d\n", mi.n_ctx_train);
    printf("rope theta:      %g\n", mi.rope_theta);
    printf("norm eps:        %g\n", mi.norm_eps);
    printf("bos / eos ids:   %d / %d\n", mi.bos_id, mi.eos_id);
    double div = mi.n_params >= 1000000000ull ? 1e9 : 1e6;
    const char *unit = div == 1e9 ? "B" : "M";
    printf("parameters:      %.3f %s total, %.3f %s active per token (the embedding table is read one row per token)\n",
           mi.n_params / div, unit, mi.n_params_active / div, unit);

    /* bytes per tensor type */
    const char *types[16];
    uint64_t tb[16] = {0}, tn[16] = {0}, te[16] = {0};
    int nt = 0;
    uint64_t cb[CLS_N] = {0}, cn[CLS_N] = {0}, ce[CLS_N] = {0};
    size_t n = deepc_model_n_tensors(m);
    for (size_t i = 0; i < n; i++) {
        deepc_tensor_info ti;
        deepc_model_tensor(m, i, &ti);
        int k = 0;
        while (k < nt && strcmp(types[k], ti.type)) k++;
        if (k == nt && nt < 16) types[nt++] = ti.type;
        if (k < 16) { tb[k] += ti.bytes; tn[k]++; te[k] += ti.n_elems; }
        int c = tensor_class(ti.name, ti.ndim, mi.n_layers);
        cb[c] += ti.bytes; cn[c]++; ce[c] += ti.n_elems;
    }
    printf("tensors:         %zu\n", n);
    for (int k = 0; k < nt; k++) {
        deepc_fmt_bytes(b1, sizeof b1, (double)tb[k]);
        printf("  %-8s %5llu tensors  %12s  %.2f bits/weight\n", types[k], (unsigned long long)tn[k], b1, te[k] ? 8.0 * tb[k] / te[k] : 0.0);
    }
    printf("by class:\n");
    for (int c = 0; c < CLS_N; c++) {
        if (!cn[c]) continue;
        deepc_fmt_bytes(b1, sizeof b1, (double)cb[c]);
        printf("  %-15s %5llu tensors  %12s  %.2f bits/weight\n", class_names[c], (unsigned long long)cn[c], b1,
               ce[c] ? 8.0 * cb[c] / ce[c] : 0.0);
    }
    if (ctx > mi.n_ctx_train) ctx = mi.n_ctx_train;
    deepc_fmt_bytes(b1, sizeof b1, (double)mi.weight_bytes);
    deepc_fmt_bytes(b2, sizeof b2, (double)mi.kv_bytes_per_token * ctx);
    printf("memory:          weights %s, KV cache %s for %lld tokens (%llu bytes/token, fp16)\n", b1, b2, ctx,
           (unsigned long long)mi.kv_bytes_per_token);
    deepc_fmt_bytes(b1, sizeof b1, (double)(mi.weight_bytes - mi.expert_bytes));
    printf("loading:         run/chat/bench/perplexity/profile read %s of weights into owned huge-page memory\n"
           "                 (--mmap: use them from the file mapping; --mlock: lock them in RAM)%s\n", b1,
           mi.expert_bytes ? "; routed experts stay mapped" : "");
    if (mi.kv_lora_rank)
        printf("KV cache:        %llu bytes/token = (kv_lora_rank %d + rope %d) x %d layers x 2 bytes; a per-head K/V cache would need %llu (%.1fx)\n",
               (unsigned long long)mi.kv_bytes_per_token, mi.kv_lora_rank, mi.qk_rope_head_dim, mi.n_layers,
               (unsigned long long)mi.kv_bytes_per_token_mha, (double)mi.kv_bytes_per_token_mha / (double)mi.kv_bytes_per_token);
    if (tensors) {
        for (size_t i = 0; i < n; i++) {
            deepc_tensor_info ti;
            deepc_model_tensor(m, i, &ti);
            printf("  %-60s %-5s [", ti.name, ti.type);
            for (int d = 0; d < ti.ndim; d++) printf("%s%llu", d ? ", " : "", (unsigned long long)ti.dims[d]);
            deepc_fmt_bytes(b1, sizeof b1, (double)ti.bytes);
            printf("] %s\n", b1);
        }
    }
    deepc_model_close(m);
    return CLI_OK;
}

int cmd_verify(int argc, char **argv) {
    if (argc != 2 || argv[1][0] == '-') {
        if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
            printf("usage: deepc verify <model.dqf>\n  Checks the structure and every tensor checksum.\n");
            return CLI_OK;
        }
        return cli_usage_error("verify", "expected <model.dqf>");
    }
    deepc_model *m;
    if (cli_model_open_mapped("verify", argv[1], &m)) return cli_fail("verify", "%s", deepc_open_error());
    deepc_status st = deepc_model_verify(m);
    deepc_model_close(m);
    if (st) return cli_fail("verify", "%s", deepc_open_error());
    printf("%s: ok\n", argv[1]);
    return CLI_OK;
}
