/* x86_avx2_q4_1.c - q4_1 weights x Q8_0 activations for the "avx2" table:
 * vec_dot (decode) and gemm (prefill). AVX2 + FMA + F16C only.
 *
 * As in x86_avx512_q4_1.c, the float work is defined per group, here of 8
 * blocks (256 elements), one block per lane: lane k holds block 8g + k's
 * exact integer dot I and activation sum X, and the group adds
 *   acc += d_x * (d_w * I - m_w * X)      (fmsub, then fma; 8 lanes)
 * to one accumulator, groups in order; missing blocks of the last group are
 * zero lanes; one horizontal sum at the end. vec_dot and gemm share
 * q41_group_fma and q41_finish, so the gemm equals vec_dot bit for bit.
 *
 * vec_dot: one block per register, its 8 lane sums of I + X * 2^17 (|I| <
 * 2^16: both come back out exactly) folded by one hadd tree per 8 blocks.
 * gemm: 8 weight blocks transposed in registers (register j lane k: the
 * codes of elements 4j .. 4j+3 of block k), the activations transposed once
 * per token tile into a stack buffer, maddubs sums in int16 and one madd
 * per group and output. */
#include <immintrin.h>
#include <string.h>

#include "cpu.h"
#include "x86_transpose.h"

#define Q41_G 8 /* blocks per group: one float lane each */

/* ---- the float part shared by vec_dot and gemm -------------------------- */

/* 8 dwords' low halves as 8 fp16 -> floats */
DEEPC_INLINE __m256 q41_half_lo(__m256i v) {
    v = _mm256_and_si256(v, _mm256_set1_epi32(0xffff));
    return _mm256_cvtph_ps(_mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)));
}

/* Weight d and m (each 20-byte block's first dword) and activation d (each
 * 34-byte block's first word) of the group's c blocks, zero above: element
 * loads (vpgatherdd measured slower on Zen 4), nothing past block c read. */
DEEPC_INLINE __m256i q41_mask(size_t c) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

DEEPC_INLINE void q41_load_dm(const deepc_block_q4_1 *a, size_t c, __m256 *dw, __m256 *mw) {
    const __m256i idx = _mm256_setr_epi32(0, 20, 40, 60, 80, 100, 120, 140);
    __m256i dm = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), (const int *)(const void *)a, idx, q41_mask(c), 1);
    *dw = q41_half_lo(dm);
    *mw = q41_half_lo(_mm256_srli_epi32(dm, 16));
}

DEEPC_INLINE __m256 q41_load_dx(const deepc_block_q8_0 *b, size_t c) {
    const __m256i idx = _mm256_setr_epi32(0, 34, 68, 102, 136, 170, 204, 238);
    return q41_half_lo(_mm256_mask_i32gather_epi32(_mm256_setzero_si256(), (const int *)(const void *)b, idx, q41_mask(c), 1));
}

DEEPC_INLINE __m256 q41_group_fma(__m256i isum, __m256 fx, __m256 dw, __m256 mw, __m256 dx, __m256 acc) {
    __m256 t = _mm256_fmsub_ps(dw, _mm256_cvtepi32_ps(isum), _mm256_mul_ps(mw, fx));
    return _mm256_fmadd_ps(dx, t, acc);
}

DEEPC_INLINE float q41_finish(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- vec_dot ------------------------------------------------------------ */

/* The 16 code bytes broadcast to both halves and the upper half's dwords
 * shifted right by 4, masked to nibbles: elements 0-15, then 16-31. */
DEEPC_INLINE __m256i q41_codes(const deepc_block_q4_1 *a) {
    __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)a->qs));
    return _mm256_and_si256(_mm256_srlv_epi32(raw, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)), _mm256_set1_epi8(15));
}

/* One block's 8 lane sums of I + X * 2^17 (maddubs pairs at most 2 * 15 *
 * 128: no saturation; any sum of the lanes stays below 2^31). */
DEEPC_INLINE __m256i q41_block(const deepc_block_q4_1 *a, const deepc_block_q8_0 *b) {
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    __m256i x = _mm256_loadu_si256((const __m256i *)b->qs);
    __m256i d = _mm256_madd_epi16(_mm256_maddubs_epi16(q41_codes(a), x), ones16);
    __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, x), ones16);
    return _mm256_add_epi32(d, _mm256_slli_epi32(s, 17));
}

DEEPC_INLINE __m256i q41_block_or_zero(const deepc_block_q4_1 *a, const deepc_block_q8_0 *b, size_t k, size_t c) {
    return k < c ? q41_block(a + k, b + k) : _mm256_setzero_si256();
}

/* The group's 8 totals I + X * 2^17, in order (blocks c and above: 0). */
DEEPC_INLINE __m256i q41_group_totals(const deepc_block_q4_1 *a, const deepc_block_q8_0 *b, size_t c) {
#define B(k) q41_block_or_zero(a, b, k, c)
    __m256i h01 = _mm256_hadd_epi32(B(0), B(1)), h23 = _mm256_hadd_epi32(B(2), B(3));
    __m256i h45 = _mm256_hadd_epi32(B(4), B(5)), h67 = _mm256_hadd_epi32(B(6), B(7));
#undef B
    __m256i h0123 = _mm256_hadd_epi32(h01, h23), h4567 = _mm256_hadd_epi32(h45, h67);
    return _mm256_add_epi32(_mm256_permute2x128_si256(h0123, h4567, 0x20),
                            _mm256_permute2x128_si256(h0123, h4567, 0x31));
}

/* One group of c blocks (8 but for the last) into acc. */
DEEPC_INLINE __m256 q41_group(const deepc_block_q4_1 *a, const deepc_block_q8_0 *b, size_t c, __m256 acc) {
    __m256i t = q41_group_totals(a, b, c);
    /* t = I + X * 2^17 with |I| < 2^16: X = floor((t + 2^16) / 2^17) */
    __m256i xs = _mm256_srai_epi32(_mm256_add_epi32(t, _mm256_set1_epi32(1 << 16)), 17);
    __m256i is = _mm256_sub_epi32(t, _mm256_slli_epi32(xs, 17));
    __m256 dw, mw;
    q41_load_dm(a, c, &dw, &mw);
    return q41_group_fma(is, _mm256_cvtepi32_ps(xs), dw, mw, q41_load_dx(b, c), acc);
}

static float q41_dot(size_t n, const void *w, const void *x) {
    const deepc_block_q4_1 *a = w;
    const deepc_block_q8_0 *b = x;
    size_t nb = n / DEEPC_QK4_1, g = 0;
    __m256 acc = _mm256_setzero_ps();
    for (; g + Q41_G <= nb; g += Q41_G) acc = q41_group(a + g, b + g, Q41_G, acc);
    if (g < nb) acc = q41_group(a + g, b + g, nb - g, acc);
    return q41_finish(acc);
}

float deepc_avx2_vec_dot_q4_1(size_t n, const void *w, const void *x) {
    return q41_dot(n, w, x);
}

/* ---- gemm --------------------------------------------------------------- */

#define Q41_TN 16                   /* tokens per tile */
#define Q41_TILE_BYTES (40 * 1024)  /* the packed activation tile (stack) */
#define Q41_RB_BYTES (384 * 1024)   /* a row block's weights stay in L2 across token tiles */

/* One token's group, transposed: q[j] lane k = dword j (elements 4j..4j+3)
 * of block k; its sums X and scales d as floats. */
typedef struct {
    __m256i q[8];
    __m256 fx, dx;
} q41_xgroup;

DEEPC_INLINE __m256i q41_ld256(const deepc_block_q8_0 *b, size_t k, size_t c) {
    return k < c ? _mm256_loadu_si256((const __m256i *)b[k].qs) : _mm256_setzero_si256();
}

/* Activation blocks 0 .. c-1 of b transposed (zero above): an 8x8 dword
 * transpose. */
static void q41_pack_group(const deepc_block_q8_0 *b, size_t c, q41_xgroup *xg) {
    __m256i z0 = q41_ld256(b, 0, c), z1 = q41_ld256(b, 1, c), z2 = q41_ld256(b, 2, c), z3 = q41_ld256(b, 3, c);
    __m256i z4 = q41_ld256(b, 4, c), z5 = q41_ld256(b, 5, c), z6 = q41_ld256(b, 6, c), z7 = q41_ld256(b, 7, c);
    __m256i T[8];
    deepc_transpose8x8_epi32(z0, z1, z2, z3, z4, z5, z6, z7, T);
    const __m256i ones8 = _mm256_set1_epi8(1);
    __m256i s16 = _mm256_setzero_si256();
    for (int j = 0; j < 8; j++) {
        s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(ones8, T[j])); /* |.| <= 8 * 2 * 128 */
        xg->q[j] = T[j];
    }
    xg->fx = _mm256_cvtepi32_ps(_mm256_madd_epi16(s16, _mm256_set1_epi16(1)));
    xg->dx = q41_load_dx(b, c);
}

DEEPC_INLINE __m128i q41_ld128(const deepc_block_q4_1 *a, size_t k, size_t c) {
    return k < c ? _mm_loadu_si128((const __m128i *)a[k].qs) : _mm_setzero_si128();
}

/* Weight blocks 0 .. c-1 of a transposed (zero above): W[j] lane k = the
 * codes of elements 4j .. 4j+3 of block k (j < 4: low nibbles of qs dword
 * j; j >= 4: high nibbles of qs dword j - 4), and the scales. */
DEEPC_INLINE void q41_load_w(const deepc_block_q4_1 *a, size_t c, __m256i W[8], __m256 *dw, __m256 *mw) {
    /* Z_i, 128-bit half L: qs of block 4L + i */
#define Z(i) _mm256_inserti128_si256(_mm256_castsi128_si256(q41_ld128(a, i, c)), q41_ld128(a, (i) + 4, c), 1)
    __m256i z0 = Z(0), z1 = Z(1), z2 = Z(2), z3 = Z(3);
#undef Z
    __m256i t0 = _mm256_unpacklo_epi32(z0, z1), t1 = _mm256_unpackhi_epi32(z0, z1);
    __m256i t2 = _mm256_unpacklo_epi32(z2, z3), t3 = _mm256_unpackhi_epi32(z2, z3);
    __m256i r0 = _mm256_unpacklo_epi64(t0, t2), r1 = _mm256_unpackhi_epi64(t0, t2);
    __m256i r2 = _mm256_unpacklo_epi64(t1, t3), r3 = _mm256_unpackhi_epi64(t1, t3);
    const __m256i m4 = _mm256_set1_epi8(15);
    W[0] = _mm256_and_si256(r0, m4), W[4] = _mm256_and_si256(_mm256_srli_epi16(r0, 4), m4);
    W[1] = _mm256_and_si256(r1, m4), W[5] = _mm256_and_si256(_mm256_srli_epi16(r1, 4), m4);
    W[2] = _mm256_and_si256(r2, m4), W[6] = _mm256_and_si256(_mm256_srli_epi16(r2, 4), m4);
    W[3] = _mm256_and_si256(r3, m4), W[7] = _mm256_and_si256(_mm256_srli_epi16(r3, 4), m4);
    q41_load_dm(a, c, dw, mw);
}

/* The 8 exact dots of weight group W with token group q: maddubs pairs (at
 * most 2 * 15 * 128) summed in int16 (at most 16 * 15 * 128 < 2^15), one
 * madd. */
DEEPC_INLINE __m256i q41_idot(const __m256i W[8], const __m256i *q) {
    __m256i s0 = _mm256_add_epi16(_mm256_maddubs_epi16(W[0], q[0]), _mm256_maddubs_epi16(W[1], q[1]));
    __m256i s1 = _mm256_add_epi16(_mm256_maddubs_epi16(W[2], q[2]), _mm256_maddubs_epi16(W[3], q[3]));
    s0 = _mm256_add_epi16(s0, _mm256_add_epi16(_mm256_maddubs_epi16(W[4], q[4]), _mm256_maddubs_epi16(W[5], q[5])));
    s1 = _mm256_add_epi16(s1, _mm256_add_epi16(_mm256_maddubs_epi16(W[6], q[6]), _mm256_maddubs_epi16(W[7], q[7])));
    return _mm256_madd_epi16(_mm256_add_epi16(s0, s1), _mm256_set1_epi16(1));
}

/* Row w against the tile's tn tokens, all ng groups; y[t * ys]. */
static void q41_row(const deepc_block_q4_1 *w, size_t nb, size_t ng, const q41_xgroup *xt, int tn, float *y,
                    size_t ys) {
    __m256 acc[Q41_TN];
    for (int t = 0; t < tn; t++) acc[t] = _mm256_setzero_ps();
    for (size_t g = 0; g < ng; g++) {
        size_t c = nb - g * Q41_G;
        __m256i W[8];
        __m256 dw, mw;
        if (c >= Q41_G) q41_load_w(w + g * Q41_G, Q41_G, W, &dw, &mw);
        else q41_load_w(w + g * Q41_G, c, W, &dw, &mw);
        for (int t = 0; t < tn; t++) {
            const q41_xgroup *x = &xt[(size_t)t * ng + g];
            acc[t] = q41_group_fma(q41_idot(W, x->q), x->fx, dw, mw, x->dx, acc[t]);
        }
    }
    for (int t = 0; t < tn; t++) y[(size_t)t * ys] = q41_finish(acc[t]);
}

void deepc_avx2_gemm_q4_1(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                          size_t x_stride, float *y, size_t y_stride) {
    size_t nb = n / DEEPC_QK4_1, ng = (nb + Q41_G - 1) / Q41_G;
    if (nrows <= 0 || ntok <= 0) return;
    size_t per_tok = ng * sizeof(q41_xgroup);
    int tn_max = (int)(Q41_TILE_BYTES / (per_tok ? per_tok : 1));
    if (tn_max > Q41_TN) tn_max = Q41_TN;
    const unsigned char *wb = w, *xb = x;
    if (tn_max < 1 || nb == 0) { /* rows too long for one token's tile (or empty): vec_dot per output */
        for (int t = 0; t < ntok; t++)
            for (int r = 0; r < nrows; r++)
                y[(size_t)t * y_stride + (size_t)r] = q41_dot(n, wb + (size_t)r * w_stride, xb + (size_t)t * x_stride);
        return;
    }
    _Alignas(32) q41_xgroup xt[Q41_TILE_BYTES / sizeof(q41_xgroup)];
    int rb = (int)(Q41_RB_BYTES / (w_stride ? w_stride : 1));
    if (rb < 1) rb = 1;
    for (int r0 = 0; r0 < nrows; r0 += rb) {
        int r1 = r0 + rb < nrows ? r0 + rb : nrows;
        for (int t0 = 0; t0 < ntok; t0 += tn_max) {
            int tn = ntok - t0 < tn_max ? ntok - t0 : tn_max;
            for (int t = 0; t < tn; t++) {
                const deepc_block_q8_0 *xr = (const deepc_block_q8_0 *)(xb + (size_t)(t0 + t) * x_stride);
                for (size_t g = 0; g < ng; g++) {
                    size_t c = nb - g * Q41_G;
                    q41_pack_group(xr + g * Q41_G, c > Q41_G ? Q41_G : c, &xt[(size_t)t * ng + g]);
                }
            }
            for (int r = r0; r < r1; r++)
                q41_row((const deepc_block_q4_1 *)(wb + (size_t)r * w_stride), nb, ng, xt, tn,
                        y + (size_t)t0 * y_stride + (size_t)r, y_stride);
        }
    }
}
