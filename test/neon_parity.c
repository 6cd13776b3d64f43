/* neon_parity.c - kernel parity for the AArch64 NEON backends ("neon" and
 * "neon-dotprod", arch/neon_kernels.c and arch/neon_ops.c) against the
 * scalar backend. A plain C
 * program, not a CMocka test: it is cross-compiled for aarch64 and run under
 * qemu-user (`make cross-neon-test`), where no aarch64 CMocka is at hand.
 * Prints one line per failure, one summary per backend, and as its last line
 * "N passed, M failed"; exits non-zero if anything failed.
 *
 *   neon_parity [--expect-dotprod=0|1]
 *
 * --expect-dotprod states whether the CPU it runs on (a qemu -cpu model) has
 * SDOT, so a broken feature check cannot silently skip (or wrongly select)
 * the SDOT kernels. Without it, what the CPU reports is trusted.
 *
 * What must match, and how closely (the same rules as test/test_kernels.c
 * and test/test_ops.c):
 * - Q8_0 integer block dots: exactly.
 * - Q4_K / Q3_K / Q2_K / Q6_K / Q8_K x Q8_K: each super-block's integer
 *   sums exactly, rows within a summation-order bound; a NaN super-scale
 *   gives NaN (Q6_K: arch/neon_q6_k.c).
 * - Q4_1 x Q8_0 (arch/neon_q4_1.c): integer parts exactly.
 * - FP8_B128 x F32: every finite code decodes exactly, rows within the float
 *   bound, NaN codes give NaN.
 * - Q8_0 and Q8_K activation quantizers: bit for bit with deepc_quantize_row.
 * - Float dots and dot_f16_f32: within a bound from summation order alone.
 * - Every gemm the table has: every output bit for bit its vec_dot.
 * - axpy_f16_f32: bit for bit scalar's; the row forms of the fp16 cache
 *   kernels bit for bit their single-row kernels.
 * - Every slot this backend does not speed up: the scalar function itself;
 *   "neon-dotprod" uses its own SDOT kernels for the integer types.
 * On a non-AArch64 build only the selector is checked (no NEON names). */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "quant.h"
#include "../arch/cpu.h"

/* ---- the harness -------------------------------------------------------- */

static unsigned n_passed, n_failed;

static void pass(void) {
    n_passed++;
}

/* Prints the first 40 failures in full (a broken kernel fails thousands of
 * checks; the first ones say why). */
static void fail(const char *fmt, ...) {
    if (n_failed++ >= 40) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("FAIL: ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
}

#define CHECK(cond, ...) ((cond) ? pass() : fail(__VA_ARGS__))

typedef struct {
    const char *name;      /* DEEPC_ISA name */
    unsigned checks;       /* parity checks passed */
    double worst;          /* largest |neon - scalar| / tolerance seen */
} isa_case;

static void note_error(isa_case *c, double diff, double tol) {
    if (tol > 0.0 && diff / tol > c->worst) c->worst = diff / tol;
}

static void count(isa_case *c, bool ok) {
    if (ok) c->checks++;
}

/* ---- deterministic data (as in test/test_kernels.c) --------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng_next(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static int rng_int(int lo, int hi) { /* [lo, hi] */
    return lo + (int)(rng_next() % (uint64_t)(hi - lo + 1));
}
static float rng_unit(void) { /* [1, 2) */
    return 1.0f + (float)((double)(rng_next() >> 40) * 0x1p-24);
}

/* Value classes. Exponent ranges keep products and sums of up to 4096 terms
 * finite; a fp16 weight is limited to what fp16 can hold. */
typedef enum { DATA_UNIT, DATA_LARGE, DATA_SMALL, DATA_TINY, DATA_MIXED, DATA_CANCEL, DATA_KINDS } data_kind;
static const char *const kind_names[DATA_KINDS] = { "unit", "large", "small", "tiny", "mixed", "cancel" };

/* One element: 1/16 +0, 1/16 -0, otherwise sign * [1,2) * 2^e. */
static float gen_value(data_kind kind, bool is_weight, bool fp16_weight) {
    uint64_t r = rng_next() >> 60;
    if (r == 0) return 0.0f;
    if (r == 1) return -0.0f;
    int e;
    switch (kind) {
    case DATA_LARGE: e = is_weight && fp16_weight ? 14 : 56; break;
    case DATA_SMALL: e = is_weight && fp16_weight ? -20 : -60; break;
    case DATA_TINY:  e = is_weight ? (fp16_weight ? -22 : -70) : (fp16_weight ? -120 : -70); break;
    case DATA_MIXED: e = is_weight && fp16_weight ? rng_int(-24, 14) : rng_int(-40, 40); break;
    default:         e = 0; break;
    }
    float v = ldexpf(rng_unit(), e);
    return (rng_next() & 1) ? -v : v;
}

/* ---- float weight types ------------------------------------------------- */

#define MAX_N 4096
/* every tail length of the 16-wide main loop and the 4-wide second loop */
static const size_t float_lens[] = { 1, 2, 3, 4, 5, 7, 8, 12, 15, 16, 17, 19, 20, 31, 32, 33, 63, 64, 255, 257, 1000, 4096 };

/* Both kernels compute fl(sum of n products) and differ only in the order of
 * the additions (and FMA's unrounded products). The roundings of a long sum
 * behave like independent errors, growing like sqrt(n) times u = 2^-24 times
 * S = sum|w*x|; allowing 4 ulps of that per kernel gives
 * |neon - scalar| <= 8*sqrt(n)*u*S. Products in fp32 subnormals are rounded
 * to an absolute 2^-149 by the scalar kernel and not by FMA: n*2^-149 more. */
static double float_tolerance(size_t n, double abs_sum) {
    return 8.0 * sqrt((double)n) * 0x1p-24 * abs_sum + (double)n * 0x1p-149;
}

/* Fills w (type t) and x (float) with n values of one kind; returns
 * S = sum|w*x| over the converted weights, in double. */
static double fill_float_case(deepc_type t, data_kind kind, size_t n, unsigned char *wbuf, float *x) {
    static float wf[MAX_N], wback[MAX_N];
    bool f16 = t == DEEPC_TYPE_F16;
    for (size_t i = 0; i < n; i++) {
        if (kind == DATA_CANCEL && i % 2 == 1) {
            wf[i] = wf[i - 1];
            x[i] = -x[i - 1];
            continue;
        }
        wf[i] = gen_value(kind == DATA_CANCEL ? DATA_UNIT : kind, true, f16);
        x[i] = gen_value(kind == DATA_CANCEL ? DATA_UNIT : kind, false, f16);
    }
    deepc_quantize_row(t, wf, wbuf, n);
    deepc_dequantize_row(t, wbuf, wback, n);
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += fabs((double)wback[i] * (double)x[i]);
    return s;
}

static void check_float_type(isa_case *c, const deepc_kernels *k, deepc_type t) {
    const deepc_kernels *ref = deepc_kernels_scalar();
    /* No load is aligned to its width: f32 rows at +4 bytes, 16-bit rows at
     * an odd address (those kernels accept any alignment), x at +4 bytes. */
    static _Alignas(64) unsigned char wmem[MAX_N * 4 + 64];
    static _Alignas(64) float xmem[MAX_N + 16];
    unsigned char *w = wmem + (t == DEEPC_TYPE_F32 ? 4 : 1);
    float *x = xmem + 1;
    for (size_t li = 0; li < sizeof float_lens / sizeof float_lens[0]; li++) {
        size_t n = float_lens[li];
        for (int kind = 0; kind < DATA_KINDS; kind++) {
            double s = fill_float_case(t, (data_kind)kind, n, w, x);
            float want = ref->vec_dot[t](n, w, x);
            float got = k->vec_dot[t](n, w, x);
            double diff = fabs((double)got - (double)want), tol = float_tolerance(n, s);
            bool ok = diff <= tol;
            CHECK(ok, "%s %s n=%zu %s data: got %.9g, scalar %.9g, |diff| %g > tol %g", c->name,
                  deepc_type_info((int)t)->name, n, kind_names[kind], got, want, diff, tol);
            note_error(c, diff, tol);
            count(c, ok);
        }
    }
}

/* ---- Q8_0 --------------------------------------------------------------- */

#define MAX_NB (11008 / DEEPC_QK8_0)
/* block counts: every remainder of the 8-block loop, the 4-block group and
 * single blocks, then real row lengths (4096, 11008 elements) */
static const size_t q8_nbs[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16, 17, 20, 31, 128, 344 };
static deepc_block_q8_0 wq[MAX_NB], xq[MAX_NB];

static int32_t int_block_dot(const deepc_block_q8_0 *a, const deepc_block_q8_0 *b) {
    int32_t s = 0;
    for (int j = 0; j < DEEPC_QK8_0; j++) s += (int32_t)a->qs[j] * (int32_t)b->qs[j];
    return s;
}

/* Raw blocks: weights may hold any int8 (-128 included: a file can), the
 * activation only [-127, 127], the range the quantizer produces. `lim`
 * bounds both. */
static void fill_raw_blocks(size_t nb, int lim) {
    int wlo = lim >= 127 ? -128 : -lim;
    for (size_t b = 0; b < nb; b++)
        for (int j = 0; j < DEEPC_QK8_0; j++) {
            wq[b].qs[j] = (int8_t)rng_int(wlo, lim);
            xq[b].qs[j] = (int8_t)rng_int(-lim, lim);
        }
}

/* Every block's integer dot, one block at a time, in place: d_w = 1 for all
 * blocks, d_x = 1 for block i only (0 elsewhere), so the kernel must return
 * exactly that block's integer dot (an exact float; the other blocks add
 * exact zeros). Every position, so every path of the unrolled loop. */
static void check_q8_0_block_dots_exact(isa_case *c, const deepc_kernels *k) {
    const uint16_t one = 0x3c00, zero = 0x0000;
    for (size_t li = 0; li < sizeof q8_nbs / sizeof q8_nbs[0]; li++) {
        size_t nb = q8_nbs[li], n = nb * DEEPC_QK8_0;
        fill_raw_blocks(nb, 127);
        for (size_t b = 0; b < nb; b++) {
            wq[b].d = one;
            xq[b].d = zero;
        }
        /* the extremes: -128 * -127 everywhere in the first block, 127 * 127
         * in the last, and -128 * 127 in the middle one (when distinct) */
        memset(wq[0].qs, 0x80, DEEPC_QK8_0);
        memset(xq[0].qs, 0x81, DEEPC_QK8_0);
        size_t last = nb > 0 ? nb - 1 : 0; /* (nb >= 1; spelled so GCC -O1's bounds warning sees it) */
        memset(wq[last].qs, 127, DEEPC_QK8_0);
        memset(xq[last].qs, 127, DEEPC_QK8_0);
        if (nb > 2) {
            memset(wq[nb / 2].qs, 0x80, DEEPC_QK8_0);
            memset(xq[nb / 2].qs, 127, DEEPC_QK8_0);
        }
        for (size_t i = 0; i < nb; i++) {
            xq[i].d = one;
            float want = (float)int_block_dot(&wq[i], &xq[i]);
            float got = k->vec_dot[DEEPC_TYPE_Q8_0](n, wq, xq);
            xq[i].d = zero;
            CHECK(got == want, "%s q8_0 nb=%zu block %zu: integer dot %.0f, got %.9g", c->name, nb, i, want, got);
            count(c, got == want);
        }
    }
}

/* Whole rows with every scale 1 and |q| <= 31: sum|w*x| <= 11008 * 961 <
 * 2^24, so every partial sum in any order is exact and so is the result. */
static void check_q8_0_unit_scale_rows_exact(isa_case *c, const deepc_kernels *k) {
    for (size_t li = 0; li < sizeof q8_nbs / sizeof q8_nbs[0]; li++) {
        size_t nb = q8_nbs[li], n = nb * DEEPC_QK8_0;
        fill_raw_blocks(nb, 31);
        int64_t want = 0;
        for (size_t b = 0; b < nb; b++) {
            wq[b].d = xq[b].d = 0x3c00;
            want += int_block_dot(&wq[b], &xq[b]);
        }
        float got = k->vec_dot[DEEPC_TYPE_Q8_0](n, wq, xq);
        CHECK(got == (float)want, "%s q8_0 nb=%zu unit scales: integer dot %lld, got %.9g", c->name, nb,
              (long long)want, got);
        count(c, got == (float)want);
    }
}

/* Weights quantized from floats of several scales, or raw blocks with random
 * finite fp16 scales (normal and subnormal); activations always from the
 * reference quantizer, as in the engine. */
typedef enum { QDATA_UNIT, QDATA_LARGE, QDATA_SMALL, QDATA_MIXED, QDATA_RAW, QDATA_KINDS } qdata_kind;
static const char *const qkind_names[QDATA_KINDS] = { "unit", "large", "small", "mixed", "raw" };

static void fill_q8_case(qdata_kind kind, size_t nb) {
    static float wf[MAX_NB * DEEPC_QK8_0], xf[MAX_NB * DEEPC_QK8_0];
    for (size_t b = 0; b < nb; b++) {
        int ew = kind == QDATA_LARGE ? 20 : kind == QDATA_SMALL ? -14 : kind == QDATA_MIXED ? rng_int(-16, 16) : 0;
        int ex = kind == QDATA_MIXED ? rng_int(-16, 16) : kind == QDATA_LARGE ? 10 : 0;
        for (int j = 0; j < DEEPC_QK8_0; j++) {
            wf[b * DEEPC_QK8_0 + j] = ldexpf(gen_value(DATA_UNIT, true, false), ew);
            xf[b * DEEPC_QK8_0 + j] = ldexpf(gen_value(DATA_UNIT, false, false), ex);
        }
    }
    deepc_quantize_row(DEEPC_TYPE_Q8_0, xf, xq, nb * DEEPC_QK8_0);
    if (kind != QDATA_RAW) {
        deepc_quantize_row(DEEPC_TYPE_Q8_0, wf, wq, nb * DEEPC_QK8_0);
        return;
    }
    for (size_t b = 0; b < nb; b++) {
        for (int j = 0; j < DEEPC_QK8_0; j++) wq[b].qs[j] = (int8_t)rng_int(-128, 127);
        wq[b].d = (uint16_t)(rng_next() % 0x7c00u) | (uint16_t)((rng_next() & 1) << 15); /* finite */
    }
}

/* Both kernels round each block's scale product d_w*d_x identically and
 * multiply it by the block's exact integer total; they differ only in how
 * the nb terms are summed (scalar: in block order; NEON: FMA into 4-lane
 * accumulators, reduced at the end, remainder blocks in order). By the
 * argument of float_tolerance with nb terms and S = sum over blocks of
 * |d_w*d_x| * sum|q_w*q_x|: |neon - scalar| <= 8*sqrt(nb)*u*S. */
static void check_q8_0_matches_scalar(isa_case *c, const deepc_kernels *k) {
    const deepc_kernels *ref = deepc_kernels_scalar();
    for (size_t li = 0; li < sizeof q8_nbs / sizeof q8_nbs[0]; li++) {
        size_t nb = q8_nbs[li], n = nb * DEEPC_QK8_0;
        for (int kind = 0; kind < QDATA_KINDS; kind++) {
            fill_q8_case((qdata_kind)kind, nb);
            double s = 0.0;
            for (size_t b = 0; b < nb; b++) {
                float d = deepc_fp16_to_fp32(wq[b].d) * deepc_fp16_to_fp32(xq[b].d);
                int32_t abs_dot = 0;
                for (int j = 0; j < DEEPC_QK8_0; j++) abs_dot += abs((int)wq[b].qs[j] * (int)xq[b].qs[j]);
                s += fabs((double)d) * abs_dot;
            }
            float want = ref->vec_dot[DEEPC_TYPE_Q8_0](n, wq, xq);
            float got = k->vec_dot[DEEPC_TYPE_Q8_0](n, wq, xq);
            double diff = fabs((double)got - (double)want), tol = 8.0 * sqrt((double)nb) * 0x1p-24 * s;
            bool ok = diff <= tol;
            CHECK(ok, "%s q8_0 nb=%zu %s data: got %.9g, scalar %.9g, |diff| %g > tol %g", c->name, nb,
                  qkind_names[kind], got, want, diff, tol);
            note_error(c, diff, tol);
            count(c, ok);
        }
    }
}

/* ---- activation quantizer ----------------------------------------------- */

/* Rows that hit every branch of the reference Q8_0 quantizer: NaN and +-inf
 * elements, +-0, fp32 subnormals, scales that round to fp16 subnormals or to
 * zero, scales that overflow fp16 (clamped), exact ties x/d = k + 1/2, and
 * all-zero / all-NaN blocks. */
#define QUANT_KINDS 8
static void fill_quantize_case(int kind, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v;
        switch (kind) {
        case 0: v = gen_value(DATA_MIXED, false, false); break;
        case 1: v = gen_value(DATA_UNIT, false, false); break;
        case 2: v = ldexpf(gen_value(DATA_UNIT, false, false), rng_int(-150, -100)); break; /* tiny */
        case 3: v = ldexpf(gen_value(DATA_UNIT, false, false), rng_int(20, 127)); break;   /* huge */
        case 4: v = (float)rng_int(-254, 254) * 0.5f; break; /* d = 1 when 127 is present: ties */
        case 5: {
            static const float special[] = { NAN, -NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e-45f, -3e38f };
            v = (rng_next() & 3) ? gen_value(DATA_MIXED, false, false) : special[rng_next() % 8];
            break;
        }
        case 6: /* whole blocks of one special value */
            v = (i / DEEPC_QK8_0) % 3 == 0 ? 0.0f : (i / DEEPC_QK8_0) % 3 == 1 ? NAN : -0.0f;
            break;
        default: /* fp32 subnormals and the smallest normals only: the Q8_K
                  * scale is subnormal and its inverse infinite */
            v = ldexpf(gen_value(DATA_UNIT, false, false), rng_int(-149, -125));
            break;
        }
        x[i] = v;
    }
    if (kind == 4)
        for (size_t b = 0; b < n / DEEPC_QK8_0; b++) x[b * DEEPC_QK8_0 + rng_int(0, 31)] = 127.0f;
}

static void check_quantize_q8_0_bit_identical(isa_case *c, const deepc_kernels *k) {
    static float xmem[MAX_NB * DEEPC_QK8_0 + 1];
    static deepc_block_q8_0 want[MAX_NB], got[MAX_NB];
    float *x = xmem + 1; /* not 16-byte aligned */
    for (size_t li = 0; li < sizeof q8_nbs / sizeof q8_nbs[0]; li++) {
        size_t nb = q8_nbs[li], n = nb * DEEPC_QK8_0, bytes = nb * sizeof(deepc_block_q8_0);
        for (int kind = 0; kind < QUANT_KINDS; kind++) {
            fill_quantize_case(kind, x, n);
            memset(want, 0xaa, bytes);
            memset(got, 0x55, bytes);
            deepc_quantize_row(DEEPC_TYPE_Q8_0, x, want, n);
            k->quantize_act[DEEPC_TYPE_Q8_0](x, got, n);
            bool ok = memcmp(want, got, bytes) == 0;
            if (!ok) {
                const unsigned char *pw = (const unsigned char *)want, *pg = (const unsigned char *)got;
                size_t i = 0;
                while (pw[i] == pg[i]) i++;
                fail("%s quantize_act[q8_0] nb=%zu case %d: first differing byte %zu (0x%02x, reference 0x%02x)",
                     c->name, nb, kind, i, pg[i], pw[i]);
            } else {
                pass();
            }
            count(c, ok);
        }
    }
}

/* ---- k-quants (Q4_K, Q3_K, Q2_K, Q6_K; Q8_K weights) x Q8_K -------------
 * As in test/test_kernels.c: each super-block's integer sums exactly, whole
 * rows within a summation-order bound, the Q8_K quantizer bit for bit. The
 * kernels loop over single super-blocks, so 1..5 of them plus real row
 * lengths (up to 11264 = 44 x 256) reach every position. */

#define K_MAX_NB 44
static const size_t k_lens[] = { 256, 512, 768, 1024, 1280, 4096, 11008, 11264 };
static const deepc_type k_types[] = { DEEPC_TYPE_Q4_K, DEEPC_TYPE_Q3_K, DEEPC_TYPE_Q2_K, DEEPC_TYPE_Q6_K, DEEPC_TYPE_Q8_K };
#define N_K_TYPES (sizeof k_types / sizeof k_types[0])
static _Alignas(64) unsigned char kw[K_MAX_NB * sizeof(deepc_block_q8_k)];
static deepc_block_q8_k kx[K_MAX_NB];

static size_t k_block_bytes(deepc_type t) {
    return deepc_type_info((int)t)->block_bytes;
}

static const char *type_name(deepc_type t) {
    return deepc_type_info((int)t)->name;
}

/* The activation's 16-element sums from its codes (raw blocks are written
 * byte by byte; the kernels rely on the sums). */
static void fix_bsums(deepc_block_q8_k *b) {
    for (int j = 0; j < DEEPC_QK_K / 16; j++) {
        int s = 0;
        for (int i = 0; i < 16; i++) s += b->qs[16 * j + i];
        b->bsums[j] = (int16_t)s;
    }
}

/* Random weight blocks: every byte random (codes, packed scales and mins),
 * then the super-scales set to `d` (fp16; fp32 for Q8_K weights, whose codes
 * may include -128, which a file may hold). sc_lim < 63 keeps sub-block
 * scales and mins small (Q6_K: int8 scales in [-sc_lim, sc_lim]).
 * Activations: codes in [-xlim, xlim], scale 1. */
static void fill_k_raw(deepc_type t, size_t nb, int xlim, uint16_t d, int sc_lim) {
    size_t bb = k_block_bytes(t);
    for (size_t i = 0; i < nb * bb; i++) kw[i] = (unsigned char)rng_next();
    for (size_t b = 0; b < nb; b++) {
        unsigned char *blk = kw + b * bb;
        if (t == DEEPC_TYPE_Q4_K) {
            deepc_block_q4_k *q = (deepc_block_q4_k *)blk;
            q->d = q->dmin = d;
            if (sc_lim < 63)
                for (int j = 0; j < 12; j++) q->scales[j] &= (uint8_t)(j < 8 ? (0x3f & sc_lim) : (sc_lim | (sc_lim << 4)));
        } else if (t == DEEPC_TYPE_Q3_K) {
            deepc_block_q3_k *q = (deepc_block_q3_k *)blk;
            q->d = d;
            if (sc_lim < 63) /* scales 32 +- small: low nibbles small, top bits 2 (= 32) */
                for (int j = 0; j < 12; j++) q->scales[j] = j < 8 ? (uint8_t)(rng_int(0, sc_lim) | (rng_int(0, sc_lim) << 4)) : 0xaa;
        } else if (t == DEEPC_TYPE_Q2_K) {
            deepc_block_q2_k *q = (deepc_block_q2_k *)blk;
            q->d = q->dmin = d;
            if (sc_lim < 15)
                for (int j = 0; j < 16; j++) q->scales[j] &= (uint8_t)(sc_lim | (sc_lim << 4));
        } else if (t == DEEPC_TYPE_Q6_K) {
            deepc_block_q6_k *q = (deepc_block_q6_k *)blk;
            q->d = d;
            if (sc_lim < 63)
                for (int j = 0; j < 16; j++) q->scales[j] = (int8_t)rng_int(-sc_lim, sc_lim);
        } else {
            deepc_block_q8_k *q = (deepc_block_q8_k *)blk;
            q->d = deepc_fp16_to_fp32(d);
            fix_bsums(q);
        }
    }
    for (size_t b = 0; b < nb; b++) {
        for (int i = 0; i < DEEPC_QK_K; i++) kx[b].qs[i] = (int8_t)rng_int(-xlim, xlim);
        kx[b].d = 1.0f;
        fix_bsums(&kx[b]);
    }
}

/* The exact dot of weight block b (super-scales 1: its dequantized values
 * are small integers) with activation block b, in int64, through the
 * reference dequantizer: the kernels and the layout definition checked
 * against each other. */
static int64_t k_int_block_dot(deepc_type t, size_t b) {
    float wd[DEEPC_QK_K];
    deepc_dequantize_row(t, kw + b * k_block_bytes(t), wd, DEEPC_QK_K);
    int64_t s = 0;
    for (int i = 0; i < DEEPC_QK_K; i++) s += (int64_t)wd[i] * kx[b].qs[i];
    return s;
}

/* Every super-block's integer dot, one at a time, in place (as for Q8_0):
 * all super-scales 1, the activation scale 1 for block i and 0 elsewhere.
 * Activations within +-31 keep every partial sum below 2^24 (Q6_K's int8
 * scales can take a block's total past it, but that int32 total is
 * converted to float once, in both kernels and here alike, and every other
 * block adds an exact 0); block 0 holds the extremes: the largest codes,
 * scales and mins against -128 (-127 for Q8_K weights x Q8_K: the
 * activation side of that product is never -128; Q6_K: q - 32 = -32 with
 * scale -128 in sub-block 0, q - 32 = 31 with scale 127 in sub-block 1). */
static void check_k_block_dots_exact(isa_case *c, const deepc_kernels *k) {
    const deepc_kernels *ref = deepc_kernels_scalar();
    for (size_t ti = 0; ti < N_K_TYPES; ti++) {
        deepc_type t = k_types[ti];
        for (size_t li = 0; li < sizeof k_lens / sizeof k_lens[0]; li++) {
            size_t n = k_lens[li], nb = n / DEEPC_QK_K;
            fill_k_raw(t, nb, 31, 0x3c00, 63);
            memset(kx[0].qs, t == DEEPC_TYPE_Q8_K ? 0x81 : 0x80, 32);
            fix_bsums(&kx[0]);
            if (t == DEEPC_TYPE_Q4_K) {
                deepc_block_q4_k *q = (deepc_block_q4_k *)kw;
                memset(q->qs, 0xff, 32);   /* codes 15 in sub-blocks 0 and 1 */
                q->scales[0] |= 0x3f;      /* sc0 = 63 */
                q->scales[4] |= 0x3f;      /* mn0 = 63 */
            } else if (t == DEEPC_TYPE_Q3_K) {
                deepc_block_q3_k *q = (deepc_block_q3_k *)kw;
                for (int l = 0; l < 32; l++) { q->qs[l] &= (uint8_t)~3u; q->hmask[l] &= (uint8_t)~1u; } /* -4 */
                q->scales[0] &= 0xf0; q->scales[1] &= 0xf0; q->scales[8] &= (uint8_t)~15u; /* sc0 = sc1 = -32 */
            } else if (t == DEEPC_TYPE_Q2_K) {
                deepc_block_q2_k *q = (deepc_block_q2_k *)kw;
                for (int l = 0; l < 32; l++) q->qs[l] |= 3;
                q->scales[0] = q->scales[1] = 0xff;
            } else if (t == DEEPC_TYPE_Q6_K) {
                deepc_block_q6_k *q = (deepc_block_q6_k *)kw;
                for (int l = 0; l < 16; l++) { q->ql[l] &= 0xf0; q->qh[l] &= (uint8_t)~3u; }           /* q = 0 */
                for (int l = 16; l < 32; l++) { q->ql[l] |= 0x0f; q->qh[l] |= 3; }                     /* q = 63 */
                q->scales[0] = -128;
                q->scales[1] = 127;
            } else {
                deepc_block_q8_k *q = (deepc_block_q8_k *)kw;
                memset(q->qs, 0x80, 32);   /* -128 x -127 */
                fix_bsums(q);
            }
            for (size_t b = 0; b < nb; b++) kx[b].d = 0.0f;
            for (size_t i = 0; i < nb; i++) {
                kx[i].d = 1.0f;
                float want = (float)k_int_block_dot(t, i);
                float got = k->vec_dot[t](n, kw, kx), scal = ref->vec_dot[t](n, kw, kx);
                kx[i].d = 0.0f;
                bool ok = got == want && scal == want;
                CHECK(ok, "%s %s n=%zu block %zu: integer dot %.0f, neon %.9g, scalar %.9g", c->name, type_name(t), n,
                      i, want, got, scal);
                count(c, ok);
            }
        }
    }
}

/* Whole rows, super-scales 1, sub-block scales <= 3, activations +-7: every
 * partial sum is below 2^24, so any order is exact. */
static void check_k_unit_scale_rows_exact(isa_case *c, const deepc_kernels *k) {
    for (size_t ti = 0; ti < N_K_TYPES; ti++) {
        deepc_type t = k_types[ti];
        for (size_t li = 0; li < sizeof k_lens / sizeof k_lens[0]; li++) {
            size_t n = k_lens[li], nb = n / DEEPC_QK_K;
            fill_k_raw(t, nb, 7, 0x3c00, 3);
            int64_t want = 0;
            for (size_t b = 0; b < nb; b++) want += k_int_block_dot(t, b);
            float got = k->vec_dot[t](n, kw, kx);
            CHECK(got == (float)want, "%s %s n=%zu: integer dot %lld, neon %.9g", c->name, type_name(t), n,
                  (long long)want, got);
            count(c, got == (float)want);
        }
    }
}

/* S = sum over super-blocks of |d_x| * (|d| * sum_j |sc_j| sum |q x| +
 * |dmin| * sum_j |mn_j bsum_j|): the magnitude of the terms both kernels sum
 * before the min term cancels (q3_k, q6_k: q - 4, q - 32 in place of q;
 * q8_k: d sum|q x|). */
static double k_abs_terms(deepc_type t, size_t nb) {
    double s = 0.0;
    for (size_t b = 0; b < nb; b++) {
        const deepc_block_q8_k *x = &kx[b];
        float wd[DEEPC_QK_K];
        const unsigned char *blk = kw + b * k_block_bytes(t);
        double main = 0.0, mins = 0.0;
        if (t == DEEPC_TYPE_Q8_K) {
            const deepc_block_q8_k *q = (const deepc_block_q8_k *)blk;
            for (int i = 0; i < DEEPC_QK_K; i++) main += fabs((double)q->qs[i] * x->qs[i]);
            main *= fabs((double)q->d);
        } else {
            unsigned char tmp[sizeof(deepc_block_q6_k)]; /* the largest of the four */
            memcpy(tmp, blk, k_block_bytes(t));
            if (t == DEEPC_TYPE_Q4_K) ((deepc_block_q4_k *)tmp)->dmin = 0;
            if (t == DEEPC_TYPE_Q2_K) ((deepc_block_q2_k *)tmp)->dmin = 0;
            deepc_dequantize_row(t, tmp, wd, DEEPC_QK_K);
            for (int i = 0; i < DEEPC_QK_K; i++) main += fabs((double)wd[i] * x->qs[i]);
            if (t == DEEPC_TYPE_Q4_K) {
                const deepc_block_q4_k *q = (const deepc_block_q4_k *)blk;
                uint8_t sc[8], mn[8];
                deepc_q4_k_unpack_scales(q->scales, sc, mn);
                for (int j = 0; j < 8; j++) mins += mn[j] * fabs((double)x->bsums[2 * j] + x->bsums[2 * j + 1]);
                mins *= fabs((double)deepc_fp16_to_fp32(q->dmin));
            } else if (t == DEEPC_TYPE_Q2_K) {
                const deepc_block_q2_k *q = (const deepc_block_q2_k *)blk;
                for (int j = 0; j < 16; j++) mins += (q->scales[j] >> 4) * fabs((double)x->bsums[j]);
                mins *= fabs((double)deepc_fp16_to_fp32(q->dmin));
            }
        }
        s += fabs((double)x->d) * (main + mins);
    }
    return s;
}

/* Weights quantized from floats of several scales, or raw blocks with random
 * finite fp16 super-scales; activations from the reference Q8_K quantizer. */
static void fill_k_case(deepc_type t, qdata_kind kind, size_t n) {
    static float wf[K_MAX_NB * DEEPC_QK_K], xf[K_MAX_NB * DEEPC_QK_K];
    size_t nb = n / DEEPC_QK_K;
    for (size_t b = 0; b < nb; b++) {
        int ew = kind == QDATA_LARGE ? 14 : kind == QDATA_SMALL ? -14 : kind == QDATA_MIXED ? rng_int(-12, 12) : 0;
        int ex = kind == QDATA_MIXED ? rng_int(-16, 16) : kind == QDATA_LARGE ? 10 : 0;
        for (int j = 0; j < DEEPC_QK_K; j++) {
            wf[b * DEEPC_QK_K + j] = ldexpf(gen_value(DATA_UNIT, true, false), ew);
            xf[b * DEEPC_QK_K + j] = ldexpf(gen_value(DATA_UNIT, false, false), ex);
        }
    }
    deepc_quantize_row(DEEPC_TYPE_Q8_K, xf, kx, n);
    if (kind != QDATA_RAW) {
        deepc_quantize_row(t, wf, kw, n);
        return;
    }
    size_t bb = k_block_bytes(t);
    for (size_t i = 0; i < nb * bb; i++) kw[i] = (unsigned char)rng_next();
    for (size_t b = 0; b < nb; b++) {
        unsigned char *blk = kw + b * bb;
        uint16_t d = (uint16_t)(rng_next() % 0x7c00u) | (uint16_t)((rng_next() & 1) << 15);
        uint16_t dm = (uint16_t)(rng_next() % 0x7c00u);
        if (t == DEEPC_TYPE_Q4_K) { ((deepc_block_q4_k *)blk)->d = d; ((deepc_block_q4_k *)blk)->dmin = dm; }
        else if (t == DEEPC_TYPE_Q3_K) ((deepc_block_q3_k *)blk)->d = d;
        else if (t == DEEPC_TYPE_Q2_K) { ((deepc_block_q2_k *)blk)->d = d; ((deepc_block_q2_k *)blk)->dmin = dm; }
        else if (t == DEEPC_TYPE_Q6_K) ((deepc_block_q6_k *)blk)->d = d;
        else {
            deepc_block_q8_k *q = (deepc_block_q8_k *)blk;
            q->d = deepc_fp16_to_fp32(d);
            for (int i = 0; i < DEEPC_QK_K; i++) if (q->qs[i] == -128) q->qs[i] = -127; /* as quantized */
            fix_bsums(q);
        }
    }
}

/* The kernels agree on every super-block's integer sums and scale factors
 * and may differ only in how the float terms are combined; the bound of
 * test/test_kernels.c (at most 32 terms per super-block):
 * |neon - scalar| <= 8*sqrt(32*nb)*u*S, S from k_abs_terms. */
static void check_k_matches_scalar(isa_case *c, const deepc_kernels *k) {
    const deepc_kernels *ref = deepc_kernels_scalar();
    for (size_t ti = 0; ti < N_K_TYPES; ti++) {
        deepc_type t = k_types[ti];
        CHECK(k->act_type[t] == DEEPC_TYPE_Q8_K, "%s %s: activation type is not q8_k", c->name, type_name(t));
        for (size_t li = 0; li < sizeof k_lens / sizeof k_lens[0]; li++) {
            size_t n = k_lens[li], nb = n / DEEPC_QK_K;
            for (int kind = 0; kind < QDATA_KINDS; kind++) {
                fill_k_case(t, (qdata_kind)kind, n);
                double s = k_abs_terms(t, nb);
                float want = ref->vec_dot[t](n, kw, kx);
                float got = k->vec_dot[t](n, kw, kx);
                double diff = fabs((double)got - (double)want), tol = 8.0 * sqrt(32.0 * (double)nb) * 0x1p-24 * s;
                bool ok = diff <= tol;
                CHECK(ok, "%s %s n=%zu %s data: got %.9g, scalar %.9g, |diff| %g > tol %g", c->name, type_name(t), n,
                      qkind_names[kind], got, want, diff, tol);
                note_error(c, diff, tol);
                count(c, ok);
            }
        }
    }
}

/* A NaN super-scale in any super-block poisons the row. */
static void check_k_nan_scale(isa_case *c, const deepc_kernels *k) {
    const deepc_kernels *ref = deepc_kernels_scalar();
    const size_t n = 1280, nb = n / DEEPC_QK_K;
    for (size_t ti = 0; ti < N_K_TYPES; ti++) {
        deepc_type t = k_types[ti];
        for (size_t bad = 0; bad < nb; bad++) {
            fill_k_case(t, QDATA_UNIT, n);
            unsigned char *blk = kw + bad * k_block_bytes(t);
            if (t == DEEPC_TYPE_Q8_K) {
                ((deepc_block_q8_k *)blk)->d = NAN;
            } else {
                uint16_t nan16 = 0x7e00;
                memcpy(blk + (t == DEEPC_TYPE_Q3_K ? 108 : t == DEEPC_TYPE_Q2_K ? 80 : t == DEEPC_TYPE_Q6_K ? 208 : 0), &nan16, 2);
            }
            float got = k->vec_dot[t](n, kw, kx), want = ref->vec_dot[t](n, kw, kx);
            bool ok = isnan(got) && isnan(want);
            CHECK(ok, "%s %s: NaN super-scale in block %zu gave %g (scalar %g)", c->name, type_name(t), bad, got, want);
            count(c, ok);
        }
    }
}

/* The Q8_K activation quantizer, bit for bit, over the rows of
 * fill_quantize_case (NaN, inf, subnormals, huge values, ties, special
 * blocks, scales whose inverse overflows). */
static void check_quantize_q8_k_bit_identical(isa_case *c, const deepc_kernels *k) {
    static float xmem[K_MAX_NB * DEEPC_QK_K + 1];
    static deepc_block_q8_k want[K_MAX_NB], got[K_MAX_NB];
    float *x = xmem + 1; /* not 16-byte aligned */
    for (size_t li = 0; li < sizeof k_lens / sizeof k_lens[0]; li++) {
        size_t n = k_lens[li], bytes = deepc_type_row_bytes(DEEPC_TYPE_Q8_K, n);
        for (int kind = 0; kind < QUANT_KINDS; kind++) {
            fill_quantize_case(kind, x, n);
            memset(want, 0xaa, bytes);
            memset(got, 0x55, bytes);
            deepc_quantize_row(DEEPC_TYPE_Q8_K, x, want, n);
            k->quantize_act[DEEPC_TYPE_Q8_K](x, got, n);
            bool ok = memcmp(want, got, bytes) == 0;
            if (!ok) {
                const unsigned char *pw = (const unsigned char *)want, *pg = (const unsigned char *)got;
                size_t i = 0;
                while (pw[i] == pg[i]) i++;
                fail("%s quantize_act[q8_k] n=%zu case %d: first differing byte %zu (0x%02x, reference 0x%02x)",
                     c->name, n, kind, i, pg[i], pw[i]);
            } else {
                pass();
            }
            count(c, ok);
        }
    }
}

/* ---- FP8_B128 x F32 ----------------------------------------------------- */

static const size_t fp8_lens[] = { 128, 256, 384, 1280, 4096, 11008 };
#define FP8_MAX_NB (11264 / DEEPC_QK_FP8)
static deepc_block_fp8_b128 fw[FP8_MAX_NB];
static _Alignas(64) float fxmem[FP8_MAX_NB * DEEPC_QK_FP8 + 16];

/* Weights quantized from floats of every data kind (fp32 scales follow the
 * data down to subnormal products), or (kind == DATA_KINDS) raw codes, no
 * NaN code, with scales 2^[-20, 20]. Returns S = sum|d * e4m3 * x| and the
 * largest |d|. */
static double fill_fp8_case(int kind, size_t n, float *x, double *dmax) {
    static float wf[FP8_MAX_NB * DEEPC_QK_FP8];
    size_t nb = n / DEEPC_QK_FP8;
    for (size_t i = 0; i < n; i++) {
        data_kind dk = kind < DATA_KINDS ? (data_kind)kind : DATA_UNIT;
        if (dk == DATA_CANCEL && i % 2 == 1) {
            wf[i] = wf[i - 1];
            x[i] = -x[i - 1];
            continue;
        }
        wf[i] = gen_value(dk == DATA_CANCEL ? DATA_UNIT : dk, true, false);
        x[i] = gen_value(dk == DATA_CANCEL ? DATA_UNIT : dk, false, false);
    }
    deepc_quantize_row(DEEPC_TYPE_FP8_B128, wf, fw, n);
    if (kind == DATA_KINDS)
        for (size_t b = 0; b < nb; b++) {
            fw[b].d = ldexpf(rng_unit(), rng_int(-20, 20));
            for (int i = 0; i < DEEPC_QK_FP8; i++) {
                uint8_t v = (uint8_t)rng_next();
                fw[b].qs[i] = (v & 0x7f) == 0x7f ? (uint8_t)(v - 1) : v;
            }
        }
    deepc_dequantize_row(DEEPC_TYPE_FP8_B128, fw, wf, n);
    double s = 0.0;
    *dmax = 0.0;
    for (size_t i = 0; i < n; i++) s += fabs((double)wf[i] * x[i]);
    for (size_t b = 0; b < nb; b++) *dmax = fmax(*dmax, fabs((double)fw[b].d));
    return s;
}

/* Every finite code decodes exactly: a row of zero codes with one code c at
 * a position that moves through every lane and register of the block loop,
 * scale 1, x = 1 there: the result is e4m3(c) itself, in both kernels. */
static void check_fp8_decode_exact(isa_case *c, const deepc_kernels *k) {
    const deepc_kernels *ref = deepc_kernels_scalar();
    const size_t n = 1280;
    float *x = fxmem + 1;
    for (int code = 0; code < 256; code++) {
        if ((code & 0x7f) == 0x7f) continue; /* NaN codes: check_fp8_non_finite */
        size_t pos = ((size_t)code * 37) % n;
        memset(fw, 0, sizeof fw);
        for (size_t b = 0; b < n / DEEPC_QK_FP8; b++) fw[b].d = 1.0f;
        for (size_t i = 0; i < n; i++) x[i] = gen_value(DATA_UNIT, false, false);
        fw[pos / DEEPC_QK_FP8].qs[pos % DEEPC_QK_FP8] = (uint8_t)code;
        x[pos] = 1.0f;
        float dq[DEEPC_QK_FP8]; /* the reference decode of the block holding the code */
        deepc_dequantize_row(DEEPC_TYPE_FP8_B128, &fw[pos / DEEPC_QK_FP8], dq, DEEPC_QK_FP8);
        float want = dq[pos % DEEPC_QK_FP8];
        float got = k->vec_dot[DEEPC_TYPE_FP8_B128](n, fw, x), scal = ref->vec_dot[DEEPC_TYPE_FP8_B128](n, fw, x);
        bool ok = got == want && scal == want;
        CHECK(ok, "%s fp8_b128 code 0x%02x at %zu: e4m3 %.9g, neon %.9g, scalar %.9g", c->name, code, pos, want, got,
              scal);
        count(c, ok);
    }
}

/* Both kernels sum decoded codes times x per block in fp32, then scale by
 * d: float_tolerance's argument with S over the dequantized weights, plus
 * the products in fp32 subnormals (rounded by scalar, not by FMA), an
 * absolute 2^-149 each magnified by the block scale (as test_kernels.c). */
static void check_fp8_matches_scalar(isa_case *c, const deepc_kernels *k) {
    const deepc_kernels *ref = deepc_kernels_scalar();
    float *x = fxmem + 1; /* not 16-byte aligned */
    CHECK(k->act_type[DEEPC_TYPE_FP8_B128] == DEEPC_TYPE_F32, "%s fp8_b128: activation type is not f32", c->name);
    for (size_t li = 0; li < sizeof fp8_lens / sizeof fp8_lens[0]; li++) {
        size_t n = fp8_lens[li];
        for (int kind = 0; kind <= DATA_KINDS; kind++) {
            double dmax;
            double s = fill_fp8_case(kind, n, x, &dmax);
            float want = ref->vec_dot[DEEPC_TYPE_FP8_B128](n, fw, x);
            float got = k->vec_dot[DEEPC_TYPE_FP8_B128](n, fw, x);
            double diff = fabs((double)got - (double)want);
            double tol = float_tolerance(n, s) + (double)n * 0x1p-149 * (1.0 + dmax);
            bool ok = diff <= tol;
            CHECK(ok, "%s fp8_b128 n=%zu %s data: got %.9g, scalar %.9g, |diff| %g > tol %g", c->name, n,
                  kind < DATA_KINDS ? kind_names[kind] : "raw", got, want, diff, tol);
            note_error(c, diff, tol);
            count(c, ok);
        }
    }
}

/* A NaN code (0x7f, 0xff) anywhere gives NaN; an infinite activation
 * against a nonzero code an infinity of the product's sign. */
static void check_fp8_non_finite(isa_case *c, const deepc_kernels *k) {
    const deepc_kernels *ref = deepc_kernels_scalar();
    const size_t n = 1280;
    float *x = fxmem + 1;
    for (size_t pos = 3; pos < n; pos += 61) {
        for (int which = 0; which < 3; which++) {
            double dmax;
            fill_fp8_case(DATA_KINDS, n, x, &dmax);
            if (which < 2) {
                fw[pos / DEEPC_QK_FP8].qs[pos % DEEPC_QK_FP8] = which ? 0xff : 0x7f;
            } else {
                fw[pos / DEEPC_QK_FP8].qs[pos % DEEPC_QK_FP8] = 0x38; /* +1.0 */
                x[pos] = -INFINITY;
            }
            float want = ref->vec_dot[DEEPC_TYPE_FP8_B128](n, fw, x), got = k->vec_dot[DEEPC_TYPE_FP8_B128](n, fw, x);
            bool ok = which < 2 ? isnan(want) && isnan(got) : isinf(want) && want < 0 && isinf(got) && got < 0;
            CHECK(ok, "%s fp8_b128 case %d at %zu: got %g, scalar %g", c->name, which, pos, got, want);
            count(c, ok);
        }
    }
}

/* ---- Q8_0 gemm (arch/neon_ops.c) ------------------------------------------
 * Every output bit-identical to the same table's vec_dot (core/kernels.h's
 * contract: prefill and decode give the same numbers whatever the tiling),
 * as test/test_ops.c asserts for the x86 gemms. */

static uint32_t float_bits(float a) {
    uint32_t u;
    memcpy(&u, &a, 4);
    return u;
}

/* Same bits, or both NaN. */
static bool same_float(float a, float b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return float_bits(a) == float_bits(b);
}

static float rng_sym(void) { /* [-1, 1) */
    return (float)((double)(rng_next() >> 40) * 0x1p-23 - 1.0);
}

#define G_MAX_ROWS 70
#define G_MAX_TOK 19
#define G_MAX_NB 287
#define G_PAD 3 /* extra blocks / floats between rows */

typedef enum { GDATA_QUANTIZED, GDATA_RAW, GDATA_EXTREME, GDATA_SPECIAL, GDATA_KINDS } gdata_kind;
static const char *const gkind_names[GDATA_KINDS] = { "quantized", "raw", "extreme", "special" };

static deepc_block_q8_0 gw[G_MAX_ROWS * (G_MAX_NB + G_PAD)];
static deepc_block_q8_0 gx[G_MAX_TOK * (G_MAX_NB + G_PAD)];
static float gy[G_MAX_TOK * (G_MAX_ROWS + G_PAD)];

/* quantized: both sides from floats of mixed scales, as in the engine; raw:
 * any weight byte (-128 included), activations in [-127, 127], any finite
 * fp16 scales; extreme: every byte at its limit; special: raw with the odd
 * NaN, infinite, zero or subnormal weight scale. Padding between rows is
 * filled with junk the kernel must not read into any output. */
static void fill_gemm(gdata_kind kind, int nrows, int ntok, size_t nb, size_t ws, size_t xs) {
    static float f[G_MAX_NB * DEEPC_QK8_0];
    for (int r = 0; r < nrows + ntok; r++) {
        bool is_w = r < nrows;
        deepc_block_q8_0 *row = is_w ? gw + (size_t)r * ws : gx + (size_t)(r - nrows) * xs;
        size_t stride = is_w ? ws : xs;
        if (kind == GDATA_QUANTIZED) {
            for (size_t i = 0; i < nb * DEEPC_QK8_0; i++) f[i] = ldexpf(rng_sym(), rng_int(-8, 8));
            deepc_quantize_row(DEEPC_TYPE_Q8_0, f, row, nb * DEEPC_QK8_0);
        } else {
            for (size_t b = 0; b < nb; b++) {
                for (int j = 0; j < DEEPC_QK8_0; j++) {
                    int lo = is_w ? -128 : -127;
                    row[b].qs[j] = (int8_t)(kind == GDATA_EXTREME ? (rng_next() & 1 ? 127 : lo) : rng_int(lo, 127));
                }
                row[b].d = (uint16_t)(rng_next() % 0x7c00u) | (uint16_t)(is_w ? (rng_next() & 1) << 15 : 0);
                if (is_w && kind == GDATA_SPECIAL && rng_int(0, 40) == 0) {
                    static const uint16_t sp[] = { 0x7e00, 0x7c00, 0xfc00, 0x0000, 0x8000, 0x0001 };
                    row[b].d = sp[rng_int(0, 5)];
                }
            }
        }
        for (size_t b = nb; b < stride; b++) memset(&row[b], is_w ? 0xa5 : 0x5a, sizeof row[b]);
    }
}

/* One gemm call over the whole shape, every output against vec_dot; the
 * outputs past nrows in each token's row of y must stay untouched. */
static void check_gemm_shape(isa_case *c, const deepc_kernels *k, gdata_kind kind, int nrows, int ntok, size_t nb) {
    size_t n = nb * DEEPC_QK8_0, ws = nb + (size_t)rng_int(0, G_PAD), xs = nb + (size_t)rng_int(0, G_PAD);
    size_t ys = (size_t)nrows + (size_t)rng_int(0, G_PAD);
    fill_gemm(kind, nrows, ntok, nb, ws, xs);
    const float canary = -12345.5f;
    for (size_t i = 0; i < (size_t)ntok * ys; i++) gy[i] = canary;
    k->gemm[DEEPC_TYPE_Q8_0](nrows, ntok, n, gw, ws * sizeof *gw, gx, xs * sizeof *gx, gy, ys);
    bool ok = true;
    for (int t = 0; t < ntok; t++) {
        for (int r = 0; r < nrows; r++) {
            float want = k->vec_dot[DEEPC_TYPE_Q8_0](n, gw + (size_t)r * ws, gx + (size_t)t * xs);
            float got = gy[(size_t)t * ys + (size_t)r];
            if (!same_float(got, want)) {
                if (ok)
                    fail("%s q8_0 gemm %s data, %d rows x %d tokens, nb=%zu: output (%d, %d) is %.9g (0x%08x), "
                         "vec_dot %.9g (0x%08x)", c->name, gkind_names[kind], nrows, ntok, nb, r, t, got,
                         float_bits(got), want, float_bits(want));
                ok = false;
            }
        }
        for (size_t r = (size_t)nrows; r < ys; r++)
            if (gy[(size_t)t * ys + r] != canary) {
                if (ok) fail("%s q8_0 gemm wrote past row %d of token %d", c->name, nrows, t);
                ok = false;
            }
    }
    if (ok) pass();
    count(c, ok);
}

/* Block counts: below one 4-block group (tails only), one and two groups
 * with every tail, around the 32-block k-chunk (a lone group after it, odd
 * and even group counts), several chunks, the 1.5B model's 1536 (48 blocks)
 * and 8960 + 3 blocks. Shapes: single outputs, micro-tile remainders (rows
 * not a multiple of 4, an odd token count), whole and partial 16-token
 * tiles, and at the largest n several row blocks. */
static const size_t gemm_nbs[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 31, 32, 33, 36, 40, 48, 65, 287 };

static void check_gemm_equals_vec_dot(isa_case *c, const deepc_kernels *k) {
    CHECK(k->gemm[DEEPC_TYPE_Q8_0] != NULL, "%s has no q8_0 gemm", c->name);
    if (!k->gemm[DEEPC_TYPE_Q8_0]) return;
    static const int shapes[][2] = { { 1, 1 }, { 1, 2 }, { 2, 1 }, { 3, 3 }, { 4, 2 }, { 5, 7 }, { 8, 16 }, { 9, 17 } };
    for (size_t i = 0; i < sizeof gemm_nbs / sizeof gemm_nbs[0]; i++) {
        size_t nb = gemm_nbs[i];
        for (int kind = 0; kind < GDATA_KINDS; kind++) {
            for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
                check_gemm_shape(c, k, (gdata_kind)kind, shapes[si][0], shapes[si][1], nb);
            if (nb >= 65) check_gemm_shape(c, k, (gdata_kind)kind, G_MAX_ROWS, G_MAX_TOK, nb);
        }
    }
}

/* Split into row ranges and token ranges, as threads and batches split a
 * product: the same bits as one call. */
static void check_gemm_split_invariant(isa_case *c, const deepc_kernels *k) {
    if (!k->gemm[DEEPC_TYPE_Q8_0]) return;
    const size_t nb = 72, n = nb * DEEPC_QK8_0;
    const int nrows = 37, ntok = 13;
    static float whole[G_MAX_TOK * G_MAX_ROWS];
    fill_gemm(GDATA_QUANTIZED, nrows, ntok, nb, nb, nb);
    k->gemm[DEEPC_TYPE_Q8_0](nrows, ntok, n, gw, nb * sizeof *gw, gx, nb * sizeof *gx, whole, (size_t)nrows);
    const int rsplit[] = { 0, 1, 16, 19, 37 }, tsplit[] = { 0, 5, 6, 13 };
    for (int ri = 0; ri + 1 < 5; ri++)
        for (int ti = 0; ti + 1 < 4; ti++) {
            int r0 = rsplit[ri], t0 = tsplit[ti];
            k->gemm[DEEPC_TYPE_Q8_0](rsplit[ri + 1] - r0, tsplit[ti + 1] - t0, n, gw + (size_t)r0 * nb, nb * sizeof *gw,
                                     gx + (size_t)t0 * nb, nb * sizeof *gx, gy + (size_t)t0 * nrows + r0, (size_t)nrows);
        }
    bool ok = true;
    for (int i = 0; i < nrows * ntok && ok; i++) ok = same_float(gy[i], whole[i]);
    CHECK(ok, "%s: split q8_0 gemm differs from one call", c->name);
    count(c, ok);
}

/* Whatever gemm slots the table fills, each against that table's vec_dot:
 * weights quantized from floats, activations converted as the engine does.
 * (A gemm inherited from another table would compute that table's vec_dot:
 * this is where it shows.) */
static void check_every_gemm_equals_vec_dot(isa_case *c, const deepc_kernels *k) {
    static const size_t lens[] = { 256, 768, 2560 };
    enum { ROWS = 7, TOK = 5 };
    static float f[2560];
    static unsigned char wbuf[ROWS * 2560 * 4], xbuf[TOK * 2560 * 4];
    static float y[TOK * ROWS];
    for (int t = 0; t < DEEPC_TYPE_COUNT; t++) {
        if (!k->gemm[t]) continue;
        deepc_type at = k->act_type[t];
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            size_t n = lens[li], wrb = deepc_type_row_bytes((deepc_type)t, n), xrb = deepc_type_row_bytes(at, n);
            for (int r = 0; r < ROWS; r++) {
                for (size_t i = 0; i < n; i++) f[i] = ldexpf(rng_sym(), rng_int(-6, 6));
                deepc_quantize_row((deepc_type)t, f, wbuf + (size_t)r * wrb, n);
            }
            for (int j = 0; j < TOK; j++) {
                for (size_t i = 0; i < n; i++) f[i] = ldexpf(rng_sym(), rng_int(-6, 6));
                k->quantize_act[at](f, xbuf + (size_t)j * xrb, n);
            }
            k->gemm[t](ROWS, TOK, n, wbuf, wrb, xbuf, xrb, y, ROWS);
            bool ok = true;
            for (int j = 0; j < TOK; j++)
                for (int r = 0; r < ROWS; r++) {
                    float want = k->vec_dot[t](n, wbuf + (size_t)r * wrb, xbuf + (size_t)j * xrb);
                    ok = ok && same_float(y[(size_t)j * ROWS + (size_t)r], want);
                }
            CHECK(ok, "%s %s gemm n=%zu differs from its vec_dot", c->name, type_name((deepc_type)t), n);
            count(c, ok);
        }
    }
}

/* ---- fp16 KV-cache primitives (arch/neon_ops.c) --------------------------
 * As test/test_ops.c: dot_f16_f32 within the summation-order bound of the
 * float dots; axpy_f16_f32 bit-identical to scalar (multiply, then add); the
 * row forms bit-identical to the single-row kernels of the same table. */

#define F16_MAX_LEN 1100
static const size_t f16_lens[] = { 0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 63, 64, 65, 128, 129, 512, 576, 1000, 1099 };

/* fp16 value classes: unit, wide exponents, fp16 subnormals. */
static uint16_t gen_f16(int kind) {
    float v = rng_sym();
    if (kind == 1) v = ldexpf(v, rng_int(-14, 15));
    if (kind == 2) v = ldexpf(v, rng_int(-24, -15));
    return deepc_fp32_to_fp16(v);
}

static void check_dot_f16_f32(isa_case *c, const deepc_kernels *k) {
    const deepc_kernels *ref = deepc_kernels_scalar();
    static uint16_t amem[F16_MAX_LEN + 8];
    static float bmem[F16_MAX_LEN + 8];
    for (size_t li = 0; li < sizeof f16_lens / sizeof f16_lens[0]; li++) {
        size_t n = f16_lens[li];
        for (int kind = 0; kind < 3; kind++) {
            uint16_t *a = amem + 1 + kind; /* odd element offsets: no load aligned to its width */
            float *b = bmem + 3;
            double s = 0.0;
            for (size_t i = 0; i < n; i++) {
                a[i] = gen_f16(kind);
                b[i] = ldexpf(rng_sym(), rng_int(-10, 10));
                s += fabs((double)deepc_fp16_to_fp32(a[i]) * b[i]);
            }
            float want = ref->dot_f16_f32(n, a, b), got = k->dot_f16_f32(n, a, b);
            double diff = fabs((double)got - (double)want), tol = float_tolerance(n, s);
            bool ok = diff <= tol;
            CHECK(ok, "%s dot_f16_f32 n=%zu kind %d: got %.9g, scalar %.9g, |diff| %g > tol %g", c->name, n, kind, got,
                  want, diff, tol);
            note_error(c, diff, tol);
            count(c, ok);
        }
    }
    /* NaN anywhere gives NaN, -inf (times a positive) -inf: positions in the
     * 16-wide loop, the 4-wide loop and the tail */
    static const size_t positions[] = { 0, 15, 100, 255, 257, 260, 262 };
    uint16_t *a = amem + 1;
    float *b = bmem + 3;
    for (size_t pi = 0; pi < sizeof positions / sizeof positions[0]; pi++) {
        size_t pos = positions[pi];
        for (size_t i = 0; i < 263; i++) {
            a[i] = gen_f16(0);
            b[i] = rng_sym();
        }
        a[pos] = 0x7e00;
        bool ok = isnan(k->dot_f16_f32(263, a, b));
        a[pos] = 0xfc00;
        b[pos] = 2.0f;
        float v = k->dot_f16_f32(263, a, b);
        ok = ok && isinf(v) && v < 0;
        CHECK(ok, "%s dot_f16_f32: NaN / -inf at %zu not propagated", c->name, pos);
        count(c, ok);
    }
}

static void check_axpy_f16_f32(isa_case *c, const deepc_kernels *k) {
    const deepc_kernels *ref = deepc_kernels_scalar();
    static uint16_t xmem[F16_MAX_LEN + 8];
    static float want[F16_MAX_LEN + 8], got[F16_MAX_LEN + 8];
    const float alphas[] = { 0.0f, 1.0f, -0.3f, 1e-30f, 3e30f, 0.7071f };
    for (size_t li = 0; li < sizeof f16_lens / sizeof f16_lens[0]; li++) {
        size_t n = f16_lens[li];
        for (int kind = 0; kind < 3; kind++) {
            uint16_t *x = xmem + 1 + kind;
            for (size_t i = 0; i < n + 2; i++) {
                x[i] = gen_f16(kind);
                want[i] = got[i] = ldexpf(rng_sym(), rng_int(-20, 20));
            }
            if (n > 3) x[n / 2] = 0x7c00; /* +inf */
            float alpha = alphas[rng_int(0, 5)];
            ref->axpy_f16_f32(n, alpha, x, want + 1);
            k->axpy_f16_f32(n, alpha, x, got + 1);
            bool ok = true;
            for (size_t i = 0; i < n + 2 && ok; i++) ok = same_float(got[i], want[i]);
            CHECK(ok, "%s axpy_f16_f32 n=%zu kind %d alpha %g differs from scalar", c->name, n, kind, alpha);
            count(c, ok);
        }
    }
}

/* Rows at a stride (several heads per cache row), row counts past a
 * register block, widths with tails around the 64-column block. */
static void check_row_forms(isa_case *c, const deepc_kernels *k) {
    static const size_t widths[] = { 1, 15, 63, 64, 65, 128, 129, 200, 512, 576 };
    static const size_t counts[] = { 1, 2, 7, 33, 300 };
    enum { MAXW = 576, MAXM = 300, STRIDE = MAXW + 77 };
    static uint16_t cache[MAXM * STRIDE];
    static float q[MAXW], alpha[MAXM], got[MAXM + MAXW], want[MAXM + MAXW];
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++)
        for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
            size_t n = widths[wi], m = counts[ci];
            for (size_t i = 0; i < m * STRIDE; i++) cache[i] = gen_f16((int)(i % 3));
            for (size_t i = 0; i < n; i++) q[i] = ldexpf(rng_sym(), rng_int(-8, 8));
            for (size_t p = 0; p < m; p++) alpha[p] = rng_sym();
            k->dot_rows_f16_f32(n, m, cache + 3, STRIDE, q, got);
            bool ok = true;
            for (size_t p = 0; p < m; p++) ok = ok && same_float(got[p], k->dot_f16_f32(n, cache + 3 + p * STRIDE, q));
            CHECK(ok, "%s dot_rows_f16_f32 n=%zu m=%zu differs from dot_f16_f32 row by row", c->name, n, m);
            count(c, ok);
            for (size_t i = 0; i < n; i++) got[i] = want[i] = ldexpf(rng_sym(), rng_int(-4, 4));
            k->axpy_rows_f16_f32(n, m, alpha, cache + 5, STRIDE, got);
            for (size_t p = 0; p < m; p++) k->axpy_f16_f32(n, alpha[p], cache + 5 + p * STRIDE, want);
            ok = true;
            for (size_t i = 0; i < n; i++) ok = ok && same_float(got[i], want[i]);
            CHECK(ok, "%s axpy_rows_f16_f32 n=%zu m=%zu differs from axpy_f16_f32 row by row", c->name, n, m);
            count(c, ok);
        }
}

/* ---- edge behaviour ----------------------------------------------------- */

/* NaN anywhere gives NaN, and an infinite product (with finite others) gives
 * an infinity of its sign, as in the scalar kernel, at positions that fall
 * in the main loop, the 4-wide loop and the scalar tail. A NaN weight scale
 * in any block (8-loop, 4-group, single blocks) poisons a Q8_0 row. */
static void check_non_finite(isa_case *c, const deepc_kernels *k) {
    const deepc_kernels *ref = deepc_kernels_scalar();
    enum { N = 16 * 16 + 7 }; /* main loop 0..255, 4-wide 256..259, tail 260..262 */
    static const size_t positions[] = { 0, 7, 100, 255, 257, 260, N - 1 };
    static float wf[N], x[N];
    static unsigned char w[N * 4];
    const deepc_type types[] = { DEEPC_TYPE_F32, DEEPC_TYPE_F16, DEEPC_TYPE_BF16 };
    for (size_t ti = 0; ti < 3; ti++) {
        deepc_type t = types[ti];
        for (size_t pi = 0; pi < sizeof positions / sizeof positions[0]; pi++) {
            size_t at = positions[pi];
            for (int which = 0; which < 2; which++) {
                for (size_t i = 0; i < N; i++) {
                    wf[i] = gen_value(DATA_UNIT, true, false);
                    x[i] = gen_value(DATA_UNIT, false, false);
                }
                wf[at] = which ? -INFINITY : NAN;
                x[at] = 2.0f;
                deepc_quantize_row(t, wf, w, N);
                float got = k->vec_dot[t](N, w, x), want = ref->vec_dot[t](N, w, x);
                bool ok = which ? (isinf(got) && got < 0 && isinf(want) && want < 0) : (isnan(got) && isnan(want));
                CHECK(ok, "%s %s: %s at %zu gave %g (scalar %g)", c->name, deepc_type_info((int)t)->name,
                      which ? "-inf" : "NaN", at, got, want);
                count(c, ok);
            }
        }
    }
    const size_t nb = 15; /* 8 + 4 + 3 */
    for (size_t bad = 0; bad < nb; bad++) {
        fill_q8_case(QDATA_UNIT, nb);
        wq[bad].d = 0x7e00;
        float got = k->vec_dot[DEEPC_TYPE_Q8_0](nb * DEEPC_QK8_0, wq, xq);
        CHECK(isnan(got), "%s q8_0: NaN scale in block %zu gave %g", c->name, bad, got);
        count(c, isnan(got));
    }
}

static void check_length_zero(isa_case *c, const deepc_kernels *k) {
    float dummy[64] = { 1.0f };
    for (int t = 0; t < DEEPC_TYPE_COUNT; t++) {
        float got = k->vec_dot[t](0, dummy, dummy);
        CHECK(got == 0.0f, "%s %s: n=0 gave %g", c->name, deepc_type_info(t)->name, got);
        count(c, got == 0.0f);
    }
}

/* ---- Q4_1 weights x Q8_0 activations (arch/neon_q4_1.c) ----------------- */

#define Q41_CHECK CHECK
#define Q41_COUNT count

/* Block counts covering every remainder of the 8- and 4-block loops, then
 * real row lengths (1408 = V2-Lite's expert down_proj, 11008). */
static const size_t q41_nbs[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 15, 16, 17, 20, 31, 44, 128, 344 };
#define Q41_MAX_NB 344
static deepc_block_q4_1 q41w[Q41_MAX_NB];
static deepc_block_q8_0 q41x[Q41_MAX_NB];

/* Raw blocks: any codes, activations in [-xlim, xlim] (the quantizer's
 * range is +-127), every scale `d`, every offset `m`. */
static void q41_fill_raw(size_t nb, int xlim, uint16_t d, uint16_t m) {
    for (size_t b = 0; b < nb; b++) {
        q41w[b].d = d;
        q41w[b].m = m;
        q41x[b].d = d;
        for (int l = 0; l < DEEPC_QK4_1 / 2; l++) q41w[b].qs[l] = (uint8_t)rng_int(0, 255);
        for (int l = 0; l < DEEPC_QK4_1; l++) q41x[b].qs[l] = (int8_t)rng_int(-xlim, xlim);
    }
}

/* The block's integer value isum - xsum (d = m = 1), computed here from the
 * layout, independently of the kernels. */
static int64_t q41_int_block(size_t b) {
    int64_t s = 0;
    for (int i = 0; i < DEEPC_QK4_1; i++) {
        int q = i < 16 ? q41w[b].qs[i] & 15 : q41w[b].qs[i - 16] >> 4;
        s += (int64_t)(q - 1) * q41x[b].qs[i];
    }
    return s;
}

/* Exact integer parts: every scale and offset 1 (0x3c00), one block's
 * activation scale 1 and the others 0, so the result is that block's
 * isum - xsum exactly; the extremes (code 15 with 127, code 0 with -127)
 * once per row. Then whole rows with every scale 1 and |x| <= 63:
 * sum |.| <= 344 * 32 * 16 * 63 < 2^24, so any summation order is exact. */
static void q41_check_exact(isa_case *c, const deepc_kernels *k) {
    const deepc_kernels *ref = deepc_kernels_scalar();
    for (size_t li = 0; li < sizeof q41_nbs / sizeof q41_nbs[0]; li++) {
        size_t nb = q41_nbs[li], n = nb * DEEPC_QK4_1;
        q41_fill_raw(nb, 127, 0x3c00, 0x3c00);
        memset(q41w[0].qs, 0xff, sizeof q41w[0].qs);
        memset(q41x[0].qs, 127, sizeof q41x[0].qs);
        memset(q41w[nb - 1].qs, 0x00, sizeof q41w[0].qs);
        memset(q41x[nb - 1].qs, 0x81, sizeof q41x[0].qs);
        for (size_t b = 0; b < nb; b++) q41x[b].d = 0;
        for (size_t b = 0; b < nb; b++) {
            q41x[b].d = 0x3c00;
            float want = (float)q41_int_block(b);
            float got = k->vec_dot[DEEPC_TYPE_Q4_1](n, q41w, q41x);
            float scal = ref->vec_dot[DEEPC_TYPE_Q4_1](n, q41w, q41x);
            q41x[b].d = 0;
            Q41_CHECK(got == want && scal == want, "%s q4_1 nb=%zu block %zu: integer %.0f, simd %.9g, scalar %.9g",
                      c->name, nb, b, want, got, scal);
            Q41_COUNT(c, got == want && scal == want);
        }
        q41_fill_raw(nb, 63, 0x3c00, 0x3c00);
        int64_t want = 0;
        for (size_t b = 0; b < nb; b++) want += q41_int_block(b);
        float got = k->vec_dot[DEEPC_TYPE_Q4_1](n, q41w, q41x);
        float scal = ref->vec_dot[DEEPC_TYPE_Q4_1](n, q41w, q41x);
        Q41_CHECK(got == (float)want && scal == (float)want, "%s q4_1 unit-scale row nb=%zu: %lld, simd %.9g, scalar %.9g",
                  c->name, nb, (long long)want, got, scal);
        Q41_COUNT(c, got == (float)want && scal == (float)want);
    }
}

/* Real scales: rows quantized from Gaussian-like data (weights, with a
 * shifted mean every other row so m takes both signs) and raw blocks with
 * random fp16 scales. The float part may differ from scalar only by
 * summation order: each block's term is |d_x| (|d isum| + |m xsum|) at most,
 * and reordering nb such terms moves the sum by at most ~nb ulps of their
 * absolute sum; the bound allows 4 (nb + 8) eps of it. */
static void q41_check_matches_scalar(isa_case *c, const deepc_kernels *k) {
    const deepc_kernels *ref = deepc_kernels_scalar();
    static float wf[Q41_MAX_NB * DEEPC_QK4_1], xf[Q41_MAX_NB * DEEPC_QK4_1];
    for (int kind = 0; kind < 3; kind++) {
        for (size_t li = 0; li < sizeof q41_nbs / sizeof q41_nbs[0]; li++) {
            size_t nb = q41_nbs[li], n = nb * DEEPC_QK4_1;
            if (kind < 2) {
                float shift = kind == 1 ? 0.75f : 0.0f;
                for (size_t i = 0; i < n; i++) {
                    wf[i] = (rng_unit() - 1.5f) * 0.2f + shift * (float)((i / 64) % 2 ? 1 : -1) * 0.1f;
                    xf[i] = (rng_unit() - 1.5f) * (float)(1 + (i % 7));
                }
                deepc_quantize_row(DEEPC_TYPE_Q4_1, wf, q41w, n);
                deepc_quantize_row(DEEPC_TYPE_Q8_0, xf, q41x, n);
            } else {
                q41_fill_raw(nb, 127, 0, 0);
                for (size_t b = 0; b < nb; b++) {
                    q41w[b].d = deepc_fp32_to_fp16(ldexpf(rng_unit(), rng_int(-12, 2)));
                    q41w[b].m = deepc_fp32_to_fp16((rng_next() & 1 ? -1.0f : 1.0f) * ldexpf(rng_unit(), rng_int(-12, 2)));
                    q41x[b].d = deepc_fp32_to_fp16(ldexpf(rng_unit(), rng_int(-10, 0)));
                }
            }
            double abs_terms = 0.0;
            for (size_t b = 0; b < nb; b++) {
                int64_t is = 0, xs = 0;
                for (int i = 0; i < DEEPC_QK4_1; i++) {
                    int q = i < 16 ? q41w[b].qs[i] & 15 : q41w[b].qs[i - 16] >> 4;
                    is += (int64_t)q * q41x[b].qs[i];
                    xs += q41x[b].qs[i];
                }
                abs_terms += fabs((double)deepc_fp16_to_fp32(q41x[b].d)) *
                             (fabs((double)deepc_fp16_to_fp32(q41w[b].d) * (double)is) +
                              fabs((double)deepc_fp16_to_fp32(q41w[b].m) * (double)xs));
            }
            float want = ref->vec_dot[DEEPC_TYPE_Q4_1](n, q41w, q41x);
            float got = k->vec_dot[DEEPC_TYPE_Q4_1](n, q41w, q41x);
            double diff = fabs((double)got - (double)want), tol = 4.0 * (double)(nb + 8) * FLT_EPSILON * abs_terms;
            bool ok = diff <= tol;
            Q41_CHECK(ok, "%s q4_1 kind %d nb=%zu: simd %.9g scalar %.9g (diff %.3g > tol %.3g)", c->name, kind, nb, got,
                      want, diff, tol);
            note_error(c, diff, tol);
            Q41_COUNT(c, ok);
        }
    }
}

static void check_q4_1(isa_case *c, const deepc_kernels *k) {
    q41_check_exact(c, k);
    q41_check_matches_scalar(c, k);
}

/* ---- the table ---------------------------------------------------------- */

/* What this test has a parity check for; any other slot must still be the
 * scalar function (the table starts as a copy of scalar's), so a NEON kernel
 * added without a test here fails loudly instead of going untested. */
static bool vec_dot_tested(int t) {
    return t == DEEPC_TYPE_F32 || t == DEEPC_TYPE_F16 || t == DEEPC_TYPE_BF16 || t == DEEPC_TYPE_Q8_0 ||
           t == DEEPC_TYPE_Q4_K || t == DEEPC_TYPE_Q3_K || t == DEEPC_TYPE_Q2_K || t == DEEPC_TYPE_Q8_K ||
           t == DEEPC_TYPE_FP8_B128 || t == DEEPC_TYPE_Q4_1 || t == DEEPC_TYPE_Q6_K;
}
static bool quantize_tested(int t) {
    return t == DEEPC_TYPE_Q8_0 || t == DEEPC_TYPE_Q8_K;
}

static void check_table(isa_case *c, const deepc_kernels *k) {
    const deepc_kernels *ref = deepc_kernels_scalar();
    CHECK(strcmp(k->name, c->name) == 0, "table for %s is named %s", c->name, k->name);
    for (int t = 0; t < DEEPC_TYPE_COUNT; t++) {
        const char *tn = deepc_type_info(t) ? deepc_type_info(t)->name : "?";
        CHECK(k->vec_dot[t] != NULL, "%s vec_dot[%s] is NULL", c->name, tn);
        CHECK(k->quantize_act[t] != NULL, "%s quantize_act[%s] is NULL", c->name, tn);
        CHECK(k->act_type[t] == ref->act_type[t], "%s act_type[%s] differs from scalar", c->name, tn);
        if (!vec_dot_tested(t))
            CHECK(k->vec_dot[t] == ref->vec_dot[t], "%s vec_dot[%s] is not scalar's and has no parity test", c->name, tn);
        if (!quantize_tested(t))
            CHECK(k->quantize_act[t] == ref->quantize_act[t],
                  "%s quantize_act[%s] is not scalar's and has no parity test", c->name, tn);
    }
    /* every gemm slot that is filled is held to vec_dot by
     * check_every_gemm_equals_vec_dot; the fp16 cache kernels are tested
     * below and must be there (NULL would silently mean scalar's) */
    CHECK(k->dot_f16_f32 && k->axpy_f16_f32 && k->dot_rows_f16_f32 && k->axpy_rows_f16_f32,
          "%s lacks an fp16 cache kernel", c->name);
}

/* ---- selection ---------------------------------------------------------- */

/* "neon" exists on every AArch64 CPU; "neon-dotprod" exactly when the CPU
 * has SDOT (and `expect_dot` says it should, when given); the default is
 * the best of them; DEEPC_ISA names one; names are exact. Elsewhere neither
 * name selects anything. */
static void check_selection(int expect_dot) {
#if !defined(__aarch64__)
    (void)expect_dot;
    CHECK(deepc_kernels_select("neon") == NULL, "neon selectable on a non-AArch64 build");
    CHECK(!deepc_cpu_has_neon() && !deepc_cpu_has_neon_dotprod(), "NEON reported on a non-AArch64 build");
#else
    bool dot = deepc_cpu_has_neon_dotprod();
    if (expect_dot >= 0)
        CHECK(dot == (expect_dot == 1), "cpu reports dotprod=%d, the run expects %d (%s)", dot, expect_dot,
              deepc_cpu_describe_arm());
    CHECK(deepc_cpu_has_neon(), "cpu reports no NEON");
    const deepc_kernels *neon = deepc_kernels_select("neon"), *neondot = deepc_kernels_select("neon-dotprod");
    CHECK(neon != NULL, "neon not selectable");
    CHECK((neondot != NULL) == dot, "neon-dotprod selectable=%d but dotprod=%d", neondot != NULL, dot);
    const deepc_kernels *best = dot ? neondot : neon;
    CHECK(deepc_kernels_select("") == best, "default backend is not %s", dot ? "neon-dotprod" : "neon");
    CHECK(deepc_kernels_select("NEON") == NULL, "names must be exact");
    CHECK(deepc_kernels_select("avx2") == NULL, "avx2 selectable on AArch64");

    const char *v = getenv("DEEPC_ISA");
    char *saved = v ? strdup(v) : NULL;
    setenv("DEEPC_ISA", "neon", 1);
    CHECK(deepc_kernels_select(NULL) == neon, "DEEPC_ISA=neon did not select neon");
    setenv("DEEPC_ISA", "scalar", 1);
    CHECK(deepc_kernels_select(NULL) == deepc_kernels_scalar(), "DEEPC_ISA=scalar did not select scalar");
    unsetenv("DEEPC_ISA");
    CHECK(deepc_kernels_select(NULL) == best, "no DEEPC_ISA: not the best backend");
    if (saved) setenv("DEEPC_ISA", saved, 1);
    free(saved);
#endif
}

/* The SDOT table must really use its own integer kernels (the baseline ones
 * give the same values, so parity alone would not notice they were wired in
 * instead) and share every other one with "neon". */
static void check_dotprod_wiring(void) {
#if defined(__aarch64__)
    const deepc_kernels *base = deepc_kernels_select("neon"), *dot = deepc_kernels_select("neon-dotprod");
    if (!base || !dot) return;
    for (int t = 0; t < DEEPC_TYPE_COUNT; t++) {
        bool integer = t == DEEPC_TYPE_Q8_0 || t == DEEPC_TYPE_Q4_K || t == DEEPC_TYPE_Q3_K ||
                       t == DEEPC_TYPE_Q2_K || t == DEEPC_TYPE_Q8_K || t == DEEPC_TYPE_Q4_1 || t == DEEPC_TYPE_Q6_K;
        CHECK((base->vec_dot[t] != dot->vec_dot[t]) == integer, "neon-dotprod vec_dot[%s] %s neon's",
              deepc_type_info(t)->name, integer ? "is" : "is not");
    }
    CHECK(base->gemm[DEEPC_TYPE_Q8_0] == deepc_neon_gemm_q8_0 &&
              dot->gemm[DEEPC_TYPE_Q8_0] == deepc_neon_dotprod_gemm_q8_0,
          "q8_0 gemms not wired as neon: baseline, neon-dotprod: SDOT");
#endif
}

/* ---- runner ------------------------------------------------------------- */

int main(int argc, char **argv) {
    int expect_dot = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--expect-dotprod=1") == 0) expect_dot = 1;
        else if (strcmp(argv[i], "--expect-dotprod=0") == 0) expect_dot = 0;
        else {
            fprintf(stderr, "usage: %s [--expect-dotprod=0|1]\n", argv[0]);
            return 2;
        }
    }
    printf("cpu: %s\n", deepc_cpu_describe_arm());
    check_selection(expect_dot);
    check_dotprod_wiring();
    isa_case isas[] = { { "neon", 0, 0.0 }, { "neon-dotprod", 0, 0.0 } };
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        isa_case *c = &isas[i];
        const deepc_kernels *k = deepc_kernels_select(c->name);
        if (!k) {
            printf("%s: skipped (not supported on this CPU or build)\n", c->name);
            continue;
        }
        check_table(c, k);
        check_float_type(c, k, DEEPC_TYPE_F32);
        check_float_type(c, k, DEEPC_TYPE_F16);
        check_float_type(c, k, DEEPC_TYPE_BF16);
        check_q8_0_block_dots_exact(c, k);
        check_q8_0_unit_scale_rows_exact(c, k);
        check_q8_0_matches_scalar(c, k);
        check_quantize_q8_0_bit_identical(c, k);
        check_non_finite(c, k);
        check_length_zero(c, k);
        check_k_block_dots_exact(c, k);
        check_k_unit_scale_rows_exact(c, k);
        check_k_matches_scalar(c, k);
        check_k_nan_scale(c, k);
        check_quantize_q8_k_bit_identical(c, k);
        check_fp8_decode_exact(c, k);
        check_fp8_matches_scalar(c, k);
        check_fp8_non_finite(c, k);
        check_gemm_equals_vec_dot(c, k);
        check_gemm_split_invariant(c, k);
        check_every_gemm_equals_vec_dot(c, k);
        check_dot_f16_f32(c, k);
        check_axpy_f16_f32(c, k);
        check_row_forms(c, k);
        check_q4_1(c, k);
        printf("%s: %u kernel parity checks passed (largest float difference: %.2g of its tolerance)\n", c->name,
               c->checks, c->worst);
    }
    printf("%u passed, %u failed\n", n_passed, n_failed);
    return n_failed ? 1 : 0;
}
