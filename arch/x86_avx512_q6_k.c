/* x86_avx512_q6_k.c - q6_k weights x Q8_K activations for both AVX-512
 * tables: vec_dot (decode) and gemm (prefill), "avx512" (no VNNI) and
 * "avx512vnni". Compiled with -mavx512vnni; the "avx512" kernels keep the
 * compiler from fusing vpmaddwd + vpaddd into vpdpwssd (opaque512 below).
 *
 * The float work is the scalar kernel's (arch/scalar.c), not a reordering
 * of it: per super-block the exact integer
 *   isum = sum_j sc_j * (dot16(q_j, x_j) - 32 * bsum_j)
 * is reduced to one int32 in the vector unit (|isum| < 2^28), and the row
 * sum is sum += (fp16(d) * d_x) * (float)isum, blocks in order, each product
 * and sum rounded alone (no FMA). So vec_dot equals the scalar one bit for
 * bit, and the gemm (which does the same per output, four rows in the
 * lanes of one vector) equals vec_dot bit for bit, as core/kernels.h asks.
 * One float lane per super-block also makes the gemm's float work small:
 * the kernels of x86_avx512_ops.c keep 16 + 8 lanes per output instead.
 *
 * Codes: the 64 bytes ql[64h .. 64h+63] hold elements 128h + 0..63 in their
 * low nibbles and 128h + 64..127 in their high nibbles, in order, so one
 * 512-bit load and a shift give both 64-element chunks; their top two bits
 * come from the 32 bytes qh[32h ..] broadcast to both 256-bit halves and
 * shifted per half (vpsllvw / vpsrlvw) into bits 4-5. Chunk k = 2h + hi
 * (elements 64k ..) has sub-block 4k + j in 128-bit lane j. The codes are
 * unsigned (0..63), the activation bytes signed:
 *   no VNNI: vpmaddubsw (pairs: at most 2 * 63 * 128, no saturation), then
 *            vpmaddwd by the chunk's scales (one int16 per lane's sub-block);
 *   VNNI vec_dot: vpdpbusd into zeroed lanes gives each 4-element dot D
 *            (|D| <= 4 * 63 * 128 < 2^15) in an int32; vpackssdw of the two
 *            chunks of a half (exact: no D saturates) puts two chunks' dots
 *            into one register of int16 pairs, weighted by one vpdpwssd:
 *            three multiplies per 128 bytes instead of four;
 *   VNNI gemm: vpmaddubsw, then vpdpwssd by the chunk's scales (faster
 *            there; the lanes' total is the same exact integer).
 * The offset -32 * sum_j sc_j * bsum_j enters as one more vpmaddwd (or
 * vpdpwssd) of the bsums with -32 * sc_j (int16: at most 4096 in
 * magnitude). Sixteen int32 lanes per super-block, each below 2^25 in
 * magnitude: no overflow anywhere. */
#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#include "cpu.h"

#if defined(__clang__)
#define Q6_UNROLL _Pragma("clang loop unroll(full)")
#elif defined(__GNUC__)
#define Q6_UNROLL _Pragma("GCC unroll 8")
#else
#define Q6_UNROLL
#endif

DEEPC_INLINE __m512i opaque512(__m512i v) {
    __asm__("" : "+v"(v));
    return v;
}

/* vpermw index: 128-bit lane j's words 0-3 take int16 element a_j, words
 * 4-7 element b_j (with a_j = b_j: the per-lane broadcast of the vpmaddwd
 * path). */
static inline __m512i q6_idx(int a0, int b0, int a1, int b1, int a2, int b2, int a3, int b3) {
    return _mm512_set_epi16((short)b3, (short)b3, (short)b3, (short)b3, (short)a3, (short)a3, (short)a3, (short)a3,
                            (short)b2, (short)b2, (short)b2, (short)b2, (short)a2, (short)a2, (short)a2, (short)a2,
                            (short)b1, (short)b1, (short)b1, (short)b1, (short)a1, (short)a1, (short)a1, (short)a1,
                            (short)b0, (short)b0, (short)b0, (short)b0, (short)a0, (short)a0, (short)a0, (short)a0);
}

/* One super-block of weights, unpacked: codes Q[k] of chunk k; scale
 * operands s[k] (no VNNI: chunk k's, per int16 pair) or s[h] (VNNI: the
 * packed half h: words 0-3 of lane j chunk 2h's sub-block, 4-7 chunk
 * 2h+1's); nsc: -32 * sc_j as int16 j (upper half zero), the operand for
 * the bsums; d: the fp16 super-scale (raw bits). */
typedef struct {
    __m512i s[4];
    __m512i nsc;
} q6_wsb;

/* The integer paths: Q6_BW: vpmaddubsw + vpmaddwd (no VNNI instruction);
 * Q6_DPBUSD: vpdpbusd + vpackssdw + vpdpwssd (VNNI vec_dot); Q6_DPWSSD:
 * vpmaddubsw + vpdpwssd (VNNI gemm: measured ~15% faster there, while the
 * vec_dot measured ~10% faster with vpdpbusd). All give the same exact lanes'
 * total, so vec_dot and gemm may differ in the path. */
typedef enum { Q6_BW, Q6_DPBUSD, Q6_DPWSSD } q6_path;

DEEPC_INLINE void q6_unpack(const deepc_block_q6_k *a, q6_path path, __m512i Q[4], q6_wsb *o) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    /* top bits: bits 0-1 (lower half) and 2-3 (upper) of qh to 4-5 for the
     * low-nibble chunk, bits 4-5 and 6-7 for the high-nibble chunk */
    const __m512i sh_lo = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i sh_hi = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    Q6_UNROLL
    for (int h = 0; h < 2; h++) {
        __m512i ql = _mm512_loadu_si512(a->ql + 64 * h);
        __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(a->qh + 32 * h)));
        __m512i hlo = _mm512_and_si512(_mm512_sllv_epi16(qh, sh_lo), m30);
        __m512i hhi = _mm512_and_si512(_mm512_srlv_epi16(qh, sh_hi), m30);
        /* bit select (m4 ? ql : h): vpternlogd */
        Q[2 * h] = _mm512_ternarylogic_epi32(m4, ql, hlo, 0xca);
        Q[2 * h + 1] = _mm512_ternarylogic_epi32(m4, _mm512_srli_epi16(ql, 4), hhi, 0xca);
    }
    __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)a->scales));
    o->nsc = _mm512_zextsi256_si512(_mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc16, 5)));
    __m512i sc = _mm512_castsi256_si512(sc16);
    if (path == Q6_DPBUSD) {
        o->s[0] = _mm512_permutexvar_epi16(q6_idx(0, 4, 1, 5, 2, 6, 3, 7), sc);
        o->s[1] = _mm512_permutexvar_epi16(q6_idx(8, 12, 9, 13, 10, 14, 11, 15), sc);
    } else {
        Q6_UNROLL
        for (int k = 0; k < 4; k++)
            o->s[k] = _mm512_permutexvar_epi16(q6_idx(4 * k, 4 * k, 4 * k + 1, 4 * k + 1, 4 * k + 2, 4 * k + 2,
                                                      4 * k + 3, 4 * k + 3), sc);
    }
}

/* The super-block's 16 int32 lanes against activation block xb (their sum
 * is isum). */
DEEPC_INLINE __m512i q6_lanes(const __m512i Q[4], const q6_wsb *o, const deepc_block_q8_k *xb, q6_path path) {
    __m512i bs = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)xb->bsums));
    if (path == Q6_DPWSSD) {
        __m512i sumi = _mm512_madd_epi16(bs, o->nsc);
        Q6_UNROLL
        for (int k = 0; k < 4; k++)
            sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(Q[k], _mm512_loadu_si512(xb->qs + 64 * k)), o->s[k]);
        return sumi;
    }
    if (path == Q6_DPBUSD) {
        __m512i sumi = _mm512_madd_epi16(bs, o->nsc);
        Q6_UNROLL
        for (int h = 0; h < 2; h++) {
            __m512i z = _mm512_setzero_si512();
            __m512i d0 = _mm512_dpbusd_epi32(z, Q[2 * h], _mm512_loadu_si512(xb->qs + 128 * h));
            __m512i d1 = _mm512_dpbusd_epi32(z, Q[2 * h + 1], _mm512_loadu_si512(xb->qs + 128 * h + 64));
            sumi = _mm512_dpwssd_epi32(sumi, _mm512_packs_epi32(d0, d1), o->s[h]);
        }
        return sumi;
    }
    __m512i sumi = opaque512(_mm512_madd_epi16(bs, o->nsc));
    Q6_UNROLL
    for (int k = 0; k < 4; k++) {
        __m512i p = _mm512_maddubs_epi16(Q[k], _mm512_loadu_si512(xb->qs + 64 * k));
        sumi = _mm512_add_epi32(sumi, opaque512(_mm512_madd_epi16(p, o->s[k])));
    }
    return sumi;
}

/* The totals of four lane vectors, in order (exact). */
DEEPC_INLINE __m128i q6_reduce4(__m512i a, __m512i b, __m512i c, __m512i d) {
    __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
    __m512i s = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
    __m256i t = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
    return _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
}

/* sum += p[0], ..., p[c-1], in order, one rounding each (the scalar loop). */
DEEPC_INLINE float q6_add_in_order(float sum, __m128 p, int c) {
    sum += _mm_cvtss_f32(p);
    if (c > 1) sum += _mm_cvtss_f32(_mm_movehdup_ps(p));
    if (c > 2) sum += _mm_cvtss_f32(_mm_movehl_ps(p, p));
    if (c > 3) sum += _mm_cvtss_f32(_mm_shuffle_ps(p, p, 3));
    return sum;
}

/* ---- vec_dot ------------------------------------------------------------ */

/* Four super-blocks per step (the last step may have fewer: zero lanes for
 * the missing ones, whose products are not added): their isums by one
 * reduction, then (d_w * d_x) * isum as four products and four adds. */
DEEPC_INLINE float q6_dot_body(size_t n, const void *w, const void *x, bool vnni) {
    const deepc_block_q6_k *a = w;
    const deepc_block_q8_k *b = x;
    size_t nb = n / DEEPC_QK_K;
    float sum = 0.0f;
    for (size_t ib = 0; ib < nb; ib += 4) {
        int c = nb - ib < 4 ? (int)(nb - ib) : 4;
        __m512i v[4];
        uint16_t dh[4] = { 0, 0, 0, 0 };
        float dx[4] = { 0, 0, 0, 0 };
        for (int k = 0; k < 4; k++) {
            if (k >= c) {
                v[k] = _mm512_setzero_si512();
                continue;
            }
            __m512i Q[4];
            q6_wsb o;
            q6_unpack(a + ib + k, vnni ? Q6_DPBUSD : Q6_BW, Q, &o);
            v[k] = q6_lanes(Q, &o, b + ib + k, vnni ? Q6_DPBUSD : Q6_BW);
            dh[k] = a[ib + k].d;
            dx[k] = b[ib + k].d;
        }
        __m128i is = q6_reduce4(v[0], v[1], v[2], v[3]);
        __m128 dd = _mm_mul_ps(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)dh)), _mm_loadu_ps(dx));
        sum = q6_add_in_order(sum, _mm_mul_ps(dd, _mm_cvtepi32_ps(is)), c);
    }
    return sum;
}

float deepc_avx512_vec_dot_q6_k(size_t n, const void *w, const void *x) {
    return q6_dot_body(n, w, x, false);
}

float deepc_avx512_vec_dot_q6_k_vnni(size_t n, const void *w, const void *x) {
    return q6_dot_body(n, w, x, true);
}

/* ---- gemm --------------------------------------------------------------- */

/* Four rows' super-block ib are unpacked once into registers (codes) and the
 * stack (scale operands) while every token of the tile passes over them:
 * each token's four lane vectors go through one q6_reduce4 (the four rows'
 * isums, exact) and one multiply and add of four floats, the operations
 * vec_dot does for each, in the same order, so every output is vec_dot's
 * bit for bit. The tile's four-row accumulators are one __m128 per token.
 * Token tiles of equal size up to Q6_RN (the activations, 292 bytes per
 * super-block and token, stay in L2 while the weights stream past once per
 * tile); a last block of fewer than four rows repeats its last row in the
 * missing lanes and stores only its own. */
#define Q6_RN 64 /* tokens per tile */
#define Q6_R 4   /* rows per register block */

DEEPC_INLINE void q6_rows(q6_path path, int R, size_t nb, const unsigned char *w, size_t w_stride, const unsigned char *x,
                       size_t x_stride, int tn, float *y, size_t y_stride) {
    __m128 acc[Q6_RN];
    for (int j = 0; j < tn; j++) acc[j] = _mm_setzero_ps();
    const deepc_block_q6_k *rw[Q6_R];
    for (int r = 0; r < Q6_R; r++) rw[r] = (const deepc_block_q6_k *)(w + (size_t)(r < R ? r : R - 1) * w_stride);
    for (size_t ib = 0; ib < nb; ib++) {
        __m512i Q[Q6_R][4];
        q6_wsb W[Q6_R];
        uint16_t dh[Q6_R];
        Q6_UNROLL
        for (int r = 0; r < Q6_R; r++) {
            q6_unpack(rw[r] + ib, path, Q[r], &W[r]);
            dh[r] = rw[r][ib].d;
        }
        const __m128 dw = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)dh));
        for (int j = 0; j < tn; j++) {
            const deepc_block_q8_k *xb = (const deepc_block_q8_k *)(x + (size_t)j * x_stride) + ib;
            __m128i is = q6_reduce4(q6_lanes(Q[0], &W[0], xb, path), q6_lanes(Q[1], &W[1], xb, path),
                                    q6_lanes(Q[2], &W[2], xb, path), q6_lanes(Q[3], &W[3], xb, path));
            __m128 dd = _mm_mul_ps(dw, _mm_set1_ps(xb->d));
            acc[j] = _mm_add_ps(acc[j], _mm_mul_ps(dd, _mm_cvtepi32_ps(is)));
        }
    }
    for (int j = 0; j < tn; j++) {
        float *yj = y + (size_t)j * y_stride;
        if (R == Q6_R) {
            _mm_storeu_ps(yj, acc[j]);
        } else {
            float v[4];
            _mm_storeu_ps(v, acc[j]);
            for (int r = 0; r < R; r++) yj[r] = v[r];
        }
    }
}

DEEPC_INLINE void q6_gemm(bool vnni, int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                       size_t x_stride, float *y, size_t y_stride) {
    size_t nb = n / DEEPC_QK_K;
    const unsigned char *wb = w, *xb = x;
    int tiles = (ntok + Q6_RN - 1) / Q6_RN, tile = tiles ? (ntok + tiles - 1) / tiles : 1;
    for (int t0 = 0; t0 < ntok; t0 += tile) {
        int tn = ntok - t0 < tile ? ntok - t0 : tile;
        const unsigned char *xt = xb + (size_t)t0 * x_stride;
        float *yt = y + (size_t)t0 * y_stride;
        for (int r = 0; r < nrows; r += Q6_R)
            q6_rows(vnni ? Q6_DPWSSD : Q6_BW, nrows - r < Q6_R ? nrows - r : Q6_R, nb, wb + (size_t)r * w_stride, w_stride, xt, x_stride,
                    tn, yt + r, y_stride);
    }
}

void deepc_avx512_gemm_q6_k(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                            size_t x_stride, float *y, size_t y_stride) {
    q6_gemm(false, nrows, ntok, n, w, w_stride, x, x_stride, y, y_stride);
}

void deepc_avx512vnni_gemm_q6_k(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                                size_t x_stride, float *y, size_t y_stride) {
    q6_gemm(true, nrows, ntok, n, w, w_stride, x, x_stride, y, y_stride);
}
