/* cpu_arm.c - AArch64 CPU feature detection for the backend selector: which
 * optional NEON extensions the processor (and the OS, which must expose them)
 * supports. Linux and Android answer through the ELF auxiliary vector
 * (getauxval AT_HWCAP / AT_HWCAP2, filled in by the kernel, and by qemu-user
 * from its -cpu model); macOS through sysctl hw.optional.arm.FEAT_*. Other
 * AArch64 systems get plain NEON, which every AArch64 CPU has (the ABI
 * requires it). Compiled on every host with no -m flags; on non-AArch64 hosts
 * every check answers "no".
 *
 * Cached in an atomic word like arch/cpu_x86.c: racing first callers compute
 * the same value, so no lock is needed. */
#include "cpu.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

enum {
    F_NEON    = 1u << 0,   /* Advanced SIMD (ASIMD) with fp16 <-> fp32 conversion */
    F_DOTPROD = 1u << 1,   /* SDOT/UDOT (FEAT_DotProd, Armv8.2+, mandatory from 8.4) */
    F_I8MM    = 1u << 2,   /* SMMLA/USDOT (FEAT_I8MM, Armv8.6+) */
    F_VALID   = 1u << 30,  /* the cache has been filled */
};

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>

/* The bit values are the kernel's ABI; spelled out for old C libraries whose
 * headers predate them. */
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1ul << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1ul << 20)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1ul << 13)
#endif

static uint32_t detect(void) {
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    uint32_t f = 0;
    if (hw & HWCAP_ASIMD) f |= F_NEON;
    if ((f & F_NEON) && (hw & HWCAP_ASIMDDP)) f |= F_DOTPROD;
    if ((f & F_NEON) && (hw2 & HWCAP2_I8MM)) f |= F_I8MM;
    return f | F_VALID;
}
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#include <sys/types.h>

/* 1 if the named sysctl exists and is non-zero (older macOS versions lack
 * the FEAT_* names: treated as absent). */
static bool sysctl_flag(const char *name) {
    int v = 0;
    size_t len = sizeof v;
    return sysctlbyname(name, &v, &len, NULL, 0) == 0 && v != 0;
}

static uint32_t detect(void) {
    uint32_t f = F_NEON;
    if (sysctl_flag("hw.optional.arm.FEAT_DotProd")) f |= F_DOTPROD;
    if (sysctl_flag("hw.optional.arm.FEAT_I8MM")) f |= F_I8MM;
    return f | F_VALID;
}
#elif defined(__aarch64__)
static uint32_t detect(void) {
    return F_NEON | F_VALID; /* no portable way to ask: baseline only */
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

/* ---- the checks the selector uses --------------------------------------- */

bool deepc_cpu_has_neon(void) {
    return (features() & F_NEON) != 0;
}

bool deepc_cpu_has_neon_dotprod(void) {
    return (features() & (F_NEON | F_DOTPROD)) == (F_NEON | F_DOTPROD);
}

bool deepc_cpu_has_i8mm(void) {
    return (features() & (F_NEON | F_I8MM)) == (F_NEON | F_I8MM);
}

const char *deepc_cpu_describe_arm(void) {
    static _Thread_local char buf[48]; /* per thread: callers may race */
    uint32_t f = features();
    snprintf(buf, sizeof buf, "%s%s%s", (f & F_NEON) ? "neon" : "none", (f & F_DOTPROD) ? " dotprod" : "",
             (f & F_I8MM) ? " i8mm" : "");
    return buf;
}
