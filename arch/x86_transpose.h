/* x86_transpose.h - the 8x8 dword transpose the transposed-block gemms share
 * (arch/x86_avx2_ops.c, x86_avx2_q4_1.c: 256-bit; x86_avx512_ops.c,
 * x86_avx512_q4_1.c, x86_avx512_q4_k.c: within each 256-bit half of 512).
 * Register j of the result holds dword j of input register l in lane l, so
 * one multiply-add per register leaves each block's whole dot in its own
 * lane. Always inlined with the inputs as values: through the stack the
 * gemms ran ~3x slower. Each half is built only where the compiler targets
 * its ISA (the including file's -m flags). */
#ifndef DEEPC_X86_TRANSPOSE_H
#define DEEPC_X86_TRANSPOSE_H

#include <immintrin.h>

#include "cpu.h"

#if defined(__AVX2__)
/* out[j] lane l = dword j of z_l (l, j < 8). */
DEEPC_INLINE void deepc_transpose8x8_epi32(__m256i z0, __m256i z1, __m256i z2, __m256i z3, __m256i z4,
                                           __m256i z5, __m256i z6, __m256i z7, __m256i out[8]) {
    __m256i t0 = _mm256_unpacklo_epi32(z0, z1), t1 = _mm256_unpackhi_epi32(z0, z1);
    __m256i t2 = _mm256_unpacklo_epi32(z2, z3), t3 = _mm256_unpackhi_epi32(z2, z3);
    __m256i t4 = _mm256_unpacklo_epi32(z4, z5), t5 = _mm256_unpackhi_epi32(z4, z5);
    __m256i t6 = _mm256_unpacklo_epi32(z6, z7), t7 = _mm256_unpackhi_epi32(z6, z7);
    /* u_j (j < 4): inputs 0-3 dword j | dword j + 4; v_j: the same of inputs 4-7 */
    __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    __m256i v0 = _mm256_unpacklo_epi64(t4, t6), v1 = _mm256_unpackhi_epi64(t4, t6);
    __m256i v2 = _mm256_unpacklo_epi64(t5, t7), v3 = _mm256_unpackhi_epi64(t5, t7);
    out[0] = _mm256_permute2x128_si256(u0, v0, 0x20);
    out[1] = _mm256_permute2x128_si256(u1, v1, 0x20);
    out[2] = _mm256_permute2x128_si256(u2, v2, 0x20);
    out[3] = _mm256_permute2x128_si256(u3, v3, 0x20);
    out[4] = _mm256_permute2x128_si256(u0, v0, 0x31);
    out[5] = _mm256_permute2x128_si256(u1, v1, 0x31);
    out[6] = _mm256_permute2x128_si256(u2, v2, 0x31);
    out[7] = _mm256_permute2x128_si256(u3, v3, 0x31);
}
#endif

#if defined(__AVX512F__)
/* Within each 256-bit half h: out[j] lane 8h + l = dword j of half h of z_l. */
DEEPC_INLINE void deepc_transpose8x8_epi32_x2(__m512i z0, __m512i z1, __m512i z2, __m512i z3, __m512i z4,
                                              __m512i z5, __m512i z6, __m512i z7, __m512i out[8]) {
    __m512i t0 = _mm512_unpacklo_epi32(z0, z1), t1 = _mm512_unpackhi_epi32(z0, z1);
    __m512i t2 = _mm512_unpacklo_epi32(z2, z3), t3 = _mm512_unpackhi_epi32(z2, z3);
    __m512i t4 = _mm512_unpacklo_epi32(z4, z5), t5 = _mm512_unpackhi_epi32(z4, z5);
    __m512i t6 = _mm512_unpacklo_epi32(z6, z7), t7 = _mm512_unpackhi_epi32(z6, z7);
    /* u_j (j < 4) lanes: inputs 0-3 dword j | 0-3 dword j+4, per half; v_j
     * the same of inputs 4-7 */
    __m512i u0 = _mm512_unpacklo_epi64(t0, t2), u1 = _mm512_unpackhi_epi64(t0, t2);
    __m512i u2 = _mm512_unpacklo_epi64(t1, t3), u3 = _mm512_unpackhi_epi64(t1, t3);
    __m512i v0 = _mm512_unpacklo_epi64(t4, t6), v1 = _mm512_unpackhi_epi64(t4, t6);
    __m512i v2 = _mm512_unpacklo_epi64(t5, t7), v3 = _mm512_unpackhi_epi64(t5, t7);
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    out[0] = _mm512_permutex2var_epi64(u0, lo, v0);
    out[1] = _mm512_permutex2var_epi64(u1, lo, v1);
    out[2] = _mm512_permutex2var_epi64(u2, lo, v2);
    out[3] = _mm512_permutex2var_epi64(u3, lo, v3);
    out[4] = _mm512_permutex2var_epi64(u0, hi, v0);
    out[5] = _mm512_permutex2var_epi64(u1, hi, v1);
    out[6] = _mm512_permutex2var_epi64(u2, hi, v2);
    out[7] = _mm512_permutex2var_epi64(u3, hi, v3);
}
#endif

#endif
