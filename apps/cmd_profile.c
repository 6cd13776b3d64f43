/* cmd_profile.c - `deepc profile`: runs a file of prompts through a MoE model
 * and writes how often each routed expert was selected, the routing profile
 * that `--pin-profile` loads to keep the hottest experts in the expert cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char profile_help[] =
    "usage: deepc profile -m <model.dqf> -p <prompts.txt> [options]\n"
    "  Feeds every non-empty line of the prompts file to the model (a fresh context\n"
    "  each), generates -n tokens greedily after it, counts how often each routed\n"
    "  expert is selected, and writes the counts as a routing profile for\n"
    "  `deepc run|chat|bench --pin-profile FILE`.\n"
    "  -m, --model FILE       model file (.dqf), a DeepSeek MoE model\n"
    "  -p, --prompts FILE     prompts, one per line\n"
    "  -o, --out FILE         profile to write (default: standard output)\n"
    "  -n, --n-predict N      tokens generated after each prompt (default 32)\n"
    "  --chat                 wrap each line in the model's chat template\n"
    "  -t, --threads N        threads (default: physical cores)\n"
    "  -c, --ctx N            context length (default: min(trained, 4096))\n"
    CLI_EXPERT_FLAGS_HELP
    CLI_MODEL_FLAGS_HELP;

/* Tokenizes one prompt line into a heap array owned by the caller. */
static int32_t *tokenize_line(deepc_model *m, const char *line, bool chat, bool add_bos, size_t *n) {
    int32_t *ids = NULL;
    size_t need = 0;
    deepc_status st;
    deepc_chat_msg msg = { "user", line };
    if (chat) st = deepc_chat_tokenize(m, NULL, &msg, 1, true, NULL, 0, &need);
    else st = deepc_tokenize(m, line, strlen(line), add_bos, false, NULL, 0, &need);
    if (st || !(ids = malloc((need ? need : 1) * sizeof *ids))) return NULL;
    if (chat) st = deepc_chat_tokenize(m, NULL, &msg, 1, true, ids, need, &need);
    else st = deepc_tokenize(m, line, strlen(line), add_bos, false, ids, need, &need);
    if (st) { free(ids); return NULL; }
    *n = need;
    return ids;
}

int cmd_profile(int argc, char **argv) {
    const char *model = NULL, *prompts = NULL, *out = "/dev/stdout";
    cli_expert_opts xo = {0};
    int k;
    bool chat = false;
    long long n_predict = 32, threads = 0, ctx = 0;
    deepc_model_params mp = deepc_model_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define VAL() (cli_value(argc, argv, &i))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(profile_help, stdout); return CLI_OK; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!(model = VAL())) return cli_usage_error("profile", "%s needs a file", a); }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompts")) { if (!(prompts = VAL())) return cli_usage_error("profile", "%s needs a file", a); }
        else if (!strcmp(a, "-o") || !strcmp(a, "--out")) { if (!(out = VAL())) return cli_usage_error("profile", "%s needs a file", a); }
        else if (!strcmp(a, "--chat")) chat = true;
        else if ((k = cli_expert_flag("profile", argc, argv, &i, &xo)) != 0) { if (k != 1) return k; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) { if (!cli_parse_int(VAL(), 0, 1 << 24, &n_predict)) return cli_usage_error("profile", "%s needs an integer in [0, 16777216]", a); }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (!cli_parse_int(VAL(), 1, 1024, &threads)) return cli_usage_error("profile", "%s needs an integer in [1, 1024]", a); }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) { if (!cli_parse_int(VAL(), 1, 1 << 24, &ctx)) return cli_usage_error("profile", "%s needs an integer in [1, 16777216]", a); }
        else if (cli_model_flag(a, &mp)) continue;
        else return cli_usage_error("profile", "unknown option '%s'", a);
#undef VAL
    }
    if (!model) return cli_usage_error("profile", "no model given (-m model.dqf)");
    if (!prompts) return cli_usage_error("profile", "no prompts given (-p prompts.txt, one prompt per line)");

    deepc_model *m = NULL;
    deepc_session *s = NULL;
    FILE *f = NULL;
    char *line = NULL;
    size_t cap = 0;
    int rc = CLI_OK, n_prompts = 0;
    long long n_tokens = 0;
    if (cli_model_open("profile", model, &mp, &m)) { rc = cli_fail("profile", "%s", deepc_open_error()); goto done; }
    deepc_model_info mi = { .struct_size = sizeof mi };
    deepc_model_get_info(m, &mi);
    if (!mi.expert_bytes) { rc = cli_fail("profile", "%s has no routed experts (not a MoE model)", model); goto done; }
    deepc_session_params pp = deepc_session_default_params();
    pp.n_threads = (int)threads;
    pp.n_ctx = (int)ctx;
    if ((rc = cli_expert_apply("profile", &xo, &mi, &pp))) goto done;
    if (deepc_session_create(m, &pp, &s)) { rc = cli_fail("profile", "%s", deepc_open_error()); goto done; }
    if (!(f = fopen(prompts, "r"))) { rc = cli_fail("profile", "cannot open %s", prompts); goto done; }
    deepc_sampling greedy = deepc_sampling_default();
    greedy.temperature = 0.0f;
    ssize_t got;
    while ((got = getline(&line, &cap, f)) >= 0) {
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
        if (got == 0) continue;
        size_t n = 0;
        int32_t *ids = tokenize_line(m, line, chat, mi.add_bos, &n);
        if (!ids) { rc = cli_fail("profile", "%s line: %s", prompts, deepc_open_error()); goto done; }
        int room = deepc_session_n_ctx(s) - (int)n;
        if (n == 0 || room < 1) {
            fprintf(stderr, "deepc profile: skipping a prompt of %zu tokens (the context holds %d)\n", n, deepc_session_n_ctx(s));
            free(ids);
            continue;
        }
        deepc_session_rewind(s, 0);
        deepc_gen_stats gs;
        deepc_status st = deepc_generate(s, ids, (int)n, (int)(n_predict < room ? n_predict : room), &greedy, NULL, NULL, &gs);
        free(ids);
        if (st) { rc = cli_fail("profile", "%s", deepc_last_error(s)); goto done; }
        n_prompts++;
        n_tokens += gs.n_prompt + gs.n_gen;
    }
    if (n_prompts == 0) { rc = cli_fail("profile", "%s has no prompts (one per line)", prompts); goto done; }
    if (deepc_session_save_expert_profile(s, out)) { rc = cli_fail("profile", "%s", deepc_last_error(s)); goto done; }
    fprintf(stderr, "deepc profile: %d prompts, %lld tokens; profile written to %s\n", n_prompts, n_tokens,
            strcmp(out, "/dev/stdout") ? out : "standard output");
    cli_print_expert_stats(stderr, s, "deepc profile: ", "");
done:
    if (f) fclose(f);
    free(line);
    deepc_session_destroy(s);
    deepc_model_close(m);
    return rc;
}
