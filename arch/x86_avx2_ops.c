/* x86_avx2_ops.c - AVX2 (+ FMA, F16C) kernels beyond vec_dot: the batched
 * products (gemm) of Q8_0 and of the k-quants, and the fp16 KV-cache
 * primitives. Compiled with the AVX2 flags only; the "avx512" table (no
 * VNNI) uses the Q8_0 gemm too.
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
#include <math.h>
#include <string.h>

#include "cpu.h"
#include "x86_transpose.h"

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
DEEPC_INLINE void load8_transposed(const deepc_block_q8_0 *b, __m256i T[8]) {
    /* always inlined with the blocks as values (see x86_transpose.h) */
#define Z(k) _mm256_loadu_si256((const __m256i *)b[k].qs)
    __m256i z0 = Z(0), z1 = Z(1), z2 = Z(2), z3 = Z(3), z4 = Z(4), z5 = Z(5), z6 = Z(6), z7 = Z(7);
#undef Z
    deepc_transpose8x8_epi32(z0, z1, z2, z3, z4, z5, z6, z7, T);
}

/* The fp16 scales of 8 consecutive blocks as floats. */
DEEPC_INLINE __m256 load8_scales(const deepc_block_q8_0 *b) {
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

/* ---- k-quant gemm (q4_k, q3_k, q2_k x q8_k) ------------------------------
 *
 * One output's arithmetic is x86_avx2.c's vec_dot for the type: per
 * super-block eight chunks of 32 codes (chunk k: elements 32k .. 32k+31)
 * multiplied with vpmaddubsw and weighted by their sub-block scales with
 * vpmaddwd into eight int32 lanes (exact), converted and fused into an
 * 8-lane accumulator with d_w * d_x; the min terms (q4_k, q2_k) into a second
 * one with dmin_w * d_x; at the end hsum(acc - accm) (q3_k: hsum(acc), its
 * -4 offset starting the integer lanes). The gemm unpacks a super-block of
 * KQ_R rows once (codes and scale vectors to the stack) and runs every token
 * of the tile over it; each activation chunk is loaded once for the KQ_R
 * rows. The accumulators of the KQ_R x tile outputs wait on the stack. */

#define KQ_RN 64 /* tokens per tile: the accumulators take KQ_R * KQ_RN * 64 bytes */
#define KQ_R 4   /* rows per block */
#define KQ_MIN_TOK 3 /* fewer tokens: vec_dot per output (measured on Zen 4: 0.94x vec_dot at 2 tokens, 1.07x at 3) */

#if defined(__clang__)
#define KQ_UNROLL _Pragma("clang loop unroll(full)")
#elif defined(__GNUC__)
#define KQ_UNROLL _Pragma("GCC unroll 16")
#else
#define KQ_UNROLL
#endif

typedef struct {
    __m256i q[8]; /* chunk k's codes */
    __m256i s[8]; /* chunk k's scale per int16 (the vpmaddwd operand) */
    __m256i m;    /* q4_k: min pairs; q2_k: the sixteen mins; q3_k: the sixteen scales */
    float d, dmin;
} kq_wsb;

/* Shuffle control: int16 element lo of the low 128-bit lane, hi of the high
 * one, each repeated (as ctrl_pair in x86_avx2.c). */
static inline __m256i kq_ctrl(int lo, int hi) {
    char a = (char)(2 * lo), b = (char)(2 * lo + 1), c = (char)(2 * hi), e = (char)(2 * hi + 1);
    return _mm256_setr_epi8(a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, c, e, c, e, c, e, c, e, c, e, c, e, c, e, c, e);
}

/* One super-block of row w (type t) unpacked as the type's vec_dot does. */
DEEPC_INLINE void kq_unpack(deepc_type t, const void *w, kq_wsb *o) {
    if (t == DEEPC_TYPE_Q4_K) {
        const deepc_block_q4_k *a = w;
        const __m256i m4 = _mm256_set1_epi8(0x0f);
        uint32_t u0, u1, u2;
        memcpy(&u0, a->scales, 4);
        memcpy(&u1, a->scales + 4, 4);
        memcpy(&u2, a->scales + 8, 4);
        uint32_t sc_lo = u0 & 0x3f3f3f3fu, mn_lo = u1 & 0x3f3f3f3fu;
        uint32_t sc_hi = (u2 & 0x0f0f0f0fu) | (((u0 >> 6) & 0x03030303u) << 4);
        uint32_t mn_hi = ((u2 >> 4) & 0x0f0f0f0fu) | (((u1 >> 6) & 0x03030303u) << 4);
        __m128i mnb = _mm_setr_epi32((int)mn_lo, (int)mn_hi, 0, 0);
        o->m = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mnb, mnb));
        __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_setr_epi32((int)sc_lo, (int)sc_hi, 0, 0)));
        KQ_UNROLL
        for (int g = 0; g < 4; g++) {
            __m256i q4 = _mm256_loadu_si256((const __m256i *)(a->qs + 32 * g));
            o->q[2 * g] = _mm256_and_si256(q4, m4);
            o->q[2 * g + 1] = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
            o->s[2 * g] = _mm256_shuffle_epi8(sc, kq_ctrl(2 * g, 2 * g));
            o->s[2 * g + 1] = _mm256_shuffle_epi8(sc, kq_ctrl(2 * g + 1, 2 * g + 1));
        }
        o->d = _cvtsh_ss(a->d);
        o->dmin = _cvtsh_ss(a->dmin);
        return;
    }
    __m256i sc16;
    const __m256i m3 = _mm256_set1_epi8(3);
    if (t == DEEPC_TYPE_Q3_K) {
        const deepc_block_q3_k *a = w;
        const __m256i m1 = _mm256_set1_epi8(1);
        uint32_t u0, u1, u2;
        memcpy(&u0, a->scales, 4);
        memcpy(&u1, a->scales + 4, 4);
        memcpy(&u2, a->scales + 8, 4);
        uint32_t a0 = (u0 & 0x0f0f0f0fu) | ((u2 & 0x03030303u) << 4);
        uint32_t a1 = (u1 & 0x0f0f0f0fu) | (((u2 >> 2) & 0x03030303u) << 4);
        uint32_t a2 = ((u0 >> 4) & 0x0f0f0f0fu) | (((u2 >> 4) & 0x03030303u) << 4);
        uint32_t a3 = ((u1 >> 4) & 0x0f0f0f0fu) | (((u2 >> 6) & 0x03030303u) << 4);
        sc16 = _mm256_cvtepi8_epi16(_mm_sub_epi8(_mm_setr_epi32((int)a0, (int)a1, (int)a2, (int)a3), _mm_set1_epi8(32)));
        o->m = sc16;
        __m256i hm = _mm256_loadu_si256((const __m256i *)a->hmask);
        KQ_UNROLL
        for (int h = 0; h < 2; h++) {
            __m256i q2 = _mm256_loadu_si256((const __m256i *)(a->qs + 32 * h));
            KQ_UNROLL
            for (int s = 0; s < 4; s++) {
                __m256i hb = _mm256_slli_epi16(_mm256_and_si256(hm, m1), 2);
                o->q[4 * h + s] = _mm256_or_si256(_mm256_and_si256(q2, m3), hb);
                q2 = _mm256_srli_epi16(q2, 2);
                hm = _mm256_srli_epi16(hm, 1);
            }
        }
        o->d = _cvtsh_ss(a->d);
        o->dmin = 0.0f;
    } else { /* Q2_K */
        const deepc_block_q2_k *a = w;
        const __m128i m4 = _mm_set1_epi8(0x0f);
        __m128i sb = _mm_loadu_si128((const __m128i *)a->scales);
        sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(sb, m4));
        o->m = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sb, 4), m4));
        KQ_UNROLL
        for (int h = 0; h < 2; h++) {
            __m256i q2 = _mm256_loadu_si256((const __m256i *)(a->qs + 32 * h));
            KQ_UNROLL
            for (int s = 0; s < 4; s++) {
                o->q[4 * h + s] = _mm256_and_si256(q2, m3);
                q2 = _mm256_srli_epi16(q2, 2);
            }
        }
        o->d = _cvtsh_ss(a->d);
        o->dmin = _cvtsh_ss(a->dmin);
    }
    /* sixteen 16-element sub-blocks: chunk k is sub-blocks 2k (low lane) and 2k + 1 */
    __m256i lo = _mm256_permute2x128_si256(sc16, sc16, 0x00), hi = _mm256_permute2x128_si256(sc16, sc16, 0x11);
    KQ_UNROLL
    for (int k = 0; k < 8; k++) o->s[k] = _mm256_shuffle_epi8(k < 4 ? lo : hi, kq_ctrl(2 * (k & 3), 2 * (k & 3) + 1));
}

/* R rows (W) against tokens x[0..tn) of super-block ib, folded into the
 * accumulators acc[j * KQ_R + r]. */
DEEPC_INLINE void kq_tokens(deepc_type t, int R, const kq_wsb *W, const unsigned char *x, size_t x_stride, size_t ib,
                         int tn, __m256 *acc, __m256 *accm) {
    const bool has_min = t != DEEPC_TYPE_Q3_K;
    for (int j = 0; j < tn; j++) {
        const deepc_block_q8_k *xb = (const deepc_block_q8_k *)(x + (size_t)j * x_stride) + ib;
        const __m256i bs = _mm256_loadu_si256((const __m256i *)xb->bsums);
        const float dx = xb->d;
        __m256i sumi[KQ_R];
        KQ_UNROLL
        for (int r = 0; r < R; r++) {
            if (t == DEEPC_TYPE_Q3_K) {
                __m256i off = _mm256_madd_epi16(bs, W[r].m);
                sumi[r] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 2));
            } else {
                sumi[r] = _mm256_setzero_si256();
            }
        }
        KQ_UNROLL
        for (int k = 0; k < 8; k++) {
            const __m256i xk = _mm256_loadu_si256((const __m256i *)(xb->qs + 32 * k));
            KQ_UNROLL
            for (int r = 0; r < R; r++)
                sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(_mm256_maddubs_epi16(W[r].q[k], xk), W[r].s[k]));
        }
        KQ_UNROLL
        for (int r = 0; r < R; r++) {
            __m256 *a = &acc[j * KQ_R + r];
            *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[r]), _mm256_set1_ps(W[r].d * dx), *a);
            if (has_min) {
                __m256 *m = &accm[j * KQ_R + r];
                *m = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(bs, W[r].m)), _mm256_set1_ps(W[r].dmin * dx), *m);
            }
        }
    }
}

DEEPC_INLINE void kq_rows(deepc_type t, int R, size_t nb, const unsigned char *w, size_t w_stride, size_t wblk,
                       const unsigned char *x, size_t x_stride, int tn, float *y, size_t y_stride, __m256 *acc,
                       __m256 *accm) {
    for (int r = 0; r < R; r++)
        for (int j = 0; j < tn; j++) acc[j * KQ_R + r] = accm[j * KQ_R + r] = _mm256_setzero_ps();
    for (size_t ib = 0; ib < nb; ib++) {
        kq_wsb W[KQ_R];
        KQ_UNROLL
        for (int r = 0; r < R; r++) kq_unpack(t, w + (size_t)r * w_stride + ib * wblk, &W[r]);
        kq_tokens(t, R, W, x, x_stride, ib, tn, acc, accm);
    }
    for (int r = 0; r < R; r++)
        for (int j = 0; j < tn; j++)
            y[(size_t)j * y_stride + (size_t)r] =
                hsum_ps(t == DEEPC_TYPE_Q3_K ? acc[j * KQ_R + r] : _mm256_sub_ps(acc[j * KQ_R + r], accm[j * KQ_R + r]));
}

/* Token tiles of equal size, each over every row (the tile's activations
 * stay in L2 while the weights stream past once). */
DEEPC_INLINE void kq_gemm(deepc_type t, int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                       size_t x_stride, float *y, size_t y_stride) {
    size_t nb = n / DEEPC_QK_K, wblk = deepc_type_info((int)t)->block_bytes;
    const unsigned char *wb = w, *xb = x;
    if (ntok < KQ_MIN_TOK) { /* the unpacking would not pay: vec_dot itself */
        deepc_vec_dot_fn dot = deepc_kernels_avx2()->vec_dot[t];
        for (int r = 0; r < nrows; r++)
            for (int j = 0; j < ntok; j++)
                y[(size_t)j * y_stride + (size_t)r] = dot(n, wb + (size_t)r * w_stride, xb + (size_t)j * x_stride);
        return;
    }
    int tiles = (ntok + KQ_RN - 1) / KQ_RN, tile = tiles ? (ntok + tiles - 1) / tiles : 1;
    __m256 acc[KQ_R * KQ_RN], accm[KQ_R * KQ_RN];
    for (int t0 = 0; t0 < ntok; t0 += tile) {
        int tn = ntok - t0 < tile ? ntok - t0 : tile;
        const unsigned char *xt = xb + (size_t)t0 * x_stride;
        float *yt = y + (size_t)t0 * y_stride;
        int r = 0;
        for (; r + KQ_R <= nrows; r += KQ_R)
            kq_rows(t, KQ_R, nb, wb + (size_t)r * w_stride, w_stride, wblk, xt, x_stride, tn, yt + r, y_stride, acc, accm);
        for (; r < nrows; r++)
            kq_rows(t, 1, nb, wb + (size_t)r * w_stride, w_stride, wblk, xt, x_stride, tn, yt + r, y_stride, acc, accm);
    }
}

void deepc_avx2_gemm_q4_k(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                          size_t x_stride, float *y, size_t y_stride) {
    kq_gemm(DEEPC_TYPE_Q4_K, nrows, ntok, n, w, w_stride, x, x_stride, y, y_stride);
}
void deepc_avx2_gemm_q3_k(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                          size_t x_stride, float *y, size_t y_stride) {
    kq_gemm(DEEPC_TYPE_Q3_K, nrows, ntok, n, w, w_stride, x, x_stride, y, y_stride);
}
void deepc_avx2_gemm_q2_k(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                          size_t x_stride, float *y, size_t y_stride) {
    kq_gemm(DEEPC_TYPE_Q2_K, nrows, ntok, n, w, w_stride, x, x_stride, y, y_stride);
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

/* ---- SwiGLU ----------------------------------------------------------------
 * As deepc_avx512_swiglu (same polynomial and range reduction), with 2^n
 * built in the exponent field: n is clamped to [-126, 127] first, and the
 * result set to inf where -g > 88.72 (e^-g overflows float) and to 0 where
 * -g < -87.33 (below the normal range; 1 + e^-g is 1 there either way). */
static inline __m256 exp_neg256(__m256 g) {
    const __m256 x = _mm256_sub_ps(_mm256_setzero_ps(), g);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    n = _mm256_max_ps(_mm256_min_ps(n, _mm256_set1_ps(127.0f)), _mm256_set1_ps(-126.0f));
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187045e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 e = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
    e = _mm256_blendv_ps(e, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, _mm256_set1_ps(88.72f), _CMP_GT_OQ));
    e = _mm256_blendv_ps(e, _mm256_setzero_ps(), _mm256_cmp_ps(x, _mm256_set1_ps(-87.33f), _CMP_LT_OQ));
    /* NaN in, NaN out (the compares above are false for NaN, r is NaN) */
    return e;
}

void deepc_avx2_swiglu(float *g, const float *u, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(g + i), w = _mm256_loadu_ps(u + i);
        __m256 y = _mm256_mul_ps(_mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), exp_neg256(v))), w);
        _mm256_storeu_ps(g + i, y);
    }
    if (i < n) {
        float gv[8] = { 0 }, uv[8] = { 0 };
        memcpy(gv, g + i, (n - i) * sizeof(float));
        memcpy(uv, u + i, (n - i) * sizeof(float));
        __m256 v = _mm256_loadu_ps(gv), w = _mm256_loadu_ps(uv);
        _mm256_storeu_ps(gv, _mm256_mul_ps(_mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), exp_neg256(v))), w));
        memcpy(g + i, gv, (n - i) * sizeof(float));
    }
}
