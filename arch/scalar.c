/* scalar.c - the portable scalar backend (the reference every SIMD backend is
 * tested against) and the backend selector deepc_kernels_select().
 *
 * Kernels here are deliberately plain: one fp32 accumulator summed in element
 * order (or block order for Q8_0), so results are reproducible and easy to
 * reason about. They never allocate. Compiled with no -m flags. */
#include "kernels.h"
#include "cpu.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(deepc_block_q8_0) == 2 + DEEPC_QK8_0, "q8_0 block layout");

/* ---- vec_dot kernels ---------------------------------------------------- */

/* The 16-bit weights are read through memcpy so the kernels accept any
 * alignment; compilers turn this into a plain load. */
static uint16_t load_u16(const unsigned char *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static float vec_dot_f32(size_t n, const void *w, const void *x) {
    const float *a = w, *b = x;
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) sum += a[i] * b[i];
    return sum;
}

static float vec_dot_f16(size_t n, const void *w, const void *x) {
    const unsigned char *a = w;
    const float *b = x;
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) sum += deepc_fp16_to_fp32(load_u16(a + 2 * i)) * b[i];
    return sum;
}

static float vec_dot_bf16(size_t n, const void *w, const void *x) {
    const unsigned char *a = w;
    const float *b = x;
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) sum += deepc_bf16_to_fp32(load_u16(a + 2 * i)) * b[i];
    return sum;
}

/* Q8_0 weight x Q8_0 activation: exact integer dot per block (|sum| <= 32 *
 * 127 * 127, far inside int32), then scaled by d_w * d_x in fp32 and summed
 * over blocks in order. n must be a multiple of 32. */
static float vec_dot_q8_0(size_t n, const void *w, const void *x) {
    const deepc_block_q8_0 *a = w, *b = x;
    float sum = 0.0f;
    for (size_t ib = 0; ib < n / DEEPC_QK8_0; ib++) {
        int32_t isum = 0;
        for (int j = 0; j < DEEPC_QK8_0; j++) isum += (int32_t)a[ib].qs[j] * (int32_t)b[ib].qs[j];
        float d = deepc_fp16_to_fp32(a[ib].d) * deepc_fp16_to_fp32(b[ib].d);
        sum += (float)isum * d;
    }
    return sum;
}

/* ---- activation converters (deepc_quantize_row, one per type) ---------- */

void deepc_scalar_quantize_f32(const float *x, void *y, size_t n) {
    deepc_quantize_row(DEEPC_TYPE_F32, x, y, n);
}

void deepc_scalar_quantize_f16(const float *x, void *y, size_t n) {
    deepc_quantize_row(DEEPC_TYPE_F16, x, y, n);
}

void deepc_scalar_quantize_bf16(const float *x, void *y, size_t n) {
    deepc_quantize_row(DEEPC_TYPE_BF16, x, y, n);
}

void deepc_scalar_quantize_q8_0(const float *x, void *y, size_t n) {
    deepc_quantize_row(DEEPC_TYPE_Q8_0, x, y, n);
}

static const deepc_kernels scalar_kernels = {
    .name = "scalar",
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
        [DEEPC_TYPE_Q8_0] = deepc_scalar_quantize_q8_0,
    },
};

const deepc_kernels *deepc_kernels_scalar(void) {
    return &scalar_kernels;
}

/* ---- backend selection -------------------------------------------------- */

/* Candidate backends, best first. A SIMD backend adds one line here, guarded
 * by the same #if that makes the Makefile compile its file, with the feature
 * check (cpuid / hwcaps) living in an arch/cpu_*.c file. `supported` must be
 * cheap and thread-safe; it is called on every select.
 * "avx512" is the AVX-512 table without VNNI (Skylake-X class CPUs); on a
 * VNNI CPU the default is "avx512vnni", and DEEPC_ISA=avx512 still forces
 * the plain one, which is how its parity test runs there. */
typedef struct {
    const deepc_kernels *(*get)(void);
    bool (*supported)(void);
} backend;

static bool always_supported(void) {
    return true;
}

static const backend backends[] = {
#if defined(__x86_64__) || defined(__i386__)
    { deepc_kernels_avx512vnni, deepc_cpu_has_avx512vnni },
    { deepc_kernels_avx512,     deepc_cpu_has_avx512     },
    { deepc_kernels_avx2,       deepc_cpu_has_avx2       },
#endif
    { deepc_kernels_scalar, always_supported },   /* last: always works */
};

/* `force` names a backend; NULL falls back to $DEEPC_ISA; NULL or "" there
 * means the best supported one. An unknown or unsupported name yields NULL so
 * the caller can report it rather than silently run something else. */
const deepc_kernels *deepc_kernels_select(const char *force) {
    const char *name = force ? force : getenv("DEEPC_ISA");
    size_t n = sizeof backends / sizeof backends[0];
    for (size_t i = 0; i < n; i++) {
        const deepc_kernels *k = backends[i].get();
        if (name && name[0] && strcmp(name, k->name) != 0) continue;
        if (backends[i].supported()) return k;
        if (name && name[0]) return NULL; /* named but not usable on this CPU */
    }
    return NULL;
}
