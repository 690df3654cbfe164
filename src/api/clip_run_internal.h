/*
 * clip_run_internal.h — what tests may ask a run context (api/clip_run.c) beyond mmtune.h.
 */
#ifndef MMT_API_CLIP_RUN_INTERNAL_H
#define MMT_API_CLIP_RUN_INTERNAL_H

#include <stdint.h>

#include "mmtune.h"

/* Views the run made for adapters that cannot join mixed batches (DoRA, bottleneck,
 * modules_to_save, merged): each computes its adapter's rows apart. */
int64_t mmt_clip_run_own_views(const mmt_clip_run *run);
/* Adapters the run has linked into its mixed view (one per mixable adapter it has seen). */
int64_t mmt_clip_run_links(const mmt_clip_run *run);

#endif
