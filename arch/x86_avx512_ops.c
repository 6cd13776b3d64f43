/* x86_avx512_ops.c - AVX-512 kernels beyond vec_dot: the Q8_0 batched
 * product for "avx512vnni" and the fp16 KV-cache primitives of both AVX-512
 * tables. Compiled with the AVX-512 flags of the Makefile (VNNI included);
 * only deepc_avx512vnni_gemm_q8_0 uses VNNI, the "avx512" table takes the
 * AVX2 gemm instead (arch/cpu.h).
 *
 * Q8_0 gemm. vec_dot (x86_avx512.c) spends most of its instructions folding
 * each block's 8 partial lane sums into one total. Here the weight blocks are
 * transposed in registers instead: for 16 consecutive blocks, register j
 * holds dword j (bytes 4j..4j+3) of block k in lane k, so eight vpdpbusd
 * leave block k's whole integer dot in lane k with no horizontal work. The
 * transposition costs ~40 shuffles per 16 blocks of a row and is shared by up
 * to GEMM_RN tokens; the activations are transposed the same way once per
 * tile into a stack buffer (their blocks are reused by every row).
 * vpdpbusd multiplies unsigned by signed bytes: the weights go in as w + 128
 * (a sign-bit flip) and the tile carries -128 * (sum of each activation
 * block), so the lane total is exactly the block's signed dot.
 *
 * Bit-identity with vec_dot_q8_0_vnni: the integer totals are exact either
 * way; the float work is the same per output: blocks in groups of 8, each
 * group's totals converted, times the fp32 products d_w * d_x, fused into one
 * 8-lane accumulator in group order; the last nb % 8 blocks as 8 lane sums
 * each into a second accumulator; one hsum of their sum. */
#include <immintrin.h>
#include <string.h>

#include "cpu.h"

/* ---- Q8_0 gemm ---------------------------------------------------------- */

#define GEMM_RN 16           /* tokens per tile */
#define GEMM_KC 4            /* 8-block groups per k-chunk (1024 elements): the tile, 20 KiB, stays in L1 */
_Static_assert(GEMM_KC % 2 == 0, "chunks hold whole pairs of groups");
#define GEMM_RB_MAX 64       /* rows per row block (the accumulators: 32 KiB of stack) */
#define GEMM_RB_BYTES (384 * 1024) /* a row block's weights stay in L2 across token tiles */

/* One token's share of a k-chunk, transposed: pair m covers groups 2m, 2m+1
 * (blocks 16m .. 16m+15 of the chunk, lane k = block 16m + k). */
typedef struct {
    __m512i q[GEMM_KC / 2][8];   /* q[m][j] lane k: dword j of block 16m + k */
    __m512i nc[GEMM_KC / 2];     /* lane k: -128 * sum of block 16m + k's qs */
    __m512 d[GEMM_KC / 2];       /* lane k: its scale */
} xtile;

static inline float hsum256_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 16 consecutive blocks (8 when !full: the upper lanes are zero) transposed:
 * T[j] lane k = dword j of block k. Block k sits in the low 256 bits of z[k]
 * and block k + 8 in the high ones; an 8x8 dword transpose within each half
 * (unpacks per 128-bit lane, then one two-source qword permute) finishes. */
#if defined(__GNUC__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

static ALWAYS_INLINE void load16_transposed(const deepc_block_q8_0 *b, bool full, __m512i T[8]) {
    /* written out (no arrays or loops) and always inlined, so every value
     * stays in a register: through the stack it ran ~3x slower */
#define Z(k) (full ? _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)b[k].qs)), \
                                        _mm256_loadu_si256((const __m256i *)b[(k) + 8].qs), 1)            \
                   : _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)b[k].qs)))
    __m512i z0 = Z(0), z1 = Z(1), z2 = Z(2), z3 = Z(3), z4 = Z(4), z5 = Z(5), z6 = Z(6), z7 = Z(7);
#undef Z
    __m512i t0 = _mm512_unpacklo_epi32(z0, z1), t1 = _mm512_unpackhi_epi32(z0, z1);
    __m512i t2 = _mm512_unpacklo_epi32(z2, z3), t3 = _mm512_unpackhi_epi32(z2, z3);
    __m512i t4 = _mm512_unpacklo_epi32(z4, z5), t5 = _mm512_unpackhi_epi32(z4, z5);
    __m512i t6 = _mm512_unpacklo_epi32(z6, z7), t7 = _mm512_unpackhi_epi32(z6, z7);
    /* u_j (j < 4) lanes: blocks 0-3 dword j | 0-3 dword j+4 | 8-11 dword j | 8-11 dword j+4;
     * v_j the same for blocks 4-7 and 12-15 */
    __m512i u0 = _mm512_unpacklo_epi64(t0, t2), u1 = _mm512_unpackhi_epi64(t0, t2);
    __m512i u2 = _mm512_unpacklo_epi64(t1, t3), u3 = _mm512_unpackhi_epi64(t1, t3);
    __m512i v0 = _mm512_unpacklo_epi64(t4, t6), v1 = _mm512_unpackhi_epi64(t4, t6);
    __m512i v2 = _mm512_unpacklo_epi64(t5, t7), v3 = _mm512_unpackhi_epi64(t5, t7);
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    T[0] = _mm512_permutex2var_epi64(u0, lo, v0);
    T[1] = _mm512_permutex2var_epi64(u1, lo, v1);
    T[2] = _mm512_permutex2var_epi64(u2, lo, v2);
    T[3] = _mm512_permutex2var_epi64(u3, lo, v3);
    T[4] = _mm512_permutex2var_epi64(u0, hi, v0);
    T[5] = _mm512_permutex2var_epi64(u1, hi, v1);
    T[6] = _mm512_permutex2var_epi64(u2, hi, v2);
    T[7] = _mm512_permutex2var_epi64(u3, hi, v3);
}

/* The fp16 scales of 16 (or 8) consecutive blocks as floats (zero above). */
static ALWAYS_INLINE __m512 load16_scales(const deepc_block_q8_0 *b, bool full) {
    __m128i lo = _mm_setr_epi16((short)b[0].d, (short)b[1].d, (short)b[2].d, (short)b[3].d,
                                (short)b[4].d, (short)b[5].d, (short)b[6].d, (short)b[7].d);
    __m128i hi = full ? _mm_setr_epi16((short)b[8].d, (short)b[9].d, (short)b[10].d, (short)b[11].d,
                                       (short)b[12].d, (short)b[13].d, (short)b[14].d, (short)b[15].d)
                      : _mm_setzero_si128();
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1));
}

/* Transposes token row x's groups g0 .. g0+gn-1 into *xt. */
static void pack_tile(const deepc_block_q8_0 *x, size_t g0, size_t gn, xtile *xt) {
    const __m512i ones = _mm512_set1_epi8(1);
    for (size_t m = 0; 2 * m < gn; m++) {
        const deepc_block_q8_0 *b = x + (g0 + 2 * m) * 8;
        bool full = 2 * m + 1 < gn;
        __m512i T[8];
        load16_transposed(b, full, T);
        __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, T[0]);
        __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, T[1]);
        s0 = _mm512_dpbusd_epi32(s0, ones, T[2]), s1 = _mm512_dpbusd_epi32(s1, ones, T[3]);
        s0 = _mm512_dpbusd_epi32(s0, ones, T[4]), s1 = _mm512_dpbusd_epi32(s1, ones, T[5]);
        s0 = _mm512_dpbusd_epi32(s0, ones, T[6]), s1 = _mm512_dpbusd_epi32(s1, ones, T[7]);
        memcpy(xt->q[m], T, sizeof T);
        xt->nc[m] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(_mm512_add_epi32(s0, s1), 7));
        xt->d[m] = load16_scales(b, full);
    }
}

/* Loads the pair of groups starting at block 16m of a row, transposed and
 * with the sign bit flipped (w + 128 as unsigned), and its scales. */
static ALWAYS_INLINE __m512 load_weights(const deepc_block_q8_0 *b, bool full, __m512i W[8]) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    load16_transposed(b, full, W);
    W[0] = _mm512_xor_si512(W[0], flip), W[1] = _mm512_xor_si512(W[1], flip);
    W[2] = _mm512_xor_si512(W[2], flip), W[3] = _mm512_xor_si512(W[3], flip);
    W[4] = _mm512_xor_si512(W[4], flip), W[5] = _mm512_xor_si512(W[5], flip);
    W[6] = _mm512_xor_si512(W[6], flip), W[7] = _mm512_xor_si512(W[7], flip);
    return load16_scales(b, full);
}

/* One block pair's exact totals (lane k: block k) converted, times the scale
 * products, fused into the 8-lane accumulator a: first group, then second. */
static ALWAYS_INLINE __m256 accumulate(__m512i i0, __m512i i1, __m512 dw, __m512 dx, bool full, __m256 a) {
    __m512 f = _mm512_cvtepi32_ps(_mm512_add_epi32(i0, i1));
    __m512 sc = _mm512_mul_ps(dw, dx);
    a = _mm256_fmadd_ps(_mm512_castps512_ps256(f), _mm512_castps512_ps256(sc), a);
    if (full) a = _mm256_fmadd_ps(_mm512_extractf32x8_ps(f, 1), _mm512_extractf32x8_ps(sc, 1), a);
    return a;
}

/* acc[t] += the chunk's groups for weight row w against tiles xt[0..tn). */
static void row_chunk(const deepc_block_q8_0 *w, size_t g0, size_t gn, const xtile *xt, int tn, __m256 *acc) {
    for (size_t m = 0; 2 * m < gn; m++) {
        bool full = 2 * m + 1 < gn;
        __m512i W[8];
        __m512 dw = load_weights(w + (g0 + 2 * m) * 8, full, W);
        for (int t = 0; t < tn; t++) {
            const xtile *x = &xt[t];
            const __m512i *q = x->q[m];
            __m512i i0 = _mm512_dpbusd_epi32(x->nc[m], W[0], q[0]);
            __m512i i1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), W[1], q[1]);
            i0 = _mm512_dpbusd_epi32(i0, W[2], q[2]);
            i1 = _mm512_dpbusd_epi32(i1, W[3], q[3]);
            i0 = _mm512_dpbusd_epi32(i0, W[4], q[4]);
            i1 = _mm512_dpbusd_epi32(i1, W[5], q[5]);
            i0 = _mm512_dpbusd_epi32(i0, W[6], q[6]);
            i1 = _mm512_dpbusd_epi32(i1, W[7], q[7]);
            acc[t] = accumulate(i0, i1, dw, x->d[m], full, acc[t]);
        }
    }
}

/* The same for two rows at once: each activation register feeds both, which
 * halves the tile loads per product (the loads, not the dot products, bound
 * the one-row loop on Zen 4). */
static void row_chunk2(const deepc_block_q8_0 *wa, const deepc_block_q8_0 *wb, size_t g0, size_t gn,
                       const xtile *xt, int tn, __m256 *acca, __m256 *accb) {
    for (size_t m = 0; 2 * m < gn; m++) {
        bool full = 2 * m + 1 < gn;
        __m512i A[8], B[8];
        __m512 da = load_weights(wa + (g0 + 2 * m) * 8, full, A);
        __m512 db = load_weights(wb + (g0 + 2 * m) * 8, full, B);
        for (int t = 0; t < tn; t++) {
            const xtile *x = &xt[t];
            const __m512i *qs = x->q[m];
            __m512i nc = x->nc[m], z = _mm512_setzero_si512(), q;
            __m512i a0 = _mm512_dpbusd_epi32(nc, A[0], q = qs[0]), b0 = _mm512_dpbusd_epi32(nc, B[0], q);
            __m512i a1 = _mm512_dpbusd_epi32(z, A[1], q = qs[1]), b1 = _mm512_dpbusd_epi32(z, B[1], q);
            a0 = _mm512_dpbusd_epi32(a0, A[2], q = qs[2]), b0 = _mm512_dpbusd_epi32(b0, B[2], q);
            a1 = _mm512_dpbusd_epi32(a1, A[3], q = qs[3]), b1 = _mm512_dpbusd_epi32(b1, B[3], q);
            a0 = _mm512_dpbusd_epi32(a0, A[4], q = qs[4]), b0 = _mm512_dpbusd_epi32(b0, B[4], q);
            a1 = _mm512_dpbusd_epi32(a1, A[5], q = qs[5]), b1 = _mm512_dpbusd_epi32(b1, B[5], q);
            a0 = _mm512_dpbusd_epi32(a0, A[6], q = qs[6]), b0 = _mm512_dpbusd_epi32(b0, B[6], q);
            a1 = _mm512_dpbusd_epi32(a1, A[7], q = qs[7]), b1 = _mm512_dpbusd_epi32(b1, B[7], q);
            __m512 dx = x->d[m];
            acca[t] = accumulate(a0, a1, da, dx, full, acca[t]);
            accb[t] = accumulate(b0, b1, db, dx, full, accb[t]);
        }
    }
}

/* vec_dot's tail: blocks [ib0, nb) as 8 lane sums each (sign trick, as in
 * x86_avx512.c), plus the main accumulator, summed horizontally. */
static float finish(const deepc_block_q8_0 *a, const deepc_block_q8_0 *b, size_t ib0, size_t nb, __m256 s0) {
    __m256 s1 = _mm256_setzero_ps();
    for (size_t ib = ib0; ib < nb; ib++) {
        __m256i qa = _mm256_loadu_si256((const __m256i *)a[ib].qs);
        __m256i qb = _mm256_loadu_si256((const __m256i *)b[ib].qs);
        __m256i l = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(qa, qa), _mm256_sign_epi8(qb, qa));
        __m256 d = _mm256_set1_ps(_cvtsh_ss(a[ib].d) * _cvtsh_ss(b[ib].d));
        s1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(l), d, s1);
    }
    return hsum256_ps(_mm256_add_ps(s0, s1));
}

void deepc_avx512vnni_gemm_q8_0(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                                size_t x_stride, float *y, size_t y_stride) {
    size_t nb = n / DEEPC_QK8_0, ng = nb / 8;
    const unsigned char *wb = w, *xb = x;
    size_t row_bytes = nb * sizeof(deepc_block_q8_0);
    int rb = row_bytes ? (int)(GEMM_RB_BYTES / row_bytes) : GEMM_RB_MAX;
    if (rb < 1) rb = 1;
    if (rb > GEMM_RB_MAX) rb = GEMM_RB_MAX;
    /* equal token tiles: 17 tokens go as 9 + 8, not 16 + 1 */
    int tiles = (ntok + GEMM_RN - 1) / GEMM_RN, tile = tiles ? (ntok + tiles - 1) / tiles : 1;
    xtile xt[GEMM_RN];
    __m256 acc[GEMM_RB_MAX][GEMM_RN];
    for (int r0 = 0; r0 < nrows; r0 += rb) {
        int rn = nrows - r0 < rb ? nrows - r0 : rb;
        for (int t0 = 0; t0 < ntok; t0 += tile) {
            int tn = ntok - t0 < tile ? ntok - t0 : tile;
            for (int r = 0; r < rn; r++)
                for (int t = 0; t < tn; t++) acc[r][t] = _mm256_setzero_ps();
            for (size_t g0 = 0; g0 < ng; g0 += GEMM_KC) {
                size_t gn = ng - g0 < GEMM_KC ? ng - g0 : GEMM_KC;
                for (int t = 0; t < tn; t++)
                    pack_tile((const deepc_block_q8_0 *)(xb + (size_t)(t0 + t) * x_stride), g0, gn, &xt[t]);
                int r = 0;
                for (; r + 2 <= rn; r += 2)
                    row_chunk2((const deepc_block_q8_0 *)(wb + (size_t)(r0 + r) * w_stride),
                               (const deepc_block_q8_0 *)(wb + (size_t)(r0 + r + 1) * w_stride), g0, gn, xt, tn,
                               acc[r], acc[r + 1]);
                if (r < rn) row_chunk((const deepc_block_q8_0 *)(wb + (size_t)(r0 + r) * w_stride), g0, gn, xt, tn, acc[r]);
            }
            for (int r = 0; r < rn; r++)
                for (int t = 0; t < tn; t++)
                    y[(size_t)(t0 + t) * y_stride + (size_t)(r0 + r)] =
                        finish((const deepc_block_q8_0 *)(wb + (size_t)(r0 + r) * w_stride),
                               (const deepc_block_q8_0 *)(xb + (size_t)(t0 + t) * x_stride), ng * 8, nb, acc[r][t]);
        }
    }
}

/* ---- fp16 KV cache ------------------------------------------------------ */

static inline __m512 load16_f16(const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

static inline float f16_at(const uint16_t *p, size_t i) {
    uint16_t h;
    memcpy(&h, (const unsigned char *)p + 2 * i, sizeof h);
    return _cvtsh_ss(h);
}

static inline float dot_f16(size_t n, const uint16_t *a, const float *b) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(load16_f16(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(load16_f16(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(load16_f16(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(load16_f16(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(load16_f16(a + i), _mm512_loadu_ps(b + i), s0);
    __m512 s = _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3));
    float sum = hsum256_ps(_mm256_add_ps(_mm512_castps512_ps256(s), _mm512_extractf32x8_ps(s, 1)));
    for (; i < n; i++) sum += f16_at(a, i) * b[i];
    return sum;
}

float deepc_avx512_dot_f16_f32(size_t n, const uint16_t *a, const float *b) {
    return dot_f16(n, a, b);
}

void deepc_avx512_dot_rows_f16_f32(size_t n, size_t m, const uint16_t *a, size_t a_stride, const float *b, float *out) {
    for (size_t p = 0; p < m; p++) out[p] = dot_f16(n, a + p * a_stride, b);
}

/* Multiply, then add (two roundings, as the scalar twin). */
void deepc_avx512_axpy_f16_f32(size_t n, float alpha, const uint16_t *x, float *y) {
    const __m512 va = _mm512_set1_ps(alpha);
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_loadu_ps(y + i), _mm512_mul_ps(va, load16_f16(x + i))));
    for (; i < n; i++) {
        float p = alpha * f16_at(x, i);
        y[i] += p;
    }
}

/* m axpys in row order with y held in registers, 128 columns at a time: each
 * element goes through the same multiply-then-add sequence as m calls of
 * axpy_f16_f32, so the bits are the same. */
void deepc_avx512_axpy_rows_f16_f32(size_t n, size_t m, const float *alpha, const uint16_t *x, size_t x_stride,
                                    float *y) {
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        __m512 y0 = _mm512_loadu_ps(y + i), y1 = _mm512_loadu_ps(y + i + 16), y2 = _mm512_loadu_ps(y + i + 32);
        __m512 y3 = _mm512_loadu_ps(y + i + 48), y4 = _mm512_loadu_ps(y + i + 64), y5 = _mm512_loadu_ps(y + i + 80);
        __m512 y6 = _mm512_loadu_ps(y + i + 96), y7 = _mm512_loadu_ps(y + i + 112);
        for (size_t p = 0; p < m; p++) {
            const uint16_t *r = x + p * x_stride + i;
            const __m512 a = _mm512_set1_ps(alpha[p]);
            y0 = _mm512_add_ps(y0, _mm512_mul_ps(a, load16_f16(r)));
            y1 = _mm512_add_ps(y1, _mm512_mul_ps(a, load16_f16(r + 16)));
            y2 = _mm512_add_ps(y2, _mm512_mul_ps(a, load16_f16(r + 32)));
            y3 = _mm512_add_ps(y3, _mm512_mul_ps(a, load16_f16(r + 48)));
            y4 = _mm512_add_ps(y4, _mm512_mul_ps(a, load16_f16(r + 64)));
            y5 = _mm512_add_ps(y5, _mm512_mul_ps(a, load16_f16(r + 80)));
            y6 = _mm512_add_ps(y6, _mm512_mul_ps(a, load16_f16(r + 96)));
            y7 = _mm512_add_ps(y7, _mm512_mul_ps(a, load16_f16(r + 112)));
        }
        _mm512_storeu_ps(y + i, y0), _mm512_storeu_ps(y + i + 16, y1), _mm512_storeu_ps(y + i + 32, y2);
        _mm512_storeu_ps(y + i + 48, y3), _mm512_storeu_ps(y + i + 64, y4), _mm512_storeu_ps(y + i + 80, y5);
        _mm512_storeu_ps(y + i + 96, y6), _mm512_storeu_ps(y + i + 112, y7);
    }
    if (i < n)
        for (size_t p = 0; p < m; p++) deepc_avx512_axpy_f16_f32(n - i, alpha[p], x + p * x_stride + i, y + i);
}
