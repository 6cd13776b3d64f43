/* scalar.c - the portable scalar backend (the reference every SIMD backend is
 * tested against) and the backend selector deepc_kernels_select().
 *
 * Kernels here are deliberately plain: one fp32 accumulator summed in element
 * order (or block order for Q8_0), so results are reproducible and easy to
 * reason about. They never allocate. Compiled with no -m flags. */
#include "kernels.h"
#include "cpu.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(deepc_block_q8_0) == 2 + DEEPC_QK8_0, "q8_0 block layout");
_Static_assert(sizeof(deepc_block_q8_k) == 4 + DEEPC_QK_K + 2 * DEEPC_QK_K / 16, "q8_k block layout");
_Static_assert(sizeof(deepc_block_fp8_b128) == 4 + DEEPC_QK_FP8, "fp8_b128 block layout");

/* ---- vec_dot kernels ---------------------------------------------------- */

/* The 16-bit weights are read through memcpy so the kernels accept any
 * alignment; compilers turn this into a plain load. */
static uint16_t load_u16(const unsigned char *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static float vec_dot_f32(size_t n, const void *w, const void *x) {
    const float *a = w, *b = x;
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) sum += a[i] * b[i];
    return sum;
}

static float vec_dot_f16(size_t n, const void *w, const void *x) {
    const unsigned char *a = w;
    const float *b = x;
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) sum += deepc_fp16_to_fp32(load_u16(a + 2 * i)) * b[i];
    return sum;
}

static float vec_dot_bf16(size_t n, const void *w, const void *x) {
    const unsigned char *a = w;
    const float *b = x;
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) sum += deepc_bf16_to_fp32(load_u16(a + 2 * i)) * b[i];
    return sum;
}

/* Q8_0 weight x Q8_0 activation: exact integer dot per block (|sum| <= 32 *
 * 127 * 127, far inside int32), then scaled by d_w * d_x in fp32 and summed
 * over blocks in order. n must be a multiple of 32. */
static float vec_dot_q8_0(size_t n, const void *w, const void *x) {
    const deepc_block_q8_0 *a = w, *b = x;
    float sum = 0.0f;
    for (size_t ib = 0; ib < n / DEEPC_QK8_0; ib++) {
        int32_t isum = 0;
        for (int j = 0; j < DEEPC_QK8_0; j++) isum += (int32_t)a[ib].qs[j] * (int32_t)b[ib].qs[j];
        float d = deepc_fp16_to_fp32(a[ib].d) * deepc_fp16_to_fp32(b[ib].d);
        sum += (float)isum * d;
    }
    return sum;
}

/* Q4_1 weight x Q8_0 activation: per block the exact integer dot of the
 * codes with the activation (|isum| <= 32 * 15 * 127) and the activation's
 * own sum (|xsum| <= 32 * 127, for the offset term); the value is
 * d_x * (d * isum - m * xsum), summed over blocks in order. Element l of a
 * block is the low nibble of qs[l], element l + 16 the high one. */
static float vec_dot_q4_1(size_t n, const void *w, const void *x) {
    const deepc_block_q4_1 *a = w;
    const deepc_block_q8_0 *b = x;
    float sum = 0.0f;
    for (size_t ib = 0; ib < n / DEEPC_QK4_1; ib++) {
        int32_t isum = 0, xsum = 0;
        for (int l = 0; l < DEEPC_QK4_1 / 2; l++) {
            isum += (a[ib].qs[l] & 15) * (int32_t)b[ib].qs[l] + (a[ib].qs[l] >> 4) * (int32_t)b[ib].qs[l + 16];
            xsum += (int32_t)b[ib].qs[l] + (int32_t)b[ib].qs[l + 16];
        }
        sum += deepc_fp16_to_fp32(b[ib].d) *
               (deepc_fp16_to_fp32(a[ib].d) * (float)isum - deepc_fp16_to_fp32(a[ib].m) * (float)xsum);
    }
    return sum;
}

/* ---- k-quant weights x Q8_K activations -------------------------------- */

/* Each super-block's integer sums are exact in int32 (bounds below); the
 * float part is one expression per super-block, summed in block order.
 * n must be a multiple of 256.
 *
 * Q4_K: isum = sum_j sc_j * dot(q_j, x_j) over the eight 32-element
 * sub-blocks (|isum| <= 8 * 63 * 32 * 15 * 128 < 2^25), msum = sum_j mn_j *
 * (bsum_2j + bsum_2j+1) (|msum| <= 8 * 63 * 32 * 127); the value is
 * d_x * (d * isum - dmin * msum). */
static float vec_dot_q4_k(size_t n, const void *w, const void *x) {
    const deepc_block_q4_k *a = w;
    const deepc_block_q8_k *b = x;
    float sum = 0.0f;
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++) {
        uint8_t sc[8], mn[8];
        deepc_q4_k_unpack_scales(a[ib].scales, sc, mn);
        int32_t isum = 0, msum = 0;
        for (int j = 0; j < 8; j++) {
            const uint8_t *qs = a[ib].qs + 32 * (j / 2);
            const int8_t *q8 = b[ib].qs + 32 * j;
            int32_t dot = 0;
            for (int l = 0; l < 32; l++) dot += ((j & 1) ? qs[l] >> 4 : qs[l] & 15) * (int32_t)q8[l];
            isum += sc[j] * dot;
            msum += mn[j] * (b[ib].bsums[2 * j] + b[ib].bsums[2 * j + 1]);
        }
        sum += b[ib].d * (deepc_fp16_to_fp32(a[ib].d) * (float)isum - deepc_fp16_to_fp32(a[ib].dmin) * (float)msum);
    }
    return sum;
}

/* Q3_K: q - 4 with q in [0, 7], so dot(q - 4, x) = dot(q, x) - 4 * bsum:
 * isum = sum_j sc_j * (dot(q_j, x_j) - 4 * bsum_j) over the sixteen
 * 16-element sub-blocks, |isum| <= 16 * 32 * 16 * 4 * 128 < 2^21; the value
 * is (d * d_x) * isum. */
static float vec_dot_q3_k(size_t n, const void *w, const void *x) {
    const deepc_block_q3_k *a = w;
    const deepc_block_q8_k *b = x;
    float sum = 0.0f;
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++) {
        int8_t sc[16];
        deepc_q3_k_unpack_scales(a[ib].scales, sc);
        int32_t isum = 0;
        for (int j = 0; j < 16; j++) {
            int32_t dot = 0;
            for (int l = 0; l < 16; l++) {
                int i = 16 * j + l;
                int q = ((a[ib].qs[32 * (i / 128) + i % 32] >> (2 * ((i / 32) % 4))) & 3) |
                        (((a[ib].hmask[i % 32] >> (i / 32)) & 1) << 2);
                dot += q * (int32_t)b[ib].qs[i];
            }
            isum += sc[j] * (dot - 4 * b[ib].bsums[j]);
        }
        sum += (deepc_fp16_to_fp32(a[ib].d) * b[ib].d) * (float)isum;
    }
    return sum;
}

/* Q6_K: q - 32 with q in [0, 63], so dot(q - 32, x) = dot(q, x) - 32 * bsum:
 * isum = sum_j sc_j * (dot(q_j, x_j) - 32 * bsum_j) over the sixteen
 * 16-element sub-blocks, |isum| <= 16 * 128 * 16 * 32 * 127 < 2^27; the
 * value is (d * d_x) * isum. */
float deepc_scalar_vec_dot_q6_k(size_t n, const void *w, const void *x) {
    const deepc_block_q6_k *a = w;
    const deepc_block_q8_k *b = x;
    float sum = 0.0f;
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++) {
        int32_t isum = 0;
        for (int j = 0; j < 16; j++) {
            int32_t dot = 0;
            for (int l = 0; l < 16; l++) dot += deepc_q6_k_code(&a[ib], 16 * j + l) * (int32_t)b[ib].qs[16 * j + l];
            isum += a[ib].scales[j] * (dot - 32 * b[ib].bsums[j]);
        }
        sum += (deepc_fp16_to_fp32(a[ib].d) * b[ib].d) * (float)isum;
    }
    return sum;
}

/* Q2_K: isum = sum_j sc_j * dot(q_j, x_j), msum = sum_j mn_j * bsum_j over
 * the sixteen 16-element sub-blocks (each < 2^20 in magnitude); the value is
 * d_x * (d * isum - dmin * msum), as for Q4_K. */
static float vec_dot_q2_k(size_t n, const void *w, const void *x) {
    const deepc_block_q2_k *a = w;
    const deepc_block_q8_k *b = x;
    float sum = 0.0f;
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++) {
        int32_t isum = 0, msum = 0;
        for (int j = 0; j < 16; j++) {
            int32_t dot = 0;
            for (int l = 0; l < 16; l++) {
                int i = 16 * j + l;
                dot += ((a[ib].qs[32 * (i / 128) + i % 32] >> (2 * ((i / 32) % 4))) & 3) * (int32_t)b[ib].qs[i];
            }
            isum += (a[ib].scales[j] & 15) * dot;
            msum += (a[ib].scales[j] >> 4) * b[ib].bsums[j];
        }
        sum += b[ib].d * (deepc_fp16_to_fp32(a[ib].d) * (float)isum - deepc_fp16_to_fp32(a[ib].dmin) * (float)msum);
    }
    return sum;
}

/* Q8_K weights (a valid, if unusual, file type) x Q8_K activations: exact
 * integer dot per block (|isum| <= 256 * 128 * 127 < 2^23), times
 * d_w * d_x. */
static float vec_dot_q8_k(size_t n, const void *w, const void *x) {
    const deepc_block_q8_k *a = w, *b = x;
    float sum = 0.0f;
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++) {
        int32_t isum = 0;
        for (int i = 0; i < DEEPC_QK_K; i++) isum += (int32_t)a[ib].qs[i] * (int32_t)b[ib].qs[i];
        sum += (a[ib].d * b[ib].d) * (float)isum;
    }
    return sum;
}

/* FP8_B128 weights x F32 activations: per 128-element block, the decoded
 * codes times x summed in fp32 in order, then times the block scale. The
 * decode table is a compile-time constant (E4M3, as core/fp8.h defines it:
 * exponent 0 is m * 2^-9, else (8 + m) * 2^(e - 10); S.1111.111 is NaN). */
#define FP8_MAG(c) (((c) & 0x78) == 0 ? (float)((c) & 7) * 0x1p-9f \
                                       : (float)(8 + ((c) & 7)) * (float)(1u << (((c) >> 3) & 15)) * 0x1p-10f)
#define FP8_VAL(c) (((c) & 0x7f) == 0x7f ? NAN : ((c) & 0x80) ? -FP8_MAG(c) : FP8_MAG(c))
#define FP8_4(c) FP8_VAL(c), FP8_VAL((c) + 1), FP8_VAL((c) + 2), FP8_VAL((c) + 3)
#define FP8_16(c) FP8_4(c), FP8_4((c) + 4), FP8_4((c) + 8), FP8_4((c) + 12)
#define FP8_64(c) FP8_16(c), FP8_16((c) + 16), FP8_16((c) + 32), FP8_16((c) + 48)
static const float fp8_lut[256] = { FP8_64(0), FP8_64(64), FP8_64(128), FP8_64(192) };

static float vec_dot_fp8_b128(size_t n, const void *w, const void *x) {
    const deepc_block_fp8_b128 *a = w;
    const float *b = x;
    const float *lut = fp8_lut;
    float sum = 0.0f;
    for (size_t ib = 0; ib < n / DEEPC_QK_FP8; ib++, b += DEEPC_QK_FP8) {
        float s = 0.0f;
        for (int i = 0; i < DEEPC_QK_FP8; i++) s += lut[a[ib].qs[i]] * b[i];
        sum += a[ib].d * s;
    }
    return sum;
}

/* ---- activation converters (deepc_quantize_row, one per type) ---------- */

void deepc_scalar_quantize_f32(const float *x, void *y, size_t n) {
    deepc_quantize_row(DEEPC_TYPE_F32, x, y, n);
}

void deepc_scalar_quantize_f16(const float *x, void *y, size_t n) {
    deepc_quantize_row(DEEPC_TYPE_F16, x, y, n);
}

void deepc_scalar_quantize_bf16(const float *x, void *y, size_t n) {
    deepc_quantize_row(DEEPC_TYPE_BF16, x, y, n);
}

void deepc_scalar_quantize_q8_0(const float *x, void *y, size_t n) {
    deepc_quantize_row(DEEPC_TYPE_Q8_0, x, y, n);
}

/* The weight types are never activation types; their entries exist so the
 * table has no hole (core may convert any row through it). */
void deepc_scalar_quantize_q4_k(const float *x, void *y, size_t n) {
    deepc_quantize_row(DEEPC_TYPE_Q4_K, x, y, n);
}

void deepc_scalar_quantize_q3_k(const float *x, void *y, size_t n) {
    deepc_quantize_row(DEEPC_TYPE_Q3_K, x, y, n);
}

void deepc_scalar_quantize_q2_k(const float *x, void *y, size_t n) {
    deepc_quantize_row(DEEPC_TYPE_Q2_K, x, y, n);
}

void deepc_scalar_quantize_fp8_b128(const float *x, void *y, size_t n) {
    deepc_quantize_row(DEEPC_TYPE_FP8_B128, x, y, n);
}

static void quantize_q8_k(const float *x, void *y, size_t n) {
    deepc_quantize_row(DEEPC_TYPE_Q8_K, x, y, n);
}

void deepc_scalar_quantize_q4_1(const float *x, void *y, size_t n) {
    deepc_quantize_row(DEEPC_TYPE_Q4_1, x, y, n);
}

void deepc_scalar_quantize_q6_k(const float *x, void *y, size_t n) {
    deepc_quantize_row(DEEPC_TYPE_Q6_K, x, y, n);
}

static const deepc_kernels scalar_kernels = {
    .name = "scalar",
    .vec_dot = {
        [DEEPC_TYPE_F32]  = vec_dot_f32,
        [DEEPC_TYPE_F16]  = vec_dot_f16,
        [DEEPC_TYPE_BF16] = vec_dot_bf16,
        [DEEPC_TYPE_Q8_0] = vec_dot_q8_0,
        [DEEPC_TYPE_Q4_K] = vec_dot_q4_k,
        [DEEPC_TYPE_Q3_K] = vec_dot_q3_k,
        [DEEPC_TYPE_Q2_K] = vec_dot_q2_k,
        [DEEPC_TYPE_FP8_B128] = vec_dot_fp8_b128,
        [DEEPC_TYPE_Q8_K] = vec_dot_q8_k,
        [DEEPC_TYPE_Q4_1] = vec_dot_q4_1,
        [DEEPC_TYPE_Q6_K] = deepc_scalar_vec_dot_q6_k,
    },
    DEEPC_ACT_TYPES,
    .quantize_act = {
        [DEEPC_TYPE_F32]  = deepc_scalar_quantize_f32,
        [DEEPC_TYPE_F16]  = deepc_scalar_quantize_f16,
        [DEEPC_TYPE_BF16] = deepc_scalar_quantize_bf16,
        [DEEPC_TYPE_Q8_0] = deepc_scalar_quantize_q8_0,
        [DEEPC_TYPE_Q4_K] = deepc_scalar_quantize_q4_k,
        [DEEPC_TYPE_Q3_K] = deepc_scalar_quantize_q3_k,
        [DEEPC_TYPE_Q2_K] = deepc_scalar_quantize_q2_k,
        [DEEPC_TYPE_FP8_B128] = deepc_scalar_quantize_fp8_b128,
        [DEEPC_TYPE_Q8_K] = quantize_q8_k,
        [DEEPC_TYPE_Q4_1] = deepc_scalar_quantize_q4_1,
        [DEEPC_TYPE_Q6_K] = deepc_scalar_quantize_q6_k,
    },
    DEEPC_OPS_SCALAR,
};

const deepc_kernels *deepc_kernels_scalar(void) {
    return &scalar_kernels;
}

/* ---- backend selection -------------------------------------------------- */

/* Candidate backends, best first. A SIMD backend adds one line here, guarded
 * by the same #if that makes the Makefile compile its file, with the feature
 * check (cpuid / hwcaps) living in an arch/cpu_*.c file. `supported` must be
 * cheap and thread-safe; it is called on every select.
 * "avx512" is the AVX-512 table without VNNI (Skylake-X class CPUs); on a
 * VNNI CPU the default is "avx512vnni", and DEEPC_ISA=avx512 still forces
 * the plain one, which is how its parity test runs there. */
typedef struct {
    const deepc_kernels *(*get)(void);
    bool (*supported)(void);
} backend;

static bool always_supported(void) {
    return true;
}

static const backend backends[] = {
#if defined(__x86_64__) || defined(__i386__)
    { deepc_kernels_avx512vnni, deepc_cpu_has_avx512vnni },
    { deepc_kernels_avx512,     deepc_cpu_has_avx512     },
    { deepc_kernels_avx2,       deepc_cpu_has_avx2       },
#endif
#if defined(__aarch64__)
    { deepc_kernels_neon_dotprod, deepc_cpu_has_neon_dotprod },
    { deepc_kernels_neon,         deepc_cpu_has_neon         },
#endif
    { deepc_kernels_scalar, always_supported },   /* last: always works */
};

/* `force` names a backend; NULL falls back to $DEEPC_ISA; NULL or "" there
 * means the best supported one. An unknown or unsupported name yields NULL so
 * the caller can report it rather than silently run something else. */
const deepc_kernels *deepc_kernels_select(const char *force) {
    const char *name = force ? force : getenv("DEEPC_ISA");
    size_t n = sizeof backends / sizeof backends[0];
    for (size_t i = 0; i < n; i++) {
        const deepc_kernels *k = backends[i].get();
        if (name && name[0] && strcmp(name, k->name) != 0) continue;
        if (backends[i].supported()) return k;
        if (name && name[0]) return NULL; /* named but not usable on this CPU */
    }
    return NULL;
}
