/*
 * test_caption_task.c — fine-tuning the GIT captioner through the trainer (train/caption_task.h)
 * on tests/fixtures/git/tiny-cap (a whole snapshot: WordPiece tokenizer.json, processor).
 *   - LoRA on query/value (decoder) and q_proj/v_proj (vision): 60 AdamW steps on 5 photos
 *     with distinct captions bring the loss below a third of its start (a random model cannot
 *     tell the photos apart; the adapter has to learn it);
 *   - the saved adapter, loaded into a fresh run through the PEFT reader, gives the trained
 *     run's logits bitwise;
 *   - full fine-tuning writes a snapshot that mmt_git_load reads back with the trained
 *     logits, bitwise;
 *   - batches pad to the longest caption with [PAD], and padding is not predicted: a batch
 *     of one caption gives the same loss alone and padded beside a longer one;
 *   - prompt tuning (PEFT's PROMPT_TUNING): the TEXT initialisation from "a cup of" is PEFT's
 *     own, bit for bit (tests/fixtures/git_train/prompt_gen, made by
 *     tools/fixtures/make_git_train_fixtures.py: tokenizer(text) ids with [CLS] and [SEP],
 *     repeated to the 4 rows), the RANDOM one is nn.Embedding's N(0, 1) (sample std within
 *     0.25 of 1 over 128 values); 40 steps lower the loss and the saved adapter, read back
 *     through the PEFT reader, gives the trained run's logits bitwise;
 *   - a captioner without tokenizer.json, a caption length outside 3..positions and more
 *     virtual tokens than the positions leave room for are refused with one-line errors.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/file.h"
#include "core/safetensors.h"
#include "data/pairs.h"
#include "data/wordpiece.h"
#include "models/git.h"
#include "peft/adapter_folder.h"
#include "peft/peft_config.h"
#include "peft/prompt.h"
#include "train/caption_task.h"
#include "train/trainer.h"

#define CAP MMT_FIXTURE_DIR "/git/tiny-cap"
#define IMAGES MMT_FIXTURE_DIR "/clip/images"

static char root[] = "/tmp/mmt_captask_XXXXXX";

static mmt_pairs *write_pairs(void) {
    static const char *lines[5][2] = {{"chelsea.jpg", "a gray cat"},
                                      {"rocket_rgba.png", "a rocket in space"},
                                      {"coffee_portrait.jpg", "a cup of coffee"},
                                      {"camera_gray.png", "a man with a camera"},
                                      {"astronaut.png", "an astronaut with a star"}};
    char path[400];
    snprintf(path, sizeof path, "%s/pairs.jsonl", root);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    for (int i = 0; i < 5; i++) fprintf(f, "{\"image_path\": \"%s/%s\", \"text\": \"%s\"}\n", IMAGES, lines[i][0], lines[i][1]);
    fclose(f);
    mmt_pairs *p = NULL;
    CHECK_OK(mmt_pairs_load_jsonl(path, 0, &p));
    return p;
}

/* The loss and logits of run r on all 5 pairs (as one batch), through the task's batching. */
static double eval_loss(mmt_caption_task *t) {
    mmt_train_task tt;
    mmt_caption_task_bind(t, &tt);
    int64_t idx[5] = {0, 1, 2, 3, 4};
    double loss = NAN;
    mmt_git_run_set_eval(mmt_caption_task_run(t), 1);
    CHECK_OK(tt.load_batch(tt.ctx, idx, 5));
    CHECK_OK(tt.forward_loss(tt.ctx, 0, &loss));
    mmt_git_run_set_eval(mmt_caption_task_run(t), 0);
    return loss;
}

static void logits_of(mmt_git_run *r, float *out) {
    static const int32_t ids[2 * 4] = {2, 6, 16, 3, 2, 17, 21, 3}; /* [CLS] a cat [SEP], [CLS] a rocket [SEP]-ish */
    int64_t S = 32;
    float *px = malloc((size_t)(2 * 3 * S * S) * sizeof(float));
    for (int64_t i = 0; i < 2 * 3 * S * S; i++) px[i] = (float)sin(0.01 * (double)i);
    CHECK_OK(mmt_git_run_logits(r, px, ids, 2, 4, out));
    free(px);
}

static void train(mmt_git *m, mmt_pairs *pairs, const mmt_peft_config *peft, const char *out, int64_t steps,
                  double *first, double *last, float *logits) {
    mmt_caption_task_options o = {.peft = peft, .seed = 3};
    mmt_caption_task *t = NULL;
    CHECK_OK(mmt_caption_task_create(m, pairs, &o, &t));
    if (!t) return;
    *first = eval_loss(t);
    mmt_train_task tt;
    mmt_caption_task_bind(t, &tt);
    mmt_train_settings s;
    mmt_train_settings_default(&s);
    s.out = out;
    s.steps = steps;
    s.batch_size = 5;
    s.lr = peft ? 3e-2 : 3e-3;
    s.warmup_steps = 0;
    s.quiet = 1;
    mmt_train_result res;
    CHECK_OK(mmt_train_run(&tt, &s, &res));
    *last = eval_loss(t);
    logits_of(mmt_caption_task_run(t), logits);
    mmt_caption_task_free(t);
}

static void test_lora_learns_and_reloads(void) {
    mmt_git *m = NULL;
    CHECK_OK(mmt_git_load(CAP, &m));
    mmt_pairs *pairs = write_pairs();
    if (!m || !pairs) goto done;
    mmt_peft_config cfg;
    CHECK_OK(mmt_peft_config_default(&cfg, MMT_PEFT_LORA));
    const char *targets[4] = {"query", "value", "q_proj", "v_proj"};
    CHECK_OK(mmt_peft_names_set_list(&cfg.target_modules, targets, 4));
    cfg.r = 4;
    cfg.lora_alpha = 8;
    char out[400];
    snprintf(out, sizeof out, "%s/lora", root);
    int64_t V = mmt_git_config_of(m)->vocab_size, Ni = mmt_git_image_tokens(m);
    float *trained = malloc((size_t)(2 * (Ni + 4) * V) * sizeof(float)), *again = malloc((size_t)(2 * (Ni + 4) * V) * sizeof(float));
    double first = 0, last = 0;
    train(m, pairs, &cfg, out, 60, &first, &last, trained);
    printf("     LoRA: loss %.3f -> %.3f after 60 steps\n", first, last);
    CHECK_MSG(last < first / 3, "LoRA did not learn: loss %.3f -> %.3f", first, last);
    /* the saved adapter, read back as PEFT's files */
    mmt_git_run *r = NULL;
    mmt_adapter *ad = NULL;
    char adir[450];
    snprintf(adir, sizeof adir, "%s/adapter", out);
    CHECK_OK(mmt_git_run_create(m, &r));
    if (r) CHECK_OK(mmt_adapter_folder_load(mmt_git_run_iface(r), adir, 0, &ad));
    if (ad) {
        logits_of(r, again);
        CHECK(memcmp(trained, again, (size_t)(2 * (Ni + 4) * V) * sizeof(float)) == 0);
    }
    mmt_adapter_free(ad);
    mmt_git_run_free(r);
    mmt_peft_config_free(&cfg);
    free(trained), free(again);
done:
    mmt_pairs_free(pairs);
    mmt_git_free(m);
}

static void test_full_writes_a_snapshot(void) {
    mmt_git *m = NULL;
    CHECK_OK(mmt_git_load(CAP, &m));
    mmt_pairs *pairs = write_pairs();
    if (!m || !pairs) goto done;
    char out[400], snap[450];
    snprintf(out, sizeof out, "%s/full", root);
    snprintf(snap, sizeof snap, "%s/adapter", out);
    int64_t V = mmt_git_config_of(m)->vocab_size, Ni = mmt_git_image_tokens(m);
    float *trained = malloc((size_t)(2 * (Ni + 4) * V) * sizeof(float)), *again = malloc((size_t)(2 * (Ni + 4) * V) * sizeof(float));
    double first = 0, last = 0;
    train(m, pairs, NULL, out, 10, &first, &last, trained);
    CHECK_MSG(last < first, "full fine-tuning did not lower the loss: %.3f -> %.3f", first, last);
    mmt_git *saved = NULL;
    mmt_git_run *r = NULL;
    CHECK_OK(mmt_git_load(snap, &saved));
    if (saved) CHECK_OK(mmt_git_run_create(saved, &r));
    if (r) {
        CHECK(mmt_git_tokenizer(saved) != NULL);
        logits_of(r, again);
        CHECK(memcmp(trained, again, (size_t)(2 * (Ni + 4) * V) * sizeof(float)) == 0);
    }
    mmt_git_run_free(r);
    mmt_git_free(saved);
    free(trained), free(again);
done:
    mmt_pairs_free(pairs);
    mmt_git_free(m);
}

static void test_padding_is_not_predicted(void) {
    mmt_git *m = NULL;
    CHECK_OK(mmt_git_load(CAP, &m));
    mmt_pairs *pairs = write_pairs();
    mmt_caption_task *t = NULL;
    mmt_caption_task_options o = {.seed = 1};
    if (m && pairs) CHECK_OK(mmt_caption_task_create(m, pairs, &o, &t));
    if (t) {
        mmt_train_task tt;
        mmt_caption_task_bind(t, &tt);
        mmt_git_run_set_eval(mmt_caption_task_run(t), 1);
        int64_t alone[1] = {0}, with_longer[2] = {0, 4};
        double l1 = 0, l2 = 0, l_long = 0;
        CHECK_OK(tt.load_batch(tt.ctx, alone, 1));
        CHECK_OK(tt.forward_loss(tt.ctx, 0, &l1));
        int64_t longer[1] = {4};
        CHECK_OK(tt.load_batch(tt.ctx, longer, 1));
        CHECK_OK(tt.forward_loss(tt.ctx, 0, &l_long));
        CHECK_OK(tt.load_batch(tt.ctx, with_longer, 2));
        CHECK_OK(tt.forward_loss(tt.ctx, 0, &l2));
        /* the mean over the predicted tokens of both (all ids but [CLS]) */
        const mmt_wordpiece *tok = mmt_git_tokenizer(m);
        int64_t n1 = 0, n2 = 0;
        CHECK_OK(mmt_wordpiece_encode(tok, pairs->items[0].text, strlen(pairs->items[0].text), 1, NULL, 0, &n1));
        CHECK_OK(mmt_wordpiece_encode(tok, pairs->items[4].text, strlen(pairs->items[4].text), 1, NULL, 0, &n2));
        CHECK(n1 == 5 && n2 == 7); /* [CLS] a gray cat [SEP]; [CLS] an astronaut with a star [SEP] */
        double want = ((double)(n1 - 1) * l1 + (double)(n2 - 1) * l_long) / (double)(n1 + n2 - 2);
        CHECK_MSG(fabs(l2 - want) <= 1e-5 * fabs(want), "padded batch loss %.7f, want %.7f", l2, want);
    }
    mmt_caption_task_free(t);
    mmt_pairs_free(pairs);
    mmt_git_free(m);
}

/* The one trainable tensor of a prompt-tuning task (4, C). */
static const mmt_nn_param *prompt_param(mmt_caption_task *t) {
    int64_t n = 0;
    const mmt_nn_param *p = mmt_git_run_params(mmt_caption_task_run(t), &n);
    CHECK_MSG(n == 1 && p && !strcmp(p[0].name, "prompt_embeddings"), "%lld trainable tensors", (long long)n);
    return n == 1 ? p : NULL;
}

static void test_prompt_tuning(void) {
    mmt_git *m = NULL;
    CHECK_OK(mmt_git_load(CAP, &m));
    mmt_pairs *pairs = write_pairs();
    mmt_safetensors *exp = NULL;
    CHECK_OK(mmt_safetensors_open(MMT_FIXTURE_DIR "/git_train/prompt_gen/expected.safetensors", &exp));
    if (!m || !pairs || !exp) goto done;
    mmt_prompt_settings ps = {.text_tokens = 4};
    mmt_caption_task_options o = {.prompt = &ps, .prompt_init_text = "a cup of", .seed = 3};
    mmt_caption_task *t = NULL;
    CHECK_OK(mmt_caption_task_create(m, pairs, &o, &t));
    const mmt_nn_param *p = t ? prompt_param(t) : NULL;
    const mmt_st_tensor *init = mmt_safetensors_find(exp, "init");
    CHECK(init && p && init->numel == p->numel && init->dtype == MMT_DTYPE_F32 &&
          memcmp(init->data, p->data, (size_t)p->numel * sizeof(float)) == 0);
    mmt_caption_task_free(t);
    t = NULL;
    o.prompt_init_text = NULL; /* RANDOM: nn.Embedding's N(0, 1) */
    CHECK_OK(mmt_caption_task_create(m, pairs, &o, &t));
    if (t && (p = prompt_param(t)) != NULL) {
        double sum = 0, sq = 0;
        for (int64_t i = 0; i < p->numel; i++) sum += p->data[i], sq += (double)p->data[i] * p->data[i];
        double sd = sqrt(sq / (double)p->numel - (sum / (double)p->numel) * (sum / (double)p->numel));
        CHECK_MSG(fabs(sd - 1) < 0.25, "random prompt std %.3f", sd);
    }
    /* trains, saves PEFT's files, and they read back to the same logits */
    int64_t V = mmt_git_config_of(m)->vocab_size, Ni = mmt_git_image_tokens(m), T = Ni + 4 + 4;
    float *trained = malloc((size_t)(2 * T * V) * sizeof(float)), *again = malloc((size_t)(2 * T * V) * sizeof(float));
    double first = t ? eval_loss(t) : 0, last = 0;
    char out[400], adir[450];
    snprintf(out, sizeof out, "%s/prompt", root);
    snprintf(adir, sizeof adir, "%s/adapter", out);
    if (t) {
        mmt_train_task tt;
        mmt_caption_task_bind(t, &tt);
        mmt_train_settings s;
        mmt_train_settings_default(&s);
        s.out = out;
        s.steps = 40;
        s.batch_size = 5;
        s.lr = 0.1;
        s.warmup_steps = 0;
        s.quiet = 1;
        mmt_train_result res;
        CHECK_OK(mmt_train_run(&tt, &s, &res));
        last = eval_loss(t);
        logits_of(mmt_caption_task_run(t), trained);
    }
    printf("     prompt tuning: loss %.3f -> %.3f after 40 steps\n", first, last);
    CHECK_MSG(last < 0.8 * first, "prompt tuning did not learn: loss %.3f -> %.3f", first, last);
    mmt_git_run *r = NULL;
    mmt_adapter *ad = NULL;
    mmt_prompt *pr = NULL;
    CHECK_OK(mmt_git_run_create(m, &r));
    if (r) CHECK_OK(mmt_adapter_folders_load(mmt_git_run_iface(r), adir, 0, &ad, &pr));
    CHECK(pr && !ad);
    if (pr) {
        logits_of(r, again);
        CHECK(memcmp(trained, again, (size_t)(2 * T * V) * sizeof(float)) == 0);
    }
    mmt_prompt_free(pr);
    mmt_adapter_free(ad);
    mmt_git_run_free(r);
    mmt_caption_task_free(t);
    free(trained), free(again);
done:
    mmt_safetensors_close(exp);
    mmt_pairs_free(pairs);
    mmt_git_free(m);
}

static void test_bad_input(void) {
    mmt_git *m = NULL;
    mmt_pairs *pairs = write_pairs();
    mmt_caption_task *t = NULL;
    mmt_caption_task_options o = {.max_tokens = 2};
    CHECK_OK(mmt_git_load(CAP, &m));
    if (m && pairs) {
        CHECK_FAILS(mmt_caption_task_create(m, pairs, &o, &t), MMT_STATUS_INVALID_ARGUMENT, "caption length");
        o.max_tokens = 1000;
        CHECK_FAILS(mmt_caption_task_create(m, pairs, &o, &t), MMT_STATUS_INVALID_ARGUMENT, "caption length");
        mmt_prompt_settings ps = {.text_tokens = 46}; /* of 48 positions */
        mmt_caption_task_options po = {.prompt = &ps};
        CHECK_FAILS(mmt_caption_task_create(m, pairs, &po, &t), MMT_STATUS_INVALID_ARGUMENT, "46 virtual tokens");
        ps.text_tokens = 40;
        po.max_tokens = 9;
        CHECK_FAILS(mmt_caption_task_create(m, pairs, &po, &t), MMT_STATUS_INVALID_ARGUMENT, "caption length");
    }
    mmt_git_free(m);
    m = NULL;
    CHECK_OK(mmt_git_load(MMT_FIXTURE_DIR "/git/tiny-a", &m));
    o.max_tokens = 0;
    if (m && pairs) CHECK_FAILS(mmt_caption_task_create(m, pairs, &o, &t), MMT_STATUS_NOT_FOUND, "no tokenizer.json");
    mmt_git_free(m);
    mmt_pairs_free(pairs);
}

int main(void) {
    if (!mkdtemp(root)) return 1;
    RUN(test_lora_learns_and_reloads);
    RUN(test_full_writes_a_snapshot);
    RUN(test_padding_is_not_predicted);
    RUN(test_prompt_tuning);
    RUN(test_bad_input);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0) return 1;
    return check_summary();
}
