/* tokbench.c - single-threaded encoding throughput of the tokenizer.
 *
 * Usage: tokbench [--text FILE] TOKENIZER [TOKENIZER...]
 *   TOKENIZER: a tokenizer.json, or a directory holding tokenizer.json (and
 *   optionally tokenizer_config.json).
 *   --text FILE: encode this file instead of the built-in prose.
 *
 * The built-in corpus is ~1 MB of generated English prose (a fixed
 * pseudo-random stream of sentences from a word list, so every run and every
 * machine encodes the same text), cut into 4 KB documents. Two figures per
 * tokenizer: documents encoded one call each (the usual serving pattern) and
 * the whole corpus in one call. Best of several repetitions, MB = 10^6 bytes.
 * A benchmark, not a test: it never fails on speed. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tokdata.h"
#include "tokenizer.h"
#include "util.h"

#define CORPUS_BYTES (1u << 20)
#define DOC_BYTES 4096u

static const char *const words[] = {
    "the", "of", "and", "to", "a", "in", "is", "it", "that", "was", "for", "on", "are", "with",
    "as", "I", "his", "they", "be", "at", "one", "have", "this", "from", "or", "had", "by",
    "word", "but", "what", "some", "we", "can", "out", "other", "were", "all", "there", "when",
    "up", "use", "your", "how", "said", "an", "each", "she", "which", "do", "their", "time",
    "if", "will", "way", "about", "many", "then", "them", "write", "would", "like", "so",
    "these", "her", "long", "make", "thing", "see", "him", "two", "has", "look", "more", "day",
    "could", "go", "come", "did", "number", "sound", "no", "most", "people", "my", "over",
    "know", "water", "than", "call", "first", "who", "may", "down", "side", "been", "now",
    "find", "any", "new", "work", "part", "take", "get", "place", "made", "live", "where",
    "after", "back", "little", "only", "round", "man", "year", "came", "show", "every", "good",
    "me", "give", "our", "under", "name", "very", "through", "just", "form", "sentence",
    "great", "think", "say", "help", "low", "line", "differ", "turn", "cause", "much", "mean",
    "before", "move", "right", "boy", "old", "too", "same", "tell", "does", "set", "three",
    "want", "air", "well", "also", "play", "small", "end", "put", "home", "read", "hand",
    "port", "large", "spell", "add", "even", "land", "here", "must", "big", "high", "such",
    "follow", "act", "why", "ask", "men", "change", "went", "light", "kind", "off", "need",
    "house", "picture", "try", "us", "again", "animal", "point", "mother", "world", "near",
    "build", "self", "earth", "father", "head", "stand", "own", "page", "should", "country",
    "found", "answer", "school", "grow", "study", "still", "learn", "plant", "cover", "food",
    "sun", "four", "between", "state", "keep", "eye", "never", "last", "let", "thought",
    "city", "tree", "cross", "farm", "hard", "start", "might", "story", "saw", "far", "sea",
    "draw", "left", "late", "run", "don't", "while", "press", "close", "night", "real",
    "life", "few", "north", "government", "development", "information", "understanding",
    "relationship", "environmental", "responsibility", "international", "characteristic",
    "approximately", "unfortunately", "communication", "administration", "particularly",
    "it's", "we're", "you'll", "they've", "Hugging", "Face", "tokenizer", "parameters",
};

/* xorshift64*: a fixed stream, so the corpus is identical everywhere. */
static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

/* Fills buf with n bytes of prose (sentences, commas, numbers, paragraphs). */
static void make_prose(char *buf, size_t n) {
    uint64_t s = 0x9e3779b97f4a7c15ull;
    size_t w = 0, nw = sizeof words / sizeof words[0];
    while (w < n) {
        char sent[512];
        size_t k = 0;
        int len = 6 + (int)(rng_next(&s) % 18);
        for (int i = 0; i < len; i++) {
            const char *word = words[rng_next(&s) % nw];
            char tmp[32];
            if (rng_next(&s) % 40 == 0) {
                snprintf(tmp, sizeof tmp, "%u", (unsigned)(rng_next(&s) % 100000));
                word = tmp;
            }
            if (i > 0) sent[k++] = ' ';
            size_t l = strlen(word);
            memcpy(sent + k, word, l);
            if (i == 0 && sent[k] >= 'a' && sent[k] <= 'z') sent[k] -= 32;
            k += l;
            if (i + 1 < len && rng_next(&s) % 9 == 0) sent[k++] = ',';
        }
        uint64_t r = rng_next(&s) % 10;
        sent[k++] = r == 0 ? '?' : r == 1 ? '!' : '.';
        sent[k++] = rng_next(&s) % 6 == 0 ? '\n' : ' ';
        if (sent[k - 1] == '\n') sent[k++] = '\n';
        for (size_t i = 0; i < k && w < n; i++) buf[w++] = sent[i];
    }
}

static char *path_in(const char *p, const char *name) {
    struct stat st;
    if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) return deepc_path_join(p, name);
    if (strcmp(name, "tokenizer.json") == 0) return strdup(p);
    /* tokenizer_config.json next to a given tokenizer.json */
    const char *slash = strrchr(p, '/');
    if (!slash) return strdup(name);
    char *dir = strndup(p, (size_t)(slash - p));
    char *r = dir ? deepc_path_join(dir, name) : NULL;
    free(dir);
    return r;
}

static int bench_one(const char *path, const char *text, size_t len) {
    char *pj = path_in(path, "tokenizer.json"), *pc = path_in(path, "tokenizer_config.json");
    char *tj = NULL, *tc = NULL;
    size_t tjn = 0, tcn = 0;
    deepc_err err;
    deepc_tokdata td;
    deepc_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    int rc = 1;
    if (!pj || !pc || deepc_read_file(pj, 1u << 30, &tj, &tjn, &err) != 0) {
        fprintf(stderr, "tokbench: %s: %s\n", path, pj ? err.msg : "out of memory");
        goto done;
    }
    if (deepc_read_file(pc, 1u << 26, &tc, &tcn, &err) != 0) { tc = NULL; tcn = 0; }
    double t0 = deepc_now();
    if (deepc_tokdata_from_hf(tj, tjn, tc, tcn, &td, &err) != 0 ||
        !(tok = deepc_tokenizer_create(&td, &err))) {
        fprintf(stderr, "tokbench: %s: %s\n", path, err.msg);
        goto done;
    }
    double load_s = deepc_now() - t0;
    size_t cap = len + 16, n = 0, ntok = 0;
    ids = malloc(cap * sizeof *ids);
    if (!ids) goto done;
    /* Documents one call each, then all in one call; best of 5 runs. */
    double best_docs = 1e30, best_all = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t = deepc_now();
        ntok = 0;
        for (size_t off = 0; off < len; off += DOC_BYTES) {
            size_t l = len - off < DOC_BYTES ? len - off : DOC_BYTES;
            deepc_tokenizer_encode(tok, text + off, l, false, true, ids, cap, &n, NULL);
            ntok += n;
        }
        t = deepc_now() - t;
        if (t < best_docs) best_docs = t;
        t = deepc_now();
        deepc_tokenizer_encode(tok, text, len, false, true, ids, cap, &n, NULL);
        t = deepc_now() - t;
        if (t < best_all) best_all = t;
    }
    printf("%-28s load %.2f s  4KB docs: %6.1f MB/s  one call: %6.1f MB/s  (%zu tokens, %.2f bytes/token)\n",
           path, load_s, len / best_docs / 1e6, len / best_all / 1e6, ntok, (double)len / (double)ntok);
    rc = 0;
done:
    free(ids);
    deepc_tokenizer_destroy(tok);
    if (tok) deepc_tokdata_clear(&td);
    free(tj); free(tc); free(pj); free(pc);
    return rc;
}

int main(int argc, char **argv) {
    const char *text_path = NULL;
    int first = 1;
    while (first < argc && strncmp(argv[first], "--", 2) == 0) {
        if (strcmp(argv[first], "--text") == 0 && first + 1 < argc) {
            text_path = argv[first + 1];
            first += 2;
        } else {
            fprintf(stderr, "tokbench: unknown option %s\n", argv[first]);
            return 2;
        }
    }
    if (first >= argc) {
        fprintf(stderr, "usage: tokbench [--text FILE] TOKENIZER_JSON_OR_DIR...\n");
        return 2;
    }
    char *text = NULL;
    size_t len = 0;
    if (text_path) {
        deepc_err err;
        if (deepc_read_file(text_path, 1u << 30, &text, &len, &err) != 0) {
            fprintf(stderr, "tokbench: %s\n", err.msg);
            return 1;
        }
    } else {
        len = CORPUS_BYTES;
        text = malloc(len);
        if (!text) return 1;
        make_prose(text, len);
    }
    printf("tokbench: %zu bytes of %s, single thread\n", len, text_path ? text_path : "built-in English prose");
    int rc = 0;
    for (int i = first; i < argc; i++) rc |= bench_one(argv[i], text, len);
    free(text);
    return rc;
}
