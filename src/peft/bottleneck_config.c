/* bottleneck_config.c — bottleneck adapter settings, their adapter_config.json, and attaching
 * them to a model view (see bottleneck_config.h). */
#include "peft/bottleneck_config.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"

void mmt_bottleneck_config_default(mmt_bottleneck_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->reduction_factor = 16;
    cfg->placement = MMT_BOTTLENECK_AT_ATTN | MMT_BOTTLENECK_AT_MLP;
    cfg->act = MMT_BOTTLENECK_RELU;
    cfg->towers = MMT_SCOPE_BOTH;
}

int mmt_bottleneck_placement_parse(const char *name, int *placement) {
    if (!strcmp(name, "attn")) *placement = MMT_BOTTLENECK_AT_ATTN;
    else if (!strcmp(name, "mlp")) *placement = MMT_BOTTLENECK_AT_MLP;
    else if (!strcmp(name, "both")) *placement = MMT_BOTTLENECK_AT_ATTN | MMT_BOTTLENECK_AT_MLP;
    else return 0;
    return 1;
}

int mmt_bottleneck_act_parse(const char *name, mmt_bottleneck_act *act) {
    if (!strcmp(name, "relu")) *act = MMT_BOTTLENECK_RELU;
    else if (!strcmp(name, "gelu")) *act = MMT_BOTTLENECK_GELU;
    else return 0;
    return 1;
}

static const char *placement_name(int p) {
    return p == MMT_BOTTLENECK_AT_ATTN ? "attn" : p == MMT_BOTTLENECK_AT_MLP ? "mlp" : "both";
}

mmt_status mmt_bottleneck_config_probe(const char *path, int *is) {
    *is = 0;
    mmt_json_doc *doc = NULL;
    MMT_TRY(mmt_json_parse_file(path, &doc));
    const char *type = NULL;
    mmt_status s = mmt_json_get_string(mmt_json_root(doc), "peft_type", "", &type, path, "");
    if (s == MMT_OK) *is = strcmp(type, MMT_BOTTLENECK_PEFT_TYPE) == 0;
    mmt_json_free(doc);
    return s;
}

mmt_status mmt_bottleneck_config_load(const char *path, mmt_bottleneck_config *cfg) {
    mmt_bottleneck_config_default(cfg);
    snprintf(cfg->source, sizeof cfg->source, "%s", path);
    mmt_json_doc *doc = NULL;
    MMT_TRY(mmt_json_parse_file(path, &doc));
    const mmt_json *root = mmt_json_root(doc);
    const char *type = "", *placement = "both", *act = "relu", *towers = "both", *base = "";
    mmt_status s = root->type == MMT_JSON_OBJECT ? MMT_OK : mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: expected a JSON object", path);
    if (s == MMT_OK) s = mmt_json_get_string(root, "peft_type", "", &type, path, "");
    if (s == MMT_OK && strcmp(type, MMT_BOTTLENECK_PEFT_TYPE) != 0)
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: peft_type is \"%s\", not \"%s\"", path, type, MMT_BOTTLENECK_PEFT_TYPE);
    if (s == MMT_OK) s = mmt_json_get_int(root, "reduction_factor", 16, &cfg->reduction_factor, path, "");
    if (s == MMT_OK) s = mmt_json_get_string(root, "placement", "both", &placement, path, "");
    if (s == MMT_OK) s = mmt_json_get_string(root, "activation", "relu", &act, path, "");
    if (s == MMT_OK) s = mmt_json_get_string(root, "towers", "both", &towers, path, "");
    if (s == MMT_OK) s = mmt_json_get_string(root, "base_model_name_or_path", "", &base, path, "");
    if (s == MMT_OK && cfg->reduction_factor < 1)
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: reduction_factor must be at least 1", path);
    if (s == MMT_OK && !mmt_bottleneck_placement_parse(placement, &cfg->placement))
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: placement: expected attn, mlp or both, got \"%s\"", path, placement);
    if (s == MMT_OK && !mmt_bottleneck_act_parse(act, &cfg->act))
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: activation: expected relu or gelu, got \"%s\"", path, act);
    if (s == MMT_OK && !mmt_peft_scope_parse(towers, &cfg->towers))
        s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: towers: expected both, text or vision, got \"%s\"", path, towers);
    if (s == MMT_OK) snprintf(cfg->base_model, sizeof cfg->base_model, "%s", base);
    const mmt_json *layers = s == MMT_OK ? mmt_json_get(root, "layers_to_transform") : NULL;
    if (layers && layers->type != MMT_JSON_NULL) {
        if (layers->type != MMT_JSON_ARRAY || layers->len > MMT_BOTTLENECK_MAX_LAYERS)
            s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: layers_to_transform: expected null or a list of at most %d layer indices",
                         path, MMT_BOTTLENECK_MAX_LAYERS);
        for (size_t i = 0; s == MMT_OK && i < layers->len; i++) {
            const mmt_json *v = &layers->items[i];
            if (v->type != MMT_JSON_NUMBER || !v->is_integer || v->integer < 0)
                s = mmt_fail(MMT_STATUS_BAD_FORMAT, "%s: layers_to_transform[%zu]: expected a layer index", path, i);
            else
                cfg->layers[cfg->n_layers++] = v->integer;
        }
    }
    mmt_json_free(doc);
    return s;
}

mmt_status mmt_bottleneck_config_save(const mmt_bottleneck_config *cfg, const char *path) {
    mmt_strbuf b = {0};
    mmt_strbuf_printf(&b, "{\n  \"activation\": \"%s\",\n", cfg->act == MMT_BOTTLENECK_GELU ? "gelu" : "relu");
    mmt_strbuf_printf(&b, "  \"base_model_name_or_path\": ");
    if (cfg->base_model[0]) mmt_strbuf_json_string(&b, cfg->base_model, strlen(cfg->base_model));
    else mmt_strbuf_printf(&b, "null");
    mmt_strbuf_printf(&b, ",\n  \"layers_to_transform\": ");
    if (cfg->n_layers == 0) {
        mmt_strbuf_printf(&b, "null");
    } else {
        mmt_strbuf_printf(&b, "[");
        for (int64_t i = 0; i < cfg->n_layers; i++)
            mmt_strbuf_printf(&b, "%s\n    %lld", i ? "," : "", (long long)cfg->layers[i]);
        mmt_strbuf_printf(&b, "\n  ]");
    }
    mmt_strbuf_printf(&b, ",\n  \"peft_type\": \"%s\",\n  \"placement\": \"%s\",\n  \"reduction_factor\": %lld,\n"
                          "  \"towers\": \"%s\"\n}",
                      MMT_BOTTLENECK_PEFT_TYPE, placement_name(cfg->placement), (long long)cfg->reduction_factor,
                      mmt_peft_scope_name(cfg->towers));
    mmt_status s = b.failed ? MMT_STATUS_OUT_OF_MEMORY : mmt_file_write_atomic(path, b.data, b.len);
    mmt_strbuf_free(&b);
    return s;
}

/* The attachment proper; messages without the config's file (mmt_bottleneck_attach adds it). */
static mmt_status bottleneck_attach(const mmt_model_iface *model, const mmt_bottleneck_config *cfg,
                                    uint64_t seed, int trainable, mmt_adapter **out) {
    if (cfg->reduction_factor < 1)
        return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "the bottleneck reduction factor must be at least 1");
    const mmt_tower_dims *tw[2] = {&model->dims.text, &model->dims.vision};
    const char *prefix[2] = {"text_model", "vision_model"};
    int use[2] = {cfg->towers != MMT_SCOPE_VISION, cfg->towers != MMT_SCOPE_TEXT};
    for (int64_t i = 0; i < cfg->n_layers; i++) {
        int found = 0;
        for (int k = 0; k < 2; k++) found |= use[k] && cfg->layers[i] < tw[k]->layers;
        if (!found)
            return mmt_fail(MMT_STATUS_INVALID_ARGUMENT, "bottleneck adapters: layer %lld is not in the %s tower%s",
                            (long long)cfg->layers[i], cfg->towers == MMT_SCOPE_BOTH ? "text or vision" : mmt_peft_scope_name(cfg->towers),
                            cfg->towers == MMT_SCOPE_BOTH ? "s" : "");
    }
    int64_t cap = 2 * (tw[0]->layers + tw[1]->layers), n = 0;
    mmt_adapter_target *targets = mmt_calloc((size_t)cap, sizeof *targets);
    char *names = mmt_calloc((size_t)cap, 96);
    mmt_status s = targets && names ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    for (int k = 0; s == MMT_OK && k < 2; k++) {
        if (!use[k]) continue;
        int64_t D = tw[k]->hidden / cfg->reduction_factor;
        for (int64_t li = 0; li < tw[k]->layers; li++) {
            int chosen = cfg->n_layers == 0;
            for (int64_t j = 0; j < cfg->n_layers && !chosen; j++) chosen = cfg->layers[j] == li;
            if (!chosen) continue;
            for (int place = MMT_BOTTLENECK_AT_ATTN; place <= MMT_BOTTLENECK_AT_MLP; place <<= 1) {
                if (!(cfg->placement & place)) continue;
                char *name = names + n * 96;
                snprintf(name, 96, "%s.encoder.layers.%lld.adapter_%s", prefix[k], (long long)li,
                         place == MMT_BOTTLENECK_AT_ATTN ? "attn" : "mlp");
                targets[n].module = name;
                targets[n].r = D > 0 ? D : 1;
                n++;
            }
        }
    }
    if (s == MMT_OK) {
        mmt_adapter_settings st = {MMT_ADAPTER_BOTTLENECK, 0, 0.0f, seed, trainable, 0, cfg->act};
        s = mmt_adapter_attach(model, &st, targets, n, out);
    }
    mmt_free(targets);
    mmt_free(names);
    return s;
}

mmt_status mmt_bottleneck_attach(const mmt_model_iface *model, const mmt_bottleneck_config *cfg, uint64_t seed,
                                 int trainable, mmt_adapter **out) {
    *out = NULL;
    mmt_status s = bottleneck_attach(model, cfg, seed, trainable, out);
    if (s != MMT_OK && cfg->source[0]) s = mmt_error_prefix(s, "%s: ", cfg->source);
    return s;
}
