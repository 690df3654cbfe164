/* run_dir.c — run folder lock, identity record and checkpoint manifests (see run_dir.h). */
#define _GNU_SOURCE
#include "train/run_dir.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/hash.h"
#include "core/json.h"
#include "core/log.h"

#define MAX_CHECKPOINTS 4096

int64_t mmt_ckpt_step(const char *name) {
    if (strncmp(name, "ckpt-", 5) != 0 || name[5] < '0' || name[5] > '9') return -1;
    char *end;
    errno = 0;
    long long v = strtoll(name + 5, &end, 10);
    return *end == '\0' && errno == 0 && v >= 0 ? (int64_t)v : -1;
}

/* ---- checkpoint manifests ------------------------------------------------------------- */

typedef struct manifest_writer {
    mmt_strbuf *b;
    int first;
} manifest_writer;

static mmt_status manifest_add(const char *root, const char *rel, void *user) {
    manifest_writer *m = user;
    if (!strcmp(rel, MMT_CKPT_MANIFEST)) return MMT_OK;
    char *p = mmt_path_join(root, rel);
    if (!p) return MMT_STATUS_OUT_OF_MEMORY;
    uint64_t h = 0, size = 0;
    mmt_status s = mmt_hash_file(p, &h, &size);
    mmt_free(p);
    if (s != MMT_OK) return s;
    char hex[17];
    mmt_hash_hex(h, hex);
    mmt_strbuf_printf(m->b, "%s\n    {\"path\": ", m->first ? "" : ",");
    mmt_strbuf_json_string(m->b, rel, strlen(rel));
    mmt_strbuf_printf(m->b, ", \"size\": %" PRIu64 ", \"checksum\": \"%s\"}", size, hex);
    m->first = 0;
    return MMT_OK;
}

mmt_status mmt_ckpt_manifest_write(const char *ckpt_dir, const char *run_id) {
    mmt_strbuf b = {0};
    mmt_strbuf_printf(&b, "{\n  \"run_id\": \"%s\",\n  \"checksum\": \"mmt_hash64 (core/hash.h)\",\n  \"files\": [", run_id);
    manifest_writer m = {&b, 1};
    mmt_status s = mmt_dir_walk_files(ckpt_dir, manifest_add, &m);
    mmt_strbuf_printf(&b, "\n  ]\n}\n");
    char *path = mmt_path_join(ckpt_dir, MMT_CKPT_MANIFEST);
    if (s == MMT_OK && (b.failed || !path)) s = MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) s = mmt_file_write_atomic(path, b.data, b.len);
    mmt_free(path);
    mmt_strbuf_free(&b);
    return s;
}

mmt_status mmt_ckpt_manifest_verify(const char *ckpt_dir, char *run_id) {
    if (run_id) run_id[0] = '\0';
    char *path = mmt_path_join(ckpt_dir, MMT_CKPT_MANIFEST);
    if (!path) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_json_doc *doc = NULL;
    mmt_status s = MMT_OK;
    if (!mmt_file_exists(path)) {
        s = mmt_fail(MMT_STATUS_NOT_FOUND, "%s: no %s (the checkpoint was never finished)", ckpt_dir, MMT_CKPT_MANIFEST);
        goto done;
    }
    if ((s = mmt_json_parse_file(path, &doc)) != MMT_OK) goto done;
    const mmt_json *root = mmt_json_root(doc), *files = mmt_json_get(root, "files");
    const char *id = NULL;
    if ((s = mmt_json_get_string(root, "run_id", NULL, &id, path, "")) != MMT_OK) goto done;
    if (!id || strlen(id) > 16 || !files || files->type != MMT_JSON_ARRAY) {
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: missing \"run_id\" or \"files\"", path);
        goto done;
    }
    if (run_id) snprintf(run_id, 17, "%s", id);
    for (size_t i = 0; i < files->len; i++) {
        const mmt_json *f = &files->items[i];
        const char *rel = NULL, *want = NULL;
        int64_t size = -1;
        if ((s = mmt_json_get_string(f, "path", NULL, &rel, path, "files[]")) != MMT_OK ||
            (s = mmt_json_get_string(f, "checksum", NULL, &want, path, "files[]")) != MMT_OK ||
            (s = mmt_json_get_int(f, "size", -1, &size, path, "files[]")) != MMT_OK)
            goto done;
        if (!rel || !want || size < 0 || strstr(rel, "..") || rel[0] == '/') {
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: files[%zu] needs a relative \"path\", \"size\" and \"checksum\"", path, i);
            goto done;
        }
        char *fp = mmt_path_join(ckpt_dir, rel);
        uint64_t h = 0, got = 0;
        if (!fp) {
            s = MMT_STATUS_OUT_OF_MEMORY;
            goto done;
        }
        s = mmt_hash_file(fp, &h, &got);
        mmt_free(fp);
        char hex[17];
        mmt_hash_hex(h, hex);
        if (s != MMT_OK) {
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s is missing or unreadable", ckpt_dir, rel);
            goto done;
        }
        if ((int64_t)got != size) {
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s is %" PRIu64 " bytes, the manifest says %lld", ckpt_dir, rel, got,
                         (long long)size);
            goto done;
        }
        if (strcmp(hex, want) != 0) {
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: %s does not match its checksum in the manifest", ckpt_dir, rel);
            goto done;
        }
    }
done:
    mmt_json_free(doc);
    mmt_free(path);
    return s;
}

/* ---- listing and pruning the run's own checkpoints ------------------------------------- */

static int compare_desc(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Steps of every ckpt-STEP folder in run_dir, newest first. */
static int64_t list_checkpoints(const char *run_dir, int64_t *steps) {
    int64_t n = 0;
    DIR *d = opendir(run_dir);
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < MAX_CHECKPOINTS) {
        int64_t k = mmt_ckpt_step(e->d_name);
        if (k >= 0) steps[n++] = k;
    }
    closedir(d);
    qsort(steps, (size_t)n, sizeof *steps, compare_desc);
    return n;
}

static char *ckpt_path(const char *run_dir, int64_t step) {
    char name[48];
    snprintf(name, sizeof name, "ckpt-%lld", (long long)step);
    return mmt_path_join(run_dir, name);
}

/* Whether the checkpoint belongs to run_id: its manifest names it (a manifest-less one
 * counts only in a legacy folder, run_id ""). Reads only the manifest, not the files. */
static int ckpt_is_own(const char *ckpt, const char *run_id) {
    char *path = mmt_path_join(ckpt, MMT_CKPT_MANIFEST);
    mmt_json_doc *doc = NULL;
    int own = 0;
    if (path && mmt_file_exists(path)) {
        const char *id = NULL;
        if (mmt_json_parse_file(path, &doc) == MMT_OK &&
            mmt_json_get_string(mmt_json_root(doc), "run_id", NULL, &id, path, "") == MMT_OK && id)
            own = !strcmp(id, run_id);
    } else if (path) {
        own = run_id[0] == '\0';
    }
    mmt_clear_error();
    mmt_json_free(doc);
    mmt_free(path);
    return own;
}

void mmt_run_dir_prune(const char *run_dir, const char *run_id, int64_t keep) {
    if (keep <= 0) return;
    int64_t *steps = mmt_malloc(MAX_CHECKPOINTS * sizeof *steps);
    if (!steps) return;
    int64_t n = list_checkpoints(run_dir, steps), kept = 0;
    for (int64_t i = 0; i < n; i++) {
        char *p = ckpt_path(run_dir, steps[i]);
        if (p && ckpt_is_own(p, run_id) && kept++ >= keep) mmt_dir_remove_tree(p);
        mmt_clear_error();
        mmt_free(p);
    }
    mmt_free(steps);
}

/* ---- the identity record ---------------------------------------------------------------- */

static void new_run_id(char out[17]) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    uint64_t seed[3] = {(uint64_t)t.tv_sec, (uint64_t)t.tv_nsec, (uint64_t)getpid()};
    mmt_hash_hex(mmt_hash64(seed, sizeof seed, (uint64_t)(uintptr_t)out), out);
}

static mmt_status record_write(const char *dir, const char *run_id, const char *identity_json) {
    mmt_strbuf b = {0};
    mmt_strbuf_printf(&b, "{\n  \"format\": \"mmtune-run\",\n  \"version\": 1,\n  \"run_id\": \"%s\",\n  \"identity\": %s\n}\n",
                      run_id, identity_json && identity_json[0] ? identity_json : "{}");
    char *path = mmt_path_join(dir, MMT_RUN_RECORD);
    mmt_status s = b.failed || !path ? MMT_STATUS_OUT_OF_MEMORY : mmt_file_write_atomic(path, b.data, b.len);
    mmt_free(path);
    mmt_strbuf_free(&b);
    return s;
}

/* A short text of a JSON value for messages. */
static void describe(const mmt_json *v, char *buf, size_t cap) {
    if (!v) snprintf(buf, cap, "(absent)");
    else if (v->type == MMT_JSON_STRING) snprintf(buf, cap, "\"%.40s%s\"", v->string, v->len > 40 ? "..." : "");
    else if (v->type == MMT_JSON_NUMBER && v->is_integer) snprintf(buf, cap, "%lld", (long long)v->integer);
    else if (v->type == MMT_JSON_NUMBER) snprintf(buf, cap, "%.10g", v->number);
    else if (v->type == MMT_JSON_BOOL) snprintf(buf, cap, "%s", v->boolean ? "true" : "false");
    else if (v->type == MMT_JSON_NULL) snprintf(buf, cap, "null");
    else snprintf(buf, cap, "(%s)", v->type == MMT_JSON_ARRAY ? "a list" : "an object");
}

static int same_value(const mmt_json *a, const mmt_json *b) {
    if (!a || !b) return a == b;
    if (a->type != b->type) return 0;
    switch (a->type) {
    case MMT_JSON_NULL: return 1;
    case MMT_JSON_BOOL: return a->boolean == b->boolean;
    case MMT_JSON_NUMBER: return a->number == b->number;
    case MMT_JSON_STRING: return a->len == b->len && memcmp(a->string, b->string, a->len) == 0;
    case MMT_JSON_ARRAY:
        if (a->len != b->len) return 0;
        for (size_t i = 0; i < a->len; i++)
            if (!same_value(&a->items[i], &b->items[i])) return 0;
        return 1;
    case MMT_JSON_OBJECT:
        if (a->len != b->len) return 0;
        for (size_t i = 0; i < a->len; i++)
            if (!same_value(&a->items[i], mmt_json_get(b, a->keys[i]))) return 0;
        return 1;
    }
    return 0;
}

/* Appends "path (recorded X, now Y)" for each differing leaf, objects compared by key. */
static void diff(const mmt_json *was, const mmt_json *now, const char *path, mmt_strbuf *out, int *count) {
    if (same_value(was, now)) return;
    if (was && now && was->type == MMT_JSON_OBJECT && now->type == MMT_JSON_OBJECT) {
        for (int pass = 0; pass < 2; pass++) {
            const mmt_json *side = pass ? now : was;
            for (size_t i = 0; i < side->len; i++) {
                const char *k = side->keys[i];
                if (pass && mmt_json_get(was, k)) continue; /* compared in pass 0 */
                char sub[256];
                snprintf(sub, sizeof sub, "%s%s%s", path, path[0] ? "." : "", k);
                diff(mmt_json_get(was, k), mmt_json_get(now, k), sub, out, count);
            }
        }
        return;
    }
    char a[64], b[64];
    describe(was, a, sizeof a);
    describe(now, b, sizeof b);
    if (*count < 6) mmt_strbuf_printf(out, "%s%s (recorded %s, now %s)", *count ? "; " : "", path, a, b);
    else if (*count == 6) mmt_strbuf_printf(out, "; ...");
    (*count)++;
}

/* Compares identity_json with run_dir's run.json. *found 0 when there is no run.json. */
static mmt_status record_check(const char *run_dir, const char *identity_json, char run_id[17], int *found) {
    *found = 0;
    run_id[0] = '\0';
    char *path = mmt_path_join(run_dir, MMT_RUN_RECORD);
    if (!path) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_json_doc *rec = NULL, *now = NULL;
    mmt_strbuf d = {0};
    mmt_status s = MMT_OK;
    if (!mmt_file_exists(path)) goto done;
    *found = 1;
    const char *id = NULL;
    if ((s = mmt_json_parse_file(path, &rec)) != MMT_OK ||
        (s = mmt_json_get_string(mmt_json_root(rec), "run_id", NULL, &id, path, "")) != MMT_OK)
        goto done;
    if (!id || strlen(id) != 16) {
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: missing or malformed \"run_id\"", path);
        goto done;
    }
    snprintf(run_id, 17, "%s", id);
    if (!identity_json) goto done;
    if ((s = mmt_json_parse(identity_json, strlen(identity_json), "the run's identity", &now)) != MMT_OK) goto done;
    int count = 0;
    diff(mmt_json_get(mmt_json_root(rec), "identity"), mmt_json_root(now), "", &d, &count);
    if (count)
        s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "cannot resume %s: it holds a different run (%d difference%s: %s)", run_dir,
                     count, count == 1 ? "" : "s", d.data ? d.data : "");
done:
    mmt_strbuf_free(&d);
    mmt_json_free(rec);
    mmt_json_free(now);
    mmt_free(path);
    return s;
}

/* ---- opening a run folder ------------------------------------------------------------------ */

static int not_lock(const char *name) { return strcmp(name, MMT_RUN_LOCK) != 0; }

/* "a, b, c, d and N more" of a folder's entries (lock file left out), for messages. */
static void list_entries(const char *dir, char *buf, size_t cap) {
    buf[0] = '\0';
    char **names = NULL;
    size_t n = 0, used = 0;
    if (mmt_dir_list(dir, not_lock, &names, &n) != MMT_OK) {
        mmt_clear_error();
        return;
    }
    for (size_t i = 0; i < n && i < 4 && used + strlen(names[i]) + 4 < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", names[i]);
    if (n > 4) snprintf(buf + used, cap - used, " and %zu more", n - 4);
    mmt_dir_list_free(names, n);
}

/* Empties dir except the lock file. */
static mmt_status clear_run_dir(const char *dir) {
    char **names = NULL;
    size_t n = 0;
    mmt_status s = mmt_dir_list(dir, not_lock, &names, &n);
    for (size_t i = 0; s == MMT_OK && i < n; i++) {
        char *p = mmt_path_join(dir, names[i]);
        s = p ? mmt_dir_remove_tree(p) : MMT_STATUS_OUT_OF_MEMORY;
        mmt_free(p);
    }
    mmt_dir_list_free(names, n);
    return s;
}

static int same_folder(const char *a, const char *b) {
    char ra[PATH_MAX], rb[PATH_MAX];
    if (!realpath(a, ra) || !realpath(b, rb)) return 0;
    return strcmp(ra, rb) == 0;
}

/* Picks the checkpoint to resume: the given one (which must be intact), else the newest
 * intact one of the run. *ckpt NULL when there is none. */
static mmt_status pick_checkpoint(const char *run_dir, const char *given, const char *run_id, int legacy, char **ckpt) {
    *ckpt = NULL;
    char id[17];
    if (given) {
        mmt_status s = mmt_ckpt_manifest_verify(given, id);
        if (s == MMT_STATUS_NOT_FOUND && legacy) {
            mmt_clear_error();
            s = MMT_OK;
        } else if (s == MMT_OK && strcmp(id, run_id) != 0) {
            s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s belongs to another run (run_id %s, the folder's is %s)", given, id, run_id);
        }
        if (s != MMT_OK)
            return mmt_error_prefix(s, "cannot resume from this checkpoint (resume from the run folder %s to fall back to "
                                       "its newest intact checkpoint): ", run_dir);
        *ckpt = mmt_strdup(given);
        return *ckpt ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    }
    int64_t *steps = mmt_malloc(MAX_CHECKPOINTS * sizeof *steps);
    if (!steps) return MMT_STATUS_OUT_OF_MEMORY;
    int64_t n = list_checkpoints(run_dir, steps);
    mmt_status s = MMT_OK;
    for (int64_t i = 0; i < n && !*ckpt && s == MMT_OK; i++) {
        char *p = ckpt_path(run_dir, steps[i]);
        if (!p) {
            s = MMT_STATUS_OUT_OF_MEMORY;
            break;
        }
        mmt_status v = mmt_ckpt_manifest_verify(p, id);
        if (v == MMT_STATUS_NOT_FOUND && legacy) {
            *ckpt = p;
            p = NULL;
        } else if (v != MMT_OK) {
            mmt_log_warn("skipping a damaged checkpoint: %s", mmt_last_error());
        } else if (strcmp(id, run_id) != 0) {
            mmt_log_warn("skipping %s: it belongs to another run (run_id %s)", p, id);
        } else {
            *ckpt = p;
            p = NULL;
        }
        mmt_clear_error();
        mmt_free(p);
    }
    mmt_free(steps);
    return s;
}

mmt_status mmt_run_dir_open(const char *out, const mmt_run_dir_options *opt, mmt_run_dir *rd, char **resume_ckpt) {
    memset(rd, 0, sizeof *rd);
    rd->lock.fd = -1;
    *resume_ckpt = NULL;
    static const char *const ignore[] = {MMT_RUN_LOCK, NULL};
    char *given = NULL, *src = NULL, listing[256];
    mmt_status s = MMT_OK;
    if (!(rd->path = mmt_strdup(out))) return MMT_STATUS_OUT_OF_MEMORY;
    if ((s = mmt_dir_lock_acquire(out, MMT_RUN_LOCK, &rd->lock)) != MMT_OK) goto fail;
    mmt_dir_clear_stale(out, NULL, 1); /* we own the folder: every temporary in it is stale */

    if (!opt->resume) {
        if (!mmt_dir_is_empty(out, ignore)) {
            if (!opt->overwrite) {
                list_entries(out, listing, sizeof listing);
                s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                             "%s is not empty (%s): continue its run with --resume %s, or pass --overwrite to delete "
                             "what it holds and start afresh",
                             out, listing, out);
                goto fail;
            }
            if ((s = clear_run_dir(out)) != MMT_OK) goto fail;
        }
        new_run_id(rd->run_id);
        if ((s = record_write(out, rd->run_id, opt->identity_json)) != MMT_OK) goto fail;
        return MMT_OK;
    }

    /* --resume RUN or --resume RUN/ckpt-STEP */
    struct stat st;
    if (stat(opt->resume, &st) != 0 || !S_ISDIR(st.st_mode)) {
        s = mmt_fail(MMT_STATUS_NOT_FOUND, "--resume %s: no such run folder", opt->resume);
        goto fail;
    }
    char *state = mmt_path_join(opt->resume, "trainer_state.json");
    char *base = mmt_strdup(opt->resume);
    if (!state || !base) {
        mmt_free(state);
        mmt_free(base);
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto fail;
    }
    size_t bl = strlen(base);
    while (bl > 1 && base[bl - 1] == '/') base[--bl] = '\0';
    int is_ckpt = mmt_file_exists(state) || mmt_ckpt_step(basename(base)) >= 0;
    mmt_free(state);
    if (is_ckpt) {
        given = mmt_strdup(base);
        src = mmt_strdup(dirname(base));
    } else {
        src = mmt_strdup(base);
    }
    mmt_free(base);
    if (!src || (is_ckpt && !given)) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto fail;
    }
    int same = same_folder(src, out);
    if (!same && !mmt_dir_is_empty(out, ignore)) {
        s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                     "--out %s is not empty: to continue the run in %s, pass --out %s (or an empty folder)", out, src, src);
        goto fail;
    }
    int found = 0;
    if ((s = record_check(src, opt->identity_json, rd->run_id, &found)) != MMT_OK) goto fail;
    if (!found) {
        int64_t probe[1];
        if (!given && list_checkpoints(src, probe) == 0) {
            s = mmt_fail(MMT_STATUS_NOT_FOUND, "--resume %s: not a run folder (no %s and no ckpt-STEP checkpoint)", src,
                         MMT_RUN_RECORD);
            goto fail;
        }
        mmt_log_warn("%s has no %s (written by an older mmtune): resuming without checking that it holds the same run",
                     src, MMT_RUN_RECORD);
        rd->legacy = 1;
    }
    if ((s = pick_checkpoint(src, given, rd->run_id, rd->legacy, resume_ckpt)) != MMT_OK) goto fail;
    if (!*resume_ckpt) mmt_log_warn("%s has no intact checkpoint of this run yet: starting from step 0", src);
    if (rd->legacy || !same) {
        /* from here on the run lives in out, under its record */
        if (rd->legacy) new_run_id(rd->run_id);
        if ((s = record_write(out, rd->run_id, opt->identity_json)) != MMT_OK) goto fail;
    }
    mmt_free(given);
    mmt_free(src);
    return MMT_OK;
fail:
    mmt_free(given);
    mmt_free(src);
    mmt_free(*resume_ckpt);
    *resume_ckpt = NULL;
    mmt_run_dir_close(rd);
    return s;
}

void mmt_run_dir_close(mmt_run_dir *rd) {
    if (!rd) return;
    mmt_dir_lock_release(&rd->lock);
    mmt_free(rd->path);
    rd->path = NULL;
}
