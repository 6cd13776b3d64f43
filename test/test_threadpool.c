/* test_threadpool.c - the persistent pool: every (ith, nth) slot runs exactly
 * once per job, jobs can follow each other back to back or after the workers
 * went to sleep, row-split results do not depend on the thread count, and
 * destroy works on idle and never-used pools. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "threadpool.h"

#define MAX_T 8

static void sleep_ms(long ms) {
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* ---- counting task ------------------------------------------------------ */

typedef struct {
    atomic_int count[MAX_T];   /* runs per ith */
    atomic_int bad_nth;        /* calls that saw the wrong nth */
    int expect_nth;
} count_job;

static void count_task(void *arg, int ith, int nth) {
    count_job *j = arg;
    if (nth != j->expect_nth || ith < 0 || ith >= nth) atomic_fetch_add(&j->bad_nth, 1);
    else atomic_fetch_add(&j->count[ith], 1);
}

static void count_job_init(count_job *j, int nth) {
    for (int i = 0; i < MAX_T; i++) atomic_init(&j->count[i], 0);
    atomic_init(&j->bad_nth, 0);
    j->expect_nth = nth;
}

static void test_every_ith_runs_exactly_once_per_job(void **state) {
    (void)state;
    deepc_pool *p = deepc_pool_create(4);
    assert_non_null(p);
    assert_int_equal(deepc_pool_size(p), 4);
    count_job j;
    count_job_init(&j, 4);
    deepc_pool_run(p, count_task, &j);
    /* run returns only after every slot finished, so no atomics race here */
    for (int i = 0; i < 4; i++) assert_int_equal(atomic_load(&j.count[i]), 1);
    assert_int_equal(atomic_load(&j.bad_nth), 0);
    deepc_pool_destroy(p);
}

/* Back-to-back jobs exercise the spin path; the per-job check catches a worker
 * that skipped a generation or ran one twice. */
static void test_many_jobs_in_a_row_each_run_once(void **state) {
    (void)state;
    for (int nth = 2; nth <= 4; nth++) {
        deepc_pool *p = deepc_pool_create(nth);
        assert_non_null(p);
        count_job j;
        count_job_init(&j, nth);
        for (int job = 1; job <= 20000; job++) {
            deepc_pool_run(p, count_task, &j);
            for (int i = 0; i < nth; i++)
                if (atomic_load(&j.count[i]) != job) fail_msg("nth=%d job=%d ith=%d", nth, job, i);
        }
        assert_int_equal(atomic_load(&j.bad_nth), 0);
        deepc_pool_destroy(p);
    }
}

/* Sleeping longer than the spin makes the workers block on the condition
 * variable; the next job must wake them. */
static void test_job_after_idle_sleep_wakes_workers(void **state) {
    (void)state;
    deepc_pool *p = deepc_pool_create(3);
    assert_non_null(p);
    count_job j;
    count_job_init(&j, 3);
    for (int job = 1; job <= 5; job++) {
        sleep_ms(20);
        deepc_pool_run(p, count_task, &j);
        for (int i = 0; i < 3; i++) assert_int_equal(atomic_load(&j.count[i]), job);
    }
    deepc_pool_destroy(p);
}

/* ---- row-split task ----------------------------------------------------- */

enum { ROWS = 257, COLS = 129 };

typedef struct {
    const float *a;   /* (ROWS, COLS) */
    const float *x;   /* (COLS) */
    float *y;         /* (ROWS) */
} matvec_job;

/* Rows split into contiguous chunks by (ith, nth): each row's dot product is
 * computed by exactly one thread in a fixed order, so y cannot depend on nth. */
static void matvec_task(void *arg, int ith, int nth) {
    matvec_job *j = arg;
    int per = (ROWS + nth - 1) / nth;
    int r0 = ith * per, r1 = r0 + per < ROWS ? r0 + per : ROWS;
    for (int r = r0; r < r1; r++) {
        float s = 0.0f;
        for (int c = 0; c < COLS; c++) s += j->a[r * COLS + c] * j->x[c];
        j->y[r] = s;
    }
}

static void test_row_split_results_identical_for_1_2_4_threads(void **state) {
    (void)state;
    static float a[ROWS * COLS], x[COLS], y[3][ROWS];
    uint32_t s = 12345;
    for (int i = 0; i < ROWS * COLS; i++) {
        s = s * 1664525u + 1013904223u;
        a[i] = (float)(s >> 8) * 0x1p-24f - 0.5f;
    }
    for (int i = 0; i < COLS; i++) x[i] = (float)i * 0.01f - 0.6f;
    static const int threads[3] = { 1, 2, 4 };
    for (int t = 0; t < 3; t++) {
        deepc_pool *p = deepc_pool_create(threads[t]);
        assert_non_null(p);
        memset(y[t], 0xff, sizeof y[t]); /* NaN pattern: an unwritten row shows */
        matvec_job j = { a, x, y[t] };
        deepc_pool_run(p, matvec_task, &j);
        deepc_pool_destroy(p);
    }
    assert_memory_equal(y[0], y[1], sizeof y[0]);
    assert_memory_equal(y[0], y[2], sizeof y[0]);
}

/* ---- lifecycle ---------------------------------------------------------- */

static void test_destroy_while_idle(void **state) {
    (void)state;
    deepc_pool *p = deepc_pool_create(4);
    assert_non_null(p);
    count_job j;
    count_job_init(&j, 4);
    deepc_pool_run(p, count_task, &j);
    sleep_ms(20); /* workers are asleep on the condition variable now */
    deepc_pool_destroy(p);
}

static void test_destroy_right_after_create(void **state) {
    (void)state;
    /* workers may not even have started waiting yet */
    for (int i = 0; i < 50; i++) deepc_pool_destroy(deepc_pool_create(3));
}

static void test_destroy_null_is_noop(void **state) {
    (void)state;
    deepc_pool_destroy(NULL);
}

typedef struct {
    pthread_t caller;
    int ran_on_caller;
    int nth_seen;
} inline_job;

static void inline_task(void *arg, int ith, int nth) {
    inline_job *j = arg;
    j->ran_on_caller = ith == 0 && pthread_equal(pthread_self(), j->caller);
    j->nth_seen = nth;
}

static void test_pool_of_one_runs_inline_on_caller(void **state) {
    (void)state;
    deepc_pool *p = deepc_pool_create(1);
    assert_non_null(p);
    assert_int_equal(deepc_pool_size(p), 1);
    inline_job j = { pthread_self(), 0, 0 };
    deepc_pool_run(p, inline_task, &j);
    assert_true(j.ran_on_caller);
    assert_int_equal(j.nth_seen, 1);
    deepc_pool_destroy(p);
}

typedef struct {
    pthread_t caller;
    atomic_int ith0_on_caller;     /* set by ith 0 */
    atomic_int others_on_caller;   /* other slots that ran on the caller */
    atomic_int runs[MAX_T];
    atomic_int hold_ith1;          /* ith 1 sleeps this many ms */
} who_job;

static void who_task(void *arg, int ith, int nth) {
    (void)nth;
    who_job *j = arg;
    int on = pthread_equal(pthread_self(), j->caller) != 0;
    if (ith == 0) atomic_store(&j->ith0_on_caller, on);
    else if (on) atomic_fetch_add(&j->others_on_caller, 1);
    if (ith == 1 && atomic_load(&j->hold_ith1)) sleep_ms(atomic_load(&j->hold_ith1));
    atomic_fetch_add(&j->runs[ith], 1);
}

static void who_init(who_job *j) {
    memset(j, 0, sizeof *j);
    j->caller = pthread_self();
    atomic_init(&j->ith0_on_caller, 0);
    atomic_init(&j->others_on_caller, 0);
    atomic_init(&j->hold_ith1, 0);
    for (int i = 0; i < MAX_T; i++) atomic_init(&j->runs[i], 0);
}

/* ith 0 always runs on the caller. The workers' slots run on a worker or,
 * when a worker has not started by the time the caller is through its own
 * share (just created, asleep, descheduled), on the caller. */
static void test_caller_runs_ith_zero_and_workers_the_rest(void **state) {
    (void)state;
    deepc_pool *p = deepc_pool_create(3);
    assert_non_null(p);
    who_job j;
    who_init(&j);
    deepc_pool_run(p, who_task, &j);
    assert_int_equal(atomic_load(&j.ith0_on_caller), 1);
    for (int i = 0; i < 3; i++) assert_int_equal(atomic_load(&j.runs[i]), 1);
    deepc_pool_destroy(p);
}

/* A slot whose worker is still busy is waited for, never run twice: ith 1
 * sleeps 30 ms in every job, on whichever thread runs it, and the job only
 * returns once it is done. Jobs after it see every slot reopened. */
static void test_slow_slot_is_waited_for_and_runs_once(void **state) {
    (void)state;
    deepc_pool *p = deepc_pool_create(3);
    assert_non_null(p);
    for (int k = 0; k < 3; k++) {
        who_job j;
        who_init(&j);
        atomic_store(&j.hold_ith1, 30);
        deepc_pool_run(p, who_task, &j);
        for (int i = 0; i < 3; i++) assert_int_equal(atomic_load(&j.runs[i]), 1);
    }
    deepc_pool_destroy(p);
}

/* Workers that are asleep when a job arrives (after 50 ms idle, past the
 * spin) either wake in time or have their slot run by the caller; either way
 * every slot runs once, over many jobs with idle gaps between. */
static void test_jobs_after_idle_gaps_run_every_slot_once(void **state) {
    (void)state;
    deepc_pool *p = deepc_pool_create(4);
    assert_non_null(p);
    int on_caller = 0;
    for (int k = 0; k < 20; k++) {
        who_job j;
        who_init(&j);
        deepc_pool_run(p, who_task, &j);
        for (int i = 0; i < 4; i++) assert_int_equal(atomic_load(&j.runs[i]), 1);
        on_caller += atomic_load(&j.others_on_caller);
        if (k % 5 == 4) sleep_ms(50);
    }
    printf("  worker slots run by the caller: %d of 60\n", on_caller);
    deepc_pool_destroy(p);
}

static void test_default_threads_is_in_range(void **state) {
    (void)state;
    int n = deepc_default_threads();
    assert_true(n >= 1 && n <= 256);
}

static void test_nonpositive_size_uses_default_threads(void **state) {
    (void)state;
    deepc_pool *p = deepc_pool_create(0);
    assert_non_null(p);
    assert_int_equal(deepc_pool_size(p), deepc_default_threads());
    deepc_pool_destroy(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_ith_runs_exactly_once_per_job),
        cmocka_unit_test(test_many_jobs_in_a_row_each_run_once),
        cmocka_unit_test(test_job_after_idle_sleep_wakes_workers),
        cmocka_unit_test(test_row_split_results_identical_for_1_2_4_threads),
        cmocka_unit_test(test_destroy_while_idle),
        cmocka_unit_test(test_destroy_right_after_create),
        cmocka_unit_test(test_destroy_null_is_noop),
        cmocka_unit_test(test_pool_of_one_runs_inline_on_caller),
        cmocka_unit_test(test_caller_runs_ith_zero_and_workers_the_rest),
        cmocka_unit_test(test_slow_slot_is_waited_for_and_runs_once),
        cmocka_unit_test(test_jobs_after_idle_gaps_run_every_slot_once),
        cmocka_unit_test(test_default_threads_is_in_range),
        cmocka_unit_test(test_nonpositive_size_uses_default_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
