/*
 * test_train_learns.c — each training method actually learns a small task made here.
 *
 * The task (learn_task.h): 12 image–text pairs on the tiny fixture CLIP (random weights, so
 * the base model is at chance). Images are smooth random colour fields (distinct per pair),
 * texts are distinct short captions. Each method trains 40 AdamW steps on batches of 12 through the
 * training view and must (margins, not "it runs"):
 *   - lower the contrastive loss to at most 60% of its starting value, and
 *   - raise image->text recall@1 on the pairs from the base model's to >= base + 0.4
 *     (from ~1/12 to most of the 12).
 */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "learn_task.h"
#include "models/clip.h"
#include "models/clip_train.h"
#include "peft/bottleneck_config.h"
#include "peft/peft_config.h"
#include "train/clip_task.h"

static void learn(const char *method) {
    learn_task t;
    if (!learn_task_load(&t)) return;
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct = NULL;
    CHECK_OK(mmt_clip_train_create(t.model, &o, &ct));
    float base_r1 = recall_at_1(ct, &t);
    mmt_adapter *ad = NULL;
    mmt_peft_config pc;
    int have = 0;
    double lr = 1e-2;
    if (!strcmp(method, "full")) {
        CHECK(mmt_clip_train_make_full(ct) == MMT_OK);
        lr = 2e-3;
    } else if (!strcmp(method, "adapter")) { /* bottleneck adapters after attention and MLP */
        mmt_bottleneck_config bc;
        mmt_bottleneck_config_default(&bc);
        bc.reduction_factor = 4;
        CHECK_MSG(mmt_bottleneck_attach(mmt_clip_train_iface(ct), &bc, 1, 1, &ad) == MMT_OK, "%s", mmt_last_error());
    } else {
        CHECK(mmt_peft_config_default(&pc, !strcmp(method, "ia3") ? MMT_PEFT_IA3 : MMT_PEFT_LORA) == MMT_OK);
        have = 1;
        const char *lora_t[] = {"q_proj", "v_proj", "fc1"};
        const char *ia3_t[] = {"k_proj", "v_proj", "fc2"}, *ff[] = {"fc2"};
        if (!strcmp(method, "ia3")) {
            CHECK(mmt_peft_names_set_list(&pc.target_modules, ia3_t, 3) == MMT_OK);
            CHECK(mmt_peft_names_set_list(&pc.feedforward_modules, ff, 1) == MMT_OK);
            lr = 5e-2;
        } else {
            pc.r = 4;
            pc.lora_alpha = 8;
            pc.use_dora = !strcmp(method, "dora");
            CHECK(mmt_peft_names_set_list(&pc.target_modules, lora_t, 3) == MMT_OK);
        }
        CHECK_MSG(mmt_adapter_from_config(mmt_clip_train_iface(ct), &pc, 1, 1, &ad) == MMT_OK, "%s", mmt_last_error());
    }
    double first, loss;
    learn_task_train(ct, &t, lr, 40, &first, &loss);
    learn_task_check(method, first, loss, base_r1, recall_at_1(ct, &t), 0.6, 0.4f);
    mmt_adapter_free(ad);
    if (have) mmt_peft_config_free(&pc);
    mmt_clip_train_free(ct);
    learn_task_free(&t);
}

static void test_lora_learns(void) { learn("lora"); }
static void test_ia3_learns(void) { learn("ia3"); }
static void test_dora_learns(void) { learn("dora"); }
static void test_bottleneck_learns(void) { learn("adapter"); }
static void test_full_finetuning_learns(void) { learn("full"); }

int main(void) {
    RUN(test_lora_learns);
    RUN(test_ia3_learns);
    RUN(test_dora_learns);
    RUN(test_bottleneck_learns);
    RUN(test_full_finetuning_learns);
    return check_summary();
}
