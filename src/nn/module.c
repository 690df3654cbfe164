/* module.c — module lists (see module.h). */
#include "nn/module.h"

#include <string.h>

#include "core/alloc.h"

void mmt_modules_free(mmt_module_info *modules, int64_t n) {
    if (!modules) return;
    for (int64_t i = 0; i < n; i++) mmt_free(modules[i].name);
    mmt_free(modules);
}

int64_t mmt_module_find(const mmt_module_info *modules, int64_t n, const char *name) {
    for (int64_t i = 0; i < n; i++)
        if (strcmp(modules[i].name, name) == 0) return i;
    return -1;
}

const char *mmt_module_kind_name(mmt_module_kind kind) {
    switch (kind) {
    case MMT_MODULE_LINEAR: return "Linear";
    case MMT_MODULE_CONV2D: return "Conv2d";
    case MMT_MODULE_LAYERNORM: return "LayerNorm";
    case MMT_MODULE_EMBEDDING: return "Embedding";
    case MMT_MODULE_ACTIVATION: return "activation";
    case MMT_MODULE_CONTAINER: break;
    }
    return "container";
}

const char *mmt_tower_name(mmt_tower tower) {
    return tower == MMT_TOWER_TEXT ? "text" : tower == MMT_TOWER_VISION ? "vision" : "none";
}
