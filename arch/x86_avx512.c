/* x86_avx512.c - the AVX-512 backends: "avx512" (F/BW/VL/DQ, Skylake-X and
 * later) and "avx512vnni" (the same plus AVX512_VNNI: Ice Lake, Zen 4 and
 * later), which differ only in the Q8_0 dot product. The selector in
 * arch/scalar.c picks avx512vnni when cpuid reports VNNI.
 *
 * The file is compiled with -mavx512vnni for the VNNI kernel, yet "avx512"
 * must run on CPUs without it. Its code therefore never leaves the compiler a
 * VNNI pattern to fuse: the Q8_0 kernel feeds vpmaddwd into a horizontal
 * reduction (no vertical add after it that could become vpdpwssd), and there
 * is no integer dot-product loop for the auto-vectorizer to turn into one.
 * (Checked with objdump for gcc 12 and clang 14: VNNI instructions
 * appear only in vec_dot_q8_0_vnni.)
 *
 * Float kernels stream 64 elements per iteration into four 16-lane
 * accumulators, reduce once at the end and finish with a scalar tail. Q8_0
 * works one 32-byte block per 256-bit register, eight blocks per iteration,
 * as in x86_avx2.c. No software prefetch: measured single-threaded, it made
 * DRAM-bound rows 25-50% faster on a Sapphire Rapids VM but up to 45% slower
 * (f16/bf16) on Zen 4, whose hardware prefetchers already keep up.
 * Results equal the scalar backend's up to fp32 summation order;
 * the integer part of Q8_0 is exact (test/test_kernels.c). */
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "cpu.h"

/* ---- helpers ------------------------------------------------------------ */

static inline float hsum256_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hsum512_ps(__m512 v) {
    return hsum256_ps(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)));
}

static inline uint16_t load_u16(const unsigned char *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* 16 fp16 / bf16 values at p (any alignment) -> 16 floats, exactly. */
static inline __m512 load16_f16(const unsigned char *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

static inline __m512 load16_bf16(const unsigned char *p) {
    __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}

/* ---- float weights x F32 activations ------------------------------------ */

static float vec_dot_f32(size_t n, const void *w, const void *x) {
    const float *a = w, *b = x;
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    float sum = hsum512_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

static float vec_dot_f16(size_t n, const void *w, const void *x) {
    const unsigned char *a = w;
    const float *b = x;
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(load16_f16(a + 2 * i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(load16_f16(a + 2 * i + 32), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(load16_f16(a + 2 * i + 64), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(load16_f16(a + 2 * i + 96), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(load16_f16(a + 2 * i), _mm512_loadu_ps(b + i), s0);
    float sum = hsum512_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    for (; i < n; i++) sum += _cvtsh_ss(load_u16(a + 2 * i)) * b[i];
    return sum;
}

static float vec_dot_bf16(size_t n, const void *w, const void *x) {
    const unsigned char *a = w;
    const float *b = x;
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(load16_bf16(a + 2 * i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(load16_bf16(a + 2 * i + 32), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(load16_bf16(a + 2 * i + 64), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(load16_bf16(a + 2 * i + 96), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(load16_bf16(a + 2 * i), _mm512_loadu_ps(b + i), s0);
    float sum = hsum512_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    for (; i < n; i++) sum += deepc_bf16_to_fp32(load_u16(a + 2 * i)) * b[i];
    return sum;
}

/* ---- Q8_0 weights x Q8_0 activations ------------------------------------ */

/* Q8_0 works in 256-bit registers, one 32-byte block per register (on Zen 4,
 * where 512-bit ops are double-pumped, pairing blocks in zmm measured slower:
 * the inserts and mask ops cost more than they save). Both integer paths
 * multiply |w| (unsigned; -128 becomes 128) by x * sgn w, so any weight byte
 * works and x must not be -128, which the Q8_0 quantizer never produces.
 * Each returns one block's dot as 8 int32 lane sums (each at most
 * 4 * 128 * 127 in magnitude). */

/* Without VNNI: vpmaddubsw (pairs: at most 2 * 128 * 127, no saturation) and
 * vpmaddwd against ones, whose result goes to a reduction, never to an add
 * the compiler could fuse into vpdpwssd. */
static inline __m256i q8_block_lanes_bw(const deepc_block_q8_0 *a, const deepc_block_q8_0 *b) {
    __m256i qa = _mm256_loadu_si256((const __m256i *)a->qs);
    __m256i qb = _mm256_loadu_si256((const __m256i *)b->qs);
    __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(qa, qa), _mm256_sign_epi8(qb, qa));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

/* With VNNI: one vpdpbusd sums groups of four u8*s8 products into int32. */
static inline __m256i q8_block_lanes_vnni(const deepc_block_q8_0 *a, const deepc_block_q8_0 *b) {
    __m256i qa = _mm256_loadu_si256((const __m256i *)a->qs);
    __m256i qb = _mm256_loadu_si256((const __m256i *)b->qs);
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(qa, qa), _mm256_sign_epi8(qb, qa));
}

/* Eight vectors of 8 int32 lane sums -> one vector of their eight totals, in
 * order (exact: every total is one block's integer dot, < 2^20). */
static inline __m256i hsum8x8_epi32(const __m256i v[8]) {
    __m256i h01 = _mm256_hadd_epi32(v[0], v[1]), h23 = _mm256_hadd_epi32(v[2], v[3]);
    __m256i h45 = _mm256_hadd_epi32(v[4], v[5]), h67 = _mm256_hadd_epi32(v[6], v[7]);
    __m256i h0123 = _mm256_hadd_epi32(h01, h23), h4567 = _mm256_hadd_epi32(h45, h67);
    /* each 128-bit half now holds partial totals of blocks 0-3 (resp. 4-7) */
    return _mm256_add_epi32(_mm256_permute2x128_si256(h0123, h4567, 0x20),
                            _mm256_permute2x128_si256(h0123, h4567, 0x31));
}

/* Eight blocks' d_w * d_x, in order: the sixteen fp16 scales in two
 * registers, converted and multiplied at once (each product rounded as the
 * scalar kernel rounds it). */
static inline __m256 q8_scales8(const deepc_block_q8_0 *a, const deepc_block_q8_0 *b) {
    __m128i hw = _mm_setr_epi16((short)a[0].d, (short)a[1].d, (short)a[2].d, (short)a[3].d,
                                (short)a[4].d, (short)a[5].d, (short)a[6].d, (short)a[7].d);
    __m128i hx = _mm_setr_epi16((short)b[0].d, (short)b[1].d, (short)b[2].d, (short)b[3].d,
                                (short)b[4].d, (short)b[5].d, (short)b[6].d, (short)b[7].d);
    return _mm256_mul_ps(_mm256_cvtph_ps(hw), _mm256_cvtph_ps(hx));
}

/* One body for both integer paths (inlined into each, so neither calls
 * through a pointer): eight blocks per iteration, their exact integer dots
 * reduced to one vector of per-block totals, converted and scaled by one FMA.
 * n is a multiple of 32, so the remainder is whole blocks, done one at a
 * time: lane sums converted, times the broadcast scale. */
#define Q8_0_DOT_BODY(lanes)                                                                          \
    const deepc_block_q8_0 *a = w, *b = x;                                                           \
    size_t nb = n / DEEPC_QK8_0, ib = 0;                                                             \
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;                                                        \
    for (; ib + 8 <= nb; ib += 8) {                                                                  \
        const __m256i v[8] = {                                                                       \
            lanes(a + ib, b + ib),         lanes(a + ib + 1, b + ib + 1),                             \
            lanes(a + ib + 2, b + ib + 2), lanes(a + ib + 3, b + ib + 3),                             \
            lanes(a + ib + 4, b + ib + 4), lanes(a + ib + 5, b + ib + 5),                             \
            lanes(a + ib + 6, b + ib + 6), lanes(a + ib + 7, b + ib + 7),                             \
        };                                                                                           \
        s0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hsum8x8_epi32(v)), q8_scales8(a + ib, b + ib), s0);  \
    }                                                                                                \
    for (; ib < nb; ib++) {                                                                          \
        __m256 d = _mm256_set1_ps(_cvtsh_ss(a[ib].d) * _cvtsh_ss(b[ib].d));                          \
        s1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes(a + ib, b + ib)), d, s1);                      \
    }                                                                                                \
    return hsum256_ps(_mm256_add_ps(s0, s1))

static float vec_dot_q8_0(size_t n, const void *w, const void *x) {
    Q8_0_DOT_BODY(q8_block_lanes_bw);
}

static float vec_dot_q8_0_vnni(size_t n, const void *w, const void *x) {
    Q8_0_DOT_BODY(q8_block_lanes_vnni);
}

/* Activation quantizer, bit-identical to deepc_quantize_row(Q8_0): the block
 * maximum skips NaN like the reference (vmaxps returns its second operand,
 * the running maximum, when either is NaN), the scale goes through the
 * reference's own fp16 rounding and clamp, and elements are multiplied by the
 * same fp32 inverse, NaN zeroed, clamped to +-127 and rounded to nearest even
 * by vcvtps2dq (lrintf's rounding). Two 16-lane halves per block. */
static void quantize_q8_0(const float *x, void *dst, size_t n) {
    deepc_block_q8_0 *out = dst;
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    for (size_t ib = 0; ib < n / DEEPC_QK8_0; ib++) {
        const float *p = x + ib * DEEPC_QK8_0;
        __m512 v0 = _mm512_loadu_ps(p), v1 = _mm512_loadu_ps(p + 16);
        __m512 m = _mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps());
        m = _mm512_max_ps(_mm512_abs_ps(v1), m);
        float amax = _mm512_reduce_max_ps(m); /* no NaN left in m */

        uint16_t dh = deepc_fp32_to_fp16(amax / 127.0f);
        if ((dh & 0x7fffu) >= 0x7c00u) dh = 0x7bffu;
        float d = deepc_fp16_to_fp32(dh);
        __m512 id = _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);

        __m512 t0 = _mm512_mul_ps(v0, id), t1 = _mm512_mul_ps(v1, id);
        t0 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(t0, t0, _CMP_ORD_Q), t0); /* NaN -> 0 */
        t1 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(t1, t1, _CMP_ORD_Q), t1);
        t0 = _mm512_min_ps(_mm512_max_ps(t0, lo), hi);
        t1 = _mm512_min_ps(_mm512_max_ps(t1, lo), hi);
        __m128i q0 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(t0));
        __m128i q1 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(t1));
        out[ib].d = dh;
        _mm_storeu_si128((__m128i *)out[ib].qs, q0);
        _mm_storeu_si128((__m128i *)(out[ib].qs + 16), q1);
    }
}

/* ---- k-quant weights x Q8_K activations --------------------------------- */

/* 64 elements per 512-bit register: unsigned weight codes times activation
 * bytes with vpmaddubsw (pair sums at most 2 * 15 * 128, no saturation),
 * then the int16 pairs weighted by their sub-block scales into int32 lanes:
 * vpmaddwd + vpaddd without VNNI, one vpdpwssd with it (the one place the
 * k-quants gain from VNNI: vpdpbusd would need the scale applied to int32
 * sums afterwards, a slow vpmulld). Lanes stay below 2^24 per super-block
 * (exact in fp32) and are scaled into a float accumulator.
 *
 * The "avx512" table must not contain VNNI instructions, and a compiler
 * given -mavx512vnni may fuse vpaddd(vpmaddwd) into vpdpwssd: clang 14 does
 * (objdump: 3-7 vpdp* per plain k-quant kernel without the guard; gcc 12
 * does not). The plain path therefore passes the vpmaddwd result through an
 * empty asm statement, which the optimizer cannot see through. */
#if defined(__clang__)
#define KQ_UNROLL _Pragma("clang loop unroll(full)")
#elif defined(__GNUC__)
#define KQ_UNROLL _Pragma("GCC unroll 8")
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

/* sumi + the pairs of p weighted by s: the two integer paths. */
DEEPC_INLINE __m512i acc_scaled(__m512i sumi, __m512i p, __m512i s, bool vnni) {
    if (vnni) return _mm512_dpwssd_epi32(sumi, p, s);
    return _mm512_add_epi32(sumi, opaque512(_mm512_madd_epi16(p, s)));
}

/* Sixteen signed q3_k scales (deepc_q3_k_unpack_scales) as bytes. */
DEEPC_INLINE __m128i q3_k_scales(const uint8_t *s) {
    uint32_t u0, u1, u2;
    memcpy(&u0, s, 4);
    memcpy(&u1, s + 4, 4);
    memcpy(&u2, s + 8, 4);
    uint32_t a0 = (u0 & 0x0f0f0f0fu) | ((u2 & 0x03030303u) << 4);
    uint32_t a1 = (u1 & 0x0f0f0f0fu) | (((u2 >> 2) & 0x03030303u) << 4);
    uint32_t a2 = ((u0 >> 4) & 0x0f0f0f0fu) | (((u2 >> 4) & 0x03030303u) << 4);
    uint32_t a3 = ((u1 >> 4) & 0x0f0f0f0fu) | (((u2 >> 6) & 0x03030303u) << 4);
    return _mm_sub_epi8(_mm_setr_epi32((int)a0, (int)a1, (int)a2, (int)a3), _mm_set1_epi8(32));
}

/* vpermw indices: int16 element e0 in 128-bit lane 0, e1 in 1, ... */
static inline __m512i idx4(int e0, int e1, int e2, int e3) {
    return _mm512_set_epi16((short)e3, (short)e3, (short)e3, (short)e3, (short)e3, (short)e3, (short)e3, (short)e3,
                            (short)e2, (short)e2, (short)e2, (short)e2, (short)e2, (short)e2, (short)e2, (short)e2,
                            (short)e1, (short)e1, (short)e1, (short)e1, (short)e1, (short)e1, (short)e1, (short)e1,
                            (short)e0, (short)e0, (short)e0, (short)e0, (short)e0, (short)e0, (short)e0, (short)e0);
}

/* Q3_K / Q2_K: the 32 bytes of 2-bit codes of one half (h) broadcast to
 * both halves and shifted by 2s and 2s + 2 (vpsrlvw) give the 64 codes of
 * elements 128h + 32s .. + 63, s = 0 or 2: sub-blocks 2k .. 2k+3 for
 * k = 4h + s, one per 128-bit lane. q3_k's high bits come the same way from
 * hmask, shifted by k and k + 1. */
DEEPC_INLINE __m512i shifts2(int lo, int hi) {
    return _mm512_inserti64x4(_mm512_set1_epi16((short)lo), _mm256_set1_epi16((short)hi), 1);
}

DEEPC_INLINE __m512i bits2(int k) {
    return _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << k)), _mm256_set1_epi8((char)(1 << (k + 1))), 1);
}

DEEPC_INLINE float q3_k_body(size_t n, const void *w, const void *x, bool vnni) {
    const deepc_block_q3_k *a = w;
    const deepc_block_q8_k *b = x;
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m512i ix[4] = { idx4(0, 1, 2, 3), idx4(4, 5, 6, 7), idx4(8, 9, 10, 11), idx4(12, 13, 14, 15) };
    const __m512i sh_lo[2] = { shifts2(0, 2), shifts2(4, 6) };
    /* the high bit (+4) where bit k (k + 1 in the upper half) of hmask is set */
    const __m512i hbit[4] = { bits2(0), bits2(2), bits2(4), bits2(6) }, four = _mm512_set1_epi8(4);
    __m512 acc = _mm512_setzero_ps();
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++) {
        const deepc_block_q3_k *wa = a + ib;
        const deepc_block_q8_k *xb = b + ib;
        __m256i sc16 = _mm256_cvtepi8_epi16(q3_k_scales(wa->scales));
        __m256i off = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)xb->bsums), sc16);
        if (!vnni) off = opaque256(off);
        __m512i sc = _mm512_castsi256_si512(sc16);
        __m512i sumi = _mm512_castsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 2)));
        sumi = _mm512_inserti64x4(sumi, _mm256_setzero_si256(), 1);
        __m512i hm = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)wa->hmask));
        KQ_UNROLL
        for (int h = 0; h < 2; h++) {
            __m512i q2 = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(wa->qs + 32 * h)));
            KQ_UNROLL
            for (int s = 0; s < 4; s += 2) {
                int k = 4 * h + s;
                __m512i lo = _mm512_and_si512(_mm512_srlv_epi16(q2, sh_lo[s / 2]), m3);
                __m512i q = _mm512_mask_add_epi8(lo, _mm512_test_epi8_mask(hm, hbit[k / 2]), lo, four);
                __m512i p = _mm512_maddubs_epi16(q, _mm512_loadu_si512(xb->qs + 32 * k));
                sumi = acc_scaled(sumi, p, _mm512_permutexvar_epi16(ix[k / 2], sc), vnni);
            }
        }
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_set1_ps(_cvtsh_ss(wa->d) * xb->d), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

DEEPC_INLINE float q2_k_body(size_t n, const void *w, const void *x, bool vnni) {
    const deepc_block_q2_k *a = w;
    const deepc_block_q8_k *b = x;
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    const __m512i ix[4] = { idx4(0, 1, 2, 3), idx4(4, 5, 6, 7), idx4(8, 9, 10, 11), idx4(12, 13, 14, 15) };
    const __m512i sh_lo[2] = { shifts2(0, 2), shifts2(4, 6) };
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++) {
        const deepc_block_q2_k *wa = a + ib;
        const deepc_block_q8_k *xb = b + ib;
        __m128i sb = _mm_loadu_si128((const __m128i *)wa->scales);
        __m512i sc = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(sb, m4)));
        __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sb, 4), m4));
        __m256i msum = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)xb->bsums), mn16);
        if (!vnni) msum = opaque256(msum);
        __m512i sumi = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            __m512i q2 = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(wa->qs + 32 * h)));
            for (int s = 0; s < 4; s += 2) {
                int k = 4 * h + s;
                __m512i q = _mm512_and_si512(_mm512_srlv_epi16(q2, sh_lo[s / 2]), m3);
                __m512i p = _mm512_maddubs_epi16(q, _mm512_loadu_si512(xb->qs + 32 * k));
                sumi = acc_scaled(sumi, p, _mm512_permutexvar_epi16(ix[k / 2], sc), vnni);
            }
        }
        float dx = xb->d;
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_set1_ps(_cvtsh_ss(wa->d) * dx), acc);
        accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_set1_ps(_cvtsh_ss(wa->dmin) * dx), accm);
    }
    return _mm512_reduce_add_ps(acc) - hsum256_ps(accm);
}

/* Q8_K x Q8_K: the Q8_0 sign trick in 256-bit registers, 32 bytes at a
 * time (x is never -128). */
DEEPC_INLINE float q8_k_body(size_t n, const void *w, const void *x, bool vnni) {
    const deepc_block_q8_k *a = w, *b = x;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps();
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++) {
        __m256i sumi = _mm256_setzero_si256();
        for (int g = 0; g < 8; g++) {
            __m256i qa = _mm256_loadu_si256((const __m256i *)(a[ib].qs + 32 * g));
            __m256i qb = _mm256_loadu_si256((const __m256i *)(b[ib].qs + 32 * g));
            __m256i ua = _mm256_sign_epi8(qa, qa), sb = _mm256_sign_epi8(qb, qa);
            if (vnni) sumi = _mm256_dpbusd_epi32(sumi, ua, sb);
            else sumi = _mm256_add_epi32(sumi, opaque256(_mm256_madd_epi16(_mm256_maddubs_epi16(ua, sb), ones)));
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(a[ib].d * b[ib].d), acc);
    }
    return hsum256_ps(acc);
}

static float vec_dot_q3_k(size_t n, const void *w, const void *x) { return q3_k_body(n, w, x, false); }
static float vec_dot_q3_k_vnni(size_t n, const void *w, const void *x) { return q3_k_body(n, w, x, true); }
static float vec_dot_q2_k(size_t n, const void *w, const void *x) { return q2_k_body(n, w, x, false); }
static float vec_dot_q2_k_vnni(size_t n, const void *w, const void *x) { return q2_k_body(n, w, x, true); }
static float vec_dot_q8_k(size_t n, const void *w, const void *x) { return q8_k_body(n, w, x, false); }
static float vec_dot_q8_k_vnni(size_t n, const void *w, const void *x) { return q8_k_body(n, w, x, true); }

/* ---- FP8_B128 weights x F32 activations --------------------------------- */

/* E4M3 through fp16 as in x86_avx2.c, 32 codes per register: sign-extend
 * to 16 bits, shift left by 7, clear bit 14: the E4M3 value times 2^-8 as
 * an fp16, widened exactly by vcvtph2ps; the block sum is multiplied by 2^8.
 * NaN codes decode as +-480; the kernel checks for them per block
 * (vpcmpeqb into a mask) and returns NaN, as the scalar sum would be. */
static inline __m512i fp8_to_half32(const uint8_t *p) {
    __m512i v = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_and_si512(_mm512_slli_epi16(v, 7), _mm512_set1_epi16((short)0xbf80));
}

static float vec_dot_fp8_b128(size_t n, const void *w, const void *x) {
    const deepc_block_fp8_b128 *a = w;
    const float *xf = x;
    const __m512i m7f = _mm512_set1_epi8(0x7f);
    __mmask64 nan_seen = 0;
    __m512 acc = _mm512_setzero_ps();
    for (size_t ib = 0; ib < n / DEEPC_QK_FP8; ib++, xf += DEEPC_QK_FP8) {
        const uint8_t *q = a[ib].qs;
        nan_seen |= _mm512_cmpeq_epi8_mask(_mm512_and_si512(_mm512_loadu_si512(q), m7f), m7f);
        nan_seen |= _mm512_cmpeq_epi8_mask(_mm512_and_si512(_mm512_loadu_si512(q + 64), m7f), m7f);
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        for (int i = 0; i < DEEPC_QK_FP8; i += 64) {
            __m512i h0 = fp8_to_half32(q + i), h1 = fp8_to_half32(q + i + 32);
            s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(h0)), _mm512_loadu_ps(xf + i), s0);
            s1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(h0, 1)), _mm512_loadu_ps(xf + i + 16), s1);
            s2 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(h1)), _mm512_loadu_ps(xf + i + 32), s2);
            s3 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(h1, 1)), _mm512_loadu_ps(xf + i + 48), s3);
        }
        __m512 blk = _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3));
        acc = _mm512_fmadd_ps(_mm512_mul_ps(blk, _mm512_set1_ps(256.0f)), _mm512_set1_ps(a[ib].d), acc);
    }
    if (nan_seen) return NAN;
    return _mm512_reduce_add_ps(acc);
}

/* ---- Q8_K activations ---------------------------------------------------- */

/* Bit-identical to deepc_quantize_row(Q8_K), as quantize_q8_0 is to Q8_0:
 * NaN-skipping maximum, d = amax / 127 and its inverse in fp32, NaN zeroed,
 * clamp to +-127, round to nearest even. Each 16-lane register is one
 * 16-element sum. */
static void quantize_q8_k(const float *x, void *dst, size_t n) {
    deepc_block_q8_k *out = dst;
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++, x += DEEPC_QK_K) {
        __m512 m = _mm512_setzero_ps();
        for (int j = 0; j < DEEPC_QK_K; j += 16) m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + j)), m);
        float d = _mm512_reduce_max_ps(m) / 127.0f; /* no NaN left in m */
        __m512 id = _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        out[ib].d = d;
        for (int j = 0; j < DEEPC_QK_K; j += 16) {
            __m512 t = _mm512_mul_ps(_mm512_loadu_ps(x + j), id);
            t = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(t, t, _CMP_ORD_Q), t); /* NaN -> 0 */
            t = _mm512_min_ps(_mm512_max_ps(t, lo), hi);
            __m512i q = _mm512_cvtps_epi32(t);
            _mm_storeu_si128((__m128i *)(out[ib].qs + j), _mm512_cvtsepi32_epi8(q));
            out[ib].bsums[j / 16] = (int16_t)_mm512_reduce_add_epi32(q);
        }
    }
}

/* ---- the tables --------------------------------------------------------- */

#define AVX512_TABLE(NAME, SFX)                                 \
    {                                                           \
        .name = NAME,                                           \
        .vec_dot = {                                            \
            [DEEPC_TYPE_F32]  = vec_dot_f32,                    \
            [DEEPC_TYPE_F16]  = vec_dot_f16,                    \
            [DEEPC_TYPE_BF16] = vec_dot_bf16,                   \
            [DEEPC_TYPE_Q8_0] = vec_dot_q8_0##SFX,              \
            [DEEPC_TYPE_Q4_K] = deepc_avx512_vec_dot_q4_k##SFX,  \
            [DEEPC_TYPE_Q3_K] = vec_dot_q3_k##SFX,              \
            [DEEPC_TYPE_Q2_K] = vec_dot_q2_k##SFX,              \
            [DEEPC_TYPE_FP8_B128] = vec_dot_fp8_b128,           \
            [DEEPC_TYPE_Q8_K] = vec_dot_q8_k##SFX,              \
            [DEEPC_TYPE_Q4_1] = deepc_avx512_vec_dot_q4_1##SFX,  \
            [DEEPC_TYPE_Q6_K] = deepc_avx512_vec_dot_q6_k##SFX,  \
        },                                                      \
        DEEPC_ACT_TYPES,                                                      \
        .quantize_act = {                                       \
            [DEEPC_TYPE_F32]  = deepc_scalar_quantize_f32,      \
            [DEEPC_TYPE_F16]  = deepc_scalar_quantize_f16,      \
            [DEEPC_TYPE_BF16] = deepc_scalar_quantize_bf16,     \
            [DEEPC_TYPE_Q8_0] = quantize_q8_0,                  \
            [DEEPC_TYPE_Q4_K] = deepc_scalar_quantize_q4_k,                  \
            [DEEPC_TYPE_Q3_K] = deepc_scalar_quantize_q3_k,                  \
            [DEEPC_TYPE_Q2_K] = deepc_scalar_quantize_q2_k,                  \
            [DEEPC_TYPE_FP8_B128] = deepc_scalar_quantize_fp8_b128,          \
            [DEEPC_TYPE_Q8_K] = quantize_q8_k,                  \
            [DEEPC_TYPE_Q4_1] = deepc_scalar_quantize_q4_1,     \
            [DEEPC_TYPE_Q6_K] = deepc_scalar_quantize_q6_k,     \
        },                                                      \
        DEEPC_OPS_AVX512##SFX,                                  \
    }

static const deepc_kernels avx512_kernels = AVX512_TABLE("avx512", );
static const deepc_kernels avx512vnni_kernels = AVX512_TABLE("avx512vnni", _vnni);

const deepc_kernels *deepc_kernels_avx512(void) {
    return &avx512_kernels;
}

const deepc_kernels *deepc_kernels_avx512vnni(void) {
    return &avx512vnni_kernels;
}
