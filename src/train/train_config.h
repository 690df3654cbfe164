/*
 * train_config.h — the settings of a CLIP training run, shared by `mmtune train`
 * (tools/cli/train.c) and mmt_clip_train_adapter (mmtune.h), so that both check, resolve and
 * record them the same way.
 *
 * The settings are one table: each has a flag, a key in the --config JSON file (and in
 * trainer_state.json and run.json), a type, a place in mmt_train_config and a help line; the
 * CLI prints --help from it and parses flags and config files with it, and the run records
 * are written from it, so none of them can drift apart. What a program sets is the public
 * mmt_train_options (its fields are named by the keys); the CLI-only settings sit beside it.
 *
 * Use: mmt_train_config_default, set fields, mmt_train_config_check (range checks and the
 * per-method defaults, e.g. IA3's targets), then train/train_job.h.
 */
#ifndef MMT_TRAIN_TRAIN_CONFIG_H
#define MMT_TRAIN_TRAIN_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "data/datasets.h"
#include "data/pairs.h"
#include "peft/bottleneck_config.h"

typedef struct mmt_train_config {
    mmt_train_options o;  /* every setting a program gives (mmtune.h); on_step is not used here */
    const char *model;    /* the base's snapshot folder (its fingerprint goes into run.json) */
    const char *data;     /* the data file (NULL: pairs given in memory) */
    const char *out;      /* the run folder */
    const char *config;   /* CLI: the --config file it was read from */
    const char *progress; /* CLI: auto, bar or log */
    int quiet;            /* no progress and no info log lines */
} mmt_train_config;

typedef enum mmt_train_setting_type {
    MMT_TRAIN_SETTING_STRING,
    MMT_TRAIN_SETTING_INT,    /* int64_t */
    MMT_TRAIN_SETTING_DOUBLE,
    MMT_TRAIN_SETTING_BOOL    /* int */
} mmt_train_setting_type;

typedef struct mmt_train_setting {
    const char *flag;    /* "--lora-r" */
    const char *key;     /* "lora_r"; NULL: a CLI-only flag that no file records */
    mmt_train_setting_type type;
    size_t offset;       /* in mmt_train_config */
    const char *metavar; /* NULL for switches */
    const char *help;
} mmt_train_setting;

/* The table, in --help order. */
extern const mmt_train_setting mmt_train_settings_table[];
extern const size_t mmt_train_settings_count;

/* The defaults of `mmtune train` (out "runs/train", progress "auto"). */
void mmt_train_config_default(mmt_train_config *c);

/* Checks the settings as `mmtune train` does before reading anything (method, counts,
 * schedule, scope, layers, bottleneck and prompt settings, ...) and fills the per-method
 * defaults (target_modules, feedforward_modules). MMT_STATUS_INVALID_ARGUMENT with the
 * CLI's usage message otherwise. model, data and out are the caller's to check. */
mmt_status mmt_train_config_check(mmt_train_config *c);

/* The bottleneck adapters' settings (method "adapter"): MMT_STATUS_INVALID_ARGUMENT with the
 * CLI's message when one is out of range. */
mmt_status mmt_train_config_bottleneck(const mmt_train_config *c, mmt_bottleneck_config *bc);

/* The data-reading options the settings ask for. */
void mmt_train_config_pairs_options(const mmt_train_config *c, mmt_pairs_options *po);

/* The settings as one JSON object (caller frees; NULL when out of memory); identity_only
 * leaves out those that do not change what a run computes (paths, loader and progress). */
char *mmt_train_config_settings_json(const mmt_train_config *c, int identity_only);

/* run.json's identity: the base model's and the data's fingerprints and the identity
 * settings (train/run_dir.h). *out is the caller's to free. */
mmt_status mmt_train_config_identity_json(const mmt_train_config *c, const mmt_pairs *pairs, char **out);

/* Splits "a,b,c" (items trimmed of leading spaces, empty ones dropped) into an array of
 * pointers into *copy; both are the caller's to free. NULL when out of memory. */
char **mmt_train_split_list(const char *list, char **copy, int64_t *n);

/* Parses a layers_to_transform list ("0,2,3") into *layers (mmt_malloc'd, n entries; the
 * caller frees). More than cap entries (cap >= 0) is an error like a bad index:
 * MMT_STATUS_INVALID_ARGUMENT with the CLI's message. */
mmt_status mmt_train_parse_layers(const char *list, int64_t cap, int64_t **layers, int64_t *n);

#endif
