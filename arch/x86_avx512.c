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

/* ---- the tables --------------------------------------------------------- */

#define AVX512_TABLE(NAME, Q8_DOT)                     \
    {                                                  \
        .name = NAME,                                  \
        .vec_dot = {                                   \
            [DEEPC_TYPE_F32]  = vec_dot_f32,           \
            [DEEPC_TYPE_F16]  = vec_dot_f16,           \
            [DEEPC_TYPE_BF16] = vec_dot_bf16,          \
            [DEEPC_TYPE_Q8_0] = Q8_DOT,                \
        },                                             \
        .act_type = {                                  \
            [DEEPC_TYPE_F32]  = DEEPC_TYPE_F32,        \
            [DEEPC_TYPE_F16]  = DEEPC_TYPE_F32,        \
            [DEEPC_TYPE_BF16] = DEEPC_TYPE_F32,        \
            [DEEPC_TYPE_Q8_0] = DEEPC_TYPE_Q8_0,       \
        },                                             \
        .quantize_act = {                              \
            [DEEPC_TYPE_F32]  = deepc_scalar_quantize_f32,  \
            [DEEPC_TYPE_F16]  = deepc_scalar_quantize_f16,  \
            [DEEPC_TYPE_BF16] = deepc_scalar_quantize_bf16, \
            [DEEPC_TYPE_Q8_0] = quantize_q8_0,         \
        },                                             \
    }

static const deepc_kernels avx512_kernels = AVX512_TABLE("avx512", vec_dot_q8_0);
static const deepc_kernels avx512vnni_kernels = AVX512_TABLE("avx512vnni", vec_dot_q8_0_vnni);

const deepc_kernels *deepc_kernels_avx512(void) {
    return &avx512_kernels;
}

const deepc_kernels *deepc_kernels_avx512vnni(void) {
    return &avx512vnni_kernels;
}
