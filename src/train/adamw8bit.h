/*
 * adamw8bit.h — AdamW with 8-bit optimizer states, as bitsandbytes.optim.AdamW8bit does it.
 *
 * Each parameter of at least min_8bit_size elements (4096, bitsandbytes' default) keeps its
 * two moments as one byte per element each: the first moment in bitsandbytes' signed
 * dynamic map, the second in the unsigned one (quant/dynamic_map.h), each block of 256
 * elements with its own float32 absmax (quant/blockwise8.h). Smaller tensors keep float32
 * moments, as bitsandbytes does. So the states take about 2 bytes per parameter plus
 * 8 bytes per 256 (2.03 bytes), against 8 for mmt_adamw.
 *
 * Usage (the trainer's loop, as for mmt_adamw in train/optimizer.h):
 *
 *     mmt_adamw8bit_config c = mmt_adamw8bit_config_default();
 *     c.lr = 1e-4;
 *     mmt_adamw8bit *opt;
 *     MMT_TRY(mmt_adamw8bit_create(&c, groups, n_groups, &opt));
 *     ... gradients ...
 *     MMT_TRY(mmt_adamw8bit_step(opt, mmt_schedule_multiplier(&sched, opt->step)));
 *     ... checkpoint: mmt_adamw8bit_state_export, resume: mmt_adamw8bit_state_import ...
 *     mmt_adamw8bit_free(opt);
 *
 * The step is bitsandbytes 0.50.2 on the CPU (bitsandbytes/backends/cpu/ops.py) element for
 * element; see adamw8bit.c. Given the same gradients the states (bytes, absmax, the float32
 * moments of small tensors) equal bitsandbytes' bit for bit; the parameters agree to about
 * an ulp (torch's CPU sqrt is not always correctly rounded; ours is).
 */
#ifndef MMT_TRAIN_ADAMW8BIT_H
#define MMT_TRAIN_ADAMW8BIT_H

#include <stdint.h>

#include "core/safetensors.h"
#include "train/optimizer.h"

#define MMT_ADAMW8BIT_BLOCK 256 /* elements per absmax block (bitsandbytes' fixed 256) */

typedef struct mmt_adamw8bit_config {
    double lr;              /* base learning rate; each group multiplies it by lr_scale */
    double beta1, beta2;    /* in [0, 1) */
    double eps;             /* added to sqrt(v) / sqrt(1 - beta2^t) (8-bit tensors) or to
                               sqrt(v) as eps * sqrt(1 - beta2^t) (float32 ones), as bnb */
    int64_t min_8bit_size;  /* tensors with fewer elements keep float32 moments (>= 1) */
} mmt_adamw8bit_config;

/* bitsandbytes.optim.AdamW8bit defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8,
 * min_8bit_size 4096. (Weight decay is per group; bnb's default is 1e-2.) */
mmt_adamw8bit_config mmt_adamw8bit_config_default(void);

typedef struct mmt_adamw8bit {
    mmt_adamw8bit_config config;
    int64_t step;                 /* optimizer steps taken (bnb's state["step"]) */
    mmt_param_group *groups;      /* owned copy of the groups; params point into `params` */
    int64_t n_groups;
    mmt_param *params;            /* owned copy of every parameter (data/grad stay borrowed) */
    int64_t n_params;
    /* Per parameter i, either 8-bit (quantized[i] = 1): state1[i], state2[i] (numel bytes)
     * and absmax1[i], absmax2[i] (ceil(numel / 256) floats); or float32: exp_avg[i] and
     * exp_avg_sq[i] (numel floats). The other pair is NULL. */
    uint8_t *quantized;           /* owned (n_params) */
    int64_t *blocks;              /* owned (n_params): ceil(numel / 256) where quantized, else 0 */
    uint8_t **state1, **state2;   /* owned arrays of pointers into bytes */
    float **absmax1, **absmax2;   /* owned arrays of pointers into floats */
    float **exp_avg, **exp_avg_sq;/* owned arrays of pointers into floats */
    uint8_t *bytes;               /* owned: every 8-bit state */
    float *floats;                /* owned: every absmax and float32 moment */
    float code_signed[256];       /* bnb's create_dynamic_map(signed=True): the first moment */
    float code_unsigned[256];     /* create_dynamic_map(signed=False): the second */
    uint8_t *lut;                 /* owned: the two maps' quantization tables (quant/blockwise8.h),
                                   * 2 x 65536 bytes, signed first; NULL when nothing is 8-bit */
    float *scratch;               /* owned: the dequantized moments of a chunk of blocks,
                                     one pair of chunks per thread */
    int n_scratch;                /* threads the step may use (OpenMP's maximum at create) */
    char *names;                  /* owned: group labels, parameter names and state keys */
    const char **keys;            /* owned: 4 state keys per parameter (state1, state2,
                                     absmax1, absmax2; the last two unused for float32
                                     tensors), into names */
} mmt_adamw8bit;

/*
 * Creates the optimizer over the groups (copied with their labels and names; data and grad
 * stay borrowed). Moments start at zero (8-bit: bytes 0 and absmax 0, as bnb). Checks as
 * mmt_adamw_create (INVALID_ARGUMENT naming the parameter or setting), plus min_8bit_size
 * >= 1. *out is NULL on failure.
 */
mmt_status mmt_adamw8bit_create(const mmt_adamw8bit_config *config, const mmt_param_group *groups,
                                int64_t n_groups, mmt_adamw8bit **out);
void mmt_adamw8bit_free(mmt_adamw8bit *opt);

/* Bytes of optimizer state (8-bit moments, absmax, float32 moments): what the states cost. */
int64_t mmt_adamw8bit_state_bytes(const mmt_adamw8bit *opt);

/*
 * One step with lr = (config.lr * lr_scale) * multiplier per group, bnb's math (adamw8bit.c).
 * Allocates nothing. INVALID_ARGUMENT (state unchanged) if the multiplier is negative or not
 * finite, or a parameter with elements has no gradient buffer.
 */
mmt_status mmt_adamw8bit_step(mmt_adamw8bit *opt, double multiplier);

/*
 * Checkpoint state as safetensors tensors, named after bnb's state keys: "optimizer.step"
 * (I64, shape []); per 8-bit parameter p, "optimizer.state1.<p>" and "optimizer.state2.<p>"
 * (U8, p's shape) and "optimizer.absmax1.<p>", "optimizer.absmax2.<p>" (F32,
 * [ceil(numel/256)]); per float32 parameter, "optimizer.state1.<p>" and
 * "optimizer.state2.<p>" (F32, p's shape). Write it with the metadata
 * MMT_ADAMW8BIT_METADATA_KEY = MMT_ADAMW8BIT_NAME, so a resume can tell it from mmt_adamw's.
 * Export gives views of the optimizer's memory (valid until free, current until the next
 * step or import); cap entries, INVALID_ARGUMENT if too few.
 */
#define MMT_ADAMW8BIT_METADATA_KEY "optimizer"
#define MMT_ADAMW8BIT_NAME "adamw8bit"
int64_t mmt_adamw8bit_state_count(const mmt_adamw8bit *opt);
mmt_status mmt_adamw8bit_state_export(const mmt_adamw8bit *opt, mmt_st_write_tensor *out,
                                      int64_t cap, int64_t *n_out);

/*
 * Restores step and states from an opened safetensors file. Everything is checked first:
 * each tensor present (else NOT_FOUND), of its dtype and shape, step >= 0, absmax >= 0 and
 * finite, float32 second moments >= 0 and not NaN (else BAD_FORMAT); on any failure nothing
 * changes and the one-line message names the file and tensor. A file made by mmt_adamw
 * (float32 "optimizer.exp_avg.*" tensors, no metadata) is refused with a message saying
 * so. Bytes are copied as they are, so steps after a resume equal an uninterrupted run's.
 */
mmt_status mmt_adamw8bit_state_import(mmt_adamw8bit *opt, const mmt_safetensors *st);

#endif
