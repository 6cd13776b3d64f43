/* x86_avx512_ops.c - AVX-512 kernels beyond vec_dot: the batched products
 * (gemm) of Q8_0 for "avx512vnni" and of the k-quants for both AVX-512
 * tables, and the fp16 KV-cache primitives of both. Compiled with the
 * AVX-512 flags of the Makefile (VNNI included); only the *vnni* gemms use
 * VNNI: the "avx512" table takes the AVX2 Q8_0 gemm (arch/cpu.h) and k-quant
 * gemms kept free of it (see the k-quant section).
 *
 * Q8_0 gemm. vec_dot (x86_avx512.c) spends most of its instructions folding
 * each block's 8 partial lane sums into one total. Here the weight blocks are
 * transposed in registers instead: for 16 consecutive blocks, register j
 * holds dword j (bytes 4j..4j+3) of block k in lane k, so eight vpdpbusd
 * leave block k's whole integer dot in lane k with no horizontal work. The
 * transposition costs ~40 shuffles per 16 blocks of a row and is shared by up
 * to GEMM_RN tokens; the activations are transposed the same way once per
 * tile into a stack buffer (their blocks are reused by every row). Rows go
 * two at a time, each activation register feeding both, and tokens two per
 * step.
 * vpdpbusd multiplies unsigned by signed bytes: the weights go in as w + 128
 * (a sign-bit flip) and the tile carries -128 * (sum of each activation
 * block), so the lane total is exactly the block's signed dot.
 *
 * Bit-identity with vec_dot_q8_0_vnni: the integer totals are exact either
 * way; the float work is the same per output: blocks in groups of 8, each
 * group's totals converted, times the fp32 products d_w * d_x, fused into one
 * 8-lane accumulator in group order; the last nb % 8 blocks as 8 lane sums
 * each into a second accumulator (two tokens per register, see
 * finish_row); one hsum of their sum. */
#include <immintrin.h>
#include <string.h>

#include "cpu.h"
#include "x86_transpose.h"

/* ---- Q8_0 gemm ---------------------------------------------------------- */

/* The k-chunk is one pair of groups (512 elements): the tile of GEMM_RN
 * tokens, 20 KiB, stays in L1 while the row block passes over it. More
 * tokens per tile amortize each row's transposition further (32 measured
 * ~9% faster than 16); the accumulators, 32 bytes per output, bound
 * tokens x rows by the stack.
 *
 * Packing the tile costs about as much per token as a row pair's products
 * per token (~12% of the time with 32-row blocks). When the whole width
 * fits (n of a few thousand, no tail blocks), the tile of every chunk is
 * therefore packed once per token tile and kept ("resident") for all row
 * blocks, which then only bound the accumulators: fewer tokens per tile
 * (about 22 at n = 1536), but each packed once per call. */
#define GEMM_RN 32           /* tokens per tile */
#define GEMM_RB_MAX 32       /* rows per row block (the accumulators: 32 KiB of stack) */
#define GEMM_RB_BYTES (384 * 1024) /* a row block's weights stay in L2 across token tiles */
#define GEMM_RES_XT 72       /* resident tiles: chunks x tokens (45 KiB) */
#define GEMM_RES_RB 8        /* resident tiles: rows per row block */
#define GEMM_RES_MIN 16      /* fewest tokens per resident tile worth it (transposition per output) */

/* One token's share of a k-chunk (a pair of groups: 16 blocks), transposed. */
typedef struct {
    __m512i q[8];   /* lane k: dword j of block k */
    __m512i nc;     /* lane k: -128 * sum of block k's qs */
    __m512 d;       /* lane k: its scale */
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
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif

DEEPC_INLINE void load16_transposed(const deepc_block_q8_0 *b, bool full, __m512i T[8]) {
    /* always inlined with the blocks as values (see x86_transpose.h) */
#define Z(k) (full ? _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)b[k].qs)), \
                                        _mm256_loadu_si256((const __m256i *)b[(k) + 8].qs), 1)            \
                   : _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)b[k].qs)))
    __m512i z0 = Z(0), z1 = Z(1), z2 = Z(2), z3 = Z(3), z4 = Z(4), z5 = Z(5), z6 = Z(6), z7 = Z(7);
#undef Z
    deepc_transpose8x8_epi32_x2(z0, z1, z2, z3, z4, z5, z6, z7, T);
}

/* The fp16 scales of 16 (or 8) consecutive blocks as floats (zero above). */
DEEPC_INLINE __m512 load16_scales(const deepc_block_q8_0 *b, bool full) {
    __m128i lo = _mm_setr_epi16((short)b[0].d, (short)b[1].d, (short)b[2].d, (short)b[3].d,
                                (short)b[4].d, (short)b[5].d, (short)b[6].d, (short)b[7].d);
    __m128i hi = full ? _mm_setr_epi16((short)b[8].d, (short)b[9].d, (short)b[10].d, (short)b[11].d,
                                       (short)b[12].d, (short)b[13].d, (short)b[14].d, (short)b[15].d)
                      : _mm_setzero_si128();
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1));
}

/* Transposes the 16 (8 when !full) blocks of token row x from block b0 on into *xt. */
static void pack_tile(const deepc_block_q8_0 *x, size_t b0, bool full, xtile *xt) {
    const __m512i ones = _mm512_set1_epi8(1);
    const deepc_block_q8_0 *b = x + b0;
    __m512i T[8];
    load16_transposed(b, full, T);
    __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, T[0]);
    __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, T[1]);
    s0 = _mm512_dpbusd_epi32(s0, ones, T[2]), s1 = _mm512_dpbusd_epi32(s1, ones, T[3]);
    s0 = _mm512_dpbusd_epi32(s0, ones, T[4]), s1 = _mm512_dpbusd_epi32(s1, ones, T[5]);
    s0 = _mm512_dpbusd_epi32(s0, ones, T[6]), s1 = _mm512_dpbusd_epi32(s1, ones, T[7]);
    memcpy(xt->q, T, sizeof T);
    xt->nc = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(_mm512_add_epi32(s0, s1), 7));
    xt->d = load16_scales(b, full);
}

/* Loads the pair of groups starting at block 16m of a row, transposed and
 * with the sign bit flipped (w + 128 as unsigned), and its scales. */
DEEPC_INLINE __m512 load_weights(const deepc_block_q8_0 *b, bool full, __m512i W[8]) {
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
DEEPC_INLINE __m256 accumulate(__m512i i0, __m512i i1, __m512 dw, __m512 dx, bool full, __m256 a) {
    __m512 f = _mm512_cvtepi32_ps(_mm512_add_epi32(i0, i1));
    __m512 sc = _mm512_mul_ps(dw, dx);
    a = _mm256_fmadd_ps(_mm512_castps512_ps256(f), _mm512_castps512_ps256(sc), a);
    if (full) a = _mm256_fmadd_ps(_mm512_extractf32x8_ps(f, 1), _mm512_extractf32x8_ps(sc, 1), a);
    return a;
}

/* A value the compiler must keep in a register: each activation register
 * feeds two rows, and folded into both products as memory operands it cost
 * a second load (measured ~3% slower). */
DEEPC_INLINE __m512i in_reg(__m512i v) {
    __asm__("" : "+v"(v));
    return v;
}

/* acc[t] += the chunk (16 blocks from w, 8 when !full) for weight row w
 * against tiles xt[0..tn). */
static void row_chunk(const deepc_block_q8_0 *w, bool full, const xtile *xt, int tn, __m256 *acc) {
    __m512i W[8];
    __m512 dw = load_weights(w, full, W);
    for (int t = 0; t < tn; t++) {
        const xtile *x = &xt[t];
        const __m512i *q = x->q;
        __m512i i0 = _mm512_dpbusd_epi32(x->nc, W[0], q[0]);
        __m512i i1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), W[1], q[1]);
        i0 = _mm512_dpbusd_epi32(i0, W[2], q[2]);
        i1 = _mm512_dpbusd_epi32(i1, W[3], q[3]);
        i0 = _mm512_dpbusd_epi32(i0, W[4], q[4]);
        i1 = _mm512_dpbusd_epi32(i1, W[5], q[5]);
        i0 = _mm512_dpbusd_epi32(i0, W[6], q[6]);
        i1 = _mm512_dpbusd_epi32(i1, W[7], q[7]);
        acc[t] = accumulate(i0, i1, dw, x->d, full, acc[t]);
    }
}

/* Touches the lines of the chunk a later call will read (at most ten: 544
 * bytes from any offset). Without it the transposition waited on L2 at the
 * start of every row pair: prefetching the next pair measured ~20% faster. */
DEEPC_INLINE void prefetch_chunk(const deepc_block_q8_0 *b) {
    const char *p = (const char *)b;
    for (int l = 0; l < 9; l++) _mm_prefetch(p + 64 * l, _MM_HINT_T0);
    _mm_prefetch(p + 16 * sizeof *b - 1, _MM_HINT_T0);
}

/* The same for two rows at once (and two tokens per step): each activation
 * register feeds both rows, which halves the tile loads per product (the
 * loads, not the dot products, bound the one-row loop on Zen 4). pa, pb (or
 * NULL): the chunks of the next call, to prefetch. Kept out of line: inlined
 * into the caller's loops it measured ~3% slower. */
static NOINLINE void row_chunk2(const deepc_block_q8_0 *wa, const deepc_block_q8_0 *wb, bool full, const xtile *xt, int tn,
                       __m256 *acca, __m256 *accb, const deepc_block_q8_0 *pa, const deepc_block_q8_0 *pb) {
    __m512i A[8], B[8];
    __m512 da = load_weights(wa, full, A);
    __m512 db = load_weights(wb, full, B);
    if (pa) prefetch_chunk(pa), prefetch_chunk(pb);
    const __m512i z = _mm512_setzero_si512();
    int t = 0;
    for (; t + 2 <= tn; t += 2) {
        /* tokens t (products a, b) and t + 1 (c, d), each in two chains */
        const __m512i *qs = xt[t].q, *rs = xt[t + 1].q;
        __m512i nc = in_reg(xt[t].nc), mc = in_reg(xt[t + 1].nc);
        __m512i q = in_reg(qs[0]), r = in_reg(rs[0]);
        __m512i a0 = _mm512_dpbusd_epi32(nc, A[0], q), b0 = _mm512_dpbusd_epi32(nc, B[0], q);
        __m512i c0 = _mm512_dpbusd_epi32(mc, A[0], r), d0 = _mm512_dpbusd_epi32(mc, B[0], r);
        q = in_reg(qs[1]), r = in_reg(rs[1]);
        __m512i a1 = _mm512_dpbusd_epi32(z, A[1], q), b1 = _mm512_dpbusd_epi32(z, B[1], q);
        __m512i c1 = _mm512_dpbusd_epi32(z, A[1], r), d1 = _mm512_dpbusd_epi32(z, B[1], r);
#define STEP(j, k)                                                                        \
    q = in_reg(qs[j]), r = in_reg(rs[j]);                                                 \
    a##k = _mm512_dpbusd_epi32(a##k, A[j], q), b##k = _mm512_dpbusd_epi32(b##k, B[j], q); \
    c##k = _mm512_dpbusd_epi32(c##k, A[j], r), d##k = _mm512_dpbusd_epi32(d##k, B[j], r);
        STEP(2, 0) STEP(3, 1) STEP(4, 0) STEP(5, 1) STEP(6, 0) STEP(7, 1)
#undef STEP
        __m512 dx = xt[t].d, dy = xt[t + 1].d;
        acca[t] = accumulate(a0, a1, da, dx, full, acca[t]);
        accb[t] = accumulate(b0, b1, db, dx, full, accb[t]);
        acca[t + 1] = accumulate(c0, c1, da, dy, full, acca[t + 1]);
        accb[t + 1] = accumulate(d0, d1, db, dy, full, accb[t + 1]);
    }
    if (t < tn) {
        const __m512i *qs = xt[t].q;
        __m512i nc = in_reg(xt[t].nc), q;
        __m512i a0 = _mm512_dpbusd_epi32(nc, A[0], q = in_reg(qs[0])), b0 = _mm512_dpbusd_epi32(nc, B[0], q);
        __m512i a1 = _mm512_dpbusd_epi32(z, A[1], q = in_reg(qs[1])), b1 = _mm512_dpbusd_epi32(z, B[1], q);
        for (int j = 2; j < 8; j += 2) {
            a0 = _mm512_dpbusd_epi32(a0, A[j], q = in_reg(qs[j])), b0 = _mm512_dpbusd_epi32(b0, B[j], q);
            a1 = _mm512_dpbusd_epi32(a1, A[j + 1], q = in_reg(qs[j + 1])), b1 = _mm512_dpbusd_epi32(b1, B[j + 1], q);
        }
        acca[t] = accumulate(a0, a1, da, xt[t].d, full, acca[t]);
        accb[t] = accumulate(b0, b1, db, xt[t].d, full, accb[t]);
    }
}

/* vec_dot's tail, the last nb % 8 blocks: each block's 8 lane sums (dots of
 * 4-byte groups) converted, times d_w * d_x, fused into a second 8-lane
 * accumulator s1, block by block; the result is hsum(s0 + s1). Done for two
 * tokens at once, one per 256-bit half: the weights go in biased, w + 128
 * (u8), so vpdpbusd needs no sign trick (vpsignb has no 512-bit form), and
 * each pair of tokens carries -128 * (its 4-byte sums of x) to start from:
 * the lanes are exactly vec_dot's. */
typedef struct {
    __m512i x[7];   /* tail block k of tokens 2p (low half) and 2p + 1 (high) */
    __m512i nx[7];  /* -128 * the 4-byte sums of those */
    __m512 dx[7];   /* their scales, 8 lanes each */
} tailpair;

static void pack_tail(const deepc_block_q8_0 *b0, const deepc_block_q8_0 *b1, size_t nt, tailpair *tp) {
    const __m512i k128 = _mm512_set1_epi8((char)0x80);
    for (size_t k = 0; k < nt; k++) {
        __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)b0[k].qs)),
                                       _mm256_loadu_si256((const __m256i *)b1[k].qs), 1);
        tp->x[k] = v;
        tp->nx[k] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), k128, v));
        tp->dx[k] = _mm512_insertf32x8(_mm512_set1_ps(_cvtsh_ss(b0[k].d)), _mm256_set1_ps(_cvtsh_ss(b1[k].d)), 1);
    }
}

/* Outputs of row a (tail blocks a[0..nt)) for the tile's tokens: hsum of the
 * main accumulator acc[t] and the tail's. */
static void finish_row(const deepc_block_q8_0 *a, size_t nt, const tailpair *tp, int tn, const __m256 *acc, float *y,
                       size_t y_stride) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    __m512i wq[7];
    __m512 dw[7];
    for (size_t k = 0; k < nt; k++) {
        wq[k] = _mm512_xor_si512(_mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)a[k].qs)), flip);
        dw[k] = _mm512_set1_ps(_cvtsh_ss(a[k].d));
    }
    for (int t = 0; t < tn; t += 2) {
        __m512 s1 = _mm512_setzero_ps();
        for (size_t k = 0; k < nt; k++) {
            const tailpair *p = &tp[t / 2]; /* tp: NULL when nt is 0 */
            __m512i l = _mm512_dpbusd_epi32(p->nx[k], wq[k], p->x[k]);
            s1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(l), _mm512_mul_ps(dw[k], p->dx[k]), s1);
        }
        y[(size_t)t * y_stride] = hsum256_ps(_mm256_add_ps(acc[t], _mm512_castps512_ps256(s1)));
        if (t + 1 < tn) y[(size_t)(t + 1) * y_stride] = hsum256_ps(_mm256_add_ps(acc[t + 1], _mm512_extractf32x8_ps(s1, 1)));
    }
}

/* One row block (rn rows from wr) times one token tile (tn tokens from xr):
 * the products into acc, then the tail blocks and the outputs. Resident:
 * xt holds every chunk's tile (chunk c at xt + c * tn); else each chunk is
 * packed into xt in turn. next: the next row block's first row (or NULL),
 * prefetched at the end. */
static void gemm_block(const unsigned char *wr, int rn, size_t w_stride, const unsigned char *xr, size_t x_stride,
                       int tn, size_t ng, size_t nt, bool resident, xtile *xt, tailpair *tp, __m256 (*acc)[GEMM_RN],
                       const unsigned char *next, float *y, size_t y_stride) {
    for (int r = 0; r < rn; r++)
        for (int t = 0; t < tn; t++) acc[r][t] = _mm256_setzero_ps();
    for (size_t g0 = 0; g0 < ng; g0 += 2) {
        bool full = g0 + 1 < ng;
        size_t b0 = g0 * 8;
        const xtile *xc = resident ? xt + (g0 / 2) * (size_t)tn : xt;
        if (!resident)
            for (int t = 0; t < tn; t++) pack_tile((const deepc_block_q8_0 *)(xr + (size_t)t * x_stride), b0, full, xt + t);
        int r = 0;
        for (; r + 2 <= rn; r += 2) {
            /* prefetch the next row pair; after the last one the block's
             * first at the next chunk, or the next block's at the first */
            const deepc_block_q8_0 *pa = NULL, *pb = NULL;
            if (r + 4 <= rn)
                pa = (const deepc_block_q8_0 *)(wr + (size_t)(r + 2) * w_stride) + b0,
                pb = (const deepc_block_q8_0 *)(wr + (size_t)(r + 3) * w_stride) + b0;
            else if (g0 + 2 < ng)
                pa = (const deepc_block_q8_0 *)wr + b0 + 16, pb = (const deepc_block_q8_0 *)(wr + w_stride) + b0 + 16;
            else if (next)
                pa = (const deepc_block_q8_0 *)next, pb = (const deepc_block_q8_0 *)(next + w_stride);
            row_chunk2((const deepc_block_q8_0 *)(wr + (size_t)r * w_stride) + b0,
                       (const deepc_block_q8_0 *)(wr + (size_t)(r + 1) * w_stride) + b0, full, xc, tn, acc[r],
                       acc[r + 1], pa, pb);
        }
        if (r < rn) row_chunk((const deepc_block_q8_0 *)(wr + (size_t)r * w_stride) + b0, full, xc, tn, acc[r]);
    }
    /* an odd last token is packed twice; its high half is dropped */
    for (int t = 0; t < tn && nt; t += 2)
        pack_tail((const deepc_block_q8_0 *)(xr + (size_t)t * x_stride) + ng * 8,
                  (const deepc_block_q8_0 *)(xr + (size_t)(t + 1 < tn ? t + 1 : t) * x_stride) + ng * 8, nt, &tp[t / 2]);
    for (int r = 0; r < rn; r++)
        finish_row((const deepc_block_q8_0 *)(wr + (size_t)r * w_stride) + ng * 8, nt, tp, tn, acc[r], y + (size_t)r,
                   y_stride);
}

void deepc_avx512vnni_gemm_q8_0(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                                size_t x_stride, float *y, size_t y_stride) {
    size_t nb = n / DEEPC_QK8_0, ng = nb / 8, nt = nb - ng * 8, chunks = (ng + 1) / 2;
    const unsigned char *wb = w, *xb = x;
    union {
        struct {              /* per row block: one chunk's tile, then the tail's tokens in its place */
            union {
                xtile xt[GEMM_RN];
                tailpair tp[GEMM_RN / 2];
            } u;
            __m256 acc[GEMM_RB_MAX][GEMM_RN];
        } b;
        struct {              /* resident: every chunk's tile */
            xtile xt[GEMM_RES_XT];
            __m256 acc[GEMM_RES_RB][GEMM_RN];
        } r;
    } m;
    _Static_assert(sizeof m <= 56 * 1024, "the stack core/kernels.h allows");
    int res_tok = chunks ? (int)(GEMM_RES_XT / chunks) : GEMM_RN;
    if (res_tok > GEMM_RN) res_tok = GEMM_RN;
    bool resident = nt == 0 && res_tok >= GEMM_RES_MIN && ntok > 1;
    /* equal token tiles: 33 tokens go as 17 + 16, not 32 + 1 */
    int max_tile = resident ? res_tok : GEMM_RN;
    int tiles = (ntok + max_tile - 1) / max_tile, tile = tiles ? (ntok + tiles - 1) / tiles : 1;
    if (resident) {
        /* token tiles outside: each packed once, the row blocks inside */
        for (int t0 = 0; t0 < ntok; t0 += tile) {
            int tn = ntok - t0 < tile ? ntok - t0 : tile;
            const unsigned char *xr = xb + (size_t)t0 * x_stride;
            for (size_t c = 0; c < chunks; c++)
                for (int t = 0; t < tn; t++)
                    pack_tile((const deepc_block_q8_0 *)(xr + (size_t)t * x_stride), c * 16, 2 * c + 1 < ng,
                              &m.r.xt[c * (size_t)tn + (size_t)t]);
            for (int r0 = 0; r0 < nrows; r0 += GEMM_RES_RB) {
                int rn = nrows - r0 < GEMM_RES_RB ? nrows - r0 : GEMM_RES_RB;
                const unsigned char *wr = wb + (size_t)r0 * w_stride;
                gemm_block(wr, rn, w_stride, xr, x_stride, tn, ng, nt, true, m.r.xt, NULL, m.r.acc,
                           r0 + rn + 1 < nrows ? wr + (size_t)rn * w_stride : NULL, y + (size_t)t0 * y_stride + (size_t)r0,
                           y_stride);
            }
        }
        return;
    }
    size_t row_bytes = nb * sizeof(deepc_block_q8_0);
    int rb = row_bytes ? (int)(GEMM_RB_BYTES / row_bytes) : GEMM_RB_MAX;
    if (rb < 1) rb = 1;
    if (rb > GEMM_RB_MAX) rb = GEMM_RB_MAX;
    /* row blocks outside: a block's weights stay in L2 across the token tiles */
    for (int r0 = 0; r0 < nrows; r0 += rb) {
        int rn = nrows - r0 < rb ? nrows - r0 : rb;
        const unsigned char *wr = wb + (size_t)r0 * w_stride;
        for (int t0 = 0; t0 < ntok; t0 += tile) {
            int tn = ntok - t0 < tile ? ntok - t0 : tile;
            gemm_block(wr, rn, w_stride, xb + (size_t)t0 * x_stride, x_stride, tn, ng, nt, false, m.b.u.xt, m.b.u.tp,
                       m.b.acc, NULL, y + (size_t)t0 * y_stride + (size_t)r0, y_stride);
        }
    }
}

/* ---- k-quant gemm (q3_k, q2_k x q8_k) -------------------------------------
 *
 * (q4_k's gemm and vec_dot live in arch/x86_avx512_q4_k.c, with a float
 * scheme of one lane per sub-block.)
 *
 * The arithmetic of one output is x86_avx512.c's vec_dot for the type, the
 * integer part exact and the float part the same operations in the same
 * order: per super-block, sixteen int32 lanes (lane l: the 4-element dots
 * at byte 4l of each 64-element chunk c, times chunk c's sub-block scale
 * for that lane, summed over c), converted and fused into a 16-lane
 * accumulator with d_w * d_x; for q2_k the eight min lanes (madd of the
 * activation's bsums with the mins) into an 8-lane one with dmin_w * d_x;
 * at the end one _mm512_reduce_add_ps (minus the 8-lane hsum).
 * What changes is how often the weights are unpacked: a super-block's codes
 * for KQ_R rows are built once and kept in registers (the scale vectors on
 * the stack, memory operands of vpdpwssd / vpmaddwd) while every token of
 * the tile passes over them; each activation chunk is loaded once per KQ_R
 * rows. The accumulators of the KQ_R x tile outputs live on the stack
 * between super-blocks (token-major: row-major put rows 4 KiB apart, and the
 * loads aliased the stores of the row before: 30% of the time).
 *
 * The ceiling of this layout: vec_dot keeps 16 + 8 fp32 lanes per output,
 * so every output and super-block costs one FMA and the min terms on
 * top of the six integer multiplies below; on Zen 4 these share one 512-bit
 * multiply pipe (measured: ~8 of its cycles per 256 products, ~32 per cycle
 * at best; the kernel reaches ~22 with the unpacking). A gemm with fewer
 * float operations per output would need a vec_dot with fewer float lanes.
 *
 * vnni selects the integer path: the packed vpdpbusd / vpdpwssd scheme below
 * with VNNI; without it vec_dot's own vpmaddubsw, then vpmaddwd + vpaddd
 * (through opaque512, so no compiler fuses them into vpdpwssd), which keeps
 * the "avx512" table free of VNNI instructions. */

#define KQ_RN 64 /* tokens per tile: the accumulators take KQ_R * KQ_RN * 96 bytes */
#define KQ_R 4   /* rows per register block */

#if defined(__clang__)
#define KQ_UNROLL _Pragma("clang loop unroll(full)")
#elif defined(__GNUC__)
#define KQ_UNROLL _Pragma("GCC unroll 16")
#else
#define KQ_UNROLL
#endif

DEEPC_INLINE __m512i opaque512(__m512i v) {
    __asm__("" : "+v"(v));
    return v;
}

DEEPC_INLINE __m256i opaque256(__m256i v) {
    __asm__("" : "+v"(v));
    return v;
}

/* One row's super-block, unpacked: the codes go to registers, the rest here. */
typedef struct {
    __m512i s[4];  /* no VNNI: chunk c's scale per int16 pair (the vpmaddwd operand) */
    __m512i sp[2]; /* VNNI: chunks 2i, 2i+1's scales in the low / high int16 of each lane */
    __m512i nc;    /* VNNI: -128 * sum_c scale * (4-byte code sums of chunk c), per lane */
    __m256i m;     /* q2_k: the sixteen mins; q3_k: the sixteen scales */
    float d, dmin; /* fp16 scales as floats (exact) */
} kq_wsb;

/* The VNNI integer path. The activation bytes go in biased, x + 128 as the
 * unsigned operand of vpdpbusd, the codes (0..15) as the signed one, so each
 * 4-byte dot is D' = D + 128 * (code sum) in [0, 15300]: two of them share
 * one int32 lane as int16 halves without borrowing, D'_odd << 16 | D'_even
 * (the shift, then the even dot accumulated onto it), and one vpdpwssd
 * weights both by their chunks' scales. Per pair of chunks that is two
 * vpdpbusd, a shift and a vpdpwssd instead of two vpmaddubsw and two
 * vpdpwssd; on Zen 4 the shift runs beside the multiplies, which share one
 * zmm pipe (a rotate, or an FMA, would not: measured). The bias costs
 * 128 * sum_c scale_c * (code sum) per lane, a property of the weights
 * alone, taken off up front (nc). Every lane's total is the same integer as
 * vec_dot's. */
DEEPC_INLINE __m512i kq_pair(__m512i src, __m512i x_even, __m512i q_even, __m512i x_odd, __m512i q_odd, __m512i s) {
    __m512i p = _mm512_slli_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), x_odd, q_odd), 16);
    return _mm512_dpwssd_epi32(src, _mm512_dpbusd_epi32(p, x_even, q_even), s);
}

DEEPC_INLINE void kq_vnni_prep(const __m512i Q[4], kq_wsb *o) {
    const __m512i ones = _mm512_set1_epi8(1), z = _mm512_setzero_si512();
    __m512i c = kq_pair(z, ones, Q[0], ones, Q[1], o->sp[0]);
    c = kq_pair(c, ones, Q[2], ones, Q[3], o->sp[1]);
    o->nc = _mm512_sub_epi32(z, _mm512_slli_epi32(c, 7));
}

/* vpermw indices: int16 element e0 in 128-bit lane 0, e1 in 1, ... */
static inline __m512i kq_idx4(int e0, int e1, int e2, int e3) {
    return _mm512_set_epi16((short)e3, (short)e3, (short)e3, (short)e3, (short)e3, (short)e3, (short)e3, (short)e3,
                            (short)e2, (short)e2, (short)e2, (short)e2, (short)e2, (short)e2, (short)e2, (short)e2,
                            (short)e1, (short)e1, (short)e1, (short)e1, (short)e1, (short)e1, (short)e1, (short)e1,
                            (short)e0, (short)e0, (short)e0, (short)e0, (short)e0, (short)e0, (short)e0, (short)e0);
}

/* The same, two chunks interleaved (the VNNI path's pair operand): int16
 * 2i of 128-bit lane j is element a_j, 2i + 1 is b_j. */
static inline __m512i kq_idx4p(int a0, int b0, int a1, int b1, int a2, int b2, int a3, int b3) {
    return _mm512_set_epi16((short)b3, (short)a3, (short)b3, (short)a3, (short)b3, (short)a3, (short)b3, (short)a3,
                            (short)b2, (short)a2, (short)b2, (short)a2, (short)b2, (short)a2, (short)b2, (short)a2,
                            (short)b1, (short)a1, (short)b1, (short)a1, (short)b1, (short)a1, (short)b1, (short)a1,
                            (short)b0, (short)a0, (short)b0, (short)a0, (short)b0, (short)a0, (short)b0, (short)a0);
}

DEEPC_INLINE __m512i kq_shifts2(int lo, int hi) {
    return _mm512_inserti64x4(_mm512_set1_epi16((short)lo), _mm256_set1_epi16((short)hi), 1);
}

/* q3_k / q2_k: chunk c's 128-bit lane j is sub-block 4c + j. */
DEEPC_INLINE void kq_sub16_scales(bool vnni, __m512i sc, kq_wsb *o) {
    if (vnni) {
        o->sp[0] = _mm512_permutexvar_epi16(kq_idx4p(0, 4, 1, 5, 2, 6, 3, 7), sc);
        o->sp[1] = _mm512_permutexvar_epi16(kq_idx4p(8, 12, 9, 13, 10, 14, 11, 15), sc);
        return;
    }
    o->s[0] = _mm512_permutexvar_epi16(kq_idx4(0, 1, 2, 3), sc);
    o->s[1] = _mm512_permutexvar_epi16(kq_idx4(4, 5, 6, 7), sc);
    o->s[2] = _mm512_permutexvar_epi16(kq_idx4(8, 9, 10, 11), sc);
    o->s[3] = _mm512_permutexvar_epi16(kq_idx4(12, 13, 14, 15), sc);
}

/* Unpacks one super-block of row w (type t) into the codes Q[0..3] (chunk c:
 * elements 64c .. 64c+63, unsigned) and *o; the same operations as the
 * type's vec_dot. */
DEEPC_INLINE void kq_unpack(deepc_type t, bool vnni, const void *w, __m512i Q[4], kq_wsb *o) {
    if (t == DEEPC_TYPE_Q3_K) {
        const deepc_block_q3_k *a = w;
        const __m512i m3 = _mm512_set1_epi8(3), m1 = _mm512_set1_epi8(1);
        uint32_t u0, u1, u2;
        memcpy(&u0, a->scales, 4);
        memcpy(&u1, a->scales + 4, 4);
        memcpy(&u2, a->scales + 8, 4);
        uint32_t a0 = (u0 & 0x0f0f0f0fu) | ((u2 & 0x03030303u) << 4);
        uint32_t a1 = (u1 & 0x0f0f0f0fu) | (((u2 >> 2) & 0x03030303u) << 4);
        uint32_t a2 = ((u0 >> 4) & 0x0f0f0f0fu) | (((u2 >> 4) & 0x03030303u) << 4);
        uint32_t a3 = ((u1 >> 4) & 0x0f0f0f0fu) | (((u2 >> 6) & 0x03030303u) << 4);
        __m128i s8 = _mm_sub_epi8(_mm_setr_epi32((int)a0, (int)a1, (int)a2, (int)a3), _mm_set1_epi8(32));
        __m256i sc16 = _mm256_cvtepi8_epi16(s8);
        o->m = sc16;
        __m512i sc = _mm512_castsi256_si512(sc16);
        kq_sub16_scales(vnni, sc, o);
        __m512i hm = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)a->hmask));
        KQ_UNROLL
        for (int c = 0; c < 4; c++) {
            __m512i q2 = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(a->qs + 32 * (c / 2))));
            __m512i lo = _mm512_and_si512(_mm512_srlv_epi16(q2, c % 2 ? kq_shifts2(4, 6) : kq_shifts2(0, 2)), m3);
            __m512i hb = _mm512_and_si512(_mm512_srlv_epi16(hm, kq_shifts2(2 * c, 2 * c + 1)), m1);
            Q[c] = _mm512_or_si512(lo, _mm512_slli_epi16(hb, 2));
        }
        o->d = _cvtsh_ss(a->d);
        o->dmin = 0.0f;
    } else { /* Q2_K */
        const deepc_block_q2_k *a = w;
        const __m512i m3 = _mm512_set1_epi8(3);
        const __m128i m4 = _mm_set1_epi8(0x0f);
        __m128i sb = _mm_loadu_si128((const __m128i *)a->scales);
        __m512i sc = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(sb, m4)));
        o->m = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sb, 4), m4));
        kq_sub16_scales(vnni, sc, o);
        KQ_UNROLL
        for (int c = 0; c < 4; c++) {
            __m512i q2 = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(a->qs + 32 * (c / 2))));
            Q[c] = _mm512_and_si512(_mm512_srlv_epi16(q2, c % 2 ? kq_shifts2(4, 6) : kq_shifts2(0, 2)), m3);
        }
        o->d = _cvtsh_ss(a->d);
        o->dmin = _cvtsh_ss(a->dmin);
    }
}

/* R rows (codes Q, the rest W) against tokens x[0..tn) of super-block ib:
 * each output's lanes, folded into its accumulators acc[j * KQ_R + r]. */
DEEPC_INLINE void kq_tokens(deepc_type t, bool vnni, int R, const __m512i Q[][4], const kq_wsb *W, const unsigned char *x,
                         size_t x_stride, size_t ib, int tn, __m512 *acc, __m256 *accm) {
    const bool has_min = t != DEEPC_TYPE_Q3_K;
    /* d_w of each row (lanes 0-3) and dmin_w (4-7): one multiply by d_x per
     * token gives every product vec_dot rounds separately, rounded alike */
    float dwv[8] = { 0 };
    for (int r = 0; r < R; r++) dwv[r] = W[r].d, dwv[4 + r] = W[r].dmin;
    const __m256 dw = _mm256_loadu_ps(dwv);
    for (int j = 0; j < tn; j++) {
        const deepc_block_q8_k *xb = (const deepc_block_q8_k *)(x + (size_t)j * x_stride) + ib;
        const __m256i bs = _mm256_loadu_si256((const __m256i *)xb->bsums);
        float dd[8];
        _mm256_storeu_ps(dd, _mm256_mul_ps(dw, _mm256_set1_ps(xb->d)));
        /* read back by broadcast loads, not the compiler's lane shuffles */
        __asm__ volatile("" ::: "memory");
        __m512i X[4];
        if (vnni) {
            const __m512i bias = _mm512_set1_epi8((char)0x80);
            KQ_UNROLL
            for (int c = 0; c < 4; c++) X[c] = _mm512_xor_si512(_mm512_loadu_si512(xb->qs + 64 * c), bias);
        }
        KQ_UNROLL
        for (int r = 0; r < R; r++) {
            __m512i sumi = vnni ? W[r].nc : _mm512_setzero_si512();
            if (t == DEEPC_TYPE_Q3_K) { /* vec_dot's start: -4 * sum_j sc_j * bsum_j in the low 8 lanes */
                __m256i off = _mm256_madd_epi16(bs, W[r].m);
                if (!vnni) off = opaque256(off);
                __m256i o = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 2));
                sumi = _mm512_add_epi32(sumi, _mm512_zextsi256_si512(o));
            }
            if (vnni) {
                sumi = kq_pair(sumi, X[0], Q[r][0], X[1], Q[r][1], W[r].sp[0]);
                sumi = kq_pair(sumi, X[2], Q[r][2], X[3], Q[r][3], W[r].sp[1]);
            } else {
                KQ_UNROLL
                for (int c = 0; c < 4; c++) {
                    __m512i p = _mm512_maddubs_epi16(Q[r][c], _mm512_loadu_si512(xb->qs + 64 * c));
                    sumi = _mm512_add_epi32(sumi, opaque512(_mm512_madd_epi16(p, W[r].s[c])));
                }
            }
            __m512 *a = &acc[j * KQ_R + r];
            *a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_set1_ps(dd[r]), *a);
            if (has_min) {
                __m256i msum = _mm256_madd_epi16(bs, W[r].m);
                if (!vnni) msum = opaque256(msum);
                __m256 *m = &accm[j * KQ_R + r];
                *m = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_set1_ps(dd[4 + r]), *m);
            }
        }
    }
}

/* Four outputs' final sums at once, each by the tree vec_dot's reductions
 * use: _mm512_reduce_add_ps (as gcc 12 and clang 14 both implement it:
 * halves of 256 bits added, then of 128, then lanes 0 + 2 and 1 + 3, then
 * those two; which operand comes first is immaterial) and hsum256_ps (the
 * same from 128 bits down). A compiler with another tree would fail the
 * parity tests (test/test_ops.c). */
DEEPC_INLINE __m128 kq_tree4(__m512 c) {
    __m512 d = _mm512_add_ps(c, _mm512_permute_ps(c, _MM_SHUFFLE(1, 0, 3, 2)));
    __m512 e = _mm512_add_ps(d, _mm512_permute_ps(d, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), e));
}

DEEPC_INLINE __m128 kq_reduce4(const __m512 a[4]) {
    __m512 b01 = _mm512_add_ps(_mm512_shuffle_f32x4(a[0], a[1], _MM_SHUFFLE(1, 0, 1, 0)),
                               _mm512_shuffle_f32x4(a[0], a[1], _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 b23 = _mm512_add_ps(_mm512_shuffle_f32x4(a[2], a[3], _MM_SHUFFLE(1, 0, 1, 0)),
                               _mm512_shuffle_f32x4(a[2], a[3], _MM_SHUFFLE(3, 2, 3, 2)));
    return kq_tree4(_mm512_add_ps(_mm512_shuffle_f32x4(b01, b23, _MM_SHUFFLE(2, 0, 2, 0)),
                                  _mm512_shuffle_f32x4(b01, b23, _MM_SHUFFLE(3, 1, 3, 1))));
}

DEEPC_INLINE __m128 kq_hsum4(const __m256 m[4]) {
    __m512 m01 = _mm512_insertf32x8(_mm512_castps256_ps512(m[0]), m[1], 1);
    __m512 m23 = _mm512_insertf32x8(_mm512_castps256_ps512(m[2]), m[3], 1);
    return kq_tree4(_mm512_add_ps(_mm512_shuffle_f32x4(m01, m23, _MM_SHUFFLE(2, 0, 2, 0)),
                                  _mm512_shuffle_f32x4(m01, m23, _MM_SHUFFLE(3, 1, 3, 1))));
}

/* R rows from row w against the tile's tn tokens, all super-blocks. */
DEEPC_INLINE void kq_rows(deepc_type t, bool vnni, int R, size_t nb, const unsigned char *w, size_t w_stride,
                       size_t wblk, const unsigned char *x, size_t x_stride, int tn, float *y, size_t y_stride,
                       __m512 *acc, __m256 *accm) {
    for (int r = 0; r < R; r++)
        for (int j = 0; j < tn; j++) {
            acc[j * KQ_R + r] = _mm512_setzero_ps();
            accm[j * KQ_R + r] = _mm256_setzero_ps();
        }
    for (size_t ib = 0; ib < nb; ib++) {
        __m512i Q[KQ_R][4];
        kq_wsb W[KQ_R];
        KQ_UNROLL
        for (int r = 0; r < R; r++) {
            kq_unpack(t, vnni, w + (size_t)r * w_stride + ib * wblk, Q[r], &W[r]);
            if (vnni) kq_vnni_prep(Q[r], &W[r]);
        }
        kq_tokens(t, vnni, R, (const __m512i(*)[4])Q, W, x, x_stride, ib, tn, acc, accm);
    }
    if (R == 4) {
        for (int j = 0; j < tn; j++) {
            __m128 v = kq_reduce4(&acc[j * KQ_R]);
            if (t != DEEPC_TYPE_Q3_K) v = _mm_sub_ps(v, kq_hsum4(&accm[j * KQ_R]));
            _mm_storeu_ps(y + (size_t)j * y_stride, v);
        }
        return;
    }
    for (int r = 0; r < R; r++)
        for (int j = 0; j < tn; j++) {
            float v = _mm512_reduce_add_ps(acc[j * KQ_R + r]);
            if (t != DEEPC_TYPE_Q3_K) v -= hsum256_ps(accm[j * KQ_R + r]);
            y[(size_t)j * y_stride + (size_t)r] = v;
        }
}

/* Token tiles of equal size (70 tokens go as 35 + 35), each over every row:
 * the tile's activations stay in L2 while the weights stream past once. */
DEEPC_INLINE void kq_gemm(deepc_type t, bool vnni, int nrows, int ntok, size_t n, const void *w, size_t w_stride,
                       const void *x, size_t x_stride, float *y, size_t y_stride) {
    size_t nb = n / DEEPC_QK_K, wblk = deepc_type_info((int)t)->block_bytes;
    const unsigned char *wb = w, *xb = x;
    int tiles = (ntok + KQ_RN - 1) / KQ_RN, tile = tiles ? (ntok + tiles - 1) / tiles : 1;
    __m512 acc[KQ_R * KQ_RN];
    __m256 accm[KQ_R * KQ_RN];
    for (int t0 = 0; t0 < ntok; t0 += tile) {
        int tn = ntok - t0 < tile ? ntok - t0 : tile;
        const unsigned char *xt = xb + (size_t)t0 * x_stride;
        float *yt = y + (size_t)t0 * y_stride;
        int r = 0;
        for (; r + KQ_R <= nrows; r += KQ_R)
            kq_rows(t, vnni, KQ_R, nb, wb + (size_t)r * w_stride, w_stride, wblk, xt, x_stride, tn, yt + r, y_stride, acc,
                    accm);
        for (; r < nrows; r++)
            kq_rows(t, vnni, 1, nb, wb + (size_t)r * w_stride, w_stride, wblk, xt, x_stride, tn, yt + r, y_stride, acc,
                    accm);
    }
}

void deepc_avx512_gemm_q3_k(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                            size_t x_stride, float *y, size_t y_stride) {
    kq_gemm(DEEPC_TYPE_Q3_K, false, nrows, ntok, n, w, w_stride, x, x_stride, y, y_stride);
}
void deepc_avx512vnni_gemm_q3_k(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                                size_t x_stride, float *y, size_t y_stride) {
    kq_gemm(DEEPC_TYPE_Q3_K, true, nrows, ntok, n, w, w_stride, x, x_stride, y, y_stride);
}
void deepc_avx512_gemm_q2_k(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                            size_t x_stride, float *y, size_t y_stride) {
    kq_gemm(DEEPC_TYPE_Q2_K, false, nrows, ntok, n, w, w_stride, x, x_stride, y, y_stride);
}
void deepc_avx512vnni_gemm_q2_k(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                                size_t x_stride, float *y, size_t y_stride) {
    kq_gemm(DEEPC_TYPE_Q2_K, true, nrows, ntok, n, w, w_stride, x, x_stride, y, y_stride);
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

/* ---- SwiGLU ----------------------------------------------------------------
 * e^-g as 2^n * p(r): n = round(-g * log2 e), r = -g - n ln 2 (ln 2 split in
 * two so r is exact to ~2^-40), p the degree-6 Taylor polynomial of e^r on
 * |r| <= ln2 / 2 (truncation error 1.2e-7 relative), then vscalefps, which
 * gives inf and 0 beyond float range without a clamp; -g below -104 (where
 * e^-g is 0 in float) is set to 0 explicitly so -g = -inf does not give
 * NaN. The quotient and product are IEEE operations as in the scalar one. */
static inline __m512 exp_neg512(__m512 g) {
    const __m512 x = _mm512_sub_ps(_mm512_setzero_ps(), g);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512 e = _mm512_scalef_ps(p, n);
    return _mm512_mask_mov_ps(e, _mm512_cmp_ps_mask(x, _mm512_set1_ps(-104.0f), _CMP_LT_OQ), _mm512_setzero_ps());
}

void deepc_avx512_swiglu(float *g, const float *u, size_t n) {
    size_t i = 0;
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(k, g + i), w = _mm512_maskz_loadu_ps(k, u + i);
        __m512 y = _mm512_mul_ps(_mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), exp_neg512(v))), w);
        _mm512_mask_storeu_ps(g + i, k, y);
    }
}
