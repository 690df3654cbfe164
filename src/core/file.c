/* file.c — whole-file reads, read-only maps and crash-safe (temp + fsync + rename) writes. */
#define _GNU_SOURCE
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"

/* Opens path read-only and checks it is a regular file; *size gets its length. */
static mmt_status open_regular(const char *path, int *fd_out, size_t *size) {
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever; it
     * changes nothing for the regular files kept (reads of them never block) */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return mmt_fail(errno == ENOENT ? MMT_STATUS_NOT_FOUND : MMT_STATUS_IO,
                                "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return mmt_fail(MMT_STATUS_IO, "%s: not a regular file", path);
    }
    *fd_out = fd;
    *size = (size_t)st.st_size;
    return MMT_OK;
}

mmt_status mmt_file_read_all(const char *path, size_t max_bytes, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    int fd;
    size_t size;
    MMT_TRY(open_regular(path, &fd, &size));
    if (size > max_bytes) {
        close(fd);
        return mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: file is %zu bytes, more than the %zu allowed",
                        path, size, max_bytes);
    }
    char *buf = mmt_malloc(size + 1);
    if (!buf) {
        close(fd);
        return mmt_error_prefix(MMT_STATUS_OUT_OF_MEMORY, "%s: ", path);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            close(fd);
            mmt_free(buf);
            return mmt_fail(MMT_STATUS_IO, "%s: read failed: %s", path,
                            r == 0 ? "file shrank while reading" : strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    buf[size] = '\0';
    *data = buf;
    *len = size;
    return MMT_OK;
}

mmt_status mmt_file_map_open(const char *path, mmt_file_map *map) {
    map->data = NULL;
    map->size = 0;
    int fd;
    size_t size;
    MMT_TRY(open_regular(path, &fd, &size));
    if (size > 0) {
        void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return mmt_fail(MMT_STATUS_IO, "%s: mmap failed: %s", path, strerror(e));
        }
        map->data = p;
        map->size = size;
    }
    close(fd);
    return MMT_OK;
}

void mmt_file_map_close(mmt_file_map *map) {
    if (map && map->data) munmap((void *)map->data, map->size);
    if (map) {
        map->data = NULL;
        map->size = 0;
    }
}

static mmt_status fsync_parent(const char *path) {
    char *copy = mmt_strdup(path);
    if (!copy) return MMT_STATUS_OUT_OF_MEMORY;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    mmt_free(copy);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    return MMT_OK;
}

/* Writes len bytes to a path that is not a regular file (/dev/stdout, a FIFO, a device): in
 * place, as a shell redirection would; a short or failed write (ENOSPC) is an error. */
static mmt_status write_in_place(const char *path, const void *data, size_t len) {
    /* O_NONBLOCK for the open only: a FIFO nobody reads is an error (ENXIO), not a wait */
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return mmt_fail(MMT_STATUS_IO, "%s: cannot open for writing: %s", path,
                        errno == ENXIO ? "a FIFO with no reader" : strerror(errno));
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    const char *p = data;
    for (size_t done = 0; done < len;) {
        ssize_t w = write(fd, p + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            close(fd);
            return mmt_fail(MMT_STATUS_IO, "%s: write failed: %s", path, strerror(e));
        }
        done += (size_t)w;
    }
    if (close(fd) != 0) return mmt_fail(MMT_STATUS_IO, "%s: write failed: %s", path, strerror(errno));
    return MMT_OK;
}

mmt_status mmt_file_write_atomic(const char *path, const void *data, size_t len) {
    /* A symbolic link is written through (its target replaced atomically, the link kept), and
     * a device, FIFO or socket in place: renaming a temporary over either would replace the
     * link or the special file itself with a plain file. */
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return mmt_fail(MMT_STATUS_IO, "%s: is a folder", path);
        if (!S_ISREG(st.st_mode)) return write_in_place(path, data, len);
        struct stat lst;
        if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)) {
            char *target = realpath(path, NULL);
            if (!target) return write_in_place(path, data, len);
            mmt_status s = mmt_file_write_atomic(target, data, len);
            free(target); /* realpath's own malloc */
            return s;
        }
    }
    size_t n = strlen(path) + 32;
    char *tmp = mmt_malloc(n);
    if (!tmp) return MMT_STATUS_OUT_OF_MEMORY;
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        mmt_status s = mmt_fail(MMT_STATUS_IO, "%s: cannot create: %s", tmp, strerror(errno));
        mmt_free(tmp);
        return s;
    }
    const char *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, p + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) goto fail;
        done += (size_t)w;
    }
    if (fsync(fd) != 0) goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) goto fail;
    mmt_free(tmp);
    return fsync_parent(path);
fail:;
    int e = errno;
    if (fd >= 0) close(fd);
    unlink(tmp);
    mmt_free(tmp);
    return mmt_fail(MMT_STATUS_IO, "%s: write failed: %s", path, strerror(e));
}

int mmt_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int mmt_path_within(const char *path, const char *dir) {
    char *p = realpath(path, NULL), *d = realpath(dir, NULL);
    size_t n = d ? strlen(d) : 0;
    int in = p && d && !strncmp(p, d, n) && (p[n] == '\0' || p[n] == '/' || (n == 1 && d[0] == '/'));
    free(p); /* realpath's own malloc */
    free(d);
    return in;
}

char *mmt_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *out = mmt_malloc(a + b + 2);
    if (!out) return NULL;
    memcpy(out, dir, a);
    size_t k = a;
    if (a > 0 && dir[a - 1] != '/') out[k++] = '/';
    memcpy(out + k, name, b + 1);
    return out;
}

mmt_status mmt_mkdirs(const char *path) {
    char buf[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "bad folder name \"%s\"", path);
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return mmt_fail(MMT_STATUS_IO, "%s: cannot create folder: %s", buf, strerror(errno));
        buf[i] = c;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return mmt_fail(MMT_STATUS_IO, "%s: exists and is not a folder", path);
    return MMT_OK;
}
