/* fingerprint.c — model and data fingerprints for run identities (see fingerprint.h). */
#include "train/fingerprint.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/hash.h"

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

mmt_status mmt_fingerprint_model(const char *dir, char hex[17], int64_t *n_files) {
    *n_files = 0;
    DIR *d = opendir(dir);
    if (!d) return mmt_fail(MMT_STATUS_NOT_FOUND, "%s: cannot open model folder: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    mmt_status s = MMT_OK;
    struct dirent *e;
    while (s == MMT_OK && (e = readdir(d))) {
        const char *nm = e->d_name;
        if (nm[0] == '.' || !(ends_with(nm, ".json") || ends_with(nm, ".txt") || ends_with(nm, ".safetensors"))) continue;
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 16;
            char **g = mmt_realloc(names, nc * sizeof *names);
            if (!g) {
                s = MMT_STATUS_OUT_OF_MEMORY;
                break;
            }
            names = g;
            cap = nc;
        }
        if (!(names[n] = mmt_strdup(nm))) s = MMT_STATUS_OUT_OF_MEMORY;
        else n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, compare_names);
    mmt_hash all;
    mmt_hash_init(&all, 1);
    for (size_t i = 0; s == MMT_OK && i < n; i++) {
        char *p = mmt_path_join(dir, names[i]);
        struct stat st;
        uint64_t h = 0, size = 0;
        if (!p) s = MMT_STATUS_OUT_OF_MEMORY;
        else if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) {
            mmt_free(p);
            continue;
        } else s = mmt_hash_file(p, &h, &size);
        mmt_free(p);
        if (s != MMT_OK) break;
        mmt_hash_update(&all, names[i], strlen(names[i]) + 1);
        mmt_hash_update(&all, &h, sizeof h);
        mmt_hash_update(&all, &size, sizeof size);
        (*n_files)++;
    }
    for (size_t i = 0; i < n; i++) mmt_free(names[i]);
    mmt_free(names);
    if (s == MMT_OK) mmt_hash_hex(mmt_hash_final(&all), hex);
    return s;
}

mmt_status mmt_fingerprint_pairs(const mmt_pairs *pairs, char hex[17]) {
    mmt_hash h;
    mmt_hash_init(&h, 2);
    for (int64_t i = 0; i < pairs->n; i++) {
        const mmt_pair *p = &pairs->items[i];
        const char *slash = strrchr(p->image_path, '/');
        const char *base = slash ? slash + 1 : p->image_path;
        struct stat st;
        int64_t size = stat(p->image_path, &st) == 0 ? (int64_t)st.st_size : -1;
        mmt_hash_update(&h, p->text, strlen(p->text) + 1);
        if (p->label) mmt_hash_update(&h, p->label, strlen(p->label) + 1);
        else mmt_hash_update(&h, "\x01", 2);
        mmt_hash_update(&h, base, strlen(base) + 1);
        mmt_hash_update(&h, &size, sizeof size);
    }
    mmt_hash_hex(mmt_hash_final(&h), hex);
    return MMT_OK;
}
