/* qlinear.c — a model's linear weights, fp32 or quantized (see qlinear.h). */
#include "models/qlinear.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/alloc.h"
#include "quant/bnb_io.h"
#include "quant/dynamic_map.h"
#include "quant/int8_rows.h"
#include "quant/nf4.h"

void mmt_qlinears_free(mmt_qlinears *set) {
    if (!set) return;
    mmt_free(set->slots);
    memset(set, 0, sizeof *set);
}

static mmt_status add_slot(mmt_qlinears *set, const char *module, int64_t out, int64_t in, int64_t layer,
                           int64_t n_layers, const float **w, const mmt_qmat **qw, int from_file) {
    if (set->n == set->cap) {
        int64_t cap = set->cap ? set->cap * 2 : 64;
        mmt_qlinear_slot *s = mmt_realloc(set->slots, (size_t)cap * sizeof *s);
        if (!s) return MMT_STATUS_OUT_OF_MEMORY;
        set->slots = s;
        set->cap = cap;
    }
    mmt_qlinear_slot *s = &set->slots[set->n];
    memset(s, 0, sizeof *s);
    if ((size_t)snprintf(s->module, sizeof s->module, "%s", module) >= sizeof s->module)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "module name too long: %s", module);
    s->w = w;
    s->qw = qw;
    s->out = out;
    s->in = in;
    s->layer = layer;
    s->n_layers = n_layers;
    s->from_file = from_file;
    set->n++;
    return MMT_OK;
}

/* Packs an int8 matrix for the integer kernels (in store) and sets q->s8_packed. */
static mmt_status pack_s8(mmt_qmat *q, mmt_arena *store, const mmt_ops *ops) {
    size_t bytes = ops->s8_packed_bytes(q->rows, q->cols);
    void *p = mmt_arena_alloc(store, bytes, 64);
    if (!p) return MMT_STATUS_OUT_OF_MEMORY;
    ops->s8_pack(p, q->s8, q->rows, q->cols);
    q->s8_packed = p;
    return MMT_OK;
}

mmt_status mmt_qlinears_add(mmt_qlinears *set, const char *module, int64_t out, int64_t in, int64_t layer,
                           int64_t n_layers, const float **w, const mmt_qmat **qw) {
    return add_slot(set, module, out, in, layer, n_layers, w, qw, *qw != NULL);
}

mmt_status mmt_qlinear_load(mmt_qlinears *set, mmt_weights *weights, mmt_arena *store, const mmt_ops *ops,
                            const char *module, int64_t out, int64_t in, int64_t layer, int64_t n_layers,
                            const float **w, const mmt_qmat **qw) {
    char name[256];
    if ((size_t)snprintf(name, sizeof name, "%s.weight", module) >= sizeof name)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "tensor name too long: %s.weight", module);
    *w = NULL;
    *qw = NULL;
    mmt_bnb_linear bl;
    MMT_TRY(mmt_bnb_linear_load(weights, store, name, out, in, &bl));
    if (bl.kind == MMT_BNB_PLAIN) {
        int64_t shape[2] = {out, in};
        MMT_TRY(mmt_weights_f32(weights, store, name, 2, shape, w));
        return add_slot(set, module, out, in, layer, n_layers, w, qw, 0);
    }
    mmt_qmat *q = mmt_arena_calloc(store, 1, sizeof *q);
    if (!q) return MMT_STATUS_OUT_OF_MEMORY;
    q->rows = out;
    q->cols = in;
    if (bl.kind == MMT_BNB_NF4) {
        q->type = MMT_QMAT_NF4;
        q->nf4 = bl.packed;
        q->absmax = bl.absmax;
        q->code = bl.code;
        q->blocksize = bl.blocksize;
    } else {
        float *scale = mmt_arena_alloc(store, (size_t)out * sizeof(float), 64);
        if (!scale) return MMT_STATUS_OUT_OF_MEMORY;
        for (int64_t r = 0; r < out; r++) scale[r] = bl.scb[r] * MMT_QLINEAR_INV127;
        q->type = MMT_QMAT_S8;
        q->s8 = bl.s8;
        q->scale = scale;
        MMT_TRY(pack_s8(q, store, ops));
    }
    *qw = q;
    return add_slot(set, module, out, in, layer, n_layers, w, qw, 1);
}

/* absmax (blocks) -> what bitsandbytes' double quantization gives back: the values quantized
 * blockwise (256) with the signed dynamic map around their mean, then expanded again, so the
 * weight computes exactly as the saved 4-bit file will. */
static mmt_status double_quant(float *absmax, int64_t blocks) {
    int64_t nested = mmt_nf4_blocks(blocks, MMT_QLINEAR_NF4_NESTED_BLOCKSIZE);
    uint8_t *q = mmt_malloc((size_t)blocks);
    float *nabs = mmt_malloc((size_t)nested * sizeof(float)), *work = mmt_malloc((size_t)blocks * sizeof(float));
    float code[256], offset;
    mmt_status s = MMT_OK;
    if (!q || !nabs || !work) {
        s = MMT_STATUS_OUT_OF_MEMORY;
    } else {
        mmt_dynamic_map(1, code);
        mmt_nf4_compress_absmax(q, nabs, &offset, absmax, work, blocks, MMT_QLINEAR_NF4_NESTED_BLOCKSIZE);
        mmt_nf4_expand_absmax(absmax, q, nabs, offset, blocks, MMT_QLINEAR_NF4_NESTED_BLOCKSIZE, code);
    }
    mmt_free(q);
    mmt_free(nabs);
    mmt_free(work);
    return s;
}

static int selected(const mmt_qlinear_slot *s, const mmt_qlinear_policy *p) {
    if (s->keep_fp32) return 0;
    if (s->layer < 0) return !p->keep_outside;
    if (p->keep_edges && (s->layer == 0 || s->layer == s->n_layers - 1)) return 0;
    return 1;
}

/* Gives the pages wholly inside a float32 weight that was just quantized back to the system:
 * nothing reads it any more (its pointer is cleared, and views are made after quantizing), so a
 * quantized base costs its quantized bytes, not those plus the float32 copy. Pages of a file
 * mapping are dropped (read again from the file if ever touched); pages of the model's arena
 * (converted or generated weights) read as zeros afterwards. Pages shared with a neighbouring
 * tensor are kept. */
static void release_pages(const void *p, size_t bytes) {
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a = ((uintptr_t)p + page - 1) / page * page,
              b = ((uintptr_t)p + bytes) / page * page;
    if (b > a) (void)madvise((void *)a, b - a, MADV_DONTNEED);
}

/* An int8 matrix (LLM.int8's rows) of w (out, in) with its packed copy, in store. */
static mmt_status make_s8(mmt_qmat *q, const float *w, mmt_arena *store, const mmt_ops *ops) {
    int8_t *s8 = mmt_arena_alloc(store, (size_t)(q->rows * q->cols), 64);
    float *scale = mmt_arena_alloc(store, (size_t)q->rows * sizeof(float), 64);
    if (!s8 || !scale) return MMT_STATUS_OUT_OF_MEMORY;
    mmt_int8_rows_quantize(s8, scale, w, q->rows, q->cols); /* scale holds SCB until the next line */
    for (int64_t r = 0; r < q->rows; r++) scale[r] *= MMT_QLINEAR_INV127;
    q->type = MMT_QMAT_S8;
    q->s8 = s8;
    q->scale = scale;
    return pack_s8(q, store, ops);
}

mmt_status mmt_qmat_s8_from(const float *w, int64_t out, int64_t in, mmt_arena *store, const mmt_ops *ops,
                            const mmt_qmat **qw) {
    mmt_qmat *q = mmt_arena_calloc(store, 1, sizeof *q);
    if (!q) return MMT_STATUS_OUT_OF_MEMORY;
    q->rows = out;
    q->cols = in;
    MMT_TRY(make_s8(q, w, store, ops));
    *qw = q;
    return MMT_OK;
}

static mmt_status quantize_one(mmt_qlinear_slot *s, mmt_arena *store, const mmt_ops *ops,
                               const mmt_qlinear_policy *p) {
    mmt_qmat *q = mmt_arena_calloc(store, 1, sizeof *q);
    if (!q) return MMT_STATUS_OUT_OF_MEMORY;
    q->rows = s->out;
    q->cols = s->in;
    const float *w = *s->w;
    int64_t n = s->out * s->in;
    if (p->type == MMT_QMAT_S8) {
        MMT_TRY(make_s8(q, w, store, ops));
    } else if (p->type == MMT_QMAT_NF4) {
        int64_t blocks = mmt_nf4_blocks(n, MMT_QLINEAR_NF4_BLOCKSIZE);
        uint8_t *packed = mmt_arena_alloc(store, (size_t)mmt_nf4_packed_bytes(n), 64);
        float *absmax = mmt_arena_alloc(store, (size_t)blocks * sizeof(float), 64);
        if (!packed || !absmax) return MMT_STATUS_OUT_OF_MEMORY;
        mmt_nf4_quantize(packed, absmax, w, n, MMT_QLINEAR_NF4_BLOCKSIZE);
        if (p->nf4_double_quant) MMT_TRY(double_quant(absmax, blocks));
        q->type = MMT_QMAT_NF4;
        q->nf4 = packed;
        q->absmax = absmax;
        q->code = mmt_nf4_code;
        q->blocksize = MMT_QLINEAR_NF4_BLOCKSIZE;
    } else {
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "quantize: unknown quantization type %d", (int)p->type);
    }
    *s->qw = q;
    *s->w = NULL;
    release_pages(w, (size_t)n * sizeof(float));
    return MMT_OK;
}

mmt_status mmt_qlinears_quantize(mmt_qlinears *set, mmt_arena *store, const mmt_ops *ops,
                                 const mmt_qlinear_policy *policy, int64_t *n_done) {
    int64_t done = 0;
    for (int64_t i = 0; i < set->n; i++) {
        mmt_qlinear_slot *s = &set->slots[i];
        if (*s->qw || !*s->w || !selected(s, policy)) continue;
        MMT_TRY(quantize_one(s, store, ops, policy));
        done++;
    }
    if (n_done) *n_done = done;
    return MMT_OK;
}

void mmt_qlinears_keep_fp32(mmt_qlinears *set, const char *module) {
    for (int64_t i = 0; i < set->n; i++)
        if (strcmp(set->slots[i].module, module) == 0) set->slots[i].keep_fp32 = 1;
}

const mmt_qlinear_slot *mmt_qlinears_find(const mmt_qlinears *set, const char *tensor) {
    size_t len = strlen(tensor);
    if (len < 7 || strcmp(tensor + len - 7, ".weight") != 0) return NULL;
    for (int64_t i = 0; i < set->n; i++)
        if (strlen(set->slots[i].module) == len - 7 && memcmp(set->slots[i].module, tensor, len - 7) == 0)
            return &set->slots[i];
    return NULL;
}

void mmt_quant_options_default(mmt_quant_options *o, mmt_quant_type type) {
    memset(o, 0, sizeof *o);
    o->type = type;
    o->nf4_double_quant = 1;
}

mmt_status mmt_quant_type_parse(const char *name, mmt_quant_type *out) {
    if (name && strcmp(name, "int8") == 0) *out = MMT_QUANT_INT8;
    else if (name && strcmp(name, "nf4") == 0) *out = MMT_QUANT_NF4;
    else return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "unknown quantization '%s' (int8 or nf4)", name ? name : "");
    return MMT_OK;
}

static void policy_of(const mmt_quant_options *o, mmt_qlinear_policy *p) {
    *p = (mmt_qlinear_policy){.type = o->type == MMT_QUANT_INT8 ? MMT_QMAT_S8 : MMT_QMAT_NF4,
                              .keep_edges = o->keep_edge_layers, .keep_outside = o->keep_projections,
                              .nf4_double_quant = o->nf4_double_quant};
}

mmt_status mmt_qlinears_quantize_slot(mmt_qlinears *set, int64_t index, mmt_arena *store, const mmt_ops *ops,
                                      const mmt_quant_options *o) {
    if (!o || o->type == MMT_QUANT_NONE) return MMT_OK;
    if (o->type != MMT_QUANT_INT8 && o->type != MMT_QUANT_NF4)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "quantize: no quantization type given (int8 or nf4)");
    mmt_qlinear_slot *s = &set->slots[index];
    mmt_qlinear_policy p;
    policy_of(o, &p);
    if (*s->qw || !*s->w || !selected(s, &p)) return MMT_OK;
    return quantize_one(s, store, ops, &p);
}

mmt_status mmt_qlinears_quantize_as(mmt_qlinears *set, mmt_arena *store, const mmt_ops *ops,
                                    const mmt_quant_options *o, int64_t *n_done) {
    if (!o || (o->type != MMT_QUANT_INT8 && o->type != MMT_QUANT_NF4))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "quantize: no quantization type given (int8 or nf4)");
    mmt_qlinear_policy p;
    policy_of(o, &p);
    return mmt_qlinears_quantize(set, store, ops, &p, n_done);
}
