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
#include <math.h>
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

/* ---- k-quant weights x Q8_K activations --------------------------------- */

/* Every k-quant kernel multiplies unsigned weight codes (q4_k 0..15, q3_k
 * 0..7, q2_k 0..3) by signed activation bytes with maddubs, whose pair sums
 * (at most 2 * 15 * 128 = 3840) never saturate, then weights the int16
 * pairs by the sub-block scales with madd into int32 lanes. Per super-block
 * the lanes stay below 2^24 in magnitude, so their conversion to float is
 * exact, and the scaled lanes go into a float accumulator reduced once at
 * the end. The min (q4_k, q2_k) and offset (q3_k: q - 4) terms use the
 * activation's 16-element sums: sum_j mn_j * bsum_j, one madd. */

/* Shuffle controls: int16 element e of each 128-bit lane, as bytes. */
static inline __m256i ctrl_pair(int lo, int hi) {
    return _mm256_setr_epi8((char)(2 * lo), (char)(2 * lo + 1), (char)(2 * lo), (char)(2 * lo + 1), (char)(2 * lo),
                            (char)(2 * lo + 1), (char)(2 * lo), (char)(2 * lo + 1), (char)(2 * lo), (char)(2 * lo + 1),
                            (char)(2 * lo), (char)(2 * lo + 1), (char)(2 * lo), (char)(2 * lo + 1), (char)(2 * lo),
                            (char)(2 * lo + 1), (char)(2 * hi), (char)(2 * hi + 1), (char)(2 * hi), (char)(2 * hi + 1),
                            (char)(2 * hi), (char)(2 * hi + 1), (char)(2 * hi), (char)(2 * hi + 1), (char)(2 * hi),
                            (char)(2 * hi + 1), (char)(2 * hi), (char)(2 * hi + 1), (char)(2 * hi), (char)(2 * hi + 1),
                            (char)(2 * hi), (char)(2 * hi + 1));
}

/* The sixteen signed scales of a q3_k block (deepc_q3_k_unpack_scales). */
static inline __m128i q3_k_scales(const uint8_t *s) {
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

/* The same 16 bytes in both 128-bit lanes, as one 256-bit constant. */
#define LANES2(...) _mm256_setr_epi8(__VA_ARGS__, __VA_ARGS__)

/* Loops over a super-block's groups, unrolled so that their shuffle
 * controls are constants (gcc at -O2 otherwise builds them at run time). */
#if defined(__clang__)
#define KQ_UNROLL _Pragma("clang loop unroll(full)")
#elif defined(__GNUC__)
#define KQ_UNROLL _Pragma("GCC unroll 8")
#else
#define KQ_UNROLL
#endif

/* A q4_k block's scales (bytes 0-7) and mins (8-15) in both 128-bit lanes,
 * unpacked in vector registers (deepc_q4_k_unpack_scales): measured faster
 * than the 32-bit-word unpacking in general registers plus the moves into
 * vectors it needs. The 16 bytes read end inside qs. */
static inline __m256i q4_k_decode(const uint8_t *scales) {
    const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)scales));
    const __m256i ia = LANES2(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11);
    const __m256i ih = LANES2(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7);
    const __m256i mlo = LANES2(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0);
    const __m256i mhi = LANES2(0, 0, 0, 0, 0x30, 0x30, 0x30, 0x30, 0, 0, 0, 0, 0x30, 0x30, 0x30, 0x30);
    const __m256i mmn = LANES2(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15);
    __m256i lo = _mm256_shuffle_epi8(b, ia); /* low bits: s[0..3], s[8..11], s[4..7], s[8..11] */
    __m256i hb = _mm256_shuffle_epi8(b, ih); /* s[0..3] under sc_4..7, s[4..7] under mn_4..7 */
    /* within-word shifts: the bits a byte takes from its neighbour are masked off */
    __m256i v = _mm256_or_si256(_mm256_and_si256(lo, mlo), _mm256_and_si256(_mm256_srli_epi16(hb, 2), mhi));
    return _mm256_or_si256(v, _mm256_and_si256(_mm256_srli_epi16(lo, 4), mmn));
}

/* Q4_K: per 64 elements, one 32-byte load of codes gives two sub-blocks
 * (low nibbles: elements 0-31, high nibbles: 32-63); each sub-block's scale
 * is a word broadcast by vpshufb from the unpacked bytes. */
static float vec_dot_q4_k(size_t n, const void *w, const void *x) {
    const deepc_block_q4_k *a = w;
    const deepc_block_q8_k *b = x;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    /* mn_k as the int16 pair of bsums 2k, 2k+1 (lane 0: k < 4, lane 1: k >= 4) */
    const __m256i imn = _mm256_setr_epi8(8, -1, 8, -1, 9, -1, 9, -1, 10, -1, 10, -1, 11, -1, 11, -1, 12, -1, 12, -1, 13,
                                         -1, 13, -1, 14, -1, 14, -1, 15, -1, 15, -1);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++) {
        const deepc_block_q4_k *wa = a + ib;
        const deepc_block_q8_k *xb = b + ib;
        __m256i v = q4_k_decode(wa->scales);
        __m256i msum = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)xb->bsums), _mm256_shuffle_epi8(v, imn));
        __m256i sumi = _mm256_setzero_si256();
        KQ_UNROLL
        for (int g = 0; g < 4; g++) {
            __m256i q4 = _mm256_loadu_si256((const __m256i *)(wa->qs + 32 * g));
            __m256i lo = _mm256_and_si256(q4, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
            __m256i p0 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(xb->qs + 64 * g)));
            __m256i p1 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(xb->qs + 64 * g + 32)));
            p0 = _mm256_madd_epi16(p0, _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)(0x8000 | (2 * g)))));
            p1 = _mm256_madd_epi16(p1, _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)(0x8000 | (2 * g + 1)))));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        /* d * d_x and dmin * d_x, each one fp32 product as in the scalar code */
        uint32_t dd;
        memcpy(&dd, wa, 4);
        __m256 f = _mm256_mul_ps(_mm256_cvtph_ps(_mm_set1_epi32((int)dd)), _mm256_set1_ps(xb->d));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_permute_ps(f, 0x00), acc);
        accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_permute_ps(f, 0x55), accm);
    }
    return hsum_ps(_mm256_sub_ps(acc, accm));
}

/* Scale vectors for the 16-element sub-blocks of q3_k / q2_k: one register
 * of 32 codes covers sub-blocks 2k (low lane) and 2k+1 (high lane); sc16
 * holds the sixteen scales as int16 (0-7 in the low lane, 8-15 in the
 * high). Returns [sc_2k x 8 | sc_2k+1 x 8]. */
typedef struct {
    __m256i lo, hi;        /* scales 0-7 / 8-15 broadcast to both lanes */
    __m256i ctrl[4];
} sub16_scales;

static inline void sub16_init(sub16_scales *s, __m256i sc16) {
    s->lo = _mm256_permute2x128_si256(sc16, sc16, 0x00);
    s->hi = _mm256_permute2x128_si256(sc16, sc16, 0x11);
    for (int k = 0; k < 4; k++) s->ctrl[k] = ctrl_pair(2 * k, 2 * k + 1);
}

static inline __m256i sub16_get(const sub16_scales *s, int k) {
    return _mm256_shuffle_epi8(k < 4 ? s->lo : s->hi, s->ctrl[k & 3]);
}

/* Q3_K: codes q = low2 | high bit << 2 in [0, 7]; the -4 offset is
 * subtracted as 4 * sum_j sc_j * bsum_j. */
static float vec_dot_q3_k(size_t n, const void *w, const void *x) {
    const deepc_block_q3_k *a = w;
    const deepc_block_q8_k *b = x;
    const __m256i m3 = _mm256_set1_epi8(3), m1 = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++) {
        const deepc_block_q3_k *wa = a + ib;
        const deepc_block_q8_k *xb = b + ib;
        __m256i sc16 = _mm256_cvtepi8_epi16(q3_k_scales(wa->scales));
        sub16_scales ss;
        sub16_init(&ss, sc16);
        __m256i off = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)xb->bsums), sc16);
        __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 2));
        __m256i hm = _mm256_loadu_si256((const __m256i *)wa->hmask);
        for (int h = 0; h < 2; h++) {
            __m256i q2 = _mm256_loadu_si256((const __m256i *)(wa->qs + 32 * h));
            for (int s = 0; s < 4; s++) {
                int k = 4 * h + s;
                __m256i hb = _mm256_slli_epi16(_mm256_and_si256(hm, m1), 2);
                __m256i q = _mm256_or_si256(_mm256_and_si256(q2, m3), hb);
                __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)(xb->qs + 32 * k)));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, sub16_get(&ss, k)));
                q2 = _mm256_srli_epi16(q2, 2);
                hm = _mm256_srli_epi16(hm, 1);
            }
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(_cvtsh_ss(wa->d) * xb->d), acc);
    }
    return hsum_ps(acc);
}

/* Q2_K: 4-bit scales in the low nibbles, 4-bit mins in the high ones. */
static float vec_dot_q2_k(size_t n, const void *w, const void *x) {
    const deepc_block_q2_k *a = w;
    const deepc_block_q8_k *b = x;
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++) {
        const deepc_block_q2_k *wa = a + ib;
        const deepc_block_q8_k *xb = b + ib;
        __m128i sb = _mm_loadu_si128((const __m128i *)wa->scales);
        __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(sb, m4));
        __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sb, 4), m4));
        __m256i msum = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)xb->bsums), mn16);
        sub16_scales ss;
        sub16_init(&ss, sc16);
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i q2 = _mm256_loadu_si256((const __m256i *)(wa->qs + 32 * h));
            for (int s = 0; s < 4; s++) {
                int k = 4 * h + s;
                __m256i p = _mm256_maddubs_epi16(_mm256_and_si256(q2, m3), _mm256_loadu_si256((const __m256i *)(xb->qs + 32 * k)));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, sub16_get(&ss, k)));
                q2 = _mm256_srli_epi16(q2, 2);
            }
        }
        float dx = xb->d;
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(_cvtsh_ss(wa->d) * dx), acc);
        accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_set1_ps(_cvtsh_ss(wa->dmin) * dx), accm);
    }
    return hsum_ps(_mm256_sub_ps(acc, accm));
}

/* Q8_K x Q8_K (a weight type only in unusual files): the q8_0 sign trick on
 * eight 32-byte groups per block; x is never -128 (the quantizer clamps). */
static float vec_dot_q8_k(size_t n, const void *w, const void *x) {
    const deepc_block_q8_k *a = w, *b = x;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps();
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++) {
        __m256i sumi = _mm256_setzero_si256();
        for (int g = 0; g < 8; g++) {
            __m256i qa = _mm256_loadu_si256((const __m256i *)(a[ib].qs + 32 * g));
            __m256i qb = _mm256_loadu_si256((const __m256i *)(b[ib].qs + 32 * g));
            __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(qa, qa), _mm256_sign_epi8(qb, qa));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, ones));
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(a[ib].d * b[ib].d), acc);
    }
    return hsum_ps(acc);
}

/* ---- FP8_B128 weights x F32 activations --------------------------------- */

/* E4M3 decoded through fp16, 16 codes at a time: sign-extend each byte to
 * 16 bits and shift left by 7, which puts the exponent and mantissa at bits
 * 13-7 and the sign at bit 15 (bit 14, a copy of the sign, is cleared). As
 * an fp16 that is the E4M3 value times 2^-8 exactly (exponent bias 15
 * instead of 7; E4M3 subnormals become fp16 subnormals), and vcvtph2ps
 * widens it exactly; the block sum is multiplied by 2^8 (exact, and it
 * overflows only where the scalar sum would) before the block scale. The NaN codes
 * (0x7f, 0xff) would decode as +-480 instead: the kernel ORs a per-byte NaN
 * check over the row and returns NaN if any was seen, which is what the
 * scalar kernel's sum becomes. (Measured 25% faster than widening to 32
 * bits, shifting into an fp32 and multiplying by 2^120, on Zen 4.) */
static inline __m256i fp8_to_half16(const uint8_t *p) {
    __m256i v = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p));
    return _mm256_and_si256(_mm256_slli_epi16(v, 7), _mm256_set1_epi16((short)0xbf80));
}

static float vec_dot_fp8_b128(size_t n, const void *w, const void *x) {
    const deepc_block_fp8_b128 *a = w;
    const float *xf = x;
    const __m256i m7f = _mm256_set1_epi8(0x7f);
    __m256i nan_seen = _mm256_setzero_si256();
    __m256 acc = _mm256_setzero_ps();
    for (size_t ib = 0; ib < n / DEEPC_QK_FP8; ib++, xf += DEEPC_QK_FP8) {
        const uint8_t *q = a[ib].qs;
        for (int g = 0; g < 4; g++) {
            __m256i v = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(q + 32 * g)), m7f);
            nan_seen = _mm256_or_si256(nan_seen, _mm256_cmpeq_epi8(v, m7f));
        }
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        for (int i = 0; i < DEEPC_QK_FP8; i += 32) {
            __m256i h0 = fp8_to_half16(q + i), h1 = fp8_to_half16(q + i + 16);
            s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h0)), _mm256_loadu_ps(xf + i), s0);
            s1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h0, 1)), _mm256_loadu_ps(xf + i + 8), s1);
            s2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h1)), _mm256_loadu_ps(xf + i + 16), s2);
            s3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h1, 1)), _mm256_loadu_ps(xf + i + 24), s3);
        }
        __m256 blk = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
        acc = _mm256_fmadd_ps(_mm256_mul_ps(blk, _mm256_set1_ps(256.0f)), _mm256_set1_ps(a[ib].d), acc);
    }
    if (!_mm256_testz_si256(nan_seen, nan_seen)) return NAN;
    return hsum_ps(acc);
}

/* ---- Q8_K activations ---------------------------------------------------- */

/* Bit-identical to deepc_quantize_row(Q8_K): the same NaN-skipping maximum,
 * scale d = amax / 127 in fp32 and inverse, NaN zeroed, clamp to +-127 and
 * round to nearest even, as quantize_q8_0 does; the 16-element sums are
 * exact int16 (at most 16 * 127). */
static void quantize_q8_k(const float *x, void *dst, size_t n) {
    deepc_block_q8_k *out = dst;
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    for (size_t ib = 0; ib < n / DEEPC_QK_K; ib++, x += DEEPC_QK_K) {
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < DEEPC_QK_K; j += 8) m = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + j), abs_mask), m);
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float d = _mm_cvtss_f32(m4) / 127.0f;
        __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        out[ib].d = d;
        for (int g = 0; g < DEEPC_QK_K; g += 32) {
            __m256i q[4];
            for (int j = 0; j < 4; j++) {
                __m256 t = _mm256_mul_ps(_mm256_loadu_ps(x + g + 8 * j), id);
                t = _mm256_and_ps(t, _mm256_cmp_ps(t, t, _CMP_ORD_Q)); /* NaN -> 0 */
                t = _mm256_min_ps(_mm256_max_ps(t, lo), hi);
                q[j] = _mm256_cvtps_epi32(t);
            }
            __m256i q8 = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
            q8 = _mm256_permutevar8x32_epi32(q8, perm);
            _mm256_storeu_si256((__m256i *)(out[ib].qs + g), q8);
            /* sums of 16: byte pairs, then pairs of pairs, then across the
             * four int32 of each 128-bit lane (elements 0-15 / 16-31) */
            __m256i s32 = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q8), ones16);
            __m256i s2 = _mm256_hadd_epi32(s32, s32);
            s2 = _mm256_hadd_epi32(s2, s2);
            out[ib].bsums[g / 16] = (int16_t)_mm256_cvtsi256_si32(s2);
            out[ib].bsums[g / 16 + 1] = (int16_t)_mm_cvtsi128_si32(_mm256_extracti128_si256(s2, 1));
        }
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
        [DEEPC_TYPE_Q4_K] = vec_dot_q4_k,
        [DEEPC_TYPE_Q3_K] = vec_dot_q3_k,
        [DEEPC_TYPE_Q2_K] = vec_dot_q2_k,
        [DEEPC_TYPE_FP8_B128] = vec_dot_fp8_b128,
        [DEEPC_TYPE_Q8_K] = vec_dot_q8_k,
        [DEEPC_TYPE_Q4_1] = deepc_avx2_vec_dot_q4_1,
        [DEEPC_TYPE_Q6_K] = deepc_avx2_vec_dot_q6_k,
    },
    DEEPC_ACT_TYPES,
    .quantize_act = {
        [DEEPC_TYPE_F32]  = deepc_scalar_quantize_f32,
        [DEEPC_TYPE_F16]  = deepc_scalar_quantize_f16,
        [DEEPC_TYPE_BF16] = deepc_scalar_quantize_bf16,
        [DEEPC_TYPE_Q8_0] = quantize_q8_0,
        [DEEPC_TYPE_Q4_K] = deepc_scalar_quantize_q4_k,
        [DEEPC_TYPE_Q3_K] = deepc_scalar_quantize_q3_k,
        [DEEPC_TYPE_Q2_K] = deepc_scalar_quantize_q2_k,
        [DEEPC_TYPE_FP8_B128] = deepc_scalar_quantize_fp8_b128,
        [DEEPC_TYPE_Q8_K] = quantize_q8_k,
        [DEEPC_TYPE_Q4_1] = deepc_scalar_quantize_q4_1,
        [DEEPC_TYPE_Q6_K] = deepc_scalar_quantize_q6_k,
    },
    DEEPC_OPS_AVX2,
};

const deepc_kernels *deepc_kernels_avx2(void) {
    return &avx2_kernels;
}
