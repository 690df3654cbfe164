/*
 * adapter_fixture.h — real adapter folders made through the library for tests that need
 * some on disk (test_adapter_errors.c, test_threads.c).
 *
 * adapter_fixture_save() attaches cfg to a fresh view of model, moves every tensor off its
 * identity start (LoRA B = b_value times a pattern in [-1, 1] instead of 0, IA3 vectors 1 + b_value instead of 1, saved
 * modules + 0.5), so that loading the folder changes what the model computes, and writes
 * adapter_config.json + adapter_model.safetensors into dir (created).
 *
 * adapter_fixture_serve_lora() writes one of the two LoRA folders that test_serve.c and
 * test_serve_ab.c serve as adapters a0 and a1. Header-only.
 */
#ifndef MMT_TESTS_ADAPTER_FIXTURE_H
#define MMT_TESTS_ADAPTER_FIXTURE_H

#include <stdio.h>

#include "check.h"
#include "core/alloc.h"
#include "core/file.h"
#include "models/clip_train.h"
#include "peft/adapter.h"
#include "peft/peft_config.h"
#include "peft/prompt.h"
#include "train/clip_task.h"

static inline void adapter_fixture_save(mmt_clip *model, const mmt_peft_config *cfg, const char *dir, float b_value) {
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct = NULL;
    mmt_adapter *ad = NULL;
    char *w = mmt_path_join(dir, "adapter_model.safetensors");
    CHECK_OK(mmt_mkdirs(dir));
    CHECK_OK(mmt_clip_train_create(model, &o, &ct));
    if (ct) CHECK_OK(mmt_adapter_from_config(mmt_clip_train_iface(ct), cfg, 5, 0, &ad));
    if (ad && w) {
        for (int64_t i = 0; ad->settings.method == MMT_ADAPTER_LORA && i < ad->n; i++)
            for (int64_t j = 0; j < ad->entries[i].linear->out * ad->entries[i].lora.r; j++)
                ad->entries[i].lora.b[j] = b_value * (float)(j % 7 - 3) / 3.0f; /* varied across rows: a
                                                                                   * constant shift would vanish in the next layer norm */
        for (int64_t i = 0; ad->settings.method == MMT_ADAPTER_IA3 && i < ad->n; i++)
            for (int64_t j = 0; j < (ad->entries[i].feedforward ? ad->entries[i].linear->in : ad->entries[i].linear->out); j++)
                ad->entries[i].ia3[j] = 1.0f + b_value;
        for (int64_t i = 0; i < ad->n_saved; i++)
            for (int64_t j = 0; j < ad->saved[i].numel; j++) ad->saved[i].data[j] += 0.5f;
        CHECK_OK(mmt_peft_config_save(cfg, dir));
        CHECK_OK(mmt_adapter_save_tensors(ad, w));
    }
    mmt_free(w);
    mmt_adapter_free(ad);
    mmt_clip_train_free(ct);
}

/* LoRA folder a (0 or 1) of the serve tests, root/lora<a> (its path into dir): a0 is rank 2 on
 * q_proj and v_proj with b_value 0.05, a1 rank 3 on fc1 and k_proj with b_value 0.1. */
static inline void adapter_fixture_serve_lora(mmt_clip *model, const char *root, int a, char *dir, size_t size) {
    const char *tq[] = {"q_proj", "v_proj"}, *tf[] = {"fc1", "k_proj"};
    mmt_peft_config cfg;
    snprintf(dir, size, "%s/lora%d", root, a);
    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_LORA));
    cfg.r = 2 + a;
    CHECK_OK(mmt_peft_names_set_list(&cfg.target_modules, a ? tf : tq, 2));
    adapter_fixture_save(model, &cfg, dir, 0.05f * (float)(a + 1));
    mmt_peft_config_free(&cfg);
}

/* A prompt / prefix tuning folder (settings as peft/prompt.h; tensors from their random
 * initialisation) written into dir (created). */
static inline void adapter_fixture_save_prompt(mmt_clip *model, const mmt_prompt_settings *ps, const char *dir) {
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct = NULL;
    mmt_prompt *p = NULL;
    mmt_peft_config cfg;
    memset(&cfg, 0, sizeof cfg);
    char *w = mmt_path_join(dir, "adapter_model.safetensors");
    CHECK_OK(mmt_mkdirs(dir));
    CHECK_OK(mmt_clip_train_create(model, &o, &ct));
    if (ct) CHECK_OK(mmt_prompt_attach(mmt_clip_train_iface(ct), ps, &p));
    if (p && w) {
        CHECK_OK(mmt_prompt_peft_config(ps, &mmt_clip_train_iface(ct)->dims, NULL, &cfg));
        CHECK_OK(mmt_peft_config_save(&cfg, dir));
        CHECK_OK(mmt_prompt_save_tensors(p, w));
        mmt_peft_config_free(&cfg);
    }
    mmt_free(w);
    mmt_prompt_free(p);
    mmt_clip_train_free(ct);
}

#endif
