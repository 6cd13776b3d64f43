/* sampler.h - token sampling: temperature, top-k, top-p, min-p, repetition
 * penalty, seeded PRNG. All buffers sized at creation; sampling allocates nothing. */
#ifndef DEEPC_SAMPLER_H
#define DEEPC_SAMPLER_H

#include <stddef.h>
#include <stdint.h>
#include "deepc.h"

typedef struct deepc_sampler deepc_sampler;

deepc_sampler *deepc_sampler_create(int n_vocab);
void deepc_sampler_destroy(deepc_sampler *s);          /* NULL is a no-op */
/* Returns the chosen id. logits is not modified. history holds previously
 * seen tokens (most recent last) for the repetition penalty. The PRNG state is
 * (re)seeded from p->seed on the first call and whenever p->seed changes. */
int32_t deepc_sampler_sample(deepc_sampler *s, const deepc_sampling *p,
                             const float *logits, const int32_t *history, size_t n_hist);

#endif
