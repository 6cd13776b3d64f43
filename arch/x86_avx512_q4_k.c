/* x86_avx512_q4_k.c - q4_k weights x Q8_K activations for both AVX-512
 * tables: vec_dot (decode) and gemm (prefill), "avx512" (no VNNI) and
 * "avx512vnni". Compiled with -mavx512vnni; the "avx512" kernels never leave
 * the compiler a madd followed by an add to fuse into vpdpwssd (int16 sums
 * with one madd at the end, or madd results that only go into hadd trees
 * and permutes).
 *
 * The float work is defined per group of two super-blocks (512 elements),
 * one 32-element sub-block per lane (the layout of x86_avx512_q4_1.c):
 *   lane l < 8:  super-block l / 4, sub-block 2 (l % 4)      (low nibbles)
 *   lane 8 + l:  super-block l / 4, sub-block 2 (l % 4) + 1  (high nibbles)
 * i.e. lane l and 8 + l are the two halves of code chunk l % 4 of super-block
 * l / 4. Lane k holds sub-block j's exact integer dot I (codes x activation),
 * its activation sum B (bsums 2j + 2j+1), the weight's d * sc_j and
 * dmin * mn_j (both exact in fp32: an 11-bit fp16 significand times a 6-bit
 * integer) and the activation scale d_x, and the group adds
 *   acc += d_x * (d*sc * I - dmin*mn * B)      (mul, fmsub, fma; 16 lanes)
 * to one 16-lane accumulator, groups in order; a last group with one
 * super-block has zero lanes for the other, and the result is one
 * _mm512_reduce_add_ps. vec_dot and gemm both end in q4k_group_fma and
 * q4k_finish, so every gemm output is vec_dot's bit for bit (core/kernels.h).
 * Against scalar (one rounded expression per super-block) this is a
 * different summation order of 16 terms per super-block, inside the bound
 * test/test_kernels.c holds k-quant dots to; the integer parts are exact.
 *
 * vec_dot: each 32-byte code chunk broadcast to both halves of a zmm (high
 * half shifted by 4: low nibbles below, high above, the order of the
 * activation's 64 bytes), one vpdpbusd (or maddubs + madd) per chunk, and
 * the group's 8 vectors of 2 x 8 lane sums folded into lanes by one unpack
 * tree. Measured (kernbench, cache-resident rows) against the former
 * x86_avx512.c kernel (8 float lanes per super-block): 61.5 -> 74 Gw/s with
 * VNNI, 55.5 -> 68 without; ymm chunks with hadd trees were slower (53).
 *
 * gemm: the weight codes of a group are transposed in registers (register m
 * lane k: the 4 codes of elements 4m .. 4m+3 of lane k's sub-block), so eight
 * vpdpbusd (or maddubs sums) leave each sub-block's dot in its lane with no
 * horizontal work; the activations are transposed the same way once per
 * token tile (and k-chunk) into a stack buffer with their sums and scales.
 * The weight transposition is shared by the tile's tokens, two rows at a
 * time share each activation load. Rows whose tile does not fit the buffer
 * are split into k-chunks over blocks of 32 rows, whose accumulators wait on
 * the stack (groups stay in order, so the bits do not change). Outputs are
 * staged 16 rows per token and the next row pair's weights prefetched: with
 * y and the weights past L2 (8960 x 1536) those two took the kernel from
 * ~160 to ~240 GMAC/s. */
#include <immintrin.h>
#include <string.h>

#include "cpu.h"
#include "x86_transpose.h"

/* The same 16 bytes in both 128-bit lanes. */
#define Q4K_LANES2(...) _mm256_setr_epi8(__VA_ARGS__, __VA_ARGS__)

/* ---- the float part shared by vec_dot and gemm -------------------------- */

/* Weight scales of a group: d * sc and dmin * mn per lane. Super-block 1
 * only when two (else its lanes are zero). The six-bit fields are unpacked
 * as in x86_avx512.c's q4_k_decode, straight into lane order: per 128-bit
 * lane (one super-block) bytes 0-3 sc_0,2,4,6, 4-7 sc_1,3,5,7, 8-11
 * mn_0,2,4,6, 12-15 mn_1,3,5,7 (the 16 bytes read end inside qs). */
DEEPC_INLINE void q4k_load_scales(const deepc_block_q4_k *a, bool two, __m512 *dsc, __m512 *dmn) {
    const __m256i ia = Q4K_LANES2(0, 2, 8, 10, 1, 3, 9, 11, 4, 6, 8, 10, 5, 7, 9, 11);
    const __m256i ih = Q4K_LANES2(-1, -1, 0, 2, -1, -1, 1, 3, -1, -1, 4, 6, -1, -1, 5, 7);
    const __m256i mlo = Q4K_LANES2(63, 63, 15, 15, 63, 63, 15, 15, 63, 63, 0, 0, 63, 63, 0, 0);
    const __m256i mhi = Q4K_LANES2(0, 0, 0x30, 0x30, 0, 0, 0x30, 0x30, 0, 0, 0x30, 0x30, 0, 0, 0x30, 0x30);
    const __m256i mmn = Q4K_LANES2(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 0, 0, 15, 15);
    __m128i s0 = _mm_loadu_si128((const __m128i *)a[0].scales);
    __m128i s1 = two ? _mm_loadu_si128((const __m128i *)a[1].scales) : _mm_setzero_si128();
    __m256i b = _mm256_inserti128_si256(_mm256_castsi128_si256(s0), s1, 1);
    __m256i lo = _mm256_shuffle_epi8(b, ia), hb = _mm256_shuffle_epi8(b, ih);
    /* within-word shifts: the bits a byte takes from its neighbour are masked off */
    __m256i v = _mm256_or_si256(_mm256_and_si256(lo, mlo), _mm256_and_si256(_mm256_srli_epi16(hb, 2), mhi));
    v = _mm256_or_si256(v, _mm256_and_si256(_mm256_srli_epi16(lo, 4), mmn));
    /* bytes 0-15: the sixteen sc in lane order, 16-31 the mins */
    v = _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    uint32_t d0, d1 = 0;
    memcpy(&d0, &a[0], 4);
    if (two) memcpy(&d1, &a[1], 4);
    __m512 f = _mm512_zextps128_ps512(_mm_cvtph_ps(_mm_setr_epi32((int)d0, (int)d1, 0, 0))); /* d0 m0 d1 m1 */
    __m512 dv = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 0, 0, 0, 0, 2, 2, 2, 2), f);
    __m512 mv = _mm512_permutexvar_ps(_mm512_setr_epi32(1, 1, 1, 1, 3, 3, 3, 3, 1, 1, 1, 1, 3, 3, 3, 3), f);
    *dsc = _mm512_mul_ps(dv, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(v))));
    *dmn = _mm512_mul_ps(mv, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(v, 1))));
}

/* Activation side of a group: B per lane (pairs of bsums: one madd, whose
 * result only goes through a permute) and d_x per lane. */
DEEPC_INLINE void q4k_load_act(const deepc_block_q8_k *b, bool two, __m512 *fb, __m512 *dx) {
    __m256i s0 = _mm256_loadu_si256((const __m256i *)b[0].bsums);
    __m256i s1 = two ? _mm256_loadu_si256((const __m256i *)b[1].bsums) : _mm256_setzero_si256();
    __m512i s = _mm512_madd_epi16(_mm512_inserti64x4(_mm512_castsi256_si512(s0), s1, 1), _mm512_set1_epi16(1));
    s = _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15), s);
    *fb = _mm512_cvtepi32_ps(s);
    *dx = _mm512_mask_blend_ps((__mmask16)0xf0f0, _mm512_set1_ps(b[0].d), _mm512_set1_ps(two ? b[1].d : 0.0f));
}

/* acc + d_x * (dsc * I - dmn * B): explicit mul / fmsub / fma, so no
 * compiler contracts it differently in the two kernels. */
DEEPC_INLINE __m512 q4k_group_fma(__m512i isum, __m512 fb, __m512 dsc, __m512 dmn, __m512 dx, __m512 acc) {
    __m512 t = _mm512_fmsub_ps(dsc, _mm512_cvtepi32_ps(isum), _mm512_mul_ps(dmn, fb));
    return _mm512_fmadd_ps(dx, t, acc);
}

DEEPC_INLINE float q4k_finish(__m512 acc) {
    return _mm512_reduce_add_ps(acc);
}

/* ---- vec_dot ------------------------------------------------------------ */

/* Eight vectors v[c] of 2 x 8 int32 lane sums -> lane c: the total of v[c]'s
 * low half, lane 8 + c: of its high half (pairs folded by unpacks and adds,
 * then the 128-bit lanes). */
DEEPC_INLINE __m512i q4k_hsum8x16(__m512i v0, __m512i v1, __m512i v2, __m512i v3, __m512i v4, __m512i v5, __m512i v6,
                                __m512i v7) {
    __m512i a01 = _mm512_add_epi32(_mm512_unpacklo_epi32(v0, v1), _mm512_unpackhi_epi32(v0, v1));
    __m512i a23 = _mm512_add_epi32(_mm512_unpacklo_epi32(v2, v3), _mm512_unpackhi_epi32(v2, v3));
    __m512i a45 = _mm512_add_epi32(_mm512_unpacklo_epi32(v4, v5), _mm512_unpackhi_epi32(v4, v5));
    __m512i a67 = _mm512_add_epi32(_mm512_unpacklo_epi32(v6, v7), _mm512_unpackhi_epi32(v6, v7));
    __m512i b03 = _mm512_add_epi32(_mm512_unpacklo_epi64(a01, a23), _mm512_unpackhi_epi64(a01, a23));
    __m512i b47 = _mm512_add_epi32(_mm512_unpacklo_epi64(a45, a67), _mm512_unpackhi_epi64(a45, a67));
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    return _mm512_add_epi32(_mm512_permutex2var_epi64(b03, lo, b47), _mm512_permutex2var_epi64(b03, hi, b47));
}

/* One weight chunk (32 code bytes) in both halves, low nibbles below, high
 * nibbles above: the operand order of the activation's 64 bytes. */
DEEPC_INLINE __m512i q4k_wchunk(const uint8_t *qs) {
    __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qs));
    return _mm512_and_si512(_mm512_mask_srli_epi16(q, (__mmask32)0xffff0000u, q, 4), _mm512_set1_epi8(0x0f));
}

/* Chunk c of super-block a x b: lane sums of sub-blocks 2c (low half) and
 * 2c + 1 (high half). Without VNNI the madd's result only goes into the
 * unpack tree (nothing a compiler could fuse into vpdpwssd). */
DEEPC_INLINE __m512i q4k_chunk(const deepc_block_q4_k *a, const deepc_block_q8_k *b, int c, bool vnni) {
    __m512i q = q4k_wchunk(a->qs + 32 * c), xv = _mm512_loadu_si512(b->qs + 64 * c);
    if (vnni) return _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, xv);
    return _mm512_madd_epi16(_mm512_maddubs_epi16(q, xv), _mm512_set1_epi16(1));
}

/* One group (two super-blocks, or one when !two) into acc. */
DEEPC_INLINE __m512 q4k_vgroup(const deepc_block_q4_k *a, const deepc_block_q8_k *b, bool two, bool vnni, __m512 acc) {
    const __m512i z = _mm512_setzero_si512();
    __m512i isum = q4k_hsum8x16(q4k_chunk(a, b, 0, vnni), q4k_chunk(a, b, 1, vnni), q4k_chunk(a, b, 2, vnni),
                                q4k_chunk(a, b, 3, vnni), two ? q4k_chunk(a + 1, b + 1, 0, vnni) : z,
                                two ? q4k_chunk(a + 1, b + 1, 1, vnni) : z, two ? q4k_chunk(a + 1, b + 1, 2, vnni) : z,
                                two ? q4k_chunk(a + 1, b + 1, 3, vnni) : z);
    __m512 dsc, dmn, fb, dx;
    q4k_load_scales(a, two, &dsc, &dmn);
    q4k_load_act(b, two, &fb, &dx);
    return q4k_group_fma(isum, fb, dsc, dmn, dx, acc);
}

DEEPC_INLINE float q4k_dot(size_t n, const void *w, const void *x, bool vnni) {
    const deepc_block_q4_k *a = w;
    const deepc_block_q8_k *b = x;
    size_t nb = n / DEEPC_QK_K, i = 0;
    __m512 acc = _mm512_setzero_ps();
    for (; i + 2 <= nb; i += 2) acc = q4k_vgroup(a + i, b + i, true, vnni, acc);
    if (i < nb) acc = q4k_vgroup(a + i, b + i, false, vnni, acc);
    return q4k_finish(acc);
}

float deepc_avx512_vec_dot_q4_k(size_t n, const void *w, const void *x) {
    return q4k_dot(n, w, x, false);
}

float deepc_avx512_vec_dot_q4_k_vnni(size_t n, const void *w, const void *x) {
    return q4k_dot(n, w, x, true);
}

/* ---- gemm --------------------------------------------------------------- */

#define Q4K_TN 16                 /* tokens per tile */
#define Q4K_BUF_BYTES (52 * 1024) /* packed activations + accumulators (stack) */
#define Q4K_CHUNK_ROWS 32         /* row block when the k range is split: its accumulators */
#define Q4K_RB_BYTES (384 * 1024) /* unsplit: a row block's weights stay in L2 across token tiles */
#define Q4K_YS 16                 /* rows of outputs staged per token (one zmm) */

/* One token's group, transposed: q[m] lane k = dword m (elements 4m..4m+3)
 * of lane k's sub-block; its sums B and scales d_x as floats. */
typedef struct {
    __m512i q[8];
    __m512 fb, dx;
} q4k_xgroup;


/* Activation super-blocks b[0] (and b[1] when two) transposed: z[c] =
 * the 64 bytes of chunk c % 4 of super-block c / 4, sub-block 2 (c % 4) in
 * the low half (lane c) and 2 (c % 4) + 1 in the high one (lane 8 + c). */
static void q4k_pack_group(const deepc_block_q8_k *b, bool two, q4k_xgroup *xg) {
    const __m512i z = _mm512_setzero_si512();
    __m512i z0 = _mm512_loadu_si512(b[0].qs), z1 = _mm512_loadu_si512(b[0].qs + 64);
    __m512i z2 = _mm512_loadu_si512(b[0].qs + 128), z3 = _mm512_loadu_si512(b[0].qs + 192);
    __m512i z4 = two ? _mm512_loadu_si512(b[1].qs) : z, z5 = two ? _mm512_loadu_si512(b[1].qs + 64) : z;
    __m512i z6 = two ? _mm512_loadu_si512(b[1].qs + 128) : z, z7 = two ? _mm512_loadu_si512(b[1].qs + 192) : z;
    deepc_transpose8x8_epi32_x2(z0, z1, z2, z3, z4, z5, z6, z7, xg->q);
    q4k_load_act(b, two, &xg->fb, &xg->dx);
}

/* Weight super-blocks a[0] (and a[1]) transposed to the lanes of
 * q4k_pack_group, and their scales. */
DEEPC_INLINE void q4k_load_w(const deepc_block_q4_k *a, bool two, __m512i W[8], __m512 *dsc, __m512 *dmn) {
    const __m512i z = _mm512_setzero_si512();
    __m512i z0 = q4k_wchunk(a[0].qs), z1 = q4k_wchunk(a[0].qs + 32);
    __m512i z2 = q4k_wchunk(a[0].qs + 64), z3 = q4k_wchunk(a[0].qs + 96);
    __m512i z4 = two ? q4k_wchunk(a[1].qs) : z, z5 = two ? q4k_wchunk(a[1].qs + 32) : z;
    __m512i z6 = two ? q4k_wchunk(a[1].qs + 64) : z, z7 = two ? q4k_wchunk(a[1].qs + 96) : z;
    deepc_transpose8x8_epi32_x2(z0, z1, z2, z3, z4, z5, z6, z7, W);
    q4k_load_scales(a, two, dsc, dmn);
}

/* The 16 exact sub-block dots of weight group W with token group q.
 * Without VNNI: maddubs pairs (at most 2 * 15 * 128) summed in int16 over
 * all eight registers (at most 16 * 15 * 128 < 2^15), one madd at the end. */
DEEPC_INLINE __m512i q4k_idot(const __m512i W[8], const __m512i *q, bool vnni) {
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

/* Rows wa (and wb when two) against the tile's tn tokens over groups
 * g0 .. g1 - 1 (xt: the tile packed for those groups, token-major), from
 * and into accumulators acca[t], accb[t]; the first group of a row starts
 * from zero, as vec_dot's accumulator, and after its last group the outputs
 * go to y[t * ys] (and y[t * ys + 1]). */
DEEPC_INLINE void q4k_rows(const deepc_block_q4_k *wa, const deepc_block_q4_k *wb, bool two, size_t nb, size_t g0,
                         size_t g1, size_t ng, const q4k_xgroup *xt, int tn, __m512 *acca, __m512 *accb, float *y,
                         size_t ys, bool vnni) {
    size_t kg = g1 - g0;
    for (size_t g = g0; g < g1; g++) {
        bool pair = 2 * g + 2 <= nb; /* both super-blocks of the group */
        __m512i A[8], B[8];
        __m512 da, ma, db = _mm512_setzero_ps(), mb = db;
        if (pair) q4k_load_w(wa + 2 * g, true, A, &da, &ma);
        else q4k_load_w(wa + 2 * g, false, A, &da, &ma);
        if (two) {
            if (pair) q4k_load_w(wb + 2 * g, true, B, &db, &mb);
            else q4k_load_w(wb + 2 * g, false, B, &db, &mb);
        }
        for (int t = 0; t < tn; t++) {
            const q4k_xgroup *x = &xt[(size_t)t * kg + (g - g0)];
            acca[t] = q4k_group_fma(q4k_idot(A, x->q, vnni), x->fb, da, ma, x->dx, g ? acca[t] : _mm512_setzero_ps());
            if (two)
                accb[t] = q4k_group_fma(q4k_idot(B, x->q, vnni), x->fb, db, mb, x->dx, g ? accb[t] : _mm512_setzero_ps());
        }
    }
    if (g1 < ng) return;
    for (int t = 0; t < tn; t++) {
        y[(size_t)t * ys] = q4k_finish(acca[t]);
        if (two) y[(size_t)t * ys + 1] = q4k_finish(accb[t]);
    }
}

DEEPC_INLINE void q4k_gemm(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x, size_t x_stride,
                         float *y, size_t y_stride, bool vnni) {
    size_t nb = n / DEEPC_QK_K, ng = (nb + 1) / 2;
    if (nrows <= 0 || ntok <= 0) return;
    if (nb == 0) {
        for (int t = 0; t < ntok; t++)
            for (int r = 0; r < nrows; r++)
                y[(size_t)t * y_stride + (size_t)r] = q4k_dot(n, (const unsigned char *)w + (size_t)r * w_stride,
                                                              (const unsigned char *)x + (size_t)t * x_stride, vnni);
        return;
    }
    /* token tiles of equal size (40 tokens go as 14 + 13 + 13) */
    int tiles = (ntok + Q4K_TN - 1) / Q4K_TN, tile = (ntok + tiles - 1) / tiles;
    _Alignas(64) unsigned char buf[Q4K_BUF_BYTES];
    _Alignas(64) float ys[Q4K_TN * Q4K_YS];
    size_t accb_bytes = (size_t)tile * sizeof(__m512); /* one row's accumulators */
    size_t kc, rb;
    if (ng * (size_t)tile * sizeof(q4k_xgroup) + 2 * accb_bytes <= sizeof buf) {
        /* the whole k range in one tile; two rows' accumulators */
        kc = ng;
        rb = Q4K_RB_BYTES / (w_stride ? w_stride : 1);
        if (rb < 2) rb = 2;
    } else {
        /* k-chunks of kc groups; a block of rows keeps its accumulators */
        rb = Q4K_CHUNK_ROWS;
        kc = (sizeof buf - rb * accb_bytes) / ((size_t)tile * sizeof(q4k_xgroup));
    }
    q4k_xgroup *xt = (q4k_xgroup *)buf;
    __m512 *accs = (__m512 *)(buf + kc * (size_t)tile * sizeof(q4k_xgroup));
    const bool chunked = kc < ng;
    const unsigned char *wbase = w, *xbase = x;
    for (int r0 = 0; r0 < nrows; r0 += (int)rb) {
        int r1 = nrows - r0 < (int)rb ? nrows : r0 + (int)rb;
        for (int t0 = 0; t0 < ntok; t0 += tile) {
            int tn = ntok - t0 < tile ? ntok - t0 : tile;
            float *yt = y + (size_t)t0 * y_stride;
            for (size_t g0 = 0; g0 < ng; g0 += kc) {
                size_t g1 = g0 + kc < ng ? g0 + kc : ng;
                for (int t = 0; t < tn; t++) {
                    const deepc_block_q8_k *xr = (const deepc_block_q8_k *)(xbase + (size_t)(t0 + t) * x_stride);
                    for (size_t g = g0; g < g1; g++)
                        q4k_pack_group(xr + 2 * g, 2 * g + 2 <= nb, &xt[(size_t)t * (g1 - g0) + (g - g0)]);
                }
                /* outputs go through ys, 16 rows (a line of y) per token at
                 * a time: one store per line instead of eight pairs' scalar
                 * stores, each a store-buffer entry waiting on its line
                 * (measured 20% of the time when y is larger than L2) */
                for (int rs = r0; rs < r1; rs += Q4K_YS) {
                    int re = r1 - rs < Q4K_YS ? r1 : rs + Q4K_YS, r = rs;
                    if (g1 == ng && re < r1)
                        for (int t = 0; t < tn; t++) __builtin_prefetch(yt + (size_t)t * y_stride + re, 1, 3);
                    for (; r + 2 <= re; r += 2) {
                        if (r + 4 <= r1) {
                            const unsigned char *pf = wbase + (size_t)(r + 2) * w_stride + (g0 * 2) * sizeof(deepc_block_q4_k);
                            size_t pn = (g1 - g0) * 2 * sizeof(deepc_block_q4_k);
                            for (size_t o = 0; o < pn; o += 64) __builtin_prefetch(pf + o, 0, 3);
                            pf += w_stride;
                            for (size_t o = 0; o < pn; o += 64) __builtin_prefetch(pf + o, 0, 3);
                        }
                        __m512 *aa = accs + (chunked ? (size_t)(r - r0) * (size_t)tile : 0), *ab = aa + tile;
                        q4k_rows((const deepc_block_q4_k *)(wbase + (size_t)r * w_stride),
                                 (const deepc_block_q4_k *)(wbase + (size_t)(r + 1) * w_stride), true, nb, g0, g1, ng,
                                 xt, tn, aa, ab, ys + (r - rs), Q4K_YS, vnni);
                    }
                    if (r < re) {
                        __m512 *aa = accs + (chunked ? (size_t)(r - r0) * (size_t)tile : 0);
                        q4k_rows((const deepc_block_q4_k *)(wbase + (size_t)r * w_stride), NULL, false, nb, g0, g1,
                                 ng, xt, tn, aa, aa + tile, ys + (r - rs), Q4K_YS, vnni);
                    }
                    if (g1 == ng) {
                        __mmask16 m = (__mmask16)((1u << (re - rs)) - 1);
                        for (int t = 0; t < tn; t++)
                            _mm512_mask_storeu_ps(yt + (size_t)t * y_stride + rs, m, _mm512_load_ps(ys + Q4K_YS * t));
                    }
                }
            }
        }
    }
}

void deepc_avx512_gemm_q4_k(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                            size_t x_stride, float *y, size_t y_stride) {
    q4k_gemm(nrows, ntok, n, w, w_stride, x, x_stride, y, y_stride, false);
}

void deepc_avx512vnni_gemm_q4_k(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                                size_t x_stride, float *y, size_t y_stride) {
    q4k_gemm(nrows, ntok, n, w, w_stride, x, x_stride, y, y_stride, true);
}
