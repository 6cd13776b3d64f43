/* test_sampler.c - the sampling chain: greedy and its tie rule, top-k, top-p,
 * min-p, repetition penalty, temperature, and seeded determinism. Statistical
 * checks use many draws with bounds many standard deviations wide, and the
 * PRNG is seeded, so they are deterministic, not flaky. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"

/* Parameters for a plain temperature-1 draw with everything else off. Built
 * here rather than from deepc_sampling_default() so this test links with
 * sampler.c alone. */
static deepc_sampling plain(void) {
    deepc_sampling p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 64;
    p.seed = 42;
    return p;
}

static deepc_sampling greedy(void) {
    deepc_sampling p = plain();
    p.temperature = 0.0f;
    return p;
}

/* Draws n tokens into counts[0..n_vocab). */
static void histogram(deepc_sampler *s, const deepc_sampling *p, const float *logits,
                      int n_vocab, int n, int *counts) {
    memset(counts, 0, (size_t)n_vocab * sizeof *counts);
    for (int i = 0; i < n; i++) {
        int32_t t = deepc_sampler_sample(s, p, logits, NULL, 0);
        assert_true(t >= 0 && t < n_vocab);
        counts[t]++;
    }
}

/* ---- greedy ------------------------------------------------------------- */

static void test_greedy_returns_argmax(void **state) {
    (void)state;
    float logits[6] = { 0.1f, -3.0f, 2.5f, 2.4f, -INFINITY, 1.0f };
    deepc_sampler *s = deepc_sampler_create(6);
    assert_non_null(s);
    deepc_sampling p = greedy();
    assert_int_equal(deepc_sampler_sample(s, &p, logits, NULL, 0), 2);
    deepc_sampler_destroy(s);
}

static void test_greedy_ties_pick_lowest_id(void **state) {
    (void)state;
    float logits[5] = { 1.0f, 3.0f, 0.0f, 3.0f, 3.0f };
    deepc_sampler *s = deepc_sampler_create(5);
    deepc_sampling p = greedy();
    assert_int_equal(deepc_sampler_sample(s, &p, logits, NULL, 0), 1);
    deepc_sampler_destroy(s);
}

static void test_nan_logits_are_never_chosen(void **state) {
    (void)state;
    float logits[4] = { NAN, -1.0f, NAN, -2.0f };
    deepc_sampler *s = deepc_sampler_create(4);
    deepc_sampling p = greedy();
    assert_int_equal(deepc_sampler_sample(s, &p, logits, NULL, 0), 1);
    p = plain();
    int counts[4];
    histogram(s, &p, logits, 4, 2000, counts);
    assert_int_equal(counts[0], 0);
    assert_int_equal(counts[2], 0);
    deepc_sampler_destroy(s);
}

static void test_null_params_mean_greedy(void **state) {
    (void)state;
    float logits[3] = { 0.0f, 5.0f, 1.0f };
    deepc_sampler *s = deepc_sampler_create(3);
    assert_int_equal(deepc_sampler_sample(s, NULL, logits, NULL, 0), 1);
    deepc_sampler_destroy(s);
}

static void test_logits_are_not_modified(void **state) {
    (void)state;
    float logits[4] = { 2.0f, 1.0f, -1.0f, 0.5f }, copy[4];
    memcpy(copy, logits, sizeof copy);
    int32_t hist[3] = { 0, 2, 3 };
    deepc_sampler *s = deepc_sampler_create(4);
    deepc_sampling p = plain();
    p.repeat_penalty = 1.5f;
    p.top_k = 3;
    p.top_p = 0.9f;
    p.min_p = 0.05f;
    deepc_sampler_sample(s, &p, logits, hist, 3);
    assert_memory_equal(logits, copy, sizeof copy);
    deepc_sampler_destroy(s);
}

/* ---- top-k -------------------------------------------------------------- */

static void test_top_k_1_equals_greedy(void **state) {
    (void)state;
    enum { N = 1000 };
    static float logits[N];
    for (int i = 0; i < N; i++) logits[i] = sinf((float)i * 0.37f) * 3.0f;
    logits[123] = logits[777] = 5.0f; /* a tie at the top: lowest id must win */
    deepc_sampler *s = deepc_sampler_create(N);
    deepc_sampling g = greedy(), p = plain();
    p.top_k = 1;
    p.temperature = 5.0f;
    int32_t want = deepc_sampler_sample(s, &g, logits, NULL, 0);
    assert_int_equal(want, 123);
    for (uint64_t seed = 0; seed < 50; seed++) {
        p.seed = seed;
        assert_int_equal(deepc_sampler_sample(s, &p, logits, NULL, 0), want);
    }
    deepc_sampler_destroy(s);
}

static void test_top_k_draws_only_the_k_best(void **state) {
    (void)state;
    enum { N = 50 };
    float logits[N];
    for (int i = 0; i < N; i++) logits[i] = (float)((i * 17) % N) * 0.01f; /* a permutation */
    /* the 3 best are the ids whose (i*17)%50 is 49, 48, 47 */
    deepc_sampler *s = deepc_sampler_create(N);
    deepc_sampling p = plain();
    p.top_k = 3;
    p.temperature = 100.0f; /* nearly flat: without top-k every id would show */
    int counts[N];
    histogram(s, &p, logits, N, 3000, counts);
    for (int i = 0; i < N; i++) {
        bool top = (i * 17) % N >= N - 3;
        if (top) assert_true(counts[i] > 0);
        else assert_int_equal(counts[i], 0);
    }
    deepc_sampler_destroy(s);
}

/* ---- determinism -------------------------------------------------------- */

static void draw_sequence(deepc_sampler *s, const deepc_sampling *p, const float *logits,
                          int32_t *out, int n) {
    for (int i = 0; i < n; i++) out[i] = deepc_sampler_sample(s, p, logits, NULL, 0);
}

static void test_same_seed_gives_same_sequence(void **state) {
    (void)state;
    enum { N = 100, DRAWS = 200 };
    float logits[N];
    for (int i = 0; i < N; i++) logits[i] = cosf((float)i) * 2.0f;
    deepc_sampler *a = deepc_sampler_create(N), *b = deepc_sampler_create(N);
    deepc_sampling p = plain();
    p.seed = 1234;
    int32_t sa[DRAWS], sb[DRAWS];
    draw_sequence(a, &p, logits, sa, DRAWS);
    draw_sequence(b, &p, logits, sb, DRAWS);
    assert_memory_equal(sa, sb, sizeof sa);
    deepc_sampler_destroy(a);
    deepc_sampler_destroy(b);
}

static void test_different_seeds_give_different_sequences(void **state) {
    (void)state;
    enum { N = 100, DRAWS = 200 };
    float logits[N];
    for (int i = 0; i < N; i++) logits[i] = cosf((float)i) * 2.0f;
    deepc_sampler *a = deepc_sampler_create(N), *b = deepc_sampler_create(N);
    deepc_sampling p = plain(), q = plain();
    p.seed = 1;
    q.seed = 2;
    int32_t sa[DRAWS], sb[DRAWS];
    draw_sequence(a, &p, logits, sa, DRAWS);
    draw_sequence(b, &q, logits, sb, DRAWS);
    /* 200 draws over ~100 plausible tokens: equal sequences would be a bug */
    assert_memory_not_equal(sa, sb, sizeof sa);
    deepc_sampler_destroy(a);
    deepc_sampler_destroy(b);
}

static void test_changing_seed_back_restarts_its_sequence(void **state) {
    (void)state;
    enum { N = 100, DRAWS = 50 };
    float logits[N];
    for (int i = 0; i < N; i++) logits[i] = cosf((float)i) * 2.0f;
    deepc_sampler *s = deepc_sampler_create(N);
    deepc_sampling p = plain(), q = plain();
    p.seed = 7;
    q.seed = 8;
    int32_t first[DRAWS], again[DRAWS], other[DRAWS];
    draw_sequence(s, &p, logits, first, DRAWS);
    draw_sequence(s, &q, logits, other, DRAWS);
    draw_sequence(s, &p, logits, again, DRAWS);
    assert_memory_equal(first, again, sizeof first);
    deepc_sampler_destroy(s);
}

/* ---- top-p -------------------------------------------------------------- */

/* probabilities 0.5, 0.3, 0.15, 0.05 (logits are their logs, T = 1) */
static void four_token_logits(float *l) {
    l[0] = logf(0.5f);
    l[1] = logf(0.3f);
    l[2] = logf(0.15f);
    l[3] = logf(0.05f);
}

static void test_top_p_keeps_the_minimal_nucleus(void **state) {
    (void)state;
    float logits[4];
    four_token_logits(logits);
    deepc_sampler *s = deepc_sampler_create(4);
    deepc_sampling p = plain();
    p.top_p = 0.75f; /* 0.5 < 0.75 <= 0.5 + 0.3: the nucleus is {0, 1} */
    int counts[4];
    histogram(s, &p, logits, 4, 5000, counts);
    assert_true(counts[0] > 0 && counts[1] > 0);
    assert_int_equal(counts[2], 0);
    assert_int_equal(counts[3], 0);
    /* renormalized: P(0) = 0.5 / 0.8 = 0.625, binomial sd over 5000 draws is
     * 0.0068, so +-0.05 is over 7 sd */
    assert_true(fabs(counts[0] / 5000.0 - 0.625) < 0.05);
    deepc_sampler_destroy(s);
}

static void test_top_p_keeps_at_least_one_token(void **state) {
    (void)state;
    float logits[4];
    four_token_logits(logits);
    deepc_sampler *s = deepc_sampler_create(4);
    deepc_sampling p = plain();
    p.top_p = 0.1f; /* the best token alone already exceeds this */
    int counts[4];
    histogram(s, &p, logits, 4, 500, counts);
    assert_int_equal(counts[0], 500);
    p.top_p = 0.0f; /* degenerate: still one token */
    histogram(s, &p, logits, 4, 500, counts);
    assert_int_equal(counts[0], 500);
    deepc_sampler_destroy(s);
}

/* A long flat tail whose tokens are each below the sampler's "head" cut but
 * together hold most of the mass: the nucleus must come from the full order
 * (tail ties broken by lowest id), not just the head. Token 0 has p ~ 1,
 * each of the others p = e^-10 relative, total Z = 1 + (N-1) e^-10. */
static void test_top_p_with_heavy_tail_uses_full_order(void **state) {
    (void)state;
    enum { N = 20000 };
    static float logits[N];
    logits[0] = 0.0f;
    for (int i = 1; i < N; i++) logits[i] = -10.0f;
    deepc_sampler *s = deepc_sampler_create(N);
    deepc_sampling p = plain();
    p.top_p = 0.9f;
    /* nucleus = {0} + the first k tail ids with 1 + k e^-10 >= 0.9 Z, k ~ 15800
     * of the 19999 tail ids */
    double t = exp(-10.0), z = 1.0 + (N - 1) * t;
    int k = (int)ceil((0.9 * z - 1.0) / t);
    int max_id = 0;
    for (int i = 0; i < 400; i++) {
        int32_t id = deepc_sampler_sample(s, &p, logits, NULL, 0);
        if (id > max_id) max_id = id;
    }
    /* +-1 id of slack for float vs double rounding at the boundary */
    assert_true(max_id <= k + 1);
    /* the tail holds ~0.42 of the nucleus mass, so ~170 of the 400 draws are
     * uniform over ids 1..k: the largest lies far beyond the head's one token
     * (P(max <= k/2) ~ 2^-170). Were the nucleus all N ids, each tail draw
     * would exceed k + 1 with P ~ 0.2, so the bound above would catch it. */
    assert_true(max_id > k / 2);
    deepc_sampler_destroy(s);
}

/* ---- min-p -------------------------------------------------------------- */

static void test_min_p_drops_tokens_below_fraction_of_max(void **state) {
    (void)state;
    float logits[4];
    four_token_logits(logits);
    deepc_sampler *s = deepc_sampler_create(4);
    deepc_sampling p = plain();
    p.min_p = 0.2f; /* cut at 0.2 * 0.5 = 0.1: keeps 0.5, 0.3, 0.15; drops 0.05 */
    int counts[4];
    histogram(s, &p, logits, 4, 5000, counts);
    assert_true(counts[0] > 0 && counts[1] > 0 && counts[2] > 0);
    assert_int_equal(counts[3], 0);
    deepc_sampler_destroy(s);
}

/* ---- repetition penalty ------------------------------------------------- */

/* 2.0 / 1.2 = 1.667 < 1.8: penalizing token 0 makes token 1 the argmax. */
static void test_repeat_penalty_divides_positive_logits(void **state) {
    (void)state;
    float logits[3] = { 2.0f, 1.8f, -1.0f };
    int32_t hist[1] = { 0 };
    deepc_sampler *s = deepc_sampler_create(3);
    deepc_sampling p = greedy();
    assert_int_equal(deepc_sampler_sample(s, &p, logits, hist, 1), 0);
    p.repeat_penalty = 1.2f;
    assert_int_equal(deepc_sampler_sample(s, &p, logits, hist, 1), 1);
    deepc_sampler_destroy(s);
}

/* -1.0 * 1.2 = -1.2 < -1.1: a negative logit is multiplied, so it drops too. */
static void test_repeat_penalty_multiplies_negative_logits(void **state) {
    (void)state;
    float logits[2] = { -1.0f, -1.1f };
    int32_t hist[1] = { 0 };
    deepc_sampler *s = deepc_sampler_create(2);
    deepc_sampling p = greedy();
    p.repeat_penalty = 1.2f;
    assert_int_equal(deepc_sampler_sample(s, &p, logits, hist, 1), 1);
    deepc_sampler_destroy(s);
}

/* Once: 2.0 / 1.2 = 1.667 > 1.5 keeps token 0 on top; applying it for each of
 * the three occurrences would give 2.0 / 1.728 = 1.157 < 1.5. */
static void test_repeat_penalty_applies_once_per_distinct_token(void **state) {
    (void)state;
    float logits[2] = { 2.0f, 1.5f };
    int32_t hist[3] = { 0, 0, 0 };
    deepc_sampler *s = deepc_sampler_create(2);
    deepc_sampling p = greedy();
    p.repeat_penalty = 1.2f;
    for (int call = 0; call < 3; call++) /* also: no state leaks between calls */
        assert_int_equal(deepc_sampler_sample(s, &p, logits, hist, 3), 0);
    deepc_sampler_destroy(s);
}

static void test_repeat_penalty_only_looks_at_last_n(void **state) {
    (void)state;
    float logits[3] = { 2.0f, 1.8f, 0.0f };
    int32_t hist[3] = { 0, 2, 2 };
    deepc_sampler *s = deepc_sampler_create(3);
    deepc_sampling p = greedy();
    p.repeat_penalty = 1.2f;
    p.repeat_last_n = 2; /* sees {2, 2}: token 0 is outside the window */
    assert_int_equal(deepc_sampler_sample(s, &p, logits, hist, 3), 0);
    p.repeat_last_n = 3;
    assert_int_equal(deepc_sampler_sample(s, &p, logits, hist, 3), 1);
    deepc_sampler_destroy(s);
}

static void test_repeat_penalty_ignores_out_of_range_history(void **state) {
    (void)state;
    float logits[2] = { 2.0f, 1.8f };
    int32_t hist[3] = { -5, 2, 1000000 };
    deepc_sampler *s = deepc_sampler_create(2);
    deepc_sampling p = greedy();
    p.repeat_penalty = 1.2f;
    assert_int_equal(deepc_sampler_sample(s, &p, logits, hist, 3), 0);
    deepc_sampler_destroy(s);
}

/* ---- temperature -------------------------------------------------------- */

/* logits {1, 0, 0, 0}: P(token 0) = e^(1/T) / (e^(1/T) + 3), which is 0.99986
 * at T = 0.1 and 0.269 at T = 10. With 4000 draws the binomial sd is at most
 * 0.008, so the bounds below are > 5 sd from the expected values. */
static void test_temperature_low_concentrates_high_spreads(void **state) {
    (void)state;
    float logits[4] = { 1.0f, 0.0f, 0.0f, 0.0f };
    deepc_sampler *s = deepc_sampler_create(4);
    deepc_sampling p = plain();
    int counts[4];
    p.temperature = 0.1f;
    histogram(s, &p, logits, 4, 4000, counts);
    assert_true(counts[0] / 4000.0 > 0.99);
    p.temperature = 10.0f;
    histogram(s, &p, logits, 4, 4000, counts);
    double f0 = counts[0] / 4000.0;
    assert_true(f0 > 0.22 && f0 < 0.32);
    for (int i = 1; i < 4; i++) assert_true(counts[i] > 4000 / 8);
    deepc_sampler_destroy(s);
}

/* ---- lifecycle ---------------------------------------------------------- */

static void test_create_rejects_empty_vocab_and_destroy_accepts_null(void **state) {
    (void)state;
    assert_null(deepc_sampler_create(0));
    assert_null(deepc_sampler_create(-3));
    deepc_sampler_destroy(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_returns_argmax),
        cmocka_unit_test(test_greedy_ties_pick_lowest_id),
        cmocka_unit_test(test_nan_logits_are_never_chosen),
        cmocka_unit_test(test_null_params_mean_greedy),
        cmocka_unit_test(test_logits_are_not_modified),
        cmocka_unit_test(test_top_k_1_equals_greedy),
        cmocka_unit_test(test_top_k_draws_only_the_k_best),
        cmocka_unit_test(test_same_seed_gives_same_sequence),
        cmocka_unit_test(test_different_seeds_give_different_sequences),
        cmocka_unit_test(test_changing_seed_back_restarts_its_sequence),
        cmocka_unit_test(test_top_p_keeps_the_minimal_nucleus),
        cmocka_unit_test(test_top_p_keeps_at_least_one_token),
        cmocka_unit_test(test_top_p_with_heavy_tail_uses_full_order),
        cmocka_unit_test(test_min_p_drops_tokens_below_fraction_of_max),
        cmocka_unit_test(test_repeat_penalty_divides_positive_logits),
        cmocka_unit_test(test_repeat_penalty_multiplies_negative_logits),
        cmocka_unit_test(test_repeat_penalty_applies_once_per_distinct_token),
        cmocka_unit_test(test_repeat_penalty_only_looks_at_last_n),
        cmocka_unit_test(test_repeat_penalty_ignores_out_of_range_history),
        cmocka_unit_test(test_temperature_low_concentrates_high_spreads),
        cmocka_unit_test(test_create_rejects_empty_vocab_and_destroy_accepts_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
