/* testutil.c - see testutil.h. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tu_mkdtemp(char *dir, size_t cap, const char *tag) {
    const char *t = getenv("TMPDIR");
    snprintf(dir, cap, "%s/deepc-%s-XXXXXX", t ? t : "/tmp", tag);
    return mkdtemp(dir) ? 0 : -1;
}

int tu_rmtree(const char *dir) {
    char cmd[1200];
    if (strchr(dir, '\'')) return -1;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int tu_patch_file(const char *path, const char *from, const char *to) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) { fclose(f); free(b); return -1; }
    fclose(f);
    size_t fl = strlen(from);
    char *at = NULL;
    for (long i = 0; i + (long)fl <= n && !at; i++)
        if (!memcmp(b + i, from, fl)) at = b + i;
    int rc = -1;
    if (at && (f = fopen(path, "wb"))) {
        fwrite(b, 1, (size_t)(at - b), f);
        fwrite(to, 1, strlen(to), f);
        fwrite(at + fl, 1, (size_t)(n - (at - b) - (long)fl), f);
        rc = fclose(f) == 0 ? 0 : -1;
    }
    free(b);
    return rc;
}

double tu_max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d;     /* NaN propagates as a failure */
    }
    return m;
}

double tu_rel_rms(const float *got, const float *want, size_t n) {
    double se = 0, s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        se += d * d;
        s += want[i];
        s2 += (double)want[i] * want[i];
    }
    double var = s2 / n - (s / n) * (s / n);
    return sqrt(se / n) / sqrt(var);
}
