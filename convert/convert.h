/* convert.h - internal interfaces of the converter: Hugging Face config
 * parsing into hyperparameters, and the tensor plan (which checkpoint tensor
 * becomes which .dqf tensor, with which shape and transform). */
#ifndef DEEPC_CONVERT_H
#define DEEPC_CONVERT_H

#include <stdbool.h>
#include <stdint.h>

#include "dqf.h"
#include "json.h"
#include "model.h"
#include "safetensors.h"

typedef enum {
    PLAN_COPY = 0,   /* rows as they are */
    PLAN_K_B,        /* kv_b_proj's key rows, transposed per head: (H*kv_lora, nope) */
    PLAN_V_B         /* kv_b_proj's value rows: (H*v, kv_lora) */
} plan_kind;

typedef struct {
    char name[128];            /* in the .dqf */
    char src[128];             /* in the checkpoint */
    uint64_t rows, cols;       /* output shape; rows == 0: a vector of cols */
    uint64_t src_rows, src_cols;  /* expected checkpoint shape (src_rows == 0: vector) */
    plan_kind kind;
    uint32_t flags;            /* DEEPC_TENSOR_OPTIONAL for MTP layers */
    uint64_t align;            /* DEEPC_DQF_PAGE for the first matrix of an expert record */
    bool keep_f32;             /* router weights: routing must see exact scores */
    bool any_shape;            /* shape taken from the checkpoint (MTP tensors) */
} planned;

typedef struct {
    planned *v;
    size_t n, cap;
} plan_list;

/* Parses config.json for every supported architecture. */
int deepc_hf_parse_config(const deepc_json *cfg, deepc_hparams *hp, deepc_err *err);
/* Writes the hyperparameters as .dqf metadata. */
int deepc_hf_write_hparams(deepc_dqf_writer *w, const deepc_hparams *hp);
/* The tensor list for hp (st is consulted only for the optional MTP layers). */
int deepc_plan_build(const deepc_hparams *hp, const deepc_st *st, plan_list *pl, deepc_err *err);
void deepc_plan_free(plan_list *pl);

#endif
