/* x86_avx2.c - the AVX2 + FMA + F16C backend ("avx2"). Compiled with
 * -mavx2 -mfma -mf16c and nothing else, so it runs on Haswell / Zen 1 and
 * later; arch/cpu_x86.c checks those three features plus OS YMM support
 * before the selector hands this table out.
 *
 * Decode is a matrix-vector product, bound by how fast weight rows stream from
 * memory, so the float kernels keep four independent accumulators (hiding the
 * FMA latency), do their one horizontal sum at the end, and end in a scalar
 * tail so every n works. Q8_0 is bound by its per-block work instead: eight
 * blocks' exact integer dots are reduced to one vector of per-block totals
 * and scaled by one FMA, which measured ~7% faster than one FMA per block
 * (test/tools/kernbench.c). Results equal the scalar backend's up to fp32
 * summation order; the integer part of Q8_0 is exact (test/test_kernels.c). */
#include <immintrin.h>
#include <string.h>

#include "cpu.h"

/* ---- helpers ------------------------------------------------------------ */

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 16-bit weights are read through memcpy / loadu: any alignment works. */
static inline uint16_t load_u16(const unsigned char *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* 8 fp16 / bf16 values at p -> 8 floats (both conversions are exact). */
static inline __m256 load8_f16(const unsigned char *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline __m256 load8_bf16(const unsigned char *p) {
    __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}

/* ---- float weights x F32 activations ------------------------------------ */

static float vec_dot_f32(size_t n, const void *w, const void *x) {
    const float *a = w, *b = x;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

static float vec_dot_f16(size_t n, const void *w, const void *x) {
    const unsigned char *a = w;
    const float *b = x;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(load8_f16(a + 2 * i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(load8_f16(a + 2 * i + 16), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(load8_f16(a + 2 * i + 32), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(load8_f16(a + 2 * i + 48), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(load8_f16(a + 2 * i), _mm256_loadu_ps(b + i), s0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) sum += _cvtsh_ss(load_u16(a + 2 * i)) * b[i];
    return sum;
}

static float vec_dot_bf16(size_t n, const void *w, const void *x) {
    const unsigned char *a = w;
    const float *b = x;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(load8_bf16(a + 2 * i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(load8_bf16(a + 2 * i + 16), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(load8_bf16(a + 2 * i + 32), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(load8_bf16(a + 2 * i + 48), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(load8_bf16(a + 2 * i), _mm256_loadu_ps(b + i), s0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) sum += deepc_bf16_to_fp32(load_u16(a + 2 * i)) * b[i];
    return sum;
}

/* ---- Q8_0 weights x Q8_0 activations ------------------------------------ */

/* Integer dot of one block as 8 int32 lane sums (each at most 4 * 128 * 127
 * in magnitude). maddubs multiplies unsigned by signed bytes, so the sign of
 * w moves onto x: |w| * (x * sgn w). |w| of -128 is 0x80 = 128 unsigned, so
 * any weight byte works; x must not be -128, which the Q8_0 quantizer never
 * produces (it clamps to +-127). Pairs sum to at most 2 * 128 * 127 < 32767:
 * maddubs never saturates. */
static inline __m256i q8_block_lanes(const deepc_block_q8_0 *a, const deepc_block_q8_0 *b) {
    __m256i qa = _mm256_loadu_si256((const __m256i *)a->qs);
    __m256i qb = _mm256_loadu_si256((const __m256i *)b->qs);
    __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(qa, qa), _mm256_sign_epi8(qb, qa));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

/* Eight vectors of 8 int32 lane sums -> one vector of their eight totals, in
 * order (exact: every total is one block's integer dot). */
static inline __m256i hsum8x8_epi32(const __m256i v[8]) {
    __m256i h01 = _mm256_hadd_epi32(v[0], v[1]), h23 = _mm256_hadd_epi32(v[2], v[3]);
    __m256i h45 = _mm256_hadd_epi32(v[4], v[5]), h67 = _mm256_hadd_epi32(v[6], v[7]);
    __m256i h0123 = _mm256_hadd_epi32(h01, h23), h4567 = _mm256_hadd_epi32(h45, h67);
    /* each 128-bit half now holds partial totals of blocks 0-3 (resp. 4-7) */
    return _mm256_add_epi32(_mm256_permute2x128_si256(h0123, h4567, 0x20),
                            _mm256_permute2x128_si256(h0123, h4567, 0x31));
}

/* Eight blocks' d_w * d_x, in order: the sixteen fp16 scales gathered into
 * two registers, converted and multiplied at once (each product rounded as
 * the scalar kernel rounds it). */
static inline __m256 q8_scales8(const deepc_block_q8_0 *a, const deepc_block_q8_0 *b) {
    __m128i hw = _mm_setr_epi16((short)a[0].d, (short)a[1].d, (short)a[2].d, (short)a[3].d,
                                (short)a[4].d, (short)a[5].d, (short)a[6].d, (short)a[7].d);
    __m128i hx = _mm_setr_epi16((short)b[0].d, (short)b[1].d, (short)b[2].d, (short)b[3].d,
                                (short)b[4].d, (short)b[5].d, (short)b[6].d, (short)b[7].d);
    return _mm256_mul_ps(_mm256_cvtph_ps(hw), _mm256_cvtph_ps(hx));
}

/* Eight blocks per iteration: eight exact integer dots, reduced to one
 * vector of per-block totals, converted and scaled with one FMA. The
 * remainder (n is a multiple of 32, so whole blocks) goes one block at a
 * time: lane sums converted, times the broadcast scale. */
static float vec_dot_q8_0(size_t n, const void *w, const void *x) {
    const deepc_block_q8_0 *a = w, *b = x;
    size_t nb = n / DEEPC_QK8_0, ib = 0;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    for (; ib + 8 <= nb; ib += 8) {
        const __m256i v[8] = {
            q8_block_lanes(a + ib, b + ib),         q8_block_lanes(a + ib + 1, b + ib + 1),
            q8_block_lanes(a + ib + 2, b + ib + 2), q8_block_lanes(a + ib + 3, b + ib + 3),
            q8_block_lanes(a + ib + 4, b + ib + 4), q8_block_lanes(a + ib + 5, b + ib + 5),
            q8_block_lanes(a + ib + 6, b + ib + 6), q8_block_lanes(a + ib + 7, b + ib + 7),
        };
        s0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hsum8x8_epi32(v)), q8_scales8(a + ib, b + ib), s0);
    }
    for (; ib < nb; ib++) {
        __m256 d = _mm256_set1_ps(_cvtsh_ss(a[ib].d) * _cvtsh_ss(b[ib].d));
        s1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q8_block_lanes(a + ib, b + ib)), d, s1);
    }
    return hsum_ps(_mm256_add_ps(s0, s1));
}

/* Activation quantizer, bit-identical to deepc_quantize_row(Q8_0): the block
 * maximum skips NaN exactly like the reference (vmaxps returns its second
 * operand when either is NaN, and the running maximum is that operand), the
 * scale goes through the reference's own fp16 rounding and clamp, and the
 * elements are multiplied by the same fp32 inverse, NaN zeroed, clamped to
 * +-127 and rounded to nearest even by vcvtps2dq (lrintf's rounding). */
static void quantize_q8_0(const float *x, void *dst, size_t n) {
    deepc_block_q8_0 *out = dst;
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    for (size_t ib = 0; ib < n / DEEPC_QK8_0; ib++) {
        const float *p = x + ib * DEEPC_QK8_0;
        __m256 v[4];
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < 4; j++) {
            v[j] = _mm256_loadu_ps(p + 8 * j);
            m = _mm256_max_ps(_mm256_and_ps(v[j], abs_mask), m);
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);

        uint16_t dh = deepc_fp32_to_fp16(amax / 127.0f);
        if ((dh & 0x7fffu) >= 0x7c00u) dh = 0x7bffu;
        float d = deepc_fp16_to_fp32(dh);
        __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);

        __m256i q[4];
        for (int j = 0; j < 4; j++) {
            __m256 t = _mm256_mul_ps(v[j], id);
            t = _mm256_and_ps(t, _mm256_cmp_ps(t, t, _CMP_ORD_Q)); /* NaN -> 0 */
            t = _mm256_min_ps(_mm256_max_ps(t, lo), hi);
            q[j] = _mm256_cvtps_epi32(t);
        }
        /* packs work per 128-bit lane: the permute restores element order */
        __m256i q16a = _mm256_packs_epi32(q[0], q[1]), q16b = _mm256_packs_epi32(q[2], q[3]);
        __m256i q8 = _mm256_packs_epi16(q16a, q16b);
        q8 = _mm256_permutevar8x32_epi32(q8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        out[ib].d = dh;
        _mm256_storeu_si256((__m256i *)out[ib].qs, q8);
    }
}

/* ---- the table ---------------------------------------------------------- */

static const deepc_kernels avx2_kernels = {
    .name = "avx2",
    .vec_dot = {
        [DEEPC_TYPE_F32]  = vec_dot_f32,
        [DEEPC_TYPE_F16]  = vec_dot_f16,
        [DEEPC_TYPE_BF16] = vec_dot_bf16,
        [DEEPC_TYPE_Q8_0] = vec_dot_q8_0,
    },
    .act_type = {
        [DEEPC_TYPE_F32]  = DEEPC_TYPE_F32,
        [DEEPC_TYPE_F16]  = DEEPC_TYPE_F32,
        [DEEPC_TYPE_BF16] = DEEPC_TYPE_F32,
        [DEEPC_TYPE_Q8_0] = DEEPC_TYPE_Q8_0,
    },
    .quantize_act = {
        [DEEPC_TYPE_F32]  = deepc_scalar_quantize_f32,
        [DEEPC_TYPE_F16]  = deepc_scalar_quantize_f16,
        [DEEPC_TYPE_BF16] = deepc_scalar_quantize_bf16,
        [DEEPC_TYPE_Q8_0] = quantize_q8_0,
    },
};

const deepc_kernels *deepc_kernels_avx2(void) {
    return &avx2_kernels;
}
