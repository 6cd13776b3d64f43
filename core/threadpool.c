/* threadpool.c - the persistent worker pool a session runs its ops on, and
 * deepc_default_threads() (physical core count).
 *
 * Protocol (one job at a time, dispatched by the one thread that owns the pool):
 *   caller: store fn/arg, open every worker's slot (release), bump `gen`
 *           (seq_cst) and wake any worker asleep on `wake`; run ith 0
 *           itself; then take over every slot still open (running fn with
 *           that slot's ith) and wait for the slots a worker claimed (spin
 *           briefly, then sleep on `done`).
 *   worker: wait until gen differs from the last one it saw (spin briefly,
 *           then sleep on `wake`), claim its slot (open -> running, one CAS),
 *           run fn(arg, ith, nth), mark the slot done.
 * Every ith runs exactly once per job, on whichever thread gets to its slot
 * first. The caller never waits for a worker that has not started: on a busy
 * machine (or a laptop whose other programs take a core) a descheduled
 * worker used to hold every op of a forward pass for a scheduler time slice
 * (measured here with a converter running beside: ~50-330 us per job); now
 * the caller does that worker's share and moves on, and a worker that wakes
 * late finds its slot taken. The tasks split work by ith (fixed slices or
 * chunks claimed from a counter), so who runs a slice never changes a result.
 * The short spins make back-to-back ops cheap (no futex round trip between
 * the ops of one forward pass); the sleeps keep idle workers off the CPU.
 * Every condition-variable wait re-checks its predicate under the mutex, and
 * a waker takes the mutex before signalling a thread that announced it sleeps
 * (see wait_new_gen), so no wakeup is lost and the fast path takes no lock.
 * A slot is reopened only when the caller has seen it done or taken, so a
 * worker's successful claim always belongs to the job whose fn/arg it reads
 * (the release of the reopening orders them), however stale its gen. */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sched_getaffinity, CPU_ISSET */
#endif
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#ifdef __linux__
#include <sched.h>
#endif
#ifdef __APPLE__
#include <sys/sysctl.h>
#include <sys/types.h>
#endif

#define POOL_MAX_THREADS 256
/* Pause iterations before sleeping: ~10 to ~200 us depending on the CPU's
 * pause latency; longer than the gap between two ops of a forward pass, short
 * enough that an idle session quickly stops using CPU. */
#define POOL_SPIN 4000

struct deepc_pool {
    int n;                      /* threads including the caller */
    int n_started;              /* workers actually running (for cleanup) */
    pthread_t *threads;         /* n-1 workers */
    struct worker_arg *wargs;   /* n-1 */
    pthread_mutex_t mu;
    pthread_cond_t wake;        /* workers wait here for a new gen */
    pthread_cond_t done;        /* the caller waits here for a claimed slot to finish */
    bool sync_ok;               /* mu/wake/done initialised */

    /* the job: written by the caller before it opens the slots */
    deepc_task_fn fn;
    void *arg;
    struct pool_slot *slots;    /* n-1, one cache line each */
    atomic_uint gen;
    atomic_bool stop;
    atomic_int n_sleeping;      /* workers blocked (or about to block) on wake */
    atomic_bool caller_sleeping;/* the caller blocked (or about to) on done */
    int spin;                   /* pause iterations before blocking */
};

/* A worker's share of the current job. */
enum { SLOT_OPEN, SLOT_RUNNING, SLOT_TAKEN, SLOT_DONE };
struct pool_slot {
    _Alignas(64) atomic_int state;  /* the alignment makes each slot a cache line */
};

struct worker_arg {
    deepc_pool *pool;
    int ith;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("pause");
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield");
#endif
}

/* ---- workers ------------------------------------------------------------ */

/* The sleep paths use the Dekker pattern on seq_cst atomics: a sleeper
 * announces itself (n_sleeping / caller_sleeping) BEFORE re-checking its
 * predicate, and a waker changes the predicate BEFORE reading the announcement.
 * In the single total order of seq_cst operations either the waker sees the
 * announcement (and takes the mutex to signal, which cannot happen between the
 * sleeper's check and its wait) or the sleeper sees the new predicate and does
 * not wait. This keeps the mutex out of the fast path entirely. */
static unsigned wait_new_gen(deepc_pool *p, unsigned seen) {
    unsigned g;
    for (int i = 0; i < p->spin; i++) {
        g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen) return g;
        cpu_relax();
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->n_sleeping, 1);
    while ((g = atomic_load(&p->gen)) == seen) pthread_cond_wait(&p->wake, &p->mu);
    atomic_fetch_sub(&p->n_sleeping, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *v) {
    struct worker_arg *wa = v;
    deepc_pool *p = wa->pool;
    /* gen is 0 when workers start and only the caller changes it after every
     * worker has finished the previous job, so 0 is the right start value
     * even if a job was dispatched before this thread first ran. */
    unsigned seen = 0;
    atomic_int *st = &p->slots[wa->ith - 1].state;
    for (;;) {
        seen = wait_new_gen(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        int open = SLOT_OPEN;
        if (!atomic_compare_exchange_strong(st, &open, SLOT_RUNNING)) continue; /* the caller took it */
        p->fn(p->arg, wa->ith, p->n);
        atomic_store(st, SLOT_DONE);
        if (atomic_load(&p->caller_sleeping)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

/* Bumps gen (publishing fn/arg/stop: seq_cst includes release) and wakes
 * workers that announced they sleep; spinning workers just see the new gen. */
static void publish(deepc_pool *p) {
    atomic_fetch_add(&p->gen, 1u);
    if (atomic_load(&p->n_sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
}

/* ---- create / destroy --------------------------------------------------- */

/* CPUs this process may run on (the affinity mask on Linux, so taskset and
 * container cpusets count), at least 1. */
static int usable_cpus(void) {
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)(n < INT32_MAX ? n : INT32_MAX) : 1;
}

/* n_threads <= 0 means deepc_default_threads(); values above 256 are clamped.
 * The pool is owned by the caller; free with deepc_pool_destroy(). */
deepc_pool *deepc_pool_create(int n_threads) {
    if (n_threads <= 0) n_threads = deepc_default_threads();
    if (n_threads > POOL_MAX_THREADS) n_threads = POOL_MAX_THREADS;
    deepc_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    atomic_init(&p->gen, 0u);
    atomic_init(&p->stop, false);
    atomic_init(&p->n_sleeping, 0);
    atomic_init(&p->caller_sleeping, false);
    /* Spinning only helps when every thread has a core: with more threads
     * than CPUs a spinner holds the core the thread it waits for needs
     * (measured: ~400 us per empty job with 4 threads on 2 cores). */
    p->spin = n_threads > usable_cpus() ? 0 : POOL_SPIN;
    if (n_threads == 1) return p; /* runs inline: no threads, no sync objects */

    if (pthread_mutex_init(&p->mu, NULL) != 0) goto fail;
    if (pthread_cond_init(&p->wake, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        goto fail;
    }
    if (pthread_cond_init(&p->done, NULL) != 0) {
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->mu);
        goto fail;
    }
    p->sync_ok = true;
    p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
    p->wargs = calloc((size_t)n_threads - 1, sizeof *p->wargs);
    _Static_assert(sizeof(struct pool_slot) == 64, "one slot per cache line");
    p->slots = aligned_alloc(sizeof(struct pool_slot), ((size_t)n_threads - 1) * sizeof(struct pool_slot));
    if (!p->threads || !p->wargs || !p->slots) goto fail;
    for (int i = 0; i < n_threads - 1; i++) atomic_init(&p->slots[i].state, SLOT_DONE);
    for (int i = 0; i < n_threads - 1; i++) {
        p->wargs[i].pool = p;
        p->wargs[i].ith = i + 1;
        if (pthread_create(&p->threads[i], NULL, worker_main, &p->wargs[i]) != 0) goto fail;
        p->n_started++;
    }
    return p;
fail:
    deepc_pool_destroy(p);
    return NULL;
}

/* Must not be called while deepc_pool_run is in progress (the pool has one
 * owner, so this is the owner's own ordering). Accepts half-built pools. */
void deepc_pool_destroy(deepc_pool *p) {
    if (!p) return;
    if (p->n_started > 0) {
        atomic_store_explicit(&p->stop, true, memory_order_relaxed);
        publish(p); /* the seq_cst bump of gen publishes stop */
        for (int i = 0; i < p->n_started; i++) pthread_join(p->threads[i], NULL);
    }
    if (p->sync_ok) {
        pthread_cond_destroy(&p->done);
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->mu);
    }
    free(p->threads);
    free(p->wargs);
    free(p->slots);
    free(p);
}

int deepc_pool_size(const deepc_pool *p) {
    return p ? p->n : 1;
}

/* ---- run ---------------------------------------------------------------- */

/* Waits until no worker runs slot i any more (it was done or taken). */
static void wait_slot(deepc_pool *p, atomic_int *st) {
    for (int i = 0; i < p->spin; i++) {
        if (atomic_load_explicit(st, memory_order_acquire) != SLOT_RUNNING) return;
        cpu_relax();
    }
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->caller_sleeping, true);
    while (atomic_load(st) == SLOT_RUNNING) pthread_cond_wait(&p->done, &p->mu);
    atomic_store(&p->caller_sleeping, false);
    pthread_mutex_unlock(&p->mu);
}

/* A NULL pool behaves like a pool of one: fn runs inline with (0, 1). */
void deepc_pool_run(deepc_pool *p, deepc_task_fn fn, void *arg) {
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    for (int i = 0; i < p->n - 1; i++) atomic_store_explicit(&p->slots[i].state, SLOT_OPEN, memory_order_release);
    publish(p);

    fn(arg, 0, p->n);

    for (int i = 0; i < p->n - 1; i++) {
        int open = SLOT_OPEN;
        if (atomic_compare_exchange_strong(&p->slots[i].state, &open, SLOT_TAKEN)) fn(arg, i + 1, p->n);
    }
    for (int i = 0; i < p->n - 1; i++) wait_slot(p, &p->slots[i].state);
}

/* ---- default thread count ----------------------------------------------- */

#ifdef __linux__
static long read_long(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    if (fscanf(f, "%ld", &v) != 1) v = -1;
    fclose(f);
    return v;
}

/* Distinct (package, core) pairs among the CPUs this process may run on, from
 * sysfs (cheaper and more regular than parsing /proc/cpuinfo); 0 if unknown.
 * Honouring the affinity mask matters in containers and under taskset, where
 * the machine's core count overstates what we get. */
static int linux_physical_cores(void) {
    enum { MAX_PAIRS = 1024 };
    long pairs[MAX_PAIRS][2];
    int n_pairs = 0;
    cpu_set_t set;
    bool have_mask = sched_getaffinity(0, sizeof set, &set) == 0;
    long max_cpu = have_mask ? CPU_SETSIZE : sysconf(_SC_NPROCESSORS_CONF);
    for (int cpu = 0; cpu < max_cpu; cpu++) {
        if (have_mask && !CPU_ISSET(cpu, &set)) continue;
        char path[128];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/core_id", cpu);
        long core = read_long(path);
        if (core < 0) continue; /* absent or offline */
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/physical_package_id", cpu);
        long pkg = read_long(path);
        bool dup = false;
        for (int i = 0; i < n_pairs && !dup; i++) dup = pairs[i][0] == pkg && pairs[i][1] == core;
        if (!dup && n_pairs < MAX_PAIRS) {
            pairs[n_pairs][0] = pkg;
            pairs[n_pairs][1] = core;
            n_pairs++;
        }
    }
    /* No topology in sysfs (some containers): the CPUs we may use. */
    if (n_pairs == 0 && have_mask) n_pairs = CPU_COUNT(&set);
    return n_pairs;
}
#endif

int deepc_default_threads(void) {
    long n = 0;
#if defined(__linux__)
    n = linux_physical_cores();
#elif defined(__APPLE__)
    int v = 0;
    size_t len = sizeof v;
    if (sysctlbyname("hw.physicalcpu", &v, &len, NULL, 0) == 0) n = v;
#endif
    if (n <= 0) n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    if (n > POOL_MAX_THREADS) n = POOL_MAX_THREADS;
    return (int)n;
}
