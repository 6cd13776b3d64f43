/* x86_avx2_ops.c - AVX2 (+ FMA, F16C) kernels beyond vec_dot: the Q8_0
 * batched product and the fp16 KV-cache primitives. Compiled with the AVX2
 * flags only; the "avx512" table (no VNNI) uses this gemm too.
 *
 * Q8_0 gemm: as in x86_avx512_ops.c, weight blocks are transposed in
 * registers, 8 at a time, so that lane k of register j holds dword j of block
 * k and the block dots need no horizontal reduction; the transposition is
 * shared by up to GEMM_RN tokens, whose activations are transposed once per
 * tile into a stack buffer. Without VNNI the products go through vpmaddubsw
 * with the sign trick of x86_avx2.c (|w| times x * sgn w: exact, never
 * saturating for the activations the Q8_0 quantizer produces) and vpmaddwd.
 *
 * Bit-identity with the avx2 and avx512 vec_dot_q8_0: the same exact block
 * totals, and per output the same float operations in the same order (see
 * x86_avx512_ops.c). */
#include <immintrin.h>
#include <string.h>

#include "cpu.h"

/* ---- Q8_0 gemm ---------------------------------------------------------- */

#define GEMM_RN 16           /* tokens per tile */
#define GEMM_KC 4            /* 8-block groups per k-chunk (1024 elements): the tile, 18 KiB, stays in L1 */
#define GEMM_RB_MAX 64       /* rows per row block (the accumulators: 32 KiB of stack) */
#define GEMM_RB_BYTES (384 * 1024) /* a row block's weights stay in L2 across token tiles */

/* One token's share of a k-chunk, transposed: q[g][j] lane k = dword j of
 * block 8g + k of the chunk; d[g] lane k its scale. */
typedef struct {
    __m256i q[GEMM_KC][8];
    __m256 d[GEMM_KC];
} xtile;

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 8 consecutive blocks transposed: T[j] lane k = dword j of block k. */
#if defined(__GNUC__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

static ALWAYS_INLINE void load8_transposed(const deepc_block_q8_0 *b, __m256i T[8]) {
    /* written out (no arrays or loops) and always inlined, so every value
     * stays in a register: through the stack it ran ~3x slower */
#define Z(k) _mm256_loadu_si256((const __m256i *)b[k].qs)
    __m256i z0 = Z(0), z1 = Z(1), z2 = Z(2), z3 = Z(3), z4 = Z(4), z5 = Z(5), z6 = Z(6), z7 = Z(7);
#undef Z
    __m256i t0 = _mm256_unpacklo_epi32(z0, z1), t1 = _mm256_unpackhi_epi32(z0, z1);
    __m256i t2 = _mm256_unpacklo_epi32(z2, z3), t3 = _mm256_unpackhi_epi32(z2, z3);
    __m256i t4 = _mm256_unpacklo_epi32(z4, z5), t5 = _mm256_unpackhi_epi32(z4, z5);
    __m256i t6 = _mm256_unpacklo_epi32(z6, z7), t7 = _mm256_unpackhi_epi32(z6, z7);
    /* u_j (j < 4): blocks 0-3 dword j | blocks 0-3 dword j+4; v_j: blocks 4-7 */
    __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    __m256i v0 = _mm256_unpacklo_epi64(t4, t6), v1 = _mm256_unpackhi_epi64(t4, t6);
    __m256i v2 = _mm256_unpacklo_epi64(t5, t7), v3 = _mm256_unpackhi_epi64(t5, t7);
    T[0] = _mm256_permute2x128_si256(u0, v0, 0x20);
    T[1] = _mm256_permute2x128_si256(u1, v1, 0x20);
    T[2] = _mm256_permute2x128_si256(u2, v2, 0x20);
    T[3] = _mm256_permute2x128_si256(u3, v3, 0x20);
    T[4] = _mm256_permute2x128_si256(u0, v0, 0x31);
    T[5] = _mm256_permute2x128_si256(u1, v1, 0x31);
    T[6] = _mm256_permute2x128_si256(u2, v2, 0x31);
    T[7] = _mm256_permute2x128_si256(u3, v3, 0x31);
}

/* The fp16 scales of 8 consecutive blocks as floats. */
static ALWAYS_INLINE __m256 load8_scales(const deepc_block_q8_0 *b) {
    return _mm256_cvtph_ps(_mm_setr_epi16((short)b[0].d, (short)b[1].d, (short)b[2].d, (short)b[3].d,
                                          (short)b[4].d, (short)b[5].d, (short)b[6].d, (short)b[7].d));
}

static void pack_tile(const deepc_block_q8_0 *x, size_t g0, size_t gn, xtile *xt) {
    for (size_t g = 0; g < gn; g++) {
        const deepc_block_q8_0 *b = x + (g0 + g) * 8;
        load8_transposed(b, xt->q[g]);
        xt->d[g] = load8_scales(b);
    }
}

/* acc[t] += the chunk's groups of weight row w against tiles xt[0..tn). The
 * sign of w moves onto x, |w| * (x sgn w), as in vec_dot (|x| * (w sgn x)
 * would wrap for w = -128). */
static void row_chunk(const deepc_block_q8_0 *w, size_t g0, size_t gn, const xtile *xt, int tn, __m256 *acc) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (size_t g = 0; g < gn; g++) {
        const deepc_block_q8_0 *b = w + (g0 + g) * 8;
        __m256i W[8];
        load8_transposed(b, W);
        __m256i A0 = _mm256_abs_epi8(W[0]), A1 = _mm256_abs_epi8(W[1]), A2 = _mm256_abs_epi8(W[2]);
        __m256i A3 = _mm256_abs_epi8(W[3]), A4 = _mm256_abs_epi8(W[4]), A5 = _mm256_abs_epi8(W[5]);
        __m256i A6 = _mm256_abs_epi8(W[6]), A7 = _mm256_abs_epi8(W[7]);
        __m256 dw = load8_scales(b);
        for (int t = 0; t < tn; t++) {
            const __m256i *q = xt[t].q[g];
#define P(j) _mm256_madd_epi16(_mm256_maddubs_epi16(A##j, _mm256_sign_epi8(q[j], W[j])), ones)
            __m256i i0 = _mm256_add_epi32(_mm256_add_epi32(P(0), P(2)), _mm256_add_epi32(P(4), P(6)));
            __m256i i1 = _mm256_add_epi32(_mm256_add_epi32(P(1), P(3)), _mm256_add_epi32(P(5), P(7)));
#undef P
            __m256 f = _mm256_cvtepi32_ps(_mm256_add_epi32(i0, i1));
            acc[t] = _mm256_fmadd_ps(f, _mm256_mul_ps(dw, xt[t].d[g]), acc[t]);
        }
    }
}

/* vec_dot's tail: blocks [ib0, nb) as 8 lane sums each, then the hsum. */
static float finish(const deepc_block_q8_0 *a, const deepc_block_q8_0 *b, size_t ib0, size_t nb, __m256 s0) {
    __m256 s1 = _mm256_setzero_ps();
    for (size_t ib = ib0; ib < nb; ib++) {
        __m256i qa = _mm256_loadu_si256((const __m256i *)a[ib].qs);
        __m256i qb = _mm256_loadu_si256((const __m256i *)b[ib].qs);
        __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(qa, qa), _mm256_sign_epi8(qb, qa));
        __m256i l = _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
        __m256 d = _mm256_set1_ps(_cvtsh_ss(a[ib].d) * _cvtsh_ss(b[ib].d));
        s1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(l), d, s1);
    }
    return hsum_ps(_mm256_add_ps(s0, s1));
}

void deepc_avx2_gemm_q8_0(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                          size_t x_stride, float *y, size_t y_stride) {
    size_t nb = n / DEEPC_QK8_0, ng = nb / 8;
    const unsigned char *wb = w, *xb = x;
    size_t row_bytes = nb * sizeof(deepc_block_q8_0);
    int rb = row_bytes ? (int)(GEMM_RB_BYTES / row_bytes) : GEMM_RB_MAX;
    if (rb < 1) rb = 1;
    if (rb > GEMM_RB_MAX) rb = GEMM_RB_MAX;
    xtile xt[GEMM_RN];
    __m256 acc[GEMM_RB_MAX][GEMM_RN];
    for (int r0 = 0; r0 < nrows; r0 += rb) {
        int rn = nrows - r0 < rb ? nrows - r0 : rb;
        for (int t0 = 0; t0 < ntok; t0 += GEMM_RN) {
            int tn = ntok - t0 < GEMM_RN ? ntok - t0 : GEMM_RN;
            for (int r = 0; r < rn; r++)
                for (int t = 0; t < tn; t++) acc[r][t] = _mm256_setzero_ps();
            for (size_t g0 = 0; g0 < ng; g0 += GEMM_KC) {
                size_t gn = ng - g0 < GEMM_KC ? ng - g0 : GEMM_KC;
                for (int t = 0; t < tn; t++)
                    pack_tile((const deepc_block_q8_0 *)(xb + (size_t)(t0 + t) * x_stride), g0, gn, &xt[t]);
                for (int r = 0; r < rn; r++)
                    row_chunk((const deepc_block_q8_0 *)(wb + (size_t)(r0 + r) * w_stride), g0, gn, xt, tn, acc[r]);
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

static inline __m256 load8_f16(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline float f16_at(const uint16_t *p, size_t i) {
    uint16_t h;
    memcpy(&h, (const unsigned char *)p + 2 * i, sizeof h);
    return _cvtsh_ss(h);
}

static inline float dot_f16(size_t n, const uint16_t *a, const float *b) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(load8_f16(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(load8_f16(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(load8_f16(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(load8_f16(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(load8_f16(a + i), _mm256_loadu_ps(b + i), s0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) sum += f16_at(a, i) * b[i];
    return sum;
}

float deepc_avx2_dot_f16_f32(size_t n, const uint16_t *a, const float *b) {
    return dot_f16(n, a, b);
}

void deepc_avx2_dot_rows_f16_f32(size_t n, size_t m, const uint16_t *a, size_t a_stride, const float *b, float *out) {
    for (size_t p = 0; p < m; p++) out[p] = dot_f16(n, a + p * a_stride, b);
}

/* Multiply, then add (two roundings, as the scalar twin). */
void deepc_avx2_axpy_f16_f32(size_t n, float alpha, const uint16_t *x, float *y) {
    const __m256 va = _mm256_set1_ps(alpha);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(va, load8_f16(x + i))));
    for (; i < n; i++) {
        float p = alpha * f16_at(x, i);
        y[i] += p;
    }
}

/* m axpys in row order with y held in registers, 64 columns at a time (same
 * bits as m calls of axpy_f16_f32: see x86_avx512_ops.c). */
void deepc_avx2_axpy_rows_f16_f32(size_t n, size_t m, const float *alpha, const uint16_t *x, size_t x_stride,
                                  float *y) {
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m256 y0 = _mm256_loadu_ps(y + i), y1 = _mm256_loadu_ps(y + i + 8), y2 = _mm256_loadu_ps(y + i + 16);
        __m256 y3 = _mm256_loadu_ps(y + i + 24), y4 = _mm256_loadu_ps(y + i + 32), y5 = _mm256_loadu_ps(y + i + 40);
        __m256 y6 = _mm256_loadu_ps(y + i + 48), y7 = _mm256_loadu_ps(y + i + 56);
        for (size_t p = 0; p < m; p++) {
            const uint16_t *r = x + p * x_stride + i;
            const __m256 a = _mm256_set1_ps(alpha[p]);
            y0 = _mm256_add_ps(y0, _mm256_mul_ps(a, load8_f16(r)));
            y1 = _mm256_add_ps(y1, _mm256_mul_ps(a, load8_f16(r + 8)));
            y2 = _mm256_add_ps(y2, _mm256_mul_ps(a, load8_f16(r + 16)));
            y3 = _mm256_add_ps(y3, _mm256_mul_ps(a, load8_f16(r + 24)));
            y4 = _mm256_add_ps(y4, _mm256_mul_ps(a, load8_f16(r + 32)));
            y5 = _mm256_add_ps(y5, _mm256_mul_ps(a, load8_f16(r + 40)));
            y6 = _mm256_add_ps(y6, _mm256_mul_ps(a, load8_f16(r + 48)));
            y7 = _mm256_add_ps(y7, _mm256_mul_ps(a, load8_f16(r + 56)));
        }
        _mm256_storeu_ps(y + i, y0), _mm256_storeu_ps(y + i + 8, y1), _mm256_storeu_ps(y + i + 16, y2);
        _mm256_storeu_ps(y + i + 24, y3), _mm256_storeu_ps(y + i + 32, y4), _mm256_storeu_ps(y + i + 40, y5);
        _mm256_storeu_ps(y + i + 48, y6), _mm256_storeu_ps(y + i + 56, y7);
    }
    if (i < n)
        for (size_t p = 0; p < m; p++) deepc_avx2_axpy_f16_f32(n - i, alpha[p], x + p * x_stride + i, y + i);
}
