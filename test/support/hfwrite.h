/* hfwrite.h - the file-writing half shared by the two synthetic checkpoint
 * generators (hfgen.c: Qwen2 / Llama, hfgen_moe.c: DeepSeek V2 / V3): a
 * growable text buffer with the JSON pieces the Hugging Face files need, a
 * small deterministic byte-level BPE trainer, the tokenizer.json /
 * tokenizer_config.json / generation_config.json layouts, and a streaming
 * safetensors writer (shard assignment, headers, index, parallel value
 * generation).
 *
 * What goes into the files (corpus, pre-tokenizer, added tokens, config
 * keys, tensor values) is each generator's business: they pass it in. The
 * bytes written are a pure function of the inputs (never of the thread
 * count), which is what keeps every generated checkpoint reproducible.
 *
 * Like the generators, libc/pthreads only (util.h for the deepc_err message
 * buffer type alone): independent of the engine the checkpoints check. */
#ifndef DEEPC_TEST_HFWRITE_H
#define DEEPC_TEST_HFWRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "util.h"

/* Formats a message into err (when not NULL); returns -1. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
int hfw_fail(deepc_err *err, const char *fmt, ...);

/* ---- text buffer --------------------------------------------------------- */

/* Zero-initialize; free(p) when done. Allocation failures set oom and make
 * every later append a no-op (checked once, when the text is written). */
typedef struct hfw_buf {
    char *p;                   /* NUL-terminated once anything was appended */
    size_t len, cap;
    bool oom;
} hfw_buf;

void hfw_put(hfw_buf *b, const char *s, size_t n);
void hfw_puts(hfw_buf *b, const char *s);
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void hfw_printf(hfw_buf *b, const char *fmt, ...);
/* n bytes of UTF-8 (or a C string) as a JSON string literal, with quotes. */
void hfw_json_str(hfw_buf *b, const char *s, size_t n);
void hfw_json_cstr(hfw_buf *b, const char *s);
/* The shortest "%.Ng" (N >= min_digits) that reads back as the same float,
 * with ".0" added to integral values. The generators differ in min_digits
 * (6: 922330.0, 1: 9.2233e+05), and their files must not change. */
void hfw_float(hfw_buf *b, double v, int min_digits);

/* ---- byte-level BPE ------------------------------------------------------ */

/* ASCII character classes for the generators' pre-tokenizers (their
 * corpora are ASCII): \p{L}, \p{N}, \s, and the rest. */
static inline bool hfw_is_letter(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static inline bool hfw_is_digit(int c) { return c >= '0' && c <= '9'; }
static inline bool hfw_is_space(int c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
static inline bool hfw_is_punct(int c) { return !hfw_is_letter(c) && !hfw_is_digit(c) && !hfw_is_space(c); }

/* Length of the pre-token starting at s[i] (i < n); at least 1. */
typedef size_t (*hfw_pretok_fn)(const char *s, size_t i, size_t n);

/* Ids 0..first-1 are reserved (special tokens that sit in the BPE vocab,
 * as in DeepSeek-V3), then the 256 byte tokens in GPT-2 order (printable
 * Latin-1 bytes first), then one id per distinct merge result. */
typedef struct hfw_bpe {
    int first;                 /* reserved ids (no bytes) */
    int n_tok;                 /* first + 256 + distinct merge results */
    uint32_t *off;             /* token t = bytes[off[t] .. off[t+1]); empty for t < first */
    uint8_t *bytes;
    int n_merges;
    int *merges;               /* n_merges x (left, right, result), in rank order */
} hfw_bpe;

/* Learns merges from the texts (pre-tokenized with pretok; no pre-token may
 * cross from one text into the next), most frequent pair first, ties to the
 * smallest (left, right) ids, until max_new tokens were added, max_merges
 * merges were learned (a merge whose string already exists reuses that
 * token), or every pre-token is one token. Deterministic. Returns 0, or -1
 * out of memory (out zeroed). */
int hfw_bpe_train(const char *const *texts, int n_texts, hfw_pretok_fn pretok, int first, int max_new,
                  int max_merges, hfw_bpe *out);
void hfw_bpe_free(hfw_bpe *b);

/* ---- tokenizer and generation files -------------------------------------- */

typedef struct hfw_added_token {
    int id;
    const char *content;
    bool special, normalized;
} hfw_added_token;

/* tokenizer.json from its first brace through the added_tokens array and
 * the comma after it: the caller goes on with normalizer, pre_tokenizer,
 * post_processor and decoder, then hfw_tokenizer_model. */
void hfw_tokenizer_head(hfw_buf *b, const hfw_added_token *t, int n);

/* A {"type": "ByteLevel", ...} object whose closing brace stands at indent. */
void hfw_bytelevel_json(hfw_buf *b, const char *indent, bool add_prefix_space, bool trim_offsets, bool use_regex);

/* The "model" member and the closing brace of tokenizer.json (no newline
 * after it): BPE with the vocab (reserved ids named by specials[], the rest
 * in the byte-level alphabet) and the merges, as "a b" strings or, with
 * merge_pairs, as ["a", "b"] (tokenizers >= 0.20). subword_affix is the
 * JSON value of continuing_subword_prefix and end_of_word_suffix;
 * ignore_merges that of "ignore_merges", NULL to leave the key out. */
void hfw_tokenizer_model(hfw_buf *b, const hfw_bpe *bpe, const char *const *specials, const char *subword_affix,
                         const char *ignore_merges, bool merge_pairs);

/* tokenizer_config.json of the DeepSeek releases (LlamaTokenizerFast, BOS
 * added, pad_token = eos_token). */
void hfw_tokenizer_config_json(hfw_buf *b, const char *bos, const char *eos, int model_max_length,
                               const char *chat_template);

/* generation_config.json: sampling on, top_p 0.95; temperature as written. */
void hfw_generation_config_json(hfw_buf *b, int bos, int eos, const char *temperature,
                                const char *transformers_version);

/* The DeepSeek-R1 chat template, as shipped in the R1 and R1-Distill
 * tokenizer_config.json (generation prompt "<｜Assistant｜><think>\n"). */
extern const char hfw_r1_chat_template[];

/* ---- output directory and safetensors ------------------------------------ */

/* Where files go and what was written; `who` prefixes error messages. */
typedef struct hfw_out {
    const char *dir, *who;
    deepc_err *err;            /* may be NULL */
    uint64_t tensor_bytes;     /* sum of tensor data bytes (the index's total_size) */
    uint64_t file_bytes;       /* all files written */
    int n_files;
} hfw_out;

/* Sets *o up and creates dir if missing (its parent must exist). 0 or -1. */
int hfw_open(hfw_out *o, const char *dir, const char *who, deepc_err *err);

/* Writes b to dir/name (replacing it) and empties b. 0 or -1. */
int hfw_write_text(hfw_out *o, const char *name, hfw_buf *b);

/* One tensor for hfw_write_safetensors. */
typedef struct hfw_entry {
    char name[96];
    const char *dtype;         /* safetensors dtype, e.g. "BF16" */
    int ndim;                  /* 1 or 2 */
    uint64_t shape[2];
    uint64_t nbytes;
    bool opens_shard;          /* false: never the first of a shard (an FP8 scale stays with its weight) */
    int index;                 /* the caller's own tensor number, for the data callback */
    int shard;                 /* set by hfw_write_safetensors */
} hfw_entry;

/* Writes the nbytes of data of e at the current position of f. */
typedef bool (*hfw_data_fn)(void *user, FILE *f, const hfw_entry *e);

/* Writes tensors ts[0..nt) (model order) as n_shards safetensors files,
 * like save_pretrained: shards cut by cumulative bytes, every shard
 * non-empty; each file's tensors sorted by name, with a u64 LE header
 * length, the JSON header padded with spaces to a multiple of 8, then the
 * data in header order. n_shards 1: model.safetensors; else
 * model-0000K-of-N.safetensors (N with of_digits digits) and
 * model.safetensors.index.json. A stale file of the other layout is
 * removed. ts is reordered. Returns 0 or -1. */
int hfw_write_safetensors(hfw_out *o, hfw_entry *ts, int nt, int n_shards, int of_digits, hfw_data_fn data,
                          void *user);

/* ---- parallel value generation ------------------------------------------- */

#define HFW_MAX_THREADS 16

/* Runs fn(ctx, a, b) over [0, n) in contiguous ranges on up to 16 threads,
 * at least min_per items each; results must not depend on the split. */
typedef void (*hfw_range_fn)(void *ctx, size_t a, size_t b);
void hfw_parallel_for(size_t n, size_t min_per, hfw_range_fn fn, void *ctx);

/* Produces the encoded bytes (esz each) of elements [first, first + n) of
 * one tensor into out; scratch holds n floats for the caller's use. */
typedef void (*hfw_values_fn)(void *ctx, uint64_t first, size_t n, float *scratch, uint8_t *out);

/* Buffers kept from tensor to tensor (zero-initialize; hfw_scratch_free):
 * fresh multi-MB allocations per tensor would fault their pages in again. */
typedef struct hfw_scratch {
    float *f;
    uint8_t *o;
    size_t n_f, n_o;           /* capacities: floats, bytes */
} hfw_scratch;

/* Room for n floats and n * esz bytes; false when out of memory. */
bool hfw_scratch_reserve(hfw_scratch *s, size_t n, size_t esz);
void hfw_scratch_free(hfw_scratch *s);

/* Streams the n_elems values of a tensor to f in chunks of 2^20, each chunk
 * produced in parallel slices by fn into buffers of s. Returns false on a
 * write error or no memory. */
bool hfw_write_values(FILE *f, uint64_t n_elems, size_t esz, hfw_values_fn fn, void *ctx, hfw_scratch *s);

#endif
