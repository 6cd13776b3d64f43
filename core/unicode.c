/* unicode.c - UTF-8 helpers and NFC normalization (UAX #15: canonical
 * decomposition, canonical ordering, canonical composition; Hangul
 * syllables algorithmically) over the generated tables. Qwen2-family
 * tokenizers apply NFC before pre-tokenizing, so this must agree with the
 * Rust `unicode-normalization` crate Hugging Face uses, which implements the
 * same standard algorithm. */
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

/* Hangul syllable constants (Unicode ch. 3.12). */
enum {
    H_SBASE = 0xac00, H_LBASE = 0x1100, H_VBASE = 0x1161, H_TBASE = 0x11a7,
    H_LCOUNT = 19, H_VCOUNT = 21, H_TCOUNT = 28,
    H_NCOUNT = H_VCOUNT * H_TCOUNT, H_SCOUNT = H_LCOUNT * H_NCOUNT
};

/* An invalid input byte travels through the code point buffers tagged with
 * this bit so it can be written back unchanged. */
#define RAW_BYTE 0x80000000u

uint8_t deepc_uc_ccc(uint32_t cp) {
    if (cp >= 0x110000u) return 0;
    return deepc_uc_ccc_stage2[(uint32_t)deepc_uc_ccc_stage1[cp / DEEPC_UC_BLOCK] * DEEPC_UC_BLOCK +
                               cp % DEEPC_UC_BLOCK];
}

size_t deepc_utf8_encode(uint32_t cp, uint8_t *out) {
    if (cp < 0x80) { out[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xc0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xe0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (uint8_t)(0xf0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

size_t deepc_utf8_incomplete(const uint8_t *s, size_t n) {
    if (n == 0) return 0;
    uint8_t c = s[0];
    size_t need;
    if (c >= 0xc2 && c <= 0xdf) need = 2;
    else if (c >= 0xe0 && c <= 0xef) need = 3;
    else if (c >= 0xf0 && c <= 0xf4) need = 4;
    else return 0;
    if (n >= need) return 0;               /* complete (valid or not): not held back */
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        /* The second byte's range is narrower for E0, ED, F0, F4 (no
         * overlongs, surrogates or values past U+10FFFF). */
        if (i == 1) {
            if (c == 0xe0 && s[1] < 0xa0) return 0;
            if (c == 0xed && s[1] > 0x9f) return 0;
            if (c == 0xf0 && s[1] < 0x90) return 0;
            if (c == 0xf4 && s[1] > 0x8f) return 0;
        }
    }
    return n;
}

bool deepc_uc_nfc_quick(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        /* Everything below U+0300 is a starter with NFC_QC=Yes. */
        if (s[i] < 0xcc) { i++; continue; }
        size_t len;
        uint32_t cp = deepc_utf8_decode(s + i, n - i, &len);
        if (cp != DEEPC_UC_INVALID && (deepc_uc_props(cp) & DEEPC_UC_NFC)) return false;
        i += len;
    }
    return true;
}

/* Appends the full canonical decomposition of cp to buf. */
static size_t decompose(uint32_t cp, uint32_t *buf) {
    if (cp >= H_SBASE && cp < H_SBASE + H_SCOUNT) {
        uint32_t si = cp - H_SBASE;
        buf[0] = H_LBASE + si / H_NCOUNT;
        buf[1] = H_VBASE + (si % H_NCOUNT) / H_TCOUNT;
        if (si % H_TCOUNT == 0) return 2;
        buf[2] = H_TBASE + si % H_TCOUNT;
        return 3;
    }
    /* Composed characters (e.g. U+00E9) decompose too, so everything from
     * U+00C0 (the first with a decomposition) on is looked up. */
    if (cp < 0xc0) { buf[0] = cp; return 1; }
    uint32_t lo = 0, hi = deepc_uc_n_decomp;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (deepc_uc_decomp_cp[mid] < cp) lo = mid + 1;
        else hi = mid;
    }
    if (lo < deepc_uc_n_decomp && deepc_uc_decomp_cp[lo] == cp) {
        size_t k = 0;
        for (uint32_t j = deepc_uc_decomp_off[lo]; j < deepc_uc_decomp_off[lo + 1]; j++)
            buf[k++] = deepc_uc_decomp_seq[j];
        return k;
    }
    buf[0] = cp;
    return 1;
}

static uint32_t ccc_of(uint32_t cp) {
    return (cp & RAW_BYTE) ? 0 : deepc_uc_ccc(cp);
}

/* Primary composite of (a, b), or 0 if none. */
static uint32_t compose(uint32_t a, uint32_t b) {
    if ((a | b) & RAW_BYTE) return 0;
    if (a >= H_LBASE && a < H_LBASE + H_LCOUNT && b >= H_VBASE && b < H_VBASE + H_VCOUNT)
        return H_SBASE + ((a - H_LBASE) * H_VCOUNT + (b - H_VBASE)) * H_TCOUNT;
    if (a >= H_SBASE && a < H_SBASE + H_SCOUNT && (a - H_SBASE) % H_TCOUNT == 0 &&
        b > H_TBASE && b < H_TBASE + H_TCOUNT)
        return a + (b - H_TBASE);
    uint64_t key = ((uint64_t)a << 21) | b;
    uint32_t lo = 0, hi = deepc_uc_n_comp;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (deepc_uc_comp_key[mid] < key) lo = mid + 1;
        else hi = mid;
    }
    return lo < deepc_uc_n_comp && deepc_uc_comp_key[lo] == key ? deepc_uc_comp_val[lo] : 0;
}

/* Normalizes one segment s[0..n) (starting at a boundary) into out; cps has
 * room for 4 * n code points. Returns bytes written. */
static size_t nfc_segment(const uint8_t *s, size_t n, uint32_t *cps, uint8_t *out) {
    size_t nc = 0;
    for (size_t i = 0; i < n;) {
        size_t len;
        uint32_t cp = deepc_utf8_decode(s + i, n - i, &len);
        if (cp == DEEPC_UC_INVALID) cps[nc++] = RAW_BYTE | s[i];
        else nc += decompose(cp, cps + nc);
        i += len;
    }
    /* Canonical ordering: stable insertion sort of each run of non-starters. */
    for (size_t i = 1; i < nc; i++) {
        uint32_t c = cps[i], cc = ccc_of(c);
        if (cc == 0) continue;
        size_t j = i;
        while (j > 0 && ccc_of(cps[j - 1]) > cc) { cps[j] = cps[j - 1]; j--; }
        cps[j] = c;
    }
    /* Canonical composition (UAX #15 sample algorithm). */
    size_t nout = 0;
    if (nc > 0) {
        size_t starter = 0;
        uint32_t last = ccc_of(cps[0]);
        if (last != 0) last = 256;          /* a leading non-starter composes with nothing */
        nout = 1;
        for (size_t i = 1; i < nc; i++) {
            uint32_t c = cps[i], cc = ccc_of(c);
            uint32_t comp = last == 256 ? 0 : compose(cps[starter], c);
            if (comp && (last < cc || last == 0)) {
                cps[starter] = comp;
            } else {
                if (cc == 0) { starter = nout; last = 0; }
                else last = cc;
                cps[nout++] = c;
            }
        }
    }
    size_t w = 0;
    for (size_t i = 0; i < nout; i++) {
        if (cps[i] & RAW_BYTE) out[w++] = (uint8_t)(cps[i] & 0xff);
        else w += deepc_utf8_encode(cps[i], out + w);
    }
    return w;
}

/* True when the character at a position cannot interact with anything
 * before it, so NFC may treat the text before and after independently. */
static bool is_boundary(uint32_t cp) {
    return cp == DEEPC_UC_INVALID || !(deepc_uc_props(cp) & DEEPC_UC_NFC);
}

size_t deepc_uc_nfc(const uint8_t *s, size_t n, uint8_t *out) {
    uint32_t stack[256];
    uint32_t *heap = NULL;
    size_t heap_cap = 0, w = 0, i = 0;
    while (i < n) {
        /* Copy the run of characters that are boundaries followed by another
         * boundary: they are their own NFC form. */
        size_t len;
        uint32_t cp = deepc_utf8_decode(s + i, n - i, &len);
        size_t seg = i, j = i + len;
        bool simple = is_boundary(cp);
        /* Extend the segment up to the next boundary. */
        while (j < n) {
            size_t l2;
            uint32_t c2 = deepc_utf8_decode(s + j, n - j, &l2);
            if (is_boundary(c2)) break;
            simple = false;
            j += l2;
        }
        if (simple) {
            memcpy(out + w, s + seg, j - seg);
            w += j - seg;
        } else {
            size_t need = 4 * (j - seg);
            uint32_t *cps = stack;
            if (need > sizeof stack / sizeof stack[0]) {
                if (need > heap_cap) {
                    free(heap);
                    heap = malloc(need * sizeof *heap);
                    if (!heap) return (size_t)-1;
                    heap_cap = need;
                }
                cps = heap;
            }
            w += nfc_segment(s + seg, j - seg, cps, out + w);
        }
        i = j;
    }
    free(heap);
    return w;
}
