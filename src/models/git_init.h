/*
 * git_init.h — a fresh, randomly initialised GIT captioner (GitForCausalLM) as a Hugging Face
 * snapshot (`mmtune init --family git`).
 *
 * Usage:
 *   mmt_git_init_params p;
 *   mmt_git_init_params_default(&p);
 *   p.out_dir = "models/new";  p.tokenizer_dir = "tok";  p.seed = 7;
 *   MMT_TRY(mmt_git_init_snapshot(&p));
 *
 * The folder gets config.json (what GitForCausalLM.save_pretrained writes, git_config.h),
 * model.safetensors (every GitForCausalLM state_dict tensor, F32), the tokenizer files copied
 * from tokenizer_dir (tokenizer.json, tokenizer_config.json, special_tokens_map.json when
 * present; a WordPiece tokenizer as `mmtune wordpiece` writes) and a preprocessor_config.json
 * of a CLIPImageProcessor at the vision image_size. vocab_size is the tokenizer's, bos its
 * [CLS], eos its [SEP], pad its [PAD] (transformers' GIT generates from [CLS] and stops at
 * [SEP]).
 *
 * Weights follow transformers 5's GitPreTrainedModel._init_weights (modeling_git.py) on top of
 * PreTrainedModel._init_weights: every Linear, Conv2d and Embedding weight normal(0, r), the
 * padding row (pad_token_id) of word_embeddings zero, biases zero, LayerNorm 1/0, and the
 * vision embeddings' class_embedding, patch and position embeddings normal(0, r) — with r the
 * initializer_range of the module's own config: vision_config's inside the image encoder
 * (a GitVisionModel), GitConfig's elsewhere. Values come from mmtune's own generator
 * (splitmix64 + Box–Muller, one stream per tensor keyed by seed and name, as clip_init.h), so
 * one seed gives the same bytes on any machine.
 */
#ifndef MMT_MODELS_GIT_INIT_H
#define MMT_MODELS_GIT_INIT_H

#include <stdint.h>

#include "models/git_config.h"

typedef struct mmt_git_init_params {
    /* Architecture. vocab_size and the bos/eos/pad ids are replaced by the tokenizer's in
     * mmt_git_init_snapshot; intermediate sizes are the caller's; the head is never tied. */
    mmt_git_config config;
    uint64_t seed;
    double initializer_range;        /* GitConfig's (0.02) */
    double vision_initializer_range; /* vision_config's (0.02) */
    const char *out_dir;             /* created if missing; files in it are replaced */
    const char *tokenizer_dir;       /* tokenizer.json (+ tokenizer_config.json) */
} mmt_git_init_params;

/* A small default architecture (docs/default_captioner.md): vision width 128, 4 layers,
 * 4 heads, 32 px images in 4 px patches; decoder width 128, 4 layers, 4 heads; MLPs 4x;
 * 32 text positions; quick_gelu in the vision tower, gelu in the decoder (GIT's). */
void mmt_git_init_params_default(mmt_git_init_params *p);

/* The normal std _init_weights gives tensor `name` of a GitForCausalLM, or -1 when it sets a
 * constant instead (*constant gets it: LayerNorm weights 1, biases 0); -2 for a name that is
 * not GitForCausalLM's. The word embeddings' padding row is zero besides. */
double mmt_git_init_std(double initializer_range, double vision_initializer_range, const char *name,
                        double *constant);

/* Checks the architecture (positive sizes, heads divide widths, patches tile the image, the
 * decoder's gelu) with one-line messages naming the setting. */
mmt_status mmt_git_init_check(const mmt_git_config *cfg);

/* Writes the snapshot described above; errors name the file or the setting. */
mmt_status mmt_git_init_snapshot(const mmt_git_init_params *p);

#endif
