/*
 * clip_prune.c — Taylor importance of CLIP's heads, MLP neurons and layers, the pruning plan
 * and the smaller snapshot (see clip_prune.h).
 */
#include "models/clip_prune.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"
#include "core/safetensors.h"
#include "core/weights.h"
#include "models/clip_internal.h"
#include "models/clip_train.h"

/* ---- importance ----------------------------------------------------------------------- */

/* The four tensors of one layer whose W * dW give its scores (registered in the view). */
typedef struct layer_params {
    const mmt_nn_param *out_w, *out_b, *fc2_w, *fc2_b;
} layer_params;

struct mmt_clip_importance {
    mmt_clip *model;               /* borrowed */
    mmt_clip_train *view;          /* owned: out_proj and fc2 of every layer trainable */
    mmt_clip_tower_scores tower[2]; /* [0] text, [1] vision; arrays owned */
    layer_params *params[2];       /* owned: (layers) per tower */
    double *column;                /* owned: one layer's per-column sums of W * dW */
    int64_t batches;
};

static const char *const TOWER_PREFIX[2] = {"text_model", "vision_model"};

static const mmt_clip_tower_config *tower_config(const mmt_clip *m, int vision) {
    return vision ? &m->cfg.vision : &m->cfg.text;
}

static const mmt_nn_param *find_param(const mmt_nn_param *p, int64_t n, const char *name) {
    for (int64_t i = 0; i < n; i++)
        if (strcmp(p[i].name, name) == 0) return &p[i];
    return NULL;
}

static mmt_status importance_bind(mmt_clip_importance *imp) {
    char name[160];
    for (int v = 0; v < 2; v++) {
        const mmt_clip_tower_config *c = tower_config(imp->model, v);
        for (int64_t i = 0; i < c->num_layers; i++) {
            snprintf(name, sizeof name, "%s.encoder.layers.%lld.self_attn.out_proj", TOWER_PREFIX[v], (long long)i);
            MMT_TRY(mmt_clip_train_make_module_trainable(imp->view, name, "", NULL));
            snprintf(name, sizeof name, "%s.encoder.layers.%lld.mlp.fc2", TOWER_PREFIX[v], (long long)i);
            MMT_TRY(mmt_clip_train_make_module_trainable(imp->view, name, "", NULL));
        }
    }
    int64_t n;
    const mmt_nn_param *p = mmt_clip_train_params(imp->view, &n); /* complete now: pointers stay */
    for (int v = 0; v < 2; v++) {
        const mmt_clip_tower_config *c = tower_config(imp->model, v);
        for (int64_t i = 0; i < c->num_layers; i++) {
            layer_params *lp = &imp->params[v][i];
            const mmt_nn_param **slot[4] = {&lp->out_w, &lp->out_b, &lp->fc2_w, &lp->fc2_b};
            static const char *const what[4] = {"self_attn.out_proj.weight", "self_attn.out_proj.bias", "mlp.fc2.weight",
                                                "mlp.fc2.bias"};
            for (int k = 0; k < 4; k++) {
                snprintf(name, sizeof name, "%s.encoder.layers.%lld.%s", TOWER_PREFIX[v], (long long)i, what[k]);
                if (!(*slot[k] = find_param(p, n, name)))
                    return mmt_fail(MMT_STATUS_NOT_FOUND, "%s: %s is missing; pruning needs every layer's biases",
                                    imp->model->dir, name);
            }
        }
    }
    return MMT_OK;
}

mmt_status mmt_clip_importance_create(mmt_clip *model, mmt_clip_importance **out) {
    *out = NULL;
    if (!model->cfg.has_text || !model->cfg.has_vision)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: pruning needs a CLIPModel with both towers", model->dir);
    mmt_clip_importance *imp = mmt_calloc(1, sizeof *imp);
    if (!imp) return MMT_STATUS_OUT_OF_MEMORY;
    imp->model = model;
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_status s = mmt_clip_train_create(model, &o, &imp->view);
    int64_t widest = 0;
    for (int v = 0; s == MMT_OK && v < 2; v++) {
        const mmt_clip_tower_config *c = tower_config(model, v);
        mmt_clip_tower_scores *t = &imp->tower[v];
        t->layers = c->num_layers;
        t->heads = c->num_heads;
        t->neurons = c->intermediate_size;
        t->head = mmt_calloc((size_t)(t->layers * t->heads), sizeof(double));
        t->neuron = mmt_calloc((size_t)(t->layers * t->neurons), sizeof(double));
        t->layer = mmt_calloc((size_t)t->layers, sizeof(double));
        imp->params[v] = mmt_calloc((size_t)t->layers, sizeof(layer_params));
        if (!t->head || !t->neuron || !t->layer || !imp->params[v]) s = MMT_STATUS_OUT_OF_MEMORY;
        if (c->hidden_size > widest) widest = c->hidden_size;
        if (c->intermediate_size > widest) widest = c->intermediate_size;
    }
    if (s == MMT_OK && !(imp->column = mmt_calloc((size_t)widest, sizeof(double)))) s = MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK) s = importance_bind(imp);
    if (s != MMT_OK) {
        mmt_clip_importance_free(imp);
        return s;
    }
    *out = imp;
    return MMT_OK;
}

void mmt_clip_importance_free(mmt_clip_importance *imp) {
    if (!imp) return;
    mmt_clip_train_free(imp->view);
    for (int v = 0; v < 2; v++) {
        mmt_free(imp->tower[v].head);
        mmt_free(imp->tower[v].neuron);
        mmt_free(imp->tower[v].layer);
        mmt_free(imp->params[v]);
    }
    mmt_free(imp->column);
    mmt_free(imp);
}

/* column[j] = sum_i W[i][j] dW[i][j] of a (rows, cols) weight; returns their sum. */
static double column_sums(const mmt_nn_param *w, double *column) {
    int64_t rows = w->shape[0], cols = w->shape[1];
    double total = 0;
    for (int64_t j = 0; j < cols; j++) column[j] = 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) column[j] += (double)w->data[i * cols + j] * (double)w->grad[i * cols + j];
    for (int64_t j = 0; j < cols; j++) total += column[j];
    return total;
}

static double dot(const mmt_nn_param *b) {
    double s = 0;
    for (int64_t i = 0; i < b->numel; i++) s += (double)b->data[i] * (double)b->grad[i];
    return s;
}

/* One batch's scores of every layer of tower v, from the gradients of the last backward. */
static void accumulate(mmt_clip_importance *imp, int v) {
    mmt_clip_tower_scores *t = &imp->tower[v];
    int64_t hd = tower_config(imp->model, v)->hidden_size / t->heads;
    for (int64_t i = 0; i < t->layers; i++) {
        const layer_params *lp = &imp->params[v][i];
        double layer = column_sums(lp->out_w, imp->column) + dot(lp->out_b);
        for (int64_t h = 0; h < t->heads; h++) {
            double s = 0;
            for (int64_t j = h * hd; j < (h + 1) * hd; j++) s += imp->column[j];
            t->head[i * t->heads + h] += fabs(s);
        }
        layer += column_sums(lp->fc2_w, imp->column) + dot(lp->fc2_b);
        for (int64_t k = 0; k < t->neurons; k++) t->neuron[i * t->neurons + k] += fabs(imp->column[k]);
        t->layer[i] += fabs(layer);
    }
}

mmt_status mmt_clip_importance_add(mmt_clip_importance *imp, const float *pixels, const int32_t *ids, int64_t B,
                                   int64_t L, double *loss) {
    if (B < 2)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "importance needs batches of at least 2 pairs (got %lld): with one "
                        "pair the contrastive loss is constant", (long long)B);
    double l = 0;
    mmt_clip_train_zero_grad(imp->view);
    MMT_TRY(mmt_clip_train_forward_loss(imp->view, pixels, ids, B, L, 0, &l));
    MMT_TRY(mmt_clip_train_backward(imp->view));
    accumulate(imp, 0);
    accumulate(imp, 1);
    imp->batches++;
    if (loss) *loss = l;
    return MMT_OK;
}

const mmt_clip_tower_scores *mmt_clip_importance_tower(const mmt_clip_importance *imp, int vision) {
    return &imp->tower[vision ? 1 : 0];
}

int64_t mmt_clip_importance_batches(const mmt_clip_importance *imp) { return imp->batches; }

/* ---- the plan ------------------------------------------------------------------------- */

/* round(f * n) units removed, at least one kept. */
static int64_t removed_count(double f, int64_t n) {
    int64_t k = (int64_t)floor(f * (double)n + 0.5);
    return k > n - 1 ? n - 1 : k;
}

/* keep (n - removed entries) gets the indices in 0..n-1 of the highest scores, ascending:
 * the lowest scores go, and among equal scores the higher index goes first. */
static mmt_status keep_highest(const double *score, int64_t n, int64_t removed, int64_t *keep) {
    char *gone = mmt_calloc((size_t)n, 1);
    if (!gone) return MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t r = 0; r < removed; r++) {
        int64_t worst = -1;
        for (int64_t i = 0; i < n; i++)
            if (!gone[i] && (worst < 0 || score[i] <= score[worst])) worst = i;
        gone[worst] = 1;
    }
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (!gone[i]) keep[k++] = i;
    mmt_free(gone);
    return MMT_OK;
}

static mmt_status plan_tower(const mmt_clip_tower_config *c, const mmt_clip_tower_scores *sc, double layers,
                             double mlp, mmt_clip_prune_tower_plan *p) {
    int64_t L = c->num_layers, I = c->intermediate_size;
    p->n_layers = L - removed_count(layers, L);
    p->n_neurons = I - removed_count(mlp, I);
    p->layer = mmt_malloc((size_t)p->n_layers * sizeof(int64_t));
    p->neuron = mmt_malloc((size_t)(p->n_layers * p->n_neurons) * sizeof(int64_t));
    if (!p->layer || !p->neuron) return MMT_STATUS_OUT_OF_MEMORY;
    if (p->n_layers < L) MMT_TRY(keep_highest(sc->layer, L, L - p->n_layers, p->layer));
    else
        for (int64_t i = 0; i < L; i++) p->layer[i] = i;
    for (int64_t i = 0; i < p->n_layers; i++) {
        int64_t *keep = p->neuron + i * p->n_neurons;
        if (p->n_neurons < I) MMT_TRY(keep_highest(sc->neuron + p->layer[i] * I, I, I - p->n_neurons, keep));
        else
            for (int64_t k = 0; k < I; k++) keep[k] = k;
    }
    return MMT_OK;
}

mmt_status mmt_clip_prune_plan_make(const mmt_clip *model, const mmt_clip_importance *imp,
                                    const mmt_clip_prune_settings *s, mmt_clip_prune_plan *plan) {
    memset(plan, 0, sizeof *plan);
    if (!(s->layers >= 0 && s->layers < 1))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "the fraction of layers to prune must be in [0, 1), got %g", s->layers);
    if (!(s->mlp >= 0 && s->mlp < 1))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "the fraction of MLP neurons to prune must be in [0, 1), got %g", s->mlp);
    if (!model->cfg.has_text || !model->cfg.has_vision)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: pruning needs a CLIPModel with both towers", model->dir);
    int needs = (s->text || s->vision) && (s->layers > 0 || s->mlp > 0);
    if (needs && (!imp || imp->batches == 0))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "pruning needs importance scores measured on data (no batch added)");
    mmt_clip_tower_scores none = {0};
    mmt_status st = MMT_OK;
    for (int v = 0; st == MMT_OK && v < 2; v++) {
        int on = v ? s->vision : s->text;
        const mmt_clip_tower_scores *sc = imp ? &imp->tower[v] : &none;
        st = plan_tower(tower_config(model, v), sc, on ? s->layers : 0, on ? s->mlp : 0, v ? &plan->vision : &plan->text);
    }
    if (st != MMT_OK) mmt_clip_prune_plan_free(plan);
    return st;
}

void mmt_clip_prune_plan_free(mmt_clip_prune_plan *plan) {
    if (!plan) return;
    mmt_free(plan->text.layer);
    mmt_free(plan->text.neuron);
    mmt_free(plan->vision.layer);
    mmt_free(plan->vision.neuron);
    memset(plan, 0, sizeof *plan);
}

void mmt_clip_prune_config(const mmt_clip *model, const mmt_clip_prune_plan *plan, mmt_clip_config *out) {
    *out = model->cfg;
    out->text.num_layers = plan->text.n_layers;
    out->text.intermediate_size = plan->text.n_neurons;
    out->vision.num_layers = plan->vision.n_layers;
    out->vision.intermediate_size = plan->vision.n_neurons;
}

/* ---- the snapshot --------------------------------------------------------------------- */

typedef struct written {
    char *name;
    int ndim;
    int64_t shape[4];
    const float *data; /* in the generated model's arena */
} written;

typedef struct prune_ctx {
    mmt_clip *src;
    const mmt_clip_prune_plan *plan;
    mmt_arena scratch;   /* converted source tensors (F16/BF16 files) */
    written *list;       /* owned */
    int64_t n, cap;
} prune_ctx;

/* Fills the pruned model's tensor `name` (shape as the pruned config gives it) from the
 * source: a kept layer's tensors under its new index, fc1's kept rows and fc2's kept
 * columns; anything else as it is. Records it for writing. */
static mmt_status prune_fill(void *vctx, const char *name, int ndim, const int64_t *shape, float *w) {
    prune_ctx *c = vctx;
    int64_t n = mmt_shape_numel(shape, ndim);
    char src_name[256];
    int64_t src_shape[4] = {0};
    for (int d = 0; d < ndim && d < 4; d++) src_shape[d] = shape[d];
    snprintf(src_name, sizeof src_name, "%s", name);
    const mmt_clip_prune_tower_plan *tp = NULL;
    const char *rest = NULL;
    int64_t I = 0;
    for (int v = 0; v < 2 && !tp; v++) {
        char head[64];
        int len = snprintf(head, sizeof head, "%s.encoder.layers.", TOWER_PREFIX[v]);
        long long idx;
        int used = 0;
        if (strncmp(name, head, (size_t)len) != 0 || sscanf(name + len, "%lld.%n", &idx, &used) != 1 || used == 0)
            continue;
        tp = v ? &c->plan->vision : &c->plan->text;
        rest = name + len + used;
        I = tower_config(c->src, v)->intermediate_size;
        snprintf(src_name, sizeof src_name, "%s%lld.%s", head, (long long)tp->layer[idx], rest);
        if (!strcmp(rest, "mlp.fc1.weight") || !strcmp(rest, "mlp.fc1.bias")) src_shape[0] = I;
        if (!strcmp(rest, "mlp.fc2.weight")) src_shape[1] = I;
        const int64_t *keep = tp->neuron + idx * tp->n_neurons;
        const float *s = NULL;
        MMT_TRY(mmt_weights_f32(c->src->weights, &c->scratch, src_name, ndim, src_shape, &s));
        if (!strcmp(rest, "mlp.fc1.weight")) {
            int64_t C = shape[1];
            for (int64_t k = 0; k < tp->n_neurons; k++) memcpy(w + k * C, s + keep[k] * C, (size_t)C * sizeof(float));
        } else if (!strcmp(rest, "mlp.fc1.bias")) {
            for (int64_t k = 0; k < tp->n_neurons; k++) w[k] = s[keep[k]];
        } else if (!strcmp(rest, "mlp.fc2.weight")) {
            for (int64_t i = 0; i < shape[0]; i++)
                for (int64_t k = 0; k < tp->n_neurons; k++) w[i * tp->n_neurons + k] = s[i * I + keep[k]];
        } else {
            memcpy(w, s, (size_t)n * sizeof(float));
        }
    }
    if (!tp) {
        const float *s = NULL;
        MMT_TRY(mmt_weights_f32(c->src->weights, &c->scratch, src_name, ndim, src_shape, &s));
        memcpy(w, s, (size_t)n * sizeof(float));
    }
    if (c->n == c->cap) {
        int64_t cap = c->cap ? 2 * c->cap : 64;
        written *grown = mmt_realloc(c->list, (size_t)cap * sizeof *grown);
        if (!grown) return MMT_STATUS_OUT_OF_MEMORY;
        c->list = grown;
        c->cap = cap;
    }
    written *t = &c->list[c->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = mmt_strdup(name))) return MMT_STATUS_OUT_OF_MEMORY;
    t->ndim = ndim;
    for (int d = 0; d < ndim && d < 4; d++) t->shape[d] = shape[d];
    t->data = w;
    c->n++;
    return MMT_OK;
}

static mmt_status write_config(const mmt_clip_config *cfg, const char *out_dir) {
    mmt_strbuf b = {0};
    mmt_clip_config_to_json(cfg, 1.0, 0.02, &b);
    char *path = mmt_path_join(out_dir, "config.json");
    mmt_status s = path && !b.failed ? mmt_file_write_atomic(path, b.data, b.len) : MMT_STATUS_OUT_OF_MEMORY;
    mmt_free(path);
    mmt_strbuf_free(&b);
    return s;
}

mmt_status mmt_clip_prune_write(mmt_clip *model, const mmt_clip_prune_plan *plan, const char *out_dir) {
    if (!model->cfg.has_text || !model->cfg.has_vision || !model->weights)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: pruning needs a CLIPModel snapshot with both towers", model->dir);
    const mmt_clip_prune_tower_plan *tp[2] = {&plan->text, &plan->vision};
    for (int v = 0; v < 2; v++) {
        const mmt_clip_tower_config *c = tower_config(model, v);
        if (tp[v]->n_layers < 1 || tp[v]->n_layers > c->num_layers || tp[v]->n_neurons < 1 ||
            tp[v]->n_neurons > c->intermediate_size)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "the pruning plan does not fit %s's %s tower", model->dir,
                            v ? "vision" : "text");
        for (int64_t i = 0; i < tp[v]->n_layers; i++) {
            if (tp[v]->layer[i] < 0 || tp[v]->layer[i] >= c->num_layers)
                return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "the pruning plan names layer %lld of %lld",
                                (long long)tp[v]->layer[i], (long long)c->num_layers);
            for (int64_t k = 0; k < tp[v]->n_neurons; k++) {
                int64_t x = tp[v]->neuron[i * tp[v]->n_neurons + k];
                if (x < 0 || x >= c->intermediate_size)
                    return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "the pruning plan names neuron %lld of %lld",
                                    (long long)x, (long long)c->intermediate_size);
            }
        }
    }
    mmt_clip_config cfg;
    mmt_clip_prune_config(model, plan, &cfg);
    prune_ctx c = {model, plan, {0}, NULL, 0, 0};
    mmt_arena_init(&c.scratch, (size_t)1 << 20);
    mmt_clip *pruned = NULL;
    mmt_st_write_tensor *list = NULL;
    char *path = NULL;
    static const int64_t scalar_shape[1] = {1};
    float logit_scale = model->logit_scale;
    mmt_status s = mmt_mkdirs(out_dir);
    if (s == MMT_OK) s = mmt_clip_create_generated(&cfg, prune_fill, &c, &pruned);
    if (s == MMT_OK) {
        list = mmt_calloc((size_t)c.n + 1, sizeof *list);
        path = mmt_path_join(out_dir, "model.safetensors");
        if (!list || !path) s = MMT_STATUS_OUT_OF_MEMORY;
    }
    if (s == MMT_OK) {
        for (int64_t i = 0; i < c.n; i++)
            list[i] = (mmt_st_write_tensor){c.list[i].name, MMT_DTYPE_F32, c.list[i].ndim, c.list[i].shape, c.list[i].data};
        list[c.n] = (mmt_st_write_tensor){"logit_scale", MMT_DTYPE_F32, 0, scalar_shape, &logit_scale};
        s = mmt_safetensors_write(path, list, c.n + 1, NULL, 0);
    }
    static const char *const extras[] = {"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
                                         "special_tokens_map.json", "preprocessor_config.json"};
    if (s == MMT_OK) s = mmt_copy_files(model->dir, out_dir, extras, sizeof extras / sizeof extras[0]);
    if (s == MMT_OK) s = write_config(&cfg, out_dir);
    for (int64_t i = 0; i < c.n; i++) mmt_free(c.list[i].name);
    mmt_free(c.list);
    mmt_free(list);
    mmt_free(path);
    mmt_clip_free(pruned);
    mmt_arena_free(&c.scratch);
    return s;
}
