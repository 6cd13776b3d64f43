/* kernels.h - the dispatch table through which core/ calls every compute
 * kernel. One table per backend (arch/); chosen once at start-up from CPU
 * features, overridable with DEEPC_ISA=scalar|avx2|avx512|avx512vnni|neon.
 * Every backend computes the same values as scalar up to fp32 summation order
 * (integer block dots exactly); test/test_kernels.c holds them to that. */
#ifndef DEEPC_KERNELS_H
#define DEEPC_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include "quant.h"

/* Dot product of one weight row w (n elements of the weight type) with an
 * activation x already converted to act_type[weight type] (n elements). */
typedef float (*deepc_vec_dot_fn)(size_t n, const void *w, const void *x);

/* Converts n floats x into a row of type t (dst: deepc_type_row_bytes(t, n)
 * bytes, any alignment for the float types). Bit-identical to
 * deepc_quantize_row(t, x, dst, n) in every backend; SIMD backends just do it
 * faster (Q8_0 activations are quantized once per matrix product). */
typedef void (*deepc_quantize_fn)(const float *x, void *dst, size_t n);

/* Batched product (prefill): y[j*y_stride + i] = W[i] . x[j] for i < nrows,
 * j < ntok. W's rows (weight type) are w_stride bytes apart, x's rows (the
 * activation type, as for vec_dot) x_stride bytes apart; y_stride counts
 * floats. Every output is bit-identical to vec_dot(n, W[i], x[j]) of the same
 * table: the kernel only changes how often each byte is loaded (weight blocks
 * reused across tokens, activation blocks across rows), never the arithmetic
 * of one output. Results therefore do not depend on how callers split rows or
 * tokens. No allocation; up to ~56 KiB of stack. */
typedef void (*deepc_gemm_fn)(int nrows, int ntok, size_t n, const void *w, size_t w_stride,
                              const void *x, size_t x_stride, float *y, size_t y_stride);

/* Attention over the fp16 KV cache: a . b with a fp16 (n elements, any
 * alignment), b fp32; equal to the scalar backend up to fp32 summation order. */
typedef float (*deepc_dot_f16_f32_fn)(size_t n, const uint16_t *a, const float *b);
/* y[i] += alpha * x[i] with x fp16: the product rounded to fp32, then the sum
 * (no fused multiply-add), so every backend gives the scalar result bit for
 * bit. */
typedef void (*deepc_axpy_f16_f32_fn)(size_t n, float alpha, const uint16_t *x, float *y);
/* Row forms over m cache rows x_stride / a_stride elements apart, one query
 * or output row: out[p] = dot_f16_f32(n, a + p*a_stride, b), and m calls
 * axpy_f16_f32(n, alpha[p], x + p*x_stride, y) in row order; the same bits
 * as those calls, with the call overhead gone and y kept in registers. */
typedef void (*deepc_dot_rows_f16_f32_fn)(size_t n, size_t m, const uint16_t *a, size_t a_stride, const float *b,
                                          float *out);
typedef void (*deepc_axpy_rows_f16_f32_fn)(size_t n, size_t m, const float *alpha, const uint16_t *x,
                                           size_t x_stride, float *y);

/* SwiGLU in place: g[i] = silu(g[i]) * u[i] = g / (1 + e^-g) * u. The
 * scalar table's uses libm's expf; SIMD tables evaluate e^-g with their own
 * polynomial, within a few ulp of it (test/test_ops.c states the bound). */
typedef void (*deepc_swiglu_fn)(float *g, const float *u, size_t n);

typedef struct deepc_kernels {
    const char *name;                            /* "scalar", "avx2", ... */
    deepc_vec_dot_fn vec_dot[DEEPC_TYPE_COUNT];
    deepc_type act_type[DEEPC_TYPE_COUNT];       /* F32 for float weights, Q8_0 for q8_0 */
    deepc_quantize_fn quantize_act[DEEPC_TYPE_COUNT]; /* indexed by the target type; never NULL */
    /* arch/scalar_ops.c, arch/x86_*_ops.c. gemm[t] NULL: no batched kernel
     * for type t, call vec_dot per output. The fp16 cache kernels NULL (a
     * backend without them): use the scalar table's. */
    deepc_gemm_fn gemm[DEEPC_TYPE_COUNT];
    deepc_dot_f16_f32_fn dot_f16_f32;
    deepc_axpy_f16_f32_fn axpy_f16_f32;
    deepc_dot_rows_f16_f32_fn dot_rows_f16_f32;
    deepc_axpy_rows_f16_f32_fn axpy_rows_f16_f32;
    deepc_swiglu_fn swiglu;                      /* never NULL */
} deepc_kernels;

const deepc_kernels *deepc_kernels_scalar(void);
/* Best table for this CPU; `force` (may be NULL) names one explicitly.
 * Returns NULL if the forced one is unknown or unsupported here. */
const deepc_kernels *deepc_kernels_select(const char *force);

#endif
