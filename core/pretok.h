/* pretok.h - internal: the pre-tokenizers of the supported families,
 * hand-written equivalents of their Hugging Face Split regexes (no regex
 * library). Used by core/tokenizer.c only. */
#ifndef DEEPC_PRETOK_H
#define DEEPC_PRETOK_H

#include <stddef.h>
#include <stdint.h>
#include "tokdata.h"

/* Receives one pre-token s[start..end) (never empty). A non-zero return
 * stops the run and is returned by deepc_pretok_run. */
typedef int (*deepc_pretok_emit_fn)(void *ctx, size_t start, size_t end);

/* Splits s[0..n) (UTF-8; invalid bytes are single characters of category
 * Cn) into pre-tokens, in order, covering every byte exactly once, exactly as
 * the family's Hugging Face pre_tokenizer does (before its ByteLevel step,
 * which only remaps bytes). Returns 0, or the first non-zero emit result. */
int deepc_pretok_run(deepc_pretok_kind kind, const uint8_t *s, size_t n,
                     deepc_pretok_emit_fn emit, void *ctx);

#endif
