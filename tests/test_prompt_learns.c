/*
 * test_prompt_learns.c — prompt and prefix tuning actually learn (the task of
 * test_train_learns.c, in learn_task.h: 12 image–text pairs on the tiny random fixture CLIP,
 * smooth random colour fields and distinct captions, so the base model is at chance).
 *
 * Each method trains AdamW steps on batches of 12 through the training view and must
 * (margins, not "it runs") lower the contrastive loss to at most `loss_ratio` of its start
 * and raise image->text recall@1 on the pairs by at least `gain` over the base model's; all
 * are held to test_train_learns.c's margins, 0.6 and +0.4 (observed: prompt 0.27 / +0.58,
 * VPT-deep 0.36 / +0.67, prefix and prefix projection 0.01 / +0.92, LoRA + prompts 0.06 /
 * +0.92). Shared tokens carry less capacity per step than per-layer weights (text prompts are
 * the same for every caption), so the prompt methods get more steps and a larger rate.
 */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "learn_task.h"
#include "models/clip.h"
#include "models/clip_train.h"
#include "peft/peft_config.h"
#include "peft/prompt.h"
#include "train/clip_task.h"

typedef struct method {
    const char *name;
    mmt_prompt_settings s;
    int with_lora;
    double lr;
    int steps;
    double loss_ratio;
    float gain;
} method;

static void learn(const method *me) {
    learn_task t;
    if (!learn_task_load(&t)) return;
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct = NULL;
    CHECK_OK(mmt_clip_train_create(t.model, &o, &ct));
    float base_r1 = recall_at_1(ct, &t);
    mmt_adapter *ad = NULL;
    mmt_peft_config pc;
    memset(&pc, 0, sizeof pc);
    if (me->with_lora) {
        const char *targets[] = {"q_proj", "v_proj"};
        CHECK_OK(mmt_peft_config_default(&pc, MMT_PEFT_LORA));
        pc.r = 2;
        pc.lora_alpha = 4;
        CHECK_OK(mmt_peft_names_set_list(&pc.target_modules, targets, 2));
        CHECK_OK(mmt_adapter_from_config(mmt_clip_train_iface(ct), &pc, 1, 1, &ad));
    }
    mmt_prompt *pr = NULL;
    CHECK_OK(mmt_prompt_attach(mmt_clip_train_iface(ct), &me->s, &pr));
    double first, loss;
    learn_task_train(ct, &t, me->lr, pr ? me->steps : 0, &first, &loss);
    learn_task_check(me->name, first, loss, base_r1, recall_at_1(ct, &t), me->loss_ratio, me->gain);
    mmt_prompt_free(pr);
    mmt_adapter_free(ad);
    mmt_peft_config_free(&pc);
    mmt_clip_train_free(ct);
    learn_task_free(&t);
}

static mmt_prompt_settings S(int64_t text, int64_t visual, int deep, int64_t prefix, int projection, int vision_prefix) {
    mmt_prompt_settings s;
    memset(&s, 0, sizeof s);
    s.text_tokens = text;
    s.visual_tokens = visual;
    s.visual_deep = deep;
    s.prefix_tokens = prefix;
    s.prefix_projection = projection;
    s.prefix_vision = vision_prefix;
    s.seed = 1;
    s.trainable = 1;
    return s;
}

static void test_text_prompt_learns(void) {
    method m = {"prompt", S(8, 0, 0, 0, 0, 0), 0, 5e-2, 120, 0.6, 0.4f};
    learn(&m);
}
static void test_visual_prompt_learns(void) {
    method m = {"visual-prompt deep", S(0, 8, 1, 0, 0, 0), 0, 5e-2, 80, 0.6, 0.4f};
    learn(&m);
}
static void test_prefix_learns(void) {
    method m = {"prefix (text + vision)", S(0, 0, 0, 8, 0, 1), 0, 5e-2, 80, 0.6, 0.4f};
    learn(&m);
}
static void test_prefix_projection_learns(void) {
    method m = {"prefix projection", S(0, 0, 0, 8, 1, 1), 0, 5e-3, 80, 0.6, 0.4f};
    learn(&m);
}
static void test_lora_with_prompts_learns(void) {
    method m = {"lora + text + visual prompts", S(4, 4, 0, 0, 0, 0), 1, 1e-2, 40, 0.6, 0.4f};
    learn(&m);
}

int main(void) {
    RUN(test_text_prompt_learns);
    RUN(test_visual_prompt_learns);
    RUN(test_prefix_learns);
    RUN(test_prefix_projection_learns);
    RUN(test_lora_with_prompts_learns);
    return check_summary();
}
