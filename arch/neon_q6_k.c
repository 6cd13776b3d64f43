/* neon_q6_k.c - the AArch64 NEON kernels of q6_k weights x Q8_K
 * activations; arch/neon_kernels.c puts them in its two tables. Compiled
 * with no -m/-march flags, like neon_kernels.c: the plain kernel runs on any
 * AArch64 CPU, the SDOT one is compiled for FEAT_DotProd alone (a target
 * attribute) and only reaches "neon-dotprod", which the selector offers only
 * on CPUs with SDOT.
 *
 * The codes are formed as q - 32 in [-32, 31] (int8), so each super-block's
 * isum = sum_j sc_j * dot(q_j - 32, x_j) is computed directly: the same
 * integer as the scalar sum_j sc_j * (dot(q_j, x_j) - 32 * bsum_j), and
 * |isum| < 2^27 (arch/scalar.c) fits the int32 lanes. The float part is the
 * scalar kernel's expression, super-block by super-block in order, so the
 * result equals the scalar kernel's bit for bit (test/neon_parity.c holds
 * it to the k-quant rule: exact integers, summation-order float bound). */
#include <arm_neon.h>

#include "cpu.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "arch/neon_q6_k.c assumes a little-endian AArch64 target"
#endif

#include "neon_sdot.h"

#define Q6K_UNROLL _Pragma("GCC unroll 8")

/* 16 codes times 16 activations. Baseline: two products per int16 lane,
 * |q - 32| <= 32 times |x| <= 128: at most 8192. */
static inline int32x4_t q6k_lanes16(int8x16_t a, int8x16_t b) {
    return vpaddlq_s16(vmlal_high_s8(vmull_s8(vget_low_s8(a), vget_low_s8(b)), a, b));
}

DOTPROD_FN static inline int32x4_t q6k_lanes16_dot(int8x16_t a, int8x16_t b) {
    return sdot_s32(vdupq_n_s32(0), a, b);
}

/* Lane sums of sub-blocks 4i .. 4i+3 -> their four totals, in order (exact). */
static inline int32x4_t q6k_totals(const int32x4_t *l, int i) {
    return vpaddq_s32(vpaddq_s32(l[4 * i], l[4 * i + 1]), vpaddq_s32(l[4 * i + 2], l[4 * i + 3]));
}

/* The sixteen int8 sub-block scales widened to four int32 vectors. */
static inline void q6k_scales(const int8_t *s, int32x4_t sc[4]) {
    int8x16_t v = vld1q_s8(s);
    int16x8_t lo = vmovl_s8(vget_low_s8(v)), hi = vmovl_high_s8(v);
    sc[0] = vmovl_s16(vget_low_s16(lo));
    sc[1] = vmovl_high_s16(lo);
    sc[2] = vmovl_s16(vget_low_s16(hi));
    sc[3] = vmovl_high_s16(hi);
}

static inline float q6k_fp16(uint16_t h) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

/* Element 128h + 32s + l (l < 32) is the low (s = 0, 1) or high (s = 2, 3)
 * nibble of ql[64h + 32(s % 2) + l] with bits 2s..2s+1 of qh[32h + l] on
 * top; its sub-block is 8h + 2s + l / 16 and its activation byte 128h + 32s
 * + l. One running shift of the 32 qh bytes serves the four s. */
#define DEFINE_VEC_DOT_Q6_K(NAME, ATTR, LANES16)                                                       \
    ATTR float NAME(size_t n, const void *w, const void *x) {                                           \
        const deepc_block_q6_k *a = w;                                                                  \
        const deepc_block_q8_k *b = x;                                                                  \
        const uint8x16_t m4 = vdupq_n_u8(0x0f), m3 = vdupq_n_u8(3);                                     \
        const int8x16_t k32 = vdupq_n_s8(32);                                                           \
        float sum = 0.0f;                                                                               \
        for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++) {                                                \
            const deepc_block_q6_k *wa = a + ib;                                                        \
            const deepc_block_q8_k *xb = b + ib;                                                        \
            int32x4_t sc[4], l[16];                                                                     \
            q6k_scales(wa->scales, sc);                                                                 \
            Q6K_UNROLL for (int h = 0; h < 2; h++) {                                                    \
                const uint8_t *ql = wa->ql + 64 * h;                                                    \
                uint8x16_t h0 = vld1q_u8(wa->qh + 32 * h), h1 = vld1q_u8(wa->qh + 32 * h + 16);         \
                Q6K_UNROLL for (int s = 0; s < 4; s++) {                                                \
                    uint8x16_t l0 = vld1q_u8(ql + 32 * (s % 2)), l1 = vld1q_u8(ql + 32 * (s % 2) + 16); \
                    if (s < 2) {                                                                        \
                        l0 = vandq_u8(l0, m4);                                                          \
                        l1 = vandq_u8(l1, m4);                                                          \
                    } else {                                                                            \
                        l0 = vshrq_n_u8(l0, 4);                                                         \
                        l1 = vshrq_n_u8(l1, 4);                                                         \
                    }                                                                                   \
                    int8x16_t c0 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(l0, vshlq_n_u8(vandq_u8(h0, m3), 4))), k32); \
                    int8x16_t c1 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(l1, vshlq_n_u8(vandq_u8(h1, m3), 4))), k32); \
                    int k = 4 * h + s;                                                                  \
                    l[2 * k] = LANES16(c0, vld1q_s8(xb->qs + 32 * k));                                  \
                    l[2 * k + 1] = LANES16(c1, vld1q_s8(xb->qs + 32 * k + 16));                         \
                    h0 = vshrq_n_u8(h0, 2);                                                             \
                    h1 = vshrq_n_u8(h1, 2);                                                             \
                }                                                                                       \
            }                                                                                           \
            int32x4_t v = vmulq_s32(q6k_totals(l, 0), sc[0]);                                           \
            v = vmlaq_s32(v, q6k_totals(l, 1), sc[1]);                                                  \
            v = vmlaq_s32(v, q6k_totals(l, 2), sc[2]);                                                  \
            v = vmlaq_s32(v, q6k_totals(l, 3), sc[3]);                                                  \
            int32_t isum = vaddvq_s32(v);                                                               \
            sum += (q6k_fp16(wa->d) * xb->d) * (float)isum;                                             \
        }                                                                                               \
        return sum;                                                                                     \
    }

DEFINE_VEC_DOT_Q6_K(deepc_neon_vec_dot_q6_k, , q6k_lanes16)
DEFINE_VEC_DOT_Q6_K(deepc_neon_vec_dot_q6_k_dotprod, DOTPROD_FN, q6k_lanes16_dot)
