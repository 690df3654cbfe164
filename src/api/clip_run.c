/*
 * clip_run.c — the public adapters-over-one-base API of mmtune.h: mmt_clip_adapter (an
 * adapter folder checked against a base) and mmt_clip_run (one thread's run context).
 *
 * How it computes today: a run context keeps one view of the base per adapter it has met
 * (models/clip_train.h; the base's weights are shared, never copied) with that adapter
 * attached, created the first time a row asks for the adapter. An embedding call groups its
 * rows by adapter and runs each group through its view in batches of EMBED_CHUNK, then puts
 * every row's result back in its place. Rows of one adapter therefore get exactly what a
 * batch of that adapter alone gives. The single mixed batch of issue 10 (one base GEMM for
 * every row, each adapter's low-rank product on its own rows) replaces the per-group views
 * behind this same interface.
 *
 * Adapters carry a process-wide id, so a binding can never be mistaken for one of an adapter
 * closed and reopened at the same address.
 */
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"
#include "models/clip.h"
#include "models/clip_train.h"
#include "peft/adapter.h"
#include "peft/prompt.h"
#include "train/clip_task.h"

#define EMBED_CHUNK 32

struct mmt_clip_adapter {
    mmt_clip *base; /* borrowed */
    char *dir;      /* owned */
    uint64_t id;
};

typedef struct binding {
    uint64_t adapter_id; /* 0: the base alone */
    mmt_clip_train *view;
    mmt_adapter *adapter;
    mmt_prompt *prompt;
} binding;

struct mmt_clip_run {
    mmt_clip *base;     /* borrowed */
    binding *bindings;  /* owned */
    int64_t n, cap;
};

static uint64_t next_adapter_id = 1;

/* A fresh inference view of base with the folder's adapter attached (dir NULL: none). */
static mmt_status bind(mmt_clip *base, const char *dir, binding *b) {
    memset(b, 0, sizeof *b);
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_status s = mmt_clip_train_create(base, &o, &b->view);
    if (s == MMT_OK && dir) s = mmt_clip_adapters_load(b->view, dir, 0, &b->adapter, &b->prompt);
    if (s == MMT_OK) mmt_clip_train_set_eval(b->view, 1);
    if (s != MMT_OK) {
        mmt_prompt_free(b->prompt);
        mmt_adapter_free(b->adapter);
        mmt_clip_train_free(b->view);
        memset(b, 0, sizeof *b);
    }
    return s;
}

static void unbind(binding *b) {
    mmt_prompt_free(b->prompt);
    mmt_adapter_free(b->adapter);
    mmt_clip_train_free(b->view);
}

mmt_status mmt_clip_adapter_open(mmt_clip *base, const char *dir, mmt_clip_adapter **out) {
    *out = NULL;
    if (!base || !dir || !dir[0]) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "adapter: no base model or folder");
    /* check it now, so that a bad folder fails here and not in the middle of a request */
    binding probe;
    MMT_TRY(bind(base, dir, &probe));
    unbind(&probe);
    mmt_clip_adapter *a = mmt_calloc(1, sizeof *a);
    if (!a || !(a->dir = mmt_strdup(dir))) {
        mmt_free(a);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    a->base = base;
    a->id = __atomic_fetch_add(&next_adapter_id, 1, __ATOMIC_RELAXED);
    *out = a;
    return MMT_OK;
}

void mmt_clip_adapter_close(mmt_clip_adapter *a) {
    if (!a) return;
    mmt_free(a->dir);
    mmt_free(a);
}

const char *mmt_clip_adapter_dir(const mmt_clip_adapter *a) { return a ? a->dir : NULL; }

mmt_status mmt_clip_run_create(mmt_clip *base, mmt_clip_run **out) {
    *out = NULL;
    if (!base) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "run context: no base model");
    mmt_clip_run *r = mmt_calloc(1, sizeof *r);
    if (!r) return MMT_STATUS_OUT_OF_MEMORY;
    r->base = base;
    *out = r;
    return MMT_OK;
}

void mmt_clip_run_free(mmt_clip_run *r) {
    if (!r) return;
    for (int64_t i = 0; i < r->n; i++) unbind(&r->bindings[i]);
    mmt_free(r->bindings);
    mmt_free(r);
}

/* The view that computes rows of adapter a (NULL: the base), made on first use. */
static mmt_status view_for(mmt_clip_run *r, const mmt_clip_adapter *a, mmt_clip_train **view) {
    uint64_t id = a ? a->id : 0;
    if (a && a->base != r->base)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: this adapter was opened on another base model", a->dir);
    for (int64_t i = 0; i < r->n; i++)
        if (r->bindings[i].adapter_id == id) {
            *view = r->bindings[i].view;
            return MMT_OK;
        }
    if (r->n == r->cap) {
        int64_t cap = r->cap ? 2 * r->cap : 4;
        binding *g = mmt_realloc(r->bindings, (size_t)cap * sizeof *g);
        if (!g) return MMT_STATUS_OUT_OF_MEMORY;
        r->bindings = g;
        r->cap = cap;
    }
    MMT_TRY(bind(r->base, a ? a->dir : NULL, &r->bindings[r->n]));
    r->bindings[r->n].adapter_id = id;
    *view = r->bindings[r->n++].view;
    return MMT_OK;
}

typedef enum input_kind { INPUT_IMAGE_FILES, INPUT_TEXTS } input_kind;

/* Embeds the rows idx[0..b) of inputs through view into out rows idx[i]. */
static mmt_status embed_group(mmt_clip_run *r, mmt_clip_train *view, input_kind kind, const char *const *inputs,
                              const int64_t *idx, int64_t b, float *buf, int32_t *ids, float *emb, float *out) {
    const mmt_clip_config *c = mmt_clip_config_of(r->base);
    int64_t P = c->projection_dim, S = c->vision.image_size, L = c->text.max_positions;
    mmt_status s = MMT_OK;
    if (kind == INPUT_IMAGE_FILES) {
        for (int64_t i = 0; i < b && s == MMT_OK; i++)
            s = mmt_clip_image_file_pixels(r->base, inputs[idx[i]], buf + i * 3 * S * S);
        if (s == MMT_OK) s = mmt_clip_train_encode_pixels(view, buf, b, emb);
    } else {
        const char *texts[EMBED_CHUNK];
        for (int64_t i = 0; i < b; i++) texts[i] = inputs[idx[i]];
        s = mmt_clip_tokenize(r->base, texts, b, 0, ids);
        if (s == MMT_OK) s = mmt_clip_train_encode_ids(view, ids, b, L, emb);
    }
    for (int64_t i = 0; s == MMT_OK && i < b; i++) memcpy(out + idx[i] * P, emb + i * P, (size_t)P * sizeof(float));
    return s;
}

static mmt_status embed_rows(mmt_clip_run *r, input_kind kind, const char *const *inputs,
                             mmt_clip_adapter *const *adapters, int64_t n, float *out) {
    if (!r || n < 0 || (n > 0 && (!inputs || !out))) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "embed: bad arguments");
    const mmt_clip_config *c = mmt_clip_config_of(r->base);
    int64_t P = c->projection_dim, S = c->vision.image_size, L = c->text.max_positions;
    int64_t *idx = mmt_malloc((size_t)(n > 0 ? n : 1) * sizeof *idx);
    char *done = mmt_calloc((size_t)(n > 0 ? n : 1), 1);
    float *buf = kind == INPUT_IMAGE_FILES ? mmt_malloc((size_t)(EMBED_CHUNK * 3 * S * S) * sizeof(float)) : NULL;
    int32_t *ids = kind == INPUT_TEXTS ? mmt_malloc((size_t)(EMBED_CHUNK * L) * sizeof(int32_t)) : NULL;
    float *emb = mmt_malloc((size_t)(EMBED_CHUNK * P) * sizeof(float));
    mmt_status s = idx && done && emb && (buf || ids) ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    /* groups in the order of their first row; each group in chunks */
    for (int64_t first = 0; s == MMT_OK && first < n; first++) {
        if (done[first]) continue;
        mmt_clip_adapter *a = adapters ? adapters[first] : NULL;
        int64_t m = 0;
        for (int64_t i = first; i < n; i++)
            if (!done[i] && (adapters ? adapters[i] : NULL) == a) {
                idx[m++] = i;
                done[i] = 1;
            }
        mmt_clip_train *view = NULL;
        s = view_for(r, a, &view);
        for (int64_t at = 0; s == MMT_OK && at < m; at += EMBED_CHUNK) {
            int64_t b = m - at < EMBED_CHUNK ? m - at : EMBED_CHUNK;
            s = embed_group(r, view, kind, inputs, idx + at, b, buf, ids, emb, out);
        }
    }
    mmt_free(idx);
    mmt_free(done);
    mmt_free(buf);
    mmt_free(ids);
    mmt_free(emb);
    return s;
}

mmt_status mmt_clip_run_embed_image_files(mmt_clip_run *r, const char *const *paths, mmt_clip_adapter *const *adapters,
                                          int64_t n, float *out) {
    return embed_rows(r, INPUT_IMAGE_FILES, paths, adapters, n, out);
}

mmt_status mmt_clip_run_embed_texts(mmt_clip_run *r, const char *const *texts, mmt_clip_adapter *const *adapters,
                                    int64_t n, float *out) {
    return embed_rows(r, INPUT_TEXTS, texts, adapters, n, out);
}
