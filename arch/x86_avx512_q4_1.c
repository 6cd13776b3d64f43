/* x86_avx512_q4_1.c - q4_1 weights x Q8_0 activations for both AVX-512
 * tables: vec_dot (decode) and gemm (prefill), "avx512" (no VNNI) and
 * "avx512vnni". Compiled with -mavx512vnni; the "avx512" kernels keep the
 * compiler from fusing madd + add into vpdpwssd (opaque512/256 below, or
 * int16 sums with one madd that no add follows).
 *
 * The float work is defined per group of 16 blocks (512 elements), one block
 * per lane: lane k holds block 16g + k's exact integer dot I (codes x
 * activation) and activation sum X, and the group adds
 *   acc += d_x * (d_w * I - m_w * X)      (as fmsub, then fma; 16 lanes)
 * to one 16-lane accumulator, groups in order; the last group's missing
 * blocks are zero lanes (zero scales, zero sums), and the result is one
 * _mm512_reduce_add_ps. vec_dot and gemm both end in q41_group_fma and
 * q41_finish, so every gemm output is vec_dot's bit for bit (core/kernels.h);
 * they differ only in how I and X reach the lanes.
 *
 * vec_dot: one block per 256-bit register (256-bit ops measured faster than
 * pairing blocks in zmm on Zen 4, as for Q8_0), the block's 8 lane sums of
 * I + X * 2^17 (|I| < 2^16, so both come back out exactly) folded into one
 * lane per block by one hadd tree for both quantities.
 *
 * gemm: the weight codes of 16 blocks are transposed in registers (register
 * j lane k: the 4 codes of elements 4j .. 4j+3 of block k), so eight
 * vpdpbusd (or maddubs sums) leave block k's whole dot in lane k, with no
 * horizontal work; the activations are transposed once per token tile into a
 * stack buffer with their sums and scales. The weight transposition is
 * shared by the tile's tokens, two rows at a time share each activation load. */
#include <immintrin.h>
#include <string.h>

#include "cpu.h"
#include "x86_transpose.h"

#define Q41_G 16 /* blocks per group: one float lane each */

DEEPC_INLINE __m256i opaque256(__m256i v) {
    __asm__("" : "+v"(v));
    return v;
}

/* ---- the float part shared by vec_dot and gemm -------------------------- */

/* Scales of the group's first c blocks (zero above). Gathers measured slow
 * on Zen 4 (a third of vec_dot's time), so the 16 (d, m) dwords of the
 * 20-byte weight blocks (dword 5k: five 64-byte loads) and the 16 fp16 d of
 * the 34-byte activation blocks (word 17k: eight) are picked out of plain
 * loads by two-source permutes. Loads are masked to the c blocks: nothing
 * past them is read, and the lanes of missing blocks are zero. */
DEEPC_INLINE __m512i q41_ld_dw(const void *p, int i, size_t c) { /* dwords 16i .. 16i+15 of the first 5c */
    long v = 5 * (long)c - 16 * i;
    __mmask16 k = v >= 16 ? (__mmask16)0xffff : v <= 0 ? (__mmask16)0 : (__mmask16)((1u << v) - 1);
    return _mm512_maskz_loadu_epi32(k, (const unsigned char *)p + 64 * i);
}

DEEPC_INLINE __m512i q41_ld_w(const void *p, int i, size_t c) { /* words 32i .. 32i+31 of the first 17c */
    long v = 17 * (long)c - 32 * i;
    __mmask32 k = v >= 32 ? (__mmask32)0xffffffffu : v <= 0 ? (__mmask32)0 : (__mmask32)((1u << v) - 1);
    return _mm512_maskz_loadu_epi16(k, (const unsigned char *)p + 64 * i);
}

/* Lane k: dword 5k + o (o < 5) of the group's 80 dwords z[0..4], i.e.
 * dword o of block k: from z0:z1 below dword 32, z2:z3 below 64, z4 above.
 * The permutes use the index's low 5 (4) bits, so one index serves all. */
DEEPC_INLINE __m512i q41_pick(__m512i z0, __m512i z1, __m512i z2, __m512i z3, __m512i z4, int o) {
    static const __mmask16 mid[5] = { 0x1f80, 0x1f80, 0x1fc0, 0x1fc0, 0x0fc0 };
    static const __mmask16 hi[5] = { 0xe000, 0xe000, 0xe000, 0xe000, 0xf000 };
    __m512i idx = _mm512_add_epi32(_mm512_setr_epi32(0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75),
                                   _mm512_set1_epi32(o));
    __m512i r = _mm512_permutex2var_epi32(z0, idx, z1);
    r = _mm512_mask_mov_epi32(r, mid[o], _mm512_permutex2var_epi32(z2, idx, z3));
    return _mm512_mask_permutexvar_epi32(r, hi[o], idx, z4);
}

/* The five loads of a group's weight blocks, named (not an array: the
 * compiler kept an array on the stack). */
#define Q41_LOAD_Z(a, c)                                                                                  \
    __m512i z0 = q41_ld_dw(a, 0, c), z1 = q41_ld_dw(a, 1, c), z2 = q41_ld_dw(a, 2, c), z3 = q41_ld_dw(a, 3, c), \
            z4 = q41_ld_dw(a, 4, c)

DEEPC_INLINE void q41_dm_of(__m512i dm, __m512 *dw, __m512 *mw) {
    *dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
    *mw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16)));
}

DEEPC_INLINE void q41_load_dm(const deepc_block_q4_1 *a, size_t c, __m512 *dw, __m512 *mw) {
    Q41_LOAD_Z(a, c);
    q41_dm_of(q41_pick(z0, z1, z2, z3, z4, 0), dw, mw);
}

DEEPC_INLINE __m512 q41_load_dx(const deepc_block_q8_0 *b, size_t c) {
    /* lane k: word 17k mod 64 of the pair of loads 2(k / 4), 2(k / 4) + 1 */
    const __m512i idx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 63, 46, 29, 12, 59, 42, 25, 8,
                                         55, 38, 21, 4, 51, 34, 17, 0);
    __m512i d = _mm512_permutex2var_epi16(q41_ld_w(b, 0, c), idx, q41_ld_w(b, 1, c));
    d = _mm512_mask_mov_epi16(d, 0x00f0, _mm512_permutex2var_epi16(q41_ld_w(b, 2, c), idx, q41_ld_w(b, 3, c)));
    d = _mm512_mask_mov_epi16(d, 0x0f00, _mm512_permutex2var_epi16(q41_ld_w(b, 4, c), idx, q41_ld_w(b, 5, c)));
    d = _mm512_mask_mov_epi16(d, 0xf000, _mm512_permutex2var_epi16(q41_ld_w(b, 6, c), idx, q41_ld_w(b, 7, c)));
    return _mm512_cvtph_ps(_mm512_castsi512_si256(d));
}

/* acc + d_x * (d_w * I - m_w * X): explicit fmsub / fma, so no compiler
 * contracts it differently in the two kernels. */
DEEPC_INLINE __m512 q41_group_fma(__m512i isum, __m512 fx, __m512 dw, __m512 mw, __m512 dx, __m512 acc) {
    __m512 t = _mm512_fmsub_ps(dw, _mm512_cvtepi32_ps(isum), _mm512_mul_ps(mw, fx));
    return _mm512_fmadd_ps(dx, t, acc);
}

DEEPC_INLINE float q41_finish(__m512 acc) {
    return _mm512_reduce_add_ps(acc);
}

/* ---- vec_dot ------------------------------------------------------------ */

/* One block's 8 lane sums of I + X * 2^17 (each lane |I part| <= 4 * 15 *
 * 128, |X part| <= 4 * 128; any sum of them stays below 2^31). The codes:
 * the 16 bytes broadcast to both halves, the upper half shifted by 4 (a
 * masked shift), masked to nibbles: elements 0-15 low, 16-31 high, the
 * activation's order. */
DEEPC_INLINE __m256i q41_block(const deepc_block_q4_1 *a, const deepc_block_q8_0 *b, bool vnni) {
    const __m256i m4 = _mm256_set1_epi8(15), ones8 = _mm256_set1_epi8(1);
    __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)a->qs));
    __m256i q = _mm256_and_si256(_mm256_mask_srli_epi16(raw, (__mmask16)0xff00, raw, 4), m4);
    __m256i x = _mm256_loadu_si256((const __m256i *)b->qs);
    if (vnni) {
        __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones8, x);
        return _mm256_dpbusd_epi32(_mm256_slli_epi32(s, 17), q, x);
    }
    const __m256i ones16 = _mm256_set1_epi16(1);
    __m256i d = opaque256(_mm256_madd_epi16(_mm256_maddubs_epi16(q, x), ones16));
    __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, x), ones16);
    return _mm256_add_epi32(d, _mm256_slli_epi32(s, 17));
}

/* Eight vectors of 8 int32 lane sums -> their eight totals, in order. */
DEEPC_INLINE __m256i q41_hsum8x8(__m256i v0, __m256i v1, __m256i v2, __m256i v3, __m256i v4, __m256i v5, __m256i v6,
                               __m256i v7) {
    __m256i h01 = _mm256_hadd_epi32(v0, v1), h23 = _mm256_hadd_epi32(v2, v3);
    __m256i h45 = _mm256_hadd_epi32(v4, v5), h67 = _mm256_hadd_epi32(v6, v7);
    __m256i h0123 = _mm256_hadd_epi32(h01, h23), h4567 = _mm256_hadd_epi32(h45, h67);
    return _mm256_add_epi32(_mm256_permute2x128_si256(h0123, h4567, 0x20),
                            _mm256_permute2x128_si256(h0123, h4567, 0x31));
}

/* The group's 16 totals I + X * 2^17, in order. Blocks c and above (the
 * last group only) repeat block c - 1, so every load stays inside the rows
 * and the code has no branches; their lanes are zeroed at the end. Written
 * out, not as an array, so every vector stays in a register. */
DEEPC_INLINE __m512i q41_group_totals(const deepc_block_q4_1 *a, const deepc_block_q8_0 *b, size_t c, bool vnni) {
#define B(k) q41_block(a + ((k) < c ? (k) : c - 1), b + ((k) < c ? (k) : c - 1), vnni)
    __m256i lo = q41_hsum8x8(B(0), B(1), B(2), B(3), B(4), B(5), B(6), B(7));
    __m256i hi = q41_hsum8x8(B(8), B(9), B(10), B(11), B(12), B(13), B(14), B(15));
#undef B
    __m512i t = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    return c >= Q41_G ? t : _mm512_maskz_mov_epi32((__mmask16)((1u << c) - 1), t);
}

/* One group of c blocks (16 but for the last) into acc. */
DEEPC_INLINE __m512 q41_group(const deepc_block_q4_1 *a, const deepc_block_q8_0 *b, size_t c, bool vnni, __m512 acc) {
    __m512i t = q41_group_totals(a, b, c, vnni);
    /* t = I + X * 2^17 with |I| < 2^16: X = floor((t + 2^16) / 2^17) */
    __m512i xs = _mm512_srai_epi32(_mm512_add_epi32(t, _mm512_set1_epi32(1 << 16)), 17);
    __m512i is = _mm512_sub_epi32(t, _mm512_slli_epi32(xs, 17));
    __m512 dw, mw;
    q41_load_dm(a, c, &dw, &mw);
    return q41_group_fma(is, _mm512_cvtepi32_ps(xs), dw, mw, q41_load_dx(b, c), acc);
}

DEEPC_INLINE float q41_dot(size_t n, const void *w, const void *x, bool vnni) {
    const deepc_block_q4_1 *a = w;
    const deepc_block_q8_0 *b = x;
    size_t nb = n / DEEPC_QK4_1, g = 0;
    __m512 acc = _mm512_setzero_ps();
    for (; g + Q41_G <= nb; g += Q41_G) acc = q41_group(a + g, b + g, Q41_G, vnni, acc);
    if (g < nb) acc = q41_group(a + g, b + g, nb - g, vnni, acc);
    return q41_finish(acc);
}

float deepc_avx512_vec_dot_q4_1(size_t n, const void *w, const void *x) {
    return q41_dot(n, w, x, false);
}

float deepc_avx512_vec_dot_q4_1_vnni(size_t n, const void *w, const void *x) {
    return q41_dot(n, w, x, true);
}

/* ---- gemm --------------------------------------------------------------- */

#define Q41_TN 16                   /* tokens per tile */
#define Q41_TILE_BYTES (40 * 1024)  /* the packed activation tile (stack) */
#define Q41_RB_BYTES (384 * 1024)   /* a row block's weights stay in L2 across token tiles */

/* One token's group, transposed: q[j] lane k = dword j (elements 4j..4j+3)
 * of block k; its sums X and scales d as floats. */
typedef struct {
    __m512i q[8];
    __m512 fx, dx;
} q41_xgroup;

DEEPC_INLINE __m256i q41_ld256(const deepc_block_q8_0 *b, size_t k, size_t c) {
    return k < c ? _mm256_loadu_si256((const __m256i *)b[k].qs) : _mm256_setzero_si256();
}

/* Activation blocks 0 .. c-1 of b transposed (zero above): block k in the
 * low 256 bits of z[k] and block k + 8 in the high ones, then an 8x8 dword
 * transpose within each half. */
static void q41_pack_group(const deepc_block_q8_0 *b, size_t c, q41_xgroup *xg) {
#define Z(k) _mm512_inserti64x4(_mm512_castsi256_si512(q41_ld256(b, k, c)), q41_ld256(b, (k) + 8, c), 1)
    __m512i z0 = Z(0), z1 = Z(1), z2 = Z(2), z3 = Z(3), z4 = Z(4), z5 = Z(5), z6 = Z(6), z7 = Z(7);
#undef Z
    __m512i T[8];
    deepc_transpose8x8_epi32_x2(z0, z1, z2, z3, z4, z5, z6, z7, T);
    /* X per lane: byte sums in int16 (at most 8 * 2 * 128 in magnitude),
     * then one madd; nothing adds to a madd result (no VNNI pattern) */
    const __m512i ones8 = _mm512_set1_epi8(1);
    __m512i s16 = _mm512_setzero_si512();
    for (int j = 0; j < 8; j++) {
        s16 = _mm512_add_epi16(s16, _mm512_maddubs_epi16(ones8, T[j]));
        xg->q[j] = T[j];
    }
    xg->fx = _mm512_cvtepi32_ps(_mm512_madd_epi16(s16, _mm512_set1_epi16(1)));
    xg->dx = q41_load_dx(b, c);
}

/* Weight blocks 0 .. c-1 of a transposed (zero above): W[j] lane k = the
 * codes of elements 4j .. 4j+3 of block k (j < 4: low nibbles of qs dword
 * j, dword j + 1 of the block; j >= 4: the high nibbles of qs dword j - 4),
 * and the scales, all picked out of the same five loads. */
DEEPC_INLINE void q41_load_w(const deepc_block_q4_1 *a, size_t c, __m512i W[8], __m512 *dw, __m512 *mw) {
    const __m512i m4 = _mm512_set1_epi8(15);
    Q41_LOAD_Z(a, c);
#define R(j)                                                                 \
    do {                                                                     \
        __m512i r = q41_pick(z0, z1, z2, z3, z4, (j) + 1);                   \
        W[j] = _mm512_and_si512(r, m4);                                      \
        W[(j) + 4] = _mm512_and_si512(_mm512_srli_epi16(r, 4), m4);          \
    } while (0)
    R(0);
    R(1);
    R(2);
    R(3);
#undef R
    q41_dm_of(q41_pick(z0, z1, z2, z3, z4, 0), dw, mw);
}

/* The 16 exact dots of weight group W with token group q. Without VNNI:
 * maddubs pairs (at most 2 * 15 * 128) summed in int16 over all eight
 * registers (at most 16 * 15 * 128 < 2^15), one madd at the end. */
DEEPC_INLINE __m512i q41_idot(const __m512i W[8], const __m512i *q, bool vnni) {
    if (vnni) {
        __m512i i0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), W[0], q[0]);
        __m512i i1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), W[1], q[1]);
        i0 = _mm512_dpbusd_epi32(i0, W[2], q[2]);
        i1 = _mm512_dpbusd_epi32(i1, W[3], q[3]);
        i0 = _mm512_dpbusd_epi32(i0, W[4], q[4]);
        i1 = _mm512_dpbusd_epi32(i1, W[5], q[5]);
        i0 = _mm512_dpbusd_epi32(i0, W[6], q[6]);
        i1 = _mm512_dpbusd_epi32(i1, W[7], q[7]);
        return _mm512_add_epi32(i0, i1);
    }
    __m512i s0 = _mm512_add_epi16(_mm512_maddubs_epi16(W[0], q[0]), _mm512_maddubs_epi16(W[1], q[1]));
    __m512i s1 = _mm512_add_epi16(_mm512_maddubs_epi16(W[2], q[2]), _mm512_maddubs_epi16(W[3], q[3]));
    s0 = _mm512_add_epi16(s0, _mm512_add_epi16(_mm512_maddubs_epi16(W[4], q[4]), _mm512_maddubs_epi16(W[5], q[5])));
    s1 = _mm512_add_epi16(s1, _mm512_add_epi16(_mm512_maddubs_epi16(W[6], q[6]), _mm512_maddubs_epi16(W[7], q[7])));
    return _mm512_madd_epi16(_mm512_add_epi16(s0, s1), _mm512_set1_epi16(1));
}

/* Rows wa (and wb when two) against the tile's tn tokens, all ng groups;
 * y[t * ys] (and y[t * ys + 1]). */
DEEPC_INLINE void q41_rows(const deepc_block_q4_1 *wa, const deepc_block_q4_1 *wb, bool two, size_t nb, size_t ng,
                         const q41_xgroup *xt, int tn, float *y, size_t ys, bool vnni) {
    __m512 acca[Q41_TN], accb[Q41_TN];
    for (size_t g = 0; g < ng; g++) {
        size_t c = nb - g * Q41_G;
        if (c > Q41_G) c = Q41_G;
        __m512i A[8], B[8];
        __m512 da, ma, db = _mm512_setzero_ps(), mb = db;
        if (c == Q41_G) q41_load_w(wa + g * Q41_G, Q41_G, A, &da, &ma);
        else q41_load_w(wa + g * Q41_G, c, A, &da, &ma);
        if (two) {
            if (c == Q41_G) q41_load_w(wb + g * Q41_G, Q41_G, B, &db, &mb);
            else q41_load_w(wb + g * Q41_G, c, B, &db, &mb);
        }
        for (int t = 0; t < tn; t++) {
            const q41_xgroup *x = &xt[(size_t)t * ng + g];
            /* the first group starts from zero, as vec_dot's accumulator */
            __m512 a0 = g ? acca[t] : _mm512_setzero_ps(), b0 = g ? accb[t] : _mm512_setzero_ps();
            acca[t] = q41_group_fma(q41_idot(A, x->q, vnni), x->fx, da, ma, x->dx, a0);
            if (two) accb[t] = q41_group_fma(q41_idot(B, x->q, vnni), x->fx, db, mb, x->dx, b0);
        }
    }
    for (int t = 0; t < tn; t++) {
        y[(size_t)t * ys] = q41_finish(acca[t]);
        if (two) y[(size_t)t * ys + 1] = q41_finish(accb[t]);
    }
}

DEEPC_INLINE void q41_gemm(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x, size_t x_stride,
                         float *y, size_t y_stride, bool vnni) {
    size_t nb = n / DEEPC_QK4_1, ng = (nb + Q41_G - 1) / Q41_G;
    if (nrows <= 0 || ntok <= 0) return;
    size_t per_tok = ng * sizeof(q41_xgroup);
    int tn_max = (int)(Q41_TILE_BYTES / (per_tok ? per_tok : 1));
    if (tn_max > Q41_TN) tn_max = Q41_TN;
    if (tn_max < 1 || nb == 0) { /* rows too long for one token's tile (or empty): vec_dot per output */
        for (int t = 0; t < ntok; t++)
            for (int r = 0; r < nrows; r++)
                y[(size_t)t * y_stride + (size_t)r] =
                    q41_dot(n, (const unsigned char *)w + (size_t)r * w_stride,
                            (const unsigned char *)x + (size_t)t * x_stride, vnni);
        return;
    }
    _Alignas(64) q41_xgroup xt[Q41_TILE_BYTES / sizeof(q41_xgroup)];
    const unsigned char *wb = w, *xb = x;
    int rb = (int)(Q41_RB_BYTES / (w_stride ? w_stride : 1));
    if (rb < 2) rb = 2;
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
            float *yt = y + (size_t)t0 * y_stride;
            int r = r0;
            for (; r + 2 <= r1; r += 2)
                q41_rows((const deepc_block_q4_1 *)(wb + (size_t)r * w_stride),
                         (const deepc_block_q4_1 *)(wb + (size_t)(r + 1) * w_stride), true, nb, ng, xt, tn, yt + r,
                         y_stride, vnni);
            if (r < r1)
                q41_rows((const deepc_block_q4_1 *)(wb + (size_t)r * w_stride), NULL, false, nb, ng, xt, tn, yt + r,
                         y_stride, vnni);
        }
    }
}

void deepc_avx512_gemm_q4_1(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                            size_t x_stride, float *y, size_t y_stride) {
    q41_gemm(nrows, ntok, n, w, w_stride, x, x_stride, y, y_stride, false);
}

void deepc_avx512vnni_gemm_q4_1(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                                size_t x_stride, float *y, size_t y_stride) {
    q41_gemm(nrows, ntok, n, w, w_stride, x, x_stride, y, y_stride, true);
}
