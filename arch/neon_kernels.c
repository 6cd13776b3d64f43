/* neon_kernels.c - the AArch64 Advanced SIMD backends: "neon" (plain
 * Armv8.0-A, every AArch64 CPU) and "neon-dotprod" (the same plus SDOT for
 * the integer dots of Q8_0, the k-quants and Q8_K, FEAT_DotProd:
 * Cortex-A55/A76 and later, Apple M1+, Graviton 2+). The file is compiled
 * with no -m/-march flags, so the "neon" table runs on any AArch64 CPU; only
 * the functions that use SDOT are compiled for it (a target attribute), and
 * arch/cpu_arm.c checks the CPU before the selector hands out
 * "neon-dotprod".
 *
 * Both tables start as a copy of the scalar table, so every type this file
 * does not speed up (and every type added later) keeps working through the
 * scalar kernel; this file then overrides vec_dot for F32, F16, BF16, Q8_0,
 * Q4_K, Q3_K, Q2_K, Q8_K and FP8_B128, the Q8_0 and Q8_K activation
 * quantizers, takes the Q8_0 gemm and the fp16 cache kernels from
 * arch/neon_ops.c and the Q4_1 and Q6_K vec_dots from arch/neon_q4_1.c and
 * arch/neon_q6_k.c.
 *
 * Shape of the kernels, as in arch/x86_avx2.c: float dots keep four
 * independent FMA accumulators and do one horizontal sum at the end; Q8_0
 * reduces four blocks' exact integer dots to one vector of per-block totals
 * and scales them with one FMA. Every loop ends in a scalar tail, so every n
 * works. Results equal the scalar backend's up to fp32 summation order; the
 * integer part of Q8_0 is exact (test/neon_parity.c). Little-endian only, as
 * is the file format: 16-bit weights are loaded as bytes and reinterpreted. */
#include <arm_neon.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "cpu.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "arch/neon_kernels.c assumes a little-endian AArch64 target"
#endif

#include "neon_sdot.h"

/* ---- helpers ------------------------------------------------------------ */

static inline uint16_t load_u16(const unsigned char *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* 8 fp16 / bf16 values at p (any alignment: loaded as bytes) -> two vectors
 * of 4 floats, low half first. Both conversions are exact. */
static inline void load8_f16(const unsigned char *p, float32x4_t *lo, float32x4_t *hi) {
    float16x8_t h = vreinterpretq_f16_u8(vld1q_u8(p));
    *lo = vcvt_f32_f16(vget_low_f16(h));
    *hi = vcvt_high_f32_f16(h);
}

static inline float32x4_t load4_f16(const unsigned char *p) {
    return vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(p)));
}

static inline void load8_bf16(const unsigned char *p, float32x4_t *lo, float32x4_t *hi) {
    uint16x8_t u = vreinterpretq_u16_u8(vld1q_u8(p));
    *lo = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(u), 16));
    *hi = vreinterpretq_f32_u32(vshll_high_n_u16(u, 16));
}

static inline float32x4_t load4_bf16(const unsigned char *p) {
    return vreinterpretq_f32_u32(vshll_n_u16(vreinterpret_u16_u8(vld1_u8(p)), 16));
}

static inline float hsum4(float32x4_t s0, float32x4_t s1, float32x4_t s2, float32x4_t s3) {
    return vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
}

/* ---- float weights x F32 activations ------------------------------------ */

static float vec_dot_f32(size_t n, const void *w, const void *x) {
    const float *a = w, *b = x;
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
        s2 = vfmaq_f32(s2, vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
        s3 = vfmaq_f32(s3, vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
    }
    for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
    float sum = hsum4(s0, s1, s2, s3);
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

static float vec_dot_f16(size_t n, const void *w, const void *x) {
    const unsigned char *a = w;
    const float *b = x;
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0, w0, w1, w2, w3;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        load8_f16(a + 2 * i, &w0, &w1);
        load8_f16(a + 2 * i + 16, &w2, &w3);
        s0 = vfmaq_f32(s0, w0, vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, w1, vld1q_f32(b + i + 4));
        s2 = vfmaq_f32(s2, w2, vld1q_f32(b + i + 8));
        s3 = vfmaq_f32(s3, w3, vld1q_f32(b + i + 12));
    }
    for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, load4_f16(a + 2 * i), vld1q_f32(b + i));
    float sum = hsum4(s0, s1, s2, s3);
    for (; i < n; i++) sum += deepc_fp16_to_fp32(load_u16(a + 2 * i)) * b[i];
    return sum;
}

static float vec_dot_bf16(size_t n, const void *w, const void *x) {
    const unsigned char *a = w;
    const float *b = x;
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0, w0, w1, w2, w3;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        load8_bf16(a + 2 * i, &w0, &w1);
        load8_bf16(a + 2 * i + 16, &w2, &w3);
        s0 = vfmaq_f32(s0, w0, vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, w1, vld1q_f32(b + i + 4));
        s2 = vfmaq_f32(s2, w2, vld1q_f32(b + i + 8));
        s3 = vfmaq_f32(s3, w3, vld1q_f32(b + i + 12));
    }
    for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, load4_bf16(a + 2 * i), vld1q_f32(b + i));
    float sum = hsum4(s0, s1, s2, s3);
    for (; i < n; i++) sum += deepc_bf16_to_fp32(load_u16(a + 2 * i)) * b[i];
    return sum;
}

/* ---- Q8_0 weights x Q8_0 activations ------------------------------------ */

/* Integer dot of one block as 4 int32 lane sums, Armv8.0: widening int8
 * multiplies (any int8 pair, -128 * -128 included, fits int16) added
 * pairwise into int32. Exact. */
static inline int32x4_t q8_lanes(const deepc_block_q8_0 *a, const deepc_block_q8_0 *b) {
    int8x16_t a0 = vld1q_s8(a->qs), a1 = vld1q_s8(a->qs + 16);
    int8x16_t b0 = vld1q_s8(b->qs), b1 = vld1q_s8(b->qs + 16);
    int32x4_t s = vpaddlq_s16(vmull_s8(vget_low_s8(a0), vget_low_s8(b0)));
    int32x4_t t = vpaddlq_s16(vmull_high_s8(a0, b0));
    s = vpadalq_s16(s, vmull_s8(vget_low_s8(a1), vget_low_s8(b1)));
    t = vpadalq_s16(t, vmull_high_s8(a1, b1));
    return vaddq_s32(s, t);
}

/* The same with SDOT: each lane the sum of 8 products. Exact. */
DOTPROD_FN static inline int32x4_t q8_lanes_dot(const deepc_block_q8_0 *a, const deepc_block_q8_0 *b) {
    int32x4_t s = sdot_s32(vdupq_n_s32(0), vld1q_s8(a->qs), vld1q_s8(b->qs));
    return sdot_s32(s, vld1q_s8(a->qs + 16), vld1q_s8(b->qs + 16));
}

/* Four blocks' lane sums -> their four totals, in block order (exact). */
static inline int32x4_t totals4(int32x4_t l0, int32x4_t l1, int32x4_t l2, int32x4_t l3) {
    return vpaddq_s32(vpaddq_s32(l0, l1), vpaddq_s32(l2, l3));
}

/* Four blocks' d_w * d_x, in block order, each product rounded once in fp32
 * exactly as the scalar kernel rounds it. */
static inline float32x4_t q8_scales4(const deepc_block_q8_0 *a, const deepc_block_q8_0 *b) {
    const uint16_t hw[4] = { a[0].d, a[1].d, a[2].d, a[3].d };
    const uint16_t hx[4] = { b[0].d, b[1].d, b[2].d, b[3].d };
    float32x4_t dw = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(hw)));
    float32x4_t dx = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(hx)));
    return vmulq_f32(dw, dx);
}

/* One remaining block: its exact total times its scale, as in scalar. */
static inline float q8_term(int32x4_t lanes, const deepc_block_q8_0 *a, const deepc_block_q8_0 *b) {
    float d = deepc_fp16_to_fp32(a->d) * deepc_fp16_to_fp32(b->d);
    return (float)vaddvq_s32(lanes) * d;
}

/* Four blocks' exact integer totals, in block order, as floats (exact: each
 * is at most 32 * 128 * 128 in magnitude). LANES is q8_lanes or
 * q8_lanes_dot; a macro because the SDOT one may only be inlined into a
 * function compiled for SDOT. */
#define Q8_TOTALS4(LANES, a, b)                                                   \
    vcvtq_f32_s32(totals4(LANES((a), (b)), LANES((a) + 1, (b) + 1),              \
                          LANES((a) + 2, (b) + 2), LANES((a) + 3, (b) + 3)))

/* Eight blocks per iteration in two independent groups of four (four exact
 * totals times their four scales, one FMA each), then one group of four,
 * then single blocks (n is a multiple of 32: whole blocks only). */
static float vec_dot_q8_0(size_t n, const void *w, const void *x) {
    const deepc_block_q8_0 *a = w, *b = x;
    size_t nb = n / DEEPC_QK8_0, ib = 0;
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0;
    for (; ib + 8 <= nb; ib += 8) {
        s0 = vfmaq_f32(s0, Q8_TOTALS4(q8_lanes, a + ib, b + ib), q8_scales4(a + ib, b + ib));
        s1 = vfmaq_f32(s1, Q8_TOTALS4(q8_lanes, a + ib + 4, b + ib + 4), q8_scales4(a + ib + 4, b + ib + 4));
    }
    if (ib + 4 <= nb) {
        s0 = vfmaq_f32(s0, Q8_TOTALS4(q8_lanes, a + ib, b + ib), q8_scales4(a + ib, b + ib));
        ib += 4;
    }
    float sum = vaddvq_f32(vaddq_f32(s0, s1));
    for (; ib < nb; ib++) sum += q8_term(q8_lanes(a + ib, b + ib), a + ib, b + ib);
    return sum;
}

/* The same loop with SDOT block dots. */
DOTPROD_FN static float vec_dot_q8_0_dotprod(size_t n, const void *w, const void *x) {
    const deepc_block_q8_0 *a = w, *b = x;
    size_t nb = n / DEEPC_QK8_0, ib = 0;
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0;
    for (; ib + 8 <= nb; ib += 8) {
        s0 = vfmaq_f32(s0, Q8_TOTALS4(q8_lanes_dot, a + ib, b + ib), q8_scales4(a + ib, b + ib));
        s1 = vfmaq_f32(s1, Q8_TOTALS4(q8_lanes_dot, a + ib + 4, b + ib + 4), q8_scales4(a + ib + 4, b + ib + 4));
    }
    if (ib + 4 <= nb) {
        s0 = vfmaq_f32(s0, Q8_TOTALS4(q8_lanes_dot, a + ib, b + ib), q8_scales4(a + ib, b + ib));
        ib += 4;
    }
    float sum = vaddvq_f32(vaddq_f32(s0, s1));
    for (; ib < nb; ib++) sum += q8_term(q8_lanes_dot(a + ib, b + ib), a + ib, b + ib);
    return sum;
}

/* Activation quantizer, bit-identical to deepc_quantize_row(Q8_0): NaN
 * elements are zeroed first (the reference skips them in the maximum and
 * quantizes them to 0; a zero does both), the scale goes through the
 * reference's own fp16 rounding and clamp, the elements are multiplied by the
 * same fp32 inverse, clamped to +-127 and rounded to nearest even by FCVTNS
 * (lrintf's rounding in the default environment). */
static void quantize_q8_0(const float *x, void *dst, size_t n) {
    deepc_block_q8_0 *out = dst;
    const float32x4_t lo = vdupq_n_f32(-127.0f), hi = vdupq_n_f32(127.0f);
    for (size_t ib = 0; ib < n / DEEPC_QK8_0; ib++) {
        const float *p = x + ib * DEEPC_QK8_0;
        float32x4_t v[8];
        float32x4_t m = vdupq_n_f32(0.0f);
        for (int j = 0; j < 8; j++) {
            float32x4_t t = vld1q_f32(p + 4 * j);
            uint32x4_t ord = vceqq_f32(t, t); /* all ones unless NaN */
            v[j] = vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(t), ord));
            m = vmaxq_f32(m, vabsq_f32(v[j]));
        }
        float amax = vmaxvq_f32(m);

        uint16_t dh = deepc_fp32_to_fp16(amax / 127.0f);
        if ((dh & 0x7fffu) >= 0x7c00u) dh = 0x7bffu;
        float d = deepc_fp16_to_fp32(dh);
        float id = d != 0.0f ? 1.0f / d : 0.0f;

        int32x4_t q[8];
        for (int j = 0; j < 8; j++)
            q[j] = vcvtnq_s32_f32(vminq_f32(vmaxq_f32(vmulq_n_f32(v[j], id), lo), hi));
        /* every value is in [-127, 127]: plain narrowing is exact */
        int16x8_t h0 = vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1]));
        int16x8_t h1 = vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3]));
        int16x8_t h2 = vcombine_s16(vmovn_s32(q[4]), vmovn_s32(q[5]));
        int16x8_t h3 = vcombine_s16(vmovn_s32(q[6]), vmovn_s32(q[7]));
        out[ib].d = dh;
        vst1q_s8(out[ib].qs, vcombine_s8(vmovn_s16(h0), vmovn_s16(h1)));
        vst1q_s8(out[ib].qs + 16, vcombine_s8(vmovn_s16(h2), vmovn_s16(h3)));
    }
}

/* ---- k-quant weights x Q8_K activations ---------------------------------
 *
 * Each kernel computes a super-block's integer sums exactly as the scalar
 * kernel defines them (isum, and msum for the types with mins), then
 * combines them with the scales in the scalar kernel's own float expression,
 * one super-block at a time in block order. The integer part is exact
 * whatever the order of its additions, so the result is the scalar one bit
 * for bit as long as the compiler treats both copies of that expression
 * alike (GCC contracts nothing under -std=c11; clang 14 fused both the same
 * way when measured); test/neon_parity.c holds it only to the tolerance
 * test/test_kernels.c uses for the x86 kernels, which reorder the float
 * terms.
 *
 * The integer dots go through a LANES primitive: four int32 lanes whose sum
 * is one sub-block's dot (weight codes as int8 times activation bytes). The
 * baseline ones widen with SMULL/SMLAL into int16 lanes of 2 or 4 products
 * (bounds below: never beyond int16) and add pairs into int32; the SDOT ones
 * need FEAT_DotProd. Four sub-blocks' lanes reduce to their four totals in
 * sub-block order (pairwise adds), which one multiply by the four scales
 * weights; the kernels are macros over LANES for the reason Q8_TOTALS4 is. */

/* The sub-block loops below are unrolled completely so their lane vectors
 * stay in registers (rolled, GCC keeps them in a stack array). */
#define UNROLL_ALL _Pragma("GCC unroll 8")

/* 32 codes (a0, a1) times 32 activations (b0, b1). Baseline: each int16 lane
 * sums 4 products, |code| <= 15 (q4_k) times |x| <= 128: at most 7680. */
static inline int32x4_t lanes32(int8x16_t a0, int8x16_t a1, int8x16_t b0, int8x16_t b1) {
    int16x8_t p = vmull_s8(vget_low_s8(a0), vget_low_s8(b0));
    p = vmlal_high_s8(p, a0, b0);
    p = vmlal_s8(p, vget_low_s8(a1), vget_low_s8(b1));
    p = vmlal_high_s8(p, a1, b1);
    return vpaddlq_s16(p);
}

DOTPROD_FN static inline int32x4_t lanes32_dot(int8x16_t a0, int8x16_t a1, int8x16_t b0, int8x16_t b1) {
    return sdot_s32(sdot_s32(vdupq_n_s32(0), a0, b0), a1, b1);
}

/* 16 codes times 16 activations. Baseline: 2 products per int16 lane, |code|
 * <= 4 (q3_k: q - 4; q2_k: <= 3) times |x| <= 128: at most 1024. */
static inline int32x4_t lanes16(int8x16_t a, int8x16_t b) {
    return vpaddlq_s16(vmlal_high_s8(vmull_s8(vget_low_s8(a), vget_low_s8(b)), a, b));
}

DOTPROD_FN static inline int32x4_t lanes16_dot(int8x16_t a, int8x16_t b) {
    return sdot_s32(vdupq_n_s32(0), a, b);
}

/* Lane sums of sub-blocks 4i .. 4i+3 -> their four totals, in order (exact). */
static inline int32x4_t totals_at(const int32x4_t *l, int i) {
    return vpaddq_s32(vpaddq_s32(l[4 * i], l[4 * i + 1]), vpaddq_s32(l[4 * i + 2], l[4 * i + 3]));
}

/* One fp16 value as a float (exact, like deepc_fp16_to_fp32). */
static inline float fp16_value(uint16_t h) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

/* Widens four or eight small unsigned / signed bytes for the multiplies. */
static inline int32x4_t widen_u8_lo4(uint8x8_t v) {
    return vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(vmovl_u8(v))));
}
static inline int32x4_t widen_u8_hi4(uint8x8_t v) {
    return vreinterpretq_s32_u32(vmovl_u16(vget_high_u16(vmovl_u8(v))));
}

/* The eight 6-bit scales and mins of a q4_k block (the unpacking of
 * deepc_q4_k_unpack_scales, four bytes at a time in 32-bit words): scales as
 * two int32 vectors (sub-blocks 0-3, 4-7), mins as eight int16. */
static inline void q4_k_scales(const uint8_t *s, int32x4_t *sc03, int32x4_t *sc47, int16x8_t *mn) {
    uint32_t u0, u1, u2;
    memcpy(&u0, s, 4);
    memcpy(&u1, s + 4, 4);
    memcpy(&u2, s + 8, 4);
    uint32_t sc_lo = u0 & 0x3f3f3f3fu, mn_lo = u1 & 0x3f3f3f3fu;
    uint32_t sc_hi = (u2 & 0x0f0f0f0fu) | (((u0 >> 6) & 0x03030303u) << 4);
    uint32_t mn_hi = ((u2 >> 4) & 0x0f0f0f0fu) | (((u1 >> 6) & 0x03030303u) << 4);
    uint8x8_t sc = vcreate_u8((uint64_t)sc_hi << 32 | sc_lo);
    *sc03 = widen_u8_lo4(sc);
    *sc47 = widen_u8_hi4(sc);
    *mn = vreinterpretq_s16_u16(vmovl_u8(vcreate_u8((uint64_t)mn_hi << 32 | mn_lo)));
}

/* Q4_K. Integer sums: isum = sum_j sc_j * dot_j over eight 32-element
 * sub-blocks, msum = sum_j mn_j * (bsum_2j + bsum_2j+1) (bounds in
 * arch/scalar.c). Group g of 32 code bytes holds sub-block 2g in its low
 * nibbles and 2g+1 in its high ones. */
#define DEFINE_VEC_DOT_Q4_K(NAME, ATTR, LANES32)                                                       \
    ATTR static float NAME(size_t n, const void *w, const void *x) {                                    \
        const deepc_block_q4_k *a = w;                                                                  \
        const deepc_block_q8_k *b = x;                                                                  \
        const uint8x16_t m4 = vdupq_n_u8(0x0f);                                                         \
        float sum = 0.0f;                                                                               \
        for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++) {                                                \
            const deepc_block_q4_k *wa = a + ib;                                                        \
            const deepc_block_q8_k *xb = b + ib;                                                        \
            int32x4_t sc03, sc47, l[8];                                                                 \
            int16x8_t mn;                                                                               \
            q4_k_scales(wa->scales, &sc03, &sc47, &mn);                                                 \
            UNROLL_ALL for (int g = 0; g < 4; g++) {                                                    \
                uint8x16_t q0 = vld1q_u8(wa->qs + 32 * g), q1 = vld1q_u8(wa->qs + 32 * g + 16);         \
                const int8_t *xq = xb->qs + 64 * g;                                                     \
                l[2 * g] = LANES32(vreinterpretq_s8_u8(vandq_u8(q0, m4)),                                \
                                   vreinterpretq_s8_u8(vandq_u8(q1, m4)), vld1q_s8(xq), vld1q_s8(xq + 16)); \
                l[2 * g + 1] = LANES32(vreinterpretq_s8_u8(vshrq_n_u8(q0, 4)),                           \
                                       vreinterpretq_s8_u8(vshrq_n_u8(q1, 4)), vld1q_s8(xq + 32),        \
                                       vld1q_s8(xq + 48));                                               \
            }                                                                                           \
            int32_t isum = vaddvq_s32(vmlaq_s32(vmulq_s32(totals_at(l, 0), sc03), totals_at(l, 1), sc47)); \
            /* pairs of 16-element sums are the 32-element ones: |sum| <= 2 * 2032 */                 \
            int16x8_t bs = vpaddq_s16(vld1q_s16(xb->bsums), vld1q_s16(xb->bsums + 8));                  \
            int32_t msum = vaddvq_s32(vmlal_high_s16(vmull_s16(vget_low_s16(bs), vget_low_s16(mn)), bs, mn)); \
            sum += xb->d * (fp16_value(wa->d) * (float)isum - fp16_value(wa->dmin) * (float)msum);      \
        }                                                                                               \
        return sum;                                                                                     \
    }

DEFINE_VEC_DOT_Q4_K(vec_dot_q4_k, , lanes32)
DEFINE_VEC_DOT_Q4_K(vec_dot_q4_k_dotprod, DOTPROD_FN, lanes32_dot)

/* The 2-bit planes of q3_k and q2_k: element 128h + 32s + l is bits 2s..2s+1
 * of qs[32h + l], so 32 code bytes shifted right by 2s give sub-blocks
 * 8h + 2s (l < 16) and 8h + 2s + 1 (l >= 16), whose activations are the 32
 * bytes at 32 * (4h + s). */

/* The sixteen scales of a q3_k block, sc - 32 in [-32, 31] (the unpacking
 * of deepc_q3_k_unpack_scales, four at a time), widened to int32. */
static inline void q3_k_scales(const uint8_t *s, int32x4_t sc[4]) {
    uint32_t u0, u1, u2;
    memcpy(&u0, s, 4);
    memcpy(&u1, s + 4, 4);
    memcpy(&u2, s + 8, 4);
    uint32_t a0 = (u0 & 0x0f0f0f0fu) | ((u2 & 0x03030303u) << 4);
    uint32_t a1 = (u1 & 0x0f0f0f0fu) | (((u2 >> 2) & 0x03030303u) << 4);
    uint32_t a2 = ((u0 >> 4) & 0x0f0f0f0fu) | (((u2 >> 4) & 0x03030303u) << 4);
    uint32_t a3 = ((u1 >> 4) & 0x0f0f0f0fu) | (((u2 >> 6) & 0x03030303u) << 4);
    int8x16_t v = vsubq_s8(vreinterpretq_s8_u8(vcombine_u8(vcreate_u8((uint64_t)a1 << 32 | a0),
                                                            vcreate_u8((uint64_t)a3 << 32 | a2))),
                           vdupq_n_s8(32));
    int16x8_t lo = vmovl_s8(vget_low_s8(v)), hi = vmovl_high_s8(v);
    sc[0] = vmovl_s16(vget_low_s16(lo));
    sc[1] = vmovl_high_s16(lo);
    sc[2] = vmovl_s16(vget_low_s16(hi));
    sc[3] = vmovl_high_s16(hi);
}

/* Q3_K. The codes are formed as q - 4 in [-4, 3] (low two bits, minus 4
 * where the hmask bit is clear), so isum = sum_j sc_j * dot(q_j - 4, x_j)
 * directly: the same integer as the scalar sum_j sc_j * (dot(q_j, x_j) -
 * 4 * bsum_j). Bit 4h + s of hmask[l] belongs to the same elements as the
 * 2-bit plane above, so one running shift of the 32 hmask bytes serves all
 * eight (h, s). */
#define DEFINE_VEC_DOT_Q3_K(NAME, ATTR, LANES16)                                                       \
    ATTR static float NAME(size_t n, const void *w, const void *x) {                                    \
        const deepc_block_q3_k *a = w;                                                                  \
        const deepc_block_q8_k *b = x;                                                                  \
        const uint8x16_t m3 = vdupq_n_u8(3), m1 = vdupq_n_u8(1);                                        \
        float sum = 0.0f;                                                                               \
        for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++) {                                                \
            const deepc_block_q3_k *wa = a + ib;                                                        \
            const deepc_block_q8_k *xb = b + ib;                                                        \
            int32x4_t sc[4], l[16];                                                                     \
            q3_k_scales(wa->scales, sc);                                                                \
            /* 4 where the high bit is clear: the -4 of q - 4 */                                        \
            uint8x16_t hn0 = vmvnq_u8(vld1q_u8(wa->hmask)), hn1 = vmvnq_u8(vld1q_u8(wa->hmask + 16));    \
            UNROLL_ALL for (int h = 0; h < 2; h++) {                                                    \
                uint8x16_t q0 = vld1q_u8(wa->qs + 32 * h), q1 = vld1q_u8(wa->qs + 32 * h + 16);         \
                UNROLL_ALL for (int s = 0; s < 4; s++) {                                                \
                    int k = 4 * h + s;                                                                  \
                    int8x16_t c0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q0, m3)),                      \
                                            vreinterpretq_s8_u8(vshlq_n_u8(vandq_u8(hn0, m1), 2)));     \
                    int8x16_t c1 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q1, m3)),                      \
                                            vreinterpretq_s8_u8(vshlq_n_u8(vandq_u8(hn1, m1), 2)));     \
                    l[2 * k] = LANES16(c0, vld1q_s8(xb->qs + 32 * k));                                  \
                    l[2 * k + 1] = LANES16(c1, vld1q_s8(xb->qs + 32 * k + 16));                         \
                    q0 = vshrq_n_u8(q0, 2);                                                             \
                    q1 = vshrq_n_u8(q1, 2);                                                             \
                    hn0 = vshrq_n_u8(hn0, 1);                                                           \
                    hn1 = vshrq_n_u8(hn1, 1);                                                           \
                }                                                                                       \
            }                                                                                           \
            int32x4_t v = vmulq_s32(totals_at(l, 0), sc[0]);                                            \
            v = vmlaq_s32(v, totals_at(l, 1), sc[1]);                                                   \
            v = vmlaq_s32(v, totals_at(l, 2), sc[2]);                                                   \
            v = vmlaq_s32(v, totals_at(l, 3), sc[3]);                                                   \
            int32_t isum = vaddvq_s32(v);                                                               \
            sum += (fp16_value(wa->d) * xb->d) * (float)isum;                                           \
        }                                                                                               \
        return sum;                                                                                     \
    }

DEFINE_VEC_DOT_Q3_K(vec_dot_q3_k, , lanes16)
DEFINE_VEC_DOT_Q3_K(vec_dot_q3_k_dotprod, DOTPROD_FN, lanes16_dot)

/* Q2_K: 4-bit scales in the low nibbles of scales[j], 4-bit mins in the
 * high ones; isum = sum_j sc_j * dot(q_j, x_j), msum = sum_j mn_j * bsum_j. */
#define DEFINE_VEC_DOT_Q2_K(NAME, ATTR, LANES16)                                                       \
    ATTR static float NAME(size_t n, const void *w, const void *x) {                                    \
        const deepc_block_q2_k *a = w;                                                                  \
        const deepc_block_q8_k *b = x;                                                                  \
        const uint8x16_t m3 = vdupq_n_u8(3);                                                            \
        float sum = 0.0f;                                                                               \
        for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++) {                                                \
            const deepc_block_q2_k *wa = a + ib;                                                        \
            const deepc_block_q8_k *xb = b + ib;                                                        \
            uint8x16_t sb = vld1q_u8(wa->scales);                                                       \
            uint8x16_t scb = vandq_u8(sb, vdupq_n_u8(0x0f));                                            \
            int16x8_t mn_lo = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(vshrq_n_u8(sb, 4))));           \
            int16x8_t mn_hi = vreinterpretq_s16_u16(vmovl_high_u8(vshrq_n_u8(sb, 4)));                  \
            int16x8_t bs0 = vld1q_s16(xb->bsums), bs1 = vld1q_s16(xb->bsums + 8);                       \
            int32x4_t ms = vmull_s16(vget_low_s16(bs0), vget_low_s16(mn_lo));                           \
            ms = vmlal_high_s16(ms, bs0, mn_lo);                                                        \
            ms = vmlal_s16(ms, vget_low_s16(bs1), vget_low_s16(mn_hi));                                 \
            ms = vmlal_high_s16(ms, bs1, mn_hi);                                                        \
            int32_t msum = vaddvq_s32(ms);                                                              \
            int32x4_t l[16];                                                                            \
            UNROLL_ALL for (int h = 0; h < 2; h++) {                                                    \
                uint8x16_t q0 = vld1q_u8(wa->qs + 32 * h), q1 = vld1q_u8(wa->qs + 32 * h + 16);         \
                UNROLL_ALL for (int s = 0; s < 4; s++) {                                                \
                    int k = 4 * h + s;                                                                  \
                    l[2 * k] = LANES16(vreinterpretq_s8_u8(vandq_u8(q0, m3)), vld1q_s8(xb->qs + 32 * k)); \
                    l[2 * k + 1] = LANES16(vreinterpretq_s8_u8(vandq_u8(q1, m3)),                       \
                                           vld1q_s8(xb->qs + 32 * k + 16));                             \
                    q0 = vshrq_n_u8(q0, 2);                                                             \
                    q1 = vshrq_n_u8(q1, 2);                                                             \
                }                                                                                       \
            }                                                                                           \
            int32x4_t v = vmulq_s32(totals_at(l, 0), widen_u8_lo4(vget_low_u8(scb)));                   \
            v = vmlaq_s32(v, totals_at(l, 1), widen_u8_hi4(vget_low_u8(scb)));                          \
            v = vmlaq_s32(v, totals_at(l, 2), widen_u8_lo4(vget_high_u8(scb)));                         \
            v = vmlaq_s32(v, totals_at(l, 3), widen_u8_hi4(vget_high_u8(scb)));                         \
            int32_t isum = vaddvq_s32(v);                                                               \
            sum += xb->d * (fp16_value(wa->d) * (float)isum - fp16_value(wa->dmin) * (float)msum);      \
        }                                                                                               \
        return sum;                                                                                     \
    }

DEFINE_VEC_DOT_Q2_K(vec_dot_q2_k, , lanes16)
DEFINE_VEC_DOT_Q2_K(vec_dot_q2_k_dotprod, DOTPROD_FN, lanes16_dot)

/* Q8_K weights (an unusual file type) x Q8_K: the exact integer dot of each
 * super-block (|isum| <= 256 * 128 * 127 < 2^23) in sixteen 16-byte steps,
 * times d_w * d_x as in scalar. Any int8 on both sides. */
static inline int32x4_t q8_k_lanes16(int8x16_t a, int8x16_t b) {
    return vpadalq_s16(vpaddlq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b))), vmull_high_s8(a, b));
}

#define DEFINE_VEC_DOT_Q8_K(NAME, ATTR, LANES16)                                                       \
    ATTR static float NAME(size_t n, const void *w, const void *x) {                                    \
        const deepc_block_q8_k *a = w, *b = x;                                                          \
        float sum = 0.0f;                                                                               \
        for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++) {                                                \
            int32x4_t s0 = vdupq_n_s32(0), s1 = s0;                                                     \
            for (int i = 0; i < DEEPC_QK_K; i += 32) {                                                  \
                s0 = vaddq_s32(s0, LANES16(vld1q_s8(a[ib].qs + i), vld1q_s8(b[ib].qs + i)));            \
                s1 = vaddq_s32(s1, LANES16(vld1q_s8(a[ib].qs + i + 16), vld1q_s8(b[ib].qs + i + 16)));  \
            }                                                                                           \
            int32_t isum = vaddvq_s32(vaddq_s32(s0, s1));                                               \
            sum += (a[ib].d * b[ib].d) * (float)isum;                                                   \
        }                                                                                               \
        return sum;                                                                                     \
    }

DEFINE_VEC_DOT_Q8_K(vec_dot_q8_k, , q8_k_lanes16)
DEFINE_VEC_DOT_Q8_K(vec_dot_q8_k_dotprod, DOTPROD_FN, lanes16_dot)

/* ---- FP8_B128 weights x F32 activations --------------------------------- */

/* E4M3 decoded through fp16, 8 codes at a time (the trick of
 * arch/x86_avx2.c): sign-extend each byte to 16 bits and shift left by 7,
 * which puts exponent and mantissa at bits 13-7 and the sign at bit 15; with
 * bit 14 (a copy of the sign) cleared that is, as an fp16, the E4M3 value
 * times 2^-8 exactly (E4M3 subnormals become fp16 subnormals), and FCVTL
 * widens it exactly. The block sum is multiplied by 2^8 (exact, and it
 * overflows only where the scalar sum would) before the block scale. The NaN
 * codes (0x7f, 0xff) would decode as +-480: the kernel ORs a per-byte check
 * over the row and returns NaN if one was seen, which is what the scalar
 * kernel's sum becomes. Per block: four FMA accumulators, one horizontal
 * sum, then sum += d * block as in scalar, in block order. */
static inline float16x8_t fp8_to_half8(int8x8_t v) {
    return vreinterpretq_f16_s16(vandq_s16(vshlq_n_s16(vmovl_s8(v), 7), vdupq_n_s16((int16_t)0xbf80)));
}

static float vec_dot_fp8_b128(size_t n, const void *w, const void *x) {
    const deepc_block_fp8_b128 *a = w;
    const float *xf = x;
    const uint8x16_t m7f = vdupq_n_u8(0x7f);
    uint8x16_t nan_seen = vdupq_n_u8(0);
    float sum = 0.0f;
    for (size_t ib = 0; ib < n / DEEPC_QK_FP8; ib++, xf += DEEPC_QK_FP8) {
        const uint8_t *q = a[ib].qs;
        float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
        for (int i = 0; i < DEEPC_QK_FP8; i += 16) {
            uint8x16_t v = vld1q_u8(q + i);
            nan_seen = vorrq_u8(nan_seen, vceqq_u8(vandq_u8(v, m7f), m7f));
            float16x8_t h0 = fp8_to_half8(vget_low_s8(vreinterpretq_s8_u8(v)));
            float16x8_t h1 = fp8_to_half8(vget_high_s8(vreinterpretq_s8_u8(v)));
            s0 = vfmaq_f32(s0, vcvt_f32_f16(vget_low_f16(h0)), vld1q_f32(xf + i));
            s1 = vfmaq_f32(s1, vcvt_high_f32_f16(h0), vld1q_f32(xf + i + 4));
            s2 = vfmaq_f32(s2, vcvt_f32_f16(vget_low_f16(h1)), vld1q_f32(xf + i + 8));
            s3 = vfmaq_f32(s3, vcvt_high_f32_f16(h1), vld1q_f32(xf + i + 12));
        }
        float blk = hsum4(s0, s1, s2, s3) * 256.0f;
        sum += a[ib].d * blk;
    }
    if (vmaxvq_u8(nan_seen) != 0) return NAN;
    return sum;
}

/* ---- Q8_K activations ---------------------------------------------------- */

/* Bit-identical to deepc_quantize_row(Q8_K): NaN elements are zeroed before
 * the maximum (the reference skips them; +-inf count), d = amax / 127 in
 * fp32 and the same inverse; each x * id (NaN again where inf * 0) is
 * clamped to +-127 by FMAX/FMIN, which pass a NaN on, and FCVTNS rounds to
 * nearest even and turns NaN into 0, the reference's value for it. The
 * 16-element sums are exact (at most 16 * 127). */
static void quantize_q8_k(const float *x, void *dst, size_t n) {
    deepc_block_q8_k *out = dst;
    const float32x4_t lo = vdupq_n_f32(-127.0f), hi = vdupq_n_f32(127.0f);
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++, x += DEEPC_QK_K) {
        float32x4_t m = vdupq_n_f32(0.0f);
        for (int i = 0; i < DEEPC_QK_K; i += 4) {
            float32x4_t t = vld1q_f32(x + i);
            uint32x4_t ord = vceqq_f32(t, t);
            m = vmaxq_f32(m, vabsq_f32(vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(t), ord))));
        }
        float d = vmaxvq_f32(m) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        out[ib].d = d;
        for (int g = 0; g < DEEPC_QK_K; g += 16) {
            int32x4_t q[4];
            for (int j = 0; j < 4; j++)
                q[j] = vcvtnq_s32_f32(vminq_f32(vmaxq_f32(vmulq_n_f32(vld1q_f32(x + g + 4 * j), id), lo), hi));
            /* every value is in [-127, 127]: plain narrowing is exact */
            int16x8_t h0 = vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1]));
            int16x8_t h1 = vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3]));
            int8x16_t v = vcombine_s8(vmovn_s16(h0), vmovn_s16(h1));
            vst1q_s8(out[ib].qs + g, v);
            out[ib].bsums[g / 16] = vaddlvq_s8(v);
        }
    }
}

/* ---- the tables --------------------------------------------------------- */

/* Built once, on first use, from the scalar table: the types overridden
 * below get NEON kernels, every other slot (name aside) stays scalar. */
static deepc_kernels neon_kernels, neon_dotprod_kernels;
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void build_tables(void) {
    deepc_kernels k = *deepc_kernels_scalar();
    k.name = "neon";
    k.vec_dot[DEEPC_TYPE_F32] = vec_dot_f32;
    k.vec_dot[DEEPC_TYPE_F16] = vec_dot_f16;
    k.vec_dot[DEEPC_TYPE_BF16] = vec_dot_bf16;
    k.vec_dot[DEEPC_TYPE_Q8_0] = vec_dot_q8_0;
    k.vec_dot[DEEPC_TYPE_Q4_K] = vec_dot_q4_k;
    k.vec_dot[DEEPC_TYPE_Q3_K] = vec_dot_q3_k;
    k.vec_dot[DEEPC_TYPE_Q2_K] = vec_dot_q2_k;
    k.vec_dot[DEEPC_TYPE_Q8_K] = vec_dot_q8_k;
    k.vec_dot[DEEPC_TYPE_FP8_B128] = vec_dot_fp8_b128;
    k.vec_dot[DEEPC_TYPE_Q4_1] = deepc_neon_vec_dot_q4_1;
    k.vec_dot[DEEPC_TYPE_Q6_K] = deepc_neon_vec_dot_q6_k;
    k.quantize_act[DEEPC_TYPE_Q8_0] = quantize_q8_0;
    k.quantize_act[DEEPC_TYPE_Q8_K] = quantize_q8_k;
    /* The batched products must equal this table's vec_dot bit for bit
     * (core/kernels.h), so the scalar table's (scalar vec_dot per output)
     * may not stay: Q8_0 gets the NEON one of arch/neon_ops.c, the float
     * types none (core then calls vec_dot per output). */
    for (int t = 0; t < DEEPC_TYPE_COUNT; t++) k.gemm[t] = NULL;
    k.gemm[DEEPC_TYPE_Q8_0] = deepc_neon_gemm_q8_0;
    k.dot_f16_f32 = deepc_neon_dot_f16_f32;
    k.axpy_f16_f32 = deepc_neon_axpy_f16_f32;
    k.dot_rows_f16_f32 = deepc_neon_dot_rows_f16_f32;
    k.axpy_rows_f16_f32 = deepc_neon_axpy_rows_f16_f32;
    neon_kernels = k;

    k.name = "neon-dotprod";
    k.vec_dot[DEEPC_TYPE_Q8_0] = vec_dot_q8_0_dotprod;
    k.vec_dot[DEEPC_TYPE_Q4_K] = vec_dot_q4_k_dotprod;
    k.vec_dot[DEEPC_TYPE_Q3_K] = vec_dot_q3_k_dotprod;
    k.vec_dot[DEEPC_TYPE_Q2_K] = vec_dot_q2_k_dotprod;
    k.vec_dot[DEEPC_TYPE_Q8_K] = vec_dot_q8_k_dotprod;
    k.vec_dot[DEEPC_TYPE_Q4_1] = deepc_neon_vec_dot_q4_1_dotprod;
    k.vec_dot[DEEPC_TYPE_Q6_K] = deepc_neon_vec_dot_q6_k_dotprod;
    k.gemm[DEEPC_TYPE_Q8_0] = deepc_neon_dotprod_gemm_q8_0;
    neon_dotprod_kernels = k;
}

const deepc_kernels *deepc_kernels_neon(void) {
    pthread_once(&tables_once, build_tables);
    return &neon_kernels;
}

const deepc_kernels *deepc_kernels_neon_dotprod(void) {
    pthread_once(&tables_once, build_tables);
    return &neon_dotprod_kernels;
}
