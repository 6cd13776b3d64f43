/* unicode.h - the Unicode properties the tokenizer needs (general category,
 * White_Space, word characters, canonical combining class), UTF-8 decoding and
 * NFC normalization. Data comes from core/unicode_tables.c, generated from the
 * Unicode Character Database by test/tools/gen_unicode_tables.c.
 *
 * Versions follow Hugging Face `tokenizers`, not the latest standard: general
 * categories are Unicode 16.0 (its Oniguruma regex engine), NFC data is
 * Unicode 9.0 (its unicode-normalization-alignments crate): characters
 * assigned after 9.0 have no decomposition and combining class 0 here. */
#ifndef DEEPC_UNICODE_H
#define DEEPC_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* General categories; the numbering is the one in the generated tables. */
typedef enum {
    DEEPC_UC_CN = 0,                   /* unassigned (and everything unknown) */
    DEEPC_UC_LU, DEEPC_UC_LL, DEEPC_UC_LT, DEEPC_UC_LM, DEEPC_UC_LO,
    DEEPC_UC_MN, DEEPC_UC_MC, DEEPC_UC_ME,
    DEEPC_UC_ND, DEEPC_UC_NL, DEEPC_UC_NO,
    DEEPC_UC_PC, DEEPC_UC_PD, DEEPC_UC_PS, DEEPC_UC_PE, DEEPC_UC_PI, DEEPC_UC_PF, DEEPC_UC_PO,
    DEEPC_UC_SM, DEEPC_UC_SC, DEEPC_UC_SK, DEEPC_UC_SO,
    DEEPC_UC_ZS, DEEPC_UC_ZL, DEEPC_UC_ZP,
    DEEPC_UC_CC, DEEPC_UC_CF, DEEPC_UC_CS, DEEPC_UC_CO
} deepc_uc_gc;

/* Property byte: general category in the low 5 bits plus these flags. */
#define DEEPC_UC_GC_MASK 0x1fu
#define DEEPC_UC_WS      0x20u  /* White_Space: what \s matches in Oniguruma and Rust regex */
#define DEEPC_UC_WORD    0x40u  /* Rust regex \w: Alphabetic, M, Nd, Pc, Join_Control */
#define DEEPC_UC_NFC     0x80u  /* NFC_Quick_Check != Yes, or ccc != 0: may change under NFC */

/* Returned by deepc_utf8_decode for a byte that does not start a valid
 * sequence; it has category Cn and no flags. */
#define DEEPC_UC_INVALID 0xffffffffu

/* ---- generated tables (core/unicode_tables.c) ------------------------- */
#define DEEPC_UC_BLOCK 128u
extern const uint16_t deepc_uc_props_stage1[0x110000 / DEEPC_UC_BLOCK];
extern const uint8_t deepc_uc_props_stage2[];
extern const uint16_t deepc_uc_ccc_stage1[0x110000 / DEEPC_UC_BLOCK];
extern const uint8_t deepc_uc_ccc_stage2[];
extern const uint32_t deepc_uc_n_decomp;
extern const uint32_t deepc_uc_decomp_cp[];     /* sorted code points with a decomposition */
extern const uint16_t deepc_uc_decomp_off[];    /* n_decomp + 1 offsets into decomp_seq */
extern const uint32_t deepc_uc_decomp_seq[];    /* full canonical decompositions */
extern const uint32_t deepc_uc_n_comp;
extern const uint64_t deepc_uc_comp_key[];      /* sorted (first << 21 | second) */
extern const uint32_t deepc_uc_comp_val[];      /* the primary composite */

/* Property byte of a code point (DEEPC_UC_INVALID and out-of-range: 0). */
static inline uint8_t deepc_uc_props(uint32_t cp) {
    if (cp >= 0x110000u) return 0;
    return deepc_uc_props_stage2[(uint32_t)deepc_uc_props_stage1[cp / DEEPC_UC_BLOCK] * DEEPC_UC_BLOCK +
                                 cp % DEEPC_UC_BLOCK];
}

static inline deepc_uc_gc deepc_uc_category(uint32_t cp) {
    return (deepc_uc_gc)(deepc_uc_props(cp) & DEEPC_UC_GC_MASK);
}

/* Canonical combining class as NFC sees it (Unicode 9.0; 0 for starters,
 * later characters and invalid input). */
uint8_t deepc_uc_ccc(uint32_t cp);

/* Decodes one UTF-8 character at s[0..n) (n >= 1). Strict: overlong forms,
 * surrogates and values above U+10FFFF are invalid. On invalid input returns
 * DEEPC_UC_INVALID with *len = 1, so callers can step over a bad byte. */
static inline uint32_t deepc_utf8_decode(const uint8_t *s, size_t n, size_t *len) {
    uint32_t c = s[0];
    if (c < 0x80) { *len = 1; return c; }
    *len = 1;
    if (c < 0xc2 || c > 0xf4) return DEEPC_UC_INVALID;
    if (c < 0xe0) {
        if (n < 2 || (s[1] & 0xc0) != 0x80) return DEEPC_UC_INVALID;
        *len = 2;
        return ((c & 0x1f) << 6) | (s[1] & 0x3f);
    }
    if (c < 0xf0) {
        if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80) return DEEPC_UC_INVALID;
        uint32_t v = ((c & 0x0f) << 12) | ((uint32_t)(s[1] & 0x3f) << 6) | (s[2] & 0x3f);
        if (v < 0x800 || (v >= 0xd800 && v <= 0xdfff)) return DEEPC_UC_INVALID;
        *len = 3;
        return v;
    }
    if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
        return DEEPC_UC_INVALID;
    uint32_t v = ((c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3f) << 12) |
                 ((uint32_t)(s[2] & 0x3f) << 6) | (s[3] & 0x3f);
    if (v < 0x10000 || v > 0x10ffff) return DEEPC_UC_INVALID;
    *len = 4;
    return v;
}

/* Writes cp (< 0x110000) as UTF-8 into out (room for 4); returns the length. */
size_t deepc_utf8_encode(uint32_t cp, uint8_t *out);

/* Length of the maximal prefix of s[0..n) that is a valid but incomplete
 * UTF-8 sequence (what a streaming decoder must hold back), 0 if s does not
 * start one. Never more than 3. */
size_t deepc_utf8_incomplete(const uint8_t *s, size_t n);

/* True when s[0..n) is certainly unchanged by NFC (every character passes
 * the quick check as a starter). Invalid bytes are passed over. */
bool deepc_uc_nfc_quick(const uint8_t *s, size_t n);

/* Writes the NFC form of s[0..n) into out and returns its length; out must
 * have room for 3 * n bytes (NFC's worst-case UTF-8 expansion). Invalid
 * bytes are copied through unchanged and act as boundaries. Returns
 * (size_t)-1 only if a temporary buffer cannot be allocated (inputs with a
 * run of more than 64 combining characters need one). */
size_t deepc_uc_nfc(const uint8_t *s, size_t n, uint8_t *out);

#endif
