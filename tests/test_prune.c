/*
 * test_prune.c — structured pruning of a CLIP (models/clip_prune.h, `mmtune prune`).
 *
 * References and tolerances:
 *   - importance scores against PyTorch autograd on the default model
 *     (tests/fixtures/prune/expected.json, tools/fixtures/make_prune_fixtures.py: activation
 *     times gradient taken at out_proj's and fc2's inputs and outputs by hooks, summed as
 *     |per batch| over 2 batches of 6 pairs): every score within 1e-3 of the largest score of
 *     its kind in its tower (float32 on both sides; measured below 2e-5);
 *   - the same scores against finite differences of the loss when a unit's output is scaled
 *     by 1 +- eps (a head's out_proj columns, a neuron's fc2 column, a layer's two branches;
 *     central differences at eps 0.1 and 0.05 combined by Richardson): within 1e-2 relative +
 *     6e-5 absolute (the float loss's rounding, a few 1e-6, over the step);
 *   - the plan equals the fixture's (same rule, same scores), and the snapshot mmtune writes
 *     loads back with the smaller sizes and gives the embeddings transformers computes with a
 *     model pruned in PyTorch by slicing the original's tensors: within 1e-4 absolute (as
 *     test_default_model), parameter count exact;
 *   - refusals: fractions outside [0, 1), batches of one pair, no scores, and through the
 *     CLI --heads, a missing --data, a one-pair data file, a GIT captioner.
 */
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "cli_run.h"
#include "core/alloc.h"
#include "core/json.h"
#include "core/weights.h"
#include "models/clip.h"
#include "models/clip_prune.h"
#include "models/clip_train.h"
#include "mmtune.h"

#define MODEL MMT_SOURCE_DIR "/models/mmtune-clip-tiny"

static char tmpdir[256];

typedef struct fixture_data {
    mmt_json_doc *doc;
    const mmt_json *root;
    mmt_clip *model;
    int64_t n, B, batches, L, S;
    float *pixels;  /* (n, 3, S, S) */
    int32_t *ids;   /* (n, L) */
} fixture_data;

/* The fixture's inputs: pixels by the formula of make_prune_fixtures.py, its token ids. */
static int fixture_open(fixture_data *f) {
    memset(f, 0, sizeof *f);
    if (mmt_json_parse_file(fixture("prune/expected.json"), &f->doc) != MMT_OK ||
        mmt_clip_load(MODEL, &f->model) != MMT_OK) {
        fprintf(stderr, "fixture: %s\n", mmt_last_error());
        return 0;
    }
    f->root = mmt_json_root(f->doc);
    const mmt_clip_config *c = mmt_clip_config_of(f->model);
    f->B = mmt_json_get(f->root, "batch_size")->integer;
    f->batches = mmt_json_get(f->root, "batches")->integer;
    f->n = f->B * f->batches;
    f->L = c->text.max_positions;
    f->S = c->vision.image_size;
    int64_t per = 3 * f->S * f->S;
    f->pixels = malloc((size_t)(f->n * per) * sizeof(float));
    f->ids = malloc((size_t)(f->n * f->L) * sizeof(int32_t));
    for (int64_t p = 0; p < f->n; p++)
        for (int64_t k = 0; k < per; k++) f->pixels[p * per + k] = (float)(1.5 * sin(0.013 * (double)k + 0.7 * (double)p));
    const mmt_json *ids = mmt_json_get(f->root, "input_ids");
    for (int64_t p = 0; p < f->n; p++)
        for (int64_t t = 0; t < f->L; t++) f->ids[p * f->L + t] = (int32_t)ids->items[p].items[t].integer;
    return 1;
}

static void fixture_close(fixture_data *f) {
    mmt_json_free(f->doc);
    mmt_clip_free(f->model);
    free(f->pixels);
    free(f->ids);
}

static double max_abs(const double *v, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(v[i]));
    return m;
}

/* Scores of one kind (rows x cols, row-major) against the fixture's array (nested or flat). */
static void check_kind(const char *what, const double *got, int64_t rows, int64_t cols, const mmt_json *want) {
    double scale = max_abs(got, rows * cols), worst = 0;
    CHECK_MSG(scale > 0, "%s: all scores are zero", what);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            const mmt_json *w = cols == 1 && want->items[i].type == MMT_JSON_NUMBER ? &want->items[i] : &want->items[i].items[j];
            worst = fmax(worst, fabs(got[i * cols + j] - w->number));
        }
    CHECK_MSG(worst <= 1e-3 * scale, "%s: worst difference %.3g, largest score %.3g", what, worst, scale);
    printf("  %-14s worst |mmtune - torch| %.2e of largest %.3g\n", what, worst, scale);
}

static mmt_clip_importance *measure(fixture_data *f) {
    mmt_clip_importance *imp = NULL;
    CHECK_OK(mmt_clip_importance_create(f->model, &imp));
    if (!imp) return NULL;
    int64_t per = 3 * f->S * f->S;
    for (int64_t b = 0; b < f->batches; b++)
        CHECK_OK(mmt_clip_importance_add(imp, f->pixels + b * f->B * per, f->ids + b * f->B * f->L, f->B, f->L, NULL));
    return imp;
}

static void test_scores_match_torch(void) {
    fixture_data f;
    if (!fixture_open(&f)) {
        CHECK(0);
        fixture_close(&f);
        return;
    }
    mmt_clip_importance *imp = measure(&f);
    const mmt_json *scores = mmt_json_get(f.root, "scores");
    for (int v = 0; imp && v < 2; v++) {
        const mmt_clip_tower_scores *t = mmt_clip_importance_tower(imp, v);
        const mmt_json *w = mmt_json_get(scores, v ? "vision" : "text");
        char what[64];
        snprintf(what, sizeof what, "%s heads", v ? "vision" : "text");
        check_kind(what, t->head, t->layers, t->heads, mmt_json_get(w, "head"));
        snprintf(what, sizeof what, "%s neurons", v ? "vision" : "text");
        check_kind(what, t->neuron, t->layers, t->neurons, mmt_json_get(w, "neuron"));
        snprintf(what, sizeof what, "%s layers", v ? "vision" : "text");
        check_kind(what, t->layer, t->layers, 1, mmt_json_get(w, "layer"));
    }
    CHECK(imp && mmt_clip_importance_batches(imp) == f.batches);
    mmt_clip_importance_free(imp);
    fixture_close(&f);
}

/* The plan from mmtune's scores is the fixture's; the snapshot written loads with the
 * smaller sizes and gives transformers' embeddings of the model pruned in PyTorch. */
static void test_snapshot_matches_transformers(void) {
    fixture_data f;
    if (!fixture_open(&f)) {
        CHECK(0);
        fixture_close(&f);
        return;
    }
    mmt_clip_importance *imp = measure(&f);
    mmt_clip_prune_settings ps = {mmt_json_get(f.root, "layers")->number, mmt_json_get(f.root, "mlp")->number, 1, 1};
    mmt_clip_prune_plan plan;
    memset(&plan, 0, sizeof plan);
    CHECK_OK(mmt_clip_prune_plan_make(f.model, imp, &ps, &plan));
    const mmt_json *want = mmt_json_get(f.root, "plan");
    for (int v = 0; v < 2 && plan.text.layer; v++) {
        const mmt_clip_prune_tower_plan *p = v ? &plan.vision : &plan.text;
        const mmt_json *w = mmt_json_get(want, v ? "vision" : "text");
        const mmt_json *wl = mmt_json_get(w, "layers"), *wn = mmt_json_get(w, "neurons");
        CHECK((int64_t)wl->len == p->n_layers && (int64_t)wn->items[0].len == p->n_neurons);
        int same = (int64_t)wl->len == p->n_layers;
        for (int64_t i = 0; same && i < p->n_layers; i++) {
            same &= wl->items[i].integer == p->layer[i];
            for (int64_t k = 0; same && k < p->n_neurons; k++)
                same &= wn->items[i].items[k].integer == p->neuron[i * p->n_neurons + k];
        }
        CHECK_MSG(same, "%s tower: the plan differs from the fixture's", v ? "vision" : "text");
    }
    char out[512];
    snprintf(out, sizeof out, "%s/pruned", tmpdir);
    CHECK_OK(mmt_clip_prune_write(f.model, &plan, out));
    mmt_clip *pm = NULL;
    CHECK_OK(mmt_clip_load(out, &pm));
    if (pm) {
        const mmt_clip_config *c = mmt_clip_config_of(pm), *c0 = mmt_clip_config_of(f.model);
        CHECK(c->text.num_layers == 3 && c->vision.num_layers == 3);
        CHECK(c->text.intermediate_size == c0->text.intermediate_size * 3 / 4);
        CHECK(c->vision.intermediate_size == c0->vision.intermediate_size * 3 / 4);
        CHECK(mmt_weights_param_count(mmt_clip_weights(pm)) == mmt_json_get(f.root, "n_params")->integer);
        CHECK(mmt_clip_logit_scale(pm) == mmt_clip_logit_scale(f.model));
        int64_t E = mmt_json_get(f.root, "embed_pairs")->integer, P = mmt_clip_embed_dim(pm);
        float *img = malloc((size_t)(E * P) * sizeof(float)), *txt = malloc((size_t)(E * P) * sizeof(float));
        CHECK_OK(mmt_clip_encode_pixels(pm, f.pixels, E, img));
        CHECK_OK(mmt_clip_encode_ids(pm, f.ids, E, f.L, txt));
        const mmt_json *wi = mmt_json_get(f.root, "image_embeds"), *wt = mmt_json_get(f.root, "text_embeds");
        double di = 0, dt = 0;
        for (int64_t e = 0; e < E; e++)
            for (int64_t k = 0; k < P; k++) {
                di = fmax(di, fabs(img[e * P + k] - wi->items[e].items[k].number));
                dt = fmax(dt, fabs(txt[e * P + k] - wt->items[e].items[k].number));
            }
        CHECK_MSG(di <= 1e-4 && dt <= 1e-4, "embeddings differ from transformers': image %.3g, text %.3g", di, dt);
        printf("  pruned snapshot: image embeddings within %.2e, text %.2e of transformers'\n", di, dt);
        free(img);
        free(txt);
    }
    mmt_clip_free(pm);
    mmt_clip_prune_plan_free(&plan);
    mmt_clip_importance_free(imp);
    fixture_close(&f);
}

/* ---- finite differences --------------------------------------------------------------- */

typedef struct fd_ctx {
    mmt_clip_train *view; /* full: every tensor a writable copy */
    const float *pixels;
    const int32_t *ids;
    int64_t B, L;
} fd_ctx;

static float *param_data(mmt_clip_train *ct, const char *name) {
    int64_t n;
    const mmt_nn_param *p = mmt_clip_train_params(ct, &n);
    for (int64_t i = 0; i < n; i++)
        if (!strcmp(p[i].name, name)) return p[i].data;
    return NULL;
}

static double fd_loss(fd_ctx *c) {
    double loss = NAN;
    CHECK_OK(mmt_clip_train_forward_loss(c->view, c->pixels, c->ids, c->B, c->L, 0, &loss));
    return loss;
}

/* A set of entries of tensors, all scaled by the same factor. */
typedef struct scaled {
    float *data[4];
    int64_t rows[4], cols[4], col0[4], ncol[4]; /* scale columns [col0, col0 + ncol) of every row */
    int n;
} scaled;

static void scale_by(scaled *s, double factor) {
    for (int t = 0; t < s->n; t++)
        for (int64_t i = 0; i < s->rows[t]; i++)
            for (int64_t j = s->col0[t]; j < s->col0[t] + s->ncol[t]; j++)
                s->data[t][i * s->cols[t] + j] = (float)((double)s->data[t][i * s->cols[t] + j] * factor);
}

/* d loss / d alpha at alpha = 1 when the entries are scaled by alpha: central differences
 * at eps and eps/2 combined by Richardson (truncation O(eps^4)). The tensors are restored
 * from a copy. */
static double fd_derivative(fd_ctx *c, scaled *s) {
    float *saved[4];
    for (int t = 0; t < s->n; t++) {
        size_t bytes = (size_t)(s->rows[t] * s->cols[t]) * sizeof(float);
        saved[t] = malloc(bytes);
        memcpy(saved[t], s->data[t], bytes);
    }
    double d[2];
    for (int k = 0; k < 2; k++) {
        double eps = k ? 5e-2 : 1e-1, lp, lm;
        scale_by(s, 1 + eps);
        lp = fd_loss(c);
        for (int t = 0; t < s->n; t++) memcpy(s->data[t], saved[t], (size_t)(s->rows[t] * s->cols[t]) * sizeof(float));
        scale_by(s, 1 - eps);
        lm = fd_loss(c);
        for (int t = 0; t < s->n; t++) memcpy(s->data[t], saved[t], (size_t)(s->rows[t] * s->cols[t]) * sizeof(float));
        d[k] = (lp - lm) / (2 * eps);
    }
    for (int t = 0; t < s->n; t++) free(saved[t]);
    return (4 * d[1] - d[0]) / 3;
}

static void check_fd(const char *what, double score, double fd) {
    CHECK_MSG(fabs(score - fabs(fd)) <= 1e-2 * fabs(fd) + 6e-5, "%s: score %.9g, |finite difference| %.9g", what, score,
              fabs(fd));
}

static void test_scores_finite_differences(void) {
    fixture_data f;
    if (!fixture_open(&f)) {
        CHECK(0);
        fixture_close(&f);
        return;
    }
    mmt_clip_importance *imp = NULL;
    CHECK_OK(mmt_clip_importance_create(f.model, &imp));
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    fd_ctx c = {NULL, f.pixels, f.ids, f.B, f.L};
    CHECK_OK(mmt_clip_train_create(f.model, &o, &c.view));
    if (c.view) CHECK_OK(mmt_clip_train_make_full(c.view));
    if (imp && c.view) {
        mmt_clip_train_set_eval(c.view, 1);
        CHECK_OK(mmt_clip_importance_add(imp, f.pixels, f.ids, f.B, f.L, NULL)); /* one batch: score = |d| */
        static const char *const towers[2] = {"text_model", "vision_model"};
        for (int v = 0; v < 2; v++) {
            const mmt_clip_tower_scores *t = mmt_clip_importance_tower(imp, v);
            const mmt_clip_config *cfg = mmt_clip_config_of(f.model);
            int64_t C = v ? cfg->vision.hidden_size : cfg->text.hidden_size, hd = C / t->heads, I = t->neurons;
            for (int64_t i = 0; i < t->layers; i++) {
                char n1[160], n2[160], n3[160], n4[160], what[96];
                snprintf(n1, sizeof n1, "%s.encoder.layers.%lld.self_attn.out_proj.weight", towers[v], (long long)i);
                snprintf(n2, sizeof n2, "%s.encoder.layers.%lld.self_attn.out_proj.bias", towers[v], (long long)i);
                snprintf(n3, sizeof n3, "%s.encoder.layers.%lld.mlp.fc2.weight", towers[v], (long long)i);
                snprintf(n4, sizeof n4, "%s.encoder.layers.%lld.mlp.fc2.bias", towers[v], (long long)i);
                float *ow = param_data(c.view, n1), *ob = param_data(c.view, n2), *fw = param_data(c.view, n3),
                      *fb = param_data(c.view, n4);
                CHECK(ow && ob && fw && fb);
                if (!ow || !ob || !fw || !fb) continue;
                for (int64_t h = 0; h < t->heads; h++) { /* the head's slice of the attention output */
                    scaled s = {{ow}, {C}, {C}, {h * hd}, {hd}, 1};
                    snprintf(what, sizeof what, "%s layer %lld head %lld", towers[v], (long long)i, (long long)h);
                    check_fd(what, t->head[i * t->heads + h], fd_derivative(&c, &s));
                }
                for (int64_t k = 0; k < I; k += I / 2 + 3) { /* two neurons: fc2's column k */
                    scaled s = {{fw}, {C}, {I}, {k}, {1}, 1};
                    snprintf(what, sizeof what, "%s layer %lld neuron %lld", towers[v], (long long)i, (long long)k);
                    check_fd(what, t->neuron[i * I + k], fd_derivative(&c, &s));
                }
                scaled s = {{ow, ob, fw, fb}, {C, 1, C, 1}, {C, C, I, C}, {0, 0, 0, 0}, {C, C, I, C}, 4};
                snprintf(what, sizeof what, "%s layer %lld", towers[v], (long long)i);
                check_fd(what, t->layer[i], fd_derivative(&c, &s));
            }
        }
    }
    mmt_clip_train_free(c.view);
    mmt_clip_importance_free(imp);
    fixture_close(&f);
}

/* ---- refusals ------------------------------------------------------------------------- */

static void test_refusals(void) {
    mmt_clip *m = NULL;
    CHECK_OK(mmt_clip_load(MODEL, &m));
    if (!m) return;
    mmt_clip_prune_plan plan;
    double bad[] = {1.0, -0.1, NAN, 2.0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mmt_clip_prune_settings a = {bad[i], 0, 1, 1}, b = {0, bad[i], 1, 1};
        CHECK_FAILS(mmt_clip_prune_plan_make(m, NULL, &a, &plan), MMT_STATUS_INVALID_ARGUMENT, "fraction of layers");
        CHECK_FAILS(mmt_clip_prune_plan_make(m, NULL, &b, &plan), MMT_STATUS_INVALID_ARGUMENT, "fraction of MLP neurons");
    }
    mmt_clip_prune_settings some = {0, 0.25, 1, 1}, none = {0, 0, 1, 1};
    CHECK_FAILS(mmt_clip_prune_plan_make(m, NULL, &some, &plan), MMT_STATUS_INVALID_ARGUMENT, "measured on data");
    CHECK_OK(mmt_clip_prune_plan_make(m, NULL, &none, &plan)); /* nothing removed: no data needed */
    CHECK(plan.text.n_layers == 4 && plan.vision.n_neurons == 512);
    mmt_clip_prune_plan_free(&plan);
    mmt_clip_importance *imp = NULL;
    CHECK_OK(mmt_clip_importance_create(m, &imp));
    const mmt_clip_config *c = mmt_clip_config_of(m);
    float *px = calloc((size_t)(3 * c->vision.image_size * c->vision.image_size), sizeof(float));
    int32_t *ids = calloc((size_t)c->text.max_positions, sizeof(int32_t));
    if (imp) CHECK_FAILS(mmt_clip_importance_add(imp, px, ids, 1, c->text.max_positions, NULL), MMT_STATUS_INVALID_ARGUMENT,
                         "at least 2 pairs");
    CHECK_FAILS(mmt_clip_prune_plan_make(m, imp, &some, &plan), MMT_STATUS_INVALID_ARGUMENT, "measured on data");
    free(px);
    free(ids);
    mmt_clip_importance_free(imp);
    mmt_clip_free(m);
}

static void test_cli(void) {
    cli_run_setup(tmpdir);
    char data[512], one[512], out[512];
    snprintf(data, sizeof data, "%s/fm", tmpdir);
    snprintf(one, sizeof one, "%s/fm/one.jsonl", tmpdir);
    snprintf(out, sizeof out, "%s/cli_out", tmpdir);
    CHECK(run("fashion-mnist --out %s --split train --count-per-class 2 --seed 3", data) == 0);
    CHECK(sh("head -n 1 %s/train.jsonl > %s", data, one) == 0);
    CHECK(run("prune --model %s --data %s/train.jsonl --out %s --mlp 1.5", MODEL, data, out) == 2);
    CHECK(err_text && strstr(err_text, "--mlp takes a fraction in [0, 1)"));
    CHECK(run("prune --model %s --data %s/train.jsonl --out %s --layers -0.5", MODEL, data, out) == 2);
    CHECK(run("prune --model %s --data %s/train.jsonl --out %s --heads 0.25", MODEL, data, out) == 2);
    CHECK(err_text && strstr(err_text, "head_dim = hidden / heads"));
    CHECK(run("prune --model %s --out %s --mlp 0.25", MODEL, out) == 2);
    CHECK(err_text && strstr(err_text, "--data is required"));
    CHECK(run("prune --model %s --data %s/train.jsonl --out %s", MODEL, data, out) == 2);
    CHECK(err_text && strstr(err_text, "nothing to remove"));
    CHECK(run("prune --model %s --data %s --out %s --mlp 0.25", MODEL, one, out) == 1);
    CHECK(err_text && strstr(err_text, "at least 2 pairs"));
    CHECK(run("prune --model %s/models/mmtune-git-tiny --data %s/train.jsonl --out %s --mlp 0.25", MMT_SOURCE_DIR, data,
              out) == 2);
    CHECK(err_text && strstr(err_text, "GIT captioner"));
    struct stat st;
    CHECK(stat(out, &st) != 0); /* nothing written by a refused run */
    /* a real run: 20 pairs, batches of 8 (the last of 4), vision only */
    CHECK(run("prune --model %s --data %s/train.jsonl --out %s --mlp 0.5 --layers 0.25 --scope vision --batch-size 8 "
              "--scores %s/scores.json", MODEL, data, out, tmpdir) == 0);
    CHECK(out_text && strstr(out_text, "\"vision\": {\"layers\": [4, 3], \"intermediate_size\": [512, 256]}"));
    CHECK(out_text && strstr(out_text, "\"text\": {\"layers\": [4, 4], \"intermediate_size\": [512, 512]}"));
    CHECK(out_text && strstr(out_text, "\"batches\": 3"));
    mmt_clip *pm = NULL;
    CHECK_OK(mmt_clip_load(out, &pm));
    mmt_clip_free(pm);
    mmt_json_doc *doc = NULL;
    char path[600];
    snprintf(path, sizeof path, "%s/scores.json", tmpdir);
    CHECK_OK(mmt_json_parse_file(path, &doc));
    if (doc) CHECK(mmt_json_get(mmt_json_get(mmt_json_root(doc), "vision"), "head")->len == 4);
    mmt_json_free(doc);
    /* a non-empty --out is refused without --overwrite */
    CHECK(run("prune --model %s --data %s/train.jsonl --out %s --mlp 0.5", MODEL, data, out) != 0);
    cli_run_cleanup();
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mmt_test_prune_%d", (int)getpid());
    mkdir(tmpdir, 0755);
    RUN(test_scores_match_torch);
    RUN(test_snapshot_matches_transformers);
    RUN(test_scores_finite_differences);
    RUN(test_refusals);
    RUN(test_cli);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_summary();
}
