/* chat_template.c - the chat templates of the model families deepc runs,
 * rendered by hand-written C instead of a Jinja engine.
 *
 * Each renderer follows its Jinja source (the .jinja files in
 * test/data/templates) branch by branch, so the output is byte-identical to
 * what Hugging Face transformers' apply_chat_template produces for plain text
 * messages (role + content). Python string semantics the templates rely on
 * (str.split()[0] / [-1], strip('\n'), str.strip() for Jinja's `trim`) are
 * reproduced exactly by the helpers in the next section.
 *
 * Where the Jinja would raise or print "None" (a NULL content), we render an
 * empty string instead; an assistant message with NULL content in the
 * DeepSeek R1/V3 templates takes the template's "content is none" (tool call)
 * branch, which emits nothing for a message without tool calls. */
#include "chat_template.h"

#include <stdint.h>
#include <string.h>

/* ---- string views with Python str semantics ------------------------------ */

typedef struct {
    const char *p;
    size_t n;
} sv;

static sv sv_of(const char *s) {
    sv v = {s ? s : "", s ? strlen(s) : 0};
    return v;
}

static bool sv_starts(sv s, const char *pre) {
    size_t k = strlen(pre);
    return s.n >= k && memcmp(s.p, pre, k) == 0;
}

static bool sv_ends(sv s, const char *suf) {
    size_t k = strlen(suf);
    return s.n >= k && memcmp(s.p + s.n - k, suf, k) == 0;
}

/* Offset of the first occurrence of needle at or after from, or SIZE_MAX. */
static size_t sv_find(sv s, const char *needle, size_t from) {
    size_t k = strlen(needle);
    if (k == 0 || s.n < k) return SIZE_MAX;
    for (size_t i = from; i + k <= s.n; i++)
        if (s.p[i] == needle[0] && memcmp(s.p + i, needle, k) == 0) return i;
    return SIZE_MAX;
}

static bool sv_contains(sv s, const char *needle) {
    return sv_find(s, needle, 0) != SIZE_MAX;
}

/* Python s.split(sep)[0]: everything before the first sep (all of s if none). */
static sv split_first(sv s, const char *sep) {
    size_t at = sv_find(s, sep, 0);
    if (at != SIZE_MAX) s.n = at;
    return s;
}

/* Python s.split(sep)[-1]: everything after the last of the non-overlapping
 * matches found scanning left to right (all of s if none). */
static sv split_last(sv s, const char *sep) {
    size_t k = strlen(sep), at = 0, end = 0;
    while ((at = sv_find(s, sep, at)) != SIZE_MAX) {
        at += k;
        end = at;
    }
    s.p += end;
    s.n -= end;
    return s;
}

/* Python s.lstrip('\n') / s.rstrip('\n'). */
static sv lstrip_nl(sv s) {
    while (s.n > 0 && s.p[0] == '\n') s.p++, s.n--;
    return s;
}
static sv rstrip_nl(sv s) {
    while (s.n > 0 && s.p[s.n - 1] == '\n') s.n--;
    return s;
}

/* Byte length of the UTF-8 sequence at p (n bytes available) if it encodes a
 * character for which Python's str.isspace() is true, else 0. */
static size_t uspace_len(const unsigned char *p, size_t n) {
    unsigned c = p[0];
    if ((c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20)) return 1;
    if (c == 0xc2 && n >= 2 && (p[1] == 0x85 || p[1] == 0xa0)) return 2;     /* U+0085, U+00A0 */
    if (n < 3) return 0;
    if (c == 0xe1 && p[1] == 0x9a && p[2] == 0x80) return 3;                  /* U+1680 */
    if (c == 0xe2 && p[1] == 0x80 && p[2] >= 0x80 && p[2] <= 0x8a) return 3; /* U+2000..200A */
    if (c == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9 || p[2] == 0xaf))
        return 3;                                              /* U+2028, U+2029, U+202F */
    if (c == 0xe2 && p[1] == 0x81 && p[2] == 0x9f) return 3;                  /* U+205F */
    if (c == 0xe3 && p[1] == 0x80 && p[2] == 0x80) return 3;                  /* U+3000 */
    return 0;
}

/* Python s.strip() with no argument (what Jinja's `trim` filter calls):
 * removes Unicode whitespace from both ends. */
static sv py_strip(sv s) {
    const unsigned char *u = (const unsigned char *)s.p;
    size_t lo = 0, hi = s.n, k;
    while (lo < hi && (k = uspace_len(u + lo, hi - lo)) > 0) lo += k;
    while (hi > lo) {
        size_t start = hi - 1;  /* back up to the lead byte of the last character */
        while (start > lo && (u[start] & 0xc0) == 0x80 && hi - start < 4) start--;
        k = uspace_len(u + start, hi - start);
        if (k == 0 || start + k != hi) break;
        hi = start;
    }
    sv r = {s.p + lo, hi - lo};
    return r;
}

/* ---- output: a bounded writer that keeps counting past the end ----------- */

typedef struct {
    char *out;
    size_t cap;
    size_t len;  /* bytes the full rendering needs so far */
    deepc_tmpl_span *spans;   /* where message contents landed (may be NULL) */
    size_t max_spans, n_spans;
} writer;

static void put_sv(writer *w, sv s) {
    if (w->cap > 0 && w->len < w->cap - 1) {
        size_t room = w->cap - 1 - w->len;
        memcpy(w->out + w->len, s.p, s.n < room ? s.n : room);
    }
    /* Saturate below SIZE_MAX so a huge size is never read as the error value. */
    w->len = (s.n >= SIZE_MAX - 1 - w->len) ? SIZE_MAX - 1 : w->len + s.n;
}

static void put(writer *w, const char *s) {
    put_sv(w, sv_of(s));
}

/* Message content (as opposed to template text): recorded as a span so the
 * caller can tokenize it without recognizing special tokens in it. */
static void put_content(writer *w, sv s) {
    if (s.n && w->n_spans < w->max_spans) {
        w->spans[w->n_spans].off = w->len;
        w->spans[w->n_spans].len = s.n;
    }
    if (s.n) w->n_spans++;
    put_sv(w, s);
}

/* ---- roles ---------------------------------------------------------------- */

typedef enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT, ROLE_TOOL, ROLE_IPYTHON, ROLE_BAD } role;

/* The roles a conversation may use: the four every template knows, plus
 * Llama 3.1's "ipython" (its template prints any role name verbatim). */
static role role_of(const char *r, deepc_tmpl_kind k) {
    if (!r) return ROLE_BAD;
    if (strcmp(r, "system") == 0) return ROLE_SYSTEM;
    if (strcmp(r, "user") == 0) return ROLE_USER;
    if (strcmp(r, "assistant") == 0) return ROLE_ASSISTANT;
    if (strcmp(r, "tool") == 0) return ROLE_TOOL;
    if (k == DEEPC_TMPL_LLAMA3 && strcmp(r, "ipython") == 0) return ROLE_IPYTHON;
    return ROLE_BAD;
}

/* ---- DeepSeek R1 and V3 (deepseek-r1.jinja, deepseek-v3.jinja) ------------ */

#define DS_USER "<｜User｜>"
#define DS_ASSISTANT "<｜Assistant｜>"
#define DS_EOS "<｜end▁of▁sentence｜>"
#define DS_TOOL_OUTPUTS_BEGIN "<｜tool▁outputs▁begin｜>"
#define DS_TOOL_OUTPUTS_END "<｜tool▁outputs▁end｜>"
#define DS_TOOL_OUTPUT_BEGIN "<｜tool▁output▁begin｜>"
#define DS_TOOL_OUTPUT_END "<｜tool▁output▁end｜>"

/* The two templates share one body; they differ in three places:
 *   system prompt  R1: the last system message's content (each one overwrites
 *                      ns.system_prompt);  V3: all system contents joined by "\n\n".
 *   assistant turn R1: content.split('</think>')[-1];  V3: content as is.
 *   gen. prompt    R1: "<｜Assistant｜><think>\n";  V3: "<｜Assistant｜>". */
static void render_deepseek(writer *w, bool r1, const char *bos, const deepc_chat_msg *m,
                            size_t n, bool gen) {
    bool is_tool = false, is_output_first = true, first_sp = true;
    const char *last_sp = NULL;

    put(w, bos);
    for (size_t i = 0; i < n; i++) {
        if (role_of(m[i].role, DEEPC_TMPL_DEEPSEEK_V3) != ROLE_SYSTEM) continue;
        if (r1) {
            last_sp = m[i].content ? m[i].content : "";
        } else {
            if (!first_sp) put(w, "\n\n");
            put_content(w, sv_of(m[i].content));
            first_sp = false;
        }
    }
    if (r1 && last_sp) put_content(w, sv_of(last_sp));

    for (size_t i = 0; i < n; i++) {
        sv c = sv_of(m[i].content);
        switch (role_of(m[i].role, DEEPC_TMPL_DEEPSEEK_V3)) {
        case ROLE_USER:
            is_tool = false;
            put(w, DS_USER);
            put_content(w, c);
            break;
        case ROLE_ASSISTANT:
            if (!m[i].content) {  /* "content is none": tool calls only, none here */
                is_tool = false;
            } else if (is_tool) {
                put(w, DS_TOOL_OUTPUTS_END);
                put_content(w, c);
                put(w, DS_EOS);
                is_tool = false;
            } else {
                if (r1) c = split_last(c, "</think>");
                put(w, DS_ASSISTANT);
                put_content(w, c);
                put(w, DS_EOS);
            }
            break;
        case ROLE_TOOL:
            is_tool = true;
            put(w, is_output_first ? DS_TOOL_OUTPUTS_BEGIN DS_TOOL_OUTPUT_BEGIN
                                   : "\n" DS_TOOL_OUTPUT_BEGIN);
            put_content(w, c);
            put(w, DS_TOOL_OUTPUT_END);
            is_output_first = false;
            break;
        default:
            break;
        }
    }
    if (is_tool) put(w, DS_TOOL_OUTPUTS_END);
    if (gen && !is_tool) put(w, r1 ? DS_ASSISTANT "<think>\n" : DS_ASSISTANT);
}

/* ---- DeepSeek V2 (deepseek-v2.jinja) --------------------------------------
 * {{ bos_token }}, then in order: user "User: {c}\n\n", assistant
 * "Assistant: {c}{eos}", system "{c}\n\n"; other roles print nothing.
 * Generation prompt "Assistant:" (no trailing space). eos_token is the
 * DeepSeek-V2 tokenizer's "<｜end▁of▁sentence｜>". */
static void render_deepseek_v2(writer *w, const char *bos, const deepc_chat_msg *m, size_t n,
                               bool gen) {
    put(w, bos);
    for (size_t i = 0; i < n; i++) {
        switch (role_of(m[i].role, DEEPC_TMPL_DEEPSEEK_V2)) {
        case ROLE_USER:
            put(w, "User: ");
            put_content(w, sv_of(m[i].content));
            put(w, "\n\n");
            break;
        case ROLE_ASSISTANT:
            put(w, "Assistant: ");
            put_content(w, sv_of(m[i].content));
            put(w, DS_EOS);
            break;
        case ROLE_SYSTEM:
            put_content(w, sv_of(m[i].content));
            put(w, "\n\n");
            break;
        default:
            break;
        }
    }
    if (gen) put(w, "Assistant:");
}

/* ---- ChatML, Qwen3 flavour (qwen3.jinja, no tools) ------------------------ */

static void render_chatml(writer *w, const deepc_chat_msg *m, size_t n, bool gen) {
    const deepc_tmpl_kind K = DEEPC_TMPL_CHATML;

    /* A leading system message opens the prompt. */
    if (n > 0 && role_of(m[0].role, K) == ROLE_SYSTEM) {
        put(w, "<|im_start|>system\n");
        put_content(w, sv_of(m[0].content));
        put(w, "<|im_end|>\n");
    }

    /* last_query_index: the last user message that is not a wrapped tool
     * response; n - 1 when there is none. */
    size_t last_query = n > 0 ? n - 1 : 0;
    for (size_t j = n; j-- > 0;) {
        sv c = sv_of(m[j].content);
        if (role_of(m[j].role, K) == ROLE_USER &&
            !(sv_starts(c, "<tool_response>") && sv_ends(c, "</tool_response>"))) {
            last_query = j;
            break;
        }
    }

    for (size_t i = 0; i < n; i++) {
        role r = role_of(m[i].role, K);
        sv c = sv_of(m[i].content);
        if (r == ROLE_USER || (r == ROLE_SYSTEM && i > 0)) {
            put(w, "<|im_start|>");
            put(w, m[i].role);
            put(w, "\n");
            put_content(w, c);
            put(w, "<|im_end|>\n");
        } else if (r == ROLE_ASSISTANT) {
            /* Without a reasoning_content field the reasoning is taken out of
             * the content: content = after the last '</think>', lstrip('\n');
             * reasoning = before the first '</think>', rstrip('\n'), after the
             * last '<think>', lstrip('\n'). */
            sv content = c, reasoning = {"", 0};
            if (sv_contains(c, "</think>")) {
                content = lstrip_nl(split_last(c, "</think>"));
                reasoning = lstrip_nl(split_last(rstrip_nl(split_first(c, "</think>")), "<think>"));
            }
            bool last = i + 1 == n;
            if (i > last_query && (last || reasoning.n > 0)) {
                put(w, "<|im_start|>assistant\n<think>\n");
                put_content(w, rstrip_nl(lstrip_nl(reasoning)));
                put(w, "\n</think>\n\n");
                put_content(w, lstrip_nl(content));
            } else {
                put(w, "<|im_start|>assistant\n");
                put_content(w, content);
            }
            put(w, "<|im_end|>\n");
        } else if (r == ROLE_TOOL) {
            if (i == 0 || role_of(m[i - 1].role, K) != ROLE_TOOL) put(w, "<|im_start|>user");
            put(w, "\n<tool_response>\n");
            put_content(w, c);
            put(w, "\n</tool_response>");
            if (i + 1 == n || role_of(m[i + 1].role, K) != ROLE_TOOL) put(w, "<|im_end|>\n");
        }
    }
    if (gen) put(w, "<|im_start|>assistant\n");
}

/* ---- Llama 3 / 3.1 (llama-3.1.jinja) --------------------------------------
 * Every message: "<|start_header_id|>{role}<|end_header_id|>\n\n" +
 * (content | trim) + "<|eot_id|>", the first one preceded by bos_token.
 * This template has no default system block and no date. */
static void render_llama3(writer *w, const char *bos, const deepc_chat_msg *m, size_t n,
                          bool gen) {
    for (size_t i = 0; i < n; i++) {
        if (i == 0) put(w, bos);
        put(w, "<|start_header_id|>");
        put(w, m[i].role);
        put(w, "<|end_header_id|>\n\n");
        put_content(w, py_strip(sv_of(m[i].content)));
        put(w, "<|eot_id|>");
    }
    if (gen) put(w, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* ---- public API ----------------------------------------------------------- */

static const char *const tmpl_names[DEEPC_TMPL_COUNT] = {
    [DEEPC_TMPL_NONE] = "none",
    [DEEPC_TMPL_DEEPSEEK_R1] = "deepseek-r1",
    [DEEPC_TMPL_DEEPSEEK_V3] = "deepseek-v3",
    [DEEPC_TMPL_DEEPSEEK_V2] = "deepseek-v2",
    [DEEPC_TMPL_CHATML] = "chatml",
    [DEEPC_TMPL_LLAMA3] = "llama3",
};

deepc_tmpl_kind deepc_tmpl_from_name(const char *name) {
    if (!name) return DEEPC_TMPL_NONE;
    for (int k = DEEPC_TMPL_NONE + 1; k < DEEPC_TMPL_COUNT; k++)
        if (strcmp(name, tmpl_names[k]) == 0) return (deepc_tmpl_kind)k;
    return DEEPC_TMPL_NONE;
}

const char *deepc_tmpl_name(deepc_tmpl_kind k) {
    if ((int)k <= DEEPC_TMPL_NONE || (int)k >= DEEPC_TMPL_COUNT) return tmpl_names[DEEPC_TMPL_NONE];
    return tmpl_names[k];
}

/* Families are told apart by strings their templates must contain to work at
 * all, not by exact text, so revisions of a checkpoint's template (added tool
 * branches, whitespace) still land in the right family. The DeepSeek markers
 * are checked first: they use fullwidth bars that no other family has. */
deepc_tmpl_kind deepc_tmpl_detect(const char *jinja_source) {
    if (!jinja_source) return DEEPC_TMPL_NONE;
    sv s = sv_of(jinja_source);
    if (sv_contains(s, DS_ASSISTANT)) {
        if (sv_contains(s, "<think>") || sv_contains(s, "</think>")) return DEEPC_TMPL_DEEPSEEK_R1;
        return DEEPC_TMPL_DEEPSEEK_V3;
    }
    if (sv_contains(s, "<|im_start|>")) return DEEPC_TMPL_CHATML;
    if (sv_contains(s, "<|start_header_id|>")) return DEEPC_TMPL_LLAMA3;
    if (sv_contains(s, "User: ") && sv_contains(s, "Assistant:")) return DEEPC_TMPL_DEEPSEEK_V2;
    return DEEPC_TMPL_NONE;
}

size_t deepc_tmpl_render(deepc_tmpl_kind k, const char *bos_text, const deepc_chat_msg *msgs,
                         size_t n, bool add_generation_prompt, char *out, size_t cap) {
    return deepc_tmpl_render_spans(k, bos_text, msgs, n, add_generation_prompt, out, cap, NULL, 0, NULL);
}

size_t deepc_tmpl_render_spans(deepc_tmpl_kind k, const char *bos_text, const deepc_chat_msg *msgs,
                               size_t n, bool add_generation_prompt, char *out, size_t cap,
                               deepc_tmpl_span *spans, size_t max_spans, size_t *n_spans) {
    writer w = {out, out ? cap : 0, 0, spans, spans ? max_spans : 0, 0};
    if (n_spans) *n_spans = 0;
    if (w.cap > 0) out[0] = '\0';
    if ((int)k <= DEEPC_TMPL_NONE || (int)k >= DEEPC_TMPL_COUNT) return (size_t)-1;
    if (n > 0 && !msgs) return (size_t)-1;
    for (size_t i = 0; i < n; i++)
        if (role_of(msgs[i].role, k) == ROLE_BAD) return (size_t)-1;
    const char *bos = bos_text ? bos_text : "";

    switch (k) {
    case DEEPC_TMPL_DEEPSEEK_R1: render_deepseek(&w, true, bos, msgs, n, add_generation_prompt); break;
    case DEEPC_TMPL_DEEPSEEK_V3: render_deepseek(&w, false, bos, msgs, n, add_generation_prompt); break;
    case DEEPC_TMPL_DEEPSEEK_V2: render_deepseek_v2(&w, bos, msgs, n, add_generation_prompt); break;
    case DEEPC_TMPL_CHATML: render_chatml(&w, msgs, n, add_generation_prompt); break;
    case DEEPC_TMPL_LLAMA3: render_llama3(&w, bos, msgs, n, add_generation_prompt); break;
    default: return (size_t)-1;
    }
    if (w.cap > 0) out[w.len < w.cap - 1 ? w.len : w.cap - 1] = '\0';
    if (n_spans) *n_spans = w.n_spans;
    return w.len;
}
