/*
 * test_clip_prompts.c — prompt tuning (CoOp text prompts, VPT shallow and deep) and prefix
 * tuning (raw and with PEFT's projection MLP, text and vision towers) through CLIP's
 * training graph, on the tiny fixture CLIPs (tests/fixtures/clip/tiny-a, tiny-b), with the
 * reference kernels:
 *   - every prompt / prefix / projection tensor, alone and combined with LoRA, against a
 *     central finite difference of the loss along a random direction per tensor, Richardson-
 *     extrapolated from steps h and h/2 (h = 5% of the tensor's RMS, at least 0.005):
 *     |fd - g.v| <= 2e-2 max(|fd|, |g.v|) + 16 * 6e-8 * max(1, |loss|) / h, the same rule
 *     as test_clip_train.c (the second term is the float rounding of the loss over the step);
 *   - gradient checkpointing gives bitwise the same loss and gradients (LoRA dropout on);
 *   - zero-initialised keys are not special: prompts change the embeddings, and detaching
 *     them gives back the base model's embeddings exactly;
 *   - an over-long caption keeps BOS and EOS (the pooled row is still the EOS token's);
 *   - save -> settings from the file -> attach -> load reproduces the embeddings bitwise,
 *     and adapter_config.json round-trips.
 */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "clip_fixture.h"
#include "core/alloc.h"
#include "core/file.h"
#include "models/clip.h"
#include "models/clip_train.h"
#include "nn/linear.h"
#include "peft/prompt.h"

#define B CLIP_BATCH

/* This file's LoRA: rank 2, A and B = 0.3 u; the zero gradient buffers draw nothing from the
 * stream (clip_fixture.h). */
static void lora_attach(mmt_clip_train *ct, owned *o, const char *module, float dropout) {
    lora_init init = {2, dropout, 0.3f, 0};
    attach_lora_with(ct, o, module, init);
}

/* Every check_fd here also fails a tensor whose gradient is zero along its direction. */
static void check_fd_nonzero(mmt_clip_train *ct, const clip_batch *b, const char *what) {
    fd_options o = fd_defaults();
    o.require_nonzero = 1;
    check_fd_with(ct, b, &o, what);
}

static mmt_prompt_settings settings(int64_t text, int64_t visual, int deep, int64_t prefix, int projection, int vision_prefix) {
    mmt_prompt_settings s;
    memset(&s, 0, sizeof s);
    s.text_tokens = text;
    s.visual_tokens = visual;
    s.visual_deep = deep;
    s.prefix_tokens = prefix;
    s.prefix_projection = projection;
    s.prefix_vision = vision_prefix;
    s.encoder_hidden_size = projection ? 12 : 0;
    s.seed = 3;
    s.trainable = 1;
    return s;
}

/* Scales every prompt tensor so that the finite differences see a curved, non-trivial loss. */
static void fd_case(const char *model, mmt_prompt_settings s, int with_lora, const char *what) {
    clip_batch b;
    if (!batch_load(model, &b)) {
        CHECK(0);
        return;
    }
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct = NULL;
    CHECK_OK(mmt_clip_train_create(b.model, &o, &ct));
    mmt_prompt *p = NULL;
    CHECK_OK(mmt_prompt_attach(mmt_clip_train_iface(ct), &s, &p));
    owned own_ = {0};
    if (with_lora) {
        lora_attach(ct, &own_, "text_model.encoder.layers.1.self_attn.q_proj", 0);
        lora_attach(ct, &own_, "vision_model.encoder.layers.0.self_attn.v_proj", 0);
    }
    /* text prompts start at std 0.02: make them large enough to matter */
    if (p && p->text)
        for (int64_t i = 0; i < s.text_tokens * p->text_dim; i++) p->text[i] *= 20.0f;
    if (p) check_fd_nonzero(ct, &b, what);
    mmt_prompt_free(p);
    mmt_clip_train_free(ct);
    owned_free(&own_);
    batch_free(&b);
}

static void test_text_prompt_gradients(void) { fd_case("tiny-a", settings(4, 0, 0, 0, 0, 0), 0, "text prompt"); }
static void test_visual_prompt_gradients(void) {
    fd_case("tiny-a", settings(0, 3, 0, 0, 0, 0), 0, "vpt shallow");
    fd_case("tiny-b", settings(0, 2, 1, 0, 0, 0), 0, "vpt deep");
}
static void test_prefix_gradients(void) {
    fd_case("tiny-a", settings(0, 0, 0, 3, 0, 1), 0, "prefix raw");
    fd_case("tiny-b", settings(0, 0, 0, 2, 1, 1), 0, "prefix projection");
}
static void test_combined_with_lora_gradients(void) {
    fd_case("tiny-a", settings(3, 2, 1, 0, 0, 0), 1, "lora + text + vpt deep");
    fd_case("tiny-b", settings(0, 2, 0, 2, 1, 0), 1, "lora + prefix projection + vpt");
}

/* Bitwise equal loss and gradients with and without checkpointing (dropout on). */
static void test_checkpointing_bitwise(void) {
    clip_batch b;
    if (!batch_load("tiny-b", &b)) {
        CHECK(0);
        return;
    }
    mmt_prompt_settings cases[2] = {settings(3, 2, 1, 0, 0, 0), settings(0, 2, 1, 2, 1, 1)};
    for (int c = 0; c < 2; c++) {
        float **g[2];
        int64_t n[2];
        double loss[2];
        for (int ckpt = 0; ckpt < 2; ckpt++) {
            mmt_clip_train_options o;
            mmt_clip_train_options_default(&o);
            o.checkpointing = ckpt;
            mmt_clip_train *ct = NULL;
            CHECK_OK(mmt_clip_train_create(b.model, &o, &ct));
            mmt_prompt *p = NULL;
            CHECK_OK(mmt_prompt_attach(mmt_clip_train_iface(ct), &cases[c], &p));
            rng_state = 99;
            owned own_ = {0};
            lora_attach(ct, &own_, "text_model.encoder.layers.0.self_attn.q_proj", 0.25f);
            mmt_clip_train_params(ct, &n[ckpt]);
            g[ckpt] = grads_of(ct, &b, &loss[ckpt]);
            mmt_prompt_free(p);
            mmt_clip_train_free(ct);
            owned_free(&own_);
        }
        CHECK(n[0] == n[1]);
        CHECK(memcmp(&loss[0], &loss[1], sizeof(double)) == 0);
        mmt_clip_train_options o;
        mmt_clip_train_options_default(&o);
        mmt_clip_train *ct = NULL;
        CHECK_OK(mmt_clip_train_create(b.model, &o, &ct));
        mmt_prompt *p = NULL;
        CHECK_OK(mmt_prompt_attach(mmt_clip_train_iface(ct), &cases[c], &p));
        int64_t np;
        const mmt_nn_param *pr = mmt_clip_train_params(ct, &np);
        for (int64_t i = 0; i < np && i < n[0]; i++)
            CHECK_MSG(memcmp(g[0][i], g[1][i], (size_t)pr[i].numel * sizeof(float)) == 0,
                      "case %d: checkpointing changed the gradient of %s", c, pr[i].name);
        mmt_prompt_free(p);
        mmt_clip_train_free(ct);
        for (int k = 0; k < 2; k++) grads_free(g[k], n[k]);
    }
    batch_free(&b);
}

/* Prompts change the embeddings; detached, the view is the base model again (bitwise). An
 * over-long caption still pools at its EOS: the context vectors then displace its last words. */
static void test_detach_and_long_caption(void) {
    clip_batch b;
    if (!batch_load("tiny-a", &b)) {
        CHECK(0);
        return;
    }
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct = NULL;
    CHECK_OK(mmt_clip_train_create(b.model, &o, &ct));
    int64_t P = mmt_clip_embed_dim(b.model);
    float *base_t = malloc((size_t)(B * P) * sizeof(float)), *base_i = malloc((size_t)(B * P) * sizeof(float));
    float *t = malloc((size_t)(B * P) * sizeof(float)), *im = malloc((size_t)(B * P) * sizeof(float));
    CHECK_OK(mmt_clip_train_encode_ids(ct, b.ids, B, b.L, base_t));
    CHECK_OK(mmt_clip_train_encode_pixels(ct, b.pixels, B, base_i));
    mmt_prompt_settings s = settings(4, 3, 1, 0, 0, 0);
    s.trainable = 0;
    mmt_prompt *p = NULL;
    CHECK_OK(mmt_prompt_attach(mmt_clip_train_iface(ct), &s, &p));
    CHECK_OK(mmt_clip_train_encode_ids(ct, b.ids, B, b.L, t));
    CHECK_OK(mmt_clip_train_encode_pixels(ct, b.pixels, B, im));
    CHECK(memcmp(t, base_t, (size_t)(B * P) * sizeof(float)) != 0);
    CHECK(memcmp(im, base_i, (size_t)(B * P) * sizeof(float)) != 0);
    /* an over-long caption: every position a word, the tokenizer truncates and ends in EOS */
    char longtext[4096] = "";
    for (int i = 0; i < 120; i++) strcat(longtext, "cat ");
    const char *texts[1] = {longtext};
    int32_t *ids = malloc((size_t)b.L * sizeof(int32_t));
    CHECK_OK(mmt_clip_tokenize(b.model, texts, 1, 1, ids));
    CHECK_OK(mmt_clip_train_encode_ids(ct, ids, 1, b.L, t));
    double norm = 0;
    for (int64_t j = 0; j < P; j++) norm += (double)t[j] * t[j];
    CHECK_NEAR(norm, 1.0, 1e-5);
    mmt_prompt_free(p);
    CHECK_OK(mmt_clip_train_encode_ids(ct, b.ids, B, b.L, t));
    CHECK_OK(mmt_clip_train_encode_pixels(ct, b.pixels, B, im));
    CHECK(memcmp(t, base_t, (size_t)(B * P) * sizeof(float)) == 0);
    CHECK(memcmp(im, base_i, (size_t)(B * P) * sizeof(float)) == 0);
    /* counts the context length cannot hold are refused */
    mmt_prompt_settings big = settings(b.L - 1, 0, 0, 0, 0, 0);
    big.trainable = 0;
    CHECK_FAILS(mmt_prompt_attach(mmt_clip_train_iface(ct), &big, &p), MMT_STATUS_INVALID_ARGUMENT, "context length");
    mmt_prompt_settings both = settings(2, 0, 0, 2, 0, 0);
    both.trainable = 0;
    CHECK_FAILS(mmt_prompt_attach(mmt_clip_train_iface(ct), &both, &p), MMT_STATUS_INVALID_ARGUMENT, "cannot be combined");
    free(ids);
    free(base_t), free(base_i), free(t), free(im);
    mmt_clip_train_free(ct);
    batch_free(&b);
}

/* Trains nothing: perturbs, saves, reloads into a fresh view from the file alone. */
static void round_trip(const char *model, mmt_prompt_settings s, const char *tag) {
    clip_batch b;
    if (!batch_load(model, &b)) {
        CHECK(0);
        return;
    }
    char dir[512];
    snprintf(dir, sizeof dir, "%s/prompt_roundtrip_%s", MMT_BUILD_DIR, tag);
    CHECK_OK(mmt_mkdirs(dir));
    char *wpath = mmt_path_join(dir, "adapter_model.safetensors"), *cpath = mmt_path_join(dir, "adapter_config.json");
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct = NULL, *ct2 = NULL;
    CHECK_OK(mmt_clip_train_create(b.model, &o, &ct));
    CHECK_OK(mmt_clip_train_create(b.model, &o, &ct2));
    mmt_prompt *p = NULL, *q = NULL;
    CHECK_OK(mmt_prompt_attach(mmt_clip_train_iface(ct), &s, &p));
    if (!p) return;
    int64_t n;
    const mmt_nn_param *pr = mmt_clip_train_params(ct, &n);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < pr[i].numel; j++) pr[i].data[j] += 0.1f * rng_uniform();
    mmt_peft_config pc, back;
    memset(&back, 0, sizeof back);
    CHECK_OK(mmt_prompt_peft_config(&s, &mmt_clip_train_iface(ct)->dims, NULL, &pc));
    CHECK_OK(mmt_peft_config_save(&pc, cpath));
    CHECK_OK(mmt_prompt_save_tensors(p, wpath));
    CHECK_OK(mmt_peft_config_load(cpath, &back));
    CHECK(back.peft_type == pc.peft_type && back.num_virtual_tokens == pc.num_virtual_tokens &&
          back.prefix_projection == pc.prefix_projection && back.token_dim == pc.token_dim);
    mmt_prompt_settings got;
    CHECK_OK(mmt_prompt_settings_from_file(&back, wpath, &mmt_clip_train_iface(ct)->dims, &got));
    CHECK(got.text_tokens == s.text_tokens && got.visual_tokens == s.visual_tokens && got.visual_deep == s.visual_deep &&
          got.prefix_tokens == s.prefix_tokens && got.prefix_projection == s.prefix_projection &&
          got.prefix_vision == s.prefix_vision);
    got.trainable = 0;
    CHECK_OK(mmt_prompt_attach(mmt_clip_train_iface(ct2), &got, &q));
    if (q) CHECK_OK(mmt_prompt_load_tensors(q, wpath));
    int64_t P = mmt_clip_embed_dim(b.model);
    float *a = malloc((size_t)(B * P) * sizeof(float)), *c = malloc((size_t)(B * P) * sizeof(float));
    CHECK_OK(mmt_clip_train_encode_ids(ct, b.ids, B, b.L, a));
    CHECK_OK(mmt_clip_train_encode_ids(ct2, b.ids, B, b.L, c));
    CHECK_MSG(memcmp(a, c, (size_t)(B * P) * sizeof(float)) == 0, "%s: text embeddings differ after reload", tag);
    CHECK_OK(mmt_clip_train_encode_pixels(ct, b.pixels, B, a));
    CHECK_OK(mmt_clip_train_encode_pixels(ct2, b.pixels, B, c));
    CHECK_MSG(memcmp(a, c, (size_t)(B * P) * sizeof(float)) == 0, "%s: image embeddings differ after reload", tag);
    CHECK(mmt_prompt_numel(p) > 0 && mmt_prompt_numel(p) == mmt_prompt_numel(q));
    free(a), free(c);
    mmt_peft_config_free(&pc);
    mmt_peft_config_free(&back);
    mmt_prompt_free(p);
    mmt_prompt_free(q);
    mmt_clip_train_free(ct);
    mmt_clip_train_free(ct2);
    mmt_free(wpath), mmt_free(cpath);
    batch_free(&b);
}

static void test_save_load_round_trip(void) {
    round_trip("tiny-a", settings(5, 2, 1, 0, 0, 0), "text_vpt");
    round_trip("tiny-a", settings(0, 3, 0, 0, 0, 0), "vpt");
    round_trip("tiny-b", settings(0, 0, 0, 2, 0, 1), "prefix");
    round_trip("tiny-b", settings(0, 2, 1, 3, 1, 1), "prefix_projection");
}

int main(void) {
    rng_state = 0x1234567887654321ull; /* this file's stream: pixels, adapters, directions */
    setenv("MMT_KERNELS", "ref", 1);
    RUN(test_text_prompt_gradients);
    RUN(test_visual_prompt_gradients);
    RUN(test_prefix_gradients);
    RUN(test_combined_with_lora_gradients);
    RUN(test_checkpointing_bitwise);
    RUN(test_detach_and_long_caption);
    RUN(test_save_load_round_trip);
    return check_summary();
}
