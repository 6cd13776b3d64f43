/* test_kernels.c - kernel parity: every SIMD backend the running CPU supports
 * against the scalar backend (arch/scalar.c, itself checked against double
 * precision in test_quant.c), for every weight type, over lengths with
 * awkward tails and data of very different scales. Backends the CPU lacks are
 * skipped with a note. Also the backend selector and the CPU feature checks.
 *
 * What must match, and how closely:
 * - Q8_0 integer block dots: exactly (checked against an integer dot computed
 *   here, one block at a time, and over whole rows whose sums stay exact).
 * - Q8_0 activation quantizer: bit for bit with deepc_quantize_row.
 * - Q4_K / Q3_K / Q2_K / Q6_K / Q8_K x Q8_K: each super-block's integer
 *   sums exactly (the same two checks as Q8_0), rows within a
 *   summation-order bound; Q6_K rows moreover bit for bit (its SIMD kernels
 *   keep the scalar float arithmetic), NaN and infinite scales included;
 *   the Q8_K quantizer bit for bit.
 * - FP8_B128 x F32: decode exact, rows within the float bound; NaN codes
 *   give NaN.
 * - Everything else in fp32: within a bound from summation order alone (the
 *   SIMD kernels add the same products in a different order, with FMA). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "quant.h"
#include "../arch/cpu.h"

/* ---- backends under test ------------------------------------------------ */

typedef struct {
    const char *name;        /* DEEPC_ISA name */
    bool (*cpu_has)(void);   /* the feature check the selector uses */
    unsigned checks;         /* parity checks passed */
    double worst;            /* largest |simd - scalar| / tolerance seen */
    bool noted;              /* "skipped" note printed */
} isa_case;

static isa_case isas[] = {
    { "avx512vnni", deepc_cpu_has_avx512vnni, 0, 0.0, false },
    { "avx512",     deepc_cpu_has_avx512,     0, 0.0, false },
    { "avx2",       deepc_cpu_has_avx2,       0, 0.0, false },
};
#define N_ISAS (sizeof isas / sizeof isas[0])

/* The table under test, or skip() with a one-time note when this CPU (or this
 * build: x86 files are compiled only on x86 hosts) does not have it. */
static const deepc_kernels *table_or_skip(isa_case *c) {
    const deepc_kernels *k = deepc_kernels_select(c->name);
    if (!k) {
        if (!c->noted) printf("note: %s not supported on this CPU (%s): its parity tests are skipped\n", c->name, deepc_cpu_describe());
        c->noted = true;
        skip();
    }
    assert_string_equal(k->name, c->name);
    return k;
}

static void note_error(isa_case *c, double diff, double tol) {
    if (tol > 0.0 && diff / tol > c->worst) c->worst = diff / tol;
}

/* ---- deterministic data ------------------------------------------------- */

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

/* Value classes. Exponent ranges are chosen per operand so products and sums
 * of up to 4096 terms stay finite; a fp16 weight is limited to what fp16 can
 * hold (up to 2^15, down to its subnormals at 2^-24). */
typedef enum {
    DATA_UNIT,    /* |v| in [1, 2) */
    DATA_LARGE,   /* |w|, |x| ~ 2^56 (fp16 w ~ 2^15): products near 2^112 */
    DATA_SMALL,   /* ~ 2^-60 (fp16 w ~ 2^-20, subnormal): products near 2^-120 */
    DATA_TINY,    /* products ~ 2^-140: fp32 subnormals */
    DATA_MIXED,   /* every element its own exponent in [-40, 40] */
    DATA_CANCEL,  /* unit pairs (w, x), (w, -x): the exact dot is 0 */
    DATA_KINDS
} data_kind;
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
static const size_t float_lens[] = { 1, 7, 31, 32, 33, 63, 64, 255, 257, 1000, 4096 };

/* Both kernels compute fl(sum of n products) and differ only in the order of
 * the additions (and FMA's unrounded products). Each of the n roundings is at
 * most u = 2^-24 times a partial sum, itself at most S = sum|w*x|; the
 * roundings of a long sum behave like independent errors and grow like
 * sqrt(n) (the n*u*S worst case needs them all to line up). Allowing 4 ulps
 * of that per kernel gives |simd - scalar| <= 8*sqrt(n)*u*S. Products that
 * fall into fp32 subnormals are rounded to an absolute 2^-149 by the scalar
 * kernel and not by FMA: n*2^-149 more. */
static double float_tolerance(size_t n, double abs_sum) {
    return 8.0 * sqrt((double)n) * 0x1p-24 * abs_sum + (double)n * 0x1p-149;
}

/* Fills w (converted to type t, stored at a misaligned address inside wbuf)
 * and x (float, misaligned) with n values of one kind; returns S = sum|w*x|
 * over the converted weights, in double. */
static double fill_float_case(deepc_type t, data_kind kind, size_t n, unsigned char *wbuf, float *x) {
    static float wf[MAX_N], wback[MAX_N];
    bool f16 = t == DEEPC_TYPE_F16;
    for (size_t i = 0; i < n; i++) {
        if (kind == DATA_CANCEL && i % 2 == 1) {
            wf[i] = wf[i - 1];
            x[i] = -x[i - 1];
            continue;
        }
        wf[i] = gen_value(kind, true, f16);
        x[i] = gen_value(kind, false, f16);
        if (kind == DATA_CANCEL) {
            wf[i] = gen_value(DATA_UNIT, true, f16);
            x[i] = gen_value(DATA_UNIT, false, f16);
        }
    }
    deepc_quantize_row(t, wf, wbuf, n);
    deepc_dequantize_row(t, wbuf, wback, n);
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += fabs((double)wback[i] * (double)x[i]);
    return s;
}

static void check_float_type(isa_case *c, deepc_type t) {
    const deepc_kernels *k = table_or_skip(c);
    const deepc_kernels *ref = deepc_kernels_scalar();
    /* No SIMD load is aligned to its width: f32 rows at +4 bytes (a float
     * row must be float-aligned), 16-bit rows at an odd address (those
     * kernels accept any alignment), x at +4 bytes. */
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
            double tol = float_tolerance(n, s);
            if (!(fabs((double)got - (double)want) <= tol))
                fail_msg("%s %s n=%zu %s data: got %.9g, scalar %.9g, |diff| %g > tol %g", c->name,
                         deepc_type_info((int)t)->name, n, kind_names[kind], got, want,
                         fabs((double)got - (double)want), tol);
            note_error(c, fabs((double)got - (double)want), tol);
            c->checks++;
        }
    }
}

static void test_f32_vec_dot_matches_scalar(void **state) {
    check_float_type(*state, DEEPC_TYPE_F32);
}

static void test_f16_vec_dot_matches_scalar(void **state) {
    check_float_type(*state, DEEPC_TYPE_F16);
}

static void test_bf16_vec_dot_matches_scalar(void **state) {
    check_float_type(*state, DEEPC_TYPE_BF16);
}

/* ---- Q8_0 --------------------------------------------------------------- */

#define MAX_NB (11008 / DEEPC_QK8_0)
static const size_t q8_lens[] = { 32, 64, 96, 256, 4096, 11008 };
static deepc_block_q8_0 wq[MAX_NB], xq[MAX_NB];

static int32_t int_block_dot(const deepc_block_q8_0 *a, const deepc_block_q8_0 *b) {
    int32_t s = 0;
    for (int j = 0; j < DEEPC_QK8_0; j++) s += (int32_t)a->qs[j] * (int32_t)b->qs[j];
    return s;
}

/* Raw blocks: weights may hold any int8 (-128 included: a file can), the
 * activation only [-127, 127], the range the quantizer produces and the SIMD
 * sign trick relies on. `lim` bounds both. */
static void fill_raw_blocks(size_t nb, int lim) {
    int wlo = lim >= 127 ? -128 : -lim;
    for (size_t b = 0; b < nb; b++)
        for (int j = 0; j < DEEPC_QK8_0; j++) {
            wq[b].qs[j] = (int8_t)rng_int(wlo, lim);
            xq[b].qs[j] = (int8_t)rng_int(-lim, lim);
        }
}

/* Every block's integer dot, one block at a time, in place: d_w = 1 for all
 * blocks and d_x = 1 for block i only (0 elsewhere), so each kernel must
 * return exactly that block's integer dot (|dot| <= 32*128*127 < 2^24 is an
 * exact float, and the other blocks contribute exact zeros). Every position,
 * and so every code path of the unrolled loop, is checked. */
static void test_q8_0_block_integer_dots_are_exact(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    const deepc_kernels *ref = deepc_kernels_scalar();
    const uint16_t one = 0x3c00, zero = 0x0000;
    for (size_t li = 0; li < sizeof q8_lens / sizeof q8_lens[0]; li++) {
        size_t n = q8_lens[li], nb = n / DEEPC_QK8_0;
        fill_raw_blocks(nb, 127);
        for (size_t b = 0; b < nb; b++) {
            wq[b].d = one;
            xq[b].d = zero;
        }
        /* the extremes, once per row: -128 * -127 and 127 * 127 everywhere */
        memset(wq[0].qs, 0x80, DEEPC_QK8_0);
        memset(xq[0].qs, 0x81, DEEPC_QK8_0);
        size_t last = nb > 0 ? nb - 1 : 0; /* (nb >= 1; spelled so compilers see it) */
        memset(wq[last].qs, 127, DEEPC_QK8_0);
        memset(xq[last].qs, 127, DEEPC_QK8_0);
        for (size_t i = 0; i < nb; i++) {
            xq[i].d = one;
            float want = (float)int_block_dot(&wq[i], &xq[i]);
            float got = k->vec_dot[DEEPC_TYPE_Q8_0](n, wq, xq);
            float scal = ref->vec_dot[DEEPC_TYPE_Q8_0](n, wq, xq);
            xq[i].d = zero;
            if (got != want || scal != want)
                fail_msg("%s n=%zu block %zu: integer dot %.0f, simd %.9g, scalar %.9g", c->name, n, i, want, got, scal);
            c->checks++;
        }
    }
}

/* Whole rows with every scale 1 and |q| <= 31: sum|w*x| <= 11008 * 961 <
 * 2^24, so every partial sum in any order is an exact float and the result
 * must equal the integer dot exactly. */
static void test_q8_0_unit_scale_rows_are_exact(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    for (size_t li = 0; li < sizeof q8_lens / sizeof q8_lens[0]; li++) {
        size_t n = q8_lens[li], nb = n / DEEPC_QK8_0;
        fill_raw_blocks(nb, 31);
        int64_t want = 0;
        for (size_t b = 0; b < nb; b++) {
            wq[b].d = xq[b].d = 0x3c00;
            want += int_block_dot(&wq[b], &xq[b]);
        }
        float got = k->vec_dot[DEEPC_TYPE_Q8_0](n, wq, xq);
        if (got != (float)want) fail_msg("%s n=%zu: integer dot %lld, simd %.9g", c->name, n, (long long)want, got);
        c->checks++;
    }
}

/* Q8_0 data sets: weights quantized from floats of several scales, or raw
 * blocks with random finite fp16 scales (normal and subnormal); activations
 * always from the reference quantizer, as in the engine. */
typedef enum { QDATA_UNIT, QDATA_LARGE, QDATA_SMALL, QDATA_MIXED, QDATA_RAW, QDATA_KINDS } qdata_kind;
static const char *const qkind_names[QDATA_KINDS] = { "unit", "large", "small", "mixed", "raw" };

static void fill_q8_case(qdata_kind kind, size_t n) {
    static float wf[MAX_NB * DEEPC_QK8_0], xf[MAX_NB * DEEPC_QK8_0];
    size_t nb = n / DEEPC_QK8_0;
    for (size_t b = 0; b < nb; b++) {
        int ew = kind == QDATA_LARGE ? 20 : kind == QDATA_SMALL ? -14 : kind == QDATA_MIXED ? rng_int(-16, 16) : 0;
        int ex = kind == QDATA_MIXED ? rng_int(-16, 16) : kind == QDATA_LARGE ? 10 : 0;
        for (int j = 0; j < DEEPC_QK8_0; j++) {
            wf[b * DEEPC_QK8_0 + j] = ldexpf(gen_value(DATA_UNIT, true, false), ew);
            xf[b * DEEPC_QK8_0 + j] = ldexpf(gen_value(DATA_UNIT, false, false), ex);
        }
    }
    deepc_quantize_row(DEEPC_TYPE_Q8_0, xf, xq, n);
    if (kind != QDATA_RAW) {
        deepc_quantize_row(DEEPC_TYPE_Q8_0, wf, wq, n);
        return;
    }
    for (size_t b = 0; b < nb; b++) {
        for (int j = 0; j < DEEPC_QK8_0; j++) wq[b].qs[j] = (int8_t)rng_int(-128, 127);
        wq[b].d = (uint16_t)(rng_next() % 0x7c00u) | (uint16_t)((rng_next() & 1) << 15); /* finite */
    }
}

/* Both kernels round each block's scale product d_w*d_x identically and
 * multiply it by exact integers; they differ only in how those terms are
 * summed: the scalar one nb rounded products in block order; SIMD per-block
 * integer totals (or, in the remainder, 8 lane sums per block) through FMA
 * into accumulators reduced at the end. By the argument of float_tolerance,
 * with at most 8*nb terms and S = sum over blocks of |d_w*d_x| *
 * sum|q_w*q_x|: |simd - scalar| <= 8*sqrt(8*nb)*u*S. */
static void test_q8_0_vec_dot_matches_scalar(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    const deepc_kernels *ref = deepc_kernels_scalar();
    for (size_t li = 0; li < sizeof q8_lens / sizeof q8_lens[0]; li++) {
        size_t n = q8_lens[li], nb = n / DEEPC_QK8_0;
        for (int kind = 0; kind < QDATA_KINDS; kind++) {
            fill_q8_case((qdata_kind)kind, n);
            double s = 0.0;
            for (size_t b = 0; b < nb; b++) {
                float d = deepc_fp16_to_fp32(wq[b].d) * deepc_fp16_to_fp32(xq[b].d);
                int32_t abs_dot = 0;
                for (int j = 0; j < DEEPC_QK8_0; j++) abs_dot += abs((int)wq[b].qs[j] * (int)xq[b].qs[j]);
                s += fabs((double)d) * abs_dot;
            }
            float want = ref->vec_dot[DEEPC_TYPE_Q8_0](n, wq, xq);
            float got = k->vec_dot[DEEPC_TYPE_Q8_0](n, wq, xq);
            double tol = 8.0 * sqrt(8.0 * (double)nb) * 0x1p-24 * s;
            if (!(fabs((double)got - (double)want) <= tol))
                fail_msg("%s q8_0 n=%zu %s data: got %.9g, scalar %.9g, |diff| %g > tol %g", c->name, n,
                         qkind_names[kind], got, want, fabs((double)got - (double)want), tol);
            note_error(c, fabs((double)got - (double)want), tol);
            c->checks++;
        }
    }
}

/* ---- activation quantizers ---------------------------------------------- */

/* Rows that hit every branch of the reference Q8_0 quantizer: NaN and +-inf
 * elements, +-0, fp32 subnormals, scales that round to fp16 subnormals or to
 * zero, scales that overflow fp16 (clamped to 65504, elements clamped to
 * +-127), and exact ties x/d = k + 1/2 (to even). */
static void fill_quantize_case(int kind, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v;
        switch (kind) {
        case 0: v = gen_value(DATA_MIXED, false, false); break;
        case 1: v = gen_value(DATA_UNIT, false, false); break;
        case 2: v = ldexpf(gen_value(DATA_UNIT, false, false), rng_int(-150, -100)); break; /* tiny */
        case 3: v = ldexpf(gen_value(DATA_UNIT, false, false), rng_int(20, 127)); break;   /* huge */
        case 4: v = (float)rng_int(-254, 254) * 0.5f; break; /* d = 1 when 127 is present: ties */
        default: {
            static const float special[] = { NAN, -NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e-45f, -3e38f };
            v = (rng_next() & 3) ? gen_value(DATA_MIXED, false, false) : special[rng_next() % 8];
            break;
        }
        }
        x[i] = v;
    }
    if (kind == 4)
        for (size_t b = 0; b < n / DEEPC_QK8_0; b++) x[b * DEEPC_QK8_0 + rng_int(0, 31)] = 127.0f;
}

static void test_quantize_act_is_bit_identical(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    static float x[MAX_NB * DEEPC_QK8_0];
    static unsigned char want[MAX_NB * DEEPC_QK8_0 * sizeof(float)], got[sizeof want];
    for (int t = 0; t < DEEPC_TYPE_COUNT; t++) {
        for (size_t li = 0; li < sizeof q8_lens / sizeof q8_lens[0]; li++) {
            size_t n = q8_lens[li], bytes = deepc_type_row_bytes((deepc_type)t, n);
            for (int kind = 0; kind < 6; kind++) {
                fill_quantize_case(kind, x, n);
                memset(want, 0xaa, bytes);
                memset(got, 0x55, bytes);
                deepc_quantize_row((deepc_type)t, x, want, n);
                k->quantize_act[t](x, got, n);
                if (memcmp(want, got, bytes) != 0) {
                    size_t i = 0;
                    while (want[i] == got[i]) i++;
                    fail_msg("%s quantize_act[%s] n=%zu case %d: first differing byte %zu (0x%02x, reference 0x%02x)",
                             c->name, deepc_type_info(t)->name, n, kind, i, got[i], want[i]);
                }
                c->checks++;
            }
        }
    }
}

/* ---- k-quants (Q4_K, Q3_K, Q2_K, Q6_K; Q8_K weights) x Q8_K ------------- */

/* Row lengths are whole 256-element super-blocks; 11264 = 44 x 256 is the
 * longest (the unrolled SIMD loops see every position). */
#define K_MAX_NB 44
static const size_t k_lens[] = { 256, 512, 1280, 4096, 11008, 11264 };
static const deepc_type k_types[] = { DEEPC_TYPE_Q4_K, DEEPC_TYPE_Q3_K, DEEPC_TYPE_Q2_K, DEEPC_TYPE_Q6_K, DEEPC_TYPE_Q8_K };
#define N_K_TYPES (sizeof k_types / sizeof k_types[0])
static _Alignas(64) unsigned char kw[K_MAX_NB * sizeof(deepc_block_q8_k)];
static deepc_block_q8_k kx[K_MAX_NB];

static size_t k_block_bytes(deepc_type t) {
    return deepc_type_info((int)t)->block_bytes;
}

/* Recomputes the activation's 16-element sums from its codes (raw blocks
 * are written byte by byte; the kernels rely on the sums). */
static void fix_bsums(deepc_block_q8_k *b) {
    for (int j = 0; j < DEEPC_QK_K / 16; j++) {
        int s = 0;
        for (int i = 0; i < 16; i++) s += b->qs[16 * j + i];
        b->bsums[j] = (int16_t)s;
    }
}

/* Random weight blocks: every byte random (codes, packed scales and mins),
 * then the super-scales set to `d` (fp16, or fp32 1.0 for Q8_K weights,
 * whose codes are limited to the int8 range a quantizer can produce, plus
 * -128, which a file may hold). Activations: codes in [-xlim, xlim]. */
static void fill_k_raw(deepc_type t, size_t nb, int xlim, uint16_t d, int sc_lim) {
    size_t bb = k_block_bytes(t);
    for (size_t i = 0; i < nb * bb; i++) kw[i] = (unsigned char)rng_next();
    for (size_t b = 0; b < nb; b++) {
        unsigned char *blk = kw + b * bb;
        if (t == DEEPC_TYPE_Q4_K) {
            deepc_block_q4_k *q = (deepc_block_q4_k *)blk;
            q->d = q->dmin = d;
            if (sc_lim < 63) /* small scales and mins: clear the top bits of every 6-bit field */
                for (int j = 0; j < 12; j++) q->scales[j] &= (uint8_t)(j < 8 ? (0x3f & sc_lim) : (sc_lim | (sc_lim << 4)));
        } else if (t == DEEPC_TYPE_Q3_K) {
            deepc_block_q3_k *q = (deepc_block_q3_k *)blk;
            q->d = d;
            if (sc_lim < 63) /* scales 32 +- small: low nibble small, top bits 2 (= 32) */
                for (int j = 0; j < 12; j++) q->scales[j] = j < 8 ? (uint8_t)(rng_int(0, sc_lim) | (rng_int(0, sc_lim) << 4)) : 0xaa;
        } else if (t == DEEPC_TYPE_Q2_K) {
            deepc_block_q2_k *q = (deepc_block_q2_k *)blk;
            q->d = q->dmin = d;
            if (sc_lim < 15)
                for (int j = 0; j < 16; j++) q->scales[j] &= (uint8_t)(sc_lim | (sc_lim << 4));
        } else if (t == DEEPC_TYPE_Q6_K) {
            deepc_block_q6_k *q = (deepc_block_q6_k *)blk;
            q->d = d;
            if (sc_lim < 63) /* small signed scales */
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

/* The exact dot of weight block b (super-scales 1, so its dequantized
 * values are small integers) with activation block b (scale 1), in int64,
 * through the reference dequantizer: checks the kernels and the layout
 * definition against each other. */
static int64_t k_int_block_dot(deepc_type t, size_t b) {
    float wd[DEEPC_QK_K];
    deepc_dequantize_row(t, kw + b * k_block_bytes(t), wd, DEEPC_QK_K);
    int64_t s = 0;
    for (int i = 0; i < DEEPC_QK_K; i++) s += (int64_t)wd[i] * kx[b].qs[i];
    return s;
}

/* Every super-block's integer dot, one at a time, in place (as for Q8_0):
 * all super-scales 1, the activation scale 1 for block i and 0 elsewhere,
 * so each kernel must return exactly that block's integer dot. Activations
 * are limited to +-31 so every partial sum (any order) stays below 2^24;
 * block 0 also holds the extremes: largest codes, scales and mins against
 * -128 (maddubs must not saturate; -127 for Q8_K weights, whose activation
 * side may not be -128, as for Q8_0). */
static void test_k_block_integer_dots_are_exact(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    const deepc_kernels *ref = deepc_kernels_scalar();
    for (size_t ti = 0; ti < N_K_TYPES; ti++) {
        deepc_type t = k_types[ti];
        for (size_t li = 0; li < sizeof k_lens / sizeof k_lens[0]; li++) {
            size_t n = k_lens[li], nb = n / DEEPC_QK_K;
            fill_k_raw(t, nb, 31, 0x3c00, 63);
            /* extremes in block 0: the first 32 elements (two q3/q2 sub-blocks,
             * one q4 sub-block) at the largest code times -128 */
            memset(kx[0].qs, t == DEEPC_TYPE_Q8_K ? 0x81 : 0x80, 32); /* q8_k x q8_k: x is never -128 */
            fix_bsums(&kx[0]);
            if (t == DEEPC_TYPE_Q4_K) {
                deepc_block_q4_k *q = (deepc_block_q4_k *)kw;
                memset(q->qs, 0xff, 32);                   /* codes 15 (low nibbles: elements 0-31) */
                q->scales[0] |= 0x3f;                      /* sc0 = 63 */
                q->scales[4] |= 0x3f;                      /* mn0 = 63 */
            } else if (t == DEEPC_TYPE_Q3_K) {
                deepc_block_q3_k *q = (deepc_block_q3_k *)kw;
                for (int l = 0; l < 32; l++) { q->qs[l] &= (uint8_t)~3u; q->hmask[l] &= (uint8_t)~1u; } /* code 0: -4 */
                q->scales[0] &= 0xf0; q->scales[1] &= 0xf0; q->scales[8] &= (uint8_t)~15u; /* sc0 = sc1 = -32 */
            } else if (t == DEEPC_TYPE_Q2_K) {
                deepc_block_q2_k *q = (deepc_block_q2_k *)kw;
                for (int l = 0; l < 32; l++) q->qs[l] |= 3;
                q->scales[0] = q->scales[1] = 0xff;
            } else if (t == DEEPC_TYPE_Q6_K) {
                /* elements 0-31 at code 63 (sub-block 0, scale -128) and
                 * elements 64-95 at code 0 (sub-blocks 4, 5, scale 127):
                 * the largest vpmaddubsw pairs, both signs of q - 32 */
                deepc_block_q6_k *q = (deepc_block_q6_k *)kw;
                for (int l = 0; l < 32; l++) {
                    q->ql[l] = 0x0f;      /* low nibble 15 (element l), high 0 (element 64 + l) */
                    q->qh[l] &= 0xcc;     /* top bits of l: 3, of 64 + l: 0 */
                    q->qh[l] |= 0x03;
                }
                q->scales[0] = q->scales[1] = -128;
                q->scales[4] = q->scales[5] = 127;
                memset(kx[0].qs + 64, 0x80, 32);
                fix_bsums(&kx[0]);
            } else {
                deepc_block_q8_k *q = (deepc_block_q8_k *)kw;
                memset(q->qs, 0x80, 32);                   /* -128 x -127 */
                fix_bsums(q);
            }
            for (size_t b = 0; b < nb; b++) kx[b].d = 0.0f;
            for (size_t i = 0; i < nb; i++) {
                kx[i].d = 1.0f;
                float want = (float)k_int_block_dot(t, i);
                float got = k->vec_dot[t](n, kw, kx), scal = ref->vec_dot[t](n, kw, kx);
                kx[i].d = 0.0f;
                if (got != want || scal != want)
                    fail_msg("%s %s n=%zu block %zu: integer dot %.0f, simd %.9g, scalar %.9g", c->name,
                             deepc_type_info((int)t)->name, n, i, want, got, scal);
                c->checks++;
            }
        }
    }
}

/* Whole rows, all super-scales 1, small sub-block scales (<= 3) and
 * activations (+-7): |sum| of all terms < 44 * 256 * 48 * 7 < 2^24, so any
 * summation order is exact and the result must equal the integer dot. */
static void test_k_unit_scale_rows_are_exact(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    for (size_t ti = 0; ti < N_K_TYPES; ti++) {
        deepc_type t = k_types[ti];
        for (size_t li = 0; li < sizeof k_lens / sizeof k_lens[0]; li++) {
            size_t n = k_lens[li], nb = n / DEEPC_QK_K;
            fill_k_raw(t, nb, 7, 0x3c00, 3);
            int64_t want = 0;
            for (size_t b = 0; b < nb; b++) want += k_int_block_dot(t, b);
            float got = k->vec_dot[t](n, kw, kx);
            if (got != (float)want)
                fail_msg("%s %s n=%zu: integer dot %lld, simd %.9g", c->name, deepc_type_info((int)t)->name, n, (long long)want, got);
            c->checks++;
        }
    }
}

/* S = sum over super-blocks of |d_x| * (|d| * sum_j |sc_j| sum |q x| +
 * |dmin| * sum_j |mn_j bsum_j|): the magnitude of the terms both kernels
 * sum, before the cancellation of the min term (q3_k: q - 4 in place of q,
 * no min term; q8_k: d * sum |q x|). */
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
            /* the dequantized value without the min is |d * sc * q|: dequantize
             * with dmin = 0 to get it, then the min term separately */
            unsigned char tmp[sizeof(deepc_block_q6_k)];
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

/* Weights quantized from floats of several scales, or raw blocks with
 * random finite fp16 super-scales; activations from the reference Q8_K
 * quantizer. */
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

/* The kernels agree on every super-block's integer sums and on d_w * d_x;
 * they differ in how the scaled terms are summed: the scalar kernel one
 * rounded expression per super-block in order, SIMD up to 16 lane terms per
 * super-block (plus as many min terms) through FMA into accumulators reduced
 * at the end, and the scalar conversion of an integer sum above 2^24 rounds
 * once more. By the argument of float_tolerance, with at most 32 terms per
 * super-block: |simd - scalar| <= 8*sqrt(32*nb)*u*S, S from k_abs_terms. */
static void test_k_vec_dot_matches_scalar(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    const deepc_kernels *ref = deepc_kernels_scalar();
    for (size_t ti = 0; ti < N_K_TYPES; ti++) {
        deepc_type t = k_types[ti];
        assert_int_equal(k->act_type[t], DEEPC_TYPE_Q8_K);
        for (size_t li = 0; li < sizeof k_lens / sizeof k_lens[0]; li++) {
            size_t n = k_lens[li], nb = n / DEEPC_QK_K;
            for (int kind = 0; kind < QDATA_KINDS; kind++) {
                fill_k_case(t, (qdata_kind)kind, n);
                double s = k_abs_terms(t, nb);
                float want = ref->vec_dot[t](n, kw, kx);
                float got = k->vec_dot[t](n, kw, kx);
                double tol = 8.0 * sqrt(32.0 * (double)nb) * 0x1p-24 * s;
                if (!(fabs((double)got - (double)want) <= tol))
                    fail_msg("%s %s n=%zu %s data: got %.9g, scalar %.9g, |diff| %g > tol %g", c->name,
                             deepc_type_info((int)t)->name, n, qkind_names[kind], got, want,
                             fabs((double)got - (double)want), tol);
                note_error(c, fabs((double)got - (double)want), tol);
                c->checks++;
            }
        }
    }
}

/* ---- Q6_K x Q8_K: bit for bit -------------------------------------------- */

/* The q6_k kernels reduce each super-block's integer sum to one int32 and
 * then do the scalar kernel's float operations in its order (arch/
 * x86_*_q6_k.c), so they must equal it bit for bit (NaN: as NaN), beyond
 * the summation-order bound of test_k_vec_dot_matches_scalar. Block counts
 * 1 .. 13 cover every remainder of the four-block steps; 35 and 44 are
 * real rows (8960, 11264). Data: quantizer output; raw bytes with random
 * finite scales on both sides; raw with now and then a NaN, infinite, zero
 * or subnormal scale (either side); every code and scale at its limits with
 * activations at +-127 / -128. */
static void fill_q6_k_special(size_t nb, int kind) {
    static const uint16_t sp16[] = { 0x7e00, 0x7c00, 0xfc00, 0x0000, 0x8000, 0x0001, 0x7bff };
    deepc_block_q6_k *w = (deepc_block_q6_k *)kw;
    for (size_t i = 0; i < nb * sizeof *w; i++) kw[i] = (unsigned char)rng_next();
    for (size_t b = 0; b < nb; b++) {
        w[b].d = (uint16_t)((rng_next() % 0x7c00u) | ((rng_next() & 1) << 15));
        kx[b].d = ldexpf(rng_unit(), rng_int(-20, 4)) * (rng_next() & 1 ? -1.0f : 1.0f);
        for (int i = 0; i < DEEPC_QK_K; i++) kx[b].qs[i] = (int8_t)rng_int(-128, 127);
        if (kind == 2 && rng_int(0, 6) == 0) w[b].d = sp16[rng_int(0, 6)];
        if (kind == 2 && rng_int(0, 8) == 0) {
            static const float spx[] = { NAN, INFINITY, -INFINITY, 0.0f, 1e-45f };
            kx[b].d = spx[rng_int(0, 4)];
        }
        if (kind == 3) { /* codes 0 or 63, scales -128 or 127, x +-127 or -128 */
            int c = rng_int(0, 3);
            memset(w[b].ql, c & 1 ? 0xff : 0x00, sizeof w[b].ql);
            memset(w[b].qh, c & 2 ? 0xff : 0x00, sizeof w[b].qh);
            for (int j = 0; j < 16; j++) w[b].scales[j] = (int8_t)(rng_next() & 1 ? -128 : 127);
            for (int i = 0; i < DEEPC_QK_K; i++) kx[b].qs[i] = (int8_t)(rng_next() & 1 ? (rng_next() & 1 ? -128 : -127) : 127);
        }
        fix_bsums(&kx[b]);
    }
}

static void test_q6_k_vec_dot_is_bit_identical(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    const deepc_kernels *ref = deepc_kernels_scalar();
    static const size_t nbs[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 35, 44 };
    for (size_t li = 0; li < sizeof nbs / sizeof nbs[0]; li++) {
        size_t nb = nbs[li], n = nb * DEEPC_QK_K;
        for (int kind = 0; kind < 4; kind++) {
            for (int rep = 0; rep < 3; rep++) {
                if (kind == 0) fill_k_case(DEEPC_TYPE_Q6_K, rep == 0 ? QDATA_UNIT : QDATA_MIXED, n);
                else fill_q6_k_special(nb, kind);
                float want = ref->vec_dot[DEEPC_TYPE_Q6_K](n, kw, kx);
                float got = k->vec_dot[DEEPC_TYPE_Q6_K](n, kw, kx);
                uint32_t bw, bg;
                memcpy(&bw, &want, 4);
                memcpy(&bg, &got, 4);
                if (isnan(want) ? !isnan(got) : bw != bg)
                    fail_msg("%s q6_k nb=%zu kind %d: got %.9g (0x%08x), scalar %.9g (0x%08x)", c->name, nb, kind, got,
                             bg, want, bw);
                c->checks++;
            }
        }
    }
}

/* ---- FP8_B128 x F32 ----------------------------------------------------- */

static const size_t fp8_lens[] = { 128, 256, 384, 1280, 4096, 11008 };
#define FP8_MAX_NB (11264 / DEEPC_QK_FP8)
static deepc_block_fp8_b128 fw[FP8_MAX_NB];

/* Weights: quantized from floats of every data kind (fp32 scales follow the
 * data down to subnormal products), or raw codes (no NaN code) with random
 * scales 2^[-20, 20]. Returns S = sum|d * e4m3 * x| and the largest |d|. */
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
    if (kind == DATA_KINDS) /* raw */
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

/* Both kernels sum the decoded codes times x per block in fp32 (the decode
 * is exact on both sides), then scale by d: float_tolerance's argument,
 * with S over the dequantized weights; the products falling into fp32
 * subnormals are rounded by the scalar kernel and not by FMA, an absolute
 * 2^-149 each, magnified by the block scale afterwards. */
static void test_fp8_vec_dot_matches_scalar(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    const deepc_kernels *ref = deepc_kernels_scalar();
    static _Alignas(64) float xmem[FP8_MAX_NB * DEEPC_QK_FP8 + 16];
    float *x = xmem + 1;
    assert_int_equal(k->act_type[DEEPC_TYPE_FP8_B128], DEEPC_TYPE_F32);
    for (size_t li = 0; li < sizeof fp8_lens / sizeof fp8_lens[0]; li++) {
        size_t n = fp8_lens[li];
        for (int kind = 0; kind <= DATA_KINDS; kind++) {
            double dmax;
            double s = fill_fp8_case(kind, n, x, &dmax);
            float want = ref->vec_dot[DEEPC_TYPE_FP8_B128](n, fw, x);
            float got = k->vec_dot[DEEPC_TYPE_FP8_B128](n, fw, x);
            double tol = float_tolerance(n, s) + (double)n * 0x1p-149 * (1.0 + dmax);
            if (!(fabs((double)got - (double)want) <= tol))
                fail_msg("%s fp8_b128 n=%zu %s data: got %.9g, scalar %.9g, |diff| %g > tol %g", c->name, n,
                         kind < DATA_KINDS ? kind_names[kind] : "raw", got, want, fabs((double)got - (double)want), tol);
            note_error(c, fabs((double)got - (double)want), tol);
            c->checks++;
        }
    }
}

/* A NaN code (0x7f or 0xff) anywhere makes the dot NaN, and an infinite
 * activation against a nonzero code gives an infinity of the product's
 * sign, as in the scalar kernel. */
static void test_fp8_non_finite_values_propagate(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    const deepc_kernels *ref = deepc_kernels_scalar();
    static float x[1280];
    const size_t n = 1280;
    for (size_t pos = 3; pos < n; pos += 131) {
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
            if (!ok) fail_msg("%s fp8_b128 case %d at %zu: got %g, scalar %g", c->name, which, pos, got, want);
            c->checks++;
        }
    }
    /* a NaN super-scale poisons a k-quant row */
    for (size_t ti = 0; ti < N_K_TYPES - 1; ti++) {
        deepc_type t = k_types[ti];
        fill_k_case(t, QDATA_UNIT, 1280);
        uint16_t nan16 = 0x7e00;
        size_t d_at = t == DEEPC_TYPE_Q3_K ? offsetof(deepc_block_q3_k, d)
                      : t == DEEPC_TYPE_Q2_K ? offsetof(deepc_block_q2_k, d)
                      : t == DEEPC_TYPE_Q6_K ? offsetof(deepc_block_q6_k, d) : 0;
        memcpy(kw + 2 * k_block_bytes(t) + d_at, &nan16, 2);
        assert_true(isnan(ref->vec_dot[t](1280, kw, kx)));
        assert_true(isnan(k->vec_dot[t](1280, kw, kx)));
        c->checks++;
    }
}

/* The Q8_K activation quantizer, bit for bit, over the rows of
 * fill_quantize_case (NaN, inf, subnormals, huge values, ties). */
static void test_q8_k_quantize_act_is_bit_identical(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    static float x[K_MAX_NB * DEEPC_QK_K];
    static deepc_block_q8_k want[K_MAX_NB], got[K_MAX_NB];
    for (size_t li = 0; li < sizeof k_lens / sizeof k_lens[0]; li++) {
        size_t n = k_lens[li], bytes = deepc_type_row_bytes(DEEPC_TYPE_Q8_K, n);
        for (int kind = 0; kind < 6; kind++) {
            fill_quantize_case(kind, x, n);
            memset(want, 0xaa, bytes);
            memset(got, 0x55, bytes);
            deepc_quantize_row(DEEPC_TYPE_Q8_K, x, want, n);
            k->quantize_act[DEEPC_TYPE_Q8_K](x, got, n);
            if (memcmp(want, got, bytes) != 0) {
                const unsigned char *a = (const unsigned char *)want, *b = (const unsigned char *)got;
                size_t i = 0;
                while (a[i] == b[i]) i++;
                fail_msg("%s quantize_act[q8_k] n=%zu case %d: first differing byte %zu (0x%02x, reference 0x%02x)",
                         c->name, n, kind, i, b[i], a[i]);
            }
            c->checks++;
        }
    }
}

/* ---- edge behaviour ----------------------------------------------------- */

/* NaN anywhere gives NaN, and an infinite product (with finite others) gives
 * an infinity of its sign, as in the scalar kernel: summation order cannot
 * change either. */
static void test_non_finite_values_propagate(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    const deepc_kernels *ref = deepc_kernels_scalar();
    static float wf[257], x[257];
    static unsigned char w[257 * 4];
    const deepc_type types[] = { DEEPC_TYPE_F32, DEEPC_TYPE_F16, DEEPC_TYPE_BF16 };
    const size_t n = 257;
    for (size_t ti = 0; ti < 3; ti++) {
        deepc_type t = types[ti];
        for (size_t pos = 0; pos < n; pos += 37) {
            for (int which = 0; which < 2; which++) {
                for (size_t i = 0; i < n; i++) {
                    wf[i] = gen_value(DATA_UNIT, true, false);
                    x[i] = gen_value(DATA_UNIT, false, false);
                }
                wf[pos] = which ? -INFINITY : NAN;
                x[pos] = 2.0f;
                deepc_quantize_row(t, wf, w, n);
                float got = k->vec_dot[t](n, w, x), want = ref->vec_dot[t](n, w, x);
                if (which) assert_true(isinf(want) && want < 0);
                else assert_true(isnan(want));
                if (which ? !(isinf(got) && got < 0) : !isnan(got))
                    fail_msg("%s %s: %s at %zu gave %g (scalar %g)", c->name, deepc_type_info((int)t)->name,
                             which ? "-inf" : "NaN", pos, got, want);
                c->checks++;
            }
        }
    }
    /* Q8_0: a NaN weight scale poisons the row */
    fill_q8_case(QDATA_UNIT, 256);
    wq[5].d = 0x7e00;
    assert_true(isnan(ref->vec_dot[DEEPC_TYPE_Q8_0](256, wq, xq)));
    assert_true(isnan(k->vec_dot[DEEPC_TYPE_Q8_0](256, wq, xq)));
    c->checks++;
}

static void test_length_zero_gives_zero(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    float dummy[64] = { 1.0f };
    for (int t = 0; t < DEEPC_TYPE_COUNT; t++) {
        assert_true(k->vec_dot[t](0, dummy, dummy) == 0.0f);
        c->checks++;
    }
}

/* Same activation types as scalar (core/ converts activations by them) and
 * no empty slot. */
static void test_table_is_complete(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    const deepc_kernels *ref = deepc_kernels_scalar();
    for (int t = 0; t < DEEPC_TYPE_COUNT; t++) {
        assert_non_null(k->vec_dot[t]);
        assert_non_null(k->quantize_act[t]);
        assert_non_null(ref->quantize_act[t]);
        assert_int_equal(k->act_type[t], ref->act_type[t]);
    }
}

/* ---- Q4_1 weights x Q8_0 activations ------------------------------------ */

#define Q41_CHECK(cond, ...) do { if (!(cond)) fail_msg(__VA_ARGS__); } while (0)
#define Q41_COUNT(c, ok) ((c)->checks += (ok) ? 1u : 0u)

/* Block counts covering every remainder of the 16-, 8- and 4-block groups
 * of the SIMD kernels, then real row lengths (1408 = V2-Lite's expert
 * down_proj, 11008). */
static const size_t q41_nbs[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 20, 24, 31, 33, 44, 47, 48, 128, 344 };
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
 * isum - xsum exactly; the extremes (code 15 with 127, code 0 with -127,
 * and code 15 with -128, outside the quantizer's range but within what the
 * integer paths must hold) once per row. Then whole rows with every scale 1 and |x| <= 63:
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
        if (nb >= 3) {
            memset(q41w[nb / 2].qs, 0xff, sizeof q41w[0].qs);
            memset(q41x[nb / 2].qs, 0x80, sizeof q41x[0].qs);
        }
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

static void test_q4_1_integer_parts_are_exact(void **state) {
    isa_case *c = *state;
    q41_check_exact(c, table_or_skip(c));
}

static void test_q4_1_vec_dot_matches_scalar(void **state) {
    isa_case *c = *state;
    q41_check_matches_scalar(c, table_or_skip(c));
}

/* ---- selection ---------------------------------------------------------- */

/* The environment is the user's; tests that change DEEPC_ISA put it back. */
static char *saved_isa;
static void save_env(void) {
    const char *v = getenv("DEEPC_ISA");
    saved_isa = v ? strdup(v) : NULL;
}
static void restore_env(void) {
    if (saved_isa) setenv("DEEPC_ISA", saved_isa, 1);
    else unsetenv("DEEPC_ISA");
    free(saved_isa);
    saved_isa = NULL;
}

static void test_scalar_is_selected_by_name_and_by_environment(void **state) {
    (void)state;
    save_env();
    assert_ptr_equal(deepc_kernels_select("scalar"), deepc_kernels_scalar());
    setenv("DEEPC_ISA", "scalar", 1);
    assert_ptr_equal(deepc_kernels_select(NULL), deepc_kernels_scalar());
    restore_env();
}

static void test_unknown_names_select_nothing(void **state) {
    (void)state;
    save_env();
    assert_null(deepc_kernels_select("avx9000"));
    assert_null(deepc_kernels_select("AVX2")); /* names are exact */
    setenv("DEEPC_ISA", "sse9", 1);
    assert_null(deepc_kernels_select(NULL));
    restore_env();
}

/* Each SIMD name selects its table exactly when the CPU check says so, and
 * the default is the first supported one in the order best-first. */
static void test_selection_follows_cpu_features(void **state) {
    (void)state;
    save_env();
    unsetenv("DEEPC_ISA");
    const deepc_kernels *best = NULL;
    for (size_t i = 0; i < N_ISAS; i++) {
        const deepc_kernels *k = deepc_kernels_select(isas[i].name);
#if defined(__x86_64__) || defined(__i386__)
        assert_int_equal(k != NULL, isas[i].cpu_has());
#else
        assert_null(k);
        assert_false(isas[i].cpu_has());
#endif
        if (k && !best) best = k;
    }
    if (!best) best = deepc_kernels_scalar();
    assert_ptr_equal(deepc_kernels_select(NULL), best);
    assert_ptr_equal(deepc_kernels_select(""), best);
    /* VNNI implies the rest of the AVX-512 set we need, which implies AVX2 */
    if (deepc_cpu_has_avx512vnni()) assert_true(deepc_cpu_has_avx512());
    if (deepc_cpu_has_avx512()) assert_true(deepc_cpu_has_avx2());
    printf("cpu: %s; default backend: %s\n", deepc_cpu_describe(), best->name);
    restore_env();
}

/* ---- runner ------------------------------------------------------------- */

/* Every per-backend test once per backend, named "<isa>: <test>". */
#define KT(i, isa, fn) { isa ": " #fn, fn, NULL, NULL, &isas[i] }
#define PER_ISA(i, isa)                                                                \
    KT(i, isa, test_table_is_complete), KT(i, isa, test_f32_vec_dot_matches_scalar),   \
    KT(i, isa, test_f16_vec_dot_matches_scalar), KT(i, isa, test_bf16_vec_dot_matches_scalar), \
    KT(i, isa, test_q8_0_block_integer_dots_are_exact), KT(i, isa, test_q8_0_unit_scale_rows_are_exact), \
    KT(i, isa, test_q8_0_vec_dot_matches_scalar), KT(i, isa, test_quantize_act_is_bit_identical), \
    KT(i, isa, test_non_finite_values_propagate), KT(i, isa, test_length_zero_gives_zero), \
    KT(i, isa, test_k_block_integer_dots_are_exact), KT(i, isa, test_k_unit_scale_rows_are_exact), \
    KT(i, isa, test_k_vec_dot_matches_scalar), KT(i, isa, test_fp8_vec_dot_matches_scalar), \
    KT(i, isa, test_fp8_non_finite_values_propagate), KT(i, isa, test_q8_k_quantize_act_is_bit_identical), \
    KT(i, isa, test_q4_1_integer_parts_are_exact), KT(i, isa, test_q4_1_vec_dot_matches_scalar), \
    KT(i, isa, test_q6_k_vec_dot_is_bit_identical)

int main(void) {
    _Static_assert(N_ISAS == 3, "add the new backend's PER_ISA line below");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalar_is_selected_by_name_and_by_environment),
        cmocka_unit_test(test_unknown_names_select_nothing),
        cmocka_unit_test(test_selection_follows_cpu_features),
        PER_ISA(0, "avx512vnni"),
        PER_ISA(1, "avx512"),
        PER_ISA(2, "avx2"),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    for (size_t i = 0; i < N_ISAS; i++) {
        if (isas[i].noted) printf("%s: skipped (not supported here)\n", isas[i].name);
        else printf("%s: %u kernel parity checks passed (largest float difference: %.2g of its tolerance)\n",
                    isas[i].name, isas[i].checks, isas[i].worst);
    }
    return failed;
}
