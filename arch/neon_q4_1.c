/* neon_q4_1.c - the AArch64 NEON kernels of q4_1 weights x Q8_0
 * activations; arch/neon_kernels.c puts them in its two tables. Compiled
 * with no -m/-march flags, like neon_kernels.c: the plain kernel runs on any
 * AArch64 CPU, the SDOT one is compiled for FEAT_DotProd alone (a target
 * attribute) and only reaches "neon-dotprod", which the selector offers only
 * on CPUs with SDOT. Integer parts equal the scalar kernel's exactly; the
 * float part differs only in summation order (test/neon_parity.c). */
#include <arm_neon.h>

#include "cpu.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "arch/neon_q4_1.c assumes a little-endian AArch64 target"
#endif

#include "neon_sdot.h"

/* One block's codes: elements 0-15 (low nibbles) and 16-31 (high nibbles),
 * as int8 in [0, 15]. */
static inline void q41_codes(const deepc_block_q4_1 *a, int8x16_t *lo, int8x16_t *hi) {
    uint8x16_t raw = vld1q_u8(a->qs);
    *lo = vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(15)));
    *hi = vreinterpretq_s8_u8(vshrq_n_u8(raw, 4));
}

/* Exact integer dot (codes x activation) and activation sum of one block as
 * 4 int32 lane sums each. Products are at most 15 * 128, pairs of them
 * 3840: int16 lanes hold them, and pairwise widening adds finish in int32. */
static inline void q41_lanes(const deepc_block_q4_1 *a, const deepc_block_q8_0 *b, int32x4_t *dot, int32x4_t *xs) {
    int8x16_t lo, hi;
    q41_codes(a, &lo, &hi);
    int8x16_t x0 = vld1q_s8(b->qs), x1 = vld1q_s8(b->qs + 16);
    int16x8_t p = vmull_s8(vget_low_s8(lo), vget_low_s8(x0));
    p = vmlal_s8(p, vget_high_s8(lo), vget_high_s8(x0)); /* two products per lane: |.| <= 3840 */
    int16x8_t r = vmull_s8(vget_low_s8(hi), vget_low_s8(x1));
    r = vmlal_s8(r, vget_high_s8(hi), vget_high_s8(x1));
    *dot = vpadalq_s16(vpaddlq_s16(p), r);
    *xs = vpaddlq_s16(vaddq_s16(vpaddlq_s8(x0), vpaddlq_s8(x1)));
}

DOTPROD_FN static inline void q41_lanes_dot(const deepc_block_q4_1 *a, const deepc_block_q8_0 *b, int32x4_t *dot,
                                               int32x4_t *xs) {
    int8x16_t lo, hi;
    q41_codes(a, &lo, &hi);
    int8x16_t x0 = vld1q_s8(b->qs), x1 = vld1q_s8(b->qs + 16);
    const int8x16_t ones = vdupq_n_s8(1);
    *dot = sdot_s32(sdot_s32(vdupq_n_s32(0), lo, x0), hi, x1);
    *xs = sdot_s32(sdot_s32(vdupq_n_s32(0), ones, x0), ones, x1);
}

/* Four vectors of lane sums -> their four totals, in order. */
static inline int32x4_t q41_totals4(int32x4_t a, int32x4_t b, int32x4_t c, int32x4_t d) {
    return vpaddq_s32(vpaddq_s32(a, b), vpaddq_s32(c, d));
}

static inline float32x4_t q41_f16x4(uint16_t a, uint16_t b, uint16_t c, uint16_t d) {
    const uint16_t h[4] = { a, b, c, d };
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h)));
}

/* Four blocks at a time: exact totals and sums as float, then
 * d_x * (d * isum - m * xsum) per block, accumulated with one FMA; the
 * remaining blocks one at a time with the scalar kernel's expression. A
 * macro so the SDOT lanes are inlined only into the SDOT function. */
#define Q41_DOT_BODY(LANES)                                                                                  \
    const deepc_block_q4_1 *a = w;                                                                          \
    const deepc_block_q8_0 *b = x;                                                                          \
    size_t nb = n / DEEPC_QK4_1, ib = 0;                                                                    \
    float32x4_t acc = vdupq_n_f32(0.0f);                                                                    \
    for (; ib + 4 <= nb; ib += 4) {                                                                         \
        int32x4_t d0, d1, d2, d3, s0, s1, s2, s3;                                                           \
        LANES(a + ib, b + ib, &d0, &s0);                                                                    \
        LANES(a + ib + 1, b + ib + 1, &d1, &s1);                                                            \
        LANES(a + ib + 2, b + ib + 2, &d2, &s2);                                                            \
        LANES(a + ib + 3, b + ib + 3, &d3, &s3);                                                            \
        float32x4_t fi = vcvtq_f32_s32(q41_totals4(d0, d1, d2, d3));                                        \
        float32x4_t fx = vcvtq_f32_s32(q41_totals4(s0, s1, s2, s3));                                        \
        const deepc_block_q4_1 *p = a + ib;                                                                 \
        const deepc_block_q8_0 *r = b + ib;                                                                 \
        float32x4_t dw = q41_f16x4(p[0].d, p[1].d, p[2].d, p[3].d);                                         \
        float32x4_t mw = q41_f16x4(p[0].m, p[1].m, p[2].m, p[3].m);                                         \
        float32x4_t dx = q41_f16x4(r[0].d, r[1].d, r[2].d, r[3].d);                                         \
        acc = vfmaq_f32(acc, dx, vsubq_f32(vmulq_f32(dw, fi), vmulq_f32(mw, fx)));                          \
    }                                                                                                       \
    float sum = vaddvq_f32(acc);                                                                            \
    for (; ib < nb; ib++) {                                                                                 \
        int32x4_t dv, xv;                                                                                   \
        LANES(a + ib, b + ib, &dv, &xv);                                                                    \
        sum += deepc_fp16_to_fp32(b[ib].d) * (deepc_fp16_to_fp32(a[ib].d) * (float)vaddvq_s32(dv) -         \
                                              deepc_fp16_to_fp32(a[ib].m) * (float)vaddvq_s32(xv));         \
    }                                                                                                       \
    return sum

float deepc_neon_vec_dot_q4_1(size_t n, const void *w, const void *x) {
    Q41_DOT_BODY(q41_lanes);
}

DOTPROD_FN float deepc_neon_vec_dot_q4_1_dotprod(size_t n, const void *w, const void *x) {
    Q41_DOT_BODY(q41_lanes_dot);
}

/* ---- the layered tables ------------------------------------------------- */
