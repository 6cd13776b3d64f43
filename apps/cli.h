/* cli.h - helpers shared by the deepc subcommands: strict number parsing,
 * error printing, and the subcommand entry points. */
#ifndef DEEPC_CLI_H
#define DEEPC_CLI_H

#include <stdbool.h>
#include <stdint.h>

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
/* Returns the value after flag argv[*i] (advancing *i) or NULL if missing. */
const char *cli_value(int argc, char **argv, int *i);

int cmd_convert(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_chat(int argc, char **argv);

#endif
