/* x86_avx2_q6_k.c - q6_k weights x Q8_K activations for the "avx2" table:
 * vec_dot (decode) and gemm (prefill). Compiled with -mavx2 -mfma -mf16c.
 *
 * As in x86_avx512_q6_k.c, the float work is the scalar kernel's: each
 * super-block's exact integer isum is reduced to one int32 in the vector
 * unit and the row sum is sum += (fp16(d) * d_x) * (float)isum, blocks in
 * order, no FMA. vec_dot therefore equals deepc_scalar_vec_dot_q6_k bit for
 * bit, and the gemm (the same per output, four rows or tokens in the lanes
 * of one vector) equals vec_dot bit for bit (core/kernels.h).
 *
 * Codes: per half h, the 32 bytes ql[64h ..] hold elements 128h + 0..31
 * (low nibbles) and 128h + 64..95 (high), ql[64h + 32 ..] elements 32..63
 * and 96..127, and qh[32h ..] the top two bits of 128h + l, + 32, + 64,
 * + 96 in bit pairs 0, 1, 2, 3. So each of the four 32-code registers of a
 * half is one and, one shift of qh and one bit select; register m
 * (elements 32m ..) covers sub-blocks 2m (low 128-bit lane) and 2m + 1
 * (high). Unsigned codes (0..63) times signed activation bytes by
 * vpmaddubsw (pairs at most 2 * 63 * 128: no saturation), weighted by the
 * sub-block scales with vpmaddwd; the offset -32 * sum_j sc_j * bsum_j is
 * one more vpmaddwd of the bsums with -32 * sc_j. Eight int32 lanes, each
 * below 2^26 in magnitude. */
#include <immintrin.h>
#include <string.h>

#include "cpu.h"

#if defined(__clang__)
#define Q6_UNROLL _Pragma("clang loop unroll(full)")
#elif defined(__GNUC__)
#define Q6_UNROLL _Pragma("GCC unroll 8")
#else
#define Q6_UNROLL
#endif

/* vpshufb control: int16 element a (of the 8 in a 128-bit lane) in every
 * word of the low lane, element b in the high lane. */
static inline __m256i q6_ctrl(int a, int b) {
    char a0 = (char)(2 * a), a1 = (char)(2 * a + 1), b0 = (char)(2 * b), b1 = (char)(2 * b + 1);
    return _mm256_setr_epi8(a0, a1, a0, a1, a0, a1, a0, a1, a0, a1, a0, a1, a0, a1, a0, a1, b0, b1, b0, b1, b0, b1, b0,
                            b1, b0, b1, b0, b1, b0, b1, b0, b1);
}

/* One super-block of weights, unpacked: the codes Q[m] of elements 32m ..
 * 32m + 31, their scales s[m] (sc_2m x 8 | sc_2m+1 x 8) and nsc = -32 * sc_j
 * as int16 j. */
typedef struct {
    __m256i Q[8];
    __m256i s[8];
    __m256i nsc;
} q6_wsb;

DEEPC_INLINE void q6_unpack(const deepc_block_q6_k *a, q6_wsb *o) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    Q6_UNROLL
    for (int h = 0; h < 2; h++) {
        __m256i l0 = _mm256_loadu_si256((const __m256i *)(a->ql + 64 * h));
        __m256i l1 = _mm256_loadu_si256((const __m256i *)(a->ql + 64 * h + 32));
        __m256i qh = _mm256_loadu_si256((const __m256i *)(a->qh + 32 * h));
        /* (l & 0x0f) | (h & 0x30): the word shifts move bits across bytes,
         * which the masks take off */
        o->Q[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
        o->Q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
        o->Q[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m30));
        o->Q[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                          _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
    }
    __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)a->scales));
    o->nsc = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc16, 5));
    __m256i lo = _mm256_permute2x128_si256(sc16, sc16, 0x00), hi = _mm256_permute2x128_si256(sc16, sc16, 0x11);
    Q6_UNROLL
    for (int m = 0; m < 4; m++) {
        __m256i c = q6_ctrl(2 * m, 2 * m + 1);
        o->s[m] = _mm256_shuffle_epi8(lo, c);
        o->s[4 + m] = _mm256_shuffle_epi8(hi, c);
    }
}

/* The super-block's 8 int32 lanes against activation block xb (their sum
 * is isum). */
DEEPC_INLINE __m256i q6_lanes(const q6_wsb *o, const deepc_block_q8_k *xb) {
    __m256i sumi = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)xb->bsums), o->nsc);
    Q6_UNROLL
    for (int m = 0; m < 8; m++) {
        __m256i p = _mm256_maddubs_epi16(o->Q[m], _mm256_loadu_si256((const __m256i *)(xb->qs + 32 * m)));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, o->s[m]));
    }
    return sumi;
}

/* The totals of four lane vectors, in order (exact). */
DEEPC_INLINE __m128i q6_reduce4(__m256i a, __m256i b, __m256i c, __m256i d) {
    __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
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

/* Four super-blocks per step (the last may have fewer: zero lanes for the
 * missing ones, whose products are not added). */
float deepc_avx2_vec_dot_q6_k(size_t n, const void *w, const void *x) {
    const deepc_block_q6_k *a = w;
    const deepc_block_q8_k *b = x;
    size_t nb = n / DEEPC_QK_K;
    float sum = 0.0f;
    for (size_t ib = 0; ib < nb; ib += 4) {
        int c = nb - ib < 4 ? (int)(nb - ib) : 4;
        __m256i v[4];
        uint16_t dh[4] = { 0, 0, 0, 0 };
        float dx[4] = { 0, 0, 0, 0 };
        for (int k = 0; k < 4; k++) {
            if (k >= c) {
                v[k] = _mm256_setzero_si256();
                continue;
            }
            q6_wsb o;
            q6_unpack(a + ib + k, &o);
            v[k] = q6_lanes(&o, b + ib + k);
            dh[k] = a[ib + k].d;
            dx[k] = b[ib + k].d;
        }
        __m128i is = q6_reduce4(v[0], v[1], v[2], v[3]);
        __m128 dd = _mm_mul_ps(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)dh)), _mm_loadu_ps(dx));
        sum = q6_add_in_order(sum, _mm_mul_ps(dd, _mm_cvtepi32_ps(is)), c);
    }
    return sum;
}

/* ---- gemm --------------------------------------------------------------- */

/* One row's super-block ib is unpacked once (its eight code registers fill
 * half the register file, so one row at a time) while the tile's tokens
 * pass over it four at a time: the four tokens' lane vectors go through one
 * q6_reduce4 (their isums, exact) and one multiply and add of four floats,
 * the operations vec_dot does for each, in the same order, so every output
 * is vec_dot's bit for bit. A last group of fewer than four tokens repeats
 * its last token in the missing lanes and stores only its own. Token tiles
 * of equal size up to Q6_RN keep the activations in L2 while the weights
 * stream past once per tile. */
#define Q6_RN 64 /* tokens per tile */

DEEPC_INLINE void q6_row(size_t nb, const deepc_block_q6_k *w, const unsigned char *x, size_t x_stride, int tn, float *y,
                      size_t y_stride) {
    __m128 acc[Q6_RN / 4];
    int ng = (tn + 3) / 4;
    for (int g = 0; g < ng; g++) acc[g] = _mm_setzero_ps();
    for (size_t ib = 0; ib < nb; ib++) {
        q6_wsb o;
        q6_unpack(w + ib, &o);
        const __m128 dw = _mm_set1_ps(_cvtsh_ss(w[ib].d));
        for (int g = 0; g < ng; g++) {
            const deepc_block_q8_k *xb[4];
            for (int k = 0; k < 4; k++) {
                int j = 4 * g + k < tn ? 4 * g + k : tn - 1;
                xb[k] = (const deepc_block_q8_k *)(x + (size_t)j * x_stride) + ib;
            }
            __m128i is = q6_reduce4(q6_lanes(&o, xb[0]), q6_lanes(&o, xb[1]), q6_lanes(&o, xb[2]), q6_lanes(&o, xb[3]));
            __m128 dd = _mm_mul_ps(dw, _mm_setr_ps(xb[0]->d, xb[1]->d, xb[2]->d, xb[3]->d));
            acc[g] = _mm_add_ps(acc[g], _mm_mul_ps(dd, _mm_cvtepi32_ps(is)));
        }
    }
    for (int g = 0; g < ng; g++) {
        float v[4];
        _mm_storeu_ps(v, acc[g]);
        for (int k = 0; k < 4 && 4 * g + k < tn; k++) y[(size_t)(4 * g + k) * y_stride] = v[k];
    }
}

void deepc_avx2_gemm_q6_k(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                          size_t x_stride, float *y, size_t y_stride) {
    size_t nb = n / DEEPC_QK_K;
    const unsigned char *wb = w, *xb = x;
    int tiles = (ntok + Q6_RN - 1) / Q6_RN, tile = tiles ? (ntok + tiles - 1) / tiles : 1;
    for (int t0 = 0; t0 < ntok; t0 += tile) {
        int tn = ntok - t0 < tile ? ntok - t0 : tile;
        for (int r = 0; r < nrows; r++)
            q6_row(nb, (const deepc_block_q6_k *)(wb + (size_t)r * w_stride), xb + (size_t)t0 * x_stride, x_stride, tn,
                   y + (size_t)t0 * y_stride + r, y_stride);
    }
}
