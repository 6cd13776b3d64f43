/* cmd_run.c - `deepc run`: one-shot generation from token ids or text, with
 * optional dumping of the prompt logits for comparisons. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char run_help[] =
    "usage: deepc run -m <model.dqf> (--ids 1,2,3 | -p TEXT) [options]\n"
    "  -m, --model FILE       model file (.dqf)\n"
    "  --ids LIST             prompt as comma-separated token ids; output is ids\n"
    "  -p, --prompt TEXT      prompt as text; output is text\n"
    "  --chat                 wrap the prompt in the model's chat template\n"
    "  --system TEXT          system prompt (with --chat)\n"
    "  -n, --n-predict N      tokens to generate (default 128; 0 = only evaluate the prompt)\n"
    "  --temp T               temperature, 0 = greedy (default 0.6)\n"
    "  --top-k K              keep the K most likely tokens, 0 = off (default 0)\n"
    "  --top-p P              nucleus sampling, 1 = off (default 0.95)\n"
    "  --min-p P              drop tokens below P x the top probability (default 0)\n"
    "  --repeat-penalty R     penalty for recent tokens, 1 = off (default 1)\n"
    "  --repeat-last-n N      tokens the penalty looks back (default 64)\n"
    "  --seed S               sampling seed (default 0)\n"
    "  -t, --threads N        threads (default: physical cores)\n"
    "  -c, --ctx N            context length (default: min(trained, 4096))\n"
    "  --dump-logits FILE     write the logits of every prompt position as raw\n"
    "                         little-endian float32 [positions x vocab]\n"
    "  --isa NAME             force a kernel backend (scalar, ...)\n"
    CLI_EXPERT_FLAGS_HELP
    CLI_MODEL_FLAGS_HELP;

typedef struct {
    bool ids_mode;
    int count;
} run_out;

static bool on_token(void *user, int32_t tok, const char *piece, size_t len) {
    run_out *o = user;
    if (o->ids_mode) printf("%s%d", o->count++ ? "," : "", (int)tok);
    else fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return true;
}

static int dump_logits(deepc_session *s, const int32_t *ids, int n, int vocab, const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f) return cli_fail("run", "cannot create %s", path);
    const int chunk = 64;
    float *buf = malloc((size_t)chunk * vocab * sizeof(float));
    if (!buf) { fclose(f); return cli_fail("run", "out of memory for logits"); }
    int rc = CLI_OK;
    for (int i = 0; i < n && rc == CLI_OK; i += chunk) {
        int c = n - i < chunk ? n - i : chunk;
        if (deepc_session_eval(s, ids + i, c, buf)) rc = cli_fail("run", "%s", deepc_last_error(s));
        else if (fwrite(buf, sizeof(float), (size_t)c * vocab, f) != (size_t)c * vocab) rc = cli_fail("run", "write to %s failed", path);
    }
    free(buf);
    if (fclose(f) != 0 && rc == CLI_OK) rc = cli_fail("run", "write to %s failed", path);
    return rc;
}

int cmd_run(int argc, char **argv) {
    const char *model = NULL, *ids_s = NULL, *prompt = NULL, *dump = NULL, *system = NULL, *isa = NULL;
    cli_expert_opts xo = {0};
    bool chat = false;
    long long n_predict = 128, threads = 0, ctx = 0;
    int k;
    deepc_sampling sp = deepc_sampling_default();
    deepc_model_params mp = deepc_model_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define VAL() (cli_value(argc, argv, &i))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(run_help, stdout); return CLI_OK; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!(model = VAL())) return cli_usage_error("run", "%s needs a file", a); }
        else if (!strcmp(a, "--ids")) { if (!(ids_s = VAL())) return cli_usage_error("run", "--ids needs a list"); }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { if (!(prompt = VAL())) return cli_usage_error("run", "%s needs text", a); }
        else if (!strcmp(a, "--system")) { if (!(system = VAL())) return cli_usage_error("run", "--system needs text"); }
        else if (!strcmp(a, "--chat")) chat = true;
        else if (!strcmp(a, "--dump-logits")) { if (!(dump = VAL())) return cli_usage_error("run", "--dump-logits needs a file"); }
        else if (!strcmp(a, "--isa")) { if (!(isa = VAL())) return cli_usage_error("run", "--isa needs a name"); }
        else if ((k = cli_expert_flag("run", argc, argv, &i, &xo)) != 0) { if (k != 1) return k; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) { if (!cli_parse_int(VAL(), 0, 1 << 24, &n_predict)) return cli_usage_error("run", "%s needs an integer in [0, 16777216]", a); }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (!cli_parse_int(VAL(), 1, 1024, &threads)) return cli_usage_error("run", "%s needs an integer in [1, 1024]", a); }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) { if (!cli_parse_int(VAL(), 1, 1 << 24, &ctx)) return cli_usage_error("run", "%s needs an integer in [1, 16777216]", a); }
        else if ((k = cli_sampling_flag("run", argc, argv, &i, &sp)) != 0) { if (k != 1) return k; }
        else if (cli_model_flag(a, &mp)) continue;
        else return cli_usage_error("run", "unknown option '%s'", a);
#undef VAL
    }
    if (!model) return cli_usage_error("run", "no model given (-m model.dqf)");
    if (!ids_s == !prompt) return cli_usage_error("run", "give exactly one of --ids or -p");
    if (chat && !prompt) return cli_usage_error("run", "--chat needs -p TEXT");

    int32_t *ids = NULL;
    int n_ids = 0;
    char msg[256];
    if (ids_s && !cli_parse_ids(ids_s, &ids, &n_ids, msg, sizeof msg)) return cli_usage_error("run", "%s", msg);

    deepc_model *m = NULL;
    deepc_session *s = NULL;
    int rc = CLI_OK;
    if (cli_model_open("run", model, &mp, &m)) { rc = cli_fail("run", "%s", deepc_open_error()); goto done; }
    deepc_model_info mi = { .struct_size = sizeof mi };
    deepc_model_get_info(m, &mi);
    if (prompt) {
        size_t need = 0;
        deepc_status st;
        if (chat) {
            deepc_chat_msg msgs[2];
            size_t nm = 0;
            if (system) msgs[nm++] = (deepc_chat_msg){ "system", system };
            msgs[nm++] = (deepc_chat_msg){ "user", prompt };
            st = deepc_chat_tokenize(m, NULL, msgs, nm, true, NULL, 0, &need);
            if (!st && (ids = malloc((need ? need : 1) * sizeof *ids)))
                st = deepc_chat_tokenize(m, NULL, msgs, nm, true, ids, need, &need);
        } else {
            st = deepc_tokenize(m, prompt, strlen(prompt), mi.add_bos, false, NULL, 0, &need);
            if (!st && (ids = malloc((need ? need : 1) * sizeof *ids)))
                st = deepc_tokenize(m, prompt, strlen(prompt), mi.add_bos, false, ids, need, &need);
        }
        if (st || !ids) { rc = cli_fail("run", "%s", st ? deepc_open_error() : "out of memory"); goto done; }
        n_ids = (int)need;
        if (n_ids == 0) { rc = cli_usage_error("run", "the prompt is empty"); goto done; }
    }
    for (int i = 0; i < n_ids; i++)
        if (ids[i] >= mi.n_vocab) { rc = cli_usage_error("run", "token id %d is outside the vocabulary (0..%d)", (int)ids[i], mi.n_vocab - 1); goto done; }

    deepc_session_params pp = deepc_session_default_params();
    pp.n_threads = (int)threads;
    pp.n_ctx = (int)ctx;
    pp.isa = isa;
    if ((rc = cli_expert_apply("run", &xo, &mi, &pp))) goto done;
    if (deepc_session_create(m, &pp, &s)) { rc = cli_fail("run", "%s", deepc_open_error()); goto done; }
    if (n_ids + (dump ? 0 : 1) > deepc_session_n_ctx(s)) {
        rc = cli_fail("run", "the prompt has %d tokens but the context holds %d (use --ctx)", n_ids, deepc_session_n_ctx(s));
        goto done;
    }
    run_out o = { ids_s != NULL, 0 };
    deepc_gen_stats gs;
    deepc_status st;
    if (dump) {
        double t0 = now_s();
        if ((rc = dump_logits(s, ids, n_ids, mi.n_vocab, dump))) goto done;
        double tp = now_s() - t0;
        st = deepc_generate(s, NULL, 0, (int)n_predict, &sp, on_token, &o, &gs);
        gs.n_prompt = n_ids;
        gs.prompt_s = tp;
    } else {
        st = deepc_generate(s, ids, n_ids, (int)n_predict, &sp, on_token, &o, &gs);
    }
    if (st) { rc = cli_fail("run", "%s", deepc_last_error(s)); goto done; }
    putchar('\n');
    fflush(stdout);
    fprintf(stderr, "prompt: %d tokens in %.3f s (%.2f tok/s) | generation: %d tokens in %.3f s (%.2f tok/s)%s\n",
            gs.n_prompt, gs.prompt_s, gs.prompt_s > 0 ? gs.n_prompt / gs.prompt_s : 0.0,
            gs.n_gen, gs.gen_s, gs.gen_s > 0 ? gs.n_gen / gs.gen_s : 0.0,
            gs.hit_ctx ? " [context full]" : gs.hit_eos ? " [end of text]" : "");
    if (xo.cache || xo.max_ram) cli_print_expert_stats(stderr, s, "", "");
done:
    deepc_session_destroy(s);
    deepc_model_close(m);
    free(ids);
    return rc;
}
