/* scalar_ops.c - the scalar twins of the kernels in arch/x86_*_ops.c: the
 * batched matrix product (gemm) and the fp16 KV-cache primitives the attention
 * uses (dot_f16_f32, axpy_f16_f32). Plain loops, compiled with no -m flags,
 * the reference the SIMD versions are tested against (test/test_ops.c).
 *
 * gemm here is vec_dot per output, tiled so a block of weight rows is reused
 * across tokens while it is in cache; each output is exactly the table's
 * vec_dot, which is what makes the batched path of every backend comparable
 * bit for bit with its one-token path. */
#include "cpu.h"

#include <math.h>
#include <string.h>

/* ---- gemm: vec_dot per output ------------------------------------------ */

/* Rows of a block stay in L2 while every token passes over them. */
#define SCALAR_GEMM_ROWS 16

static void gemm_by_vec_dot(deepc_vec_dot_fn dot, int nrows, int ntok, size_t n, const void *w, size_t w_stride,
                            const void *x, size_t x_stride, float *y, size_t y_stride) {
    const unsigned char *wb = w, *xb = x;
    for (int r0 = 0; r0 < nrows; r0 += SCALAR_GEMM_ROWS) {
        int r1 = r0 + SCALAR_GEMM_ROWS < nrows ? r0 + SCALAR_GEMM_ROWS : nrows;
        for (int t = 0; t < ntok; t++)
            for (int r = r0; r < r1; r++)
                y[(size_t)t * y_stride + (size_t)r] = dot(n, wb + (size_t)r * w_stride, xb + (size_t)t * x_stride);
    }
}

/* The scalar table's gemm of each type: its own vec_dot per output. */
#define SCALAR_GEMM(name, type)                                                                        \
    void deepc_scalar_gemm_##name(int nrows, int ntok, size_t n, const void *w, size_t w_stride,      \
                                  const void *x, size_t x_stride, float *y, size_t y_stride) {         \
        gemm_by_vec_dot(deepc_kernels_scalar()->vec_dot[type], nrows, ntok, n, w, w_stride, x, x_stride, \
                        y, y_stride);                                                                  \
    }
SCALAR_GEMM(f32, DEEPC_TYPE_F32)
SCALAR_GEMM(f16, DEEPC_TYPE_F16)
SCALAR_GEMM(bf16, DEEPC_TYPE_BF16)
SCALAR_GEMM(q8_0, DEEPC_TYPE_Q8_0)
SCALAR_GEMM(q4_k, DEEPC_TYPE_Q4_K)
SCALAR_GEMM(q3_k, DEEPC_TYPE_Q3_K)
SCALAR_GEMM(q2_k, DEEPC_TYPE_Q2_K)
SCALAR_GEMM(q4_1, DEEPC_TYPE_Q4_1)
SCALAR_GEMM(q6_k, DEEPC_TYPE_Q6_K)

/* ---- fp16 KV cache ------------------------------------------------------ */

/* Cache rows are read through memcpy so any alignment works. */
static float f16_at(const uint16_t *p, size_t i) {
    uint16_t h;
    memcpy(&h, (const unsigned char *)p + 2 * i, sizeof h);
    return deepc_fp16_to_fp32(h);
}

/* One accumulator in element order. */
float deepc_scalar_dot_f16_f32(size_t n, const uint16_t *a, const float *b) {
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) sum += f16_at(a, i) * b[i];
    return sum;
}

/* The product and the sum are separate statements: no compiler may fuse them
 * into one rounding (clang's default contraction works within an
 * expression), so SIMD versions that multiply then add match bit for bit. */
void deepc_scalar_axpy_f16_f32(size_t n, float alpha, const uint16_t *x, float *y) {
    for (size_t i = 0; i < n; i++) {
        float p = alpha * f16_at(x, i);
        y[i] += p;
    }
}

/* The row forms: m calls of the above, in row order. */
void deepc_scalar_dot_rows_f16_f32(size_t n, size_t m, const uint16_t *a, size_t a_stride, const float *b, float *out) {
    for (size_t p = 0; p < m; p++) out[p] = deepc_scalar_dot_f16_f32(n, a + p * a_stride, b);
}

void deepc_scalar_axpy_rows_f16_f32(size_t n, size_t m, const float *alpha, const uint16_t *x, size_t x_stride,
                                    float *y) {
    for (size_t p = 0; p < m; p++) deepc_scalar_axpy_f16_f32(n, alpha[p], x + p * x_stride, y);
}

/* ---- SwiGLU --------------------------------------------------------------- */

void deepc_scalar_swiglu(float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = g[i];
        g[i] = v / (1.0f + expf(-v)) * u[i];
    }
}
