/* continual.c — initial adapter, EWC, replay and the previous model as teacher for a
 * training run (see continual.h). */
#include "train/continual.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/dir.h"
#include "core/file.h"
#include "core/hash.h"
#include "core/json.h"
#include "core/log.h"
#include "data/datasets.h"
#include "dist/comm.h"
#include "peft/adapter.h"
#include "peft/adapter_folder.h"
#include "peft/prompt.h"
#include "train/ewc.h"
#include "train/fingerprint.h"
#include "train/replay.h"

struct mmt_continual {
    const mmt_train_config *c;      /* borrowed */
    const mmt_pairs *data;          /* borrowed */
    mmt_pairs *replay;              /* owned; NULL without --replay */
    mmt_pairs combined;             /* items owned (copies of the pairs' pointers), strings borrowed */
    char *ewc_path;                 /* owned: the earlier EWC state's file, or NULL */
    mmt_ewc_state *earlier;         /* owned: its contents (the penalty's, and the sum's for --save-fisher) */
    mmt_ewc *ewc;                   /* owned: the penalty, bound by mmt_continual_bind */
    mmt_clip_train *teacher;        /* owned: --distill-from-previous */
    mmt_adapter *teacher_adapter;   /* owned: attached to teacher */
    mmt_prompt *teacher_prompt;     /* owned: attached to teacher */
};

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The EWC state to read: --ewc-from (a folder or the file), else the init adapter's file
 * when it has one. NULL when there is none to read (an error when --ewc needs it). */
static mmt_status ewc_path(const mmt_train_options *o, char **out) {
    *out = NULL;
    const char *from = o->ewc_from ? o->ewc_from : o->init_adapter;
    if (!from || (o->ewc_lambda == 0 && !o->save_fisher)) return MMT_OK;
    char *file = is_dir(from) ? mmt_path_join(from, MMT_EWC_FILE) : mmt_strdup(from);
    if (!file) return MMT_STATUS_OUT_OF_MEMORY;
    if (!o->ewc_from && o->ewc_lambda == 0 && !mmt_file_exists(file)) { /* only --save-fisher: nothing to add to */
        mmt_free(file);
        return MMT_OK;
    }
    *out = file;
    return MMT_OK;
}

mmt_status mmt_continual_open(const mmt_train_config *c, const mmt_pairs *data, mmt_continual **out) {
    *out = NULL;
    mmt_continual *k = mmt_calloc(1, sizeof *k);
    if (!k) return MMT_STATUS_OUT_OF_MEMORY;
    k->c = c;
    k->data = data;
    const mmt_train_options *o = &c->o;
    mmt_status s = MMT_OK;
    if (o->init_adapter && !is_dir(o->init_adapter)) {
        s = mmt_fail(MMT_STATUS_NOT_FOUND, "--init-adapter %s: not a folder (give an earlier run's OUT/adapter)",
                     o->init_adapter);
        goto done;
    }
    if (o->replay) {
        mmt_pairs_options po;
        mmt_train_config_pairs_options(c, &po);
        if ((s = mmt_pairs_load(o->replay, &po, &k->replay)) != MMT_OK) goto done;
        if (k->replay->skipped)
            mmt_log_warn("skipped %lld bad records of %s", (long long)k->replay->skipped, o->replay);
        if (k->replay->n < 1) {
            s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: no replay pairs", o->replay);
            goto done;
        }
        int64_t n = data->n + k->replay->n;
        if (!(k->combined.items = mmt_malloc((size_t)n * sizeof *k->combined.items))) {
            s = MMT_STATUS_OUT_OF_MEMORY;
            goto done;
        }
        memcpy(k->combined.items, data->items, (size_t)data->n * sizeof *data->items);
        memcpy(k->combined.items + data->n, k->replay->items, (size_t)k->replay->n * sizeof *data->items);
        k->combined.n = n;
        k->combined.source = data->source;
    }
    if ((s = ewc_path(o, &k->ewc_path)) != MMT_OK) goto done;
    if (k->ewc_path && (s = mmt_ewc_state_load(k->ewc_path, &k->earlier)) != MMT_OK) goto done;
done:
    if (s != MMT_OK) {
        mmt_continual_free(k);
        return s;
    }
    *out = k;
    return MMT_OK;
}

void mmt_continual_free(mmt_continual *k) {
    if (!k) return;
    mmt_ewc_free(k->ewc);
    mmt_ewc_state_free(k->earlier);
    mmt_free(k->ewc_path);
    mmt_free(k->combined.items);
    mmt_pairs_free(k->replay);
    mmt_adapter_free(k->teacher_adapter);
    mmt_prompt_free(k->teacher_prompt);
    mmt_clip_train_free(k->teacher);
    mmt_free(k);
}

const mmt_pairs *mmt_continual_pairs(const mmt_continual *k) { return k->replay ? &k->combined : k->data; }

mmt_status mmt_continual_teacher(mmt_continual *k, mmt_clip *model, mmt_clip_train **teacher) {
    *teacher = NULL;
    const mmt_train_options *o = &k->c->o;
    if (!o->distill_from_previous) return MMT_OK;
    mmt_clip_train_options to;
    mmt_clip_train_options_default(&to);
    MMT_TRY(mmt_clip_train_create(model, &to, &k->teacher));
    mmt_status s = mmt_adapter_folders_load(mmt_clip_train_iface(k->teacher), o->init_adapter, 0, &k->teacher_adapter,
                                            &k->teacher_prompt);
    if (s != MMT_OK) return mmt_error_prefix(s, "--distill-from-previous: ");
    mmt_clip_train_set_eval(k->teacher, 1);
    *teacher = k->teacher;
    return MMT_OK;
}

/* ---- --init-adapter: the same settings, then its weights -------------------------------- */

/* Keys of adapter_config.json that do not change what an adapter computes (or name where it
 * came from), left out of the comparison. */
static int ignored_key(const char *key) {
    static const char *const keys[] = {"base_model_name_or_path", "base_model", "revision", "inference_mode", "lora_dropout",
                                       "init_lora_weights", "init_ia3_weights", "prompt_tuning_init",
                                       "prompt_tuning_init_text", "tokenizer_name_or_path", "tokenizer_kwargs",
                                       "prefix_init_weights", "peft_version", "auto_mapping", "task_type", "runtime_config",
                                       NULL};
    for (const char *const *k = keys; *k; k++)
        if (!strcmp(*k, key)) return 1;
    return 0;
}

static int same_json(const mmt_json *a, const mmt_json *b);

/* Lists compare as sets: PEFT writes target_modules from a Python set, in any order. */
static int same_list(const mmt_json *a, const mmt_json *b) {
    if (a->len != b->len) return 0;
    for (size_t i = 0; i < a->len; i++) {
        int found = 0;
        for (size_t j = 0; j < b->len && !found; j++) found = same_json(&a->items[i], &b->items[j]);
        if (!found) return 0;
    }
    return 1;
}

static int same_json(const mmt_json *a, const mmt_json *b) {
    if (a->type != b->type) return 0;
    switch (a->type) {
    case MMT_JSON_NULL: return 1;
    case MMT_JSON_BOOL: return a->boolean == b->boolean;
    case MMT_JSON_NUMBER: return a->number == b->number;
    case MMT_JSON_STRING: return a->len == b->len && memcmp(a->string, b->string, a->len) == 0;
    case MMT_JSON_ARRAY: return same_list(a, b);
    case MMT_JSON_OBJECT:
        if (a->len != b->len) return 0;
        for (size_t i = 0; i < a->len; i++) {
            const mmt_json *v = mmt_json_get(b, a->keys[i]);
            if (!v || !same_json(&a->items[i], v)) return 0;
        }
        return 1;
    }
    return 0;
}

static void describe(const mmt_json *v, char *buf, size_t cap) {
    mmt_strbuf b = {0};
    mmt_json_write(&b, v);
    snprintf(buf, cap, "%.60s%s", b.data ? b.data : "?", b.len > 60 ? "..." : "");
    mmt_strbuf_free(&b);
}

/* Compares the run's config file `mine` with `theirs` (both adapter_config.json paths) on
 * the keys both have; appends each difference to d. */
static mmt_status compare_configs(const char *mine, const char *theirs, mmt_strbuf *d, int *count) {
    mmt_json_doc *a = NULL, *b = NULL;
    mmt_status s = mmt_json_parse_file(mine, &a);
    if (s == MMT_OK) s = mmt_json_parse_file(theirs, &b);
    if (s == MMT_OK) {
        const mmt_json *ra = mmt_json_root(a), *rb = mmt_json_root(b);
        if (ra->type != MMT_JSON_OBJECT || rb->type != MMT_JSON_OBJECT)
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: not a JSON object", theirs);
        for (size_t i = 0; s == MMT_OK && i < ra->len; i++) {
            const char *key = ra->keys[i];
            const mmt_json *v = mmt_json_get(rb, key);
            if (ignored_key(key) || !v || same_json(&ra->items[i], v)) continue;
            char was[80], now[80];
            describe(v, was, sizeof was);
            describe(&ra->items[i], now, sizeof now);
            mmt_strbuf_printf(d, "%s%s (it has %s, this run %s)", *count ? "; " : "", key, was, now);
            (*count)++;
        }
    }
    mmt_json_free(a);
    mmt_json_free(b);
    return s;
}

/* The task's fresh state saved to a temporary folder, its configs compared with dir's. */
static mmt_status check_same_settings(const mmt_train_task *task, const char *dir) {
    const char *base = getenv("TMPDIR");
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/mmtune-init-XXXXXX", base && base[0] ? base : "/tmp");
    if (!mkdtemp(tmp)) return mmt_fail(MMT_STATUS_IO, "%s: cannot make a temporary folder", tmp);
    static const char *const configs[] = {"adapter_config.json", "prompt/adapter_config.json"};
    mmt_strbuf d = {0};
    int count = 0;
    mmt_status s = task->save(task->ctx, tmp);
    for (int i = 0; s == MMT_OK && i < 2; i++) {
        char *mine = mmt_path_join(tmp, configs[i]), *theirs = mmt_path_join(dir, configs[i]);
        if (!mine || !theirs) s = MMT_STATUS_OUT_OF_MEMORY;
        else if (mmt_file_exists(mine) != mmt_file_exists(theirs))
            s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--init-adapter %s: %s %s, this run's %s (use the method and prompt "
                         "settings it was trained with)", dir, theirs, mmt_file_exists(theirs) ? "exists" : "is missing",
                         mmt_file_exists(mine) ? "has one" : "has none");
        else if (mmt_file_exists(mine)) s = compare_configs(mine, theirs, &d, &count);
        mmt_free(mine);
        mmt_free(theirs);
    }
    if (s == MMT_OK && count)
        s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--init-adapter %s was trained with other settings than this run (%s); "
                     "continuing needs the same method and settings", dir, d.data ? d.data : "");
    mmt_strbuf_free(&d);
    mmt_dir_remove_tree(tmp);
    return s;
}

mmt_status mmt_continual_bind(mmt_continual *k, const mmt_train_task *task) {
    const mmt_train_options *o = &k->c->o;
    if (o->init_adapter) {
        MMT_TRY(check_same_settings(task, o->init_adapter));
        mmt_status s = task->load(task->ctx, o->init_adapter);
        if (s != MMT_OK) return mmt_error_prefix(s, "--init-adapter %s: ", o->init_adapter);
    }
    if (o->ewc_lambda > 0) {
        int64_t n = 0;
        const mmt_nn_param *p = task->params(task->ctx, &n);
        MMT_TRY(mmt_ewc_create(k->earlier, k->ewc_path, p, n, o->ewc_lambda, &k->ewc));
    }
    return MMT_OK;
}

/* ---- the run's identity, the trainer's settings, the end --------------------------------- */

mmt_status mmt_continual_identity(const mmt_continual *k, char **identity) {
    const mmt_train_options *o = &k->c->o;
    if (!o->init_adapter && !k->ewc && !k->replay) return MMT_OK;
    size_t len = strlen(*identity);
    if (len < 2 || (*identity)[len - 1] != '}') return mmt_fail(MMT_STATUS_INTERNAL, "the run's identity is not a JSON object");
    mmt_strbuf b = {0};
    mmt_strbuf_append(&b, *identity, len - 1);
    mmt_strbuf_printf(&b, ", \"continual\": {");
    const char *sep = "";
    mmt_status s = MMT_OK;
    if (o->init_adapter) {
        char hex[17];
        int64_t files = 0;
        if ((s = mmt_fingerprint_model(o->init_adapter, hex, &files)) == MMT_OK)
            mmt_strbuf_printf(&b, "\"init_adapter\": {\"fingerprint\": \"%s\", \"files\": %lld}", hex, (long long)files);
        sep = ", ";
    }
    if (s == MMT_OK && k->ewc) {
        uint64_t h = 0, size = 0;
        char hex[17];
        if ((s = mmt_hash_file(k->ewc_path, &h, &size)) == MMT_OK) {
            mmt_hash_hex(h, hex);
            mmt_strbuf_printf(&b, "%s\"ewc\": {\"fingerprint\": \"%s\", \"bytes\": %llu}", sep, hex, (unsigned long long)size);
        }
        sep = ", ";
    }
    if (s == MMT_OK && k->replay) {
        char hex[17];
        if ((s = mmt_fingerprint_pairs(k->replay, hex)) == MMT_OK)
            mmt_strbuf_printf(&b, "%s\"replay\": {\"fingerprint\": \"%s\", \"pairs\": %lld}", sep, hex, (long long)k->replay->n);
    }
    mmt_strbuf_printf(&b, "}}");
    if (s == MMT_OK && b.failed) s = MMT_STATUS_OUT_OF_MEMORY;
    if (s != MMT_OK) {
        mmt_strbuf_free(&b);
        return s;
    }
    mmt_free(*identity);
    *identity = b.data;
    return MMT_OK;
}

void mmt_continual_settings(mmt_continual *k, mmt_train_settings *ts) {
    const mmt_train_options *o = &k->c->o;
    if (k->replay) {
        ts->replay_examples = k->replay->n;
        ts->replay_per_batch = mmt_replay_per_batch(o->replay_ratio, o->batch_size);
    }
    if (k->ewc) {
        ts->regularize = mmt_ewc_regularize;
        ts->regularize_user = k->ewc;
    }
}

mmt_status mmt_continual_finish(mmt_continual *k, const mmt_train_task *task, mmt_comm *comm) {
    const mmt_train_config *c = k->c;
    if (!c->o.save_fisher) return MMT_OK;
    mmt_ewc_estimate_options eo = {c->o.batch_size, k->data->n, 0, (uint64_t)c->o.seed, comm, k->earlier};
    mmt_ewc_state *st = NULL;
    mmt_status s = mmt_ewc_estimate(task, &eo, &st);
    if (s != MMT_OK) return mmt_error_prefix(s, "--save-fisher: ");
    if (!comm || mmt_comm_rank(comm) == 0) {
        char *adapter = mmt_path_join(c->out, "adapter");
        char *path = adapter ? mmt_path_join(adapter, MMT_EWC_FILE) : NULL;
        s = path ? mmt_ewc_state_save(st, path) : MMT_STATUS_OUT_OF_MEMORY;
        if (s == MMT_OK && !c->quiet)
            mmt_log_info("EWC: the Fisher of %lld micro-batches of %lld%s written to %s", (long long)st->micro_batches,
                         (long long)st->batch_size, st->tasks > 1 ? " (summed with the earlier tasks')" : "", path);
        mmt_free(adapter);
        mmt_free(path);
    }
    mmt_ewc_state_free(st);
    return s;
}
