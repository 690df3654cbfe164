/*
 * test_clip_train.c — CLIP's training graph checked against itself and finite differences.
 *
 * The PyTorch/PEFT parity (losses, gradients and AdamW steps from transformers + PEFT) is in
 * test_train_parity.c; this file checks the graph's own consistency on the tiny fixture CLIP
 * (tests/fixtures/clip/tiny-a, quick_gelu, and tiny-b, gelu):
 *   - the training view without adapters embeds exactly as the inference path (1e-6);
 *   - every gradient (full fine-tuning: all base tensors and logit_scale; LoRA A/B on linear
 *     layers, the patch-embedding conv and a projection; IA3 on outputs and inputs) against a
 *     central finite difference of the loss along a random direction per tensor, with the
 *     reference kernels. The difference is Richardson-extrapolated from steps h and h/2
 *     (h = 5% of the tensor's RMS, at least 0.005), so truncation is O(h^4). Tolerance:
 *     |fd - g.v| <= 2e-2 max(|fd|, |g.v|) + 16 * 6e-8 * max(1, |loss|) / h: the loss is
 *     computed in float, and its rounding divided by the step is the noise floor of the
 *     quotient (it matters for gradients that are exactly zero, such as the key bias's). The
 *     batch and this check (check_fd) are in clip_fixture.h;
 *   - the distillation term and a fixed temperature, through the same finite differences;
 *   - gradient checkpointing gives bitwise the same gradients (dropout on);
 *   - backward that stops below the lowest trainable layer gives the same gradients as a
 *     full-depth backward.
 */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "clip_fixture.h"
#include "core/alloc.h"
#include "models/clip.h"
#include "models/clip_train.h"
#include "nn/linear.h"

#define B CLIP_BATCH

static void test_view_matches_inference(void) {
    clip_batch b;
    if (!batch_load("tiny-a", &b)) {
        CHECK(0);
        return;
    }
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct;
    CHECK(mmt_clip_train_create(b.model, &o, &ct) == MMT_OK);
    int64_t P = mmt_clip_embed_dim(b.model);
    float *a = malloc((size_t)(B * P) * sizeof(float)), *r = malloc((size_t)(B * P) * sizeof(float));
    CHECK(mmt_clip_train_encode_pixels(ct, b.pixels, B, a) == MMT_OK);
    CHECK(mmt_clip_encode_pixels(b.model, b.pixels, B, r) == MMT_OK);
    for (int64_t i = 0; i < B * P; i++) CHECK_NEAR(a[i], r[i], 1e-6);
    CHECK(mmt_clip_train_encode_ids(ct, b.ids, B, b.L, a) == MMT_OK);
    CHECK(mmt_clip_encode_ids(b.model, b.ids, B, b.L, r) == MMT_OK);
    for (int64_t i = 0; i < B * P; i++) CHECK_NEAR(a[i], r[i], 1e-6);
    /* the forward_loss embeddings are the same numbers */
    double loss;
    CHECK(mmt_clip_train_forward_loss(ct, b.pixels, b.ids, B, b.L, 1, &loss) == MMT_OK);
    for (int64_t i = 0; i < B * P; i++) CHECK_NEAR(mmt_clip_train_text_embeds(ct)[i], r[i], 1e-6);
    CHECK(isfinite(loss) && loss > 0);
    free(a);
    free(r);
    mmt_clip_train_free(ct);
    batch_free(&b);
}

static void check_full(const char *model) {
    clip_batch b;
    if (!batch_load(model, &b)) {
        CHECK(0);
        return;
    }
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    o.train_logit_scale = 1;
    mmt_clip_train *ct;
    CHECK(mmt_clip_train_create(b.model, &o, &ct) == MMT_OK);
    CHECK(mmt_clip_train_make_full(ct) == MMT_OK);
    int64_t n;
    mmt_clip_train_params(ct, &n);
    /* tiny-a: 2 + 2 layers x 16 + embeddings/norms/projections */
    CHECK(n > 40);
    check_fd(ct, &b, model);
    mmt_clip_train_free(ct);
    batch_free(&b);
}

static void test_full_finetune_gradients_a(void) { check_full("tiny-a"); }
static void test_full_finetune_gradients_b(void) { check_full("tiny-b"); }

/* This file's LoRA: rank r, B = b_scale u; its zero gradient buffers draw from the stream too
 * (clip_fixture.h), as the random directions of the checks below were observed with. */
static void attach_lora_b(mmt_clip_train *ct, owned *o, const char *module, int64_t r, float dropout,
                          float b_scale) {
    lora_init init = {r, dropout, b_scale, 1};
    attach_lora_with(ct, o, module, init);
}

static void attach_lora(mmt_clip_train *ct, owned *o, const char *module, int64_t r, float dropout) {
    attach_lora_b(ct, o, module, r, dropout, 0.3f);
}

static void attach_ia3(mmt_clip_train *ct, owned *o, const char *module, mmt_ia3_mode mode) {
    mmt_linear *l = mmt_clip_train_linear(ct, module);
    CHECK_MSG(l != NULL, "no module %s", module);
    if (!l) return;
    int64_t n = mode == MMT_IA3_INPUT ? l->in : l->out;
    l->ia3_mode = mode;
    l->ia3 = own(o, n, 0.2f);
    for (int64_t i = 0; i < n; i++) l->ia3[i] += 1.0f;
    l->dia3 = own(o, n, 0);
    char name[256];
    snprintf(name, sizeof name, "%s.ia3_l", module);
    CHECK(mmt_clip_train_add_param(ct, name, l->ia3, l->dia3, 1, &n, 0) == MMT_OK);
}

static void test_lora_and_ia3_gradients(void) {
    clip_batch b;
    if (!batch_load("tiny-a", &b)) {
        CHECK(0);
        return;
    }
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct;
    CHECK(mmt_clip_train_create(b.model, &o, &ct) == MMT_OK);
    owned own_ = {0};
    attach_lora(ct, &own_, "text_model.encoder.layers.0.self_attn.q_proj", 2, 0);
    attach_lora(ct, &own_, "text_model.encoder.layers.1.self_attn.v_proj", 3, 0);
    attach_lora(ct, &own_, "vision_model.encoder.layers.0.mlp.fc1", 2, 0);
    attach_lora(ct, &own_, "vision_model.embeddings.patch_embedding", 2, 0);
    attach_lora(ct, &own_, "visual_projection", 2, 0);
    attach_ia3(ct, &own_, "text_model.encoder.layers.1.self_attn.k_proj", MMT_IA3_OUTPUT);
    attach_ia3(ct, &own_, "vision_model.encoder.layers.1.mlp.fc2", MMT_IA3_INPUT);
    check_fd(ct, &b, "lora+ia3");
    mmt_clip_train_free(ct);
    owned_free(&own_);
    batch_free(&b);
}

/* The distillation term (KL to the frozen base's logits) and a fixed temperature: LoRA
 * gradients against finite differences. The adapter starts non-zero, so the student's
 * logits differ from the teacher's and the KL term has a gradient. */
static void test_distillation_and_fixed_temperature(void) {
    clip_batch b;
    if (!batch_load("tiny-a", &b)) {
        CHECK(0);
        return;
    }
    for (int variant = 0; variant < 2; variant++) {
        mmt_clip_train_options o;
        mmt_clip_train_options_default(&o);
        if (variant == 0) o.distill_weight = 3.0f;
        else o.fixed_temperature = 0.05f;
        mmt_clip_train *ct;
        CHECK(mmt_clip_train_create(b.model, &o, &ct) == MMT_OK);
        owned own_ = {0};
        attach_lora(ct, &own_, "text_model.encoder.layers.1.self_attn.v_proj", 2, 0);
        attach_lora(ct, &own_, "vision_model.encoder.layers.0.self_attn.q_proj", 2, 0);
        CHECK(fabsf(mmt_clip_train_scale(ct) - (variant ? 20.0f : expf(mmt_clip_train_logit_scale(ct)))) < 1e-4f);
        check_fd(ct, &b, variant ? "fixed temperature" : "distillation");
        mmt_clip_train_free(ct);
        owned_free(&own_);
    }
    batch_free(&b);
}

/* Single modules made trainable (PEFT's modules_to_save) next to a LoRA: their gradients
 * against finite differences, names under the key prefix, and errors. */
static void test_module_trainable(void) {
    clip_batch b;
    if (!batch_load("tiny-b", &b)) {
        CHECK(0);
        return;
    }
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct;
    CHECK(mmt_clip_train_create(b.model, &o, &ct) == MMT_OK);
    owned own_ = {0};
    attach_lora(ct, &own_, "text_model.encoder.layers.1.self_attn.q_proj", 2, 0);
    int64_t added = 0;
    CHECK(mmt_clip_train_make_module_trainable(ct, "vision_model.post_layernorm", "base_model.model.", &added) == MMT_OK);
    CHECK(added == 2);
    CHECK(mmt_clip_train_make_module_trainable(ct, "text_model.embeddings", "base_model.model.", &added) == MMT_OK);
    CHECK(added == 2); /* token and position embeddings */
    CHECK(mmt_clip_train_make_module_trainable(ct, "vision_model.encoder.layers.0.mlp.fc2", "base_model.model.", &added) == MMT_OK);
    CHECK(mmt_clip_train_make_module_trainable(ct, "vision_model.encoder.layers.0.mlp.fc2", "x.", &added) == MMT_STATUS_NOT_FOUND);
    CHECK(mmt_clip_train_make_module_trainable(ct, "no_such", "x.", &added) == MMT_STATUS_NOT_FOUND);
    int64_t n;
    const mmt_nn_param *p = mmt_clip_train_params(ct, &n);
    CHECK(n == 2 + 2 + 2 + 2);
    CHECK(strcmp(p[2].name, "base_model.model.vision_model.post_layernorm.weight") == 0);
    check_fd(ct, &b, "modules_to_save");
    mmt_clip_train_free(ct);
    owned_free(&own_);
    batch_free(&b);
}

/* Evaluation mode: no dropout (the same loss twice, embeddings equal to inference), no
 * backward. */
static void test_eval_mode(void) {
    clip_batch b;
    if (!batch_load("tiny-a", &b)) {
        CHECK(0);
        return;
    }
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct;
    CHECK(mmt_clip_train_create(b.model, &o, &ct) == MMT_OK);
    owned own_ = {0};
    attach_lora(ct, &own_, "vision_model.encoder.layers.0.self_attn.q_proj", 2, 0.5f);
    int64_t P = mmt_clip_embed_dim(b.model);
    float *ref = malloc((size_t)(B * P) * sizeof(float));
    CHECK(mmt_clip_train_encode_pixels(ct, b.pixels, B, ref) == MMT_OK);
    double train_loss, l1, l2;
    CHECK(mmt_clip_train_forward_loss(ct, b.pixels, b.ids, B, b.L, 1, &train_loss) == MMT_OK);
    mmt_clip_train_set_eval(ct, 1);
    CHECK(mmt_clip_train_forward_loss(ct, b.pixels, b.ids, B, b.L, 1, &l1) == MMT_OK);
    CHECK(mmt_clip_train_forward_loss(ct, b.pixels, b.ids, B, b.L, 2, &l2) == MMT_OK);
    CHECK(l1 == l2 && l1 != train_loss); /* dropout 0.5 changes the training loss */
    for (int64_t i = 0; i < B * P; i++) CHECK(mmt_clip_train_image_embeds(ct)[i] == ref[i]);
    CHECK(mmt_clip_train_backward(ct) == MMT_STATUS_INVALID_ARGUMENT);
    free(ref);
    mmt_clip_train_free(ct);
    owned_free(&own_);
    batch_free(&b);
}

/* Same gradients with and without checkpointing (bitwise), and with a backward that stops
 * early (only layer 1 trainable) vs one forced to the bottom (token embedding trainable). */
static void test_checkpointing_and_early_stop(void) {
    clip_batch b;
    if (!batch_load("tiny-b", &b)) {
        CHECK(0);
        return;
    }
    float **g[2];
    int64_t n[2];
    for (int ckpt = 0; ckpt < 2; ckpt++) {
        mmt_clip_train_options o;
        mmt_clip_train_options_default(&o);
        o.checkpointing = ckpt;
        mmt_clip_train *ct;
        CHECK(mmt_clip_train_create(b.model, &o, &ct) == MMT_OK);
        owned own_ = {0};
        rng_state = 99;
        attach_lora(ct, &own_, "text_model.encoder.layers.0.self_attn.q_proj", 2, 0.25f);
        attach_lora(ct, &own_, "vision_model.encoder.layers.1.self_attn.v_proj", 2, 0.25f);
        attach_ia3(ct, &own_, "vision_model.encoder.layers.0.mlp.fc2", MMT_IA3_INPUT);
        mmt_clip_train_params(ct, &n[ckpt]);
        g[ckpt] = grads_of(ct, &b, NULL);
        mmt_clip_train_free(ct);
        owned_free(&own_);
    }
    CHECK(n[0] == n[1]);
    mmt_clip_train_options o;
    mmt_clip_train_options_default(&o);
    mmt_clip_train *ct;
    CHECK(mmt_clip_train_create(b.model, &o, &ct) == MMT_OK);
    owned own_ = {0};
    rng_state = 99;
    attach_lora(ct, &own_, "text_model.encoder.layers.0.self_attn.q_proj", 2, 0.25f);
    attach_lora(ct, &own_, "vision_model.encoder.layers.1.self_attn.v_proj", 2, 0.25f);
    attach_ia3(ct, &own_, "vision_model.encoder.layers.0.mlp.fc2", MMT_IA3_INPUT);
    int64_t np;
    const mmt_nn_param *p = mmt_clip_train_params(ct, &np);
    for (int64_t i = 0; i < np && i < n[0]; i++)
        CHECK_MSG(memcmp(g[0][i], g[1][i], (size_t)p[i].numel * sizeof(float)) == 0,
                  "checkpointing changed the gradient of %s", p[i].name);
    mmt_clip_train_free(ct);
    owned_free(&own_);
    for (int k = 0; k < 2; k++) grads_free(g[k], n[k]);

    /* early stop: vision LoRA on layer 1 only, vs the same plus a LoRA with B = 0 on the
     * patch embedding (the forward is unchanged, but backward must reach the bottom) */
    float **h[2];
    for (int force = 0; force < 2; force++) {
        mmt_clip_train_options_default(&o);
        CHECK(mmt_clip_train_create(b.model, &o, &ct) == MMT_OK);
        owned own2 = {0};
        rng_state = 5;
        attach_lora(ct, &own2, "vision_model.encoder.layers.1.self_attn.v_proj", 2, 0);
        if (force) attach_lora_b(ct, &own2, "vision_model.embeddings.patch_embedding", 2, 0, 0.0f);
        h[force] = grads_of(ct, &b, NULL);
        p = mmt_clip_train_params(ct, &np);
        if (force) {
            for (int k = 0; k < 2; k++)
                CHECK_MSG(memcmp(h[0][k], h[1][k], (size_t)p[k].numel * sizeof(float)) == 0,
                          "early-stopped backward differs for %s", p[k].name);
        }
        if (force) {
            grads_free(h[0], 2);
            grads_free(h[1], np);
        }
        mmt_clip_train_free(ct);
        owned_free(&own2);
    }
    batch_free(&b);
}

int main(void) {
    rng_state = 0x1234567887654321ull; /* this file's stream: pixels, adapters, directions */
    setenv("MMT_KERNELS", "ref", 1);
    RUN(test_view_matches_inference);
    RUN(test_full_finetune_gradients_a);
    RUN(test_full_finetune_gradients_b);
    RUN(test_lora_and_ia3_gradients);
    RUN(test_distillation_and_fixed_temperature);
    RUN(test_eval_mode);
    RUN(test_module_trainable);
    RUN(test_checkpointing_and_early_stop);
    return check_summary();
}
