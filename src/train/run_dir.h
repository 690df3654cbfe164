/*
 * run_dir.h — a run folder that knows its run.
 *
 * A training run owns its folder (settings.out) for the life of the process: run.lock is
 * flock()ed (a second process gets an error naming the holder's pid). At the start of a
 * fresh run the folder must be empty (or the caller asked to overwrite it, which clears it)
 * and run.json records the run's identity:
 *
 *     {"format": "mmtune-run", "version": 1, "run_id": "<16 hex>",
 *      "identity": {...what makes two runs the same run: the base model's fingerprint, the
 *                   data manifest's fingerprint, the method and every setting that changes
 *                   the numbers...}}
 *
 * Resuming compares the identity of the new invocation with run.json key by key and refuses
 * a mismatch, naming each differing key with both values. Each checkpoint carries
 * manifest.json: the run_id and every file's size and checksum (core/hash.h), written last,
 * so a checkpoint is intact exactly when its manifest exists and every file matches it.
 * Only checkpoints whose manifest carries this run's run_id count as the run's own: they are
 * the only ones resumed from and the only ones pruned.
 */
#ifndef MMT_TRAIN_RUN_DIR_H
#define MMT_TRAIN_RUN_DIR_H

#include <stdint.h>

#include "core/dir.h"
#include "core/status.h"

#define MMT_RUN_LOCK "run.lock"
#define MMT_RUN_RECORD "run.json"
#define MMT_CKPT_MANIFEST "manifest.json"

typedef struct mmt_run_dir {
    char *path;          /* owned copy of the folder */
    mmt_dir_lock lock;
    char run_id[17];
    int legacy;          /* resumed a folder written before run.json existed */
} mmt_run_dir;

typedef struct mmt_run_dir_options {
    const char *identity_json; /* a JSON object (may be NULL: nothing to compare) */
    int overwrite;             /* a non-empty folder is cleared instead of refused */
    const char *resume;        /* the run folder or ckpt-STEP folder being resumed, or NULL */
} mmt_run_dir_options;

/* Locks `out`, clears stale temporaries and checks or writes run.json as described above.
 * With resume, *resume_ckpt gets the checkpoint to continue from (caller frees), or NULL
 * when the run has no intact checkpoint yet (it then starts at step 0; a warning says so).
 * Damaged newer checkpoints are skipped with a warning each. */
mmt_status mmt_run_dir_open(const char *out, const mmt_run_dir_options *opt, mmt_run_dir *rd, char **resume_ckpt);
void mmt_run_dir_close(mmt_run_dir *rd);

/* Writes ckpt_dir/manifest.json for the files already in ckpt_dir. */
mmt_status mmt_ckpt_manifest_write(const char *ckpt_dir, const char *run_id);
/* MMT_OK when ckpt_dir is intact; otherwise an error saying what is wrong. *run_id (17
 * bytes, may be NULL) gets the manifest's run id. */
mmt_status mmt_ckpt_manifest_verify(const char *ckpt_dir, char *run_id);

/* The step of a "ckpt-STEP" name, or -1. */
int64_t mmt_ckpt_step(const char *name);

/* Deletes all but the newest `keep` checkpoints of run_id in run_dir (keep 0: none). */
void mmt_run_dir_prune(const char *run_dir, const char *run_id, int64_t keep);

#endif
