/*
 * zero_shot.h — `mmtune eval --zero-shot`: CLIP-style zero-shot accuracy (eval/zeroshot.h) of
 * already-computed image embeddings, with the class prompts embedded through the same view
 * (so an adapter, when attached, applies to both towers).
 */
#ifndef MMT_TOOLS_CLI_ZERO_SHOT_H
#define MMT_TOOLS_CLI_ZERO_SHOT_H

#include <stdint.h>

#include "core/json.h"
#include "data/pairs.h"
#include "models/clip.h"
#include "models/clip_train.h"

/* img (pairs->n, P): the pairs' normalised image embeddings. templates_path NULL: the built-in
 * ensemble; classes_csv NULL: the pairs' distinct labels. Appends to json the members
 * `"zero_shot_accuracy": A, "zero_shot_classes": K, "zero_shot_templates": T,
 * "zero_shot_per_class": {"NAME": A, ...}` each preceded by ", ". */
mmt_status cli_zero_shot(mmt_clip *model, mmt_clip_train *view, const mmt_pairs *pairs, const float *img,
                         const char *templates_path, const char *classes_csv, mmt_strbuf *json);

#endif
