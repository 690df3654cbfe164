/* trainer.c — the training loop, checkpoints and resume (see trainer.h). */
#include "train/trainer.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/file.h"
#include "core/json.h"
#include "core/log.h"
#include "core/crash.h"
#include "core/dir.h"
#include "core/safetensors.h"
#include "dist/comm.h"
#include "ops/ops.h"
#include "train/adamw8bit.h"
#include "train/optimizer.h"
#include "train/replay.h"
#include "train/run_dir.h"

void mmt_train_settings_default(mmt_train_settings *s) {
    memset(s, 0, sizeof *s);
    s->out = "runs/train";
    s->steps = 0;
    s->epochs = 1;
    s->batch_size = 32;
    s->grad_accum = 1;
    s->lr = 1e-4;
    s->weight_decay = 0.01;
    s->beta1 = 0.9;
    s->beta2 = 0.999;
    s->eps = 1e-8;
    s->max_grad_norm = 1.0;
    s->schedule = MMT_SCHEDULE_COSINE;
    s->warmup_ratio = 0.05;
    s->warmup_steps = -1;
    s->seed = 42;
    s->save_every = 0;
    s->keep_checkpoints = 2;
}

static uint64_t mix(uint64_t a, uint64_t b) {
    uint64_t z = a ^ (b + 0x9e3779b97f4a7c15ull + (a << 6) + (a >> 2));
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ---- example order: a seeded permutation per epoch ----------------------------------- */

/* With hard-example batches (task->epoch_order) the orders come from the run's cache of
 * the epochs in use instead (see "hard-example batches" below). */
typedef struct hard_cache {
    int64_t n;        /* examples */
    int64_t count, cap;
    int64_t *epochs;  /* owned (cap) */
    int64_t **perms;  /* owned (cap), each owned (n): position in the epoch -> example */
} hard_cache;

/* The order of epoch e, or NULL when it is not in the cache. */
static const int64_t *hard_lookup(const hard_cache *h, int64_t e) {
    for (int64_t i = 0; i < h->count; i++)
        if (h->epochs[i] == e) return h->perms[i];
    return NULL;
}

typedef struct order {
    int64_t n, epoch;
    int64_t *perm; /* owned, n */
    uint64_t seed;
    const hard_cache *hard; /* borrowed; NULL: the seeded permutation */
} order;

static void order_fill(order *o, int64_t epoch) {
    uint64_t state = mix(o->seed, (uint64_t)epoch + 1);
    for (int64_t i = 0; i < o->n; i++) o->perm[i] = i;
    for (int64_t i = o->n - 1; i > 0; i--) { /* Fisher-Yates */
        state = mix(state, (uint64_t)i);
        int64_t j = (int64_t)(state % (uint64_t)(i + 1));
        int64_t t = o->perm[i];
        o->perm[i] = o->perm[j];
        o->perm[j] = t;
    }
    o->epoch = epoch;
}

/* The example at position q of the endless stream (epoch q / n). */
static int64_t order_at(order *o, int64_t q) {
    int64_t e = q / o->n;
    if (o->hard) {
        const int64_t *perm = hard_lookup(o->hard, e);
        assert(perm); /* hard_ensure ran for every micro-batch before its indices are taken */
        return perm[q % o->n];
    }
    if (e != o->epoch) order_fill(o, e);
    return o->perm[q % o->n];
}

/* ---- the run ------------------------------------------------------------------------------ */

/* Overlapping the gradient all-reduce with backward (settings.overlap_comm): the tensors
 * whose gradients are final part way through backward (task.early_params) form the early
 * bucket, all-reduced on a thread of its own while backward goes on; the rest (the late
 * bucket) after backward, on the main thread, once the early one is done (one MPI call at a
 * time). Each element is summed over ranks in rank order either way, so the gradients are
 * the bytes of the one all-reduce without overlap. */
typedef struct overlap {
    int on;
    uint8_t *early;          /* owned: (trainable tensors, trainer order) 1: early bucket */
    float *buf[2];           /* owned: the early and late buckets, packed */
    int64_t n[2];            /* their numbers */
    const float *accum;      /* this step's earlier micro-batches' sums (flat_a) or NULL */
    pthread_t thread;
    int live;                /* the thread runs */
    int packed;              /* the early bucket is packed (task's ready came) */
    mmt_comm *comm;
    mmt_status status;       /* the thread's */
    char error[512];
} overlap;

typedef struct run {
    const mmt_train_task *task;
    const mmt_train_settings *set;
    mmt_adamw *opt;          /* owned: the optimizer, this one ... */
    mmt_adamw8bit *opt8;     /* owned: ... or this one (--optim adamw8bit) */
    mmt_param *params;       /* owned: descriptors in group order */
    mmt_param_group *groups; /* owned */
    int64_t n_groups;
    char *scale_text;        /* owned copy of settings.lr_scales, cut into patterns */
    char **patterns;         /* owned array into scale_text */
    double *factors;         /* owned */
    int64_t n_patterns;
    mmt_schedule sched;
    int64_t total_steps;
    FILE *metrics;
    mmt_run_dir dir;         /* the locked run folder and its run_id */
    /* data parallelism */
    mmt_comm *comm;          /* borrowed; the single world when settings.comm is NULL */
    int rank, ranks;         /* this process's rank among ranks real ones */
    int64_t units;           /* rank shares this process computes per step: as_ranks, or 1 */
    int64_t world;           /* shares per step: ranks, or as_ranks */
    int64_t per_rank;        /* examples per share per epoch: ceil(n / world) */
    int64_t n_flat;          /* trainable numbers */
    float *flat_a, *flat_t;  /* owned: gradient sums (micro-batches; shares), packing */
    int *owner;              /* owned, ZeRO-1: the rank that steps r->params[i] */
    mmt_param_group *shard;  /* owned, ZeRO-1: the groups cut to this rank's tensors */
    mmt_param *shard_params; /* owned */
    double comm_seconds;
    int64_t saved_world;     /* the ranks of the checkpoint resumed from */
    hard_cache hard;         /* owned: hard-example orders (task->epoch_order) */
    /* replay (settings.replay_*): each micro-batch is data_batch examples of the first n_data
     * and batch_size - data_batch of the replay set after them */
    int64_t n_data, data_batch;
    mmt_replay replay;       /* n 0: none */
    overlap ov;              /* settings.overlap_comm */
} run;

/* ---- parameter groups: weight decay x learning-rate factor ---------------------------- */

static mmt_status parse_lr_scales(run *r) {
    const char *text = r->set->lr_scales;
    if (!text || !text[0]) return MMT_OK;
    r->scale_text = mmt_strdup(text);
    int64_t cap = 1;
    for (const char *p = text; *p; p++) cap += *p == ',';
    r->patterns = mmt_calloc((size_t)cap, sizeof *r->patterns);
    r->factors = mmt_calloc((size_t)cap, sizeof *r->factors);
    if (!r->scale_text || !r->patterns || !r->factors) return MMT_STATUS_OUT_OF_MEMORY;
    char *save = NULL;
    for (char *tok = strtok_r(r->scale_text, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strrchr(tok, '='), *end = NULL;
        double f = eq ? strtod(eq + 1, &end) : NAN;
        if (!eq || eq == tok || !end || *end || !isfinite(f) || f < 0)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "lr scales: \"%s\" is not PATTERN=FACTOR with a factor >= 0", tok);
        *eq = '\0';
        r->patterns[r->n_patterns] = tok;
        r->factors[r->n_patterns++] = f;
    }
    return MMT_OK;
}

/* The lr-factor index of a tensor name: the first matching pattern, or n_patterns. */
static int64_t scale_index(const run *r, const char *name) {
    for (int64_t k = 0; k < r->n_patterns; k++)
        if (strstr(name, r->patterns[k])) return k;
    return r->n_patterns;
}

/* Groups by (decay or not) x (lr factor), in a fixed order, each keeping the model's order. */
static mmt_status build_groups(run *r, const mmt_nn_param *np, const mmt_param *flat, int64_t n) {
    MMT_TRY(parse_lr_scales(r));
    int64_t n_kinds = 2 * (r->n_patterns + 1);
    r->groups = mmt_calloc((size_t)n_kinds, sizeof *r->groups);
    if (!r->groups) return MMT_STATUS_OUT_OF_MEMORY;
    int64_t k = 0;
    for (int64_t kind = 0; kind < n_kinds; kind++) {
        int no_decay = (int)(kind % 2);
        int64_t si = kind / 2, start = k;
        for (int64_t i = 0; i < n; i++)
            if (np[i].no_decay == no_decay && scale_index(r, np[i].name) == si) r->params[k++] = flat[i];
        if (k == start) continue;
        mmt_param_group *g = &r->groups[r->n_groups++];
        g->name = no_decay ? "no_decay" : "decay";
        g->params = r->params + start;
        g->n_params = k - start;
        g->lr_scale = si < r->n_patterns ? r->factors[si] : 1.0;
        g->ops = r->task->ops;
        g->weight_decay = no_decay ? 0.0 : r->set->weight_decay;
    }
    return MMT_OK;
}

/* ---- the optimizer: AdamW (float32 moments) or bitsandbytes' AdamW8bit ------------------ */

static const char *optim_name(const mmt_train_settings *set) { return set->optim ? set->optim : "adamw"; }

/* The trainable tensors: r->params[0 .. n_trainable), in group order. */
static int64_t n_trainable(const run *r) {
    int64_t n = 0;
    for (int64_t g = 0; g < r->n_groups; g++) n += r->groups[g].n_params;
    return n;
}

/* ZeRO-1: tensors go to ranks in order, in contiguous runs of about equal numbers, and each
 * rank's optimizer gets the groups cut to its own (a group may be empty there). */
static mmt_status shard_groups(run *r) {
    int64_t n = n_trainable(r);
    r->owner = mmt_calloc((size_t)(n > 0 ? n : 1), sizeof *r->owner);
    r->shard = mmt_calloc((size_t)r->n_groups + 1, sizeof *r->shard);
    r->shard_params = mmt_calloc((size_t)(n > 0 ? n : 1), sizeof *r->shard_params);
    if (!r->owner || !r->shard || !r->shard_params) return MMT_STATUS_OUT_OF_MEMORY;
    int64_t before = 0, k = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t mid = before + r->params[i].numel / 2; /* the tensor goes where its middle falls */
        int64_t o = r->n_flat > 0 ? mid * r->ranks / r->n_flat : 0;
        r->owner[i] = (int)(o < r->ranks ? o : r->ranks - 1);
        if (i > 0 && r->owner[i] < r->owner[i - 1]) r->owner[i] = r->owner[i - 1];
        before += r->params[i].numel;
    }
    for (int64_t g = 0, i = 0; g < r->n_groups; g++) {
        r->shard[g] = r->groups[g];
        r->shard[g].params = r->shard_params + k;
        r->shard[g].n_params = 0;
        for (int64_t j = 0; j < r->groups[g].n_params; j++, i++)
            if (r->owner[i] == r->rank) r->shard_params[k++] = r->params[i], r->shard[g].n_params++;
    }
    return MMT_OK;
}

static mmt_status optimizer_create(run *r) {
    const mmt_train_settings *set = r->set;
    const char *name = optim_name(set);
    const mmt_param_group *groups = r->shard ? r->shard : r->groups;
    if (strcmp(name, "adamw8bit") == 0) {
        if (r->task->ops && strcmp(r->task->ops->name, "cuda") == 0)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--optim adamw8bit runs on the CPU only; the model is on %s",
                            r->task->ops->name);
        mmt_adamw8bit_config c = mmt_adamw8bit_config_default();
        c.lr = set->lr;
        c.beta1 = set->beta1;
        c.beta2 = set->beta2;
        c.eps = set->eps;
        return mmt_adamw8bit_create(&c, groups, r->n_groups, &r->opt8);
    }
    if (strcmp(name, "adamw") != 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--optim takes adamw or adamw8bit, not '%s'", name);
    mmt_adamw_config oc = mmt_adamw_config_default();
    oc.lr = set->lr;
    oc.beta1 = set->beta1;
    oc.beta2 = set->beta2;
    oc.eps = set->eps;
    MMT_TRY(mmt_adamw_create(&oc, groups, r->n_groups, &r->opt));
    if (r->task->ops) r->opt->ops = r->task->ops; /* the moments live where the parameters do */
    return MMT_OK;
}

static int64_t optimizer_steps(const run *r) { return r->opt8 ? r->opt8->step : r->opt->step; }

static mmt_status optimizer_step(run *r, double multiplier) {
    return r->opt8 ? mmt_adamw8bit_step(r->opt8, multiplier) : mmt_adamw_step(r->opt, multiplier);
}

static mmt_status optimizer_export(run *r, mmt_st_write_tensor **w, int64_t *n) {
    int64_t cap = r->opt8 ? mmt_adamw8bit_state_count(r->opt8) : mmt_adamw_state_count(r->opt);
    *w = mmt_calloc((size_t)cap, sizeof **w);
    if (!*w) return MMT_STATUS_OUT_OF_MEMORY;
    return r->opt8 ? mmt_adamw8bit_state_export(r->opt8, *w, cap, n) : mmt_adamw_state_export(r->opt, *w, cap, n);
}

/* ZeRO-1 checkpoints: each rank's state tensors (all but the step, which every rank has),
 * framed as name (NUL-terminated), dtype, ndim, shape, byte count, bytes; gathered on rank 0. */
static mmt_status gather_state(run *r, void **blob, int64_t **offsets) {
    mmt_st_write_tensor *w = NULL;
    int64_t n = 0;
    mmt_strbuf b = {0};
    mmt_status s = optimizer_export(r, &w, &n);
    for (int64_t i = 1; s == MMT_OK && i < n; i++) {
        int32_t head[2] = {(int32_t)w[i].dtype, (int32_t)w[i].ndim};
        int64_t numel = 1;
        for (int d = 0; d < w[i].ndim; d++) numel *= w[i].shape[d];
        int64_t bytes = numel * mmt_dtype_bits(w[i].dtype) / 8;
        mmt_strbuf_append(&b, w[i].name, strlen(w[i].name) + 1);
        mmt_strbuf_append(&b, (const char *)head, sizeof head);
        mmt_strbuf_append(&b, (const char *)w[i].shape, (size_t)w[i].ndim * sizeof(int64_t));
        mmt_strbuf_append(&b, (const char *)&bytes, sizeof bytes);
        mmt_strbuf_append(&b, (const char *)w[i].data, (size_t)bytes);
    }
    if (s == MMT_OK && b.failed) s = MMT_STATUS_OUT_OF_MEMORY;
    /* every rank takes part, even one that failed above (with nothing to send) */
    *offsets = mmt_malloc((size_t)(r->ranks + 1) * sizeof **offsets);
    double t = mmt_now_seconds();
    mmt_status g = *offsets ? mmt_comm_gatherv(r->comm, b.data, s == MMT_OK ? (int64_t)b.len : 0, 0, 0, blob, *offsets)
                            : MMT_STATUS_OUT_OF_MEMORY;
    r->comm_seconds += mmt_now_seconds() - t;
    if (s == MMT_OK) s = g;
    mmt_strbuf_free(&b);
    mmt_free(w);
    return s;
}

/* optimizer.safetensors. The 8-bit optimizer's file says so in its metadata ("optimizer":
 * "adamw8bit"); the float32 one's has no metadata, as it always had, so old checkpoints
 * resume and an adamw run writes the same bytes as before. With ZeRO-1 (blob: the other
 * ranks' framed tensors) the file holds every rank's state, in the order one optimizer over
 * every tensor would write it, so it resumes on any number of ranks. */
static mmt_status optimizer_save(run *r, const char *path, const char *blob, const int64_t *offsets) {
    mmt_st_write_tensor *w = NULL, *all = NULL;
    int64_t n = 0, total = 0;
    int64_t (*shapes)[MMT_MAX_DIMS] = NULL;
    static const char *const kind[2] = {MMT_ADAMW8BIT_METADATA_KEY, MMT_ADAMW8BIT_NAME};
    mmt_status s = optimizer_export(r, &w, &n);
    if (s == MMT_OK && blob) {
        int64_t cap = n;
        for (const char *p = blob + offsets[1]; p < blob + offsets[r->ranks];) { /* count first */
            int32_t head[2];
            int64_t bytes;
            p += strlen(p) + 1;
            memcpy(head, p, sizeof head);
            p += sizeof head + (size_t)head[1] * sizeof(int64_t);
            memcpy(&bytes, p, sizeof bytes);
            p += sizeof bytes + (size_t)bytes;
            cap++;
        }
        all = mmt_calloc((size_t)cap, sizeof *all);
        shapes = mmt_calloc((size_t)cap, sizeof *shapes);
        if (!all || !shapes) s = MMT_STATUS_OUT_OF_MEMORY;
        for (int64_t i = 0; s == MMT_OK && i < n; i++) all[total++] = w[i];
        for (const char *p = blob + offsets[1]; s == MMT_OK && p < blob + offsets[r->ranks]; total++) {
            int32_t head[2];
            int64_t bytes;
            all[total].name = p;
            p += strlen(p) + 1;
            memcpy(head, p, sizeof head);
            p += sizeof head;
            all[total].dtype = (mmt_dtype)head[0];
            all[total].ndim = head[1];
            memcpy(shapes[total], p, (size_t)head[1] * sizeof(int64_t));
            all[total].shape = shapes[total];
            p += (size_t)head[1] * sizeof(int64_t);
            memcpy(&bytes, p, sizeof bytes);
            p += sizeof bytes;
            all[total].data = p;
            p += bytes;
        }
    }
    if (s == MMT_OK) s = mmt_safetensors_write(path, all ? all : w, all ? total : n, r->opt8 ? kind : NULL, r->opt8 ? 1 : 0);
    mmt_free(w);
    mmt_free(all);
    mmt_free(shapes);
    return s;
}

static mmt_status optimizer_load(run *r, const char *ckpt, const mmt_safetensors *st) {
    const char *was = mmt_safetensors_metadata(st, MMT_ADAMW8BIT_METADATA_KEY);
    if (!was) was = "adamw";
    if (strcmp(was, optim_name(r->set)) != 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: made with --optim %s; this run has --optim %s (resuming needs the same)",
                        ckpt, was, optim_name(r->set));
    return r->opt8 ? mmt_adamw8bit_state_import(r->opt8, st) : mmt_adamw_state_import(r->opt, st);
}

static mmt_status hard_save(const run *r, const char *dir, int64_t step);
static mmt_status hard_load(run *r, const char *ckpt, int64_t step);

static mmt_status write_checkpoint(run *r, int64_t step, const char *blob, const int64_t *offsets) {
    const mmt_train_settings *set = r->set;
    char name[64];
    snprintf(name, sizeof name, "ckpt-%lld", (long long)step);
    char *final = mmt_path_join(set->out, name), *tmp = NULL, *optpath = NULL, *statepath = NULL;
    mmt_strbuf js = {0};
    mmt_status s = final ? mmt_dir_begin(final, &tmp) : MMT_STATUS_OUT_OF_MEMORY;
    if (s != MMT_OK) goto done;
    optpath = mmt_path_join(tmp, "optimizer.safetensors");
    statepath = mmt_path_join(tmp, "trainer_state.json");
    if (!optpath || !statepath) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    mmt_crash_point("checkpoint.begin");
    if ((s = r->task->save(r->task->ctx, tmp)) != MMT_OK) goto done;
    mmt_crash_point("checkpoint.task_saved");
    if ((s = optimizer_save(r, optpath, blob, offsets)) != MMT_OK) goto done;
    mmt_crash_point("checkpoint.optimizer_saved");
    if (r->task->epoch_order && (s = hard_save(r, tmp, step)) != MMT_OK) goto done;
    /* The data position and every random draw follow from (seed, step): they are recorded
     * for people and tools; resume recomputes them. */
    int64_t position = step * r->data_batch * set->grad_accum * r->world; /* in the padded global order */
    mmt_strbuf_printf(&js, "{\n  \"step\": %lld,\n  \"total_steps\": %lld,\n  \"seed\": %llu,\n  \"batch_size\": %lld,\n"
                           "  \"grad_accum\": %lld,\n  \"ranks\": %lld,\n  \"zero\": %d,\n  \"data_position\": %lld,\n"
                           "  \"epoch\": %lld,\n  \"run_id\": \"%s\",\n"
                           "  \"rng\": \"splitmix64 streams derived from (seed, epoch) for the example order and (seed, step,"
                           " micro-batch, share) for dropout\"",
                      (long long)step, (long long)r->total_steps, (unsigned long long)set->seed,
                      (long long)set->batch_size, (long long)set->grad_accum, (long long)r->world, r->shard != NULL,
                      (long long)position, (long long)(step * r->data_batch * set->grad_accum / r->per_rank), r->dir.run_id);
    if (set->settings_json) mmt_strbuf_printf(&js, ",\n  \"settings\": %s", set->settings_json);
    mmt_strbuf_printf(&js, "\n}\n");
    if (js.failed) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    if ((s = mmt_file_write_atomic(statepath, js.data, js.len)) != MMT_OK) goto done;
    /* the manifest last: a checkpoint with a manifest whose files match it is complete */
    if ((s = mmt_ckpt_manifest_write(tmp, r->dir.run_id)) != MMT_OK) goto done;
    mmt_crash_point("checkpoint.manifest_written");
    if ((s = mmt_dir_publish(tmp, final)) != MMT_OK) goto done;
    mmt_crash_point("checkpoint.published");
    mmt_run_dir_prune(set->out, r->dir.run_id, set->keep_checkpoints);
done:
    if (s != MMT_OK) {
        s = mmt_error_prefix(s, "writing checkpoint %s: ", final ? final : name);
        if (tmp) mmt_dir_remove_tree(tmp); /* nothing half-written stays behind */
    }
    mmt_strbuf_free(&js);
    mmt_free(final);
    mmt_free(tmp);
    mmt_free(optpath);
    mmt_free(statepath);
    return s;
}

/* Restores task state, optimizer and step from a checkpoint folder. */
static mmt_status resume_from(run *r, const char *ckpt, int64_t *step) {
    const mmt_train_settings *set = r->set;
    char *statepath = mmt_path_join(ckpt, "trainer_state.json");
    char *optpath = mmt_path_join(ckpt, "optimizer.safetensors");
    mmt_json_doc *doc = NULL;
    mmt_safetensors *st = NULL;
    mmt_status s = statepath && optpath ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    int64_t k = 0, seed = 0, bs = 0, acc = 0;
    if (s == MMT_OK) s = mmt_json_parse_file(statepath, &doc);
    if (s == MMT_OK) {
        const mmt_json *root = mmt_json_root(doc);
        if ((s = mmt_json_get_int(root, "step", -1, &k, statepath, "")) == MMT_OK &&
            (s = mmt_json_get_int(root, "seed", 0, &seed, statepath, "")) == MMT_OK &&
            (s = mmt_json_get_int(root, "batch_size", 0, &bs, statepath, "")) == MMT_OK)
            s = mmt_json_get_int(root, "grad_accum", 1, &acc, statepath, "");
        if (s == MMT_OK) s = mmt_json_get_int(root, "ranks", 1, &r->saved_world, statepath, "");
    }
    if (s == MMT_OK && k < 0) s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: missing \"step\"", statepath);
    if (s == MMT_OK && ((uint64_t)seed != set->seed || bs != set->batch_size || acc != set->grad_accum))
        s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                     "%s: made with seed %lld, batch size %lld, grad accumulation %lld; this run has %llu, %lld, %lld "
                     "(resuming needs the same)", ckpt, (long long)seed, (long long)bs, (long long)acc,
                     (unsigned long long)set->seed, (long long)set->batch_size, (long long)set->grad_accum);
    if (s == MMT_OK) s = r->task->load(r->task->ctx, ckpt);
    if (s == MMT_OK && r->task->epoch_order) s = hard_load(r, ckpt, k);
    if (s == MMT_OK) s = mmt_safetensors_open(optpath, &st);
    if (s == MMT_OK) s = optimizer_load(r, ckpt, st);
    if (s == MMT_OK && optimizer_steps(r) != k)
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: optimizer step %lld does not match trainer step %lld", ckpt,
                     (long long)optimizer_steps(r), (long long)k);
    *step = k;
    mmt_safetensors_close(st);
    mmt_json_free(doc);
    mmt_free(statepath);
    mmt_free(optpath);
    return s;
}

/* metrics.jsonl keeps only the lines up to `step` (after a resume). */
static mmt_status open_metrics(run *r, int64_t keep_upto) {
    char *path = mmt_path_join(r->set->out, "metrics.jsonl");
    if (!path) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_strbuf kept = {0};
    if (keep_upto > 0) {
        char *data = NULL;
        size_t len = 0;
        if (mmt_file_read_all(path, (size_t)1 << 30, &data, &len) == MMT_OK) {
            for (size_t at = 0; at < len;) {
                const char *line = data + at;
                const char *nl = memchr(line, '\n', len - at);
                size_t n = nl ? (size_t)(nl - line) + 1 : len - at;
                long long st = -1;
                if (sscanf(line, "{\"step\": %lld", &st) == 1 && st <= keep_upto && nl) mmt_strbuf_append(&kept, line, n);
                at += n;
            }
        }
        mmt_clear_error();
        mmt_free(data);
    }
    mmt_status s = mmt_file_write_atomic(path, kept.data ? kept.data : "", kept.len);
    mmt_strbuf_free(&kept);
    if (s == MMT_OK) {
        r->metrics = fopen(path, "a");
        if (!r->metrics) s = mmt_fail(MMT_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    mmt_free(path);
    return s;
}

static mmt_status write_final(run *r) {
    char *final = mmt_path_join(r->set->out, "adapter"), *tmp = NULL;
    mmt_status s = final ? mmt_dir_begin(final, &tmp) : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) s = r->task->save(r->task->ctx, tmp);
    mmt_crash_point("final.saved");
    if (tmp) s = mmt_dir_finish(tmp, final, s);
    mmt_free(tmp);
    mmt_free(final);
    return s;
}

/* ---- data parallelism: shares, gradient sums, broadcasts ------------------------------------ */

/* Which share and micro-batch the process's k-th micro-batch is: step, micro-batch m of the
 * step, and the share (rank) it belongs to. A process computes its units shares per step
 * (as_ranks; 1 otherwise), each over grad_accum micro-batches, in that order. */
static void micro_at(const run *r, int64_t k, int64_t *step, int64_t *m, int64_t *share) {
    int64_t A = r->set->grad_accum, per = r->units * A;
    *step = k / per;
    *m = k % per % A;
    *share = r->rank * r->units + k % per / A;
}

static int64_t micro_id(const run *r, int64_t step, int64_t m, int64_t share);

/* The example indices of a micro-batch: DistributedSampler's split of the epoch's order,
 * then (with a replay set) the micro-batch's replay examples (train/replay.h). */
static void micro_indices(const run *r, order *o, int64_t step, int64_t m, int64_t share, int64_t *out) {
    int64_t B = r->data_batch, q0 = (step * r->set->grad_accum + m) * B, n = r->n_data;
    for (int64_t j = 0; j < B; j++) {
        int64_t q = q0 + j, e = q / r->per_rank, pos = (q % r->per_rank) * r->world + share;
        out[j] = order_at(o, e * n + pos % n);
    }
    if (r->replay.n > 0) mmt_replay_fill(&r->replay, micro_id(r, step, m, share), out + B);
}

/* The global number of a micro-batch: it keys dropout, and (times the batch size) the
 * augmentation draws, so a share gets the same draws on whichever rank computes it. */
static int64_t micro_id(const run *r, int64_t step, int64_t m, int64_t share) {
    return (step * r->set->grad_accum + m) * r->world + share;
}

/* The gradients, packed into flat (= or +=), or unpacked from it. */
static void grads_pack(const run *r, float *flat, int add) {
    const mmt_param *p = r->params;
    int64_t at = 0, n = n_trainable(r);
    for (int64_t i = 0; i < n; at += p[i].numel, i++)
        for (int64_t j = 0; j < p[i].numel; j++) flat[at + j] = add ? flat[at + j] + p[i].grad[j] : p[i].grad[j];
}

static void grads_unpack(const run *r, const float *flat) {
    int64_t at = 0, n = n_trainable(r);
    for (int64_t i = 0; i < n; at += r->params[i].numel, i++)
        memcpy(r->params[i].grad, flat + at, (size_t)r->params[i].numel * sizeof(float));
}

/* ---- the all-reduce overlapped with backward (struct overlap) ----------------------------- */

/* Bucket b (0 early, 1 late) packed from the gradients, plus the step's earlier sums. */
static void overlap_pack(run *r, int b) {
    overlap *o = &r->ov;
    int64_t at = 0, k = 0, n = n_trainable(r);
    for (int64_t i = 0; i < n; at += r->params[i].numel, i++) {
        if (o->early[i] != (b == 0)) continue;
        const float *g = r->params[i].grad;
        for (int64_t j = 0; j < r->params[i].numel; j++) o->buf[b][k++] = o->accum ? o->accum[at + j] + g[j] : g[j];
    }
}

static void overlap_unpack(run *r) {
    overlap *o = &r->ov;
    int64_t k[2] = {0, 0}, n = n_trainable(r);
    for (int64_t i = 0; i < n; i++) {
        int b = o->early[i] ? 0 : 1;
        memcpy(r->params[i].grad, o->buf[b] + k[b], (size_t)r->params[i].numel * sizeof(float));
        k[b] += r->params[i].numel;
    }
}

static void *overlap_thread(void *arg) {
    overlap *o = arg;
    o->status = mmt_comm_allreduce_sum_f32(o->comm, o->buf[0], o->n[0]);
    if (o->status != MMT_OK) snprintf(o->error, sizeof o->error, "%s", mmt_last_error());
    return NULL;
}

/* The task's backward_split calls this once the early bucket's gradients are final: pack it
 * and all-reduce it on a thread while backward goes on (without a thread: after backward). */
static void overlap_ready(void *user) {
    run *r = user;
    overlap *o = &r->ov;
    overlap_pack(r, 0);
    o->packed = 1;
    o->status = MMT_OK;
    o->error[0] = '\0';
    o->live = pthread_create(&o->thread, NULL, overlap_thread, o) == 0;
}

static void overlap_join(overlap *o) {
    if (!o->live) return;
    pthread_join(o->thread, NULL);
    o->live = 0;
}

/* After backward: the early bucket's all-reduce done, the late one's, both into the
 * gradients. Adds the time the main thread waited for them to comm_seconds. */
static mmt_status overlap_finish(run *r) {
    overlap *o = &r->ov;
    double t = mmt_now_seconds();
    if (o->live) overlap_join(o);
    else { /* no thread (or no ready call): here, in the same order */
        if (!o->packed) overlap_pack(r, 0);
        overlap_thread(o);
    }
    o->packed = 0;
    if (o->status != MMT_OK) return mmt_fail(o->status, "%s", o->error);
    overlap_pack(r, 1);
    MMT_TRY(mmt_comm_allreduce_sum_f32(r->comm, o->buf[1], o->n[1]));
    r->comm_seconds += mmt_now_seconds() - t;
    overlap_unpack(r);
    return MMT_OK;
}

/* Whether this run overlaps, and its buckets. np: the task's tensors (n of them). */
static mmt_status overlap_setup(run *r, const mmt_nn_param *np, int64_t n) {
    const mmt_train_task *task = r->task;
    const char *why = NULL;
    if (r->units > 1) why = "--as-ranks runs several shares in one process";
    else if (!task->early_params || !task->backward_split) why = "this model's backward has no split point (a GIT captioner)";
    else if (!mmt_comm_any_thread(r->comm)) why = "the MPI library does not allow MPI_THREAD_SERIALIZED";
    uint8_t *te = why ? NULL : mmt_calloc((size_t)(n > 0 ? n : 1), 1);
    if (!why && !te) return MMT_STATUS_OUT_OF_MEMORY;
    if (!why && task->early_params(task->ctx, te) == 0)
        why = "no split point in this run's backward (one tower trains, prompts, or --gather-with-grad)";
    if (!why) {
        int64_t m = n_trainable(r);
        if (!(r->ov.early = mmt_calloc((size_t)(m > 0 ? m : 1), 1))) {
            mmt_free(te);
            return MMT_STATUS_OUT_OF_MEMORY;
        }
        for (int64_t k = 0; k < m; k++) { /* the trainer's order is by group */
            for (int64_t i = 0; i < n; i++)
                if (!strcmp(np[i].name, r->params[k].name)) r->ov.early[k] = te[i];
            r->ov.n[r->ov.early[k] ? 0 : 1] += r->params[k].numel;
        }
        if (!r->ov.n[0] || !r->ov.n[1]) why = "every gradient is final at the same point";
    }
    mmt_free(te);
    if (why) {
        if (!r->set->quiet && r->rank == 0) mmt_log_info("--overlap-comm: off: %s", why);
        return MMT_OK;
    }
    for (int b = 0; b < 2; b++)
        if (!(r->ov.buf[b] = mmt_malloc((size_t)r->ov.n[b] * sizeof(float)))) return MMT_STATUS_OUT_OF_MEMORY;
    r->ov.comm = r->comm;
    r->ov.on = 1;
    if (!r->set->quiet && r->rank == 0)
        mmt_log_info("--overlap-comm: %lld gradient numbers all-reduced during backward, %lld after it",
                     (long long)r->ov.n[0], (long long)r->ov.n[1]);
    return MMT_OK;
}

/* Tensors [i0, i1) of the trainable list, from rank root to every rank, through flat. */
static mmt_status params_broadcast(run *r, int64_t i0, int64_t i1, int root) {
    int64_t at0 = 0, at = 0;
    for (int64_t i = 0; i < i0; i++) at0 += r->params[i].numel;
    at = at0;
    if (r->rank == root)
        for (int64_t i = i0; i < i1; at += r->params[i].numel, i++)
            memcpy(r->flat_a + at, r->params[i].data, (size_t)r->params[i].numel * sizeof(float));
    else
        for (int64_t i = i0; i < i1; i++) at += r->params[i].numel;
    double t = mmt_now_seconds();
    mmt_status s = mmt_comm_broadcast(r->comm, r->flat_a + at0, (at - at0) * (int64_t)sizeof(float), root);
    r->comm_seconds += mmt_now_seconds() - t;
    if (s != MMT_OK || r->rank == root) return s;
    at = at0;
    for (int64_t i = i0; i < i1; at += r->params[i].numel, i++)
        memcpy(r->params[i].data, r->flat_a + at, (size_t)r->params[i].numel * sizeof(float));
    return MMT_OK;
}

/* ZeRO-1, after each rank stepped its tensors: every owner's tensors to everyone. */
static mmt_status zero_gather_params(run *r) {
    int64_t n = n_trainable(r);
    for (int64_t i0 = 0; i0 < n;) {
        int64_t i1 = i0;
        while (i1 < n && r->owner[i1] == r->owner[i0]) i1++;
        MMT_TRY(params_broadcast(r, i0, i1, r->owner[i0]));
        i0 = i1;
    }
    return MMT_OK;
}

/* A setup step that may fail on some ranks only: all learn whether any failed, so none
 * waits in a collective for one that has given up. */
static mmt_status agree(run *r, mmt_status s) {
    if (r->ranks == 1) return s;
    int64_t failed = s != MMT_OK;
    mmt_status c = mmt_comm_allreduce_max_i64(r->comm, &failed, 1);
    if (s != MMT_OK) return s;
    if (c != MMT_OK) return c;
    return failed ? mmt_fail(MMT_STATUS_INTERNAL, "another rank failed to set up the run (its message says why)") : MMT_OK;
}

/* ---- hard-example batches (task->epoch_order) ------------------------------------------
 *
 * An epoch's hard order depends on the model at the epoch's start, so it is computed once,
 * when the first micro-batch that takes an example of the epoch is about to be announced or
 * loaded (at the start of its step: the trainable tensors only change between steps), kept
 * while a step may still take from it, and saved in each checkpoint for the steps after it.
 *
 * The task groups examples into micro-batches; the trainer says which positions of the
 * epoch's (padded) order each micro-batch takes. Share s's micro-batch number k of the
 * endless per-share stream takes positions p = k B .. k B + B - 1 of the stream, i.e. the
 * epoch's per-share positions p - e P, i.e. the global positions (p - e P) W + s
 * (DistributedSampler's split: W shares, P = per_rank). The micro-batches are trained in the
 * order of (k, s), so the task's runs are laid on them in that order; positions >= n repeat
 * the epoch's start (the sampler's padding) and are not part of a run. So a hard group lands
 * whole in one micro-batch on any number of ranks; the only exceptions are a micro-batch
 * that straddles two epochs (its two parts are runs of their epochs) and the padding. */

static int64_t first_epoch_of_step(const run *r, int64_t step) {
    return step * r->set->grad_accum * r->set->batch_size / r->per_rank;
}

/* The positions (< n) of epoch e in the order their micro-batches are trained, into
 * slots (n), and the number of them each micro-batch takes, into sizes; returns the count of
 * micro-batches with any. */
static int64_t slot_groups(const run *r, int64_t e, int64_t *slots, int64_t *sizes) {
    int64_t B = r->set->batch_size, P = r->per_rank, W = r->world, n = r->task->n_examples;
    int64_t base = e * P, k0 = base / B, k1 = (base + P - 1) / B, t = 0, g = 0;
    for (int64_t k = k0; k <= k1; k++)
        for (int64_t share = 0; share < W; share++) {
            int64_t p0 = k * B - base, p1 = p0 + B, before = t;
            if (p0 < 0) p0 = 0;
            if (p1 > P) p1 = P;
            for (int64_t p = p0; p < p1; p++)
                if (p * W + share < n) slots[t++] = p * W + share;
            if (t > before) sizes[g++] = t - before;
        }
    return g;
}

/* A permutation of 0..n-1? (mark: n bytes of scratch) */
static int is_permutation(const int64_t *v, int64_t n, unsigned char *mark) {
    memset(mark, 0, (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        if (v[i] < 0 || v[i] >= n || mark[v[i]]) return 0;
        mark[v[i]] = 1;
    }
    return 1;
}

/* Takes perm (mmt_malloc'd) into the cache as epoch e's order, dropping the epochs before
 * keep_from (no step from now on takes from them). */
static mmt_status hard_insert(hard_cache *h, int64_t e, int64_t *perm, int64_t keep_from) {
    int64_t k = 0;
    for (int64_t i = 0; i < h->count; i++) {
        if (h->epochs[i] >= keep_from) {
            h->epochs[k] = h->epochs[i];
            h->perms[k++] = h->perms[i];
        } else {
            mmt_free(h->perms[i]);
        }
    }
    h->count = k;
    if (h->count == h->cap) {
        int64_t cap = h->cap ? 2 * h->cap : 4;
        int64_t *epochs = mmt_realloc(h->epochs, (size_t)cap * sizeof *epochs);
        if (epochs) h->epochs = epochs;
        int64_t **perms = epochs ? mmt_realloc(h->perms, (size_t)cap * sizeof *perms) : NULL;
        if (!perms) {
            mmt_free(perm);
            return MMT_STATUS_OUT_OF_MEMORY;
        }
        h->perms = perms;
        h->cap = cap;
    }
    h->epochs[h->count] = e;
    h->perms[h->count++] = perm;
    return MMT_OK;
}

static void hard_free(hard_cache *h) {
    for (int64_t i = 0; i < h->count; i++) mmt_free(h->perms[i]);
    mmt_free(h->perms);
    mmt_free(h->epochs);
    memset(h, 0, sizeof *h);
}

/* Epoch e's hard order into perm (n): the task's runs laid on the micro-batches' positions.
 * Every rank computes it; rank 0's is the job's. */
static mmt_status hard_compute(run *r, int64_t e, int64_t *perm) {
    int64_t n = r->task->n_examples;
    int64_t *seeded = mmt_malloc((size_t)n * sizeof(int64_t)), *slots = mmt_malloc((size_t)n * sizeof(int64_t));
    int64_t *sizes = mmt_malloc((size_t)n * sizeof(int64_t)), *grouped = mmt_malloc((size_t)n * sizeof(int64_t));
    unsigned char *mark = mmt_malloc((size_t)n);
    mmt_status s = seeded && slots && sizes && grouped && mark ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) {
        order seeded_order = {n, -1, seeded, r->set->seed, NULL};
        order_fill(&seeded_order, e);
        int64_t g = slot_groups(r, e, slots, sizes);
        s = r->task->epoch_order(r->task->ctx, e, seeded, n, sizes, g, grouped);
        if (s == MMT_OK && !is_permutation(grouped, n, mark))
            s = mmt_fail(MMT_STATUS_INTERNAL, "epoch %lld: the task's hard order is not a permutation of the examples",
                         (long long)e + 1);
        for (int64_t t = 0; s == MMT_OK && t < n; t++) perm[slots[t]] = grouped[t];
    }
    mmt_free(seeded);
    mmt_free(slots);
    mmt_free(sizes);
    mmt_free(grouped);
    mmt_free(mark);
    if (r->ranks > 1) {
        if ((s = agree(r, s)) != MMT_OK) return s;
        double t = mmt_now_seconds();
        s = mmt_comm_broadcast(r->comm, perm, n * (int64_t)sizeof(int64_t), 0);
        r->comm_seconds += mmt_now_seconds() - t;
    }
    return s;
}

/* The epochs micro-batch m of `step` takes examples from. */
static void micro_epochs(const run *r, int64_t step, int64_t m, int64_t *e0, int64_t *e1) {
    int64_t B = r->set->batch_size, q0 = (step * r->set->grad_accum + m) * B;
    *e0 = q0 / r->per_rank;
    *e1 = (q0 + B - 1) / r->per_rank;
}

/* Whether the orders micro-batch m of `step` needs are in the cache. */
static int hard_ready(const run *r, int64_t step, int64_t m) {
    int64_t e0, e1;
    micro_epochs(r, step, m, &e0, &e1);
    for (int64_t e = e0; e <= e1; e++)
        if (!hard_lookup(&r->hard, e)) return 0;
    return 1;
}

/* Computes what micro-batch m of `step` needs and the cache lacks; `current` is the step the
 * loop is at (the model's state is its start). */
static mmt_status hard_ensure(run *r, int64_t step, int64_t m, int64_t current) {
    int64_t e0, e1;
    micro_epochs(r, step, m, &e0, &e1);
    for (int64_t e = e0; e <= e1; e++) {
        if (hard_lookup(&r->hard, e)) continue;
        int64_t *perm = mmt_malloc((size_t)r->task->n_examples * sizeof(int64_t));
        if (!perm) return MMT_STATUS_OUT_OF_MEMORY;
        mmt_status s = hard_compute(r, e, perm);
        if (s != MMT_OK) {
            mmt_free(perm);
            return mmt_error_prefix(s, "epoch %lld's hard batches: ", (long long)e + 1);
        }
        MMT_TRY(hard_insert(&r->hard, e, perm, first_epoch_of_step(r, current)));
    }
    return MMT_OK;
}

#define HARD_FILE "sampling.safetensors"

/* The cached orders that steps from `step` on take from, into dir/sampling.safetensors (no
 * file when there are none: the next epoch has not begun). */
static mmt_status hard_save(const run *r, const char *dir, int64_t step) {
    const hard_cache *h = &r->hard;
    int64_t from = first_epoch_of_step(r, step), k = 0, shape[1] = {h->n};
    mmt_st_write_tensor *wt = mmt_calloc((size_t)(h->count > 0 ? h->count : 1), sizeof *wt);
    char (*names)[40] = mmt_calloc((size_t)(h->count > 0 ? h->count : 1), sizeof *names);
    char *path = mmt_path_join(dir, HARD_FILE);
    mmt_status s = wt && names && path ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; s == MMT_OK && i < h->count; i++) {
        if (h->epochs[i] < from) continue;
        snprintf(names[k], sizeof names[k], "epoch.%lld", (long long)h->epochs[i]);
        wt[k] = (mmt_st_write_tensor){names[k], MMT_DTYPE_I64, 1, shape, h->perms[i]};
        k++;
    }
    if (s == MMT_OK && k > 0) s = mmt_safetensors_write(path, wt, k, NULL, 0);
    mmt_free(wt);
    mmt_free(names);
    mmt_free(path);
    return s;
}

/* The orders a checkpoint at `step` holds, into the cache; the epoch the step begins in must
 * be among them when an earlier step began it. */
static mmt_status hard_load(run *r, const char *ckpt, int64_t step) {
    int64_t n = r->task->n_examples, from = first_epoch_of_step(r, step);
    r->hard.n = n;
    if (r->saved_world != r->world)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: hard-example batches resume on the %lld ranks that wrote it, "
                        "not %lld (--as-ranks %lld)", ckpt, (long long)r->saved_world, (long long)r->world,
                        (long long)r->saved_world);
    char *path = mmt_path_join(ckpt, HARD_FILE);
    unsigned char *mark = mmt_malloc((size_t)n);
    mmt_safetensors *st = NULL;
    mmt_status s = path && mark ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK && mmt_file_exists(path)) s = mmt_safetensors_open(path, &st);
    for (int64_t i = 0; s == MMT_OK && st && i < st->n_tensors; i++) {
        const mmt_st_tensor *t = &st->tensors[i];
        long long e = -1;
        char tail = 0;
        if (sscanf(t->name, "epoch.%lld%c", &e, &tail) != 1 || e < from || t->dtype != MMT_DTYPE_I64 || t->ndim != 1 ||
            t->shape[0] != n) {
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: tensor \"%s\" is not the int64 (%lld) order of an epoch from %lld on",
                         path, t->name, (long long)n, (long long)from);
            break;
        }
        int64_t *perm = mmt_malloc((size_t)n * sizeof(int64_t));
        if (!perm) {
            s = MMT_STATUS_OUT_OF_MEMORY;
            break;
        }
        memcpy(perm, t->data, (size_t)n * sizeof(int64_t)); /* the mapping may be unaligned */
        if (!is_permutation(perm, n, mark)) {
            mmt_free(perm);
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: \"%s\" is not a permutation of the %lld examples", path, t->name,
                         (long long)n);
            break;
        }
        s = hard_insert(&r->hard, e, perm, from);
    }
    int begun_before = from * r->per_rank < step * r->set->grad_accum * r->set->batch_size;
    if (s == MMT_OK && begun_before && !hard_lookup(&r->hard, from))
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: no hard-example order for epoch %lld, which began before step %lld (%s "
                     "is missing or incomplete)", ckpt, (long long)from + 1, (long long)step + 1, HARD_FILE);
    mmt_safetensors_close(st);
    mmt_free(path);
    mmt_free(mark);
    return s;
}

mmt_status mmt_train_run(const mmt_train_task *task, const mmt_train_settings *set,
                         mmt_train_result *result) {
    memset(result, 0, sizeof *result);
    if (task->n_examples < 1) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "no training examples");
    if (set->batch_size < 1 || set->grad_accum < 1)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "batch size and gradient accumulation must be >= 1");
    if (!(set->lr > 0) || !isfinite(set->lr)) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "learning rate must be > 0");
    run r = {0};
    r.task = task;
    r.set = set;
    r.comm = set->comm ? set->comm : mmt_comm_single();
    r.rank = mmt_comm_rank(r.comm);
    r.ranks = mmt_comm_size(r.comm);
    if (set->as_ranks < 0 || set->as_ranks > 4096)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--as-ranks takes 1..4096, not %lld", (long long)set->as_ranks);
    if (set->as_ranks > 1 && set->as_ranks % r.ranks != 0)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "--as-ranks %lld is not a multiple of the job's %d ranks",
                        (long long)set->as_ranks, r.ranks);
    r.world = set->as_ranks > 1 ? set->as_ranks : r.ranks;
    r.units = r.world / r.ranks;
    r.n_data = task->n_examples - set->replay_examples;
    r.data_batch = set->batch_size - set->replay_per_batch;
    if (set->replay_examples < 0 || set->replay_per_batch < 0 || r.n_data < 1 ||
        (set->replay_examples > 0) != (set->replay_per_batch > 0) || (set->replay_examples > 0 && r.data_batch < 1))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "replay: %lld of %lld examples and %lld of each batch of %lld from the "
                        "replay set (both or neither must be > 0, and some examples and each batch must be new data)",
                        (long long)set->replay_examples, (long long)task->n_examples, (long long)set->replay_per_batch,
                        (long long)set->batch_size);
    if (set->replay_examples > 0 && task->epoch_order)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "replay cannot go with hard-example batches");
    r.per_rank = (r.n_data + r.world - 1) / r.world;
    if (r.data_batch > r.per_rank)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "batch size %lld is larger than the %lld training examples%s",
                        (long long)r.data_batch, (long long)r.per_rank, r.world > 1 ? " of each rank" : "");
    int64_t per_step = set->batch_size * set->grad_accum; /* per share */
    int64_t data_step = r.data_batch * set->grad_accum;   /* of them new data (not replay) */
    int64_t steps_per_epoch = r.per_rank / data_step > 0 ? r.per_rank / data_step : 1;
    r.total_steps = set->steps > 0 ? set->steps : steps_per_epoch * (set->epochs > 0 ? set->epochs : 1);
    int64_t warmup = set->warmup_steps >= 0 ? set->warmup_steps : (int64_t)(set->warmup_ratio * (double)r.total_steps);
    r.sched = mmt_schedule_make(set->schedule, warmup, r.total_steps);
    r.sched.min_lr_rate = set->min_lr_rate;
    MMT_TRY(mmt_schedule_check(&r.sched));

    int64_t n_params;
    const mmt_nn_param *np = task->params(task->ctx, &n_params);
    if (n_params < 1) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "nothing to train: no trainable tensors");
    mmt_param *flat = mmt_calloc((size_t)n_params, sizeof *flat);
    r.params = mmt_calloc((size_t)n_params, sizeof *r.params);
    const hard_cache *hard = task->epoch_order ? &r.hard : NULL;
    r.hard.n = task->n_examples;
    order ord = {task->n_examples, -1, mmt_malloc((size_t)task->n_examples * sizeof(int64_t)), set->seed, hard};
    /* a second order for announcing batches ahead, so the two never refill each other's epoch */
    order ahead = {task->n_examples, -1, task->prefetch ? mmt_malloc((size_t)task->n_examples * sizeof(int64_t)) : NULL,
                   set->seed, hard};
    int64_t *indices = mmt_malloc((size_t)set->batch_size * sizeof(int64_t));
    int64_t *ahead_indices = task->prefetch ? mmt_malloc((size_t)set->batch_size * sizeof(int64_t)) : NULL;
    mmt_status s = MMT_OK;
    char *ckpt = NULL;
    void *blob = NULL;
    int64_t *blob_offsets = NULL;
    if (!flat || !r.params || !ord.perm || !indices || (task->prefetch && (!ahead.perm || !ahead_indices))) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    ord.n = ahead.n = r.n_data; /* the data's order; a replay set after the data has its own */
    r.replay = (mmt_replay){r.n_data, set->replay_examples, set->replay_per_batch, set->seed};
    if (set->regularize && task->ops && strcmp(task->ops->name, "cuda") == 0) {
        s = mmt_fail(MMT_STATUS_UNSUPPORTED, "the regulariser (--ewc) runs on the CPU; the model is on %s", task->ops->name);
        goto done;
    }
    mmt_params_from_nn(np, n_params, flat);
    for (int64_t i = 0; i < n_params; i++) r.n_flat += flat[i].numel;
    if ((s = build_groups(&r, np, flat, n_params)) != MMT_OK) goto done;
    /* gradient sums over micro-batches (and the packing for the all-reduce), over shares */
    if (set->grad_accum > 1 || r.ranks > 1) r.flat_a = mmt_malloc((size_t)(r.n_flat > 0 ? r.n_flat : 1) * sizeof(float));
    if (r.units > 1) r.flat_t = mmt_malloc((size_t)(r.n_flat > 0 ? r.n_flat : 1) * sizeof(float));
    if (((set->grad_accum > 1 || r.ranks > 1) && !r.flat_a) || (r.units > 1 && !r.flat_t)) {
        s = MMT_STATUS_OUT_OF_MEMORY;
        goto done;
    }
    if (set->zero && r.ranks > 1 && (s = shard_groups(&r)) != MMT_OK) goto done;
    if (set->overlap_comm && r.ranks > 1 && (s = overlap_setup(&r, np, n_params)) != MMT_OK) goto done;
    if ((s = optimizer_create(&r)) != MMT_OK) goto done;
    /* rank 0 owns the run folder: it alone locks, checks, and writes it */
    if (r.rank == 0) {
        mmt_run_dir_options ro = {set->identity_json, set->overwrite, set->resume};
        s = mmt_run_dir_open(set->out, &ro, &r.dir, &ckpt);
    }
    if ((s = agree(&r, s)) != MMT_OK) goto done;
    if (r.ranks > 1) { /* the checkpoint to resume from, as rank 0 found it */
        int64_t len = ckpt ? (int64_t)strlen(ckpt) + 1 : 0;
        if ((s = mmt_comm_broadcast(r.comm, &len, sizeof len, 0)) != MMT_OK) goto done;
        if (r.rank != 0 && len > 0 && !(ckpt = mmt_malloc((size_t)len))) s = MMT_STATUS_OUT_OF_MEMORY;
        if ((s = agree(&r, s)) != MMT_OK) goto done;
        if (len > 0 && (s = mmt_comm_broadcast(r.comm, ckpt, len, 0)) != MMT_OK) goto done;
    }

    int64_t start = 0;
    if (ckpt) {
        s = resume_from(&r, ckpt, &start);
        if (s == MMT_OK && start > r.total_steps)
            s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s is at step %lld, past this run's %lld steps", ckpt,
                         (long long)start, (long long)r.total_steps);
        if ((s = agree(&r, s)) != MMT_OK) goto done;
        if (!set->quiet && r.rank == 0) mmt_log_info("resuming from %s (step %lld)", ckpt, (long long)start);
        if (s == MMT_OK && r.rank == 0 && r.saved_world != r.world)
            mmt_log_warn("%s was written by a job of %lld ranks; this one trains as %lld, so the examples of a step are "
                         "grouped otherwise from here on (--as-ranks %lld keeps them as they were)", ckpt,
                         (long long)r.saved_world, (long long)r.world, (long long)r.saved_world);
    }
    /* DDP's start: every rank begins from rank 0's trainable tensors */
    if (r.ranks > 1 && (s = params_broadcast(&r, 0, n_params, 0)) != MMT_OK) goto done;
    if (r.rank == 0 && (s = open_metrics(&r, start)) != MMT_OK) goto done;

    double t0 = mmt_now_seconds(), last_loss = NAN;
    if (!set->quiet && r.rank == 0) {
        if (r.world > 1)
            mmt_log_info("training %lld steps, %lld examples, batch %lld x %lld x %lld %s%s, %lld trainable tensors",
                         (long long)r.total_steps, (long long)task->n_examples, (long long)set->batch_size,
                         (long long)set->grad_accum, (long long)r.world, r.ranks > 1 ? "ranks" : "shares in one process",
                         r.shard ? " (ZeRO-1)" : "", (long long)n_params);
        else
            mmt_log_info("training %lld steps, %lld examples, batch %lld x %lld, %lld trainable tensors",
                         (long long)r.total_steps, (long long)task->n_examples, (long long)set->batch_size,
                         (long long)set->grad_accum, (long long)n_params);
    }
    int64_t per_proc = r.units * set->grad_accum; /* micro-batches per step in this process */
    int64_t announced = start * per_proc, last_micro = r.total_steps * per_proc;
    for (int64_t step = start; step < r.total_steps; step++) {
        double ts = mmt_now_seconds(), data_wait = 0, comm0 = r.comm_seconds;
        double loss_sum = 0;
        for (int64_t u = 0; u < r.units; u++) {
            double share_loss = 0;
            for (int64_t m = 0; m < set->grad_accum; m++) {
                int64_t k = step * per_proc + u * set->grad_accum + m, kstep, km, share;
                for (; task->prefetch && announced <= k + task->prefetch_ahead && announced < last_micro; announced++) {
                    micro_at(&r, announced, &kstep, &km, &share);
                    if (task->epoch_order && !hard_ready(&r, kstep, km)) {
                        if (announced > k) break; /* its epoch has not begun: announced when it does */
                        if ((s = hard_ensure(&r, kstep, km, step)) != MMT_OK) goto done;
                    }
                    micro_indices(&r, &ahead, kstep, km, share, ahead_indices);
                    if ((s = task->prefetch(task->ctx, micro_id(&r, kstep, km, share) * set->batch_size, ahead_indices,
                                            set->batch_size)) != MMT_OK)
                        goto done;
                }
                micro_at(&r, k, &kstep, &km, &share);
                if (task->epoch_order && (s = hard_ensure(&r, step, m, step)) != MMT_OK) goto done;
                micro_indices(&r, &ord, step, m, share, indices);
                /* each micro-batch's gradient on its own, then added: the sums are the same
                 * on one process and on many */
                mmt_grad_zero(r.groups, r.n_groups);
                double loss, tl = mmt_now_seconds();
                s = task->load_batch(task->ctx, indices, set->batch_size);
                data_wait += mmt_now_seconds() - tl;
                if (s != MMT_OK) goto done;
                if ((s = task->forward_loss(task->ctx, mix(set->seed, (uint64_t)micro_id(&r, step, m, share)), &loss)) != MMT_OK)
                    goto done;
                if (!isfinite(loss)) {
                    s = mmt_fail(MMT_STATUS_INTERNAL, "step %lld: the loss is %g; training stopped (checkpoints so far are kept)",
                                 (long long)step + 1, loss);
                    goto done;
                }
                /* the step's last micro-batch: with --overlap-comm, the early bucket's all-reduce
                 * starts part way through its backward (the sums of the others ride along) */
                int split = r.ov.on && m == set->grad_accum - 1;
                if (split) {
                    r.ov.accum = m > 0 ? r.flat_a : NULL;
                    s = task->backward_split(task->ctx, overlap_ready, &r);
                } else {
                    s = task->backward(task->ctx);
                }
                if (s != MMT_OK) goto done;
                mmt_crash_point("train.backward_done");
                share_loss = m == 0 ? loss : share_loss + loss;
                if (set->grad_accum > 1 && !split) grads_pack(&r, r.flat_a, m > 0);
            }
            loss_sum = u == 0 ? share_loss : loss_sum + share_loss;
            if (r.units > 1) {
                if (set->grad_accum == 1) grads_pack(&r, r.flat_t, u > 0);
                else if (u == 0) memcpy(r.flat_t, r.flat_a, (size_t)r.n_flat * sizeof(float));
                else for (int64_t i = 0; i < r.n_flat; i++) r.flat_t[i] += r.flat_a[i];
            }
        }
        float *sum = r.units > 1 ? r.flat_t : set->grad_accum > 1 ? r.flat_a : NULL; /* NULL: in the gradients */
        if (r.ov.on) { /* the buckets' sums over ranks, straight into the gradients */
            if ((s = overlap_finish(&r)) != MMT_OK) goto done;
            double t = mmt_now_seconds();
            s = mmt_comm_allreduce_sum_f64(r.comm, &loss_sum, 1);
            r.comm_seconds += mmt_now_seconds() - t;
            if (s != MMT_OK) goto done;
        } else {
            if (r.ranks > 1) { /* the sum over ranks, in rank order */
                if (!sum) grads_pack(&r, sum = r.flat_a, 0);
                double t = mmt_now_seconds();
                s = mmt_comm_allreduce_sum_f32(r.comm, sum, r.n_flat);
                if (s == MMT_OK) s = mmt_comm_allreduce_sum_f64(r.comm, &loss_sum, 1);
                r.comm_seconds += mmt_now_seconds() - t;
                if (s != MMT_OK) goto done;
            }
            if (sum) grads_unpack(&r, sum);
        }
        int64_t shares = set->grad_accum * r.world;
        if (shares > 1) mmt_grad_scale(r.groups, r.n_groups, 1.0 / (double)shares);
        /* a regulariser on the weights (EWC): once per step, on the averaged gradient, the
         * same on every rank */
        double penalty = 0;
        if (set->regularize && (s = set->regularize(set->regularize_user, &penalty)) != MMT_OK) goto done;
        float norm;
        if (set->max_grad_norm > 0) s = mmt_grad_clip_norm(r.groups, r.n_groups, set->max_grad_norm, &norm);
        else norm = mmt_grad_global_norm(r.groups, r.n_groups);
        if (s != MMT_OK) goto done;
        if (!isfinite(norm)) {
            mmt_grad_check_finite(r.groups, r.n_groups);
            s = mmt_error_prefix(MMT_STATUS_INTERNAL, "step %lld: training stopped (checkpoints so far are kept): ",
                                 (long long)step + 1);
            goto done;
        }
        double mult = mmt_schedule_multiplier(&r.sched, step);
        if ((s = optimizer_step(&r, mult)) != MMT_OK) goto done;
        if (r.shard && (s = zero_gather_params(&r)) != MMT_OK) goto done;
        if (task->after_step) task->after_step(task->ctx);
        last_loss = loss_sum / (double)shares;
        double te = mmt_now_seconds(), lr = set->lr * mult; /* the base rate; groups scale it */
        double ips = (double)(per_step * r.world) / (te - ts > 1e-9 ? te - ts : 1e-9);
        if (r.metrics) {
            fprintf(r.metrics,
                    "{\"step\": %lld, \"epoch\": %.4f, \"loss\": %.8g, \"lr\": %.8g, \"grad_norm\": %.6g, \"images_per_s\": %.3f, "
                    "\"elapsed_s\": %.3f, \"data_wait_s\": %.4f",
                    (long long)step + 1, (double)((step + 1) * data_step) / (double)r.per_rank, last_loss, lr, norm, ips,
                    te - t0, data_wait);
            if (r.ranks > 1) fprintf(r.metrics, ", \"comm_s\": %.4f", r.comm_seconds - comm0);
            if (set->regularize) fprintf(r.metrics, ", \"penalty\": %.8g", penalty);
            fprintf(r.metrics, "}\n");
            fflush(r.metrics);
        }
        if (set->on_step && r.rank == 0) {
            int64_t done_here = step + 1 - start;
            double per = (te - t0) / (double)done_here;
            mmt_train_progress p = {step + 1, r.total_steps, start, last_loss, lr, ips, te - t0,
                                    per * (double)(r.total_steps - step - 1)};
            set->on_step(set->on_step_user, &p);
        }
        int last = step + 1 == r.total_steps;
        if (last || (set->save_every > 0 && (step + 1) % set->save_every == 0)) {
            if (r.shard) { /* every rank's optimizer state to rank 0 */
                mmt_free(blob);
                mmt_free(blob_offsets);
                blob = NULL;
                if ((s = gather_state(&r, &blob, &blob_offsets)) != MMT_OK) goto done;
            }
            if (r.rank == 0 && (s = write_checkpoint(&r, step + 1, blob, blob_offsets)) != MMT_OK) goto done;
        }
    }
    if (r.rank == 0 && (s = write_final(&r)) != MMT_OK) goto done;
    result->steps_done = r.total_steps;
    result->steps_run = r.total_steps - start;
    result->final_loss = last_loss;
    result->seconds = mmt_now_seconds() - t0;
    result->comm_seconds = r.comm_seconds;
done:
    overlap_join(&r.ov);
    mmt_free(r.ov.early);
    mmt_free(r.ov.buf[0]);
    mmt_free(r.ov.buf[1]);
    if (r.metrics) fclose(r.metrics);
    if (r.rank == 0) mmt_run_dir_close(&r.dir);
    mmt_adamw_free(r.opt);
    mmt_adamw8bit_free(r.opt8);
    mmt_free(flat);
    mmt_free(r.params);
    mmt_free(r.groups);
    mmt_free(r.scale_text);
    mmt_free(r.patterns);
    mmt_free(r.factors);
    mmt_free(r.flat_a);
    mmt_free(r.flat_t);
    mmt_free(r.owner);
    mmt_free(r.shard);
    mmt_free(r.shard_params);
    mmt_free(blob);
    mmt_free(blob_offsets);
    mmt_free(ord.perm);
    mmt_free(ahead.perm);
    hard_free(&r.hard);
    mmt_free(indices);
    mmt_free(ahead_indices);
    mmt_free(ckpt);
    return s;
}
