/*
 * encoder.h — what `embed`, `classify` and `eval --head` embed with: a loaded CLIP, and when
 * an adapter folder is given, a training view with that adapter attached (inference only).
 *
 * Without an adapter the model's own fast path is used (texts trimmed to their EOS); with
 * one, the view computes the same normalised projected embeddings with the adapter's LoRA /
 * IA3 tensors applied, as PEFT's adapted CLIPModel.get_*_features would.
 */
#ifndef MMT_TOOLS_CLI_ENCODER_H
#define MMT_TOOLS_CLI_ENCODER_H

#include <stdint.h>

#include "models/clip.h"
#include "models/clip_train.h"
#include "peft/adapter.h"

typedef struct cli_encoder {
    mmt_clip *model;        /* owned */
    mmt_clip_train *view;   /* owned; NULL without an adapter */
    mmt_adapter *adapter;   /* owned; NULL without an adapter (or with prompts only) */
    struct mmt_prompt *prompt; /* owned; text/visual prompts or prefixes, NULL without */
} cli_encoder;

/* Loads the model and, when adapter_dir is not NULL, the adapter folder onto a view: LoRA,
 * IA3, DoRA, bottleneck, prompts/prefixes, or a combination (prompt/ subfolder). */
mmt_status cli_encoder_open(const char *model_dir, const char *adapter_dir, cli_encoder *e);
void cli_encoder_close(cli_encoder *e);

int64_t cli_encoder_dim(const cli_encoder *e);

/* MMT_OK, or an error naming the first of n rows (what: "image", "text") holding a NaN or an
 * infinity: results are checked before anything prints them as JSON. */
mmt_status cli_finite_embeddings(const float *out, int64_t n, int64_t dim, const char *what);

/* Normalised image embeddings of image files, out (n, projection_dim); non-finite results are
 * an error (cli_finite_embeddings). */
mmt_status cli_encoder_images(cli_encoder *e, const char *const *paths, int64_t n, float *out);
/* Normalised text embeddings, out (n, projection_dim); truncate as mmt_clip_tokenize. */
mmt_status cli_encoder_texts(cli_encoder *e, const char *const *texts, int64_t n, int truncate,
                             float *out);

#endif
