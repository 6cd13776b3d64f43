/* cpu_x86.c - x86 CPU feature detection for the backend selector: CPUID for
 * what the processor implements, XGETBV for what the OS saves on a context
 * switch (an AVX-512 CPU under an OS that does not enable ZMM state must not
 * run AVX-512 code). Compiled on every host with no -m flags; on non-x86
 * hosts every check answers "no".
 *
 * The answer is computed once and cached in an atomic word: racing first
 * callers compute the same value, so no lock is needed. CPUID can trap to the
 * hypervisor in a VM (microseconds), hence the cache. */
#include "cpu.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

enum {
    F_AVX        = 1u << 0,
    F_AVX2       = 1u << 1,
    F_FMA        = 1u << 2,
    F_F16C       = 1u << 3,
    F_AVX512F    = 1u << 4,
    F_AVX512BW   = 1u << 5,
    F_AVX512VL   = 1u << 6,
    F_AVX512DQ   = 1u << 7,
    F_AVX512VNNI = 1u << 8,
    F_AVX512BF16 = 1u << 9,
    F_OS_YMM     = 1u << 10,   /* XCR0: SSE + AVX state */
    F_OS_ZMM     = 1u << 11,   /* XCR0: opmask + ZMM0-15 upper + ZMM16-31 */
    F_VALID      = 1u << 30,   /* the cache has been filled (enumerators must fit an int) */
};

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* XGETBV(0) through inline asm (the _xgetbv intrinsic needs -mxsave, and
 * this file gets no -m flags). Only call when CPUID says OSXSAVE. */
static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" /* xgetbv */ : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static uint32_t detect(void) {
    unsigned a, b, c, d;
    uint32_t f = 0;
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf < 1 || !__get_cpuid(1, &a, &b, &c, &d)) return F_VALID;
    bool osxsave = (c >> 27) & 1u;
    if ((c >> 28) & 1u) f |= F_AVX;
    if ((c >> 12) & 1u) f |= F_FMA;
    if ((c >> 29) & 1u) f |= F_F16C;
    if (osxsave) {
        uint64_t xcr0 = read_xcr0();
        if ((xcr0 & 0x6u) == 0x6u) f |= F_OS_YMM;
        if ((xcr0 & 0xe6u) == 0xe6u) f |= F_OS_ZMM;
    }
    if (max_leaf >= 7 && __get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        unsigned max_sub = a;
        if ((b >> 5) & 1u) f |= F_AVX2;
        if ((b >> 16) & 1u) f |= F_AVX512F;
        if ((b >> 17) & 1u) f |= F_AVX512DQ;
        if ((b >> 30) & 1u) f |= F_AVX512BW;
        if ((b >> 31) & 1u) f |= F_AVX512VL;
        if ((c >> 11) & 1u) f |= F_AVX512VNNI;
        if (max_sub >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d) && ((a >> 5) & 1u)) f |= F_AVX512BF16;
    }
    return f | F_VALID;
}
#else
static uint32_t detect(void) {
    return F_VALID;
}
#endif

static _Atomic uint32_t cached;

static uint32_t features(void) {
    uint32_t f = atomic_load_explicit(&cached, memory_order_relaxed);
    if (!(f & F_VALID)) {
        f = detect();
        atomic_store_explicit(&cached, f, memory_order_relaxed);
    }
    return f;
}

static bool has_all(uint32_t want) {
    return (features() & want) == want;
}

/* ---- the checks the selector uses --------------------------------------- */

#define NEED_AVX2   (F_AVX | F_AVX2 | F_FMA | F_F16C | F_OS_YMM)
#define NEED_AVX512 (NEED_AVX2 | F_AVX512F | F_AVX512BW | F_AVX512VL | F_AVX512DQ | F_OS_ZMM)

bool deepc_cpu_has_avx2(void) {
    return has_all(NEED_AVX2);
}

bool deepc_cpu_has_avx512(void) {
    return has_all(NEED_AVX512);
}

bool deepc_cpu_has_avx512vnni(void) {
    return has_all(NEED_AVX512 | F_AVX512VNNI);
}

const char *deepc_cpu_describe(void) {
    static const struct { uint32_t bit; const char *name; } names[] = {
        { F_AVX, "avx" },           { F_AVX2, "avx2" },         { F_FMA, "fma" },
        { F_F16C, "f16c" },         { F_AVX512F, "avx512f" },   { F_AVX512BW, "avx512bw" },
        { F_AVX512VL, "avx512vl" }, { F_AVX512DQ, "avx512dq" }, { F_AVX512VNNI, "avx512vnni" },
        { F_AVX512BF16, "avx512bf16" }, { F_OS_YMM, "os-ymm" }, { F_OS_ZMM, "os-zmm" },
    };
    static _Thread_local char buf[160]; /* per thread: callers may race */
    uint32_t f = features();
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(f & names[i].bit)) continue;
        int k = snprintf(buf + len, sizeof buf - len, "%s%s", len ? " " : "", names[i].name);
        if (k < 0 || (size_t)k >= sizeof buf - len) break;
        len += (size_t)k;
    }
    if (len == 0) snprintf(buf, sizeof buf, "none");
    return buf;
}
