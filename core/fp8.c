/* fp8.c - FP8 E4M3FN decode/encode and 128x128 block dequantization; the
 * format is described in fp8.h. Every E4M3 value is exactly representable in
 * fp32, so decoding is exact; the table is rebuilt per dequant call on the
 * stack (256 entries) so there is no global state to initialize. */
#include "fp8.h"

#include <math.h>
#include <string.h>

float deepc_fp8_e4m3_to_f32(uint8_t b) {
    const uint32_t sign = (uint32_t)(b >> 7) << 31;
    const uint32_t e = (b >> 3) & 0xFu;
    const uint32_t m = b & 0x7u;
    float f;
    if (e == 0xFu && m == 0x7u) {
        f = NAN;
        return sign ? -f : f;
    }
    if (e == 0) {
        f = (float)m * 0x1p-9f;               /* subnormal: m/8 * 2^-6 */
        return sign ? -f : f;
    }
    /* normal: rebias the exponent from 7 to 127 and widen the mantissa */
    uint32_t bits = sign | ((e + 120u) << 23) | (m << 20);
    memcpy(&f, &bits, sizeof f);
    return f;
}

void deepc_fp8_e4m3_table(float table[256]) {
    for (int i = 0; i < 256; i++) table[i] = deepc_fp8_e4m3_to_f32((uint8_t)i);
}

/* x >= 0, x exactly representable with few bits after the point; returns x
 * rounded to the nearest integer, ties to even (independent of fenv). */
static float round_half_even(float x) {
    float fl = floorf(x);
    float diff = x - fl;                      /* exact: x has < 24 significant bits */
    if (diff > 0.5f) return fl + 1.0f;
    if (diff < 0.5f) return fl;
    return fmodf(fl, 2.0f) == 0.0f ? fl : fl + 1.0f;
}

uint8_t deepc_fp32_to_fp8_e4m3(float f) {
    const uint8_t sign = signbit(f) ? 0x80 : 0x00;
    if (isnan(f)) return (uint8_t)(sign | 0x7F);
    float a = fabsf(f);
    if (a >= DEEPC_FP8_E4M3_MAX) return (uint8_t)(sign | 0x7E);
    if (a < 0x1p-6f) {
        /* subnormal range: units of 2^-9; q == 8 rounds up into code 0x08,
         * the smallest normal, which is exactly what the integer encodes */
        float q = round_half_even(a * 0x1p9f);
        return (uint8_t)(sign | (uint8_t)q);
    }
    int ex;
    frexpf(a, &ex);                           /* a = fr * 2^ex, fr in [0.5, 1) */
    int E = ex - 1;                           /* a in [2^E, 2^(E+1)), E in -6..8 */
    float q = round_half_even(ldexpf(a, 3 - E));   /* in [8, 16] */
    if (q >= 16.0f) { q = 8.0f; E++; }
    /* a < 448 guarantees E + 7 <= 15 and never the NaN pattern */
    return (uint8_t)(sign | (uint8_t)((E + 7) << 3) | (uint8_t)((int)q - 8));
}

void deepc_fp8_dequant_rows(const uint8_t *w, uint64_t r0, uint64_t nrows, uint64_t cols,
                            const float *scale_inv, uint64_t scale_cols, float *out) {
    float lut[256];
    deepc_fp8_e4m3_table(lut);
    for (uint64_t i = 0; i < nrows; i++) {
        const uint64_t r = r0 + i;
        const float *srow = scale_inv + (r / DEEPC_FP8_BLOCK) * scale_cols;
        const uint8_t *src = w + i * cols;
        float *dst = out + i * cols;
        for (uint64_t c0 = 0; c0 < cols; c0 += DEEPC_FP8_BLOCK) {
            const float s = srow[c0 / DEEPC_FP8_BLOCK];
            const uint64_t c1 = cols - c0 < DEEPC_FP8_BLOCK ? cols : c0 + DEEPC_FP8_BLOCK;
            for (uint64_t c = c0; c < c1; c++) dst[c] = lut[src[c]] * s;
        }
    }
}
