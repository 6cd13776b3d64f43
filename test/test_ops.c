/* test_ops.c - parity of the kernels in arch/scalar_ops.c and arch/x86_*_ops.c:
 * the batched matrix product (gemm) and the fp16 KV-cache primitives
 * (dot_f16_f32, axpy_f16_f32 and their row forms), for every backend the CPU
 * supports (others are skipped with a note).
 *
 * What must match, and how closely:
 * - gemm: every output bit-identical to the same table's vec_dot on that row
 *   and token. That is the kernel's contract (core/kernels.h): the batched
 *   path of prefill and the one-token path of decode give the same numbers,
 *   whatever the tiling, so results cannot depend on batch size, row split or
 *   thread count. vec_dot itself is held to the scalar one by test_kernels.c.
 *   Shapes cover every code path: tails of 1..7 blocks after the 8-block
 *   groups, a lone group after the 16-block pairs, several k-chunks, several
 *   row blocks and token tiles with remainders, padded strides; for the
 *   k-quant kernels (q4_k, q3_k, q2_k, q6_k), row counts around their register
 *   block of 4, 1 .. 129 tokens (up to three tiles of 64), 1 .. 35
 *   super-blocks, and raw bytes as well as quantizer output; for q4_k's
 *   AVX-512 kernel also rows and tokens around its own tiles (16-token
 *   tiles, 16-row output stages, 32-row k-chunk blocks, row blocks of up to
 *   273 rows) and 3 .. 35 super-blocks; for q4_1,
 *   remainders of its 8- and 16-block groups, 1 .. 40 tokens, long rows
 *   (small tiles, several row blocks, the vec_dot fallback) and codes and
 *   activations at their limits.
 * - axpy_f16_f32: bit-identical to scalar (multiply, then add: two roundings
 *   in every backend).
 * - the row forms (dot_rows_f16_f32, axpy_rows_f16_f32): bit-identical to the
 *   same table's single-row kernels called row by row.
 * - dot_f16_f32: within the fp32 summation-order bound of test_kernels.c.
 * - swiglu: within SWIGLU_ULPS units of 2^-24 of the scalar one (relative),
 *   or SWIGLU_TINY absolutely; NaN exactly where scalar gives NaN. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "quant.h"
#include "../arch/cpu.h"

/* ---- backends under test ------------------------------------------------ */

typedef struct {
    const char *name;   /* DEEPC_ISA name */
    unsigned checks;    /* comparisons passed */
    bool noted;         /* "skipped" note printed */
} isa_case;

static isa_case isas[] = {
    { "scalar", 0, false },
    { "avx512vnni", 0, false },
    { "avx512", 0, false },
    { "avx2", 0, false },
};
#define N_ISAS (sizeof isas / sizeof isas[0])

static const deepc_kernels *table_or_skip(isa_case *c) {
    const deepc_kernels *k = deepc_kernels_select(c->name);
    if (!k) {
        if (!c->noted) printf("note: %s not supported on this CPU: its tests are skipped\n", c->name);
        c->noted = true;
        skip();
    }
    assert_string_equal(k->name, c->name);
    return k;
}

/* ---- deterministic data ------------------------------------------------- */

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint64_t rng_next(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static int rng_int(int lo, int hi) { /* [lo, hi] */
    return lo + (int)(rng_next() % (uint64_t)(hi - lo + 1));
}
static float rng_sym(void) { /* [-1, 1) */
    return (float)((double)(rng_next() >> 40) * 0x1p-23 - 1.0);
}

/* Same bits, or both NaN (payloads may legitimately differ between paths
 * only if the arithmetic differs, which the bit check exists to catch; NaN is
 * compared as NaN so a NaN scale in a row still has to produce NaN). */
static uint32_t bits(float a) {
    uint32_t u;
    memcpy(&u, &a, 4);
    return u;
}

static bool same_float(float a, float b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return bits(a) == bits(b);
}

/* ---- gemm --------------------------------------------------------------- */

#define MAX_ROWS 70
#define MAX_TOK 37
#define MAX_N (288 * DEEPC_QK8_0)
#define PAD 3                       /* extra blocks / floats between rows */

typedef enum { GDATA_QUANTIZED, GDATA_RAW, GDATA_EXTREME, GDATA_SPECIAL, GDATA_KINDS } gdata_kind;
static const char *const gkind_names[GDATA_KINDS] = { "quantized", "raw", "extreme", "special" };

static float gw_f[MAX_N];
static deepc_block_q8_0 gw[MAX_ROWS * (MAX_N / DEEPC_QK8_0 + PAD)];
static deepc_block_q8_0 gx[MAX_TOK * (MAX_N / DEEPC_QK8_0 + PAD)];
static float gy[MAX_TOK * (MAX_ROWS + PAD)];

/* Fills nrows weight rows and ntok activation rows (Q8_0, strides in blocks).
 * quantized: both from floats of mixed scales, as in the engine; raw: any
 * weight byte (-128 included, which a file may hold), activations in
 * [-127, 127] (what the quantizer produces and the sign trick relies on), any
 * finite fp16 scales; extreme: every byte at its limit, where integer
 * overflow would show; special: raw plus the odd NaN, infinite or zero
 * weight scale. */
static void fill_q8(gdata_kind kind, int nrows, int ntok, size_t nb, size_t ws, size_t xs) {
    for (int r = 0; r < nrows; r++) {
        deepc_block_q8_0 *w = gw + (size_t)r * ws;
        if (kind == GDATA_QUANTIZED) {
            for (size_t i = 0; i < nb * DEEPC_QK8_0; i++) gw_f[i] = ldexpf(rng_sym(), rng_int(-8, 8));
            deepc_quantize_row(DEEPC_TYPE_Q8_0, gw_f, w, nb * DEEPC_QK8_0);
            continue;
        }
        for (size_t b = 0; b < nb; b++) {
            for (int j = 0; j < DEEPC_QK8_0; j++)
                w[b].qs[j] = (int8_t)(kind == GDATA_EXTREME ? (rng_next() & 1 ? 127 : -128) : rng_int(-128, 127));
            w[b].d = (uint16_t)(rng_next() % 0x7c00u) | (uint16_t)((rng_next() & 1) << 15);
            if (kind == GDATA_SPECIAL && rng_int(0, 40) == 0) {
                static const uint16_t sp[] = { 0x7e00, 0x7c00, 0xfc00, 0x0000, 0x8000, 0x0001 };
                w[b].d = sp[rng_int(0, 5)];
            }
        }
        for (size_t b = nb; b < ws; b++) memset(&w[b], 0xa5, sizeof w[b]); /* padding: never read */
    }
    for (int t = 0; t < ntok; t++) {
        deepc_block_q8_0 *x = gx + (size_t)t * xs;
        if (kind == GDATA_QUANTIZED) {
            for (size_t i = 0; i < nb * DEEPC_QK8_0; i++) gw_f[i] = ldexpf(rng_sym(), rng_int(-8, 8));
            deepc_quantize_row(DEEPC_TYPE_Q8_0, gw_f, x, nb * DEEPC_QK8_0);
            continue;
        }
        for (size_t b = 0; b < nb; b++) {
            for (int j = 0; j < DEEPC_QK8_0; j++)
                x[b].qs[j] = (int8_t)(kind == GDATA_EXTREME ? (rng_next() & 1 ? 127 : -127) : rng_int(-127, 127));
            x[b].d = (uint16_t)(rng_next() % 0x7c00u);
        }
        for (size_t b = nb; b < xs; b++) memset(&x[b], 0x5a, sizeof x[b]);
    }
}

/* Runs gemm over the whole shape and checks every output against vec_dot;
 * outputs outside [nrows) of each token row must stay untouched. */
static void check_gemm_shape(isa_case *c, const deepc_kernels *k, gdata_kind kind, int nrows, int ntok, size_t n) {
    size_t nb = n / DEEPC_QK8_0, ws = nb + (size_t)rng_int(0, PAD), xs = nb + (size_t)rng_int(0, PAD);
    size_t ys = (size_t)nrows + (size_t)rng_int(0, PAD);
    fill_q8(kind, nrows, ntok, nb, ws, xs);
    const float canary = -12345.5f;
    for (size_t i = 0; i < (size_t)ntok * ys; i++) gy[i] = canary;
    k->gemm[DEEPC_TYPE_Q8_0](nrows, ntok, n, gw, ws * sizeof *gw, gx, xs * sizeof *gx, gy, ys);
    for (int t = 0; t < ntok; t++) {
        for (int r = 0; r < nrows; r++) {
            float want = k->vec_dot[DEEPC_TYPE_Q8_0](n, gw + (size_t)r * ws, gx + (size_t)t * xs);
            float got = gy[(size_t)t * ys + (size_t)r];
            if (!same_float(got, want))
                fail_msg("%s q8_0 gemm %s data, %d rows x %d tokens, n=%zu: output (%d, %d) is %.9g (0x%08x), vec_dot %.9g",
                         c->name, gkind_names[kind], nrows, ntok, n, r, t, got, bits(got), want);
        }
        for (size_t r = (size_t)nrows; r < ys; r++)
            if (gy[(size_t)t * ys + r] != canary) fail_msg("%s gemm wrote past row %d of token %d", c->name, nrows, t);
    }
    c->checks++;
}

/* n: 1 block; 7 (tail only); 8 (one group); 9 (group + tail); 16 (a pair);
 * 24 (pair + lone group); 48 (the 1.5B model's 1536); 64 (one full k-chunk);
 * 65..79 (a second chunk with tails); 280 (8960: chunks, a lone group, no
 * tail); 287 (all of it). */
static const size_t gemm_blocks[] = { 1, 7, 8, 9, 16, 23, 24, 48, 64, 65, 79, 280, 287 };

static void test_q8_0_gemm_equals_vec_dot(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    assert_non_null(k->gemm[DEEPC_TYPE_Q8_0]);
    for (size_t i = 0; i < sizeof gemm_blocks / sizeof gemm_blocks[0]; i++) {
        size_t n = gemm_blocks[i] * DEEPC_QK8_0;
        for (int kind = 0; kind < GDATA_KINDS; kind++) {
            /* token tiles 1, 8, 9 (odd: a lone last token) and 37 (two
             * tiles of the avx512vnni kernel, 19 + 18); rows up to several
             * row blocks at n = 8960 (32 or 40 rows of 9.5 KiB per block) */
            check_gemm_shape(c, k, (gdata_kind)kind, 5, 1, n);
            check_gemm_shape(c, k, (gdata_kind)kind, 3, 8, n);
            check_gemm_shape(c, k, (gdata_kind)kind, 17, 9, n);
            if (n >= 64 * DEEPC_QK8_0) check_gemm_shape(c, k, (gdata_kind)kind, MAX_ROWS, MAX_TOK, n);
        }
    }
}

/* A product split into row ranges and token ranges, as threads and batches
 * split it, gives the same bits as one call. */
static void test_q8_0_gemm_split_is_invariant(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    const size_t n = 72 * DEEPC_QK8_0, nb = n / DEEPC_QK8_0;
    const int nrows = 37, ntok = 13;
    static float whole[MAX_TOK * MAX_ROWS];
    fill_q8(GDATA_QUANTIZED, nrows, ntok, nb, nb, nb);
    k->gemm[DEEPC_TYPE_Q8_0](nrows, ntok, n, gw, nb * sizeof *gw, gx, nb * sizeof *gx, whole, (size_t)nrows);
    const int rsplit[] = { 0, 1, 16, 19, 37 }, tsplit[] = { 0, 5, 6, 13 };
    for (int ri = 0; ri + 1 < 5; ri++)
        for (int ti = 0; ti + 1 < 4; ti++) {
            int r0 = rsplit[ri], t0 = tsplit[ti];
            k->gemm[DEEPC_TYPE_Q8_0](rsplit[ri + 1] - r0, tsplit[ti + 1] - t0, n, gw + (size_t)r0 * nb, nb * sizeof *gw,
                                     gx + (size_t)t0 * nb, nb * sizeof *gx, gy + (size_t)t0 * nrows + r0, (size_t)nrows);
        }
    for (int i = 0; i < nrows * ntok; i++)
        if (!same_float(gy[i], whole[i])) fail_msg("%s: split gemm differs at output %d", c->name, i);
    c->checks++;
}

/* Every gemm a table has, whatever the weight type (the scalar table's float
 * ones, any added later), against that table's vec_dot: weights quantized
 * from floats of mixed scales, activations converted as the engine converts
 * them. n: multiples of every block size (32, 128, 256). */
static void test_every_gemm_equals_vec_dot(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    static const size_t lens[] = { 256, 768, 2560 };
    enum { ROWS = 7, TOK = 19 };
    static float f[2560];
    static unsigned char wbuf[ROWS * 2560 * 4], xbuf[TOK * 2560 * 4];
    static float y[TOK * ROWS];
    unsigned types = 0;
    for (int t = 0; t < DEEPC_TYPE_COUNT; t++) {
        if (!k->gemm[t]) continue;
        deepc_type at = k->act_type[t];
        types++;
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            size_t n = lens[li], wrb = deepc_type_row_bytes((deepc_type)t, n), xrb = deepc_type_row_bytes(at, n);
            assert_true(wrb > 0 && xrb > 0);
            for (int r = 0; r < ROWS; r++) {
                for (size_t i = 0; i < n; i++) f[i] = ldexpf(rng_sym(), rng_int(-6, 6));
                deepc_quantize_row((deepc_type)t, f, wbuf + (size_t)r * wrb, n);
            }
            for (int j = 0; j < TOK; j++) {
                for (size_t i = 0; i < n; i++) f[i] = ldexpf(rng_sym(), rng_int(-6, 6));
                k->quantize_act[at](f, xbuf + (size_t)j * xrb, n);
            }
            k->gemm[t](ROWS, TOK, n, wbuf, wrb, xbuf, xrb, y, ROWS);
            for (int j = 0; j < TOK; j++)
                for (int r = 0; r < ROWS; r++) {
                    float want = k->vec_dot[t](n, wbuf + (size_t)r * wrb, xbuf + (size_t)j * xrb);
                    if (!same_float(y[(size_t)j * ROWS + (size_t)r], want))
                        fail_msg("%s %s gemm n=%zu: output (%d, %d) is %.9g, vec_dot %.9g", c->name,
                                 deepc_type_info(t)->name, n, r, j, y[(size_t)j * ROWS + (size_t)r], want);
                }
            c->checks++;
        }
    }
    assert_true(types > 0);
}

/* ---- k-quant gemm ------------------------------------------------------- */

/* The k-quant kernels (q4_k, q3_k, q2_k, q6_k weights x q8_k activations)
 * have their own code paths: several rows in registers, token tiles of up to
 * 64 (so 65 and 70 tokens make two tiles, 129 three), a register block of
 * rows with single-row tails (q6_k: a short last block). Shapes below cover each; lengths from one
 * super-block to the 1.5B model's 8960 (35). */
#define KQ_MAX_ROWS 280 /* q4_k's AVX-512 row blocks: up to 273 rows (10 blocks) */
#define KQ_MAX_TOK 129
#define KQ_MAX_NB 35
#define KQ_PAD 2 /* extra blocks between rows */
static unsigned char kq_w[KQ_MAX_ROWS * (KQ_MAX_NB + KQ_PAD) * sizeof(deepc_block_q6_k)]; /* the largest block */
static deepc_block_q8_k kq_x[KQ_MAX_TOK * (KQ_MAX_NB + KQ_PAD)];
static float kq_y[(KQ_MAX_TOK + 1) * (KQ_MAX_ROWS + 3)], kq_f[KQ_MAX_NB * DEEPC_QK_K]; /* + 1: a canary token row */

typedef enum { KQ_QUANTIZED, KQ_RAW, KQ_SPECIAL, KQ_KINDS } kq_kind;
static const char *const kq_kind_names[KQ_KINDS] = { "quantized", "raw", "special" };

/* A random finite fp16 (either sign); special: now and then NaN, inf, 0. */
static uint16_t kq_half(bool special) {
    if (special && rng_int(0, 30) == 0) {
        static const uint16_t sp[] = { 0x7e00, 0x7c00, 0xfc00, 0x0000, 0x8000, 0x0001 };
        return sp[rng_int(0, 5)];
    }
    return (uint16_t)((rng_next() % 0x7c00u) | ((rng_next() & 1) << 15));
}

/* quantized: weights and activations from floats of mixed scales, as the
 * engine makes them; raw: every weight byte random (any codes and packed
 * scales; finite fp16 super-scales), activation bytes anywhere in
 * [-128, 127] with random sums and scales: the integer paths must be exact
 * for any input, not only what the quantizers produce; special: raw plus the
 * odd NaN / infinite / zero scale on either side. Padding between rows is
 * poisoned and must never be read into a result. */
static void kq_fill(deepc_type t, kq_kind kind, int nrows, int ntok, size_t nb, size_t ws, size_t xs) {
    size_t bb = deepc_type_info(t)->block_bytes;
    for (int r = 0; r < nrows; r++) {
        unsigned char *w = kq_w + (size_t)r * ws * bb;
        if (kind == KQ_QUANTIZED) {
            for (size_t i = 0; i < nb * DEEPC_QK_K; i++) kq_f[i] = ldexpf(rng_sym(), rng_int(-8, 8));
            deepc_quantize_row(t, kq_f, w, nb * DEEPC_QK_K);
        } else {
            for (size_t i = 0; i < nb * bb; i++) w[i] = (unsigned char)rng_next();
            for (size_t b = 0; b < nb; b++) {
                unsigned char *blk = w + b * bb;
                uint16_t d = kq_half(kind == KQ_SPECIAL), dmin = kq_half(kind == KQ_SPECIAL);
                if (t == DEEPC_TYPE_Q4_K) {
                    memcpy(blk + offsetof(deepc_block_q4_k, d), &d, 2);
                    memcpy(blk + offsetof(deepc_block_q4_k, dmin), &dmin, 2);
                } else if (t == DEEPC_TYPE_Q3_K) {
                    memcpy(blk + offsetof(deepc_block_q3_k, d), &d, 2);
                } else if (t == DEEPC_TYPE_Q6_K) {
                    memcpy(blk + offsetof(deepc_block_q6_k, d), &d, 2);
                } else {
                    memcpy(blk + offsetof(deepc_block_q2_k, d), &d, 2);
                    memcpy(blk + offsetof(deepc_block_q2_k, dmin), &dmin, 2);
                }
            }
        }
        memset(w + nb * bb, 0xa5, (ws - nb) * bb);
    }
    for (int j = 0; j < ntok; j++) {
        deepc_block_q8_k *x = kq_x + (size_t)j * xs;
        if (kind == KQ_QUANTIZED) {
            for (size_t i = 0; i < nb * DEEPC_QK_K; i++) kq_f[i] = ldexpf(rng_sym(), rng_int(-8, 8));
            deepc_quantize_row(DEEPC_TYPE_Q8_K, kq_f, x, nb * DEEPC_QK_K);
        } else {
            for (size_t b = 0; b < nb; b++) {
                for (int i = 0; i < DEEPC_QK_K; i++) x[b].qs[i] = (int8_t)rng_int(-128, 127);
                for (int i = 0; i < DEEPC_QK_K / 16; i++) x[b].bsums[i] = (int16_t)rng_int(-2048, 2047);
                x[b].d = ldexpf(rng_sym(), rng_int(-20, 0));
                if (kind == KQ_SPECIAL && rng_int(0, 30) == 0) x[b].d = rng_int(0, 1) ? NAN : INFINITY;
            }
        }
        memset(&x[nb], 0x5a, (xs - nb) * sizeof *x);
    }
}

/* gemm over the shape, every output against vec_dot; outputs past nrows in
 * each token row, and the token row after the last, untouched. */
static void kq_check(isa_case *c, const deepc_kernels *k, deepc_type t, kq_kind kind, int nrows, int ntok, size_t nb) {
    size_t bb = deepc_type_info(t)->block_bytes, n = nb * DEEPC_QK_K;
    size_t ws = nb + (size_t)rng_int(0, KQ_PAD), xs = nb + (size_t)rng_int(0, KQ_PAD);
    size_t ys = (size_t)nrows + (size_t)rng_int(0, 3);
    kq_fill(t, kind, nrows, ntok, nb, ws, xs);
    const float canary = -12345.5f;
    for (size_t i = 0; i < (size_t)(ntok + 1) * ys; i++) kq_y[i] = canary;
    k->gemm[t](nrows, ntok, n, kq_w, ws * bb, kq_x, xs * sizeof *kq_x, kq_y, ys);
    for (size_t r = 0; r < ys; r++)
        if (kq_y[(size_t)ntok * ys + r] != canary)
            fail_msg("%s %s gemm wrote past token %d (row %zu)", c->name, deepc_type_info(t)->name, ntok - 1, r);
    for (int j = 0; j < ntok; j++) {
        for (int r = 0; r < nrows; r++) {
            float want = k->vec_dot[t](n, kq_w + (size_t)r * ws * bb, kq_x + (size_t)j * xs);
            float got = kq_y[(size_t)j * ys + (size_t)r];
            if (!same_float(got, want))
                fail_msg("%s %s gemm %s data, %d rows x %d tokens, n=%zu: output (%d, %d) is %.9g (0x%08x), vec_dot %.9g (0x%08x)",
                         c->name, deepc_type_info(t)->name, kq_kind_names[kind], nrows, ntok, n, r, j, got, bits(got),
                         want, bits(want));
        }
        for (size_t r = (size_t)nrows; r < ys; r++)
            if (kq_y[(size_t)j * ys + r] != canary)
                fail_msg("%s %s gemm wrote past row %d of token %d", c->name, deepc_type_info(t)->name, nrows, j);
    }
    c->checks++;
}

static const deepc_type kq_types[] = { DEEPC_TYPE_Q4_K, DEEPC_TYPE_Q3_K, DEEPC_TYPE_Q2_K, DEEPC_TYPE_Q6_K };

static void test_kquant_gemm_equals_vec_dot(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    /* rows: 1, a register block (4) with and without tails; tokens: 1, 2,
     * tails of a 16-lane and a 64-token tile, two and three tiles */
    static const int shapes[][2] = { { 1, 1 }, { 5, 1 }, { 4, 2 }, { 4, 7 }, { 9, 31 }, { 13, 33 },
                                     { 3, 64 }, { 6, 65 }, { 5, 70 }, { 2, 129 }, { 8, 16 } };
    static const size_t nbs[] = { 1, 2, 6, 35 };
    for (size_t ti = 0; ti < sizeof kq_types / sizeof kq_types[0]; ti++) {
        deepc_type t = kq_types[ti];
        assert_non_null(k->gemm[t]);
        for (size_t ni = 0; ni < sizeof nbs / sizeof nbs[0]; ni++)
            for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
                for (int kind = 0; kind < KQ_KINDS; kind++) {
                    if (nbs[ni] == 35 && shapes[si][1] > 33 && kind != KQ_QUANTIZED) continue; /* time */
                    kq_check(c, k, t, (kq_kind)kind, shapes[si][0], shapes[si][1], nbs[ni]);
                }
    }
}

/* q4_k's AVX-512 gemm (arch/x86_avx512_q4_k.c) has tiles of its own: groups
 * of two super-blocks (odd counts end in a half group), token tiles of up to
 * 16 (equal sizes: 17 = 9 + 8, 40 = 14 + 13 + 13), row pairs with a single
 * tail, outputs staged 16 rows per token, and, when a tile of the whole row
 * is over its buffer (from 6 groups at 16 tokens, 11 super-blocks), k-chunks
 * over blocks of 32 rows that keep their accumulators; otherwise row blocks
 * of 384 KiB of weights (227 rows of 12 blocks). Rows and tokens around each. */
static void test_q4_k_gemm_tiles_equal_vec_dot(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    static const int shapes[][2] = { { 15, 16 }, { 16, 17 }, { 17, 5 }, { 31, 33 }, { 32, 40 }, { 33, 1 },
                                     { 35, 12 }, { 64, 9 }, { 3, 3 } };
    static const size_t nbs[] = { 3, 5, 10, 11, 12, 35 };
    for (size_t ni = 0; ni < sizeof nbs / sizeof nbs[0]; ni++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
            for (int kind = 0; kind < KQ_KINDS; kind++)
                kq_check(c, k, DEEPC_TYPE_Q4_K, (kq_kind)kind, shapes[si][0], shapes[si][1], nbs[ni]);
    /* across a row block of the unsplit path (10 blocks, rows 10 to 12
     * blocks apart: 227 .. 273 rows a block) */
    kq_check(c, k, DEEPC_TYPE_Q4_K, KQ_QUANTIZED, 277, 3, 10);
    kq_check(c, k, DEEPC_TYPE_Q4_K, KQ_SPECIAL, 280, 18, 10);
}

/* Split into row and token ranges, as threads and batches split it: the same
 * bits as one call. */
static void test_kquant_gemm_split_is_invariant(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    const size_t nb = 3, n = nb * DEEPC_QK_K;
    const int nrows = 13, ntok = 100;
    static float whole[KQ_MAX_TOK * KQ_MAX_ROWS];
    for (size_t ti = 0; ti < sizeof kq_types / sizeof kq_types[0]; ti++) {
        deepc_type t = kq_types[ti];
        size_t bb = deepc_type_info(t)->block_bytes;
        kq_fill(t, KQ_QUANTIZED, nrows, ntok, nb, nb, nb);
        k->gemm[t](nrows, ntok, n, kq_w, nb * bb, kq_x, nb * sizeof *kq_x, whole, (size_t)nrows);
        const int rsplit[] = { 0, 1, 5, 8, 13 }, tsplit[] = { 0, 1, 34, 99, 100 };
        for (int ri = 0; ri + 1 < 5; ri++)
            for (int tj = 0; tj + 1 < 5; tj++) {
                int r0 = rsplit[ri], t0 = tsplit[tj];
                k->gemm[t](rsplit[ri + 1] - r0, tsplit[tj + 1] - t0, n, kq_w + (size_t)r0 * nb * bb, nb * bb,
                           kq_x + (size_t)t0 * nb, nb * sizeof *kq_x, kq_y + (size_t)t0 * nrows + r0, (size_t)nrows);
            }
        for (int i = 0; i < nrows * ntok; i++)
            if (!same_float(kq_y[i], whole[i]))
                fail_msg("%s %s: split gemm differs at output %d", c->name, deepc_type_info(t)->name, i);
        c->checks++;
    }
}

/* ---- q4_1 gemm ---------------------------------------------------------- */

/* q4_1 weights x Q8_0 activations (arch/x86_avx2_q4_1.c, x86_avx512_q4_1.c):
 * groups of 16 (AVX-512) or 8 (AVX2) blocks, the last one zero-padded; token
 * tiles of up to 16, fewer for long rows (2 at 16384 elements); row blocks
 * of ~384 KiB of weights (38 rows at 16384 elements); rows in pairs
 * (AVX-512) with a lone last row; and vec_dot itself for rows too long for
 * one token's tile (33280 elements). Block counts cover every remainder of
 * both group sizes, 44 (DeepSeek-V2-Lite's 1408-wide expert down_proj) and
 * 47 / 48 around it. Data: quantizer output, raw bytes (any code, any
 * activation byte -128 included, random finite scales), raw with the odd
 * NaN / infinite / zero scale, and every code and activation at its limit
 * (where integer overflow would show). */
#define Q41_MAX_W (420 * 1024)
#define Q41_MAX_X (100 * 1024)
#define Q41_MAX_Y 2048
typedef enum { Q41_QUANTIZED, Q41_RAW, Q41_SPECIAL, Q41_EXTREME, Q41_KINDS } q41_kind;
static const char *const q41_kind_names[Q41_KINDS] = { "quantized", "raw", "special", "extreme" };
static deepc_block_q4_1 q41_w[Q41_MAX_W / sizeof(deepc_block_q4_1)];
static deepc_block_q8_0 q41_x[Q41_MAX_X / sizeof(deepc_block_q8_0)];
static float q41_y[Q41_MAX_Y], q41_f[1040 * DEEPC_QK4_1];

static uint16_t q41_half(bool special) {
    if (special && rng_int(0, 30) == 0) {
        static const uint16_t sp[] = { 0x7e00, 0x7c00, 0xfc00, 0x0000, 0x8000, 0x0001 };
        return sp[rng_int(0, 5)];
    }
    return (uint16_t)((rng_next() % 0x7c00u) | ((rng_next() & 1) << 15));
}

static void q41_fill(q41_kind kind, int nrows, int ntok, size_t nb, size_t ws, size_t xs) {
    assert_true((size_t)nrows * ws <= sizeof q41_w / sizeof *q41_w && (size_t)ntok * xs <= sizeof q41_x / sizeof *q41_x);
    int ext = rng_int(0, 1); /* extreme: codes 15 with x -128 or codes 15 with x 127 */
    for (int r = 0; r < nrows; r++) {
        deepc_block_q4_1 *w = q41_w + (size_t)r * ws;
        if (kind == Q41_QUANTIZED) {
            for (size_t i = 0; i < nb * DEEPC_QK4_1; i++) q41_f[i] = ldexpf(rng_sym(), rng_int(-8, 8)) + 0.25f * (float)(r % 3);
            deepc_quantize_row(DEEPC_TYPE_Q4_1, q41_f, w, nb * DEEPC_QK4_1);
        } else {
            for (size_t b = 0; b < nb; b++) {
                for (int l = 0; l < DEEPC_QK4_1 / 2; l++) w[b].qs[l] = kind == Q41_EXTREME ? 0xff : (uint8_t)rng_next();
                w[b].d = q41_half(kind == Q41_SPECIAL);
                w[b].m = q41_half(kind == Q41_SPECIAL);
            }
        }
        memset(&w[nb], 0xa5, (ws - nb) * sizeof *w); /* padding: never read */
    }
    for (int j = 0; j < ntok; j++) {
        deepc_block_q8_0 *x = q41_x + (size_t)j * xs;
        if (kind == Q41_QUANTIZED) {
            for (size_t i = 0; i < nb * DEEPC_QK4_1; i++) q41_f[i] = ldexpf(rng_sym(), rng_int(-8, 8));
            deepc_quantize_row(DEEPC_TYPE_Q8_0, q41_f, x, nb * DEEPC_QK4_1);
        } else {
            for (size_t b = 0; b < nb; b++) {
                for (int l = 0; l < DEEPC_QK4_1; l++)
                    x[b].qs[l] = (int8_t)(kind == Q41_EXTREME ? (ext ? -128 : 127) : rng_int(-128, 127));
                x[b].d = q41_half(kind == Q41_SPECIAL);
            }
        }
        memset(&x[nb], 0x5a, (xs - nb) * sizeof *x);
    }
}

/* gemm over the shape, every output against vec_dot; outputs past nrows in
 * each token row untouched. */
static void q41_check(isa_case *c, const deepc_kernels *k, q41_kind kind, int nrows, int ntok, size_t nb) {
    size_t n = nb * DEEPC_QK4_1, ws = nb + (size_t)rng_int(0, 2), xs = nb + (size_t)rng_int(0, 2);
    size_t ys = (size_t)nrows + (size_t)rng_int(0, 3);
    assert_true((size_t)ntok * ys <= Q41_MAX_Y);
    q41_fill(kind, nrows, ntok, nb, ws, xs);
    const float canary = -12345.5f;
    for (size_t i = 0; i < (size_t)ntok * ys; i++) q41_y[i] = canary;
    k->gemm[DEEPC_TYPE_Q4_1](nrows, ntok, n, q41_w, ws * sizeof *q41_w, q41_x, xs * sizeof *q41_x, q41_y, ys);
    for (int j = 0; j < ntok; j++) {
        for (int r = 0; r < nrows; r++) {
            float want = k->vec_dot[DEEPC_TYPE_Q4_1](n, q41_w + (size_t)r * ws, q41_x + (size_t)j * xs);
            float got = q41_y[(size_t)j * ys + (size_t)r];
            if (!same_float(got, want))
                fail_msg("%s q4_1 gemm %s data, %d rows x %d tokens, n=%zu: output (%d, %d) is %.9g (0x%08x), vec_dot %.9g (0x%08x)",
                         c->name, q41_kind_names[kind], nrows, ntok, n, r, j, got, bits(got), want, bits(want));
        }
        for (size_t r = (size_t)nrows; r < ys; r++)
            if (q41_y[(size_t)j * ys + r] != canary)
                fail_msg("%s q4_1 gemm wrote past row %d of token %d", c->name, nrows, j);
    }
    c->checks++;
}

static void test_q4_1_gemm_equals_vec_dot(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    assert_non_null(k->gemm[DEEPC_TYPE_Q4_1]);
    /* rows: 1, a pair, odd counts; tokens: 1, 2, a full tile, one past it, three tiles */
    static const int shapes[][2] = { { 1, 1 }, { 2, 1 }, { 3, 2 }, { 4, 16 }, { 7, 17 }, { 5, 33 }, { 6, 40 } };
    static const size_t nbs[] = { 1, 2, 3, 5, 7, 8, 9, 12, 15, 16, 17, 24, 31, 33, 44, 47, 48 };
    for (size_t ni = 0; ni < sizeof nbs / sizeof nbs[0]; ni++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
            for (int kind = 0; kind < Q41_KINDS; kind++) q41_check(c, k, (q41_kind)kind, shapes[si][0], shapes[si][1], nbs[ni]);
    /* long rows: tiles of 2 tokens and two row blocks; then past the tile */
    for (int kind = 0; kind < Q41_KINDS; kind++) q41_check(c, k, (q41_kind)kind, 40, 5, 512);
    q41_check(c, k, Q41_RAW, 3, 2, 1040);
    q41_check(c, k, Q41_QUANTIZED, 2, 2, 1040);
}

/* Split into row and token ranges, as threads and batches split it: the same
 * bits as one call. */
static void test_q4_1_gemm_split_is_invariant(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    const size_t nb = 44, n = nb * DEEPC_QK4_1;
    enum { NROWS = 9, NTOK = 35 };
    static float whole[NROWS * NTOK];
    q41_fill(Q41_QUANTIZED, NROWS, NTOK, nb, nb, nb);
    k->gemm[DEEPC_TYPE_Q4_1](NROWS, NTOK, n, q41_w, nb * sizeof *q41_w, q41_x, nb * sizeof *q41_x, whole, NROWS);
    const int rsplit[] = { 0, 1, 4, 9 }, tsplit[] = { 0, 1, 17, 35 };
    for (int ri = 0; ri + 1 < 4; ri++)
        for (int tj = 0; tj + 1 < 4; tj++) {
            int r0 = rsplit[ri], t0 = tsplit[tj];
            k->gemm[DEEPC_TYPE_Q4_1](rsplit[ri + 1] - r0, tsplit[tj + 1] - t0, n, q41_w + (size_t)r0 * nb,
                                     nb * sizeof *q41_w, q41_x + (size_t)t0 * nb, nb * sizeof *q41_x,
                                     q41_y + (size_t)t0 * NROWS + r0, NROWS);
        }
    for (int i = 0; i < NROWS * NTOK; i++)
        if (!same_float(q41_y[i], whole[i])) fail_msg("%s q4_1: split gemm differs at output %d", c->name, i);
    c->checks++;
}

/* ---- fp16 KV-cache primitives ------------------------------------------- */

#define MAX_LEN 1100
static const size_t f16_lens[] = { 0, 1, 7, 8, 15, 16, 17, 31, 63, 64, 65, 128, 129, 512, 576, 1000, 1099 };

/* fp16 value classes: unit, wide exponents, fp16 subnormals. */
static uint16_t gen_f16(int kind) {
    float v = rng_sym();
    if (kind == 1) v = ldexpf(v, rng_int(-14, 15));
    if (kind == 2) v = ldexpf(v, rng_int(-24, -15));
    return deepc_fp32_to_fp16(v);
}

static void test_dot_f16_f32_matches_scalar(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    const deepc_kernels *ref = deepc_kernels_scalar();
    assert_non_null(k->dot_f16_f32);
    static uint16_t amem[MAX_LEN + 8];
    static float bmem[MAX_LEN + 8];
    for (size_t li = 0; li < sizeof f16_lens / sizeof f16_lens[0]; li++) {
        size_t n = f16_lens[li];
        for (int kind = 0; kind < 3; kind++) {
            /* odd element offsets: no load is aligned to its width */
            uint16_t *a = amem + 1 + kind;
            float *b = bmem + 3;
            double s = 0.0;
            for (size_t i = 0; i < n; i++) {
                a[i] = gen_f16(kind);
                b[i] = ldexpf(rng_sym(), rng_int(-10, 10));
                s += fabs((double)deepc_fp16_to_fp32(a[i]) * b[i]);
            }
            float want = ref->dot_f16_f32(n, a, b), got = k->dot_f16_f32(n, a, b);
            /* summation order and FMA only: the bound of test_kernels.c */
            double tol = 8.0 * sqrt((double)n) * 0x1p-24 * s + (double)n * 0x1p-149;
            if (!(fabs((double)got - (double)want) <= tol))
                fail_msg("%s dot_f16_f32 n=%zu kind %d: got %.9g, scalar %.9g, tol %g", c->name, n, kind, got, want, tol);
            c->checks++;
        }
    }
}

static void test_dot_f16_f32_propagates_non_finite(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    static uint16_t a[257];
    static float b[257];
    for (size_t pos = 0; pos < 257; pos += 32) {
        for (size_t i = 0; i < 257; i++) {
            a[i] = gen_f16(0);
            b[i] = rng_sym();
        }
        a[pos] = 0x7e00; /* NaN */
        assert_true(isnan(k->dot_f16_f32(257, a, b)));
        a[pos] = 0xfc00; /* -inf */
        b[pos] = 2.0f;
        float v = k->dot_f16_f32(257, a, b);
        assert_true(isinf(v) && v < 0);
        c->checks += 2;
    }
}

static void test_axpy_f16_f32_is_bit_identical(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    const deepc_kernels *ref = deepc_kernels_scalar();
    assert_non_null(k->axpy_f16_f32);
    static uint16_t xmem[MAX_LEN + 8];
    static float want[MAX_LEN + 8], got[MAX_LEN + 8];
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
            for (size_t i = 0; i < n + 2; i++)
                if (!same_float(got[i], want[i]))
                    fail_msg("%s axpy_f16_f32 n=%zu kind %d alpha %g: element %zu is %.9g, scalar %.9g", c->name, n,
                             kind, alpha, i, got[i], want[i]);
            c->checks++;
        }
    }
}

/* The row forms are the single-row kernels of the same table in a loop, bit
 * for bit: cache rows at a stride (several heads per row, as in the cache),
 * row counts from 1 to past a register block's worth, widths with tails. */
static void test_row_forms_equal_single_calls(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    assert_non_null(k->dot_rows_f16_f32);
    assert_non_null(k->axpy_rows_f16_f32);
    static const size_t widths[] = { 1, 15, 64, 128, 129, 200, 512, 576 };
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
            /* dot: out[p] for every row */
            k->dot_rows_f16_f32(n, m, cache + 3, STRIDE, q, got);
            for (size_t p = 0; p < m; p++) {
                float w = k->dot_f16_f32(n, cache + 3 + p * STRIDE, q);
                if (!same_float(got[p], w))
                    fail_msg("%s dot_rows n=%zu m=%zu: row %zu is %.9g, dot %.9g", c->name, n, m, p, got[p], w);
            }
            /* axpy: the accumulated row */
            for (size_t i = 0; i < n; i++) got[i] = want[i] = ldexpf(rng_sym(), rng_int(-4, 4));
            k->axpy_rows_f16_f32(n, m, alpha, cache + 5, STRIDE, got);
            for (size_t p = 0; p < m; p++) k->axpy_f16_f32(n, alpha[p], cache + 5 + p * STRIDE, want);
            for (size_t i = 0; i < n; i++)
                if (!same_float(got[i], want[i]))
                    fail_msg("%s axpy_rows n=%zu m=%zu: element %zu is %.9g, axpy %.9g", c->name, n, m, i, got[i], want[i]);
            c->checks += 2;
        }
}

/* SwiGLU: the SIMD tables evaluate e^-g with a degree-6 polynomial after
 * range reduction (truncation 1.2e-7 relative, ~2^-23) plus ~3 roundings in
 * the Horner steps and the scaling, against libm's expf (< 1 ulp); 1 + e, the
 * quotient and the product add half an ulp each. 8 units of 2^-24 bound that
 * with room; measured worst: 4.5 (avx512vnni), 4.7 (avx512), 4.0 (avx2). Results below 2^-100 in
 * magnitude (g beyond -69, where e^-g is near the top of the float range
 * and AVX2 clamps its exponent) are held to SWIGLU_TINY absolutely. */
#define SWIGLU_ULPS 8.0
#define SWIGLU_TINY 0x1p-100

static void test_swiglu_matches_scalar(void **state) {
    isa_case *c = *state;
    const deepc_kernels *k = table_or_skip(c);
    const deepc_kernels *ref = deepc_kernels_scalar();
    assert_non_null(k->swiglu);
    enum { N = 4099 };
    static float g[N + 2], u[N], want[N + 2];
    static const float special[] = { 0.0f, -0.0f, 1e-30f, -1e-30f, 87.0f, -87.0f, 88.5f, -88.5f, 88.8f, -88.8f, 89.0f,
                                     -89.0f, 103.0f, -103.0f, 105.0f, -105.0f, 1000.0f, -1000.0f, INFINITY, -INFINITY,
                                     NAN, 3.4e38f, -3.4e38f, 1.0f, -1.0f };
    const size_t ns = sizeof special / sizeof special[0];
    static const size_t lens[] = { 1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 67, N };
    double worst = 0.0;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li];
        for (size_t i = 0; i < n; i++) {
            g[i] = i % 11 == 5 ? special[(i / 11) % ns] : i % 3 ? 20.0f * rng_sym() : ldexpf(rng_sym(), rng_int(-10, 7));
            u[i] = i % 17 == 3 ? 0.0f : ldexpf(rng_sym(), rng_int(-6, 6));
        }
        g[n] = g[n + 1] = 12345.0f; /* must stay untouched */
        memcpy(want, g, (n + 2) * sizeof *g);
        ref->swiglu(want, u, n);
        k->swiglu(g, u, n);
        for (size_t i = 0; i < n; i++) {
            float a = g[i], b = want[i];
            if (isnan(a) || isnan(b)) {
                if (!(isnan(a) && isnan(b))) fail_msg("%s swiglu n=%zu element %zu: %.9g, scalar %.9g", c->name, n, i, a, b);
                continue;
            }
            double err = fabs((double)a - (double)b);
            if (fabs((double)b) >= SWIGLU_TINY) {
                double ulps = err / (fabs((double)b) * 0x1p-24);
                if (ulps > worst) worst = ulps;
                if (ulps > SWIGLU_ULPS) fail_msg("%s swiglu n=%zu element %zu: %.9g, scalar %.9g (%.1f units)", c->name, n, i, a, b, ulps);
            } else if (err > SWIGLU_TINY) {
                fail_msg("%s swiglu n=%zu element %zu: %.9g, scalar %.9g", c->name, n, i, a, b);
            }
        }
        if (g[n] != 12345.0f || g[n + 1] != 12345.0f) fail_msg("%s swiglu n=%zu wrote past the end", c->name, n);
        c->checks++;
    }
    printf("  %s swiglu: worst %.2f units of 2^-24 relative\n", c->name, worst);
}

/* ---- runner ------------------------------------------------------------- */

#define OT(i, isa, fn) { isa ": " #fn, fn, NULL, NULL, &isas[i] }
#define PER_ISA(i, isa)                                                                                   \
    OT(i, isa, test_q8_0_gemm_equals_vec_dot), OT(i, isa, test_q8_0_gemm_split_is_invariant),             \
    OT(i, isa, test_every_gemm_equals_vec_dot), OT(i, isa, test_kquant_gemm_equals_vec_dot),              \
    OT(i, isa, test_kquant_gemm_split_is_invariant), OT(i, isa, test_q4_k_gemm_tiles_equal_vec_dot), OT(i, isa, test_q4_1_gemm_equals_vec_dot),             \
    OT(i, isa, test_q4_1_gemm_split_is_invariant),                                                        \
    OT(i, isa, test_dot_f16_f32_matches_scalar), OT(i, isa, test_dot_f16_f32_propagates_non_finite),      \
    OT(i, isa, test_axpy_f16_f32_is_bit_identical), OT(i, isa, test_row_forms_equal_single_calls),        \
    OT(i, isa, test_swiglu_matches_scalar)

int main(void) {
    _Static_assert(N_ISAS == 4, "add the new backend's PER_ISA line below");
    const struct CMUnitTest tests[] = {
        PER_ISA(0, "scalar"),
        PER_ISA(1, "avx512vnni"),
        PER_ISA(2, "avx512"),
        PER_ISA(3, "avx2"),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    for (size_t i = 0; i < N_ISAS; i++) {
        if (isas[i].noted) printf("%s: skipped (not supported here)\n", isas[i].name);
        else printf("%s: %u ops parity checks passed\n", isas[i].name, isas[i].checks);
    }
    return failed;
}
