/*
 * dir.h — folders that appear whole or not at all, and folders one process owns.
 *
 * Every folder mmtune writes (an adapter, a checkpoint, a merged or initialised model, a
 * tokenizer) is built under a temporary name beside its final place, "NAME.tmp-PID", its
 * files fsync'd as they are written, and then published: renamed onto NAME in one step
 * (an atomic exchange when NAME already exists, so a reader sees the old folder or the new
 * one, never a mix) and the parent folder fsync'd. A process killed before publishing leaves
 * only "NAME.tmp-PID"; mmt_dir_clear_stale() removes those whose process is gone.
 *
 * A run folder is owned by one process at a time through an flock()ed lock file that holds
 * the owner's pid; the lock dies with the process, so a killed run never leaves it stuck.
 */
#ifndef MMT_CORE_DIR_H
#define MMT_CORE_DIR_H

#include <stdint.h>

#include "core/status.h"

/* Removes path and everything below it; links are removed, not followed. A missing path is
 * not an error. */
mmt_status mmt_dir_remove_tree(const char *path);

/* fsyncs a folder (its entries), ignoring file systems that cannot. */
void mmt_dir_fsync(const char *path);

/* "final.tmp-PID" (mmt_malloc'd; NULL when out of memory). */
char *mmt_dir_temp_path(const char *final);

/* Creates the temporary folder for final (removing a leftover of this process first) and
 * returns its path in *tmp (caller frees). */
mmt_status mmt_dir_begin(const char *final, char **tmp);

/* Publishes the finished folder tmp as final: fsyncs tmp, renames it onto final (exchanging
 * with an existing final, which is then removed) and fsyncs the parent. */
mmt_status mmt_dir_publish(const char *tmp, const char *final);

/* Ends a folder begun with mmt_dir_begin: publishes tmp as final when s is MMT_OK, else
 * removes tmp (nothing half-written stays); returns s, or the publishing error. */
mmt_status mmt_dir_finish(const char *tmp, const char *final, mmt_status s);

/* Removes "NAME.tmp-PID" and "NAME.old-PID" entries beside final whose process is not
 * running; with all_pids, every such entry (the caller holds the folder's lock). NAME NULL:
 * every NAME in the folder `parent`. Returns the count removed. */
int64_t mmt_dir_clear_stale(const char *parent, const char *name, int all_pids);

/* 1 when path is a folder holding no entry other than those named in ignore (NULL-ended);
 * 1 also when it does not exist. */
int mmt_dir_is_empty(const char *path, const char *const *ignore);

typedef struct mmt_dir_lock {
    int fd; /* -1 when not held */
} mmt_dir_lock;

/* Locks dir/name (created) exclusively for this process and writes our pid into it. When
 * another process holds it: an error naming dir and the holder's pid. */
mmt_status mmt_dir_lock_acquire(const char *dir, const char *name, mmt_dir_lock *lock);
void mmt_dir_lock_release(mmt_dir_lock *lock);

/* The names in folder path (no "." or ".."), sorted, for which keep(name) is non-zero (keep
 * NULL: all); free with mmt_dir_list_free. */
mmt_status mmt_dir_list(const char *path, int (*keep)(const char *name), char ***names, size_t *n);
void mmt_dir_list_free(char **names, size_t n);

/* Calls fn(rel_path, user) for every regular file below root, in sorted order, rel_path
 * relative to root; stops at the first failure, which it returns. */
mmt_status mmt_dir_walk_files(const char *root, mmt_status (*fn)(const char *root, const char *rel, void *user),
                              void *user);

#endif
