/*
 * clip_run.c — the public adapters-over-one-base API of mmtune.h: mmt_clip_adapter (an
 * adapter folder checked against a base) and mmt_clip_run (one thread's run context).
 *
 * An opened adapter keeps its tensors once, attached to a view of its own that no run
 * computes with (the base's weights are shared, never copied). How rows are computed:
 *   - mixed batches for LoRA (plain, rsLoRA), IA3, prompt (CoOp, VPT) and prefix adapters
 *     and the base: a run context has one view with nothing attached; for each forward it
 *     sorts the rows by adapter and gives every adapted linear the row groups of the
 *     adapters in the batch (nn/linear.h mmt_linear_group): the base product runs once for
 *     all rows, each adapter's low-rank product (or IA3 scaling) on its own rows, reading the
 *     adapter's tensors in place (Punica's SGMV pattern, on the CPU); each row's prompts and
 *     prefixes go in through the view's per-row prompts (clip_train.h
 *     mmt_clip_train_set_row_prompts: rows of different lengths padded and masked);
 *   - other adapters (DoRA, bottleneck, modules_to_save, merged) change more than a linear's
 *     rows: the run keeps a view with a copy of that adapter attached, made the first time a
 *     row asks for it, and runs that adapter's rows through it.
 * Either way a row gets what a batch of its adapter alone gives (to rounding: the base
 * product over more rows may be blocked differently).
 *
 * Adapters carry a process-wide id, so a binding can never be mistaken for one of an adapter
 * closed and reopened at the same address.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/clip_run_internal.h"
#include "core/alloc.h"
#include "nn/linear.h"
#include "core/status.h"
#include "models/clip.h"
#include "models/clip_train.h"
#include "peft/adapter.h"
#include "peft/prompt.h"
#include "train/clip_task.h"

#define EMBED_CHUNK 32

typedef struct binding {
    uint64_t adapter_id; /* 0: the base alone */
    mmt_clip_train *view;
    mmt_adapter *adapter;
    mmt_prompt *prompt;
} binding;

struct mmt_clip_adapter {
    mmt_clip *base; /* borrowed */
    char *dir;      /* owned */
    uint64_t id;
    binding owner;  /* owned: the tensors, attached to a view no run computes with */
    int mixable;    /* LoRA / IA3 only on linears: rows can join mixed batches */
};

/* Where an adapter's entries sit in a run's mixed view. */
typedef struct link {
    uint64_t adapter_id;
    mmt_linear **linears;            /* owned, n: the run view's layer of each entry */
    const mmt_adapter_entry **entries; /* borrowed from the adapter, n */
    int64_t n;
} link;

struct mmt_clip_run {
    mmt_clip *base;     /* borrowed */
    binding *bindings;  /* owned: views with a non-mixable adapter attached */
    int64_t n, cap;
    mmt_clip_train *mixed; /* owned: the view of mixed batches (made on first use) */
    link *links;        /* owned */
    int64_t n_links, cap_links;
};

static uint64_t next_adapter_id = 1;

/* A fresh inference view of base with the folder's adapter attached (dir NULL: none). */
static mmt_status bind(mmt_clip *base, const char *dir, binding *b) {
    memset(b, 0, sizeof *b);
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_status s = mmt_clip_train_create(base, &o, &b->view);
    if (s == MMT_OK && dir) s = mmt_adapter_folders_load(mmt_clip_train_iface(b->view), dir, 0, &b->adapter, &b->prompt);
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
    mmt_clip_adapter *a = mmt_calloc(1, sizeof *a);
    if (!a || !(a->dir = mmt_strdup(dir))) {
        mmt_free(a);
        return MMT_STATUS_OUT_OF_MEMORY;
    }
    mmt_status s = bind(base, dir, &a->owner);
    if (s != MMT_OK) {
        mmt_free(a->dir);
        mmt_free(a);
        return s;
    }
    const mmt_adapter *ad = a->owner.adapter;
    a->mixable = (ad || a->owner.prompt) &&
                 (!ad || (ad->n_saved == 0 && !ad->merged &&
                          (ad->settings.method == MMT_ADAPTER_LORA || ad->settings.method == MMT_ADAPTER_IA3)));
    for (int64_t i = 0; a->mixable && ad && i < ad->n; i++)
        if (ad->entries[i].lora.magnitude) a->mixable = 0; /* DoRA rescales whole rows */
    a->base = base;
    a->id = __atomic_fetch_add(&next_adapter_id, 1, __ATOMIC_RELAXED);
    *out = a;
    return MMT_OK;
}

void mmt_clip_adapter_close(mmt_clip_adapter *a) {
    if (!a) return;
    unbind(&a->owner);
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
    for (int64_t i = 0; i < r->n_links; i++) {
        mmt_free(r->links[i].linears);
        mmt_free(r->links[i].entries);
    }
    mmt_free(r->links);
    mmt_clip_train_free(r->mixed);
    mmt_free(r);
}

void mmt_clip_run_forget(mmt_clip_run *r, const mmt_clip_adapter *a) {
    if (!r || !a) return;
    for (int64_t i = 0; i < r->n; i++)
        if (r->bindings[i].adapter_id == a->id) {
            unbind(&r->bindings[i]);
            r->bindings[i] = r->bindings[--r->n];
            break;
        }
    for (int64_t i = 0; i < r->n_links; i++)
        if (r->links[i].adapter_id == a->id) {
            mmt_free(r->links[i].linears);
            mmt_free(r->links[i].entries);
            r->links[i] = r->links[--r->n_links];
            break;
        }
}

int64_t mmt_clip_run_links(const mmt_clip_run *r) { return r->n_links; }

/* The view that computes rows of adapter a (NULL: the base), made on first use. */
static mmt_status view_for(mmt_clip_run *r, const mmt_clip_adapter *a, mmt_clip_train **view) {
    uint64_t id = a ? a->id : 0;
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

/* What `inputs` points at: n file paths, n texts, or one float array of n preprocessed
 * images (3, S, S) each. */
typedef enum input_kind { INPUT_IMAGE_FILES, INPUT_TEXTS, INPUT_PIXELS } input_kind;

/* Embeds the rows idx[0..b) of inputs through view into out rows idx[i]. */
static mmt_status embed_group(mmt_clip_run *r, mmt_clip_train *view, input_kind kind, const char *const *inputs,
                              const int64_t *idx, int64_t b, float *buf, int32_t *ids, float *emb, float *out) {
    const mmt_clip_config *c = mmt_clip_config_of(r->base);
    int64_t P = c->projection_dim, S = c->vision.image_size, L = c->text.max_positions;
    mmt_status s = MMT_OK;
    if (kind == INPUT_PIXELS) {
        const float *px = (const float *)inputs;
        for (int64_t i = 0; i < b; i++) memcpy(buf + i * 3 * S * S, px + idx[i] * 3 * S * S, (size_t)(3 * S * S) * sizeof(float));
        s = mmt_clip_train_encode_pixels(view, buf, b, emb);
    } else if (kind == INPUT_IMAGE_FILES) {
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

/* ---- mixed batches ----------------------------------------------------------------- */

/* The run's view with nothing attached, made on first use. */
static mmt_status mixed_view(mmt_clip_run *r) {
    if (r->mixed) return MMT_OK;
    binding plain;
    MMT_TRY(bind(r->base, NULL, &plain));
    r->mixed = plain.view;
    return MMT_OK;
}

/* The index in r->links of adapter a's link (made on first use). */
static mmt_status link_index(mmt_clip_run *r, const mmt_clip_adapter *a, int64_t *index) {
    for (int64_t i = 0; i < r->n_links; i++)
        if (r->links[i].adapter_id == a->id) {
            *index = i;
            return MMT_OK;
        }
    if (r->n_links == r->cap_links) {
        int64_t cap = r->cap_links ? 2 * r->cap_links : 4;
        link *g = mmt_realloc(r->links, (size_t)cap * sizeof *g);
        if (!g) return MMT_STATUS_OUT_OF_MEMORY;
        r->links = g;
        r->cap_links = cap;
    }
    const mmt_adapter *ad = a->owner.adapter;
    int64_t n_entries = ad ? ad->n : 0; /* prompt and prefix adapters touch no linear */
    link k = {a->id, mmt_calloc((size_t)(n_entries > 0 ? n_entries : 1), sizeof(mmt_linear *)),
              mmt_calloc((size_t)(n_entries > 0 ? n_entries : 1), sizeof(mmt_adapter_entry *)), n_entries};
    mmt_status s = k.linears && k.entries ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    for (int64_t i = 0; s == MMT_OK && i < n_entries; i++) {
        k.entries[i] = &ad->entries[i];
        if (!(k.linears[i] = mmt_clip_train_linear(r->mixed, ad->entries[i].module)))
            s = mmt_fail(MMT_STATUS_INTERNAL, "%s: module %s is not in the base model", a->dir, ad->entries[i].module);
    }
    if (s != MMT_OK) {
        mmt_free(k.linears);
        mmt_free(k.entries);
        return s;
    }
    r->links[r->n_links] = k;
    *index = r->n_links++;
    return MMT_OK;
}

typedef struct placed {
    mmt_linear *linear;
    mmt_linear_group group;
} placed;

static int by_linear_then_rows(const void *x, const void *y) {
    const placed *a = x, *b = y;
    if (a->linear != b->linear) return (uintptr_t)a->linear < (uintptr_t)b->linear ? -1 : 1;
    return (a->group.seq0 > b->group.seq0) - (a->group.seq0 < b->group.seq0);
}

/* One forward of the mixed view over rows idx[0..b) (sorted by adapter): every adapted
 * linear gets the row groups of the adapters present, for this forward only. */
static mmt_status mixed_forward(mmt_clip_run *r, input_kind kind, const char *const *inputs,
                                mmt_clip_adapter *const *adapters, const int64_t *idx, int64_t b, float *buf,
                                int32_t *ids, float *emb, float *out) {
    int64_t total = 0;
    for (int64_t i = 0; i < b;) {
        int64_t j = i;
        mmt_clip_adapter *a = adapters ? adapters[idx[i]] : NULL;
        while (j < b && (adapters ? adapters[idx[j]] : NULL) == a) j++;
        if (a) {
            int64_t li;
            MMT_TRY(link_index(r, a, &li));
            total += r->links[li].n;
        }
        i = j;
    }
    placed *p = mmt_malloc((size_t)(total > 0 ? total : 1) * sizeof *p);
    mmt_linear_group *groups = mmt_malloc((size_t)(total > 0 ? total : 1) * sizeof *groups);
    mmt_clip_row_prompts *rows = mmt_calloc((size_t)b, sizeof *rows);
    mmt_status s = p && groups && rows ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    int prompted = 0;
    for (int64_t i = 0; s == MMT_OK && i < b; i++) {
        const mmt_prompt *pr = adapters && adapters[idx[i]] ? adapters[idx[i]]->owner.prompt : NULL;
        if (!pr) continue;
        rows[i] = (mmt_clip_row_prompts){pr->settings.text_tokens, pr->text, pr->settings.visual_tokens,
                                         pr->settings.visual_deep, pr->visual, {pr->prefix[0].V, pr->prefix[1].V},
                                         {pr->prefix[0].kv, pr->prefix[1].kv}};
        prompted = 1;
    }
    if (s == MMT_OK && prompted) s = mmt_clip_train_set_row_prompts(r->mixed, rows, b);
    int64_t n = 0;
    for (int64_t i = 0; s == MMT_OK && i < b;) {
        int64_t j = i;
        mmt_clip_adapter *a = adapters ? adapters[idx[i]] : NULL;
        while (j < b && (adapters ? adapters[idx[j]] : NULL) == a) j++;
        int64_t li = -1;
        if (a) s = link_index(r, a, &li);
        for (int64_t e = 0; s == MMT_OK && li >= 0 && e < r->links[li].n; e++) {
            const mmt_adapter_entry *en = r->links[li].entries[e];
            int ia3 = a->owner.adapter->settings.method == MMT_ADAPTER_IA3; /* entries imply an adapter */
            p[n].linear = r->links[li].linears[e];
            p[n].group = (mmt_linear_group){i, j - i, ia3 ? NULL : &en->lora, ia3 ? en->ia3 : NULL,
                                            !ia3 ? MMT_IA3_NONE : en->feedforward ? MMT_IA3_INPUT : MMT_IA3_OUTPUT};
            n++;
        }
        i = j;
    }
    if (s == MMT_OK && n > 1) qsort(p, (size_t)n, sizeof *p, by_linear_then_rows);
    for (int64_t i = 0; s == MMT_OK && i < n;) {
        int64_t j = i;
        while (j < n && p[j].linear == p[i].linear) {
            groups[j] = p[j].group;
            j++;
        }
        p[i].linear->groups = groups + i;
        p[i].linear->n_groups = j - i;
        p[i].linear->group_batch = b;
        i = j;
    }
    if (s == MMT_OK) s = embed_group(r, r->mixed, kind, inputs, idx, b, buf, ids, emb, out);
    for (int64_t i = 0; p && i < n; i++) { /* the view is the run's own again */
        p[i].linear->groups = NULL;
        p[i].linear->n_groups = 0;
        p[i].linear->group_batch = 0;
    }
    if (prompted) mmt_clip_train_set_row_prompts(r->mixed, NULL, 0);
    mmt_free(p);
    mmt_free(groups);
    mmt_free(rows);
    return s;
}

typedef struct keyed_row {
    uint64_t key; /* the adapter's id, 0 for the base */
    int64_t row;
} keyed_row;

static int by_key_then_row(const void *x, const void *y) {
    const keyed_row *a = x, *b = y;
    if (a->key != b->key) return a->key < b->key ? -1 : 1;
    return (a->row > b->row) - (a->row < b->row);
}

static mmt_status embed_rows(mmt_clip_run *r, input_kind kind, const char *const *inputs,
                             mmt_clip_adapter *const *adapters, int64_t n, float *out) {
    if (!r || n < 0 || (n > 0 && (!inputs || !out))) return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "embed: bad arguments");
    const mmt_clip_config *c = mmt_clip_config_of(r->base);
    int64_t P = c->projection_dim, S = c->vision.image_size, L = c->text.max_positions;
    for (int64_t i = 0; adapters && i < n; i++)
        if (adapters[i] && adapters[i]->base != r->base)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "%s: this adapter was opened on another base model", adapters[i]->dir);
    int64_t *idx = mmt_malloc((size_t)(n > 0 ? n : 1) * sizeof *idx);
    keyed_row *kr = mmt_malloc((size_t)(n > 0 ? n : 1) * sizeof *kr);
    char *done = mmt_calloc((size_t)(n > 0 ? n : 1), 1);
    float *buf = kind != INPUT_TEXTS ? mmt_malloc((size_t)(EMBED_CHUNK * 3 * S * S) * sizeof(float)) : NULL;
    int32_t *ids = kind == INPUT_TEXTS ? mmt_malloc((size_t)(EMBED_CHUNK * L) * sizeof(int32_t)) : NULL;
    float *emb = mmt_malloc((size_t)(EMBED_CHUNK * P) * sizeof(float));
    mmt_status s = idx && kr && done && emb && (buf || ids) ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    /* the base and mixable adapters: mixed batches of rows sorted by adapter */
    int64_t m = 0;
    for (int64_t i = 0; s == MMT_OK && i < n; i++) {
        mmt_clip_adapter *a = adapters ? adapters[i] : NULL;
        if (a && !a->mixable) continue;
        kr[m].key = a ? a->id : 0;
        kr[m++].row = i;
        done[i] = 1;
    }
    if (s == MMT_OK && m > 0) {
        qsort(kr, (size_t)m, sizeof *kr, by_key_then_row);
        for (int64_t i = 0; i < m; i++) idx[i] = kr[i].row;
        s = mixed_view(r);
        for (int64_t at = 0; s == MMT_OK && at < m; at += EMBED_CHUNK) {
            int64_t b = m - at < EMBED_CHUNK ? m - at : EMBED_CHUNK;
            s = mixed_forward(r, kind, inputs, adapters, idx + at, b, buf, ids, emb, out);
        }
    }
    /* the others: each adapter's rows through a view of its own */
    for (int64_t first = 0; s == MMT_OK && first < n; first++) {
        if (done[first]) continue;
        mmt_clip_adapter *a = adapters[first];
        m = 0;
        for (int64_t i = first; i < n; i++)
            if (!done[i] && adapters[i] == a) {
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
    mmt_free(kr);
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

mmt_status mmt_clip_run_embed_pixels(mmt_clip_run *r, const float *pixels, mmt_clip_adapter *const *adapters, int64_t n,
                                     float *out) {
    return embed_rows(r, INPUT_PIXELS, (const char *const *)(const void *)pixels, adapters, n, out);
}

mmt_status mmt_clip_run_embed_texts(mmt_clip_run *r, const char *const *texts, mmt_clip_adapter *const *adapters,
                                    int64_t n, float *out) {
    return embed_rows(r, INPUT_TEXTS, texts, adapters, n, out);
}

int64_t mmt_clip_run_own_views(const mmt_clip_run *r) { return r ? r->n : 0; }
