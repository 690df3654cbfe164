/* fingerprint.c — model and data fingerprints for run identities (see fingerprint.h). */
#include "train/fingerprint.h"

#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/dir.h"
#include "core/file.h"
#include "core/hash.h"

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The files a snapshot loader reads. */
static int loader_file(const char *name) {
    return name[0] != '.' && (ends_with(name, ".json") || ends_with(name, ".txt") || ends_with(name, ".safetensors"));
}

mmt_status mmt_fingerprint_model(const char *dir, char hex[17], int64_t *n_files) {
    *n_files = 0;
    char **names = NULL;
    size_t n = 0;
    mmt_status s = mmt_dir_list(dir, loader_file, &names, &n);
    if (s != MMT_OK) return mmt_error_prefix(s, "model fingerprint: ");
    mmt_hash all;
    mmt_hash_init(&all, 1);
    for (size_t i = 0; s == MMT_OK && i < n; i++) {
        char *p = mmt_path_join(dir, names[i]);
        struct stat st;
        uint64_t h = 0, size = 0;
        if (!p) {
            s = MMT_STATUS_OUT_OF_MEMORY;
            break;
        }
        if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) {
            mmt_free(p);
            continue;
        }
        s = mmt_hash_file(p, &h, &size);
        mmt_free(p);
        if (s != MMT_OK) break;
        mmt_hash_update(&all, names[i], strlen(names[i]) + 1);
        mmt_hash_update(&all, &h, sizeof h);
        mmt_hash_update(&all, &size, sizeof size);
        (*n_files)++;
    }
    mmt_dir_list_free(names, n);
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
