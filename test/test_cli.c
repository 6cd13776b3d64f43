/* test_cli.c - the deepc command-line tool as a user meets it: usage errors
 * exit 2 with a message, runtime failures exit 1, and the main commands
 * (convert, info, run, tokenize, detokenize, chat) work on a tiny model.
 * Runs the binary in $BUILD (default build/) from the repository root. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "deepc.h"
#include "hfgen.h"

static char root[256], model[320], deepc_bin[256];
static char out[1 << 16];

static int setup(void **state) {
    (void)state;
    const char *b = getenv("BUILD");
    snprintf(deepc_bin, sizeof deepc_bin, "%s/deepc", b ? b : "build");
    if (access(deepc_bin, X_OK) != 0) return -1;
    const char *t = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/deepc-cli-XXXXXX", t ? t : "/tmp");
    if (!mkdtemp(root)) return -1;
    char hf[300];
    snprintf(hf, sizeof hf, "%s/hf", root);
    hfgen_spec spec;
    deepc_err err;
    if (hfgen_preset("tiny-qwen2", &spec) || hfgen_write(hf, &spec, &err)) return -1;
    snprintf(model, sizeof model, "%s/tiny.dqf", root);
    deepc_convert_params p = deepc_convert_default_params();
    return deepc_convert(hf, model, &p) == DEEPC_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

/* Runs "deepc ARGS" through the shell (stdin from `input` if non-NULL),
 * captures stdout+stderr into `out` and returns the exit status. */
static int run(const char *input, const char *fmt, ...) {
    char args[2048], cmd[4096], inpath[300], outpath[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(inpath, sizeof inpath, "%s/stdin", root);
    snprintf(outpath, sizeof outpath, "%s/out", root);
    FILE *f = fopen(inpath, "wb");
    if (input) fputs(input, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s %s < '%s' > '%s' 2>&1", deepc_bin, args, inpath, outpath);
    int st = system(cmd);
    f = fopen(outpath, "rb");
    size_t n = fread(out, 1, sizeof out - 1, f);
    fclose(f);
    out[n] = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void expect(int got_rc, int want_rc, const char *needle) {
    if (got_rc != want_rc) fail_msg("exit status %d, expected %d; output:\n%s", got_rc, want_rc, out);
    if (needle && !strstr(out, needle)) fail_msg("output does not mention '%s':\n%s", needle, out);
}

static void test_no_arguments_prints_usage(void **state) {
    (void)state;
    expect(run(NULL, ""), 2, "usage: deepc <command>");
    expect(run(NULL, "frobnicate"), 2, "unknown command 'frobnicate'");
    expect(run(NULL, "--help"), 0, "commands:");
}

static void test_run_flag_errors_exit_2(void **state) {
    (void)state;
    expect(run(NULL, "run --ids 1,2"), 2, "no model given");
    expect(run(NULL, "run -m '%s' --ids 1,x", model), 2, "bad token id list");
    expect(run(NULL, "run -m '%s' --ids 1, ", model), 2, "ends with a comma");
    expect(run(NULL, "run -m '%s' --ids 1 --threads 0", model), 2, "--threads needs an integer");
    expect(run(NULL, "run -m '%s' --ids 1 --temp -1", model), 2, "--temp needs a number");
    expect(run(NULL, "run -m '%s' --ids 1 --top-p 1.5", model), 2, "--top-p");
    expect(run(NULL, "run -m '%s' --ids 1 -n", model), 2, "-n needs an integer");
    expect(run(NULL, "run -m '%s' --bogus", model), 2, "unknown option '--bogus'");
    expect(run(NULL, "run -m '%s' --ids 99999", model), 2, "outside the vocabulary");
    expect(run(NULL, "run -m '%s' --ids 1 -p hi", model), 2, "exactly one of --ids or -p");
}

static void test_missing_or_corrupt_model_exits_1(void **state) {
    (void)state;
    expect(run(NULL, "run -m /nonexistent.dqf --ids 1"), 1, "cannot open");
    char bad[400];
    snprintf(bad, sizeof bad, "%s/bad.dqf", root);
    FILE *f = fopen(bad, "wb");
    for (int i = 0; i < 1000; i++) fputc('x', f);
    fclose(f);
    expect(run(NULL, "info '%s'", bad), 1, "not a .dqf file");
}

static void test_info_reports_memory_and_types(void **state) {
    (void)state;
    expect(run(NULL, "info '%s' --ctx 100", model), 0, "architecture:    qwen2");
    assert_non_null(strstr(out, "q8_0"));
    assert_non_null(strstr(out, "KV cache"));
    /* 2 layers x 2 kv heads x 16 dims x (K and V) x 2 bytes = 256 bytes per token */
    assert_non_null(strstr(out, "(256 bytes/token, fp16)"));
    expect(run(NULL, "verify '%s'", model), 0, ": ok");
}

static void test_run_prints_ids_and_speed(void **state) {
    (void)state;
    expect(run(NULL, "run -m '%s' --ids 1,2,3 -n 5 --temp 0", model), 0, "tok/s");
    /* five comma-separated ids on the first line */
    int commas = 0;
    for (char *p = out; *p && *p != '\n'; p++) commas += *p == ',';
    assert_int_equal(commas, 4);
}

static void test_dump_logits_matches_library(void **state) {
    (void)state;
    char path[400];
    snprintf(path, sizeof path, "%s/logits.bin", root);
    expect(run(NULL, "run -m '%s' --ids 5,6,7 -n 0 --dump-logits '%s'", model, path), 0, NULL);
    deepc_model *m;
    assert_int_equal(deepc_model_open(model, &m), DEEPC_OK);
    deepc_model_info mi = { .struct_size = sizeof mi };
    deepc_model_get_info(m, &mi);
    deepc_session *s;
    assert_int_equal(deepc_session_create(m, NULL, &s), DEEPC_OK);
    int32_t ids[3] = { 5, 6, 7 };
    size_t n = 3 * (size_t)mi.n_vocab;
    float *want = malloc(n * sizeof *want), *got = malloc(n * sizeof *got + 1);
    assert_int_equal(deepc_session_eval(s, ids, 3, want), DEEPC_OK);
    FILE *f = fopen(path, "rb");
    assert_int_equal(fread(got, sizeof(float), n + 1, f), n);   /* exactly [3 x vocab] */
    fclose(f);
    assert_memory_equal(got, want, n * sizeof(float));
    free(got); free(want);
    deepc_session_destroy(s);
    deepc_model_close(m);
}

static void test_tokenize_and_detokenize_round_trip(void **state) {
    (void)state;
    expect(run("Hello world", "tokenize -m '%s'", model), 0, "[");
    char ids[1024];
    size_t l = strlen(out);
    assert_true(l < sizeof ids);
    memcpy(ids, out, l + 1);
    expect(run(ids, "detokenize -m '%s'", model), 0, "Hello world");
    expect(run("{\"text\": \"a b\"}\n{\"text\": \"\"}\n", "tokenize -m '%s' --jsonl", model), 0, "{\"ids\": [");
    assert_non_null(strstr(out, "{\"ids\": []}"));                 /* empty text, second line */
    expect(run("{\"txt\": 1}\n", "tokenize -m '%s' --jsonl", model), 1, "line 1: no string field \"text\"");
    expect(run("\xff\xfe", "tokenize -m '%s'", model), 1, "not valid UTF-8");
}

static void test_tokenize_special_vs_plain(void **state) {
    (void)state;
    /* the R1 template's <｜User｜> is one token by default, several with --plain */
    expect(run("<\xef\xbd\x9cUser\xef\xbd\x9c>", "tokenize -m '%s'", model), 0, NULL);
    int commas_special = 0;
    for (char *p = out; *p; p++) commas_special += *p == ',';
    expect(run("<\xef\xbd\x9cUser\xef\xbd\x9c>", "tokenize -m '%s' --plain", model), 0, NULL);
    int commas_plain = 0;
    for (char *p = out; *p; p++) commas_plain += *p == ',';
    assert_int_equal(commas_special, 0);
    assert_true(commas_plain > 0);
}

/* A scripted multi-turn session with stdin not a terminal. */
static void test_scripted_chat_session(void **state) {
    (void)state;
    const char *script = "Hello there\n/stats\nTell me more\n/system Be brief.\n/reset\nAgain\n/bogus\n/quit\n";
    expect(run(script, "chat -m '%s' -n 6 --temp 0", model), 0, "> Hello there");
    assert_non_null(strstr(out, "> Tell me more"));
    assert_non_null(strstr(out, "[conversation reset]"));
    assert_non_null(strstr(out, "[system prompt set]"));
    assert_non_null(strstr(out, "[unknown command /bogus"));
    assert_non_null(strstr(out, "[last answer:"));
    /* the second turn reuses the cache: it evaluates fewer prompt tokens than
     * the context then holds */
    char *second = strstr(out, "> Tell me more");
    int n_prompt = 0, pos = 0, ctx = 0;
    char *stats = strstr(second, "[prompt ");
    assert_non_null(stats);
    assert_int_equal(sscanf(stats, "[prompt %d tok", &n_prompt), 1);
    char *c = strstr(stats, "context ");
    assert_int_equal(sscanf(c, "context %d/%d", &pos, &ctx), 2);
    assert_true(n_prompt > 0);
    assert_true(n_prompt < pos - 6);
}

static void test_chat_reports_full_context(void **state) {
    (void)state;
    expect(run("one two three four five six seven eight nine ten eleven twelve\n/quit\n", "chat -m '%s' -n 4 --ctx 16", model), 0,
           "the context is full");
}

/* --mmap and --mlock on every command that evaluates: documented in --help,
 * accepted, and where the weights live changes no output; bench says which. */
static void test_mmap_and_mlock_flags(void **state) {
    (void)state;
    static const char *cmds[] = { "run", "chat", "bench", "perplexity", "profile" };
    for (int i = 0; i < 5; i++) {
        expect(run(NULL, "%s --help", cmds[i]), 0, "--mmap");
        assert_non_null(strstr(out, "--mlock"));
    }
    char first[4096];
    expect(run(NULL, "run -m '%s' --ids 1,2,3 -n 8 --temp 0", model), 0, "tok/s");
    snprintf(first, sizeof first, "%.*s", (int)strcspn(out, "\n"), out);
    expect(run(NULL, "run -m '%s' --ids 1,2,3 -n 8 --temp 0 --mmap --mlock", model), 0, "tok/s");
    assert_int_equal(strncmp(out, first, strlen(first)), 0);
    assert_true(out[strlen(first)] == '\n');
    expect(run(NULL, "bench -m '%s' -p 4 -n 2 -r 1 -t 1 -o jsonl", model), 0, "\"use_mmap\": false");
    expect(run(NULL, "bench -m '%s' -p 4 -n 2 -r 1 -t 1 -o jsonl --mmap", model), 0, "\"use_mmap\": true");
    expect(run(NULL, "bench -m '%s' -p 4 -n 2 -r 1 -t 1", model), 0, "weights in owned memory");
    expect(run(NULL, "bench -m '%s' -p 4 -n 2 -r 1 -t 1 --mmap", model), 0, "weights used from the file mapping");
    char ids[400];
    snprintf(ids, sizeof ids, "%s/ids.txt", root);
    FILE *f = fopen(ids, "w");
    for (int i = 0; i < 40; i++) fprintf(f, "%d ", 1 + i % 30);
    fclose(f);
    expect(run(NULL, "perplexity -m '%s' --ids-file '%s' -c 16 --mmap", model, ids), 0, "perplexity");
    /* accepted (not a usage error): refused later because the model is dense */
    expect(run(NULL, "profile -m '%s' -p '%s' --mmap --mlock", model, ids), 1, "no routed experts");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_arguments_prints_usage),
        cmocka_unit_test(test_run_flag_errors_exit_2),
        cmocka_unit_test(test_missing_or_corrupt_model_exits_1),
        cmocka_unit_test(test_info_reports_memory_and_types),
        cmocka_unit_test(test_run_prints_ids_and_speed),
        cmocka_unit_test(test_dump_logits_matches_library),
        cmocka_unit_test(test_tokenize_and_detokenize_round_trip),
        cmocka_unit_test(test_tokenize_special_vs_plain),
        cmocka_unit_test(test_scripted_chat_session),
        cmocka_unit_test(test_chat_reports_full_context),
        cmocka_unit_test(test_mmap_and_mlock_flags),
    };
    return cmocka_run_group_tests_name("cli", tests, setup, teardown);
}
