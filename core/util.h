/* util.h - small shared helpers: error buffers, overflow-checked arithmetic,
 * monotonic time, and whole-file reads. No global state. */
#ifndef DEEPC_UTIL_H
#define DEEPC_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An error sink passed down through internal calls. A NULL sink is allowed
 * everywhere and simply drops the message. */
typedef struct deepc_err {
    char msg[512];
} deepc_err;

/* Formats a message into e (if non-NULL) and returns status unchanged, so a
 * failing path can be written `return deepc_errf(err, DEEPC_ERR_FORMAT, ...)`. */
int deepc_errf(deepc_err *e, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Overflow-checked arithmetic: return true when the result does NOT fit. */
static inline bool deepc_add_ovf(uint64_t a, uint64_t b, uint64_t *out) {
    if (a > UINT64_MAX - b) return true;
    *out = a + b;
    return false;
}
static inline bool deepc_mul_ovf(uint64_t a, uint64_t b, uint64_t *out) {
    if (a != 0 && b > UINT64_MAX / a) return true;
    *out = a * b;
    return false;
}

/* Seconds from an arbitrary monotonic origin. */
double deepc_now(void);

/* Reads a whole file into a NUL-terminated heap buffer (owned by the caller,
 * free with free()). Refuses files larger than max_bytes. */
int deepc_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len, deepc_err *err);

/* Joins dir and name with a '/' into a heap string owned by the caller. */
char *deepc_path_join(const char *dir, const char *name);

/* Formats a byte count with binary units ("512 B", "1.50 GiB") into out. */
void deepc_fmt_bytes(char *out, size_t cap, double bytes);

/* Peak resident set size of this process in bytes (0 if unknown). */
uint64_t deepc_peak_rss(void);

#endif
