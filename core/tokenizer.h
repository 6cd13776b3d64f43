/* tokenizer.h - byte-level BPE tokenizer reproducing Hugging Face `tokenizers`
 * exactly for the DeepSeek-V3, Qwen2 and Llama 3 families, plus a streaming
 * detokenizer. Built from deepc_tokdata. */
#ifndef DEEPC_TOKENIZER_H
#define DEEPC_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "tokdata.h"
#include "util.h"

typedef struct deepc_tokenizer deepc_tokenizer;

/* Validates td (ids, offsets, merges, kinds: it may come from a file) and
 * builds the lookup structures. td must outlive the tokenizer (it is
 * referenced, not copied). Returns NULL with a message in err on failure.
 * Free with deepc_tokenizer_destroy. */
deepc_tokenizer *deepc_tokenizer_create(const deepc_tokdata *td, deepc_err *err);
void deepc_tokenizer_destroy(deepc_tokenizer *t);       /* NULL is a no-op */

/* Encodes UTF-8 text (len bytes; invalid bytes are kept and encoded as their
 * raw byte tokens) like HF `encode(text, add_special_tokens=add_bos)`.
 *
 * parse_special: true splits the text on added tokens first (special or not,
 * leftmost-longest, honouring lstrip/rstrip/single_word/normalized) as HF
 * does. false treats the whole text as plain text: NO added token is
 * recognized, not even non-special ones. This is stricter than HF's
 * split_special_tokens=True (which still matches non-special added tokens)
 * on purpose: DeepSeek marks its role markers <｜User｜>/<｜Assistant｜> as
 * non-special, and user content must never be able to forge them.
 *
 * add_bos: prepend td->bos_id when there is one (callers pass
 * td->gflags & DEEPC_TOKDATA_ADD_BOS for HF post-processor semantics).
 *
 * Writes min(cap, needed) ids and sets *n_out to the number needed, so a
 * caller can size a buffer with a first call (ids may be NULL when cap is 0).
 * Allocates scratch once per call; thread-safe for concurrent calls on one
 * tokenizer. Returns DEEPC_OK, or DEEPC_ERR_NOMEM with a message. */
int deepc_tokenizer_encode(const deepc_tokenizer *t, const char *text, size_t len,
                           bool add_bos, bool parse_special,
                           int32_t *ids, size_t cap, size_t *n_out, deepc_err *err);

/* Encodes a rendered chat (or any text mixing trusted and untrusted parts)
 * exactly as HF encodes the whole string with added tokens parsed, except
 * that no added token is recognized where its match would overlap one of the
 * n_plain byte ranges [plain[2k], plain[2k+1]) (sorted, non-overlapping,
 * within len): put message contents there. Unlike encoding the pieces in
 * separate calls, pre-tokenization runs across the range boundaries, so for
 * contents without added-token text the ids equal HF's
 * encode(apply_chat_template(...)) - separate calls can differ at the seams
 * (e.g. "Assistant: " + "Hi" gives " " + "Hi", HF gives " Hi"). Otherwise as
 * deepc_tokenizer_encode with parse_special = true. */
int deepc_tokenizer_encode_spans(const deepc_tokenizer *t, const char *text, size_t len,
                                 bool add_bos, const size_t *plain, size_t n_plain,
                                 int32_t *ids, size_t cap, size_t *n_out, deepc_err *err);

/* Streaming decode state: holds back a partial UTF-8 character across tokens.
 * Zero-initialize ({0}) before the first token. */
typedef struct deepc_detok_state {
    unsigned char pend[8];
    int n_pend;
} deepc_detok_state;

/* Appends the text that token id completes: pending bytes plus the token's
 * bytes, up to the last complete UTF-8 character (an incomplete tail is held
 * back in st). Invalid sequences become U+FFFD, one per maximal invalid
 * subpart, exactly like Rust's String::from_utf8_lossy over the whole
 * sequence (what HF decode does). Unknown ids produce nothing. Returns the
 * bytes written; with cap >= deepc_tokenizer_max_piece(t) nothing is ever
 * cut, with less the output stops at a character boundary (the rest of that
 * token's text is lost). Special tokens are decoded to their text; skipping
 * them is the caller's choice. */
size_t deepc_tokenizer_decode_push(const deepc_tokenizer *t, deepc_detok_state *st,
                                   int32_t id, char *out, size_t cap);
/* Ends a stream: a held-back incomplete character becomes U+FFFD (3 bytes;
 * cap >= 3 suffices). Returns the bytes written and resets st. */
size_t deepc_tokenizer_decode_flush(deepc_detok_state *st, char *out, size_t cap);
/* The most bytes one decode_push can write (every byte of the longest token
 * plus a pending prefix turned into U+FFFD). */
size_t deepc_tokenizer_max_piece(const deepc_tokenizer *t);

#endif
