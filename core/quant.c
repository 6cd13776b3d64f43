/* quant.c - the scalar ground truth for every tensor type of the .dqf format:
 * the type traits table, fp16/bf16 <-> fp32 conversion, and row
 * quantize/dequantize for F32, F16, BF16 and Q8_0 (the k-quants and fp8 are
 * in quant_k.c, q4_1 in quant_q4_1.c).
 *
 * Everything here is portable C (no F16C or NEON conversions): SIMD backends in
 * arch/ may use hardware conversions, and they are tested against this file.
 * Both fp16 and bf16 conversions round to nearest, ties to even, like the
 * hardware instructions, so a backend can match bit for bit. */
#include "quant.h"

#include <math.h>
#include <string.h>

_Static_assert(sizeof(float) == 4, "deepc assumes IEEE-754 binary32 floats");
_Static_assert(DEEPC_QK8_0 == 32, "q8_0 kernels assume blocks of 32");

/* ---- type traits ------------------------------------------------------- */

/* Indexed by deepc_type; ids are stored in files, so this order is fixed. */
static const deepc_type_traits type_traits[DEEPC_TYPE_COUNT] = {
    [DEEPC_TYPE_F32]  = { "f32",  1,           sizeof(float),            false },
    [DEEPC_TYPE_F16]  = { "f16",  1,           sizeof(uint16_t),         false },
    [DEEPC_TYPE_BF16] = { "bf16", 1,           sizeof(uint16_t),         false },
    [DEEPC_TYPE_Q8_0] = { "q8_0", DEEPC_QK8_0, sizeof(deepc_block_q8_0), true  },
    [DEEPC_TYPE_Q4_K] = { "q4_k", DEEPC_QK_K,  sizeof(deepc_block_q4_k), true  },
    [DEEPC_TYPE_Q3_K] = { "q3_k", DEEPC_QK_K,  sizeof(deepc_block_q3_k), true  },
    [DEEPC_TYPE_Q2_K] = { "q2_k", DEEPC_QK_K,  sizeof(deepc_block_q2_k), true  },
    [DEEPC_TYPE_FP8_B128] = { "fp8_b128", DEEPC_QK_FP8, sizeof(deepc_block_fp8_b128), true },
    [DEEPC_TYPE_Q8_K] = { "q8_k", DEEPC_QK_K,  sizeof(deepc_block_q8_k), true  },
    [DEEPC_TYPE_Q4_1] = { "q4_1", DEEPC_QK4_1, sizeof(deepc_block_q4_1), true  },
    [DEEPC_TYPE_Q6_K] = { "q6_k", DEEPC_QK_K,  sizeof(deepc_block_q6_k), true  },
};

const deepc_type_traits *deepc_type_info(int t) {
    if (t < 0 || t >= DEEPC_TYPE_COUNT) return NULL;
    return &type_traits[t];
}

int deepc_type_from_name(const char *name) {
    if (!name) return -1;
    for (int t = 0; t < DEEPC_TYPE_COUNT; t++)
        if (strcmp(type_traits[t].name, name) == 0) return t;
    return -1;
}

size_t deepc_type_row_bytes(deepc_type t, size_t n) {
    const deepc_type_traits *tr = deepc_type_info((int)t);
    if (!tr || n % tr->block_elems != 0) return 0;
    size_t blocks = n / tr->block_elems;
    /* 0 also signals overflow: callers must treat 0 for n > 0 as invalid. */
    if (blocks != 0 && tr->block_bytes > SIZE_MAX / blocks) return 0;
    return blocks * tr->block_bytes;
}

/* ---- fp16 / bf16 <-> fp32 ---------------------------------------------- */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Exact: every fp16 value is representable in fp32. NaN payloads are kept
 * (shifted into the top of the fp32 mantissa), so signalling-ness is kept too. */
float deepc_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) /* inf or NaN */
        return f32_from_bits(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        /* zero or subnormal: value = mant * 2^-24, exact in fp32 */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    /* normal: rebias the exponent from 15 to 127 */
    return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
}

/* Round to nearest, ties to even. Values >= 65520 (halfway between the largest
 * finite 65504 and 2^16) become inf, as IEEE overflow under RNE requires; the
 * carry out of the mantissa does this naturally. NaN stays NaN with the top 10
 * payload bits kept (not quieted), so fp16 -> fp32 -> fp16 is the identity on
 * all 65536 codes; a payload that lives only in the dropped low bits gets the
 * quiet bit so the result is still a NaN. */
uint16_t deepc_fp32_to_fp16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;

    if (ax > 0x7f800000u) { /* NaN */
        uint16_t m = (uint16_t)((ax >> 13) & 0x3ffu);
        return (uint16_t)(sign | 0x7c00u | (m ? m : 0x200u));
    }
    if (ax >= 0x47800000u) /* >= 2^16 (or inf): always inf */
        return (uint16_t)(sign | 0x7c00u);
    if (ax >= 0x38800000u) { /* >= 2^-14: normal fp16 range */
        uint32_t h = (ax - 0x38000000u) >> 13; /* rebias 127 -> 15, drop 13 bits */
        uint32_t rem = ax & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
        return (uint16_t)(sign | h);
    }
    if (ax < 0x33000000u) /* < 2^-25: below half the smallest subnormal */
        return sign;
    /* subnormal result: h = value / 2^-24 = m * 2^(e - 126), shift in [14, 24] */
    uint32_t e = ax >> 23;
    uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e;
    uint32_t h = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (h & 1u))) h++; /* may carry into 0x400 = min normal */
    return (uint16_t)(sign | h);
}

float deepc_bf16_to_fp32(uint16_t h) {
    return f32_from_bits((uint32_t)h << 16);
}

/* bf16 is the top half of fp32, so rounding is an add of 0x7fff plus the
 * lowest kept bit (ties to even); overflow rounds into inf by carry. NaN keeps
 * its top payload bits, with the quiet bit set only if they were all zero. */
uint16_t deepc_fp32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) {
        uint16_t h = (uint16_t)(x >> 16);
        return (h & 0x7fu) ? h : (uint16_t)(h | 0x40u);
    }
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

/* ---- Q8_0 -------------------------------------------------------------- */

/* One block: d = max|x| / 127, stored as fp16. We quantize with the inverse
 * of the fp16-ROUNDED d (not of the exact amax/127), because the stored d is
 * what dequantization multiplies by: every element that is not clamped then
 * has error <= d/2. Only when d rounded down can |x|/d exceed 127 (by at most
 * 2^-11 relative for a normal fp16 d, more for a tiny subnormal one), so the
 * clamp costs those few elements at most 127 * |d - amax/127| extra. Using the exact inverse instead would add
 * |q| * |d - amax/127| to EVERY element.
 * Rounding is to nearest even (lrintf in the default FP environment), which
 * is what SIMD convert instructions do, so backends can match exactly.
 * Edge cases: an all-zero block gets d = 0, q = 0; a scale beyond the fp16
 * range is clamped to 65504 (the largest finite fp16) so no inf reaches the
 * file; NaN elements quantize to 0. */
static void quantize_block_q8_0(const float *x, deepc_block_q8_0 *b) {
    float amax = 0.0f;
    for (int i = 0; i < DEEPC_QK8_0; i++) {
        float a = fabsf(x[i]);
        if (a > amax) amax = a; /* NaN compares false and is skipped */
    }
    uint16_t dh = deepc_fp32_to_fp16(amax / 127.0f);
    if ((dh & 0x7fffu) >= 0x7c00u) dh = 0x7bffu; /* inf: clamp to 65504 */
    float d = deepc_fp16_to_fp32(dh);
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = dh;
    for (int i = 0; i < DEEPC_QK8_0; i++) {
        float v = x[i] * id;
        long q;
        if (v >= 127.0f) q = 127;
        else if (v <= -127.0f) q = -127;
        else if (v == v) q = lrintf(v);
        else q = 0; /* NaN */
        b->qs[i] = (int8_t)q;
    }
}

static void dequantize_block_q8_0(const deepc_block_q8_0 *b, float *y) {
    float d = deepc_fp16_to_fp32(b->d);
    for (int i = 0; i < DEEPC_QK8_0; i++) y[i] = d * (float)b->qs[i];
}

/* ---- rows -------------------------------------------------------------- */

/* dst is byte-addressed through memcpy for the 16-bit types so callers may
 * pass any alignment (file data is aligned, scratch may not be). The k-quant
 * and fp8 types live in quant_k.c. */
void deepc_quantize_row(deepc_type t, const float *src, void *dst, size_t n) {
    deepc_quantize_row_imp(t, src, dst, n, NULL);
}

void deepc_quantize_row_imp(deepc_type t, const float *src, void *dst, size_t n, const float *imp) {
    switch (t) {
    case DEEPC_TYPE_F32:
        memmove(dst, src, n * sizeof(float));
        break;
    case DEEPC_TYPE_F16: {
        unsigned char *o = dst;
        for (size_t i = 0; i < n; i++) {
            uint16_t h = deepc_fp32_to_fp16(src[i]);
            memcpy(o + 2 * i, &h, 2);
        }
        break;
    }
    case DEEPC_TYPE_BF16: {
        unsigned char *o = dst;
        for (size_t i = 0; i < n; i++) {
            uint16_t h = deepc_fp32_to_bf16(src[i]);
            memcpy(o + 2 * i, &h, 2);
        }
        break;
    }
    case DEEPC_TYPE_Q8_0: {
        deepc_block_q8_0 *b = dst;
        for (size_t i = 0; i < n / DEEPC_QK8_0; i++)
            quantize_block_q8_0(src + i * DEEPC_QK8_0, &b[i]);
        break;
    }
    case DEEPC_TYPE_Q4_K: deepc_quantize_row_q4_k(src, dst, n, imp); break;
    case DEEPC_TYPE_Q3_K: deepc_quantize_row_q3_k(src, dst, n, imp); break;
    case DEEPC_TYPE_Q2_K: deepc_quantize_row_q2_k(src, dst, n, imp); break;
    case DEEPC_TYPE_FP8_B128: deepc_quantize_row_fp8_b128(src, dst, n); break;
    case DEEPC_TYPE_Q8_K: deepc_quantize_row_q8_k(src, dst, n); break;
    case DEEPC_TYPE_Q4_1: deepc_quantize_row_q4_1(src, dst, n, imp); break;
    case DEEPC_TYPE_Q6_K: deepc_quantize_row_q6_k(src, dst, n, imp); break;
    default:
        break;
    }
}

void deepc_dequantize_row(deepc_type t, const void *src, float *dst, size_t n) {
    switch (t) {
    case DEEPC_TYPE_F32:
        memmove(dst, src, n * sizeof(float));
        break;
    case DEEPC_TYPE_F16: {
        const unsigned char *s = src;
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = deepc_fp16_to_fp32(h);
        }
        break;
    }
    case DEEPC_TYPE_BF16: {
        const unsigned char *s = src;
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = deepc_bf16_to_fp32(h);
        }
        break;
    }
    case DEEPC_TYPE_Q8_0: {
        const deepc_block_q8_0 *b = src;
        for (size_t i = 0; i < n / DEEPC_QK8_0; i++)
            dequantize_block_q8_0(&b[i], dst + i * DEEPC_QK8_0);
        break;
    }
    case DEEPC_TYPE_Q4_K: deepc_dequantize_row_q4_k(src, dst, n); break;
    case DEEPC_TYPE_Q3_K: deepc_dequantize_row_q3_k(src, dst, n); break;
    case DEEPC_TYPE_Q2_K: deepc_dequantize_row_q2_k(src, dst, n); break;
    case DEEPC_TYPE_FP8_B128: deepc_dequantize_row_fp8_b128(src, dst, n); break;
    case DEEPC_TYPE_Q8_K: deepc_dequantize_row_q8_k(src, dst, n); break;
    case DEEPC_TYPE_Q4_1: deepc_dequantize_row_q4_1(src, dst, n); break;
    case DEEPC_TYPE_Q6_K: deepc_dequantize_row_q6_k(src, dst, n); break;
    default:
        break;
    }
}
