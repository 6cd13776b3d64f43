/* testutil.h - small helpers the end-to-end tests share: a scratch directory
 * per test binary, in-place patching of a file's text, and the logit
 * comparison metrics used by the model parity tests. */
#ifndef DEEPC_TEST_UTIL_H
#define DEEPC_TEST_UTIL_H

#include <stddef.h>

/* Creates $TMPDIR/deepc-<tag>-XXXXXX (or under /tmp) into dir; 0 on success. */
int tu_mkdtemp(char *dir, size_t cap, const char *tag);
/* Removes a directory tree; 0 on success. */
int tu_rmtree(const char *dir);
/* Replaces the first occurrence of `from` by `to` in the file at path;
 * -1 if the file cannot be read or `from` is absent. */
int tu_patch_file(const char *path, const char *from, const char *to);

/* max |a - b| over n values; NaN anywhere gives NaN (so comparisons fail). */
double tu_max_abs_diff(const float *a, const float *b, size_t n);
/* RMS of (got - want) divided by the standard deviation of want. */
double tu_rel_rms(const float *got, const float *want, size_t n);

#endif
