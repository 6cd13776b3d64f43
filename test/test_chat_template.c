/* test_chat_template.c - the C chat templates against the official Jinja.
 *
 * The ground truth is test/data/templates/expected.jsonl: conversations
 * rendered by the official templates through Hugging Face transformers'
 * apply_chat_template. Every line must match byte for byte. The remaining
 * tests pin one behaviour each (template quirks, detection, names, buffer
 * handling); their expected strings were derived by hand by following the
 * Jinja sources in test/data/templates line by line (and cross-checked by
 * rendering the same sources with jinja2 configured as transformers does:
 * sandboxed, trim_blocks, lstrip_blocks).
 *
 * deepseek-v2.jinja is not in the shared fixtures: it is the chat_template
 * of DeepSeek-V2-Chat / DeepSeek-V2-Lite-Chat (tokenizer_config.json),
 * JSON-decoded. The copy was taken from the verbatim quote in
 * ShishirPatil/gorilla, berkeley-function-call-leaderboard/bfcl/model_handler/
 * oss_model/deepseekv2.py ("DeepSeek-V2-Chat, DeepSeek-V2, DeepSeek-V2-Lite,
 * DeepSeek-v2-Lite-Chat"), and agrees with the prompt format in the
 * deepseek-ai/DeepSeek-V2 README. See test/data/templates/SOURCES.md. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "json.h"
#include "util.h"

#define TDIR "test/data/templates/"
#define BOS_DS "<｜begin▁of▁sentence｜>"
#define BOS_LLAMA "<|begin_of_text|>"

/* ---- helpers ------------------------------------------------------------ */

/* Renders twice (sizing call with cap 0, then into an exact buffer) and
 * checks both calls agree. The returned string is owned by the caller. */
static char *render(deepc_tmpl_kind k, const char *bos, const deepc_chat_msg *m, size_t n,
                    bool gen) {
    size_t need = deepc_tmpl_render(k, bos, m, n, gen, NULL, 0);
    assert_true(need != (size_t)-1);
    char *buf = malloc(need + 1);
    assert_non_null(buf);
    assert_int_equal(deepc_tmpl_render(k, bos, m, n, gen, buf, need + 1), need);
    assert_int_equal(strlen(buf), need);
    return buf;
}

static void expect_render(deepc_tmpl_kind k, const char *bos, const deepc_chat_msg *m, size_t n,
                          bool gen, const char *want) {
    char *got = render(k, bos, m, n, gen);
    assert_string_equal(got, want);
    free(got);
}

static char *slurp(const char *path, size_t *len) {
    char *buf = NULL;
    size_t n = 0;
    deepc_err err;
    if (deepc_read_file(path, 1 << 20, &buf, &n, &err) != 0) fail_msg("%s: %s", path, err.msg);
    if (len) *len = n;
    return buf;
}

/* The fixture names its templates after the checkpoints' files. */
static deepc_tmpl_kind kind_of_fixture_name(const char *name) {
    if (strcmp(name, "deepseek-r1") == 0) return DEEPC_TMPL_DEEPSEEK_R1;
    if (strcmp(name, "deepseek-v3") == 0) return DEEPC_TMPL_DEEPSEEK_V3;
    if (strcmp(name, "deepseek-v2") == 0) return DEEPC_TMPL_DEEPSEEK_V2;
    if (strcmp(name, "qwen3") == 0) return DEEPC_TMPL_CHATML;
    if (strcmp(name, "llama-3.1") == 0) return DEEPC_TMPL_LLAMA3;
    return DEEPC_TMPL_NONE;
}

/* The BOS text each family's tokenizer has (Qwen's template never uses it). */
static const char *bos_of(deepc_tmpl_kind k) {
    switch (k) {
    case DEEPC_TMPL_LLAMA3: return BOS_LLAMA;
    case DEEPC_TMPL_CHATML: return NULL;
    default: return BOS_DS;
    }
}

/* ---- the transformers-rendered fixture ---------------------------------- */

/* Renders one JSONL line; returns true when it matches "rendered". */
static bool fixture_line_matches(const char *line, size_t len, size_t lineno) {
    deepc_err err;
    deepc_json_doc *doc = deepc_json_parse(line, len, &err);
    if (!doc) fail_msg("expected.jsonl:%zu: %s", lineno, err.msg);
    const deepc_json *root = deepc_json_root(doc);
    const char *tname = deepc_json_str(deepc_json_get(root, "template"), NULL);
    const char *id = deepc_json_str(deepc_json_get(root, "id"), NULL);
    const char *want = deepc_json_str(deepc_json_get(root, "rendered"), NULL);
    const deepc_json *jm = deepc_json_get(root, "messages");
    bool gen = deepc_json_bool(deepc_json_get(root, "add_generation_prompt"), false);
    assert_non_null(tname);
    assert_non_null(want);
    deepc_tmpl_kind k = kind_of_fixture_name(tname);
    if (k == DEEPC_TMPL_NONE) fail_msg("expected.jsonl:%zu: unknown template %s", lineno, tname);

    size_t n = deepc_json_len(jm);
    deepc_chat_msg *msgs = calloc(n ? n : 1, sizeof *msgs);
    assert_non_null(msgs);
    for (size_t i = 0; i < n; i++) {
        const deepc_json *m = deepc_json_at(jm, i);
        msgs[i].role = deepc_json_str(deepc_json_get(m, "role"), NULL);
        msgs[i].content = deepc_json_str(deepc_json_get(m, "content"), NULL);
    }
    char *got = render(k, bos_of(k), msgs, n, gen);
    bool ok = strcmp(got, want) == 0;
    if (!ok)
        fprintf(stderr, "expected.jsonl:%zu (%s/%s) differs:\n  want: %s\n  got:  %s\n", lineno,
                tname, id ? id : "?", want, got);
    free(got);
    free(msgs);
    deepc_json_free(doc);
    return ok;
}

static void test_every_fixture_line_renders_byte_identically(void **state) {
    (void)state;
    size_t len;
    char *text = slurp(TDIR "expected.jsonl", &len);
    size_t lines = 0, matched = 0;
    for (size_t at = 0; at < len;) {
        const char *nl = memchr(text + at, '\n', len - at);
        size_t end = nl ? (size_t)(nl - text) : len;
        if (end > at) {
            lines++;
            if (fixture_line_matches(text + at, end - at, lines)) matched++;
        }
        at = end + 1;
    }
    free(text);
    printf("expected.jsonl: %zu of %zu lines match\n", matched, lines);
    assert_true(lines >= 20);  /* the fixture has 20 lines; fewer means it was damaged */
    assert_int_equal(matched, lines);
}

/* ---- detection ------------------------------------------------------------ */

static void expect_detect_file(const char *file, deepc_tmpl_kind want) {
    char path[256];
    snprintf(path, sizeof path, TDIR "%s", file);
    char *src = slurp(path, NULL);
    assert_int_equal(deepc_tmpl_detect(src), want);
    free(src);
}

static void test_detect_identifies_each_official_template(void **state) {
    (void)state;
    expect_detect_file("deepseek-r1.jinja", DEEPC_TMPL_DEEPSEEK_R1);
    expect_detect_file("deepseek-v3.jinja", DEEPC_TMPL_DEEPSEEK_V3);
    expect_detect_file("deepseek-v2.jinja", DEEPC_TMPL_DEEPSEEK_V2);
    expect_detect_file("qwen3.jinja", DEEPC_TMPL_CHATML);
    expect_detect_file("llama-3.1.jinja", DEEPC_TMPL_LLAMA3);
}

/* Revisions differ in detail; detection keys on the family's markers only. */
static void test_detect_tolerates_revisions(void **state) {
    (void)state;
    /* an R1 revision that only strips '</think>' from history is still R1 */
    assert_int_equal(deepc_tmpl_detect("{{'<｜Assistant｜>' + content.split('</think>')[-1]}}"),
                     DEEPC_TMPL_DEEPSEEK_R1);
    assert_int_equal(deepc_tmpl_detect("{{bos_token}}{{'<｜User｜>' + c}}{{'<｜Assistant｜>'}}"),
                     DEEPC_TMPL_DEEPSEEK_V3);
    assert_int_equal(deepc_tmpl_detect("{{ 'User: ' + c }}\n{{ 'Assistant:' }}"),
                     DEEPC_TMPL_DEEPSEEK_V2);
    /* Qwen2.5's template: a default system prompt, no <think> handling */
    assert_int_equal(deepc_tmpl_detect("{{- '<|im_start|>system\\nYou are Qwen.<|im_end|>\\n' }}"),
                     DEEPC_TMPL_CHATML);
    /* Llama 3.1's long template with its date block */
    assert_int_equal(deepc_tmpl_detect("{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}"
                                       "{{- \"Cutting Knowledge Date: December 2023\\n\" }}"),
                     DEEPC_TMPL_LLAMA3);
}

static void test_detect_returns_none_for_unknown_sources(void **state) {
    (void)state;
    assert_int_equal(deepc_tmpl_detect(NULL), DEEPC_TMPL_NONE);
    assert_int_equal(deepc_tmpl_detect(""), DEEPC_TMPL_NONE);
    assert_int_equal(deepc_tmpl_detect("[INST] {{ m }} [/INST]"), DEEPC_TMPL_NONE);
    /* ASCII bars are not DeepSeek's fullwidth ones */
    assert_int_equal(deepc_tmpl_detect("<|Assistant|><think>"), DEEPC_TMPL_NONE);
}

/* ---- names ---------------------------------------------------------------- */

static void test_names_round_trip(void **state) {
    (void)state;
    static const char *const names[] = {"deepseek-r1", "deepseek-v3", "deepseek-v2", "chatml",
                                        "llama3"};
    static const deepc_tmpl_kind kinds[] = {DEEPC_TMPL_DEEPSEEK_R1, DEEPC_TMPL_DEEPSEEK_V3,
                                            DEEPC_TMPL_DEEPSEEK_V2, DEEPC_TMPL_CHATML,
                                            DEEPC_TMPL_LLAMA3};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(deepc_tmpl_from_name(names[i]), kinds[i]);
        assert_string_equal(deepc_tmpl_name(kinds[i]), names[i]);
    }
}

static void test_unknown_names_map_to_none(void **state) {
    (void)state;
    assert_int_equal(deepc_tmpl_from_name(NULL), DEEPC_TMPL_NONE);
    assert_int_equal(deepc_tmpl_from_name(""), DEEPC_TMPL_NONE);
    assert_int_equal(deepc_tmpl_from_name("qwen3"), DEEPC_TMPL_NONE);
    assert_int_equal(deepc_tmpl_from_name("none"), DEEPC_TMPL_NONE);
    assert_string_equal(deepc_tmpl_name(DEEPC_TMPL_NONE), "none");
    assert_string_equal(deepc_tmpl_name(DEEPC_TMPL_COUNT), "none");
}

/* ---- DeepSeek V2 (expected strings derived by hand from deepseek-v2.jinja) */

static void test_v2_single_user_with_generation_prompt(void **state) {
    (void)state;
    deepc_chat_msg m[] = {{"user", "What is 2+2?"}};
    /* bos + 'User: ' + c + '\n\n', then 'Assistant:' with no trailing space */
    expect_render(DEEPC_TMPL_DEEPSEEK_V2, BOS_DS, m, 1, true,
                  BOS_DS "User: What is 2+2?\n\nAssistant:");
}

static void test_v2_system_and_history(void **state) {
    (void)state;
    deepc_chat_msg m[] = {{"system", "Be brief."},
                          {"user", "Hi!"},
                          {"assistant", "Hello!"},
                          {"user", "Tell me a joke."}};
    /* system: c + '\n\n'; assistant: 'Assistant: ' + c + eos_token */
    expect_render(DEEPC_TMPL_DEEPSEEK_V2, BOS_DS, m, 4, true,
                  BOS_DS "Be brief.\n\nUser: Hi!\n\nAssistant: Hello!<｜end▁of▁sentence｜>"
                         "User: Tell me a joke.\n\nAssistant:");
}

static void test_v2_without_generation_prompt_ends_with_eos(void **state) {
    (void)state;
    deepc_chat_msg m[] = {{"user", "Ping"}, {"assistant", "Pong"}};
    expect_render(DEEPC_TMPL_DEEPSEEK_V2, BOS_DS, m, 2, false,
                  BOS_DS "User: Ping\n\nAssistant: Pong<｜end▁of▁sentence｜>");
}

static void test_v2_prints_system_in_place_and_ignores_tool(void **state) {
    (void)state;
    /* the V2 loop has no hoisting: a late system message prints where it is,
     * and a role outside user/assistant/system prints nothing */
    deepc_chat_msg m[] = {{"user", "A"}, {"system", "S"}, {"tool", "T"}};
    expect_render(DEEPC_TMPL_DEEPSEEK_V2, BOS_DS, m, 3, true,
                  BOS_DS "User: A\n\nS\n\nAssistant:");
}

/* ---- DeepSeek R1 / V3 quirks ---------------------------------------------- */

static void test_r1_keeps_only_the_last_system_prompt(void **state) {
    (void)state;
    /* R1 assigns ns.system_prompt = content for each system message */
    deepc_chat_msg m[] = {{"system", "First."}, {"user", "Hi"}, {"system", "Second."}};
    expect_render(DEEPC_TMPL_DEEPSEEK_R1, BOS_DS, m, 3, true,
                  BOS_DS "Second.<｜User｜>Hi<｜Assistant｜><think>\n");
}

static void test_v3_joins_system_prompts_with_blank_line(void **state) {
    (void)state;
    deepc_chat_msg m[] = {{"system", "First."}, {"user", "Hi"}, {"system", "Second."}};
    expect_render(DEEPC_TMPL_DEEPSEEK_V3, BOS_DS, m, 3, true,
                  BOS_DS "First.\n\nSecond.<｜User｜>Hi<｜Assistant｜>");
}

static void test_r1_history_keeps_text_after_the_last_think_close(void **state) {
    (void)state;
    /* content.split('</think>')[-1]: newlines after it are kept */
    deepc_chat_msg m[] = {{"user", "Q"}, {"assistant", "<think>a</think>b</think>\nAnswer"}};
    expect_render(DEEPC_TMPL_DEEPSEEK_R1, BOS_DS, m, 2, false,
                  BOS_DS "<｜User｜>Q<｜Assistant｜>\nAnswer<｜end▁of▁sentence｜>");
}

static void test_r1_tool_outputs_suppress_the_generation_prompt(void **state) {
    (void)state;
    /* an assistant with no content takes the tool-call branch (no calls: no
     * output); trailing tool messages close the outputs block and, as
     * ns.is_tool is still set, no generation prompt follows */
    deepc_chat_msg m[] = {{"user", "Q"}, {"assistant", NULL}, {"tool", "42"}, {"tool", "43"}};
    expect_render(DEEPC_TMPL_DEEPSEEK_R1, BOS_DS, m, 4, true,
                  BOS_DS "<｜User｜>Q<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>42"
                         "<｜tool▁output▁end｜>\n<｜tool▁output▁begin｜>43<｜tool▁output▁end｜>"
                         "<｜tool▁outputs▁end｜>");
}

static void test_r1_assistant_after_tool_closes_outputs(void **state) {
    (void)state;
    deepc_chat_msg m[] = {{"user", "Q"}, {"tool", "42"}, {"assistant", "It is 42."}};
    expect_render(DEEPC_TMPL_DEEPSEEK_R1, BOS_DS, m, 3, true,
                  BOS_DS "<｜User｜>Q<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>42"
                         "<｜tool▁output▁end｜><｜tool▁outputs▁end｜>It is 42.<｜end▁of▁sentence｜>"
                         "<｜Assistant｜><think>\n");
}

/* ---- ChatML (Qwen3) quirks -------------------------------------------------- */

static void test_chatml_strips_reasoning_before_the_last_query(void **state) {
    (void)state;
    /* turns up to the last user message lose their <think> block; the ones
     * after it keep the reasoning, re-wrapped as '<think>\n' r '\n</think>\n\n' */
    deepc_chat_msg m[] = {{"user", "Q1"},
                          {"assistant", "<think>\nr1\n</think>\n\nA1"},
                          {"user", "Q2"},
                          {"assistant", "<think>\nr2\n</think>\n\nA2"}};
    expect_render(DEEPC_TMPL_CHATML, NULL, m, 4, false,
                  "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
                  "<|im_start|>user\nQ2<|im_end|>\n"
                  "<|im_start|>assistant\n<think>\nr2\n</think>\n\nA2<|im_end|>\n");
}

static void test_chatml_groups_consecutive_tool_responses(void **state) {
    (void)state;
    deepc_chat_msg m[] = {{"user", "Q"},
                          {"assistant", "<think>plan</think>call"},
                          {"tool", "r1"},
                          {"tool", "r2"},
                          {"assistant", "done"}};
    expect_render(DEEPC_TMPL_CHATML, NULL, m, 5, true,
                  "<|im_start|>user\nQ<|im_end|>\n"
                  "<|im_start|>assistant\n<think>\nplan\n</think>\n\ncall<|im_end|>\n"
                  "<|im_start|>user\n<tool_response>\nr1\n</tool_response>\n"
                  "<tool_response>\nr2\n</tool_response><|im_end|>\n"
                  "<|im_start|>assistant\n<think>\n\n</think>\n\ndone<|im_end|>\n"
                  "<|im_start|>assistant\n");
}

static void test_chatml_prints_a_later_system_message_in_place(void **state) {
    (void)state;
    deepc_chat_msg m[] = {{"user", "Q"}, {"system", "S"}};
    expect_render(DEEPC_TMPL_CHATML, NULL, m, 2, true,
                  "<|im_start|>user\nQ<|im_end|>\n<|im_start|>system\nS<|im_end|>\n"
                  "<|im_start|>assistant\n");
}

/* ---- Llama 3 quirks --------------------------------------------------------- */

static void test_llama3_trims_unicode_whitespace(void **state) {
    (void)state;
    /* `| trim` is Python's str.strip(): U+3000 and U+00A0 count as space */
    deepc_chat_msg m[] = {{"system", "\xe3\x80\x80 sys \n"}, {"user", "\t hi\xc2\xa0"}};
    expect_render(DEEPC_TMPL_LLAMA3, BOS_LLAMA, m, 2, true,
                  BOS_LLAMA "<|start_header_id|>system<|end_header_id|>\n\nsys<|eot_id|>"
                            "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
                            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void test_llama3_keeps_zero_width_space(void **state) {
    (void)state;
    /* U+200B is not whitespace to Python, so trim leaves it */
    deepc_chat_msg m[] = {{"user", "\xe2\x80\x8bhi "}};
    expect_render(DEEPC_TMPL_LLAMA3, BOS_LLAMA, m, 1, false,
                  BOS_LLAMA "<|start_header_id|>user<|end_header_id|>\n\n\xe2\x80\x8bhi<|eot_id|>");
}

/* ---- buffer handling and errors -------------------------------------------- */

static void test_truncated_output_is_a_nul_terminated_prefix(void **state) {
    (void)state;
    deepc_chat_msg m[] = {{"user", "Ping"}, {"assistant", "Pong"}};
    char *full = render(DEEPC_TMPL_DEEPSEEK_V3, BOS_DS, m, 2, true);
    size_t need = strlen(full);
    for (size_t cap = 1; cap <= need + 1; cap++) {
        char buf[256];
        memset(buf, 'X', sizeof buf);
        assert_true(need + 2 <= sizeof buf);
        /* every cap reports the full length, so a caller can size a retry */
        assert_int_equal(deepc_tmpl_render(DEEPC_TMPL_DEEPSEEK_V3, BOS_DS, m, 2, true, buf, cap),
                         need);
        assert_int_equal(strlen(buf), cap - 1);
        assert_memory_equal(buf, full, cap - 1);
        assert_int_equal(buf[cap], 'X');  /* nothing written past cap */
    }
    free(full);
}

static void test_zero_cap_writes_nothing(void **state) {
    (void)state;
    deepc_chat_msg m[] = {{"user", "Hi"}};
    char buf[4] = "abc";
    size_t need = deepc_tmpl_render(DEEPC_TMPL_CHATML, NULL, m, 1, true, buf, 0);
    assert_int_equal(need, strlen("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
    assert_string_equal(buf, "abc");
}

static void test_invalid_role_is_an_error(void **state) {
    (void)state;
    char buf[64] = "junk";
    deepc_chat_msg bad[] = {{"user", "Hi"}, {"narrator", "Once upon a time"}};
    assert_int_equal(deepc_tmpl_render(DEEPC_TMPL_DEEPSEEK_R1, BOS_DS, bad, 2, true, buf, sizeof buf),
                     (size_t)-1);
    assert_string_equal(buf, "");  /* the buffer is still a valid (empty) string */
    deepc_chat_msg null_role[] = {{NULL, "Hi"}};
    for (int k = DEEPC_TMPL_DEEPSEEK_R1; k < DEEPC_TMPL_COUNT; k++)
        assert_int_equal(deepc_tmpl_render((deepc_tmpl_kind)k, BOS_DS, null_role, 1, true, NULL, 0),
                         (size_t)-1);
    /* "ipython" is a role only Llama 3.1 knows */
    deepc_chat_msg ipy[] = {{"ipython", "42"}};
    assert_int_equal(deepc_tmpl_render(DEEPC_TMPL_CHATML, NULL, ipy, 1, true, NULL, 0), (size_t)-1);
    expect_render(DEEPC_TMPL_LLAMA3, BOS_LLAMA, ipy, 1, false,
                  BOS_LLAMA "<|start_header_id|>ipython<|end_header_id|>\n\n42<|eot_id|>");
}

static void test_unknown_kind_is_an_error(void **state) {
    (void)state;
    deepc_chat_msg m[] = {{"user", "Hi"}};
    assert_int_equal(deepc_tmpl_render(DEEPC_TMPL_NONE, NULL, m, 1, true, NULL, 0), (size_t)-1);
    assert_int_equal(deepc_tmpl_render(DEEPC_TMPL_COUNT, NULL, m, 1, true, NULL, 0), (size_t)-1);
}

static void test_null_contents_render_as_empty(void **state) {
    (void)state;
    /* the Jinja would raise (or print "None"); we render "" and never crash */
    deepc_chat_msg m[] = {{"system", NULL}, {"user", NULL}, {"assistant", NULL}};
    expect_render(DEEPC_TMPL_DEEPSEEK_V2, NULL, m, 3, false, "\n\nUser: \n\nAssistant: <｜end▁of▁sentence｜>");
    expect_render(DEEPC_TMPL_CHATML, NULL, m, 3, false,
                  "<|im_start|>system\n<|im_end|>\n<|im_start|>user\n<|im_end|>\n"
                  "<|im_start|>assistant\n<think>\n\n</think>\n\n<|im_end|>\n");
    expect_render(DEEPC_TMPL_DEEPSEEK_R1, BOS_DS, m, 3, false, BOS_DS "<｜User｜>");
}

static void test_empty_conversation_renders_only_the_frame(void **state) {
    (void)state;
    expect_render(DEEPC_TMPL_DEEPSEEK_R1, BOS_DS, NULL, 0, true, BOS_DS "<｜Assistant｜><think>\n");
    expect_render(DEEPC_TMPL_LLAMA3, BOS_LLAMA, NULL, 0, true,
                  "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_fixture_line_renders_byte_identically),
        cmocka_unit_test(test_detect_identifies_each_official_template),
        cmocka_unit_test(test_detect_tolerates_revisions),
        cmocka_unit_test(test_detect_returns_none_for_unknown_sources),
        cmocka_unit_test(test_names_round_trip),
        cmocka_unit_test(test_unknown_names_map_to_none),
        cmocka_unit_test(test_v2_single_user_with_generation_prompt),
        cmocka_unit_test(test_v2_system_and_history),
        cmocka_unit_test(test_v2_without_generation_prompt_ends_with_eos),
        cmocka_unit_test(test_v2_prints_system_in_place_and_ignores_tool),
        cmocka_unit_test(test_r1_keeps_only_the_last_system_prompt),
        cmocka_unit_test(test_v3_joins_system_prompts_with_blank_line),
        cmocka_unit_test(test_r1_history_keeps_text_after_the_last_think_close),
        cmocka_unit_test(test_r1_tool_outputs_suppress_the_generation_prompt),
        cmocka_unit_test(test_r1_assistant_after_tool_closes_outputs),
        cmocka_unit_test(test_chatml_strips_reasoning_before_the_last_query),
        cmocka_unit_test(test_chatml_groups_consecutive_tool_responses),
        cmocka_unit_test(test_chatml_prints_a_later_system_message_in_place),
        cmocka_unit_test(test_llama3_trims_unicode_whitespace),
        cmocka_unit_test(test_llama3_keeps_zero_width_space),
        cmocka_unit_test(test_truncated_output_is_a_nul_terminated_prefix),
        cmocka_unit_test(test_zero_cap_writes_nothing),
        cmocka_unit_test(test_invalid_role_is_an_error),
        cmocka_unit_test(test_unknown_kind_is_an_error),
        cmocka_unit_test(test_null_contents_render_as_empty),
        cmocka_unit_test(test_empty_conversation_renders_only_the_frame),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
