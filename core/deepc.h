/* deepc.h - the public C API of deepc, a CPU inference engine for DeepSeek-R1
 * distilled (Qwen2 / Llama 3) and DeepSeek MoE models stored in .dqf files.
 *
 * Conventions: every fallible call returns deepc_status; deepc_last_error()
 * gives the message of the last failure on the handle (or the thread's last
 * open/convert failure when no handle exists yet). A model is read-only after
 * open and may be shared by several sessions; a session is used by one thread
 * at a time. The library never prints and never exits. Destroying or closing
 * NULL is a no-op. Parameter structs are obtained by value from *_default()
 * and carry their own size so they can grow without new entry points. */
#ifndef DEEPC_H
#define DEEPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DEEPC_VERSION_MAJOR 0
#define DEEPC_VERSION_MINOR 1
#define DEEPC_VERSION_PATCH 0

typedef enum {
    DEEPC_OK = 0,
    DEEPC_ERR_INVALID_ARG,    /* a caller error: bad parameter or flag */
    DEEPC_ERR_IO,             /* open/read/write failed */
    DEEPC_ERR_FORMAT,         /* corrupt, truncated or inconsistent input */
    DEEPC_ERR_UNSUPPORTED,    /* valid input we cannot handle (arch, dtype, version) */
    DEEPC_ERR_NOMEM,
    DEEPC_ERR_CONTEXT_FULL,   /* the session's context window is full */
    DEEPC_ERR_STOPPED         /* generation stopped by the callback */
} deepc_status;

const char *deepc_status_name(deepc_status s);
const char *deepc_version_string(void);

typedef struct deepc_model deepc_model;
typedef struct deepc_session deepc_session;

/* Optional log sink: the library is silent unless one is installed. */
typedef void (*deepc_log_fn)(void *user, int level, const char *msg);
enum { DEEPC_LOG_INFO = 0, DEEPC_LOG_WARN = 1 };   /* levels */

/* ---- models ------------------------------------------------------------ */

typedef struct deepc_model_params {
    size_t struct_size;
    bool use_mmap;      /* true: every weight is used in place from the file mapping
                           (the page cache). false (default): all weights but the
                           routed experts are read into one owned anonymous buffer,
                           on transparent huge pages where the OS has them (fewer TLB
                           misses, and the page cache cannot evict them); routed
                           experts always stay in the mapping (or stream from disk,
                           see expert_cache_bytes) */
    bool use_mlock;     /* lock those weights (the owned buffer, or with use_mmap their
                           pages of the mapping) in RAM. Failure (RLIMIT_MEMLOCK) does
                           not fail the open: it is logged as a warning and
                           deepc_model_info.weights_locked stays false */
    deepc_log_fn log;   /* receives warnings and notes of the open; called only
                           during deepc_model_open_ex, on its thread; may be NULL */
    void *log_user;
} deepc_model_params;
deepc_model_params deepc_model_default_params(void);

/* Opens and fully validates a .dqf file (every offset, size and type), maps
 * it and loads the weights as p says (NULL = defaults). On failure *out is
 * NULL and deepc_open_error() explains. */
deepc_status deepc_model_open_ex(const char *path, const deepc_model_params *p, deepc_model **out);
/* deepc_model_open_ex with the default parameters. */
deepc_status deepc_model_open(const char *path, deepc_model **out);
const char *deepc_open_error(void);       /* thread-local: last open/convert error */
void deepc_model_close(deepc_model *m);

typedef struct deepc_model_info {
    size_t struct_size;
    const char *arch;            /* "qwen2", "llama", "deepseek2", "deepseek3" */
    const char *name;            /* source checkpoint name or path */
    int n_layers, n_embd, n_ff, n_heads, n_kv_heads, head_dim;
    int n_vocab, n_ctx_train;
    float rope_theta, norm_eps;
    uint64_t n_params;           /* total parameters */
    uint64_t n_params_active;    /* parameters used per token */
    uint64_t weight_bytes;       /* bytes of tensor data in the file */
    uint64_t kv_bytes_per_token; /* KV cache bytes per token, all layers */
    int bos_id, eos_id;
    bool add_bos;                /* raw text prompts should start with BOS (HF
                                    post-processor or add_bos_token) */
    /* DeepSeek MLA / MoE (0 for dense models) */
    int kv_lora_rank, q_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
    int n_expert, n_expert_used, n_expert_shared, n_ff_exp, first_k_dense, n_mtp;
    uint64_t kv_bytes_per_token_mha; /* what a per-head K/V cache (fp16) would need */
    uint64_t active_weight_bytes;    /* weight bytes one decoded token reads: all
                                        tensors but the embedding table (one row is
                                        read) and, for MoE, the unselected experts
                                        (n_expert_used of n_expert per layer) */
    uint64_t expert_bytes;           /* bytes of all routed experts (0 for dense) */
    /* how the weights are held (deepc_model_params) */
    bool weights_mapped;             /* all weights used in place from the file mapping */
    bool weights_locked;             /* the non-expert weights are locked in RAM (mlock) */
    uint64_t owned_weight_bytes;     /* size of the owned weight buffer (0 when mapped) */
} deepc_model_info;
deepc_status deepc_model_get_info(const deepc_model *m, deepc_model_info *info);

/* Tensors of the file, for inspection (`deepc info`). */
typedef struct deepc_tensor_info {
    const char *name;
    const char *type;           /* "f32", "q8_0", ... */
    int ndim;
    uint64_t dims[4];           /* outermost first */
    uint64_t n_elems, bytes;
} deepc_tensor_info;
size_t deepc_model_n_tensors(const deepc_model *m);
deepc_status deepc_model_tensor(const deepc_model *m, size_t i, deepc_tensor_info *out);
/* A string metadata value ("general.quantization", "general.converter", ...);
 * NULL if absent. Not NUL-terminated: use len. */
const char *deepc_model_meta_str(const deepc_model *m, const char *key, size_t *len);
/* Recomputes every tensor checksum (reads the whole file). */
deepc_status deepc_model_verify(const deepc_model *m);

/* MoE: how fast this machine reads the model's routed experts the way the
 * expert store does: n_reads whole expert records at scattered offsets (a fixed
 * pattern), one aligned read each, from n_threads readers (1..64), bypassing the
 * page cache (O_DIRECT / F_NOCACHE) unless buffered or unsupported. Gives bytes
 * per second and whether the cache was bypassed; reads that the page cache
 * serves (buffered, recently read) measure memory, not the disk. */
deepc_status deepc_model_expert_read_bw(const deepc_model *m, int n_threads, int n_reads, bool buffered,
                                        double *bytes_per_s, bool *direct_io);

/* ---- sessions ---------------------------------------------------------- */

typedef struct deepc_session_params {
    size_t struct_size;
    int n_ctx;          /* context length in tokens; 0 = min(model's, 4096) */
    int n_threads;      /* 0 = physical cores */
    int n_batch;        /* prompt tokens per forward batch; 0 = 64 (MoE: 128) */
    const char *isa;    /* NULL = best for this CPU; "scalar", "avx2", ... */
    bool mla_expanded;  /* DeepSeek MLA: expand keys/values per head instead of the
                           absorbed form (slower; for verification) */
    /* MoE expert streaming (ignored by dense models). */
    uint64_t expert_cache_bytes;    /* byte budget for routed experts: 0 or at least
                                       their total = all used in place from the file
                                       mapping; less = a cache filled from disk */
    const char *expert_pin_profile; /* routing profile (`deepc profile`) whose hottest
                                       experts stay loaded; NULL = none */
    int expert_io_threads;          /* reader threads; 0 = 4 */
    bool expert_no_prefetch;        /* turn off the next-layer router lookahead */
    bool expert_buffered_io;        /* read through the page cache instead of
                                       bypassing it (O_DIRECT / F_NOCACHE) */
    uint64_t max_ram_bytes;         /* 0 = no limit. Otherwise the RAM the model and
                                       session may use: non-expert weights + KV cache
                                       + scratch + expert cache. With expert_cache_bytes
                                       0 the expert cache gets what remains (all experts
                                       in place when they fit); creation fails, naming
                                       the least workable limit, when it cannot fit. */
} deepc_session_params;
deepc_session_params deepc_session_default_params(void);

/* All scratch and the KV cache are allocated here; decoding allocates nothing. */
deepc_status deepc_session_create(deepc_model *m, const deepc_session_params *p,
                                  deepc_session **out);
void deepc_session_destroy(deepc_session *s);
const char *deepc_last_error(const deepc_session *s);
int deepc_session_pos(const deepc_session *s);       /* tokens in the KV cache */
int deepc_session_n_ctx(const deepc_session *s);
/* Tokens per forward batch (n_batch as given, or the default it resolved to). */
int deepc_session_n_batch(const deepc_session *s);
/* Name of the kernel backend the session runs ("scalar", "avx2", ...). */
const char *deepc_session_isa(const deepc_session *s);
/* Forgets the cache from position pos on (0 = everything). */
deepc_status deepc_session_rewind(deepc_session *s, int pos);

/* Feeds n tokens at the current position. If logits is non-NULL it receives
 * the logits of every fed position, row-major [n x n_vocab]; otherwise only the
 * last position's logits are computed and kept (deepc_session_logits). */
deepc_status deepc_session_eval(deepc_session *s, const int32_t *tokens, int n, float *logits);
/* Logits of the last evaluated position (n_vocab floats, owned by the session). */
const float *deepc_session_logits(const deepc_session *s);

/* Expert store counters (MoE), since session creation or the last reset.
 * Versioned: set struct_size (fields past it are not written). */
typedef struct deepc_expert_stats {
    size_t struct_size;
    bool streaming;             /* false: experts used in place from the mapping */
    bool direct_io;             /* reads bypass the page cache */
    int n_slots, n_pinned;      /* expert slots in the cache, of them pinned */
    int n_io_threads;
    uint64_t budget_bytes;      /* the session's expert_cache_bytes */
    uint64_t cache_bytes;       /* slot memory allocated: never above budget_bytes */
    uint64_t min_budget_bytes;  /* smallest budget that can make progress */
    uint64_t expert_bytes;      /* all routed experts of the model */
    uint64_t slot_bytes;        /* one expert record, rounded up to 4 KiB */
    uint64_t tokens;            /* tokens evaluated */
    uint64_t lookups;           /* (layer, expert) uses by the forward pass, once per batch */
    uint64_t hits;              /* lookups found loaded or already on their way */
    uint64_t misses;            /* lookups that had to read (lookups = hits + misses) */
    uint64_t reads, bytes_read; /* all expert reads: demand, prefetch and pinning */
    uint64_t read_errors;
    double stall_s;             /* time the forward pass waited for reads */
    uint64_t prefetch_issued;   /* experts read ahead by the router lookahead */
    uint64_t prefetch_used;     /* ... that a later lookup used */
    uint64_t prefetch_wasted;   /* ... evicted before any use */
} deepc_expert_stats;
deepc_status deepc_session_expert_stats(const deepc_session *s, deepc_expert_stats *st);
/* Zeroes the counters above and the routing counts below. */
deepc_status deepc_session_expert_stats_reset(deepc_session *s);
/* How often each routed expert was selected (token, slot pairs), as counts
 * [n_layers x n_expert] (dense layers stay 0); n must be n_layers * n_expert. */
deepc_status deepc_session_expert_counts(const deepc_session *s, uint64_t *counts, size_t n);
/* Writes those counts as a routing profile for expert_pin_profile. */
deepc_status deepc_session_save_expert_profile(deepc_session *s, const char *path);

/* ---- sampling ---------------------------------------------------------- */

typedef struct deepc_sampling {
    size_t struct_size;
    float temperature;      /* 0 = greedy */
    int top_k;              /* 0 = off */
    float top_p;            /* 1 = off */
    float min_p;            /* 0 = off */
    float repeat_penalty;   /* 1 = off */
    int repeat_last_n;      /* tokens considered by the penalty */
    uint64_t seed;
} deepc_sampling;
deepc_sampling deepc_sampling_default(void);

/* Samples the next token from the session's last logits (not modified). */
deepc_status deepc_session_sample(deepc_session *s, const deepc_sampling *p, int32_t *token);

/* Called with each generated token and its decoded text piece (may be empty
 * while a UTF-8 character is incomplete). Return false to stop. */
typedef bool (*deepc_token_fn)(void *user, int32_t token, const char *piece, size_t len);

typedef struct deepc_gen_stats {
    int n_prompt, n_gen;
    double prompt_s, gen_s;
    bool hit_eos, hit_ctx;
} deepc_gen_stats;

/* Evaluates the prompt, then samples up to n_max tokens, stopping at EOS/end
 * of turn, a full context, or when cb returns false (returns DEEPC_OK then). */
deepc_status deepc_generate(deepc_session *s, const int32_t *prompt, int n_prompt,
                            int n_max, const deepc_sampling *p,
                            deepc_token_fn cb, void *user, deepc_gen_stats *stats);

/* ---- tokenizer --------------------------------------------------------- */

/* Encodes UTF-8 text. parse_special: recognize special/added token text
 * (for rendered templates); false treats all text as plain (user content).
 * Returns the number of ids needed; writes at most cap of them. */
deepc_status deepc_tokenize(const deepc_model *m, const char *text, size_t len,
                            bool add_bos, bool parse_special,
                            int32_t *ids, size_t cap, size_t *n_out);
/* Raw bytes of one token (not UTF-8 validated); NULL len 0 for invalid ids. */
const char *deepc_token_bytes(const deepc_model *m, int32_t id, size_t *len);
bool deepc_token_is_eog(const deepc_model *m, int32_t id); /* end of generation */

/* Streaming detokenizer: holds back incomplete UTF-8, replaces invalid bytes
 * with U+FFFD. */
typedef struct deepc_detok deepc_detok;
deepc_detok *deepc_detok_create(const deepc_model *m);
void deepc_detok_destroy(deepc_detok *d);
/* Appends the text completed by token id; returns bytes written to out (<= cap,
 * cap >= 64 recommended). */
size_t deepc_detok_push(deepc_detok *d, int32_t id, char *out, size_t cap);
size_t deepc_detok_flush(deepc_detok *d, char *out, size_t cap);

/* ---- chat templates ---------------------------------------------------- */

typedef struct deepc_chat_msg {
    const char *role;       /* "system", "user", "assistant" */
    const char *content;
} deepc_chat_msg;

/* Renders messages with the model's chat template (or the named override:
 * "deepseek-r1", "deepseek-v3", "deepseek-v2", "chatml", "llama3"). Returns
 * bytes needed (excluding NUL); writes at most cap-1 bytes plus NUL. */
deepc_status deepc_chat_render(const deepc_model *m, const char *template_override,
                               const deepc_chat_msg *msgs, size_t n_msgs,
                               bool add_generation_prompt,
                               char *out, size_t cap, size_t *n_out);

/* Renders the conversation and tokenizes it safely: template text is parsed
 * for special tokens, message contents are tokenized as plain text (a user
 * typing "<|im_end|>" does not inject a control token). BOS comes from the
 * template. Returns the number of ids needed in *n_out; writes at most cap. */
deepc_status deepc_chat_tokenize(const deepc_model *m, const char *template_override,
                                 const deepc_chat_msg *msgs, size_t n_msgs,
                                 bool add_generation_prompt,
                                 int32_t *ids, size_t cap, size_t *n_out);

/* ---- conversion -------------------------------------------------------- */

typedef struct deepc_convert_params {
    size_t struct_size;
    const char *type;          /* "f32", "f16", "bf16", "q8_0"; NULL = "q8_0" */
    const char *chat_template; /* NULL = detect from tokenizer_config.json */
    deepc_log_fn progress;     /* receives progress lines; may be NULL */
    void *progress_user;
    bool no_tokenizer;         /* convert the weights only (token ids in, ids out) */
} deepc_convert_params;
deepc_convert_params deepc_convert_default_params(void);

/* Converts a Hugging Face checkpoint directory into out_path (written to
 * out_path.tmp, renamed when complete). On failure deepc_open_error() says why. */
deepc_status deepc_convert(const char *hf_dir, const char *out_path,
                           const deepc_convert_params *p);

#ifdef __cplusplus
}
#endif
#endif
