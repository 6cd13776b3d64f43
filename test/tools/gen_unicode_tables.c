/* gen_unicode_tables.c - writes core/unicode_tables.c from the Unicode
 * Character Database (Debian package unicode-data: /usr/share/unicode).
 *
 * Usage: gen_unicode_tables [UCD_DIR [OUT_FILE]]
 *        defaults: /usr/share/unicode  core/unicode_tables.c
 *
 * Reads UnicodeData.txt (general category, canonical combining class,
 * decompositions), PropList.txt (White_Space, Join_Control,
 * Other_Alphabetic), DerivedAge.txt and CompositionExclusions.txt (optional:
 * when absent only singleton and non-starter exclusions apply, with a
 * warning). Self-contained on purpose: the Makefile builds it from
 * test/tools, but it must not need the library it generates a part of.
 *
 * Two Unicode versions matter, because Hugging Face `tokenizers` (0.21+)
 * mixes them and we reproduce it exactly:
 *  - Categories (\p{L} \p{N} ... in the pre-tokenizer regexes) are those of
 *    its Oniguruma 6.9.10: Unicode 16.0. Debian bookworm ships UCD 15.0, so
 *    the 15.1/16.0 category changes are built in below (cat_supplement,
 *    extracted from UCD 16.0.0) and applied when the UCD read is older.
 *  - NFC comes from the crate unicode-normalization-alignments, whose data
 *    is Unicode 9.0: characters assigned later neither decompose, compose
 *    nor reorder. NFC data is therefore filtered to Age <= 9.0 (decompositions
 *    and combining classes never change once assigned, so this reproduces
 *    9.0 exactly). Both facts were measured against the library. */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NCP 0x110000u
#define BLOCK 128u            /* two-stage table block size (code points) */
#define NBLK (NCP / BLOCK)
#define MAXDEC 4              /* longest full canonical decomposition (UCD 15: 4) */

/* General categories, in the order of enum deepc_uc_gc in core/unicode.h. */
static const char *const gc_names[] = {
    "Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No",
    "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So",
    "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co",
};
enum { GC_CN = 0, GC_LU = 1, GC_LO = 5, GC_MN = 6, GC_ME = 8, GC_ND = 9, GC_NL = 10, GC_PC = 12 };
#define PROP_WS   0x20u
#define PROP_WORD 0x40u
#define PROP_NFC  0x80u

/* NFC uses Unicode 9.0 data (see the top of the file). */
#define NFC_AGE ((9u << 8) | 0u)

/* General categories that changed from UCD 15.0.0 to 16.0.0 (15.1 and 16.0
 * additions, plus U+1171E Mn -> Mc), extracted from UnicodeData.txt 16.0.0.
 * Applied when the UCD read is older than 16.0. */
typedef struct { uint32_t lo, hi; const char *gc; } cat_range;
static const cat_range cat_supplement[] = {
    {0x0897, 0x0897, "Mn"}, {0x1B4E, 0x1B4F, "Po"}, {0x1B7F, 0x1B7F, "Po"},
    {0x1C89, 0x1C89, "Lu"}, {0x1C8A, 0x1C8A, "Ll"}, {0x2427, 0x2429, "So"},
    {0x2FFC, 0x2FFF, "So"}, {0x31E4, 0x31E5, "So"}, {0x31EF, 0x31EF, "So"},
    {0xA7CB, 0xA7CC, "Lu"}, {0xA7CD, 0xA7CD, "Ll"}, {0xA7DA, 0xA7DA, "Lu"},
    {0xA7DB, 0xA7DB, "Ll"}, {0xA7DC, 0xA7DC, "Lu"}, {0x105C0, 0x105F3, "Lo"},
    {0x10D40, 0x10D49, "Nd"}, {0x10D4A, 0x10D4D, "Lo"}, {0x10D4E, 0x10D4E, "Lm"},
    {0x10D4F, 0x10D4F, "Lo"}, {0x10D50, 0x10D65, "Lu"}, {0x10D69, 0x10D6D, "Mn"},
    {0x10D6E, 0x10D6E, "Pd"}, {0x10D6F, 0x10D6F, "Lm"}, {0x10D70, 0x10D85, "Ll"},
    {0x10D8E, 0x10D8F, "Sm"}, {0x10EC2, 0x10EC4, "Lo"}, {0x10EFC, 0x10EFC, "Mn"},
    {0x11380, 0x11389, "Lo"}, {0x1138B, 0x1138B, "Lo"}, {0x1138E, 0x1138E, "Lo"},
    {0x11390, 0x113B5, "Lo"}, {0x113B7, 0x113B7, "Lo"}, {0x113B8, 0x113BA, "Mc"},
    {0x113BB, 0x113C0, "Mn"}, {0x113C2, 0x113C2, "Mc"}, {0x113C5, 0x113C5, "Mc"},
    {0x113C7, 0x113CA, "Mc"}, {0x113CC, 0x113CD, "Mc"}, {0x113CE, 0x113CE, "Mn"},
    {0x113CF, 0x113CF, "Mc"}, {0x113D0, 0x113D0, "Mn"}, {0x113D1, 0x113D1, "Lo"},
    {0x113D2, 0x113D2, "Mn"}, {0x113D3, 0x113D3, "Lo"}, {0x113D4, 0x113D5, "Po"},
    {0x113D7, 0x113D8, "Po"}, {0x113E1, 0x113E2, "Mn"}, {0x116D0, 0x116E3, "Nd"},
    {0x1171E, 0x1171E, "Mc"}, {0x11BC0, 0x11BE0, "Lo"}, {0x11BE1, 0x11BE1, "Po"},
    {0x11BF0, 0x11BF9, "Nd"}, {0x11F5A, 0x11F5A, "Mn"}, {0x13460, 0x143FA, "Lo"},
    {0x16100, 0x1611D, "Lo"}, {0x1611E, 0x16129, "Mn"}, {0x1612A, 0x1612C, "Mc"},
    {0x1612D, 0x1612F, "Mn"}, {0x16130, 0x16139, "Nd"}, {0x16D40, 0x16D42, "Lm"},
    {0x16D43, 0x16D6A, "Lo"}, {0x16D6B, 0x16D6C, "Lm"}, {0x16D6D, 0x16D6F, "Po"},
    {0x16D70, 0x16D79, "Nd"}, {0x18CFF, 0x18CFF, "Lo"}, {0x1CC00, 0x1CCEF, "So"},
    {0x1CCF0, 0x1CCF9, "Nd"}, {0x1CD00, 0x1CEB3, "So"}, {0x1E5D0, 0x1E5ED, "Lo"},
    {0x1E5EE, 0x1E5EF, "Mn"}, {0x1E5F0, 0x1E5F0, "Lo"}, {0x1E5F1, 0x1E5FA, "Nd"},
    {0x1E5FF, 0x1E5FF, "Po"}, {0x1F8B2, 0x1F8BB, "So"}, {0x1F8C0, 0x1F8C1, "So"},
    {0x1FA89, 0x1FA89, "So"}, {0x1FA8F, 0x1FA8F, "So"}, {0x1FABE, 0x1FABE, "So"},
    {0x1FAC6, 0x1FAC6, "So"}, {0x1FADC, 0x1FADC, "So"}, {0x1FADF, 0x1FADF, "So"},
    {0x1FAE9, 0x1FAE9, "So"}, {0x1FBCB, 0x1FBEF, "So"}, {0x2EBF0, 0x2EE5D, "Lo"},
};

/* Per code point data, filled from the files. */
typedef struct {
    uint8_t *gc, *ccc, *ws, *word, *excl, *nfc_attn;
    uint32_t *dec_start;      /* index into dec_pool + 1, 0 = none (raw, one level) */
    uint8_t *dec_len;
    uint32_t *dec_pool;
    size_t dec_pool_n;
} ucd;

static FILE *open_in(const char *dir, const char *name, bool required) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f && required) fprintf(stderr, "gen_unicode_tables: cannot open %s\n", path);
    return f;
}

static int gc_index(const char *s) {
    for (size_t i = 0; i < sizeof gc_names / sizeof gc_names[0]; i++)
        if (s[0] == gc_names[i][0] && s[1] == gc_names[i][1]) return (int)i;
    return -1;
}

/* Splits line in place at ';' into at most max fields; returns the count. */
static int split_fields(char *line, char **f, int max) {
    int n = 0;
    char *p = line;
    while (n < max) {
        f[n++] = p;
        char *q = strchr(p, ';');
        if (!q) break;
        *q = 0;
        p = q + 1;
    }
    return n;
}

static int read_unicodedata(const char *dir, ucd *u) {
    FILE *f = open_in(dir, "UnicodeData.txt", true);
    if (!f) return -1;
    char line[1024];
    uint32_t range_first = 0;
    bool in_range = false;
    while (fgets(line, sizeof line, f)) {
        char *fl[15];
        if (split_fields(line, fl, 15) < 6) continue;
        uint32_t cp = (uint32_t)strtoul(fl[0], NULL, 16);
        if (cp >= NCP) continue;
        int gc = gc_index(fl[2]);
        if (gc < 0) { fprintf(stderr, "bad category %s\n", fl[2]); fclose(f); return -1; }
        int ccc = atoi(fl[3]);
        /* Ranges are given as "<Name, First>" / "<Name, Last>" pairs. */
        if (strstr(fl[1], ", First>")) { range_first = cp; in_range = true; continue; }
        uint32_t lo = cp;
        if (in_range && strstr(fl[1], ", Last>")) lo = range_first;
        in_range = false;
        for (uint32_t c = lo; c <= cp; c++) { u->gc[c] = (uint8_t)gc; u->ccc[c] = (uint8_t)ccc; }
        /* Canonical decompositions only: compatibility ones start with "<tag>". */
        char *d = fl[5];
        while (*d == ' ') d++;
        if (*d && *d != '<') {
            uint32_t seq[8];
            int n = 0;
            char *p = d;
            while (*p && n < 8) {
                char *end;
                unsigned long v = strtoul(p, &end, 16);
                if (end == p) break;
                seq[n++] = (uint32_t)v;
                p = end;
            }
            u->dec_start[cp] = (uint32_t)u->dec_pool_n + 1;
            u->dec_len[cp] = (uint8_t)n;
            for (int i = 0; i < n; i++) u->dec_pool[u->dec_pool_n++] = seq[i];
        }
    }
    fclose(f);
    return 0;
}

/* Reads "XXXX..YYYY ; Prop" lines of a property file, setting out[c] = 1 for
 * each code point that has property name. */
static int read_prop(const char *dir, const char *file, const char *name, uint8_t *out, bool required) {
    FILE *f = open_in(dir, file, required);
    if (!f) return required ? -1 : 1;
    char line[1024];
    size_t nlen = strlen(name);
    while (fgets(line, sizeof line, f)) {
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *semi = strchr(line, ';');
        if (!semi) continue;
        char *p = semi + 1;
        while (*p == ' ') p++;
        if (strncmp(p, name, nlen) != 0 || (p[nlen] && !isspace((unsigned char)p[nlen]))) continue;
        char *end;
        uint32_t lo = (uint32_t)strtoul(line, &end, 16), hi = lo;
        if (end[0] == '.' && end[1] == '.') hi = (uint32_t)strtoul(end + 2, NULL, 16);
        for (uint32_t c = lo; c <= hi && c < NCP; c++) out[c] = 1;
    }
    fclose(f);
    return 0;
}

/* Reads DerivedAge.txt into age[c] = major << 8 | minor (0xffff when
 * unassigned) and the UCD version from its first line into *version. */
static int read_age(const char *dir, uint16_t *age, unsigned *version) {
    FILE *f = open_in(dir, "DerivedAge.txt", true);
    if (!f) return -1;
    for (uint32_t c = 0; c < NCP; c++) age[c] = 0xffff;
    char line[1024];
    unsigned maj = 0, min = 0;
    if (fgets(line, sizeof line, f) && sscanf(line, "# DerivedAge-%u.%u", &maj, &min) == 2)
        *version = (maj << 8) | min;
    while (fgets(line, sizeof line, f)) {
        char *semi = strchr(line, ';');
        if (!semi || line[0] == '#') continue;
        char *end;
        uint32_t lo = (uint32_t)strtoul(line, &end, 16), hi = lo;
        if (end[0] == '.' && end[1] == '.') hi = (uint32_t)strtoul(end + 2, NULL, 16);
        if (sscanf(semi + 1, " %u.%u", &maj, &min) != 2) continue;
        for (uint32_t c = lo; c <= hi && c < NCP; c++) age[c] = (uint16_t)((maj << 8) | min);
    }
    fclose(f);
    if (!*version) { fprintf(stderr, "gen_unicode_tables: DerivedAge.txt has no version line\n"); return -1; }
    return 0;
}

/* Full canonical decomposition of cp into out (recursive), Hangul excluded
 * (the runtime decomposes syllables algorithmically). Returns the length. */
static int full_decomp(const ucd *u, uint32_t cp, uint32_t *out, int cap) {
    if (!u->dec_start[cp]) {
        if (cap < 1) return -1000;
        out[0] = cp;
        return 1;
    }
    int n = 0;
    const uint32_t *s = u->dec_pool + u->dec_start[cp] - 1;
    for (int i = 0; i < u->dec_len[cp]; i++) {
        int k = full_decomp(u, s[i], out + n, cap - n);
        if (k < 0) return k;
        n += k;
    }
    return n;
}

/* Emits a numeric array as C source, 32 values per line. */
static void emit_array(FILE *o, const char *type, const char *name, const void *data,
                       size_t n, int width) {
    fprintf(o, "const %s %s[%zu] = {\n", type, name, n);
    for (size_t i = 0; i < n; i++) {
        unsigned long long v = width == 1 ? ((const uint8_t *)data)[i]
                             : width == 2 ? ((const uint16_t *)data)[i]
                             : width == 4 ? ((const uint32_t *)data)[i]
                                          : ((const uint64_t *)data)[i];
        if (i % 32 == 0) fputs("  ", o);
        if (width == 8) fprintf(o, "0x%llxu,", v);
        else fprintf(o, "%llu,", v);
        if (i % 32 == 31 || i + 1 == n) fputc('\n', o);
    }
    fputs("};\n\n", o);
}

/* Builds a two-stage table (stage1[cp / BLOCK] = block number, stage2 =
 * deduplicated blocks) from a per-code-point byte array and writes it. */
static int emit_two_stage(FILE *o, const char *name, const uint8_t *val) {
    uint16_t *s1 = malloc(NBLK * sizeof *s1);
    uint8_t *s2 = malloc((size_t)NCP);
    if (!s1 || !s2) { free(s1); free(s2); return -1; }
    size_t nb = 0;
    for (uint32_t b = 0; b < NBLK; b++) {
        const uint8_t *blk = val + (size_t)b * BLOCK;
        size_t k;
        for (k = 0; k < nb; k++)
            if (memcmp(s2 + k * BLOCK, blk, BLOCK) == 0) break;
        if (k == nb) { memcpy(s2 + nb * BLOCK, blk, BLOCK); nb++; }
        s1[b] = (uint16_t)k;
    }
    char nm[128];
    snprintf(nm, sizeof nm, "%s_stage1", name);
    emit_array(o, "uint16_t", nm, s1, NBLK, 2);
    snprintf(nm, sizeof nm, "%s_stage2", name);
    emit_array(o, "uint8_t", nm, s2, nb * BLOCK, 1);
    free(s1);
    free(s2);
    return 0;
}

typedef struct { uint64_t key; uint32_t val; } pair_t;
static int cmp_pair(const void *a, const void *b) {
    uint64_t x = ((const pair_t *)a)->key, y = ((const pair_t *)b)->key;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/usr/share/unicode";
    const char *outp = argc > 2 ? argv[2] : "core/unicode_tables.c";
    ucd u = {0};
    u.gc = calloc(NCP, 1); u.ccc = calloc(NCP, 1); u.ws = calloc(NCP, 1);
    u.word = calloc(NCP, 1); u.excl = calloc(NCP, 1); u.nfc_attn = calloc(NCP, 1);
    u.dec_start = calloc(NCP, sizeof *u.dec_start);
    u.dec_len = calloc(NCP, 1);
    u.dec_pool = calloc(1u << 16, sizeof *u.dec_pool);
    uint8_t *alpha = calloc(NCP, 1), *joinc = calloc(NCP, 1), *props = calloc(NCP, 1);
    if (!u.gc || !u.ccc || !u.ws || !u.word || !u.excl || !u.nfc_attn || !u.dec_start ||
        !u.dec_len || !u.dec_pool || !alpha || !joinc || !props) {
        fprintf(stderr, "gen_unicode_tables: out of memory\n");
        return 1;
    }
    uint16_t *age = calloc(NCP, sizeof *age);
    unsigned version = 0;
    if (!age || read_unicodedata(dir, &u) != 0 || read_age(dir, age, &version) != 0) return 1;
    if (version < (16u << 8)) {
        for (size_t i = 0; i < sizeof cat_supplement / sizeof cat_supplement[0]; i++)
            for (uint32_t c = cat_supplement[i].lo; c <= cat_supplement[i].hi; c++)
                u.gc[c] = (uint8_t)gc_index(cat_supplement[i].gc);
    }
    /* NFC sees Unicode 9.0: later characters have no decomposition and
     * combining class 0. */
    for (uint32_t c = 0; c < NCP; c++)
        if (age[c] > NFC_AGE) { u.ccc[c] = 0; u.dec_start[c] = 0; }
    if (read_prop(dir, "PropList.txt", "White_Space", u.ws, true) != 0) return 1;
    if (read_prop(dir, "PropList.txt", "Join_Control", joinc, true) != 0) return 1;
    if (read_prop(dir, "PropList.txt", "Other_Alphabetic", alpha, true) != 0) return 1;
    /* CompositionExclusions.txt is "XXXX  # name" lines without ';'. */
    int have_excl = 0;
    FILE *fx = open_in(dir, "CompositionExclusions.txt", false);
    if (fx) {
        char line[512];
        while (fgets(line, sizeof line, fx)) {
            char *end;
            unsigned long c = strtoul(line, &end, 16);
            if (end != line && c < NCP) u.excl[c] = 1;
        }
        fclose(fx);
    } else {
        /* Without the file the script-specific and post-3.0 exclusions
         * cannot be derived from UnicodeData; only singleton and non-starter
         * decompositions are excluded below. Warn so nobody commits such a
         * table by mistake. */
        have_excl = 1;
        fprintf(stderr, "gen_unicode_tables: warning: CompositionExclusions.txt missing; "
                        "only singleton and non-starter exclusions applied\n");
    }

    /* Rust regex \w (used for added tokens' single_word): Alphabetic (L, Nl,
     * Other_Alphabetic) + M + Nd + Pc + Join_Control. */
    for (uint32_t c = 0; c < NCP; c++) {
        int g = u.gc[c];
        if ((g >= GC_LU && g <= GC_LO) || g == GC_NL || alpha[c] || (g >= GC_MN && g <= GC_ME) ||
            g == GC_ND || g == GC_PC || joinc[c])
            u.word[c] = 1;
    }

    /* Canonical compositions: every two-element canonical decomposition that
     * is not fully excluded (script exclusions, singletons, non-starter
     * decompositions: UAX #15 Full_Composition_Exclusion). */
    pair_t *comp = calloc(4096, sizeof *comp);
    size_t ncomp = 0;
    for (uint32_t c = 0; c < NCP; c++) {
        if (!u.dec_start[c]) continue;
        const uint32_t *s = u.dec_pool + u.dec_start[c] - 1;
        bool full_excl = u.excl[c] || u.dec_len[c] == 1 || u.ccc[c] != 0 || u.ccc[s[0]] != 0;
        if (full_excl) { u.nfc_attn[c] = 1; continue; }   /* NFC_QC = No */
        if (u.dec_len[c] != 2) continue;
        if (ncomp == 4096) { fprintf(stderr, "too many compositions\n"); return 1; }
        comp[ncomp].key = ((uint64_t)s[0] << 21) | s[1];
        comp[ncomp].val = c;
        ncomp++;
        u.nfc_attn[s[1]] = 1;                              /* NFC_QC = Maybe */
    }
    qsort(comp, ncomp, sizeof *comp, cmp_pair);
    for (uint32_t c = 0x1161; c <= 0x1175; c++) u.nfc_attn[c] = 1;  /* Hangul V */
    for (uint32_t c = 0x11A8; c <= 0x11C2; c++) u.nfc_attn[c] = 1;  /* Hangul T */

    /* Full decompositions, flattened, sorted by code point. */
    uint32_t *dcp = calloc(8192, sizeof *dcp), *dseq = calloc(8192 * MAXDEC, sizeof *dseq);
    uint16_t *doff = calloc(8193, sizeof *doff);
    size_t nd = 0, nseq = 0;
    for (uint32_t c = 0; c < NCP; c++) {
        if (!u.dec_start[c]) continue;
        uint32_t tmp[16];
        int k = full_decomp(&u, c, tmp, 16);
        if (k < 0 || k > MAXDEC || nd == 8192) {
            fprintf(stderr, "decomposition of %04X too long (%d)\n", c, k);
            return 1;
        }
        dcp[nd] = c;
        doff[nd] = (uint16_t)nseq;
        memcpy(dseq + nseq, tmp, (size_t)k * sizeof *tmp);
        nseq += (size_t)k;
        nd++;
    }
    doff[nd] = (uint16_t)nseq;

    for (uint32_t c = 0; c < NCP; c++) {
        if (u.ccc[c]) u.nfc_attn[c] = 1;
        props[c] = (uint8_t)(u.gc[c] | (u.ws[c] ? PROP_WS : 0) | (u.word[c] ? PROP_WORD : 0) |
                             (u.nfc_attn[c] ? PROP_NFC : 0));
    }

    FILE *o = fopen(outp, "w");
    if (!o) { fprintf(stderr, "gen_unicode_tables: cannot write %s\n", outp); return 1; }
    char vstr[64];
    snprintf(vstr, sizeof vstr, "%u.%u", version >> 8, version & 0xffu);
    fprintf(o,
            "/* unicode_tables.c - GENERATED by test/tools/gen_unicode_tables.c from the\n"
            " * Unicode Character Database %s (UnicodeData.txt, PropList.txt, DerivedAge.txt,\n"
            " * CompositionExclusions.txt%s)%s;\n"
            " * NFC data restricted to Unicode 9.0 as Hugging Face uses it. Do not edit:\n"
            " * regenerate with\n"
            " *   make tools && build/tools/gen_unicode_tables /usr/share/unicode core/unicode_tables.c\n"
            " * Layout and meaning are documented in core/unicode.h. */\n"
            "#include \"unicode.h\"\n\n",
            vstr, have_excl == 0 ? "" : " MISSING - approximate",
            version < (16u << 8) ? "\n * with the built-in Unicode 16.0 category changes" : "");
    fprintf(o, "/* props: general category (bits 0-4) | White_Space 0x20 | word 0x40 |\n"
               " * NFC attention 0x80; indexed [stage1[cp / %u] * %u + cp %% %u]. */\n",
            BLOCK, BLOCK, BLOCK);
    if (emit_two_stage(o, "deepc_uc_props", props) != 0) return 1;
    fputs("/* canonical combining class, same indexing. */\n", o);
    if (emit_two_stage(o, "deepc_uc_ccc", u.ccc) != 0) return 1;
    fputs("/* full canonical decompositions (Hangul excluded): code points sorted,\n"
          " * sequence of dcp[i] is seq[off[i] .. off[i+1]). */\n", o);
    fprintf(o, "const uint32_t deepc_uc_n_decomp = %zu;\n", nd);
    emit_array(o, "uint32_t", "deepc_uc_decomp_cp", dcp, nd, 4);
    emit_array(o, "uint16_t", "deepc_uc_decomp_off", doff, nd + 1, 2);
    emit_array(o, "uint32_t", "deepc_uc_decomp_seq", dseq, nseq, 4);
    fputs("/* primary composites: key (first << 21 | second) sorted -> composite. */\n", o);
    fprintf(o, "const uint32_t deepc_uc_n_comp = %zu;\n", ncomp);
    uint64_t *ck = calloc(ncomp ? ncomp : 1, sizeof *ck);
    uint32_t *cv = calloc(ncomp ? ncomp : 1, sizeof *cv);
    for (size_t i = 0; i < ncomp; i++) { ck[i] = comp[i].key; cv[i] = comp[i].val; }
    emit_array(o, "uint64_t", "deepc_uc_comp_key", ck, ncomp, 8);
    emit_array(o, "uint32_t", "deepc_uc_comp_val", cv, ncomp, 4);
    if (fclose(o) != 0) { fprintf(stderr, "gen_unicode_tables: write failed\n"); return 1; }
    fprintf(stderr, "gen_unicode_tables: wrote %s (UCD %s, %zu decompositions, %zu compositions)\n",
            outp, vstr, nd, ncomp);
    free(ck); free(cv); free(comp); free(dcp); free(dseq); free(doff);
    free(u.gc); free(u.ccc); free(u.ws); free(u.word); free(u.excl); free(u.nfc_attn);
    free(u.dec_start); free(u.dec_len); free(u.dec_pool); free(alpha); free(joinc); free(props); free(age);
    return 0;
}
