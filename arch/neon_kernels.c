/* neon_kernels.c - the AArch64 Advanced SIMD backends: "neon" (plain
 * Armv8.0-A, every AArch64 CPU) and "neon-dotprod" (the same plus SDOT for
 * the Q8_0 integer dots, FEAT_DotProd: Cortex-A55/A76 and later, Apple M1+,
 * Graviton 2+). The file is compiled with no -m/-march flags, so the "neon"
 * table runs on any AArch64 CPU; only the one function that uses SDOT is
 * compiled for it (a target attribute), and arch/cpu_arm.c checks the CPU
 * before the selector hands out "neon-dotprod".
 *
 * Both tables start as a copy of the scalar table, so every type this file
 * does not speed up (and every type added later) keeps working through the
 * scalar kernel; this file then overrides F32, F16, BF16 and Q8_0 vec_dot
 * and the Q8_0 activation quantizer.
 *
 * Shape of the kernels, as in arch/x86_avx2.c: float dots keep four
 * independent FMA accumulators and do one horizontal sum at the end; Q8_0
 * reduces four blocks' exact integer dots to one vector of per-block totals
 * and scales them with one FMA. Every loop ends in a scalar tail, so every n
 * works. Results equal the scalar backend's up to fp32 summation order; the
 * integer part of Q8_0 is exact (test/neon_parity.c). Little-endian only, as
 * is the file format: 16-bit weights are loaded as bytes and reinterpreted. */
#include <arm_neon.h>
#include <pthread.h>
#include <string.h>

#include "cpu.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "arch/neon_kernels.c assumes a little-endian AArch64 target"
#endif

/* SDOT needs FEAT_DotProd: enable it for single functions unless the whole
 * build already targets it. GCC's arm_neon.h offers vdotq_s32 to functions
 * compiled for "arch=armv8.2-a+dotprod" (every CPU with SDOT is at least
 * Armv8.2). Clang before 16 offers it only when the whole file targets
 * dotprod, so with clang the one SDOT instruction is written as inline
 * assembly, which every version accepts inside a target("dotprod") function. */
#if defined(__ARM_FEATURE_DOTPROD)
#define DOTPROD_FN
#define SDOT_INTRINSIC 1
#elif defined(__clang__)
#define DOTPROD_FN __attribute__((target("dotprod")))
#define SDOT_INTRINSIC 0
#else
#define DOTPROD_FN __attribute__((target("arch=armv8.2-a+dotprod")))
#define SDOT_INTRINSIC 1
#endif

/* acc + per-lane sums of four int8 products (lane i: bytes 4i..4i+3). */
DOTPROD_FN static inline int32x4_t sdot_s32(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if SDOT_INTRINSIC
    return vdotq_s32(acc, a, b);
#else
    __asm__("sdot %0.4s, %1.16b, %2.16b" : "+w"(acc) : "w"(a), "w"(b));
    return acc;
#endif
}

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
    k.quantize_act[DEEPC_TYPE_Q8_0] = quantize_q8_0;
    neon_kernels = k;

    k.name = "neon-dotprod";
    k.vec_dot[DEEPC_TYPE_Q8_0] = vec_dot_q8_0_dotprod;
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
