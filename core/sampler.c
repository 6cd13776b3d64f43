/* sampler.c - picks the next token from a row of logits.
 *
 * Order of operations (as in llama.cpp's classic chain):
 *   1. repetition penalty: each DISTINCT token among the last repeat_last_n
 *      history tokens is penalized once: logit > 0 ? logit / penalty
 *      : logit * penalty (so a penalty > 1 always makes it less likely);
 *   2. temperature <= 0 (or NaN): greedy argmax, lowest id wins ties; done;
 *   3. top-k (0 = off): keep the k highest logits;
 *   4. softmax with temperature: p ~ exp((logit - max) / T);
 *   5. top-p (>= 1 = off): keep the smallest highest-first prefix whose
 *      cumulative probability >= top_p (at least one token);
 *   6. min-p (<= 0 = off): drop tokens with p < min_p * max p;
 *   7. renormalize and draw one token with the session's seeded PRNG
 *      (xoshiro256**, seeded through splitmix64).
 * Ties in the "highest first" order are broken by lowest id, so the result
 * depends only on (logits, history, params, PRNG state): sampling is
 * deterministic for a given seed. NaN logits are treated as -inf.
 *
 * Speed: a vocabulary has ~150k entries. Top-k uses a size-k heap (O(n log k));
 * top-p without top-k sorts only the candidates with p >= 1e-4 * max p, which
 * is provably the head of the full order, and falls back to sorting
 * everything only when that head does not reach top_p. Min-p and the draw
 * need no order at all. All buffers are allocated in create. */
#include "sampler.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t id;
    float logit;
    float p;        /* unnormalized probability exp((logit - max) / T) */
} cand;

struct deepc_sampler {
    int n_vocab;
    cand *c;            /* n_vocab candidates */
    uint32_t *stamp;    /* n_vocab marks: token already penalized this call */
    uint32_t cur_stamp;
    uint64_t rng[4];
    uint64_t seed;
    bool seeded;
};

/* Relative probability below which tokens are left out of the top-p sort on
 * the first try (see sample_top_p). */
#define TOP_P_HEAD_REL 1e-4f

/* ---- PRNG --------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t s[4]) {
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static void reseed(deepc_sampler *s, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x); /* never all zero */
    s->seed = seed;
    s->seeded = true;
}

/* Uniform in [0, 1) with 53 random bits. */
static double uniform01(deepc_sampler *s) {
    return (double)(xoshiro_next(s->rng) >> 11) * 0x1p-53;
}

/* ---- create / destroy --------------------------------------------------- */

/* Owned by the caller; free with deepc_sampler_destroy(). NULL on bad n_vocab
 * or out of memory. */
deepc_sampler *deepc_sampler_create(int n_vocab) {
    if (n_vocab <= 0) return NULL;
    deepc_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->n_vocab = n_vocab;
    s->c = malloc((size_t)n_vocab * sizeof *s->c);
    s->stamp = calloc((size_t)n_vocab, sizeof *s->stamp);
    if (!s->c || !s->stamp) goto fail;
    return s;
fail:
    deepc_sampler_destroy(s);
    return NULL;
}

void deepc_sampler_destroy(deepc_sampler *s) {
    if (!s) return;
    free(s->c);
    free(s->stamp);
    free(s);
}

/* ---- ordering ----------------------------------------------------------- */

/* True when a ranks before b: higher logit first, then lower id. A strict
 * total order (no NaN reaches here), so every sort gives one answer. */
static bool ranks_before(const cand *a, const cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

/* Heap on rank with the WORST element at the root. */
static void heap_sift_down(cand *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && ranks_before(&h[w], &h[l])) w = l;
        if (r < n && ranks_before(&h[w], &h[r])) w = r;
        if (w == i) return;
        cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* Heapsort, best first. Not qsort: glibc's qsort may malloc a merge buffer,
 * and sampling must not allocate. The order is a strict total order, so the
 * result is the same whatever algorithm sorts it. */
static void sort_by_rank(cand *c, size_t n) {
    for (size_t i = n / 2; i-- > 0;) heap_sift_down(c, n, i);
    for (size_t end = n; end-- > 1;) { /* move the worst to the back */
        cand t = c[0];
        c[0] = c[end];
        c[end] = t;
        heap_sift_down(c, end, 0);
    }
}

/* Moves the k best of c[0..n) to c[0..k), sorted best first. In place: the
 * heap lives in c[0..k) and later elements are only read. */
static void select_top_k(cand *c, size_t n, size_t k) {
    for (size_t i = k / 2; i-- > 0;) heap_sift_down(c, k, i);
    for (size_t i = k; i < n; i++) {
        if (ranks_before(&c[i], &c[0])) {
            c[0] = c[i];
            heap_sift_down(c, k, 0);
        }
    }
    sort_by_rank(c, k);
}

/* ---- steps -------------------------------------------------------------- */

/* Step 1 (and the copy): c[i] = penalized logits[i] in id order. */
static void load_logits(deepc_sampler *s, const deepc_sampling *p, const float *logits,
                        const int32_t *history, size_t n_hist) {
    for (int i = 0; i < s->n_vocab; i++) {
        float l = logits[i];
        s->c[i].id = i;
        s->c[i].logit = isnan(l) ? -INFINITY : l;
    }
    float pen = p->repeat_penalty;
    if (!history || n_hist == 0 || p->repeat_last_n <= 0 || !(pen > 0.0f) || pen == 1.0f)
        return;
    if (++s->cur_stamp == 0) { /* wrapped after 2^32 calls: start marks afresh */
        memset(s->stamp, 0, (size_t)s->n_vocab * sizeof *s->stamp);
        s->cur_stamp = 1;
    }
    size_t last = (size_t)p->repeat_last_n < n_hist ? (size_t)p->repeat_last_n : n_hist;
    for (size_t i = n_hist - last; i < n_hist; i++) {
        int32_t t = history[i];
        if (t < 0 || t >= s->n_vocab || s->stamp[t] == s->cur_stamp) continue;
        s->stamp[t] = s->cur_stamp;
        float *l = &s->c[t].logit;
        *l = *l > 0.0f ? *l / pen : *l * pen;
        if (isnan(*l)) *l = -INFINITY; /* 0 * inf: an infinite penalty bans */
    }
}

static int32_t argmax(const cand *c, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (c[i].logit > c[best].logit) best = i; /* strict: lowest id wins ties */
    return c[best].id;
}

/* Step 4: fills p and returns the sum (in array order, in double so a long
 * tail of tiny terms is not lost). The max gets p = 1 exactly; a +inf max
 * gives every other token 0 and -inf everywhere gives a uniform draw. */
static double softmax(cand *c, size_t n, float temp) {
    float max = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (c[i].logit > max) max = c[i].logit;
    double z = 0.0;
    for (size_t i = 0; i < n; i++) {
        float x = (c[i].logit - max) / temp; /* NaN only for -inf / inf */
        c[i].p = c[i].logit == max ? 1.0f : x == x ? expf(x) : 0.0f;
        z += c[i].p;
    }
    return z;
}

/* Length of the shortest prefix of c (sorted best first) whose mass reaches
 * target, or 0 if the whole array does not reach it. */
static size_t nucleus_len(const cand *c, size_t n, double target) {
    double cum = 0.0;
    for (size_t i = 0; i < n; i++) {
        cum += c[i].p;
        if (cum >= target) return i + 1;
    }
    return 0;
}

/* Step 5. Returns the new candidate count. If c is not yet sorted, first try
 * with only the head {p >= TOP_P_HEAD_REL}: p is monotone in the logit, so the
 * head is exactly a prefix of the full order and the cumulative sums over it
 * are the same numbers the full sort would give. Only if the head's mass is
 * short of the target is everything sorted. */
static size_t apply_top_p(cand *c, size_t n, bool sorted, double z, float top_p) {
    double target = (double)top_p * z;
    if (!sorted) {
        size_t h = 0;
        for (size_t i = 0; i < n; i++) {
            if (c[i].p >= TOP_P_HEAD_REL) {
                cand t = c[h];
                c[h++] = c[i];
                c[i] = t;
            }
        }
        sort_by_rank(c, h);
        size_t k = nucleus_len(c, h, target);
        if (k > 0) return k;
        sort_by_rank(c, n);
    }
    size_t k = nucleus_len(c, n, target);
    return k > 0 ? k : n; /* rounding left the total short of target: keep all */
}

/* Step 6: keeps order; the max p is 1 and always survives (min_p <= 1). */
static size_t apply_min_p(cand *c, size_t n, float min_p) {
    float cut = min_p > 1.0f ? 1.0f : min_p;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (c[i].p >= cut) c[k++] = c[i];
    return k;
}

/* Step 7: one uniform draw against the running sum in array order. */
static int32_t draw(deepc_sampler *s, const cand *c, size_t n) {
    double z = 0.0;
    for (size_t i = 0; i < n; i++) z += c[i].p;
    double r = uniform01(s) * z;
    double cum = 0.0;
    for (size_t i = 0; i < n; i++) {
        cum += c[i].p;
        if (r < cum) return c[i].id;
    }
    return c[n - 1].id; /* r within rounding of z */
}

/* ---- entry point -------------------------------------------------------- */

/* A NULL p means greedy with no penalty. */
int32_t deepc_sampler_sample(deepc_sampler *s, const deepc_sampling *p,
                             const float *logits, const int32_t *history, size_t n_hist) {
    static const deepc_sampling greedy = { .struct_size = sizeof greedy, .temperature = 0.0f,
                                           .top_p = 1.0f, .repeat_penalty = 1.0f };
    if (!p) p = &greedy;
    size_t n = (size_t)s->n_vocab;
    load_logits(s, p, logits, history, n_hist);
    if (!(p->temperature > 0.0f)) return argmax(s->c, n);

    if (!s->seeded || s->seed != p->seed) reseed(s, p->seed);

    bool sorted = false;
    if (p->top_k > 0 && (size_t)p->top_k < n) {
        n = (size_t)p->top_k;
        select_top_k(s->c, (size_t)s->n_vocab, n);
        sorted = true;
    }
    double z = softmax(s->c, n, p->temperature);
    if (p->top_p < 1.0f) {
        if (p->top_p > 0.0f) {
            n = apply_top_p(s->c, n, sorted, z, p->top_p);
        } else { /* top_p <= 0: the "at least one" rule keeps the best token */
            if (!sorted) select_top_k(s->c, n, 1);
            n = 1;
        }
    }
    if (p->min_p > 0.0f) n = apply_min_p(s->c, n, p->min_p);
    return draw(s, s->c, n);
}
