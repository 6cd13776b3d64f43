/* cpu.h - arch-internal declarations: CPU feature checks (arch/cpu_x86.c)
 * and the per-ISA backend tables the selector in arch/scalar.c chooses from.
 * Not installed and not included by core/: core sees only kernels.h.
 * No intrinsics here; every arch file includes this with its own -m flags. */
#ifndef DEEPC_ARCH_CPU_H
#define DEEPC_ARCH_CPU_H

#include <stdbool.h>
#include <stddef.h>

#include "kernels.h"

/* ---- CPU features (cheap after the first call, thread-safe) ------------- */

/* Each is true only when the CPU has every instruction set the matching arch
 * file is compiled for AND the OS saves the register state (XGETBV):
 *   avx2       AVX2 + FMA + F16C, YMM state        (arch/x86_avx2.c)
 *   avx512     AVX-512 F/BW/VL/DQ + FMA + F16C, ZMM and opmask state
 *   avx512vnni the above + AVX512_VNNI             (arch/x86_avx512.c)
 * All false on non-x86 builds. */
bool deepc_cpu_has_avx2(void);
bool deepc_cpu_has_avx512(void);
bool deepc_cpu_has_avx512vnni(void);

/* One line naming the detected features, e.g. "avx2 fma f16c avx512f ...",
 * for diagnostics (tests, benchmarks). Thread-local storage, valid until the next call on this thread; never NULL. */
const char *deepc_cpu_describe(void);

/* AArch64 (arch/cpu_arm.c; hwcaps on Linux, sysctl on macOS):
 *   neon          Advanced SIMD, present on every AArch64 CPU (arch/neon_kernels.c "neon")
 *   neon_dotprod  the above + SDOT (FEAT_DotProd)               ("neon-dotprod")
 *   i8mm          SMMLA (FEAT_I8MM); detected, not used by any kernel yet
 * All false on non-AArch64 builds. deepc_cpu_describe() above is the x86
 * one; deepc_cpu_describe_arm() names these ("neon dotprod i8mm", or "none"),
 * same storage rules. */
bool deepc_cpu_has_neon(void);
bool deepc_cpu_has_neon_dotprod(void);
bool deepc_cpu_has_i8mm(void);
const char *deepc_cpu_describe_arm(void);

/* ---- backend tables ----------------------------------------------------- */

#if defined(__x86_64__) || defined(__i386__)
const deepc_kernels *deepc_kernels_avx2(void);       /* arch/x86_avx2.c */
const deepc_kernels *deepc_kernels_avx512(void);     /* arch/x86_avx512.c */
const deepc_kernels *deepc_kernels_avx512vnni(void); /* arch/x86_avx512.c */
#endif
#if defined(__aarch64__)
const deepc_kernels *deepc_kernels_neon(void);         /* arch/neon_kernels.c */
const deepc_kernels *deepc_kernels_neon_dotprod(void); /* arch/neon_kernels.c */
#endif

/* Scalar activation converters of arch/scalar.c, exported so SIMD tables can
 * reuse them for the types they do not speed up. Each equals
 * deepc_quantize_row(type, x, y, n). */
void deepc_scalar_quantize_f32(const float *x, void *y, size_t n);
void deepc_scalar_quantize_f16(const float *x, void *y, size_t n);
void deepc_scalar_quantize_bf16(const float *x, void *y, size_t n);
void deepc_scalar_quantize_q8_0(const float *x, void *y, size_t n);

#endif
