/* gen_checkpoint - writes a synthetic Hugging Face checkpoint directory in the
 * exact layout of the DeepSeek-R1-Distill releases (see test/support/hfgen.h)
 * or of DeepSeek-V2 / V3 (MoE presets, test/support/hfgen_moe.h). Used by
 * `make demo` and the benchmarks.
 *
 *   gen_checkpoint --preset NAME --out DIR [--dtype bf16|f16|f32|fp8] [--shards N]
 *                  [--seed S] [--layers N]
 *   gen_checkpoint --list
 *
 * f16 is for the dense presets only, fp8 (E4M3 + 128x128 weight_scale_inv,
 * as the V3 release) for the MoE presets only.
 */
#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

#include "hfgen.h"
#include "hfgen_moe.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: gen_checkpoint --preset NAME --out DIR [--dtype bf16|f16|f32|fp8] [--shards N]\n"
            "                      [--seed S] [--layers N]\n"
            "       gen_checkpoint --list\n"
            "Writes config.json, generation_config.json, tokenizer.json, tokenizer_config.json\n"
            "and model.safetensors (or N shards + model.safetensors.index.json) into DIR.\n"
            "presets:");
    for (const char *const *p = hfgen_preset_names(); *p; p++) fprintf(f, " %s", *p);
    for (const char *const *p = hfgen_moe_preset_names(); *p; p++) fprintf(f, " %s", *p);
    fprintf(f, "\n");
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Parses a non-negative integer option value; returns -1 when malformed. */
static long long parse_count(const char *s) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 0) return -1;
    return v;
}

static void list_presets(void) {
    printf("%-12s %-6s %7s %6s %7s %6s %4s %6s %15s\n", "preset", "arch", "vocab", "dim", "layers", "heads", "kv",
           "ffn", "params");
    for (const char *const *p = hfgen_preset_names(); *p; p++) {
        hfgen_spec s;
        hfgen_preset(*p, &s);
        printf("%-12s %-6s %7d %6d %7d %6d %4d %6d %15" PRIu64 "\n", *p, s.arch, s.vocab, s.dim, s.n_layers,
               s.n_heads, s.n_kv_heads, s.ffn, hfgen_param_count(&s));
    }
    printf("\n%-20s %-11s %6s %6s %6s %5s %7s %11s %5s %15s %14s\n", "preset (MoE)", "arch", "vocab", "hidden",
           "layers", "heads", "experts", "top-k", "dtype", "params", "tensor bytes");
    for (const char *const *p = hfgen_moe_preset_names(); *p; p++) {
        hfgen_moe_spec s;
        hfgen_moe_preset(*p, &s);
        char topk[32];
        snprintf(topk, sizeof topk, "%d+%d sh", s.num_experts_per_tok, s.n_shared_experts);
        printf("%-20s %-11s %6d %6d %4d+%d %5d %7d %11s %5s %15" PRIu64 " %14" PRIu64 "\n", *p, s.arch, s.vocab,
               s.hidden, s.n_layers, s.num_nextn_predict_layers, s.n_heads, s.n_routed_experts, topk, s.dtype,
               hfgen_moe_param_count(&s), hfgen_moe_tensor_bytes(&s));
    }
}

static long peak_rss_mb(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
#if defined(__APPLE__)
    return ru.ru_maxrss / (1024 * 1024);
#else
    return ru.ru_maxrss / 1024;
#endif
}

/* Progress of a MoE checkpoint on stderr, at most once a second. */
typedef struct {
    double t0, last;
} progress_state;

static void on_progress(void *user, uint64_t done, uint64_t total) {
    progress_state *p = user;
    double t = now_s();
    if (t - p->last < 1.0 && done < total) return;
    p->last = t;
    double rate = t > p->t0 ? (double)done / (t - p->t0) : 0.0;
    fprintf(stderr, "gen_checkpoint: %5.1f%%  %" PRIu64 " / %" PRIu64 " MB  %.0f MB/s  ETA %.0f s\n",
            total ? 100.0 * (double)done / (double)total : 100.0, done >> 20, total >> 20, rate / 1e6,
            rate > 0 ? (double)(total - done) / rate : 0.0);
}

/* A MoE preset (hfgen_moe.h). dtype is NULL or "BF16" / "F32" / "FP8". */
static int write_moe(const char *preset, const char *out, const char *dtype, long long shards, long long layers,
                     long long seed) {
    hfgen_moe_spec spec;
    hfgen_moe_preset(preset, &spec);
    if (dtype) spec.dtype = dtype;
    if (shards > 0) spec.n_shards = (int)shards;
    if (layers > 0) spec.n_layers = (int)layers;
    if (seed >= 0) spec.seed = (uint64_t)seed;
    printf("gen_checkpoint: %s (%s, %d layers + %d MTP, hidden %d, %d experts top-%d, vocab %d, %" PRIu64
           " params, %" PRIu64 " tensor bytes, %s, %d shard%s, seed %" PRIu64 ") -> %s\n",
           preset, spec.arch, spec.n_layers, spec.num_nextn_predict_layers, spec.hidden, spec.n_routed_experts,
           spec.num_experts_per_tok, spec.vocab, hfgen_moe_param_count(&spec), hfgen_moe_tensor_bytes(&spec),
           spec.dtype, spec.n_shards, spec.n_shards == 1 ? "" : "s", spec.seed, out);
    fflush(stdout);
    deepc_err err;
    err.msg[0] = 0;
    hfgen_stats st;
    progress_state ps = {now_s(), now_s()};
    const bool big = hfgen_moe_tensor_bytes(&spec) > (256u << 20);
    if (hfgen_moe_write(out, &spec, big ? on_progress : NULL, &ps, &st, &err) != 0) {
        fprintf(stderr, "gen_checkpoint: %s\n", err.msg);
        return 1;
    }
    double dt = now_s() - ps.t0;
    printf("gen_checkpoint: wrote %d files, %" PRIu64 " bytes (%" PRIu64 " tensor bytes) in %.2f s (%.1f MB/s), "
           "peak RSS %ld MB; tokenizer %d tokens, bos %d, eos %d\n",
           st.n_files, st.file_bytes, st.tensor_bytes, dt, dt > 0 ? (double)st.file_bytes / dt / 1e6 : 0.0,
           peak_rss_mb(), hfgen_moe_tokenizer_size(&spec), hfgen_moe_bos_id(&spec), hfgen_moe_eos_id(&spec));
    return 0;
}

int main(int argc, char **argv) {
    const char *preset = NULL, *out = NULL, *dtype = NULL;
    long long shards = -1, layers = -1, seed = -1;
    for (int i = 1; i < argc; i += 2) {  /* every option takes one value */
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--list") == 0) {
            list_presets();
            return 0;
        } else if (!val) {
            fprintf(stderr, "gen_checkpoint: %s needs a value (or is unknown)\n", a);
            usage(stderr);
            return 2;
        } else if (strcmp(a, "--preset") == 0) {
            preset = val;
        } else if (strcmp(a, "--out") == 0) {
            out = val;
        } else if (strcmp(a, "--dtype") == 0) {
            if (strcmp(val, "bf16") == 0 || strcmp(val, "BF16") == 0) dtype = "BF16";
            else if (strcmp(val, "f16") == 0 || strcmp(val, "F16") == 0) dtype = "F16";
            else if (strcmp(val, "f32") == 0 || strcmp(val, "F32") == 0) dtype = "F32";
            else if (strcmp(val, "fp8") == 0 || strcmp(val, "FP8") == 0) dtype = "FP8";
            else {
                fprintf(stderr, "gen_checkpoint: --dtype must be bf16, f16, f32 or fp8 (got %s)\n", val);
                return 2;
            }
        } else if (strcmp(a, "--shards") == 0) {
            if ((shards = parse_count(val)) < 1) {
                fprintf(stderr, "gen_checkpoint: --shards needs a positive integer (got %s)\n", val);
                return 2;
            }
        } else if (strcmp(a, "--layers") == 0) {
            if ((layers = parse_count(val)) < 1 || layers > 1000) {
                fprintf(stderr, "gen_checkpoint: --layers needs an integer in 1..1000 (got %s)\n", val);
                return 2;
            }
        } else if (strcmp(a, "--seed") == 0) {
            if ((seed = parse_count(val)) < 0) {
                fprintf(stderr, "gen_checkpoint: --seed needs a non-negative integer (got %s)\n", val);
                return 2;
            }
        } else {
            fprintf(stderr, "gen_checkpoint: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!preset || !out) {
        fprintf(stderr, "gen_checkpoint: --preset and --out are required\n");
        usage(stderr);
        return 2;
    }
    hfgen_moe_spec moe;
    if (hfgen_moe_preset(preset, &moe) == 0) {
        if (dtype && strcmp(dtype, "F16") == 0) {
            fprintf(stderr, "gen_checkpoint: --dtype f16 is not available for MoE presets (bf16, f32, fp8)\n");
            return 2;
        }
        return write_moe(preset, out, dtype, shards, layers, seed);
    }
    if (dtype && strcmp(dtype, "FP8") == 0) {
        fprintf(stderr, "gen_checkpoint: --dtype fp8 is only available for the MoE presets\n");
        return 2;
    }
    hfgen_spec spec;
    if (hfgen_preset(preset, &spec) != 0) {
        fprintf(stderr, "gen_checkpoint: unknown preset %s\n", preset);
        usage(stderr);
        return 2;
    }
    if (dtype) spec.dtype = dtype;
    if (shards > 0) spec.n_shards = (int)shards;
    if (layers > 0) spec.n_layers = (int)layers;
    if (seed >= 0) spec.seed = (uint64_t)seed;

    printf("gen_checkpoint: %s (%s, %d layers, dim %d, vocab %d, %" PRIu64 " params, %s, %d shard%s, seed %" PRIu64
           ") -> %s\n",
           preset, spec.arch, spec.n_layers, spec.dim, spec.vocab, hfgen_param_count(&spec), spec.dtype,
           spec.n_shards, spec.n_shards == 1 ? "" : "s", spec.seed, out);
    fflush(stdout);
    deepc_err err;
    err.msg[0] = 0;
    hfgen_stats st;
    double t0 = now_s();
    if (hfgen_write_ex(out, &spec, &st, &err) != 0) {
        fprintf(stderr, "gen_checkpoint: %s\n", err.msg);
        return 1;
    }
    double dt = now_s() - t0;
    printf("gen_checkpoint: wrote %d files, %" PRIu64 " bytes (%" PRIu64 " tensor bytes) in %.2f s (%.1f MB/s); "
           "tokenizer %d tokens, bos %d, eos %d\n",
           st.n_files, st.file_bytes, st.tensor_bytes, dt, dt > 0 ? (double)st.file_bytes / dt / 1e6 : 0.0,
           hfgen_tokenizer_size(&spec), hfgen_bos_id(&spec), hfgen_eos_id(&spec));
    return 0;
}
