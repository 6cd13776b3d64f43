/* neon_sdot.h - the one SDOT (FEAT_DotProd) helper every NEON file uses.
 * SDOT is enabled for single functions unless the whole build already targets
 * it. GCC's arm_neon.h offers vdotq_s32 to functions compiled for
 * "arch=armv8.2-a+dotprod" (every CPU with SDOT is at least Armv8.2). Clang
 * before 16 offers it only when the whole file targets dotprod, so with clang
 * the one SDOT instruction is written as inline assembly, which every version
 * accepts inside a target("dotprod") function. */
#ifndef DEEPC_NEON_SDOT_H
#define DEEPC_NEON_SDOT_H

#include <arm_neon.h>

#if defined(__ARM_FEATURE_DOTPROD)
#define DOTPROD_FN
#define SDOT_INTRINSIC 1
#elif defined(__clang__)
#define DOTPROD_FN __attribute__((target("dotprod")))
#define SDOT_INTRINSIC 0
#else
#define DOTPROD_FN __attribute__((target("arch=armv8.2-a+dotprod")))
#define SDOT_INTRINSIC 1
#endif

/* acc + per-lane sums of four int8 products (lane i: bytes 4i..4i+3). */
DOTPROD_FN static inline int32x4_t sdot_s32(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if SDOT_INTRINSIC
    return vdotq_s32(acc, a, b);
#else
    __asm__("sdot %0.4s, %1.16b, %2.16b" : "+w"(acc) : "w"(a), "w"(b));
    return acc;
#endif
}

#endif
