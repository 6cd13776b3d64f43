/* test_expert_store.c - expert streaming (core/expert_store.c): with any
 * budget from "everything resident" down to the minimum (one token's active
 * experts of one layer), prompt batches and token-by-token decoding give
 * logits bit-identical to the resident run; a budget below the minimum is
 * refused naming it; the cache never exceeds its budget; a failing or short
 * read mid-generation is reported and leaves the session usable; routing
 * profiles round-trip and pin experts. Tiny synthetic DeepSeek-V2 / V3
 * checkpoints (test/support/hfgen_moe.h), converted by the real converter. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "deepc.h"
#include "expert_store.h"
#include "hfgen_moe.h"
#include "model.h"

#define N_TOK 24

static char root[256];

static int setup(void **state) {
    (void)state;
    const char *t = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/deepc-xstore-XXXXXX", t ? t : "/tmp");
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

/* Generates, converts and opens a preset (cached across tests). */
static deepc_model *open_preset(const char *preset, const char *type, hfgen_moe_spec *spec, char *path, size_t cap) {
    char dir[512];
    assert_int_equal(hfgen_moe_preset(preset, spec), 0);
    snprintf(dir, sizeof dir, "%s/%s", root, preset);
    deepc_err err = { "" };
    if (access(dir, F_OK) != 0 && hfgen_moe_write(dir, spec, NULL, NULL, NULL, &err)) fail_msg("hfgen_moe_write: %s", err.msg);
    snprintf(path, cap, "%s/model-%s.dqf", dir, type);
    deepc_convert_params p = deepc_convert_default_params();
    p.type = type;
    if (access(path, F_OK) != 0 && deepc_convert(dir, path, &p)) fail_msg("convert: %s", deepc_open_error());
    deepc_model *m;
    if (deepc_model_open(path, &m)) fail_msg("open: %s", deepc_open_error());
    return m;
}

static void prompt(int vocab, int32_t *ids, int n) {
    uint64_t x = 99;
    for (int i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((x >> 33) % (uint64_t)vocab);
    }
}

typedef struct {
    uint64_t budget, max_ram;
    int threads, batch, io_threads;
    bool one_by_one, no_prefetch, buffered;
    const char *pin;
} cfg;

static deepc_session_params params_of(const cfg *c) {
    deepc_session_params sp = deepc_session_default_params();
    sp.n_threads = c->threads ? c->threads : 1;
    sp.n_batch = c->batch ? c->batch : 16;
    sp.n_ctx = 64;
    sp.expert_cache_bytes = c->budget;
    sp.max_ram_bytes = c->max_ram;
    sp.expert_pin_profile = c->pin;
    sp.expert_io_threads = c->io_threads;
    sp.expert_no_prefetch = c->no_prefetch;
    sp.expert_buffered_io = c->buffered;
    return sp;
}

static deepc_session *make_session(deepc_model *m, const cfg *c) {
    deepc_session_params sp = params_of(c);
    deepc_session *s;
    if (deepc_session_create(m, &sp, &s)) fail_msg("session: %s", deepc_open_error());
    return s;
}

/* Logits of every position of ids, as one prompt (in n_batch pieces) or
 * token by token; *st receives the session's expert stats. */
static float *run(deepc_model *m, const int32_t *ids, const cfg *c, deepc_expert_stats *st) {
    deepc_model_info mi = { .struct_size = sizeof mi };
    deepc_model_get_info(m, &mi);
    deepc_session *s = make_session(m, c);
    float *lg = malloc((size_t)N_TOK * mi.n_vocab * sizeof *lg);
    assert_non_null(lg);
    if (c->one_by_one) {
        for (int i = 0; i < N_TOK; i++) assert_int_equal(deepc_session_eval(s, ids + i, 1, lg + (size_t)i * mi.n_vocab), DEEPC_OK);
    } else {
        assert_int_equal(deepc_session_eval(s, ids, N_TOK, lg), DEEPC_OK);
    }
    if (st) {
        st->struct_size = sizeof *st;
        assert_int_equal(deepc_session_expert_stats(s, st), DEEPC_OK);
    }
    deepc_session_destroy(s);
    return lg;
}

/* The invariants every stats snapshot must satisfy. */
static void check_stats(const deepc_expert_stats *st, uint64_t budget, int tokens) {
    assert_int_equal(st->tokens, (uint64_t)tokens);
    assert_int_equal(st->budget_bytes, budget);
    assert_int_equal(st->lookups, st->hits + st->misses);
    if (st->streaming) {
        assert_true(st->cache_bytes <= st->budget_bytes);              /* never above the budget */
        assert_int_equal(st->cache_bytes, (uint64_t)st->n_slots * st->slot_bytes);
        assert_true(st->budget_bytes >= st->min_budget_bytes);
        assert_int_equal(st->slot_bytes % 4096, 0);
        assert_true(st->misses <= st->reads);                           /* every miss is one read */
        assert_true(st->bytes_read >= st->misses * (st->slot_bytes - 4095));
        assert_true(st->prefetch_used + st->prefetch_wasted <= st->prefetch_issued);
        assert_true(st->stall_s >= 0.0);
    } else {
        assert_int_equal(st->misses, 0);
        assert_int_equal(st->bytes_read, 0);
    }
}

/* Streaming geometry of m: total expert bytes, minimum budget, slot size. */
static void geometry(deepc_model *m, uint64_t *total, uint64_t *min, uint64_t *slot) {
    deepc_model_info mi = { .struct_size = sizeof mi };
    deepc_model_get_info(m, &mi);
    *total = mi.expert_bytes;
    cfg c = { .budget = *total - 1 };
    deepc_session *s = make_session(m, &c);
    deepc_expert_stats st = { .struct_size = sizeof st };
    assert_int_equal(deepc_session_expert_stats(s, &st), DEEPC_OK);
    assert_true(st.streaming);
    assert_int_equal(st.expert_bytes, *total);
    *min = st.min_budget_bytes;
    *slot = st.slot_bytes;
    assert_int_equal(*min, (uint64_t)mi.n_expert_used * *slot);
    deepc_session_destroy(s);
}

/* ---- bit-identical logits for every budget ------------------------------ */

static void check_budgets(const char *preset, const char *type) {
    hfgen_moe_spec spec;
    char path[600];
    deepc_model *m = open_preset(preset, type, &spec, path, sizeof path);
    deepc_model_info mi = { .struct_size = sizeof mi };
    deepc_model_get_info(m, &mi);
    int32_t ids[N_TOK];
    prompt(hfgen_moe_tokenizer_size(&spec), ids, N_TOK);
    size_t bytes = (size_t)N_TOK * mi.n_vocab * sizeof(float);
    uint64_t total, min, slot;
    geometry(m, &total, &min, &slot);
    cfg base = { 0 };
    deepc_expert_stats st;
    float *want = run(m, ids, &base, &st);
    check_stats(&st, 0, N_TOK);
    assert_false(st.streaming);
    cfg tok = { .one_by_one = true };
    float *want_tok = run(m, ids, &tok, NULL);
    uint64_t budgets[] = { total, total - 1, total / 2, total / 4, min + slot, min };
    for (size_t b = 0; b < sizeof budgets / sizeof *budgets; b++) {
        for (int v = 0; v < 4; v++) {
            cfg c = { .budget = budgets[b], .threads = 1 + (v & 1), .one_by_one = v >= 2,
                      .no_prefetch = v == 1, .io_threads = v == 3 ? 1 : 0, .buffered = v == 2 };
            float *got = run(m, ids, &c, &st);
            check_stats(&st, c.budget, N_TOK);
            assert_int_equal(st.streaming, budgets[b] < total);
            if (st.streaming && budgets[b] <= total / 2) assert_true(st.misses > 0);
            if (v == 0 || v == 2)
                printf("  %s %s %s budget %7llu (%5.1f%%): %3d slots, hit rate %5.1f%%, %6llu reads, prefetch %llu issued %llu used\n",
                       preset, type, v ? "decode " : "prefill", (unsigned long long)budgets[b], 100.0 * (double)budgets[b] / (double)total, st.n_slots,
                       st.lookups ? 100.0 * (double)st.hits / (double)st.lookups : 100.0, (unsigned long long)st.reads,
                       (unsigned long long)st.prefetch_issued, (unsigned long long)st.prefetch_used);
            /* bitwise: the cache holds the file's bytes and the same kernels run on them */
            assert_memory_equal(got, c.one_by_one ? want_tok : want, bytes);
            free(got);
        }
    }
    free(want);
    free(want_tok);
    deepc_model_close(m);
}

static void test_v2_q8_0_every_budget_matches_resident_bitwise(void **state) {
    (void)state;
    check_budgets("tiny-deepseek2", "q8_0");
}

static void test_v2_group_f32_every_budget_matches_resident_bitwise(void **state) {
    (void)state;
    check_budgets("tiny-deepseek2-group", "f32");
}

static void test_v3_q8_0_every_budget_matches_resident_bitwise(void **state) {
    (void)state;
    check_budgets("tiny-deepseek3", "q8_0");
}

/* ---- limits ------------------------------------------------------------- */

static void test_budget_below_minimum_is_refused_naming_it(void **state) {
    (void)state;
    hfgen_moe_spec spec;
    char path[600];
    deepc_model *m = open_preset("tiny-deepseek2", "q8_0", &spec, path, sizeof path);
    uint64_t total, min, slot;
    geometry(m, &total, &min, &slot);
    deepc_session_params sp = deepc_session_default_params();
    sp.n_ctx = 32;
    sp.expert_cache_bytes = min - 1;
    deepc_session *s = NULL;
    assert_int_equal(deepc_session_create(m, &sp, &s), DEEPC_ERR_INVALID_ARG);
    assert_null(s);
    char want[64];
    snprintf(want, sizeof want, "(%llu bytes)", (unsigned long long)min);
    printf("  %s\n", deepc_open_error());
    assert_non_null(strstr(deepc_open_error(), "minimum"));
    assert_non_null(strstr(deepc_open_error(), want));
    /* exactly the minimum works */
    sp.expert_cache_bytes = min;
    assert_int_equal(deepc_session_create(m, &sp, &s), DEEPC_OK);
    deepc_session_destroy(s);
    deepc_model_close(m);
}

/* max_ram: the expert cache gets what the weights, KV cache and scratch
 * leave. The least workable limit is found by bisection (each probe creates a
 * session); at it the store streams within its share and the logits equal the
 * resident run's; one byte less is refused with a message naming a limit that
 * works; a generous limit leaves every expert in place. */
static void test_max_ram_derives_the_expert_budget(void **state) {
    (void)state;
    hfgen_moe_spec spec;
    char path[600];
    deepc_model *m = open_preset("tiny-deepseek2", "q8_0", &spec, path, sizeof path);
    deepc_model_info mi = { .struct_size = sizeof mi };
    deepc_model_get_info(m, &mi);
    uint64_t total, min, slot;
    geometry(m, &total, &min, &slot);
    cfg probe = { .max_ram = 1 };
    deepc_session_params sp = params_of(&probe);
    deepc_session *s = NULL;
    uint64_t lo = 1, hi = 1ull << 34;         /* lo fails, hi works */
    assert_int_not_equal(deepc_session_create(m, &sp, &s), DEEPC_OK);
    assert_null(s);
    assert_non_null(strstr(deepc_open_error(), "too small"));
    assert_non_null(strstr(deepc_open_error(), "use at least"));
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        sp.max_ram_bytes = mid;
        if (deepc_session_create(m, &sp, &s) == DEEPC_OK) { hi = mid; deepc_session_destroy(s); s = NULL; }
        else lo = mid;
    }
    /* at the least workable limit: streaming with at least the minimum, and
     * the limit holds the dense weights plus the cache */
    int32_t ids[N_TOK];
    prompt(mi.n_vocab, ids, N_TOK);
    deepc_expert_stats st, rs;
    cfg tight = { .max_ram = hi }, resident = { 0 };
    float *a = run(m, ids, &tight, &st), *b = run(m, ids, &resident, &rs);
    assert_true(st.streaming);
    assert_true(st.budget_bytes >= min && st.budget_bytes < min + slot);
    assert_true(mi.weight_bytes - mi.expert_bytes + st.cache_bytes <= hi);
    assert_memory_equal(a, b, (size_t)N_TOK * mi.n_vocab * sizeof *a);
    free(a);
    free(b);
    /* a generous limit: every expert in place */
    cfg big = { .max_ram = hi + total };
    free(run(m, ids, &big, &st));
    assert_false(st.streaming);
    /* an explicit cache larger than the limit leaves is refused */
    sp.max_ram_bytes = hi;
    sp.expert_cache_bytes = min + 4 * slot;
    assert_int_not_equal(deepc_session_create(m, &sp, &s), DEEPC_OK);
    assert_non_null(strstr(deepc_open_error(), "does not fit"));
    deepc_model_close(m);
}

/* A batch whose tokens select more experts than the cache holds is computed
 * a chunk of experts at a time: each expert is still read once per batch. */
static void test_prompt_batch_reads_each_expert_once(void **state) {
    (void)state;
    hfgen_moe_spec spec;
    char path[600];
    deepc_model *m = open_preset("tiny-deepseek2", "q8_0", &spec, path, sizeof path);
    uint64_t total, min, slot;
    geometry(m, &total, &min, &slot);
    int32_t ids[N_TOK];
    prompt(hfgen_moe_tokenizer_size(&spec), ids, N_TOK);
    cfg c = { .budget = min, .batch = N_TOK, .no_prefetch = true };
    deepc_expert_stats st;
    float *got = run(m, ids, &c, &st);
    check_stats(&st, min, N_TOK);
    /* a lookup is one (layer, expert) of the batch, and costs at most one read
     * even though the layer ran in several chunks (the batch selects more
     * experts per layer than the top_k slots hold) */
    int moe_layers = spec.n_layers - spec.first_k_dense_replace;
    assert_int_equal(st.reads, st.misses);
    assert_true(st.reads <= st.lookups);
    assert_true(st.lookups > (uint64_t)spec.num_experts_per_tok * moe_layers);
    assert_true(st.lookups <= (uint64_t)spec.n_routed_experts * moe_layers);
    free(got);
    deepc_model_close(m);
}

/* ---- read failures -------------------------------------------------------- */

typedef struct {
    atomic_int calls;
    atomic_int fail_from;     /* calls >= this fail */
    int how;                  /* 0: EIO, 1: end of file (short read) */
} hook_t;

static long long hook_read(void *user, int fd, void *buf, size_t len, uint64_t off) {
    hook_t *h = user;
    int c = atomic_fetch_add(&h->calls, 1);
    if (c >= atomic_load(&h->fail_from)) {
        if (h->how == 0) { errno = EIO; return -1; }
        return 0;
    }
    return (long long)pread(fd, buf, len, (off_t)off);
}

static void check_read_failure(int how, const char *expect) {
    hfgen_moe_spec spec;
    char path[600];
    deepc_model *m = open_preset("tiny-deepseek2", "q8_0", &spec, path, sizeof path);
    deepc_model_info mi = { .struct_size = sizeof mi };
    deepc_model_get_info(m, &mi);
    uint64_t total, min, slot;
    geometry(m, &total, &min, &slot);
    int32_t ids[N_TOK];
    prompt(hfgen_moe_tokenizer_size(&spec), ids, N_TOK);
    cfg ref = { .one_by_one = true };
    float *want = run(m, ids, &ref, NULL);

    cfg c = { .budget = min, .no_prefetch = true };
    deepc_session *s = make_session(m, &c);
    hook_t h;
    atomic_init(&h.calls, 0);
    atomic_init(&h.fail_from, 1 << 30);
    h.how = how;
    deepc_expert_store_set_read_fn(s->store, hook_read, &h);
    size_t V = (size_t)mi.n_vocab;
    float *lg = malloc(V * sizeof *lg);
    int half = N_TOK / 2;
    for (int i = 0; i < half; i++) {
        assert_int_equal(deepc_session_eval(s, ids + i, 1, lg), DEEPC_OK);
        assert_memory_equal(lg, want + (size_t)i * V, V * sizeof *lg);
    }
    /* from now on the disk fails */
    atomic_store(&h.fail_from, atomic_load(&h.calls));
    deepc_status rc = deepc_session_eval(s, ids + half, 1, lg);
    assert_int_equal(rc, DEEPC_ERR_IO);
    printf("  %s\n", deepc_last_error(s));
    assert_non_null(strstr(deepc_last_error(s), "expert store: reading layer"));
    assert_non_null(strstr(deepc_last_error(s), expect));
    /* the failed token was not fed; nothing to sample from */
    assert_int_equal(deepc_session_pos(s), half);
    assert_null(deepc_session_logits(s));
    deepc_expert_stats st = { .struct_size = sizeof st };
    deepc_session_expert_stats(s, &st);
    assert_true(st.read_errors > 0);
    assert_true(st.cache_bytes <= st.budget_bytes);
    /* the disk recovers: generation goes on exactly as if nothing happened */
    deepc_expert_store_set_read_fn(s->store, NULL, NULL);
    for (int i = half; i < N_TOK; i++) {
        assert_int_equal(deepc_session_eval(s, ids + i, 1, lg), DEEPC_OK);
        assert_memory_equal(lg, want + (size_t)i * V, V * sizeof *lg);
    }
    free(lg);
    free(want);
    deepc_session_destroy(s);
    deepc_model_close(m);
}

static void test_read_error_mid_generation_is_reported_and_recoverable(void **state) {
    (void)state;
    check_read_failure(0, strerror(EIO));
}

static void test_short_read_mid_generation_is_reported_and_recoverable(void **state) {
    (void)state;
    check_read_failure(1, "short read");
}

/* A failure in a prompt batch leaves the earlier batches in place. */
static void test_read_error_in_prompt_batch_keeps_earlier_batches(void **state) {
    (void)state;
    hfgen_moe_spec spec;
    char path[600];
    deepc_model *m = open_preset("tiny-deepseek3", "q8_0", &spec, path, sizeof path);
    uint64_t total, min, slot;
    geometry(m, &total, &min, &slot);
    int32_t ids[N_TOK];
    prompt(hfgen_moe_tokenizer_size(&spec), ids, N_TOK);
    cfg c = { .budget = min, .batch = 8, .no_prefetch = true };
    deepc_session *s = make_session(m, &c);
    hook_t h;
    atomic_init(&h.calls, 0);
    atomic_init(&h.fail_from, 1 << 30);
    h.how = 0;
    deepc_expert_store_set_read_fn(s->store, hook_read, &h);
    assert_int_equal(deepc_session_eval(s, ids, 8, NULL), DEEPC_OK);
    atomic_store(&h.fail_from, atomic_load(&h.calls));
    assert_int_equal(deepc_session_eval(s, ids + 8, 16, NULL), DEEPC_ERR_IO);
    assert_int_equal(deepc_session_pos(s), 8);
    deepc_expert_store_set_read_fn(s->store, NULL, NULL);
    assert_int_equal(deepc_session_eval(s, ids + 8, 16, NULL), DEEPC_OK);
    assert_int_equal(deepc_session_pos(s), N_TOK);
    deepc_session_destroy(s);
    deepc_model_close(m);
}

/* ---- profiles and pinning ---------------------------------------------------- */

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_profile_round_trips_and_pins_hot_experts(void **state) {
    (void)state;
    hfgen_moe_spec spec;
    char path[600], prof[700];
    deepc_model *m = open_preset("tiny-deepseek3", "q8_0", &spec, path, sizeof path);
    deepc_model_info mi = { .struct_size = sizeof mi };
    deepc_model_get_info(m, &mi);
    uint64_t total, min, slot;
    geometry(m, &total, &min, &slot);
    int32_t ids[N_TOK];
    prompt(hfgen_moe_tokenizer_size(&spec), ids, N_TOK);

    /* profile a resident run */
    cfg r = { 0 };
    deepc_session *s = make_session(m, &r);
    assert_int_equal(deepc_session_eval(s, ids, N_TOK, NULL), DEEPC_OK);
    size_t n = (size_t)mi.n_layers * mi.n_expert;
    uint64_t *counts = calloc(n, sizeof *counts), *back = calloc(n, sizeof *back), sum = 0;
    assert_int_equal(deepc_session_expert_counts(s, counts, n), DEEPC_OK);
    assert_int_equal(deepc_session_expert_counts(s, counts, n - 1), DEEPC_ERR_INVALID_ARG);
    for (size_t i = 0; i < n; i++) {
        if ((int)(i / mi.n_expert) < mi.first_k_dense) assert_int_equal(counts[i], 0);
        sum += counts[i];
    }
    /* every token picks top_k experts in every MoE layer */
    assert_int_equal(sum, (uint64_t)N_TOK * mi.n_expert_used * (mi.n_layers - mi.first_k_dense));
    snprintf(prof, sizeof prof, "%s/v3.profile", root);
    assert_int_equal(deepc_session_save_expert_profile(s, prof), DEEPC_OK);
    deepc_session_destroy(s);
    deepc_err err = { "" };
    assert_int_equal(deepc_expert_profile_load(m, prof, back, &err), DEEPC_OK);
    assert_memory_equal(counts, back, n * sizeof *counts);

    /* pinned at half the expert bytes: same logits, pinned slots reported */
    cfg base = { 0 };
    float *want = run(m, ids, &base, NULL);
    cfg c = { .budget = total / 2, .pin = prof };
    deepc_expert_stats st;
    float *got = run(m, ids, &c, &st);
    check_stats(&st, c.budget, N_TOK);
    printf("  pinned %d of %d slots; hit rate %.1f%%\n", st.n_pinned, st.n_slots, 100.0 * (double)st.hits / (double)st.lookups);
    assert_true(st.n_pinned > 0 && st.n_pinned <= st.n_slots * 3 / 4);
    assert_memory_equal(got, want, (size_t)N_TOK * mi.n_vocab * sizeof(float));
    free(got);
    /* for the record (no claim: the tiny model's routing is near uniform) */
    cfg nopin = { .budget = total / 2, .no_prefetch = true };
    deepc_expert_stats st0;
    got = run(m, ids, &nopin, &st0);
    free(got);
    cfg pin_nopf = { .budget = total / 2, .no_prefetch = true, .pin = prof };
    got = run(m, ids, &pin_nopf, &st);
    printf("  without prefetch: hit rate %.1f%% unpinned, %.1f%% pinned\n", 100.0 * (double)st0.hits / (double)st0.lookups,
           100.0 * (double)st.hits / (double)st.lookups);
    free(got);
    /* a budget of everything with a profile: resident, profile still checked */
    cfg all = { .budget = total, .pin = prof };
    got = run(m, ids, &all, &st);
    assert_false(st.streaming);
    assert_memory_equal(got, want, (size_t)N_TOK * mi.n_vocab * sizeof(float));
    free(got);
    free(want);
    free(counts);
    free(back);
    deepc_model_close(m);
}

static void test_bad_profiles_are_refused_with_reason(void **state) {
    (void)state;
    hfgen_moe_spec spec;
    char path[600], prof[700];
    deepc_model *m = open_preset("tiny-deepseek2", "q8_0", &spec, path, sizeof path);
    uint64_t total, min, slot;
    geometry(m, &total, &min, &slot);
    snprintf(prof, sizeof prof, "%s/bad.profile", root);
    struct { const char *text, *why; deepc_status rc; } cases[] = {
        { "hello\n", "not a deepc expert profile", DEEPC_ERR_FORMAT },
        { "# deepc expert profile 1\n# layers 5 experts 8 tokens 1\n", "this one has 3 and 8", DEEPC_ERR_INVALID_ARG },
        { "# deepc expert profile 1\n# layers 3 experts 8 tokens 1\n0 1 5\n", "line 3: layer 0 expert 1 is not a routed expert", DEEPC_ERR_FORMAT },
        { "# deepc expert profile 1\n# layers 3 experts 8 tokens 1\n1 8 5\n", "line 3: layer 1 expert 8", DEEPC_ERR_FORMAT },
        { "# deepc expert profile 1\n# layers 3 experts 8 tokens 1\n1 2 x\n", "line 3: expected", DEEPC_ERR_FORMAT },
        { "# deepc expert profile 1\n1 2 3\n", "'# layers L experts X' line is missing", DEEPC_ERR_FORMAT },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_text(prof, cases[i].text);
        deepc_session_params sp = deepc_session_default_params();
        sp.n_ctx = 32;
        sp.expert_cache_bytes = total / 2;
        sp.expert_pin_profile = prof;
        deepc_session *s = NULL;
        assert_int_equal(deepc_session_create(m, &sp, &s), cases[i].rc);
        if (!strstr(deepc_open_error(), cases[i].why)) fail_msg("case %zu: '%s' lacks '%s'", i, deepc_open_error(), cases[i].why);
    }
    deepc_session_params sp = deepc_session_default_params();
    sp.expert_cache_bytes = total / 2;
    snprintf(prof, sizeof prof, "%s/missing.profile", root);
    sp.expert_pin_profile = prof;
    deepc_session *s = NULL;
    assert_int_equal(deepc_session_create(m, &sp, &s), DEEPC_ERR_IO);
    deepc_model_close(m);
}

/* ---- stats ----------------------------------------------------------------------- */

static void test_stats_are_versioned_and_reset(void **state) {
    (void)state;
    hfgen_moe_spec spec;
    char path[600];
    deepc_model *m = open_preset("tiny-deepseek2", "q8_0", &spec, path, sizeof path);
    uint64_t total, min, slot;
    geometry(m, &total, &min, &slot);
    int32_t ids[N_TOK];
    prompt(hfgen_moe_tokenizer_size(&spec), ids, N_TOK);
    cfg c = { .budget = min + slot };
    deepc_session *s = make_session(m, &c);
    assert_int_equal(deepc_session_eval(s, ids, N_TOK, NULL), DEEPC_OK);
    /* an old caller's shorter struct: nothing past its size is written */
    unsigned char buf[sizeof(deepc_expert_stats) + 16];
    memset(buf, 0xAB, sizeof buf);
    deepc_expert_stats *old = (deepc_expert_stats *)(void *)buf;
    old->struct_size = offsetof(deepc_expert_stats, cache_bytes);
    assert_int_equal(deepc_session_expert_stats(s, old), DEEPC_OK);
    assert_true(old->streaming);
    for (size_t i = offsetof(deepc_expert_stats, cache_bytes); i < sizeof buf; i++) assert_int_equal(buf[i], 0xAB);
    deepc_expert_stats st = { .struct_size = sizeof st };
    assert_int_equal(deepc_session_expert_stats(s, &st), DEEPC_OK);
    assert_true(st.misses > 0 && st.tokens == N_TOK);
    assert_int_equal(deepc_session_expert_stats_reset(s), DEEPC_OK);
    assert_int_equal(deepc_session_expert_stats(s, &st), DEEPC_OK);
    assert_true(st.lookups == 0 && st.misses == 0 && st.reads == 0 && st.tokens == 0 && st.stall_s == 0.0);
    assert_true(st.n_slots > 0 && st.cache_bytes > 0);     /* configuration stays */
    assert_int_equal(deepc_session_expert_stats(NULL, &st), DEEPC_ERR_INVALID_ARG);
    deepc_session_destroy(s);
    deepc_model_close(m);
}

/* ---- the command line ------------------------------------------------------------ */

static char out[1 << 15];

/* Runs "$BUILD/deepc ARGS" (stdin from `input`), output into `out`; returns
 * the exit status. */
static int cli(const char *input, const char *fmt, ...) {
    const char *b = getenv("BUILD");
    char args[2048], cmd[4096], in[300], o[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(in, sizeof in, "%s/cli.in", root);
    snprintf(o, sizeof o, "%s/cli.out", root);
    write_text(in, input ? input : "");
    snprintf(cmd, sizeof cmd, "%s/deepc %s < '%s' > '%s' 2>&1", b ? b : "build", args, in, o);
    int st = system(cmd);
    FILE *f = fopen(o, "rb");
    assert_non_null(f);
    size_t n = fread(out, 1, sizeof out - 1, f);
    fclose(f);
    out[n] = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void expect(int rc, int want, const char *needle) {
    if (rc != want) fail_msg("exit status %d, expected %d; output:\n%s", rc, want, out);
    if (needle && !strstr(out, needle)) fail_msg("output does not mention '%s':\n%s", needle, out);
}

static void test_cli_expert_cache_profile_and_stats(void **state) {
    (void)state;
    const char *b = getenv("BUILD");
    char bin[300];
    snprintf(bin, sizeof bin, "%s/deepc", b ? b : "build");
    if (access(bin, X_OK) != 0) skip();
    hfgen_moe_spec spec;
    char path[600], prompts[700], prof[700];
    deepc_model *m = open_preset("tiny-deepseek2", "q8_0", &spec, path, sizeof path);
    deepc_model_close(m);
    /* the same greedy ids with every budget; the figures follow the timings */
    expect(cli(NULL, "run -m '%s' --ids 5,6,7,8 -n 12 --temp 0", path), 0, NULL);
    char want[256];
    snprintf(want, sizeof want, "%.*s", (int)strcspn(out, "\n"), out);
    expect(cli(NULL, "run -m '%s' --ids 5,6,7,8 -n 12 --temp 0 --expert-cache 30%%", path), 0, "experts: cache");
    assert_memory_equal(out, want, strlen(want));
    assert_non_null(strstr(out, "hit rate"));
    assert_non_null(strstr(out, "MiB read per token"));
    assert_non_null(strstr(out, "stalled on I/O"));
    expect(cli(NULL, "run -m '%s' --ids 5,6,7,8 -n 12 --temp 0 --expert-cache 16K", path), 0, "experts: cache");
    assert_memory_equal(out, want, strlen(want));
    /* bad sizes are usage errors; too small a budget names the minimum */
    expect(cli(NULL, "run -m '%s' --ids 5 --expert-cache 12Q", path), 2, "--expert-cache needs a size");
    expect(cli(NULL, "run -m '%s' --ids 5 --expert-cache 101%%", path), 2, "--expert-cache needs a size");
    expect(cli(NULL, "run -m '%s' --ids 5 --expert-cache 8K", path), 1, "the minimum is 16.00 KiB (16384 bytes)");
    /* --max-ram: too little names a limit that works; with it, the same ids;
       the other streaming flags are accepted and keep the ids */
    expect(cli(NULL, "run -m '%s' --ids 5 --max-ram 1K", path), 1, "use at least");
    expect(cli(NULL, "run -m '%s' --ids 5 --max-ram 12Q", path), 2, "--max-ram needs a size");
    expect(cli(NULL, "run -m '%s' --ids 5,6,7,8 -n 12 --temp 0 --max-ram 50%% --no-prefetch --expert-io-threads 2 --buffered-io", path), 0, "experts: all");
    assert_memory_equal(out, want, strlen(want));
    expect(cli(NULL, "run -m '%s' --ids 5,6,7,8 -n 12 --temp 0 --expert-cache 16K --no-prefetch --buffered-io", path), 0, "buffered I/O");
    assert_memory_equal(out, want, strlen(want));
    assert_non_null(strstr(out, "prefetch 0 issued"));
    expect(cli(NULL, "run -m '%s' --ids 5 --expert-io-threads 0", path), 2, "--expert-io-threads needs");
    /* bench --diskbw: the probe's rate and the I/O bound of tg */
    expect(cli(NULL, "bench -m '%s' -p 4 -n 4 -r 1 --expert-cache 16K --diskbw --expert-io-threads 2", path), 0, "expert reads:");
    assert_non_null(strstr(out, "2 reader(s)"));
    assert_non_null(strstr(out, "I/O bound tg:"));
    double bw = 0;
    bool direct = false;
    deepc_model *pm;
    if (deepc_model_open(path, &pm)) fail_msg("open: %s", deepc_open_error());
    assert_int_equal(deepc_model_expert_read_bw(pm, 3, 50, false, &bw, &direct), DEEPC_OK);
    assert_true(bw > 0);
    assert_int_equal(deepc_model_expert_read_bw(pm, 2, 20, true, &bw, &direct), DEEPC_OK);
    assert_false(direct);                       /* buffered asked: never bypassed */
    assert_int_equal(deepc_model_expert_read_bw(pm, 0, 20, true, &bw, &direct), DEEPC_ERR_INVALID_ARG);
    deepc_model_close(pm);
    /* profile, then pin it */
    snprintf(prompts, sizeof prompts, "%s/prompts.txt", root);
    snprintf(prof, sizeof prof, "%s/cli.profile", root);
    write_text(prompts, "hello world\n\nthe cat sat on the mat\n");
    expect(cli(NULL, "profile -m '%s' -p '%s' -o '%s' -n 4", path, prompts, prof), 0, "2 prompts");
    expect(cli(NULL, "run -m '%s' --ids 5,6,7,8 -n 12 --temp 0 --expert-cache 50%% --pin-profile '%s'", path, prof), 0, "pinned");
    assert_null(strstr(out, " 0 pinned"));
    assert_memory_equal(out, want, strlen(want));
    expect(cli(NULL, "profile -m '%s'", path), 2, "no prompts given");
    /* chat shows the figures under /stats */
    expect(cli("hi\n/stats\n/quit\n", "chat -m '%s' -n 4 --temp 0 --expert-cache 50%%", path), 0, "[experts: cache");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v2_q8_0_every_budget_matches_resident_bitwise),
        cmocka_unit_test(test_v2_group_f32_every_budget_matches_resident_bitwise),
        cmocka_unit_test(test_v3_q8_0_every_budget_matches_resident_bitwise),
        cmocka_unit_test(test_budget_below_minimum_is_refused_naming_it),
        cmocka_unit_test(test_max_ram_derives_the_expert_budget),
        cmocka_unit_test(test_prompt_batch_reads_each_expert_once),
        cmocka_unit_test(test_read_error_mid_generation_is_reported_and_recoverable),
        cmocka_unit_test(test_short_read_mid_generation_is_reported_and_recoverable),
        cmocka_unit_test(test_read_error_in_prompt_batch_keeps_earlier_batches),
        cmocka_unit_test(test_profile_round_trips_and_pins_hot_experts),
        cmocka_unit_test(test_bad_profiles_are_refused_with_reason),
        cmocka_unit_test(test_stats_are_versioned_and_reset),
        cmocka_unit_test(test_cli_expert_cache_profile_and_stats),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
