/*
 * tmp_files.h — files in a test's temporary folder, for test_datasets.c and
 * test_dataset_limits.c: tpath(name) is tmp/name (four rotating static buffers, so a few can
 * be used in one call), write_text(name, text) writes a small file there. The test sets tmp.
 * Header-only, like check.h.
 */
#ifndef MMT_TESTS_TMP_FILES_H
#define MMT_TESTS_TMP_FILES_H

#include <stdio.h>

static char tmp[256];

static inline const char *tpath(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp, name);
    return buf[k];
}

static inline void write_text(const char *name, const char *text) {
    FILE *f = fopen(tpath(name), "wb");
    fputs(text, f);
    fclose(f);
}

#endif
