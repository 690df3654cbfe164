/*
 * dataset_stream.c — a data file read through a fixed-size window (see datasets_internal.h).
 *
 * The JSONL and CSV readers take their bytes from here rather than from a whole-file read, so
 * memory stays at the window plus one record however long a line is: a 250 MiB caption costs
 * what a short one does. The --max-file-bytes limit is checked from the file's size before the
 * first byte is read, and again as bytes arrive, for inputs that are not regular files or that
 * grow while being read.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "data/datasets_internal.h"

#define STREAM_WINDOW_BYTES ((size_t)64 << 10)

mmt_status datasets_stream_open(datasets_stream *s, const char *path, size_t max_file_bytes) {
    memset(s, 0, sizeof *s);
    s->source = path;
    s->max_file_bytes = max_file_bytes;
    s->file = fopen(path, "rb");
    if (!s->file)
        return mmt_fail(errno == ENOENT ? MMT_STATUS_NOT_FOUND : MMT_STATUS_IO, "%s: cannot open: %s", path,
                        strerror(errno));
    struct stat st;
    mmt_status status = MMT_OK;
    if (fstat(fileno(s->file), &st) != 0 || S_ISDIR(st.st_mode))
        status = mmt_fail(MMT_STATUS_IO, "%s: not a regular file", path);
    else if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max_file_bytes)
        status = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: file is %lld bytes, over the limit of %zu (--max-file-bytes)",
                          path, (long long)st.st_size, max_file_bytes);
    else if (!(s->window = mmt_malloc(STREAM_WINDOW_BYTES)))
        status = MMT_STATUS_OUT_OF_MEMORY;
    if (status != MMT_OK) {
        fclose(s->file);
        s->file = NULL;
        return status;
    }
    s->buf = s->window;
    return MMT_OK;
}

void datasets_stream_memory(datasets_stream *s, const char *data, size_t len, const char *source) {
    memset(s, 0, sizeof *s);
    s->source = source;
    s->buf = data;
    s->len = len;
    s->total = len;
    s->eof = 1;
}

void datasets_stream_close(datasets_stream *s) {
    if (s->file) fclose(s->file);
    mmt_free(s->window);
    s->file = NULL;
    s->window = NULL;
}

/* Records why the input ended early; the message is kept for datasets_stream_error. */
static void stream_stop(datasets_stream *s, mmt_status status) {
    s->status = status;
    snprintf(s->message, sizeof s->message, "%s", mmt_last_error());
}

int datasets_stream_peek(datasets_stream *s, size_t k) {
    while (s->at + k >= s->len) {
        if (s->eof || s->status != MMT_OK || k >= STREAM_WINDOW_BYTES) return -1;
        if (s->at > 0) { /* keep the unread tail, refill behind it */
            memmove(s->window, s->window + s->at, s->len - s->at);
            s->len -= s->at;
            s->at = 0;
        }
        size_t got = fread(s->window + s->len, 1, STREAM_WINDOW_BYTES - s->len, s->file);
        if (got == 0) {
            if (ferror(s->file))
                stream_stop(s, mmt_fail(MMT_STATUS_IO, "%s: read failed: %s", s->source, strerror(errno)));
            else
                s->eof = 1;
            return -1;
        }
        s->len += got;
        s->total += got;
        if (s->total > s->max_file_bytes) {
            stream_stop(s, mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: more than %zu bytes, over the limit (--max-file-bytes)",
                                    s->source, s->max_file_bytes));
            return -1;
        }
    }
    return (unsigned char)s->buf[s->at + k];
}

mmt_status datasets_stream_error(const datasets_stream *s) { return mmt_fail(s->status, "%s", s->message); }
