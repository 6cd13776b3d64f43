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
/* q4_1 x Q8_0 vec_dots: arch/x86_avx2_q4_1.c ("avx2") and
 * arch/x86_avx512_q4_1.c ("avx512", "avx512vnni" with the _vnni suffix) */
float deepc_avx2_vec_dot_q4_1(size_t n, const void *w, const void *x);
float deepc_avx512_vec_dot_q4_1(size_t n, const void *w, const void *x);
float deepc_avx512_vec_dot_q4_1_vnni(size_t n, const void *w, const void *x);
/* q6_k x Q8_K vec_dots: arch/x86_avx2_q6_k.c ("avx2") and
 * arch/x86_avx512_q6_k.c ("avx512", "avx512vnni" with the _vnni suffix);
 * each equals deepc_scalar_vec_dot_q6_k bit for bit */
float deepc_avx2_vec_dot_q6_k(size_t n, const void *w, const void *x);
float deepc_avx512_vec_dot_q6_k(size_t n, const void *w, const void *x);
float deepc_avx512_vec_dot_q6_k_vnni(size_t n, const void *w, const void *x);
/* q4_k x Q8_K vec_dots of both AVX-512 tables: arch/x86_avx512_q4_k.c */
float deepc_avx512_vec_dot_q4_k(size_t n, const void *w, const void *x);
float deepc_avx512_vec_dot_q4_k_vnni(size_t n, const void *w, const void *x);
#endif
#if defined(__aarch64__)
const deepc_kernels *deepc_kernels_neon(void);         /* arch/neon_kernels.c */
const deepc_kernels *deepc_kernels_neon_dotprod(void); /* arch/neon_kernels.c */
/* arch/neon_q4_1.c: q4_1 x Q8_0, for the NEON tables */
float deepc_neon_vec_dot_q4_1(size_t n, const void *w, const void *x);
float deepc_neon_vec_dot_q4_1_dotprod(size_t n, const void *w, const void *x);
/* arch/neon_q6_k.c: q6_k x Q8_K, for the NEON tables */
float deepc_neon_vec_dot_q6_k(size_t n, const void *w, const void *x);
float deepc_neon_vec_dot_q6_k_dotprod(size_t n, const void *w, const void *x);
#endif

/* For the small helpers of the SIMD kernels: inlined whatever the
 * optimizer's heuristics, so their vector values stay in registers. */
#if defined(__GNUC__)
#define DEEPC_INLINE static inline __attribute__((always_inline))
#else
#define DEEPC_INLINE static inline
#endif

/* Scalar activation converters of arch/scalar.c, exported so SIMD tables can
 * reuse them for the types they do not speed up. Each equals
 * deepc_quantize_row(type, x, y, n). */
void deepc_scalar_quantize_f32(const float *x, void *y, size_t n);
void deepc_scalar_quantize_f16(const float *x, void *y, size_t n);
void deepc_scalar_quantize_bf16(const float *x, void *y, size_t n);
void deepc_scalar_quantize_q8_0(const float *x, void *y, size_t n);

/* Weight-only types have reference converters in every table so it has no
 * hole; SIMD backends share these. */
void deepc_scalar_quantize_q4_k(const float *x, void *y, size_t n);
void deepc_scalar_quantize_q3_k(const float *x, void *y, size_t n);
void deepc_scalar_quantize_q2_k(const float *x, void *y, size_t n);
void deepc_scalar_quantize_fp8_b128(const float *x, void *y, size_t n);
void deepc_scalar_quantize_q4_1(const float *x, void *y, size_t n);
void deepc_scalar_quantize_q6_k(const float *x, void *y, size_t n);

/* The scalar q6_k dot, for tables that have no faster one. */
float deepc_scalar_vec_dot_q6_k(size_t n, const void *w, const void *x);

/* Which activation type each weight type's vec_dot takes: a property of the
 * formats, the same in every backend table. */
#define DEEPC_ACT_TYPES                                         \
    .act_type = {                                               \
        [DEEPC_TYPE_F32]  = DEEPC_TYPE_F32,                     \
        [DEEPC_TYPE_F16]  = DEEPC_TYPE_F32,                     \
        [DEEPC_TYPE_BF16] = DEEPC_TYPE_F32,                     \
        [DEEPC_TYPE_Q8_0] = DEEPC_TYPE_Q8_0,                    \
        [DEEPC_TYPE_Q4_K] = DEEPC_TYPE_Q8_K,                    \
        [DEEPC_TYPE_Q3_K] = DEEPC_TYPE_Q8_K,                    \
        [DEEPC_TYPE_Q2_K] = DEEPC_TYPE_Q8_K,                    \
        [DEEPC_TYPE_FP8_B128] = DEEPC_TYPE_F32,                 \
        [DEEPC_TYPE_Q8_K] = DEEPC_TYPE_Q8_K,                    \
        [DEEPC_TYPE_Q4_1] = DEEPC_TYPE_Q8_0,                    \
        [DEEPC_TYPE_Q6_K] = DEEPC_TYPE_Q8_K,                    \
    }

/* ---- batched products and fp16 attention primitives ----------------------
 * arch/scalar_ops.c and arch/x86_*_ops.c (core/kernels.h says what each
 * computes). Each backend table takes its set with one line: the macro
 * DEEPC_OPS_SCALAR, DEEPC_OPS_AVX2, or DEEPC_OPS_AVX512 / DEEPC_OPS_AVX512_vnni
 * (named for the suffix x86_avx512.c's table macro pastes on). */
typedef void deepc_gemm_kernel(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                               size_t x_stride, float *y, size_t y_stride);
typedef float deepc_dot_f16_kernel(size_t n, const uint16_t *a, const float *b);
typedef void deepc_axpy_f16_kernel(size_t n, float alpha, const uint16_t *x, float *y);
typedef void deepc_dot_rows_f16_kernel(size_t n, size_t m, const uint16_t *a, size_t a_stride, const float *b,
                                       float *out);
typedef void deepc_axpy_rows_f16_kernel(size_t n, size_t m, const float *alpha, const uint16_t *x, size_t x_stride,
                                        float *y);

/* arch/scalar_ops.c: gemm is vec_dot per output (the definition the SIMD
 * ones are held to); the cache kernels are plain loops */
deepc_gemm_kernel deepc_scalar_gemm_f32, deepc_scalar_gemm_f16, deepc_scalar_gemm_bf16, deepc_scalar_gemm_q8_0;
deepc_gemm_kernel deepc_scalar_gemm_q4_k, deepc_scalar_gemm_q3_k, deepc_scalar_gemm_q2_k, deepc_scalar_gemm_q4_1;
deepc_gemm_kernel deepc_scalar_gemm_q6_k;
deepc_dot_f16_kernel deepc_scalar_dot_f16_f32;
deepc_axpy_f16_kernel deepc_scalar_axpy_f16_f32;
deepc_dot_rows_f16_kernel deepc_scalar_dot_rows_f16_f32;
deepc_axpy_rows_f16_kernel deepc_scalar_axpy_rows_f16_f32;
void deepc_scalar_swiglu(float *g, const float *u, size_t n);

#define DEEPC_OPS_SCALAR                                                                            \
    .gemm = { [DEEPC_TYPE_F32] = deepc_scalar_gemm_f32, [DEEPC_TYPE_F16] = deepc_scalar_gemm_f16,  \
              [DEEPC_TYPE_BF16] = deepc_scalar_gemm_bf16, [DEEPC_TYPE_Q8_0] = deepc_scalar_gemm_q8_0, \
              [DEEPC_TYPE_Q4_K] = deepc_scalar_gemm_q4_k, [DEEPC_TYPE_Q3_K] = deepc_scalar_gemm_q3_k, \
              [DEEPC_TYPE_Q2_K] = deepc_scalar_gemm_q2_k, [DEEPC_TYPE_Q4_1] = deepc_scalar_gemm_q4_1,   \
              [DEEPC_TYPE_Q6_K] = deepc_scalar_gemm_q6_k },                                             \
    .dot_f16_f32 = deepc_scalar_dot_f16_f32, .axpy_f16_f32 = deepc_scalar_axpy_f16_f32,            \
    .dot_rows_f16_f32 = deepc_scalar_dot_rows_f16_f32, .axpy_rows_f16_f32 = deepc_scalar_axpy_rows_f16_f32, \
    .swiglu = deepc_scalar_swiglu

#if defined(__x86_64__) || defined(__i386__)
/* arch/x86_avx2_ops.c. Its Q8_0 gemm equals the avx2 table's vec_dot bit for
 * bit, and the avx512 table's (whose Q8_0 dot has the same arithmetic), so
 * "avx512", which must not use VNNI, takes it too. */
deepc_gemm_kernel deepc_avx2_gemm_q8_0, deepc_avx2_gemm_q4_k, deepc_avx2_gemm_q3_k, deepc_avx2_gemm_q2_k;
/* arch/x86_avx2_q4_1.c, arch/x86_avx512_q4_1.c: each equals its own table's
 * q4_1 vec_dot bit for bit */
deepc_gemm_kernel deepc_avx2_gemm_q4_1, deepc_avx512_gemm_q4_1, deepc_avx512vnni_gemm_q4_1;
deepc_dot_f16_kernel deepc_avx2_dot_f16_f32;
deepc_axpy_f16_kernel deepc_avx2_axpy_f16_f32;
deepc_dot_rows_f16_kernel deepc_avx2_dot_rows_f16_f32;
deepc_axpy_rows_f16_kernel deepc_avx2_axpy_rows_f16_f32;
void deepc_avx2_swiglu(float *g, const float *u, size_t n);
/* arch/x86_avx512_ops.c */
deepc_gemm_kernel deepc_avx512vnni_gemm_q8_0;
deepc_gemm_kernel deepc_avx512_gemm_q3_k, deepc_avx512_gemm_q2_k;
deepc_gemm_kernel deepc_avx512vnni_gemm_q3_k, deepc_avx512vnni_gemm_q2_k;
/* arch/x86_avx512_q4_k.c: each equals its own table's q4_k vec_dot (same
 * file) bit for bit */
deepc_gemm_kernel deepc_avx512_gemm_q4_k, deepc_avx512vnni_gemm_q4_k;
/* arch/x86_avx512_q6_k.c, arch/x86_avx2_q6_k.c: each equals its own table's
 * q6_k vec_dot bit for bit */
deepc_gemm_kernel deepc_avx512_gemm_q6_k, deepc_avx512vnni_gemm_q6_k, deepc_avx2_gemm_q6_k;
deepc_dot_f16_kernel deepc_avx512_dot_f16_f32;
deepc_axpy_f16_kernel deepc_avx512_axpy_f16_f32;
deepc_dot_rows_f16_kernel deepc_avx512_dot_rows_f16_f32;
deepc_axpy_rows_f16_kernel deepc_avx512_axpy_rows_f16_f32;
void deepc_avx512_swiglu(float *g, const float *u, size_t n);

#define DEEPC_OPS_AVX2                                                                              \
    .gemm = { [DEEPC_TYPE_Q8_0] = deepc_avx2_gemm_q8_0, [DEEPC_TYPE_Q4_K] = deepc_avx2_gemm_q4_k,        \
              [DEEPC_TYPE_Q3_K] = deepc_avx2_gemm_q3_k, [DEEPC_TYPE_Q2_K] = deepc_avx2_gemm_q2_k,      \
              [DEEPC_TYPE_Q4_1] = deepc_avx2_gemm_q4_1, [DEEPC_TYPE_Q6_K] = deepc_avx2_gemm_q6_k },      \
    .dot_f16_f32 = deepc_avx2_dot_f16_f32, .axpy_f16_f32 = deepc_avx2_axpy_f16_f32,                \
    .dot_rows_f16_f32 = deepc_avx2_dot_rows_f16_f32, .axpy_rows_f16_f32 = deepc_avx2_axpy_rows_f16_f32, \
    .swiglu = deepc_avx2_swiglu
#define DEEPC_OPS_AVX512_FP16                                                                       \
    .dot_f16_f32 = deepc_avx512_dot_f16_f32, .axpy_f16_f32 = deepc_avx512_axpy_f16_f32,            \
    .dot_rows_f16_f32 = deepc_avx512_dot_rows_f16_f32, .axpy_rows_f16_f32 = deepc_avx512_axpy_rows_f16_f32, \
    .swiglu = deepc_avx512_swiglu
#define DEEPC_OPS_AVX512                                                                            \
    .gemm = { [DEEPC_TYPE_Q8_0] = deepc_avx2_gemm_q8_0, [DEEPC_TYPE_Q4_K] = deepc_avx512_gemm_q4_k,      \
              [DEEPC_TYPE_Q3_K] = deepc_avx512_gemm_q3_k, [DEEPC_TYPE_Q2_K] = deepc_avx512_gemm_q2_k,  \
              [DEEPC_TYPE_Q4_1] = deepc_avx512_gemm_q4_1, [DEEPC_TYPE_Q6_K] = deepc_avx512_gemm_q6_k },    \
    DEEPC_OPS_AVX512_FP16
#define DEEPC_OPS_AVX512_vnni                                                                            \
    .gemm = { [DEEPC_TYPE_Q8_0] = deepc_avx512vnni_gemm_q8_0, [DEEPC_TYPE_Q4_K] = deepc_avx512vnni_gemm_q4_k, \
              [DEEPC_TYPE_Q3_K] = deepc_avx512vnni_gemm_q3_k, [DEEPC_TYPE_Q2_K] = deepc_avx512vnni_gemm_q2_k, \
              [DEEPC_TYPE_Q4_1] = deepc_avx512vnni_gemm_q4_1, [DEEPC_TYPE_Q6_K] = deepc_avx512vnni_gemm_q6_k }, \
    DEEPC_OPS_AVX512_FP16
#endif

#if defined(__aarch64__)
/* arch/neon_ops.c. The NEON tables are built at start-up from the scalar one
 * (arch/neon_kernels.c), so they set these fields there instead of through a
 * DEEPC_OPS_* initializer. Each Q8_0 gemm equals its table's vec_dot bit for
 * bit ("neon": baseline integer dots, "neon-dotprod": SDOT); both tables
 * share the fp16 cache kernels. */
deepc_gemm_kernel deepc_neon_gemm_q8_0, deepc_neon_dotprod_gemm_q8_0;
deepc_dot_f16_kernel deepc_neon_dot_f16_f32;
deepc_axpy_f16_kernel deepc_neon_axpy_f16_f32;
deepc_dot_rows_f16_kernel deepc_neon_dot_rows_f16_f32;
deepc_axpy_rows_f16_kernel deepc_neon_axpy_rows_f16_f32;
#endif

#endif
