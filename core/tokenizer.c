/* tokenizer.c - byte-level BPE encoding and streaming decoding with the
 * exact behaviour of Hugging Face `tokenizers` for the supported families.
 *
 * Encoding pipeline (as HF's Tokenizer::encode):
 *   1. split the text on non-normalized added tokens (leftmost-longest);
 *   2. normalize each remaining gap (NFC for Qwen2) and split it on the
 *      normalized added tokens;
 *   3. pre-tokenize each remaining piece (core/pretok.c);
 *   4. BPE each pre-token: its bytes are the initial symbols (the ByteLevel
 *      alphabet is decoded at import, so tokdata holds raw bytes), and the
 *      adjacent pair with the lowest merge rank is merged, leftmost first on
 *      ties, until no pair has a merge. ignore_merges (Llama 3) first emits a
 *      pre-token that is itself in the vocabulary.
 * Decoding concatenates token bytes and repairs UTF-8 like
 * String::from_utf8_lossy, streaming. */
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "deepc.h"
#include "pretok.h"
#include "unicode.h"

#define NONE32 UINT32_MAX
/* Words up to this many symbols use the simple rescan loop (fast for short
 * words); longer ones use a heap so a huge run stays O(n log n). */
#define SMALL_WORD 48

/* One merge: pair (a, b) -> (rank, merged id). a == NONE32 marks an empty
 * slot of the open-addressing table. */
typedef struct {
    uint32_t a, b, rank, id;
} merge_slot;

/* Added tokens matched as a whole, sorted by content bytes so the longest
 * match at a position is found by narrowing a range byte by byte. */
typedef struct {
    uint32_t n;
    uint32_t *ids;             /* (n) sorted by pattern */
    uint32_t *off, *len;       /* (n) pattern k = pat[off[k] .. off[k] + len[k]) */
    uint8_t *pat;
    uint8_t first[256];        /* 1 if some pattern starts with this byte */
} added_set;

struct deepc_tokenizer {
    const deepc_tokdata *td;
    int32_t byte_id[256];      /* id of each single-byte token, -1 if absent */
    uint32_t *vocab;           /* open addressing: token bytes -> id, NONE32 empty */
    uint32_t vocab_mask;
    merge_slot *merges;
    uint32_t merge_mask;
    int merge_shift;
    added_set added[2];        /* [0] matched on raw text, [1] on normalized text */
    size_t max_len;            /* longest token in bytes */
    bool ignore_merges, nfc;
};

/* ------------------------------------------------------------------------
 * Hash tables
 * ------------------------------------------------------------------------ */

static uint64_t hash_bytes(const uint8_t *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static inline const uint8_t *tok_bytes(const deepc_tokdata *td, uint32_t id, size_t *len) {
    *len = td->offs[id + 1] - td->offs[id];
    return td->text + td->offs[id];
}

static uint32_t vocab_find(const deepc_tokenizer *t, const uint8_t *s, size_t n) {
    uint32_t i = (uint32_t)hash_bytes(s, n) & t->vocab_mask;
    for (;; i = (i + 1) & t->vocab_mask) {
        uint32_t id = t->vocab[i];
        if (id == NONE32) return NONE32;
        size_t l;
        const uint8_t *b = tok_bytes(t->td, id, &l);
        if (l == n && memcmp(b, s, n) == 0) return id;
    }
}

static inline uint32_t pair_slot(const deepc_tokenizer *t, uint32_t a, uint32_t b) {
    uint64_t k = ((uint64_t)a << 32) | b;
    return (uint32_t)((k * 0x9e3779b97f4a7c15ull) >> t->merge_shift);
}

/* The merge of (a, b), or NULL. */
static inline const merge_slot *merge_find(const deepc_tokenizer *t, uint32_t a, uint32_t b) {
    for (uint32_t i = pair_slot(t, a, b);; i = (i + 1) & t->merge_mask) {
        const merge_slot *m = &t->merges[i];
        if (m->a == a && m->b == b) return m;
        if (m->a == NONE32) return NULL;
    }
}

/* ------------------------------------------------------------------------
 * Construction
 * ------------------------------------------------------------------------ */

static uint32_t pow2_at_least(uint64_t n) {
    uint32_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

/* Checks the parts of td that indexing relies on; td may come from a file. */
static int validate(const deepc_tokdata *td, deepc_err *err) {
    if (!td || td->n_vocab == 0 || !td->offs || !td->flags)
        return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer: empty vocabulary");
    if (td->n_vocab > (1u << 28))
        return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer: vocabulary of %u tokens is too large",
                          td->n_vocab);
    for (uint32_t i = 0; i < td->n_vocab; i++)
        if (td->offs[i + 1] < td->offs[i])
            return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer: token %u has a negative length", i);
    if (td->offs[td->n_vocab] > 0 && !td->text)
        return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer: token text missing");
    if (td->pretok != DEEPC_PRETOK_DEEPSEEK3 && td->pretok != DEEPC_PRETOK_QWEN2 &&
        td->pretok != DEEPC_PRETOK_LLAMA3)
        return deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "tokenizer: unknown pre-tokenizer kind %u",
                          td->pretok);
    if (td->normalizer >= DEEPC_NORM_COUNT)
        return deepc_errf(err, DEEPC_ERR_UNSUPPORTED, "tokenizer: unknown normalizer kind %u",
                          td->normalizer);
    if (td->n_merges && !td->merges)
        return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer: merges missing");
    for (uint32_t r = 0; r < td->n_merges; r++)
        for (int k = 0; k < 2; k++) {
            uint32_t id = td->merges[2 * r + (uint32_t)k];
            if (id >= td->n_vocab || !(td->flags[id] & DEEPC_TOKF_PRESENT))
                return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer: merge %u uses unknown token %u",
                                  r, id);
        }
    const int32_t special[3] = {td->bos_id, td->eos_id, td->pad_id};
    for (int k = 0; k < 3; k++)
        if (special[k] < -1 || (special[k] >= 0 && (uint32_t)special[k] >= td->n_vocab))
            return deepc_errf(err, DEEPC_ERR_FORMAT, "tokenizer: special token id %d out of range",
                              (int)special[k]);
    return DEEPC_OK;
}

static void vocab_insert(deepc_tokenizer *t, uint32_t id) {
    size_t n;
    const uint8_t *s = tok_bytes(t->td, id, &n);
    if (vocab_find(t, s, n) != NONE32) return;   /* first one wins */
    uint32_t i = (uint32_t)hash_bytes(s, n) & t->vocab_mask;
    while (t->vocab[i] != NONE32) i = (i + 1) & t->vocab_mask;
    t->vocab[i] = id;
}

static int build_vocab(deepc_tokenizer *t, deepc_err *err) {
    const deepc_tokdata *td = t->td;
    uint32_t size = pow2_at_least((uint64_t)td->n_vocab * 2);
    t->vocab = malloc((size_t)size * sizeof *t->vocab);
    if (!t->vocab) return deepc_errf(err, DEEPC_ERR_NOMEM, "tokenizer: out of memory");
    memset(t->vocab, 0xff, (size_t)size * sizeof *t->vocab);
    t->vocab_mask = size - 1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    /* Model vocabulary first, added tokens only where their text is new, so
     * byte strings resolve to the model's id as in HF's BPE. */
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t id = 0; id < td->n_vocab; id++) {
            uint32_t f = td->flags[id];
            if (!(f & DEEPC_TOKF_PRESENT) || (pass == 0) == ((f & DEEPC_TOKF_ADDED) != 0)) continue;
            size_t n;
            const uint8_t *s = tok_bytes(td, id, &n);
            if (n > t->max_len) t->max_len = n;
            if (n == 0) continue;
            vocab_insert(t, id);
            if (pass == 0 && n == 1 && t->byte_id[s[0]] < 0) t->byte_id[s[0]] = (int32_t)id;
        }
    return DEEPC_OK;
}

static int build_merges(deepc_tokenizer *t, deepc_err *err) {
    const deepc_tokdata *td = t->td;
    uint32_t size = pow2_at_least((uint64_t)td->n_merges * 4 / 3 + 1);
    int bits = 0;
    while ((1u << bits) < size) bits++;
    t->merges = malloc((size_t)size * sizeof *t->merges);
    uint8_t *buf = malloc(2 * t->max_len + 1);
    if (!t->merges || !buf) {
        free(buf);
        return deepc_errf(err, DEEPC_ERR_NOMEM, "tokenizer: out of memory");
    }
    memset(t->merges, 0xff, (size_t)size * sizeof *t->merges);
    t->merge_mask = size - 1;
    t->merge_shift = 64 - bits;
    for (uint32_t r = 0; r < td->n_merges; r++) {
        uint32_t a = td->merges[2 * r], b = td->merges[2 * r + 1];
        size_t la, lb;
        const uint8_t *sa = tok_bytes(td, a, &la), *sb = tok_bytes(td, b, &lb);
        memcpy(buf, sa, la);
        memcpy(buf + la, sb, lb);
        uint32_t id = vocab_find(t, buf, la + lb);
        if (id == NONE32) {
            free(buf);
            return deepc_errf(err, DEEPC_ERR_FORMAT,
                              "tokenizer: merge %u (%u + %u) makes a token not in the vocabulary",
                              r, a, b);
        }
        /* A repeated pair keeps its last rank, as HF's HashMap collect does. */
        uint32_t i = pair_slot(t, a, b);
        while (t->merges[i].a != NONE32 && !(t->merges[i].a == a && t->merges[i].b == b))
            i = (i + 1) & t->merge_mask;
        t->merges[i] = (merge_slot){a, b, r, id};
    }
    free(buf);
    return DEEPC_OK;
}

/* Sorting context for added patterns (qsort has no user pointer). */
typedef struct {
    const uint8_t *pat;
    uint32_t off, len, id;
} pat_ref;

static int cmp_pat(const void *x, const void *y) {
    const pat_ref *a = x, *b = y;
    uint32_t n = a->len < b->len ? a->len : b->len;
    int c = n ? memcmp(a->pat + a->off, b->pat + b->off, n) : 0;
    if (c) return c;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* Builds set k of the added tokens: normalized ones (k = 1) are matched on
 * normalized text, so their patterns are normalized too. */
static int build_added(deepc_tokenizer *t, int k, deepc_err *err) {
    const deepc_tokdata *td = t->td;
    added_set *as = &t->added[k];
    size_t n = 0, bytes = 0;
    for (uint32_t id = 0; id < td->n_vocab; id++) {
        uint32_t f = td->flags[id];
        if (!(f & DEEPC_TOKF_ADDED) || !(f & DEEPC_TOKF_PRESENT)) continue;
        if (((f & DEEPC_TOKF_NORMALIZED) != 0) != (k == 1)) continue;
        size_t l;
        tok_bytes(td, id, &l);
        if (l == 0) continue;   /* HF ignores empty added tokens */
        n++;
        bytes += 3 * l;
    }
    if (n == 0) return DEEPC_OK;
    pat_ref *refs = malloc(n * sizeof *refs);
    as->pat = malloc(bytes);
    as->ids = malloc(n * sizeof *as->ids);
    as->off = malloc(n * sizeof *as->off);
    as->len = malloc(n * sizeof *as->len);
    if (!refs || !as->pat || !as->ids || !as->off || !as->len) {
        free(refs);
        return deepc_errf(err, DEEPC_ERR_NOMEM, "tokenizer: out of memory");
    }
    size_t w = 0, m = 0;
    for (uint32_t id = 0; id < td->n_vocab; id++) {
        uint32_t f = td->flags[id];
        if (!(f & DEEPC_TOKF_ADDED) || !(f & DEEPC_TOKF_PRESENT)) continue;
        if (((f & DEEPC_TOKF_NORMALIZED) != 0) != (k == 1)) continue;
        size_t l;
        const uint8_t *s = tok_bytes(td, id, &l);
        if (l == 0) continue;
        size_t nl = l;
        if (k == 1 && t->nfc && !deepc_uc_nfc_quick(s, l)) {
            nl = deepc_uc_nfc(s, l, as->pat + w);
            if (nl == (size_t)-1) {
                free(refs);
                return deepc_errf(err, DEEPC_ERR_NOMEM, "tokenizer: out of memory");
            }
        } else {
            memcpy(as->pat + w, s, l);
        }
        refs[m++] = (pat_ref){as->pat, (uint32_t)w, (uint32_t)nl, id};
        w += nl;
    }
    qsort(refs, m, sizeof *refs, cmp_pat);
    /* Equal patterns: keep the lowest id only, so the range narrowing in
     * added_longest sees at most one pattern that ends at a given depth. */
    as->n = 0;
    for (size_t i = 0; i < m; i++) {
        if (as->n > 0 && refs[i].len == as->len[as->n - 1] &&
            memcmp(as->pat + refs[i].off, as->pat + as->off[as->n - 1], refs[i].len) == 0)
            continue;
        as->ids[as->n] = refs[i].id;
        as->off[as->n] = refs[i].off;
        as->len[as->n] = refs[i].len;
        as->first[as->pat[refs[i].off]] = 1;
        as->n++;
    }
    free(refs);
    return DEEPC_OK;
}

deepc_tokenizer *deepc_tokenizer_create(const deepc_tokdata *td, deepc_err *err) {
    if (validate(td, err) != DEEPC_OK) return NULL;
    deepc_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        deepc_errf(err, DEEPC_ERR_NOMEM, "tokenizer: out of memory");
        return NULL;
    }
    t->td = td;
    t->ignore_merges = (td->gflags & DEEPC_TOKDATA_IGNORE_MERGES) != 0;
    t->nfc = td->normalizer == DEEPC_NORM_NFC;
    if (build_vocab(t, err) != DEEPC_OK) goto fail;
    if (build_merges(t, err) != DEEPC_OK) goto fail;
    if (build_added(t, 0, err) != DEEPC_OK) goto fail;
    if (build_added(t, 1, err) != DEEPC_OK) goto fail;
    return t;
fail:
    deepc_tokenizer_destroy(t);
    return NULL;
}

void deepc_tokenizer_destroy(deepc_tokenizer *t) {
    if (!t) return;
    for (int k = 0; k < 2; k++) {
        free(t->added[k].ids);
        free(t->added[k].off);
        free(t->added[k].len);
        free(t->added[k].pat);
    }
    free(t->vocab);
    free(t->merges);
    free(t);
}

size_t deepc_tokenizer_max_piece(const deepc_tokenizer *t) {
    /* Worst case: 3 pending bytes and every byte invalid, each -> U+FFFD. */
    return 3 * (t->max_len + 3);
}

/* ------------------------------------------------------------------------
 * Encoding
 * ------------------------------------------------------------------------ */

typedef struct {
    uint32_t rank, pos, id;
} heap_ent;

/* Per-call state: output and scratch, grown on demand (amortized: no
 * allocation per word once the longest word so far fits). */
typedef struct {
    const deepc_tokenizer *t;
    const uint8_t *base;       /* text the current pre-tokenizer run sees */
    int32_t *ids;
    size_t cap, n;
    size_t scap;               /* symbols the scratch arrays hold */
    uint32_t *sym, *rank, *nid;
    int32_t *prev, *next;
    heap_ent *heap;
    uint8_t *norm;             /* NFC output, 3 * text length, or NULL */
    bool parse_special;        /* split on added tokens at all */
    const uint8_t *text;       /* the caller's text, for span offsets */
    const size_t *plain;       /* 2 * n_plain sorted byte ranges kept plain */
    size_t n_plain;
    int status;
} enc_ctx;

static inline void put_id(enc_ctx *c, uint32_t id) {
    if (c->n < c->cap) c->ids[c->n] = (int32_t)id;
    c->n++;
}

static int grow_scratch(enc_ctx *c, size_t need) {
    size_t cap = c->scap ? c->scap : 256;
    while (cap < need) cap *= 2;
    /* sym, rank, nid, prev, next: 5 x 4 bytes; heap: 3 entries per symbol. */
    uint8_t *mem = malloc(cap * 20 + 3 * cap * sizeof(heap_ent));
    if (!mem) return c->status = DEEPC_ERR_NOMEM;
    free(c->sym);
    c->sym = (uint32_t *)mem;
    c->rank = c->sym + cap;
    c->nid = c->rank + cap;
    c->prev = (int32_t *)(c->nid + cap);
    c->next = c->prev + cap;
    c->heap = (heap_ent *)(c->next + cap);
    c->scap = cap;
    return DEEPC_OK;
}

static inline void pair_info(const deepc_tokenizer *t, uint32_t a, uint32_t b, uint32_t *rank,
                             uint32_t *id) {
    const merge_slot *m = merge_find(t, a, b);
    *rank = m ? m->rank : NONE32;
    *id = m ? m->id : NONE32;
}

/* Short words: rescan for the lowest-ranked pair after every merge. */
static void bpe_small(enc_ctx *c, size_t n) {
    const deepc_tokenizer *t = c->t;
    uint32_t *sym = c->sym, *rank = c->rank, *nid = c->nid;
    for (size_t i = 0; i + 1 < n; i++) pair_info(t, sym[i], sym[i + 1], &rank[i], &nid[i]);
    while (n > 1) {
        uint32_t best = NONE32;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < n; i++)
            if (rank[i] < best) { best = rank[i]; bi = i; }
        if (best == NONE32) break;
        sym[bi] = nid[bi];
        memmove(sym + bi + 1, sym + bi + 2, (n - bi - 2) * sizeof *sym);
        if (bi + 2 < n - 1) {
            memmove(rank + bi + 1, rank + bi + 2, (n - bi - 3) * sizeof *rank);
            memmove(nid + bi + 1, nid + bi + 2, (n - bi - 3) * sizeof *nid);
        }
        n--;
        if (bi > 0) pair_info(t, sym[bi - 1], sym[bi], &rank[bi - 1], &nid[bi - 1]);
        if (bi + 1 < n) pair_info(t, sym[bi], sym[bi + 1], &rank[bi], &nid[bi]);
    }
    for (size_t i = 0; i < n; i++) put_id(c, sym[i]);
}

static inline bool heap_less(heap_ent a, heap_ent b) {
    return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos);
}

static void heap_push(heap_ent *h, size_t *n, heap_ent e) {
    size_t i = (*n)++;
    while (i > 0 && heap_less(e, h[(i - 1) / 2])) { h[i] = h[(i - 1) / 2]; i = (i - 1) / 2; }
    h[i] = e;
}

static heap_ent heap_pop(heap_ent *h, size_t *n) {
    heap_ent top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= *n) break;
        if (l + 1 < *n && heap_less(h[l + 1], h[l])) l++;
        if (!heap_less(h[l], last)) break;
        h[i] = h[l];
        i = l;
    }
    if (*n > 0) h[i] = last;
    return top;
}

/* Long words: HF's Word::merge_all - a priority queue of (rank, position)
 * over a linked list of symbols; stale entries are skipped when the pair at
 * their position no longer produces the same token. Same result as
 * bpe_small, in O(n log n). */
static void bpe_heap(enc_ctx *c, size_t n) {
    const deepc_tokenizer *t = c->t;
    uint32_t *sym = c->sym;
    int32_t *prev = c->prev, *next = c->next;
    heap_ent *h = c->heap;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        const merge_slot *m = merge_find(t, sym[i], sym[i + 1]);
        if (m) heap_push(h, &hn, (heap_ent){m->rank, (uint32_t)i, m->id});
    }
    while (hn > 0) {
        heap_ent top = heap_pop(h, &hn);
        uint32_t p = top.pos;
        if (sym[p] == NONE32 || next[p] < 0) continue;
        uint32_t q = (uint32_t)next[p];
        const merge_slot *m = merge_find(t, sym[p], sym[q]);
        if (!m || m->id != top.id) continue;
        sym[p] = top.id;
        sym[q] = NONE32;
        next[p] = next[q];
        if (next[q] >= 0) prev[next[q]] = (int32_t)p;
        if (prev[p] >= 0) {
            m = merge_find(t, sym[prev[p]], sym[p]);
            if (m) heap_push(h, &hn, (heap_ent){m->rank, (uint32_t)prev[p], m->id});
        }
        if (next[p] >= 0) {
            m = merge_find(t, sym[p], sym[next[p]]);
            if (m) heap_push(h, &hn, (heap_ent){m->rank, p, m->id});
        }
    }
    for (int32_t i = 0; i >= 0; i = next[i]) put_id(c, sym[i]);
}

/* BPE of one pre-token w[0..n). */
static int bpe_word(enc_ctx *c, const uint8_t *w, size_t n) {
    const deepc_tokenizer *t = c->t;
    if (n == 1) {
        if (t->byte_id[w[0]] >= 0) put_id(c, (uint32_t)t->byte_id[w[0]]);
        return 0;
    }
    if (t->ignore_merges) {
        uint32_t id = vocab_find(t, w, n);
        if (id != NONE32 && !(t->td->flags[id] & DEEPC_TOKF_ADDED)) {
            put_id(c, id);
            return 0;
        }
    }
    if (n > c->scap && grow_scratch(c, n) != DEEPC_OK) return c->status;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        /* A byte without a token is dropped, as HF drops characters missing
         * from the vocabulary when there is no unk token. */
        int32_t id = t->byte_id[w[i]];
        if (id >= 0) c->sym[m++] = (uint32_t)id;
    }
    if (m <= SMALL_WORD) bpe_small(c, m);
    else bpe_heap(c, m);
    return 0;
}

static int on_pretoken(void *ctx, size_t a, size_t b) {
    enc_ctx *c = ctx;
    return bpe_word(c, c->base + a, b - a);
}

static int encode_plain(enc_ctx *c, const uint8_t *s, size_t n) {
    c->base = s;
    return deepc_pretok_run((deepc_pretok_kind)c->t->td->pretok, s, n, on_pretoken, c);
}

/* True if the character ending right before s[i] is a \w character. */
static bool word_before(const uint8_t *s, size_t i) {
    size_t j = i - 1, k = 0;
    while (j > 0 && k < 3 && (s[j] & 0xc0) == 0x80) { j--; k++; }
    size_t len;
    uint32_t cp = deepc_utf8_decode(s + j, i - j, &len);
    if (j + len != i) return false;   /* the last byte is not part of a valid char */
    return (deepc_uc_props(cp) & DEEPC_UC_WORD) != 0;
}

static bool word_at(const uint8_t *s, size_t n, size_t i) {
    size_t len;
    return (deepc_uc_props(deepc_utf8_decode(s + i, n - i, &len)) & DEEPC_UC_WORD) != 0;
}

/* Start of the whitespace run ending at s[i] (\s*$ on s[0..i)). */
static size_t space_back(const uint8_t *s, size_t i) {
    while (i > 0) {
        size_t j = i - 1, k = 0;
        while (j > 0 && k < 3 && (s[j] & 0xc0) == 0x80) { j--; k++; }
        size_t len;
        uint32_t cp = deepc_utf8_decode(s + j, i - j, &len);
        if (j + len != i || !(deepc_uc_props(cp) & DEEPC_UC_WS)) break;
        i = j;
    }
    return i;
}

static size_t space_fwd(const uint8_t *s, size_t n, size_t i) {
    while (i < n) {
        size_t len;
        uint32_t cp = deepc_utf8_decode(s + i, n - i, &len);
        if (!(deepc_uc_props(cp) & DEEPC_UC_WS)) break;
        i += len;
    }
    return i;
}

/* Index in as of the longest pattern that s[i..n) starts with, or -1. */
static int added_longest(const added_set *as, const uint8_t *s, size_t n, size_t i, size_t *mlen) {
    uint32_t lo = 0, hi = as->n;
    int best = -1;
    for (size_t k = 0; lo < hi; k++) {
        /* All patterns in [lo, hi) equal s[i .. i+k); the one of length k
         * (at most one, and first in sorted order) is a match. */
        if (as->len[lo] == k) {
            best = (int)lo;
            *mlen = k;
            if (++lo == hi) break;
        }
        if (i + k >= n) break;
        uint8_t ch = s[i + k];
        uint32_t a = lo, b = hi;
        while (a < b) {   /* first pattern with byte k >= ch */
            uint32_t mid = (a + b) / 2;
            if (as->pat[as->off[mid] + k] < ch) a = mid + 1;
            else b = mid;
        }
        lo = a;
        b = hi;
        while (a < b) {   /* first pattern with byte k > ch */
            uint32_t mid = (a + b) / 2;
            if (as->pat[as->off[mid] + k] <= ch) a = mid + 1;
            else b = mid;
        }
        hi = a;
    }
    return best;
}

typedef int (*gap_fn)(enc_ctx *c, const uint8_t *s, size_t n);

/* True if [a, b) of the caller's text overlaps a range kept plain. */
static bool overlaps_plain(const enc_ctx *c, size_t a, size_t b) {
    size_t lo = 0, hi = c->n_plain;
    while (lo < hi) {   /* first range ending after a */
        size_t mid = (lo + hi) / 2;
        if (c->plain[2 * mid + 1] <= a) lo = mid + 1;
        else hi = mid;
    }
    return lo < c->n_plain && c->plain[2 * lo] < b;
}

/* HF AddedVocabulary::find_matches over s[0..n): added tokens become ids,
 * the text between them goes to gap(). base: offset of s in the caller's
 * text, for the plain ranges (only used when there are some). */
static int split_added(enc_ctx *c, const added_set *as, const uint8_t *s, size_t n, size_t base,
                       gap_fn gap) {
    const uint32_t *flags = c->t->td->flags;
    size_t i = 0, done = 0;
    int r;
    while (i < n) {
        if (!as->first[s[i]]) { i++; continue; }
        size_t mlen = 0;
        int k = added_longest(as, s, n, i, &mlen);
        if (k < 0) { i++; continue; }
        /* A match touching a plain range is not one (content cannot forge
         * tokens, not even together with the template text around it). */
        if (c->n_plain && overlaps_plain(c, base + i, base + i + mlen)) { i++; continue; }
        uint32_t id = as->ids[k], f = flags[id];
        size_t start = i, stop = i + mlen;
        if (f & DEEPC_TOKF_SINGLE_WORD) {
            bool alone_left = start == 0 || !word_before(s, start);
            bool alone_right = stop == n || !word_at(s, n, stop);
            if (!alone_left || !alone_right) { i = stop; continue; }   /* search goes on after it */
        }
        if (f & DEEPC_TOKF_LSTRIP) {
            size_t ns = space_back(s, start);
            start = ns > done ? ns : done;
        }
        if (f & DEEPC_TOKF_RSTRIP) stop = space_fwd(s, n, stop);
        if (done < start && (r = gap(c, s + done, start - done))) return r;
        put_id(c, id);
        done = i = stop;
    }
    if (done < n) return gap(c, s + done, n - done);
    return 0;
}

/* A gap of the raw text: normalize, then split on normalized added tokens. */
static int raw_gap(enc_ctx *c, const uint8_t *s, size_t n) {
    size_t base = (size_t)(s - c->text);
    bool split = c->parse_special && c->t->added[1].n;
    if (c->t->nfc && !deepc_uc_nfc_quick(s, n)) {
        /* Offsets in the normalized text no longer map to the caller's, so a
         * gap that touches a plain range gets no added tokens at all. */
        if (c->n_plain && overlaps_plain(c, base, base + n)) split = false;
        size_t m = deepc_uc_nfc(s, n, c->norm);
        if (m == (size_t)-1) return c->status = DEEPC_ERR_NOMEM;
        s = c->norm;
        n = m;
    }
    if (split) return split_added(c, &c->t->added[1], s, n, base, encode_plain);
    return encode_plain(c, s, n);
}

static int encode(const deepc_tokenizer *t, const char *text, size_t len, bool add_bos,
                  bool parse_special, const size_t *plain, size_t n_plain,
                  int32_t *ids, size_t cap, size_t *n_out, deepc_err *err) {
    if (n_out) *n_out = 0;
    if (!t || (!text && len) || (!ids && cap) || !n_out || (!plain && n_plain))
        return deepc_errf(err, DEEPC_ERR_INVALID_ARG, "tokenizer_encode: NULL argument");
    for (size_t k = 0; k < n_plain; k++)
        if (plain[2 * k] > plain[2 * k + 1] || plain[2 * k + 1] > len ||
            (k > 0 && plain[2 * k] < plain[2 * k - 1]))
            return deepc_errf(err, DEEPC_ERR_INVALID_ARG,
                              "tokenizer_encode: plain range %zu is not sorted within the text", k);
    const uint8_t *s = (const uint8_t *)text;
    enc_ctx c = {.t = t, .ids = ids, .cap = cap, .parse_special = parse_special,
                 .text = s, .plain = plain, .n_plain = n_plain};
    if (add_bos && t->td->bos_id >= 0) put_id(&c, (uint32_t)t->td->bos_id);
    if (t->nfc && len && !deepc_uc_nfc_quick(s, len)) {
        if (len > SIZE_MAX / 3 || !(c.norm = malloc(3 * len))) c.status = DEEPC_ERR_NOMEM;
    }
    if (c.status == DEEPC_OK) {
        if (parse_special && t->added[0].n) split_added(&c, &t->added[0], s, len, 0, raw_gap);
        else raw_gap(&c, s, len);
    }
    free(c.sym);
    free(c.norm);
    if (c.status != DEEPC_OK)
        return deepc_errf(err, c.status, "tokenizer_encode: out of memory (%zu bytes of text)", len);
    *n_out = c.n;
    return DEEPC_OK;
}

int deepc_tokenizer_encode(const deepc_tokenizer *t, const char *text, size_t len,
                           bool add_bos, bool parse_special,
                           int32_t *ids, size_t cap, size_t *n_out, deepc_err *err) {
    return encode(t, text, len, add_bos, parse_special, NULL, 0, ids, cap, n_out, err);
}

int deepc_tokenizer_encode_spans(const deepc_tokenizer *t, const char *text, size_t len,
                                 bool add_bos, const size_t *plain, size_t n_plain,
                                 int32_t *ids, size_t cap, size_t *n_out, deepc_err *err) {
    return encode(t, text, len, add_bos, true, plain, n_plain, ids, cap, n_out, err);
}

/* ------------------------------------------------------------------------
 * Decoding
 * ------------------------------------------------------------------------ */

/* Expected length of a UTF-8 sequence from its lead byte, 0 if invalid. */
static size_t seq_len(uint8_t c) {
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) return 2;
    if (c >= 0xe0 && c <= 0xef) return 3;
    if (c >= 0xf0 && c <= 0xf4) return 4;
    return 0;
}

/* Bytes of s[0..n) that form a valid prefix of one UTF-8 sequence (the whole
 * sequence when complete). s[0] must be a valid lead byte. */
static size_t valid_prefix(const uint8_t *s, size_t n) {
    size_t need = seq_len(s[0]), k = 1;
    while (k < need && k < n) {
        uint8_t b = s[k];
        if ((b & 0xc0) != 0x80) break;
        if (k == 1 && ((s[0] == 0xe0 && b < 0xa0) || (s[0] == 0xed && b > 0x9f) ||
                       (s[0] == 0xf0 && b < 0x90) || (s[0] == 0xf4 && b > 0x8f)))
            break;
        k++;
    }
    return k;
}

static const uint8_t repl[3] = {0xef, 0xbf, 0xbd};   /* U+FFFD */

/* Appends b[0..n) to out if it fits; false when out is full. */
static bool out_put(char *out, size_t cap, size_t *w, const uint8_t *b, size_t n) {
    if (*w + n > cap) return false;
    memcpy(out + *w, b, n);
    *w += n;
    return true;
}

size_t deepc_tokenizer_decode_push(const deepc_tokenizer *t, deepc_detok_state *st,
                                   int32_t id, char *out, size_t cap) {
    if (!t || !st || id < 0 || (uint32_t)id >= t->td->n_vocab ||
        !(t->td->flags[id] & DEEPC_TOKF_PRESENT))
        return 0;
    size_t nb, w = 0, i = 0;
    const uint8_t *b = tok_bytes(t->td, (uint32_t)id, &nb);
    if (st->n_pend < 0 || st->n_pend > 3) st->n_pend = 0;
    if (st->n_pend > 0) {
        /* Complete the held-back character with the first bytes of this token. */
        uint8_t tmp[8];
        size_t k = (size_t)st->n_pend, pend = k;
        memcpy(tmp, st->pend, k);
        while (k < 4 && i < nb) tmp[k++] = b[i++];
        size_t m = valid_prefix(tmp, k), need = seq_len(tmp[0]);
        if (m < need && m == k) {           /* still incomplete: keep holding */
            memcpy(st->pend, tmp, k);
            st->n_pend = (int)k;
            return 0;
        }
        st->n_pend = 0;
        if (m == need) out_put(out, cap, &w, tmp, m);
        else out_put(out, cap, &w, repl, 3);
        i = m > pend ? m - pend : 0;        /* token bytes used by that character */
    }
    while (i < nb) {
        uint8_t ch = b[i];
        if (ch < 0x80) {
            if (!out_put(out, cap, &w, b + i, 1)) return w;
            i++;
            continue;
        }
        size_t need = seq_len(ch);
        if (need == 0) {
            if (!out_put(out, cap, &w, repl, 3)) return w;
            i++;
            continue;
        }
        size_t m = valid_prefix(b + i, nb - i);
        if (m == need) {
            if (!out_put(out, cap, &w, b + i, m)) return w;
        } else if (i + m == nb) {           /* incomplete at the end: hold back */
            memcpy(st->pend, b + i, m);
            st->n_pend = (int)m;
        } else if (!out_put(out, cap, &w, repl, 3)) {
            return w;
        }
        i += m;
    }
    return w;
}

size_t deepc_tokenizer_decode_flush(deepc_detok_state *st, char *out, size_t cap) {
    if (!st) return 0;
    size_t w = 0;
    if (st->n_pend > 0) out_put(out, cap, &w, repl, 3);
    st->n_pend = 0;
    return w;
}
