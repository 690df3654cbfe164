/* peft_keys.c — the names and shapes PEFT gives adapter tensors on disk (see peft_keys.h). */
#include "peft/peft_keys.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/json.h"

static const char *suffix_of(mmt_peft_tensor_kind kind) {
    switch (kind) {
    case MMT_PEFT_TENSOR_LORA_A: return ".lora_A.weight";
    case MMT_PEFT_TENSOR_LORA_B: return ".lora_B.weight";
    case MMT_PEFT_TENSOR_LORA_EMBEDDING_A: return ".lora_embedding_A";
    case MMT_PEFT_TENSOR_LORA_EMBEDDING_B: return ".lora_embedding_B";
    case MMT_PEFT_TENSOR_LORA_MAGNITUDE: return ".lora_magnitude_vector";
    case MMT_PEFT_TENSOR_IA3: return ".ia3_l";
    case MMT_PEFT_TENSOR_BASE_BIAS: return ".base_layer.bias";
    case MMT_PEFT_TENSOR_BIAS: return ".bias";
    case MMT_PEFT_TENSOR_SAVED:
    case MMT_PEFT_TENSOR_PROMPT: break;
    }
    return NULL;
}

char *mmt_peft_key(const char *module, mmt_peft_tensor_kind kind) {
    const char *suffix = suffix_of(kind);
    if (!suffix) return NULL;
    mmt_strbuf b = {0};
    mmt_strbuf_printf(&b, "%s%s%s", MMT_PEFT_KEY_PREFIX, module, suffix);
    if (b.failed) {
        mmt_strbuf_free(&b);
        return NULL;
    }
    return b.data;
}

mmt_status mmt_peft_key_parse(const char *key, char **module, mmt_peft_tensor_kind *kind) {
    *module = NULL;
    if (strcmp(key, MMT_PEFT_PROMPT_KEY) == 0) {
        *kind = MMT_PEFT_TENSOR_PROMPT;
        return MMT_OK;
    }
    size_t prefix = strlen(MMT_PEFT_KEY_PREFIX);
    if (strncmp(key, MMT_PEFT_KEY_PREFIX, prefix) != 0) return MMT_STATUS_NOT_FOUND;
    const char *rest = key + prefix;
    size_t n = strlen(rest);
    static const mmt_peft_tensor_kind order[] = {
        MMT_PEFT_TENSOR_LORA_A, MMT_PEFT_TENSOR_LORA_B, MMT_PEFT_TENSOR_LORA_EMBEDDING_A,
        MMT_PEFT_TENSOR_LORA_EMBEDDING_B, MMT_PEFT_TENSOR_LORA_MAGNITUDE, MMT_PEFT_TENSOR_IA3,
        MMT_PEFT_TENSOR_BASE_BIAS, MMT_PEFT_TENSOR_BIAS};
    const char *cut = NULL;
    for (size_t i = 0; i < sizeof order / sizeof *order && !cut; i++) {
        const char *s = suffix_of(order[i]);
        size_t k = strlen(s);
        if (n > k && strcmp(rest + n - k, s) == 0) {
            cut = rest + n - k;
            *kind = order[i];
        }
    }
    static const char *const saved[] = {".weight", ".class_embedding"};
    for (size_t i = 0; i < 2 && !cut; i++) {
        size_t k = strlen(saved[i]);
        if (n > k && strcmp(rest + n - k, saved[i]) == 0) {
            cut = rest + n - k;
            *kind = MMT_PEFT_TENSOR_SAVED;
        }
    }
    if (!cut) return MMT_STATUS_NOT_FOUND;
    *module = mmt_strndup(rest, (size_t)(cut - rest));
    return *module ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
}

/* ---------------------------------------------------------------------------------- */
/* The full list                                                                      */

typedef struct list_builder {
    mmt_peft_tensor *items; /* owned until handed over */
    int64_t n, cap;
    int failed;
} list_builder;

/* Appends a tensor whose key is prefix + printf(fmt); shape has ndim entries. */
static void add(list_builder *b, mmt_peft_tensor_kind kind, int64_t module, int ndim, const int64_t *shape,
                const char *fmt, ...) MMT_PRINTF(6, 7);
static void add(list_builder *b, mmt_peft_tensor_kind kind, int64_t module, int ndim, const int64_t *shape,
                const char *fmt, ...) {
    if (b->failed) return;
    if (b->n == b->cap) {
        int64_t cap = b->cap ? b->cap * 2 : 64;
        mmt_peft_tensor *items = mmt_realloc(b->items, (size_t)cap * sizeof *items);
        if (!items) {
            b->failed = 1;
            return;
        }
        b->items = items;
        b->cap = cap;
    }
    char key[512];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(key, sizeof key, fmt, ap);
    va_end(ap);
    mmt_peft_tensor *t = &b->items[b->n];
    memset(t, 0, sizeof *t);
    if (len < 0 || (size_t)len >= sizeof key || !(t->key = mmt_strdup(key))) {
        b->failed = 1;
        return;
    }
    t->kind = kind;
    t->module = module;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    b->n++;
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define PFX MMT_PEFT_KEY_PREFIX

static void add_lora(list_builder *b, const mmt_peft_config *cfg, const mmt_module_info *mod, int64_t m,
                     const mmt_peft_target *t) {
    const int64_t r = t->r, in = mod->in_features, out = mod->out_features;
    const char *name = mod->name;
    if (mod->kind == MMT_MODULE_EMBEDDING) {
        add(b, MMT_PEFT_TENSOR_LORA_EMBEDDING_A, m, 2, SHAPE(r, in), PFX "%s.lora_embedding_A", name);
        add(b, MMT_PEFT_TENSOR_LORA_EMBEDDING_B, m, 2, SHAPE(out, r), PFX "%s.lora_embedding_B", name);
        if (cfg->use_dora)
            add(b, MMT_PEFT_TENSOR_LORA_MAGNITUDE, m, 1, SHAPE(out), PFX "%s.lora_magnitude_vector", name);
    } else if (mod->kind == MMT_MODULE_CONV2D) {
        const int64_t C = mod->in_channels, k = mod->kernel_size;
        add(b, MMT_PEFT_TENSOR_LORA_A, m, 4, SHAPE(r, C, k, k), PFX "%s.lora_A.weight", name);
        add(b, MMT_PEFT_TENSOR_LORA_B, m, 4, SHAPE(out, r, 1, 1), PFX "%s.lora_B.weight", name);
        if (cfg->use_dora)
            add(b, MMT_PEFT_TENSOR_LORA_MAGNITUDE, m, 4, SHAPE(1, out, 1, 1), PFX "%s.lora_magnitude_vector", name);
    } else {
        add(b, MMT_PEFT_TENSOR_LORA_A, m, 2, SHAPE(r, in), PFX "%s.lora_A.weight", name);
        add(b, MMT_PEFT_TENSOR_LORA_B, m, 2, SHAPE(out, r), PFX "%s.lora_B.weight", name);
        if (cfg->use_dora)
            add(b, MMT_PEFT_TENSOR_LORA_MAGNITUDE, m, 1, SHAPE(out), PFX "%s.lora_magnitude_vector", name);
    }
}

static void add_ia3(list_builder *b, const mmt_module_info *mod, int64_t m, const mmt_peft_target *t) {
    if (mod->kind == MMT_MODULE_CONV2D) {
        int64_t c = t->feedforward ? mod->in_channels : mod->out_features;
        add(b, MMT_PEFT_TENSOR_IA3, m, 4, SHAPE(1, c, 1, 1), PFX "%s.ia3_l", mod->name);
    } else if (t->feedforward) {
        add(b, MMT_PEFT_TENSOR_IA3, m, 2, SHAPE(1, mod->in_features), PFX "%s.ia3_l", mod->name);
    } else {
        add(b, MMT_PEFT_TENSOR_IA3, m, 2, SHAPE(mod->out_features, 1), PFX "%s.ia3_l", mod->name);
    }
}

/* The saved module that holds module m (itself or an ancestor), or -1. */
static int64_t saved_container(const mmt_module_info *mods, const mmt_peft_targets *targets, int64_t m) {
    for (int64_t k = 0; k < targets->n_saved; k++) {
        const char *outer = mods[targets->saved[k]].name;
        size_t len = strlen(outer);
        if (targets->saved[k] == m || (strncmp(mods[m].name, outer, len) == 0 && mods[m].name[len] == '.'))
            return targets->saved[k];
    }
    return -1;
}

/* bias "all": every bias in the wrapped model's state dict, named as PEFT saves it. */
static void add_all_biases(list_builder *b, const mmt_module_info *mods, int64_t n, const mmt_peft_targets *targets) {
    for (int64_t m = 1; m < n; m++) {
        const mmt_module_info *mod = &mods[m];
        if (!mod->has_bias) continue;
        const int64_t shape[1] = {mod->out_features};
        int64_t s = saved_container(mods, targets, m);
        if (mmt_peft_targets_find(targets, m)) {
            add(b, MMT_PEFT_TENSOR_BASE_BIAS, m, 1, shape, PFX "%s.base_layer.bias", mod->name);
        } else if (s < 0) {
            add(b, MMT_PEFT_TENSOR_BIAS, m, 1, shape, PFX "%s.bias", mod->name);
        } else if (s == m) { /* ModulesToSaveWrapper around this very module */
            add(b, MMT_PEFT_TENSOR_SAVED, m, 1, shape, PFX "%s.original_module.bias", mod->name);
            add(b, MMT_PEFT_TENSOR_SAVED, m, 1, shape, PFX "%s.modules_to_save.bias", mod->name);
        } else { /* inside a saved container: the adapter name is not at the end, so it stays */
            const char *outer = mods[s].name, *rel = mod->name + strlen(outer) + 1;
            add(b, MMT_PEFT_TENSOR_SAVED, m, 1, shape, PFX "%s.original_module.%s.bias", outer, rel);
            add(b, MMT_PEFT_TENSOR_SAVED, m, 1, shape, PFX "%s.modules_to_save.default.%s.bias", outer, rel);
        }
    }
}

/* Every parameter at or under a saved module, under its own name. */
static void add_saved(list_builder *b, const mmt_module_info *mods, int64_t n, int64_t s) {
    const char *outer = mods[s].name;
    size_t len = strlen(outer);
    for (int64_t m = s; m < n; m++) {
        const mmt_module_info *mod = &mods[m];
        if (m != s && !(strncmp(mod->name, outer, len) == 0 && mod->name[len] == '.')) continue;
        const int64_t out = mod->out_features, in = mod->in_features;
        switch (mod->kind) {
        case MMT_MODULE_LINEAR: add(b, MMT_PEFT_TENSOR_SAVED, m, 2, SHAPE(out, in), PFX "%s.weight", mod->name); break;
        case MMT_MODULE_CONV2D:
            add(b, MMT_PEFT_TENSOR_SAVED, m, 4, SHAPE(out, mod->in_channels, mod->kernel_size, mod->kernel_size),
                PFX "%s.weight", mod->name);
            break;
        case MMT_MODULE_LAYERNORM: add(b, MMT_PEFT_TENSOR_SAVED, m, 1, SHAPE(out), PFX "%s.weight", mod->name); break;
        case MMT_MODULE_EMBEDDING: add(b, MMT_PEFT_TENSOR_SAVED, m, 2, SHAPE(in, out), PFX "%s.weight", mod->name); break;
        case MMT_MODULE_CONTAINER:
            if (strcmp(mod->type_name, "CLIPVisionEmbeddings") == 0) { /* nn.Parameter class_embedding */
                char patch[300];
                snprintf(patch, sizeof patch, "%s.patch_embedding", mod->name);
                int64_t p = mmt_module_find(mods, n, patch);
                int64_t C = p >= 0 ? mods[p].out_features : 0;
                add(b, MMT_PEFT_TENSOR_SAVED, m, 1, SHAPE(C), PFX "%s.class_embedding", mod->name);
            }
            break;
        case MMT_MODULE_ACTIVATION: break;
        }
        if (mod->has_bias) add(b, MMT_PEFT_TENSOR_SAVED, m, 1, SHAPE(out), PFX "%s.bias", mod->name);
    }
}

static mmt_status add_prompt(list_builder *b, const mmt_peft_config *cfg) {
    const int64_t V = cfg->num_virtual_tokens, D = cfg->token_dim;
    if (V <= 0 || D <= 0 || (cfg->peft_type == MMT_PEFT_PREFIX_TUNING && cfg->num_layers <= 0))
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT,
                        "%s: num_virtual_tokens, token_dim%s must be set to give the prompt_embeddings shape "
                        "(mmt_peft_config_fill_from_model fills them as PEFT does)",
                        mmt_peft_type_name(cfg->peft_type),
                        cfg->peft_type == MMT_PEFT_PREFIX_TUNING ? " and num_layers" : "");
    if (cfg->peft_type == MMT_PEFT_PROMPT_TUNING) {
        int64_t S = cfg->num_transformer_submodules > 0 ? cfg->num_transformer_submodules : 1;
        add(b, MMT_PEFT_TENSOR_PROMPT, -1, 2, SHAPE(V * S, D), "%s", MMT_PEFT_PROMPT_KEY);
    } else {
        add(b, MMT_PEFT_TENSOR_PROMPT, -1, 2, SHAPE(V, cfg->num_layers * 2 * D), "%s", MMT_PEFT_PROMPT_KEY);
    }
    return MMT_OK;
}

mmt_status mmt_peft_tensors(const mmt_peft_config *cfg, const mmt_module_info *modules, int64_t n_modules,
                            const mmt_peft_targets *targets, mmt_peft_tensor **out, int64_t *n) {
    *out = NULL;
    *n = 0;
    list_builder b = {0};
    mmt_status s = MMT_OK;
    if (cfg->peft_type == MMT_PEFT_PROMPT_TUNING || cfg->peft_type == MMT_PEFT_PREFIX_TUNING)
        s = add_prompt(&b, cfg);
    for (int64_t i = 0; s == MMT_OK && i < targets->n; i++) {
        const mmt_peft_target *t = &targets->items[i];
        const mmt_module_info *mod = &modules[t->module];
        if (cfg->peft_type == MMT_PEFT_LORA) {
            add_lora(&b, cfg, mod, t->module, t);
            if (cfg->bias == MMT_LORA_BIAS_LORA_ONLY && mod->has_bias)
                add(&b, MMT_PEFT_TENSOR_BASE_BIAS, t->module, 1, SHAPE(mod->out_features), PFX "%s.base_layer.bias",
                    mod->name);
        } else {
            add_ia3(&b, mod, t->module, t);
        }
    }
    if (s == MMT_OK && cfg->peft_type == MMT_PEFT_LORA && cfg->bias == MMT_LORA_BIAS_ALL)
        add_all_biases(&b, modules, n_modules, targets);
    for (int64_t k = 0; s == MMT_OK && k < targets->n_saved; k++) add_saved(&b, modules, n_modules, targets->saved[k]);
    if (s == MMT_OK && b.failed) s = mmt_fail(MMT_STATUS_OUT_OF_MEMORY, "out of memory listing adapter tensors");
    if (s != MMT_OK) {
        mmt_peft_tensors_free(b.items, b.n);
        return s;
    }
    *out = b.items;
    *n = b.n;
    return MMT_OK;
}

void mmt_peft_tensors_free(mmt_peft_tensor *tensors, int64_t n) {
    if (!tensors) return;
    for (int64_t i = 0; i < n; i++) mmt_free(tensors[i].key);
    mmt_free(tensors);
}
