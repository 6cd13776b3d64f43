/* main.c - the deepc command-line tool: dispatches to subcommands and holds
 * the small helpers they share. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void vmsg(const char *cmd, const char *fmt, va_list ap) {
    fprintf(stderr, "deepc%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmsg(cmd, fmt, ap);
    va_end(ap);
    fprintf(stderr, "run 'deepc %s --help' for usage\n", cmd ? cmd : "");
    return CLI_USAGE;
}

int cli_fail(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmsg(cmd, fmt, ap);
    va_end(ap);
    return CLI_FAIL;
}

bool cli_parse_int(const char *s, long long lo, long long hi, long long *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_parse_float(const char *s, double lo, double hi, double *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_parse_ids(const char *s, int32_t **ids, int *n, char *msg, size_t cap) {
    size_t count = 1;
    for (const char *p = s; *p; p++) count += *p == ',';
    int32_t *a = malloc(count * sizeof *a);
    if (!a) { snprintf(msg, cap, "out of memory"); return false; }
    int k = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            snprintf(msg, cap, "bad token id list near '%.20s' (expected comma-separated non-negative integers)", p);
            free(a);
            return false;
        }
        a[k++] = (int32_t)v;
        p = *end ? end + 1 : end;
        if (*end == ',' && !*p) { snprintf(msg, cap, "token id list ends with a comma"); free(a); return false; }
    }
    if (k == 0) { snprintf(msg, cap, "empty token id list"); free(a); return false; }
    *ids = a;
    *n = k;
    return true;
}

bool cli_parse_size(const char *s, uint64_t total, uint64_t *out) {
    if (!s || !*s || *s == '-' || *s == '+') return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0) return false;
    double mul = 1;
    if (*end == '%') {
        if (total == 0 || end[1] || v > 100) return false;
        *out = (uint64_t)(v / 100.0 * (double)total);
        return true;
    }
    switch (*end) {
    case 'k': case 'K': mul = 1024.0; end++; break;
    case 'm': case 'M': mul = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
    case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (mul > 1 && *end == 'i') end++;
    if (*end == 'b' || *end == 'B') end++;
    if (*end || v * mul >= 18446744073709551615.0) return false;
    *out = (uint64_t)(v * mul);
    return true;
}

void cli_print_expert_stats(FILE *f, const deepc_session *s, const char *prefix, const char *suffix) {
    deepc_expert_stats st = { .struct_size = sizeof st };
    if (deepc_session_expert_stats(s, &st) || !st.expert_bytes) return;
    double mb = 1024.0 * 1024.0;
    if (!st.streaming) {
        fprintf(f, "%sexperts: all %.1f MiB resident (mapped), %llu lookups%s\n", prefix, (double)st.expert_bytes / mb,
                (unsigned long long)st.lookups, suffix);
        return;
    }
    fprintf(f, "%sexperts: cache %.1f of %.1f MiB (%d slots, %d pinned, %s I/O) | hit rate %.1f%% | %.1f MiB read per token | "
               "%.2f s stalled on I/O | prefetch %llu issued, %.0f%% used%s\n",
            prefix, (double)st.cache_bytes / mb, (double)st.expert_bytes / mb, st.n_slots, st.n_pinned,
            st.direct_io ? "direct" : "buffered", st.lookups ? 100.0 * (double)st.hits / (double)st.lookups : 100.0,
            st.tokens ? (double)st.bytes_read / mb / (double)st.tokens : 0.0, st.stall_s,
            (unsigned long long)st.prefetch_issued,
            st.prefetch_issued ? 100.0 * (double)st.prefetch_used / (double)st.prefetch_issued : 0.0, suffix);
}

const char *cli_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) return NULL;
    return argv[++*i];
}

int cli_sampling_flag(const char *cmd, int argc, char **argv, int *i, deepc_sampling *sp) {
    const char *a = argv[*i];
    long long v;
    double d;
    if (!strcmp(a, "--temp")) {
        if (!cli_parse_float(cli_value(argc, argv, i), 0, 100, &d)) return cli_usage_error(cmd, "--temp needs a number in [0, 100]");
        sp->temperature = (float)d;
    } else if (!strcmp(a, "--top-k")) {
        if (!cli_parse_int(cli_value(argc, argv, i), 0, 1 << 24, &v)) return cli_usage_error(cmd, "--top-k needs an integer >= 0");
        sp->top_k = (int)v;
    } else if (!strcmp(a, "--top-p")) {
        if (!cli_parse_float(cli_value(argc, argv, i), 1e-6, 1, &d)) return cli_usage_error(cmd, "--top-p needs a number in (0, 1]");
        sp->top_p = (float)d;
    } else if (!strcmp(a, "--min-p")) {
        if (!cli_parse_float(cli_value(argc, argv, i), 0, 1, &d)) return cli_usage_error(cmd, "--min-p needs a number in [0, 1]");
        sp->min_p = (float)d;
    } else if (!strcmp(a, "--repeat-penalty")) {
        if (!cli_parse_float(cli_value(argc, argv, i), 1e-3, 100, &d)) return cli_usage_error(cmd, "--repeat-penalty needs a number in [0.001, 100]");
        sp->repeat_penalty = (float)d;
    } else if (!strcmp(a, "--repeat-last-n")) {
        if (!cli_parse_int(cli_value(argc, argv, i), 0, 1 << 24, &v)) return cli_usage_error(cmd, "--repeat-last-n needs an integer >= 0");
        sp->repeat_last_n = (int)v;
    } else if (!strcmp(a, "--seed")) {
        if (!cli_parse_int(cli_value(argc, argv, i), 0, INT64_MAX, &v)) return cli_usage_error(cmd, "--seed needs a non-negative integer");
        sp->seed = (uint64_t)v;
    } else {
        return 0;
    }
    return 1;
}

bool cli_model_flag(const char *arg, deepc_model_params *p) {
    if (!strcmp(arg, "--mmap")) p->use_mmap = true;
    else if (!strcmp(arg, "--mlock")) p->use_mlock = true;
    else return false;
    return true;
}

int cli_expert_flag(const char *cmd, int argc, char **argv, int *i, cli_expert_opts *o) {
    const char *a = argv[*i];
    if (!strcmp(a, "--expert-cache")) {
        if (!(o->cache = cli_value(argc, argv, i))) return cli_usage_error(cmd, "--expert-cache needs a size (e.g. 12G, 800M, 50%%)");
    } else if (!strcmp(a, "--max-ram")) {
        if (!(o->max_ram = cli_value(argc, argv, i))) return cli_usage_error(cmd, "--max-ram needs a size (e.g. 16G, 75%%)");
    } else if (!strcmp(a, "--pin-profile")) {
        if (!(o->pin = cli_value(argc, argv, i))) return cli_usage_error(cmd, "--pin-profile needs a file");
    } else if (!strcmp(a, "--expert-io-threads")) {
        if (!cli_parse_int(cli_value(argc, argv, i), 1, 64, &o->io_threads)) return cli_usage_error(cmd, "--expert-io-threads needs an integer in [1, 64]");
    } else if (!strcmp(a, "--no-prefetch")) {
        o->no_prefetch = true;
    } else if (!strcmp(a, "--buffered-io")) {
        o->buffered_io = true;
    } else {
        return 0;
    }
    return 1;
}

int cli_expert_apply(const char *cmd, const cli_expert_opts *o, const deepc_model_info *mi, deepc_session_params *p) {
    if (o->cache && !cli_parse_size(o->cache, mi->expert_bytes, &p->expert_cache_bytes))
        return cli_usage_error(cmd, "--expert-cache needs a size such as 12G, 800M, 4096K or 50%%, not '%s'", o->cache);
    if (o->max_ram) {
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        uint64_t phys = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : 0;
        if (!cli_parse_size(o->max_ram, phys, &p->max_ram_bytes) || !p->max_ram_bytes)
            return cli_usage_error(cmd, "--max-ram needs a size such as 16G, 800M or 75%% (of this machine's RAM), not '%s'", o->max_ram);
    }
    p->expert_pin_profile = o->pin;
    p->expert_io_threads = (int)o->io_threads;
    p->expert_no_prefetch = o->no_prefetch;
    p->expert_buffered_io = o->buffered_io;
    return CLI_OK;
}

static void cli_log(void *user, int level, const char *msg) {
    if (level >= DEEPC_LOG_WARN) fprintf(stderr, "deepc %s: warning: %s\n", (const char *)user, msg);
}

deepc_status cli_model_open(const char *cmd, const char *path, const deepc_model_params *p, deepc_model **m) {
    deepc_model_params q = p ? *p : deepc_model_default_params();
    q.log = cli_log;
    q.log_user = (void *)cmd;
    return deepc_model_open_ex(path, &q, m);
}

deepc_status cli_model_open_mapped(const char *cmd, const char *path, deepc_model **m) {
    deepc_model_params q = deepc_model_default_params();
    q.use_mmap = true;
    return cli_model_open(cmd, path, &q, m);
}

static void usage(FILE *f) {
    fprintf(f,
        "deepc %s - run DeepSeek-style language models on your CPU\n"
        "\n"
        "usage: deepc <command> [options]\n"
        "\n"
        "commands:\n"
        "  convert <hf_dir> <out.dqf> [--type f32|f16|bf16|q8_0]   convert a Hugging Face checkpoint\n"
        "  info <model.dqf> [--ctx N]                            architecture, tensors, memory needs\n"
        "  verify <model.dqf>                                    check every tensor checksum\n"
        "  run -m <model.dqf> (--ids 1,2,3 | -p TEXT) [-n N]     generate from a prompt\n"
        "  chat -m <model.dqf>                                   interactive multi-turn chat\n"
        "  profile -m <model.dqf> -p <prompts.txt> [-o FILE]     expert routing counts for --pin-profile\n"
        "  tokenize -m <model.dqf> [--jsonl] [--bos] [--plain]   text on stdin -> token ids\n"
        "  detokenize -m <model.dqf>                             ids on stdin -> text\n"
        "  bench -m <model.dqf> [-p 512] [-n 128] [--membw]     prompt/generation speed, bandwidth\n"
        "  perplexity -m <model.dqf> -f text.txt [--kl-base F]   perplexity, KL divergence vs a base\n"
        "\n"
        "run 'deepc <command> --help' for the options of a command.\n", deepc_version_string());
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return CLI_USAGE; }
    const char *c = argv[1];
    if (!strcmp(c, "-h") || !strcmp(c, "--help") || !strcmp(c, "help")) { usage(stdout); return CLI_OK; }
    if (!strcmp(c, "--version") || !strcmp(c, "version")) { printf("deepc %s\n", deepc_version_string()); return CLI_OK; }
    if (!strcmp(c, "convert")) return cmd_convert(argc - 1, argv + 1);
    if (!strcmp(c, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(c, "verify")) return cmd_verify(argc - 1, argv + 1);
    if (!strcmp(c, "run")) return cmd_run(argc - 1, argv + 1);
    if (!strcmp(c, "chat")) return cmd_chat(argc - 1, argv + 1);
    if (!strcmp(c, "profile")) return cmd_profile(argc - 1, argv + 1);
    if (!strcmp(c, "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(c, "detokenize")) return cmd_detokenize(argc - 1, argv + 1);
    if (!strcmp(c, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(c, "perplexity")) return cmd_perplexity(argc - 1, argv + 1);
    fprintf(stderr, "deepc: unknown command '%s'\n\n", c);
    usage(stderr);
    return CLI_USAGE;
}
