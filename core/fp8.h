/* fp8.h - FP8 E4M3FN, the weight type of the DeepSeek-V3 / R1 checkpoints,
 * and its 128x128 block dequantization with `weight_scale_inv`.
 *
 * E4M3FN (torch.float8_e4m3fn): 1 sign bit, 4 exponent bits (bias 7),
 * 3 mantissa bits. exponent 0 = subnormal m/8 * 2^-6 (= m * 2^-9); exponents
 * 1..15 = (1 + m/8) * 2^(e-7); no infinities; S.1111.111 (0x7F, 0xFF) is NaN,
 * so the largest finite value is S.1111.110 = 448.
 *
 * Block scaling (DeepSeek-V3 inference/kernel.py weight_dequant,
 * fp8_cast_bf16.py): a weight W of R x C fp8 values comes with
 * `<name>_scale_inv`, fp32 [ceil(R/128)][ceil(C/128)]; element (r, c) is
 *   fp32(W[r][c]) * scale_inv[r / 128][c / 128]
 * (one fp32 multiply; edge blocks are simply smaller). */
#ifndef DEEPC_FP8_H
#define DEEPC_FP8_H

#include <stdint.h>

#define DEEPC_FP8_BLOCK 128           /* rows and columns per weight_scale_inv entry */
#define DEEPC_FP8_E4M3_MAX 448.0f

/* Exact decode of one code; NaN for 0x7F / 0xFF. */
float deepc_fp8_e4m3_to_f32(uint8_t b);

/* Fills table[256] with the decode of every code (caller-owned storage). */
void deepc_fp8_e4m3_table(float table[256]);

/* Round to nearest, ties to even; |f| >= 448 (and +-inf) saturate to +-448
 * (0x7E / 0xFE); NaN -> 0x7F with the sign of f; -0 -> 0x80; magnitudes at or
 * below 2^-10 (half the smallest subnormal) round to a signed zero. */
uint8_t deepc_fp32_to_fp8_e4m3(float f);

/* Dequantizes rows r0 .. r0+nrows-1 of one R x C tensor.
 *   w:         nrows * cols codes, row-major, starting with row r0
 *   scale_inv: the whole tensor's [ceil(R/128)][scale_cols] fp32 scales
 *   scale_cols: ceil(C/128)
 *   out:       nrows * cols floats, row-major
 * The caller checks r0 + nrows <= R and the scale tensor's shape. Allocates
 * nothing. */
void deepc_fp8_dequant_rows(const uint8_t *w, uint64_t r0, uint64_t nrows, uint64_t cols,
                            const float *scale_inv, uint64_t scale_cols, float *out);

#endif
