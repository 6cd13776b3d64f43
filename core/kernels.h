/* kernels.h - the dispatch table through which core/ calls every compute
 * kernel. One table per backend (arch/); chosen once at start-up from CPU
 * features, overridable with DEEPC_ISA=scalar|avx2|avx512|avx512vnni|neon.
 * Every backend computes the same values as scalar up to fp32 summation order
 * (integer block dots exactly); test/test_kernels.c holds them to that. */
#ifndef DEEPC_KERNELS_H
#define DEEPC_KERNELS_H

#include <stddef.h>
#include "quant.h"

/* Dot product of one weight row w (n elements of the weight type) with an
 * activation x already converted to act_type[weight type] (n elements). */
typedef float (*deepc_vec_dot_fn)(size_t n, const void *w, const void *x);

/* Converts n floats x into a row of type t (dst: deepc_type_row_bytes(t, n)
 * bytes, any alignment for the float types). Bit-identical to
 * deepc_quantize_row(t, x, dst, n) in every backend; SIMD backends just do it
 * faster (Q8_0 activations are quantized once per matrix product). */
typedef void (*deepc_quantize_fn)(const float *x, void *dst, size_t n);

typedef struct deepc_kernels {
    const char *name;                            /* "scalar", "avx2", ... */
    deepc_vec_dot_fn vec_dot[DEEPC_TYPE_COUNT];
    deepc_type act_type[DEEPC_TYPE_COUNT];       /* F32 for float weights, Q8_0 for q8_0 */
    deepc_quantize_fn quantize_act[DEEPC_TYPE_COUNT]; /* indexed by the target type; never NULL */
} deepc_kernels;

const deepc_kernels *deepc_kernels_scalar(void);
/* Best table for this CPU; `force` (may be NULL) names one explicitly.
 * Returns NULL if the forced one is unknown or unsupported here. */
const deepc_kernels *deepc_kernels_select(const char *force);

#endif
