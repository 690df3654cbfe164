/*
 * dataset_folder.c — an image-folder classification layout as image–caption pairs (see
 * datasets.h): ROOT/CLASS/IMAGE, the layout of torchvision's ImageFolder.
 *
 * Entries are read in byte order of their names so the pair order (and so a seeded shuffle
 * of it) is the same on every file system. The caption is the template with the class name;
 * the label is the folder name unchanged, so it round-trips to the folder.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/log.h"
#include "data/datasets.h"
#include "data/datasets_internal.h"

typedef struct name_list {
    char **names;
    int64_t n, cap;
} name_list;

static void names_free(name_list *l) {
    for (int64_t i = 0; i < l->n; i++) mmt_free(l->names[i]);
    mmt_free(l->names);
    *l = (name_list){0};
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_image_name(const char *name) {
    static const char *const exts[] = {".jpg", ".jpeg", ".png", ".dcm"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof exts / sizeof *exts; i++) {
        size_t e = strlen(exts[i]);
        if (n > e && strcasecmp(name + n - e, exts[i]) == 0) return 1;
    }
    return 0;
}

/* The non-hidden entries of dir that are folders (want_dirs) or image files, sorted. */
static mmt_status list_entries(const char *dir, int want_dirs, name_list *out) {
    *out = (name_list){0};
    DIR *d = opendir(dir);
    if (!d) return mmt_fail(MMT_STATUS_IO, "%s: cannot open the folder", dir);
    mmt_status s = MMT_OK;
    struct dirent *e;
    while (s == MMT_OK && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (!want_dirs && !is_image_name(e->d_name)) continue;
        char *full = mmt_path_join(dir, e->d_name);
        struct stat st;
        if (!full) {
            s = MMT_STATUS_OUT_OF_MEMORY;
            break;
        }
        int keep = stat(full, &st) == 0 && (want_dirs ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
        mmt_free(full);
        if (!keep) continue;
        if (out->n == out->cap) {
            int64_t cap = out->cap ? out->cap * 2 : 64;
            char **names = mmt_realloc(out->names, (size_t)cap * sizeof *names);
            if (!names) {
                s = MMT_STATUS_OUT_OF_MEMORY;
                break;
            }
            out->names = names;
            out->cap = cap;
        }
        if (!(out->names[out->n] = mmt_strdup(e->d_name))) s = MMT_STATUS_OUT_OF_MEMORY;
        else out->n++;
    }
    closedir(d);
    if (s != MMT_OK) {
        names_free(out);
        return s;
    }
    if (out->n) qsort(out->names, (size_t)out->n, sizeof *out->names, name_cmp);
    return MMT_OK;
}

/* template with every "{}" replaced by the class name, underscores read as spaces. */
static char *caption_for(const char *template, const char *class_name) {
    size_t cn = strlen(class_name), n = 0;
    for (const char *t = template; *t; t++, n++)
        if (t[0] == '{' && t[1] == '}') n += cn, t++;
    char *out = mmt_malloc(n + 1), *w = out;
    if (!out) return NULL;
    for (const char *t = template; *t; t++) {
        if (t[0] == '{' && t[1] == '}') {
            for (size_t i = 0; i < cn; i++) *w++ = class_name[i] == '_' ? ' ' : class_name[i];
            t++;
        } else {
            *w++ = *t;
        }
    }
    *w = '\0';
    return out;
}

mmt_status mmt_pairs_load_image_folder(const char *path, const mmt_pairs_options *o, mmt_pairs **out) {
    *out = NULL;
    const char *template = o && o->caption_template ? o->caption_template : MMT_PAIRS_DEFAULT_TEMPLATE;
    if (!strstr(template, "{}"))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "caption template \"%s\" has no \"{}\" for the class name",
                        template);
    name_list classes = {0}, files = {0};
    int64_t cap = 0;
    char *class_dir = NULL;
    mmt_pairs *p = datasets_new(path);
    mmt_status s = p ? list_entries(path, 1, &classes) : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK && classes.n == 0)
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: no class folders (expected %s/CLASS/IMAGE.jpg)", path, path);
    for (int64_t c = 0; s == MMT_OK && c < classes.n; c++) {
        if (!(class_dir = mmt_path_join(path, classes.names[c]))) {
            s = MMT_STATUS_OUT_OF_MEMORY;
            break;
        }
        s = list_entries(class_dir, 0, &files);
        if (s == MMT_OK && files.n == 0) mmt_log_warn("%s: no .jpg/.jpeg/.png/.dcm images; class left out", class_dir);
        for (int64_t f = 0; s == MMT_OK && f < files.n; f++)
            s = datasets_append(p, &cap, mmt_path_join(class_dir, files.names[f]),
                                caption_for(template, classes.names[c]), mmt_strdup(classes.names[c]));
        names_free(&files);
        mmt_free(class_dir);
        class_dir = NULL;
    }
    if (s == MMT_OK) s = datasets_check_nonempty(p);
    names_free(&classes);
    if (s != MMT_OK) {
        mmt_pairs_free(p);
        return s;
    }
    *out = p;
    return MMT_OK;
}
