/*
 * train_api.c — training in the public API (mmtune.h): mmt_clip_train_adapter on a data file
 * and mmt_clip_train_adapter_on_pairs on pairs in memory.
 *
 * Both fill the settings `mmtune train` uses (train/train_config.h) from mmt_train_options
 * and the base's folder, check them with the CLI's checks and run train/train_job.h, the
 * CLI's code path: the same settings give the same run folder and adapter, bit for bit
 * (tests/test_train_api.c compares them with the binary's). What the CLI prints, the API
 * returns: progress through on_step, the counts in mmt_train_summary.
 */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/status.h"
#include "core/weights.h"
#include "data/datasets.h"
#include "data/pairs.h"
#include "models/clip.h"
#include "train/train_config.h"
#include "train/train_job.h"

/* The caller's on_step, behind the trainer's callback. */
typedef struct step_relay {
    void (*on_step)(void *user, const mmt_train_step_info *info);
    void *user;
} step_relay;

static void relay_step(void *user, const mmt_train_progress *p) {
    const step_relay *r = user;
    mmt_train_step_info info = {p->step, p->total_steps, p->start_step, p->loss, p->lr, p->images_per_s, p->elapsed_s, p->eta_s};
    r->on_step(r->user, &info);
}

/* The settings of a run of base into out_dir; checked as `mmtune train` checks its flags. */
static mmt_status config_from(mmt_clip *base, const mmt_train_options *o, const char *data, const char *out_dir,
                              mmt_train_config *c) {
    mmt_train_config_default(c);
    if (o) c->o = *o;
    c->model = mmt_clip_weights(base)->dir;
    c->data = data;
    c->out = out_dir;
    return mmt_train_config_check(c);
}

/* Trains the checked settings c on pairs; the summary gets what the CLI prints. */
static mmt_status train_pairs(mmt_clip *base, const mmt_pairs *pairs, const mmt_train_config *c,
                              mmt_train_summary *summary) {
    mmt_train_job *job = NULL;
    mmt_status s = mmt_train_job_create(base, pairs, c, &job);
    if (s != MMT_OK) return s;
    step_relay relay = {c->o.on_step, c->o.user};
    mmt_train_job_result r;
    s = mmt_train_job_run(job, c->o.on_step ? relay_step : NULL, &relay, &r);
    if (s == MMT_OK && summary) {
        summary->steps_done = r.train.steps_done;
        summary->steps_run = r.train.steps_run;
        summary->final_loss = r.train.final_loss;
        summary->seconds = r.train.seconds;
        summary->trainable_params = mmt_train_job_trainable_params(job);
        summary->total_params = mmt_train_job_total_params(job);
        summary->pairs = pairs->n;
        summary->skipped = pairs->skipped;
    }
    mmt_train_job_free(job);
    return s;
}

static void summary_clear(mmt_train_summary *summary) {
    if (!summary) return;
    memset(summary, 0, sizeof *summary);
    summary->final_loss = NAN;
}

mmt_status mmt_clip_train_adapter(mmt_clip *base, const char *data_path, const mmt_train_options *o,
                                  const char *out_dir, mmt_train_summary *summary) {
    summary_clear(summary);
    if (!base) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: no base model");
    if (!data_path || !data_path[0]) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: no data file");
    if (!out_dir || !out_dir[0]) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: no run folder (out_dir)");
    mmt_train_config c;
    mmt_status s = config_from(base, o, data_path, out_dir, &c);
    if (s != MMT_OK) return s;
    mmt_pairs_options po;
    mmt_train_config_pairs_options(&c, &po);
    mmt_pairs *pairs = NULL;
    if ((s = mmt_pairs_load(data_path, &po, &pairs)) != MMT_OK) return s;
    s = train_pairs(base, pairs, &c, summary);
    mmt_pairs_free(pairs);
    return s;
}

/* n pairs in memory as the data readers would give them (copies; image files checked). */
static mmt_status pairs_from_memory(const char *const *image_paths, const char *const *texts, int64_t n, mmt_pairs **out) {
    *out = NULL;
    for (int64_t i = 0; i < n; i++) {
        if (!image_paths[i] || !image_paths[i][0] || !texts[i] || !texts[i][0])
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: pair %lld: missing or empty %s", (long long)i + 1,
                            !image_paths[i] || !image_paths[i][0] ? "image path" : "text");
        if (!mmt_file_exists(image_paths[i]))
            return mmt_fail(MMT_STATUS_NOT_FOUND, "train: pair %lld: image not found: %s", (long long)i + 1, image_paths[i]);
    }
    mmt_pairs *p = mmt_calloc(1, sizeof *p);
    if (!p) return MMT_STATUS_OUT_OF_MEMORY;
    p->items = mmt_calloc((size_t)n, sizeof *p->items);
    p->source = mmt_strdup("the pairs given");
    mmt_status s = p->items && p->source ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; s == MMT_OK && i < n; i++, p->n++) {
        p->items[i].image_path = mmt_strdup(image_paths[i]);
        p->items[i].text = mmt_strdup(texts[i]);
        if (!p->items[i].image_path || !p->items[i].text) s = MMT_STATUS_OUT_OF_MEMORY;
    }
    if (s != MMT_OK) {
        mmt_pairs_free(p);
        return s;
    }
    *out = p;
    return MMT_OK;
}

mmt_status mmt_clip_train_adapter_on_pairs(mmt_clip *base, const char *const *image_paths,
                                           const char *const *texts, int64_t n,
                                           const mmt_train_options *o, const char *out_dir,
                                           mmt_train_summary *summary) {
    summary_clear(summary);
    if (!base) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: no base model");
    if (n < 1 || !image_paths || !texts)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: no pairs (n %lld)", (long long)n);
    if (!out_dir || !out_dir[0]) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "train: no run folder (out_dir)");
    mmt_train_config c;
    mmt_status s = config_from(base, o, NULL, out_dir, &c);
    mmt_pairs *pairs = NULL;
    if (s == MMT_OK) s = pairs_from_memory(image_paths, texts, n, &pairs);
    if (s == MMT_OK) s = train_pairs(base, pairs, &c, summary);
    mmt_pairs_free(pairs);
    return s;
}
