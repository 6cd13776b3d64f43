/* cli.h - helpers shared by the deepc subcommands: strict number parsing,
 * error printing, and the subcommand entry points. */
#ifndef DEEPC_CLI_H
#define DEEPC_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "deepc.h"

/* Exit codes: 0 ok, 1 runtime failure, 2 usage error. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* Prints "deepc <cmd>: message" to stderr and returns CLI_USAGE / CLI_FAIL. */
int cli_usage_error(const char *cmd, const char *fmt, ...);
int cli_fail(const char *cmd, const char *fmt, ...);

/* Strict parses: the whole string must be a number within [lo, hi]. */
bool cli_parse_int(const char *s, long long lo, long long hi, long long *out);
bool cli_parse_float(const char *s, double lo, double hi, double *out);
/* "1,2,3" -> ids (heap array owned by caller); false with a message on error. */
bool cli_parse_ids(const char *s, int32_t **ids, int *n, char *msg, size_t msg_cap);
/* A byte size: "123", "4096K", "800M", "12G", "1T" (binary units, an
 * optional trailing "B" or "iB", decimals allowed: "1.5G"), or "N%" of
 * `total` (only when total > 0). */
bool cli_parse_size(const char *s, uint64_t total, uint64_t *out);
/* One line of expert store figures (hit rate, bytes read per token, stall
 * time, prefetch accuracy) for MoE sessions; nothing for dense models. */
void cli_print_expert_stats(FILE *f, const deepc_session *s, const char *prefix, const char *suffix);
/* Parses the sampling flag at argv[*i] (--temp, --top-k, --top-p, --min-p,
 * --repeat-penalty, --repeat-last-n, --seed) into sp, advancing *i. Returns
 * 1 when it consumed one, 0 when argv[*i] is not a sampling flag, and
 * CLI_USAGE after printing the error for a bad value. */
int cli_sampling_flag(const char *cmd, int argc, char **argv, int *i, deepc_sampling *sp);
/* Model-loading flags shared by run, chat, bench, perplexity and profile:
 * --mmap and --mlock into p. True when arg was one of them. */
bool cli_model_flag(const char *arg, deepc_model_params *p);
#define CLI_MODEL_FLAGS_HELP \
    "  --mmap                 use the weights in place from the file mapping (page cache)\n" \
    "                         instead of reading them into owned huge-page memory (the\n" \
    "                         default: faster decoding, immune to page-cache eviction)\n" \
    "  --mlock                lock the weights in RAM; if the OS refuses (ulimit -l), warn\n" \
    "                         and go on unlocked\n"
/* MoE expert-streaming flags shared by run, chat, bench and profile. */
typedef struct cli_expert_opts {
    const char *cache, *max_ram, *pin;
    long long io_threads;
    bool no_prefetch, buffered_io;
} cli_expert_opts;
/* Parses --expert-cache, --max-ram, --pin-profile, --expert-io-threads,
 * --no-prefetch, --buffered-io at argv[*i]; returns like cli_sampling_flag. */
int cli_expert_flag(const char *cmd, int argc, char **argv, int *i, cli_expert_opts *o);
/* Puts the parsed sizes into p (percentages of the model's expert bytes for
 * --expert-cache, of physical RAM for --max-ram). CLI_OK or CLI_USAGE. */
int cli_expert_apply(const char *cmd, const cli_expert_opts *o, const deepc_model_info *mi, deepc_session_params *p);
#define CLI_EXPERT_FLAGS_HELP \
    "  --expert-cache SIZE    MoE: bytes of routed experts kept in RAM (12G, 800M, 4096K, or\n" \
    "                         50% of the model's experts); the rest are read from disk on\n" \
    "                         demand. Default: all in place from the file mapping\n" \
    "  --max-ram SIZE         RAM the model and session may use (e.g. 16G, or 75% of this\n" \
    "                         machine's RAM): weights, KV cache and scratch first, the\n" \
    "                         expert cache gets the rest; too little is an error that says\n" \
    "                         how much is needed\n" \
    "  --pin-profile FILE     MoE: keep the hottest experts of a `deepc profile` loaded\n" \
    "  --expert-io-threads N  MoE: threads reading experts from disk (default 4)\n" \
    "  --no-prefetch          MoE: no read-ahead of the next layer's likely experts\n" \
    "  --buffered-io          MoE: read experts through the page cache instead of\n" \
    "                         bypassing it (O_DIRECT / F_NOCACHE)\n"
/* deepc_model_open_ex with p (NULL = defaults), printing the library's
 * warnings as "deepc <cmd>: warning: ..." on stderr. */
deepc_status cli_model_open(const char *cmd, const char *path, const deepc_model_params *p, deepc_model **m);
/* For commands that never evaluate (info, verify, tokenize, detokenize): the
 * weights stay in the file mapping, so opening reads no weight data. */
deepc_status cli_model_open_mapped(const char *cmd, const char *path, deepc_model **m);
/* Returns the value after flag argv[*i] (advancing *i) or NULL if missing. */
const char *cli_value(int argc, char **argv, int *i);

int cmd_convert(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_profile(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);

#endif
