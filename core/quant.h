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
    DEEPC_TYPE_COUNT
} deepc_type;

#define DEEPC_QK8_0 32
typedef struct {
    uint16_t d;                 /* fp16 scale */
    int8_t qs[DEEPC_QK8_0];
} deepc_block_q8_0;
_Static_assert(sizeof(deepc_block_q8_0) == 34, "q8_0 block must be 34 bytes");

typedef struct {
    const char *name;           /* "f32", "f16", "bf16", "q8_0" */
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

#endif
