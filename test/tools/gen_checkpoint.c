/* gen_checkpoint - writes a synthetic Hugging Face checkpoint directory in the
 * exact layout of the DeepSeek-R1-Distill releases (see test/support/hfgen.h).
 * Used by `make demo` and the benchmarks.
 *
 *   gen_checkpoint --preset NAME --out DIR [--dtype bf16|f16|f32] [--shards N]
 *                  [--seed S] [--layers N]
 *   gen_checkpoint --list
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hfgen.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: gen_checkpoint --preset NAME --out DIR [--dtype bf16|f16|f32] [--shards N]\n"
            "                      [--seed S] [--layers N]\n"
            "       gen_checkpoint --list\n"
            "Writes config.json, generation_config.json, tokenizer.json, tokenizer_config.json\n"
            "and model.safetensors (or N shards + model.safetensors.index.json) into DIR.\n"
            "presets:");
    for (const char *const *p = hfgen_preset_names(); *p; p++) fprintf(f, " %s", *p);
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
            else {
                fprintf(stderr, "gen_checkpoint: --dtype must be bf16, f16 or f32 (got %s)\n", val);
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
