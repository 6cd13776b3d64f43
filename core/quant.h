/* quant.h - weight/activation types of the .dqf format and their scalar
 * reference quantize/dequantize routines (the ground truth every SIMD kernel
 * is tested against). Type ids are stored in files: never renumber. */
#ifndef DEEPC_QUANT_H
#define DEEPC_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    DEEPC_TYPE_F32  = 0,
    DEEPC_TYPE_F16  = 1,
    DEEPC_TYPE_BF16 = 2,
    DEEPC_TYPE_Q8_0 = 3,   /* blocks of 32: fp16 scale d + 32 x int8; x = d*q */
    DEEPC_TYPE_Q4_K = 4,   /* 256: 8 x 32 4-bit, 6-bit scales and mins, 4.5 bits/weight */
    DEEPC_TYPE_Q3_K = 5,   /* 256: 16 x 16 3-bit, 6-bit signed scales, 3.4375 bits/weight */
    DEEPC_TYPE_Q2_K = 6,   /* 256: 16 x 16 2-bit, 4-bit scales and mins, 2.625 bits/weight */
    DEEPC_TYPE_FP8_B128 = 7, /* 128: fp32 scale + 128 x E4M3, 8.25 bits/weight */
    DEEPC_TYPE_Q8_K = 8,   /* 256: fp32 scale, 256 x int8, 16 int16 sums: k-quant activations */
    DEEPC_TYPE_Q4_1 = 9,   /* 32: fp16 scale d, fp16 offset m, 32 x 4-bit; x = d*q - m, 5.0 bits/weight */
    DEEPC_TYPE_Q6_K = 10,  /* 256: 16 x 16 6-bit, int8 scales, 6.5625 bits/weight */
    DEEPC_TYPE_COUNT
} deepc_type;

#define DEEPC_QK8_0 32
typedef struct {
    uint16_t d;                 /* fp16 scale */
    int8_t qs[DEEPC_QK8_0];
} deepc_block_q8_0;
_Static_assert(sizeof(deepc_block_q8_0) == 34, "q8_0 block must be 34 bytes");

/* q4_1: the 4-bit type for rows that are not whole 256-element k-quant
 * super-blocks (the converter's fallback, e.g. DeepSeek-V2-Lite's expert
 * down_proj rows of 1408). x = d*q - m, q in [0, 15]; d >= 0, and m is
 * signed (an all-positive block has m < 0, unlike q4_k's unsigned mins, so
 * the 16 levels always span the block's own range). qs[l] holds element l in
 * its low nibble and element l + 16 in its high nibble. Activations: q8_0. */
#define DEEPC_QK4_1 32
typedef struct {
    uint16_t d;                 /* fp16 scale */
    uint16_t m;                 /* fp16 offset, subtracted: x = d*q - m */
    uint8_t qs[DEEPC_QK4_1 / 2];
} deepc_block_q4_1;
_Static_assert(sizeof(deepc_block_q4_1) == 20, "q4_1 block must be 20 bytes");

/* ---- k-quants: 256-element super-blocks (layouts in FORMAT.md) --------- */

#define DEEPC_QK_K 256

/* x = d*sc[j]*q - dmin*mn[j] for element i of sub-block j = i / 32, q in
 * [0, 15]. scales packs eight 6-bit sc and eight 6-bit mn (see
 * deepc_q4_k_unpack_scales). qs: four 32-byte groups; group g holds elements
 * 64g + l in the low nibble of byte l and 64g + 32 + l in the high nibble. */
typedef struct {
    uint16_t d;                 /* fp16 super-scale of the sub-block scales */
    uint16_t dmin;              /* fp16 super-scale of the sub-block mins */
    uint8_t scales[12];
    uint8_t qs[DEEPC_QK_K / 2];
} deepc_block_q4_k;
_Static_assert(sizeof(deepc_block_q4_k) == 144, "q4_k block must be 144 bytes");

/* x = d*(sc[j] - 32)*(q - 4) for element i of sub-block j = i / 16, q in
 * [0, 7]: bits 0-1 of q from qs (as in q2_k), bit 2 is bit i / 32 of
 * hmask[i % 32]. scales packs sixteen 6-bit sc (deepc_q3_k_unpack_scales). */
typedef struct {
    uint8_t hmask[DEEPC_QK_K / 8];
    uint8_t qs[DEEPC_QK_K / 4];
    uint8_t scales[12];
    uint16_t d;                 /* fp16 super-scale (may be negative) */
} deepc_block_q3_k;
_Static_assert(sizeof(deepc_block_q3_k) == 110, "q3_k block must be 110 bytes");

/* x = d*(scales[j] & 15)*q - dmin*(scales[j] >> 4) for element i of sub-block
 * j = i / 16, q in [0, 3]: element 128h + 32s + l is bits 2s..2s+1 of
 * qs[32h + l] (h = 0, 1; s = 0..3; l = 0..31). */
typedef struct {
    uint8_t scales[DEEPC_QK_K / 16];
    uint8_t qs[DEEPC_QK_K / 4];
    uint16_t d;                 /* fp16 super-scale of the sub-block scales */
    uint16_t dmin;              /* fp16 super-scale of the sub-block mins */
} deepc_block_q2_k;
_Static_assert(sizeof(deepc_block_q2_k) == 84, "q2_k block must be 84 bytes");

/* x = d*sc[j]*(q - 32) for element i of sub-block j = i / 16, q in [0, 63]:
 * the low four bits of q are nibble (i % 128) / 64 of ql[64*(i / 128) +
 * i % 64], the top two are bits 2s..2s+1 of qh[32h + l] for i = 128h + 32s
 * + l (the q2_k arrangement). The type for tensors that 4 bits would hurt
 * (output heads, the most sensitive projections). */
typedef struct {
    uint8_t ql[DEEPC_QK_K / 2];
    uint8_t qh[DEEPC_QK_K / 4];
    int8_t scales[DEEPC_QK_K / 16];
    uint16_t d;                 /* fp16 super-scale (may be negative) */
} deepc_block_q6_k;
_Static_assert(sizeof(deepc_block_q6_k) == 210, "q6_k block must be 210 bytes");

/* Code q in [0, 63] of element i of a q6_k block. */
static inline int deepc_q6_k_code(const deepc_block_q6_k *b, int i) {
    int h = i / 128, r = i % 128;
    return ((b->ql[64 * h + r % 64] >> (4 * (r / 64))) & 15) | (((b->qh[32 * h + r % 32] >> (2 * (r / 32))) & 3) << 4);
}

/* The activation side of the k-quants: x = d*q, q in [-127, 127], and
 * bsums[j] = sum of q over elements 16j .. 16j+15 (for the min and offset
 * terms of the weight types). */
typedef struct {
    float d;
    int8_t qs[DEEPC_QK_K];
    int16_t bsums[DEEPC_QK_K / 16];
} deepc_block_q8_k;
_Static_assert(sizeof(deepc_block_q8_k) == 292, "q8_k block must be 292 bytes");

/* FP8 E4M3 (core/fp8.h) with one fp32 scale per 128 elements of a row:
 * x = e4m3(qs[i]) * d. Holds DeepSeek-V3/R1 FP8 weights losslessly. */
#define DEEPC_QK_FP8 128
typedef struct {
    float d;
    uint8_t qs[DEEPC_QK_FP8];
} deepc_block_fp8_b128;
_Static_assert(sizeof(deepc_block_fp8_b128) == 132, "fp8_b128 block must be 132 bytes");

/* Six-bit sub-block scales and mins of q4_k: for j < 4, sc[j] = s[j] & 63 and
 * mn[j] = s[j + 4] & 63; for j >= 4, the low four bits come from s[j + 4]
 * (sc low nibble, mn high nibble) and the top two from bits 6-7 of s[j - 4]
 * (sc) and s[j] (mn). Plain C, shared by every backend. */
static inline void deepc_q4_k_unpack_scales(const uint8_t s[12], uint8_t sc[8], uint8_t mn[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
        sc[j + 4] = (uint8_t)((s[j + 8] & 15) | ((s[j] >> 6) << 4));
        mn[j + 4] = (uint8_t)((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
    }
}

/* Sixteen signed scales of q3_k, each sc - 32 in [-32, 31]: scale j has its
 * low four bits in nibble j / 8 of s[j % 8] and its top two bits in bits
 * 2*(j / 4) .. 2*(j / 4) + 1 of s[8 + j % 4]. */
static inline void deepc_q3_k_unpack_scales(const uint8_t s[12], int8_t sc[16]) {
    for (int j = 0; j < 16; j++) {
        int lo = (s[j % 8] >> (4 * (j / 8))) & 15;
        int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        sc[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

typedef struct {
    const char *name;           /* "f32", "f16", "bf16", "q8_0", "q4_k", ... */
    size_t block_elems;         /* elements per block (1 for float types) */
    size_t block_bytes;         /* bytes per block */
    bool is_quantized;
} deepc_type_traits;

/* NULL when t is not a valid type id (use this to validate file input). */
const deepc_type_traits *deepc_type_info(int t);
/* -1 if the name is unknown. */
int deepc_type_from_name(const char *name);
/* Bytes of a row of n elements; 0 if n is not a multiple of the block size. */
size_t deepc_type_row_bytes(deepc_type t, size_t n);

float deepc_fp16_to_fp32(uint16_t h);
uint16_t deepc_fp32_to_fp16(float f);     /* round to nearest even, inf/nan kept */
float deepc_bf16_to_fp32(uint16_t h);
uint16_t deepc_fp32_to_bf16(float f);     /* round to nearest even, nan kept */

/* n must be a multiple of the type's block size. */
void deepc_quantize_row(deepc_type t, const float *src, void *dst, size_t n);
void deepc_dequantize_row(deepc_type t, const void *src, float *dst, size_t n);

/* deepc_quantize_row with an importance vector: imp[i] >= 0 weighs the
 * squared error of element i (e.g. the mean square of the activation that
 * column i meets); NULL weighs each element by x[i]^2. Only q4_k, q3_k,
 * q2_k, q6_k and q4_1 use it (they choose scales minimizing the weighted error); the other
 * types ignore it. */
void deepc_quantize_row_imp(deepc_type t, const float *src, void *dst, size_t n, const float *imp);

/* ---- k-quant and fp8 rows (core/quant_k.c; called through the two
 * dispatchers above; n a multiple of the block size) ---------------------- */
void deepc_quantize_row_q4_k(const float *x, deepc_block_q4_k *y, size_t n, const float *imp);
void deepc_quantize_row_q3_k(const float *x, deepc_block_q3_k *y, size_t n, const float *imp);
void deepc_quantize_row_q2_k(const float *x, deepc_block_q2_k *y, size_t n, const float *imp);
void deepc_quantize_row_q6_k(const float *x, deepc_block_q6_k *y, size_t n, const float *imp);
void deepc_quantize_row_q8_k(const float *x, deepc_block_q8_k *y, size_t n);
void deepc_quantize_row_fp8_b128(const float *x, deepc_block_fp8_b128 *y, size_t n);
void deepc_dequantize_row_q4_k(const deepc_block_q4_k *x, float *y, size_t n);
void deepc_dequantize_row_q3_k(const deepc_block_q3_k *x, float *y, size_t n);
void deepc_dequantize_row_q2_k(const deepc_block_q2_k *x, float *y, size_t n);
void deepc_dequantize_row_q6_k(const deepc_block_q6_k *x, float *y, size_t n);
void deepc_dequantize_row_q8_k(const deepc_block_q8_k *x, float *y, size_t n);
void deepc_dequantize_row_fp8_b128(const deepc_block_fp8_b128 *x, float *y, size_t n);

/* ---- q4_1 rows (core/quant_q4_1.c; n a multiple of 32) ---------------- */
void deepc_quantize_row_q4_1(const float *x, deepc_block_q4_1 *y, size_t n, const float *imp);
void deepc_dequantize_row_q4_1(const deepc_block_q4_1 *x, float *y, size_t n);

#endif
