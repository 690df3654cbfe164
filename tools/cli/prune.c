/*
 * prune.c — `mmtune prune`: a smaller CLIP snapshot without its least important MLP neurons
 * and encoder layers, by first-order Taylor scores measured on data (models/clip_prune.h,
 * docs/distillation.md). The result is a plain Hugging Face snapshot (smaller
 * intermediate_size / num_hidden_layers) that mmtune and transformers load as they are.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"
#include "core/rng.h"
#include "data/datasets.h"
#include "data/pairs.h"
#include "models/clip.h"
#include "models/clip_prune.h"
#include "models/git_config.h"

static const char *PRUNE_HELP =
    "usage: mmtune prune --model DIR --data FILE --out DIR [--mlp F] [--layers F] [--heads 0]\n"
    "                    [--scope both|text|vision] [--batches N] [--batch-size N] [--seed N]\n"
    "                    [--scores FILE] [--overwrite]\n"
    "\n"
    "Removes the least important MLP neurons and encoder layers of a CLIP and writes the\n"
    "smaller model as a Hugging Face snapshot (transformers' CLIPModel.from_pretrained loads\n"
    "it; so does every mmtune command). Importance: first-order Taylor scores\n"
    "|sum activation x gradient| of the contrastive loss, per batch, summed over batches.\n"
    "  --model DIR       a Hugging Face CLIP snapshot (float weights)\n"
    "  --data FILE       pairs to measure importance on (any layout train reads)\n"
    "  --out DIR         the pruned snapshot (written whole or not at all)\n"
    "  --mlp F           fraction of MLP neurons removed in every layer of a pruned tower\n"
    "                    (the same count in each layer: intermediate_size is one number per\n"
    "                    tower), in [0, 1) (default 0)\n"
    "  --layers F        fraction of each pruned tower's encoder layers removed, the\n"
    "                    lowest-scoring whole layers (num_hidden_layers), in [0, 1) (default 0)\n"
    "  --heads F         attention heads: only 0. transformers' CLIPAttention has one head\n"
    "                    count per tower and head_dim = hidden / heads, so a CLIP with heads\n"
    "                    removed is no snapshot it can load; heads are scored (--scores) only\n"
    "  --scope S         towers to prune: both (default), text or vision\n"
    "  --batches N       batches the scores are summed over (default 8)\n"
    "  --batch-size N    pairs per batch, at least 2 (default 32)\n"
    "  --seed N          which pairs: a seeded shuffle of the file (default 0)\n"
    "  --scores FILE     also write every score (heads, neurons, layers) and the plan as JSON\n"
    "  --overwrite       replace a non-empty --out\n"
    "\n"
    "Prints one JSON line: parameters and bytes before and after, and each tower's layers and\n"
    "MLP width. Recover the lost quality with `mmtune train` on the pruned model, with\n"
    "--distill-from the original (docs/distillation.md).\n";

typedef struct prune_args {
    const char *model, *data, *out, *scores, *scope;
    double mlp, layers, heads;
    int64_t batches, batch_size;
    uint64_t seed;
    int overwrite;
} prune_args;

static int parse_fraction(const char *flag, const char *val, double *out) {
    char *end;
    errno = 0;
    double v = strtod(val, &end);
    if (errno || end == val || *end || !(v >= 0 && v < 1))
        return cli_usage_error("prune: %s takes a fraction in [0, 1), not '%s'", flag, val);
    *out = v;
    return 0;
}

static int parse_count(const char *flag, const char *val, int64_t lo, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(val, &end, 10);
    if (errno || end == val || *end || v < lo || v > 1000000)
        return cli_usage_error("prune: %s takes a whole number in %lld..1000000, not '%s'", flag, (long long)lo, val);
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, prune_args *a) {
    memset(a, 0, sizeof *a);
    a->scope = "both";
    a->batches = 8;
    a->batch_size = 32;
    for (int i = 0; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) return fputs(PRUNE_HELP, stdout), -1;
        if (!strcmp(f, "--overwrite")) {
            a->overwrite = 1;
            continue;
        }
        if (strncmp(f, "--", 2)) return cli_usage_error("prune: unexpected argument '%s' (see --help)", f);
        if (i + 1 >= argc) return cli_usage_error("prune: %s needs a value", f);
        const char *v = argv[++i];
        int rc = 0;
        int64_t seed = 0;
        if (!strcmp(f, "--model")) a->model = v;
        else if (!strcmp(f, "--data")) a->data = v;
        else if (!strcmp(f, "--out")) a->out = v;
        else if (!strcmp(f, "--scores")) a->scores = v;
        else if (!strcmp(f, "--scope")) a->scope = v;
        else if (!strcmp(f, "--mlp")) rc = parse_fraction(f, v, &a->mlp);
        else if (!strcmp(f, "--layers")) rc = parse_fraction(f, v, &a->layers);
        else if (!strcmp(f, "--heads")) rc = parse_fraction(f, v, &a->heads);
        else if (!strcmp(f, "--batches")) rc = parse_count(f, v, 1, &a->batches);
        else if (!strcmp(f, "--batch-size")) rc = parse_count(f, v, 2, &a->batch_size);
        else if (!strcmp(f, "--seed")) {
            rc = parse_count(f, v, 0, &seed);
            a->seed = (uint64_t)seed;
        } else return cli_usage_error("prune: unknown option '%s' (see --help)", f);
        if (rc) return rc;
    }
    if (!a->model || !a->out) return cli_usage_error("prune: --model and --out are required (see --help)");
    if (strcmp(a->scope, "both") && strcmp(a->scope, "text") && strcmp(a->scope, "vision"))
        return cli_usage_error("prune: --scope takes both, text or vision, not '%s'", a->scope);
    if (a->heads > 0)
        return cli_usage_error("prune: --heads %g: attention heads cannot be removed from a CLIP that transformers "
                               "loads (CLIPAttention has one head count per tower, head_dim = hidden / heads, and no "
                               "pruned_heads); prune --layers (whole layers) or --mlp instead", a->heads);
    if (a->mlp == 0 && a->layers == 0) return cli_usage_error("prune: nothing to remove: give --mlp F and/or --layers F");
    if (!a->data) return cli_usage_error("prune: --data is required: importance is measured on pairs");
    return 0;
}

/* The order pairs are read in: a Fisher-Yates shuffle seeded by seed. */
static int64_t *shuffled(int64_t n, uint64_t seed) {
    int64_t *order = mmt_malloc((size_t)(n > 0 ? n : 1) * sizeof *order);
    if (!order) return NULL;
    uint64_t state = seed ^ 0x9e3779b97f4a7c15ull;
    for (int64_t i = 0; i < n; i++) order[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(mmt_splitmix64(&state) % (uint64_t)(i + 1));
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    return order;
}

/* Sums the scores over a->batches batches of the shuffled pairs (fewer when the data runs
 * out; a last partial batch of at least 2 pairs counts). */
static mmt_status measure(mmt_clip *model, const mmt_pairs *pairs, const prune_args *a, mmt_clip_importance *imp,
                          double *mean_loss) {
    const mmt_clip_config *c = mmt_clip_config_of(model);
    int64_t S = c->vision.image_size, L = c->text.max_positions, B = a->batch_size, per = 3 * S * S;
    int64_t *order = shuffled(pairs->n, a->seed);
    float *px = mmt_malloc((size_t)(B * per) * sizeof(float));
    int32_t *ids = mmt_malloc((size_t)(B * L) * sizeof(int32_t));
    const char **texts = mmt_malloc((size_t)B * sizeof *texts);
    mmt_status s = order && px && ids && texts ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    double total = 0;
    int64_t done = 0;
    for (int64_t at = 0; s == MMT_OK && done < a->batches && pairs->n - at >= 2; at += B) {
        int64_t n = pairs->n - at < B ? pairs->n - at : B;
        for (int64_t i = 0; s == MMT_OK && i < n; i++) {
            const mmt_pair *p = &pairs->items[order[at + i]];
            s = mmt_clip_image_file_pixels(model, p->image_path, px + i * per);
            texts[i] = p->text;
        }
        if (s == MMT_OK) s = mmt_clip_tokenize(model, texts, n, 1, ids);
        double loss = 0;
        if (s == MMT_OK) s = mmt_clip_importance_add(imp, px, ids, n, L, &loss);
        total += loss;
        done++;
    }
    if (s == MMT_OK && done == 0)
        s = mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: importance needs at least 2 pairs, the file has %lld", a->data,
                     (long long)pairs->n);
    *mean_loss = done ? total / (double)done : 0;
    mmt_free(order);
    mmt_free(px);
    mmt_free(ids);
    mmt_free(texts);
    return s;
}

static void json_doubles(mmt_strbuf *b, const double *v, int64_t n) {
    mmt_strbuf_printf(b, "[");
    for (int64_t i = 0; i < n; i++) mmt_strbuf_printf(b, "%s%.9g", i ? ", " : "", v[i]);
    mmt_strbuf_printf(b, "]");
}

static void json_ints(mmt_strbuf *b, const int64_t *v, int64_t n) {
    mmt_strbuf_printf(b, "[");
    for (int64_t i = 0; i < n; i++) mmt_strbuf_printf(b, "%s%lld", i ? ", " : "", (long long)v[i]);
    mmt_strbuf_printf(b, "]");
}

/* --scores: every score of both towers and the plan's kept units. */
static mmt_status write_scores(const char *path, const mmt_clip_importance *imp, const mmt_clip_prune_plan *plan,
                               double mean_loss) {
    mmt_strbuf b = {0};
    mmt_strbuf_printf(&b, "{\"batches\": %lld, \"mean_loss\": %.9g", (long long)mmt_clip_importance_batches(imp),
                      mean_loss);
    for (int v = 0; v < 2; v++) {
        const mmt_clip_tower_scores *t = mmt_clip_importance_tower(imp, v);
        const mmt_clip_prune_tower_plan *p = v ? &plan->vision : &plan->text;
        mmt_strbuf_printf(&b, ", \"%s\": {\"layer\": ", v ? "vision" : "text");
        json_doubles(&b, t->layer, t->layers);
        mmt_strbuf_printf(&b, ", \"head\": [");
        for (int64_t i = 0; i < t->layers; i++) {
            mmt_strbuf_printf(&b, "%s", i ? ", " : "");
            json_doubles(&b, t->head + i * t->heads, t->heads);
        }
        mmt_strbuf_printf(&b, "], \"neuron\": [");
        for (int64_t i = 0; i < t->layers; i++) {
            mmt_strbuf_printf(&b, "%s", i ? ", " : "");
            json_doubles(&b, t->neuron + i * t->neurons, t->neurons);
        }
        mmt_strbuf_printf(&b, "], \"kept_layers\": ");
        json_ints(&b, p->layer, p->n_layers);
        mmt_strbuf_printf(&b, ", \"kept_neurons\": [");
        for (int64_t i = 0; i < p->n_layers; i++) {
            mmt_strbuf_printf(&b, "%s", i ? ", " : "");
            json_ints(&b, p->neuron + i * p->n_neurons, p->n_neurons);
        }
        mmt_strbuf_printf(&b, "]}");
    }
    mmt_strbuf_printf(&b, "}\n");
    mmt_status s = b.failed ? MMT_STATUS_OUT_OF_MEMORY : mmt_file_write_atomic(path, b.data, b.len);
    mmt_strbuf_free(&b);
    return s;
}

/* mmtune_prune.json in the snapshot: where it came from and what was kept. */
static mmt_status write_record(const char *dir, const prune_args *a, const mmt_clip_prune_plan *plan,
                               int64_t batches, int64_t pairs) {
    mmt_strbuf b = {0};
    mmt_strbuf_printf(&b, "{\"source\": ");
    mmt_strbuf_json_string(&b, a->model, strlen(a->model));
    mmt_strbuf_printf(&b, ", \"data\": ");
    mmt_strbuf_json_string(&b, a->data, strlen(a->data));
    mmt_strbuf_printf(&b, ", \"pairs\": %lld, \"batches\": %lld, \"batch_size\": %lld, \"seed\": %llu, \"mlp\": %.17g, "
                          "\"layers\": %.17g, \"scope\": \"%s\", \"score\": \"taylor |sum a*g| per batch\"",
                      (long long)pairs, (long long)batches, (long long)a->batch_size, (unsigned long long)a->seed, a->mlp,
                      a->layers, a->scope);
    for (int v = 0; v < 2; v++) {
        const mmt_clip_prune_tower_plan *p = v ? &plan->vision : &plan->text;
        mmt_strbuf_printf(&b, ", \"%s_kept_layers\": ", v ? "vision" : "text");
        json_ints(&b, p->layer, p->n_layers);
    }
    mmt_strbuf_printf(&b, "}\n");
    char *path = mmt_path_join(dir, "mmtune_prune.json");
    mmt_status s = b.failed || !path ? MMT_STATUS_OUT_OF_MEMORY : mmt_file_write_atomic(path, b.data, b.len);
    mmt_free(path);
    mmt_strbuf_free(&b);
    return s;
}

static long long file_size(const char *dir, const char *name) {
    char *path = mmt_path_join(dir, name);
    struct stat st;
    long long n = path && stat(path, &st) == 0 ? (long long)st.st_size : -1;
    mmt_free(path);
    return n;
}

int cmd_prune(int argc, char **argv) {
    prune_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    int is_git = 0;
    if (mmt_snapshot_is_git(a.model, &is_git) != MMT_OK) return cli_runtime_error();
    if (is_git)
        return cli_usage_error("prune: %s is a GIT captioner; pruning is implemented for CLIP models only", a.model);
    mmt_clip *model = NULL, *pruned = NULL;
    mmt_pairs *pairs = NULL;
    mmt_clip_importance *imp = NULL;
    mmt_clip_prune_plan plan;
    memset(&plan, 0, sizeof plan);
    mmt_pairs_options po;
    mmt_pairs_options_default(&po);
    char *tmp = NULL;
    double mean_loss = 0;
    mmt_clip_prune_settings ps = {a.layers, a.mlp, strcmp(a.scope, "vision") != 0, strcmp(a.scope, "text") != 0};
    mmt_status s = cli_clip_load_as(a.model, MMT_QUANT_NONE, &model);
    if (s == MMT_OK) s = mmt_pairs_load(a.data, &po, &pairs);
    if (s == MMT_OK) s = mmt_clip_importance_create(model, &imp);
    if (s == MMT_OK) s = measure(model, pairs, &a, imp, &mean_loss);
    if (s == MMT_OK) s = mmt_clip_prune_plan_make(model, imp, &ps, &plan);
    if (s != MMT_OK) {
        rc = cli_runtime_error();
        goto done;
    }
    if ((rc = cli_out_begin("prune", a.out, a.overwrite, &tmp)) != 0) goto done;
    s = mmt_clip_prune_write(model, &plan, tmp);
    if (s == MMT_OK) s = write_record(tmp, &a, &plan, mmt_clip_importance_batches(imp), pairs->n);
    if (s == MMT_OK) s = mmt_clip_load(tmp, &pruned); /* what was written loads back */
    if (s != MMT_OK) rc = cli_runtime_error();
    rc = cli_out_finish(tmp, a.out, rc);
    if (rc == 0 && a.scores && write_scores(a.scores, imp, &plan, mean_loss) != MMT_OK) rc = cli_runtime_error();
    if (rc == 0) {
        const mmt_clip_config *c0 = mmt_clip_config_of(model), *c1 = mmt_clip_config_of(pruned);
        printf("{\"model\": \"%s\", \"out\": \"%s\", \"params_before\": %lld, \"params_after\": %lld, \"bytes_before\": "
               "%lld, \"bytes_after\": %lld, \"batches\": %lld, \"mean_loss\": %.6g, \"text\": {\"layers\": [%lld, %lld], "
               "\"intermediate_size\": [%lld, %lld]}, \"vision\": {\"layers\": [%lld, %lld], \"intermediate_size\": "
               "[%lld, %lld]}}\n",
               a.model, a.out, (long long)mmt_weights_param_count(mmt_clip_weights(model)),
               (long long)mmt_weights_param_count(mmt_clip_weights(pruned)), file_size(a.model, "model.safetensors"),
               file_size(a.out, "model.safetensors"), (long long)mmt_clip_importance_batches(imp), mean_loss,
               (long long)c0->text.num_layers, (long long)c1->text.num_layers, (long long)c0->text.intermediate_size,
               (long long)c1->text.intermediate_size, (long long)c0->vision.num_layers, (long long)c1->vision.num_layers,
               (long long)c0->vision.intermediate_size, (long long)c1->vision.intermediate_size);
    }
done:
    mmt_clip_prune_plan_free(&plan);
    mmt_clip_importance_free(imp);
    mmt_pairs_free(pairs);
    mmt_clip_free(pruned);
    mmt_clip_free(model);
    return rc;
}
