/* threadpool.h - a persistent pthread pool created once per session. Work is
 * split by (ith, nth) so results never depend on timing. */
#ifndef DEEPC_THREADPOOL_H
#define DEEPC_THREADPOOL_H

typedef struct deepc_pool deepc_pool;
typedef void (*deepc_task_fn)(void *arg, int ith, int nth);

/* n_threads counts the calling thread; n_threads-1 workers are started. */
deepc_pool *deepc_pool_create(int n_threads);
void deepc_pool_destroy(deepc_pool *pool);             /* NULL is a no-op */
int deepc_pool_size(const deepc_pool *pool);
/* Runs fn(arg, ith, nth) on every thread (the caller is ith 0) and returns
 * when all have finished. No allocation. */
void deepc_pool_run(deepc_pool *pool, deepc_task_fn fn, void *arg);
/* Number of threads to use by default (physical cores when known). */
int deepc_default_threads(void);

#endif
