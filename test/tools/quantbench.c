/* quantbench.c - single-thread speed of the weight quantizers (what
 * `deepc convert` spends its time on), in ns per weight, with the error
 * they leave so a faster quantizer that got worse shows up here too.
 *
 * Usage: quantbench [--n N] [--reps R] [--type NAME] [--imp]
 *
 * N weights (default 16M, rounded down to whole 256-element blocks) of
 * N(0, 0.02^2) from a fixed seed, quantized R times (default 3) per type
 * on one thread; default types q4_k, q3_k, q2_k and q8_0 for reference.
 * Reported per type: the best wall-clock pass and the thread CPU time of
 * that pass (on a shared machine the CPU figure is the steadier one), and
 * the weighted RMS error sqrt(sum w (y - x)^2 / sum w x^2) with w = x^2, or
 * with w = the importance vector under --imp (log-normal, fixed seed),
 * which the k-quant search then minimizes instead. A benchmark, not a test:
 * it never fails on speed. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t rng_next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static double rng_open01(void) { /* (0, 1) */
    return ((double)(rng_next() >> 11) + 0.5) * 0x1p-53;
}
static double rng_gauss(void) { /* Box-Muller */
    return sqrt(-2.0 * log(rng_open01())) * cos(6.283185307179586 * rng_open01());
}

static double now_s(clockid_t clk) {
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int usage(void) {
    fprintf(stderr, "usage: quantbench [--n N] [--reps R] [--type f16|bf16|q8_0|q6_k|q4_k|q3_k|q2_k|fp8_b128|q8_k] [--imp]\n");
    return 2;
}

int main(int argc, char **argv) {
    size_t n = 16u << 20;
    int reps = 3, only = -1;
    bool use_imp = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--n") && i + 1 < argc) {
            n = (size_t)strtoull(argv[++i], NULL, 10) / 256 * 256;
            if (n == 0) return usage();
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
            if (reps < 1) return usage();
        } else if (!strcmp(argv[i], "--type") && i + 1 < argc) {
            only = deepc_type_from_name(argv[++i]);
            if (only < 0 || only == DEEPC_TYPE_F32) return usage();
        } else if (!strcmp(argv[i], "--imp")) {
            use_imp = true;
        } else {
            return usage();
        }
    }
    static const deepc_type defaults[] = { DEEPC_TYPE_Q4_K, DEEPC_TYPE_Q3_K, DEEPC_TYPE_Q2_K, DEEPC_TYPE_Q8_0 };
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *imp = use_imp ? malloc(n * sizeof *imp) : NULL;
    void *q = malloc(n * sizeof(float)); /* enough for any type */
    if (!x || !y || !q || (use_imp && !imp)) {
        fprintf(stderr, "quantbench: cannot allocate %zu weights\n", n);
        return 1;
    }
    for (size_t i = 0; i < n; i++) x[i] = (float)(0.02 * rng_gauss());
    for (size_t i = 0; use_imp && i < n; i++) imp[i] = (float)exp(1.5 * rng_gauss());
    printf("%zu weights, N(0, 0.02^2), %s weights, best of %d, one thread\n", n, use_imp ? "log-normal importance" : "x^2", reps);
    printf("  type      wall ns/w   cpu ns/w   weighted RMS error\n");
    for (size_t ti = 0; ti < (only >= 0 ? 1 : sizeof defaults / sizeof defaults[0]); ti++) {
        deepc_type t = only >= 0 ? (deepc_type)only : defaults[ti];
        size_t blk = deepc_type_info((int)t)->block_elems, m = n / blk * blk;
        double best_wall = INFINITY, best_cpu = INFINITY;
        for (int r = 0; r < reps; r++) {
            double w0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_THREAD_CPUTIME_ID);
            deepc_quantize_row_imp(t, x, q, m, imp);
            double w1 = now_s(CLOCK_MONOTONIC), c1 = now_s(CLOCK_THREAD_CPUTIME_ID);
            if (w1 - w0 < best_wall) {
                best_wall = w1 - w0;
                best_cpu = c1 - c0;
            }
        }
        deepc_dequantize_row(t, q, y, m);
        double e = 0.0, sw = 0.0;
        for (size_t i = 0; i < m; i++) {
            double w = imp ? (double)imp[i] : (double)x[i] * x[i], d = (double)y[i] - x[i];
            e += w * d * d;
            sw += w * x[i] * x[i];
        }
        printf("  %-8s  %9.2f  %9.2f   %.6f\n", deepc_type_info((int)t)->name, 1e9 * best_wall / (double)m,
               1e9 * best_cpu / (double)m, sqrt(e / sw));
    }
    free(x);
    free(y);
    free(imp);
    free(q);
    return 0;
}
