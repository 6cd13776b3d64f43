/* test_quant.c - the scalar ground truth: type traits, fp16/bf16 conversion
 * against bit patterns derived by hand from the IEEE-754 definitions, Q8_0
 * round trips, and every scalar vec_dot against a double-precision dot of the
 * dequantized operands. Also the backend selector. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "quant.h"

/* ---- helpers ------------------------------------------------------------ */

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Small deterministic PRNG so failures reproduce. */
static uint64_t rng_state = 0x1234567887654321ull;
static uint64_t rng_next(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static float rng_uniform(float lo, float hi) { /* [lo, hi) */
    return lo + (hi - lo) * (float)((double)(rng_next() >> 40) * 0x1p-24);
}

/* ---- type traits -------------------------------------------------------- */

static void test_type_info_describes_each_type(void **state) {
    (void)state;
    const deepc_type_traits *t = deepc_type_info(DEEPC_TYPE_Q8_0);
    assert_non_null(t);
    assert_string_equal(t->name, "q8_0");
    assert_int_equal(t->block_elems, 32);
    assert_int_equal(t->block_bytes, 34);
    assert_true(t->is_quantized);
    t = deepc_type_info(DEEPC_TYPE_BF16);
    assert_string_equal(t->name, "bf16");
    assert_int_equal(t->block_elems, 1);
    assert_int_equal(t->block_bytes, 2);
    assert_false(t->is_quantized);
    assert_int_equal(deepc_type_info(DEEPC_TYPE_F32)->block_bytes, 4);
    assert_int_equal(deepc_type_info(DEEPC_TYPE_F16)->block_bytes, 2);
}

static void test_type_info_rejects_invalid_ids(void **state) {
    (void)state;
    assert_null(deepc_type_info(-1));
    assert_null(deepc_type_info(DEEPC_TYPE_COUNT));
    assert_null(deepc_type_info(1000));
}

static void test_type_from_name_maps_names_to_ids(void **state) {
    (void)state;
    assert_int_equal(deepc_type_from_name("f32"), DEEPC_TYPE_F32);
    assert_int_equal(deepc_type_from_name("f16"), DEEPC_TYPE_F16);
    assert_int_equal(deepc_type_from_name("bf16"), DEEPC_TYPE_BF16);
    assert_int_equal(deepc_type_from_name("q8_0"), DEEPC_TYPE_Q8_0);
    assert_int_equal(deepc_type_from_name("q4_0"), -1);
    assert_int_equal(deepc_type_from_name(""), -1);
    assert_int_equal(deepc_type_from_name(NULL), -1);
}

static void test_row_bytes_requires_whole_blocks(void **state) {
    (void)state;
    assert_int_equal(deepc_type_row_bytes(DEEPC_TYPE_F32, 7), 28);
    assert_int_equal(deepc_type_row_bytes(DEEPC_TYPE_F16, 7), 14);
    assert_int_equal(deepc_type_row_bytes(DEEPC_TYPE_Q8_0, 64), 68);
    assert_int_equal(deepc_type_row_bytes(DEEPC_TYPE_Q8_0, 33), 0);
    assert_int_equal(deepc_type_row_bytes((deepc_type)99, 32), 0);
    /* SIZE_MAX elements of 4 bytes cannot be sized: overflow reports 0 */
    assert_int_equal(deepc_type_row_bytes(DEEPC_TYPE_F32, SIZE_MAX), 0);
}

/* ---- fp16 --------------------------------------------------------------- */

/* fp16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
static void test_fp16_to_fp32_decodes_known_patterns(void **state) {
    (void)state;
    assert_true(deepc_fp16_to_fp32(0x3C00) == 1.0f);          /* 2^0 */
    assert_true(deepc_fp16_to_fp32(0xC000) == -2.0f);         /* -2^1 */
    assert_true(deepc_fp16_to_fp32(0x3555) == 0x1.554p-2f);   /* 1+341/1024 x 2^-2 */
    assert_true(deepc_fp16_to_fp32(0x7BFF) == 65504.0f);      /* (2-2^-10) x 2^15 */
    assert_true(deepc_fp16_to_fp32(0x0400) == 0x1p-14f);      /* smallest normal */
    assert_true(deepc_fp16_to_fp32(0x0001) == 0x1p-24f);      /* smallest subnormal */
    assert_true(deepc_fp16_to_fp32(0x03FF) == 1023 * 0x1p-24f); /* largest subnormal */
    assert_int_equal(bits_of(deepc_fp16_to_fp32(0x0000)), 0x00000000u);
    assert_int_equal(bits_of(deepc_fp16_to_fp32(0x8000)), 0x80000000u); /* -0 */
    assert_int_equal(bits_of(deepc_fp16_to_fp32(0x7C00)), 0x7F800000u); /* +inf */
    assert_int_equal(bits_of(deepc_fp16_to_fp32(0xFC00)), 0xFF800000u); /* -inf */
    assert_int_equal(bits_of(deepc_fp16_to_fp32(0x7E00)), 0x7FC00000u); /* quiet NaN */
}

static void test_fp32_to_fp16_encodes_exact_values(void **state) {
    (void)state;
    assert_int_equal(deepc_fp32_to_fp16(1.0f), 0x3C00);
    assert_int_equal(deepc_fp32_to_fp16(-2.0f), 0xC000);
    assert_int_equal(deepc_fp32_to_fp16(0.5f), 0x3800);
    assert_int_equal(deepc_fp32_to_fp16(65504.0f), 0x7BFF);
    assert_int_equal(deepc_fp32_to_fp16(0x1p-14f), 0x0400);
    assert_int_equal(deepc_fp32_to_fp16(0x1p-24f), 0x0001);
    assert_int_equal(deepc_fp32_to_fp16(-0x1p-24f), 0x8001);
    assert_int_equal(deepc_fp32_to_fp16(0.0f), 0x0000);
    assert_int_equal(deepc_fp32_to_fp16(-0.0f), 0x8000);
}

static void test_fp32_to_fp16_rounds_ties_to_even(void **state) {
    (void)state;
    /* fp16 spacing at 1.0 is 2^-10; 2^-11 is exactly half of it. */
    assert_int_equal(deepc_fp32_to_fp16(1.0f + 0x1p-11f), 0x3C00);          /* tie, 0x3C00 even */
    assert_int_equal(deepc_fp32_to_fp16(1.0f + 3 * 0x1p-11f), 0x3C02);      /* tie, 0x3C02 even */
    assert_int_equal(deepc_fp32_to_fp16(1.0f + 0x1p-11f + 0x1p-20f), 0x3C01); /* above tie */
    assert_int_equal(deepc_fp32_to_fp16(1.0f + 0x1p-11f - 0x1p-20f), 0x3C00); /* below tie */
    /* rounding up out of the mantissa carries into the exponent */
    assert_int_equal(deepc_fp32_to_fp16(2.0f - 0x1p-12f), 0x4000);
}

static void test_fp32_to_fp16_overflows_to_inf_from_65520(void **state) {
    (void)state;
    /* 65520 is halfway between 65504 (0x7BFF, odd) and 2^16: ties go to the
     * even neighbour, which is the inf encoding 0x7C00. */
    assert_int_equal(deepc_fp32_to_fp16(65519.996f), 0x7BFF);
    assert_int_equal(deepc_fp32_to_fp16(65520.0f), 0x7C00);
    assert_int_equal(deepc_fp32_to_fp16(-65520.0f), 0xFC00);
    assert_int_equal(deepc_fp32_to_fp16(1e10f), 0x7C00);
    assert_int_equal(deepc_fp32_to_fp16(FLT_MAX), 0x7C00);
    assert_int_equal(deepc_fp32_to_fp16(INFINITY), 0x7C00);
    assert_int_equal(deepc_fp32_to_fp16(-INFINITY), 0xFC00);
}

static void test_fp32_to_fp16_rounds_subnormals_to_even(void **state) {
    (void)state;
    /* subnormal spacing is 2^-24; 2^-25 is half of it */
    assert_int_equal(deepc_fp32_to_fp16(0x1p-25f), 0x0000);                 /* tie -> 0 */
    assert_int_equal(deepc_fp32_to_fp16(0x1p-25f * 1.0000001f), 0x0001);    /* above tie */
    assert_int_equal(deepc_fp32_to_fp16(3 * 0x1p-25f), 0x0002);             /* tie 1|2 -> 2 */
    assert_int_equal(deepc_fp32_to_fp16(5 * 0x1p-25f), 0x0002);             /* tie 2|3 -> 2 */
    assert_int_equal(deepc_fp32_to_fp16(0x1p-26f), 0x0000);
    assert_int_equal(deepc_fp32_to_fp16(-0x1p-26f), 0x8000);                /* sign kept */
    assert_int_equal(deepc_fp32_to_fp16(FLT_MIN), 0x0000);
    /* halfway between the largest subnormal 0x03FF and 2^-14 (0x0400, even) */
    assert_int_equal(deepc_fp32_to_fp16(0x1p-14f - 0x1p-25f), 0x0400);
}

static void test_fp32_to_fp16_keeps_nan(void **state) {
    (void)state;
    uint16_t h = deepc_fp32_to_fp16(NAN);
    assert_int_equal(h & 0x7C00, 0x7C00);
    assert_true((h & 0x03FF) != 0);
    /* payload only in the 13 bits fp16 drops: must still be a NaN, not inf */
    h = deepc_fp32_to_fp16(float_of(0x7F800001u));
    assert_int_equal(h & 0x7C00, 0x7C00);
    assert_true((h & 0x03FF) != 0);
    assert_int_equal(deepc_fp32_to_fp16(float_of(0xFFC00000u)), 0xFE00); /* -qNaN */
}

/* Every fp16 code (NaNs included: payloads are kept) survives fp16->fp32->fp16. */
static void test_fp16_round_trips_all_65536_codes(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++)
        if (deepc_fp32_to_fp16(deepc_fp16_to_fp32((uint16_t)h)) != h) fail_msg("code 0x%04x", h);
}

/* Exhaustive rounding check: for each pair of adjacent positive finite fp16
 * values, the exact midpoint (representable in fp32: it needs 12 significant
 * bits) goes to the even one, and the fp32 values just below/above it go to
 * the lower/upper one. */
static void test_fp32_to_fp16_rounds_every_midpoint_correctly(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 0x7BFF; h++) {
        float lo = deepc_fp16_to_fp32((uint16_t)h), hi = deepc_fp16_to_fp32((uint16_t)(h + 1));
        float mid = lo + (hi - lo) * 0.5f;
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        if (deepc_fp32_to_fp16(mid) != even) fail_msg("midpoint after 0x%04x", h);
        if (deepc_fp32_to_fp16(nextafterf(mid, 0.0f)) != h) fail_msg("below mid 0x%04x", h);
        if (deepc_fp32_to_fp16(nextafterf(mid, INFINITY)) != h + 1) fail_msg("above mid 0x%04x", h);
    }
}

/* ---- bf16 --------------------------------------------------------------- */

/* bf16: the top 16 bits of fp32 (8 exponent bits, 7 mantissa bits). */
static void test_bf16_converts_known_patterns(void **state) {
    (void)state;
    assert_true(deepc_bf16_to_fp32(0x3F80) == 1.0f);
    assert_true(deepc_bf16_to_fp32(0xC000) == -2.0f);
    assert_true(deepc_bf16_to_fp32(0x0001) == 0x1p-133f); /* smallest subnormal */
    assert_int_equal(bits_of(deepc_bf16_to_fp32(0x7F80)), 0x7F800000u);
    assert_int_equal(deepc_fp32_to_bf16(1.0f), 0x3F80);
    assert_int_equal(deepc_fp32_to_bf16(-2.0f), 0xC000);
    assert_int_equal(deepc_fp32_to_bf16(0x1p-133f), 0x0001);
    assert_int_equal(deepc_fp32_to_bf16(-0.0f), 0x8000);
    assert_int_equal(deepc_fp32_to_bf16(INFINITY), 0x7F80);
    assert_int_equal(deepc_fp32_to_bf16(-INFINITY), 0xFF80);
}

static void test_fp32_to_bf16_rounds_ties_to_even(void **state) {
    (void)state;
    /* bf16 spacing at 1.0 is 2^-7 */
    assert_int_equal(deepc_fp32_to_bf16(1.0f + 0x1p-8f), 0x3F80);            /* tie -> even */
    assert_int_equal(deepc_fp32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3F82);        /* tie -> even */
    assert_int_equal(deepc_fp32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3F81); /* above tie */
    /* FLT_MAX (0x7F7FFFFF) is above the midpoint to 2^128: rounds to inf */
    assert_int_equal(deepc_fp32_to_bf16(FLT_MAX), 0x7F80);
}

static void test_fp32_to_bf16_keeps_nan(void **state) {
    (void)state;
    assert_int_equal(deepc_fp32_to_bf16(float_of(0x7FC00000u)), 0x7FC0);
    uint16_t h = deepc_fp32_to_bf16(float_of(0x7F800001u)); /* payload in dropped bits */
    assert_int_equal(h & 0x7F80, 0x7F80);
    assert_true((h & 0x007F) != 0);
}

static void test_bf16_round_trips_all_65536_codes(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++)
        if (deepc_fp32_to_bf16(deepc_bf16_to_fp32((uint16_t)h)) != h) fail_msg("code 0x%04x", h);
}

/* ---- rows --------------------------------------------------------------- */

static void test_float_rows_convert_elementwise_at_odd_lengths(void **state) {
    (void)state;
    static const size_t lens[] = { 1, 7, 31, 33, 255, 257 };
    float src[257], back[257];
    uint16_t half[257];
    float f32[257];
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li];
        for (size_t i = 0; i < n; i++) src[i] = rng_uniform(-100.0f, 100.0f);
        deepc_quantize_row(DEEPC_TYPE_F16, src, half, n);
        deepc_dequantize_row(DEEPC_TYPE_F16, half, back, n);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(half[i], deepc_fp32_to_fp16(src[i]));
            assert_true(back[i] == deepc_fp16_to_fp32(half[i]));
        }
        deepc_quantize_row(DEEPC_TYPE_BF16, src, half, n);
        deepc_dequantize_row(DEEPC_TYPE_BF16, half, back, n);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(half[i], deepc_fp32_to_bf16(src[i]));
            assert_true(back[i] == deepc_bf16_to_fp32(half[i]));
        }
        deepc_quantize_row(DEEPC_TYPE_F32, src, f32, n);
        deepc_dequantize_row(DEEPC_TYPE_F32, f32, back, n);
        assert_memory_equal(back, src, n * sizeof(float));
    }
}

/* ---- Q8_0 --------------------------------------------------------------- */

/* Per element |x - d*q| <= d/2 + 127*|d - amax/127|: d/2 from rounding q,
 * plus the extra from the clamp at 127 when the fp16 rounding made d smaller
 * than amax/127 (see quant.c). A further 4 ulps of amax cover the fp32
 * rounding of x*(1/d) and of d*q. */
static void test_q8_0_round_trip_error_within_half_scale(void **state) {
    (void)state;
    enum { NB = 64, N = NB * DEEPC_QK8_0 };
    float x[N], y[N];
    deepc_block_q8_0 b[NB];
    for (int ib = 0; ib < NB; ib++) {
        /* magnitudes from 1e-6 to 1e4, including fp16-subnormal scales */
        float mag = powf(10.0f, -6.0f + 10.0f * (float)ib / NB);
        for (int j = 0; j < DEEPC_QK8_0; j++) x[ib * DEEPC_QK8_0 + j] = rng_uniform(-mag, mag);
    }
    deepc_quantize_row(DEEPC_TYPE_Q8_0, x, b, N);
    deepc_dequantize_row(DEEPC_TYPE_Q8_0, b, y, N);
    for (int ib = 0; ib < NB; ib++) {
        float amax = 0.0f;
        for (int j = 0; j < DEEPC_QK8_0; j++) amax = fmaxf(amax, fabsf(x[ib * DEEPC_QK8_0 + j]));
        double d = deepc_fp16_to_fp32(b[ib].d);
        double bound = d / 2 + 127 * fabs(d - amax / 127.0) + 4 * (double)amax * FLT_EPSILON;
        for (int j = 0; j < DEEPC_QK8_0; j++) {
            int i = ib * DEEPC_QK8_0 + j;
            if (fabs((double)x[i] - y[i]) > bound)
                fail_msg("block %d elem %d: x=%g y=%g bound=%g", ib, j, x[i], y[i], bound);
        }
    }
}

static void test_q8_0_scale_is_fp16_of_amax_over_127(void **state) {
    (void)state;
    float x[32];
    deepc_block_q8_0 b;
    for (int i = 0; i < 32; i++) x[i] = (float)(i - 16);   /* amax = 16 at i = 0 */
    deepc_quantize_row(DEEPC_TYPE_Q8_0, x, &b, 32);
    assert_int_equal(b.d, deepc_fp32_to_fp16(16.0f / 127.0f));
    assert_int_equal(b.qs[0], -127);                       /* the extreme maps to the end */
    assert_int_equal(b.qs[16], 0);
}

static void test_q8_0_all_zero_block_has_zero_scale(void **state) {
    (void)state;
    float x[32] = { 0 }, y[32];
    deepc_block_q8_0 b;
    memset(&b, 0x55, sizeof b);
    deepc_quantize_row(DEEPC_TYPE_Q8_0, x, &b, 32);
    assert_int_equal(b.d, 0);
    for (int i = 0; i < 32; i++) assert_int_equal(b.qs[i], 0);
    deepc_dequantize_row(DEEPC_TYPE_Q8_0, &b, y, 32);
    for (int i = 0; i < 32; i++) assert_true(y[i] == 0.0f);
}

static void test_q8_0_huge_block_keeps_finite_scale(void **state) {
    (void)state;
    float x[32], y[32];
    deepc_block_q8_0 b;
    for (int i = 0; i < 32; i++) x[i] = (i & 1) ? 1e9f : -1e9f; /* amax/127 > 65504 */
    deepc_quantize_row(DEEPC_TYPE_Q8_0, x, &b, 32);
    assert_int_equal(b.d, 0x7BFF);
    deepc_dequantize_row(DEEPC_TYPE_Q8_0, &b, y, 32);
    for (int i = 0; i < 32; i++) assert_true(isfinite(y[i]));
}

/* ---- vec_dot ------------------------------------------------------------ */

/* Sequential fp32 summation of n products has error at most
 * gamma_n * sum|w*x| with gamma_n = n*u/(1-n*u), u = 2^-24 (Higham, Accuracy
 * and Stability, 3.1), counting the rounding of each product too. We allow
 * 2*(n+1)*u, which is above gamma_{n+1} for every n used here. */
static double float_dot_tolerance(size_t n, double abs_sum) {
    return 2.0 * (double)(n + 1) * 0x1p-24 * abs_sum;
}

static void check_float_vec_dot(deepc_type t) {
    static const size_t lens[] = { 1, 7, 31, 33, 255, 257 };
    const deepc_kernels *k = deepc_kernels_scalar();
    float w[257], wq_back[257], x[257];
    uint32_t wq[257]; /* room for 257 elements of any float type */
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li];
        for (size_t i = 0; i < n; i++) {
            w[i] = rng_uniform(-2.0f, 2.0f);
            x[i] = rng_uniform(-2.0f, 2.0f);
        }
        deepc_quantize_row(t, w, wq, n);
        deepc_dequantize_row(t, wq, wq_back, n);
        double ref = 0.0, abs_sum = 0.0;
        for (size_t i = 0; i < n; i++) {
            ref += (double)wq_back[i] * x[i];
            abs_sum += fabs((double)wq_back[i] * x[i]);
        }
        float got = k->vec_dot[t](n, wq, x);
        double tol = float_dot_tolerance(n, abs_sum);
        if (fabs(got - ref) > tol)
            fail_msg("type %d n=%zu got=%.9g ref=%.9g tol=%g", (int)t, n, got, ref, tol);
    }
}

static void test_vec_dot_f32_matches_double_reference(void **state) {
    (void)state;
    check_float_vec_dot(DEEPC_TYPE_F32);
}

static void test_vec_dot_f16_matches_double_reference(void **state) {
    (void)state;
    check_float_vec_dot(DEEPC_TYPE_F16);
}

static void test_vec_dot_bf16_matches_double_reference(void **state) {
    (void)state;
    check_float_vec_dot(DEEPC_TYPE_BF16);
}

/* Q8_0: each block's integer dot is exact; d_w*d_x, its product with the
 * integer sum, and the running sum over nb blocks each round once, so the
 * error is at most gamma_{nb+2} * sum over blocks |isum*dw*dx|, which is
 * <= sum|w*x| of the dequantized values. Tolerance 2*(nb+3)*u*sum|w*x|. */
static void test_vec_dot_q8_0_matches_double_reference(void **state) {
    (void)state;
    static const size_t lens[] = { 32, 64, 96, 256, 4096 };
    const deepc_kernels *k = deepc_kernels_scalar();
    assert_int_equal(k->act_type[DEEPC_TYPE_Q8_0], DEEPC_TYPE_Q8_0);
    static float w[4096], x[4096], wd[4096], xd[4096];
    static deepc_block_q8_0 wq[128], xq[128];
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li], nb = n / DEEPC_QK8_0;
        for (size_t i = 0; i < n; i++) {
            w[i] = rng_uniform(-0.1f, 0.1f);
            x[i] = rng_uniform(-8.0f, 8.0f);
        }
        deepc_quantize_row(DEEPC_TYPE_Q8_0, w, wq, n);
        deepc_quantize_row(DEEPC_TYPE_Q8_0, x, xq, n);
        deepc_dequantize_row(DEEPC_TYPE_Q8_0, wq, wd, n);
        deepc_dequantize_row(DEEPC_TYPE_Q8_0, xq, xd, n);
        double ref = 0.0, abs_sum = 0.0;
        for (size_t i = 0; i < n; i++) {
            ref += (double)wd[i] * xd[i];
            abs_sum += fabs((double)wd[i] * xd[i]);
        }
        float got = k->vec_dot[DEEPC_TYPE_Q8_0](n, wq, xq);
        double tol = 2.0 * (double)(nb + 3) * 0x1p-24 * abs_sum;
        if (fabs(got - ref) > tol) fail_msg("n=%zu got=%.9g ref=%.9g tol=%g", n, got, ref, tol);
    }
}

static void test_vec_dot_of_length_zero_is_zero(void **state) {
    (void)state;
    const deepc_kernels *k = deepc_kernels_scalar();
    float dummy = 1.0f;
    for (int t = 0; t < DEEPC_TYPE_COUNT; t++) assert_true(k->vec_dot[t](0, &dummy, &dummy) == 0.0f);
}

/* ---- kernel tables and selection ---------------------------------------- */

static void test_scalar_table_is_complete(void **state) {
    (void)state;
    const deepc_kernels *k = deepc_kernels_scalar();
    assert_string_equal(k->name, "scalar");
    for (int t = 0; t < DEEPC_TYPE_COUNT; t++) assert_non_null(k->vec_dot[t]);
    assert_int_equal(k->act_type[DEEPC_TYPE_F32], DEEPC_TYPE_F32);
    assert_int_equal(k->act_type[DEEPC_TYPE_F16], DEEPC_TYPE_F32);
    assert_int_equal(k->act_type[DEEPC_TYPE_BF16], DEEPC_TYPE_F32);
    assert_int_equal(k->act_type[DEEPC_TYPE_Q8_0], DEEPC_TYPE_Q8_0);
}

static void test_select_returns_scalar_by_name_or_default(void **state) {
    (void)state;
    unsetenv("DEEPC_ISA");
    assert_ptr_equal(deepc_kernels_select("scalar"), deepc_kernels_scalar());
    assert_non_null(deepc_kernels_select(NULL));
    assert_non_null(deepc_kernels_select(""));
}

static void test_select_rejects_unknown_names(void **state) {
    (void)state;
    unsetenv("DEEPC_ISA");
    assert_null(deepc_kernels_select("avx9000"));
    assert_null(deepc_kernels_select("SCALAR")); /* names are exact */
}

static void test_select_honours_deepc_isa_when_not_forced(void **state) {
    (void)state;
    setenv("DEEPC_ISA", "scalar", 1);
    assert_ptr_equal(deepc_kernels_select(NULL), deepc_kernels_scalar());
    setenv("DEEPC_ISA", "bogus", 1);
    assert_null(deepc_kernels_select(NULL));
    /* an explicit name wins over the environment */
    assert_ptr_equal(deepc_kernels_select("scalar"), deepc_kernels_scalar());
    unsetenv("DEEPC_ISA");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_info_describes_each_type),
        cmocka_unit_test(test_type_info_rejects_invalid_ids),
        cmocka_unit_test(test_type_from_name_maps_names_to_ids),
        cmocka_unit_test(test_row_bytes_requires_whole_blocks),
        cmocka_unit_test(test_fp16_to_fp32_decodes_known_patterns),
        cmocka_unit_test(test_fp32_to_fp16_encodes_exact_values),
        cmocka_unit_test(test_fp32_to_fp16_rounds_ties_to_even),
        cmocka_unit_test(test_fp32_to_fp16_overflows_to_inf_from_65520),
        cmocka_unit_test(test_fp32_to_fp16_rounds_subnormals_to_even),
        cmocka_unit_test(test_fp32_to_fp16_keeps_nan),
        cmocka_unit_test(test_fp16_round_trips_all_65536_codes),
        cmocka_unit_test(test_fp32_to_fp16_rounds_every_midpoint_correctly),
        cmocka_unit_test(test_bf16_converts_known_patterns),
        cmocka_unit_test(test_fp32_to_bf16_rounds_ties_to_even),
        cmocka_unit_test(test_fp32_to_bf16_keeps_nan),
        cmocka_unit_test(test_bf16_round_trips_all_65536_codes),
        cmocka_unit_test(test_float_rows_convert_elementwise_at_odd_lengths),
        cmocka_unit_test(test_q8_0_round_trip_error_within_half_scale),
        cmocka_unit_test(test_q8_0_scale_is_fp16_of_amax_over_127),
        cmocka_unit_test(test_q8_0_all_zero_block_has_zero_scale),
        cmocka_unit_test(test_q8_0_huge_block_keeps_finite_scale),
        cmocka_unit_test(test_vec_dot_f32_matches_double_reference),
        cmocka_unit_test(test_vec_dot_f16_matches_double_reference),
        cmocka_unit_test(test_vec_dot_bf16_matches_double_reference),
        cmocka_unit_test(test_vec_dot_q8_0_matches_double_reference),
        cmocka_unit_test(test_vec_dot_of_length_zero_is_zero),
        cmocka_unit_test(test_scalar_table_is_complete),
        cmocka_unit_test(test_select_returns_scalar_by_name_or_default),
        cmocka_unit_test(test_select_rejects_unknown_names),
        cmocka_unit_test(test_select_honours_deepc_isa_when_not_forced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
