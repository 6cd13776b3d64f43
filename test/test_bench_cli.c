/* test_bench_cli.c - `deepc bench` and `deepc perplexity` as a user meets
 * them, on a tiny Qwen2-shaped model: bench -o jsonl prints one object per
 * test with the llama-bench field names; perplexity --save-logits / --kl-base
 * of a model against itself gives a KL divergence of exactly 0 and 100% top-1
 * agreement; a base file made from other tokens, another --ctx, another
 * vocabulary or no logits file at all is refused with a message that says so.
 * Speed is never checked. Runs the binary in $BUILD (default build/). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "deepc.h"
#include "hfgen.h"

static char root[256], model[320], deepc_bin[256];
static char ids_a[320], ids_b[320], text[320], ref[320];
static char out[1 << 16], err[1 << 16];

/* 96 ids: 6 chunks of 16 (7 scored positions each = 42 predictions). */
static void write_ids(const char *path, int mul) {
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 96; i++) fprintf(f, "%d%s", (i * mul + 11) % 500, i % 10 == 9 ? "\n" : i % 2 ? ", " : " ");
    fclose(f);
}

static int setup(void **state) {
    (void)state;
    const char *b = getenv("BUILD");
    snprintf(deepc_bin, sizeof deepc_bin, "%s/deepc", b ? b : "build");
    if (access(deepc_bin, X_OK) != 0) return -1;
    const char *t = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/deepc-bench-cli-XXXXXX", t ? t : "/tmp");
    if (!mkdtemp(root)) return -1;
    char hf[300];
    snprintf(hf, sizeof hf, "%s/hf", root);
    hfgen_spec spec;
    deepc_err e;
    if (hfgen_preset("tiny-qwen2", &spec) || hfgen_write(hf, &spec, &e)) return -1;
    snprintf(model, sizeof model, "%s/tiny.dqf", root);
    deepc_convert_params p = deepc_convert_default_params();
    if (deepc_convert(hf, model, &p) != DEEPC_OK) return -1;
    snprintf(ids_a, sizeof ids_a, "%s/a.ids", root);
    snprintf(ids_b, sizeof ids_b, "%s/b.ids", root);
    snprintf(text, sizeof text, "%s/text.txt", root);
    snprintf(ref, sizeof ref, "%s/ref.bin", root);
    write_ids(ids_a, 37);
    write_ids(ids_b, 41);
    FILE *f = fopen(text, "w");
    for (int i = 0; i < 20; i++) fputs("The quick brown fox jumps over the lazy dog. ", f);
    fclose(f);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

static void slurp(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = 0;
}

/* Runs "deepc ARGS" with stdout into `out` and stderr into `err`; returns the
 * exit status. */
static int run(const char *fmt, ...) {
    char args[2048], cmd[4096], op[300], ep[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(op, sizeof op, "%s/out", root);
    snprintf(ep, sizeof ep, "%s/err", root);
    snprintf(cmd, sizeof cmd, "%s %s < /dev/null > '%s' 2> '%s'", deepc_bin, args, op, ep);
    int st = system(cmd);
    slurp(op, out, sizeof out);
    slurp(ep, err, sizeof err);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void expect(int got_rc, int want_rc, const char *needle) {
    if (got_rc != want_rc) fail_msg("exit status %d, expected %d; stdout:\n%s\nstderr:\n%s", got_rc, want_rc, out, err);
    if (needle && !strstr(out, needle) && !strstr(err, needle))
        fail_msg("output does not mention '%s'; stdout:\n%s\nstderr:\n%s", needle, out, err);
}

/* ---- bench ---------------------------------------------------------------- */

static void test_bench_jsonl_has_one_object_per_test_with_llama_bench_fields(void **state) {
    (void)state;
    expect(run("bench -m '%s' -p 8 -n 4 -r 1 -t 1 -o jsonl", model), 0, NULL);
    static const char *const fields[] = {
        "\"test\": ", "\"n_prompt\": ", "\"n_gen\": ", "\"n_threads\": 1,", "\"avg_ts\": ", "\"stddev_ts\": ",
        "\"gb_per_s\": ", "\"peak_rss\": ", "\"model\": ", "\"model_size\": ", "\"isa\": \"",
    };
    char *pp = strstr(out, "{\"test\": \"pp8\""), *tg = strstr(out, "{\"test\": \"tg4\"");
    if (!pp || !tg) fail_msg("no pp8 / tg4 objects in:\n%s", out);
    int lines = 0;
    for (char *line = out; *line; lines++) {
        char *nl = strchr(line, '\n');
        if (!nl) fail_msg("unterminated line in:\n%s", out);
        *nl = 0;
        if (line[0] != '{' || nl[-1] != '}') fail_msg("not a JSON object line: %s", line);
        for (size_t k = 0; k < sizeof fields / sizeof *fields; k++)
            if (!strstr(line, fields[k])) fail_msg("line lacks %s: %s", fields[k], line);
        line = nl + 1;
    }
    assert_int_equal(lines, 2);
    /* pp: prompt tokens, no weight bandwidth; tg: generated tokens and GB/s */
    assert_non_null(strstr(pp, "\"n_prompt\": 8, \"n_gen\": 0"));
    assert_non_null(strstr(pp, "\"gb_per_s\": null"));
    assert_non_null(strstr(tg, "\"n_prompt\": 0, \"n_gen\": 4"));
    assert_null(strstr(tg, "\"gb_per_s\": null"));
    /* the batch the session used: the default 64, cut to the 12-token context */
    assert_non_null(strstr(pp, "\"n_batch\": 12"));
}

static void test_bench_table_names_tests_and_isa(void **state) {
    (void)state;
    expect(run("bench -m '%s' -p 8 -n 4 -r 2 -t 1", model), 0, " pp8 |");
    assert_non_null(strstr(out, "tg4"));
    assert_non_null(strstr(out, "peak RSS"));
    assert_non_null(strstr(out, "types:   q8_0"));
}

static void test_bench_flag_errors_exit_2_and_bad_models_exit_1(void **state) {
    (void)state;
    expect(run("bench -p 8"), 2, "no model given");
    expect(run("bench -m '%s' -o xml", model), 2, "'table' or 'jsonl'");
    expect(run("bench -m '%s' -r 0", model), 2, "-r needs an integer");
    expect(run("bench -m '%s' -p x", model), 2, "-p needs an integer");
    expect(run("bench -m '%s' -t", model), 2, "-t needs an integer");
    expect(run("bench -m '%s' -p 0 -n 0", model), 2, "nothing to measure");
    expect(run("bench -m '%s' --frob", model), 2, "unknown option '--frob'");
    expect(run("bench -m /nonexistent.dqf -p 8 -n 4 -r 1"), 1, "cannot open");
    expect(run("bench -m '%s' -p 8 -n 4 -r 1", text), 1, "not a .dqf file");
    expect(run("bench -m '%s' -p 8 -n 4 -r 1 --isa nosuchisa", model), 1, "instruction set");
    expect(run("bench --help"), 0, "--membw");
}

/* ---- perplexity ------------------------------------------------------------ */

static void test_perplexity_of_model_against_itself_has_zero_kl(void **state) {
    (void)state;
    expect(run("perplexity -m '%s' --ids-file '%s' --ctx 16 -t 1 --save-logits '%s'", model, ids_a, ref), 0, "perplexity:  ");
    assert_non_null(strstr(out, "42 scored predictions"));
    struct stat st;
    assert_int_equal(stat(ref, &st), 0);
    /* header 32 + 96 ids x 4 + 42 positions x 512 vocab x 4 */
    assert_int_equal(st.st_size, 32 + 96 * 4 + 42 * 512 * 4);
    char ppl[64];
    const char *p = strstr(out, "perplexity:  ");
    snprintf(ppl, sizeof ppl, "%.*s", (int)strcspn(p, "\n"), p);

    /* Same model, same ids, same kernels: the logits are bit-identical, so
     * each log-probability difference is exactly 0 and so is every KL term. */
    expect(run("perplexity -m '%s' --ids-file '%s' --ctx 16 -t 1 --kl-base '%s'", model, ids_a, ref), 0, NULL);
    assert_non_null(strstr(out, "KL(base || this):     mean 0 +/- 0, 99th percentile 0, max 0 (nats)"));
    assert_non_null(strstr(out, "top-1 agreement:      100.000% (42 of 42 positions)"));
    assert_non_null(strstr(out, "ln(PPL/PPL base):     0\n"));
    assert_non_null(strstr(out, ppl));   /* the same perplexity as the saving run */
}

static void test_perplexity_refuses_a_base_from_other_tokens_ctx_or_vocab(void **state) {
    (void)state;
    expect(run("perplexity -m '%s' --ids-file '%s' --ctx 16 -t 1 --save-logits '%s'", model, ids_a, ref), 0, NULL);
    expect(run("perplexity -m '%s' --ids-file '%s' --ctx 16 -t 1 --kl-base '%s'", model, ids_b, ref), 1,
           "computed on different tokens (first difference at token 1");
    expect(run("perplexity -m '%s' --ids-file '%s' --ctx 32 -t 1 --kl-base '%s'", model, ids_a, ref), 1,
           "was written with --ctx 16, this run uses --ctx 32");
    expect(run("perplexity -m '%s' --ids-file '%s' --ctx 16 --chunks 2 -t 1 --kl-base '%s'", model, ids_a, ref), 1,
           "holds 96 tokens");

    /* the same file claiming another vocabulary */
    char bad[400];
    snprintf(bad, sizeof bad, "%s/vocab.bin", root);
    FILE *in = fopen(ref, "rb"), *o = fopen(bad, "wb");
    int c, i = 0;
    while ((c = fgetc(in)) != EOF) { fputc(i == 13 ? c + 1 : c, o); i++; }   /* n_vocab 512 -> 768 */
    fclose(in);
    fclose(o);
    expect(run("perplexity -m '%s' --ids-file '%s' --ctx 16 -t 1 --kl-base '%s'", model, ids_a, bad), 1,
           "vocabulary of 768, this model has 512");

    /* truncated: the header is fine but logits are missing */
    in = fopen(ref, "rb");
    o = fopen(bad, "wb");
    for (i = 0; i < 32 + 96 * 4 + 100 && (c = fgetc(in)) != EOF; i++) fputc(c, o);
    fclose(in);
    fclose(o);
    expect(run("perplexity -m '%s' --ids-file '%s' --ctx 16 -t 1 --kl-base '%s'", model, ids_a, bad), 1, "truncated");

    expect(run("perplexity -m '%s' --ids-file '%s' --ctx 16 -t 1 --kl-base '%s'", model, ids_a, ids_a), 1,
           "not a logits file written by 'deepc perplexity --save-logits'");
    expect(run("perplexity -m '%s' --ids-file '%s' --ctx 16 -t 1 --kl-base /nonexistent.bin", model, ids_a), 1, "cannot open");
}

static void test_perplexity_tokenizes_text(void **state) {
    (void)state;
    expect(run("perplexity -m '%s' -f '%s' --ctx 16 -t 1", model, text), 0, "perplexity:  ");
}

static void test_perplexity_flag_errors(void **state) {
    (void)state;
    expect(run("perplexity -f '%s'", text), 2, "no model given");
    expect(run("perplexity -m '%s'", model), 2, "exactly one of -f");
    expect(run("perplexity -m '%s' -f '%s' --ids-file '%s'", model, text, ids_a), 2, "exactly one of -f");
    expect(run("perplexity -m '%s' -f '%s' --ctx 2", model, text), 2, "--ctx needs an integer");
    expect(run("perplexity -m '%s' --ids-file '%s'", model, text), 2, "bad token id");
    expect(run("perplexity -m '%s' --ids-file '%s' --ctx 128", model, ids_a), 1, "fewer than one chunk");
    expect(run("perplexity -m '%s' -f /nonexistent.txt", model), 1, "cannot read");
    char big[400];
    snprintf(big, sizeof big, "%s/big.ids", root);
    FILE *f = fopen(big, "w");
    fputs("1 2 512", f);
    fclose(f);
    expect(run("perplexity -m '%s' --ids-file '%s'", model, big), 2, "outside the vocabulary");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bench_jsonl_has_one_object_per_test_with_llama_bench_fields),
        cmocka_unit_test(test_bench_table_names_tests_and_isa),
        cmocka_unit_test(test_bench_flag_errors_exit_2_and_bad_models_exit_1),
        cmocka_unit_test(test_perplexity_of_model_against_itself_has_zero_kl),
        cmocka_unit_test(test_perplexity_refuses_a_base_from_other_tokens_ctx_or_vocab),
        cmocka_unit_test(test_perplexity_tokenizes_text),
        cmocka_unit_test(test_perplexity_flag_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
