/* kernbench.c - single-thread matrix-vector throughput of every vec_dot
 * kernel, in GB/s of weight bytes read (GB = 10^9 bytes).
 *
 * Usage: kernbench [--pool-mib N] [--isa NAME] [--type NAME]
 *
 * For each backend the CPU supports and each weight type, a 4096 x 4096
 * matrix times one activation row (converted to the backend's activation
 * type), one vec_dot per row, as decode does it:
 *   dram   - consecutive products walk a pool of distinct matrices (default
 *            512 MiB, far larger than any L3), so weights stream from memory;
 *   cache  - one 64 x 4096 slice re-read (at most 1 MiB: L2-resident), the
 *            kernel's own speed with memory out of the way.
 * Reference lines: a plain 64-bit read loop and libc's memchr over the pool
 * (what one core can pull from memory with no arithmetic to do).
 *
 * --gemm ROWS,COLS,TOKENS instead times the batched product (prefill) of
 * every table (those without a gemm for the type: their vec_dot per output,
 * as core falls back to, marked as such): a ROWS x COLS matrix times
 * TOKENS activation rows, in billions of multiply-adds per second of thread
 * CPU time (which a busy, time-sliced machine distorts less than wall time),
 * the median and 90th percentile of many passes.
 * Each figure is the best of several timed passes; the last column turns
 * the cache figure into billions of weights per second (GB/s over bytes per
 * weight), which compares kernels of different widths. A benchmark, not a
 * test: it never fails on speed. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"
#include "quant.h"
#include "../../arch/cpu.h"

#define ROWS 4096
#define COLS 4096
#define CACHE_ROWS 64

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t rng_next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static float rng_float(void) { /* [-1, 1) */
    return (float)((double)(rng_next() >> 40) * 0x1p-23 - 1.0);
}

/* Fills a weight buffer of `bytes` bytes of type t with finite, normal
 * values quickly (no per-element quantizer for hundreds of MiB). */
static void fill_weights(deepc_type t, unsigned char *p, size_t bytes) {
    switch (t) {
    case DEEPC_TYPE_F32:
        for (size_t i = 0; i + 4 <= bytes; i += 4) {
            float f = rng_float();
            memcpy(p + i, &f, 4);
        }
        break;
    case DEEPC_TYPE_F16:
    case DEEPC_TYPE_BF16:
        for (size_t i = 0; i + 2 <= bytes; i += 2) {
            float f = rng_float();
            uint16_t h = t == DEEPC_TYPE_F16 ? deepc_fp32_to_fp16(f) : deepc_fp32_to_bf16(f);
            memcpy(p + i, &h, 2);
        }
        break;
    case DEEPC_TYPE_Q8_0: {
        deepc_block_q8_0 *b = (deepc_block_q8_0 *)p;
        for (size_t i = 0; i < bytes / sizeof *b; i++) {
            uint64_t r = 0;
            for (int j = 0; j < DEEPC_QK8_0; j++) {
                if (j % 8 == 0) r = rng_next();
                b[i].qs[j] = (int8_t)((int)(r & 0xff) % 255 - 127);
                r >>= 8;
            }
            b[i].d = deepc_fp32_to_fp16(0.01f + 0.001f * (float)(i % 7));
        }
        break;
    }
    case DEEPC_TYPE_Q4_K:
    case DEEPC_TYPE_Q4_1:
    case DEEPC_TYPE_Q3_K:
    case DEEPC_TYPE_Q2_K:
    case DEEPC_TYPE_FP8_B128:
    case DEEPC_TYPE_Q8_K:
    case DEEPC_TYPE_Q6_K: {
        /* random codes and packed sub-block scales; then finite super-scales
         * (fp8: codes without the NaN patterns; q8_k: no -128) */
        size_t bb = deepc_type_info(t)->block_bytes;
        for (size_t i = 0; i + 8 <= bytes; i += 8) {
            uint64_t r = rng_next();
            memcpy(p + i, &r, 8);
        }
        uint16_t d = deepc_fp32_to_fp16(0.01f), dmin = deepc_fp32_to_fp16(0.002f);
        for (size_t b = 0; b + bb <= bytes; b += bb) {
            unsigned char *blk = p + b;
            if (t == DEEPC_TYPE_Q4_K || t == DEEPC_TYPE_Q4_1) { /* d, then dmin / m */
                memcpy(blk, &d, 2);
                memcpy(blk + 2, &dmin, 2);
            } else if (t == DEEPC_TYPE_Q3_K) {
                memcpy(blk + 108, &d, 2);
            } else if (t == DEEPC_TYPE_Q2_K) {
                memcpy(blk + 80, &d, 2);
                memcpy(blk + 82, &dmin, 2);
            } else if (t == DEEPC_TYPE_Q6_K) {
                memcpy(blk + 208, &d, 2);
            } else {
                float f = 0.01f;
                memcpy(blk, &f, 4);
                for (size_t j = 4; j < bb && j < 4 + DEEPC_QK_K; j++) {
                    if (t == DEEPC_TYPE_FP8_B128 && (blk[j] & 0x7f) == 0x7f) blk[j] ^= 1;
                    if (t == DEEPC_TYPE_Q8_K && blk[j] == 0x80) blk[j] = 0x81;
                }
            }
        }
        break;
    }
    default:
        break;
    }
}

/* One matrix-vector product over `rows` rows; returns a checksum so the
 * calls cannot be optimized away. */
static float matvec(deepc_vec_dot_fn dot, const unsigned char *w, size_t row_bytes, int rows, const void *x) {
    float acc = 0.0f;
    for (int r = 0; r < rows; r++) acc += dot(COLS, w + (size_t)r * row_bytes, x);
    return acc;
}

static volatile float sink;
static volatile uint64_t isink;

/* Best GB/s of timed passes: at least min_passes, then more while under
 * budget_s (and at most 20). A pass = `mats` products, walking the pool. */
static double bench(deepc_vec_dot_fn dot, const unsigned char *pool, size_t mat_bytes, size_t row_bytes, int rows,
                    size_t mats, const void *x, double budget_s) {
    double best = 0.0, start = now_s();
    sink = matvec(dot, pool, row_bytes, rows, x); /* warm up code and TLB */
    for (int pass = 0; pass < 20; pass++) {
        double t0 = now_s();
        float acc = 0.0f;
        for (size_t m = 0; m < mats; m++) acc += matvec(dot, pool + m * mat_bytes, row_bytes, rows, x);
        double t = now_s() - t0;
        sink = acc;
        double gbs = (double)mats * (double)rows * (double)row_bytes / t / 1e9;
        if (gbs > best) best = gbs;
        if (pass >= 2 && now_s() - start > budget_s) break;
    }
    return best;
}

/* Reference lines for what one core can pull from memory with no arithmetic
 * to do: a plain loop of 64-bit loads (this file gets no -m flags), and
 * memchr over the zeroed pool, which libc implements with its widest vector
 * loads. Best of five passes each. */
static double read_bandwidth_u64(const unsigned char *pool, size_t bytes) {
    double best = 0.0;
    for (int pass = 0; pass < 5; pass++) {
        const uint64_t *p = (const uint64_t *)pool;
        size_t n = bytes / 8;
        uint64_t a = 0, b = 0, c = 0, d = 0;
        double t0 = now_s();
        for (size_t i = 0; i + 4 <= n; i += 4) {
            a += p[i];
            b ^= p[i + 1];
            c += p[i + 2];
            d ^= p[i + 3];
        }
        double t = now_s() - t0;
        isink = a + b + c + d;
        if ((double)bytes / t / 1e9 > best) best = (double)bytes / t / 1e9;
    }
    return best;
}

static double read_bandwidth_memchr(const unsigned char *pool, size_t bytes) {
    double best = 0.0;
    for (int pass = 0; pass < 5; pass++) {
        double t0 = now_s();
        const void *hit = memchr(pool, 1, bytes);
        double t = now_s() - t0;
        isink = (uint64_t)(hit != NULL);
        if ((double)bytes / t / 1e9 > best) best = (double)bytes / t / 1e9;
    }
    return best;
}

static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* GMAC/s of the gemm over rows x cols x ntok: the median and the 90th
 * percentile of passes (at least 5, at most 200, until 1 s of CPU time).
 * Not the best pass: on a shared VM the thread clock now and then misses
 * time the thread spent descheduled, and the best can be such an outlier;
 * the median moves with the neighbours' load. The weights are filled randomly (as for the
 * matvec), the activations quantized from random floats. */
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* What core does for a type whose table has no gemm: one vec_dot per
 * output, token by token (the "before" line a new gemm is measured against). */
static deepc_vec_dot_fn loop_dot;
static void vec_dot_loop(int nrows, int ntok, size_t n, const void *w, size_t w_stride, const void *x,
                         size_t x_stride, float *y, size_t y_stride) {
    for (int j = 0; j < ntok; j++)
        for (int r = 0; r < nrows; r++)
            y[(size_t)j * y_stride + (size_t)r] =
                loop_dot(n, (const unsigned char *)w + (size_t)r * w_stride, (const unsigned char *)x + (size_t)j * x_stride);
}

static int bench_gemm(const char *only_isa, int only_type, int rows, int cols, int ntok,
                      const char *const *isa_names, size_t n_isa) {
    float *xf = malloc((size_t)ntok * (size_t)cols * sizeof *xf);
    float *y = malloc((size_t)ntok * (size_t)rows * sizeof *y);
    if (!xf || !y) return 1;
    for (size_t i = 0; i < (size_t)ntok * (size_t)cols; i++) xf[i] = rng_float();
    printf("%d x %d matrix times %d tokens, 1 thread, GMAC/s of thread CPU time\n", rows, cols, ntok);
    printf("%-11s %-8s %9s %9s\n", "isa", "type", "median", "p90");
    for (int t = 0; t < DEEPC_TYPE_COUNT; t++) {
        if (only_type >= 0 && t != only_type) continue;
        const deepc_type_traits *ti = deepc_type_info((deepc_type)t);
        if (cols % (int)ti->block_elems != 0) continue;
        size_t row_bytes = deepc_type_row_bytes((deepc_type)t, (size_t)cols);
        unsigned char *w = aligned_alloc(64, (row_bytes * (size_t)rows + 63) / 64 * 64);
        if (!w) return 1;
        fill_weights((deepc_type)t, w, row_bytes * (size_t)rows);
        for (size_t i = 0; i < n_isa; i++) {
            if (only_isa && strcmp(only_isa, isa_names[i]) != 0) continue;
            const deepc_kernels *k = deepc_kernels_select(isa_names[i]);
            if (!k) continue;
            deepc_gemm_fn gemm = k->gemm[t];
            if (!gemm) { /* no batched kernel: time the vec_dot loop instead */
                loop_dot = k->vec_dot[t];
                gemm = vec_dot_loop;
            }
            deepc_type at = k->act_type[t];
            size_t x_stride = deepc_type_row_bytes(at, (size_t)cols);
            unsigned char *x = malloc(x_stride * (size_t)ntok);
            if (!x) return 1;
            for (int j = 0; j < ntok; j++) {
                const float *src = xf + (size_t)j * (size_t)cols;
                if (at == DEEPC_TYPE_F32) memcpy(x + (size_t)j * x_stride, src, x_stride);
                else deepc_quantize_row(at, src, x + (size_t)j * x_stride, (size_t)cols);
            }
            double g[200], spent = 0.0;
            int passes = 0;
            gemm(rows, ntok, (size_t)cols, w, row_bytes, x, x_stride, y, (size_t)rows); /* warm up */
            while (passes < 200 && (passes < 5 || spent < 1.0)) {
                double t0 = thread_cpu_s();
                gemm(rows, ntok, (size_t)cols, w, row_bytes, x, x_stride, y, (size_t)rows);
                double dt = thread_cpu_s() - t0;
                spent += dt;
                sink = y[0];
                g[passes++] = (double)rows * (double)cols * (double)ntok / dt / 1e9;
            }
            qsort(g, (size_t)passes, sizeof g[0], cmp_double);
            printf("%-11s %-8s %9.1f %9.1f%s\n", isa_names[i], ti->name, g[passes / 2], g[passes * 9 / 10],
                   gemm == vec_dot_loop ? "  (no gemm: vec_dot loop)" : "");
            fflush(stdout);
            free(x);
        }
        free(w);
    }
    free(xf);
    free(y);
    return 0;
}

static int usage(void) {
    fprintf(stderr, "usage: kernbench [--pool-mib N] [--isa NAME] [--type f32|f16|bf16|q8_0|q4_k|q3_k|q2_k|fp8_b128|q8_k|q4_1|q6_k]\n"
                    "                 [--gemm ROWS,COLS,TOKENS]\n");
    return 2;
}

int main(int argc, char **argv) {
    size_t pool_mib = 512;
    const char *only_isa = NULL;
    int only_type = -1, g_rows = 0, g_cols = 0, g_tok = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--pool-mib") && i + 1 < argc) {
            pool_mib = (size_t)strtoul(argv[++i], NULL, 10);
            if (pool_mib < 64 || pool_mib > 65536) return usage();
        } else if (!strcmp(argv[i], "--isa") && i + 1 < argc) {
            only_isa = argv[++i];
        } else if (!strcmp(argv[i], "--type") && i + 1 < argc) {
            only_type = deepc_type_from_name(argv[++i]);
            if (only_type < 0) return usage();
        } else if (!strcmp(argv[i], "--gemm") && i + 1 < argc) {
            if (sscanf(argv[++i], "%d,%d,%d", &g_rows, &g_cols, &g_tok) != 3 || g_rows < 1 || g_cols < 1 ||
                g_tok < 1 || g_rows > 1 << 20 || g_cols > 1 << 20 || g_tok > 4096)
                return usage();
        } else {
            return usage();
        }
    }
    static const char *const isa_names[] = { "scalar", "avx2", "avx512", "avx512vnni" };
    if (g_rows) {
        printf("cpu: %s\n", deepc_cpu_describe());
        return bench_gemm(only_isa, only_type, g_rows, g_cols, g_tok, isa_names, sizeof isa_names / sizeof isa_names[0]);
    }

    size_t pool_bytes = pool_mib << 20;
    unsigned char *pool = aligned_alloc(64, pool_bytes);
    if (!pool) {
        fprintf(stderr, "kernbench: cannot allocate %zu MiB\n", pool_mib);
        return 1;
    }
    memset(pool, 0, pool_bytes); /* touch every page before timing */

    printf("cpu: %s\n", deepc_cpu_describe());
    printf("memory read, 1 thread, %zu MiB: %.1f GB/s (64-bit loads), %.1f GB/s (libc memchr)\n", pool_mib,
           read_bandwidth_u64(pool, pool_bytes), read_bandwidth_memchr(pool, pool_bytes));
    printf("4096 x 4096 matrix-vector product, 1 thread, GB/s of weight bytes\n");
    printf("%-11s %-8s %9s %9s %11s\n", "isa", "type", "dram", "cache", "cache Gw/s");

    static float xf[COLS];
    static deepc_block_q8_0 xq[COLS / DEEPC_QK8_0];
    static deepc_block_q8_k xk[COLS / DEEPC_QK_K];
    for (int i = 0; i < COLS; i++) xf[i] = rng_float();
    deepc_quantize_row(DEEPC_TYPE_Q8_0, xf, xq, COLS);
    deepc_quantize_row(DEEPC_TYPE_Q8_K, xf, xk, COLS);

    for (int t = 0; t < DEEPC_TYPE_COUNT; t++) {
        if (only_type >= 0 && t != only_type) continue;
        size_t row_bytes = deepc_type_row_bytes((deepc_type)t, COLS);
        size_t mat_bytes = row_bytes * ROWS;
        size_t mats = pool_bytes / mat_bytes;
        if (mats == 0) mats = 1;
        fill_weights((deepc_type)t, pool, mats * mat_bytes);
        for (size_t i = 0; i < sizeof isa_names / sizeof isa_names[0]; i++) {
            if (only_isa && strcmp(only_isa, isa_names[i]) != 0) continue;
            const deepc_kernels *k = deepc_kernels_select(isa_names[i]);
            if (!k) {
                printf("%-11s %-8s %9s %9s %11s\n", isa_names[i], deepc_type_info(t)->name, "n/a", "n/a", "n/a");
                continue;
            }
            deepc_type at = k->act_type[t];
            const void *x = at == DEEPC_TYPE_Q8_0 ? (const void *)xq : at == DEEPC_TYPE_Q8_K ? (const void *)xk : (const void *)xf;
            double dram = bench(k->vec_dot[t], pool, mat_bytes, row_bytes, ROWS, mats, x, 2.0);
            double cache = bench(k->vec_dot[t], pool, 0, row_bytes, CACHE_ROWS, 256, x, 0.5);
            /* weights per second: GB/s over bytes per weight, comparable across types */
            printf("%-11s %-8s %9.1f %9.1f %11.2f\n", isa_names[i], deepc_type_info(t)->name, dram, cache,
                   cache / ((double)row_bytes / COLS));
            fflush(stdout);
        }
    }
    free(pool);
    return 0;
}
