/* test_json.c - the JSON parser as a specification: every kind of valid
 * document, string decoding (escapes, surrogates, raw UTF-8), exact integers,
 * correctly rounded and locale-independent floats, the nesting limit, and
 * malformed inputs that must each fail with a message naming the problem and
 * its byte offset, never crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/* ---- helpers ----------------------------------------------------------- */

static deepc_json_doc *parse_ok(const char *text) {
    deepc_err err = {{0}};
    deepc_json_doc *doc = deepc_json_parse(text, strlen(text), &err);
    if (!doc) fail_msg("unexpected parse failure for %s: %s", text, err.msg);
    return doc;
}

/* Parses len bytes that must be rejected; checks the message mentions want. */
static void rejects_n(const char *text, size_t len, const char *want) {
    deepc_err err = {{0}};
    deepc_json_doc *doc = deepc_json_parse(text, len, &err);
    if (doc) {
        deepc_json_free(doc);
        fail_msg("accepted malformed input %.*s", (int)len, text);
    }
    if (!strstr(err.msg, want)) fail_msg("message \"%s\" does not mention \"%s\"", err.msg, want);
    assert_non_null(strstr(err.msg, "JSON: "));
}

static void rejects(const char *text, const char *want) {
    rejects_n(text, strlen(text), want);
}

/* The root value must be a string equal to want (want_len bytes). */
static void decodes_to(const char *text, const char *want, size_t want_len) {
    deepc_json_doc *doc = parse_ok(text);
    size_t len = 99;
    const char *s = deepc_json_str(deepc_json_root(doc), &len);
    assert_non_null(s);
    assert_int_equal(len, want_len);
    assert_memory_equal(s, want, want_len);
    assert_int_equal(s[len], 0);
    deepc_json_free(doc);
}

static double root_num(const char *text) {
    deepc_json_doc *doc = parse_ok(text);
    double v = deepc_json_num(deepc_json_root(doc), NAN);
    deepc_json_free(doc);
    return v;
}

static bool root_int(const char *text, int64_t *out) {
    deepc_json_doc *doc = parse_ok(text);
    bool ok = deepc_json_int(deepc_json_root(doc), out);
    deepc_json_free(doc);
    return ok;
}

static uint64_t dbits(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

/* ---- valid documents --------------------------------------------------- */

static void test_scalars_of_every_type_parse_at_root(void **state) {
    (void)state;
    deepc_json_doc *doc = parse_ok("null");
    assert_int_equal(deepc_json_type_of(deepc_json_root(doc)), DEEPC_JSON_NULL);
    deepc_json_free(doc);
    doc = parse_ok(" true ");
    assert_int_equal(deepc_json_type_of(deepc_json_root(doc)), DEEPC_JSON_BOOL);
    assert_true(deepc_json_bool(deepc_json_root(doc), false));
    deepc_json_free(doc);
    doc = parse_ok("false");
    assert_false(deepc_json_bool(deepc_json_root(doc), true));
    deepc_json_free(doc);
    doc = parse_ok("-12.5e1");
    assert_int_equal(deepc_json_type_of(deepc_json_root(doc)), DEEPC_JSON_NUMBER);
    assert_true(deepc_json_num(deepc_json_root(doc), 0) == -125.0);
    deepc_json_free(doc);
    decodes_to("\"hi\"", "hi", 2);
}

static void test_nested_objects_and_arrays_are_navigable(void **state) {
    (void)state;
    deepc_json_doc *doc = parse_ok("{\"model\": {\"vocab\": {\"a\": 0, \"b\": 1},"
                                   " \"merges\": [\"a b\", [\"c\", \"d\"]]}, \"n\": [1, [2, [3]]]}");
    const deepc_json *root = deepc_json_root(doc);
    assert_int_equal(deepc_json_type_of(root), DEEPC_JSON_OBJECT);
    const deepc_json *vocab = deepc_json_get(deepc_json_get(root, "model"), "vocab");
    int64_t id = -1;
    assert_true(deepc_json_int(deepc_json_get(vocab, "b"), &id));
    assert_int_equal(id, 1);
    const deepc_json *merges = deepc_json_get(deepc_json_get(root, "model"), "merges");
    assert_int_equal(deepc_json_len(merges), 2);
    assert_string_equal(deepc_json_str(deepc_json_at(merges, 0), NULL), "a b");
    assert_string_equal(deepc_json_str(deepc_json_at(deepc_json_at(merges, 1), 1), NULL), "d");
    const deepc_json *deep = deepc_json_at(deepc_json_at(deepc_json_at(deepc_json_get(root, "n"), 1), 1), 0);
    assert_true(deepc_json_num(deep, 0) == 3.0);
    deepc_json_free(doc);
}

static void test_empty_containers_have_length_zero(void **state) {
    (void)state;
    deepc_json_doc *doc = parse_ok("{\"a\": [], \"o\": {}, \"s\": \"\"}");
    const deepc_json *root = deepc_json_root(doc);
    assert_int_equal(deepc_json_type_of(deepc_json_get(root, "a")), DEEPC_JSON_ARRAY);
    assert_int_equal(deepc_json_len(deepc_json_get(root, "a")), 0);
    assert_null(deepc_json_at(deepc_json_get(root, "a"), 0));
    assert_int_equal(deepc_json_type_of(deepc_json_get(root, "o")), DEEPC_JSON_OBJECT);
    assert_int_equal(deepc_json_len(deepc_json_get(root, "o")), 0);
    assert_null(deepc_json_get(deepc_json_get(root, "o"), "x"));
    size_t len = 7;
    assert_string_equal(deepc_json_str(deepc_json_get(root, "s"), &len), "");
    assert_int_equal(len, 0);
    deepc_json_free(doc);
}

static void test_object_keys_keep_file_order(void **state) {
    (void)state;
    deepc_json_doc *doc = parse_ok("{\"z\": 1, \"a\": 2, \"m\": 3}");
    const deepc_json *root = deepc_json_root(doc);
    const char *want[] = {"z", "a", "m"};
    assert_int_equal(deepc_json_len(root), 3);
    for (size_t i = 0; i < 3; i++) {
        size_t len = 0;
        assert_string_equal(deepc_json_key_at(root, i, &len), want[i]);
        assert_int_equal(len, 1);
        assert_true(deepc_json_num(deepc_json_val_at(root, i), 0) == (double)(i + 1));
    }
    assert_null(deepc_json_key_at(root, 3, NULL));
    deepc_json_free(doc);
}

static void test_duplicate_key_last_one_wins_in_small_object(void **state) {
    (void)state;
    deepc_json_doc *doc = parse_ok("{\"k\": 1, \"x\": 0, \"k\": 2}");
    assert_true(deepc_json_num(deepc_json_get(deepc_json_root(doc), "k"), 0) == 2.0);
    assert_int_equal(deepc_json_len(deepc_json_root(doc)), 3);  /* both kept for iteration */
    deepc_json_free(doc);
}

static void test_duplicate_key_last_one_wins_in_hashed_object(void **state) {
    (void)state;
    /* More members than the linear-scan threshold, so the hash index is used. */
    char text[1024] = "{\"k\": 1";
    for (int i = 0; i < 40; i++) snprintf(text + strlen(text), sizeof text - strlen(text), ", \"f%d\": %d", i, i);
    strcat(text, ", \"k\": 2}");
    deepc_json_doc *doc = parse_ok(text);
    assert_true(deepc_json_num(deepc_json_get(deepc_json_root(doc), "k"), 0) == 2.0);
    assert_true(deepc_json_num(deepc_json_get(deepc_json_root(doc), "f39"), 0) == 39.0);
    deepc_json_free(doc);
}

/* A vocab-like object and merges-like array of 150k entries: every key must
 * be found and map to its own value. */
static void test_large_object_finds_every_key(void **state) {
    (void)state;
    const int n = 150000;
    size_t cap = (size_t)n * 40 + 64, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    len += (size_t)snprintf(text + len, cap - len, "{\"vocab\": {");
    for (int i = 0; i < n; i++) len += (size_t)snprintf(text + len, cap - len, "%s\"tok%d\": %d", i ? ", " : "", i, i);
    len += (size_t)snprintf(text + len, cap - len, "}, \"merges\": [");
    for (int i = 0; i < n; i++) len += (size_t)snprintf(text + len, cap - len, "%s\"m %d\"", i ? "," : "", i);
    len += (size_t)snprintf(text + len, cap - len, "]}");
    deepc_err err;
    deepc_json_doc *doc = deepc_json_parse(text, len, &err);
    assert_non_null(doc);
    const deepc_json *vocab = deepc_json_get(deepc_json_root(doc), "vocab");
    assert_int_equal(deepc_json_len(vocab), n);
    char key[32];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "tok%d", i);
        int64_t id = -1;
        assert_true(deepc_json_int(deepc_json_get(vocab, key), &id));
        assert_int_equal(id, i);
    }
    assert_null(deepc_json_get(vocab, "tok150000"));
    const deepc_json *merges = deepc_json_get(deepc_json_root(doc), "merges");
    assert_int_equal(deepc_json_len(merges), n);
    assert_string_equal(deepc_json_str(deepc_json_at(merges, n - 1), NULL), "m 149999");
    deepc_json_free(doc);
    free(text);
}

static void test_input_need_not_be_nul_terminated(void **state) {
    (void)state;
    const char text[] = {'[', '1', ',', '2', ']', 'x'};  /* parse only the first 5 */
    deepc_json_doc *doc = deepc_json_parse(text, 5, NULL);
    assert_non_null(doc);
    assert_int_equal(deepc_json_len(deepc_json_root(doc)), 2);
    deepc_json_free(doc);
}

static void test_accessors_tolerate_null_and_wrong_types(void **state) {
    (void)state;
    deepc_json_free(NULL);
    assert_null(deepc_json_root(NULL));
    assert_int_equal(deepc_json_type_of(NULL), DEEPC_JSON_NULL);
    assert_null(deepc_json_get(NULL, "a"));
    assert_int_equal(deepc_json_len(NULL), 0);
    assert_null(deepc_json_at(NULL, 0));
    assert_null(deepc_json_str(NULL, NULL));
    assert_true(deepc_json_bool(NULL, true));
    assert_true(deepc_json_num(NULL, 7.0) == 7.0);
    int64_t v = 5;
    assert_false(deepc_json_int(NULL, &v));
    deepc_json_doc *doc = parse_ok("[\"s\", 1]");
    const deepc_json *root = deepc_json_root(doc);
    assert_null(deepc_json_get(root, "s"));          /* array, not object */
    assert_null(deepc_json_key_at(root, 0, NULL));
    assert_null(deepc_json_val_at(root, 0));
    assert_null(deepc_json_str(deepc_json_at(root, 1), NULL));
    assert_true(deepc_json_num(deepc_json_at(root, 0), -1.0) == -1.0);
    assert_false(deepc_json_bool(deepc_json_at(root, 1), false));
    assert_false(deepc_json_int(deepc_json_at(root, 0), &v));
    assert_int_equal(deepc_json_len(deepc_json_at(root, 0)), 0);
    deepc_json_free(doc);
}

/* ---- strings ----------------------------------------------------------- */

static void test_simple_escapes_decode(void **state) {
    (void)state;
    decodes_to("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"", "\" \\ / \b \f \n \r \t", 15);
}

static void test_unicode_escapes_decode_to_utf8(void **state) {
    (void)state;
    decodes_to("\"\\u0041\\u00e9\\u20AC\"", "A\xC3\xA9\xE2\x82\xAC", 6);
}

static void test_surrogate_pair_decodes_to_one_code_point(void **state) {
    (void)state;
    decodes_to("\"\\ud83d\\ude00\"", "\xF0\x9F\x98\x80", 4);  /* U+1F600 */
    decodes_to("\"\\uDBFF\\uDFFF\"", "\xF4\x8F\xBF\xBF", 4);  /* U+10FFFF */
}

static void test_lone_high_surrogate_becomes_replacement_char(void **state) {
    (void)state;
    decodes_to("\"\\ud800\"", "\xEF\xBF\xBD", 3);
    decodes_to("\"\\ud800x\"", "\xEF\xBF\xBDx", 4);
}

static void test_lone_low_surrogate_becomes_replacement_char(void **state) {
    (void)state;
    decodes_to("\"\\udc00\"", "\xEF\xBF\xBD", 3);
}

static void test_high_surrogate_before_non_low_escape_keeps_the_escape(void **state) {
    (void)state;
    decodes_to("\"\\ud800\\u0041\"", "\xEF\xBF\xBD" "A", 4);
    /* The second high surrogate pairs with the low one after it. */
    decodes_to("\"\\ud800\\ud83d\\ude00\"", "\xEF\xBF\xBD\xF0\x9F\x98\x80", 7);
}

static void test_escaped_nul_is_kept_and_counted(void **state) {
    (void)state;
    decodes_to("\"a\\u0000b\"", "a\0b", 3);
}

static void test_raw_utf8_passes_through(void **state) {
    (void)state;
    decodes_to("\"\xC4\xA0\xE4\xBD\xA0\xF0\x9F\x98\x80\"", "\xC4\xA0\xE4\xBD\xA0\xF0\x9F\x98\x80", 9);
}

static void test_keys_are_decoded_before_lookup(void **state) {
    (void)state;
    deepc_json_doc *doc = parse_ok("{\"\\u0041b\": 1}");
    assert_non_null(deepc_json_get(deepc_json_root(doc), "Ab"));
    deepc_json_free(doc);
}

/* ---- numbers ----------------------------------------------------------- */

static void test_int_is_exact_beyond_2_pow_53(void **state) {
    (void)state;
    int64_t v = 0;
    assert_true(root_int("9007199254740993", &v));
    assert_true(v == INT64_C(9007199254740993));
    assert_true(root_int("-9007199254740993", &v));
    assert_true(v == -INT64_C(9007199254740993));
}

static void test_int_covers_the_int64_range_and_no_more(void **state) {
    (void)state;
    int64_t v = 0;
    assert_true(root_int("9223372036854775807", &v));
    assert_true(v == INT64_MAX);
    assert_true(root_int("-9223372036854775808", &v));
    assert_true(v == INT64_MIN);
    assert_false(root_int("9223372036854775808", &v));
    assert_false(root_int("-9223372036854775809", &v));
    assert_false(root_int("123456789012345678901234567890", &v));
    assert_true(root_int("-0", &v));
    assert_true(v == 0);
}

static void test_int_accepts_integral_forms_and_rejects_fractions(void **state) {
    (void)state;
    int64_t v = 0;
    assert_true(root_int("1e3", &v));
    assert_true(v == 1000);
    assert_true(root_int("1.50e1", &v));
    assert_true(v == 15);
    assert_true(root_int("2.0", &v));
    assert_true(v == 2);
    assert_false(root_int("1.5", &v));
    assert_false(root_int("1e-1", &v));
    assert_false(root_int("1e19", &v));
}

static void test_floats_equal_the_c_literals(void **state) {
    (void)state;
    /* Exact equality: the parser must round exactly as the compiler does. */
    assert_true(root_num("0.1") == 0.1);
    assert_true(root_num("1e-6") == 1e-6);
    assert_true(root_num("1.5e+300") == 1.5e+300);
    assert_true(root_num("1e23") == 1e23);
    assert_true(root_num("3.141592653589793") == 3.141592653589793);
    assert_true(root_num("1E-5") == 1e-5);
    assert_true(root_num("123456789012345678901234567890") == 123456789012345678901234567890.0);
    assert_true(root_num("2.2250738585072014e-308") == 2.2250738585072014e-308);  /* smallest normal */
    assert_true(root_num("4.9406564584124654e-324") == 4.9406564584124654e-324);  /* smallest subnormal */
    assert_true(root_num("1.7976931348623157e308") == 1.7976931348623157e308);   /* largest */
}

static void test_negative_zero_keeps_its_sign(void **state) {
    (void)state;
    double z = root_num("-0.0");
    assert_true(z == 0.0);
    assert_true(signbit(z));
}

static void test_halfway_decimals_round_to_even(void **state) {
    (void)state;
    /* 1 + 2^-53 is exactly halfway between 1 and the next double: ties go to
     * the even mantissa (1.0); one more digit above halfway rounds up. */
    assert_true(dbits(root_num("1.00000000000000011102230246251565404236316680908203125")) == dbits(1.0));
    assert_true(root_num("1.00000000000000011102230246251565404236316680908203126") == 1.0 + 0x1p-52);
    assert_true(root_num("9007199254740993") == 9007199254740992.0);
}

static void test_tiny_numbers_underflow_to_zero(void **state) {
    (void)state;
    assert_true(root_num("1e-400") == 0.0);
    assert_true(root_num("2.4703282292062327e-324") == 0.0);  /* just below half the smallest */
}

static void test_num_ignores_the_c_locale(void **state) {
    (void)state;
    /* A locale whose decimal point is ',' must not change parsing. */
    const char *names[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8", "de_DE", "fr_FR", NULL};
    const char *got = NULL;
    for (int i = 0; names[i] && !got; i++) got = setlocale(LC_NUMERIC, names[i]);
    if (!got) skip();  /* no comma locale installed; nothing to check */
    if (strcmp(localeconv()->decimal_point, ",") != 0) {
        setlocale(LC_NUMERIC, "C");
        skip();
    }
    double v = root_num("1.25");
    setlocale(LC_NUMERIC, "C");
    assert_true(v == 1.25);
}

/* ---- nesting limit ----------------------------------------------------- */

static char *nested(int depth) {
    char *s = malloc((size_t)depth * 2 + 1);
    memset(s, '[', (size_t)depth);
    memset(s + depth, ']', (size_t)depth);
    s[2 * depth] = 0;
    return s;
}

static void test_nesting_512_deep_is_accepted(void **state) {
    (void)state;
    char *s = nested(512);
    deepc_json_doc *doc = parse_ok(s);
    deepc_json_free(doc);
    free(s);
}

static void test_nesting_513_deep_is_rejected(void **state) {
    (void)state;
    char *s = nested(513);
    rejects(s, "nesting deeper than 512");
    free(s);
}

static void test_very_deep_nesting_fails_without_crashing(void **state) {
    (void)state;
    char *s = nested(1000000);
    rejects(s, "nesting deeper than 512");
    free(s);
}

/* ---- malformed input --------------------------------------------------- */

static void test_empty_input_is_rejected(void **state) {
    (void)state;
    rejects("", "empty document");
    rejects(" \n\t ", "empty document");
}

static void test_truncated_documents_are_rejected(void **state) {
    (void)state;
    rejects("{\"a\": 1", "unexpected end of input");
    rejects("[1, 2", "unexpected end of input");
    rejects("{\"a\":", "unexpected end of input");
    rejects("{\"a\"", "unexpected end of input");
    rejects("[", "unexpected end of input");
    rejects("tru", "invalid literal (expected 'true') at byte 0");
}

static void test_trailing_comma_is_rejected(void **state) {
    (void)state;
    rejects("[1, 2,]", "trailing comma at byte 5");
    rejects("{\"a\": 1,}", "trailing comma");
}

static void test_unterminated_string_is_rejected(void **state) {
    (void)state;
    rejects("\"abc", "unterminated string starting at byte 0");
    rejects("[\"abc\\\"]", "unterminated string starting at byte 1");
}

static void test_invalid_escape_names_it_and_its_offset(void **state) {
    (void)state;
    /* The backslash is byte 1234: a quote plus 1233 letters precede it. */
    char text[1300];
    text[0] = '"';
    memset(text + 1, 'a', 1233);
    strcpy(text + 1234, "\\q\"");
    rejects(text, "JSON: invalid escape '\\q' at byte 1234");
    rejects("\"\\x41\"", "invalid escape '\\x'");
    rejects("\"\\", "unterminated string");
}

static void test_bad_unicode_escapes_are_rejected(void **state) {
    (void)state;
    rejects("\"\\u12G4\"", "invalid \\u escape");
    rejects("\"\\u12\"", "invalid \\u escape");
    rejects("\"\\u\"", "invalid \\u escape");
}

static void test_control_characters_in_strings_are_rejected(void **state) {
    (void)state;
    rejects("\"a\nb\"", "control character 0x0A in string at byte 2");
    rejects_n("\"a\0b\"", 5, "control character 0x00");
    rejects("\"\x1f\"", "control character 0x1F");
}

static void test_invalid_utf8_in_strings_is_rejected_with_offset(void **state) {
    (void)state;
    rejects("\"ab\xC3\x28\"", "invalid UTF-8 in string at byte 3");
    rejects("\"\xC0\xAF\"", "invalid UTF-8");          /* overlong '/' */
    rejects("\"\xE0\x80\xAF\"", "invalid UTF-8");      /* overlong, 3 bytes */
    rejects("\"\xED\xA0\x80\"", "invalid UTF-8");      /* encoded surrogate */
    rejects("\"\xF4\x90\x80\x80\"", "invalid UTF-8");  /* above U+10FFFF */
    rejects("\"\xF8\x88\x80\x80\x80\"", "invalid UTF-8");
    rejects("\"\x80\"", "invalid UTF-8");              /* lone continuation */
    rejects("\"\xE4\xBD\"", "invalid UTF-8");          /* cut short by the quote */
}

static void test_invalid_utf8_outside_strings_is_rejected(void **state) {
    (void)state;
    rejects("[\xFF]", "byte 0xFF");
    rejects("\xEF\xBB\xBF{}", "at byte 0");  /* a BOM is not JSON */
}

static void test_trailing_garbage_is_rejected(void **state) {
    (void)state;
    rejects("{} x", "unexpected 'x' after the end of the document at byte 3");
    rejects("1 2", "after the end of the document");
    rejects("[]]", "after the end of the document");
    rejects_n("{}\0", 3, "after the end of the document");
}

static void test_leading_zeros_are_rejected(void **state) {
    (void)state;
    rejects("01", "leading zero in number at byte 0");
    rejects("-012", "leading zero");
    rejects("[00]", "leading zero");
}

static void test_malformed_numbers_are_rejected(void **state) {
    (void)state;
    rejects("1.", "need a digit after '.'");
    rejects(".5", "unexpected '.'");
    rejects("+1", "unexpected '+'");
    rejects("-", "unexpected end of input");
    rejects("-a", "unexpected 'a'");
    rejects("1e", "need a digit in the exponent");
    rejects("1e+", "need a digit in the exponent");
    rejects("0x10", "after the end of the document");
    rejects("NaN", "unexpected 'N'");
    rejects("Infinity", "unexpected 'I'");
}

static void test_huge_exponent_is_out_of_range(void **state) {
    (void)state;
    rejects("1e400", "number out of range at byte 0");
    rejects("[-1e99999999999999999999]", "number out of range at byte 1");
    rejects("1.7976931348623159e308", "number out of range");  /* rounds to infinity */
}

static void test_structural_errors_are_rejected(void **state) {
    (void)state;
    rejects("{'a': 1}", "expected a string key");
    rejects("{1: 2}", "expected a string key");
    rejects("{\"a\" 1}", "expected ':'");
    rejects("[1 2]", "expected ',' or ']'");
    rejects("{\"a\": 1 \"b\": 2}", "expected ',' or '}'");
    rejects("[1}", "expected ',' or ']'");
    rejects("[,1]", "unexpected ','");
    rejects("{,}", "expected a string key");
    rejects("// c\n{}", "unexpected '/'");
    rejects("True", "unexpected 'T'");
    rejects("nul", "invalid literal (expected 'null')");
    rejects("[falsey]", "unexpected 'y'");
}

static void test_errors_without_a_sink_do_not_crash(void **state) {
    (void)state;
    assert_null(deepc_json_parse("[1,", 3, NULL));
    assert_null(deepc_json_parse(NULL, 0, NULL));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars_of_every_type_parse_at_root),
        cmocka_unit_test(test_nested_objects_and_arrays_are_navigable),
        cmocka_unit_test(test_empty_containers_have_length_zero),
        cmocka_unit_test(test_object_keys_keep_file_order),
        cmocka_unit_test(test_duplicate_key_last_one_wins_in_small_object),
        cmocka_unit_test(test_duplicate_key_last_one_wins_in_hashed_object),
        cmocka_unit_test(test_large_object_finds_every_key),
        cmocka_unit_test(test_input_need_not_be_nul_terminated),
        cmocka_unit_test(test_accessors_tolerate_null_and_wrong_types),
        cmocka_unit_test(test_simple_escapes_decode),
        cmocka_unit_test(test_unicode_escapes_decode_to_utf8),
        cmocka_unit_test(test_surrogate_pair_decodes_to_one_code_point),
        cmocka_unit_test(test_lone_high_surrogate_becomes_replacement_char),
        cmocka_unit_test(test_lone_low_surrogate_becomes_replacement_char),
        cmocka_unit_test(test_high_surrogate_before_non_low_escape_keeps_the_escape),
        cmocka_unit_test(test_escaped_nul_is_kept_and_counted),
        cmocka_unit_test(test_raw_utf8_passes_through),
        cmocka_unit_test(test_keys_are_decoded_before_lookup),
        cmocka_unit_test(test_int_is_exact_beyond_2_pow_53),
        cmocka_unit_test(test_int_covers_the_int64_range_and_no_more),
        cmocka_unit_test(test_int_accepts_integral_forms_and_rejects_fractions),
        cmocka_unit_test(test_floats_equal_the_c_literals),
        cmocka_unit_test(test_negative_zero_keeps_its_sign),
        cmocka_unit_test(test_halfway_decimals_round_to_even),
        cmocka_unit_test(test_tiny_numbers_underflow_to_zero),
        cmocka_unit_test(test_num_ignores_the_c_locale),
        cmocka_unit_test(test_nesting_512_deep_is_accepted),
        cmocka_unit_test(test_nesting_513_deep_is_rejected),
        cmocka_unit_test(test_very_deep_nesting_fails_without_crashing),
        cmocka_unit_test(test_empty_input_is_rejected),
        cmocka_unit_test(test_truncated_documents_are_rejected),
        cmocka_unit_test(test_trailing_comma_is_rejected),
        cmocka_unit_test(test_unterminated_string_is_rejected),
        cmocka_unit_test(test_invalid_escape_names_it_and_its_offset),
        cmocka_unit_test(test_bad_unicode_escapes_are_rejected),
        cmocka_unit_test(test_control_characters_in_strings_are_rejected),
        cmocka_unit_test(test_invalid_utf8_in_strings_is_rejected_with_offset),
        cmocka_unit_test(test_invalid_utf8_outside_strings_is_rejected),
        cmocka_unit_test(test_trailing_garbage_is_rejected),
        cmocka_unit_test(test_leading_zeros_are_rejected),
        cmocka_unit_test(test_malformed_numbers_are_rejected),
        cmocka_unit_test(test_huge_exponent_is_out_of_range),
        cmocka_unit_test(test_structural_errors_are_rejected),
        cmocka_unit_test(test_errors_without_a_sink_do_not_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
