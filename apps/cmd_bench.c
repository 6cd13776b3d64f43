/* cmd_bench.c - `deepc bench`: llama-bench-style throughput of prompt
 * evaluation (ppN) and token generation (tgN) on random token ids, the weight
 * bandwidth generation reaches, peak RSS, and an optional STREAM-like read
 * bandwidth probe that turns into a roofline for generation. A benchmark: it
 * reports numbers and never fails on speed. */
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "util.h"
#include "threadpool.h"   /* deepc_default_threads(): what a session uses when -t is not given */

static const char bench_help[] =
    "usage: deepc bench -m <model.dqf> [options]\n"
    "       deepc bench --membw [-t N]\n"
    "  Measures, like llama-bench, prompt evaluation of -p random tokens (test ppP) and\n"
    "  generation of -n tokens after that prompt (test tgN: greedy sampling, one token\n"
    "  per step), each repetition in a fresh session. Reports the average tokens/s and\n"
    "  its standard deviation over the repetitions, the weight bandwidth of generation\n"
    "  (bytes of weights one decoded token reads x tokens/s) and the peak RSS.\n"
    "  -m, --model FILE       model file (.dqf)\n"
    "  -p, --n-prompt N       prompt tokens (default 512; 0 = skip the pp test)\n"
    "  -n, --n-gen N          generated tokens (default 128; 0 = skip the tg test)\n"
    "  -t, --threads N        threads (default: physical cores)\n"
    "  -r, --repetitions N    repetitions of each test (default 3)\n"
    "  -b, --batch N          prompt tokens per forward batch (default: the library's, 64; MoE 128)\n"
    "  -o, --output FORMAT    table (default) or jsonl: one JSON object per test\n"
    "  --isa NAME             force a kernel backend (scalar, avx2, ...)\n"
    "  --no-warmup            skip the untimed warm-up before the first repetition (one\n"
    "                         token; MoE models: up to 64 prompt tokens, to touch the experts)\n"
    CLI_EXPERT_FLAGS_HELP
    "                         (with a cache smaller than the experts, bench prints the\n"
    "                         expert store's hit rate, MiB read per token, I/O stall and\n"
    "                         prefetch accuracy of pp and tg per repetition)\n"
    "  --diskbw               MoE: also measure how fast the disk reads this model's\n"
    "                         expert records (scattered whole-record reads, bypassing\n"
    "                         the page cache, --expert-io-threads readers) and print the\n"
    "                         I/O bound of tg: that rate / bytes read per token\n"
    "  --membw                also measure read memory bandwidth (sum over a 1 GiB buffer,\n"
    "                         best of 10 passes, -t threads); with -m, print the roofline:\n"
    "                         bandwidth / weight bytes per token = the best possible tg\n"
    CLI_MODEL_FLAGS_HELP;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Peak resident set of this process in bytes. */
static uint64_t peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
#if defined(__APPLE__)
    return (uint64_t)ru.ru_maxrss;            /* bytes on macOS */
#else
    return (uint64_t)ru.ru_maxrss * 1024u;    /* KiB on Linux and the BSDs */
#endif
}

/* Writes s as a JSON string literal. */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

/* ---- memory bandwidth probe ---------------------------------------------- */

#define MEMBW_BYTES (1ull << 30)
#define MEMBW_PASSES 10

typedef struct {
    uint64_t *p;
    size_t n;       /* words */
    bool fill;
    uint64_t sum;
} membw_job;

/* Eight independent accumulators keep several loads in flight per core. */
static void *membw_worker(void *arg) {
    membw_job *j = arg;
    uint64_t *p = j->p;
    size_t n = j->n, i = 0;
    if (j->fill) {
        for (i = 0; i < n; i++) p[i] = i * 0x9E3779B97F4A7C15ull;
        return NULL;
    }
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    for (; i + 8 <= n; i += 8) {
        a0 += p[i]; a1 += p[i + 1]; a2 += p[i + 2]; a3 += p[i + 3];
        a4 += p[i + 4]; a5 += p[i + 5]; a6 += p[i + 6]; a7 += p[i + 7];
    }
    for (; i < n; i++) a0 += p[i];
    j->sum = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
    return NULL;
}

/* Runs one pass over the buffer split into nt slices; returns false if a
 * thread could not be started. */
static bool membw_pass(uint64_t *buf, size_t words, int nt, bool fill, uint64_t *sum) {
    membw_job jobs[1024];
    pthread_t th[1024];
    size_t per = (words + (size_t)nt - 1) / (size_t)nt;
    int started = 0;
    bool ok = true;
    for (int t = 0; t < nt; t++) {
        size_t lo = (size_t)t * per < words ? (size_t)t * per : words;
        size_t hi = lo + per < words ? lo + per : words;
        jobs[t] = (membw_job){ buf + lo, hi - lo, fill, 0 };
        if (t == 0) continue;   /* slice 0 runs on this thread */
        if (pthread_create(&th[t], NULL, membw_worker, &jobs[t]) != 0) { ok = false; break; }
        started = t;
    }
    if (ok) membw_worker(&jobs[0]);
    for (int t = 1; t <= started; t++) pthread_join(th[t], NULL);
    if (sum) for (int t = 0; t < nt && ok; t++) *sum += jobs[t].sum;
    return ok;
}

/* Best read bandwidth in GB/s (10^9 bytes) over MEMBW_PASSES passes, or a
 * negative value on failure (message in err). */
static double membw_measure(int nt, char *err, size_t cap) {
    size_t words = MEMBW_BYTES / sizeof(uint64_t);
    uint64_t *buf = malloc(MEMBW_BYTES);
    if (!buf) { snprintf(err, cap, "cannot allocate the 1 GiB bandwidth buffer"); return -1; }
    /* filled by the same threads that read it, so pages land near them */
    if (!membw_pass(buf, words, nt, true, NULL)) { free(buf); snprintf(err, cap, "cannot start %d threads", nt); return -1; }
    double best = 0;
    uint64_t sum = 0;
    for (int pass = 0; pass < MEMBW_PASSES; pass++) {
        double t0 = now_s();
        if (!membw_pass(buf, words, nt, false, &sum)) { free(buf); snprintf(err, cap, "cannot start %d threads", nt); return -1; }
        double dt = now_s() - t0;
        double gbs = dt > 0 ? (double)MEMBW_BYTES / dt / 1e9 : 0;
        if (gbs > best) best = gbs;
    }
    free(buf);
    /* the sum is stored, so the reads cannot be optimized away */
    volatile uint64_t sink = sum;
    (void)sink;
    return best;
}

/* ---- the model benchmark ------------------------------------------------- */

typedef struct {
    char name[32];        /* "pp512", "tg128" */
    int n_prompt, n_gen;
    double *ts;           /* [reps] tokens/s */
    double avg, sd;
} bench_test;

static void stats(bench_test *t, int reps) {
    double s = 0, q = 0;
    for (int r = 0; r < reps; r++) s += t->ts[r];
    t->avg = s / reps;
    for (int r = 0; r < reps; r++) q += (t->ts[r] - t->avg) * (t->ts[r] - t->avg);
    t->sd = reps > 1 ? sqrt(q / (reps - 1)) : 0.0;   /* sample stddev, as llama-bench */
}

/* xorshift64*: a fixed stream of prompt ids, identical on every run. */
static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* One repetition: prompt evaluation of p tokens, then n greedy decode steps.
 * Writes tokens/s of each (0 when skipped). */
static int bench_once(deepc_model *m, const deepc_session_params *sp, const int32_t *prompt, int p, int n,
                      bool warmup, double *pp_ts, double *tg_ts, double *tg_read, char *isa, size_t isa_cap,
                      int *n_batch) {
    deepc_session *s = NULL;
    int rc = CLI_OK;
    int need = (p ? p : 1) + n;
    if (deepc_session_create(m, sp, &s)) return cli_fail("bench", "%s", deepc_open_error());
    if (deepc_session_n_ctx(s) < need) {
        rc = cli_fail("bench", "-p %d + -n %d needs a context of %d tokens but the model's trained context is %d",
                      p, n, need, deepc_session_n_ctx(s));
        goto done;
    }
    snprintf(isa, isa_cap, "%s", deepc_session_isa(s));
    *n_batch = deepc_session_n_batch(s);
    if (warmup) {
        /* touches the weights once so the first timing does not pay for page
         * faults: one token reaches every dense weight, but a MoE layer only
         * its top-k experts, so MoE models warm up on (up to) 64 prompt
         * tokens, which select nearly every expert of every layer */
        deepc_model_info wi = { .struct_size = sizeof wi };
        deepc_model_get_info(m, &wi);
        int nw = wi.expert_bytes ? (p < 64 ? (p > 1 ? p : 1) : 64) : 1;
        if (deepc_session_eval(s, prompt, nw, NULL) || deepc_session_rewind(s, 0)) { rc = cli_fail("bench", "%s", deepc_last_error(s)); goto done; }
    }
    deepc_session_expert_stats_reset(s);
    *pp_ts = *tg_ts = 0;
    if (p) {
        double t0 = now_s();
        if (deepc_session_eval(s, prompt, p, NULL)) { rc = cli_fail("bench", "%s", deepc_last_error(s)); goto done; }
        double dt = now_s() - t0;
        *pp_ts = dt > 0 ? p / dt : 0;
    } else if (n) {     /* tg alone: one untimed token gives the first logits */
        if (deepc_session_eval(s, prompt, 1, NULL)) { rc = cli_fail("bench", "%s", deepc_last_error(s)); goto done; }
    }
    deepc_expert_stats xs = { .struct_size = sizeof xs };
    bool streaming = !deepc_session_expert_stats(s, &xs) && xs.streaming;
    if (streaming && p) cli_print_expert_stats(stderr, s, "  pp: ", "");
    deepc_session_expert_stats_reset(s);
    if (n) {
        deepc_sampling g = deepc_sampling_default();
        g.temperature = 0;
        double t0 = now_s();
        for (int i = 0; i < n; i++) {
            int32_t tok;
            if (deepc_session_sample(s, &g, &tok) || deepc_session_eval(s, &tok, 1, NULL)) {
                rc = cli_fail("bench", "%s", deepc_last_error(s));
                goto done;
            }
        }
        double dt = now_s() - t0;
        *tg_ts = dt > 0 ? n / dt : 0;
        if (streaming) cli_print_expert_stats(stderr, s, "  tg: ", "");
        deepc_expert_stats ts = { .struct_size = sizeof ts };
        if (streaming && !deepc_session_expert_stats(s, &ts)) *tg_read = (double)ts.bytes_read / n;
    }
done:
    deepc_session_destroy(s);
    return rc;
}

/* "q8_0 1.64 GiB (197), f32 ..." into buf: bytes and tensor count per type,
 * largest first. */
static void type_mix(const deepc_model *m, char *buf, size_t cap) {
    const char *types[16];
    uint64_t tb[16] = {0}, tn[16] = {0};
    int nt = 0;
    size_t n = deepc_model_n_tensors(m);
    for (size_t i = 0; i < n; i++) {
        deepc_tensor_info ti;
        if (deepc_model_tensor(m, i, &ti)) continue;
        int k = 0;
        while (k < nt && strcmp(types[k], ti.type)) k++;
        if (k == nt && nt < 16) types[nt++] = ti.type;
        if (k < 16) { tb[k] += ti.bytes; tn[k]++; }
    }
    size_t used = 0;
    buf[0] = 0;
    for (int done = 0; done < nt; done++) {
        int best = -1;
        for (int k = 0; k < nt; k++)
            if (tn[k] && (best < 0 || tb[k] > tb[best])) best = k;
        char h[32];
        deepc_fmt_bytes(h, sizeof h, (double)tb[best]);
        int w = snprintf(buf + used, cap - used, "%s%s %s (%llu tensors)", done ? ", " : "", types[best], h,
                         (unsigned long long)tn[best]);
        if (w < 0 || (size_t)w >= cap - used) break;
        used += (size_t)w;
        tn[best] = 0;
    }
}

int cmd_bench(int argc, char **argv) {
    const char *model = NULL, *isa = NULL, *fmt = "table";
    cli_expert_opts xo = {0};
    int k;
    long long p = 512, n = 128, threads = 0, reps = 3, batch = 0;
    bool membw = false, diskbw = false, warmup = true;
    double tg_read = 0, disk = 0;
    bool disk_direct = false;
    deepc_model_params mp = deepc_model_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define VAL() (cli_value(argc, argv, &i))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(bench_help, stdout); return CLI_OK; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!(model = VAL())) return cli_usage_error("bench", "%s needs a file", a); }
        else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) { if (!cli_parse_int(VAL(), 0, 1 << 20, &p)) return cli_usage_error("bench", "%s needs an integer in [0, 1048576]", a); }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) { if (!cli_parse_int(VAL(), 0, 1 << 20, &n)) return cli_usage_error("bench", "%s needs an integer in [0, 1048576]", a); }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (!cli_parse_int(VAL(), 1, 1024, &threads)) return cli_usage_error("bench", "%s needs an integer in [1, 1024]", a); }
        else if (!strcmp(a, "-r") || !strcmp(a, "--repetitions")) { if (!cli_parse_int(VAL(), 1, 1000, &reps)) return cli_usage_error("bench", "%s needs an integer in [1, 1000]", a); }
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) { if (!cli_parse_int(VAL(), 1, 1 << 16, &batch)) return cli_usage_error("bench", "%s needs an integer in [1, 65536]", a); }
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!(fmt = VAL()) || (strcmp(fmt, "table") && strcmp(fmt, "jsonl"))) return cli_usage_error("bench", "%s needs 'table' or 'jsonl'", a);
        }
        else if (!strcmp(a, "--isa")) { if (!(isa = VAL())) return cli_usage_error("bench", "--isa needs a name"); }
        else if (!strcmp(a, "--membw")) membw = true;
        else if (!strcmp(a, "--diskbw")) diskbw = true;
        else if (!strcmp(a, "--no-warmup")) warmup = false;
        else if ((k = cli_expert_flag("bench", argc, argv, &i, &xo)) != 0) { if (k != 1) return k; }
        else if (cli_model_flag(a, &mp)) continue;
        else return cli_usage_error("bench", "unknown option '%s'", a);
#undef VAL
    }
    if (!model && !membw) return cli_usage_error("bench", "no model given (-m model.dqf), and no --membw");
    if (model && p == 0 && n == 0) return cli_usage_error("bench", "-p 0 and -n 0 leave nothing to measure");
    bool jsonl = !strcmp(fmt, "jsonl");
    int nt = threads ? (int)threads : deepc_default_threads();

    deepc_model *m = NULL;
    int32_t *prompt = NULL;
    bench_test tests[2];
    int n_tests = 0;
    memset(tests, 0, sizeof tests);
    int rc = CLI_OK;
    deepc_model_info mi = { .struct_size = sizeof mi };
    char isa_name[32] = "", mix[512] = "", size_h[32] = "", quant[32] = "?";
    int n_batch = 0;             /* the batch the sessions used */
    uint64_t file_size = 0, rss = 0;
    double load_s = 0;

    if (model) {
        struct stat st;
        double t0 = now_s();
        if (cli_model_open("bench", model, &mp, &m)) { rc = cli_fail("bench", "%s", deepc_open_error()); goto done; }
        load_s = now_s() - t0;
        if (stat(model, &st) == 0) file_size = (uint64_t)st.st_size;
        deepc_model_get_info(m, &mi);
        size_t ql;
        const char *q = deepc_model_meta_str(m, "general.quantization", &ql);
        if (q) snprintf(quant, sizeof quant, "%.*s", (int)ql, q);
        type_mix(m, mix, sizeof mix);
        deepc_fmt_bytes(size_h, sizeof size_h, (double)file_size);
        int np = (int)(p ? p : 1);
        if (!(prompt = malloc((size_t)np * sizeof *prompt))) { rc = cli_fail("bench", "out of memory"); goto done; }
        uint64_t seed = 0x5EEDBEEFull;
        for (int i = 0; i < np; i++) prompt[i] = (int32_t)(rng_next(&seed) % (uint64_t)mi.n_vocab);
        for (int k = 0; k < 2; k++)
            if (!(tests[k].ts = calloc((size_t)reps, sizeof(double)))) { rc = cli_fail("bench", "out of memory"); goto done; }
        deepc_session_params sp = deepc_session_default_params();
        sp.n_threads = nt;
        sp.n_batch = (int)batch;
        sp.n_ctx = (int)((p ? p : 1) + n);
        sp.isa = isa;
        if ((rc = cli_expert_apply("bench", &xo, &mi, &sp))) goto done;
        if (!jsonl)
            fprintf(stderr, "deepc bench: %s, pp%lld + tg%lld, %lld repetition(s), %d thread(s)\n", model, p, n, reps, nt);
        for (int r = 0; r < reps; r++) {
            double pp = 0, tg = 0;
            if ((rc = bench_once(m, &sp, prompt, (int)p, (int)n, warmup && r == 0, &pp, &tg, &tg_read, isa_name, sizeof isa_name,
                                 &n_batch))) goto done;
            tests[0].ts[r] = pp;
            tests[1].ts[r] = tg;
            fprintf(stderr, "  repetition %d/%lld:", r + 1, reps);
            if (p) fprintf(stderr, " pp%lld %.2f t/s", p, pp);
            if (n) fprintf(stderr, " tg%lld %.2f t/s", n, tg);
            fputc('\n', stderr);
        }
        rss = peak_rss_bytes();   /* before the bandwidth buffer */
        if (p) {
            snprintf(tests[0].name, sizeof tests[0].name, "pp%lld", p);
            tests[0].n_prompt = (int)p;
            stats(&tests[0], (int)reps);
        }
        if (n) {
            snprintf(tests[1].name, sizeof tests[1].name, "tg%lld", n);
            tests[1].n_gen = (int)n;
            stats(&tests[1], (int)reps);
        }
        n_tests = 2;
    }

    double bw = 0;
    if (membw) {
        char err[128];
        if (!jsonl) fprintf(stderr, "deepc bench: memory bandwidth, %d thread(s), 1 GiB x %d passes\n", nt, MEMBW_PASSES);
        if ((bw = membw_measure(nt, err, sizeof err)) < 0) { rc = cli_fail("bench", "%s", err); goto done; }
    }

    if (diskbw && model) {
        int io = xo.io_threads ? (int)xo.io_threads : 4;
        if (!jsonl) fprintf(stderr, "deepc bench: expert read bandwidth, %d reader(s), 400 records\n", io);
        if (deepc_model_expert_read_bw(m, io, 400, xo.buffered_io, &disk, &disk_direct)) { rc = cli_fail("bench", "%s", deepc_open_error()); goto done; }
        disk /= 1e9;
    }

    double gpt = (double)mi.active_weight_bytes / 1e9;   /* GB of weights per decoded token */
    double roof = bw > 0 && gpt > 0 ? bw / gpt : 0;       /* best possible tg tokens/s */
    if (jsonl) {
        for (int k = 0; k < n_tests; k++) {
            bench_test *t = &tests[k];
            if (!t->name[0]) continue;
            bool tg = t->n_gen > 0;
            printf("{\"test\": ");
            json_str(stdout, t->name);
            printf(", \"model\": ");
            json_str(stdout, model);
            printf(", \"model_type\": ");
            char mt[96];
            snprintf(mt, sizeof mt, "%s %s", mi.arch, quant);
            json_str(stdout, mt);
            printf(", \"model_size\": %llu, \"model_n_params\": %llu, \"active_weight_bytes\": %llu",
                   (unsigned long long)file_size, (unsigned long long)mi.n_params, (unsigned long long)mi.active_weight_bytes);
            printf(", \"isa\": ");
            json_str(stdout, isa_name);
            printf(", \"n_threads\": %d, \"n_prompt\": %d, \"n_gen\": %d, \"n_depth\": %d, \"n_batch\": %d",
                   nt, t->n_prompt, t->n_gen, tg ? (int)(p ? p : 1) : 0, n_batch);
            printf(", \"avg_ts\": %.6f, \"stddev_ts\": %.6f, \"samples_ts\": [", t->avg, t->sd);
            for (int r = 0; r < reps; r++) printf("%s%.6f", r ? ", " : "", t->ts[r]);
            printf("]");
            if (tg) printf(", \"gb_per_s\": %.6f", gpt * t->avg);
            else printf(", \"gb_per_s\": null");
            printf(", \"peak_rss\": %llu", (unsigned long long)rss);
            printf(", \"use_mmap\": %s, \"use_mlock\": %s, \"weights_locked\": %s, \"load_s\": %.6f", mp.use_mmap ? "true" : "false",
                   mp.use_mlock ? "true" : "false", mi.weights_locked ? "true" : "false", load_s);
            if (tg && tg_read > 0) printf(", \"expert_read_per_token\": %.0f", tg_read);
            if (disk > 0) printf(", \"disk_gb_per_s\": %.6f, \"disk_direct\": %s", disk, disk_direct ? "true" : "false");
            if (tg && disk > 0 && tg_read > 0) printf(", \"io_bound_ts\": %.6f", disk * 1e9 / tg_read);
            if (tg && roof > 0) printf(", \"membw_gb_per_s\": %.6f, \"roofline_ts\": %.6f, \"pct_roofline\": %.3f", bw, roof, 100.0 * t->avg / roof);
            printf("}\n");
        }
        if (membw) printf("{\"test\": \"membw\", \"n_threads\": %d, \"buffer_bytes\": %llu, \"passes\": %d, \"gb_per_s\": %.6f}\n",
                          nt, (unsigned long long)MEMBW_BYTES, MEMBW_PASSES, bw);
    } else {
        if (model) {
            char params[32], rss_h[32], act_h[32];
            double P = (double)mi.n_params;
            snprintf(params, sizeof params, P >= 1e9 ? "%.2f B" : "%.2f M", P >= 1e9 ? P / 1e9 : P / 1e6);
            deepc_fmt_bytes(rss_h, sizeof rss_h, (double)rss);
            deepc_fmt_bytes(act_h, sizeof act_h, (double)mi.active_weight_bytes);
            printf("model:   %s (%s, %s params, file %s)\n", model, mi.arch, params, size_h);
            printf("types:   %s\n", mix);
            printf("run:     %d thread(s), isa %s, batch %d, %lld repetition(s)", nt, isa_name, n_batch, reps);
            if (p && n) printf("; tg%lld runs after the pp%lld prompt", n, p);
            printf("\n");
            printf("weights read per generated token: %s\n", act_h);
            char own_h[32];
            deepc_fmt_bytes(own_h, sizeof own_h, (double)mi.owned_weight_bytes);
            printf("load:    %.2f s; weights ", load_s);
            if (mi.weights_mapped) printf("used from the file mapping (--mmap)");
            else printf("in owned memory (%s, 2 MiB huge pages requested)", own_h);
            printf("%s\n\n", mi.weights_locked ? ", locked" : mp.use_mlock ? ", NOT locked (mlock refused)" : "");
            printf("| %-24s | %10s | %9s | %-10s | %7s | %8s | %18s | %7s |\n", "model", "size", "params", "isa", "threads", "test", "t/s", "GB/s");
            printf("| %.24s | %.10s:| %.9s:| %.10s | %.7s:| %.8s:| %.18s:| %.7s:|\n", "------------------------", "----------", "---------",
                   "----------", "-------", "--------", "------------------", "-------");
            char mt[64];
            snprintf(mt, sizeof mt, "%s %s", mi.arch, quant);
            for (int k = 0; k < n_tests; k++) {
                bench_test *t = &tests[k];
                if (!t->name[0]) continue;
                char ts[48], gb[16] = "-";
                snprintf(ts, sizeof ts, "%.2f ± %.2f", t->avg, t->sd);
                if (t->n_gen) snprintf(gb, sizeof gb, "%.2f", gpt * t->avg);
                /* "±" is two bytes but one column: pad by one more */
                printf("| %-24s | %10s | %9s | %-10s | %7d | %8s | %19s | %7s |\n", mt, size_h, params, isa_name, nt, t->name, ts, gb);
            }
            printf("\npeak RSS: %s\n", rss_h);
        }
        if (disk > 0) {
            printf("expert reads: %.2f GB/s (%s, %d reader(s), 400 scattered records)\n", disk,
                   disk_direct ? "page cache bypassed" : "through the page cache", xo.io_threads ? (int)xo.io_threads : 4);
            if (n && tg_read > 0)
                printf("I/O bound tg: %.2f GB/s / %.1f MB read per token = %.2f t/s; measured tg%lld %.2f t/s\n", disk,
                       tg_read / 1e6, disk * 1e9 / tg_read, n, tests[1].avg);
        }
        if (membw) {
            printf("memory bandwidth: %.2f GB/s (read, %d thread(s), best of %d passes over 1 GiB)\n", bw, nt, MEMBW_PASSES);
            if (model && n && roof > 0)
                printf("roofline tg: %.2f GB/s / %.3f GB per token = %.2f t/s; measured tg%lld %.2f t/s = %.1f%% of it\n",
                       bw, gpt, roof, n, tests[1].avg, 100.0 * tests[1].avg / roof);
        }
    }
    fflush(stdout);
done:
    for (int k = 0; k < 2; k++) free(tests[k].ts);
    free(prompt);
    deepc_model_close(m);
    return rc;
}
