/* dir.c — whole-or-nothing folders, stale temporaries and run-folder locks (see dir.h). */
#define _GNU_SOURCE
#include "core/dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/file.h"

mmt_status mmt_dir_remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) return MMT_OK;
        return mmt_fail(MMT_STATUS_IO, "%s: cannot stat: %s", path, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) {
        if (unlink(path) != 0 && errno != ENOENT) return mmt_fail(MMT_STATUS_IO, "%s: cannot remove: %s", path, strerror(errno));
        return MMT_OK;
    }
    DIR *d = opendir(path);
    if (!d) return mmt_fail(MMT_STATUS_IO, "%s: cannot open folder: %s", path, strerror(errno));
    mmt_status s = MMT_OK;
    struct dirent *e;
    while (s == MMT_OK && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = mmt_path_join(path, e->d_name);
        s = p ? mmt_dir_remove_tree(p) : MMT_STATUS_OUT_OF_MEMORY;
        mmt_free(p);
    }
    closedir(d);
    if (s == MMT_OK && rmdir(path) != 0 && errno != ENOENT)
        s = mmt_fail(MMT_STATUS_IO, "%s: cannot remove folder: %s", path, strerror(errno));
    return s;
}

void mmt_dir_fsync(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static char *with_suffix(const char *final, const char *kind, long pid) {
    size_t n = strlen(final) + strlen(kind) + 32;
    char *p = mmt_malloc(n);
    if (p) snprintf(p, n, "%s.%s-%ld", final, kind, pid);
    return p;
}

char *mmt_dir_temp_path(const char *final) { return with_suffix(final, "tmp", (long)getpid()); }

static char *parent_of(const char *path) {
    char *copy = mmt_strdup(path);
    if (!copy) return NULL;
    char *d = mmt_strdup(dirname(copy));
    mmt_free(copy);
    return d;
}

mmt_status mmt_dir_begin(const char *final, char **tmp) {
    *tmp = NULL;
    size_t n = strlen(final);
    while (n > 1 && final[n - 1] == '/') n--;
    char *trimmed = mmt_malloc(n + 1);
    if (!trimmed) return MMT_STATUS_OUT_OF_MEMORY;
    memcpy(trimmed, final, n);
    trimmed[n] = '\0';
    char *t = mmt_dir_temp_path(trimmed), *parent = parent_of(trimmed);
    mmt_free(trimmed);
    mmt_status s = t && parent ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) s = mmt_mkdirs(parent);
    if (s == MMT_OK) s = mmt_dir_remove_tree(t);
    if (s == MMT_OK && mkdir(t, 0755) != 0) s = mmt_fail(MMT_STATUS_IO, "%s: cannot create folder: %s", t, strerror(errno));
    mmt_free(parent);
    if (s != MMT_OK) {
        mmt_free(t);
        return s;
    }
    *tmp = t;
    return MMT_OK;
}

mmt_status mmt_dir_publish(const char *tmp, const char *final) {
    mmt_dir_fsync(tmp);
    char *parent = parent_of(final);
    if (!parent) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_status s = MMT_OK;
    struct stat st;
    if (lstat(final, &st) != 0) {
        if (rename(tmp, final) != 0) s = mmt_fail(MMT_STATUS_IO, "%s: cannot rename to %s: %s", tmp, final, strerror(errno));
    } else if (!S_ISDIR(st.st_mode)) {
        s = mmt_fail(MMT_STATUS_IO, "%s: exists and is not a folder", final);
    } else if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_EXCHANGE) == 0) {
        /* final is the new folder; tmp now holds the old one */
        mmt_dir_fsync(parent);
        s = mmt_dir_remove_tree(tmp);
    } else {
        /* no atomic exchange on this file system: move the old folder aside first; a crash in
         * between leaves NAME.old-PID, which mmt_dir_clear_stale() removes later */
        char *old = with_suffix(final, "old", (long)getpid());
        if (!old) s = MMT_STATUS_OUT_OF_MEMORY;
        if (s == MMT_OK) s = mmt_dir_remove_tree(old);
        if (s == MMT_OK && rename(final, old) != 0) s = mmt_fail(MMT_STATUS_IO, "%s: cannot move aside: %s", final, strerror(errno));
        if (s == MMT_OK && rename(tmp, final) != 0) s = mmt_fail(MMT_STATUS_IO, "%s: cannot rename to %s: %s", tmp, final, strerror(errno));
        if (s == MMT_OK) {
            mmt_dir_fsync(parent);
            s = mmt_dir_remove_tree(old);
        }
        mmt_free(old);
    }
    if (s == MMT_OK) mmt_dir_fsync(parent);
    mmt_free(parent);
    return s;
}

static const char *last_of(const char *s, const char *needle) {
    const char *last = NULL;
    for (const char *p = s; (p = strstr(p, needle)); p++) last = p;
    return last;
}

mmt_status mmt_dir_finish(const char *tmp, const char *final, mmt_status s) {
    if (s == MMT_OK) s = mmt_dir_publish(tmp, final);
    if (s != MMT_OK && tmp) {
        struct stat st;
        if (lstat(tmp, &st) == 0) {
            mmt_status keep = s;
            mmt_dir_remove_tree(tmp);
            s = keep;
        }
    }
    return s;
}

/* The pid of "NAME.tmp-PID" / "NAME.old-PID" (name NULL: any NAME), or -1. */
static long stale_pid(const char *entry, const char *name) {
    /* NAME.tmp-PID and NAME.old-PID are folders; NAME.tmp.PID files of mmt_file_write_atomic */
    const char *t = last_of(entry, ".tmp-"), *o = last_of(entry, ".old-"), *f = last_of(entry, ".tmp.");
    const char *dot = !t ? o : !o ? t : t > o ? t : o;
    if (f && (!dot || f > dot)) dot = f;
    if (!dot || dot == entry) return -1;
    if (name && ((size_t)(dot - entry) != strlen(name) || strncmp(entry, name, (size_t)(dot - entry)) != 0)) return -1;
    char *end;
    long pid = strtol(dot + 5, &end, 10);
    return *end == '\0' && end != dot + 5 && pid > 0 ? pid : -1;
}

int64_t mmt_dir_clear_stale(const char *parent, const char *name, int all_pids) {
    DIR *d = opendir(parent);
    if (!d) return 0;
    int64_t removed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid = stale_pid(e->d_name, name);
        if (pid < 0) continue;
        if (!all_pids && (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)) continue;
        char *p = mmt_path_join(parent, e->d_name);
        if (p && mmt_dir_remove_tree(p) == MMT_OK) removed++;
        mmt_clear_error();
        mmt_free(p);
    }
    closedir(d);
    return removed;
}

int mmt_dir_is_empty(const char *path, const char *const *ignore) {
    DIR *d = opendir(path);
    if (!d) return errno == ENOENT;
    int empty = 1;
    struct dirent *e;
    while (empty && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        int skip = 0;
        for (const char *const *i = ignore; i && *i && !skip; i++) skip = !strcmp(*i, e->d_name);
        if (!skip) empty = 0;
    }
    closedir(d);
    return empty;
}

mmt_status mmt_dir_lock_acquire(const char *dir, const char *name, mmt_dir_lock *lock) {
    lock->fd = -1;
    MMT_TRY(mmt_mkdirs(dir));
    char *path = mmt_path_join(dir, name);
    if (!path) return MMT_STATUS_OUT_OF_MEMORY;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        mmt_status s = mmt_fail(MMT_STATUS_IO, "%s: cannot open lock file: %s", path, strerror(errno));
        mmt_free(path);
        return s;
    }
    mmt_free(path);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char buf[32] = {0};
        ssize_t r = pread(fd, buf, sizeof buf - 1, 0);
        close(fd);
        long pid = r > 0 ? strtol(buf, NULL, 10) : 0;
        if (e == EWOULDBLOCK) {
            if (pid > 0)
                return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s is in use by another mmtune process (pid %ld)", dir, pid);
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s is in use by another mmtune process", dir);
        }
        return mmt_fail(MMT_STATUS_IO, "%s: cannot lock: %s", dir, strerror(e));
    }
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
        /* the lock holds without the pid; only the message to a second process is poorer */
    }
    lock->fd = fd;
    return MMT_OK;
}

void mmt_dir_lock_release(mmt_dir_lock *lock) {
    if (lock && lock->fd >= 0) {
        close(lock->fd); /* closing drops the flock */
        lock->fd = -1;
    }
}

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

mmt_status mmt_dir_list(const char *path, int (*keep)(const char *name), char ***names_out, size_t *n_out) {
    *names_out = NULL;
    *n_out = 0;
    DIR *d = opendir(path);
    if (!d) return mmt_fail(errno == ENOENT ? MMT_STATUS_NOT_FOUND : MMT_STATUS_IO, "%s: cannot open folder: %s", path,
                            strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    mmt_status s = MMT_OK;
    struct dirent *e;
    while (s == MMT_OK && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || (keep && !keep(e->d_name))) continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **g = mmt_realloc(names, nc * sizeof *names);
            if (!g) {
                s = MMT_STATUS_OUT_OF_MEMORY;
                break;
            }
            names = g;
            cap = nc;
        }
        if (!(names[n] = mmt_strdup(e->d_name))) s = MMT_STATUS_OUT_OF_MEMORY;
        else n++;
    }
    closedir(d);
    if (s != MMT_OK) {
        mmt_dir_list_free(names, n);
        return s;
    }
    if (n) qsort(names, n, sizeof *names, compare_names);
    *names_out = names;
    *n_out = n;
    return MMT_OK;
}

void mmt_dir_list_free(char **names, size_t n) {
    for (size_t i = 0; names && i < n; i++) mmt_free(names[i]);
    mmt_free(names);
}

static mmt_status walk(const char *root, const char *rel, mmt_status (*fn)(const char *, const char *, void *), void *user,
                       int depth) {
    if (depth > 16) return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s/%s: folders nested too deep", root, rel);
    char *full = rel[0] ? mmt_path_join(root, rel) : mmt_strdup(root);
    if (!full) return MMT_STATUS_OUT_OF_MEMORY;
    char **names = NULL;
    size_t n = 0;
    mmt_status s = mmt_dir_list(full, NULL, &names, &n);
    for (size_t i = 0; s == MMT_OK && i < n; i++) {
        char *r = rel[0] ? mmt_path_join(rel, names[i]) : mmt_strdup(names[i]);
        char *p = r ? mmt_path_join(root, r) : NULL;
        struct stat st;
        if (!r || !p) s = MMT_STATUS_OUT_OF_MEMORY;
        else if (lstat(p, &st) != 0) s = mmt_fail(MMT_STATUS_IO, "%s: cannot stat: %s", p, strerror(errno));
        else if (S_ISDIR(st.st_mode)) s = walk(root, r, fn, user, depth + 1);
        else if (S_ISREG(st.st_mode)) s = fn(root, r, user);
        mmt_free(r);
        mmt_free(p);
    }
    mmt_dir_list_free(names, n);
    mmt_free(full);
    return s;
}

mmt_status mmt_dir_walk_files(const char *root, mmt_status (*fn)(const char *root, const char *rel, void *user), void *user) {
    return walk(root, "", fn, user, 0);
}
