/* neon_ops.c - AArch64 Advanced SIMD kernels beyond vec_dot: the Q8_0 batched
 * product of the "neon" and "neon-dotprod" tables and the fp16 KV-cache
 * primitives both tables share (arch/neon_kernels.c puts them in the tables).
 * Compiled with no -m/-march flags like arch/neon_kernels.c: only the SDOT
 * micro-kernel is compiled for FEAT_DotProd (a target attribute), and only
 * the "neon-dotprod" table, handed out after the CPU check, calls it.
 *
 * Q8_0 gemm: groups of 4 consecutive blocks are transposed once into a
 * packed form in which lane k of register j holds bytes 4j..4j+3 of block k
 * (and lane k of the scale vector block k's scale), so a micro-tile of
 * GEMM_MR weight rows x GEMM_NR tokens accumulates each block's integer dot
 * in its own lane, with no horizontal reduction: 8 SDOTs per pair (or 16
 * widening multiplies and pairwise adds without SDOT), every packed register
 * loaded once per micro-tile instead of once per output. Activations are
 * packed once per token tile and k-chunk, weights once per micro-row and
 * k-chunk (reused by every token of the tile); row blocks are sized so their
 * weights stay in L2 while all token tiles pass over them.
 *
 * Bit-identity with vec_dot_q8_0 / vec_dot_q8_0_dotprod of neon_kernels.c:
 * the block totals are exact integers however they are added up, and every
 * output gets vec_dot's float operations in vec_dot's order: group g of four
 * blocks (blocks 4g..4g+3) FMA'd as (float)totals x (d_w * d_x) into
 * accumulator g & 1 (vec_dot's s0 / s1: its 8-block loop, then a lone group
 * into s0), the two accumulators added and reduced by FADDP, then each of
 * the nb % 4 remaining blocks added in order as (float)total * (d_w * d_x).
 * test/neon_parity.c checks every output against vec_dot. */
#include <arm_neon.h>
#include <string.h>

#include "cpu.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "arch/neon_ops.c assumes a little-endian AArch64 target"
#endif

#include "neon_sdot.h"

/* ---- Q8_0 gemm ---------------------------------------------------------- */

#define GEMM_MR 4                  /* weight rows per micro-tile */
#define GEMM_NR 2                  /* tokens per micro-tile (4 x 2: 16 int32 accumulators without SDOT) */
#define GEMM_TN 16                 /* tokens per tile */
#define GEMM_KC 8                  /* 4-block groups per k-chunk (1024 elements) */
#define GEMM_RB 32                 /* rows per row block at most */
#define GEMM_RB_BYTES (256 * 1024) /* a row block's weights stay in L2 across token tiles */
/* stack: packed activations 18 KiB, packed weights 4.5 KiB, accumulators 16 KiB */

typedef struct {
    int8x16_t q[8];   /* q[j] lane k: bytes 4j..4j+3 of block k */
    float32x4_t d;    /* lane k: block k's scale */
} grp4;

/* Blocks b[0..3] transposed: two 4x4 transposes of 32-bit lanes (bytes 0-15
 * and 16-31 of the blocks). */
static inline void pack_grp4(const deepc_block_q8_0 *b, grp4 *o) {
    for (int h = 0; h < 2; h++) {
        int32x4_t r0 = vreinterpretq_s32_s8(vld1q_s8(b[0].qs + 16 * h));
        int32x4_t r1 = vreinterpretq_s32_s8(vld1q_s8(b[1].qs + 16 * h));
        int32x4_t r2 = vreinterpretq_s32_s8(vld1q_s8(b[2].qs + 16 * h));
        int32x4_t r3 = vreinterpretq_s32_s8(vld1q_s8(b[3].qs + 16 * h));
        int64x2_t t0 = vreinterpretq_s64_s32(vtrn1q_s32(r0, r1)), t1 = vreinterpretq_s64_s32(vtrn2q_s32(r0, r1));
        int64x2_t t2 = vreinterpretq_s64_s32(vtrn1q_s32(r2, r3)), t3 = vreinterpretq_s64_s32(vtrn2q_s32(r2, r3));
        o->q[4 * h + 0] = vreinterpretq_s8_s64(vtrn1q_s64(t0, t2));
        o->q[4 * h + 1] = vreinterpretq_s8_s64(vtrn1q_s64(t1, t3));
        o->q[4 * h + 2] = vreinterpretq_s8_s64(vtrn2q_s64(t0, t2));
        o->q[4 * h + 3] = vreinterpretq_s8_s64(vtrn2q_s64(t1, t3));
    }
    const uint16_t hd[4] = { b[0].d, b[1].d, b[2].d, b[3].d };
    o->d = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(hd)));
}

/* A micro-kernel: for groups [0, gn) of the chunk starting at group g0,
 * acc[r][t][(g0 + g) & 1] += (float)totals(w[r][g], x[t][g]) * (d_w * d_x). */
typedef void micro_fn(size_t g0, size_t gn, const grp4 *const *w, const grp4 *const *x,
                      float32x4_t *(*acc)[GEMM_NR]);

/* The float step, shared by both micro-kernels (vec_dot's FMA, operand for
 * operand). */
#define GEMM_FMA(r, t, I)                                                                                   \
    acc[r][t][p] = vfmaq_f32(acc[r][t][p], vcvtq_f32_s32(I), vmulq_f32(w##r[g].d, x##t[g].d))

DOTPROD_FN static void micro_sdot(size_t g0, size_t gn, const grp4 *const *w, const grp4 *const *x,
                                  float32x4_t *(*acc)[GEMM_NR]) {
    const grp4 *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3], *x0 = x[0], *x1 = x[1];
    for (size_t g = 0; g < gn; g++) {
        int32x4_t i00 = vdupq_n_s32(0), i01 = i00, i10 = i00, i11 = i00, i20 = i00, i21 = i00, i30 = i00, i31 = i00;
        for (int j = 0; j < 8; j++) {
            int8x16_t a0 = w0[g].q[j], a1 = w1[g].q[j], a2 = w2[g].q[j], a3 = w3[g].q[j];
            int8x16_t b0 = x0[g].q[j], b1 = x1[g].q[j];
            i00 = sdot_s32(i00, a0, b0), i01 = sdot_s32(i01, a0, b1);
            i10 = sdot_s32(i10, a1, b0), i11 = sdot_s32(i11, a1, b1);
            i20 = sdot_s32(i20, a2, b0), i21 = sdot_s32(i21, a2, b1);
            i30 = sdot_s32(i30, a3, b0), i31 = sdot_s32(i31, a3, b1);
        }
        int p = (int)((g0 + g) & 1);
        GEMM_FMA(0, 0, i00), GEMM_FMA(0, 1, i01), GEMM_FMA(1, 0, i10), GEMM_FMA(1, 1, i11);
        GEMM_FMA(2, 0, i20), GEMM_FMA(2, 1, i21), GEMM_FMA(3, 0, i30), GEMM_FMA(3, 1, i31);
    }
}

/* Armv8.0: int8 x int8 widened to int16 (exact for any pair), pairs added
 * into int32 lanes: lo holds blocks 0, 0, 1, 1 and hi blocks 2, 2, 3, 3, one
 * final pairwise add gives the four totals. */
static void micro_base(size_t g0, size_t gn, const grp4 *const *w, const grp4 *const *x,
                       float32x4_t *(*acc)[GEMM_NR]) {
    const grp4 *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3], *x0 = x[0], *x1 = x[1];
    for (size_t g = 0; g < gn; g++) {
        int32x4_t l00 = vdupq_n_s32(0), l01 = l00, l10 = l00, l11 = l00, l20 = l00, l21 = l00, l30 = l00, l31 = l00;
        int32x4_t h00 = l00, h01 = l00, h10 = l00, h11 = l00, h20 = l00, h21 = l00, h30 = l00, h31 = l00;
        for (int j = 0; j < 8; j++) {
            int8x16_t a0 = w0[g].q[j], a1 = w1[g].q[j], a2 = w2[g].q[j], a3 = w3[g].q[j];
            int8x16_t b0 = x0[g].q[j], b1 = x1[g].q[j];
#define MAC(r, t)                                                                          \
    l##r##t = vpadalq_s16(l##r##t, vmull_s8(vget_low_s8(a##r), vget_low_s8(b##t))); \
    h##r##t = vpadalq_s16(h##r##t, vmull_high_s8(a##r, b##t))
            MAC(0, 0); MAC(0, 1); MAC(1, 0); MAC(1, 1); MAC(2, 0); MAC(2, 1); MAC(3, 0); MAC(3, 1);
#undef MAC
        }
        int p = (int)((g0 + g) & 1);
        GEMM_FMA(0, 0, vpaddq_s32(l00, h00)), GEMM_FMA(0, 1, vpaddq_s32(l01, h01));
        GEMM_FMA(1, 0, vpaddq_s32(l10, h10)), GEMM_FMA(1, 1, vpaddq_s32(l11, h11));
        GEMM_FMA(2, 0, vpaddq_s32(l20, h20)), GEMM_FMA(2, 1, vpaddq_s32(l21, h21));
        GEMM_FMA(3, 0, vpaddq_s32(l30, h30)), GEMM_FMA(3, 1, vpaddq_s32(l31, h31));
    }
}
#undef GEMM_FMA

/* vec_dot's end: the two accumulators, then blocks [ib0, nb) one at a time
 * (the exact total of a block, by either method, times its scale product). */
static float finish(const deepc_block_q8_0 *a, const deepc_block_q8_0 *b, size_t ib0, size_t nb,
                    const float32x4_t s[2]) {
    float sum = vaddvq_f32(vaddq_f32(s[0], s[1]));
    for (size_t ib = ib0; ib < nb; ib++) {
        int8x16_t a0 = vld1q_s8(a[ib].qs), a1 = vld1q_s8(a[ib].qs + 16);
        int8x16_t b0 = vld1q_s8(b[ib].qs), b1 = vld1q_s8(b[ib].qs + 16);
        int32x4_t l = vpaddlq_s16(vmull_s8(vget_low_s8(a0), vget_low_s8(b0)));
        l = vpadalq_s16(l, vmull_high_s8(a0, b0));
        l = vpadalq_s16(l, vmull_s8(vget_low_s8(a1), vget_low_s8(b1)));
        l = vpadalq_s16(l, vmull_high_s8(a1, b1));
        float d = deepc_fp16_to_fp32(a[ib].d) * deepc_fp16_to_fp32(b[ib].d);
        float term = (float)vaddvq_s32(l) * d;
        sum += term;
    }
    return sum;
}

static void gemm_q8_0(micro_fn *micro, int nrows, int ntok, size_t n, const void *w, size_t w_stride,
                      const void *x, size_t x_stride, float *y, size_t y_stride) {
    const unsigned char *wb = w, *xb = x;
    size_t nb = n / DEEPC_QK8_0, ng = nb / 4;
    size_t row_bytes = nb * sizeof(deepc_block_q8_0);
    size_t rbs = row_bytes ? GEMM_RB_BYTES / row_bytes : GEMM_RB;
    int rb = rbs >= GEMM_RB ? GEMM_RB : rbs <= GEMM_MR ? GEMM_MR : (int)rbs / GEMM_MR * GEMM_MR;
    grp4 xt[GEMM_TN][GEMM_KC], wt[GEMM_MR][GEMM_KC];
    float32x4_t acc[GEMM_RB][GEMM_TN][2];
    float32x4_t junk[2] = { vdupq_n_f32(0.0f), vdupq_n_f32(0.0f) }; /* where padding lanes of a micro-tile go */
#define ROW(base, i, stride) ((const deepc_block_q8_0 *)((base) + (size_t)(i) * (stride)))
    for (int r0 = 0; r0 < nrows; r0 += rb) {
        int rn = nrows - r0 < rb ? nrows - r0 : rb;
        for (int t0 = 0; t0 < ntok; t0 += GEMM_TN) {
            int tn = ntok - t0 < GEMM_TN ? ntok - t0 : GEMM_TN;
            for (int r = 0; r < rn; r++)
                for (int t = 0; t < tn; t++) acc[r][t][0] = acc[r][t][1] = vdupq_n_f32(0.0f);
            for (size_t g0 = 0; g0 < ng; g0 += GEMM_KC) {
                size_t gn = ng - g0 < GEMM_KC ? ng - g0 : GEMM_KC;
                for (int t = 0; t < tn; t++)
                    for (size_t g = 0; g < gn; g++) pack_grp4(ROW(xb, t0 + t, x_stride) + 4 * (g0 + g), &xt[t][g]);
                for (int rm = 0; rm < rn; rm += GEMM_MR) {
                    int rr = rn - rm < GEMM_MR ? rn - rm : GEMM_MR;
                    const grp4 *wp[GEMM_MR];
                    for (int r = 0; r < GEMM_MR; r++) {
                        wp[r] = wt[r < rr ? r : 0]; /* missing rows repeat row 0 into junk */
                        if (r < rr)
                            for (size_t g = 0; g < gn; g++)
                                pack_grp4(ROW(wb, r0 + rm + r, w_stride) + 4 * (g0 + g), &wt[r][g]);
                    }
                    for (int tm = 0; tm < tn; tm += GEMM_NR) {
                        int tt = tn - tm < GEMM_NR ? tn - tm : GEMM_NR;
                        const grp4 *xp[GEMM_NR];
                        float32x4_t *ap[GEMM_MR][GEMM_NR];
                        for (int t = 0; t < GEMM_NR; t++) xp[t] = xt[tm + (t < tt ? t : 0)];
                        for (int r = 0; r < GEMM_MR; r++)
                            for (int t = 0; t < GEMM_NR; t++) ap[r][t] = r < rr && t < tt ? acc[rm + r][tm + t] : junk;
                        micro(g0, gn, wp, xp, ap);
                    }
                }
            }
            for (int r = 0; r < rn; r++)
                for (int t = 0; t < tn; t++)
                    y[(size_t)(t0 + t) * y_stride + (size_t)(r0 + r)] =
                        finish(ROW(wb, r0 + r, w_stride), ROW(xb, t0 + t, x_stride), 4 * ng, nb, acc[r][t]);
        }
    }
#undef ROW
}

void deepc_neon_gemm_q8_0(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                          size_t x_stride, float *y, size_t y_stride) {
    gemm_q8_0(micro_base, nrows, ntok, n, w, w_stride, x, x_stride, y, y_stride);
}

void deepc_neon_dotprod_gemm_q8_0(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                                  size_t x_stride, float *y, size_t y_stride) {
    gemm_q8_0(micro_sdot, nrows, ntok, n, w, w_stride, x, x_stride, y, y_stride);
}

/* ---- fp16 KV cache ------------------------------------------------------ */

/* Cache rows are loaded as bytes (any alignment) and widened exactly. */
static inline void load8_f16(const unsigned char *p, float32x4_t *lo, float32x4_t *hi) {
    float16x8_t h = vreinterpretq_f16_u8(vld1q_u8(p));
    *lo = vcvt_f32_f16(vget_low_f16(h));
    *hi = vcvt_high_f32_f16(h);
}

static inline float32x4_t load4_f16(const unsigned char *p) {
    return vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(p)));
}

static inline float f16_at(const unsigned char *p, size_t i) {
    uint16_t h;
    memcpy(&h, p + 2 * i, sizeof h);
    return deepc_fp16_to_fp32(h);
}

/* Four FMA accumulators over 16 elements, a 4-wide loop, one horizontal sum,
 * a scalar tail (the shape of vec_dot_f16 in arch/neon_kernels.c). */
static inline float dot_f16(size_t n, const uint16_t *a16, const float *b) {
    const unsigned char *a = (const unsigned char *)a16;
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
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; i++) sum += f16_at(a, i) * b[i];
    return sum;
}

float deepc_neon_dot_f16_f32(size_t n, const uint16_t *a, const float *b) {
    return dot_f16(n, a, b);
}

void deepc_neon_dot_rows_f16_f32(size_t n, size_t m, const uint16_t *a, size_t a_stride, const float *b,
                                 float *out) {
    for (size_t p = 0; p < m; p++) out[p] = dot_f16(n, a + p * a_stride, b);
}

/* Multiply, then add: two roundings, as the scalar twin (FMUL and FADD are
 * separate intrinsics, and -std=c11 lets no compiler fuse them). */
void deepc_neon_axpy_f16_f32(size_t n, float alpha, const uint16_t *x16, float *y) {
    const unsigned char *x = (const unsigned char *)x16;
    float32x4_t lo, hi;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        load8_f16(x + 2 * i, &lo, &hi);
        vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vmulq_n_f32(lo, alpha)));
        vst1q_f32(y + i + 4, vaddq_f32(vld1q_f32(y + i + 4), vmulq_n_f32(hi, alpha)));
    }
    for (; i < n; i++) {
        float p = alpha * f16_at(x, i);
        y[i] += p;
    }
}

/* m axpys in row order with 64 columns of y held in registers: each element
 * sees the same multiplies and adds in the same order as m calls of
 * axpy_f16_f32, so the same bits; the columns past the last 64 go through
 * that kernel row by row. */
void deepc_neon_axpy_rows_f16_f32(size_t n, size_t m, const float *alpha, const uint16_t *x16, size_t x_stride,
                                  float *y) {
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        float32x4_t acc[16];
        for (int k = 0; k < 16; k++) acc[k] = vld1q_f32(y + i + 4 * k);
        for (size_t p = 0; p < m; p++) {
            const unsigned char *r = (const unsigned char *)(x16 + p * x_stride + i);
            const float a = alpha[p];
            for (int k = 0; k < 8; k++) {
                float32x4_t lo, hi;
                load8_f16(r + 16 * k, &lo, &hi);
                acc[2 * k] = vaddq_f32(acc[2 * k], vmulq_n_f32(lo, a));
                acc[2 * k + 1] = vaddq_f32(acc[2 * k + 1], vmulq_n_f32(hi, a));
            }
        }
        for (int k = 0; k < 16; k++) vst1q_f32(y + i + 4 * k, acc[k]);
    }
    if (i < n)
        for (size_t p = 0; p < m; p++) deepc_neon_axpy_f16_f32(n - i, alpha[p], x16 + p * x_stride + i, y + i);
}
