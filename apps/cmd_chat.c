/* cmd_chat.c - `deepc chat`: a multi-turn terminal conversation. Each turn
 * re-renders the whole conversation with the chat template, keeps the longest
 * prefix already in the KV cache and evaluates only the rest, so earlier turns
 * are not re-processed (and an earlier answer whose <think> block the
 * template drops is re-evaluated from the first changed token only). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

typedef struct {
    char *role, *content;
} msg;

typedef struct {
    msg *v;
    size_t n, cap;
    char *system;
} convo;

static int convo_add(convo *c, const char *role, const char *content, size_t len) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        msg *v = realloc(c->v, cap * sizeof *v);
        if (!v) return -1;
        c->v = v;
        c->cap = cap;
    }
    char *r = strdup(role), *t = malloc(len + 1);
    if (!r || !t) { free(r); free(t); return -1; }
    memcpy(t, content, len);
    t[len] = 0;
    c->v[c->n].role = r;
    c->v[c->n].content = t;
    c->n++;
    return 0;
}

static void convo_clear(convo *c) {
    for (size_t i = 0; i < c->n; i++) { free(c->v[i].role); free(c->v[i].content); }
    c->n = 0;
}

typedef struct {
    bool tty, hide_think, in_think;
    char *text;            /* the answer so far */
    size_t len, cap;
    int32_t *gen;          /* generated ids */
    int n_gen, cap_gen;
} answer;

static bool on_token(void *user, int32_t tok, const char *piece, size_t len) {
    answer *a = user;
    if (a->n_gen < a->cap_gen) a->gen[a->n_gen++] = tok;
    if (a->len + len + 1 > a->cap) {
        size_t cap = (a->cap + len + 1) * 2;
        char *t = realloc(a->text, cap);
        if (!t) return false;
        a->text = t;
        a->cap = cap;
    }
    memcpy(a->text + a->len, piece, len);
    a->len += len;
    a->text[a->len] = 0;
    bool ends_think = a->in_think && len >= 8 && strstr(a->text + (a->len > len + 8 ? a->len - len - 8 : 0), "</think>");
    if (a->in_think) {
        if (!a->hide_think) {
            if (a->tty) fputs("\033[2m", stdout);
            fwrite(piece, 1, len, stdout);
            if (a->tty) fputs("\033[0m", stdout);
        }
        if (ends_think) a->in_think = false;
    } else {
        fwrite(piece, 1, len, stdout);
    }
    fflush(stdout);
    return !interrupted;
}

static const char chat_help[] =
    "usage: deepc chat -m <model.dqf> [options]\n"
    "  -m, --model FILE       model file (.dqf)\n"
    "  --system TEXT          system prompt\n"
    "  --hide-think           do not show the <think> reasoning of R1 models\n"
    "  --template NAME        chat template override (deepseek-r1, deepseek-v3,\n"
    "                         deepseek-v2, chatml, llama3)\n"
    "  -n, --n-predict N      max tokens per answer (default 4096)\n"
    "  --temp T, --top-k K, --top-p P, --min-p P, --repeat-penalty R, --repeat-last-n N, --seed S\n"
    "                         sampling (default temp 0.6, top-p 0.95: DeepSeek's advice for R1)\n"
    "  -t, --threads N        threads; -c, --ctx N  context length\n"
    CLI_EXPERT_FLAGS_HELP
    CLI_MODEL_FLAGS_HELP
    "in the chat: /reset, /system <text>, /stats, /quit (or Ctrl-D); Ctrl-C stops an answer.\n";

int cmd_chat(int argc, char **argv) {
    const char *model = NULL, *tmpl = NULL;
    cli_expert_opts xo = {0};
    char *system = NULL;
    bool hide_think = false;
    long long n_predict = 4096, threads = 0, ctx = 0;
    int k;
    deepc_sampling sp = deepc_sampling_default();
    deepc_model_params mp = deepc_model_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define VAL() (cli_value(argc, argv, &i))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(chat_help, stdout); return CLI_OK; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!(model = VAL())) return cli_usage_error("chat", "%s needs a file", a); }
        else if (!strcmp(a, "--system")) { const char *s = VAL(); if (!s) return cli_usage_error("chat", "--system needs text"); free(system); system = strdup(s); }
        else if (!strcmp(a, "--template")) { if (!(tmpl = VAL())) return cli_usage_error("chat", "--template needs a name"); }
        else if (!strcmp(a, "--hide-think")) hide_think = true;
        else if ((k = cli_expert_flag("chat", argc, argv, &i, &xo)) != 0) { if (k != 1) return k; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) { if (!cli_parse_int(VAL(), 1, 1 << 24, &n_predict)) return cli_usage_error("chat", "%s needs an integer >= 1", a); }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (!cli_parse_int(VAL(), 1, 1024, &threads)) return cli_usage_error("chat", "%s needs an integer in [1, 1024]", a); }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) { if (!cli_parse_int(VAL(), 16, 1 << 24, &ctx)) return cli_usage_error("chat", "%s needs an integer in [16, 16777216]", a); }
        else if ((k = cli_sampling_flag("chat", argc, argv, &i, &sp)) != 0) { if (k != 1) return k; }
        else if (cli_model_flag(a, &mp)) continue;
        else return cli_usage_error("chat", "unknown option '%s'", a);
#undef VAL
    }
    if (!model) { free(system); return cli_usage_error("chat", "no model given (-m model.dqf)"); }

    deepc_model *m = NULL;
    deepc_session *s = NULL;
    convo c = {0};
    answer ans = {0};
    int32_t *cached = NULL, *ids = NULL;
    int n_cached = 0;
    char *line = NULL;
    size_t line_cap = 0;
    int rc = CLI_OK;
    if (cli_model_open("chat", model, &mp, &m)) { rc = cli_fail("chat", "%s", deepc_open_error()); goto done; }
    deepc_session_params pp = deepc_session_default_params();
    pp.n_threads = (int)threads;
    pp.n_ctx = (int)ctx;
    deepc_model_info mi = { .struct_size = sizeof mi };
    deepc_model_get_info(m, &mi);
    if ((rc = cli_expert_apply("chat", &xo, &mi, &pp))) goto done;
    if (deepc_session_create(m, &pp, &s)) { rc = cli_fail("chat", "%s", deepc_open_error()); goto done; }
    int n_ctx = deepc_session_n_ctx(s);
    cached = malloc((size_t)n_ctx * sizeof *cached);
    ans.cap_gen = (int)n_predict;
    ans.gen = malloc((size_t)n_predict * sizeof *ans.gen);
    if (!cached || !ans.gen) { rc = cli_fail("chat", "out of memory"); goto done; }
    { /* check that the model has a usable template before the first turn */
        size_t need;
        deepc_chat_msg probe = { "user", "hi" };
        if (deepc_chat_tokenize(m, tmpl, &probe, 1, true, NULL, 0, &need)) { rc = cli_fail("chat", "%s", deepc_open_error()); goto done; }
    }
    bool tty_in = isatty(0), tty_out = isatty(1);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);   /* no SA_RESTART: Ctrl-C interrupts a blocking read too */

    deepc_gen_stats last = {0};
    double tot_prompt_s = 0, tot_gen_s = 0;
    long tot_prompt = 0, tot_gen = 0;
    if (tty_in) fprintf(stderr, "deepc chat: %s, context %d tokens. /quit to exit, Ctrl-C stops an answer.\n", model, n_ctx);
    for (;;) {
        if (tty_in) { fputs(tty_out ? "\033[1m> \033[0m" : "> ", stdout); fflush(stdout); }
        interrupted = 0;
        ssize_t got = getline(&line, &line_cap, stdin);
        if (got < 0) {
            if (interrupted) { clearerr(stdin); fputs("\n(use /quit or Ctrl-D to exit)\n", stderr); continue; }
            break;
        }
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
        if (!tty_in) printf("> %s\n", line);
        if (got == 0) continue;
        if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) break;
        if (!strcmp(line, "/reset")) {
            convo_clear(&c);
            deepc_session_rewind(s, 0);
            n_cached = 0;
            puts("[conversation reset]");
            continue;
        }
        if (!strncmp(line, "/system", 7) && (line[7] == ' ' || !line[7])) {
            free(system);
            system = line[7] ? strdup(line + 8) : NULL;
            printf("[system prompt %s]\n", system && *system ? "set" : "cleared");
            continue;
        }
        if (!strcmp(line, "/stats")) {
            printf("[last answer: prompt %d tokens %.2f tok/s, generation %d tokens %.2f tok/s]\n"
                   "[session: %ld prompt tokens %.2f tok/s, %ld generated %.2f tok/s; context %d/%d tokens in use]\n",
                   last.n_prompt, last.prompt_s > 0 ? last.n_prompt / last.prompt_s : 0.0,
                   last.n_gen, last.gen_s > 0 ? last.n_gen / last.gen_s : 0.0,
                   tot_prompt, tot_prompt_s > 0 ? tot_prompt / tot_prompt_s : 0.0,
                   tot_gen, tot_gen_s > 0 ? tot_gen / tot_gen_s : 0.0, deepc_session_pos(s), n_ctx);
            cli_print_expert_stats(stdout, s, "[", "]");
            continue;
        }
        if (line[0] == '/') { printf("[unknown command %s: /reset, /system <text>, /stats, /quit]\n", line); continue; }

        if (convo_add(&c, "user", line, (size_t)got)) { rc = cli_fail("chat", "out of memory"); goto done; }
        size_t nm = c.n + (system && *system ? 1 : 0), k = 0;
        deepc_chat_msg *msgs = malloc(nm * sizeof *msgs);
        if (!msgs) { rc = cli_fail("chat", "out of memory"); goto done; }
        if (system && *system) msgs[k++] = (deepc_chat_msg){ "system", system };
        for (size_t i = 0; i < c.n; i++) msgs[k++] = (deepc_chat_msg){ c.v[i].role, c.v[i].content };
        size_t need = 0;
        deepc_status st = deepc_chat_tokenize(m, tmpl, msgs, nm, true, NULL, 0, &need);
        free(ids);
        ids = st ? NULL : malloc((need ? need : 1) * sizeof *ids);
        if (!st && ids) st = deepc_chat_tokenize(m, tmpl, msgs, nm, true, ids, need, &need);
        free(msgs);
        if (st || !ids) { rc = cli_fail("chat", "%s", st ? deepc_open_error() : "out of memory"); goto done; }
        if ((int)need >= n_ctx) {
            printf("[the context is full: this conversation needs %zu tokens, the context holds %d. Use /reset, or restart with a larger --ctx]\n", need, n_ctx);
            c.n--; free(c.v[c.n].role); free(c.v[c.n].content);
            continue;
        }
        /* keep the cached prefix, evaluate only what changed */
        int common = 0;
        while (common < n_cached && common < (int)need - 1 && cached[common] == ids[common]) common++;
        deepc_session_rewind(s, common);
        ans.len = 0;
        ans.n_gen = 0;
        ans.tty = tty_out;
        ans.hide_think = hide_think;
        {
            const char *think_open = "<think>\n";
            size_t tl = 0;
            const char *last_piece = deepc_token_bytes(m, ids[need - 1], &tl);
            ans.in_think = last_piece && tl >= 7 && !memcmp(last_piece, think_open, 7);
            if (!ans.in_think && need >= 2) {  /* "<think>" then "\n" as two tokens */
                const char *p2 = deepc_token_bytes(m, ids[need - 2], &tl);
                ans.in_think = p2 && tl == 7 && !memcmp(p2, think_open, 7);
            }
        }
        interrupted = 0;
        deepc_gen_stats gs;
        st = deepc_generate(s, ids + common, (int)need - common, (int)n_predict, &sp, on_token, &ans, &gs);
        if (ans.in_think && ans.tty) fputs("\033[0m", stdout);
        putchar('\n');
        fflush(stdout);
        if (st && st != DEEPC_ERR_CONTEXT_FULL) { rc = cli_fail("chat", "%s", deepc_last_error(s)); goto done; }
        last = gs;
        tot_prompt += gs.n_prompt; tot_gen += gs.n_gen;
        tot_prompt_s += gs.prompt_s; tot_gen_s += gs.gen_s;
        /* the cache now holds ids followed by the evaluated part of the answer */
        memcpy(cached, ids, need * sizeof *ids);
        n_cached = (int)need;
        for (int i = 0; i < ans.n_gen && n_cached < deepc_session_pos(s); i++) cached[n_cached++] = ans.gen[i];
        n_cached = deepc_session_pos(s) < n_cached ? deepc_session_pos(s) : n_cached;
        /* the answer text as it was generated; the template decides what of it to keep */
        if (convo_add(&c, "assistant", ans.text ? ans.text : "", ans.len)) { rc = cli_fail("chat", "out of memory"); goto done; }
        const char *why = interrupted ? " [stopped]" : (st == DEEPC_ERR_CONTEXT_FULL || gs.hit_ctx) ? " [context full: /reset to continue]" : "";
        fprintf(stderr, "%s[prompt %d tok, %.1f tok/s | answer %d tok, %.1f tok/s | context %d/%d]%s%s\n",
                tty_out ? "\033[2m" : "", gs.n_prompt, gs.prompt_s > 0 ? gs.n_prompt / gs.prompt_s : 0.0,
                gs.n_gen, gs.gen_s > 0 ? gs.n_gen / gs.gen_s : 0.0, deepc_session_pos(s), n_ctx, why, tty_out ? "\033[0m" : "");
    }
done:
    convo_clear(&c);
    free(c.v);
    free(system);
    free(line);
    free(ids);
    free(cached);
    free(ans.text);
    free(ans.gen);
    deepc_session_destroy(s);
    deepc_model_close(m);
    return rc;
}
