/* cmd_perplexity.c - `deepc perplexity`: perplexity of a text in the llama.cpp
 * way, and the KL divergence of this model's next-token distributions from a
 * reference run saved with --save-logits (e.g. f32 weights vs q8_0).
 *
 * The token stream is cut into non-overlapping chunks of --ctx tokens; the
 * first token of each chunk is replaced by BOS when the model's text prompts
 * start with one. Each chunk is evaluated from an empty cache and only its
 * second half is scored: the logits at positions ctx/2 .. ctx-2 predict tokens
 * ctx/2+1 .. ctx-1, so every scored prediction sees at least ctx/2 tokens of
 * context (the first half only provides context). This is what llama.cpp's
 * perplexity tool does, so the numbers are comparable.
 *
 * Logits file (--save-logits / --kl-base), little-endian:
 *   0  char[8]  "DEEPCLGT"
 *   8  u32      version (1)
 *   12 u32      n_vocab
 *   16 u32      ctx (tokens per chunk)
 *   20 u32      first scored position in a chunk (ctx/2)
 *   24 u32      n_tokens (chunks x ctx: the ids as evaluated, BOS included)
 *   28 u32      n_positions (chunks x (ctx - 1 - first))
 *   32 i32      ids[n_tokens]
 *   .. f32      logits[n_positions][n_vocab], chunk by chunk, position order
 * Memory stays bounded by one batch of logits: rows are streamed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const char ppl_help[] =
    "usage: deepc perplexity -m <model.dqf> (-f text.txt | --ids-file ids.txt) [options]\n"
    "  Perplexity over non-overlapping chunks of --ctx tokens (each starting with BOS\n"
    "  when the model uses one), scoring the second half of each chunk like llama.cpp.\n"
    "  -m, --model FILE       model file (.dqf)\n"
    "  -f, --file FILE        UTF-8 text, tokenized with the model's tokenizer\n"
    "  --ids-file FILE        token ids separated by commas or white space (for models\n"
    "                         without a tokenizer, or exact control of the ids)\n"
    "  -c, --ctx N            tokens per chunk (default 256)\n"
    "  --chunks N             score at most N chunks (default: all)\n"
    "  --save-logits FILE     write the ids and the fp32 logits of every scored position\n"
    "  --kl-base FILE         compare with logits saved by --save-logits (same vocabulary\n"
    "                         and tokens): KL(base || this) mean, 99th percentile, max,\n"
    "                         top-1 agreement, and the perplexity of both\n"
    "  -t, --threads N        threads (default: physical cores)\n"
    "  -b, --batch N          tokens per forward batch (default 64; MoE 128)\n"
    "  --isa NAME             force a kernel backend (scalar, avx2, ...)\n"
    CLI_MODEL_FLAGS_HELP;

#define LOGIT_MAGIC "DEEPCLGT"
#define LOGIT_VERSION 1u
#define LOGIT_HEADER 32u

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Whole file into a NUL-terminated heap buffer (caller frees), NULL on error. */
static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    while (b) {
        size_t r = fread(b + n, 1, cap - n - 1, f);
        n += r;
        if (n + 1 < cap) break;
        char *nb = realloc(b, cap * 2);
        if (!nb) { free(b); b = NULL; break; }
        b = nb;
        cap *= 2;
    }
    bool err = ferror(f);
    fclose(f);
    if (!b || err) { free(b); return NULL; }
    b[n] = 0;
    *len = n;
    return b;
}

/* Ids separated by commas and/or white space. */
static bool parse_ids_text(const char *s, int32_t **out, int *n_out, char *msg, size_t cap) {
    size_t n = 0, c = 256;
    int32_t *a = malloc(c * sizeof *a);
    if (!a) { snprintf(msg, cap, "out of memory"); return false; }
    const char *p = s;
    for (;;) {
        while (*p == ',' || *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (!*p) break;
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX || (*end && !strchr(", \t\r\n", *end))) {
            snprintf(msg, cap, "bad token id near '%.20s' (expected non-negative integers separated by commas or spaces)", p);
            free(a);
            return false;
        }
        if (n == c) {
            int32_t *na = realloc(a, (c *= 2) * sizeof *a);
            if (!na) { free(a); snprintf(msg, cap, "out of memory"); return false; }
            a = na;
        }
        a[n++] = (int32_t)v;
        if (n > INT32_MAX / 2) { free(a); snprintf(msg, cap, "too many ids"); return false; }
        p = end;
    }
    *out = a;
    *n_out = (int)n;
    return true;
}

/* log-sum-exp of a logits row and its argmax, in double. */
static double row_lse(const float *x, int n, int *argmax) {
    float mx = x[0];
    int am = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > mx) { mx = x[i]; am = i; }
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - mx);
    *argmax = am;
    return mx + log(s);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The base file: validated header and the stream positioned at the logits. */
typedef struct {
    FILE *f;
    const char *path;
} kl_base;

static int open_base(kl_base *kb, const char *path, uint32_t vocab, uint32_t ctx, uint32_t first,
                     const int32_t *ids, uint32_t n_tokens, uint32_t n_pos) {
    kb->path = path;
    if (!(kb->f = fopen(path, "rb"))) return cli_fail("perplexity", "cannot open %s", path);
    unsigned char h[LOGIT_HEADER];
    if (fread(h, 1, sizeof h, kb->f) != sizeof h || memcmp(h, LOGIT_MAGIC, 8))
        return cli_fail("perplexity", "%s is not a logits file written by 'deepc perplexity --save-logits'", path);
    if (get_u32(h + 8) != LOGIT_VERSION)
        return cli_fail("perplexity", "%s: logits file version %u, this deepc reads version %u", path, get_u32(h + 8), LOGIT_VERSION);
    uint32_t fv = get_u32(h + 12), fc = get_u32(h + 16), ff = get_u32(h + 20), ft = get_u32(h + 24), fp = get_u32(h + 28);
    if (fv != vocab)
        return cli_fail("perplexity", "%s was written by a model with a vocabulary of %u, this model has %u", path, fv, vocab);
    if (fc != ctx || ff != first)
        return cli_fail("perplexity", "%s was written with --ctx %u, this run uses --ctx %u", path, fc, ctx);
    if (ft != n_tokens || fp != n_pos)
        return cli_fail("perplexity", "%s holds %u tokens (%u scored positions), this run has %u (%u): use the same text, tokenizer, --ctx and --chunks",
                        path, ft, fp, n_tokens, n_pos);
    struct stat st;
    uint64_t want = LOGIT_HEADER + 4ull * ft + 4ull * fp * fv;
    if (fstat(fileno(kb->f), &st) != 0 || (uint64_t)st.st_size != want)
        return cli_fail("perplexity", "%s is truncated or has trailing data (%llu bytes, expected %llu)", path,
                        (unsigned long long)st.st_size, (unsigned long long)want);
    unsigned char b[4];
    for (uint32_t i = 0; i < ft; i++) {
        if (fread(b, 1, 4, kb->f) != 4) return cli_fail("perplexity", "%s: read failed", path);
        int32_t v = (int32_t)get_u32(b);
        if (v != ids[i])
            return cli_fail("perplexity", "%s was computed on different tokens (first difference at token %u: %d there, %d here); "
                            "use the same text and tokenizer", path, i, (int)v, (int)ids[i]);
    }
    return CLI_OK;
}

int cmd_perplexity(int argc, char **argv) {
    const char *model = NULL, *text_path = NULL, *ids_path = NULL, *save = NULL, *base = NULL, *isa = NULL;
    long long ctx = 256, threads = 0, batch = 0, max_chunks = 0;
    deepc_model_params mp = deepc_model_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define VAL() (cli_value(argc, argv, &i))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(ppl_help, stdout); return CLI_OK; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!(model = VAL())) return cli_usage_error("perplexity", "%s needs a file", a); }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { if (!(text_path = VAL())) return cli_usage_error("perplexity", "%s needs a file", a); }
        else if (!strcmp(a, "--ids-file")) { if (!(ids_path = VAL())) return cli_usage_error("perplexity", "--ids-file needs a file"); }
        else if (!strcmp(a, "--save-logits")) { if (!(save = VAL())) return cli_usage_error("perplexity", "--save-logits needs a file"); }
        else if (!strcmp(a, "--kl-base")) { if (!(base = VAL())) return cli_usage_error("perplexity", "--kl-base needs a file"); }
        else if (!strcmp(a, "--isa")) { if (!(isa = VAL())) return cli_usage_error("perplexity", "--isa needs a name"); }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) { if (!cli_parse_int(VAL(), 4, 1 << 20, &ctx)) return cli_usage_error("perplexity", "%s needs an integer in [4, 1048576]", a); }
        else if (!strcmp(a, "--chunks")) { if (!cli_parse_int(VAL(), 1, 1 << 30, &max_chunks)) return cli_usage_error("perplexity", "--chunks needs a positive integer"); }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (!cli_parse_int(VAL(), 1, 1024, &threads)) return cli_usage_error("perplexity", "%s needs an integer in [1, 1024]", a); }
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) { if (!cli_parse_int(VAL(), 1, 1 << 16, &batch)) return cli_usage_error("perplexity", "%s needs an integer in [1, 65536]", a); }
        else if (cli_model_flag(a, &mp)) continue;
        else return cli_usage_error("perplexity", "unknown option '%s'", a);
#undef VAL
    }
    if (!model) return cli_usage_error("perplexity", "no model given (-m model.dqf)");
    if (!text_path == !ids_path) return cli_usage_error("perplexity", "give exactly one of -f text.txt or --ids-file ids.txt");

    deepc_model *m = NULL;
    deepc_session *s = NULL;
    int32_t *ids = NULL;
    char *text = NULL;
    float *logits = NULL, *brow = NULL;
    double *kls = NULL;
    FILE *sf = NULL;
    char *save_tmp = NULL;
    kl_base kb = { NULL, NULL };
    int n_ids = 0, rc = CLI_OK;
    char msg[256];

    if (cli_model_open("perplexity", model, &mp, &m)) { rc = cli_fail("perplexity", "%s", deepc_open_error()); goto done; }
    deepc_model_info mi = { .struct_size = sizeof mi };
    deepc_model_get_info(m, &mi);
    int V = mi.n_vocab;
    size_t len = 0;
    if (!(text = read_all(text_path ? text_path : ids_path, &len))) {
        rc = cli_fail("perplexity", "cannot read %s", text_path ? text_path : ids_path);
        goto done;
    }
    if (ids_path) {
        if (!parse_ids_text(text, &ids, &n_ids, msg, sizeof msg)) { rc = cli_usage_error("perplexity", "%s: %s", ids_path, msg); goto done; }
        for (int i = 0; i < n_ids; i++)
            if (ids[i] >= V) { rc = cli_usage_error("perplexity", "%s: token id %d is outside the vocabulary (0..%d)", ids_path, (int)ids[i], V - 1); goto done; }
    } else {
        size_t need = 0;
        deepc_status st = deepc_tokenize(m, text, len, false, false, NULL, 0, &need);
        if (st == DEEPC_ERR_UNSUPPORTED) { rc = cli_fail("perplexity", "%s; give the text as ids with --ids-file", deepc_open_error()); goto done; }
        if (!st && need > INT32_MAX / 2) { rc = cli_fail("perplexity", "%s is too long", text_path); goto done; }
        if (!st && !(ids = malloc((need ? need : 1) * sizeof *ids))) { rc = cli_fail("perplexity", "out of memory"); goto done; }
        if (!st) st = deepc_tokenize(m, text, len, false, false, ids, need, &need);
        if (st) { rc = cli_fail("perplexity", "%s", deepc_open_error()); goto done; }
        n_ids = (int)need;
    }
    free(text);
    text = NULL;

    int C = (int)ctx;
    if (C > mi.n_ctx_train) { rc = cli_fail("perplexity", "--ctx %d exceeds the model's trained context of %d", C, mi.n_ctx_train); goto done; }
    int n_chunks = n_ids / C;
    if (max_chunks && n_chunks > max_chunks) n_chunks = (int)max_chunks;
    if (n_chunks < 1) {
        rc = cli_fail("perplexity", "the input has %d tokens, fewer than one chunk of --ctx %d", n_ids, C);
        goto done;
    }
    int first = C / 2, per = C - 1 - first;            /* scored positions per chunk */
    uint32_t n_tok = (uint32_t)n_chunks * (uint32_t)C, n_pos = (uint32_t)n_chunks * (uint32_t)per;
    bool bos = mi.add_bos && mi.bos_id >= 0 && mi.bos_id < V;
    if (bos) for (int c = 0; c < n_chunks; c++) ids[c * C] = mi.bos_id;

    deepc_session_params sp = deepc_session_default_params();
    sp.n_ctx = C;
    sp.n_threads = (int)threads;
    sp.n_batch = (int)batch;
    sp.isa = isa;
    if (deepc_session_create(m, &sp, &s)) { rc = cli_fail("perplexity", "%s", deepc_open_error()); goto done; }
    int B = deepc_session_n_batch(s);
    if (B > per) B = per;
    if (!(logits = malloc((size_t)B * V * sizeof *logits))) { rc = cli_fail("perplexity", "out of memory for %d x %d logits", B, V); goto done; }
    if (base) {
        if ((rc = open_base(&kb, base, (uint32_t)V, (uint32_t)C, (uint32_t)first, ids, n_tok, n_pos))) goto done;
        if (!(brow = malloc((size_t)V * sizeof *brow)) || !(kls = malloc((size_t)n_pos * sizeof *kls))) {
            rc = cli_fail("perplexity", "out of memory");
            goto done;
        }
    }
    if (save) {
        size_t sl = strlen(save);
        if (!(save_tmp = malloc(sl + 5))) { rc = cli_fail("perplexity", "out of memory"); goto done; }
        memcpy(save_tmp, save, sl);
        memcpy(save_tmp + sl, ".tmp", 5);
        if (!(sf = fopen(save_tmp, "wb"))) { rc = cli_fail("perplexity", "cannot create %s", save_tmp); goto done; }
        unsigned char h[LOGIT_HEADER];
        memcpy(h, LOGIT_MAGIC, 8);
        put_u32(h + 8, LOGIT_VERSION);
        put_u32(h + 12, (uint32_t)V);
        put_u32(h + 16, (uint32_t)C);
        put_u32(h + 20, (uint32_t)first);
        put_u32(h + 24, n_tok);
        put_u32(h + 28, n_pos);
        bool ok = fwrite(h, 1, sizeof h, sf) == sizeof h;
        for (uint32_t i = 0; i < n_tok && ok; i++) {
            unsigned char b[4];
            put_u32(b, (uint32_t)ids[i]);
            ok = fwrite(b, 1, 4, sf) == 4;
        }
        if (!ok) { rc = cli_fail("perplexity", "write to %s failed", save_tmp); goto done; }
    }

    fprintf(stderr, "perplexity: %d tokens, %d chunk(s) of %d%s, scoring positions %d..%d of each (%u predictions)\n",
            n_ids, n_chunks, C, bos ? " starting with BOS" : "", first, C - 2, n_pos);
    double nll = 0, nll2 = 0, bnll = 0, bnll2 = 0, kl_sum = 0, kl_sum2 = 0, kl_max = 0;
    uint64_t agree = 0, k = 0;
    for (int c = 0; c < n_chunks; c++) {
        const int32_t *t = ids + (size_t)c * C;
        if (deepc_session_rewind(s, 0) || deepc_session_eval(s, t, first, NULL)) { rc = cli_fail("perplexity", "%s", deepc_last_error(s)); goto done; }
        for (int j = first; j < C - 1; j += B) {
            int nb = C - 1 - j < B ? C - 1 - j : B;
            if (deepc_session_eval(s, t + j, nb, logits)) { rc = cli_fail("perplexity", "%s", deepc_last_error(s)); goto done; }
            if (sf && fwrite(logits, sizeof(float), (size_t)nb * V, sf) != (size_t)nb * V) { rc = cli_fail("perplexity", "write to %s failed", save_tmp); goto done; }
            for (int r = 0; r < nb; r++, k++) {
                const float *x = logits + (size_t)r * V;
                int target = t[j + r + 1], am;
                double lse = row_lse(x, V, &am);
                double l = lse - x[target];
                nll += l;
                nll2 += l * l;
                if (!kb.f) continue;
                if (fread(brow, sizeof(float), (size_t)V, kb.f) != (size_t)V) { rc = cli_fail("perplexity", "%s: read failed", base); goto done; }
                int bam;
                double blse = row_lse(brow, V, &bam);
                double bl = blse - brow[target];
                bnll += bl;
                bnll2 += bl * bl;
                double kl = 0;
                for (int i = 0; i < V; i++) {
                    double lb = brow[i] - blse, lt = x[i] - lse;
                    kl += exp(lb) * (lb - lt);
                }
                kls[k] = kl;
                kl_sum += kl;
                kl_sum2 += kl * kl;
                if (kl > kl_max) kl_max = kl;
                agree += am == bam;
            }
        }
        fprintf(stderr, "[%d] %.4f%s", c + 1, exp(nll / (double)k), c + 1 == n_chunks || (c + 1) % 8 == 0 ? "\n" : " ");
    }
    if (sf) {
        int e = fclose(sf);
        sf = NULL;
        if (e != 0 || rename(save_tmp, save) != 0) { rc = cli_fail("perplexity", "write to %s failed", save); goto done; }
    }

    double N = (double)k;
    /* uncertainties as llama.cpp: standard error of the mean over predictions */
#define SE(sum, sum2) (N > 1 ? sqrt(fmax(0.0, (sum2) / N - ((sum) / N) * ((sum) / N)) / (N - 1)) : 0.0)
    double ppl = exp(nll / N);
    printf("model:       %s\n", model);
    printf("tokens:      %d in %d chunk(s) of %d, %.0f scored predictions (second half of each chunk)\n", n_ids, n_chunks, C, N);
    printf("perplexity:  %.4f +/- %.4f\n", ppl, ppl * SE(nll, nll2));
    if (kb.f) {
        double bppl = exp(bnll / N);
        qsort(kls, (size_t)k, sizeof *kls, cmp_double);
        double pos = 0.99 * (N - 1);
        size_t lo = (size_t)pos;
        double p99 = lo + 1 < (size_t)k ? kls[lo] + (pos - (double)lo) * (kls[lo + 1] - kls[lo]) : kls[lo];
        printf("base:        %s\n", base);
        printf("base perplexity:      %.4f +/- %.4f\n", bppl, bppl * SE(bnll, bnll2));
        printf("ln(PPL/PPL base):     %.6g\n", log(ppl / bppl));
        printf("KL(base || this):     mean %.6g +/- %.3g, 99th percentile %.6g, max %.6g (nats)\n", kl_sum / N, SE(kl_sum, kl_sum2), p99, kl_max);
        printf("top-1 agreement:      %.3f%% (%llu of %.0f positions)\n", 100.0 * (double)agree / N, (unsigned long long)agree, N);
    }
    if (save) printf("saved logits: %s (%u positions x %d)\n", save, n_pos, V);
#undef SE
done:
    if (sf) { fclose(sf); remove(save_tmp); }
    if (kb.f) fclose(kb.f);
    free(save_tmp);
    free(kls);
    free(brow);
    free(logits);
    free(text);
    free(ids);
    deepc_session_destroy(s);
    deepc_model_close(m);
    return rc;
}
