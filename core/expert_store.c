/* expert_store.c - routed experts under a byte budget: a slot cache filled by
 * I/O threads, an eviction policy, pinning from a routing profile and a
 * router-lookahead prefetch thread. Design and policy: expert_store.h.
 *
 * Slot life cycle (all transitions under st->mu):
 *   EMPTY -> QUEUED (assigned a key, in a request queue) -> READING (an I/O
 *   thread took it; the lock is dropped for the read) -> READY, or FAILED
 *   (key unassigned; the slot goes back to the free list once unreferenced).
 *   Only READY slots with no references that are not pinned can be evicted,
 *   so the bytes a forward pass reads never change under it. */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* O_DIRECT */
#endif
#include "expert_store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "forward.h"
#include "model.h"

#define STORE_ALIGN 4096u            /* record alignment in the file and O_DIRECT unit */
#define STORE_IO_DEFAULT 4
#define STORE_AGE_TOKENS 64          /* selection counts are halved every this many tokens */
#define STORE_MAX_RECORD (1ull << 31)
/* The lookahead pauses while fewer than this share of its reads are used
 * (decayed like the counts): below it, on the drives measured (README), the
 * wasted reads cost more disk time than the correct ones hide. It probes the
 * first PF_PROBE_TOKENS of every STORE_AGE_TOKENS tokens to notice a change. */
#define PF_MIN_PRECISION 0.7f
#define PF_MIN_SAMPLES 24.0f
#define PF_PROBE_TOKENS 8

enum { SLOT_EMPTY, SLOT_QUEUED, SLOT_READING, SLOT_READY, SLOT_FAILED };

typedef struct {
    int32_t key;          /* moe_layer * n_expert + expert; -1 when empty */
    int32_t refs;         /* holders in the current acquire (pinned slots while pinning) */
    uint8_t state;
    bool pinned;
    bool prefetched;      /* loaded by the lookahead and not used yet */
    bool queued;          /* an entry for this slot sits in the demand queue */
} slot_t;

struct deepc_expert_store {
    const deepc_model *m;
    int first, n_moe, X, K, E;
    uint64_t *rec_off;          /* (n_moe, X) file offset of each record */
    uint32_t *rec_len;          /* (n_moe, X) bytes of each record */
    size_t slot_bytes;
    int n_slots, n_pinned, fair_min;
    uint8_t *mem;               /* n_slots * slot_bytes, page-aligned (mmap) */
    size_t mem_bytes;
    slot_t *slots;
    int32_t *slot_of;           /* (n_moe, X) -> slot or -1 */
    int32_t *free_stack;
    int n_free;
    int32_t *layer_held;        /* (n_moe) slots holding each layer's experts */
    int32_t *held;              /* slots returned by the current acquire */
    int n_held;
    int32_t *q;                 /* demand reads: ring of slot ids, capacity n_slots */
    int q_head, q_n;

    /* policy: decayed selection counts of every expert, loaded or not */
    float *freq;                /* (n_moe, X) */
    float window;               /* tokens those counts cover (decayed alike) */
    int cur;                    /* MoE layer the forward pass is on */
    uint64_t step;              /* layers acquired so far: dates prefetch candidates */

    /* reading */
    int fd;                     /* the model's descriptor (not owned) */
    int fd_direct;              /* owned; -1 when the page cache cannot be bypassed */
    bool direct;                /* reads use fd_direct (cleared if the OS refuses) */
    deepc_expert_read_fn read_fn;
    void *read_user;

    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done, cv_pf;
    bool sync_ok, stop;
    pthread_t *io;
    int n_io, n_io_started;

    /* prefetch helper: predicts, the I/O threads read when no demand waits */
    bool pf_on, pf_started, pf_pending, pf_busy;
    pthread_t pf;
    int pf_layer, pf_n, pf_inflight, pf_cap;
    uint64_t pf_step;           /* the step the pending hint was posted at */
    float *pf_x;                /* (n_batch, E) residual rows copied from the hint */
    float *pf_xn, *pf_logits, *pf_scratch, *pf_w;
    int32_t *pf_ids, *pf_votes, *pf_order;
    float pf_win_issued, pf_win_used;   /* decayed prefetch outcomes (the gate) */
    int32_t *cand;              /* (X) predicted keys, most votes first */
    int cand_n, cand_pos;
    uint64_t cand_step;         /* valid while step == cand_step */

    char errmsg[320];           /* the last read failure */
    uint64_t tok, budget, min_budget, expert_bytes;
    uint64_t hits, misses, reads, bytes_read, read_errors, pf_issued, pf_used, pf_wasted;
    double stall_s;
};

/* ---- geometry --------------------------------------------------------------- */

static bool has_experts(const deepc_model *m) {
    return deepc_arch_is_mla(m->hp.arch) && m->hp.route.n_experts > 0 && m->hp.first_k_dense < m->hp.n_layers;
}

static uint64_t wt_bytes(const deepc_wt *w) { return (uint64_t)w->row_bytes * (uint64_t)w->rows; }

static uint64_t record_bytes(const deepc_layer *L, int e) {
    return wt_bytes(&L->x_gate[e]) + wt_bytes(&L->x_up[e]) + wt_bytes(&L->x_down[e]);
}

uint64_t deepc_expert_store_total_bytes(const deepc_model *m) {
    if (!m || !has_experts(m)) return 0;
    uint64_t t = 0;
    for (int l = m->hp.first_k_dense; l < m->hp.n_layers; l++)
        for (int e = 0; e < m->hp.route.n_experts; e++) t += record_bytes(&m->layers[l], e);
    return t;
}

static uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/* Largest record extent (gate start to the end of the last matrix), rounded. */
static uint64_t slot_size(const deepc_model *m) {
    uint64_t mx = 0;
    for (int l = m->hp.first_k_dense; l < m->hp.n_layers; l++)
        for (int e = 0; e < m->hp.route.n_experts; e++) {
            const deepc_layer *L = &m->layers[l];
            const uint8_t *g = L->x_gate[e].data, *u = L->x_up[e].data, *d = L->x_down[e].data;
            uint64_t end = wt_bytes(&L->x_gate[e]);
            if (u >= g && (uint64_t)(u - g) + wt_bytes(&L->x_up[e]) > end) end = (uint64_t)(u - g) + wt_bytes(&L->x_up[e]);
            if (d >= g && (uint64_t)(d - g) + wt_bytes(&L->x_down[e]) > end) end = (uint64_t)(d - g) + wt_bytes(&L->x_down[e]);
            if (end > mx) mx = end;
        }
    return round_up(mx, STORE_ALIGN);
}

uint64_t deepc_expert_store_min_budget(const deepc_model *m) {
    if (!m || !has_experts(m)) return 0;
    return slot_size(m) * (uint64_t)m->hp.route.top_k;
}

/* ---- queue and slots (caller holds mu) ------------------------------------- */

static void q_push(deepc_expert_store *st, int32_t s) {
    if (st->slots[s].queued) return;
    st->slots[s].queued = true;
    st->q[(st->q_head + st->q_n) % st->n_slots] = s;
    st->q_n++;
}

static int32_t q_pop(deepc_expert_store *st) {
    int32_t s = st->q[st->q_head];
    st->q_head = (st->q_head + 1) % st->n_slots;
    st->q_n--;
    st->slots[s].queued = false;
    return s;
}

static void slot_free(deepc_expert_store *st, int32_t s) {
    slot_t *sl = &st->slots[s];
    sl->key = -1;
    sl->state = SLOT_EMPTY;
    sl->prefetched = false;
    st->free_stack[st->n_free++] = s;
}

/* Drops the key of a READY slot about to be reused. */
static void slot_evict(deepc_expert_store *st, int32_t s) {
    slot_t *sl = &st->slots[s];
    if (sl->key >= 0) {
        st->slot_of[sl->key] = -1;
        st->layer_held[sl->key / st->X]--;
    }
    if (sl->prefetched) st->pf_wasted++;
    sl->prefetched = false;
    sl->key = -1;
}

/* Expected layer steps until expert `key` is used again, with the forward
 * pass on MoE layer `cur`: the steps to come round to its layer (1 for the
 * next layer, n_moe for the current one) plus n_moe per token it is expected
 * to skip, 1/p - 1 for a per-token selection probability p estimated from
 * its decayed count (prior: top_k / n_expert, worth 4 tokens). The policy
 * evicts the largest: frequency decides between experts, layer distance (the
 * cyclic form of recency) between equally frequent ones. */
static double next_use(const deepc_expert_store *st, int32_t key, int cur) {
    int ml = key / st->X;
    double d = (double)((ml - cur - 1 + 2 * st->n_moe) % st->n_moe + 1);
    double prior = (double)st->K / (double)st->X;
    double p = ((double)st->freq[key] + 4.0 * prior) / ((double)st->window + 4.0);
    if (p > 1.0) p = 1.0;
    return d + (double)st->n_moe * (1.0 / p - 1.0);
}

/* Picks a slot for a new record: a free one, else the evictable one used
 * furthest in the future. Experts of layer `keep` (the layer being
 * prefetched) are not taken; `cur` is the MoE layer in use. Returns -1 when
 * every slot is busy, pinned or loading. */
static int32_t pick_victim(deepc_expert_store *st, int keep, int cur) {
    if (st->n_free) return st->free_stack[--st->n_free];
    int32_t best = -1;
    double best_t = 0.0;
    for (int pass = 0; pass < 2 && best < 0; pass++) {
        for (int32_t s = 0; s < st->n_slots; s++) {
            const slot_t *sl = &st->slots[s];
            if (sl->state != SLOT_READY || sl->refs || sl->pinned) continue;
            int ml = sl->key / st->X;
            if (ml == keep) continue;
            /* per-layer fairness: a layer below half its share keeps its slots
             * unless nothing else can go */
            if (pass == 0 && st->layer_held[ml] <= st->fair_min) continue;
            double t = next_use(st, sl->key, cur);
            if (best < 0 || t > best_t) { best = s; best_t = t; }
        }
    }
    if (best >= 0) slot_evict(st, best);
    return best;
}

/* Gives slot s to record key, in state `state` (QUEUED: also queued). */
static void slot_assign(deepc_expert_store *st, int32_t s, int32_t key, int state) {
    slot_t *sl = &st->slots[s];
    sl->key = key;
    sl->state = (uint8_t)state;
    sl->refs = 0;
    st->slot_of[key] = s;
    st->layer_held[key / st->X]++;
    if (state == SLOT_QUEUED) q_push(st, s);
}

/* ---- reading ----------------------------------------------------------------- */

/* Reads record `key` into buf (slot_bytes, page-aligned): one aligned read of
 * the rounded record length; less is fine at the end of the file as long as
 * the record itself arrived. Returns 0, or -1 with msg set. Lock not held. */
static int read_record(deepc_expert_store *st, int32_t key, uint8_t *buf, uint64_t *nread, char *msg, size_t cap) {
    uint64_t off = st->rec_off[key], need = st->rec_len[key], len = round_up(need, STORE_ALIGN), got = 0;
    *nread = 0;
    pthread_mutex_lock(&st->mu);
    bool direct = st->direct;
    deepc_expert_read_fn fn = st->read_fn;
    void *user = st->read_user;
    pthread_mutex_unlock(&st->mu);
    while (got < need) {
        int fd = direct ? st->fd_direct : st->fd;
        long long r = fn ? fn(user, fd, buf + got, (size_t)(len - got), off + got)
                         : (long long)pread(fd, buf + got, (size_t)(len - got), (off_t)(off + got));
        if (r < 0) {
            int e = errno;
            if (e == EINTR) continue;
            if (e == EINVAL && direct) {
                /* the file system refuses unbuffered reads (or this offset):
                 * read through the page cache from now on */
                direct = false;
                pthread_mutex_lock(&st->mu);
                st->direct = false;
                pthread_mutex_unlock(&st->mu);
                continue;
            }
            snprintf(msg, cap, "%s", strerror(e));
            return -1;
        }
        if (r == 0) {
            snprintf(msg, cap, "short read: %llu of %llu bytes (the model file is shorter than when it was opened)",
                     (unsigned long long)got, (unsigned long long)need);
            return -1;
        }
        got += (uint64_t)r;
        *nread = got;
    }
    return 0;
}

/* The next predicted record to read ahead, with a slot assigned (READING), or
 * -1. Candidates die when the forward pass moves on from the layer they were
 * predicted at (their layer is then read on demand). */
static int32_t take_prefetch(deepc_expert_store *st) {
    if (st->cand_step != st->step) st->cand_n = st->cand_pos = 0;
    while (st->cand_pos < st->cand_n && st->pf_inflight < st->pf_cap) {
        int32_t key = st->cand[st->cand_pos++];
        if (st->slot_of[key] >= 0) continue;
        int32_t s = pick_victim(st, key / st->X, st->cur);
        if (s < 0) break;
        slot_assign(st, s, key, SLOT_READING);
        st->slots[s].prefetched = true;
        st->pf_inflight++;
        st->pf_issued++;
        st->pf_win_issued += 1.0f;
        return s;
    }
    st->cand_n = st->cand_pos = 0;
    return -1;
}

/* I/O thread: demand reads first; a prefetch only when no demand waits and
 * fewer than pf_cap are in flight, so read-ahead uses idle disk time only. */
static void *io_main(void *arg) {
    deepc_expert_store *st = arg;
    char msg[200];
    pthread_mutex_lock(&st->mu);
    for (;;) {
        while (!st->stop && !st->q_n && !(st->cand_pos < st->cand_n && st->pf_inflight < st->pf_cap))
            pthread_cond_wait(&st->cv_work, &st->mu);
        if (st->stop) break;
        int32_t s;
        bool pf = false;
        if (st->q_n) {
            s = q_pop(st);
            if (st->slots[s].state != SLOT_QUEUED) continue;
            st->slots[s].state = SLOT_READING;
        } else {
            if ((s = take_prefetch(st)) < 0) continue;
            pf = true;
        }
        slot_t *sl = &st->slots[s];
        int32_t key = sl->key;
        pthread_mutex_unlock(&st->mu);
        uint64_t n = 0;
        int rc = read_record(st, key, st->mem + (size_t)s * st->slot_bytes, &n, msg, sizeof msg);
        pthread_mutex_lock(&st->mu);
        st->reads++;
        st->bytes_read += n;
        if (pf) st->pf_inflight--;
        if (rc == 0) {
            sl->state = SLOT_READY;
        } else {
            st->read_errors++;
            int ml = key / st->X;
            snprintf(st->errmsg, sizeof st->errmsg,
                     "expert store: reading layer %d expert %d (%u bytes at offset %llu of the model file) failed: %s",
                     st->first + ml, key % st->X, st->rec_len[key], (unsigned long long)st->rec_off[key], msg);
            st->slot_of[key] = -1;
            st->layer_held[ml]--;
            sl->key = -1;
            sl->prefetched = false;
            sl->state = SLOT_FAILED;
            if (!sl->refs) slot_free(st, s);
        }
        pthread_cond_broadcast(&st->cv_done);
        if (pf) pthread_cond_broadcast(&st->cv_work);   /* room for the next prefetch */
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

/* ---- prefetch helper ------------------------------------------------------------ */

static int next_moe_layer(const deepc_expert_store *st, int layer) {
    return layer + 1 < st->first + st->n_moe ? layer + 1 : -1;
}

/* Predicts the experts of MoE layer `layer` for the n rows of pf_x (the
 * residual stream one layer early) with that layer's own norm and router,
 * and writes them to pf_order by descending votes; returns how many. */
static int predict(deepc_expert_store *st, int layer, int n) {
    const deepc_model *m = st->m;
    const deepc_hparams *hp = &m->hp;
    const deepc_layer *L = &m->layers[layer];
    const float *router = L->router.data, *bias = hp->expert_bias ? L->router_bias.data : NULL;
    int X = st->X, K = st->K, E = st->E;
    memset(st->pf_votes, 0, (size_t)X * sizeof *st->pf_votes);
    for (int b = 0; b < n; b++) {
        deepc_rmsnorm(st->pf_xn, st->pf_x + (size_t)b * E, L->ffn_norm.data, E, hp->norm_eps);
        for (int e = 0; e < X; e++) {
            const float *w = router + (size_t)e * E;
            float acc = 0.0f;
            for (int i = 0; i < E; i++) acc += w[i] * st->pf_xn[i];
            st->pf_logits[e] = acc;
        }
        deepc_route(&hp->route, st->pf_logits, bias, st->pf_scratch, st->pf_ids, st->pf_w);
        for (int k = 0; k < K; k++)
            if (st->pf_ids[k] >= 0 && st->pf_ids[k] < X) st->pf_votes[st->pf_ids[k]]++;
    }
    int cnt = 0;
    for (int e = 0; e < X; e++)
        if (st->pf_votes[e]) st->pf_order[cnt++] = e;
    for (int i = 1; i < cnt; i++) {            /* insertion sort: most votes first */
        int32_t v = st->pf_order[i];
        int j = i;
        while (j > 0 && st->pf_votes[st->pf_order[j - 1]] < st->pf_votes[v]) { st->pf_order[j] = st->pf_order[j - 1]; j--; }
        st->pf_order[j] = v;
    }
    return cnt;
}

static void *pf_main(void *arg) {
    deepc_expert_store *st = arg;
    pthread_mutex_lock(&st->mu);
    for (;;) {
        while (!st->stop && !st->pf_pending) pthread_cond_wait(&st->cv_pf, &st->mu);
        if (st->stop) break;
        st->pf_pending = false;
        int layer = st->pf_layer, n = st->pf_n;
        uint64_t step = st->pf_step;
        pthread_mutex_unlock(&st->mu);
        int cnt = predict(st, layer, n);
        pthread_mutex_lock(&st->mu);
        if (st->step == step) {   /* still on the layer before: worth reading ahead */
            int ml = layer - st->first;
            for (int i = 0; i < cnt; i++) st->cand[i] = ml * st->X + st->pf_order[i];
            st->cand_n = cnt;
            st->cand_pos = 0;
            st->cand_step = step;
            pthread_cond_broadcast(&st->cv_work);
        }
        st->pf_busy = false;
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

/* Hands the residual rows to the helper unless it is still busy (then this
 * hint is dropped: a prefetch is only ever a guess). */
static void post_hint(deepc_expert_store *st, int layer, const float *x, int n_tok) {
    int next = next_moe_layer(st, layer);
    pthread_mutex_lock(&st->mu);
    bool useful = st->pf_win_issued < PF_MIN_SAMPLES || st->pf_win_used >= PF_MIN_PRECISION * st->pf_win_issued ||
                  st->tok % STORE_AGE_TOKENS < PF_PROBE_TOKENS;
    bool take = next >= 0 && useful && !st->pf_busy && !st->pf_pending && !st->stop;
    if (take) st->pf_busy = true;
    pthread_mutex_unlock(&st->mu);
    if (!take) return;
    memcpy(st->pf_x, x, (size_t)n_tok * st->E * sizeof *st->pf_x);
    pthread_mutex_lock(&st->mu);
    st->pf_layer = next;
    st->pf_n = n_tok;
    st->pf_step = st->step;
    st->pf_pending = true;
    pthread_cond_signal(&st->cv_pf);
    pthread_mutex_unlock(&st->mu);
}

/* ---- acquire / release -------------------------------------------------------- */

static void fill_views(const deepc_expert_store *st, int layer, int32_t e, const uint8_t *base, deepc_wt *v) {
    const deepc_layer *L = &st->m->layers[layer];
    const uint8_t *g = L->x_gate[e].data;
    v[0] = L->x_gate[e];
    v[1] = L->x_up[e];
    v[2] = L->x_down[e];
    v[0].data = base;
    v[1].data = base + ((const uint8_t *)L->x_up[e].data - g);
    v[2].data = base + ((const uint8_t *)L->x_down[e].data - g);
}

static void release_locked(deepc_expert_store *st) {
    for (int j = 0; j < st->n_held; j++) {
        slot_t *sl = &st->slots[st->held[j]];
        sl->refs--;
        if (sl->state == SLOT_FAILED && !sl->refs) slot_free(st, st->held[j]);
    }
    st->n_held = 0;
}

int deepc_expert_store_acquire(deepc_expert_store *st, int layer, const int32_t *ids, int n,
                               const float *x_hint, int n_tok, deepc_wt *views, deepc_err *err) {
    int ml = layer - st->first;
    bool pushed = false;
    pthread_mutex_lock(&st->mu);
    st->n_held = 0;
    if (ml != st->cur) {    /* a new layer: older prefetch candidates are stale */
        st->cur = ml;
        st->step++;
    }
    for (int i = 0; i < n; i++) {
        int32_t key = ml * st->X + ids[i];
        int32_t s = st->slot_of[key];
        if (s >= 0) {
            slot_t *sl = &st->slots[s];
            st->hits++;
            if (sl->prefetched) { sl->prefetched = false; st->pf_used++; st->pf_win_used += 1.0f; }
        } else {
            s = pick_victim(st, -1, ml);
            if (s < 0) {
                if (st->n_held) break;      /* process these, then come back for the rest */
                /* every slot is pinned or still loading a prefetch: wait for one */
                if (pushed) pthread_cond_broadcast(&st->cv_work);
                pushed = false;
                pthread_cond_wait(&st->cv_done, &st->mu);
                i--;
                continue;
            }
            slot_assign(st, s, key, SLOT_QUEUED);
            st->misses++;
            pushed = true;
        }
        st->slots[s].refs++;
        st->freq[key] += 1.0f;
        st->held[st->n_held++] = s;
    }
    if (pushed) pthread_cond_broadcast(&st->cv_work);
    pthread_mutex_unlock(&st->mu);

    /* the helper guesses the next layer while this one loads and computes */
    if (x_hint && st->pf_on) post_hint(st, layer, x_hint, n_tok);

    pthread_mutex_lock(&st->mu);
    double t0 = 0.0;
    bool failed = false;
    for (;;) {
        bool ready = true;
        for (int j = 0; j < st->n_held && !failed; j++) {
            int state = st->slots[st->held[j]].state;
            if (state == SLOT_FAILED) failed = true;
            else if (state != SLOT_READY) ready = false;
        }
        if (failed || ready) break;
        if (t0 == 0.0) t0 = deepc_now();
        pthread_cond_wait(&st->cv_done, &st->mu);
    }
    if (t0 != 0.0) st->stall_s += deepc_now() - t0;
    if (failed) {
        release_locked(st);
        int rc = deepc_errf(err, DEEPC_ERR_IO, "%s", st->errmsg);
        pthread_mutex_unlock(&st->mu);
        return -rc;
    }
    int got = st->n_held;
    pthread_mutex_unlock(&st->mu);
    /* held slots cannot change until released: fill the views unlocked */
    for (int j = 0; j < got; j++)
        fill_views(st, layer, ids[j], st->mem + (size_t)st->held[j] * st->slot_bytes, views + 3 * j);
    return got;
}

void deepc_expert_store_release(deepc_expert_store *st) {
    pthread_mutex_lock(&st->mu);
    release_locked(st);
    pthread_mutex_unlock(&st->mu);
}

void deepc_expert_store_tokens(deepc_expert_store *st, int n) {
    pthread_mutex_lock(&st->mu);
    uint64_t before = st->tok;
    st->tok += (uint64_t)n;
    st->window += (float)n;
    if (st->tok / STORE_AGE_TOKENS != before / STORE_AGE_TOKENS) {
        for (size_t k = 0; k < (size_t)st->n_moe * st->X; k++) st->freq[k] *= 0.5f;
        st->window *= 0.5f;
        st->pf_win_issued *= 0.5f;
        st->pf_win_used *= 0.5f;
    }
    pthread_mutex_unlock(&st->mu);
}

/* ---- stats -------------------------------------------------------------------- */

void deepc_expert_store_stats(deepc_expert_store *st, deepc_expert_stats *o) {
    pthread_mutex_lock(&st->mu);
    o->streaming = true;
    o->direct_io = st->direct;
    o->n_slots = st->n_slots;
    o->n_pinned = st->n_pinned;
    o->n_io_threads = st->n_io;
    o->cache_bytes = st->mem_bytes;
    o->min_budget_bytes = st->min_budget;
    o->expert_bytes = st->expert_bytes;
    o->slot_bytes = st->slot_bytes;
    o->hits = st->hits;
    o->misses = st->misses;
    o->reads = st->reads;
    o->bytes_read = st->bytes_read;
    o->read_errors = st->read_errors;
    o->stall_s = st->stall_s;
    o->prefetch_issued = st->pf_issued;
    o->prefetch_used = st->pf_used;
    o->prefetch_wasted = st->pf_wasted;
    pthread_mutex_unlock(&st->mu);
}

void deepc_expert_store_reset_stats(deepc_expert_store *st) {
    pthread_mutex_lock(&st->mu);
    st->hits = st->misses = st->reads = st->bytes_read = st->read_errors = 0;
    st->pf_issued = st->pf_used = st->pf_wasted = 0;
    st->stall_s = 0.0;
    pthread_mutex_unlock(&st->mu);
}

void deepc_expert_store_set_read_fn(deepc_expert_store *st, deepc_expert_read_fn fn, void *user) {
    pthread_mutex_lock(&st->mu);
    for (;;) {   /* reads in flight finish with the old function first */
        bool busy = false;
        for (int s = 0; s < st->n_slots && !busy; s++)
            busy = st->slots[s].state == SLOT_QUEUED || st->slots[s].state == SLOT_READING;
        if (!busy) break;
        pthread_cond_wait(&st->cv_done, &st->mu);
    }
    st->read_fn = fn;
    st->read_user = user;
    pthread_mutex_unlock(&st->mu);
}

/* ---- profiles ------------------------------------------------------------------ */

int deepc_expert_profile_save(const deepc_model *m, const uint64_t *counts, uint64_t tokens, const char *path,
                              deepc_err *err) {
    const deepc_hparams *hp = &m->hp;
    if (!has_experts(m)) return deepc_errf(err, DEEPC_ERR_INVALID_ARG, "this model has no routed experts to profile");
    FILE *f = fopen(path, "w");
    if (!f) return deepc_errf(err, DEEPC_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    fprintf(f, "# deepc expert profile 1\n# layers %d experts %d tokens %llu\n# layer expert count\n", hp->n_layers,
            hp->route.n_experts, (unsigned long long)tokens);
    for (int l = hp->first_k_dense; l < hp->n_layers; l++)
        for (int e = 0; e < hp->route.n_experts; e++) {
            uint64_t c = counts[(size_t)l * hp->route.n_experts + e];
            if (c) fprintf(f, "%d %d %llu\n", l, e, (unsigned long long)c);
        }
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad) return deepc_errf(err, DEEPC_ERR_IO, "%s: write failed", path);
    return DEEPC_OK;
}

int deepc_expert_profile_load(const deepc_model *m, const char *path, uint64_t *counts, deepc_err *err) {
    const deepc_hparams *hp = &m->hp;
    int X = hp->route.n_experts;
    char *buf = NULL;
    size_t len = 0;
    deepc_err e2;
    if (deepc_read_file(path, (size_t)64 << 20, &buf, &len, &e2))
        return deepc_errf(err, DEEPC_ERR_IO, "pin profile: %s", e2.msg);
    memset(counts, 0, (size_t)hp->n_layers * (size_t)X * sizeof *counts);
    int rc = DEEPC_OK, lineno = 0;
    bool header = false, shape = false;
    char *p = buf;
    while (*p && rc == DEEPC_OK) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        lineno++;
        int nl_, ne_, used = 0;
        unsigned long long c;
        if (lineno == 1) {
            header = !strncmp(p, "# deepc expert profile 1", 24);
            if (!header) rc = deepc_errf(err, DEEPC_ERR_FORMAT, "%s: not a deepc expert profile (first line must be '# deepc expert profile 1'; write one with `deepc profile`)", path);
        } else if (sscanf(p, "# layers %d experts %d", &nl_, &ne_) == 2) {
            shape = true;
            if (nl_ != hp->n_layers || ne_ != X)
                rc = deepc_errf(err, DEEPC_ERR_INVALID_ARG, "%s: profile of a model with %d layers and %d experts; this one has %d and %d",
                                path, nl_, ne_, hp->n_layers, X);
        } else if (p[0] == '#' || p[strspn(p, " \t\r")] == 0) {
            /* comment or blank */
        } else if (sscanf(p, "%d %d %llu %n", &nl_, &ne_, &c, &used) == 3 && p[used] == 0) {
            if (nl_ < hp->first_k_dense || nl_ >= hp->n_layers || ne_ < 0 || ne_ >= X)
                rc = deepc_errf(err, DEEPC_ERR_FORMAT, "%s line %d: layer %d expert %d is not a routed expert of this model", path, lineno, nl_, ne_);
            else
                counts[(size_t)nl_ * X + ne_] += c;
        } else {
            rc = deepc_errf(err, DEEPC_ERR_FORMAT, "%s line %d: expected 'layer expert count'", path, lineno);
        }
        p = nl ? nl + 1 : p + strlen(p);
    }
    if (rc == DEEPC_OK && !header) rc = deepc_errf(err, DEEPC_ERR_FORMAT, "%s: empty profile", path);
    if (rc == DEEPC_OK && !shape) rc = deepc_errf(err, DEEPC_ERR_FORMAT, "%s: the '# layers L experts X' line is missing", path);
    free(buf);
    return rc;
}

/* ---- create / destroy ------------------------------------------------------------ */

/* A descriptor for the same file that bypasses the page cache, or -1. */
static int open_direct(int fd) {
    int d = -1;
#if defined(__linux__) && defined(O_DIRECT)
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    d = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
#elif defined(__APPLE__) && defined(F_NOCACHE)
    char path[1024];
    if (fcntl(fd, F_GETPATH, path) != -1) {
        d = open(path, O_RDONLY | O_CLOEXEC);
        if (d >= 0 && fcntl(d, F_NOCACHE, 1) == -1) { close(d); d = -1; }
    }
#else
    (void)fd;
#endif
    if (d >= 0) {   /* identity check: the same file as the mapping */
        struct stat a, b;
        if (fstat(fd, &a) || fstat(d, &b) || a.st_dev != b.st_dev || a.st_ino != b.st_ino) { close(d); d = -1; }
    }
    return d;
}

/* Pins the hottest experts of the profile (at most 3/4 of the slots, and
 * never the last 2 x top_k) and reads them in parallel. */
static int pin_hot(deepc_expert_store *st, const uint64_t *counts, deepc_err *err) {
    int total = st->n_moe * st->X, max_pin = st->n_slots * 3 / 4;
    if (max_pin > st->n_slots - 2 * st->K) max_pin = st->n_slots - 2 * st->K;
    int32_t *order = malloc((size_t)total * sizeof *order);
    if (!order) return deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory");
    int cnt = 0;
    for (int key = 0; key < total; key++)
        if (counts[(size_t)(st->first + key / st->X) * st->X + key % st->X]) order[cnt++] = key;
    /* most used first; shell sort keeps this O(n^1.3) for 15k experts */
    for (int gap = cnt / 2; gap > 0; gap /= 2)
        for (int i = gap; i < cnt; i++) {
            int32_t v = order[i];
            uint64_t cv = counts[(size_t)(st->first + v / st->X) * st->X + v % st->X];
            int j = i;
            while (j >= gap) {
                int32_t u = order[j - gap];
                uint64_t cu = counts[(size_t)(st->first + u / st->X) * st->X + u % st->X];
                if (cu > cv || (cu == cv && u < v)) break;
                order[j] = u;
                j -= gap;
            }
            order[j] = v;
        }
    if (cnt > max_pin) cnt = max_pin < 0 ? 0 : max_pin;
    pthread_mutex_lock(&st->mu);
    for (int i = 0; i < cnt; i++) {
        int32_t s = pick_victim(st, -1, 0);
        slot_assign(st, s, order[i], SLOT_QUEUED);
        st->slots[s].pinned = true;
        st->slots[s].refs = 1;
    }
    st->n_pinned = cnt;
    pthread_cond_broadcast(&st->cv_work);
    bool failed = false;
    for (;;) {
        bool ready = true;
        for (int32_t s = 0; s < st->n_slots; s++) {
            if (!st->slots[s].pinned) continue;
            if (st->slots[s].state == SLOT_FAILED) failed = true;
            else if (st->slots[s].state != SLOT_READY) ready = false;
        }
        if (failed || ready) break;
        pthread_cond_wait(&st->cv_done, &st->mu);
    }
    for (int32_t s = 0; s < st->n_slots; s++)
        if (st->slots[s].pinned) st->slots[s].refs = 0;
    int rc = failed ? deepc_errf(err, DEEPC_ERR_IO, "pinning: %s", st->errmsg) : DEEPC_OK;
    pthread_mutex_unlock(&st->mu);
    free(order);
    return rc;
}

int deepc_expert_store_create(const deepc_model *m, const deepc_expert_store_params *p, deepc_expert_store **out,
                              deepc_err *err) {
    *out = NULL;
    const deepc_hparams *hp = &m->hp;
    if (!has_experts(m) || p->budget_bytes == 0) return DEEPC_OK;
    uint64_t *counts = NULL;
    if (p->pin_profile) {
        counts = calloc((size_t)hp->n_layers * hp->route.n_experts, sizeof *counts);
        if (!counts) return deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory");
        int rc = deepc_expert_profile_load(m, p->pin_profile, counts, err);
        if (rc) { free(counts); return rc; }
    }
    uint64_t total = deepc_expert_store_total_bytes(m);
    if (p->budget_bytes >= total) { free(counts); return DEEPC_OK; }

    int rc = DEEPC_OK;
    deepc_expert_store *st = calloc(1, sizeof *st);
    if (!st) { free(counts); return deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory"); }
    st->m = m;
    st->fd_direct = -1;
    st->first = hp->first_k_dense;
    st->n_moe = hp->n_layers - hp->first_k_dense;
    st->X = hp->route.n_experts;
    st->K = hp->route.top_k;
    st->E = hp->n_embd;
    st->budget = p->budget_bytes;
    st->expert_bytes = total;
    st->slot_bytes = (size_t)slot_size(m);
    st->min_budget = (uint64_t)st->slot_bytes * (uint64_t)st->K;
    if (p->budget_bytes < st->min_budget) {
        char b[32], mn[32], sl[32];
        deepc_fmt_bytes(b, sizeof b, (double)p->budget_bytes);
        deepc_fmt_bytes(mn, sizeof mn, (double)st->min_budget);
        deepc_fmt_bytes(sl, sizeof sl, (double)st->slot_bytes);
        rc = deepc_errf(err, DEEPC_ERR_INVALID_ARG,
                        "expert cache of %s (%llu bytes) is too small: one token needs %d experts of a layer at once, %s each; "
                        "the minimum is %s (%llu bytes)", b, (unsigned long long)p->budget_bytes, st->K, sl, mn,
                        (unsigned long long)st->min_budget);
        goto fail;
    }
    uint64_t ns = p->budget_bytes / st->slot_bytes;
    if (ns > (uint64_t)st->n_moe * (uint64_t)st->X) ns = (uint64_t)st->n_moe * (uint64_t)st->X;
    st->n_slots = (int)ns;
    st->fair_min = st->n_slots / st->n_moe / 2;
    st->cur = -1;

    /* records: one per (layer, expert), page-aligned, gate then up and down */
    const deepc_dqf_tensor *t0 = deepc_dqf_tensor_at(m->dqf, 0);
    const uint8_t *base = (const uint8_t *)t0->data - t0->offset;
    size_t nk = (size_t)st->n_moe * st->X;
    st->rec_off = calloc(nk, sizeof *st->rec_off);
    st->rec_len = calloc(nk, sizeof *st->rec_len);
    st->slot_of = malloc(nk * sizeof *st->slot_of);
    st->layer_held = calloc((size_t)st->n_moe, sizeof *st->layer_held);
    st->slots = calloc((size_t)st->n_slots, sizeof *st->slots);
    st->free_stack = calloc((size_t)st->n_slots, sizeof *st->free_stack);
    st->held = calloc((size_t)st->X, sizeof *st->held);
    st->q = calloc((size_t)st->n_slots, sizeof *st->q);
    st->freq = calloc(nk, sizeof *st->freq);
    st->cand = calloc((size_t)st->X, sizeof *st->cand);
    if (!st->rec_off || !st->rec_len || !st->slot_of || !st->layer_held || !st->slots || !st->free_stack || !st->held ||
        !st->q || !st->freq || !st->cand) { rc = deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory"); goto fail; }
    for (int ml = 0; ml < st->n_moe; ml++) {
        const deepc_layer *L = &m->layers[st->first + ml];
        for (int e = 0; e < st->X; e++) {
            const uint8_t *g = L->x_gate[e].data, *u = L->x_up[e].data, *d = L->x_down[e].data;
            uint64_t off = (uint64_t)(g - base), end = wt_bytes(&L->x_gate[e]);
            if (u < g || d < g || off % STORE_ALIGN) {
                rc = deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "layer %d expert %d is not stored as one page-aligned record "
                                "(gate, up, down); streaming needs a file written by this deepc's converter", st->first + ml, e);
                goto fail;
            }
            if ((uint64_t)(u - g) + wt_bytes(&L->x_up[e]) > end) end = (uint64_t)(u - g) + wt_bytes(&L->x_up[e]);
            if ((uint64_t)(d - g) + wt_bytes(&L->x_down[e]) > end) end = (uint64_t)(d - g) + wt_bytes(&L->x_down[e]);
            st->rec_off[(size_t)ml * st->X + e] = off;
            st->rec_len[(size_t)ml * st->X + e] = (uint32_t)end;
        }
    }
    if (st->slot_bytes > STORE_MAX_RECORD) { rc = deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "expert records over 2 GiB"); goto fail; }
    for (size_t k = 0; k < nk; k++) st->slot_of[k] = -1;
    st->mem_bytes = (size_t)st->n_slots * st->slot_bytes;
    void *mem = mmap(NULL, st->mem_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        st->mem_bytes = 0;
        rc = deepc_errf(err, DEEPC_ERR_NOMEM, "cannot allocate the %llu-byte expert cache", (unsigned long long)((uint64_t)st->n_slots * st->slot_bytes));
        goto fail;
    }
    st->mem = mem;
    for (int s = st->n_slots - 1; s >= 0; s--) {
        st->slots[s].key = -1;
        st->free_stack[st->n_free++] = s;
    }

    st->fd = deepc_dqf_fd(m->dqf);
    if (!p->buffered_io) st->fd_direct = open_direct(st->fd);
    st->direct = st->fd_direct >= 0;

    st->pf_on = p->prefetch && st->n_moe > 1;
    if (st->pf_on) {
        size_t B = (size_t)(p->n_batch > 0 ? p->n_batch : 1);
        st->pf_x = malloc(B * st->E * sizeof *st->pf_x);
        st->pf_xn = malloc((size_t)st->E * sizeof *st->pf_xn);
        st->pf_logits = malloc((size_t)st->X * sizeof *st->pf_logits);
        st->pf_scratch = malloc((deepc_route_scratch_floats(&hp->route) + 1) * sizeof *st->pf_scratch);
        st->pf_w = malloc((size_t)st->K * sizeof *st->pf_w);
        st->pf_ids = malloc((size_t)st->K * sizeof *st->pf_ids);
        st->pf_votes = malloc((size_t)st->X * sizeof *st->pf_votes);
        st->pf_order = malloc((size_t)st->X * sizeof *st->pf_order);
        if (!st->pf_x || !st->pf_xn || !st->pf_logits || !st->pf_scratch || !st->pf_w || !st->pf_ids || !st->pf_votes || !st->pf_order) {
            rc = deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory");
            goto fail;
        }
    }

    if (pthread_mutex_init(&st->mu, NULL)) { rc = deepc_errf(err, DEEPC_ERR_NOMEM, "cannot create a mutex"); goto fail; }
    if (pthread_cond_init(&st->cv_work, NULL)) { pthread_mutex_destroy(&st->mu); rc = deepc_errf(err, DEEPC_ERR_NOMEM, "cannot create a condition variable"); goto fail; }
    if (pthread_cond_init(&st->cv_done, NULL)) { pthread_cond_destroy(&st->cv_work); pthread_mutex_destroy(&st->mu); rc = deepc_errf(err, DEEPC_ERR_NOMEM, "cannot create a condition variable"); goto fail; }
    if (pthread_cond_init(&st->cv_pf, NULL)) { pthread_cond_destroy(&st->cv_done); pthread_cond_destroy(&st->cv_work); pthread_mutex_destroy(&st->mu); rc = deepc_errf(err, DEEPC_ERR_NOMEM, "cannot create a condition variable"); goto fail; }
    st->sync_ok = true;
    st->n_io = p->n_io_threads > 0 ? p->n_io_threads : STORE_IO_DEFAULT;
    if (st->n_io > 64) st->n_io = 64;
    st->pf_cap = st->n_io > 1 ? st->n_io - 1 : 1;   /* one reader stays free for demand */
    st->io = calloc((size_t)st->n_io, sizeof *st->io);
    if (!st->io) { rc = deepc_errf(err, DEEPC_ERR_NOMEM, "out of memory"); goto fail; }
    for (int i = 0; i < st->n_io; i++) {
        if (pthread_create(&st->io[i], NULL, io_main, st)) { rc = deepc_errf(err, DEEPC_ERR_NOMEM, "cannot start an I/O thread"); goto fail; }
        st->n_io_started++;
    }
    if (st->pf_on) {
        if (pthread_create(&st->pf, NULL, pf_main, st)) { rc = deepc_errf(err, DEEPC_ERR_NOMEM, "cannot start the prefetch thread"); goto fail; }
        st->pf_started = true;
    }
    if (counts && (rc = pin_hot(st, counts, err))) goto fail;
    free(counts);
    deepc_expert_store_reset_stats(st);   /* pinning reads are set-up, not traffic */
    *out = st;
    return DEEPC_OK;
fail:
    free(counts);
    deepc_expert_store_destroy(st);
    return rc;
}

void deepc_expert_store_destroy(deepc_expert_store *st) {
    if (!st) return;
    if (st->sync_ok) {
        pthread_mutex_lock(&st->mu);
        st->stop = true;
        pthread_cond_broadcast(&st->cv_work);
        pthread_cond_broadcast(&st->cv_pf);
        pthread_mutex_unlock(&st->mu);
        for (int i = 0; i < st->n_io_started; i++) pthread_join(st->io[i], NULL);
        if (st->pf_started) pthread_join(st->pf, NULL);
        pthread_cond_destroy(&st->cv_pf);
        pthread_cond_destroy(&st->cv_done);
        pthread_cond_destroy(&st->cv_work);
        pthread_mutex_destroy(&st->mu);
    }
    if (st->fd_direct >= 0) close(st->fd_direct);
    if (st->mem) munmap(st->mem, st->mem_bytes);
    free(st->io);
    free(st->rec_off); free(st->rec_len); free(st->slot_of); free(st->layer_held);
    free(st->slots); free(st->free_stack); free(st->held); free(st->q);
    free(st->freq); free(st->cand);
    free(st->pf_x); free(st->pf_xn); free(st->pf_logits); free(st->pf_scratch); free(st->pf_w);
    free(st->pf_ids); free(st->pf_votes); free(st->pf_order);
    free(st);
}

/* ---- read-bandwidth probe ------------------------------------------------------ */

typedef struct {
    int fd;
    const uint64_t *off;
    uint64_t len;                /* every read: the slot size */
    int n_keys, n_reads;
    atomic_int next;
    atomic_int failed;
    atomic_ullong bytes;
} probe_t;

static void *probe_main(void *arg) {
    probe_t *p = arg;
    void *buf = NULL;
    if (posix_memalign(&buf, STORE_ALIGN, (size_t)p->len)) { atomic_store(&p->failed, ENOMEM); return NULL; }
    for (;;) {
        int i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n_reads || atomic_load(&p->failed)) break;
        /* a fixed scatter over the records: the order depends on nothing else */
        uint64_t k = ((uint64_t)i * 2654435761u) % (uint64_t)p->n_keys;
        ssize_t r;
        do r = pread(p->fd, buf, (size_t)p->len, (off_t)p->off[k]);
        while (r < 0 && errno == EINTR);
        if (r <= 0) { atomic_store(&p->failed, r < 0 ? errno : EIO); break; }
        atomic_fetch_add(&p->bytes, (unsigned long long)r);
    }
    free(buf);
    return NULL;
}

deepc_status deepc_model_expert_read_bw(const deepc_model *m, int n_threads, int n_reads, bool buffered,
                                        double *bytes_per_s, bool *direct_io) {
    if (!m || !bytes_per_s || n_threads < 1 || n_threads > 64 || n_reads < 1) return DEEPC_ERR_INVALID_ARG;
    *bytes_per_s = 0;
    if (direct_io) *direct_io = false;
    if (!has_experts(m)) {
        deepc_set_open_error("the read probe needs a MoE model: this one has no routed experts");
        return DEEPC_ERR_INVALID_ARG;
    }
    const deepc_hparams *hp = &m->hp;
    const deepc_dqf_tensor *t0 = deepc_dqf_tensor_at(m->dqf, 0);
    const uint8_t *base = (const uint8_t *)t0->data - t0->offset;
    int n_keys = (hp->n_layers - hp->first_k_dense) * hp->route.n_experts;
    uint64_t *off = malloc((size_t)n_keys * sizeof *off);
    if (!off) return DEEPC_ERR_NOMEM;
    for (int l = hp->first_k_dense, k = 0; l < hp->n_layers; l++)
        for (int e = 0; e < hp->route.n_experts; e++) off[k++] = (uint64_t)((const uint8_t *)m->layers[l].x_gate[e].data - base);
    int fd = deepc_dqf_fd(m->dqf), dfd = buffered ? -1 : open_direct(fd);
    /* the last record may end before a whole slot: reads past the end are
     * short, which the probe counts as they come */
    probe_t p = { .fd = dfd >= 0 ? dfd : fd, .off = off, .len = slot_size(m), .n_keys = n_keys, .n_reads = n_reads };
    atomic_init(&p.next, 0);
    atomic_init(&p.failed, 0);
    atomic_init(&p.bytes, 0);
    pthread_t th[64];
    int started = 0;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (; started < n_threads; started++)
        if (pthread_create(&th[started], NULL, probe_main, &p)) break;
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (dfd >= 0) close(dfd);
    free(off);
    int f = atomic_load(&p.failed);
    if (!started || f) {
        char msg[160];
        snprintf(msg, sizeof msg, "expert read probe: %s", started ? strerror(f) : "could not start a thread");
        deepc_set_open_error(msg);
        return started ? DEEPC_ERR_IO : DEEPC_ERR_NOMEM;
    }
    double dt = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
    *bytes_per_s = dt > 0 ? (double)atomic_load(&p.bytes) / dt : 0;
    if (direct_io) *direct_io = dfd >= 0;
    return DEEPC_OK;
}
