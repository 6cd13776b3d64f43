/* chat_template.h - chat templates rendered in C, byte-identical to what the
 * official Jinja templates produce through Hugging Face transformers. */
#ifndef DEEPC_CHAT_TEMPLATE_H
#define DEEPC_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include "deepc.h"
#include "tokdata.h"

/* "deepseek-r1", "deepseek-v3", "deepseek-v2", "chatml", "llama3" -> kind;
 * DEEPC_TMPL_NONE if unknown or NULL. */
deepc_tmpl_kind deepc_tmpl_from_name(const char *name);
/* kind -> the name above (a static string); "none" for DEEPC_TMPL_NONE or an
 * out-of-range value. */
const char *deepc_tmpl_name(deepc_tmpl_kind k);

/* Renders into out (always NUL-terminated when cap > 0; out may be NULL when
 * cap is 0) and returns the number of bytes the full rendering needs
 * (excluding the NUL), whatever cap is: call once with cap 0 to size the
 * buffer. A truncated rendering is its first cap-1 bytes (possibly ending
 * inside a UTF-8 sequence). bos_text is the BOS token's text (e.g.
 * "<｜begin▁of▁sentence｜>"), used by templates that start with it; NULL means
 * "". Roles: "system", "user", "assistant", "tool" (and "ipython" for
 * LLAMA3); a NULL content renders as "" (in DeepSeek R1/V3 an assistant with
 * NULL content is a tool-call turn and prints nothing). Returns (size_t)-1,
 * with out set to "", for an invalid role, an unknown kind, or msgs NULL with
 * n > 0. */
size_t deepc_tmpl_render(deepc_tmpl_kind k, const char *bos_text,
                         const deepc_chat_msg *msgs, size_t n, bool add_generation_prompt,
                         char *out, size_t cap);

/* A byte range of the rendering that holds message content (not template
 * text). */
typedef struct deepc_tmpl_span {
    size_t off, len;
} deepc_tmpl_span;

/* Like deepc_tmpl_render, and also reports where message contents landed, in
 * order: up to max_spans are written; *n_spans gets the number there are
 * (3 * n_msgs + 1 always suffices). */
size_t deepc_tmpl_render_spans(deepc_tmpl_kind k, const char *bos_text,
                               const deepc_chat_msg *msgs, size_t n, bool add_generation_prompt,
                               char *out, size_t cap,
                               deepc_tmpl_span *spans, size_t max_spans, size_t *n_spans);

#endif
