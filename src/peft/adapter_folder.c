/*
 * adapter_folder.c — adapter folders (PEFT's layout, and mmtune's bottleneck and prompt
 * files) read onto any model view (nn/model.h); see adapter_folder.h.
 */
#include "peft/adapter_folder.h"

#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "peft/bottleneck_config.h"
#include "peft/target.h"

/* ---- adapters from a PEFT config ------------------------------------------------------ */

mmt_status mmt_adapter_from_config(const mmt_model_iface *model, const mmt_peft_config *cfg,
                                        uint64_t seed, int trainable, mmt_adapter **out) {
    *out = NULL;
    if (cfg->peft_type != MMT_PEFT_LORA && cfg->peft_type != MMT_PEFT_IA3)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "peft_type %s is not supported for this model yet",
                        mmt_peft_type_name(cfg->peft_type));
    if (cfg->peft_type == MMT_PEFT_LORA && cfg->bias != MMT_LORA_BIAS_NONE)
        return mmt_fail(MMT_STATUS_UNSUPPORTED, "LoRA bias other than \"none\" is not supported yet");
    mmt_module_info *mods = NULL;
    int64_t n_mods = 0;
    mmt_peft_targets sel;
    memset(&sel, 0, sizeof sel);
    mmt_adapter_target *targets = NULL;
    mmt_status s = model->list_modules ? model->list_modules(model->ctx, &mods, &n_mods)
                                       : mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: this model family lists no modules", model->source);
    if (s == MMT_OK) s = mmt_peft_select(cfg, mods, n_mods, &sel);
    if (s == MMT_OK) {
        targets = mmt_calloc((size_t)(sel.n > 0 ? sel.n : 1), sizeof *targets);
        if (!targets) s = MMT_STATUS_OUT_OF_MEMORY;
    }
    for (int64_t i = 0; s == MMT_OK && i < sel.n; i++) {
        const mmt_module_info *m = &mods[sel.items[i].module];
        if (m->kind != MMT_MODULE_LINEAR && m->kind != MMT_MODULE_CONV2D) {
            s = mmt_fail(MMT_STATUS_UNSUPPORTED, "%s: %s on a %s module is not supported", m->name,
                         mmt_peft_type_name(cfg->peft_type), m->type_name);
            break;
        }
        targets[i].module = m->name;
        targets[i].r = sel.items[i].r;
        targets[i].alpha = sel.items[i].alpha;
        targets[i].feedforward = sel.items[i].feedforward;
    }
    if (s == MMT_OK) {
        mmt_adapter_settings st = {cfg->peft_type == MMT_PEFT_LORA ? MMT_ADAPTER_LORA : MMT_ADAPTER_IA3,
                                   cfg->use_rslora, (float)cfg->lora_dropout, seed, trainable,
                                   cfg->peft_type == MMT_PEFT_LORA && cfg->use_dora, MMT_BOTTLENECK_RELU};
        s = mmt_adapter_attach(model, &st, targets, sel.n, out);
    }
    /* modules_to_save: trained whole and saved with the adapter. PEFT ignores an entry that
     * matches nothing (unless strict_module_check); here it is an error, like a target. */
    for (int64_t e = 0; s == MMT_OK && cfg->modules_to_save.kind == MMT_PEFT_NAMES_LIST && e < cfg->modules_to_save.n; e++) {
        const char *want = cfg->modules_to_save.items[e];
        int found = 0;
        for (int64_t i = 0; i < sel.n_saved && !found; i++) {
            const char *name = mods[sel.saved[i]].name;
            size_t ln = strlen(name), lw = strlen(want);
            found = ln >= lw && strcmp(name + ln - lw, want) == 0;
        }
        if (!found) s = mmt_fail(MMT_STATUS_NOT_FOUND, "modules_to_save: no module name ends with \"%s\"", want);
    }
    if (s != MMT_OK && *out) {
        mmt_adapter_free(*out);
        *out = NULL;
    }
    for (int64_t i = 0; s == MMT_OK && i < sel.n_saved; i++) {
        const char *name = mods[sel.saved[i]].name;
        s = mmt_adapter_save_modules(*out, &name, 1);
    }
    if (s != MMT_OK && *out) {
        mmt_adapter_free(*out);
        *out = NULL;
    }
    mmt_free(targets);
    mmt_peft_targets_free(&sel);
    mmt_modules_free(mods, n_mods);
    return s;
}

/* Every error about an adapter names its folder: messages raised deeper down that do not
 * already contain it get it as a prefix. */
static mmt_status name_folder(mmt_status s, const char *dir) {
    if (s != MMT_OK && s != MMT_STATUS_OUT_OF_MEMORY && !strstr(mmt_last_error(), dir))
        s = mmt_error_prefix(s, "%s: ", dir);
    return s;
}

mmt_status mmt_adapter_folder_load(const mmt_model_iface *model, const char *dir, int trainable, mmt_adapter **out) {
    *out = NULL;
    char *cfgpath = mmt_path_join(dir, "adapter_config.json");
    char *wpath = mmt_path_join(dir, "adapter_model.safetensors");
    mmt_peft_config cfg;
    memset(&cfg, 0, sizeof cfg);
    mmt_status s = cfgpath && wpath ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    int have_cfg = 0, bottleneck = 0;
    /* mmtune's bottleneck adapters have a config of their own (peft/bottleneck_config.h) */
    if (s == MMT_OK) s = mmt_bottleneck_config_probe(cfgpath, &bottleneck);
    if (s == MMT_OK && bottleneck) {
        mmt_bottleneck_config bc;
        if ((s = mmt_bottleneck_config_load(cfgpath, &bc)) == MMT_OK) s = mmt_bottleneck_attach(model, &bc, 0, trainable, out);
    } else if (s == MMT_OK && (s = mmt_peft_config_load(cfgpath, &cfg)) == MMT_OK) {
        have_cfg = 1;
        s = mmt_adapter_from_config(model, &cfg, 0, trainable, out);
    }
    if (s == MMT_OK && (s = mmt_adapter_load_tensors(*out, wpath)) != MMT_OK) {
        mmt_adapter_free(*out);
        *out = NULL;
    }
    if (have_cfg) mmt_peft_config_free(&cfg);
    mmt_free(cfgpath);
    mmt_free(wpath);
    return name_folder(s, dir);
}

/* ---- prompt / prefix tuning in an adapter folder ------------------------------------------- */

char *mmt_adapter_prompt_dir(const char *dir) {
    char *cfg = mmt_path_join(dir, "adapter_config.json");
    mmt_peft_config pc;
    memset(&pc, 0, sizeof pc);
    char *out = NULL;
    int bottleneck = 0;
    if (!cfg || !mmt_file_exists(cfg) || mmt_bottleneck_config_probe(cfg, &bottleneck) != MMT_OK) {
        mmt_free(cfg);
        return NULL;
    }
    if (!bottleneck && mmt_peft_config_load(cfg, &pc) == MMT_OK) {
        if (pc.peft_type == MMT_PEFT_PROMPT_TUNING || pc.peft_type == MMT_PEFT_PREFIX_TUNING) out = mmt_strdup(dir);
        mmt_peft_config_free(&pc);
    }
    if (!out) { /* beside a LoRA / IA3 / bottleneck adapter */
        char *sub = mmt_path_join(dir, MMT_ADAPTER_PROMPT_SUBDIR), *subcfg = sub ? mmt_path_join(sub, "adapter_config.json") : NULL;
        if (subcfg && mmt_file_exists(subcfg)) out = sub, sub = NULL;
        mmt_free(sub);
        mmt_free(subcfg);
    }
    mmt_free(cfg);
    return out;
}

/* Loads the prompt part saved in dir (a PROMPT_TUNING / PREFIX_TUNING folder). */
static mmt_status prompt_load_dir(const mmt_model_iface *model, const char *dir, int trainable, mmt_prompt **out) {
    *out = NULL;
    char *cfgpath = mmt_path_join(dir, "adapter_config.json");
    char *wpath = mmt_path_join(dir, "adapter_model.safetensors");
    mmt_peft_config cfg;
    memset(&cfg, 0, sizeof cfg);
    mmt_prompt_settings ps;
    mmt_status s = cfgpath && wpath ? MMT_OK : MMT_STATUS_OUT_OF_MEMORY;
    int have_cfg = 0;
    if (s == MMT_OK && (s = mmt_peft_config_load(cfgpath, &cfg)) == MMT_OK) have_cfg = 1;
    if (s == MMT_OK)
        s = mmt_prompt_settings_from_file(&cfg, wpath, &model->dims, &ps);
    if (s == MMT_OK) {
        ps.trainable = trainable;
        s = mmt_prompt_attach(model, &ps, out);
    }
    if (s == MMT_OK && (s = mmt_prompt_load_tensors(*out, wpath)) != MMT_OK) {
        mmt_prompt_free(*out);
        *out = NULL;
    }
    if (have_cfg) mmt_peft_config_free(&cfg);
    mmt_free(cfgpath);
    mmt_free(wpath);
    return name_folder(s, dir);
}

mmt_status mmt_adapter_folders_load(const mmt_model_iface *model, const char *dir, int trainable, mmt_adapter **ad,
                                   mmt_prompt **prompt) {
    *ad = NULL;
    *prompt = NULL;
    char *cfgpath = mmt_path_join(dir, "adapter_config.json");
    mmt_peft_config cfg;
    memset(&cfg, 0, sizeof cfg);
    int bottleneck = 0; /* mmtune's bottleneck adapters: not a PEFT config (peft/bottleneck_config.h) */
    mmt_status s = cfgpath ? mmt_bottleneck_config_probe(cfgpath, &bottleneck) : MMT_STATUS_OUT_OF_MEMORY;
    if (s == MMT_OK && !bottleneck) s = mmt_peft_config_load(cfgpath, &cfg);
    int prompt_only = s == MMT_OK && !bottleneck &&
                      (cfg.peft_type == MMT_PEFT_PROMPT_TUNING || cfg.peft_type == MMT_PEFT_PREFIX_TUNING);
    if (s == MMT_OK && !bottleneck) mmt_peft_config_free(&cfg);
    mmt_free(cfgpath);
    if (s == MMT_OK && !prompt_only) s = mmt_adapter_folder_load(model, dir, trainable, ad);
    char *pdir = s == MMT_OK ? mmt_adapter_prompt_dir(dir) : NULL;
    if (s == MMT_OK && pdir) s = prompt_load_dir(model, pdir, trainable, prompt);
    mmt_free(pdir);
    if (s != MMT_OK) {
        mmt_adapter_free(*ad);
        *ad = NULL;
    }
    return name_folder(s, dir);
}

