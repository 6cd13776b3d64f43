/* neon_parity.c - kernel parity for the AArch64 NEON backends ("neon" and
 * "neon-dotprod", arch/neon_kernels.c) against the scalar backend. A plain C
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
 * What must match, and how closely (the same rules as test/test_kernels.c):
 * - Q8_0 integer block dots: exactly.
 * - Q8_0 activation quantizer: bit for bit with deepc_quantize_row.
 * - Q4_1 (arch/neon_q4_1.c) integer parts: exactly.
 * - Float dots: within a bound from summation order alone.
 * - Every slot this backend does not speed up: the scalar function itself.
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
        memset(wq[nb - 1].qs, 127, DEEPC_QK8_0);
        memset(xq[nb - 1].qs, 127, DEEPC_QK8_0);
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
#define QUANT_KINDS 7
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
        default: /* whole blocks of one special value */
            v = (i / DEEPC_QK8_0) % 3 == 0 ? 0.0f : (i / DEEPC_QK8_0) % 3 == 1 ? NAN : -0.0f;
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
    const deepc_type types[] = { DEEPC_TYPE_F32, DEEPC_TYPE_F16, DEEPC_TYPE_BF16, DEEPC_TYPE_Q8_0 };
    for (size_t i = 0; i < 4; i++) {
        float got = k->vec_dot[types[i]](0, dummy, dummy);
        CHECK(got == 0.0f, "%s %s: n=0 gave %g", c->name, deepc_type_info((int)types[i])->name, got);
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
           t == DEEPC_TYPE_Q4_1;
}
static bool quantize_tested(int t) {
    return t == DEEPC_TYPE_Q8_0;
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
        check_q4_1(c, k);
        printf("%s: %u kernel parity checks passed (largest float difference: %.2g of its tolerance)\n", c->name,
               c->checks, c->worst);
    }
    printf("%u passed, %u failed\n", n_passed, n_failed);
    return n_failed ? 1 : 0;
}
