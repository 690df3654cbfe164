/*
 * file.h — whole-file reads, read-only memory maps and atomic writes.
 *
 * Atomic write = write a temp file beside the target, fsync it, rename over the target,
 * fsync the folder: a crash leaves either the old file or the new one, never half of one.
 */
#ifndef MMT_CORE_FILE_H
#define MMT_CORE_FILE_H

#include <stddef.h>

#include "core/status.h"

/* Reads a whole file; *data is mmt_malloc'd, NUL-terminated (not counted in *len).
 * Files above max_bytes are refused with a clear error. */
mmt_status mmt_file_read_all(const char *path, size_t max_bytes, char **data, size_t *len);

typedef struct mmt_file_map {
    const unsigned char *data; /* read-only mapping (NULL for an empty file) */
    size_t size;
} mmt_file_map;
mmt_status mmt_file_map_open(const char *path, mmt_file_map *map);
void mmt_file_map_close(mmt_file_map *map);

/* Writes len bytes as path's whole content: a temporary beside it, fsync, rename. A symbolic
 * link is written through (its target replaced, the link kept); a device, FIFO or socket
 * (/dev/stdout) is written in place; a folder is an error. */
mmt_status mmt_file_write_atomic(const char *path, const void *data, size_t len);

int mmt_file_exists(const char *path);
/* 1 when path (a file or folder) is dir itself or lies inside it, both resolved through
 * realpath (symbolic links, "..", relative paths); 0 when not, or when either does not exist. */
int mmt_path_within(const char *path, const char *dir);
/* dir + "/" + name into a fresh mmt_malloc'd string (NULL on allocation failure). */
char *mmt_path_join(const char *dir, const char *name);
/* mkdir -p: creates path and its missing parents (0755); an error if it is not a folder. */
mmt_status mmt_mkdirs(const char *path);

#endif
