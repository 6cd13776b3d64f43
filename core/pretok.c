/* pretok.c - hand-written matchers for the pre-tokenizer regexes of the three
 * supported families, reproducing Oniguruma's (backtracking, first
 * alternative wins) semantics as Hugging Face `tokenizers` runs them.
 *
 * Qwen2 (Qwen2/2.5/3) and Llama 3 use one Split (behavior Isolated):
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}
 *   | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * with \p{N}{1,3} instead of \p{N} for Llama 3. Every character starts a
 * match of some alternative, so the pieces are simply consecutive matches.
 *
 * DeepSeek-V3 applies three Splits (all Isolated), each to every piece the
 * previous one produced - so lookaheads and runs stop at piece ends:
 *   1. \p{N}{1,3}
 *   2. [一-龥぀-ゟ゠-ヿ]+         (U+4E00-9FA5, U+3040-309F, U+30A0-30FF)
 *   3. [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
 *      | ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * Isolated keeps both the matches and the unmatched gaps between them as
 * pieces. Rule 3 can fail to match (digits, controls, format characters), so
 * gaps matter there.
 *
 * \s is the White_Space property; (?i) makes 's also match 'S and 'ſ
 * (U+017F, which case-folds to s) - checked against the library. Categories
 * are Unicode 16.0, as in the library's Oniguruma (see core/unicode.h). */
#include "pretok.h"

#include "unicode.h"

/* Character kinds used by the matchers. */
enum {
    K_L = 1 << 0,     /* \p{L} */
    K_N = 1 << 1,     /* \p{N} */
    K_M = 1 << 2,     /* \p{M} */
    K_P = 1 << 3,     /* \p{P} */
    K_S = 1 << 4,     /* \p{S} */
    K_WS = 1 << 5,    /* \s */
    K_CRLF = 1 << 6,  /* \r or \n */
    K_AP = 1 << 7,    /* the ASCII punctuation class of DeepSeek rule 3 */
    K_AZ = 1 << 8     /* [A-Za-z] */
};

static const uint8_t gc_kind[32] = {
    [DEEPC_UC_LU] = K_L, [DEEPC_UC_LL] = K_L, [DEEPC_UC_LT] = K_L, [DEEPC_UC_LM] = K_L,
    [DEEPC_UC_LO] = K_L, [DEEPC_UC_MN] = K_M, [DEEPC_UC_MC] = K_M, [DEEPC_UC_ME] = K_M,
    [DEEPC_UC_ND] = K_N, [DEEPC_UC_NL] = K_N, [DEEPC_UC_NO] = K_N,
    [DEEPC_UC_PC] = K_P, [DEEPC_UC_PD] = K_P, [DEEPC_UC_PS] = K_P, [DEEPC_UC_PE] = K_P,
    [DEEPC_UC_PI] = K_P, [DEEPC_UC_PF] = K_P, [DEEPC_UC_PO] = K_P,
    [DEEPC_UC_SM] = K_S, [DEEPC_UC_SC] = K_S, [DEEPC_UC_SK] = K_S, [DEEPC_UC_SO] = K_S,
};

/* ASCII kinds: what gc_kind and the White_Space flag give for these code
 * points (checked against the generated tables when written), plus the two
 * ASCII-only classes of DeepSeek rule 3. Literal because ASCII is the hot
 * path. */
static const uint16_t ascii_kind[128] = {
    0, 0, 0, 0, 0, 0, 0, 0,
    0, K_WS, K_WS | K_CRLF, K_WS, K_WS, K_WS | K_CRLF, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0,
    K_WS, K_P | K_AP, K_P | K_AP, K_P | K_AP, K_S | K_AP, K_P | K_AP, K_P | K_AP, K_P | K_AP,
    K_P | K_AP, K_P | K_AP, K_P | K_AP, K_S | K_AP, K_P | K_AP, K_P | K_AP, K_P | K_AP, K_P | K_AP,
    K_N, K_N, K_N, K_N, K_N, K_N, K_N, K_N,
    K_N, K_N, K_P | K_AP, K_P | K_AP, K_S | K_AP, K_S | K_AP, K_S | K_AP, K_P | K_AP,
    K_P | K_AP, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ,
    K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ,
    K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ,
    K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_P | K_AP, K_P | K_AP, K_P | K_AP, K_S | K_AP, K_P | K_AP,
    K_S | K_AP, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ,
    K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ,
    K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_L | K_AZ,
    K_L | K_AZ, K_L | K_AZ, K_L | K_AZ, K_P | K_AP, K_S | K_AP, K_P | K_AP, K_S | K_AP, 0,
};

/* Kind of the character at s[i] (i < n); *len gets its byte length. */
static inline unsigned kind_at(const uint8_t *s, size_t n, size_t i, size_t *len) {
    if (s[i] < 0x80) { *len = 1; return ascii_kind[s[i]]; }
    uint32_t cp = deepc_utf8_decode(s + i, n - i, len);
    uint8_t p = deepc_uc_props(cp);
    return gc_kind[p & DEEPC_UC_GC_MASK] | ((p & DEEPC_UC_WS) ? K_WS : 0);
}

/* End of the run of characters from i whose kind intersects mask. */
static inline size_t run_of(const uint8_t *s, size_t n, size_t i, unsigned mask) {
    while (i < n) {
        if (s[i] < 0x80) {
            if (!(ascii_kind[s[i]] & mask)) break;
            i++;
            continue;
        }
        size_t len;
        if (!(kind_at(s, n, i, &len) & mask)) break;
        i += len;
    }
    return i;
}

/* End of the run of characters from i whose kind avoids mask. */
static inline size_t run_not(const uint8_t *s, size_t n, size_t i, unsigned mask) {
    while (i < n) {
        size_t len;
        if (kind_at(s, n, i, &len) & mask) break;
        i += len;
    }
    return i;
}

static inline size_t skip_crlf(const uint8_t *s, size_t n, size_t i) {
    while (i < n && (s[i] == '\r' || s[i] == '\n')) i++;
    return i;
}

/* \s*[\r\n]+ | \s+(?!\S) | \s+ at i, where s[i] is whitespace. */
static size_t match_space(const uint8_t *s, size_t n, size_t i) {
    size_t j = i, last = i, last_crlf = (size_t)-1;
    while (j < n) {
        size_t len;
        unsigned k = kind_at(s, n, j, &len);
        if (!(k & K_WS)) break;
        if (k & K_CRLF) last_crlf = j;
        last = j;
        j += len;
    }
    /* \s* backtracks to the last line break so [\r\n]+ can match it. */
    if (last_crlf != (size_t)-1) return last_crlf + 1;
    /* (?!\S) holds at the end; otherwise \s+ gives back its last character
     * (a space before a non-space is left for the next token), unless that
     * leaves nothing, when the plain \s+ alternative takes the one char. */
    if (j == n || last == i) return j;
    return last;
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d) after the apostrophe at j - 1: end or 0. */
static size_t match_contraction(const uint8_t *s, size_t n, size_t j) {
    if (j >= n) return 0;
    uint8_t c = s[j] | 0x20;  /* ASCII lower case (only letters are compared) */
    if (c == 's' || c == 't' || c == 'm' || c == 'd') return j + 1;
    if (s[j] == 0xc5 && j + 1 < n && s[j + 1] == 0xbf) return j + 2;  /* U+017F ſ */
    if (j + 1 < n) {
        uint8_t d = s[j + 1] | 0x20;
        if ((c == 'r' || c == 'v') && d == 'e') return j + 2;
        if (c == 'l' && d == 'l') return j + 2;
    }
    return 0;
}

/* One match of the Qwen2 / Llama 3 regex at i (always succeeds). */
static size_t match_qwen(const uint8_t *s, size_t n, size_t i, int max_digits) {
    if (s[i] == '\'') {
        size_t e = match_contraction(s, n, i + 1);
        if (e) return e;
    }
    size_t l0;
    unsigned k0 = kind_at(s, n, i, &l0);
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (!(k0 & (K_L | K_N | K_CRLF)) && i + l0 < n) {
        size_t l1;
        if (kind_at(s, n, i + l0, &l1) & K_L) return run_of(s, n, i + l0 + l1, K_L);
    }
    if (k0 & K_L) return run_of(s, n, i + l0, K_L);
    /* \p{N} or \p{N}{1,3} */
    if (k0 & K_N) {
        size_t j = i + l0;
        for (int d = 1; d < max_digits && j < n; d++) {
            size_t l;
            if (!(kind_at(s, n, j, &l) & K_N)) break;
            j += l;
        }
        return j;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    if (s[i] == ' ' && i + 1 < n) {
        size_t l1;
        if (!(kind_at(s, n, i + 1, &l1) & (K_WS | K_L | K_N)))
            return skip_crlf(s, n, run_not(s, n, i + 1, K_WS | K_L | K_N));
    }
    if (!(k0 & (K_WS | K_L | K_N))) return skip_crlf(s, n, run_not(s, n, i, K_WS | K_L | K_N));
    return match_space(s, n, i);  /* only whitespace is left */
}

/* One match of DeepSeek rule 3 at i, or 0 when no alternative matches. */
static size_t match_ds(const uint8_t *s, size_t n, size_t i) {
    /* [ASCII punctuation][A-Za-z]+ */
    if (s[i] < 0x80 && (ascii_kind[s[i]] & K_AP) && i + 1 < n && s[i + 1] < 0x80 &&
        (ascii_kind[s[i + 1]] & K_AZ))
        return run_of(s, n, i + 2, K_AZ);
    size_t l0;
    unsigned k0 = kind_at(s, n, i, &l0);
    /* [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ */
    if (!(k0 & (K_CRLF | K_L | K_P | K_S)) && i + l0 < n) {
        size_t l1;
        if (kind_at(s, n, i + l0, &l1) & (K_L | K_M)) return run_of(s, n, i + l0 + l1, K_L | K_M);
    }
    if (k0 & (K_L | K_M)) return run_of(s, n, i + l0, K_L | K_M);
    /*  ?[\p{P}\p{S}]+[\r\n]* */
    if (s[i] == ' ' && i + 1 < n) {
        size_t l1;
        if (kind_at(s, n, i + 1, &l1) & (K_P | K_S))
            return skip_crlf(s, n, run_of(s, n, i + 1, K_P | K_S));
    }
    if (k0 & (K_P | K_S)) return skip_crlf(s, n, run_of(s, n, i, K_P | K_S));
    if (k0 & K_WS) return match_space(s, n, i);
    return 0;
}

static int run_qwen(const uint8_t *s, size_t n, int max_digits, deepc_pretok_emit_fn emit,
                    void *ctx) {
    size_t i = 0;
    while (i < n) {
        size_t e = match_qwen(s, n, i, max_digits);
        int r = emit(ctx, i, e);
        if (r) return r;
        i = e;
    }
    return 0;
}

/* DeepSeek rule 3 over the piece s[a..b): matches and gaps. The matcher sees
 * the piece end as the end of the text, as the regex does. */
static int ds_rule3(const uint8_t *s, size_t a, size_t b, deepc_pretok_emit_fn emit, void *ctx) {
    const uint8_t *p = s + a;
    size_t n = b - a, i = 0, gap = 0;
    int r;
    while (i < n) {
        size_t e = match_ds(p, n, i);
        if (!e) {
            size_t len;
            kind_at(p, n, i, &len);
            i += len;
            continue;
        }
        if (gap < i && (r = emit(ctx, a + gap, a + i))) return r;
        if ((r = emit(ctx, a + i, a + e))) return r;
        i = gap = e;
    }
    if (gap < n && (r = emit(ctx, a + gap, b))) return r;
    return 0;
}

static inline int is_ds_cjk(uint32_t cp) {
    return (cp >= 0x4e00 && cp <= 0x9fa5) || (cp >= 0x3040 && cp <= 0x30ff);
}

/* DeepSeek rule 2 over s[a..b): CJK runs and the gaps, each through rule 3. */
static int ds_rule2(const uint8_t *s, size_t a, size_t b, deepc_pretok_emit_fn emit, void *ctx) {
    size_t i = a, gap = a;
    int r;
    while (i < b) {
        if (s[i] < 0xe3) { i++; continue; }   /* CJK ranges are 3-byte E3..E9 */
        size_t len;
        uint32_t cp = deepc_utf8_decode(s + i, b - i, &len);
        if (!is_ds_cjk(cp)) { i += len; continue; }
        size_t e = i + len;
        while (e < b) {
            size_t l2;
            uint32_t c2 = deepc_utf8_decode(s + e, b - e, &l2);
            if (!is_ds_cjk(c2)) break;
            e += l2;
        }
        if (gap < i && (r = ds_rule3(s, gap, i, emit, ctx))) return r;
        if ((r = ds_rule3(s, i, e, emit, ctx))) return r;
        i = gap = e;
    }
    if (gap < b) return ds_rule3(s, gap, b, emit, ctx);
    return 0;
}

/* DeepSeek rule 1: runs of \p{N} cut into pieces of up to three. Such a
 * piece passes rules 2 and 3 unchanged (no N is in the CJK ranges and rule 3
 * matches nothing in it), so it is emitted directly. */
static int run_deepseek(const uint8_t *s, size_t n, deepc_pretok_emit_fn emit, void *ctx) {
    size_t i = 0, gap = 0;
    int r;
    while (i < n) {
        size_t len;
        if (!(kind_at(s, n, i, &len) & K_N)) { i += len; continue; }
        if (gap < i && (r = ds_rule2(s, gap, i, emit, ctx))) return r;
        size_t e = i + len;
        for (int d = 1; d < 3 && e < n; d++) {
            size_t l;
            if (!(kind_at(s, n, e, &l) & K_N)) break;
            e += l;
        }
        if ((r = emit(ctx, i, e))) return r;
        i = gap = e;
    }
    if (gap < n) return ds_rule2(s, gap, n, emit, ctx);
    return 0;
}

int deepc_pretok_run(deepc_pretok_kind kind, const uint8_t *s, size_t n,
                     deepc_pretok_emit_fn emit, void *ctx) {
    switch (kind) {
    case DEEPC_PRETOK_QWEN2: return run_qwen(s, n, 1, emit, ctx);
    case DEEPC_PRETOK_LLAMA3: return run_qwen(s, n, 3, emit, ctx);
    case DEEPC_PRETOK_DEEPSEEK3: return run_deepseek(s, n, emit, ctx);
    default: return n ? emit(ctx, 0, n) : 0;
    }
}
