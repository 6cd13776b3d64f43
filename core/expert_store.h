/* expert_store.h - routed experts of a MoE model under a byte budget. Internal.
 *
 * When the budget covers every routed expert (or is 0), no store exists and
 * the forward pass uses the experts in place from the file mapping. Otherwise
 * a session owns a store: one global pool of equal slots, each holding one
 * expert record (gate, up and down of one expert of one layer, contiguous and
 * 4 KiB-aligned in the .dqf, see FORMAT.md), filled on demand by one aligned
 * read per expert that bypasses the page cache where the OS allows (O_DIRECT
 * on Linux, F_NOCACHE on macOS; buffered pread otherwise).
 *
 *   - lookup is O(1): a (layer, expert) -> slot index array, with the slot
 *     holding its key back as the identity check;
 *   - one mutex guards bookkeeping only; it is never held during a read;
 *   - reads run on a pool of I/O threads (demand reads before prefetches), so
 *     the misses of one layer load in parallel;
 *   - eviction: least valuable first, value = (uses + 1) / (tokens since last
 *     use + 1) with uses halved every 64 tokens (LRU with frequency); layers
 *     holding less than half their fair share are evicted from last
 *     (per-layer fairness); ties go to the layer whose next use is furthest;
 *   - pinning: the hottest experts of a routing profile (`deepc profile`) are
 *     loaded at creation and never evicted (at most 3/4 of the slots);
 *   - prefetch: a helper thread applies the next MoE layer's router to the
 *     current residual stream and queues the experts it predicts, so disk time
 *     overlaps compute.
 * None of this changes what is computed: a slot holds exactly the bytes of the
 * file, so outputs are bit-identical to the resident run for every budget. */
#ifndef DEEPC_EXPERT_STORE_H
#define DEEPC_EXPERT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "deepc.h"
#include "util.h"

struct deepc_model;
struct deepc_wt;
typedef struct deepc_expert_store deepc_expert_store;

typedef struct deepc_expert_store_params {
    uint64_t budget_bytes;     /* 0 = everything resident (no store) */
    const char *pin_profile;   /* routing profile file, or NULL */
    int n_io_threads;          /* 0 = 4 */
    int n_batch;               /* the session's batch size (prefetch hint rows) */
    bool prefetch;             /* router lookahead on a helper thread */
    bool buffered_io;          /* plain pread through the page cache */
} deepc_expert_store_params;

/* Creates the store for model m, or sets *out to NULL when none is needed
 * (dense model, budget 0, or a budget that covers all routed experts; a pin
 * profile is still read and checked then). Fails with DEEPC_ERR_INVALID_ARG
 * and a message naming the minimum when the budget cannot hold one token's
 * active experts of one layer. The store is owned by the caller; free it
 * with deepc_expert_store_destroy. */
int deepc_expert_store_create(const struct deepc_model *m, const deepc_expert_store_params *p,
                              deepc_expert_store **out, deepc_err *err);
void deepc_expert_store_destroy(deepc_expert_store *st);     /* NULL is a no-op */

/* Bytes of all routed experts of m (0 for dense models), and the smallest
 * budget a store accepts: top_k slots of one 4 KiB-rounded expert record. */
uint64_t deepc_expert_store_total_bytes(const struct deepc_model *m);
uint64_t deepc_expert_store_min_budget(const struct deepc_model *m);

/* Makes experts ids[0..n) (distinct) of layer `layer` resident, in order, and
 * holds them until deepc_expert_store_release. Takes as many as the pool can
 * hold at once (at least 1) and returns that count; the caller processes
 * those and asks again for the rest. views receives 3 weight views per
 * expert (gate, up, down) pointing into the slots. x_hint (n_tok residual rows
 * of n_embd floats, or NULL) lets the helper thread prefetch the next MoE
 * layer. Returns a negative deepc_status with err set when a read failed; the
 * store stays consistent and a later call may succeed. Compute thread only;
 * allocates nothing. */
int deepc_expert_store_acquire(deepc_expert_store *st, int layer, const int32_t *ids, int n,
                               const float *x_hint, int n_tok, struct deepc_wt *views, deepc_err *err);
/* Releases what the last acquire returned. */
void deepc_expert_store_release(deepc_expert_store *st);
/* Counts n evaluated tokens (the recency clock of the eviction policy). */
void deepc_expert_store_tokens(deepc_expert_store *st, int n);

/* Fills the streaming fields of *out (everything but struct_size, tokens,
 * lookups and budget_bytes, which the session keeps). */
void deepc_expert_store_stats(deepc_expert_store *st, deepc_expert_stats *out);
void deepc_expert_store_reset_stats(deepc_expert_store *st);

/* Test hook: replaces pread(fd, buf, len, off) for expert reads. Must be
 * thread-safe (several I/O threads call it); returns bytes read, 0 at end of
 * file, or -1 with errno set. NULL restores pread. Waits for the reads in
 * flight (they finish with the old function); call it between evaluations. */
typedef long long (*deepc_expert_read_fn)(void *user, int fd, void *buf, size_t len, uint64_t off);
void deepc_expert_store_set_read_fn(deepc_expert_store *st, deepc_expert_read_fn fn, void *user);

/* Routing profiles: a text file, first line "# deepc expert profile 1", a
 * line "# layers L experts X tokens T", then one "layer expert count" line per
 * routed expert that was selected. counts is [n_layers x n_expert]. */
int deepc_expert_profile_save(const struct deepc_model *m, const uint64_t *counts, uint64_t tokens,
                              const char *path, deepc_err *err);
/* Reads path into counts[n_layers x n_expert] (zeroed first), checking that
 * it was written for a model of this shape. */
int deepc_expert_profile_load(const struct deepc_model *m, const char *path, uint64_t *counts, deepc_err *err);

#endif
