/* tokdata.h - the tokenizer data the converter embeds in a .dqf file and the
 * runtime tokenizer is built from. Plain arrays, so the format layer can
 * store it without knowing tokenizer semantics. */
#ifndef DEEPC_TOKDATA_H
#define DEEPC_TOKDATA_H

#include <stdint.h>
#include "util.h"

/* Pre-tokenizer families we reproduce exactly. Stored in files: never renumber. */
typedef enum {
    DEEPC_PRETOK_NONE = 0,
    DEEPC_PRETOK_DEEPSEEK3 = 1,  /* V3/R1 (also V2): 3 Split regexes + ByteLevel */
    DEEPC_PRETOK_QWEN2 = 2,      /* Qwen2/2.5/3: single digits, (?i:'s|...) */
    DEEPC_PRETOK_LLAMA3 = 3,     /* Llama 3: digits 1-3 */
    DEEPC_PRETOK_COUNT
} deepc_pretok_kind;

typedef enum {
    DEEPC_NORM_NONE = 0,
    DEEPC_NORM_NFC = 1,
    DEEPC_NORM_COUNT
} deepc_norm_kind;

/* Chat template families. Stored in files: never renumber. */
typedef enum {
    DEEPC_TMPL_NONE = 0,
    DEEPC_TMPL_DEEPSEEK_R1 = 1,  /* R1 and R1-Distill: <｜User｜>, <think> */
    DEEPC_TMPL_DEEPSEEK_V3 = 2,
    DEEPC_TMPL_DEEPSEEK_V2 = 3,  /* "User: ...\n\nAssistant:" */
    DEEPC_TMPL_CHATML = 4,       /* Qwen <|im_start|> */
    DEEPC_TMPL_LLAMA3 = 5,
    DEEPC_TMPL_COUNT
} deepc_tmpl_kind;

/* Token flags. */
#define DEEPC_TOKF_PRESENT     (1u << 0)  /* id has an entry */
#define DEEPC_TOKF_ADDED       (1u << 1)  /* from added_tokens: matched as a whole */
#define DEEPC_TOKF_SPECIAL     (1u << 2)  /* added token with "special": true */
#define DEEPC_TOKF_LSTRIP      (1u << 3)
#define DEEPC_TOKF_RSTRIP      (1u << 4)
#define DEEPC_TOKF_NORMALIZED  (1u << 5)
#define DEEPC_TOKF_SINGLE_WORD (1u << 6)
#define DEEPC_TOKF_EOG         (1u << 7)  /* ends a generation (eos, eot, im_end ...) */

/* Global flags. */
#define DEEPC_TOKDATA_IGNORE_MERGES (1u << 0)
#define DEEPC_TOKDATA_ADD_BOS       (1u << 1)  /* the HF post-processor prepends BOS */
/* tokenizer_config.json add_bos_token: transformers' slow/fast tokenizer
 * classes prepend BOS even where tokenizer.json's post-processor does not
 * (DeepSeek-V3: LlamaTokenizerFast). Informational; encode follows ADD_BOS. */
#define DEEPC_TOKDATA_CFG_ADD_BOS   (1u << 2)

typedef struct deepc_tokdata {
    uint32_t n_vocab;       /* max id + 1 over vocab and added tokens */
    /* Token bytes: id i is text[offs[i] .. offs[i+1]). For vocab entries this
     * is the raw byte string (byte-level alphabet already decoded); for added
     * tokens it is their UTF-8 content. offs has n_vocab + 1 entries. */
    uint32_t *offs;
    uint8_t *text;
    uint32_t *flags;        /* n_vocab DEEPC_TOKF_* */
    uint32_t n_merges;
    uint32_t *merges;       /* 2 * n_merges token ids (left, right), rank order */
    uint32_t pretok;        /* deepc_pretok_kind */
    uint32_t normalizer;    /* deepc_norm_kind */
    uint32_t gflags;        /* DEEPC_TOKDATA_* */
    int32_t bos_id, eos_id, pad_id;   /* -1 when absent */
    uint32_t chat_template; /* deepc_tmpl_kind */
} deepc_tokdata;

/* Frees the arrays (not the struct itself). NULL-safe, idempotent. */
void deepc_tokdata_clear(deepc_tokdata *td);

/* Builds tokdata from a checkpoint's tokenizer.json and (optional, may be NULL)
 * tokenizer_config.json texts. Refuses, with a message naming the part, any
 * model type, pre-tokenizer, normalizer or decoder it cannot reproduce exactly.
 * On success *td owns its arrays. Implemented in convert/tok_import.c. */
int deepc_tokdata_from_hf(const char *tokenizer_json, size_t tj_len,
                          const char *tokenizer_config_json, size_t tc_len,
                          deepc_tokdata *td, deepc_err *err);

/* Detects the chat template family from tokenizer_config.json's chat_template
 * source; DEEPC_TMPL_NONE if unknown. Implemented in core/chat_template.c. */
deepc_tmpl_kind deepc_tmpl_detect(const char *jinja_source);

#endif
