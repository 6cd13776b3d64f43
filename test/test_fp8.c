/* test_fp8.c - FP8 E4M3FN decode/encode and the 128x128 weight_scale_inv
 * block dequantization (core/fp8.c).
 *
 * Expected decodes are computed here from the bit-field definition in double
 * (sign, 4-bit exponent with bias 7, 3-bit mantissa, subnormals at exponent
 * 0, only S.1111.111 NaN), independently of the library's bit tricks, and a
 * few are pinned to hand-known values. Every E4M3 value is exact in float,
 * so decodes are compared for exact equality. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fp8.h"

/* The definition, straight: (-1)^s * 2^(1-7) * (m/8)        for e == 0
 *                           (-1)^s * 2^(e-7) * (1 + m/8)    otherwise
 * NaN when e == 15 and m == 7. */
static double fp8_by_definition(unsigned code) {
    unsigned s = code >> 7, e = (code >> 3) & 15, m = code & 7;
    if (e == 15 && m == 7) return NAN;
    double mag = e == 0 ? ldexp(m / 8.0, 1 - 7) : ldexp(1.0 + m / 8.0, (int)e - 7);
    return s ? -mag : mag;
}

static void test_all_256_codes_match_definition(void **state) {
    (void)state;
    for (unsigned c = 0; c < 256; c++) {
        double want = fp8_by_definition(c);
        float got = deepc_fp8_e4m3_to_f32((uint8_t)c);
        if (isnan(want)) {
            assert_true(isnan(got));
            continue;
        }
        if ((double)got != want) fail_msg("code 0x%02X: got %.9g want %.9g", c, got, want);
        /* sign of zero matters too: 0x80 is -0 */
        assert_int_equal(signbit(got) != 0, (c & 0x80) != 0);
    }
}

/* Hand-known values: 0x38 = 0.0111.000 = 2^0 = 1; 0x7E = 0.1111.110 =
 * 1.75 * 2^8 = 448 (max); 0x01 = smallest subnormal 1/8 * 2^-6 = 2^-9;
 * 0x08 = smallest normal 2^-6; 0x07 = largest subnormal 7 * 2^-9;
 * 0xC0 = 1.1000.000 = -2; 0x80 = -0; 0x00 = +0. */
static void test_known_values(void **state) {
    (void)state;
    assert_true(deepc_fp8_e4m3_to_f32(0x38) == 1.0f);
    assert_true(deepc_fp8_e4m3_to_f32(0x7E) == 448.0f);
    assert_true(deepc_fp8_e4m3_to_f32(0xFE) == -448.0f);
    assert_true(deepc_fp8_e4m3_to_f32(0x01) == 0x1p-9f);
    assert_true(deepc_fp8_e4m3_to_f32(0x08) == 0x1p-6f);
    assert_true(deepc_fp8_e4m3_to_f32(0x07) == 7.0f * 0x1p-9f);
    assert_true(deepc_fp8_e4m3_to_f32(0xC0) == -2.0f);
    assert_true(deepc_fp8_e4m3_to_f32(0x00) == 0.0f && !signbit(deepc_fp8_e4m3_to_f32(0x00)));
    assert_true(deepc_fp8_e4m3_to_f32(0x80) == 0.0f && signbit(deepc_fp8_e4m3_to_f32(0x80)));
}

/* Only 0x7F and 0xFF are NaN; E4M3FN has no infinities. */
static void test_nan_codes(void **state) {
    (void)state;
    int nans = 0;
    for (unsigned c = 0; c < 256; c++) {
        float v = deepc_fp8_e4m3_to_f32((uint8_t)c);
        assert_false(isinf(v));
        if (isnan(v)) {
            nans++;
            assert_true(c == 0x7F || c == 0xFF);
        }
    }
    assert_int_equal(nans, 2);
}

static void test_table_matches_scalar(void **state) {
    (void)state;
    float t[256];
    deepc_fp8_e4m3_table(t);
    for (int c = 0; c < 256; c++) {
        float v = deepc_fp8_e4m3_to_f32((uint8_t)c);
        assert_memory_equal(&t[c], &v, sizeof v);
    }
}

/* Every non-NaN code survives decode -> encode unchanged (incl. -0 = 0x80). */
static void test_encode_decode_round_trip(void **state) {
    (void)state;
    for (unsigned c = 0; c < 256; c++) {
        if (c == 0x7F || c == 0xFF) continue;
        uint8_t back = deepc_fp32_to_fp8_e4m3(deepc_fp8_e4m3_to_f32((uint8_t)c));
        if (back != c) fail_msg("code 0x%02X came back as 0x%02X", c, back);
    }
}

/* Rounding and saturation, hand-computed:
 *  - 1.0625 is halfway between 1 (0x38) and 1.125 (0x39): ties to even -> 0x38;
 *    1.1875 is halfway between 1.125 (0x39) and 1.25 (0x3A) -> 0x3A.
 *  - 1.07 is nearer 1.125 -> 0x39.
 *  - 3 * 2^-10 is halfway between 2^-9 (0x01) and 2^-8 (0x02) -> even 0x02;
 *    2^-10 is halfway between 0 and 2^-9 -> even 0x00.
 *  - 15.5 * 2^-10 (just under 2^-6 by half a subnormal step) is halfway
 *    between 7*2^-9 (0x07) and 2^-6 (0x08) -> even 0x08 (the normal).
 *  - 464 (halfway 448..480) and anything larger, inf included -> 448 (0x7E).
 *  - NaN -> 0x7F / 0xFF by sign. */
static void test_encode_rounding_and_saturation(void **state) {
    (void)state;
    assert_int_equal(deepc_fp32_to_fp8_e4m3(1.0625f), 0x38);
    assert_int_equal(deepc_fp32_to_fp8_e4m3(1.1875f), 0x3A);
    assert_int_equal(deepc_fp32_to_fp8_e4m3(1.07f), 0x39);
    assert_int_equal(deepc_fp32_to_fp8_e4m3(-1.07f), 0xB9);
    assert_int_equal(deepc_fp32_to_fp8_e4m3(3.0f * 0x1p-10f), 0x02);
    assert_int_equal(deepc_fp32_to_fp8_e4m3(0x1p-10f), 0x00);
    assert_int_equal(deepc_fp32_to_fp8_e4m3(-0x1p-10f), 0x80);
    assert_int_equal(deepc_fp32_to_fp8_e4m3(15.5f * 0x1p-10f), 0x08);
    assert_int_equal(deepc_fp32_to_fp8_e4m3(447.0f), 0x7E);
    assert_int_equal(deepc_fp32_to_fp8_e4m3(464.0f), 0x7E);
    assert_int_equal(deepc_fp32_to_fp8_e4m3(1e30f), 0x7E);
    assert_int_equal(deepc_fp32_to_fp8_e4m3(INFINITY), 0x7E);
    assert_int_equal(deepc_fp32_to_fp8_e4m3(-INFINITY), 0xFE);
    assert_int_equal(deepc_fp32_to_fp8_e4m3(NAN), 0x7F);
    assert_int_equal(deepc_fp32_to_fp8_e4m3(-NAN), 0xFF);
    assert_int_equal(deepc_fp32_to_fp8_e4m3(-0.0f), 0x80);
}

/* Encoding picks the nearest code: for values sampled densely over the whole
 * range, no other finite code is strictly closer, and on an exact tie the
 * chosen code has an even mantissa. Checked by brute force over all codes. */
static void test_encode_is_nearest(void **state) {
    (void)state;
    for (int i = -60000; i <= 60000; i++) {
        float x = (float)(i * 0.0075);                       /* -450 .. 450 */
        if (fabsf(x) < 1.0f) x *= 0.01f;                       /* and a dense tiny range */
        uint8_t c = deepc_fp32_to_fp8_e4m3(x);
        double got = fabs((double)deepc_fp8_e4m3_to_f32(c) - x);
        for (unsigned k = 0; k < 256; k++) {
            double v = fp8_by_definition(k);
            if (isnan(v)) continue;
            double d = fabs(v - x);
            if (d < got) fail_msg("x=%.9g -> 0x%02X, but 0x%02X is closer", x, c, k);
            if (d == got && v != deepc_fp8_e4m3_to_f32(c) && fabs(x) < 448)
                assert_int_equal(c & 1, 0);                    /* tie -> even */
        }
    }
}

/* 300 x 200 tensor: scale_inv is [3][2]; blocks are 128 x 128 except the
 * last block row (44 rows) and last block column (72 columns). Compared with
 * the naive per-element definition fp32(w) * scale_inv[r/128][c/128], for the
 * whole tensor and for row slices that start mid-block and cross a block
 * boundary (r0 = 100, 60 rows; r0 = 255, 45 rows). */
static void test_block_dequant_partial_blocks(void **state) {
    (void)state;
    enum { R = 300, C = 200, SR = 3, SC = 2 };
    uint8_t *w = malloc(R * C);
    float *out = malloc(sizeof(float) * R * C);
    float scale[SR * SC] = {0.5f, 2.0f, 0.125f, 3.0f, 1e-3f, 7.0f};
    assert_non_null(w);
    assert_non_null(out);
    uint32_t x = 7;
    for (int i = 0; i < R * C; i++) {
        x = x * 1664525u + 1013904223u;
        uint8_t b = (uint8_t)(x >> 24);
        if ((b & 0x7F) == 0x7F) b ^= 1;                        /* no NaN codes */
        w[i] = b;
    }
    const struct { uint64_t r0, n; } slices[] = {{0, R}, {100, 60}, {255, 45}, {299, 1}};
    for (size_t t = 0; t < sizeof slices / sizeof slices[0]; t++) {
        uint64_t r0 = slices[t].r0, n = slices[t].n;
        deepc_fp8_dequant_rows(w + r0 * C, r0, n, C, scale, SC, out);
        for (uint64_t i = 0; i < n; i++)
            for (uint64_t c = 0; c < C; c++) {
                uint64_t r = r0 + i;
                float want = (float)fp8_by_definition(w[r * C + c]) * scale[(r / 128) * SC + c / 128];
                if (out[i * C + c] != want)
                    fail_msg("r=%llu c=%llu got %g want %g", (unsigned long long)r,
                             (unsigned long long)c, out[i * C + c], want);
            }
    }
    free(w);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_256_codes_match_definition),
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_nan_codes),
        cmocka_unit_test(test_table_matches_scalar),
        cmocka_unit_test(test_encode_decode_round_trip),
        cmocka_unit_test(test_encode_rounding_and_saturation),
        cmocka_unit_test(test_encode_is_nearest),
        cmocka_unit_test(test_block_dequant_partial_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
