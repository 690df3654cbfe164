/*
 * eval.c — `mmtune eval` on a CLIP: retrieval recall@K with the mean contrastive loss,
 * zero-shot accuracy (cli/zero_shot.h), or a linear probe's accuracy (--head). A GIT
 * captioner's --model goes on to eval_caption.c.
 *
 * Under mpirun (dist/comm.h) the pairs are split over the ranks in whole batches
 * (cli/shard.h): each rank embeds its share, rank 0 gathers the embeddings and the batches'
 * losses in order and alone scores, prints and writes --out. Since every batch is the one a
 * single process forms, the result is the single process's, byte for byte.
 *
 * Several tasks at once (continual learning: how much of each earlier task is kept;
 * docs/continual.md): --data given more than once, or --tasks NAME=FILE,...: the model and
 * adapter are loaded once, each task is scored as a single --data would be, and one JSON
 * object holds them by name, {"tasks": {"a": {...}, "b": {...}}, "mean": {...}}, "mean"
 * averaging every number the tasks' objects share (counts excepted) over the tasks.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/encoder.h"
#include "cli/shard.h"
#include "cli/zero_shot.h"
#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"
#include "data/datasets.h"
#include "data/pairs.h"
#include "eval/retrieval.h"
#include "eval/zeroshot.h"
#include "models/clip.h"
#include "models/clip_train.h"
#include "models/git.h"
#include "peft/adapter.h"
#include "peft/adapter_folder.h"
#include "peft/prompt.h"
#include "train/probe_task.h"

static const char *EVAL_HELP =
    "usage: mmtune eval --model DIR --data pairs.jsonl [--adapter DIR] [--batch-size N] [--out FILE]\n"
    "       (a GIT captioner: mmtune eval --model GIT_DIR --help)\n"
    "                   [--match pair|label] [--zero-shot [--templates FILE] [--classes A,B,...]]\n"
    "       mmtune eval --model DIR --data labelled.jsonl --head DIR [--batch-size N] [--out FILE]\n"
    "\n"
    "Embeds every pair's image and text (through the adapter when given) and prints one JSON\n"
    "object: image->text and text->image recall@1/5/10 and median rank, and the mean\n"
    "contrastive loss over batches. --out also writes it to FILE.\n"
    "With --head (a folder written by train --method linear-probe) it instead classifies each\n"
    "image with the linear head on the base model's embeddings and prints the accuracy and the\n"
    "mean cross-entropy; a pair's class is its \"label\", or its text.\n"
    "Under mpirun -np N each rank embeds a share of the batches and rank 0 prints the same\n"
    "result as one process (docs/distributed.md).\n"
    "  --batch-size N   pairs per batch for embedding and for the loss (default 32)\n"
    "  --match M        what counts as a correct retrieval: pair (default; only the item's own\n"
    "                   pair) or label (any item with the same \"label\": class-level recall@K,\n"
    "                   as in metric learning; the rank is that of the best same-class item)\n"
    "  --skip-bad       skip bad records of the data file (counted)\n"
    "  --image-root DIR COCO: folder the file_name entries are relative to\n"
    "  --max-text-bytes N\n"
    "                   a caption over N bytes makes its record bad (default 65536)\n"
    "  --max-file-bytes N\n"
    "                   a data file over N bytes is refused (default 2147483648)\n"
    "  --zero-shot      also classify each image among the pairs' distinct labels by prompt\n"
    "                   ensembling as CLIP does (mean of the normalised prompt embeddings) and\n"
    "                   add zero_shot_accuracy and zero_shot_per_class\n"
    "  --templates FILE one prompt template per line with {} for the class name (default: a\n"
    "                   built-in set such as \"a photo of a {}.\")\n"
    "  --classes LIST   comma-separated class names, in this order (default: the labels)\n"
    "  --data FILE ...  given more than once: several tasks, each scored on its own; the JSON\n"
    "                   is {\"tasks\": {NAME: {...}, ...}, \"mean\": {...}} with each task named\n"
    "                   after its file (a.jsonl: \"a\") and \"mean\" the average over the tasks of\n"
    "                   each metric (continual learning: docs/continual.md)\n"
    "  --tasks LIST     the same with names: NAME=FILE,NAME=FILE,...\n";

#define EVAL_MAX_TASKS 64

typedef struct eval_task {
    char name[128];
    const char *data;
} eval_task;

typedef struct eval_opts {
    const char *model, *data, *adapter, *out, *head, *templates, *classes, *match;
    int64_t batch;
    int zero_shot;
    mmt_pairs_options pairs;
    /* several tasks (--data more than once, or --tasks); n_tasks 0: the one --data */
    eval_task tasks[EVAL_MAX_TASKS];
    int64_t n_tasks;
    char *tasks_copy; /* owned: the --tasks text the entries point into */
} eval_opts;

/* Reads a data file in any layout data/datasets.h knows; rank 0 reports a skip count (every
 * rank reads the same file and skips the same records). */
static mmt_status load_pairs(const eval_opts *o, const char *data, int root, mmt_pairs **out) {
    mmt_status s = mmt_pairs_load(data, &o->pairs, out);
    if (s == MMT_OK && root && (*out)->skipped)
        fprintf(stderr, "mmtune: skipped %lld bad records of %s\n", (long long)(*out)->skipped, data);
    return s;
}

/* The JSON of several tasks: {"tasks": {name: object, ...}, "mean": {...}} with "mean" the
 * average of each number every task's object has (the counts left out), in the first
 * task's key order. */
static mmt_status join_tasks(const eval_opts *o, char *const *objects, mmt_strbuf *line) {
    static const char *const counts[] = {"pairs", "examples", "classes", "correct", "zero_shot_classes",
                                         "zero_shot_templates", NULL};
    mmt_json_doc **docs = mmt_calloc((size_t)o->n_tasks, sizeof *docs);
    mmt_status s = docs ? MMT_OK : mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "eval: out of memory");
    for (int64_t t = 0; s == MMT_OK && t < o->n_tasks; t++)
        s = mmt_json_parse(objects[t], strlen(objects[t]), "a task's metrics", &docs[t]);
    if (s == MMT_OK) {
        mmt_strbuf_printf(line, "{\"tasks\": {");
        for (int64_t t = 0; t < o->n_tasks; t++) {
            mmt_strbuf_printf(line, "%s", t ? ", " : "");
            mmt_strbuf_json_string(line, o->tasks[t].name, strlen(o->tasks[t].name));
            mmt_strbuf_printf(line, ": %s", objects[t]);
        }
        mmt_strbuf_printf(line, "}, \"mean\": {");
        const mmt_json *first = mmt_json_root(docs[0]);
        int any = 0;
        for (size_t k = 0; k < first->len; k++) {
            const char *key = first->keys[k];
            int skip = first->items[k].type != MMT_JSON_NUMBER;
            for (const char *const *c = counts; *c && !skip; c++) skip = !strcmp(*c, key);
            double sum = 0;
            for (int64_t t = 0; t < o->n_tasks && !skip; t++) {
                const mmt_json *v = mmt_json_get(mmt_json_root(docs[t]), key);
                if (!v || v->type != MMT_JSON_NUMBER) skip = 1;
                else sum += v->number;
            }
            if (skip) continue;
            mmt_strbuf_printf(line, "%s\"%s\": %.6f", any ? ", " : "", key, sum / (double)o->n_tasks);
            any = 1;
        }
        mmt_strbuf_printf(line, "}}\n");
        if (line->failed) s = mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "eval: out of memory");
    }
    for (int64_t t = 0; docs && t < o->n_tasks; t++) mmt_json_free(docs[t]);
    mmt_free(docs);
    return s;
}

/* Rank 0's output: the one task's object, or every task's joined, with a newline. */
static int print_tasks(const eval_opts *o, char *const *objects) {
    mmt_strbuf line = {0};
    int rc = 0;
    if (o->n_tasks == 0) {
        mmt_strbuf_printf(&line, "%s\n", objects[0]);
        if (line.failed) rc = cli_runtime_error();
    } else if (join_tasks(o, objects, &line) != MMT_OK) {
        rc = cli_runtime_error();
    }
    if (rc == 0) {
        fwrite(line.data, 1, line.len, stdout);
        if (o->out && mmt_file_write_atomic(o->out, line.data, line.len) != MMT_OK) rc = cli_runtime_error();
    }
    mmt_strbuf_free(&line);
    return rc;
}

/* The data files to score: the tasks, or the one --data. */
static int64_t task_count(const eval_opts *o) { return o->n_tasks > 0 ? o->n_tasks : 1; }
static const char *task_data(const eval_opts *o, int64_t t) { return o->n_tasks > 0 ? o->tasks[t].data : o->data; }

/* ---- --head: a linear probe's top-1 accuracy on a labelled set ------------------------- */

/* This rank's images in calls of o->batch (the calls one process makes for the same items). */
static mmt_status embed_images(cli_encoder *enc, const mmt_pairs *pairs, const cli_shard *sh, float *emb) {
    int64_t P = cli_encoder_dim(enc), n = sh->end - sh->begin;
    const char **paths = mmt_malloc((size_t)(n > 0 ? n : 1) * sizeof *paths);
    if (!paths) return mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "eval: out of memory");
    for (int64_t i = 0; i < n; i++) paths[i] = pairs->items[sh->begin + i].image_path;
    mmt_status s = MMT_OK;
    for (int64_t at = 0; at < n && s == MMT_OK; at += sh->batch)
        s = cli_encoder_images(enc, paths + at, n - at < sh->batch ? n - at : sh->batch, emb + at * P);
    mmt_free(paths);
    return s;
}

/* One data file's accuracy under the head: the JSON object into *object on rank 0. */
static mmt_status head_task(const eval_opts *o, cli_encoder *enc, const mmt_probe_head *head, const char *data,
                            char **object) {
    cli_shard sh = {0};
    mmt_pairs *pairs = NULL;
    float *mine = NULL, *all = NULL;
    mmt_probe_metrics m;
    mmt_status s = mmt_comm_world(&sh.comm);
    int root = s == MMT_OK && mmt_comm_rank(sh.comm) == 0;
    if (s == MMT_OK) s = load_pairs(o, data, root, &pairs);
    if (s == MMT_OK) s = cli_shard_open(pairs->n, o->batch, &sh);
    int64_t mine_n = s == MMT_OK ? sh.end - sh.begin : 0;
    if (s == MMT_OK && !(mine = mmt_malloc((size_t)((mine_n > 0 ? mine_n : 1) * head->P) * sizeof(float))))
        s = mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "eval: out of memory");
    if (s == MMT_OK) s = embed_images(enc, pairs, &sh, mine);
    if (s == MMT_OK) s = cli_shard_gather(&sh, mine, head->P * (int64_t)sizeof(float), (void **)&all);
    if (s == MMT_OK && root) s = mmt_probe_evaluate(head, pairs, all, &m);
    if (s == MMT_OK && root) {
        mmt_strbuf b = {0};
        mmt_strbuf_printf(&b, "{\"examples\": %lld, \"classes\": %lld, \"correct\": %lld, \"accuracy\": %.6f, \"loss\": %.6f}",
                          (long long)m.n, (long long)head->K, (long long)m.correct, m.accuracy, m.loss);
        if (b.failed) s = mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "eval: out of memory");
        *object = b.data;
    }
    mmt_free(mine);
    mmt_free(all);
    mmt_pairs_free(pairs);
    return s;
}

static int eval_head(const eval_opts *o) {
    cli_encoder enc = {0};
    mmt_probe_head *head = NULL;
    mmt_comm *comm = NULL;
    int64_t n = task_count(o);
    char **objects = mmt_calloc((size_t)n, sizeof *objects);
    int rc = 0;
    mmt_status s = objects ? mmt_comm_world(&comm) : mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "eval: out of memory");
    int root = s == MMT_OK && mmt_comm_rank(comm) == 0;
    if (s == MMT_OK) s = mmt_probe_head_load(o->head, &head);
    if (s == MMT_OK && o->n_tasks == 0) { /* the data's errors before the model's, as before */
        mmt_pairs *pairs = NULL;
        s = mmt_pairs_load(o->data, &o->pairs, &pairs);
        mmt_pairs_free(pairs);
    }
    if (s == MMT_OK) s = cli_encoder_open(o->model, NULL, &enc);
    if (s == MMT_OK && cli_encoder_dim(&enc) != head->P)
        s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: the head takes %lld-dim embeddings, %s gives %lld", o->head,
                     (long long)head->P, o->model, (long long)cli_encoder_dim(&enc));
    for (int64_t t = 0; s == MMT_OK && t < n; t++) s = head_task(o, &enc, head, task_data(o, t), &objects[t]);
    if (s != MMT_OK) rc = cli_runtime_error();
    else if (root) rc = print_tasks(o, objects);
    for (int64_t t = 0; objects && t < n; t++) mmt_free(objects[t]);
    mmt_free(objects);
    mmt_probe_head_free(head);
    cli_encoder_close(&enc);
    return rc;
}

/* ---- retrieval and zero-shot ------------------------------------------------------------ */

/* Embeds this rank's pairs [sh->begin, sh->end) batch by batch through the view (adapter
 * applied when attached) into img and txt (share, P) and each batch's contrastive loss into
 * losses (one per batch, in order). */
static mmt_status embed_pairs(mmt_clip *model, mmt_clip_train *view, const mmt_pairs *pairs, const cli_shard *sh,
                              float *img, float *txt, double *losses) {
    const mmt_clip_config *c = mmt_clip_config_of(model);
    int64_t S = c->vision.image_size, L = c->text.max_positions, P = c->projection_dim, bs = sh->batch;
    size_t per = (size_t)(3 * S * S);
    float *px = mmt_malloc((size_t)bs * per * sizeof(float));
    int32_t *ids = mmt_malloc((size_t)(bs * L) * sizeof(int32_t));
    mmt_status s = px && ids ? MMT_OK : mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "eval: out of memory");
    for (int64_t at = sh->begin, k = 0; s == MMT_OK && at < sh->end; at += bs, k++) {
        int64_t b = sh->end - at < bs ? sh->end - at : bs, row = at - sh->begin;
        for (int64_t i = 0; i < b && s == MMT_OK; i++) {
            s = mmt_clip_image_file_pixels(model, pairs->items[at + i].image_path, px + (size_t)i * per);
            const char *t = pairs->items[at + i].text;
            if (s == MMT_OK) s = mmt_clip_tokenize(model, &t, 1, 1, ids + i * L);
        }
        if (s == MMT_OK) s = mmt_clip_train_forward_loss(view, px, ids, b, L, 0, &losses[k]);
        if (s == MMT_OK) {
            memcpy(img + row * P, mmt_clip_train_image_embeds(view), (size_t)(b * P) * sizeof(float));
            memcpy(txt + row * P, mmt_clip_train_text_embeds(view), (size_t)(b * P) * sizeof(float));
        }
    }
    mmt_free(px);
    mmt_free(ids);
    return s;
}

/* What rank 0 holds after the gather: every pair's embeddings and every batch's loss. */
typedef struct eval_embeddings {
    float *img, *txt; /* (n, P) */
    double *losses;   /* one per batch, in order */
    int64_t batches;
} eval_embeddings;

static void eval_embeddings_free(eval_embeddings *e) {
    mmt_free(e->img);
    mmt_free(e->txt);
    mmt_free(e->losses);
}

/* Embeds this rank's share and gathers everything on rank 0 (e is empty on the others). */
static mmt_status embed_and_gather(mmt_clip *model, mmt_clip_train *view, const mmt_pairs *pairs, const cli_shard *sh,
                                   eval_embeddings *e) {
    int64_t P = mmt_clip_embed_dim(model), n = sh->end - sh->begin, k = (n + sh->batch - 1) / sh->batch;
    float *img = mmt_malloc((size_t)((n > 0 ? n : 1) * P) * sizeof(float));
    float *txt = mmt_malloc((size_t)((n > 0 ? n : 1) * P) * sizeof(float));
    double *losses = mmt_malloc((size_t)(k > 0 ? k : 1) * sizeof(double));
    int64_t *off = mmt_malloc((size_t)(sh->size + 1) * sizeof *off);
    mmt_status s = img && txt && losses && off ? MMT_OK : mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "eval: out of memory");
    if (s == MMT_OK) s = embed_pairs(model, view, pairs, sh, img, txt, losses);
    if (s == MMT_OK) s = cli_shard_gather(sh, img, P * (int64_t)sizeof(float), (void **)&e->img);
    if (s == MMT_OK) s = cli_shard_gather(sh, txt, P * (int64_t)sizeof(float), (void **)&e->txt);
    if (s == MMT_OK) s = cli_shard_gather_bytes(sh, losses, k * (int64_t)sizeof(double), (void **)&e->losses, off);
    if (s == MMT_OK) e->batches = off[sh->size] / (int64_t)sizeof(double);
    mmt_free(img);
    mmt_free(txt);
    mmt_free(losses);
    mmt_free(off);
    return s;
}

/* The mean of the batches' losses, added in batch order as one process adds them. */
static double mean_loss(const eval_embeddings *e) {
    double sum = 0;
    for (int64_t k = 0; k < e->batches; k++) sum += e->losses[k];
    return e->batches ? sum / (double)e->batches : NAN;
}

/* Rank 0: the metrics of the gathered embeddings as the JSON line the command prints. */
/* groups: each pair's class for --match label, else NULL. */
static mmt_status score(const eval_opts *o, mmt_clip *model, mmt_clip_train *view, const mmt_pairs *pairs,
                        const int64_t *groups, const eval_embeddings *e, mmt_strbuf *line) {
    mmt_retrieval_metrics m;
    mmt_status s = mmt_retrieval_eval_grouped(e->img, e->txt, groups, pairs->n, mmt_clip_embed_dim(model), &m);
    if (s == MMT_OK)
        mmt_strbuf_printf(line,
                          "{\"pairs\": %lld, \"match\": \"%s\", \"loss\": %.6f, \"i2t_recall_at_1\": %.6f, "
                          "\"i2t_recall_at_5\": %.6f, \"i2t_recall_at_10\": %.6f, \"i2t_median_rank\": %g, "
                          "\"t2i_recall_at_1\": %.6f, \"t2i_recall_at_5\": %.6f, \"t2i_recall_at_10\": %.6f, "
                          "\"t2i_median_rank\": %g",
                          (long long)m.n, o->match, mean_loss(e), m.i2t_r1, m.i2t_r5, m.i2t_r10, m.i2t_median_rank,
                          m.t2i_r1, m.t2i_r5, m.t2i_r10, m.t2i_median_rank);
    if (s == MMT_OK && o->zero_shot) s = cli_zero_shot(model, view, pairs, e->img, o->templates, o->classes, line);
    if (s == MMT_OK) mmt_strbuf_append(line, "}", 1);
    if (s == MMT_OK && line->failed) s = mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "eval: out of memory");
    return s;
}

/* One data file's retrieval (and zero-shot) metrics: the JSON object into *object on rank
 * 0. pairs: the file already read (the single-task path reads it before the model), or NULL. */
static mmt_status retrieval_task(const eval_opts *o, mmt_clip *model, mmt_clip_train *view, const char *data,
                                 mmt_pairs *pairs, char **object) {
    cli_shard sh = {0};
    eval_embeddings e = {0};
    mmt_zeroshot_classes groups = {0}; /* --match label: each pair's class */
    mmt_strbuf line = {0};
    mmt_pairs *own = NULL;
    mmt_status s = mmt_comm_world(&sh.comm);
    int root = s == MMT_OK && mmt_comm_rank(sh.comm) == 0, by_label = !strcmp(o->match, "label");
    if (s == MMT_OK && !pairs && (s = load_pairs(o, data, root, &own)) == MMT_OK) pairs = own;
    /* every rank checks the labels before the slow part, so all refuse the same data alike */
    if (s == MMT_OK && by_label) s = mmt_zeroshot_classes_from_pairs(pairs, NULL, &groups);
    if (s == MMT_OK) s = cli_shard_open(pairs->n, o->batch, &sh);
    if (s == MMT_OK) s = embed_and_gather(model, view, pairs, &sh, &e);
    if (s == MMT_OK && root) s = score(o, model, view, pairs, by_label ? groups.labels : NULL, &e, &line);
    if (s == MMT_OK && root) *object = line.data;
    else mmt_strbuf_free(&line);
    eval_embeddings_free(&e);
    mmt_zeroshot_classes_free(&groups);
    mmt_pairs_free(own);
    return s;
}

static int eval_retrieval(const eval_opts *o) {
    mmt_clip *model = NULL;
    mmt_pairs *pairs = NULL;
    mmt_clip_train *view = NULL;
    mmt_adapter *ad = NULL;
    mmt_prompt *prompt = NULL;
    mmt_comm *comm = NULL;
    int64_t n = task_count(o);
    char **objects = mmt_calloc((size_t)n, sizeof *objects);
    mmt_clip_train_options to;
    mmt_clip_train_options_default(&to);
    mmt_status s = objects ? mmt_comm_world(&comm) : mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "eval: out of memory");
    int root = s == MMT_OK && mmt_comm_rank(comm) == 0, rc = 0;
    if (s == MMT_OK) s = cli_clip_load_inference(o->model, &model);
    if (s == MMT_OK && o->n_tasks == 0) s = load_pairs(o, o->data, root, &pairs);
    if (s == MMT_OK) s = mmt_clip_train_create(model, &to, &view);
    if (s == MMT_OK && o->adapter) s = mmt_adapter_folders_load(mmt_clip_train_iface(view), o->adapter, 0, &ad, &prompt);
    if (s == MMT_OK) mmt_clip_train_set_eval(view, 1); /* no dropout in evaluation */
    for (int64_t t = 0; s == MMT_OK && t < n; t++) s = retrieval_task(o, model, view, task_data(o, t), pairs, &objects[t]);
    if (s != MMT_OK) rc = cli_runtime_error();
    else if (root) rc = print_tasks(o, objects);
    for (int64_t t = 0; objects && t < n; t++) mmt_free(objects[t]);
    mmt_free(objects);
    mmt_adapter_free(ad);
    mmt_prompt_free(prompt);
    mmt_clip_train_free(view);
    mmt_pairs_free(pairs);
    mmt_clip_free(model);
    return rc;
}

/* ---- flags ------------------------------------------------------------------------------ */

/* Adds a task; name NULL: the file's name without its folder and extension ("a.jsonl": "a"). */
static int add_task(eval_opts *o, const char *name, const char *data) {
    if (o->n_tasks == EVAL_MAX_TASKS) return cli_usage_error("eval: at most %d tasks", EVAL_MAX_TASKS);
    eval_task *t = &o->tasks[o->n_tasks];
    if (name) {
        snprintf(t->name, sizeof t->name, "%s", name);
    } else {
        size_t len = strlen(data);
        while (len > 1 && data[len - 1] == '/') len--; /* a folder of images: its name */
        const char *start = data + len;
        while (start > data && start[-1] != '/') start--;
        snprintf(t->name, sizeof t->name, "%.*s", (int)(data + len - start), start);
        char *dot = strrchr(t->name, '.');
        if (dot && dot != t->name) *dot = '\0';
    }
    if (!t->name[0] || !data[0]) return cli_usage_error("eval: a task needs a name and a data file, got '%s=%s'", t->name, data);
    for (int64_t i = 0; i < o->n_tasks; i++)
        if (!strcmp(o->tasks[i].name, t->name))
            return cli_usage_error("eval: two tasks are named '%s' (%s and %s); name them with --tasks NAME=FILE,...",
                                   t->name, o->tasks[i].data, data);
    t->data = data;
    o->n_tasks++;
    return 0;
}

/* --tasks NAME=FILE,NAME=FILE,... */
static int parse_tasks(eval_opts *o, const char *list) {
    if (o->tasks_copy) return cli_usage_error("eval: --tasks given twice");
    if (!(o->tasks_copy = mmt_strdup(list))) return cli_runtime_error();
    char *rest = NULL;
    for (char *tok = strtok_r(o->tasks_copy, ",", &rest); tok; tok = strtok_r(NULL, ",", &rest)) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok || !eq[1]) return cli_usage_error("eval: --tasks takes NAME=FILE,..., got '%s'", tok);
        *eq = '\0';
        int rc = add_task(o, tok, eq + 1);
        if (rc) return rc;
    }
    return 0;
}

/* 0 and *o filled, or the exit code (a usage error; *done for --help). */
static int parse_eval_opts(int argc, char **argv, eval_opts *o, int *done) {
    *o = (eval_opts){.match = "pair", .batch = 32};
    mmt_pairs_options_default(&o->pairs);
    *done = 0;
    int rc = 0;
    const char *datas[EVAL_MAX_TASKS];
    int64_t n_data = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(EVAL_HELP, stdout);
            *done = 1;
            return 0;
        }
        if (!strcmp(a, "--skip-bad")) {
            o->pairs.skip_bad = 1;
            continue;
        }
        if (!strcmp(a, "--zero-shot")) {
            o->zero_shot = 1;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("eval: %s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--data")) {
            if (n_data == EVAL_MAX_TASKS) return cli_usage_error("eval: at most %d tasks", EVAL_MAX_TASKS);
            datas[n_data++] = v;
        } else if (!strcmp(a, "--tasks")) {
            if ((rc = parse_tasks(o, v)) != 0) return rc;
        }
        else if (!strcmp(a, "--adapter")) o->adapter = v;
        else if (!strcmp(a, "--head")) o->head = v;
        else if (!strcmp(a, "--image-root")) o->pairs.image_root = v;
        else if (!strcmp(a, "--out")) o->out = v;
        else if (!strcmp(a, "--templates")) o->templates = v;
        else if (!strcmp(a, "--classes")) o->classes = v;
        else if (!strcmp(a, "--match")) o->match = v;
        else if (!strcmp(a, "--batch-size")) {
            char *end;
            o->batch = strtoll(v, &end, 10);
            if (*end || o->batch < 1 || o->batch > 65536) return cli_usage_error("--batch-size needs a number from 1 to 65536");
        } else if (!strcmp(a, "--max-text-bytes") || !strcmp(a, "--max-file-bytes")) {
            char *end;
            errno = 0;
            long long n = strtoll(v, &end, 10);
            if (!*v || *end || errno || n < 1) return cli_usage_error("eval: %s needs a positive number of bytes, got '%s'", a, v);
            if (!strcmp(a, "--max-text-bytes")) o->pairs.max_text_bytes = (size_t)n;
            else o->pairs.max_file_bytes = (size_t)n;
        } else return cli_usage_error("eval: unknown option '%s'", a);
    }
    if (o->tasks_copy && n_data > 0) return cli_usage_error("eval: give the tasks with --tasks or with --data, not both");
    if (o->tasks_copy && o->n_tasks == 0) return cli_usage_error("eval: --tasks lists no task");
    if (n_data == 1) o->data = datas[0]; /* one task: the single object, as ever */
    for (int64_t i = 0; n_data > 1 && i < n_data; i++)
        if ((rc = add_task(o, NULL, datas[i])) != 0) return rc;
    if (!o->model || (!o->data && o->n_tasks == 0)) return cli_usage_error("eval: --model and --data are required");
    if (o->head && o->adapter) return cli_usage_error("eval: --head scores the base model's image embeddings; drop --adapter");
    if ((o->templates || o->classes) && !o->zero_shot) return cli_usage_error("eval: --templates and --classes go with --zero-shot");
    if (o->head && o->zero_shot) return cli_usage_error("eval: --zero-shot and --head are separate evaluations");
    if (strcmp(o->match, "pair") && strcmp(o->match, "label"))
        return cli_usage_error("eval: --match takes pair or label, not '%s'", o->match);
    return 0;
}

int cmd_eval_clip(int argc, char **argv) {
    int several = 0;
    for (int i = 0; i < argc; i++) several += !strcmp(argv[i], "--data") ? 1 : !strcmp(argv[i], "--tasks") ? 2 : 0;
    for (int i = 0; i + 1 < argc; i++) { /* a captioner is scored on its captions */
        int captioner = 0;
        if (!strcmp(argv[i], "--model") && mmt_snapshot_is_git(argv[i + 1], &captioner) == MMT_OK && captioner) {
            if (several > 1)
                return cli_usage_error("eval: several tasks at once (--data more than once, --tasks) are for CLIP models; "
                                       "score a captioner on one --data at a time");
            return cmd_eval_captions(argc, argv);
        }
    }
    eval_opts o;
    int done = 0, rc = parse_eval_opts(argc, argv, &o, &done);
    if (!rc && !done) rc = o.head ? eval_head(&o) : eval_retrieval(&o);
    mmt_free(o.tasks_copy);
    return rc;
}
