/*
 * clip_init.h — a fresh, randomly initialised CLIP as a Hugging Face snapshot (`mmtune init`).
 *
 * Usage:
 *   mmt_clip_init_params p;
 *   mmt_clip_init_params_default(&p);
 *   p.out_dir = "models/new";  p.tokenizer_dir = "tok";  p.seed = 7;
 *   MMT_TRY(mmt_clip_init_snapshot(&p));
 *
 * The folder gets config.json (every key CLIPConfig.save_pretrained writes), model.safetensors
 * (every CLIPModel tensor, F32), the tokenizer files copied from tokenizer_dir and a
 * preprocessor_config.json for the vision image_size. Weights follow transformers'
 * CLIPPreTrainedModel._init_weights (modeling_clip.py) — normal(0, std) with the per-module
 * std below, LayerNorm 1/0, biases 0, logit_scale = logit_scale_init_value — drawn from
 * mmtune's own generator (splitmix64 + Box–Muller, one stream per tensor keyed by its name),
 * so one seed gives the same bytes on any machine.
 */
#ifndef MMT_MODELS_CLIP_INIT_H
#define MMT_MODELS_CLIP_INIT_H

#include <stdint.h>

#include "models/clip.h"

typedef struct mmt_clip_init_params {
    /* Architecture. The text tower's vocab_size and bos/eos/pad ids are replaced by the
     * tokenizer's in mmt_clip_init_snapshot; intermediate sizes are the caller's. */
    mmt_clip_config config;
    uint64_t seed;
    double initializer_factor; /* HF's `factor` (1.0) */
    double initializer_range;  /* HF's initializer_range (0.02): patch and vision positions */
    const char *out_dir;       /* created if missing; files in it are replaced */
    const char *tokenizer_dir; /* vocab.json + merges.txt (+ tokenizer_config.json, special_tokens_map.json) */
} mmt_clip_init_params;

/* A small default architecture (docs/training.md "A fresh model"): both towers width 128,
 * 4 layers, 4 heads, MLP 4x; 64 px images in 8 px patches; context 32; projection 128. */
void mmt_clip_init_params_default(mmt_clip_init_params *p);

/* The normal std HF's _init_weights gives tensor `name` of a CLIPModel with cfg, or -1 when it
 * sets a constant instead (*constant gets it: LayerNorm weights 1, biases 0, logit_scale). */
double mmt_clip_init_std(const mmt_clip_config *cfg, double initializer_factor,
                         double initializer_range, const char *name, double *constant);

/* Checks the architecture (positive sizes, heads divide widths, patches tile the image). */
mmt_status mmt_clip_init_check(const mmt_clip_config *cfg);

/* Writes the snapshot described above; errors name the file or the setting. */
mmt_status mmt_clip_init_snapshot(const mmt_clip_init_params *p);

#endif
