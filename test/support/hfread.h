/* hfread.h - reads a generated checkpoint directory back, for the tests of
 * the generators themselves (test_hfgen.c, test_hfgen_moe.c): write a spec
 * into a scratch directory, load every file, find a tensor's header entry
 * in the shard the index names, get at its bytes.
 *
 * A small local scan written for the tests, not the engine's readers (nor
 * hfwrite.c's writer), so that a bug in one cannot hide a bug in the other.
 * No CMocka here (test/support objects are linked into the tools too):
 * functions report, the tests assert. */
#ifndef DEEPC_TEST_HFREAD_H
#define DEEPC_TEST_HFREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hfgen.h"
#include "hfgen_moe.h"

#define HFR_MAX_SHARDS 8

/* A tensor's entry in a safetensors header. */
typedef struct hfr_entry {
    char dtype[16];
    uint64_t shape[2];         /* shape[1] = 0 for 1-D */
    int ndim;
    uint64_t begin, end;       /* data_offsets, from the end of the header */
} hfr_entry;

typedef struct hfr_shard {
    char name[64];             /* file name in the directory */
    char *data;                /* the whole file (NUL-terminated) */
    size_t len;
    char *header;              /* NUL-terminated copy of the JSON header */
    uint64_t header_len;
} hfr_shard;

/* Every file of a checkpoint, read whole (NUL-terminated). */
typedef struct hfr_checkpoint {
    char dir[256];
    char *config, *generation_config, *tokenizer, *tokenizer_config;
    char *index;               /* model.safetensors.index.json; NULL if absent */
    int n_shards;
    hfr_shard shard[HFR_MAX_SHARDS];
} hfr_checkpoint;

/* Writes the checkpoint of spec into a new scratch directory and reads it
 * back: the four JSON files, and the n_shards safetensors files named as
 * the generator names them (model.safetensors, or model-0000K-of-N with N
 * written in 5 digits (hfgen) or 6 (hfgen_moe), plus the index). Returns 0,
 * or -1 with the reason on stderr (and nothing left to close). */
int hfr_write_dense(hfr_checkpoint *c, const hfgen_spec *spec);
int hfr_write_moe(hfr_checkpoint *c, const hfgen_moe_spec *spec);

/* Frees the files and removes the directory. */
void hfr_close(hfr_checkpoint *c);

/* Whether dir/name exists. */
bool hfr_exists(const char *dir, const char *name);

/* The entry for tensor `name` in a safetensors header. */
bool hfr_st_find(const char *header, const char *name, hfr_entry *e);

/* The shard holding tensor `name` (its entry in *e): the one the index
 * names (0 for a single file). -1 when the index lacks the name, that
 * shard's header lacks it, or another shard's header has it too. */
int hfr_locate(const hfr_checkpoint *c, const char *name, hfr_entry *e);

/* Bytes after the header of shard k (what the data offsets must cover). */
uint64_t hfr_data_bytes(const hfr_checkpoint *c, int k);

/* The data of entry e of shard k, or NULL when its offsets leave the file. */
const uint8_t *hfr_data(const hfr_checkpoint *c, int k, const hfr_entry *e);

/* Whether the two checkpoints have the same files, byte for byte. */
bool hfr_same_files(const hfr_checkpoint *a, const hfr_checkpoint *b);

/* The first of needles[0..n) that text does not contain, or NULL. */
const char *hfr_first_missing(const char *text, const char *const *needles, size_t n);

/* Occurrences of needle in s (overlapping ones counted). */
int hfr_count(const char *s, const char *needle);

/* Little-endian numbers. */
uint16_t hfr_le_u16(const uint8_t *p);
float hfr_le_f32(const uint8_t *p);

/* Reads the JSON string literal at p (just after its opening quote) into
 * out, undoing \" \\ \n \r \t and ASCII \uXXXX; returns the position after
 * the closing quote. */
const char *hfr_json_str(const char *p, char *out, size_t cap);

#endif
