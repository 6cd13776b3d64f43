/* json.c - owns the JSON DOM: a recursive-descent parser for hostile input
 * that builds an arena-allocated tree, a per-object hash index for O(1) key
 * lookup, and a locale-independent, correctly rounded decimal -> double
 * conversion (so "0.1" in a config gives exactly the C literal 0.1 whatever
 * LC_NUMERIC says).
 *
 * Memory: a document is one small header plus a few large arena chunks; the
 * parser's only other allocation is a scratch stack of pending container
 * members, freed before deepc_json_parse returns. */
#include "json.h"

#include <float.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 512
/* Every length, count and offset then fits in 32 bits. */
#define JSON_MAX_BYTES ((size_t)UINT32_MAX - 1)
/* Objects this small are searched linearly: cheaper than hashing. */
#define JSON_SMALL_OBJECT 8

typedef struct json_member json_member;

struct deepc_json {
    uint8_t type;               /* deepc_json_type */
    bool b;                     /* BOOL */
    uint32_t n;                 /* STRING/NUMBER: byte length; ARRAY/OBJECT: count */
    union {
        const char *s;          /* STRING: decoded UTF-8; NUMBER: the literal text */
        const deepc_json *items;
        const json_member *members;
    } u;
    const uint32_t *index;      /* OBJECT with > JSON_SMALL_OBJECT members: hash slots
                                   holding member index + 1 (0 = empty) */
};

struct json_member {
    const char *key;            /* NUL-terminated, may also contain NULs */
    uint32_t klen;
    uint32_t hash;
    deepc_json val;
};

/* ---- arena ------------------------------------------------------------- */

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t cap, used;
    _Alignas(8) unsigned char data[];
} arena_chunk;

typedef struct {
    arena_chunk *head;
    size_t next_cap;            /* chunks double up to a cap: O(log n) mallocs */
} arena;

#define ARENA_MIN_CHUNK ((size_t)64 << 10)
#define ARENA_MAX_CHUNK ((size_t)64 << 20)

static void *arena_alloc(arena *a, size_t n) {
    if (n > SIZE_MAX - 64) return NULL;
    n = (n + 7) & ~(size_t)7;
    arena_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = a->next_cap < n ? n : a->next_cap;
        if (cap > SIZE_MAX - sizeof *c) return NULL;
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
        if (a->next_cap < ARENA_MAX_CHUNK) a->next_cap *= 2;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

/* Gives back the tail of the most recent allocation (strings are allocated
 * at their escaped length and usually decode shorter). */
static void arena_shrink_last(arena *a, void *p, size_t old_n, size_t new_n) {
    arena_chunk *c = a->head;
    old_n = (old_n + 7) & ~(size_t)7;
    new_n = (new_n + 7) & ~(size_t)7;
    if (c && (unsigned char *)p + old_n == c->data + c->used) c->used -= old_n - new_n;
}

static void arena_free(arena *a) {
    arena_chunk *c = a->head;
    while (c) {
        arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

struct deepc_json_doc {
    arena ar;
    deepc_json root;
};

/* ---- decimal -> double ------------------------------------------------- */

/* A decimal number held as digits, for exact binary scaling (the simple,
 * always-correct algorithm of Go's strconv "decimal" fallback). 800 digits
 * plus a truncation flag are enough to round every double correctly. */
#define DEC_DIGITS 800

typedef struct {
    uint8_t d[DEC_DIGITS];      /* digit values 0..9, most significant first */
    int nd;                     /* digits used */
    int dp;                     /* decimal point position: value = 0.d[0..nd) * 10^dp */
    bool neg;
    bool trunc;                 /* nonzero digits were dropped beyond DEC_DIGITS */
} decimal;

static void dec_trim(decimal *a) {
    while (a->nd > 0 && a->d[a->nd - 1] == 0) a->nd--;
    if (a->nd == 0) a->dp = 0;
}

/* Reads a literal already validated against the JSON number grammar. */
static void dec_read(decimal *a, const char *s, size_t len) {
    size_t i = 0;
    int64_t dp = 0;
    bool seen_point = false, seen_digit = false;
    a->nd = 0;
    a->neg = false;
    a->trunc = false;
    if (i < len && s[i] == '-') { a->neg = true; i++; }
    for (; i < len; i++) {
        char c = s[i];
        if (c == '.') { seen_point = true; continue; }
        if (c < '0' || c > '9') break;
        if (c == '0' && !seen_digit) {  /* leading zeros only move the point */
            if (seen_point) dp--;
            continue;
        }
        seen_digit = true;
        if (!seen_point) dp++;
        if (a->nd < DEC_DIGITS) a->d[a->nd++] = (uint8_t)(c - '0');
        else if (c != '0') a->trunc = true;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        bool eneg = false;
        if (i < len && (s[i] == '+' || s[i] == '-')) eneg = s[i++] == '-';
        int64_t e = 0;
        /* Saturate: beyond 10^6 the value is zero or infinite anyway. */
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
            if (e < 1000000) e = e * 10 + (s[i] - '0');
        dp += eneg ? -e : e;
    }
    if (dp > 1000000) dp = 1000000;
    if (dp < -1000000) dp = -1000000;
    a->dp = (int)dp;
    dec_trim(a);
}

/* Multiplies by 2^k, k <= 60. */
static void dec_lshift(decimal *a, unsigned k) {
    /* The product has at most k/3 + 1 more digits (log10 2 < 1/3). */
    uint8_t tmp[DEC_DIGITS + 24];
    int extra = (int)(k / 3) + 1;
    int w = a->nd + extra;
    uint64_t n = 0;
    for (int r = a->nd - 1; r >= 0; r--) {
        n += (uint64_t)a->d[r] << k;
        tmp[--w] = (uint8_t)(n % 10);
        n /= 10;
    }
    while (n > 0) {
        tmp[--w] = (uint8_t)(n % 10);
        n /= 10;
    }
    int newnd = a->nd + extra - w;
    int keep = newnd < DEC_DIGITS ? newnd : DEC_DIGITS;
    memcpy(a->d, tmp + w, (size_t)keep);
    for (int i = keep; i < newnd; i++)
        if (tmp[w + i] != 0) a->trunc = true;
    a->dp += newnd - a->nd;             /* the point moves right by the new digits */
    a->nd = keep;
    dec_trim(a);
}

/* Divides by 2^k, k <= 60. */
static void dec_rshift(decimal *a, unsigned k) {
    int r = 0, w = 0;
    uint64_t n = 0;
    for (; (n >> k) == 0; r++) {
        if (r >= a->nd) {
            if (n == 0) { a->nd = 0; a->dp = 0; return; }
            while ((n >> k) == 0) { n *= 10; r++; }
            break;
        }
        n = n * 10 + a->d[r];
    }
    a->dp -= r - 1;
    uint64_t mask = ((uint64_t)1 << k) - 1;
    for (; r < a->nd; r++) {
        uint8_t c = a->d[r];
        a->d[w++] = (uint8_t)(n >> k);
        n = (n & mask) * 10 + c;
    }
    while (n > 0) {
        uint8_t dig = (uint8_t)(n >> k);
        n &= mask;
        if (w < DEC_DIGITS) a->d[w++] = dig;
        else if (dig > 0) a->trunc = true;
        n *= 10;
    }
    a->nd = w;
    dec_trim(a);
}

static void dec_shift(decimal *a, int k) {
    if (a->nd == 0) return;
    while (k > 0) {
        int s = k > 60 ? 60 : k;
        dec_lshift(a, (unsigned)s);
        k -= s;
    }
    while (k < 0) {
        int s = -k > 60 ? 60 : -k;
        dec_rshift(a, (unsigned)s);
        k += s;
    }
}

/* Integer part rounded half-to-even (halfway decided by the truncation flag). */
static uint64_t dec_rounded_integer(const decimal *a) {
    if (a->dp > 20) return UINT64_MAX;
    uint64_t n = 0;
    int i;
    for (i = 0; i < a->dp && i < a->nd; i++) n = n * 10 + a->d[i];
    for (; i < a->dp; i++) n *= 10;
    int nd = a->dp;
    bool up = false;
    if (nd >= 0 && nd < a->nd) {
        if (a->d[nd] == 5 && nd + 1 == a->nd)
            up = a->trunc || (nd > 0 && (a->d[nd - 1] & 1));
        else
            up = a->d[nd] >= 5;
    }
    return n + up;
}

/* Returns false when the value overflows a double. Consumes a. */
static bool dec_to_double(decimal *a, double *out) {
    static const int powtab[] = {1, 3, 6, 9, 13, 16, 19, 23, 26};
    uint64_t mant = 0;
    int exp = -1023;
    if (a->nd == 0 || a->dp < -330) goto done;
    if (a->dp > 310) return false;
    exp = 0;
    /* Scale into [0.5, 1) by powers of two, remembering the exponent. */
    while (a->dp > 0) {
        int n = a->dp >= 19 ? 60 : a->dp >= 9 ? 27 : powtab[a->dp];  /* big steps while far away */
        dec_shift(a, -n);
        exp += n;
    }
    while (a->dp < 0 || (a->dp == 0 && a->d[0] < 5)) {
        int n = -a->dp >= 19 ? 60 : -a->dp >= 9 ? 27 : powtab[-a->dp];
        dec_shift(a, n);
        exp -= n;
    }
    exp--;                              /* [0.5, 1) -> [1, 2) */
    if (exp < -1022) {                  /* subnormal: fewer mantissa bits */
        int n = -1022 - exp;
        dec_shift(a, -n);
        exp += n;
    }
    if (exp + 1023 >= 0x7FF) return false;
    dec_shift(a, 53);
    mant = dec_rounded_integer(a);
    if (mant == (uint64_t)2 << 52) {    /* rounding carried into a new bit */
        mant >>= 1;
        exp++;
        if (exp + 1023 >= 0x7FF) return false;
    }
    if (!(mant & ((uint64_t)1 << 52))) exp = -1023;
done:;
    uint64_t bits = (mant & (((uint64_t)1 << 52) - 1)) | ((uint64_t)((exp + 1023) & 0x7FF) << 52);
    if (a->neg) bits |= (uint64_t)1 << 63;
    memcpy(out, &bits, sizeof *out);
    return true;
}

/* Exact powers of ten representable as doubles. */
static const double pow10_exact[] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static bool number_value(const char *s, size_t len, double *out) {
    decimal a;
    dec_read(&a, s, len);
#if FLT_EVAL_METHOD == 0
    /* Fast path (Clinger): an exact mantissa times an exact power of ten is
     * one correctly rounded IEEE operation. Covers almost every real number. */
    if (!a.trunc && a.nd <= 19) {
        uint64_t m = 0;
        for (int i = 0; i < a.nd; i++) m = m * 10 + a.d[i];
        int e = a.dp - a.nd;
        if (m <= (uint64_t)1 << 53 && e >= -22 && e <= 22) {
            double v = (double)m;
            v = e < 0 ? v / pow10_exact[-e] : v * pow10_exact[e];
            *out = a.neg ? -v : v;
            return true;
        }
    }
#endif
    return dec_to_double(&a, out);
}

/* The smallest magnitude that rounds to infinity: 2^1024 - 2^970, halfway
 * between DBL_MAX and 2^1024 (a tie, which rounds to the even mantissa, up). */
static const char dbl_overflow_digits[] =
    "1797693134862315807937289714053034150799341327100378269361737789804449"
    "6829276475094664901797758720709633028641669288791094655554785194040263"
    "0657488671505820681908902000708383676273854845817711531764475730270069"
    "8555713669596228429148198608349364752927190741684443655107043427115596"
    "99508093042880177904174497792";

/* Overflow is the only numeric error and is decided at parse time by
 * comparing digits, never by rounding. The double itself is computed when
 * asked for, so a hostile document full of slow-to-round numbers (up to ~10 us
 * each) costs nothing until someone reads them. */
static bool number_in_range(const char *s, size_t len) {
    decimal a;
    dec_read(&a, s, len);
    if (a.nd == 0 || a.dp < 309) return true;      /* below 10^308 < DBL_MAX */
    if (a.dp > 309) return false;                  /* at least 10^309 */
    for (int i = 0; i < 309; i++) {
        int d = i < a.nd ? a.d[i] : 0, t = dbl_overflow_digits[i] - '0';
        if (d != t) return d < t;
    }
    return false;                                  /* equal or more digits: >= threshold */
}

/* ---- parser ------------------------------------------------------------ */

typedef struct {
    const unsigned char *s;
    size_t len, pos;
    arena *ar;
    json_member *stack;         /* members of the containers being parsed */
    size_t sp, scap;
    deepc_err *err;
} parser;

/* Reports "JSON: <problem> at byte <at>" and returns false. */
static bool fail(parser *P, size_t at, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static bool fail(parser *P, size_t at, const char *fmt, ...) {
    char buf[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    deepc_errf(P->err, 0, "JSON: %s at byte %zu", buf, at);
    return false;
}

static bool fail_oom(parser *P) {
    deepc_errf(P->err, 0, "JSON: out of memory at byte %zu", P->pos);
    return false;
}

/* Describes the byte at pos for an error message. */
static bool fail_unexpected(parser *P, const char *context) {
    if (P->pos >= P->len) return fail(P, P->pos, "unexpected end of input%s", context);
    unsigned c = P->s[P->pos];
    if (c >= 0x80) return fail(P, P->pos, "unexpected byte 0x%02X (invalid UTF-8?)%s", c, context);
    if (c < 0x20 || c == 0x7F) return fail(P, P->pos, "unexpected control character 0x%02X%s", c, context);
    return fail(P, P->pos, "unexpected '%c'%s", (char)c, context);
}

static void skip_ws(parser *P) {
    while (P->pos < P->len) {
        unsigned char c = P->s[P->pos];
        if (c != ' ' && c != '\n' && c != '\r' && c != '\t') break;
        P->pos++;
    }
}

static uint32_t hash_bytes(const char *s, size_t n) {
    uint32_t h = 2166136261u;                  /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static int hex_val(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads 4 hex digits at pos (no bounds/escape checks beyond that), -1 if bad. */
static long read_hex4(const parser *P, size_t pos) {
    if (pos + 4 > P->len) return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_val(P->s[pos + i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *p, size_t avail) {
    unsigned c = p[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if (avail < n) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return n;
}

/* Parses a string at pos (which holds '"') into the arena. Two passes: find
 * the closing quote to size the buffer, then decode and validate. */
static bool parse_string(parser *P, const char **out, uint32_t *out_len) {
    size_t start = P->pos, q = start + 1;
    while (q < P->len && P->s[q] != '"') q += P->s[q] == '\\' ? 2 : 1;
    if (q >= P->len) return fail(P, start, "unterminated string starting");
    size_t raw = q - start - 1;
    char *o = arena_alloc(P->ar, raw + 1);
    if (!o) return fail_oom(P);
    size_t w = 0, i = start + 1;
    while (i < q) {
        unsigned char c = P->s[i];
        if (c >= 0x20 && c < 0x80 && c != '\\') {
            o[w++] = (char)c;
            i++;
        } else if (c >= 0x80) {
            size_t n = utf8_seq_len(P->s + i, q - i);
            if (!n) return fail(P, i, "invalid UTF-8 in string");
            memcpy(o + w, P->s + i, n);
            w += n;
            i += n;
        } else if (c < 0x20) {
            return fail(P, i, "unescaped control character 0x%02X in string", c);
        } else { /* backslash */
            unsigned char e = P->s[i + 1];
            const char *simple = strchr("\"\\/bfnrt", e);
            if (e && simple) {
                static const char map[] = "\"\\/\b\f\n\r\t";
                o[w++] = map[simple - "\"\\/bfnrt"];
                i += 2;
                continue;
            }
            if (e != 'u') {
                if (e >= 0x21 && e < 0x7F) return fail(P, i, "invalid escape '\\%c'", e);
                return fail(P, i, "invalid escape: '\\' followed by byte 0x%02X", e);
            }
            long cp = i + 6 <= q ? read_hex4(P, i + 2) : -1;
            if (cp < 0) return fail(P, i, "invalid \\u escape (need 4 hex digits)");
            i += 6;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                /* A high surrogate pairs with an immediately following low one;
                 * anything else leaves it lone, and lone surrogates become U+FFFD. */
                long lo = (i + 6 <= q && P->s[i] == '\\' && P->s[i + 1] == 'u') ? read_hex4(P, i + 2) : -1;
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                } else {
                    cp = 0xFFFD;
                }
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                cp = 0xFFFD;
            }
            w += put_utf8(o + w, (uint32_t)cp);
        }
    }
    o[w] = 0;
    arena_shrink_last(P->ar, o, raw + 1, w + 1);
    P->pos = q + 1;
    *out = o;
    *out_len = (uint32_t)w;
    return true;
}

static bool parse_number(parser *P, deepc_json *v) {
    size_t start = P->pos, i = start;
    const unsigned char *s = P->s;
    size_t n = P->len;
    if (i < n && s[i] == '-') i++;
    if (i >= n || s[i] < '0' || s[i] > '9') {
        P->pos = i;
        return fail_unexpected(P, " in number");
    }
    if (s[i] == '0') {
        i++;
        if (i < n && s[i] >= '0' && s[i] <= '9') return fail(P, i - 1, "leading zero in number");
    } else {
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || s[i] < '0' || s[i] > '9') {
            P->pos = i;
            return fail_unexpected(P, " (need a digit after '.')");
        }
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= n || s[i] < '0' || s[i] > '9') {
            P->pos = i;
            return fail_unexpected(P, " (need a digit in the exponent)");
        }
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    }
    size_t len = i - start;
    if (!number_in_range((const char *)s + start, len)) return fail(P, start, "number out of range");
    char *lit = arena_alloc(P->ar, len + 1);
    if (!lit) return fail_oom(P);
    memcpy(lit, s + start, len);
    lit[len] = 0;
    v->type = DEEPC_JSON_NUMBER;
    v->u.s = lit;
    v->n = (uint32_t)len;
    P->pos = i;
    return true;
}

static bool push_member(parser *P, const char *key, uint32_t klen, uint32_t hash, const deepc_json *val) {
    if (P->sp == P->scap) {
        size_t cap = P->scap ? P->scap * 2 : 256;
        json_member *ns = realloc(P->stack, cap * sizeof *ns);
        if (!ns) return fail_oom(P);
        P->stack = ns;
        P->scap = cap;
    }
    json_member *m = &P->stack[P->sp++];
    m->key = key;
    m->klen = klen;
    m->hash = hash;
    m->val = *val;
    return true;
}

static uint32_t index_cap(uint32_t n) {
    uint32_t cap = 16;
    while (cap < 2 * (uint64_t)n) cap *= 2;
    return cap;
}

/* Builds the hash index; a later duplicate key takes over the slot. */
static bool build_index(parser *P, deepc_json *obj, const json_member *m, uint32_t n) {
    uint32_t cap = index_cap(n), mask = cap - 1;
    uint32_t *slots = arena_alloc(P->ar, (size_t)cap * sizeof *slots);
    if (!slots) return fail_oom(P);
    memset(slots, 0, (size_t)cap * sizeof *slots);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t h = m[i].hash & mask;
        for (;;) {
            uint32_t s = slots[h];
            if (s == 0) { slots[h] = i + 1; break; }
            const json_member *o = &m[s - 1];
            if (o->hash == m[i].hash && o->klen == m[i].klen && memcmp(o->key, m[i].key, o->klen) == 0) {
                slots[h] = i + 1;
                break;
            }
            h = (h + 1) & mask;
        }
    }
    obj->index = slots;
    return true;
}

static bool parse_value(parser *P, deepc_json *v, int depth);

static bool parse_container(parser *P, deepc_json *v, int depth, bool is_obj) {
    char close = is_obj ? '}' : ']';
    if (depth > JSON_MAX_DEPTH) return fail(P, P->pos, "nesting deeper than %d levels", JSON_MAX_DEPTH);
    size_t base = P->sp;
    P->pos++;
    skip_ws(P);
    if (P->pos < P->len && P->s[P->pos] == close) {
        P->pos++;
    } else {
        for (;;) {
            const char *key = NULL;
            uint32_t klen = 0, hash = 0;
            deepc_json item;
            if (is_obj) {
                skip_ws(P);
                if (P->pos >= P->len || P->s[P->pos] != '"') return fail_unexpected(P, " (expected a string key)");
                if (!parse_string(P, &key, &klen)) return false;
                hash = hash_bytes(key, klen);
                skip_ws(P);
                if (P->pos >= P->len || P->s[P->pos] != ':') return fail_unexpected(P, " (expected ':')");
                P->pos++;
            }
            if (!parse_value(P, &item, depth)) return false;
            if (!push_member(P, key, klen, hash, &item)) return false;
            skip_ws(P);
            if (P->pos < P->len && P->s[P->pos] == ',') {
                size_t comma = P->pos++;
                skip_ws(P);
                if (P->pos < P->len && P->s[P->pos] == close) return fail(P, comma, "trailing comma");
                continue;
            }
            if (P->pos < P->len && P->s[P->pos] == close) {
                P->pos++;
                break;
            }
            return fail_unexpected(P, is_obj ? " (expected ',' or '}')" : " (expected ',' or ']')");
        }
    }
    uint32_t n = (uint32_t)(P->sp - base);
    const json_member *m = n ? P->stack + base : NULL;  /* the stack may not exist yet */
    v->n = n;
    v->index = NULL;
    if (is_obj) {
        v->type = DEEPC_JSON_OBJECT;
        json_member *mem = n ? arena_alloc(P->ar, (size_t)n * sizeof *mem) : NULL;
        if (n && !mem) return fail_oom(P);
        if (n) memcpy(mem, m, (size_t)n * sizeof *mem);
        v->u.members = mem;
        if (n > JSON_SMALL_OBJECT && !build_index(P, v, mem, n)) return false;
    } else {
        v->type = DEEPC_JSON_ARRAY;
        deepc_json *items = n ? arena_alloc(P->ar, (size_t)n * sizeof *items) : NULL;
        if (n && !items) return fail_oom(P);
        for (uint32_t i = 0; i < n; i++) items[i] = m[i].val;
        v->u.items = items;
    }
    P->sp = base;
    return true;
}

static bool parse_literal(parser *P, const char *word, size_t n) {
    if (P->len - P->pos >= n && memcmp(P->s + P->pos, word, n) == 0) {
        P->pos += n;
        return true;
    }
    return fail(P, P->pos, "invalid literal (expected '%s')", word);
}

static bool parse_value(parser *P, deepc_json *v, int depth) {
    memset(v, 0, sizeof *v);
    skip_ws(P);
    if (P->pos >= P->len) return fail_unexpected(P, "");
    switch (P->s[P->pos]) {
    case '{': return parse_container(P, v, depth + 1, true);
    case '[': return parse_container(P, v, depth + 1, false);
    case '"':
        v->type = DEEPC_JSON_STRING;
        return parse_string(P, &v->u.s, &v->n);
    case 't':
        v->type = DEEPC_JSON_BOOL;
        v->b = true;
        return parse_literal(P, "true", 4);
    case 'f':
        v->type = DEEPC_JSON_BOOL;
        return parse_literal(P, "false", 5);
    case 'n':
        v->type = DEEPC_JSON_NULL;
        return parse_literal(P, "null", 4);
    default:
        if (P->s[P->pos] == '-' || (P->s[P->pos] >= '0' && P->s[P->pos] <= '9')) return parse_number(P, v);
        return fail_unexpected(P, "");
    }
}

deepc_json_doc *deepc_json_parse(const char *text, size_t len, deepc_err *err) {
    parser P = {0};
    deepc_json_doc *doc = NULL;
    if (!text && len) {
        deepc_errf(err, 0, "JSON: no input");
        goto fail;
    }
    if (len > JSON_MAX_BYTES) {
        deepc_errf(err, 0, "JSON: document of %zu bytes is too large", len);
        goto fail;
    }
    doc = calloc(1, sizeof *doc);
    if (!doc) {
        deepc_errf(err, 0, "JSON: out of memory");
        goto fail;
    }
    /* First chunk sized from the input so typical documents need one or two. */
    doc->ar.next_cap = len < ARENA_MIN_CHUNK ? ARENA_MIN_CHUNK : len > ARENA_MAX_CHUNK ? ARENA_MAX_CHUNK : len;
    P.s = (const unsigned char *)text;
    P.len = len;
    P.ar = &doc->ar;
    P.err = err;
    skip_ws(&P);
    if (P.pos >= len) {
        deepc_errf(err, 0, "JSON: empty document");
        goto fail;
    }
    if (!parse_value(&P, &doc->root, 0)) goto fail;
    skip_ws(&P);
    if (P.pos < len) {
        fail_unexpected(&P, " after the end of the document");
        goto fail;
    }
    free(P.stack);
    return doc;
fail:
    free(P.stack);
    deepc_json_free(doc);
    return NULL;
}

void deepc_json_free(deepc_json_doc *doc) {
    if (!doc) return;
    arena_free(&doc->ar);
    free(doc);
}

const deepc_json *deepc_json_root(const deepc_json_doc *doc) {
    return doc ? &doc->root : NULL;
}

/* ---- accessors --------------------------------------------------------- */

deepc_json_type deepc_json_type_of(const deepc_json *v) {
    return v ? (deepc_json_type)v->type : DEEPC_JSON_NULL;
}

const deepc_json *deepc_json_get(const deepc_json *v, const char *key) {
    if (!v || v->type != DEEPC_JSON_OBJECT || !key) return NULL;
    size_t klen = strlen(key);
    const json_member *m = v->u.members;
    if (!v->index) {
        for (uint32_t i = v->n; i-- > 0;)  /* from the end: the last duplicate wins */
            if (m[i].klen == klen && memcmp(m[i].key, key, klen) == 0) return &m[i].val;
        return NULL;
    }
    uint32_t hash = hash_bytes(key, klen), mask = index_cap(v->n) - 1;
    for (uint32_t h = hash & mask;; h = (h + 1) & mask) {
        uint32_t s = v->index[h];
        if (s == 0) return NULL;
        const json_member *o = &m[s - 1];
        if (o->hash == hash && o->klen == klen && memcmp(o->key, key, klen) == 0) return &o->val;
    }
}

size_t deepc_json_len(const deepc_json *v) {
    if (!v || (v->type != DEEPC_JSON_ARRAY && v->type != DEEPC_JSON_OBJECT)) return 0;
    return v->n;
}

const deepc_json *deepc_json_at(const deepc_json *arr, size_t i) {
    if (!arr || arr->type != DEEPC_JSON_ARRAY || i >= arr->n) return NULL;
    return &arr->u.items[i];
}

const char *deepc_json_key_at(const deepc_json *obj, size_t i, size_t *len) {
    if (!obj || obj->type != DEEPC_JSON_OBJECT || i >= obj->n) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = obj->u.members[i].klen;
    return obj->u.members[i].key;
}

const deepc_json *deepc_json_val_at(const deepc_json *obj, size_t i) {
    if (!obj || obj->type != DEEPC_JSON_OBJECT || i >= obj->n) return NULL;
    return &obj->u.members[i].val;
}

const char *deepc_json_str(const deepc_json *v, size_t *len) {
    if (!v || v->type != DEEPC_JSON_STRING) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = v->n;
    return v->u.s;
}

bool deepc_json_bool(const deepc_json *v, bool dflt) {
    return v && v->type == DEEPC_JSON_BOOL ? v->b : dflt;
}

double deepc_json_num(const deepc_json *v, double dflt) {
    double d;
    return v && v->type == DEEPC_JSON_NUMBER && number_value(v->u.s, v->n, &d) ? d : dflt;
}

bool deepc_json_int(const deepc_json *v, int64_t *out) {
    if (!v || v->type != DEEPC_JSON_NUMBER) return false;
    decimal a;
    dec_read(&a, v->u.s, v->n);
    /* Integer iff no digit lies right of the point; int64 has <= 19 digits. */
    if (a.trunc || a.nd > 19 || a.dp > 19 || a.dp < a.nd) return false;
    uint64_t mag = 0;
    for (int i = 0; i < a.dp; i++) {
        uint64_t d = i < a.nd ? a.d[i] : 0;
        if (mag > (UINT64_MAX - d) / 10) return false;
        mag = mag * 10 + d;
    }
    if (a.neg) {
        if (mag > (uint64_t)INT64_MAX + 1) return false;
        *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    } else {
        if (mag > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)mag;
    }
    return true;
}
